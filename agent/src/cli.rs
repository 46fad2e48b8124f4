//! Command-line arguments of `droidfleet-agent run` and `re-enroll` (also `droidfleet agent
//! …`), and the functions that carry them out.

use crate::clock::SystemClock;
use crate::device::KdfParams;
use crate::faults::FaultConfig;
use crate::fleet::{DeviceSpec, Fleet, FleetConfig, RampUp};
use crate::seeded::{AndroidMix, Mix, ProfileMix};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Argon2Preset {
    /// Argon2id with 19 MiB and 2 passes, as a phone would use (slow on purpose).
    Realistic,
    /// Argon2id with 64 KiB and 1 pass, for fleets of thousands of devices.
    Light,
}

impl Argon2Preset {
    pub fn params(self) -> KdfParams {
        match self {
            Argon2Preset::Realistic => KdfParams::REALISTIC,
            Argon2Preset::Light => KdfParams::LIGHT,
        }
    }
}

/// Host simulated Android devices that enroll with a control plane and take its commands.
#[derive(Clone, Debug, clap::Args)]
pub struct RunArgs {
    /// The control plane's address: https:// (its CA pinned from the enrollment token), or
    /// http:// to a control plane serving --insecure-plaintext on loopback.
    #[arg(
        long,
        default_value = "https://127.0.0.1:7300",
        env = "DROIDFLEET_CONTROL_PLANE"
    )]
    pub control_plane: String,
    /// A device to host, as TYPE:NAME[:API_LEVEL[:PROFILE]] (TYPE is cosu, cobo, cope, byod or
    /// aosp; the API level 26 to 35, default 35; the maker profile default aosp), e.g.
    /// byod:alice-phone:31. Repeat it for more devices; combines with --devices.
    #[arg(
        long = "device",
        value_name = "TYPE:NAME[:API_LEVEL[:PROFILE]]",
        required_unless_present = "devices"
    )]
    pub device: Vec<DeviceSpec>,
    /// Also host N generated devices named `<type>-<index>`, their types drawn from --mix by
    /// --seed.
    #[arg(long = "devices", value_name = "N")]
    pub devices: Option<usize>,
    /// Enrollment-type weights for --devices, e.g. cosu=1,cobo=1,cope=1,byod=3,aosp=0.
    #[arg(
        long,
        value_name = "TYPE=WEIGHT,...",
        default_value = "cosu=1,cobo=1,cope=1,byod=1,aosp=1"
    )]
    pub mix: Mix,
    /// Android API-level weights for --devices, e.g. 26=1,30=2,34=3 (levels 26 to 35).
    #[arg(long, value_name = "API_LEVEL=WEIGHT,...", default_value = "35=1")]
    pub android: AndroidMix,
    /// Maker-profile weights for --devices, e.g. aosp=3,short-keyguard=1 (see agent/README.md
    /// for the shipped profiles).
    #[arg(long, value_name = "PROFILE=WEIGHT,...", default_value = "aosp=1")]
    pub profile: ProfileMix,
    /// Seeds the device types, API levels and profiles of --devices and the ramp-up delays: the
    /// same seed gives the same fleet.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// HTTP/2 connections the devices share (device i uses connection i % K).
    #[arg(long, value_name = "K", default_value_t = 4)]
    pub connections: usize,
    /// Each device waits a seeded random delay in [0, R) ms before its first connection.
    #[arg(long, value_name = "R", default_value_t = 0)]
    pub ramp_up_ms: u64,
    /// Serve Prometheus metrics on http://ADDR/metrics (plain HTTP: loopback only; off unless
    /// given).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Where each device's state file lives; a restarted agent picks its devices up from here.
    #[arg(long, default_value = "droidfleet-agent-state")]
    pub state_dir: PathBuf,
    /// Keep the devices in memory only (no state files): for large load-test fleets. A
    /// restarted agent then starts with new, unenrolled devices.
    #[arg(long, conflicts_with = "state_dir")]
    pub in_memory: bool,
    /// Message-level faults on every session, e.g. delay=0.05:250ms,duplicate=0.01,drop=0.005,
    /// disconnect=0.005 (probabilities per message; seeded by --seed).
    #[arg(long, value_name = "SPEC", default_value = "none")]
    pub faults: FaultConfig,
    /// Enrollment token from `droidfleet admin create-enrollment-token`; needed until every
    /// device has enrolled.
    #[arg(long, env = "DROIDFLEET_ENROLLMENT_TOKEN", hide_env_values = true)]
    pub enrollment_token: Option<String>,
    /// Where the device harness (the test's view of each device's screen) listens: plaintext, so
    /// a loopback address only.
    #[arg(long, default_value = "127.0.0.1:7301")]
    pub harness_listen: SocketAddr,
    /// Cost of the devices' passcode hashing.
    #[arg(long, value_enum, default_value_t = Argon2Preset::Realistic)]
    pub argon2: Argon2Preset,
}

/// Hand a device the single-use token from `droidfleet admin re-enroll`, as its user would
/// type it into the management app: the device enrolls again with it and reconnects.
#[derive(Clone, Debug, clap::Args)]
pub struct ReEnrollArgs {
    /// The agent's harness (its --harness-listen address).
    #[arg(long, default_value = "http://127.0.0.1:7301")]
    pub harness: String,
    /// The device, by the agent's name for it.
    #[arg(long)]
    pub device: String,
    /// The token `droidfleet admin re-enroll` printed.
    #[arg(long, env = "DROIDFLEET_REENROLLMENT_TOKEN", hide_env_values = true)]
    pub enrollment_token: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Fleet(#[from] crate::fleet::FleetError),
    #[error("cannot listen on {addr} for the harness: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("harness server failed: {0}")]
    Harness(#[from] tonic::transport::Error),
    #[error("cannot listen on {addr} for metrics: {source}")]
    MetricsListen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Plaintext(#[from] droidfleet_proto::tls::TlsError),
    #[error("--devices {0}: {1}")]
    Devices(usize, String),
    #[error("cannot reach the harness at {address}: {source}")]
    HarnessUnreachable {
        address: String,
        source: tonic::transport::Error,
    },
    #[error("the harness refused the token: {0}")]
    HandOver(String),
}

/// Hands the re-enrollment token to the device through the agent's harness; returns once the
/// device holds it (it re-enrolls on its own right after).
pub async fn re_enroll(args: ReEnrollArgs) -> Result<(), RunError> {
    let mut harness = droidfleet_proto::v1::device_harness_client::DeviceHarnessClient::connect(
        args.harness.clone(),
    )
    .await
    .map_err(|source| RunError::HarnessUnreachable {
        address: args.harness.clone(),
        source,
    })?;
    harness
        .re_enroll(droidfleet_proto::v1::ReEnrollRequest {
            name: args.device.clone(),
            enrollment_token: args.enrollment_token,
        })
        .await
        .map_err(|status| RunError::HandOver(status.message().to_string()))?;
    println!(
        "device {} has the token; it enrolls again and reconnects on its own",
        args.device
    );
    Ok(())
}

/// Upper bound of `--devices`; the design targets 100,000 devices in one process.
pub(crate) const MAX_DEVICES: usize = 1_000_000;

/// The devices `args` asks for: every `--device`, then `--devices N` generated from `--mix` and
/// `--seed`. A name given twice is refused, since two devices would share one state file.
pub fn device_specs(args: &RunArgs) -> Result<Vec<DeviceSpec>, RunError> {
    let mut specs = args.device.clone();
    if let Some(count) = args.devices {
        if !(1..=MAX_DEVICES).contains(&count) {
            return Err(RunError::Devices(
                count,
                format!("must be from 1 to {MAX_DEVICES}"),
            ));
        }
        specs.extend(
            args.mix
                .devices(count, args.seed, &args.android, &args.profile),
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    for spec in &specs {
        if !seen.insert(spec.name.as_str()) {
            return Err(RunError::Devices(
                args.devices.unwrap_or(0),
                format!(
                    "device name {:?} is given twice (a --device collides with a generated name)",
                    spec.name
                ),
            ));
        }
    }
    Ok(specs)
}

/// The agent with its fleet loaded and nothing started yet: what `run` does in two steps, so a
/// caller can attach to the fleet (the root binary's fleet wall) before it runs.
pub struct LoadedAgent {
    fleet: Arc<Fleet>,
    /// The arguments `run` still needs: listen addresses, ramp-up and seed.
    args: RunArgs,
}

impl std::fmt::Debug for LoadedAgent {
    // The arguments are left out: they hold the enrollment token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedAgent")
            .field("fleet", &self.fleet)
            .finish_non_exhaustive()
    }
}

/// Loads the fleet `args` describes (state files read, devices created); nothing listens or
/// connects until [`LoadedAgent::run`].
pub async fn load(args: RunArgs) -> Result<LoadedAgent, RunError> {
    let devices = device_specs(&args)?;
    let fleet = Fleet::load(FleetConfig {
        control_plane: args.control_plane.clone(),
        state_dir: (!args.in_memory).then(|| args.state_dir.clone()),
        enrollment_token: args.enrollment_token.clone(),
        kdf: args.argon2.params(),
        devices,
        clock: Arc::new(SystemClock),
        connections: args.connections,
        faults: args.faults.clone().with_seed(args.seed),
    })
    .await?;
    Ok(LoadedAgent { fleet, args })
}

/// Runs the agent until `shutdown` resolves.
pub async fn run(
    args: RunArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    load(args).await?.run(shutdown).await
}

impl LoadedAgent {
    /// The hosted fleet: its screens and counters, for a view of the running agent.
    pub fn fleet(&self) -> &Arc<Fleet> {
        &self.fleet
    }

    /// Serves the harness (and metrics, if asked) and runs the devices until `shutdown`
    /// resolves.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), RunError> {
        let LoadedAgent { fleet, args } = self;
        // The harness and the metrics speak plaintext: never beyond this machine.
        droidfleet_proto::tls::check_plaintext_address(args.harness_listen)?;
        if let Some(addr) = args.metrics_listen {
            droidfleet_proto::tls::check_plaintext_address(addr)?;
        }
        let metrics_listener = match args.metrics_listen {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| RunError::MetricsListen { addr, source })?,
            ),
            None => None,
        };
        let listener = tokio::net::TcpListener::bind(args.harness_listen)
            .await
            .map_err(|source| RunError::Listen {
                addr: args.harness_listen,
                source,
            })?;
        let harness_addr = listener.local_addr().map_err(|source| RunError::Listen {
            addr: args.harness_listen,
            source,
        })?;
        tracing::info!(%harness_addr, devices = fleet.names().count(), "agent running");
        println!("harness listening on {harness_addr}");
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let ramp = RampUp {
            window_ms: args.ramp_up_ms,
            seed: args.seed,
        };
        let devices = tokio::spawn(fleet.clone().run_ramped(stopped.clone(), ramp));
        let metrics = metrics_listener.map(|listener| {
            if let Ok(addr) = listener.local_addr() {
                println!("metrics on http://{addr}/metrics");
            }
            let metrics = fleet.metrics().clone();
            let mut metrics_stopped = stopped.clone();
            tokio::spawn(crate::metrics::serve_metrics(
                listener,
                move || metrics.render(),
                async move {
                    let _ = metrics_stopped.wait_for(|stop| *stop).await;
                },
            ))
        });
        let mut harness_stopped = stopped;
        let harness = crate::harness::serve(fleet, listener, async move {
            let _ = harness_stopped.wait_for(|stop| *stop).await;
        });
        tokio::pin!(harness);
        tokio::select! {
            result = &mut harness => result?,
            _ = shutdown => {}
        }
        let _ = stop.send(true);
        let _ = devices.await;
        if let Some(metrics) = metrics {
            let _ = metrics.await;
        }
        Ok(())
    }
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM, the signal `kill` and service managers stop a process
/// with, so either ends a command the same graceful way.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot watch for SIGTERM; only Ctrl-C stops this command");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// How a binary writes its log lines (`--log-format`), to stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line per event for people: time, level, the spans with their fields, the message.
    #[default]
    Text,
    /// One JSON object per line for log pipelines: `timestamp`, `level`, `fields` (with
    /// `message`), `target`, and `spans`, each span's fields (`action_id`, `trace_id`, …) with
    /// its `name`.
    Json,
}

/// Sets up the process's logging: `RUST_LOG` if set (an `EnvFilter` directive), else
/// `default_level`, in `format`, to stderr. Call once, first thing. Text is coloured only on a
/// terminal, so a log file holds the plain `field=value` a grep finds.
pub fn init_logging(format: LogFormat, default_level: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| default_level.into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(false).init(),
    }
}
