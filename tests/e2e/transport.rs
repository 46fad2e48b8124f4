//! TLS on the wire. Acceptance: a device enrolled against one control plane refuses a man in the
//! middle that presents a certificate from another CA (the impostor terminates TLS and counts
//! whatever it could decrypt; the device's handshakes fail, it sends nothing, it never
//! connects). And `droidfleet serve` speaks plaintext only when told to, and only on loopback.

use crate::support::World;
use droidfleet_agent::device::{Build, Ownership};
use droidfleet_control_plane::service::TlsSource;
use droidfleet_proto::tls::ServerTls;
use std::sync::Arc;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// What the impostor saw: handshakes refused by the client, and the bytes it could decrypt.
#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    refused_handshakes: u32,
    decrypted_bytes: usize,
}

/// A TLS server on loopback with `tls`'s certificate that reads (and counts) whatever a client
/// sends it once the handshake succeeds.
fn impostor(tls: &ServerTls) -> (String, watch::Receiver<Seen>) {
    let (chain, key) = tls.chain_and_key_pem();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = format!("https://{}", listener.local_addr().unwrap());
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let (seen, watch) = watch::channel(Seen::default());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                match acceptor.accept(stream).await {
                    Err(_) => seen.send_modify(|s| s.refused_handshakes += 1),
                    Ok(mut tls) => {
                        let mut buffer = vec![0u8; 16 * 1024];
                        while let Ok(read) = tls.read(&mut buffer).await {
                            if read == 0 {
                                break;
                            }
                            seen.send_modify(|s| s.decrypted_bytes += read);
                        }
                    }
                }
            });
        }
    });
    (address, watch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enrolled_device_refuses_a_man_in_the_middle_with_another_ca() {
    let mut world =
        World::start_builds(&[("kiosk", Ownership::Cosu, Build::default())], |config| {
            config.tls = TlsSource::Generated {
                extra_names: Vec::new(),
            }
        })
        .await;
    let id = world.device_id("kiosk").await;
    world.stop_agent().await;

    // Another CA, with a certificate for the very names the real one has.
    let other = tempfile::tempdir().unwrap();
    let other_tls =
        ServerTls::load_or_create(other.path(), &droidfleet_proto::tls::loopback_names()).unwrap();
    assert_ne!(Some(other_tls.ca_fingerprint()), world.ca);
    let (address, mut seen) = impostor(&other_tls);
    world.start_agent_detached_at(&address).await;

    // The device keeps trying (it backs off and retries); wait for a few refused handshakes.
    let seen = *tokio::time::timeout(
        crate::support::DEADLINE,
        seen.wait_for(|s| s.refused_handshakes >= 3 || s.decrypted_bytes > 0),
    )
    .await
    .expect("the device tries to connect")
    .unwrap();
    assert_eq!(
        seen.decrypted_bytes, 0,
        "the device sent the impostor data: {seen:?}"
    );
    assert!(seen.refused_handshakes >= 3, "{seen:?}");
    let screen = world.screen("kiosk").await;
    assert!(!screen.connected, "the device connected to the impostor");
    let devices = world.admin.devices().await.unwrap();
    let device = devices.iter().find(|d| d.device_id == id).unwrap();
    assert!(!device.online, "the real control plane saw the device");
}

#[test]
fn serve_refuses_plaintext_off_loopback_before_it_makes_anything() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_droidfleet"))
        .args(["serve", "--listen", "0.0.0.0:0", "--insecure-plaintext"])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("plaintext is allowed only on a loopback address")
            && stderr.contains("0.0.0.0:0"),
        "{stderr}"
    );
    assert!(!data.exists(), "nothing is created");
}
