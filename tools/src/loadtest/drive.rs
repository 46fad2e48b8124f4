//! The run up to the measured resets: admin clients, the enrollment token, the fleet enrolled
//! and connected (`--connect-only` stops there), then the setup (the users' passcodes, the
//! escrowed tokens, the policies, the pending-token devices), then the measured phase
//! (`resets.rs`); the fleet stops whatever the outcome.

use super::answers::Answers;
use super::args::{ALL_AT_ONCE_CONCURRENCY, LoadtestArgs};
use super::control_plane::ControlPlane;
use super::error::LoadtestError;
use super::measure::Snapshot;
use super::metrics_endpoint::MetricsEndpoint;
use super::model::{DevicePlan, Fault};
use super::progress::{self, Progress};
use super::report::{DeviceRecord, Tally};
use super::resets::{Schedule, request_reset, reset_all};
use super::series::TimeSeries;
use super::wall::{Phase, Wall};
use crate::admin::format::{error_name, state_name};
use crate::admin::{AdminError, Client};
use droidfleet_agent::device::Scope;
use droidfleet_agent::fleet::{DeviceSpec, Fleet, FleetConfig, RampUp};
use droidfleet_control_plane::grpc::convert::policy_to_pb;
use droidfleet_proto::v1 as pb;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// What the run measured, before it becomes a report.
pub(super) struct Run {
    /// Each device's last measured reset.
    pub devices: Vec<DeviceRecord>,
    /// Every measured reset's figures.
    pub tally: Tally,
    /// The measured phase second by second.
    pub time_series: TimeSeries,
    pub completed: bool,
    pub setup_resets: usize,
    pub setup_s: f64,
    pub connect_s: f64,
    pub reset_phase_s: f64,
    pub before_connect: Snapshot,
    pub after_connect: Snapshot,
    /// With --restart-control-plane: how the restart went.
    pub restart: Option<Restart>,
    /// The agent's Prometheus text at the end, for the injected-fault counts.
    pub agent_metrics: String,
    /// How late the issuing loop was against the --rate schedule at worst.
    pub max_issue_lag_ms: f64,
    /// Devices whose escrowed token never reached the control plane during the setup.
    pub unescrowed: usize,
}

/// The control plane killed with SIGKILL and started again once the fleet was connected.
pub(super) struct Restart {
    /// From the kill until every device had seen its session end.
    pub disconnect_s: f64,
    /// From starting the new process until it listened (it loads the store's hot state first).
    pub start_s: f64,
    /// From the new process listening until every device was connected again.
    pub reconnect_s: f64,
    /// The new process right after it listened, before any device reconnected.
    pub started: Snapshot,
}

/// Everything the per-device tasks share.
pub(super) struct Shared {
    pub fleet: Arc<Fleet>,
    /// A few admin connections, so thousands of watch streams are not all multiplexed over one
    /// HTTP/2 connection (and its concurrent-stream limit).
    pub admins: Vec<Client>,
    pub plans: Vec<DevicePlan>,
    pub device_ids: Vec<String>,
    pub answers: Arc<Answers>,
    /// The live fleet wall, with --console.
    pub wall: Option<Arc<Wall>>,
}

impl Shared {
    pub(super) fn admin(&self, index: usize) -> &Client {
        &self.admins[index % self.admins.len()]
    }
}

/// Admin clients (each its own HTTP/2 connection) the run spreads its calls over.
pub(super) const ADMIN_CONNECTIONS: usize = 4;

/// Enrolls and connects the fleet, prepares it, and runs the measured resets (see the module
/// documentation of `loadtest` for the order); the fleet is stopped whatever the outcome.
pub(super) async fn drive(
    args: &LoadtestArgs,
    plans: Vec<DevicePlan>,
    control_plane: &mut ControlPlane,
    deadline: Instant,
    wall: Option<Arc<Wall>>,
    metrics: Option<&mut MetricsEndpoint>,
) -> Result<Run, LoadtestError> {
    let setup_started = Instant::now();
    let mut admins = Vec::new();
    for _ in 0..ADMIN_CONNECTIONS {
        admins.push(
            Client::connect(
                &control_plane.address,
                control_plane.ca,
                &control_plane.admin_token,
            )
            .await?,
        );
    }
    let enrollment = admins[0]
        .create_enrollment_token(pb::CreateEnrollmentTokenRequest {
            // --devices is at most 1,000,000 (checked with the options).
            max_uses: u32::try_from(args.devices).unwrap_or(u32::MAX),
            ttl_seconds: args.deadline + 600,
            ..Default::default()
        })
        .await?
        .enrollment_token;

    let before_connect = Snapshot::take(control_plane);
    let connect_started = Instant::now();
    let fleet = Fleet::load(FleetConfig {
        control_plane: control_plane.address.clone(),
        // In memory: a state file and a sync per change would measure the disk.
        state_dir: None,
        enrollment_token: Some(enrollment),
        kdf: args.argon2.params(),
        devices: plans
            .iter()
            .map(|p| DeviceSpec {
                name: p.name.clone(),
                ownership: p.ownership,
                build: p.build,
            })
            .collect(),
        clock: Arc::new(droidfleet_agent::clock::SystemClock),
        connections: args.connections,
        faults: args.faults(),
    })
    .await
    .map_err(LoadtestError::LoadFleet)?;
    if let Some(endpoint) = metrics {
        endpoint.serve(fleet.metrics().clone());
    }
    if let Some(wall) = &wall {
        wall.attach_fleet(
            fleet.clone(),
            plans.iter().map(|p| p.name.clone()).collect(),
        );
    }
    let (fleet_stop, fleet_stopped) = watch::channel(false);
    let ramp = RampUp {
        window_ms: args.ramp_up_ms,
        seed: args.seed,
    };
    let agent = tokio::spawn(fleet.clone().run_ramped(fleet_stopped, ramp));
    let (answers_stop, answers_stopped) = watch::channel(false);
    let mut answers_task = None;

    let outcome = async {
        eprintln!(
            "enrolling and connecting {} devices over {} connection(s)…",
            plans.len(),
            args.connections.min(plans.len())
        );
        wait_connected(&fleet, plans.len(), deadline).await?;
        let connect_s = connect_started.elapsed().as_secs_f64();
        let after_connect = Snapshot::take(control_plane);
        let mut run = Run {
            devices: Vec::new(),
            tally: Tally::new(),
            time_series: TimeSeries::default(),
            completed: true,
            setup_resets: 0,
            setup_s: 0.0,
            connect_s,
            reset_phase_s: 0.0,
            before_connect,
            after_connect,
            restart: None,
            agent_metrics: String::new(),
            max_issue_lag_ms: 0.0,
            unescrowed: 0,
        };
        if args.restart_control_plane {
            run.restart = Some(restart(&fleet, control_plane, plans.len(), deadline).await?);
        }
        if args.connect_only {
            run.setup_s = setup_started.elapsed().as_secs_f64();
            return Ok(run);
        }
        if let Some(wall) = &wall {
            wall.set_phase(Phase::SettingUp);
        }
        let device_ids = device_ids(&fleet, &plans)?;
        let (answers, dispatcher) = Answers::start(fleet.clone(), answers_stopped);
        answers_task = Some(dispatcher);
        let shared = Arc::new(Shared {
            fleet: fleet.clone(),
            admins,
            plans,
            device_ids,
            answers,
            wall: wall.clone(),
        });
        let setup_limit = args.in_flight_limit().unwrap_or(ALL_AT_ONCE_CONCURRENCY);
        let prepared = prepare(&shared, setup_limit, deadline).await?;
        run.setup_resets = prepared.setup_resets;
        run.unescrowed = prepared.unescrowed.len();
        run.setup_s = setup_started.elapsed().as_secs_f64();

        match args.duration {
            Some(period) => eprintln!(
                "resetting passcodes at {} per second for {}…",
                args.rate,
                humantime::format_duration(period)
            ),
            None => eprintln!("resetting {} passcodes…", shared.plans.len()),
        }
        if let Some(wall) = &wall {
            wall.set_phase(Phase::Resetting);
        }
        let reset_started = Instant::now();
        let schedule = Schedule {
            rate: args.rate,
            limit: args.in_flight_limit(),
            period: args.duration,
        };
        let phase = reset_all(&shared, schedule, &prepared.unescrowed, deadline).await;
        run.devices = phase.records;
        run.tally = phase.tally;
        run.time_series = phase.time_series;
        run.completed = phase.completed;
        run.max_issue_lag_ms = phase.max_issue_lag_ms;
        run.reset_phase_s = reset_started.elapsed().as_secs_f64();
        Ok::<_, LoadtestError>(run)
    }
    .await;
    let agent_metrics = fleet.metrics().render();
    let _ = answers_stop.send(true);
    if let Some(task) = answers_task {
        let _ = task.await;
    }
    let _ = fleet_stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), agent).await;
    outcome.map(|run| Run {
        agent_metrics,
        ..run
    })
}

/// Kills the control plane with SIGKILL, waits until every device has seen its session end,
/// starts the control plane again and waits until every device is connected again.
async fn restart(
    fleet: &Arc<Fleet>,
    control_plane: &mut ControlPlane,
    devices: usize,
    deadline: Instant,
) -> Result<Restart, LoadtestError> {
    eprintln!("killing the control plane (SIGKILL) and starting it again…");
    let killed = Instant::now();
    control_plane.kill().await?;
    // The new process starts once every device has seen its session end, so the figure below
    // is the whole fleet's reconnection.
    let metrics = fleet.metrics();
    let connected = || usize::try_from(metrics.devices_connected()).unwrap_or(usize::MAX);
    while connected() > 0 {
        if Instant::now() >= deadline {
            return Err(LoadtestError::DisconnectDeadline {
                connected: connected(),
                devices,
            });
        }
        tokio::time::sleep(CONNECT_POLL).await;
    }
    let disconnected = Instant::now();
    control_plane.start_again().await?;
    let listening = Instant::now();
    let started = Snapshot::take(control_plane);
    wait_connected(fleet, devices, deadline).await?;
    Ok(Restart {
        disconnect_s: disconnected.duration_since(killed).as_secs_f64(),
        start_s: listening.duration_since(disconnected).as_secs_f64(),
        reconnect_s: listening.elapsed().as_secs_f64(),
        started,
    })
}

/// How often the connect wait reads the agent's connected-devices gauge.
const CONNECT_POLL: Duration = Duration::from_millis(25);

/// Waits until every device has enrolled and holds an open session at the same time.
///
/// Reads the agent's gauge of connected devices rather than following each device's screen
/// changes: with 100,000 devices connecting, a subscriber would make the agent build a screen
/// on every change, and falling behind the broadcast would force a rescan of every device each
/// time, O(n²) in all. The gauge costs one atomic read per poll.
async fn wait_connected(
    fleet: &Arc<Fleet>,
    devices: usize,
    deadline: Instant,
) -> Result<(), LoadtestError> {
    let metrics = fleet.metrics();
    let progress = Progress::new(&progress::group(), "connect", "connected", devices);
    loop {
        let connected = usize::try_from(metrics.devices_connected()).unwrap_or(usize::MAX);
        progress.set(connected.min(devices));
        if connected >= devices {
            progress.finish();
            return Ok(());
        }
        if Instant::now() >= deadline {
            progress.finish();
            return Err(LoadtestError::ConnectDeadline { connected, devices });
        }
        tokio::time::sleep(CONNECT_POLL).await;
    }
}

/// Every device's control-plane id, in plan order; each device is connected, so enrolled.
fn device_ids(fleet: &Fleet, plans: &[DevicePlan]) -> Result<Vec<String>, LoadtestError> {
    plans
        .iter()
        .map(|p| {
            fleet
                .screen(&p.name)?
                .device_id
                .ok_or_else(|| LoadtestError::NoDeviceId {
                    device: p.name.clone(),
                })
        })
        .collect()
}

/// Runs `job(i)` for every device index with at most `limit` at once, all within `deadline`;
/// the first error stops the rest.
async fn for_each_device<F, Fut>(
    what: &'static str,
    count: usize,
    limit: usize,
    deadline: Instant,
    job: F,
) -> Result<(), LoadtestError>
where
    F: Fn(usize) -> Option<Fut>,
    Fut: Future<Output = Result<(), LoadtestError>> + Send + 'static,
{
    eprintln!("{what}…");
    let all = async {
        let permits = Arc::new(Semaphore::new(limit));
        let mut tasks = JoinSet::new();
        for index in 0..count {
            let Some(work) = job(index) else { continue };
            let permit = permits
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            tasks.spawn(async move {
                let _permit = permit;
                work.await
            });
            while let Some(done) = tasks.try_join_next() {
                done??;
            }
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        Ok::<_, LoadtestError>(())
    };
    tokio::time::timeout_at(deadline, all)
        .await
        .map_err(|_| LoadtestError::StepDeadline { step: what })?
        .map_err(|source| LoadtestError::Setup {
            step: what,
            source: Box::new(source),
        })
}

fn scope_pb(scope: Scope) -> pb::CredentialScope {
    match scope {
        Scope::Device => pb::CredentialScope::Device,
        Scope::WorkProfile => pb::CredentialScope::WorkProfile,
    }
}

/// How long the escrow wait goes on without any device's token arriving before it gives up on
/// the rest.
const ESCROW_PATIENCE: Duration = Duration::from_secs(10);

/// Waits until the control plane holds the escrowed token of each device's target store,
/// following the fleet over one WatchDevices stream: the control plane sends each device once,
/// then only the devices that change, so the wait costs what the devices' own reports do (a
/// ListDevices poll would read the whole fleet each time). Returns the indices of devices whose
/// token never arrived: once none has arrived for [`ESCROW_PATIENCE`], the run goes on without
/// them rather than hide the loss, and their resets show what it costs.
async fn wait_escrowed(shared: &Shared, deadline: Instant) -> Result<Vec<usize>, LoadtestError> {
    const RPC: &str = "WatchDevices";
    eprintln!("waiting for the control plane to hold every escrowed token…");
    let mut waiting: HashMap<&str, (usize, i32)> = shared
        .device_ids
        .iter()
        .zip(&shared.plans)
        .enumerate()
        .map(|(i, (id, p))| (id.as_str(), (i, scope_pb(p.target_scope()) as i32)))
        .collect();
    let admin = shared.admin(0);
    let mut stream =
        tokio::time::timeout_at(deadline, admin.watch_devices(shared.device_ids.clone()))
            .await
            .map_err(|_| LoadtestError::RpcDeadline { rpc: RPC })??;
    while !waiting.is_empty() {
        // Give up on the rest once no token has arrived for a while, or at the deadline.
        let patience = (Instant::now() + ESCROW_PATIENCE).min(deadline);
        let device = match tokio::time::timeout_at(patience, stream.message()).await {
            Ok(Ok(Some(device))) => device,
            Ok(Ok(None)) => {
                return Err(AdminError::StreamEnded {
                    rpc: RPC,
                    id: format!("{} device(s)", shared.device_ids.len()),
                }
                .into());
            }
            Ok(Err(status)) => return Err(AdminError::Rpc { rpc: RPC, status }.into()),
            Err(_) if Instant::now() >= deadline => {
                return Err(LoadtestError::EscrowDeadline {
                    waiting: waiting.len(),
                });
            }
            Err(_) => break,
        };
        let id = device.device_id.as_str();
        if waiting
            .get(id)
            .is_some_and(|(_, scope)| device.escrowed_token_scopes.contains(scope))
        {
            waiting.remove(id);
        }
    }
    let mut missing: Vec<usize> = waiting.into_values().map(|(i, _)| i).collect();
    missing.sort_unstable();
    if !missing.is_empty() {
        tracing::warn!(
            devices = missing.len(),
            "escrowed tokens never reached the control plane; going on without them"
        );
    }
    Ok(missing)
}

/// What the setup did that the report must tell.
struct Prepared {
    setup_resets: usize,
    /// Devices whose escrowed token never reached the control plane.
    unescrowed: Vec<usize>,
}

/// Everything before the measured resets.
async fn prepare(
    shared: &Arc<Shared>,
    limit: usize,
    deadline: Instant,
) -> Result<Prepared, LoadtestError> {
    let n = shared.plans.len();
    for_each_device("users setting their passcodes", n, limit, deadline, |i| {
        let s = shared.clone();
        Some(async move {
            let p = &s.plans[i];
            s.fleet
                .set_passcode(&p.name, Scope::Device, None, p.device_pin.clone())
                .await?;
            if let Some(work) = &p.work_password {
                // The work challenge becomes separate; Android asks for the device PIN first.
                s.fleet
                    .set_passcode(
                        &p.name,
                        Scope::WorkProfile,
                        Some(p.device_pin.clone()),
                        work.clone(),
                    )
                    .await?;
            }
            Ok(())
        })
    })
    .await?;

    let unescrowed = wait_escrowed(shared, deadline).await?;

    for_each_device("assigning passcode policies", n, limit, deadline, |i| {
        let s = shared.clone();
        (s.plans[i].fault != Fault::NoPolicy).then_some(async move {
            let admin = s.admin(i);
            let plan = &s.plans[i];
            admin
                .assign_passcode_policy(pb::AssignPasscodePolicyRequest {
                    device_id: s.device_ids[i].clone(),
                    scope: scope_pb(plan.target_scope()) as i32,
                    policy: Some(policy_to_pb(&plan.policy())),
                })
                .await?;
            Ok(())
        })
    })
    .await?;

    // The agent has no call that leaves an escrowed token pending: tokens are made at
    // enrollment, before the user's passcode, so they are active, and an active token survives
    // a reboot. A reset is what leaves one pending (its rotated token waits for the user's next
    // entry); the simulated user of these devices never enters it. The reboot then loses that
    // pending token and the management app escrows a fresh one, pending too: the state a
    // phone is in when its user has not unlocked it since a token change.
    // A device without an escrowed token cannot take the setup reset; its measured reset shows
    // the loss instead.
    let pending: Vec<usize> = (0..n)
        .filter(|i| shared.plans[*i].fault == Fault::PendingToken && !unescrowed.contains(i))
        .collect();
    for_each_device(
        "preparing the pending-token devices (a setup reset, then a reboot)",
        n,
        limit,
        deadline,
        |i| {
            let s = shared.clone();
            let wanted = s.plans[i].fault == Fault::PendingToken && !unescrowed.contains(&i);
            wanted.then_some(async move {
                let p = &s.plans[i];
                let admin = s.admin(i);
                let action = request_reset(admin, &s.device_ids[i], p.setup_passcode()).await?;
                s.answers.answered(&p.name, &action.action_id).await?;
                let last = admin.watch_action(&action.action_id, false, |_| {}).await?;
                if state_name(last.state) != "done" {
                    return Err(LoadtestError::SetupReset {
                        device: p.name.clone(),
                        state: state_name(last.state),
                        error_code: error_name(last.error_code),
                    });
                }
                s.fleet.reboot(&p.name).await?;
                Ok(())
            })
        },
    )
    .await?;
    Ok(Prepared {
        setup_resets: pending.len(),
        unescrowed,
    })
}
