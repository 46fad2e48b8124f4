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
//! then issue one reset per device at the target rate (with `--duration`, resets at that rate
//! for that long, each device again once its previous reset ended; a churned device goes
//! offline just before and comes back later), wait until the device has answered it (learned from the
//! agent, see `answers.rs`) and read its final state from the control plane, reboot the devices
//! chosen to, play each user (a seeded delay, maybe a typo, then the new passcode) and wait
//! until the control plane records the entry. Every wait is bounded by one global deadline.
//! Then the baselines: a bare tonic echo, unary and streaming, the agent's Argon2 on every core,
//! and the other units of the protocol ceiling (Ed25519, AES-GCM, batched SQLite rows).
//!
//! Only public APIs are used: the server's `open`/`serve` (or the `serve` command), the admin
//! gRPC API (through [`crate::admin::Client`]), and the agent's `Fleet` user operations.
//!
//! Layout, in the order a run uses it:
//! - `args.rs`: [`LoadtestArgs`], their checks and the settings derived from them;
//!   `model.rs`: the seeded per-device decisions.
//! - `control_plane.rs`: the control plane run against (embedded, spawned child, or external).
//! - `drive.rs`: enrolling and connecting the fleet, then the setup before the measured resets;
//!   `resets.rs`: the measured phase, one reset per device and its user; `answers.rs`: when a
//!   device has answered, learned from the agent; `progress.rs`: progress on stderr.
//! - `measure.rs`: latency percentiles, process samples, the scheduler lag probe;
//!   `series.rs`: the measured phase second by second (the report's time series);
//!   `baseline.rs`: the echo (unary and streaming) and Argon2 baselines; `ceiling.rs`: the work
//!   one reset needs, each unit's cost measured in the run, and the resets/s they bound.
//! - `report/`: the records and figures (`mod.rs`), their assembly (`build.rs`), the table
//!   (`table.rs`) and the HTML page (`html.rs`).
//! - `wall/`: the live fleet wall of `--console ADDR`, sampled from the run while it goes;
//!   `metrics_endpoint.rs`: the fleet's Prometheus metrics on `--metrics-listen ADDR`.
//! - `error.rs`: [`LoadtestError`], for the run and for one device's reset.

mod answers;
mod args;
mod baseline;
mod ceiling;
mod control_plane;
mod drive;
mod error;
mod measure;
mod metrics_endpoint;
mod model;
mod progress;
mod report;
mod resets;
mod series;
mod wall;

pub use args::LoadtestArgs;
pub use error::LoadtestError;

use args::ALL_AT_ONCE_CONCURRENCY;
use drive::ADMIN_CONNECTIONS;
use measure::{LagProbe, Snapshot};
use std::path::Path;
use std::time::Duration;
use tokio::time::Instant;

/// Round trips per round of the streaming echo, per call of the unary one's (`--echo-calls`):
/// each of up to 10,000 streams then makes a few round trips per round.
const STREAM_ECHO_ROUND_TRIPS_PER_CALL: usize = 4;
/// Runs per round of each crypto unit, per call of the unary echo: a few tens of milliseconds
/// per round at the default 10,000.
const CRYPTO_OPS_PER_CALL: usize = 2;

/// Runs the load test `args` describe and writes its report; fails (after writing the partial
/// report) when the deadline came before every reset ended.
pub async fn run(args: LoadtestArgs) -> Result<(), LoadtestError> {
    args.check()?;
    let plans = model::plan(&args.mix, args.devices, &args.behaviour());
    let digest = model::decision_digest(&plans);
    let ticks = measure::clock_ticks_per_second();
    let started = Instant::now();
    let started_at = std::time::SystemTime::now();
    let own_start = Snapshot::take_own();
    let deadline = started + Duration::from_secs(args.deadline);
    let lag = LagProbe::start();
    let work = tempfile::tempdir().map_err(LoadtestError::TempDir)?;
    std::fs::create_dir_all(&args.report_dir).map_err(|source| LoadtestError::File {
        action: "create the report directory",
        path: args.report_dir.clone(),
        source,
    })?;

    eprintln!(
        "droidfleet loadtest: {} devices ({}; android {}; profiles {}), seed {}, argon2 {}, \
         control plane {}, faults {}",
        args.devices,
        args.mix,
        args.android,
        args.profile,
        args.seed,
        args.preset_name(),
        args.control_plane,
        args.faults
    );
    let mut control_plane = control_plane::start(
        &args.control_plane,
        args.token_file.as_deref(),
        args.ca_file.as_deref(),
        args.control_plane_pid,
        work.path(),
        &args.report_dir.join("control-plane.log"),
        control_plane::watches_needed(args.devices),
    )
    .await?;
    let control_plane_start = Snapshot::take(&control_plane);
    let wall = match args.console {
        Some(address) => {
            let server = wall::WallServer::start(address, args.devices).await?;
            println!("fleet wall on http://{}/", server.address);
            Some(server)
        }
        None => None,
    };
    let mut metrics = match args.metrics_listen {
        Some(address) => {
            let endpoint = metrics_endpoint::MetricsEndpoint::bind(address).await?;
            println!("agent metrics on http://{}/metrics", endpoint.address);
            Some(endpoint)
        }
        None => None,
    };
    let outcome = drive::drive(
        &args,
        plans,
        &mut control_plane,
        deadline,
        wall.as_ref().map(|w| w.wall.clone()),
        metrics.as_mut(),
    )
    .await;
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
        eprintln!(
            "measuring the baselines (tonic echo, unary and streaming; Argon2, Ed25519, AES-GCM \
             on every core; batched SQLite rows)…"
        );
        let in_flight = args
            .in_flight_limit()
            .unwrap_or(ALL_AT_ONCE_CONCURRENCY)
            .min(ALL_AT_ONCE_CONCURRENCY);
        Some(report::Measured {
            echo: baseline::echo(ADMIN_CONNECTIONS, in_flight, args.echo_calls).await?,
            stream_echo: baseline::stream_echo(
                args.connections,
                args.devices,
                args.echo_calls * STREAM_ECHO_ROUND_TRIPS_PER_CALL,
            )
            .await?,
            argon2: baseline::argon2(args.argon2.params(), args.argon2_hashes()).await?,
            units: ceiling::measure_units(args.echo_calls * CRYPTO_OPS_PER_CALL).await?,
        })
    };

    let report = report::build(
        &args,
        report::Setting {
            mode,
            address,
            control_plane_pid,
            digest,
            ticks,
            total_s,
        },
        run,
        lags,
        [own_start, control_plane_start, own_end, control_plane_end],
        baselines,
    );
    let json_path = args.report_dir.join("report.json");
    let html_path = args.report_dir.join("report.html");
    let json = serde_json::to_vec_pretty(&report).map_err(LoadtestError::ReportJson)?;
    write(&json_path, json)?;
    write(&html_path, report.html())?;
    let hdr_log = report.hdr_log(started_at).map_err(LoadtestError::HdrLog)?;
    write(&args.report_dir.join(report::HDR_LOG), hdr_log)?;
    print!("{}", report.table());
    println!(
        "\nreport: {} and {} (latency histograms: {})",
        json_path.display(),
        html_path.display(),
        report::HDR_LOG
    );
    if let Some(server) = &wall {
        server.wall.set_phase(wall::Phase::Finished);
    }
    if args.wait {
        if let Some(server) = &wall {
            println!(
                "the fleet wall stays on http://{}/ until Ctrl-C",
                server.address
            );
        }
        if let Some(endpoint) = &metrics {
            println!(
                "the agent metrics stay on http://{}/metrics until Ctrl-C",
                endpoint.address
            );
        }
        droidfleet_agent::cli::shutdown_signal().await;
    }
    if let Some(server) = wall {
        server.stop().await;
    }
    if let Some(endpoint) = metrics {
        endpoint.stop().await;
    }
    if !report.completed {
        return Err(LoadtestError::DeadlineReached {
            deadline_s: args.deadline,
            report_dir: args.report_dir.clone(),
        });
    }
    Ok(())
}

fn write(path: &Path, contents: impl AsRef<[u8]>) -> Result<(), LoadtestError> {
    std::fs::write(path, contents).map_err(|source| LoadtestError::File {
        action: "write",
        path: path.to_path_buf(),
        source,
    })
}
