//! The per-peer rate limits at the gRPC edge (`--enroll-rate`, `--failed-auth-rate`): a peer
//! address that spent its failed authentications is refused every call of the device gateway and
//! the admin API before any token is looked at, and one that spent its enrollments is refused
//! Enroll. Both answer RESOURCE_EXHAUSTED (gRPC's code for a spent quota; UNAVAILABLE would tell
//! clients to retry at once, which is what a flood does anyway) with `retry-after-ms` metadata,
//! and count in `droidfleet_rate_limited_total{limit}`.

use crate::limits::Rate;
use crate::metrics::{ControlPlaneMetrics, RateLimit};
use crate::rate_limit::{PeerBuckets, RetryAfter};
use crate::service::ControlPlane;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tonic::codegen::http;
use tonic::transport::server::TcpConnectInfo;
use tonic::{Code, Status};

/// The one call the enrollment rate counts.
const ENROLL_PATH: &str = "/droidfleet.v1.DeviceGateway/Enroll";

/// Both limits' buckets, shared by every connection.
pub(crate) struct PeerLimits {
    enroll: Mutex<PeerBuckets>,
    failed_auth: Mutex<PeerBuckets>,
    /// For the time (its injected clock).
    control_plane: Arc<ControlPlane>,
    /// Counts refusals when the server exports metrics.
    metrics: Option<Arc<ControlPlaneMetrics>>,
}

impl PeerLimits {
    pub(crate) fn new(
        control_plane: Arc<ControlPlane>,
        metrics: Option<Arc<ControlPlaneMetrics>>,
    ) -> Arc<PeerLimits> {
        let limits = &control_plane.config().limits;
        let buckets = |rate: Rate| Mutex::new(PeerBuckets::new(rate));
        Arc::new(PeerLimits {
            enroll: buckets(limits.enroll_rate),
            failed_auth: buckets(limits.failed_auth_rate),
            control_plane,
            metrics,
        })
    }

    /// Before the call: the peer's failed authentications, then (for Enroll) its enrollments.
    fn admit(&self, peer: IpAddr, enroll: bool) -> Result<(), Status> {
        let now = self.control_plane.now();
        let refused = |limit: RateLimit, flag: &str, RetryAfter(wait): RetryAfter| {
            if let Some(metrics) = &self.metrics {
                metrics.rate_limited(limit);
            }
            tracing::debug!(%peer, limit = limit.name(), "rate limited");
            let mut status = Status::resource_exhausted(format!(
                "too many {} from this address ({flag}); retry in {} ms",
                limit.what(),
                wait.as_millis()
            ));
            if let Ok(value) = wait.as_millis().to_string().parse() {
                status.metadata_mut().insert("retry-after-ms", value);
            }
            status
        };
        lock(&self.failed_auth)
            .check(peer, now)
            .map_err(|wait| refused(RateLimit::FailedAuth, "--failed-auth-rate", wait))?;
        if enroll {
            lock(&self.enroll)
                .take(peer, now)
                .map_err(|wait| refused(RateLimit::Enroll, "--enroll-rate", wait))?;
        }
        Ok(())
    }

    /// After the call: a refused credential spends one of the peer's failed authentications.
    fn answered(&self, peer: IpAddr, enroll: bool, code: Code) {
        // An unknown enrollment token is PERMISSION_DENIED, any other unknown or
        // ended credential UNAUTHENTICATED.
        let failed = code == Code::Unauthenticated || (enroll && code == Code::PermissionDenied);
        if failed {
            let _ = lock(&self.failed_auth).take(peer, self.control_plane.now());
        }
    }
}

/// A poisoned lock only means another call panicked mid-update; the buckets stay usable.
fn lock(buckets: &Mutex<PeerBuckets>) -> std::sync::MutexGuard<'_, PeerBuckets> {
    buckets
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Wraps a tonic service with the limits. A call whose peer address is unknown (not over TCP)
/// is not limited.
#[derive(Clone)]
pub struct PeerLimited<S> {
    inner: S,
    limits: Arc<PeerLimits>,
}

impl<S> PeerLimited<S> {
    pub(crate) fn new(inner: S, limits: Arc<PeerLimits>) -> PeerLimited<S> {
        PeerLimited { inner, limits }
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for PeerLimited<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tonic::codegen::Service<http::Request<B>> for PeerLimited<S>
where
    S: tonic::codegen::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Error: Send + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let peer = request
            .extensions()
            .get::<TcpConnectInfo>()
            .and_then(TcpConnectInfo::remote_addr)
            .map(|address| address.ip());
        let Some(peer) = peer else {
            return Box::pin(self.inner.call(request));
        };
        let enroll = request.uri().path() == ENROLL_PATH;
        if let Err(status) = self.limits.admit(peer, enroll) {
            return Box::pin(std::future::ready(Ok(status.into_http())));
        }
        let limits = self.limits.clone();
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            // A refusal is a trailers-only response: its status is in the headers.
            if let Some(status) = Status::from_header_map(response.headers()) {
                limits.answered(peer, enroll, status.code());
            }
            Ok(response)
        })
    }
}
