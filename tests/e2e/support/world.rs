//! The in-process world: a control plane and an agent both in this process, talking real gRPC
//! over loopback ([`World`]), or a control plane alone ([`Embedded`]) for tests that bring their
//! own devices. [`World`]'s control plane runs on a manual clock that starts at the wall clock's
//! now (the agent's devices keep the real clock); [`Embedded`] runs on the system clock.
//!
//! [`World`]'s agent can be stopped and started again on the same state directory (the devices
//! go offline and come back, as after a restart), or started against another gateway address (a
//! test's proxy).

use super::DEADLINE;
use super::admin::Admin;
use droidfleet_agent::device::{Build, KdfParams, Ownership};
use droidfleet_agent::fleet::{DeviceSpec, Fleet, FleetConfig};
use droidfleet_control_plane::clock::{Clock, ManualClock, SystemClock};
use droidfleet_control_plane::service::{Config, ControlPlane, TlsSource};
use droidfleet_proto::tls::CaFingerprint;
use droidfleet_proto::v1 as pb;
use droidfleet_proto::v1::device_harness_client::DeviceHarnessClient;
use std::sync::Arc;
use tokio::sync::watch;
use tonic::transport::Channel;

/// A control plane and an agent hosting named devices, all enrolled and connected.
pub(crate) struct World {
    /// The control plane itself, for what its API does not show (the purge runs).
    pub(crate) control_plane: Arc<ControlPlane>,
    /// The control plane's clock; tests advance it past TTLs and retention periods.
    pub(crate) clock: ManualClock,
    /// The control plane's admin API and device gateway, `http://127.0.0.1:<port>`, or `https://`
    /// when a test's `tune` asked for TLS.
    pub(crate) address: String,
    /// The CA the control plane's certificate chains to, when it serves TLS.
    pub(crate) ca: Option<CaFingerprint>,
    /// The bootstrap admin.
    pub(crate) admin: Admin,
    /// The agent's DeviceHarness, where the tests play the user; replaced when the agent restarts.
    pub(crate) harness: DeviceHarnessClient<Channel>,
    /// The harness's address, `http://127.0.0.1:<port>`, for the CLI.
    pub(crate) harness_address: String,
    /// The agent's fleet, for its screens and their change events; replaced when the agent
    /// restarts.
    pub(crate) fleet: Arc<Fleet>,
    /// The control plane's database directory; tests read the file to see what is stored.
    pub(crate) data_dir: tempfile::TempDir,
    /// The agent's state files; they outlive agent restarts.
    agent_dir: tempfile::TempDir,
    /// The token the agent's devices enrolled with; a restarted agent is given it again.
    enrollment_token: String,
    /// The devices the agent hosts, to start it again with the same ones.
    devices: Vec<DeviceSpec>,
    /// `None` while the agent is stopped.
    agent: Option<AgentRun>,
    /// Stops the control plane's server when the world is dropped.
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

impl World {
    /// Starts a control plane and an agent hosting `devices` (on the newest Android, AOSP), and
    /// waits until every device has enrolled and connected.
    pub(crate) async fn start(devices: &[(&str, Ownership)]) -> World {
        World::start_with(devices, |_| {}).await
    }

    pub(crate) async fn start_with(
        devices: &[(&str, Ownership)],
        tune: impl FnOnce(&mut Config),
    ) -> World {
        let devices: Vec<(&str, Ownership, Build)> = devices
            .iter()
            .map(|(name, ownership)| (*name, *ownership, Build::default()))
            .collect();
        World::start_builds(&devices, tune).await
    }

    /// As [`World::start_with`], each device on the Android given with it.
    pub(crate) async fn start_builds(
        devices: &[(&str, Ownership, Build)],
        tune: impl FnOnce(&mut Config),
    ) -> World {
        World::start_via(devices, tune, str::to_string).await
    }

    /// As [`World::start_builds`], with the agent reaching the control plane at the address
    /// `gateway` gives for the control plane's own (a test's relay, say) from the start: its
    /// enrollment goes there too.
    pub(crate) async fn start_via(
        devices: &[(&str, Ownership, Build)],
        tune: impl FnOnce(&mut Config),
        gateway: impl FnOnce(&str) -> String,
    ) -> World {
        let data_dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(SystemClock.now());
        let mut config = Config::new(data_dir.path());
        // Plaintext on loopback, explicitly: these tests look at what crosses the gateway (their
        // proxies); TLS itself is tested with `droidfleet serve` processes and the tools.
        config.tls = TlsSource::Plaintext;
        tune(&mut config);
        let opened = droidfleet_control_plane::server::open(config, Arc::new(clock.clone()))
            .await
            .unwrap();
        let token = std::fs::read_to_string(opened.bootstrap_token_path.unwrap())
            .unwrap()
            .trim()
            .to_string();
        let ca = opened.tls.as_ref().map(|tls| tls.ca_fingerprint());
        let scheme = if ca.is_some() { "https" } else { "http" };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("{scheme}://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut server_stop = stopped.clone();
        let control_plane = opened.control_plane.clone();
        tokio::spawn(droidfleet_control_plane::server::serve(
            opened.control_plane,
            opened.tls,
            listener,
            async move {
                let _ = server_stop.wait_for(|s| *s).await;
            },
        ));
        let mut admin = Admin::connect_pinned(&address, ca, Some(token)).await;
        let enrollment_token = admin
            .enrollment_token(devices.len().max(1) as u32, "")
            .await;
        let agent_dir = tempfile::tempdir().unwrap();
        let devices: Vec<DeviceSpec> = devices
            .iter()
            .map(|(name, ownership, build)| DeviceSpec {
                name: name.to_string(),
                ownership: *ownership,
                build: *build,
            })
            .collect();
        let (fleet, harness, harness_address, agent) = launch_agent(
            &gateway(&address),
            agent_dir.path(),
            &enrollment_token,
            &devices,
        )
        .await;
        let mut world = World {
            control_plane,
            clock,
            address,
            ca,
            admin,
            harness,
            harness_address,
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
        self.start_agent_detached_at(gateway).await;
        self.wait_all_connected().await;
    }

    /// Starts the agent with its devices talking to `gateway`, without waiting for them to
    /// connect (a test's impostor, say, which they must refuse).
    pub(crate) async fn start_agent_detached_at(&mut self, gateway: &str) {
        assert!(self.agent.is_none(), "stop the agent first");
        let (fleet, harness, harness_address, agent) = launch_agent(
            gateway,
            self.agent_dir.path(),
            &self.enrollment_token,
            &self.devices,
        )
        .await;
        self.fleet = fleet;
        self.harness = harness;
        self.harness_address = harness_address;
        self.agent = Some(agent);
    }

    /// The token the agent's devices enrolled with.
    /// Every column the control plane stores about a device, as bytes (text as UTF-8, numbers
    /// as decimal text), read from its database file as a thief of the file would.
    pub(crate) async fn device_row(
        &self,
        device_id: &str,
    ) -> std::collections::BTreeMap<String, Vec<u8>> {
        use sqlx::{Column, Row};
        let path = self
            .data_dir
            .path()
            .join(droidfleet_control_plane::server::DATABASE_FILE);
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(path)
            .read_only(true);
        let mut connection = <sqlx::SqliteConnection as sqlx::Connection>::connect_with(&options)
            .await
            .unwrap();
        let row = sqlx::query("SELECT * FROM devices WHERE id = ?")
            .bind(device_id)
            .fetch_one(&mut connection)
            .await
            .unwrap();
        let mut columns = std::collections::BTreeMap::new();
        for column in row.columns() {
            let name = column.name();
            let value = row
                .try_get::<Option<Vec<u8>>, _>(name)
                .ok()
                .flatten()
                .or_else(|| {
                    let text = row.try_get::<Option<String>, _>(name).ok().flatten();
                    text.map(String::into_bytes)
                })
                .or_else(|| {
                    let number = row.try_get::<Option<i64>, _>(name).ok().flatten();
                    number.map(|n| n.to_string().into_bytes())
                });
            if let Some(value) = value {
                columns.insert(name.to_string(), value);
            }
        }
        columns
    }

    pub(crate) fn enrollment_token(&self) -> &str {
        &self.enrollment_token
    }

    /// The state file of the agent's device `name`, as JSON (it holds the device credential).
    pub(crate) fn agent_state(&self, name: &str) -> serde_json::Value {
        let path = self.agent_dir.path().join(format!("{name}.json"));
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    /// Runs `droidfleet admin …` against the world's control plane as the bootstrap admin;
    /// resolves to whether it succeeded, its stdout and its stderr. The future borrows nothing,
    /// so a test can spawn it and go on playing the user meanwhile.
    pub(crate) fn cli(
        &self,
        args: &[&str],
    ) -> impl std::future::Future<Output = (bool, String, String)> + Send + 'static {
        self.cli_at(&self.address, args)
    }

    /// As [`World::cli`], with the CLI reaching the control plane at `server` (a relay, say).
    pub(crate) fn cli_at(
        &self,
        server: &str,
        args: &[&str],
    ) -> impl std::future::Future<Output = (bool, String, String)> + Send + 'static {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_droidfleet"));
        command.arg("admin").args(["--server", server]);
        if self.ca.is_some() {
            command
                .arg("--ca-file")
                .arg(self.data_dir.path().join("tls").join("ca.pem"));
        }
        command
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

    /// Follows the device's screen with WatchScreens until `ready` holds.
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
) -> (Arc<Fleet>, DeviceHarnessClient<Channel>, String, AgentRun) {
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
    let harness = DeviceHarnessClient::connect(harness_address.clone())
        .await
        .unwrap();
    (
        fleet,
        harness,
        harness_address,
        AgentRun {
            stop,
            fleet: fleet_task,
            harness: harness_task,
        },
    )
}

/// A control plane on a temporary database and a loopback port, on the system clock, served
/// until [`Embedded::stop`].
pub(crate) struct Embedded {
    /// The admin API and device gateway, `http://127.0.0.1:<port>`.
    pub(crate) address: String,
    /// The bootstrap admin's bearer token, for [`Embedded::admin`].
    admin_token: String,
    stop: watch::Sender<bool>,
    /// Awaited by [`Embedded::stop`], which fails the test if serving failed.
    server: tokio::task::JoinHandle<Result<(), droidfleet_control_plane::server::ServeError>>,
    /// Kept so the database outlives the server.
    _data_dir: tempfile::TempDir,
    /// For tests that wait on its background work ([`Embedded::purge_runs`]).
    control_plane: Arc<ControlPlane>,
}

impl Embedded {
    pub(crate) async fn start() -> Embedded {
        Embedded::start_with(|_| {}).await
    }

    /// As [`Embedded::start`], with `tune` changing the configuration first.
    pub(crate) async fn start_with(tune: impl FnOnce(&mut Config)) -> Embedded {
        let data_dir = tempfile::tempdir().unwrap();
        let mut config = Config::new(data_dir.path());
        tune(&mut config);
        // Plaintext on loopback, explicitly, as for [`World`].
        config.tls = TlsSource::Plaintext;
        let opened = droidfleet_control_plane::server::open(config, Arc::new(SystemClock))
            .await
            .unwrap();
        let control_plane = opened.control_plane.clone();
        let admin_token = std::fs::read_to_string(opened.bootstrap_token_path.unwrap()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let (stop, mut stopped) = watch::channel(false);
        let server = tokio::spawn(droidfleet_control_plane::server::serve(
            opened.control_plane,
            opened.tls,
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
            control_plane,
        }
    }

    /// The control plane's completed purge runs (passcodes and audit rows), changing after each.
    pub(crate) fn purge_runs(&self) -> watch::Receiver<u64> {
        self.control_plane.purge_runs()
    }

    pub(crate) async fn admin(&self) -> Admin {
        Admin::connect(&self.address, Some(self.admin_token.clone())).await
    }

    /// The bootstrap admin's bearer token, for tools that drive the admin API themselves.
    pub(crate) fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// Stops the server and waits until it has.
    pub(crate) async fn stop(self) {
        self.stop.send(true).unwrap();
        self.server.await.unwrap().unwrap();
    }
}
