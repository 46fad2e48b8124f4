//! The control plane's Prometheus metrics, on `prometheus-client` (one registry per process),
//! served on `GET /metrics` by the shared axum server in `droidfleet-telemetry`.
//!
//! Recorded at the edge, never in the domain model: [`ControlPlaneMetrics::follow`] subscribes to
//! the control plane's broadcasts of action and device changes and counts what it sees, and
//! [`AdminCallCounter`] wraps the gRPC router to count and time admin calls by operation and
//! status. Every label value comes from a fixed set (action kinds, states and error codes, the
//! admin [`Operation`] list, gRPC codes): no label names a device, an action or a principal, so
//! 100,000 devices do not become 100,000 time series and the metrics text carries nothing
//! secret.
//!
//! Histograms (seconds):
//! - `droidfleet_action_phase_seconds{kind,phase}`: time from the admin's request to the action
//!   reaching `phase`: `delivered` (the device acknowledged the command), `applied` (the device
//!   reported success) and `user_entered` (the user typed the new passcode), from the action's
//!   own timestamps (the control plane's clock).
//! - `droidfleet_admin_call_duration_seconds{operation}`: admin call latency, from the request
//!   reaching the admin service to its response headers.
//! - `droidfleet_session_duration_seconds`: how long device Session streams stayed open.

use crate::model::{Action, ActionKind, ActionState, ErrorCode};
use crate::service::ControlPlane;
use crate::service::Operation;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;
use tokio::sync::broadcast;

const KINDS: [ActionKind; 2] = [ActionKind::ResetPasscode, ActionKind::RemoteLock];

/// Bucket bounds of the action phases: a reset is delivered in milliseconds on a quiet fleet and
/// applied within seconds, while a user may take minutes to type the new passcode.
pub const ACTION_PHASE_BUCKETS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];
/// Bucket bounds of admin call latency: most calls are a memory read or one group commit.
pub const ADMIN_CALL_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];
/// Bucket bounds of session duration: from a flapping connection to a device online for days.
pub const SESSION_BUCKETS: [f64; 10] = [
    1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 43200.0, 86400.0, 604800.0,
];

/// The phases an action passes through after the request, as the `phase` label.
const PHASES: [&str; 3] = ["delivered", "applied", "user_entered"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FinishedLabels {
    state: &'static str,
    /// Empty when the action ended without an error code.
    error_code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    kind: &'static str,
    phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    operation: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabel {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabel {
    limit: &'static str,
}

/// A per-peer rate limit, as the `limit` label of `droidfleet_rate_limited_total` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateLimit {
    /// `--enroll-rate`.
    Enroll,
    /// `--failed-auth-rate`.
    FailedAuth,
}

impl RateLimit {
    pub const ALL: [RateLimit; 2] = [RateLimit::Enroll, RateLimit::FailedAuth];

    pub fn name(self) -> &'static str {
        match self {
            RateLimit::Enroll => "enroll",
            RateLimit::FailedAuth => "failed_auth",
        }
    }

    /// What the limit counts, for a refusal's message.
    pub fn what(self) -> &'static str {
        match self {
            RateLimit::Enroll => "enrollments",
            RateLimit::FailedAuth => "failed authentications",
        }
    }
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn phase_histogram() -> Histogram {
    Histogram::new(ACTION_PHASE_BUCKETS)
}

fn admin_call_histogram() -> Histogram {
    Histogram::new(ADMIN_CALL_BUCKETS)
}

/// The control plane's registry and the metrics in it.
#[derive(Debug)]
pub struct ControlPlaneMetrics {
    registry: Registry,
    created: Family<KindLabel, Counter>,
    finished: Family<FinishedLabels, Counter>,
    delivered: Counter,
    user_entered: Counter,
    devices_connected: Gauge,
    sessions_opened: Counter,
    /// Sessions refused for a missing or wrong proof of possession (PROTOCOL.md CP-SESSION-1).
    session_proofs_refused: Counter,
    /// Broadcast messages the follower missed because it fell behind (the counts are then low).
    missed_events: Counter,
    admin_calls: Family<CallLabels, Counter>,
    admin_call_duration: HistogramFamily<OperationLabel>,
    action_phases: HistogramFamily<PhaseLabels>,
    session_duration: Histogram,
    rate_limited: Family<LimitLabel, Counter>,
    /// Bumped after each recorded event, so a reader can wait for the counts to move instead of
    /// polling.
    updates: tokio::sync::watch::Sender<u64>,
}

impl Default for ControlPlaneMetrics {
    fn default() -> ControlPlaneMetrics {
        let mut registry = Registry::default();
        let created = Family::<KindLabel, Counter>::default();
        registry.register(
            "droidfleet_actions_created",
            "Remote actions created, by kind",
            created.clone(),
        );
        let finished = Family::<FinishedLabels, Counter>::default();
        registry.register(
            "droidfleet_actions_finished",
            "Remote actions that reached a final state, by state and error code",
            finished.clone(),
        );
        let delivered = Counter::default();
        registry.register(
            "droidfleet_actions_delivered",
            "Actions whose command a device acknowledged",
            delivered.clone(),
        );
        let user_entered = Counter::default();
        registry.register(
            "droidfleet_actions_user_entered",
            "Done resets whose user then entered the new passcode",
            user_entered.clone(),
        );
        let devices_connected = Gauge::default();
        registry.register(
            "droidfleet_devices_connected",
            "Devices with an open Session stream",
            devices_connected.clone(),
        );
        let sessions_opened = Counter::default();
        registry.register(
            "droidfleet_sessions_opened",
            "Device sessions opened",
            sessions_opened.clone(),
        );
        let session_proofs_refused = Counter::default();
        registry.register(
            "droidfleet_session_proofs_refused",
            "Device sessions refused for a missing or wrong proof of possession of the device's key",
            session_proofs_refused.clone(),
        );
        let missed_events = Counter::default();
        registry.register(
            "droidfleet_metrics_missed_events",
            "Change events the metrics missed by falling behind; counts above are low by at most this",
            missed_events.clone(),
        );
        let admin_calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "droidfleet_admin_calls",
            "Admin API calls, by operation (gRPC method) and result (gRPC status)",
            admin_calls.clone(),
        );
        let admin_call_duration: HistogramFamily<OperationLabel> =
            Family::new_with_constructor(admin_call_histogram);
        registry.register(
            "droidfleet_admin_call_duration_seconds",
            "Admin API call latency, from the request to the response headers, by operation",
            admin_call_duration.clone(),
        );
        let action_phases: HistogramFamily<PhaseLabels> =
            Family::new_with_constructor(phase_histogram);
        registry.register(
            "droidfleet_action_phase_seconds",
            "Time from an action's request to the phase it reached (delivered, applied, user_entered), by kind",
            action_phases.clone(),
        );
        let session_duration = Histogram::new(SESSION_BUCKETS);
        registry.register(
            "droidfleet_session_duration_seconds",
            "How long device Session streams stayed open",
            session_duration.clone(),
        );
        let rate_limited = Family::<LimitLabel, Counter>::default();
        registry.register(
            "droidfleet_rate_limited",
            "Calls refused by a per-peer rate limit (enroll, failed_auth)",
            rate_limited.clone(),
        );
        for limit in RateLimit::ALL {
            drop(rate_limited.get_or_create(&LimitLabel {
                limit: limit.name(),
            }));
        }
        // Series a dashboard reads from the start, zero until something happens: a missing
        // series and a zero one look alike on a graph but not to `rate()` after the first event.
        for kind in KINDS {
            drop(created.get_or_create(&KindLabel {
                kind: kind.as_str(),
            }));
            for phase in PHASES {
                drop(action_phases.get_or_create(&PhaseLabels {
                    kind: kind.as_str(),
                    phase,
                }));
            }
        }
        drop(finished.get_or_create(&FinishedLabels {
            state: ActionState::Done.as_str(),
            error_code: "",
        }));
        ControlPlaneMetrics {
            registry,
            created,
            finished,
            delivered,
            user_entered,
            devices_connected,
            sessions_opened,
            session_proofs_refused,
            missed_events,
            admin_calls,
            admin_call_duration,
            action_phases,
            session_duration,
            rate_limited,
            updates: tokio::sync::watch::channel(0).0,
        }
    }
}

/// The `operation` label of an admin call to gRPC `method`: the [`Operation`]'s name, or `other`
/// for a name the admin API does not have (the router answers it as unimplemented).
fn operation_label(method: &str) -> &'static str {
    Operation::ALL
        .iter()
        .map(|operation| operation.name())
        .find(|name| *name == method)
        .unwrap_or("other")
}

fn seconds_between(from: u64, to: u64) -> f64 {
    to.saturating_sub(from) as f64 / 1000.0
}

impl ControlPlaneMetrics {
    /// Counts an admin call to `method` (e.g. `ResetPasscode`) that ended with gRPC `status`
    /// after `elapsed`.
    /// A call refused by `limit`.
    pub fn rate_limited(&self, limit: RateLimit) {
        self.rate_limited
            .get_or_create(&LimitLabel {
                limit: limit.name(),
            })
            .inc();
        self.updates.send_modify(|n| *n += 1);
    }

    pub fn admin_call(&self, method: &str, status: &'static str, elapsed: std::time::Duration) {
        let operation = operation_label(method);
        self.admin_calls
            .get_or_create(&CallLabels {
                operation,
                result: status,
            })
            .inc();
        self.admin_call_duration
            .get_or_create(&OperationLabel { operation })
            .observe(elapsed.as_secs_f64());
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
        let mut refused = control_plane.refused_proofs();
        async move {
            tokio::pin!(shutdown);
            // Actions not final yet, to tell a creation from a later change; bounded by the
            // actions in flight, since a final action leaves the map.
            let mut open: HashMap<String, ActionState> = HashMap::new();
            // Devices online and since when, for the session duration; bounded by the fleet.
            let mut online: HashMap<String, Instant> = HashMap::new();
            loop {
                tokio::select! {
                    _ = &mut shutdown => return,
                    changed = refused.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        let total = *refused.borrow_and_update();
                        self.session_proofs_refused
                            .inc_by(total.saturating_sub(self.session_proofs_refused.get()));
                    }
                    action = actions.recv() => match action {
                        Ok(action) => self.record_action(&mut open, &action),
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            self.missed_events.inc_by(n);
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    device = devices.recv() => match device {
                        Ok(device_id) => {
                            if control_plane.is_online(&device_id) {
                                if let std::collections::hash_map::Entry::Vacant(entry) =
                                    online.entry(device_id)
                                {
                                    entry.insert(Instant::now());
                                    self.sessions_opened.inc();
                                }
                            } else if let Some(since) = online.remove(&device_id) {
                                self.session_duration.observe(since.elapsed().as_secs_f64());
                            }
                            self.devices_connected.set(online.len() as i64);
                        }
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            self.missed_events.inc_by(n);
                            // The map may hold devices that left meanwhile: re-check them.
                            online.retain(|id, since| {
                                let still = control_plane.is_online(id);
                                if !still {
                                    self.session_duration.observe(since.elapsed().as_secs_f64());
                                }
                                still
                            });
                            self.devices_connected.set(online.len() as i64);
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                }
                self.updates.send_modify(|n| *n += 1);
            }
        }
    }

    fn phase(&self, action: &Action, phase: &'static str, at: u64) {
        self.action_phases
            .get_or_create(&PhaseLabels {
                kind: action.kind.as_str(),
                phase,
            })
            .observe(seconds_between(action.created_at, at));
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
            self.created
                .get_or_create(&KindLabel {
                    kind: action.kind.as_str(),
                })
                .inc();
        }
        if action.state == ActionState::Active && previous != Some(ActionState::Active) {
            self.delivered.inc();
            if let Some(at) = action.delivered_at {
                self.phase(action, "delivered", at);
            }
        }
        if action.state.is_final() {
            // The user's entry is published again on a done action; it is not a second finish.
            if action.user_entered_at.is_some() && previous.is_none() && !created {
                self.user_entered.inc();
                if let Some(at) = action.user_entered_at {
                    self.phase(action, "user_entered", at);
                }
            } else {
                self.finished
                    .get_or_create(&FinishedLabels {
                        state: action.state.as_str(),
                        error_code: action.error_code.map_or("", ErrorCode::as_str),
                    })
                    .inc();
                if action.state == ActionState::Done
                    && let Some(at) = action.completed_at
                {
                    self.phase(action, "applied", at);
                }
            }
        } else {
            open.insert(action.id.clone(), action.state);
        }
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
        let started = Instant::now();
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            let status = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
                .map_or("ok", |code| grpc_code_name(tonic::Code::from_i32(code)));
            metrics.admin_call(&method, status, started.elapsed());
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
    fn an_unknown_method_is_one_label_value_not_a_new_one() {
        let metrics = ControlPlaneMetrics::default();
        metrics.admin_call("ResetPasscode", "ok", std::time::Duration::from_millis(3));
        metrics.admin_call("NoSuchMethod", "unimplemented", std::time::Duration::ZERO);
        metrics.admin_call("../../etc", "unimplemented", std::time::Duration::ZERO);
        let text = metrics.render();
        assert!(text.contains(
            "droidfleet_admin_calls_total{operation=\"ResetPasscode\",result=\"ok\"} 1\n"
        ));
        assert!(text.contains(
            "droidfleet_admin_calls_total{operation=\"other\",result=\"unimplemented\"} 2\n"
        ));
        assert!(
            !text.contains("NoSuchMethod") && !text.contains("etc"),
            "{text}"
        );
        assert!(text.contains(
            "droidfleet_admin_call_duration_seconds_bucket{le=\"0.005\",operation=\"ResetPasscode\"} 1\n"
        ), "{text}");
    }
}
