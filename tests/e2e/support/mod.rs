//! A control plane and an agent, both in this process but talking real gRPC over loopback, with
//! clients for the admin API and the device harness. Time on the control plane is a manual clock
//! that starts at the wall clock's now (the agent's devices keep the real clock).
//!
//! The agent can be stopped and started again on the same state directory (the devices go
//! offline and come back, as after a restart), or started against another gateway address (a
//! test's proxy). [`RawDevice`] plays a device by hand over the DeviceGateway, for what the agent
//! would never do.

use droidfleet_agent::device::{KdfParams, Ownership};
use droidfleet_agent::fleet::{DeviceSpec, Fleet, FleetConfig};
use droidfleet_control_plane::clock::{Clock, ManualClock, SystemClock};
use droidfleet_control_plane::service::{Config, ControlPlane};
use droidfleet_proto::v1 as pb;
use droidfleet_proto::v1::admin_service_client::AdminServiceClient;
use droidfleet_proto::v1::device_gateway_client::DeviceGatewayClient;
use droidfleet_proto::v1::device_harness_client::DeviceHarnessClient;
use prost::Message;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tonic::transport::Channel;

/// The longest any test waits for an event before failing.
pub(crate) const DEADLINE: Duration = Duration::from_secs(60);

pub(crate) struct World {
    pub control_plane: Arc<ControlPlane>,
    pub clock: ManualClock,
    pub address: String,
    pub admin: Admin,
    pub harness: DeviceHarnessClient<Channel>,
    pub fleet: Arc<Fleet>,
    pub data_dir: tempfile::TempDir,
    /// The agent's state files; they outlive agent restarts.
    pub agent_dir: tempfile::TempDir,
    /// The token the agent's devices enrolled with.
    pub enrollment_token: String,
    devices: Vec<DeviceSpec>,
    agent: Option<AgentRun>,
    stop: watch::Sender<bool>,
}

/// A running agent: its fleet and its harness server, stopped together.
struct AgentRun {
    stop: watch::Sender<bool>,
    fleet: tokio::task::JoinHandle<()>,
    harness: tokio::task::JoinHandle<()>,
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(agent) = &self.agent {
            let _ = agent.stop.send(true);
        }
        let _ = self.stop.send(true);
    }
}

/// An admin API client carrying one principal's bearer token (or none).
#[derive(Clone)]
pub(crate) struct Admin {
    pub client: AdminServiceClient<Channel>,
    pub token: Option<String>,
}

impl Admin {
    pub(crate) async fn connect(address: &str, token: Option<String>) -> Admin {
        let channel = tonic::transport::Endpoint::from_shared(address.to_string())
            .unwrap()
            .connect()
            .await
            .unwrap();
        Admin {
            client: AdminServiceClient::new(channel),
            token,
        }
    }

    pub(crate) fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.token {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        request
    }

    pub(crate) async fn reset(
        &mut self,
        device_id: &str,
        scope: pb::CredentialScope,
    ) -> Result<pb::Action, tonic::Status> {
        let request = self.request(pb::ResetPasscodeRequest {
            device_id: device_id.to_string(),
            scope: scope as i32,
            ..Default::default()
        });
        Ok(self.client.reset_passcode(request).await?.into_inner())
    }

    pub(crate) async fn action(&mut self, action_id: &str) -> pb::Action {
        let request = self.request(pb::GetActionRequest {
            action_id: action_id.to_string(),
            ..Default::default()
        });
        self.client.get_action(request).await.unwrap().into_inner()
    }

    /// Follows the action with WatchAction until its final state.
    pub(crate) async fn wait_final(&mut self, action_id: &str) -> pb::Action {
        self.watch_to_end(action_id, false).await
    }

    /// Follows a reset with WatchAction past its final state until the user has entered the new
    /// passcode (or, for a reset that did not end done, until its final state).
    pub(crate) async fn wait_entered(&mut self, action_id: &str) -> pb::Action {
        self.watch_to_end(action_id, true).await
    }

    async fn watch_to_end(&mut self, action_id: &str, until_user_entered: bool) -> pb::Action {
        let request = self.request(pb::GetActionRequest {
            action_id: action_id.to_string(),
            until_user_entered,
        });
        let mut stream = self
            .client
            .watch_action(request)
            .await
            .unwrap()
            .into_inner();
        let mut last = None;
        tokio::time::timeout(DEADLINE, async {
            while let Some(action) = stream.message().await.unwrap() {
                last = Some(action);
            }
        })
        .await
        .expect("the action reaches the awaited state in time");
        last.expect("WatchAction sends at least the current state")
    }

    /// Follows the device with WatchDevice until `ready` holds.
    pub(crate) async fn wait_device(
        &mut self,
        device_id: &str,
        ready: impl Fn(&pb::Device) -> bool,
    ) -> pb::Device {
        let request = self.request(pb::GetDeviceRequest {
            device_id: device_id.to_string(),
        });
        let mut stream = self
            .client
            .watch_device(request)
            .await
            .unwrap()
            .into_inner();
        tokio::time::timeout(DEADLINE, async {
            while let Some(device) = stream.message().await.unwrap() {
                if ready(&device) {
                    return device;
                }
            }
            panic!("WatchDevice ended before the device was ready")
        })
        .await
        .expect("the device reaches the expected state in time")
    }

    pub(crate) async fn wait_escrowed(&mut self, device_id: &str, scope: pb::CredentialScope) {
        self.wait_device(device_id, |d| {
            d.escrowed_token_scopes.contains(&(scope as i32))
        })
        .await;
    }

    pub(crate) async fn assign_policy(
        &mut self,
        device_id: &str,
        scope: pb::CredentialScope,
        policy: pb::PasscodePolicy,
    ) {
        let request = self.request(pb::AssignPasscodePolicyRequest {
            device_id: device_id.to_string(),
            scope: scope as i32,
            policy: Some(policy),
        });
        self.client.assign_passcode_policy(request).await.unwrap();
    }

    pub(crate) async fn reveal(&mut self, action_id: &str) -> Result<String, tonic::Status> {
        let request = self.request(pb::GetActionRequest {
            action_id: action_id.to_string(),
            ..Default::default()
        });
        Ok(self
            .client
            .reveal_passcode(request)
            .await?
            .into_inner()
            .passcode)
    }

    pub(crate) async fn audit(&mut self, operation: &str) -> Vec<pb::AuditEvent> {
        let request = self.request(pb::ListAuditEventsRequest {
            operation: operation.to_string(),
            ..Default::default()
        });
        self.client
            .list_audit_events(request)
            .await
            .unwrap()
            .into_inner()
            .events
    }

    /// Creates a principal with `roles` and returns a client acting as it.
    pub(crate) async fn principal(&mut self, name: &str, roles: &[&str]) -> Admin {
        let request = self.request(pb::CreatePrincipalRequest {
            name: name.to_string(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            ..Default::default()
        });
        let token = self
            .client
            .create_principal(request)
            .await
            .unwrap()
            .into_inner()
            .bearer_token;
        Admin {
            client: self.client.clone(),
            token: Some(token),
        }
    }

    /// Creates a principal holding `roles` for device group `group` only.
    pub(crate) async fn principal_in_group(
        &mut self,
        name: &str,
        roles: &[&str],
        group: &str,
    ) -> Admin {
        let request = self.request(pb::CreatePrincipalRequest {
            name: name.to_string(),
            assignments: roles
                .iter()
                .map(|r| pb::RoleAssignment {
                    role: r.to_string(),
                    group: group.to_string(),
                })
                .collect(),
            ..Default::default()
        });
        let token = self
            .client
            .create_principal(request)
            .await
            .unwrap()
            .into_inner()
            .bearer_token;
        Admin {
            client: self.client.clone(),
            token: Some(token),
        }
    }

    /// An enrollment token for `uses` devices of `group` ("" for the default group).
    pub(crate) async fn enrollment_token(&mut self, uses: u32, group: &str) -> String {
        let request = self.request(pb::CreateEnrollmentTokenRequest {
            max_uses: uses,
            ttl_seconds: 600,
            group: group.to_string(),
        });
        self.client
            .create_enrollment_token(request)
            .await
            .unwrap()
            .into_inner()
            .enrollment_token
    }

    pub(crate) async fn remote_lock(
        &mut self,
        device_id: &str,
        scope: pb::CredentialScope,
    ) -> Result<pb::Action, tonic::Status> {
        let request = self.request(pb::RemoteLockRequest {
            device_id: device_id.to_string(),
            scope: scope as i32,
            ..Default::default()
        });
        Ok(self.client.remote_lock(request).await?.into_inner())
    }

    pub(crate) async fn cancel(&mut self, action_id: &str) -> Result<pb::Action, tonic::Status> {
        let request = self.request(pb::GetActionRequest {
            action_id: action_id.to_string(),
            ..Default::default()
        });
        Ok(self.client.cancel_action(request).await?.into_inner())
    }

    pub(crate) async fn devices(&mut self) -> Result<Vec<pb::Device>, tonic::Status> {
        let request = self.request(pb::ListDevicesRequest::default());
        Ok(self
            .client
            .list_devices(request)
            .await?
            .into_inner()
            .devices)
    }

    pub(crate) async fn actions(
        &mut self,
        device_id: &str,
    ) -> Result<Vec<pb::Action>, tonic::Status> {
        let request = self.request(pb::ListActionsRequest {
            device_id: device_id.to_string(),
        });
        Ok(self
            .client
            .list_actions(request)
            .await?
            .into_inner()
            .actions)
    }
}

/// A control plane on a temporary database and a loopback port, on the system clock, served
/// until [`Embedded::stop`].
pub(crate) struct Embedded {
    pub address: String,
    pub admin_token: String,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<Result<(), droidfleet_control_plane::server::ServeError>>,
    /// Kept so the database outlives the server.
    _data_dir: tempfile::TempDir,
}

impl Embedded {
    pub(crate) async fn start() -> Embedded {
        let data_dir = tempfile::tempdir().unwrap();
        let opened = droidfleet_control_plane::server::open(
            Config::new(data_dir.path()),
            Arc::new(SystemClock),
        )
        .await
        .unwrap();
        let admin_token = std::fs::read_to_string(opened.bootstrap_token_path.unwrap()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let (stop, mut stopped) = watch::channel(false);
        let server = tokio::spawn(droidfleet_control_plane::server::serve(
            opened.control_plane,
            listener,
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            },
        ));
        Embedded {
            address,
            admin_token: admin_token.trim().to_string(),
            stop,
            server,
            _data_dir: data_dir,
        }
    }

    pub(crate) async fn admin(&self) -> Admin {
        Admin::connect(&self.address, Some(self.admin_token.clone())).await
    }

    /// Stops the server and waits until it has.
    pub(crate) async fn stop(self) {
        self.stop.send(true).unwrap();
        self.server.await.unwrap().unwrap();
    }
}

pub(crate) fn pin_policy(min_length: u32) -> pb::PasscodePolicy {
    pb::PasscodePolicy {
        r#type: pb::PasscodeType::Pin as i32,
        min_length,
        ..Default::default()
    }
}

pub(crate) fn password_policy(min_length: u32) -> pb::PasscodePolicy {
    pb::PasscodePolicy {
        r#type: pb::PasscodeType::Alphanumeric as i32,
        min_length,
        ..Default::default()
    }
}

impl World {
    /// Starts a control plane and an agent hosting `devices`, and waits until every device has
    /// enrolled and connected.
    pub(crate) async fn start(devices: &[(&str, Ownership)]) -> World {
        World::start_with(devices, |_| {}).await
    }

    pub(crate) async fn start_with(
        devices: &[(&str, Ownership)],
        tune: impl FnOnce(&mut Config),
    ) -> World {
        let data_dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(SystemClock.now());
        let mut config = Config::new(data_dir.path());
        tune(&mut config);
        let opened = droidfleet_control_plane::server::open(config, Arc::new(clock.clone()))
            .await
            .unwrap();
        let token = std::fs::read_to_string(opened.bootstrap_token_path.unwrap())
            .unwrap()
            .trim()
            .to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut server_stop = stopped.clone();
        let control_plane = opened.control_plane.clone();
        tokio::spawn(droidfleet_control_plane::server::serve(
            opened.control_plane,
            listener,
            async move {
                let _ = server_stop.wait_for(|s| *s).await;
            },
        ));
        let mut admin = Admin::connect(&address, Some(token)).await;
        let enrollment_token = admin
            .enrollment_token(devices.len().max(1) as u32, "")
            .await;
        let agent_dir = tempfile::tempdir().unwrap();
        let devices: Vec<DeviceSpec> = devices
            .iter()
            .map(|(name, ownership)| DeviceSpec {
                name: name.to_string(),
                ownership: *ownership,
            })
            .collect();
        let (fleet, harness, agent) =
            launch_agent(&address, agent_dir.path(), &enrollment_token, &devices).await;
        let mut world = World {
            control_plane,
            clock,
            address,
            admin,
            harness,
            fleet,
            data_dir,
            agent_dir,
            enrollment_token,
            devices,
            agent: Some(agent),
            stop,
        };
        world.wait_all_connected().await;
        world
    }

    async fn wait_all_connected(&mut self) {
        let names: Vec<String> = self.devices.iter().map(|d| d.name.clone()).collect();
        for name in names {
            self.wait_screen(&name, |s| s.connected && !s.device_id.is_empty())
                .await;
        }
    }

    /// Stops the agent (its devices go offline, as when the phone is switched off or out of
    /// reach) and waits until the control plane has seen every device leave.
    pub(crate) async fn stop_agent(&mut self) {
        let ids: Vec<String> = self
            .devices
            .iter()
            .filter_map(|d| self.fleet.screen(&d.name).ok()?.device_id)
            .collect();
        let agent = self.agent.take().expect("the agent is running");
        let _ = agent.stop.send(true);
        agent.fleet.await.unwrap();
        agent.harness.await.unwrap();
        for id in ids {
            self.admin.wait_device(&id, |d| !d.online).await;
        }
    }

    /// Starts the agent again on the same state directory and waits until every device is
    /// connected.
    pub(crate) async fn start_agent(&mut self) {
        let address = self.address.clone();
        self.start_agent_at(&address).await;
    }

    /// Starts the agent with its devices talking to `gateway` (a proxy, say) instead of the
    /// control plane's own address, and waits until every device is connected.
    pub(crate) async fn start_agent_at(&mut self, gateway: &str) {
        assert!(self.agent.is_none(), "stop the agent first");
        let (fleet, harness, agent) = launch_agent(
            gateway,
            self.agent_dir.path(),
            &self.enrollment_token,
            &self.devices,
        )
        .await;
        self.fleet = fleet;
        self.harness = harness;
        self.agent = Some(agent);
        self.wait_all_connected().await;
    }

    /// Follows the device's screen with WatchScreens until `ready` holds.
    /// Runs `droidfleet admin …` against the world's control plane as the bootstrap admin;
    /// resolves to whether it succeeded, its stdout and its stderr. The future borrows nothing,
    /// so a test can spawn it and go on playing the user meanwhile.
    pub(crate) fn cli(
        &self,
        args: &[&str],
    ) -> impl std::future::Future<Output = (bool, String, String)> + Send + 'static {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_droidfleet"));
        command
            .arg("admin")
            .args(["--server", &self.address])
            .args(args)
            .env("DROIDFLEET_TOKEN", self.admin.token.as_deref().unwrap())
            .env_remove("DROIDFLEET_TOKEN_FILE");
        async move {
            let output = command.output().await.unwrap();
            (
                output.status.success(),
                String::from_utf8_lossy(&output.stdout).into_owned(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            )
        }
    }

    pub(crate) async fn wait_screen(
        &mut self,
        name: &str,
        ready: impl Fn(&pb::Screen) -> bool,
    ) -> pb::Screen {
        let mut stream = self
            .harness
            .watch_screens(pb::WatchScreensRequest {
                name: name.to_string(),
            })
            .await
            .unwrap()
            .into_inner();
        tokio::time::timeout(DEADLINE, async {
            while let Some(screen) = stream.message().await.unwrap() {
                if ready(&screen) {
                    return screen;
                }
            }
            panic!("WatchScreens ended")
        })
        .await
        .expect("the device's screen reaches the expected state in time")
    }

    pub(crate) async fn screen(&mut self, name: &str) -> pb::Screen {
        self.harness
            .get_screen(pb::DeviceRef {
                name: name.to_string(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    pub(crate) async fn device_id(&mut self, name: &str) -> String {
        self.screen(name).await.device_id
    }

    pub(crate) async fn set_passcode(
        &mut self,
        name: &str,
        scope: pb::CredentialScope,
        current: &str,
        new: &str,
    ) {
        self.harness
            .set_passcode(pb::SetPasscodeRequest {
                name: name.to_string(),
                scope: scope as i32,
                current_passcode: current.to_string(),
                new_passcode: new.to_string(),
            })
            .await
            .unwrap();
    }

    /// Types a passcode; true when it unlocked the store.
    pub(crate) async fn enter(
        &mut self,
        name: &str,
        scope: pb::CredentialScope,
        passcode: &str,
    ) -> bool {
        self.harness
            .enter_passcode(pb::EnterPasscodeRequest {
                name: name.to_string(),
                scope: scope as i32,
                passcode: passcode.to_string(),
            })
            .await
            .unwrap()
            .into_inner()
            .unlocked
    }

    pub(crate) async fn write(
        &mut self,
        name: &str,
        scope: pb::CredentialScope,
        key: &str,
        value: &[u8],
    ) {
        self.harness
            .write_user_data(pb::WriteUserDataRequest {
                name: name.to_string(),
                scope: scope as i32,
                key: key.to_string(),
                value: value.to_vec(),
            })
            .await
            .unwrap();
    }

    pub(crate) async fn read(
        &mut self,
        name: &str,
        scope: pb::CredentialScope,
        key: &str,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        Ok(self
            .harness
            .read_user_data(pb::ReadUserDataRequest {
                name: name.to_string(),
                scope: scope as i32,
                key: key.to_string(),
            })
            .await?
            .into_inner()
            .value)
    }

    pub(crate) async fn lock(&mut self, name: &str, scope: pb::CredentialScope) {
        self.harness
            .lock(pb::StoreRef {
                name: name.to_string(),
                scope: scope as i32,
            })
            .await
            .unwrap();
    }

    pub(crate) fn store(screen: &pb::Screen, scope: pb::CredentialScope) -> &pb::StoreStatus {
        screen
            .stores
            .iter()
            .find(|s| s.scope == scope as i32)
            .expect("the screen shows the store")
    }
}

async fn launch_agent(
    gateway: &str,
    state_dir: &std::path::Path,
    enrollment_token: &str,
    devices: &[DeviceSpec],
) -> (Arc<Fleet>, DeviceHarnessClient<Channel>, AgentRun) {
    let fleet = Fleet::load(FleetConfig {
        control_plane: gateway.to_string(),
        state_dir: Some(state_dir.to_path_buf()),
        enrollment_token: Some(enrollment_token.to_string()),
        kdf: KdfParams::LIGHT,
        devices: devices.to_vec(),
        clock: Arc::new(droidfleet_agent::clock::SystemClock),
        connections: 1,
        faults: Default::default(),
    })
    .await
    .unwrap();
    let (stop, stopped) = watch::channel(false);
    let fleet_task = tokio::spawn(fleet.clone().run(stopped.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let harness_address = format!("http://{}", listener.local_addr().unwrap());
    let mut harness_stop = stopped;
    let harness_task = tokio::spawn({
        let fleet = fleet.clone();
        async move {
            let _ = droidfleet_agent::harness::serve(fleet, listener, async move {
                let _ = harness_stop.wait_for(|s| *s).await;
            })
            .await;
        }
    });
    let harness = DeviceHarnessClient::connect(harness_address).await.unwrap();
    (
        fleet,
        harness,
        AgentRun {
            stop,
            fleet: fleet_task,
            harness: harness_task,
        },
    )
}

/// A device played by hand over the DeviceGateway: enrolls, opens sessions, receives signed
/// commands and says whatever the test wants it to say.
pub(crate) struct RawDevice {
    pub device_id: String,
    pub credential: String,
    pub signing_key: Vec<u8>,
    pub client: DeviceGatewayClient<Channel>,
}

impl RawDevice {
    pub(crate) async fn gateway(address: &str) -> DeviceGatewayClient<Channel> {
        DeviceGatewayClient::connect(address.to_string())
            .await
            .unwrap()
    }

    pub(crate) async fn enroll(
        address: &str,
        enrollment_token: &str,
        ownership: pb::Ownership,
        name: &str,
    ) -> RawDevice {
        let mut client = RawDevice::gateway(address).await;
        let response = client
            .enroll(pb::EnrollRequest {
                enrollment_token: enrollment_token.to_string(),
                ownership: ownership as i32,
                display_name: name.to_string(),
            })
            .await
            .unwrap()
            .into_inner();
        RawDevice {
            device_id: response.device_id,
            credential: response.device_credential,
            signing_key: response.command_signing_public_key,
            client,
        }
    }

    pub(crate) fn hello(&self) -> pb::DeviceMessage {
        hello(&self.device_id)
    }

    /// Opens this device's session with a plain Hello.
    pub(crate) async fn open(&self) -> RawSession {
        self.open_with(&self.credential, vec![self.hello()])
            .await
            .expect("the session opens")
    }

    /// Opens a session with `credential` and sends `messages` first (normally a Hello).
    pub(crate) async fn open_with(
        &self,
        credential: &str,
        messages: Vec<pb::DeviceMessage>,
    ) -> Result<RawSession, tonic::Status> {
        open_session(&self.client, Some(credential), messages).await
    }

    /// Sends one escrow token for `scope` on a short session, as the management app would.
    pub(crate) async fn escrow(&self, scope: pb::CredentialScope) {
        let session = self.open().await;
        session
            .send(pb::device_message::Body::EscrowToken(
                pb::EscrowTokenUpdate {
                    scope: scope as i32,
                    token: vec![7; 32],
                },
            ))
            .await;
        session.close().await;
    }
}

pub(crate) fn hello(device_id: &str) -> pb::DeviceMessage {
    pb::DeviceMessage {
        body: Some(pb::device_message::Body::Hello(pb::Hello {
            device_id: device_id.to_string(),
            agent_version: "raw-test-device".into(),
            status: Some(pb::DeviceStatus { stores: vec![] }),
        })),
    }
}

pub(crate) async fn open_session(
    client: &DeviceGatewayClient<Channel>,
    credential: Option<&str>,
    messages: Vec<pb::DeviceMessage>,
) -> Result<RawSession, tonic::Status> {
    let (tx, rx) = mpsc::channel(64);
    for message in messages {
        tx.send(message).await.unwrap();
    }
    let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    if let Some(credential) = credential {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {credential}").parse().unwrap(),
        );
    }
    let inbound = client.clone().session(request).await?.into_inner();
    Ok(RawSession { tx, inbound })
}

/// One open session of a [`RawDevice`].
pub(crate) struct RawSession {
    pub tx: mpsc::Sender<pb::DeviceMessage>,
    pub inbound: tonic::Streaming<pb::ControlMessage>,
}

impl RawSession {
    pub(crate) async fn send(&self, body: pb::device_message::Body) {
        // The control plane may have ended the session already; the test reads why from
        // `ended`.
        let _ = self.tx.send(pb::DeviceMessage { body: Some(body) }).await;
    }

    /// The next signed command, skipping policy updates; with its decoded body.
    pub(crate) async fn next_command(&mut self) -> (pb::CommandBody, pb::SignedCommand) {
        tokio::time::timeout(DEADLINE, async {
            loop {
                let message = self
                    .inbound
                    .message()
                    .await
                    .expect("the session stays open")
                    .expect("the session does not end");
                if let Some(pb::control_message::Body::Command(signed)) = message.body {
                    let body = pb::CommandBody::decode(&signed.body[..]).unwrap();
                    return (body, signed);
                }
            }
        })
        .await
        .expect("a command arrives in time")
    }

    pub(crate) async fn ack(&self, command_id: &str) {
        self.send(pb::device_message::Body::Ack(pb::CommandAck {
            command_id: command_id.to_string(),
        }))
        .await;
    }

    pub(crate) async fn result(&self, command_id: &str, success: bool) {
        self.send(pb::device_message::Body::Result(pb::CommandResult {
            command_id: command_id.to_string(),
            success,
            error_code: if success {
                0
            } else {
                pb::ErrorCode::TokenMismatch as i32
            },
            reason: if success {
                String::new()
            } else {
                "test device says no".into()
            },
            completed_at_ms: 1,
        }))
        .await;
    }

    /// Waits for the control plane to end the session and returns its status (`Ok` for a clean
    /// end).
    pub(crate) async fn ended(mut self) -> Result<(), tonic::Status> {
        tokio::time::timeout(DEADLINE, async {
            loop {
                match self.inbound.message().await {
                    Ok(Some(_)) => continue,
                    Ok(None) => return Ok(()),
                    Err(status) => return Err(status),
                }
            }
        })
        .await
        .expect("the session ends in time")
    }

    /// Ends the session from the device's side and waits for the control plane to finish it.
    pub(crate) async fn close(self) {
        let RawSession { tx, inbound } = self;
        drop(tx);
        let rest = RawSession {
            tx: mpsc::channel(1).0,
            inbound,
        };
        let _ = rest.ended().await;
    }
}

/// A `droidfleet` child process, killed with SIGKILL when dropped; its stderr goes to a log file.
pub(crate) struct Process {
    child: std::process::Child,
    /// What it printed after the ready prefix (its address).
    pub address: String,
}

impl Process {
    /// Starts `droidfleet args…` and waits for the stdout line starting with `ready_prefix`.
    pub(crate) fn start(args: &[&str], ready_prefix: &str, log: &std::path::Path) -> Process {
        use std::io::BufRead;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_droidfleet"))
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = std::io::BufReader::new(stdout).lines();
        let address = loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("droidfleet exited before printing {ready_prefix:?}"))
                .unwrap();
            if let Some(address) = line.strip_prefix(ready_prefix) {
                break address.trim().to_string();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Process { child, address }
    }

    /// SIGKILL, and wait until it is gone.
    pub(crate) fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
