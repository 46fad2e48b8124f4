//! `droidfleet loadtest`: a fleet of simulated devices against a control plane (an embedded one
//! on a temporary SQLite file and a loopback port by default, `--control-plane spawn` for a
//! child `droidfleet serve` process measured on its own, or `--control-plane URL`), with seeded
//! users, churn, reboots and injected faults, and a report of what happened and how fast,
//! next to two baselines measured in the same run.
//!
//! The flow: start or reach the control plane; enroll the fleet and wait until every device is
//! connected (`--connect-only` stops here); let each user set a device PIN (and a work password
//! on work-profile types); wait until the control plane holds each device's escrowed token;
//! assign passcode policies (except to the no-policy share); prepare the pending-token share;
//! then issue one reset per device at the target rate (a churned device goes offline just
//! before and comes back later), wait until the device has answered it (learned from the
//! agent, see `answers.rs`) and read its final state from the control plane, reboot the devices
//! chosen to, play each user (a seeded delay, maybe a typo, then the new passcode) and wait
//! until the control plane records the entry. Every wait is bounded by one global deadline. Then the
//! baselines: a bare tonic echo and the agent's Argon2 on every core.
//!
//! Only public APIs are used: the server's `open`/`serve` (or the `serve` command), the admin
//! gRPC API, and the agent's `Fleet` user operations.

mod answers;
mod baseline;
mod control_plane;
mod measure;
mod model;
mod progress;
mod report;

use crate::admin::{Client, error_name, state_name};
use anyhow::{Context, anyhow, bail, ensure};
use clap::ValueEnum;
use control_plane::{ControlPlane, Target};
use droidfleet_agent::cli::Argon2Preset;
use droidfleet_agent::device::{EntryOutcome, Scope};
use droidfleet_agent::faults::FaultConfig;
use droidfleet_agent::fleet::{DeviceSpec, Fleet, FleetConfig, RampUp};
use droidfleet_agent::seeded::Mix;
use droidfleet_proto::v1 as pb;
use measure::{LAG_TICK, LagProbe, Percentiles, ProcessSample};
use model::{DevicePlan, Fault};
use report::{DeviceRecord, Report};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Run a fleet of simulated devices against a control plane and report outcomes, latencies,
/// throughput and resource use.
#[derive(clap::Args, Debug)]
pub struct LoadtestArgs {
    /// How many devices to simulate.
    #[arg(long, default_value_t = 200)]
    devices: usize,
    /// Weights of the enrollment types, e.g. cosu=3,byod=1 (types left out get none).
    #[arg(long, default_value = "cosu=1,cobo=1,cope=1,byod=1,aosp=1")]
    mix: Mix,
    /// Seed of the behaviour model and of the injected faults: the same seed makes the same
    /// per-device decisions.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Resets issued per second; 0 issues them all at once (at most --concurrency in flight).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Cost of the simulated devices' passcode hashing.
    #[arg(long, value_enum, default_value_t = Argon2Preset::Light)]
    argon2: Argon2Preset,
    /// Mean time (exponentially distributed, capped at ten times the mean) before a user
    /// notices the reset and types the new passcode.
    #[arg(long, default_value_t = 200)]
    user_delay_ms: u64,
    /// Probability that a user first types a wrong passcode.
    #[arg(long, default_value_t = 0.1)]
    typo_probability: f64,
    /// Share of devices given no passcode policy (their reset ends failed / no_passcode_policy).
    #[arg(long, default_value_t = 0.05)]
    no_policy_share: f64,
    /// Share of devices whose token is pending when the reset arrives (failed /
    /// token_not_active).
    #[arg(long, default_value_t = 0.05)]
    pending_token_share: f64,
    /// Share of devices that go offline just before their reset is issued and come back after
    /// a seeded time (--offline-ms); the reset waits for them.
    #[arg(long, default_value_t = 0.05)]
    offline_share: f64,
    /// Mean time offline (exponentially distributed, capped at ten times the mean).
    #[arg(long, default_value_t = 500)]
    offline_ms: u64,
    /// Share of devices that reboot after their reset is applied, before their user enters the
    /// new passcode.
    #[arg(long, default_value_t = 0.05)]
    reboot_share: f64,
    /// Message-level faults on every device session, e.g.
    /// delay=0.05:250ms,duplicate=0.01,drop=0.005,disconnect=0.005 (probabilities per message,
    /// seeded by --seed), or none.
    #[arg(long, value_name = "SPEC", default_value = "none")]
    faults: FaultConfig,
    /// Where report.json and report.html (and a spawned control plane's log) are written.
    #[arg(long, default_value = "droidfleet-report")]
    report_dir: PathBuf,
    /// The control plane: `embedded` (in this process), `spawn` (a child `droidfleet serve`,
    /// measured as its own process), or the URL of a running one (its gateway and admin API).
    #[arg(long, value_name = "embedded|spawn|URL", default_value = "embedded")]
    control_plane: Target,
    /// With --control-plane URL: the PID of that control plane on this machine, to sample its
    /// memory and CPU from /proc.
    #[arg(long, value_name = "PID")]
    control_plane_pid: Option<u32>,
    /// With --control-plane URL: a file holding an admin's bearer token.
    #[arg(long, env = "DROIDFLEET_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// The whole run must end within this many seconds (a run of 100,000 devices needs more
    /// than the default).
    #[arg(long, default_value_t = 120)]
    deadline: u64,
    /// At most this many devices in flight at once (each: a reset, its watch, its user).
    /// Default: 512 when all resets are issued at once; no limit with --rate, so the rate is
    /// what shapes the load.
    #[arg(long, value_name = "N")]
    concurrency: Option<usize>,
    /// HTTP/2 connections the agent's devices share (device i uses connection i % K).
    #[arg(long, value_name = "K", default_value_t = 4)]
    connections: usize,
    /// Each device waits a seeded delay in [0, R) ms before its first connection.
    #[arg(long, value_name = "R", default_value_t = 0)]
    ramp_up_ms: u64,
    /// Enroll and connect the fleet, measure memory per device on each side, and stop: no
    /// passcodes, no resets, no baselines.
    #[arg(long, conflicts_with_all = ["rate", "offline_share", "reboot_share", "concurrency"])]
    connect_only: bool,
    /// Skip the baselines (tonic echo, Argon2 on every core) measured after the run.
    #[arg(long)]
    no_baselines: bool,
    /// Echo baseline: calls per round (three rounds).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    echo_calls: usize,
    /// Argon2 baseline: hashes per round (three rounds). Default: 10000 with the light preset,
    /// 40 with the realistic one (about a quarter of a second per round on two cores).
    #[arg(long, value_name = "N")]
    argon2_hashes: Option<usize>,
}

/// In-flight limit when all resets are issued at once: enough to saturate the control plane,
/// few enough that thousands of watch streams do not pile onto it at the same moment.
const ALL_AT_ONCE_CONCURRENCY: usize = 512;
/// A connection is a socket on each side; the machine allows 20,000 files per process.
const MAX_CONNECTIONS: usize = 10_000;

impl LoadtestArgs {
    fn behaviour(&self) -> model::Behaviour {
        model::Behaviour {
            seed: self.seed,
            user_delay_mean_ms: self.user_delay_ms,
            typo_probability: self.typo_probability,
            no_policy_share: self.no_policy_share,
            pending_token_share: self.pending_token_share,
            offline_share: self.offline_share,
            offline_mean_ms: self.offline_ms,
            reboot_share: self.reboot_share,
        }
    }

    fn check(&self) -> anyhow::Result<()> {
        ensure!(
            (1..=1_000_000).contains(&self.devices),
            "--devices {}: give 1 to 1000000",
            self.devices
        );
        ensure!(
            self.rate.is_finite() && self.rate >= 0.0,
            "--rate {}: give 0 (all at once) or a positive number of resets per second",
            self.rate
        );
        ensure!(self.deadline > 0, "--deadline must be at least 1 second");
        ensure!(
            self.concurrency != Some(0),
            "--concurrency 0: give at least 1 (or leave it out)"
        );
        ensure!(
            (1..=MAX_CONNECTIONS).contains(&self.connections),
            "--connections {}: give 1 to {MAX_CONNECTIONS} (each is a socket on both sides)",
            self.connections
        );
        ensure!(
            self.ramp_up_ms < self.deadline.saturating_mul(1000),
            "--ramp-up-ms {} is not below --deadline {} s: the devices could not all connect in time",
            self.ramp_up_ms,
            self.deadline
        );
        if let Some(pid) = self.control_plane_pid {
            ensure!(
                matches!(self.control_plane, Target::External(_)),
                "--control-plane-pid {pid}: only with --control-plane URL (an embedded or spawned \
                 control plane is sampled already)"
            );
        }
        ensure!(self.echo_calls > 0, "--echo-calls 0: give at least 1");
        ensure!(
            self.argon2_hashes != Some(0),
            "--argon2-hashes 0: give at least 1"
        );
        self.behaviour().check().map_err(|e| anyhow!(e))
    }

    fn preset_name(&self) -> String {
        self.argon2
            .to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }

    /// In flight at once during the measured phase; `None` for no limit.
    fn in_flight_limit(&self) -> Option<usize> {
        match self.concurrency {
            Some(n) => Some(n),
            None if self.rate > 0.0 => None,
            None => Some(ALL_AT_ONCE_CONCURRENCY),
        }
    }

    fn argon2_hashes(&self) -> usize {
        self.argon2_hashes.unwrap_or(match self.argon2 {
            Argon2Preset::Light => 10_000,
            Argon2Preset::Realistic => 40,
        })
    }

    fn faults(&self) -> FaultConfig {
        self.faults.clone().with_seed(self.seed)
    }
}

/// This process and the control plane's (when it has its own) at one moment.
#[derive(Clone, Copy, Debug)]
struct Snapshot {
    at: Instant,
    /// This process; `None` where /proc cannot be read.
    own: Option<ProcessSample>,
    /// The control plane's process; `None` when it is this one or unknown.
    control_plane: Option<ProcessSample>,
}

impl Snapshot {
    fn take(control_plane: &ControlPlane) -> Snapshot {
        Snapshot {
            at: Instant::now(),
            own: measure::sample(None),
            control_plane: control_plane.sample(),
        }
    }

    /// This process only.
    fn take_own() -> Snapshot {
        Snapshot {
            at: Instant::now(),
            own: measure::sample(None),
            control_plane: None,
        }
    }
}

pub async fn run(args: LoadtestArgs) -> anyhow::Result<()> {
    args.check()?;
    let plans = model::plan(&args.mix, args.devices, &args.behaviour());
    let digest = model::decision_digest(&plans);
    let ticks = measure::clock_ticks_per_second();
    let started = Instant::now();
    let own_start = Snapshot::take_own();
    let deadline = started + Duration::from_secs(args.deadline);
    let lag = LagProbe::start();
    let work = tempfile::tempdir().context("cannot create a temporary directory")?;
    std::fs::create_dir_all(&args.report_dir).with_context(|| {
        format!(
            "cannot create the report directory {}",
            args.report_dir.display()
        )
    })?;

    eprintln!(
        "droidfleet loadtest: {} devices ({}), seed {}, argon2 {}, control plane {}, faults {}",
        args.devices,
        args.mix,
        args.seed,
        args.preset_name(),
        args.control_plane,
        args.faults
    );
    let control_plane = control_plane::start(
        &args.control_plane,
        args.token_file.as_deref(),
        args.control_plane_pid,
        work.path(),
        &args.report_dir.join("control-plane.log"),
    )
    .await?;
    let control_plane_start = Snapshot::take(&control_plane);
    let outcome = drive(&args, plans, &control_plane, deadline).await;
    // Sampled before it stops: a stopped process has no figures.
    let control_plane_end = Snapshot::take(&control_plane);
    let mode = control_plane.mode();
    let address = control_plane.address.clone();
    let control_plane_pid = control_plane.pid;
    control_plane.stop().await;
    let run = outcome?;
    let lags = lag.finish().await;
    let own_end = Snapshot::take_own();
    let total_s = started.elapsed().as_secs_f64();

    // After the fleet and the control plane stopped, so they compete with nothing, and after
    // the final samples, so they are in no resource figure.
    let baselines = if args.no_baselines || args.connect_only {
        None
    } else {
        eprintln!("measuring the baselines (tonic echo, Argon2 on every core)…");
        let in_flight = args
            .in_flight_limit()
            .unwrap_or(ALL_AT_ONCE_CONCURRENCY)
            .min(ALL_AT_ONCE_CONCURRENCY);
        Some((
            baseline::echo(ADMIN_CONNECTIONS, in_flight, args.echo_calls).await?,
            baseline::argon2(args.argon2.params(), args.argon2_hashes()).await?,
        ))
    };

    let report = build_report(
        &args,
        Setting {
            mode,
            address,
            control_plane_pid,
            digest,
            ticks,
            total_s,
        },
        run,
        &lags,
        [own_start, control_plane_start, own_end, control_plane_end],
        baselines,
    );
    let json_path = args.report_dir.join("report.json");
    let html_path = args.report_dir.join("report.html");
    std::fs::write(&json_path, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    std::fs::write(&html_path, report.html())
        .with_context(|| format!("cannot write {}", html_path.display()))?;
    print!("{}", report.table());
    println!(
        "\nreport: {} and {}",
        json_path.display(),
        html_path.display()
    );
    if !report.completed {
        bail!(
            "the run reached its deadline ({} s) before every reset ended; the partial report is in {}",
            args.deadline,
            args.report_dir.display()
        );
    }
    Ok(())
}

/// What the run measured, before it becomes a report.
struct Run {
    devices: Vec<DeviceRecord>,
    completed: bool,
    setup_resets: usize,
    setup_s: f64,
    connect_s: f64,
    reset_phase_s: f64,
    before_connect: Snapshot,
    after_connect: Snapshot,
    /// The agent's Prometheus text at the end, for the injected-fault counts.
    agent_metrics: String,
    /// How late the issuing loop was against the --rate schedule at worst.
    max_issue_lag_ms: f64,
    /// Devices whose escrowed token never reached the control plane during the setup.
    unescrowed: usize,
}

/// Everything the per-device tasks share.
struct Shared {
    fleet: Arc<Fleet>,
    /// A few admin connections, so thousands of watch streams are not all multiplexed over one
    /// HTTP/2 connection (and its concurrent-stream limit).
    admins: Vec<Client>,
    plans: Vec<DevicePlan>,
    device_ids: Vec<String>,
    answers: Arc<answers::Answers>,
}

impl Shared {
    fn admin(&self, index: usize) -> &Client {
        &self.admins[index % self.admins.len()]
    }
}

const ADMIN_CONNECTIONS: usize = 4;

async fn drive(
    args: &LoadtestArgs,
    plans: Vec<DevicePlan>,
    control_plane: &ControlPlane,
    deadline: Instant,
) -> anyhow::Result<Run> {
    let setup_started = Instant::now();
    let mut admins = Vec::new();
    for _ in 0..ADMIN_CONNECTIONS {
        admins.push(Client::connect(&control_plane.address, &control_plane.admin_token).await?);
    }
    let enrollment = {
        let admin = &admins[0];
        admin
            .admin
            .clone()
            .create_enrollment_token(admin.request(pb::CreateEnrollmentTokenRequest {
                max_uses: u32::try_from(args.devices)?,
                ttl_seconds: args.deadline + 600,
                ..Default::default()
            }))
            .await
            .context("cannot create an enrollment token")?
            .into_inner()
            .enrollment_token
    };

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
            })
            .collect(),
        clock: Arc::new(droidfleet_agent::clock::SystemClock),
        connections: args.connections,
        faults: args.faults(),
    })
    .await
    .context("cannot load the fleet")?;
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
            completed: true,
            setup_resets: 0,
            setup_s: 0.0,
            connect_s,
            reset_phase_s: 0.0,
            before_connect,
            after_connect,
            agent_metrics: String::new(),
            max_issue_lag_ms: 0.0,
            unescrowed: 0,
        };
        if args.connect_only {
            run.setup_s = setup_started.elapsed().as_secs_f64();
            return Ok(run);
        }
        let device_ids = device_ids(&fleet, &plans)?;
        let (answers, dispatcher) = answers::Answers::start(fleet.clone(), answers_stopped);
        answers_task = Some(dispatcher);
        let shared = Arc::new(Shared {
            fleet: fleet.clone(),
            admins,
            plans,
            device_ids,
            answers,
        });
        let setup_limit = args.in_flight_limit().unwrap_or(ALL_AT_ONCE_CONCURRENCY);
        let prepared = prepare(&shared, setup_limit, deadline).await?;
        run.setup_resets = prepared.setup_resets;
        run.unescrowed = prepared.unescrowed.len();
        run.setup_s = setup_started.elapsed().as_secs_f64();

        eprintln!("resetting {} passcodes…", shared.plans.len());
        let reset_started = Instant::now();
        let phase = reset_all(
            &shared,
            args.rate,
            args.in_flight_limit(),
            &prepared.unescrowed,
            deadline,
        )
        .await;
        run.devices = phase.records;
        run.completed = phase.completed;
        run.max_issue_lag_ms = phase.max_issue_lag_ms;
        run.reset_phase_s = reset_started.elapsed().as_secs_f64();
        anyhow::Ok(run)
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
) -> anyhow::Result<()> {
    let gauge = &fleet.metrics().devices_connected;
    let step = devices.div_ceil(10).max(1);
    let mut reported = 0;
    loop {
        let connected = usize::try_from(gauge.load(Ordering::Relaxed)).unwrap_or(usize::MAX);
        if connected / step > reported / step {
            eprintln!("connected: {connected}/{devices}");
            reported = connected;
        }
        if connected >= devices {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "only {connected} of {devices} devices enrolled and connected before the deadline; \
                 give a longer --deadline (or more --connections, or a --ramp-up-ms)"
            );
        }
        tokio::time::sleep(CONNECT_POLL).await;
    }
}

/// Every device's control-plane id, in plan order; each device is connected, so enrolled.
fn device_ids(fleet: &Fleet, plans: &[DevicePlan]) -> anyhow::Result<Vec<String>> {
    plans
        .iter()
        .map(|p| {
            fleet
                .screen(&p.name)?
                .device_id
                .with_context(|| format!("{} is connected but has no device id", p.name))
        })
        .collect()
}

/// Runs `job(i)` for every device index with at most `limit` at once, all within `deadline`;
/// the first error stops the rest.
async fn for_each_device<F, Fut>(
    what: &str,
    count: usize,
    limit: usize,
    deadline: Instant,
    job: F,
) -> anyhow::Result<()>
where
    F: Fn(usize) -> Option<Fut>,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    eprintln!("{what}…");
    let all = async {
        let permits = Arc::new(Semaphore::new(limit));
        let mut tasks = JoinSet::new();
        for index in 0..count {
            let Some(work) = job(index) else { continue };
            let permit = permits.clone().acquire_owned().await?;
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
        anyhow::Ok(())
    };
    tokio::time::timeout_at(deadline, all)
        .await
        .map_err(|_| anyhow!("{what}: not finished before the deadline"))?
        .with_context(|| format!("setting up the fleet failed while {what}"))
}

fn scope_pb(scope: Scope) -> pb::CredentialScope {
    match scope {
        Scope::Device => pb::CredentialScope::Device,
        Scope::WorkProfile => pb::CredentialScope::WorkProfile,
    }
}

/// A listing of 100,000 devices is tens of megabytes; tonic refuses more than 4 MiB by default.
const LISTING_LIMIT_BYTES: usize = 256 * 1024 * 1024;

/// How long the escrow wait goes on without any device's token arriving before it gives up on
/// the rest.
const ESCROW_PATIENCE: Duration = Duration::from_secs(10);

/// Waits until the control plane holds the escrowed token of each device's target store,
/// reading ListDevices with backoff: one listing answers for the whole fleet, where a watch per
/// device would make every device change wake every watcher. Returns the indices of devices
/// whose token never arrived: once none has arrived for [`ESCROW_PATIENCE`], the run goes on
/// without them rather than hide the loss, and their resets show what it costs.
async fn wait_escrowed(shared: &Shared, deadline: Instant) -> anyhow::Result<Vec<usize>> {
    eprintln!("waiting for the control plane to hold every escrowed token…");
    let mut waiting: HashMap<&str, (usize, i32)> = shared
        .device_ids
        .iter()
        .zip(&shared.plans)
        .enumerate()
        .map(|(i, (id, p))| (id.as_str(), (i, scope_pb(p.target_scope()) as i32)))
        .collect();
    let admin = shared.admin(0);
    let mut pause = Duration::from_millis(20);
    let mut last_progress = Instant::now();
    while !waiting.is_empty() {
        let listing = tokio::time::timeout_at(
            deadline,
            admin
                .admin
                .clone()
                .max_decoding_message_size(LISTING_LIMIT_BYTES)
                .list_devices(admin.request(pb::ListDevicesRequest::default())),
        )
        .await
        .map_err(|_| anyhow!("ListDevices: not answered before the deadline"))?
        .map_err(|e| anyhow!("ListDevices: {:?}: {}", e.code(), e.message()))?
        .into_inner();
        let before = waiting.len();
        for device in &listing.devices {
            let id = device.device_id.as_str();
            if waiting
                .get(id)
                .is_some_and(|(_, scope)| device.escrowed_token_scopes.contains(scope))
            {
                waiting.remove(id);
            }
        }
        if waiting.len() < before {
            last_progress = Instant::now();
        }
        if waiting.is_empty() || last_progress.elapsed() >= ESCROW_PATIENCE {
            break;
        }
        ensure!(
            Instant::now() + pause < deadline,
            "{} device(s) had no escrowed token at the control plane before the deadline",
            waiting.len()
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
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
) -> anyhow::Result<Prepared> {
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
            let scope = s.plans[i].target_scope();
            // A 6-digit PIN for the lock screen; an 8-character letters-and-digits password for
            // a work profile: what MDM policies commonly ask.
            let (kind, min_length) = match scope {
                Scope::Device => (pb::PasscodeType::Pin, 6),
                Scope::WorkProfile => (pb::PasscodeType::Alphanumeric, 8),
            };
            admin
                .admin
                .clone()
                .assign_passcode_policy(admin.request(pb::AssignPasscodePolicyRequest {
                    device_id: s.device_ids[i].clone(),
                    scope: scope_pb(scope) as i32,
                    policy: Some(pb::PasscodePolicy {
                        r#type: kind as i32,
                        min_length,
                        ..Default::default()
                    }),
                }))
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
                let action = request_reset(admin, &s.device_ids[i]).await?;
                s.answers.answered(&p.name, &action.action_id).await?;
                let last = watch_until(admin, &action.action_id, false, |_| {}).await?;
                ensure!(
                    state_name(last.state) == "done",
                    "{}: the setup reset ended {} [{}]",
                    p.name,
                    state_name(last.state),
                    error_name(last.error_code)
                );
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

async fn request_reset(admin: &Client, device_id: &str) -> anyhow::Result<pb::Action> {
    Ok(admin
        .admin
        .clone()
        .reset_passcode(admin.request(pb::ResetPasscodeRequest {
            device_id: device_id.to_string(),
            ..Default::default()
        }))
        .await
        .map_err(|e| anyhow!("ResetPasscode: {:?}: {}", e.code(), e.message()))?
        .into_inner())
}

/// Follows the action with WatchAction until the control plane shows a final state (with
/// `until_user_entered`: for a reset that ended done, until the user's entry too); `each` sees
/// every state. Opened only once the device has answered (or the user's entry has left it), so
/// each watch is short: the control plane wakes every open watch on every action change, and
/// watches held from the request on would pile up by the thousand behind a backlog.
async fn watch_until(
    admin: &Client,
    action_id: &str,
    until_user_entered: bool,
    mut each: impl FnMut(&pb::Action),
) -> anyhow::Result<pb::Action> {
    let mut stream = admin
        .admin
        .clone()
        .watch_action(admin.request(pb::GetActionRequest {
            action_id: action_id.to_string(),
            until_user_entered,
        }))
        .await
        .map_err(|e| anyhow!("WatchAction: {:?}: {}", e.code(), e.message()))?
        .into_inner();
    let mut last = None;
    while let Some(action) = stream.message().await? {
        each(&action);
        last = Some(action);
    }
    last.context("WatchAction ended without a state")
}

fn record_action(record: &mut DeviceRecord, action: &pb::Action) {
    record.action_id = Some(action.action_id.clone());
    record.state = state_name(action.state).to_string();
    record.error_code = (action.error_code != 0).then(|| error_name(action.error_code));
    record.created_at_ms = action.created_at_ms;
    record.delivered_at_ms = action.delivered_at_ms;
    record.completed_at_ms = action.completed_at_ms;
    record.user_entered_at_ms = action.user_entered_at_ms;
}

/// The problem recorded for a device whose escrowed token never reached the control plane.
const UNESCROWED: &str = "its escrowed token never reached the control plane during the setup";

/// What the measured phase gives back.
struct Phase {
    records: Vec<DeviceRecord>,
    /// Every reset ended before the deadline.
    completed: bool,
    max_issue_lag_ms: f64,
}

/// The measured phase: one reset per device at `rate` per second (0: all at once), at most
/// `limit` devices in flight (`None`: no limit), each followed to its end.
async fn reset_all(
    shared: &Arc<Shared>,
    rate: f64,
    limit: Option<usize>,
    unescrowed: &[usize],
    deadline: Instant,
) -> Phase {
    let mut records: Vec<DeviceRecord> = shared
        .plans
        .iter()
        .zip(&shared.device_ids)
        .map(|(p, id)| DeviceRecord::new(p, id.clone()))
        .collect();
    for &i in unescrowed {
        records[i].problem = Some(UNESCROWED.into());
    }
    let records = Arc::new(Mutex::new(records));
    let progress = progress::Progress::new("resets", shared.plans.len());
    let (bar_stop, bar_stopped) = watch::channel(false);
    let bar = progress.spawn_bar(bar_stopped);
    let mut max_issue_lag = Duration::ZERO;

    let all = async {
        let permits = limit.map(|n| Arc::new(Semaphore::new(n)));
        let phase_start = Instant::now();
        let mut tasks = JoinSet::new();
        for index in 0..shared.plans.len() {
            if rate > 0.0 {
                // The schedule is fixed from the phase start: a late tick is made up at once,
                // so the mean rate holds, and the lateness is reported.
                let due = phase_start + Duration::from_secs_f64(index as f64 / rate);
                tokio::time::sleep_until(due).await;
                max_issue_lag = max_issue_lag.max(Instant::now().saturating_duration_since(due));
            }
            let permit = match &permits {
                Some(permits) => match permits.clone().acquire_owned().await {
                    Ok(permit) => Some(permit),
                    Err(_) => break,
                },
                None => None,
            };
            let (s, records, progress) = (shared.clone(), records.clone(), progress.clone());
            tasks.spawn(async move {
                let _permit = permit;
                let outcome = reset_one(&s, index, &records).await;
                let mut all = records.lock().expect("records lock");
                let record = &mut all[index];
                if let Err(problem) = outcome {
                    record.problem = Some(format!("{problem:#}"));
                }
                progress.advance(record.as_expected());
            });
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
    };
    // On the deadline the unfinished tasks are dropped with `all` (a JoinSet aborts its tasks),
    // and their records keep the last state seen.
    let completed = tokio::time::timeout_at(deadline, all).await.is_ok();
    let _ = bar_stop.send(true);
    let _ = bar.await;
    let mut records = records.lock().expect("records lock").clone();
    if !completed {
        for record in records.iter_mut().filter(|r| {
            let unfinished =
                !report::is_final(&r.state) || (r.state == "done" && r.user_entered_at_ms == 0);
            r.problem.is_none() && unfinished
        }) {
            record.problem = Some("not finished before the deadline".into());
        }
    }
    Phase {
        records,
        completed,
        max_issue_lag_ms: max_issue_lag.as_secs_f64() * 1000.0,
    }
}

/// One device's measured reset: its churn, the admin's reset, its reboot, and its user.
async fn reset_one(
    s: &Shared,
    index: usize,
    records: &Mutex<Vec<DeviceRecord>>,
) -> anyhow::Result<()> {
    let plan = &s.plans[index];
    let admin = s.admin(index);
    if plan.offline_ms.is_some() {
        // Returns once the session has closed, so the reset below finds the device offline.
        s.fleet.set_online(&plan.name, false).await?;
    }
    let requested_at_ms = s.fleet.now_ms();
    edit(records, index, |r| r.requested_at_ms = requested_at_ms);
    let action = request_reset(admin, &s.device_ids[index]).await?;
    edit(records, index, |r| record_action(r, &action));
    let back_online = async {
        if let Some(offline_ms) = plan.offline_ms {
            // Simulated behaviour, not synchronisation: the phone has no signal for this long.
            tokio::time::sleep(Duration::from_millis(offline_ms)).await;
            s.fleet.set_online(&plan.name, true).await?;
            let at = s.fleet.now_ms();
            edit(records, index, |r| r.online_again_at_ms = at);
        }
        anyhow::Ok(())
    };
    let answered = async {
        if report::is_final(state_name(action.state)) {
            // Refused at once (no policy): the device never hears of it.
            return anyhow::Ok(action.clone());
        }
        s.answers.answered(&plan.name, &action.action_id).await?;
        watch_until(admin, &action.action_id, false, |action| {
            edit(records, index, |r| record_action(r, action))
        })
        .await
    };
    let (last, back) = tokio::join!(answered, back_online);
    back?;
    if state_name(last?.state) != "done" {
        return Ok(());
    }
    if plan.reboot {
        s.fleet.reboot(&plan.name).await?;
    }

    // The admin reads the new passcode to the user (RevealPasscode); it goes straight into the
    // zeroized type and nowhere else.
    let passcode = {
        let mut revealed = admin
            .admin
            .clone()
            .reveal_passcode(admin.request(pb::GetActionRequest {
                action_id: action.action_id.clone(),
                ..Default::default()
            }))
            .await
            .map_err(|e| anyhow!("RevealPasscode: {:?}: {}", e.code(), e.message()))?
            .into_inner();
        droidfleet_agent::device::Passcode::new(std::mem::take(&mut revealed.passcode))
    };
    let revealed_at = s.fleet.now_ms();
    edit(records, index, |r| r.revealed_at_ms = revealed_at);
    // Simulated behaviour, not synchronisation: the user notices the notification later.
    tokio::time::sleep(Duration::from_millis(plan.user_delay_ms)).await;
    let scope = plan.target_scope();
    if plan.reboot && scope == Scope::WorkProfile {
        // After a boot Android asks for the device's credential before the work challenge.
        let unlocked = s
            .fleet
            .enter_passcode(&plan.name, Scope::Device, plan.device_pin.clone())
            .await?;
        ensure!(
            matches!(unlocked, EntryOutcome::Unlocked),
            "the user's own PIN did not unlock the rebooted device: {unlocked}"
        );
    }
    if plan.typo {
        let typed = s
            .fleet
            .enter_passcode(&plan.name, scope, model::typo_of(&passcode))
            .await?;
        ensure!(
            !matches!(typed, EntryOutcome::Unlocked),
            "a mistyped passcode unlocked the {scope} store"
        );
    }
    let typed = s.fleet.enter_passcode(&plan.name, scope, passcode).await?;
    ensure!(
        matches!(typed, EntryOutcome::Unlocked),
        "the new passcode did not unlock the {scope} store: {typed}"
    );
    // The entry has left the device when enter_passcode returns; the watch ends once the
    // control plane has recorded it.
    let last = watch_until(admin, &action.action_id, true, |action| {
        edit(records, index, |r| record_action(r, action))
    })
    .await?;
    ensure!(
        last.user_entered_at_ms > 0,
        "WatchAction ended before the control plane recorded the user's entry"
    );
    Ok(())
}

/// Changes one device's record.
fn edit(records: &Mutex<Vec<DeviceRecord>>, index: usize, change: impl FnOnce(&mut DeviceRecord)) {
    change(&mut records.lock().expect("records lock")[index]);
}

/// The run's fixed facts, for the report.
struct Setting {
    /// The control plane: "embedded", "spawned" or "external".
    mode: &'static str,
    address: String,
    /// The control plane's own process, when it has one that was sampled.
    control_plane_pid: Option<u32>,
    /// The decision digest of the plans.
    digest: String,
    /// Clock ticks per second of /proc's CPU times, and where the figure came from.
    ticks: (u64, &'static str),
    total_s: f64,
}

/// Figures for one process between two snapshots of it.
fn process_resources(
    role: &str,
    pid: u32,
    start: (Instant, Option<ProcessSample>),
    end: (Instant, Option<ProcessSample>),
    connect: (Option<ProcessSample>, Option<ProcessSample>),
    devices: usize,
    ticks: u64,
) -> report::ProcessResources {
    let wall_s = end.0.saturating_duration_since(start.0).as_secs_f64();
    let cpu_s = match (start.1, end.1) {
        (Some(a), Some(b)) => Some(b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64 / ticks as f64),
        _ => None,
    };
    let (before, after) = (connect.0.map(|s| s.rss_kib), connect.1.map(|s| s.rss_kib));
    report::ProcessResources {
        role: role.to_string(),
        pid,
        peak_rss_kib: end.1.map(|e| e.peak_rss_kib),
        cpu_s,
        wall_s,
        cpu_utilisation: cpu_s.map(|c| c / wall_s.max(0.001)),
        rss_before_connect_kib: before,
        rss_after_connect_kib: after,
        memory_per_device_kib: match (before, after) {
            (Some(b), Some(a)) => Some(a.saturating_sub(b) as f64 / devices.max(1) as f64),
            _ => None,
        },
    }
}

/// The injected-fault counters from the agent's Prometheus text, by kind.
fn faults_injected(metrics: &str) -> BTreeMap<String, u64> {
    const PREFIX: &str = "droidfleet_agent_faults_injected_total{kind=\"";
    metrics
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(PREFIX)?;
            let (kind, value) = rest.split_once("\"}")?;
            Some((kind.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

fn build_report(
    args: &LoadtestArgs,
    setting: Setting,
    run: Run,
    lags: &[f64],
    [own_start, control_plane_start, own_end, control_plane_end]: [Snapshot; 4],
    baselines: Option<(baseline::EchoBaseline, baseline::Argon2Baseline)>,
) -> Report {
    let embedded = setting.mode == "embedded";
    let (ticks, ticks_source) = setting.ticks;
    let lag = Percentiles::of(lags);
    let mut warnings: Vec<String> = report::lag_warning(&lag).into_iter().collect();
    let unexpected = run.devices.iter().filter(|d| !d.as_expected()).count();
    if unexpected > 0 {
        warnings.push(format!(
            "{unexpected} device(s) did not end as their injected fault (or its absence) predicts; \
             see `problem` and `state` per device in report.json"
        ));
    }
    if !run.completed {
        warnings.push("the run reached its deadline before every reset ended".into());
    }
    if run.unescrowed > 0 {
        warnings.push(format!(
            "{} device(s): {UNESCROWED} (with --faults most likely lost with a broken session: \
             the agent sends an active token's escrow once, and again on a new session only \
             while the token is pending), so their resets cannot succeed; see `problem` per \
             device in report.json",
            run.unescrowed
        ));
    }

    let mut processes = vec![process_resources(
        if embedded {
            "control plane + agent + load generator"
        } else {
            "agent + load generator"
        },
        std::process::id(),
        (own_start.at, own_start.own),
        (own_end.at, own_end.own),
        (run.before_connect.own, run.after_connect.own),
        args.devices,
        ticks,
    )];
    if let Some(pid) = setting.control_plane_pid {
        processes.insert(
            0,
            process_resources(
                "control plane",
                pid,
                (control_plane_start.at, control_plane_start.control_plane),
                (control_plane_end.at, control_plane_end.control_plane),
                (
                    run.before_connect.control_plane,
                    run.after_connect.control_plane,
                ),
                args.devices,
                ticks,
            ),
        );
    }

    let throughput = report::throughput(&run.devices);
    let latency_ms = report::latencies(&run.devices);
    let kdf = args.argon2.params();
    let baselines = baselines.map(|(echo, argon2)| {
        let done: Vec<&DeviceRecord> = run.devices.iter().filter(|d| d.fully_done()).collect();
        let runs: u32 = done.iter().map(|d| d.argon2_runs).sum();
        let runs_per_reset = if done.is_empty() {
            0.0
        } else {
            f64::from(runs) / done.len() as f64
        };
        let bound = if runs_per_reset > 0.0 {
            argon2.hashes_per_s / runs_per_reset
        } else {
            0.0
        };
        let ratio = |x: f64, of: f64| if of > 0.0 { x / of } else { 0.0 };
        report::Baselines {
            ratio_to_echo: ratio(throughput.finished_per_s, echo.calls_per_s),
            ratio_to_argon2_bound: ratio(throughput.done_per_s, bound),
            echo,
            argon2,
            argon2_runs_per_done_reset: runs_per_reset,
            argon2_bound_resets_per_s: bound,
        }
    });

    let mut notes = vec![
        match setting.mode {
            "embedded" => "One process hosts both sides (the embedded control plane and the agent \
                 with its devices) plus the load generator: its peak RSS, CPU time and memory per \
                 device cover all of them."
                .to_string(),
            "spawned" => "The control plane ran as a child process (`droidfleet serve` on a \
                 temporary data directory; its stderr is control-plane.log next to this report), \
                 ended by its PID after the run: each process has its own figures."
                .to_string(),
            _ if setting.control_plane_pid.is_some() => "The control plane runs elsewhere and \
                 was sampled by its PID (--control-plane-pid): each process has its own figures."
                .to_string(),
            _ => "The control plane runs elsewhere: the figures are this process's only (the \
                 agent with its devices, and the load generator)."
                .to_string(),
        },
        "Memory per connected device = (RSS once every device is enrolled and connected − RSS \
         just before the fleet was loaded) / devices, per process."
            .to_string(),
        format!(
            "CPU time is utime + stime from /proc/<pid>/stat in ticks of {ticks} Hz \
             ({ticks_source}), from the process's first sample (this process: its start; the \
             control plane: once it listened) to the end; utilisation is CPU-seconds per \
             wall-clock second over the same span (2.0 = two cores busy). Baselines run after \
             the last sample and are in no resource figure."
        ),
    ];
    if !args.connect_only {
        notes.push(format!(
            "Latencies come from the timestamps the control plane records (milliseconds; \
             created_at and delivered_at are its clock, completed_at and user_entered_at the \
             device's as reported) of resets that ended done, except applied → revealed and \
             back online → applied, which use this process's clock (the same machine unless the \
             control plane is external). Requested → delivered / applied leave out the devices \
             taken offline before their reset (their wait is the simulated user's, not the \
             system's); back online → applied measures those. Applied → user entered includes \
             the admin's RevealPasscode, a reboot where one was decided, and the seeded user \
             delay (exponential, mean {} ms, capped at ten times the mean).",
            args.user_delay_ms
        ));
        notes.push(
            "Throughput: measured resets reaching a final state, from the first reset's \
             creation to the last final state. Issue rate: ResetPasscode calls sent per second by \
             this process (first to last send); accepted: the same by the control plane's \
             created_at."
                .to_string(),
        );
        notes.push(
            "Admin calls per reset: ResetPasscode; WatchAction once the device has answered, \
             until the final state; RevealPasscode; WatchAction (until_user_entered) once the \
             user's entry has left the device, until the control plane records it. No reset is \
             watched from its request on: the control plane wakes every open watch on every \
             action change, so thousands of watches held through a backlog would be most of its \
             work. When a device has answered, the load generator learns from the agent in its \
             own process (one subscriber to the fleet's screen changes)."
                .to_string(),
        );
    }
    if baselines.is_some() {
        notes.push(
            "Baselines, measured after the run on the same machine, median of three rounds. \
             Echo: a bare tonic unary call to an in-process server on loopback, over as many \
             HTTP/2 connections and with as many calls in flight as the load generator's admin \
             clients. Argon2: the agent's passcode KDF with this run's parameters on every core \
             at once. Argon2 bound = hashes/s ÷ Argon2id runs per reset that ended done (from \
             this run's decisions: the reset wraps the new passcode, the user enters it, a typo \
             adds a wrong entry, a rebooted work-profile device adds the user's device PIN)."
                .to_string(),
        );
        notes.push(
            "Ratios. resets/s ÷ echo calls/s (resets reaching a final state per second): the \
             share of a bare RPC round trip's rate the whole reset flow reaches; its inverse is \
             how many bare round trips of work a reset costs (several admin calls, the session's \
             messages, durable writes, crypto). done resets/s ÷ Argon2 bound: how close the run \
             came to the rate at which the devices' passcode hashing alone would saturate every \
             core; near 1 means Argon2 is the bottleneck, far below 1 means messaging, storage \
             or the load generator is."
                .to_string(),
        );
    }
    let late_acks = report::delivered_after_completed(&run.devices);
    if late_acks > 0 {
        notes.push(format!(
            "{late_acks} reset(s) have delivered_at after completed_at: delivered_at is when the \
             control plane processed the device's acknowledgement, completed_at is the device's \
             own time of completion, so the control plane handled the acknowledgement after the \
             device had already applied the reset (its report queue); delivered → applied counts \
             them as 0 ms."
        ));
    }
    if run.setup_resets > 0 {
        notes.push(format!(
            "Pending-token fault: the agent has no call that leaves an escrowed token pending \
             (an active token survives a reboot), so {} device(s) first got a setup reset (its \
             rotated token stays pending; their users never enter the new passcode), then a \
             reboot (the management app escrows a fresh, pending token). Setup resets are in \
             no figure.",
            run.setup_resets
        ));
    }
    let config = BTreeMap::from([
        (
            "mode",
            json!(if args.connect_only {
                "connect_only"
            } else {
                "full"
            }),
        ),
        ("devices", json!(args.devices)),
        ("mix", json!(args.mix.to_string())),
        ("seed", json!(args.seed)),
        ("rate", json!(args.rate)),
        ("user_delay_ms", json!(args.user_delay_ms)),
        ("typo_probability", json!(args.typo_probability)),
        ("no_policy_share", json!(args.no_policy_share)),
        ("pending_token_share", json!(args.pending_token_share)),
        ("offline_share", json!(args.offline_share)),
        ("offline_ms", json!(args.offline_ms)),
        ("reboot_share", json!(args.reboot_share)),
        ("faults", json!(args.faults.to_string())),
        ("concurrency", json!(args.in_flight_limit())),
        ("connections", json!(args.connections)),
        ("ramp_up_ms", json!(args.ramp_up_ms)),
        ("deadline_s", json!(args.deadline)),
    ]);
    let mut control_plane = BTreeMap::from([
        ("mode", setting.mode.to_string()),
        ("address", setting.address),
    ]);
    if let Some(pid) = setting.control_plane_pid {
        control_plane.insert("pid", pid.to_string());
    }
    Report {
        tool: format!("droidfleet loadtest {}", env!("CARGO_PKG_VERSION")),
        completed: run.completed,
        control_plane,
        config,
        argon2: report::Argon2Info {
            preset: args.preset_name(),
            memory_kib: kdf.memory_kib,
            iterations: kdf.iterations,
            parallelism: kdf.parallelism,
        },
        durations: report::Durations {
            setup_s: run.setup_s,
            connect_s: run.connect_s,
            reset_phase_s: run.reset_phase_s,
            total_s: setting.total_s,
        },
        behaviour: report::behaviour(
            &run.devices,
            args.faults.to_string(),
            faults_injected(&run.agent_metrics),
        ),
        issue: report::issue(
            &run.devices,
            args.rate,
            args.in_flight_limit(),
            run.max_issue_lag_ms,
        ),
        outcomes: report::outcomes(&run.devices),
        outcome_total: run.devices.len(),
        unexpected,
        setup_resets: run.setup_resets,
        latency_ms,
        throughput,
        baselines,
        resources: report::Resources {
            clock_ticks_per_s: ticks,
            clock_ticks_source: ticks_source,
            processes,
        },
        scheduler_lag_ms: report::Lag {
            tick_ms: LAG_TICK.as_millis() as u64,
            stats: lag,
            saturated: lag.p99 > measure::LAG_WARN_MS,
        },
        warnings,
        notes,
        decision_digest: setting.digest,
        devices: run.devices,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_counts_come_from_the_agent_metrics() {
        let text = "# HELP x\n\
                    droidfleet_agent_faults_injected_total{kind=\"delay\"} 7\n\
                    droidfleet_agent_faults_injected_total{kind=\"drop\"} 0\n\
                    droidfleet_agent_reports_sent_total 99\n";
        let counts = faults_injected(text);
        assert_eq!(counts.len(), 2);
        assert_eq!(counts["delay"], 7);
        assert_eq!(counts["drop"], 0);
    }
}
