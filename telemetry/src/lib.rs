//! What the control plane and the agent share to be observed: the `/metrics` HTTP server and
//! W3C `traceparent` values.
//!
//! Layout: `lib.rs` serves `/metrics`: each process keeps its own `prometheus-client` registry
//! (the control plane's `metrics` module, the agent's `metrics` module) and hands
//! [`serve_metrics`] a closure that encodes it; the HTTP side (accepting, keep-alive, parsing,
//! accept errors) is axum's. [`traceparent`] parses and formats W3C Trace Context values, which
//! tie one reset's log lines together across the admin client, the control plane and the device.
#![forbid(unsafe_code)]

pub mod traceparent;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use std::future::Future;
use tokio::net::TcpListener;

/// The content type of `prometheus-client`'s text encoding (OpenMetrics 1.0), which Prometheus
/// reads as it reads its own 0.0.4 text format.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `registry` in the OpenMetrics text format.
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    // Writing to a String cannot fail; an encoder error would be a metric that cannot be
    // encoded, which the registry's types rule out.
    if let Err(error) = prometheus_client::encoding::text::encode(&mut text, registry) {
        tracing::error!(%error, "cannot encode the metrics");
    }
    text
}

/// Serves `GET /metrics` with `render()`'s text on `listener` until `shutdown` resolves.
///
/// axum's server accepts: when `accept` fails for lack of file descriptors it logs and waits a
/// second before trying again, so a descriptor shortage neither spins a core nor stops the
/// endpoint for good; connections are HTTP/1.1 with keep-alive. Any other path is 404 and any
/// other method 405.
pub async fn serve_metrics<F>(
    listener: TcpListener,
    render: F,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    F: Fn() -> String + Send + Sync + Clone + 'static,
{
    let router = Router::new().route(
        "/metrics",
        get(move || {
            let render = render.clone();
            async move {
                (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
                    render(),
                )
                    .into_response()
            }
        }),
    );
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
