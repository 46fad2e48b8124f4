//! Serving: opens the store and keys, bootstraps the first admin, and runs the gRPC services
//! (gateway and admin API on one listener, with the standard `grpc.health.v1.Health` and
//! `grpc.reflection.v1` / `v1alpha` services so generic gRPC tools work against it) plus the
//! background purge and expiry loops until the shutdown future resolves; optionally a Prometheus
//! `GET /metrics` endpoint on a second listener ([`serve_with_metrics`]).

use crate::clock::Clock;
use crate::crypto::{CryptoError, KeyRing};
use crate::grpc::{AdminApi, Gateway, OversizeIsExhausted};
use crate::metrics::ControlPlaneMetrics;
use crate::service::{Config, ControlPlane, ServiceError};
use crate::store::{SqliteStore, StoreError};
use droidfleet_proto::v1::admin_service_server::AdminServiceServer;
use droidfleet_proto::v1::device_gateway_server::DeviceGatewayServer;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::ReceiverStream;

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
    // Only the control plane's own user may look into its state (0700).
    std::fs::create_dir_all(&config.data_dir)
        .and_then(|()| crate::crypto::set_mode(&config.data_dir, 0o700))
        .map_err(|source| ServeError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
    let store = SqliteStore::open(&config.data_dir.join(DATABASE_FILE)).await?;
    let keys = KeyRing::load_or_create(&config.data_dir.join(KEYS_DIR))?;
    let control_plane = Arc::new(ControlPlane::start(Arc::new(store), keys, clock, config).await?);
    let bootstrap_token_path = control_plane.bootstrap_admin().await?;
    Ok(OpenedControlPlane {
        control_plane,
        bootstrap_token_path,
    })
}

/// Where and what [`serve_with_metrics`] serves as Prometheus metrics.
pub struct MetricsEndpoint {
    /// Plain HTTP; `GET /metrics` answers.
    pub listener: TcpListener,
    /// Fed while the server runs; the caller may keep a clone to read it.
    pub metrics: Arc<ControlPlaneMetrics>,
}

/// Serves the device gateway and the admin API on `listener` until `shutdown` resolves.
pub async fn serve(
    control_plane: Arc<ControlPlane>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    serve_with_metrics(control_plane, listener, None, shutdown).await
}

/// As [`serve`], and with `metrics` given, also counts what happens and serves the counts on
/// `metrics.listener` until `shutdown` resolves.
pub async fn serve_with_metrics(
    control_plane: Arc<ControlPlane>,
    listener: TcpListener,
    metrics: Option<MetricsEndpoint>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    // One shutdown future, several things to stop: the metrics tasks watch this flag.
    let (stop_metrics, metrics_stopped) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut stopped = metrics_stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };
    let admin_counter = metrics.as_ref().map(|endpoint| endpoint.metrics.clone());
    let metrics_tasks = metrics.map(|endpoint| {
        // Subscribed here, before the first call is served, so no change goes uncounted.
        let follower = tokio::spawn(
            endpoint
                .metrics
                .clone()
                .follow(control_plane.clone(), stopped()),
        );
        let counts = endpoint.metrics;
        let server = tokio::spawn(crate::metrics::serve_metrics(
            endpoint.listener,
            move || counts.render(),
            stopped(),
        ));
        (follower, server)
    });
    let shutdown = async move {
        shutdown.await;
        let _ = stop_metrics.send(true);
    };
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
    let (incoming, acceptor) = accept_connections(listener);
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
    let limits = control_plane.config().limits.clone();
    let admin = OversizeIsExhausted::new(
        AdminServiceServer::new(AdminApi::new(control_plane.clone()))
            .max_decoding_message_size(limits.max_admin_message_bytes),
    );
    let gateway = OversizeIsExhausted::new(
        DeviceGatewayServer::new(Gateway::new(control_plane.clone()))
            .max_decoding_message_size(limits.max_device_message_bytes),
    );
    // `Option<Service>` is not a service; two routers differ only in this one wrapper.
    let (admin_plain, admin_counted) = match admin_counter {
        Some(metrics) => (
            None,
            Some(crate::metrics::AdminCallCounter::new(admin, metrics)),
        ),
        None => (Some(admin), None),
    };
    let result = tonic::transport::Server::builder()
        // Thousands of device sessions share few connections; h2's default connection window
        // makes it answer ENHANCE_YOUR_CALM long before that.
        .initial_connection_window_size(Some(64 * 1024 * 1024))
        .initial_stream_window_size(Some(1024 * 1024))
        .max_concurrent_streams(Some(limits.max_streams_per_connection))
        .http2_max_header_list_size(Some(limits.max_header_list_bytes))
        .http2_max_pending_accept_reset_streams(Some(limits.max_pending_reset_streams))
        .http2_keepalive_interval(Some(limits.keepalive_interval))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
        .timeout(limits.request_timeout)
        .tcp_nodelay(true)
        .add_service(gateway)
        .add_optional_service(admin_plain)
        .add_optional_service(admin_counted)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    acceptor.abort();
    let _ = stop_background.send(());
    let _ = background.await;
    if let Some((follower, server)) = metrics_tasks {
        let _ = follower.await;
        if let Ok(Err(error)) = server.await {
            tracing::warn!(%error, "metrics endpoint failed");
        }
    }
    Ok(result?)
}

/// How long the accept loop waits after an accept that failed for a reason of this process's
/// (no file descriptor left, no buffer memory), as axum and hyper do: long enough to cost no
/// CPU, short enough that the server recovers within a second of descriptors freeing up.
const ACCEPT_RETRY: Duration = Duration::from_secs(1);

/// The gRPC listener's connections for tonic, accepted by a task of their own. tonic retries a
/// failed accept at once, which under descriptor exhaustion (EMFILE: the connection stays in the
/// backlog, so the listener stays readable) is a loop at 100 % CPU; here such a failure is
/// logged and retried after [`ACCEPT_RETRY`]. A failure of the peer's (reset, aborted) is skipped.
/// The task ends when the stream is dropped and the next accept returns, or when aborted.
fn accept_connections(
    listener: TcpListener,
) -> (
    ReceiverStream<std::io::Result<TcpStream>>,
    tokio::task::JoinHandle<()>,
) {
    let (connections, incoming) = tokio::sync::mpsc::channel(64);
    let acceptor = tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    // serve_with_incoming ignores the builder's tcp_nodelay.
                    let _ = stream.set_nodelay(true);
                    if connections.send(Ok(stream)).await.is_err() {
                        return;
                    }
                }
                Err(error) if is_peer_error(&error) => {}
                Err(error) => {
                    tracing::error!(%error, "cannot accept a gRPC connection; retrying in 1 s");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            }
        }
    });
    (ReceiverStream::new(incoming), acceptor)
}

/// An accept error that is the connecting peer's, not this process's.
fn is_peer_error(error: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        error.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    )
}
