//! `droidfleet loadtest`: a fleet of simulated devices against a control plane (an embedded one
//! on a temporary SQLite file and a loopback port by default, or `--control-plane URL`), with
//! seeded users and injected faults, and a report of what happened and how fast.
//!
//! The flow: start or reach the control plane; enroll the fleet and wait until every device is
//! connected; let each user set a device PIN (and a work password on work-profile types); wait
//! until the control plane holds each device's escrowed token; assign passcode policies (except
//! to the no-policy share); prepare the pending-token share; then issue one reset per device at
//! the target rate, follow each to its final state, play each user (a seeded delay, maybe a
//! typo, then the new passcode) and wait until the control plane records the entry. Every wait
//! is bounded by one global deadline.
//!
//! Only public APIs are used: the server's `open`/`serve`, the admin gRPC API, and the agent's
//! `Fleet` user operations.

mod measure;
mod model;
mod progress;
mod report;

use crate::admin::{Client, error_name, state_name};
use anyhow::{Context, anyhow, bail, ensure};
use clap::ValueEnum;
use droidfleet::clock::SystemClock;
use droidfleet::service::Config;
use droidfleet_agent::cli::Argon2Preset;
use droidfleet_agent::device::{EntryOutcome, Scope};
use droidfleet_agent::fleet::{DeviceSpec, Fleet, FleetConfig};
use droidfleet_proto::v1 as pb;
use measure::{LAG_TICK, LagProbe, Percentiles};
use model::{DevicePlan, Fault, Mix};
use report::{DeviceRecord, Report};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
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
    /// Seed of the behaviour model: the same seed makes the same per-device decisions.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Resets issued per second; 0 issues them all at once.
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
    /// Where report.json and report.html are written.
    #[arg(long, default_value = "droidfleet-report")]
    report_dir: PathBuf,
    /// An external control plane (its gateway and admin API); by default an embedded one runs
    /// on a temporary database and a loopback port.
    #[arg(long)]
    control_plane: Option<String>,
    /// With --control-plane: a file holding an admin's bearer token.
    #[arg(long, env = "DROIDFLEET_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// The whole run must end within this many seconds.
    #[arg(long, default_value_t = 120)]
    deadline: u64,
    /// At most this many devices in flight at once (each: a reset, its watch, its user).
    #[arg(long, default_value_t = 512)]
    concurrency: usize,
}

impl LoadtestArgs {
    fn behaviour(&self) -> model::Behaviour {
        model::Behaviour {
            seed: self.seed,
            user_delay_mean_ms: self.user_delay_ms,
            typo_probability: self.typo_probability,
            no_policy_share: self.no_policy_share,
            pending_token_share: self.pending_token_share,
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
        ensure!(self.concurrency > 0, "--concurrency must be at least 1");
        self.behaviour().check().map_err(|e| anyhow!(e))
    }

    fn preset_name(&self) -> String {
        self.argon2
            .to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }
}

/// The control plane the run talks to, and how to stop it if the run started it.
struct ControlPlane {
    address: String,
    admin_token: String,
    embedded: Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>,
}

async fn start_control_plane(args: &LoadtestArgs, dir: &Path) -> anyhow::Result<ControlPlane> {
    if let Some(address) = &args.control_plane {
        let path = args.token_file.as_ref().context(
            "--control-plane needs an admin's token: give --token-file (or DROIDFLEET_TOKEN_FILE)",
        )?;
        let admin_token = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the admin token file {}", path.display()))?
            .trim()
            .to_string();
        return Ok(ControlPlane {
            address: address.clone(),
            admin_token,
            embedded: None,
        });
    }
    let opened = droidfleet::server::open(
        Config::new(dir.join("control-plane")),
        Arc::new(SystemClock),
    )
    .await
    .context("cannot open the embedded control plane")?;
    let token_path = opened
        .bootstrap_token_path
        .clone()
        .context("a fresh data directory has a bootstrap admin")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = format!("http://{}", listener.local_addr()?);
    let (stop, mut stopped) = watch::channel(false);
    let server = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        if let Err(e) = droidfleet::server::serve(opened.control_plane, listener, shutdown).await {
            eprintln!("the embedded control plane stopped: {e}");
        }
    });
    Ok(ControlPlane {
        address,
        admin_token: std::fs::read_to_string(&token_path)?.trim().to_string(),
        embedded: Some((stop, server)),
    })
}

pub async fn run(args: LoadtestArgs) -> anyhow::Result<()> {
    args.check()?;
    let plans = model::plan(&args.mix, args.devices, &args.behaviour());
    let digest = model::decision_digest(&plans);
    let ticks = measure::clock_ticks_per_second();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.deadline);
    let lag = LagProbe::start();
    let work = tempfile::tempdir().context("cannot create a temporary directory")?;

    eprintln!(
        "droidfleet loadtest: {} devices ({}), seed {}, argon2 {}",
        args.devices,
        args.mix,
        args.seed,
        args.preset_name()
    );
    let mut control_plane = start_control_plane(&args, work.path()).await?;
    let outcome = drive(&args, plans, &control_plane, work.path(), deadline).await;
    if let Some((stop, server)) = control_plane.embedded.take() {
        let _ = stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    }
    let run = outcome?;
    let lags = lag.finish().await;
    let end_sample = measure::sample();
    let total_s = started.elapsed().as_secs_f64();

    let report = build_report(
        &args,
        &control_plane,
        run,
        digest,
        &lags,
        end_sample,
        ticks,
        total_s,
    );
    std::fs::create_dir_all(&args.report_dir).with_context(|| {
        format!(
            "cannot create the report directory {}",
            args.report_dir.display()
        )
    })?;
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
    rss_before_connect: Option<u64>,
    rss_after_connect: Option<u64>,
}

/// Everything the per-device tasks share.
struct Shared {
    fleet: Arc<Fleet>,
    /// A few admin connections, so thousands of watch streams are not all multiplexed over one
    /// HTTP/2 connection (and its concurrent-stream limit).
    admins: Vec<Client>,
    plans: Vec<DevicePlan>,
    device_ids: Vec<String>,
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
    dir: &Path,
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

    let rss_before_connect = measure::sample().map(|s| s.rss_kib);
    let connect_started = Instant::now();
    let fleet = Fleet::load(FleetConfig {
        control_plane: control_plane.address.clone(),
        state_dir: dir.join("agent"),
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
        connections: 1,
    })
    .await
    .context("cannot load the fleet")?;
    let (fleet_stop, fleet_stopped) = watch::channel(false);
    let agent = tokio::spawn(fleet.clone().run(fleet_stopped));

    let outcome = async {
        eprintln!("enrolling and connecting {} devices…", plans.len());
        let device_ids = wait_connected(&fleet, &plans, deadline).await?;
        let connect_s = connect_started.elapsed().as_secs_f64();
        let rss_after_connect = measure::sample().map(|s| s.rss_kib);
        let shared = Arc::new(Shared {
            fleet: fleet.clone(),
            admins,
            plans,
            device_ids,
        });
        let setup_resets = prepare(&shared, args.concurrency, deadline).await?;
        let setup_s = setup_started.elapsed().as_secs_f64();

        eprintln!("resetting {} passcodes…", shared.plans.len());
        let reset_started = Instant::now();
        let (devices, completed) = reset_all(&shared, args.rate, args.concurrency, deadline).await;
        Ok(Run {
            devices,
            completed,
            setup_resets,
            setup_s,
            connect_s,
            reset_phase_s: reset_started.elapsed().as_secs_f64(),
            rss_before_connect,
            rss_after_connect,
        })
    }
    .await;
    let _ = fleet_stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), agent).await;
    outcome
}

/// Waits, driven by the fleet's screen changes, until every device has enrolled and opened its
/// session; returns the device ids in plan order.
async fn wait_connected(
    fleet: &Arc<Fleet>,
    plans: &[DevicePlan],
    deadline: Instant,
) -> anyhow::Result<Vec<String>> {
    let mut changes = fleet.screen_changes();
    let mut ids: HashMap<String, String> = HashMap::new();
    // Scan every device first (changes before the subscription are not replayed) and again
    // whenever the subscription lagged.
    let mut rescan = true;
    loop {
        if rescan {
            for plan in plans {
                if ids.contains_key(&plan.name) {
                    continue;
                }
                let screen = fleet.screen(&plan.name)?;
                if let (Some(id), true) = (screen.device_id, screen.connected) {
                    ids.insert(plan.name.clone(), id);
                }
            }
            rescan = false;
        }
        if ids.len() == plans.len() {
            return Ok(plans.iter().map(|p| ids[&p.name].clone()).collect());
        }
        match tokio::time::timeout_at(deadline, changes.recv()).await {
            Err(_) => bail!(
                "only {} of {} devices enrolled and connected before the deadline",
                ids.len(),
                plans.len()
            ),
            Ok(Ok(screen)) => {
                if let (Some(id), true) = (&screen.device_id, screen.connected) {
                    ids.insert(screen.name.clone(), id.clone());
                }
            }
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => rescan = true,
            Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => {
                bail!("the fleet stopped while devices were connecting")
            }
        }
    }
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

/// Everything before the measured resets. Returns how many setup resets it made.
async fn prepare(shared: &Arc<Shared>, limit: usize, deadline: Instant) -> anyhow::Result<usize> {
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

    for_each_device(
        "waiting for the control plane to hold every escrowed token",
        n,
        limit,
        deadline,
        |i| {
            let s = shared.clone();
            Some(async move {
                let admin = s.admin(i);
                let wanted = scope_pb(s.plans[i].target_scope()) as i32;
                let mut stream = admin
                    .admin
                    .clone()
                    .watch_device(admin.request(pb::GetDeviceRequest {
                        device_id: s.device_ids[i].clone(),
                    }))
                    .await?
                    .into_inner();
                while let Some(device) = stream.message().await? {
                    if device.escrowed_token_scopes.contains(&wanted) {
                        return Ok(());
                    }
                }
                bail!(
                    "{}: the device watch ended before its token was escrowed",
                    s.plans[i].name
                )
            })
        },
    )
    .await?;

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
    let pending: Vec<usize> = (0..n)
        .filter(|i| shared.plans[*i].fault == Fault::PendingToken)
        .collect();
    for_each_device(
        "preparing the pending-token devices (a setup reset, then a reboot)",
        n,
        limit,
        deadline,
        |i| {
            let s = shared.clone();
            (s.plans[i].fault == Fault::PendingToken).then_some(async move {
                let p = &s.plans[i];
                let admin = s.admin(i);
                let action = request_reset(admin, &s.device_ids[i]).await?;
                let last = follow(admin, &action.action_id, |_| {}).await?;
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
    Ok(pending.len())
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

/// Follows an action with WatchAction to its final state (the stream ends there).
async fn follow(
    admin: &Client,
    action_id: &str,
    mut each: impl FnMut(&pb::Action),
) -> anyhow::Result<pb::Action> {
    let mut stream = admin
        .admin
        .clone()
        .watch_action(admin.request(pb::GetActionRequest {
            action_id: action_id.to_string(),
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

/// The measured phase: one reset per device at `rate` per second (0: all at once), each
/// followed to its end. Returns every device's record and whether all ended before the
/// deadline.
async fn reset_all(
    shared: &Arc<Shared>,
    rate: f64,
    limit: usize,
    deadline: Instant,
) -> (Vec<DeviceRecord>, bool) {
    let records: Arc<Mutex<Vec<DeviceRecord>>> = Arc::new(Mutex::new(
        shared
            .plans
            .iter()
            .zip(&shared.device_ids)
            .map(|(p, id)| DeviceRecord {
                name: p.name.clone(),
                ownership: p.ownership.as_str(),
                scope: p.target_scope().as_str(),
                fault: p.fault,
                user_delay_ms: p.user_delay_ms,
                typo: p.typo,
                device_id: id.clone(),
                action_id: None,
                state: "not_issued".into(),
                error_code: None,
                problem: None,
                created_at_ms: 0,
                delivered_at_ms: 0,
                completed_at_ms: 0,
                user_entered_at_ms: 0,
                revealed_at_ms: 0,
            })
            .collect(),
    ));
    let progress = progress::Progress::new("resets", shared.plans.len());
    let (bar_stop, bar_stopped) = watch::channel(false);
    let bar = progress.spawn_bar(bar_stopped);

    let all = async {
        let permits = Arc::new(Semaphore::new(limit));
        // Burst (tokio's default) catches up after a stall, so the mean rate holds.
        let mut ticker =
            (rate > 0.0).then(|| tokio::time::interval(Duration::from_secs_f64(1.0 / rate)));
        let mut tasks = JoinSet::new();
        for index in 0..shared.plans.len() {
            if let Some(ticker) = ticker.as_mut() {
                ticker.tick().await;
            }
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
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
    (records, completed)
}

/// One device's measured reset, and its user.
async fn reset_one(
    s: &Shared,
    index: usize,
    records: &Mutex<Vec<DeviceRecord>>,
) -> anyhow::Result<()> {
    let update = |action: &pb::Action| {
        record_action(&mut records.lock().expect("records lock")[index], action);
    };
    let plan = &s.plans[index];
    let admin = s.admin(index);
    let action = request_reset(admin, &s.device_ids[index]).await?;
    update(&action);
    let last = follow(admin, &action.action_id, update).await?;
    if state_name(last.state) != "done" {
        return Ok(());
    }

    // The admin reads the new passcode to the user (RevealPasscode); it goes straight into the
    // zeroized type and nowhere else.
    let passcode = {
        let mut revealed = admin
            .admin
            .clone()
            .reveal_passcode(admin.request(pb::GetActionRequest {
                action_id: action.action_id.clone(),
            }))
            .await
            .map_err(|e| anyhow!("RevealPasscode: {:?}: {}", e.code(), e.message()))?
            .into_inner();
        droidfleet_agent::device::Passcode::new(std::mem::take(&mut revealed.passcode))
    };
    records.lock().expect("records lock")[index].revealed_at_ms = s.fleet.now_ms();
    // Simulated behaviour, not synchronisation: the user notices the notification later.
    tokio::time::sleep(Duration::from_millis(plan.user_delay_ms)).await;
    let scope = plan.target_scope();
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

    // The device reports the entry over its session; poll (with backoff, bounded by the
    // deadline around the whole phase) until the control plane has recorded it.
    let mut pause = Duration::from_millis(5);
    for _ in 0..10_000 {
        let action = admin
            .admin
            .clone()
            .get_action(admin.request(pb::GetActionRequest {
                action_id: action.action_id.clone(),
            }))
            .await
            .map_err(|e| anyhow!("GetAction: {:?}: {}", e.code(), e.message()))?
            .into_inner();
        update(&action);
        if action.user_entered_at_ms > 0 {
            return Ok(());
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
    bail!("the control plane did not record the user's entry")
}

#[allow(clippy::too_many_arguments)]
fn build_report(
    args: &LoadtestArgs,
    control_plane: &ControlPlane,
    run: Run,
    digest: String,
    lags: &[f64],
    end: Option<measure::ProcessSample>,
    (ticks, ticks_source): (u64, &'static str),
    total_s: f64,
) -> Report {
    let embedded = args.control_plane.is_none();
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
    let cpu_s = end.map(|e| e.cpu_ticks as f64 / ticks as f64);
    let memory_per_device_kib = match (run.rss_before_connect, run.rss_after_connect) {
        (Some(before), Some(after)) => {
            Some(after.saturating_sub(before) as f64 / run.devices.len().max(1) as f64)
        }
        _ => None,
    };
    let kdf = args.argon2.params();
    let mut notes = vec![
        if embedded {
            "One process hosts both sides (the embedded control plane and the agent with its \
             devices) plus the load generator: peak RSS, CPU time and memory per device cover \
             all of them."
                .to_string()
        } else {
            "The control plane runs elsewhere: peak RSS, CPU time and memory per device are \
             this process's (the agent with its devices, and the load generator)."
                .to_string()
        },
        "Memory per connected device = (RSS once every device is enrolled and connected − RSS \
         before the fleet was loaded) / devices."
            .to_string(),
        format!(
            "CPU time is utime + stime from /proc/self/stat in ticks of {ticks} Hz ({ticks_source})."
        ),
        format!(
            "Latencies come from the timestamps the control plane records (milliseconds; \
             created_at and delivered_at are its clock, completed_at and user_entered_at the \
             device's as reported) of resets that ended done, except applied → revealed, which ends on this process's clock (the same \
             machine in the embedded mode). Applied → user entered includes the admin's \
             RevealPasscode and the seeded user delay (exponential, mean {} ms, capped at ten \
             times the mean).",
            args.user_delay_ms
        ),
        "Throughput: measured resets reaching a final state, from the first reset's creation \
         to the last final state."
            .to_string(),
    ];
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
        ("devices", json!(args.devices)),
        ("mix", json!(args.mix.to_string())),
        ("seed", json!(args.seed)),
        ("rate", json!(args.rate)),
        ("user_delay_ms", json!(args.user_delay_ms)),
        ("typo_probability", json!(args.typo_probability)),
        ("no_policy_share", json!(args.no_policy_share)),
        ("pending_token_share", json!(args.pending_token_share)),
        ("concurrency", json!(args.concurrency)),
        ("deadline_s", json!(args.deadline)),
    ]);
    Report {
        tool: format!("droidfleet loadtest {}", env!("CARGO_PKG_VERSION")),
        completed: run.completed,
        control_plane: BTreeMap::from([
            (
                "mode",
                if embedded { "embedded" } else { "external" }.to_string(),
            ),
            ("address", control_plane.address.clone()),
        ]),
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
            total_s,
        },
        outcomes: report::outcomes(&run.devices),
        outcome_total: run.devices.len(),
        unexpected,
        setup_resets: run.setup_resets,
        latency_ms: report::latencies(&run.devices),
        throughput: report::throughput(&run.devices),
        resources: report::Resources {
            process: if embedded {
                "one process: control plane + agent + load generator".into()
            } else {
                "this process: agent + load generator".into()
            },
            peak_rss_kib: end.map(|e| e.peak_rss_kib),
            cpu_s,
            cpu_utilisation: cpu_s.map(|c| c / total_s.max(0.001)),
            clock_ticks_per_s: ticks,
            clock_ticks_source: ticks_source,
            rss_before_connect_kib: run.rss_before_connect,
            rss_after_connect_kib: run.rss_after_connect,
            memory_per_device_kib,
        },
        scheduler_lag_ms: report::Lag {
            tick_ms: LAG_TICK.as_millis() as u64,
            stats: lag,
            saturated: lag.p99 > measure::LAG_WARN_MS,
        },
        warnings,
        notes,
        decision_digest: digest,
        devices: run.devices,
    }
}
