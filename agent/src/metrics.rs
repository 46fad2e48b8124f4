//! The agent's Prometheus metrics: fleet-wide counters kept in atomics and served as the text
//! exposition format on `GET /metrics`. No label ever names a device: a fleet of 100,000 devices
//! must not become 100,000 time series, and a device name can identify a person.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Outcome of a command the agent ran, as a metrics label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CommandOutcome {
    Success,
    Failure,
    /// Refused before it ran (bad signature, not ours, already applied): no result was sent.
    Ignored,
}

/// Result of a passcode the user typed, as a metrics label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EntryResult {
    Accepted,
    Rejected,
    Error,
}

/// The agent's counters and gauges. Recorded by the fleet runtime, never by the device model.
#[derive(Debug, Default)]
pub struct AgentMetrics {
    pub(crate) devices_hosted: AtomicU64,
    pub devices_connected: AtomicU64,
    commands_success: AtomicU64,
    commands_failure: AtomicU64,
    commands_ignored: AtomicU64,
    entries_accepted: AtomicU64,
    entries_rejected: AtomicU64,
    entries_error: AtomicU64,
    pub(crate) reports_sent: AtomicU64,
    faults_delay: AtomicU64,
    faults_duplicate: AtomicU64,
    faults_drop: AtomicU64,
    faults_disconnect: AtomicU64,
}

impl AgentMetrics {
    pub(crate) fn command(&self, outcome: CommandOutcome) {
        let counter = match outcome {
            CommandOutcome::Success => &self.commands_success,
            CommandOutcome::Failure => &self.commands_failure,
            CommandOutcome::Ignored => &self.commands_ignored,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a fault injected on a session message; delivering untouched is no fault.
    pub(crate) fn fault(&self, action: crate::faults::FaultAction) {
        use crate::faults::FaultAction;
        let counter = match action {
            FaultAction::Deliver => return,
            FaultAction::Delay { .. } => &self.faults_delay,
            FaultAction::Duplicate => &self.faults_duplicate,
            FaultAction::Drop => &self.faults_drop,
            FaultAction::Disconnect => &self.faults_disconnect,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn passcode_entry(&self, result: EntryResult) {
        let counter = match result {
            EntryResult::Accepted => &self.entries_accepted,
            EntryResult::Rejected => &self.entries_rejected,
            EntryResult::Error => &self.entries_error,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::new();
        gauge(
            &mut out,
            "droidfleet_agent_devices_hosted",
            "Devices this agent hosts.",
            get(&self.devices_hosted),
        );
        gauge(
            &mut out,
            "droidfleet_agent_devices_connected",
            "Devices with an open Session stream to the control plane.",
            get(&self.devices_connected),
        );
        labelled(
            &mut out,
            "droidfleet_agent_commands_total",
            "Signed commands received, by outcome.",
            "outcome",
            &[
                ("success", get(&self.commands_success)),
                ("failure", get(&self.commands_failure)),
                ("ignored", get(&self.commands_ignored)),
            ],
        );
        labelled(
            &mut out,
            "droidfleet_agent_passcode_entries_total",
            "Passcodes the users typed, by result.",
            "result",
            &[
                ("accepted", get(&self.entries_accepted)),
                ("rejected", get(&self.entries_rejected)),
                ("error", get(&self.entries_error)),
            ],
        );
        labelled(
            &mut out,
            "droidfleet_agent_faults_injected_total",
            "Session messages hit by an injected fault (--faults), by kind.",
            "kind",
            &[
                ("delay", get(&self.faults_delay)),
                ("duplicate", get(&self.faults_duplicate)),
                ("drop", get(&self.faults_drop)),
                ("disconnect", get(&self.faults_disconnect)),
            ],
        );
        counter(
            &mut out,
            "droidfleet_agent_reports_sent_total",
            "Messages the devices handed to an open session (acks, results, statuses, tokens, user events).",
            get(&self.reports_sent),
        );
        out
    }
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    out.push_str(&format!(
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
    ));
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    out.push_str(&format!(
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"
    ));
}

fn labelled(out: &mut String, name: &str, help: &str, label: &str, values: &[(&str, u64)]) {
    out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
    for (value_label, value) in values {
        out.push_str(&format!("{name}{{{label}=\"{value_label}\"}} {value}\n"));
    }
}

/// Serves `GET /metrics` with `render()`'s text on `listener` until `shutdown` resolves.
///
/// A deliberately minimal HTTP/1.1 responder (one request per connection, then close): a scraper
/// needs nothing more, and it keeps an HTTP server framework out of the agent's dependencies.
/// The control plane carries its own copy (its `metrics` module), because the two crates share
/// no runtime code.
pub async fn serve_metrics<F>(
    listener: TcpListener,
    render: F,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    F: Fn() -> String + Send + Sync + Clone + 'static,
{
    tokio::pin!(shutdown);
    loop {
        let (mut stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = &mut shutdown => return Ok(()),
        };
        let render = render.clone();
        tokio::spawn(async move {
            // Bounded in size and time: a client that never finishes its request costs one task
            // for at most five seconds.
            let mut request = Vec::with_capacity(512);
            let mut buffer = [0u8; 1024];
            let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                while request.len() < 8192 && !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = stream.read(&mut buffer).await?;
                    if n == 0 {
                        break;
                    }
                    request.extend_from_slice(&buffer[..n]);
                }
                Ok::<_, std::io::Error>(())
            })
            .await;
            if !matches!(read, Ok(Ok(()))) {
                return;
            }
            let line = request.split(|b| *b == b'\r').next().unwrap_or_default();
            let mut parts = line.split(|b| *b == b' ');
            let (method, path) = (parts.next(), parts.next());
            let response = match (method, path) {
                (Some(b"GET"), Some(b"/metrics")) => {
                    let body = render();
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                }
                (Some(b"GET"), _) => {
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_string()
                }
                _ => "HTTP/1.1 405 Method Not Allowed\r\nAllow: GET\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_string(),
            };
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}
