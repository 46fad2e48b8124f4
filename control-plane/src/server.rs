//! Serving: opens the store and keys, bootstraps the first admin, and runs the gRPC services
//! (gateway and admin API on one listener, with the standard `grpc.health.v1.Health` and
//! `grpc.reflection.v1` / `v1alpha` services so generic gRPC tools work against it) plus the
//! background purge and expiry loops until the shutdown future resolves; optionally a Prometheus
//! `GET /metrics` endpoint on a second listener ([`serve_with_metrics`]).

use crate::clock::Clock;
use crate::crypto::{CryptoError, KeyRing, Rotated, Rotation};
use crate::grpc::{
    AdminApi, Gateway, OversizeIsExhausted, PeerLimited, PeerLimits, accept_connections,
};
use crate::metrics::ControlPlaneMetrics;
use crate::service::{Config, ControlPlane, ServiceError, TlsSource};
use crate::store::{PageQuery, SqliteStore, Store, StoreError};
use droidfleet_proto::tls::{ServerTls, TlsError};
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
/// The TLS folder inside the data directory: the control plane's CA (`ca.pem`, what admins give
/// as `--ca-file`) and server certificate.
pub const TLS_DIR: &str = "tls";

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "refusing to start: key file(s) {} missing while {enrolled} device(s) are enrolled. New \
         keys would make every enrolled device refuse its commands (they trust the old signing \
         key) and leave every sealed escrow token and passcode unreadable. Restore the key files \
         from a backup, or start over with an empty data directory.",
        missing.iter().map(|path| path.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    MissingKeys {
        missing: Vec<PathBuf>,
        enrolled: usize,
    },
    #[error(
        "no keys to rotate: key file(s) {} missing. Is this the data folder of a control plane \
         that has started once?",
        missing.iter().map(|path| path.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    NothingToRotate { missing: Vec<PathBuf> },
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("cannot read the listener's address: {source}")]
    Listener { source: std::io::Error },
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
    /// The TLS identity to serve with; `None` only with [`TlsSource::Plaintext`].
    pub tls: Option<Arc<ServerTls>>,
}

/// Opens (or creates) the control plane's database, keys and TLS identity in `config.data_dir`.
/// Keys are made only while no device is enrolled: a missing key file with enrolled devices is
/// [`ServeError::MissingKeys`].
pub async fn open(config: Config, clock: Arc<dyn Clock>) -> Result<OpenedControlPlane, ServeError> {
    // Only the control plane's own user may look into its state (0700).
    std::fs::create_dir_all(&config.data_dir)
        .and_then(|()| crate::crypto::set_mode(&config.data_dir, 0o700))
        .map_err(|source| ServeError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
    let store = SqliteStore::open(&config.data_dir.join(DATABASE_FILE)).await?;
    let keys_dir = config.data_dir.join(KEYS_DIR);
    let missing = KeyRing::missing_key_files(&keys_dir);
    if !missing.is_empty() {
        // Listing every device is costly on a large fleet, but happens only on this rare path.
        let enrolled = store
            .list_devices(None, &PageQuery::first(u32::MAX))
            .await?
            .items
            .len();
        if enrolled > 0 {
            return Err(ServeError::MissingKeys { missing, enrolled });
        }
    }
    let keys = KeyRing::load_or_create(&keys_dir)?;
    let tls = match &config.tls {
        TlsSource::Generated { extra_names } => {
            let mut names = droidfleet_proto::tls::loopback_names();
            names.extend(extra_names.iter().cloned());
            Some(ServerTls::load_or_create(
                &config.data_dir.join(TLS_DIR),
                &names,
            )?)
        }
        TlsSource::Files { cert, key } => Some(ServerTls::from_files(cert, key)?),
        TlsSource::Plaintext => None,
    };
    let control_plane = ControlPlane::start(Arc::new(store), keys, clock, config)
        .await?
        .with_enrollment_pin(tls.as_ref().map(|tls| {
            let ca = tls.ca_fingerprint();
            (ca.to_string(), *ca.as_bytes())
        }));
    let control_plane = Arc::new(control_plane);
    let bootstrap_token_path = control_plane.bootstrap_admin().await?;
    Ok(OpenedControlPlane {
        control_plane,
        bootstrap_token_path,
        tls: tls.map(Arc::new),
    })
}

/// `droidfleet keys rotate`: replaces the current signing and/or sealing key in `data_dir`'s key
/// folder with a new one and keeps the replaced key beside it (see [`KeyRing::rotate`]). It works
/// on the files alone, so it needs no running server: a server already running keeps the keys
/// it loaded until it restarts, and takes the new ones when it next starts.
pub fn rotate_keys(data_dir: &std::path::Path, rotation: Rotation) -> Result<Rotated, ServeError> {
    let keys_dir = data_dir.join(KEYS_DIR);
    let missing = KeyRing::missing_key_files(&keys_dir);
    if !missing.is_empty() {
        return Err(ServeError::NothingToRotate { missing });
    }
    Ok(KeyRing::rotate(&keys_dir, rotation)?)
}

/// Where and what [`serve_with_metrics`] serves as Prometheus metrics.
pub struct MetricsEndpoint {
    /// Plain HTTP, so a loopback address only; `GET /metrics` answers.
    pub listener: TcpListener,
    /// Fed while the server runs; the caller may keep a clone to read it.
    pub metrics: Arc<ControlPlaneMetrics>,
}

/// Serves the device gateway and the admin API on `listener` until `shutdown` resolves: over TLS
/// with `tls`, else in plaintext, which only a loopback listener may serve.
pub async fn serve(
    control_plane: Arc<ControlPlane>,
    tls: Option<Arc<ServerTls>>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    serve_with_metrics(control_plane, tls, listener, None, shutdown).await
}

/// As [`serve`], and with `metrics` given, also counts what happens and serves the counts on
/// `metrics.listener` until `shutdown` resolves.
pub async fn serve_with_metrics(
    control_plane: Arc<ControlPlane>,
    tls: Option<Arc<ServerTls>>,
    listener: TcpListener,
    metrics: Option<MetricsEndpoint>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    if tls.is_none() {
        let address = listener
            .local_addr()
            .map_err(|source| ServeError::Listener { source })?;
        droidfleet_proto::tls::check_plaintext_address(address)?;
    }
    if let Some(endpoint) = &metrics {
        // The metrics endpoint speaks plain HTTP: it is served on loopback only.
        let address = endpoint
            .listener
            .local_addr()
            .map_err(|source| ServeError::Listener { source })?;
        droidfleet_proto::tls::check_plaintext_address(address)?;
    }
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
    let limits = control_plane.config().limits.clone();
    // The TLS handshake runs in accept_connections, bounded by --handshake-timeout, not in tonic.
    let tls_acceptor = tls.as_ref().map(|tls| tls.acceptor()).transpose()?;
    let (incoming, acceptor) = accept_connections(listener, tls_acceptor, limits.handshake_timeout);
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
    let peer_limits = PeerLimits::new(control_plane.clone(), admin_counter.clone());
    let admin = PeerLimited::new(
        OversizeIsExhausted::new(
            AdminServiceServer::new(AdminApi::new(control_plane.clone()))
                .max_decoding_message_size(limits.max_admin_message_bytes),
        ),
        peer_limits.clone(),
    );
    let gateway = PeerLimited::new(
        OversizeIsExhausted::new(
            DeviceGatewayServer::new(Gateway::new(control_plane.clone()))
                .max_decoding_message_size(limits.max_device_message_bytes),
        ),
        peer_limits,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::model::Ownership;
    use crate::store::{NewDevice, NewEnrollmentToken};

    async fn enroll_one_device(data_dir: &std::path::Path) {
        let store = SqliteStore::open(&data_dir.join(DATABASE_FILE))
            .await
            .unwrap();
        let hash = crate::crypto::sha256(b"token");
        store
            .create_enrollment_token(NewEnrollmentToken {
                hash,
                max_uses: 1,
                expires_at: 2_000_000_000_000,
                created_by: "admin".into(),
                group: crate::rbac::DEFAULT_GROUP.into(),
            })
            .await
            .unwrap();
        store
            .enroll_device(
                hash,
                NewDevice {
                    id: "dev_1".into(),
                    display_name: "Phone".into(),
                    ownership: Ownership::Byod,
                    public_key: [1; 32],
                    enrolled_at: 1_700_000_000_000,
                },
            )
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_missing_key_with_enrolled_devices_refuses_to_start_and_makes_no_key() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::new(dir.path());
        drop(open(config.clone(), Arc::new(SystemClock)).await.unwrap());
        enroll_one_device(dir.path()).await;
        let seal_key = dir.path().join(KEYS_DIR).join("seal.key");
        std::fs::remove_file(&seal_key).unwrap();
        let error = match open(config, Arc::new(SystemClock)).await {
            Err(error) => error.to_string(),
            Ok(_) => panic!("started without its sealing key"),
        };
        assert!(error.contains("seal.key"), "{error}");
        assert!(error.contains("1 device(s) are enrolled"), "{error}");
        assert!(!seal_key.exists(), "a new sealing key was made");
    }

    #[tokio::test]
    async fn without_enrolled_devices_missing_keys_are_made_anew() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::new(dir.path());
        drop(open(config.clone(), Arc::new(SystemClock)).await.unwrap());
        let signing_key = dir.path().join(KEYS_DIR).join("command-signing.pk8");
        std::fs::remove_file(&signing_key).unwrap();
        drop(open(config, Arc::new(SystemClock)).await.unwrap());
        assert!(signing_key.exists());
    }
}
