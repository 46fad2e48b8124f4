//! The console's protections, read at the HTTP level from a real `droidfleet serve --console`
//! process: the token only in a POST body, sessions in HttpOnly SameSite=Strict cookies (Secure
//! over TLS), CSRF tokens on every form, the content security policy, and no secret (admin token,
//! session id, CSRF token, passcode) in an address, in the server's log at debug level, or in a
//! page that does not show it on purpose.

use crate::support::http::{Answer, Server};
use crate::support::{Admin, Process, RawDevice, password_policy};
use droidfleet_proto::v1 as pb;
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::rustls;

/// A control plane with its console, its admin token, and the console's `host:port`.
struct Served {
    process: Process,
    token: String,
    console: String,
    dir: tempfile::TempDir,
}

fn serve(extra: &[&str]) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut args = vec![
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--console",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let process = Process::start_logging(
        &args,
        "control plane listening on ",
        &dir.path().join("serve.log"),
        "debug",
    );
    let console = process
        .earlier
        .iter()
        .find_map(|line| line.strip_prefix("console on "))
        .expect("serve prints the console's address")
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_string();
    let token = std::fs::read_to_string(data.join("bootstrap-admin.token"))
        .unwrap()
        .trim()
        .to_string();
    Served {
        process,
        token,
        console,
        dir,
    }
}

/// Signs in through the form; returns the `Cookie` header value of the session.
async fn sign_in(server: &Server, token: &str) -> (String, Answer) {
    let form = server.get("/sign-in", "").await;
    let nonce = form.cookie("df_sign_in").expect("the form sets its cookie");
    assert_eq!(form.input_value("sign_in"), nonce);
    let answer = server
        .post(
            "/sign-in",
            &format!("df_sign_in={nonce}"),
            &format!("token={token}&sign_in={nonce}"),
        )
        .await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert_eq!(answer.header("location"), Some("/devices"));
    let session = answer.cookie("df_session").expect("a session cookie");
    (format!("df_session={session}"), answer)
}

#[tokio::test]
async fn no_secret_reaches_an_address_a_log_or_a_page_that_does_not_show_it() {
    // Plaintext on loopback, so this test reads what the console sends as it is.
    let served = serve(&["--insecure-plaintext"]);
    let grpc = format!("http://{}", served.process.address);
    let mut admin = Admin::connect(&grpc, Some(served.token.clone())).await;
    let enrollment = admin.enrollment_token(1, "").await;
    let phone = RawDevice::enroll(&grpc, &enrollment, pb::Ownership::Byod, "phone").await;
    phone.escrow(pb::CredentialScope::WorkProfile).await;
    admin
        .wait_escrowed(&phone.device_id, pb::CredentialScope::WorkProfile)
        .await;
    admin
        .assign_policy(
            &phone.device_id,
            pb::CredentialScope::WorkProfile,
            password_policy(8),
        )
        .await;
    let server = Server {
        authority: served.console.clone(),
        tls: None,
    };
    // Every address the console was asked for or sent the browser to.
    let mut addresses: Vec<String> = Vec::new();

    // Sign-in: a form whose double-submit cookie is missing, or a token nobody holds, opens no
    // session.
    let form = server.get("/sign-in", "").await;
    let nonce = form.input_value("sign_in");
    let forged = server
        .post(
            "/sign-in",
            "",
            &format!("token={}&sign_in={nonce}", served.token),
        )
        .await;
    assert_eq!(forged.status, 403);
    assert_eq!(forged.cookie("df_session"), None);
    let unknown = server
        .post(
            "/sign-in",
            &format!("df_sign_in={nonce}"),
            &format!("token=dfa_nobody&sign_in={nonce}"),
        )
        .await;
    assert_eq!(unknown.status, 401);
    assert!(unknown.body.contains("does not know that token"));
    assert_eq!(unknown.cookie("df_session"), None);

    let (session, signed_in) = sign_in(&server, &served.token).await;
    let session_cookie = signed_in
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("df_session="))
        .unwrap();
    assert!(session_cookie.contains("; HttpOnly"), "{session_cookie}");
    assert!(
        session_cookie.contains("; SameSite=Strict"),
        "{session_cookie}"
    );
    assert!(
        !session_cookie.contains("Secure"),
        "plain HTTP: a Secure cookie would never come back"
    );
    addresses.push(signed_in.header("location").unwrap().to_string());

    let list = server.get("/devices", &session).await;
    assert_eq!(list.status, 200);
    assert_eq!(
        list.header("content-security-policy"),
        Some(droidfleet_console::http::CONTENT_SECURITY_POLICY)
    );
    assert_eq!(list.header("x-frame-options"), Some("DENY"));
    assert_eq!(list.header("cache-control"), Some("no-store"));
    assert!(
        !list.body.contains("<script>") && !list.body.contains(" style="),
        "no inline script or style: the policy forbids them"
    );

    // A form without the session's CSRF token does nothing.
    let device_path = format!("/devices/{}", phone.device_id);
    addresses.push(device_path.clone());
    let device_page = server.get(&device_path, &session).await;
    assert_eq!(device_page.status, 200);
    let csrf = device_page.input_value("csrf");
    let reset_path = format!("{device_path}/reset");
    for form in ["csrf=not-the-token".to_string(), "csrf=".to_string()] {
        let refused = server.post(&reset_path, &session, &form).await;
        assert_eq!(refused.status, 403, "{}", refused.body);
    }
    assert!(admin.actions(&phone.device_id).await.unwrap().is_empty());

    // Reset passcode, then Show passcode.
    let reset = server
        .post(&reset_path, &session, &format!("csrf={csrf}"))
        .await;
    assert_eq!(reset.status, 303, "{}", reset.body);
    let action_path = reset.header("location").unwrap().to_string();
    addresses.push(action_path.clone());
    let action_id = action_path.strip_prefix("/actions/").unwrap().to_string();
    let unrevealed = server.get(&action_path, &session).await;
    assert!(unrevealed.body.contains("show-passcode"));
    let revealed = server
        .post(
            &format!("{action_path}/reveal"),
            &session,
            &format!("csrf={csrf}"),
        )
        .await;
    assert_eq!(revealed.status, 200);
    let passcode = admin.reveal(&action_id).await.unwrap();
    assert!(
        revealed
            .body
            .contains(&format!("<output id=\"passcode\">{passcode}</output>")),
        "the reveal panel shows the passcode"
    );
    assert_eq!(
        revealed.body.matches(&passcode).count(),
        1,
        "only in its panel"
    );
    let pages = [
        ("the action page", server.get(&action_path, &session).await),
        ("the device page", server.get(&device_path, &session).await),
        ("the device list", server.get("/devices", &session).await),
        ("the audit log", server.get("/audit", &session).await),
    ];
    let reveals = admin.audit("RevealPasscode").await;
    assert_eq!(reveals.len(), 2, "the console's reveal and this test's");
    assert!(reveals.iter().all(|e| e.action_id == action_id));

    // Signing out ends the session on the server, whatever the browser keeps.
    let sign_out = server
        .post("/sign-out", &session, &format!("csrf={csrf}"))
        .await;
    assert_eq!(sign_out.status, 303);
    assert!(
        sign_out
            .set_cookies()
            .iter()
            .any(|c| c.starts_with("df_session=;") && c.contains("Max-Age=0"))
    );
    let after = server.get("/devices", &session).await;
    assert_eq!(after.status, 303);
    assert_eq!(after.header("location"), Some("/sign-in"));

    let session_id = session.trim_start_matches("df_session=");
    let secrets = [
        ("the admin token", served.token.as_str()),
        ("the session id", session_id),
        ("the CSRF token", csrf.as_str()),
        ("the passcode", passcode.as_str()),
    ];
    for (what, page) in &pages {
        assert_eq!(page.status, 200, "{what}");
        for (secret_name, secret) in &secrets[..] {
            if *secret_name == "the CSRF token" {
                continue; // Every form carries it, on purpose.
            }
            assert!(!page.body.contains(secret), "{what} holds {secret_name}");
        }
    }
    for address in &addresses {
        for (secret_name, secret) in &secrets {
            assert!(!address.contains(secret), "{secret_name} in {address}");
        }
    }
    drop(served.process);
    let log = std::fs::read_to_string(served.dir.path().join("serve.log")).unwrap();
    assert!(
        log.contains("console sign-in"),
        "the log is there to read: {log}"
    );
    for (secret_name, secret) in &secrets {
        assert!(
            !log.contains(secret),
            "the server's log holds {secret_name}"
        );
    }
}

/// A self-signed certificate for `localhost`, as PEM files in `dir`, and a client configuration
/// that trusts it.
fn certificate(dir: &Path) -> (String, String, Arc<rustls::ClientConfig>) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_path = dir.join("console.crt");
    let key_path = dir.join("console.key");
    std::fs::write(&cert_path, certified.cert.pem()).unwrap();
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (
        cert_path.to_str().unwrap().to_string(),
        key_path.to_str().unwrap().to_string(),
        Arc::new(client),
    )
}

#[tokio::test]
async fn over_tls_every_cookie_is_secure() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key, client) = certificate(certs.path());
    let served = serve(&["--console-tls-cert", &cert, "--console-tls-key", &key]);
    assert!(
        served
            .process
            .earlier
            .iter()
            .any(|l| l.starts_with("console on https://")),
        "{:?}",
        served.process.earlier
    );
    let server = Server {
        authority: served.console.clone(),
        tls: Some(client),
    };
    let form = server.get("/sign-in", "").await;
    assert_eq!(form.status, 200);
    let (_, signed_in) = sign_in(&server, &served.token).await;
    let cookies = signed_in.set_cookies();
    assert!(!cookies.is_empty());
    for cookie in form.set_cookies().iter().chain(&cookies) {
        assert!(
            cookie.contains("; HttpOnly; SameSite=Strict; Secure"),
            "{cookie}"
        );
    }
}

#[test]
fn a_missing_certificate_stops_serve_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere.crt");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_droidfleet"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--console",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--console-tls-cert")
        .arg(&missing)
        .arg("--console-tls-key")
        .arg(&missing)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("nowhere.crt"),
        "the error names the file: {stderr}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "nothing is created before the certificate is read"
    );
}
