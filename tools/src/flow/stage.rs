//! Where a flow runs: a control plane and a fleet the runner starts itself for each flow
//! (embedded, on one manual clock that `advance` moves), or a running control plane and agent
//! reached by URL. Either way the runner acts only through the public APIs: the admin API as
//! its own admin and as one principal per role, and the agent's DeviceHarness.

use super::FlowError;
use super::model::Flow;
use crate::admin::{AdminError, Client, Token};
use crate::embedded::EmbeddedControlPlane;
use droidfleet_agent::device::{KdfParams, Ownership};
use droidfleet_agent::fleet::{DeviceSpec, Fleet, FleetConfig};
use droidfleet_control_plane::clock::{Clock, ManualClock, SystemClock};
use droidfleet_proto::tls::CaFingerprint;
use droidfleet_proto::v1 as pb;
use droidfleet_proto::v1::device_harness_client::DeviceHarnessClient;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tonic::transport::Channel;

/// How long the devices of a flow may take to enroll, connect and escrow their tokens.
const READY_DEADLINE: Duration = Duration::from_secs(30);

/// What `flow run` runs against.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    /// A control plane and a fleet started for each flow, in this process.
    Embedded { kdf: KdfParams },
    /// A running control plane (admin API and gateway at `control_plane`, acted on with
    /// `token`) and a running agent whose harness is at `harness`.
    External {
        control_plane: String,
        /// The CA the control plane's certificate chains to (none for plaintext).
        ca: Option<CaFingerprint>,
        token: Token,
        harness: String,
    },
}

/// The agent's clock trait over the control plane's manual clock, so that one `advance` moves
/// both sides' time together.
struct FleetClock(ManualClock);

impl droidfleet_agent::clock::Clock for FleetClock {
    fn now_ms(&self) -> u64 {
        self.0.now()
    }
}

/// A flow's control plane and devices, ready for its first step.
pub(crate) struct Stage {
    /// The runner's own admin: what admin steps act as without `as`, and what the report's
    /// admin view and the assertions read through.
    pub(crate) admin: Client,
    pub(crate) harness: DeviceHarnessClient<Channel>,
    /// The control plane's and the fleet's clock, when the runner started them.
    pub(crate) clock: Option<ManualClock>,
    /// One client per role the flow acts as, each a principal holding only that role.
    pub(crate) roles: BTreeMap<String, RoleActor>,
    /// Each flow device's id at the control plane.
    pub(crate) device_ids: BTreeMap<String, String>,
    /// What the runner started, stopped with the stage.
    embedded: Option<EmbeddedRun>,
}

pub(crate) struct RoleActor {
    pub(crate) principal: String,
    pub(crate) client: Client,
}

struct EmbeddedRun {
    control_plane: EmbeddedControlPlane,
    stop: watch::Sender<bool>,
    fleet: tokio::task::JoinHandle<()>,
    harness: tokio::task::JoinHandle<()>,
    /// The control plane's database; removed when the flow's stage is.
    _dir: tempfile::TempDir,
}

impl Stage {
    /// Starts (embedded) or reaches (external) what `flow` needs, creates a principal per role
    /// it acts as, and waits until each of its devices is enrolled, connected, and its tokens
    /// escrowed with the control plane.
    pub(crate) async fn prepare(target: &Target, flow: &Flow) -> Result<Stage, FlowError> {
        let mut stage = match target {
            Target::Embedded { kdf } => Stage::embedded(flow, *kdf).await?,
            Target::External {
                control_plane,
                ca,
                token,
                harness,
            } => {
                let admin = Client::connect(control_plane, *ca, token).await?;
                let harness = DeviceHarnessClient::connect(harness.clone())
                    .await
                    .map_err(|source| FlowError::Harness {
                        address: harness.clone(),
                        source,
                    })?;
                Stage {
                    admin,
                    harness,
                    clock: None,
                    roles: BTreeMap::new(),
                    device_ids: BTreeMap::new(),
                    embedded: None,
                }
            }
        };
        stage.check_devices(flow).await?;
        stage.wait_ready(flow).await?;
        stage.create_roles(flow).await?;
        Ok(stage)
    }

    async fn embedded(flow: &Flow, kdf: KdfParams) -> Result<Stage, FlowError> {
        let dir = tempfile::tempdir().map_err(FlowError::TempDir)?;
        let clock = ManualClock::new(SystemClock.now());
        let control_plane =
            EmbeddedControlPlane::start(&dir.path().join("control-plane"), Arc::new(clock.clone()))
                .await?;
        let admin = Client::connect(
            &control_plane.address,
            Some(control_plane.ca),
            &control_plane.admin_token,
        )
        .await?;
        let enrollment = admin
            .create_enrollment_token(pb::CreateEnrollmentTokenRequest {
                max_uses: flow.devices.len().max(1) as u32,
                ttl_seconds: 600,
                ..Default::default()
            })
            .await?;
        let fleet = Fleet::load(FleetConfig {
            control_plane: control_plane.address.clone(),
            // A flow's devices live as long as its run: nothing to keep on disk.
            state_dir: None,
            enrollment_token: Some(enrollment.enrollment_token),
            kdf,
            devices: flow
                .devices
                .iter()
                .map(|d| DeviceSpec {
                    name: d.name.clone(),
                    ownership: d.ownership,
                    build: d.build,
                })
                .collect(),
            clock: Arc::new(FleetClock(clock.clone())),
            connections: 1,
            faults: Default::default(),
        })
        .await?;
        let (stop, stopped) = watch::channel(false);
        let fleet_task = tokio::spawn(fleet.clone().run(stopped.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(FlowError::Listen)?;
        let harness_address = format!(
            "http://{}",
            listener.local_addr().map_err(FlowError::Listen)?
        );
        let mut harness_stopped = stopped;
        let harness_task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = harness_stopped.wait_for(|s| *s).await;
            };
            if let Err(error) = droidfleet_agent::harness::serve(fleet, listener, shutdown).await {
                tracing::error!(%error, "the embedded harness stopped");
            }
        });
        let harness = DeviceHarnessClient::connect(harness_address.clone())
            .await
            .map_err(|source| FlowError::Harness {
                address: harness_address,
                source,
            })?;
        Ok(Stage {
            admin,
            harness,
            clock: Some(clock),
            roles: BTreeMap::new(),
            device_ids: BTreeMap::new(),
            embedded: Some(EmbeddedRun {
                control_plane,
                stop,
                fleet: fleet_task,
                harness: harness_task,
                _dir: dir,
            }),
        })
    }

    /// Every flow device must be hosted by the agent with the type the flow gives it.
    async fn check_devices(&mut self, flow: &Flow) -> Result<(), FlowError> {
        let hosted = self
            .harness
            // A flow hosts far fewer devices than the harness's default page.
            .list_devices(pb::HarnessListDevicesRequest::default())
            .await
            .map_err(|status| FlowError::HarnessCall {
                rpc: "ListDevices",
                status,
            })?
            .into_inner()
            .devices;
        for device in &flow.devices {
            let wanted = ownership_pb(device.ownership) as i32;
            match hosted.iter().find(|h| h.name == device.name) {
                Some(h) if h.ownership == wanted => {}
                Some(h) => {
                    return Err(FlowError::DeviceMismatch {
                        flow: flow.path.clone(),
                        line: device.pos.line,
                        col: device.pos.col,
                        problem: format!(
                            "the agent hosts {:?} as {}, the flow says {}",
                            device.name,
                            ownership_text(h.ownership),
                            device.ownership.as_str()
                        ),
                    });
                }
                None => {
                    return Err(FlowError::DeviceMismatch {
                        flow: flow.path.clone(),
                        line: device.pos.line,
                        col: device.pos.col,
                        problem: format!(
                            "the agent hosts no device {:?} (start it with --device {}:{})",
                            device.name,
                            device.ownership.as_str(),
                            device.name
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// Waits (bounded) until every device is enrolled and connected (from the harness's screen
    /// stream) and the control plane holds an escrowed token for each of its stores (from the
    /// admin API's device stream): a reset before that would fail for a reason no user meets.
    async fn wait_ready(&mut self, flow: &Flow) -> Result<(), FlowError> {
        let ready = async {
            for device in &flow.devices {
                let mut screens = self
                    .harness
                    .watch_screens(pb::WatchScreensRequest {
                        name: device.name.clone(),
                    })
                    .await
                    .map_err(|status| FlowError::HarnessCall {
                        rpc: "WatchScreens",
                        status,
                    })?
                    .into_inner();
                let device_id = loop {
                    let screen = screens
                        .message()
                        .await
                        .map_err(|status| FlowError::HarnessCall {
                            rpc: "WatchScreens",
                            status,
                        })?
                        .ok_or(FlowError::HarnessCall {
                            rpc: "WatchScreens",
                            status: tonic::Status::unavailable("the screen stream ended"),
                        })?;
                    if screen.connected && !screen.device_id.is_empty() {
                        break screen.device_id;
                    }
                };
                let stores: Vec<i32> = if device.ownership.has_work_profile() {
                    vec![
                        pb::CredentialScope::Device as i32,
                        pb::CredentialScope::WorkProfile as i32,
                    ]
                } else {
                    vec![pb::CredentialScope::Device as i32]
                };
                self.admin
                    .wait_device(&device_id, |d| {
                        stores.iter().all(|s| d.escrowed_token_scopes.contains(s))
                    })
                    .await?;
                self.device_ids.insert(device.name.clone(), device_id);
            }
            Ok::<(), FlowError>(())
        };
        match tokio::time::timeout(READY_DEADLINE, ready).await {
            Ok(outcome) => outcome,
            Err(_) => Err(FlowError::NotReady {
                flow: flow.path.clone(),
                waited: READY_DEADLINE,
            }),
        }
    }

    /// A principal holding only that role, for each role the flow acts as (`as`, and `by` in
    /// audit checks). Against a running control plane the runner's token needs Roles.Manage;
    /// the principals are deleted when the flow ends.
    async fn create_roles(&mut self, flow: &Flow) -> Result<(), FlowError> {
        for (role, pos) in flow.roles() {
            self.create_role(&role)
                .await
                .map_err(|source| FlowError::Role {
                    flow: flow.path.clone(),
                    line: pos.line,
                    col: pos.col,
                    role: role.clone(),
                    source: Box::new(source),
                })?;
        }
        Ok(())
    }

    /// Makes a principal holding only `role` (once), through which steps act as that role.
    pub(crate) async fn create_role(&mut self, role: &str) -> Result<(), AdminError> {
        if self.roles.contains_key(role) {
            return Ok(());
        }
        let slug: String = role
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        let principal = format!("flow-{slug}-{}", SystemClock.now());
        let created = self
            .admin
            .create_principal(pb::CreatePrincipalRequest {
                name: principal.clone(),
                roles: vec![role.to_string()],
                ..Default::default()
            })
            .await?;
        let client = self.admin.with_token(&Token::new(&created.bearer_token))?;
        self.roles
            .insert(role.to_string(), RoleActor { principal, client });
        Ok(())
    }

    /// The devices' time now: the manual clock when the runner owns it, else this machine's.
    pub(crate) fn now_ms(&self) -> u64 {
        match &self.clock {
            Some(clock) => clock.now(),
            None => SystemClock.now(),
        }
    }

    /// Stops what the runner started; against a running control plane, deletes the principals
    /// it created.
    pub(crate) async fn finish(self) {
        match self.embedded {
            Some(run) => {
                let _ = run.stop.send(true);
                let _ = run.fleet.await;
                let _ = run.harness.await;
                run.control_plane.stop().await;
            }
            None => {
                for actor in self.roles.values() {
                    if let Err(error) = self.admin.delete_principal(actor.principal.clone()).await {
                        tracing::warn!(principal = %actor.principal, %error, "cannot delete a principal the flow created");
                    }
                }
            }
        }
    }
}

pub(crate) fn ownership_pb(ownership: Ownership) -> pb::Ownership {
    match ownership {
        Ownership::Cosu => pb::Ownership::Cosu,
        Ownership::Cobo => pb::Ownership::Cobo,
        Ownership::Cope => pb::Ownership::Cope,
        Ownership::Byod => pb::Ownership::Byod,
        Ownership::Aosp => pb::Ownership::Aosp,
    }
}

fn ownership_text(value: i32) -> String {
    crate::admin::format::ownership_name(value).to_lowercase()
}
