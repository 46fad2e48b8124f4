//! droidfleet's web console: the admin's devices, the Reset passcode flow, the audit log and roles
//! in a browser, served from the control plane's process.
//!
//! Layout:
//! - [`http`]: serving any router on a listener (plain or TLS) until shutdown, and the security
//!   headers (content security policy and friends) every response carries.
//! - [`layout`]: the page frame, the embedded stylesheet and script, dates and badges; shared
//!   with the load test's fleet wall.
//! - `session.rs`: server-side sessions, their cookies and CSRF tokens.
//! - `error.rs`: how a page answers an admin API refusal.
//! - `pages/`: the pages and forms, each an in-process call of the control plane's [`AdminApi`]
//!   with the session's token, so the console can do exactly what the gRPC API allows the same
//!   principal, and the audit log records it the same way.
//!
//! [`AdminApi`]: droidfleet_control_plane::grpc::AdminApi
#![forbid(unsafe_code)]

mod error;
pub mod http;
pub mod layout;
mod pages;
mod session;

pub use http::{HttpError, TlsConfig};

use droidfleet_control_plane::clock::Clock;
use droidfleet_control_plane::grpc::AdminApi;
use droidfleet_control_plane::service::ControlPlane;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How a console is served.
#[derive(Clone)]
pub struct ConsoleOptions {
    /// Dates on pages and session expiry read this clock (the control plane's, usually).
    pub clock: Arc<dyn Clock>,
    /// Serve HTTPS with this certificate; cookies are then marked Secure.
    pub tls: Option<TlsConfig>,
}

/// The console's routes (pages, forms, live streams and assets) with its security headers, over
/// `control_plane`. `stopping` turning true ends the live streams, so a server can stop; more
/// routes can be merged in before serving.
pub fn router(
    control_plane: Arc<ControlPlane>,
    clock: Arc<dyn Clock>,
    secure_cookies: bool,
    stopping: watch::Receiver<bool>,
) -> axum::Router {
    let state = Arc::new(pages::ConsoleState {
        api: AdminApi::new(control_plane),
        sessions: session::Sessions::new(clock.clone()),
        clock,
        secure_cookies,
        stopping,
    });
    let routes = pages::routes()
        .merge(layout::asset_routes())
        .with_state(state);
    http::with_security_headers(routes)
}

/// Serves the console on `listener` until `shutdown` resolves.
pub async fn serve(
    control_plane: Arc<ControlPlane>,
    listener: TcpListener,
    options: ConsoleOptions,
    shutdown: impl Future<Output = ()> + Send,
) {
    let (stop, stopping) = watch::channel(false);
    let router = router(
        control_plane,
        options.clock,
        options.tls.is_some(),
        stopping,
    );
    http::serve(listener, options.tls, router, async move {
        shutdown.await;
        let _ = stop.send(true);
    })
    .await;
}
