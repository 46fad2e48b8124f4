//! `droidfleet loadtest`'s options, their checks, and the settings derived from them.

use super::control_plane::Target;
use super::error::LoadtestError;
use super::model;
use clap::ValueEnum;
use droidfleet_agent::cli::Argon2Preset;
use droidfleet_agent::faults::FaultConfig;
use droidfleet_agent::seeded::{AndroidMix, Mix, ProfileMix};
use std::path::PathBuf;
use std::time::Duration;

/// Run a fleet of simulated devices against a control plane and report outcomes, latencies,
/// throughput and resource use.
#[derive(clap::Args, Debug)]
pub struct LoadtestArgs {
    /// How many devices to simulate.
    #[arg(long, default_value_t = 200)]
    pub(super) devices: usize,
    /// Weights of the enrollment types, e.g. cosu=3,byod=1 (types left out get none).
    #[arg(long, default_value = "cosu=1,cobo=1,cope=1,byod=1,aosp=1")]
    pub(super) mix: Mix,
    /// Weights of the devices' Android API levels, e.g. 26=1,30=2,34=3 (levels 26 to 35).
    #[arg(long, value_name = "API_LEVEL=WEIGHT,...", default_value = "35=1")]
    pub(super) android: AndroidMix,
    /// Weights of the devices' maker profiles, e.g. aosp=3,short-keyguard=1 (the shipped
    /// profiles are listed in agent/README.md).
    #[arg(long, value_name = "PROFILE=WEIGHT,...", default_value = "aosp=1")]
    pub(super) profile: ProfileMix,
    /// Seed of the behaviour model and of the injected faults: the same seed makes the same
    /// per-device decisions.
    #[arg(long, default_value_t = 42)]
    pub(super) seed: u64,
    /// Resets issued per second; 0 issues them all at once (at most --concurrency in flight).
    #[arg(long, default_value_t = 0.0)]
    pub(super) rate: f64,
    /// Cost of the simulated devices' passcode hashing.
    #[arg(long, value_enum, default_value_t = Argon2Preset::Light)]
    pub(super) argon2: Argon2Preset,
    /// Mean time (exponentially distributed, capped at ten times the mean) before a user
    /// notices the reset and types the new passcode.
    #[arg(long, default_value_t = 200)]
    pub(super) user_delay_ms: u64,
    /// Probability that a user first types a wrong passcode.
    #[arg(long, default_value_t = 0.1)]
    pub(super) typo_probability: f64,
    /// Share of devices given no passcode policy (their reset ends failed / no_passcode_policy).
    #[arg(long, default_value_t = 0.05)]
    pub(super) no_policy_share: f64,
    /// Share of devices whose token is pending when the reset arrives (failed /
    /// token_not_active).
    #[arg(long, default_value_t = 0.05)]
    pub(super) pending_token_share: f64,
    /// Share of devices that go offline just before their reset is issued and come back after
    /// a seeded time (--offline-ms); the reset waits for them.
    #[arg(long, default_value_t = 0.05)]
    pub(super) offline_share: f64,
    /// Mean time offline (exponentially distributed, capped at ten times the mean).
    #[arg(long, default_value_t = 500)]
    pub(super) offline_ms: u64,
    /// Share of devices that reboot after their reset is applied, before their user enters the
    /// new passcode.
    #[arg(long, default_value_t = 0.05)]
    pub(super) reboot_share: f64,
    /// Message-level faults on every device session, e.g.
    /// delay=0.05:250ms,duplicate=0.01,drop=0.005,disconnect=0.005 (probabilities per message,
    /// seeded by --seed), or none.
    #[arg(long, value_name = "SPEC", default_value = "none")]
    pub(super) faults: FaultConfig,
    /// Where report.json and report.html (and a spawned control plane's log) are written.
    #[arg(long, default_value = "droidfleet-report")]
    pub(super) report_dir: PathBuf,
    /// The control plane: `embedded` (in this process), `spawn` (a child `droidfleet serve`,
    /// measured as its own process), or the URL of a running one (its gateway and admin API).
    #[arg(long, value_name = "embedded|spawn|URL", default_value = "embedded")]
    pub(super) control_plane: Target,
    /// With --control-plane URL: the PID of that control plane on this machine, to sample its
    /// memory and CPU from /proc.
    #[arg(long, value_name = "PID")]
    pub(super) control_plane_pid: Option<u32>,
    /// With --control-plane URL: a file holding an admin's bearer token.
    #[arg(long, env = "DROIDFLEET_TOKEN_FILE")]
    pub(super) token_file: Option<PathBuf>,
    /// With an https:// --control-plane URL: its CA certificate (default: tls/ca.pem beside
    /// --token-file, else in $DROIDFLEET_DATA_DIR).
    #[arg(long, env = "DROIDFLEET_CA_FILE")]
    pub(super) ca_file: Option<PathBuf>,
    /// The whole run must end within this many seconds (a run of 100,000 devices needs more
    /// than the default).
    #[arg(long, default_value_t = 120)]
    pub(super) deadline: u64,
    /// At most this many devices in flight at once (each: a reset, its watch, its user).
    /// Default: 512 when all resets are issued at once; no limit with --rate, so the rate is
    /// what shapes the load.
    #[arg(long, value_name = "N")]
    pub(super) concurrency: Option<usize>,
    /// HTTP/2 connections the agent's devices share (device i uses connection i % K).
    #[arg(long, value_name = "K", default_value_t = 4)]
    pub(super) connections: usize,
    /// Each device waits a seeded delay in [0, R) ms before its first connection.
    #[arg(long, value_name = "R", default_value_t = 0)]
    pub(super) ramp_up_ms: u64,
    /// Enroll and connect the fleet, measure memory per device on each side, and stop: no
    /// passcodes, no resets, no baselines.
    #[arg(long, conflicts_with_all = ["rate", "offline_share", "reboot_share", "concurrency"])]
    pub(super) connect_only: bool,
    /// With --control-plane spawn: once every device is connected, kill the control plane with
    /// SIGKILL, start it again on the same data directory and address, and measure how long
    /// the fleet takes to reconnect.
    #[arg(long)]
    pub(super) restart_control_plane: bool,
    /// Skip the baselines (tonic echo, Argon2 on every core) measured after the run.
    #[arg(long)]
    pub(super) no_baselines: bool,
    /// Echo baseline: calls per round (three rounds).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub(super) echo_calls: usize,
    /// Serve a live fleet wall on this address while the run goes (counts by state,
    /// throughput and latency charts, a grid of device screens): http://ADDR/.
    #[arg(long, value_name = "ADDR")]
    pub(super) console: Option<std::net::SocketAddr>,
    /// Serve the Prometheus metrics of the fleet this run hosts (the agent's, as
    /// `droidfleet-agent run --metrics-listen` serves them) on http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    pub(super) metrics_listen: Option<std::net::SocketAddr>,
    /// With --console or --metrics-listen: keep the wall and the metrics endpoint up after the
    /// report is written, until Ctrl-C.
    #[arg(long, alias = "console-wait")]
    pub(super) wait: bool,
    /// Argon2 baseline: hashes per round (three rounds). Default: 10000 with the light preset,
    /// 40 with the realistic one (about a quarter of a second per round on two cores).
    #[arg(long, value_name = "N")]
    pub(super) argon2_hashes: Option<usize>,
    /// Soak: keep resetting for this long (e.g. 30m, 90s) at --rate, each device again once its
    /// previous reset ended and its user entered the new passcode, then end and report.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration,
          conflicts_with = "connect_only")]
    pub(super) duration: Option<Duration>,
}

/// In-flight limit when all resets are issued at once: enough to saturate the control plane,
/// few enough that thousands of watch streams do not pile onto it at the same moment.
pub(super) const ALL_AT_ONCE_CONCURRENCY: usize = 512;
/// A connection is a socket on each side; the machine allows 20,000 files per process.
const MAX_CONNECTIONS: usize = 10_000;

impl LoadtestArgs {
    pub(super) fn behaviour(&self) -> model::Behaviour {
        model::Behaviour {
            seed: self.seed,
            user_delay_mean_ms: self.user_delay_ms,
            typo_probability: self.typo_probability,
            no_policy_share: self.no_policy_share,
            pending_token_share: self.pending_token_share,
            offline_share: self.offline_share,
            offline_mean_ms: self.offline_ms,
            reboot_share: self.reboot_share,
            android: self.android.clone(),
            profiles: self.profile.clone(),
        }
    }

    /// Refuses options out of range or at odds with each other, naming the option.
    pub(super) fn check(&self) -> Result<(), LoadtestError> {
        let require = |holds: bool, problem: String| {
            if holds {
                Ok(())
            } else {
                Err(LoadtestError::InvalidOption(problem))
            }
        };
        require(
            (1..=1_000_000).contains(&self.devices),
            format!("--devices {}: give 1 to 1000000", self.devices),
        )?;
        require(
            self.rate.is_finite() && self.rate >= 0.0,
            format!(
                "--rate {}: give 0 (all at once) or a positive number of resets per second",
                self.rate
            ),
        )?;
        require(
            self.deadline > 0,
            "--deadline must be at least 1 second".into(),
        )?;
        require(
            self.concurrency != Some(0),
            "--concurrency 0: give at least 1 (or leave it out)".into(),
        )?;
        require(
            (1..=MAX_CONNECTIONS).contains(&self.connections),
            format!(
                "--connections {}: give 1 to {MAX_CONNECTIONS} (each is a socket on both sides)",
                self.connections
            ),
        )?;
        require(
            self.ramp_up_ms < self.deadline.saturating_mul(1000),
            format!(
                "--ramp-up-ms {} is not below --deadline {} s: the devices could not all connect \
                 in time",
                self.ramp_up_ms, self.deadline
            ),
        )?;
        require(
            !self.restart_control_plane || self.control_plane == Target::Spawn,
            "--restart-control-plane: only with --control-plane spawn (the run can kill and \
             restart only a control plane it started as its own process)"
                .into(),
        )?;
        if let Some(pid) = self.control_plane_pid {
            require(
                matches!(self.control_plane, Target::External(_)),
                format!(
                    "--control-plane-pid {pid}: only with --control-plane URL (an embedded or \
                     spawned control plane is sampled already)"
                ),
            )?;
        }
        require(
            !self.wait || self.console.is_some() || self.metrics_listen.is_some(),
            "--wait: only with --console or --metrics-listen (there is nothing to keep up)".into(),
        )?;
        if let Some(period) = self.duration {
            let shown = humantime::format_duration(period);
            require(
                !period.is_zero(),
                "--duration 0s: give a positive length, e.g. 30m".into(),
            )?;
            require(
                self.rate > 0.0,
                format!(
                    "--duration {shown}: needs a --rate above 0 (a soak issues resets at a steady \
                     rate; all at once has no period)"
                ),
            )?;
            require(
                period.as_secs_f64() < self.deadline as f64,
                format!(
                    "--duration {shown} is not below --deadline {} s: give a --deadline that \
                     leaves time to set up the fleet and finish the last resets, e.g. {} s",
                    self.deadline,
                    period.as_secs() + 120
                ),
            )?;
        }
        require(
            self.echo_calls > 0,
            "--echo-calls 0: give at least 1".into(),
        )?;
        require(
            self.argon2_hashes != Some(0),
            "--argon2-hashes 0: give at least 1".into(),
        )?;
        self.behaviour()
            .check()
            .map_err(LoadtestError::InvalidOption)
    }

    pub(super) fn preset_name(&self) -> String {
        self.argon2
            .to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }

    /// In flight at once during the measured phase; `None` for no limit.
    pub(super) fn in_flight_limit(&self) -> Option<usize> {
        match self.concurrency {
            Some(n) => Some(n),
            None if self.rate > 0.0 => None,
            None => Some(ALL_AT_ONCE_CONCURRENCY),
        }
    }

    pub(super) fn argon2_hashes(&self) -> usize {
        self.argon2_hashes.unwrap_or(match self.argon2 {
            Argon2Preset::Light => 10_000,
            Argon2Preset::Realistic => 40,
        })
    }

    pub(super) fn faults(&self) -> FaultConfig {
        self.faults.clone().with_seed(self.seed)
    }
}
