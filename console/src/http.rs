//! Serving a router: plain HTTP or TLS on a listener the caller bound, until a shutdown future
//! resolves, with the security headers every response carries. The console serves its pages
//! this way, the load test's fleet wall too, and any other route (Prometheus `/metrics`, say) can
//! be merged into the router before it is served.

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// How long a TLS client may take to finish its handshake before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server waits after a failed accept (no file descriptor left) before the next.
const ACCEPT_RETRY: Duration = Duration::from_millis(250);
/// How long open connections get to finish after shutdown before they are cut.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Scripts and styles come only from this server (no inline script, no CDN), nothing may frame
/// the pages, and forms post only back to this server.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{what} is not valid PEM: {problem}")]
    Pem { what: &'static str, problem: String },
    #[error("the certificate and key do not make a TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// A certificate chain and its private key, for serving over HTTPS.
#[derive(Clone)]
pub struct TlsConfig {
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key stays out of any output.
        f.write_str("TlsConfig { .. }")
    }
}

impl TlsConfig {
    /// From PEM files: the certificate chain (leaf first) and its private key.
    pub fn from_pem_files(certificate: &Path, key: &Path) -> Result<TlsConfig, HttpError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| HttpError::Read {
                path: path.display().to_string(),
                source,
            })
        };
        TlsConfig::from_pem(&read(certificate)?, &read(key)?)
    }

    pub fn from_pem(certificate: &[u8], key: &[u8]) -> Result<TlsConfig, HttpError> {
        let chain = CertificateDer::pem_slice_iter(certificate)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| HttpError::Pem {
                what: "the certificate",
                problem: e.to_string(),
            })?;
        if chain.is_empty() {
            return Err(HttpError::Pem {
                what: "the certificate",
                problem: "no CERTIFICATE block".into(),
            });
        }
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| HttpError::Pem {
            what: "the private key",
            problem: e.to_string(),
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsConfig {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }
}

/// Adds the headers every page needs: the content security policy, no sniffing, no framing,
/// no referrer leaving the site, and no caching (pages show per-user data, one a passcode).
pub fn with_security_headers(router: Router) -> Router {
    router.layer(axum::middleware::map_response(
        |mut response: axum::response::Response| async move {
            let headers = response.headers_mut();
            let set = |headers: &mut axum::http::HeaderMap, name: HeaderName, value| {
                headers.insert(name, HeaderValue::from_static(value));
            };
            set(
                headers,
                header::CONTENT_SECURITY_POLICY,
                CONTENT_SECURITY_POLICY,
            );
            set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
            set(headers, header::X_FRAME_OPTIONS, "DENY");
            set(headers, header::REFERRER_POLICY, "no-referrer");
            set(headers, header::CACHE_CONTROL, "no-store");
            response
        },
    ))
}

/// Serves `router` on `listener` (over TLS with `tls`) until `shutdown` resolves, then lets open
/// requests finish for a few seconds and cuts what is left. Long-lived responses (server-sent
/// events) should end on the same shutdown signal.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsConfig>,
    router: Router,
    shutdown: impl Future<Output = ()> + Send,
) {
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: a later accept may succeed once
                        // connections close. Retrying at once would spin a core for as long as
                        // the shortage lasts, so wait first, as axum's own server does.
                        tracing::warn!(%error, "cannot accept a connection");
                        tokio::time::sleep(ACCEPT_RETRY).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let service = TowerToHyperService::new(router.clone());
                let builder = builder.clone();
                let watcher = graceful.watcher();
                let tls = tls.clone();
                connections.spawn(async move {
                    let served = match tls {
                        None => {
                            let connection =
                                builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                            watcher.watch(connection.into_owned()).await
                        }
                        Some(tls) => {
                            let stream = match tokio::time::timeout(
                                HANDSHAKE_TIMEOUT,
                                tls.acceptor.accept(stream),
                            )
                            .await
                            {
                                Ok(Ok(stream)) => stream,
                                Ok(Err(error)) => {
                                    tracing::debug!(%peer, %error, "TLS handshake failed");
                                    return;
                                }
                                Err(_) => {
                                    tracing::debug!(%peer, "TLS handshake timed out");
                                    return;
                                }
                            };
                            let connection =
                                builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                            watcher.watch(connection.into_owned()).await
                        }
                    };
                    if let Err(error) = served {
                        tracing::debug!(%peer, %error, "connection ended with an error");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("connections still open after the drain time; cutting them");
    }
    connections.shutdown().await;
}
