//! The control plane's Prometheus metrics, served as the text exposition format on
//! `GET /metrics`.
//!
//! Recorded at the edge, never in the domain model: [`ControlPlaneMetrics::follow`] subscribes to
//! the control plane's broadcasts of action and device changes and counts what it sees, and
//! [`AdminCallCounter`] wraps the gRPC router to count admin calls by method and status. No
//! label names a device, an action or a principal: 100,000 devices must not become 100,000 time
//! series, and the metrics text carries nothing secret.

use crate::model::{Action, ActionKind, ActionState, ErrorCode};
use crate::service::{ControlPlane, Operation};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::broadcast;

const KINDS: [ActionKind; 2] = [ActionKind::ResetPasscode, ActionKind::RemoteLock];
/// Slot 0 is "no error code"; slot `i + 1` is `ErrorCode::ALL[i]`.
const CODE_SLOTS: usize = ErrorCode::ALL.len() + 1;

/// The control plane's counters and gauges, all atomics.
#[derive(Debug)]
pub struct ControlPlaneMetrics {
    created: [AtomicU64; KINDS.len()],
    finished: Vec<AtomicU64>,
    delivered: AtomicU64,
    user_entered: AtomicU64,
    devices_connected: AtomicU64,
    sessions_opened: AtomicU64,
    /// Broadcast messages the follower missed because it fell behind (the counts are then low).
    missed_events: AtomicU64,
    /// Admin calls by (gRPC method, status); the method set is fixed by the proto, so the
    /// label set stays small.
    admin_calls: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// Bumped after each recorded event, so a reader can wait for the counts to move instead of
    /// polling.
    updates: tokio::sync::watch::Sender<u64>,
}

impl Default for ControlPlaneMetrics {
    fn default() -> ControlPlaneMetrics {
        ControlPlaneMetrics {
            created: Default::default(),
            finished: (0..ActionState::ALL.len() * CODE_SLOTS)
                .map(|_| AtomicU64::new(0))
                .collect(),
            delivered: AtomicU64::new(0),
            user_entered: AtomicU64::new(0),
            devices_connected: AtomicU64::new(0),
            sessions_opened: AtomicU64::new(0),
            missed_events: AtomicU64::new(0),
            admin_calls: Mutex::new(BTreeMap::new()),
            updates: tokio::sync::watch::channel(0).0,
        }
    }
}

fn kind_slot(kind: ActionKind) -> usize {
    KINDS.iter().position(|k| *k == kind).unwrap_or(0)
}

fn finished_slot(state: ActionState, code: Option<ErrorCode>) -> usize {
    let state = ActionState::ALL
        .iter()
        .position(|s| *s == state)
        .unwrap_or(0);
    let code = code
        .and_then(|c| ErrorCode::ALL.iter().position(|x| *x == c))
        .map_or(0, |i| i + 1);
    state * CODE_SLOTS + code
}

impl ControlPlaneMetrics {
    /// Counts an admin call to `method` (e.g. `ResetPasscode`) that ended with gRPC `status`.
    pub fn admin_call(&self, method: &str, status: &'static str) {
        // A method the proto does not define is answered UNIMPLEMENTED, but its name is the
        // caller's choice: counted under one label, or a client inventing names grows /metrics.
        let method = if Operation::parse(method).is_some() {
            method
        } else {
            OTHER_METHOD
        };
        *lock(&self.admin_calls)
            .entry((method.to_string(), status))
            .or_default() += 1;
        self.updates.send_modify(|n| *n += 1);
    }

    /// Changes after each event the metrics record.
    pub fn updates(&self) -> tokio::sync::watch::Receiver<u64> {
        self.updates.subscribe()
    }

    /// Follows `control_plane`'s action and device broadcasts, counting, until `shutdown`
    /// resolves. Subscribes before it returns the future, so nothing that happens after this call
    /// is missed.
    pub fn follow(
        self: Arc<Self>,
        control_plane: Arc<ControlPlane>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = ()> + Send + 'static {
        let mut actions = control_plane.watch_actions();
        let mut devices = control_plane.watch_devices();
        async move {
            tokio::pin!(shutdown);
            // Actions not final yet, to tell a creation from a later change; bounded by the
            // actions in flight, since a final action leaves the map.
            let mut open: HashMap<String, ActionState> = HashMap::new();
            let mut online: HashSet<String> = HashSet::new();
            loop {
                tokio::select! {
                    _ = &mut shutdown => return,
                    action = actions.recv() => match action {
                        Ok(action) => self.record_action(&mut open, &action),
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            self.missed_events.fetch_add(n, Ordering::Relaxed);
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    device = devices.recv() => match device {
                        Ok(device_id) => {
                            if control_plane.is_online(&device_id) {
                                if online.insert(device_id) {
                                    self.sessions_opened.fetch_add(1, Ordering::Relaxed);
                                }
                            } else {
                                online.remove(&device_id);
                            }
                            self.devices_connected.store(online.len() as u64, Ordering::Relaxed);
                        }
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            self.missed_events.fetch_add(n, Ordering::Relaxed);
                            // The set may hold devices that left meanwhile: re-check them.
                            online.retain(|id| control_plane.is_online(id));
                            self.devices_connected.store(online.len() as u64, Ordering::Relaxed);
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                }
                self.updates.send_modify(|n| *n += 1);
            }
        }
    }

    fn record_action(&self, open: &mut HashMap<String, ActionState>, action: &Action) {
        let previous = open.remove(&action.id);
        // A creation is published once, as pending, or already final when the control plane
        // ended it itself (no passcode policy, not supported): then it never had a sequence.
        let created = previous.is_none()
            && (action.state == ActionState::Pending
                || (action.state.is_final()
                    && action.sequence.is_none()
                    && action.delivered_at.is_none()
                    && action.user_entered_at.is_none()));
        if created {
            self.created[kind_slot(action.kind)].fetch_add(1, Ordering::Relaxed);
        }
        if action.state == ActionState::Active && previous != Some(ActionState::Active) {
            self.delivered.fetch_add(1, Ordering::Relaxed);
        }
        if action.state.is_final() {
            // The user's entry is published again on a done action; it is not a second finish.
            if action.user_entered_at.is_some() && previous.is_none() && !created {
                self.user_entered.fetch_add(1, Ordering::Relaxed);
            } else {
                self.finished[finished_slot(action.state, action.error_code)]
                    .fetch_add(1, Ordering::Relaxed);
            }
        } else {
            open.insert(action.id.clone(), action.state);
        }
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::new();
        header(
            &mut out,
            "droidfleet_actions_created_total",
            "Remote actions created, by kind.",
            "counter",
        );
        for kind in KINDS {
            line(
                &mut out,
                "droidfleet_actions_created_total",
                &[("kind", kind.as_str())],
                get(&self.created[kind_slot(kind)]),
            );
        }
        header(
            &mut out,
            "droidfleet_actions_finished_total",
            "Remote actions that reached a final state, by state and error code.",
            "counter",
        );
        for state in ActionState::ALL.into_iter().filter(|s| s.is_final()) {
            let codes = std::iter::once(None).chain(ErrorCode::ALL.into_iter().map(Some));
            for code in codes {
                let value = get(&self.finished[finished_slot(state, code)]);
                // Most (state, code) pairs never happen; a zero series for each would drown
                // the few that do. `done` with no code is always shown.
                if value == 0 && !(state == ActionState::Done && code.is_none()) {
                    continue;
                }
                line(
                    &mut out,
                    "droidfleet_actions_finished_total",
                    &[
                        ("state", state.as_str()),
                        ("error_code", code.map_or("", ErrorCode::as_str)),
                    ],
                    value,
                );
            }
        }
        simple(
            &mut out,
            "droidfleet_actions_delivered_total",
            "Actions whose command a device acknowledged.",
            "counter",
            get(&self.delivered),
        );
        simple(
            &mut out,
            "droidfleet_actions_user_entered_total",
            "Done resets whose user then entered the new passcode.",
            "counter",
            get(&self.user_entered),
        );
        simple(
            &mut out,
            "droidfleet_devices_connected",
            "Devices with an open Session stream.",
            "gauge",
            get(&self.devices_connected),
        );
        simple(
            &mut out,
            "droidfleet_sessions_opened_total",
            "Device sessions opened.",
            "counter",
            get(&self.sessions_opened),
        );
        simple(
            &mut out,
            "droidfleet_metrics_missed_events_total",
            "Change events the metrics missed by falling behind; counts above are low by at most this.",
            "counter",
            get(&self.missed_events),
        );
        header(
            &mut out,
            "droidfleet_admin_calls_total",
            "Admin API calls, by operation (gRPC method) and result (gRPC status).",
            "counter",
        );
        for ((method, status), value) in lock(&self.admin_calls).iter() {
            line(
                &mut out,
                "droidfleet_admin_calls_total",
                &[("operation", method), ("result", status)],
                *value,
            );
        }
        out
    }
}

/// The operation label of a call to a method the AdminService does not define (the others are
/// the admin operations, named exactly as the proto's methods).
pub const OTHER_METHOD: &str = "other";

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
}

fn simple(out: &mut String, name: &str, help: &str, kind: &str, value: u64) {
    header(out, name, help, kind);
    out.push_str(&format!("{name} {value}\n"));
}

fn line(out: &mut String, name: &str, labels: &[(&str, &str)], value: u64) {
    let labels: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    out.push_str(&format!("{name}{{{}}} {value}\n", labels.join(",")));
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Serves `GET /metrics` with `render()`'s text on `listener` until `shutdown` resolves.
///
/// A deliberately minimal HTTP/1.1 responder (one request per connection, then close): a scraper
/// needs nothing more, and it keeps an HTTP server framework out of the dependencies. The agent
/// crate carries its own copy: the library never depends on the agent.
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
            let response = match (parts.next(), parts.next()) {
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

/// Wraps the admin API's gRPC service and counts each call by method and status.
///
/// The status comes from the response headers: tonic answers a failed unary call
/// "trailers-only", with `grpc-status` in the headers, and a successful one without it. A
/// streaming call (WatchAction) is counted as `ok` once its stream opens.
#[derive(Clone)]
pub struct AdminCallCounter<S> {
    inner: S,
    metrics: Arc<ControlPlaneMetrics>,
}

impl<S> AdminCallCounter<S> {
    pub fn new(inner: S, metrics: Arc<ControlPlaneMetrics>) -> AdminCallCounter<S> {
        AdminCallCounter { inner, metrics }
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for AdminCallCounter<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B, R> tonic::codegen::Service<tonic::codegen::http::Request<B>> for AdminCallCounter<S>
where
    S: tonic::codegen::Service<
            tonic::codegen::http::Request<B>,
            Response = tonic::codegen::http::Response<R>,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: tonic::codegen::http::Request<B>) -> Self::Future {
        // The path is `/droidfleet.v1.AdminService/Method`; only the method is a label.
        let method = request
            .uri()
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let metrics = self.metrics.clone();
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            let status = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
                .map_or("ok", |code| grpc_code_name(tonic::Code::from_i32(code)));
            metrics.admin_call(&method, status);
            Ok(response)
        })
    }
}

fn grpc_code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "ok",
        Cancelled => "cancelled",
        Unknown => "unknown",
        InvalidArgument => "invalid_argument",
        DeadlineExceeded => "deadline_exceeded",
        NotFound => "not_found",
        AlreadyExists => "already_exists",
        PermissionDenied => "permission_denied",
        ResourceExhausted => "resource_exhausted",
        FailedPrecondition => "failed_precondition",
        Aborted => "aborted",
        OutOfRange => "out_of_range",
        Unimplemented => "unimplemented",
        Internal => "internal",
        Unavailable => "unavailable",
        DataLoss => "data_loss",
        Unauthenticated => "unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_call_labels_come_from_the_proto_s_methods_only() {
        let metrics = ControlPlaneMetrics::default();
        metrics.admin_call("ResetPasscode", "ok");
        for i in 0..100 {
            metrics.admin_call(&format!("Invented{i}"), "unimplemented");
        }
        let text = metrics.render();
        assert!(
            text.contains(r#"operation="ResetPasscode",result="ok"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"operation="other",result="unimplemented"} 100"#),
            "{text}"
        );
        assert!(!text.contains("Invented"), "{text}");
    }
}
