//! A control plane in this process, on its own data directory and a loopback port the kernel
//! picks, served until stopped: what the load test, the demo and the flow runner start when they
//! are not given one. The caller picks the clock (the flow runner's is a manual one it moves).

use crate::admin::{AdminError, Token};
use droidfleet_control_plane::clock::Clock;
use droidfleet_control_plane::server::ServeError;
use droidfleet_control_plane::service::Config;
use droidfleet_proto::tls::CaFingerprint;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Where an embedded control plane listens: a port the kernel picks on loopback.
const LOOPBACK_ANY_PORT: &str = "127.0.0.1:0";

/// Why an embedded control plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("cannot open the embedded control plane")]
    Open(#[source] ServeError),
    #[error("the control plane's fresh data directory has no bootstrap admin token")]
    NoBootstrapToken,
    #[error("the embedded control plane has no TLS identity")]
    NoTls,
    #[error("cannot listen on {LOOPBACK_ANY_PORT}")]
    Listen(#[source] std::io::Error),
    #[error(transparent)]
    Token(#[from] AdminError),
}

/// A running embedded control plane.
pub(crate) struct EmbeddedControlPlane {
    /// Its admin API and device gateway, `https://127.0.0.1:<port>`.
    pub(crate) address: String,
    /// The CA its certificate chains to, which its clients pin.
    pub(crate) ca: CaFingerprint,
    /// The bootstrap admin's token, read from the file the fresh control plane wrote.
    pub(crate) admin_token: Token,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
}

impl EmbeddedControlPlane {
    /// Opens a fresh control plane in `data_dir` (which must not hold one yet) on `clock`, and
    /// serves it on loopback.
    pub(crate) async fn start(
        data_dir: &Path,
        clock: Arc<dyn Clock>,
    ) -> Result<EmbeddedControlPlane, EmbeddedError> {
        EmbeddedControlPlane::start_with(data_dir, clock, |_| {}).await
    }

    /// As [`EmbeddedControlPlane::start`], with `tune` changing the configuration first.
    pub(crate) async fn start_with(
        data_dir: &Path,
        clock: Arc<dyn Clock>,
        tune: impl FnOnce(&mut Config),
    ) -> Result<EmbeddedControlPlane, EmbeddedError> {
        let mut config = Config::new(data_dir);
        tune(&mut config);
        let opened = droidfleet_control_plane::server::open(config, clock)
            .await
            .map_err(EmbeddedError::Open)?;
        let token_path = opened
            .bootstrap_token_path
            .clone()
            .ok_or(EmbeddedError::NoBootstrapToken)?;
        let listener = tokio::net::TcpListener::bind(LOOPBACK_ANY_PORT)
            .await
            .map_err(EmbeddedError::Listen)?;
        let tls = opened.tls.clone().ok_or(EmbeddedError::NoTls)?;
        let ca = tls.ca_fingerprint();
        let address = format!(
            "https://{}",
            listener.local_addr().map_err(EmbeddedError::Listen)?
        );
        let (stop, mut stopped) = watch::channel(false);
        let server = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            if let Err(error) = droidfleet_control_plane::server::serve(
                opened.control_plane,
                Some(tls),
                listener,
                shutdown,
            )
            .await
            {
                tracing::error!(%error, "the embedded control plane stopped");
            }
        });
        Ok(EmbeddedControlPlane {
            address,
            ca,
            admin_token: Token::from_file(&token_path)?,
            stop,
            server,
        })
    }

    /// Stops serving and waits (bounded) until the server has.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.server).await;
    }
}
