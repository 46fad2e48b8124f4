//! Serving: opens the store and keys, bootstraps the first admin, and runs the gRPC services
//! (gateway and admin API on one listener, with the standard `grpc.health.v1.Health` and
//! `grpc.reflection.v1` / `v1alpha` services so generic gRPC tools work against it) plus the
//! background purge and expiry loops until the shutdown future resolves.

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
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// The services the control plane serves, as reflection lists them and health reports them.
pub const SERVICE_NAMES: [&str; 5] = [
    "droidfleet.v1.AdminService",
    "droidfleet.v1.DeviceGateway",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

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
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<AdminServiceServer<AdminApi>>().await;
    health.set_serving::<DeviceGatewayServer<Gateway>>().await;
    // The descriptors hold the agent's DeviceHarness too; list only what this server serves.
    let reflection = |builder: tonic_reflection::server::Builder<'static>| {
        SERVICE_NAMES
            .iter()
            .fold(builder, |b, name| b.with_service_name(*name))
            .register_encoded_file_descriptor_set(droidfleet_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection(tonic_reflection::server::Builder::configure()).build_v1()?;
    let reflection_v1alpha =
        reflection(tonic_reflection::server::Builder::configure()).build_v1alpha()?;
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let sessions = control_plane.clone();
    let shutdown = async move {
        shutdown.await;
        health
            .set_not_serving::<AdminServiceServer<AdminApi>>()
            .await;
        health
            .set_not_serving::<DeviceGatewayServer<Gateway>>()
            .await;
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
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    let _ = stop_background.send(());
    let _ = background.await;
    Ok(result?)
}
