//! TLS for every droidfleet listener and client, in one place: the control plane's own CA and
//! server certificate (made on first start, or the user's), the CA fingerprint a device pins,
//! the client configuration that checks a server against that pin, and the rule that plaintext
//! is allowed only on loopback.
//!
//! Clients never trust a system root store: a server is accepted only when its certificate
//! chain verifies up to the one CA whose SHA-256 fingerprint the client was given (in the
//! enrollment token, or computed from the CA file an admin points at).

use std::fmt;
use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tonic::transport::{ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

/// File names inside the control plane's TLS folder.
/// The CA certificate (public): what an admin's `--ca-file` points at.
pub const CA_CERT_FILE: &str = "ca.pem";
const CA_KEY_FILE: &str = "ca.key";
const SERVER_CERT_FILE: &str = "server.pem";
const SERVER_KEY_FILE: &str = "server.key";

/// The subject of the CA the control plane makes. Fixed, so a server certificate reissued later
/// from the stored CA key names the same issuer as the CA certificate devices pinned.
const CA_COMMON_NAME: &str = "droidfleet control plane CA";

/// Why TLS material could not be made, loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: no PEM certificate in the file")]
    NoCertificate { path: PathBuf },
    #[error("{path}: no PEM private key in the file")]
    NoPrivateKey { path: PathBuf },
    #[error("{path}: not a readable PEM file: {reason}")]
    BadPem { path: PathBuf, reason: String },
    #[error(
        "{folder}: the CA key {present} exists but {missing} is missing; refusing to make a new \
         CA, which would cut off every enrolled device (restore the file, or move the folder \
         away to start over)"
    )]
    HalfCa {
        folder: PathBuf,
        present: &'static str,
        missing: &'static str,
    },
    #[error("cannot make a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("not a CA fingerprint (expected 43 base64url characters of a SHA-256 digest): {0:?}")]
    BadFingerprint(String),
    #[error("invalid TLS client configuration: {0}")]
    Client(#[from] tonic::transport::Error),
    #[error(
        "this enrollment token carries no CA fingerprint (it was issued before the control plane \
         spoke TLS, or was cut short); ask the admin for a new one"
    )]
    TokenWithoutCa,
    #[error(
        "plaintext is allowed only on a loopback address, and {0} is not one; drop the plaintext \
         flag to use TLS"
    )]
    PlaintextNotLoopback(SocketAddr),
    #[error("not a server address (expected https://HOST:PORT or http://HOST:PORT): {0:?}")]
    BadAddress(String),
    #[error(
        "{0} uses TLS but no CA to trust was given (an admin gives --ca-file, a device learns it \
         from its enrollment token)"
    )]
    NoPin(String),
    #[error(
        "{0}: plaintext (http://) is allowed only to a loopback host; use https:// to reach \
         another host"
    )]
    PlaintextNotLoopbackHost(String),
    #[error("the certificate chain and key do not make a TLS server configuration: {0}")]
    ServerConfig(#[from] rustls::Error),
}

/// The SHA-256 digest of a CA certificate (DER), written as 43 base64url characters: what a
/// device pins before it sends anything, and what an enrollment token carries.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CaFingerprint([u8; 32]);

impl CaFingerprint {
    /// The fingerprint of one DER certificate.
    pub fn of_der(der: &[u8]) -> CaFingerprint {
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(digest.as_ref());
        CaFingerprint(bytes)
    }

    /// The fingerprint of the first certificate in a PEM text (a CA file).
    pub fn of_ca_pem(pem: &str, path: &Path) -> Result<CaFingerprint, TlsError> {
        let certificates = certificates_from_pem(pem, path)?;
        Ok(CaFingerprint::of_der(&certificates[0]))
    }

    /// The fingerprint of the CA in the PEM file at `path` (an admin's `--ca-file`).
    pub fn of_ca_file(path: &Path) -> Result<CaFingerprint, TlsError> {
        CaFingerprint::of_ca_pem(&read(path)?, path)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for CaFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl fmt::Debug for CaFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CaFingerprint({self})")
    }
}

impl FromStr for CaFingerprint {
    type Err = TlsError;

    fn from_str(text: &str) -> Result<CaFingerprint, TlsError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| TlsError::BadFingerprint(text.to_string()))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| TlsError::BadFingerprint(text.to_string()))?;
        Ok(CaFingerprint(bytes))
    }
}

/// The control plane's TLS identity: the certificate chain it presents (server certificate, then
/// the CA devices pin) and its private key.
pub struct ServerTls {
    /// PEM chain sent in every handshake; its last certificate is the pinned CA.
    chain_pem: String,
    /// PEM private key of the first certificate in the chain; never printed.
    key_pem: zeroize::Zeroizing<String>,
    /// PEM of the CA alone, for admins' `--ca-file` and the console.
    ca_pem: String,
    ca_fingerprint: CaFingerprint,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("ca_fingerprint", &self.ca_fingerprint)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl ServerTls {
    /// Loads the CA and server certificate from `folder`, making whatever is missing: a new CA
    /// when neither CA file exists (first start), a new server certificate for `names` when the
    /// server files are missing. The folder is 0700 and key files 0600. A CA certificate without
    /// its key (or the reverse) is refused rather than replaced.
    pub fn load_or_create(folder: &Path, names: &[String]) -> Result<ServerTls, TlsError> {
        make_private_folder(folder)?;
        let ca_cert_path = folder.join(CA_CERT_FILE);
        let ca_key_path = folder.join(CA_KEY_FILE);
        let ca_key = match (ca_cert_path.exists(), ca_key_path.exists()) {
            (true, true) => {
                let pem = read(&ca_key_path)?;
                rcgen::KeyPair::from_pem(&pem).map_err(|error| TlsError::BadPem {
                    path: ca_key_path.clone(),
                    reason: error.to_string(),
                })?
            }
            (false, false) => {
                let key = rcgen::KeyPair::generate()?;
                let certificate = ca_params().self_signed(&key)?;
                write_private(&ca_key_path, &key.serialize_pem())?;
                write_public(&ca_cert_path, &certificate.pem())?;
                key
            }
            (true, false) => {
                return Err(TlsError::HalfCa {
                    folder: folder.to_path_buf(),
                    present: CA_CERT_FILE,
                    missing: CA_KEY_FILE,
                });
            }
            (false, true) => {
                return Err(TlsError::HalfCa {
                    folder: folder.to_path_buf(),
                    present: CA_KEY_FILE,
                    missing: CA_CERT_FILE,
                });
            }
        };
        let ca_pem = read(&ca_cert_path)?;
        let server_cert_path = folder.join(SERVER_CERT_FILE);
        let server_key_path = folder.join(SERVER_KEY_FILE);
        if !server_cert_path.exists() || !server_key_path.exists() {
            let params = ca_params();
            let issuer = rcgen::Issuer::new(params, ca_key);
            let key = rcgen::KeyPair::generate()?;
            let mut server = rcgen::CertificateParams::new(names.to_vec())?;
            server
                .distinguished_name
                .push(rcgen::DnType::CommonName, "droidfleet control plane");
            server.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
            let certificate = server.signed_by(&key, &issuer)?;
            write_private(&server_key_path, &key.serialize_pem())?;
            write_public(&server_cert_path, &format!("{}{ca_pem}", certificate.pem()))?;
        }
        let mut tls = ServerTls::from_files(&server_cert_path, &server_key_path)?;
        tls.ca_pem = ca_pem;
        Ok(tls)
    }

    /// Uses a certificate chain and key the user made (`--tls-cert/--tls-key`). The chain must end
    /// with the CA devices pin: its fingerprint goes into enrollment tokens.
    pub fn from_files(cert_path: &Path, key_path: &Path) -> Result<ServerTls, TlsError> {
        let chain_pem = read(cert_path)?;
        let certificates = certificates_from_pem(&chain_pem, cert_path)?;
        let key_pem = zeroize::Zeroizing::new(read(key_path)?);
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|_| TlsError::NoPrivateKey {
            path: key_path.to_path_buf(),
        })?;
        let ca = certificates
            .last()
            .expect("certificates_from_pem never returns none");
        let ca_pem = pem_of(ca);
        Ok(ServerTls {
            ca_fingerprint: CaFingerprint::of_der(ca),
            chain_pem,
            key_pem,
            ca_pem,
        })
    }

    /// The fingerprint of the CA at the end of the chain: what enrollment tokens carry.
    pub fn ca_fingerprint(&self) -> CaFingerprint {
        self.ca_fingerprint
    }

    /// The CA certificate alone, as PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The PEM chain and key, for servers other than tonic (the console).
    pub fn chain_and_key_pem(&self) -> (&str, &str) {
        (&self.chain_pem, &self.key_pem)
    }

    /// A TLS acceptor offering HTTP/2 (ALPN `h2`), for a server that runs the handshake itself
    /// (the control plane, which bounds how long it may take).
    pub fn acceptor(&self) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
        // Both were read and checked when this identity was loaded; these paths only name them.
        let chain = certificates_from_pem(&self.chain_pem, Path::new("the certificate chain"))?;
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).map_err(|_| {
            TlsError::NoPrivateKey {
                path: PathBuf::from("the server key"),
            }
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }

    /// The configuration for `tonic::transport::Server::tls_config`.
    pub fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new().identity(Identity::from_pem(
            self.chain_pem.as_bytes(),
            self.key_pem.as_bytes(),
        ))
    }
}

/// The CA's parameters: the same every time, so an issuer rebuilt from the stored key names the
/// stored CA certificate's subject.
fn ca_params() -> rcgen::CertificateParams {
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, CA_COMMON_NAME);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// Adds TLS to a client endpoint: the server must present a chain that verifies up to the CA
/// with fingerprint `pin`. The endpoint's address must use the `https` scheme.
pub fn pinned_endpoint(endpoint: Endpoint, pin: CaFingerprint) -> Result<Endpoint, TlsError> {
    let verifier = Arc::new(PinnedCaVerifier {
        pin,
        provider: Arc::new(rustls::crypto::ring::default_provider()),
    });
    Ok(endpoint.tls_config_with_verifier(ClientTlsConfig::new(), verifier)?)
}

/// A client endpoint for a droidfleet server at `address`: `https://…` verified against the CA
/// with fingerprint `pin` (which it then needs), or `http://…` in plaintext, allowed only to a
/// loopback host (`localhost` or a loopback IP), where a pin is not used.
pub fn client_endpoint(address: &str, pin: Option<CaFingerprint>) -> Result<Endpoint, TlsError> {
    let endpoint = Endpoint::from_shared(address.to_string())
        .map_err(|_| TlsError::BadAddress(address.to_string()))?;
    let uri = endpoint.uri();
    match uri.scheme_str() {
        Some("https") => {
            let pin = pin.ok_or_else(|| TlsError::NoPin(address.to_string()))?;
            pinned_endpoint(endpoint, pin)
        }
        Some("http") => {
            let host = uri.host().unwrap_or_default();
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if loopback {
                Ok(endpoint)
            } else {
                Err(TlsError::PlaintextNotLoopbackHost(address.to_string()))
            }
        }
        _ => Err(TlsError::BadAddress(address.to_string())),
    }
}

/// The names the control plane's own server certificate is made for, besides any the user adds:
/// the loopback ones.
pub fn loopback_names() -> Vec<String> {
    ["localhost", "127.0.0.1", "::1"]
        .into_iter()
        .map(String::from)
        .collect()
}

/// The secret part of an enrollment token, which is what the control plane stores a hash of:
/// the token without its `.<CA fingerprint>` suffix, or the whole token when it has none (a
/// control plane serving plaintext issues tokens without one).
pub fn enrollment_token_secret(token: &str) -> &str {
    match token.rsplit_once('.') {
        Some((secret, ca)) if !secret.is_empty() && ca.parse::<CaFingerprint>().is_ok() => secret,
        _ => token,
    }
}

/// An enrollment token as handed to a device: `<secret>.<CA fingerprint>`, so the device pins
/// the control plane's CA before it sends the secret (or anything else).
pub fn enrollment_token(secret: &str, ca: CaFingerprint) -> String {
    format!("{secret}.{ca}")
}

/// Splits an enrollment token into its secret and the CA fingerprint to pin. A token without a
/// fingerprint (the format before TLS) is refused with a message that says so.
pub fn split_enrollment_token(token: &str) -> Result<(&str, CaFingerprint), TlsError> {
    let (secret, ca) = token.rsplit_once('.').ok_or(TlsError::TokenWithoutCa)?;
    if secret.is_empty() {
        return Err(TlsError::TokenWithoutCa);
    }
    let ca = ca.parse().map_err(|_| TlsError::TokenWithoutCa)?;
    Ok((secret, ca))
}

/// Plaintext is a test-only escape hatch: refuse it on anything but a loopback address.
pub fn check_plaintext_address(address: SocketAddr) -> Result<(), TlsError> {
    if address.ip().is_loopback() {
        Ok(())
    } else {
        Err(TlsError::PlaintextNotLoopback(address))
    }
}

/// Accepts a server whose chain contains the pinned CA and verifies up to it (names, validity,
/// signatures), with rustls' WebPKI verifier rooted at that one CA.
#[derive(Debug)]
struct PinnedCaVerifier {
    pin: CaFingerprint,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let anchor = intermediates
            .iter()
            .find(|certificate| CaFingerprint::of_der(certificate) == self.pin)
            .ok_or(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            ))?;
        let mut roots = RootCertStore::empty();
        roots.add(anchor.clone().into_owned())?;
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|error| rustls::Error::General(error.to_string()))?;
        verifier.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            certificate,
            signature,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            certificate,
            signature,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn certificates_from_pem(pem: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::BadPem {
            path: path.to_path_buf(),
            reason: error.to_string(),
        })?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certificates)
}

fn pem_of(certificate: &CertificateDer<'_>) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(certificate.as_ref());
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

fn make_private_folder(folder: &Path) -> Result<(), TlsError> {
    let io = |source| TlsError::Io {
        path: folder.to_path_buf(),
        source,
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(folder)
        .map_err(io)?;
    fs::set_permissions(folder, fs::Permissions::from_mode(0o700)).map_err(io)
}

fn read(path: &Path) -> Result<String, TlsError> {
    fs::read_to_string(path).map_err(|source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes a new file readable by its owner only, failing if it already exists.
fn write_private(path: &Path, contents: &str) -> Result<(), TlsError> {
    write_new(path, contents, 0o600)
}

/// Certificates are public, but stay owner-only like the rest of the data folder.
fn write_public(path: &Path, contents: &str) -> Result<(), TlsError> {
    write_new(path, contents, 0o600)
}

fn write_new(path: &Path, contents: &str, mode: u32) -> Result<(), TlsError> {
    let io = |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::EchoMessage;
    use crate::v1::echo_client::EchoClient;
    use crate::v1::echo_server::{Echo, EchoServer};
    use tokio::net::TcpListener;
    use tokio_stream::wrappers::TcpListenerStream;

    struct Mirror;

    #[tonic::async_trait]
    impl Echo for Mirror {
        async fn echo(
            &self,
            request: tonic::Request<EchoMessage>,
        ) -> Result<tonic::Response<EchoMessage>, tonic::Status> {
            Ok(tonic::Response::new(EchoMessage {
                payload: request.into_inner().payload,
            }))
        }
    }

    fn localhost() -> Vec<String> {
        vec!["localhost".to_string(), "127.0.0.1".to_string()]
    }

    /// Serves Echo over TLS with `tls` on a loopback port; returns the `https` address.
    async fn serve(tls: &ServerTls) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tonic::transport::Server::builder()
            .tls_config(tls.server_config())
            .unwrap()
            .add_service(EchoServer::new(Mirror));
        tokio::spawn(server.serve_with_incoming(TcpListenerStream::new(listener)));
        format!("https://{address}")
    }

    async fn echo(address: &str, pin: CaFingerprint) -> Result<Vec<u8>, String> {
        let endpoint = pinned_endpoint(Endpoint::from_shared(address.to_string()).unwrap(), pin)
            .map_err(|error| error.to_string())?;
        let channel = endpoint
            .connect()
            .await
            .map_err(|error| format!("{error:?}"))?;
        let reply = EchoClient::new(channel)
            .echo(EchoMessage {
                payload: b"hello".to_vec(),
            })
            .await
            .map_err(|status| status.to_string())?;
        Ok(reply.into_inner().payload)
    }

    #[tokio::test]
    async fn a_client_pinning_the_servers_ca_gets_through() {
        let folder = tempfile::tempdir().unwrap();
        let tls = ServerTls::load_or_create(&folder.path().join("tls"), &localhost()).unwrap();
        let address = serve(&tls).await;
        assert_eq!(
            echo(&address, tls.ca_fingerprint()).await.unwrap(),
            b"hello"
        );
    }

    #[tokio::test]
    async fn a_server_with_another_ca_is_refused_before_any_request() {
        let folder = tempfile::tempdir().unwrap();
        let genuine =
            ServerTls::load_or_create(&folder.path().join("genuine"), &localhost()).unwrap();
        let impostor =
            ServerTls::load_or_create(&folder.path().join("impostor"), &localhost()).unwrap();
        assert_ne!(genuine.ca_fingerprint(), impostor.ca_fingerprint());
        let address = serve(&impostor).await;
        let error = echo(&address, genuine.ca_fingerprint()).await.unwrap_err();
        assert!(error.contains("UnknownIssuer"), "{error}");
    }

    #[tokio::test]
    async fn a_certificate_for_another_name_is_refused_even_from_the_pinned_ca() {
        let folder = tempfile::tempdir().unwrap();
        let tls = ServerTls::load_or_create(&folder.path().join("tls"), &["elsewhere".to_string()])
            .unwrap();
        let address = serve(&tls).await;
        let error = echo(&address, tls.ca_fingerprint()).await.unwrap_err();
        assert!(error.contains("NotValidForName"), "{error}");
    }

    #[test]
    fn the_ca_survives_restarts_and_a_lost_server_certificate() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("tls");
        let first = ServerTls::load_or_create(&path, &localhost()).unwrap();
        let second = ServerTls::load_or_create(&path, &localhost()).unwrap();
        assert_eq!(first.ca_fingerprint(), second.ca_fingerprint());
        fs::remove_file(path.join(SERVER_CERT_FILE)).unwrap();
        fs::remove_file(path.join(SERVER_KEY_FILE)).unwrap();
        let reissued = ServerTls::load_or_create(&path, &localhost()).unwrap();
        assert_eq!(first.ca_fingerprint(), reissued.ca_fingerprint());
        assert_ne!(first.chain_pem, reissued.chain_pem);
        assert_eq!(first.ca_pem(), reissued.ca_pem());
    }

    #[tokio::test]
    async fn a_server_certificate_reissued_from_the_stored_ca_still_verifies() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("tls");
        let first = ServerTls::load_or_create(&path, &localhost()).unwrap();
        fs::remove_file(path.join(SERVER_CERT_FILE)).unwrap();
        fs::remove_file(path.join(SERVER_KEY_FILE)).unwrap();
        let reissued = ServerTls::load_or_create(&path, &localhost()).unwrap();
        let address = serve(&reissued).await;
        assert_eq!(
            echo(&address, first.ca_fingerprint()).await.unwrap(),
            b"hello"
        );
    }

    #[test]
    fn a_ca_certificate_without_its_key_is_refused_not_replaced() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("tls");
        ServerTls::load_or_create(&path, &localhost()).unwrap();
        fs::remove_file(path.join(CA_KEY_FILE)).unwrap();
        let error = ServerTls::load_or_create(&path, &localhost()).unwrap_err();
        assert!(error.to_string().contains("ca.key is missing"), "{error}");
        assert!(!path.join(CA_KEY_FILE).exists());
    }

    #[test]
    fn key_files_and_the_folder_are_owner_only() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("tls");
        ServerTls::load_or_create(&path, &localhost()).unwrap();
        let mode = |name: &str| fs::metadata(path.join(name)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(""), 0o700);
        for name in [CA_KEY_FILE, SERVER_KEY_FILE, CA_CERT_FILE, SERVER_CERT_FILE] {
            assert_eq!(mode(name), 0o600, "{name}");
        }
    }

    #[test]
    fn user_files_pin_the_last_certificate_of_the_chain() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("tls");
        let made = ServerTls::load_or_create(&path, &localhost()).unwrap();
        let given =
            ServerTls::from_files(&path.join(SERVER_CERT_FILE), &path.join(SERVER_KEY_FILE))
                .unwrap();
        assert_eq!(made.ca_fingerprint(), given.ca_fingerprint());
        assert_eq!(
            CaFingerprint::of_ca_pem(given.ca_pem(), &path).unwrap(),
            made.ca_fingerprint()
        );
    }

    #[test]
    fn fingerprints_round_trip_and_bad_ones_are_named() {
        let fingerprint = CaFingerprint::of_der(b"certificate");
        let text = fingerprint.to_string();
        assert_eq!(text.len(), 43);
        assert_eq!(text.parse::<CaFingerprint>().unwrap(), fingerprint);
        let error = "short".parse::<CaFingerprint>().unwrap_err();
        assert!(error.to_string().contains("\"short\""), "{error}");
    }

    #[test]
    fn enrollment_tokens_carry_the_ca_and_old_ones_are_refused_clearly() {
        let ca = CaFingerprint::of_der(b"ca");
        let token = enrollment_token("dfe_secret", ca);
        assert_eq!(split_enrollment_token(&token).unwrap(), ("dfe_secret", ca));
        for old in [
            "dfe_secret",
            "dfe_secret.",
            ".abc",
            "dfe_secret.notafingerprint",
        ] {
            let error = split_enrollment_token(old).unwrap_err();
            assert!(
                error.to_string().contains("carries no CA fingerprint"),
                "{old}: {error}"
            );
            assert!(!error.to_string().contains("secret"), "{error}");
        }
    }

    #[test]
    fn plaintext_is_refused_off_loopback() {
        check_plaintext_address("127.0.0.1:50051".parse().unwrap()).unwrap();
        check_plaintext_address("[::1]:50051".parse().unwrap()).unwrap();
        let error = check_plaintext_address("0.0.0.0:50051".parse().unwrap()).unwrap_err();
        assert!(error.to_string().contains("0.0.0.0:50051"), "{error}");
    }

    #[test]
    fn debug_output_never_holds_the_key() {
        let folder = tempfile::tempdir().unwrap();
        let tls = ServerTls::load_or_create(&folder.path().join("tls"), &localhost()).unwrap();
        let printed = format!("{tls:?}");
        assert!(!printed.contains("PRIVATE KEY"), "{printed}");
    }

    #[test]
    fn clients_use_tls_with_a_pin_or_plaintext_to_loopback_only() {
        let pin = CaFingerprint::of_der(b"ca");
        assert!(client_endpoint("https://127.0.0.1:7300", Some(pin)).is_ok());
        let error = client_endpoint("https://127.0.0.1:7300", None).unwrap_err();
        assert!(error.to_string().contains("no CA to trust"), "{error}");
        for loopback in ["http://127.0.0.1:1", "http://localhost:1", "http://[::1]:1"] {
            assert!(client_endpoint(loopback, None).is_ok(), "{loopback}");
        }
        let error = client_endpoint("http://10.0.0.1:7300", Some(pin)).unwrap_err();
        assert!(
            error.to_string().contains("only to a loopback host"),
            "{error}"
        );
        assert!(matches!(
            client_endpoint("ftp://127.0.0.1:1", None),
            Err(TlsError::BadAddress(_))
        ));
    }

    #[test]
    fn the_stored_secret_of_a_token_is_the_part_before_its_ca() {
        let ca = CaFingerprint::of_der(b"ca");
        let token = enrollment_token("dfe_abc", ca);
        assert_eq!(enrollment_token_secret(&token), "dfe_abc");
        assert_eq!(enrollment_token_secret("dfe_abc"), "dfe_abc");
        assert_eq!(enrollment_token_secret("dfe_a.b"), "dfe_a.b");
    }
}
