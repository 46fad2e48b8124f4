//! The agent's Prometheus metrics, on `prometheus-client` (one registry per process), served on
//! `GET /metrics` by the shared axum server in `droidfleet-telemetry`. No label ever names a
//! device: a fleet of 100,000 devices must not become 100,000 time series, and a device name can
//! identify a person. Every label value comes from a fixed set (the enums below).
//!
//! Histograms (seconds): `droidfleet_agent_command_duration_seconds{outcome}`, from a signed
//! command's arrival at its device to its result ready to send (or to its refusal);
//! `droidfleet_agent_argon2_seconds`, one observation per Argon2id run (a passcode entered, set
//! or reset), timed around the device change that ran it on its blocking thread.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;

/// Bucket bounds of command handling: a command costs one Argon2 derivation or none, plus the
/// wait for the device's turn.
pub const COMMAND_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Bucket bounds of one Argon2id run: from the light preset (64 KiB, one pass: a fraction of a
/// millisecond) to the realistic one (19 MiB, two passes: tens to hundreds of milliseconds,
/// more on a loaded machine).
pub const ARGON2_BUCKETS: [f64; 15] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5,
];

/// Outcome of a command the agent ran, as a metrics label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CommandOutcome {
    Success,
    Failure,
    /// Refused before it ran (bad signature, not ours, already applied): no result was sent.
    Ignored,
}

impl CommandOutcome {
    const ALL: [CommandOutcome; 3] = [
        CommandOutcome::Success,
        CommandOutcome::Failure,
        CommandOutcome::Ignored,
    ];

    fn label(self) -> &'static str {
        match self {
            CommandOutcome::Success => "success",
            CommandOutcome::Failure => "failure",
            CommandOutcome::Ignored => "ignored",
        }
    }
}

/// Result of a passcode the user typed, as a metrics label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EntryResult {
    Accepted,
    Rejected,
    Error,
}

impl EntryResult {
    const ALL: [EntryResult; 3] = [
        EntryResult::Accepted,
        EntryResult::Rejected,
        EntryResult::Error,
    ];

    fn label(self) -> &'static str {
        match self {
            EntryResult::Accepted => "accepted",
            EntryResult::Rejected => "rejected",
            EntryResult::Error => "error",
        }
    }
}

const FAULT_KINDS: [&str; 4] = ["delay", "duplicate", "drop", "disconnect"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FaultLabel {
    kind: &'static str,
}

fn command_histogram() -> Histogram {
    Histogram::new(COMMAND_BUCKETS)
}

/// The agent's registry and the metrics in it. Recorded by the fleet runtime, never by the
/// device model.
#[derive(Debug)]
pub struct AgentMetrics {
    registry: Registry,
    devices_hosted: Gauge,
    devices_connected: Gauge,
    commands: Family<OutcomeLabel, Counter>,
    command_duration: Family<OutcomeLabel, Histogram, fn() -> Histogram>,
    argon2_duration: Histogram,
    entries: Family<ResultLabel, Counter>,
    reports_sent: Counter,
    faults: Family<FaultLabel, Counter>,
}

impl Default for AgentMetrics {
    fn default() -> AgentMetrics {
        let mut registry = Registry::default();
        let devices_hosted = Gauge::default();
        registry.register(
            "droidfleet_agent_devices_hosted",
            "Devices this agent hosts",
            devices_hosted.clone(),
        );
        let devices_connected = Gauge::default();
        registry.register(
            "droidfleet_agent_devices_connected",
            "Devices with an open Session stream to the control plane",
            devices_connected.clone(),
        );
        let commands = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "droidfleet_agent_commands",
            "Signed commands received, by outcome",
            commands.clone(),
        );
        let command_duration: Family<OutcomeLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(command_histogram);
        registry.register(
            "droidfleet_agent_command_duration_seconds",
            "Time from a signed command's arrival to its result ready to send, by outcome",
            command_duration.clone(),
        );
        let argon2_duration = Histogram::new(ARGON2_BUCKETS);
        registry.register(
            "droidfleet_agent_argon2_seconds",
            "Time of one Argon2id run (a passcode entered, set or reset), on its blocking thread",
            argon2_duration.clone(),
        );
        let entries = Family::<ResultLabel, Counter>::default();
        registry.register(
            "droidfleet_agent_passcode_entries",
            "Passcodes the users typed, by result",
            entries.clone(),
        );
        let faults = Family::<FaultLabel, Counter>::default();
        registry.register(
            "droidfleet_agent_faults_injected",
            "Session messages hit by an injected fault (--faults), by kind",
            faults.clone(),
        );
        let reports_sent = Counter::default();
        registry.register(
            "droidfleet_agent_reports_sent",
            "Messages the devices handed to an open session (acks, results, statuses, tokens, user events)",
            reports_sent.clone(),
        );
        // Every series from the start, at zero: the label sets are fixed.
        for outcome in CommandOutcome::ALL {
            let label = OutcomeLabel {
                outcome: outcome.label(),
            };
            drop(commands.get_or_create(&label));
            drop(command_duration.get_or_create(&label));
        }
        for result in EntryResult::ALL {
            drop(entries.get_or_create(&ResultLabel {
                result: result.label(),
            }));
        }
        for kind in FAULT_KINDS {
            drop(faults.get_or_create(&FaultLabel { kind }));
        }
        AgentMetrics {
            registry,
            devices_hosted,
            devices_connected,
            commands,
            command_duration,
            argon2_duration,
            entries,
            reports_sent,
            faults,
        }
    }
}

impl AgentMetrics {
    /// Devices with an open Session stream now.
    pub fn devices_connected(&self) -> u64 {
        u64::try_from(self.devices_connected.get()).unwrap_or(0)
    }

    pub(crate) fn set_devices_hosted(&self, devices: usize) {
        self.devices_hosted
            .set(i64::try_from(devices).unwrap_or(i64::MAX));
    }

    pub(crate) fn session_opened(&self) {
        self.devices_connected.inc();
    }

    pub(crate) fn session_closed(&self) {
        self.devices_connected.dec();
    }

    pub(crate) fn report_sent(&self) {
        self.reports_sent.inc();
    }

    /// Counts a command and the time it took, from its arrival to its result (or refusal).
    pub(crate) fn command(&self, outcome: CommandOutcome, elapsed: Duration) {
        let label = OutcomeLabel {
            outcome: outcome.label(),
        };
        self.commands.get_or_create(&label).inc();
        self.command_duration
            .get_or_create(&label)
            .observe(elapsed.as_secs_f64());
    }

    /// Records the `runs` Argon2id runs of one device change that took `elapsed` on its blocking
    /// thread, each as an equal share of it: the rest of such a change (an HKDF, an AES-GCM
    /// operation or two) is microseconds beside one run.
    pub(crate) fn argon2_runs(&self, runs: u32, elapsed: Duration) {
        if runs == 0 {
            return;
        }
        let each = elapsed.as_secs_f64() / f64::from(runs);
        for _ in 0..runs {
            self.argon2_duration.observe(each);
        }
    }

    /// Counts a fault injected on a session message; delivering untouched is no fault.
    pub(crate) fn fault(&self, action: crate::faults::FaultAction) {
        use crate::faults::FaultAction;
        let kind = match action {
            FaultAction::Deliver => return,
            FaultAction::Delay { .. } => "delay",
            FaultAction::Duplicate => "duplicate",
            FaultAction::Drop => "drop",
            FaultAction::Disconnect => "disconnect",
        };
        self.faults.get_or_create(&FaultLabel { kind }).inc();
    }

    pub(crate) fn passcode_entry(&self, result: EntryResult) {
        self.entries
            .get_or_create(&ResultLabel {
                result: result.label(),
            })
            .inc();
    }

    /// The registry in the OpenMetrics text format.
    pub fn render(&self) -> String {
        droidfleet_telemetry::encode(&self.registry)
    }
}

/// Serves `GET /metrics` with `render()`'s text on `listener` until `shutdown` resolves, on the
/// axum server both processes share.
pub async fn serve_metrics<F>(
    listener: TcpListener,
    render: F,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    F: Fn() -> String + Send + Sync + Clone + 'static,
{
    droidfleet_telemetry::serve_metrics(listener, render, shutdown).await
}
