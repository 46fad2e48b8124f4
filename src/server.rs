//! Serving: opens the store and keys, bootstraps the first admin, and runs the gRPC services
//! (gateway and admin API on one listener) plus the background purge and expiry loops until the
//! shutdown future resolves.

use crate::clock::Clock;
use crate::crypto::{CryptoError, KeyRing};
use crate::grpc::{AdminApi, Gateway};
use crate::service::{Config, ControlPlane, ServiceError};
use crate::store::{SqliteStore, StoreError};
use droidfleet_proto::v1::admin_service_server::AdminServiceServer;
use droidfleet_proto::v1::device_gateway_server::DeviceGatewayServer;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;

/// The database file's name inside the data directory.
pub const DATABASE_FILE: &str = "droidfleet.db";
/// The key files' directory inside the data directory.
pub const KEYS_DIR: &str = "keys";

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// A control plane opened on its data directory, before it serves.
pub struct OpenedControlPlane {
    pub control_plane: Arc<ControlPlane>,
    /// Set on first start: where the bootstrap admin's token was written.
    pub bootstrap_token_path: Option<PathBuf>,
}

/// Opens (or creates) the control plane's database and keys in `config.data_dir`.
pub async fn open(config: Config, clock: Arc<dyn Clock>) -> Result<OpenedControlPlane, ServeError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| ServeError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    let store = SqliteStore::open(&config.data_dir.join(DATABASE_FILE)).await?;
    let keys = KeyRing::load_or_create(&config.data_dir.join(KEYS_DIR))?;
    let control_plane = Arc::new(ControlPlane::new(Arc::new(store), keys, clock, config));
    let bootstrap_token_path = control_plane.bootstrap_admin().await?;
    Ok(OpenedControlPlane {
        control_plane,
        bootstrap_token_path,
    })
}

/// Serves the device gateway and the admin API on `listener` until `shutdown` resolves.
pub async fn serve(
    control_plane: Arc<ControlPlane>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (stop_background, background_stopped) = tokio::sync::oneshot::channel::<()>();
    let background = tokio::spawn(control_plane.clone().run_background(async move {
        let _ = background_stopped.await;
    }));
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let sessions = control_plane.clone();
    let shutdown = async move {
        shutdown.await;
        sessions.stop_sessions();
    };
    let result = tonic::transport::Server::builder()
        // Thousands of device sessions share few connections; h2's default connection window
        // makes it answer ENHANCE_YOUR_CALM long before that.
        .initial_connection_window_size(Some(64 * 1024 * 1024))
        .initial_stream_window_size(Some(1024 * 1024))
        .max_concurrent_streams(Some(1_000_000))
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .tcp_nodelay(true)
        .add_service(DeviceGatewayServer::new(Gateway::new(
            control_plane.clone(),
        )))
        .add_service(AdminServiceServer::new(AdminApi::new(control_plane)))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    let _ = stop_background.send(());
    let _ = background.await;
    Ok(result?)
}
