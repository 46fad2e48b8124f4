//! `droidfleet agent run --console ADDR` as a real process beside a real `droidfleet serve`: the
//! fleet wall shows the hosted devices with the console's security headers and no secret, a
//! device locked by its user through the harness shows as locked on the device's page (fetched
//! over HTTP, and redrawn live in a real headless Chromium), and a bad `--console` address is
//! refused by name.

use crate::support::http::{Answer, Server};
use crate::support::{Browser, DEADLINE, Deployment};
use droidfleet_proto::v1 as pb;
use droidfleet_proto::v1::device_harness_client::DeviceHarnessClient;
use pb::CredentialScope::Device as DEVICE;
use std::process::{Command, Stdio};

const PASSCODE: &str = "2580";

/// GETs `path` until `done` holds for the answer, or fails after [`DEADLINE`]; the wall samples
/// once a second, so this follows its samples rather than a guessed delay.
async fn poll(wall: &Server, path: &str, what: &str, done: impl Fn(&Answer) -> bool) -> Answer {
    let until = tokio::time::Instant::now() + DEADLINE;
    let mut ticks = tokio::time::interval(std::time::Duration::from_millis(200));
    loop {
        ticks.tick().await;
        let answer = wall.get(path, "").await;
        if done(&answer) {
            return answer;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "{what}: not in time; last answer {}: {}",
            answer.status,
            answer.body
        );
    }
}

#[tokio::test]
async fn the_agents_fleet_wall_shows_its_devices_and_a_lock() {
    let deployment = Deployment::new();
    let _control_plane = deployment.control_plane();
    let mut admin = deployment.admin().await;
    let enrollment = admin.enrollment_token(2, "").await;
    let devices = ["cosu:kiosk".to_string(), "byod:alice-phone".to_string()];
    let agent = deployment.agent_with(&enrollment, &devices, &["--console", "127.0.0.1:0"]);
    let address = agent
        .earlier
        .iter()
        .find_map(|line| line.strip_prefix("fleet wall on "))
        .unwrap_or_else(|| panic!("no wall line in {:?}", agent.earlier))
        .to_string();
    let authority = address
        .strip_prefix("http://")
        .and_then(|rest| rest.strip_suffix('/'))
        .unwrap()
        .to_string();
    assert!(authority.starts_with("127.0.0.1:"), "{authority}");
    let wall = Server {
        authority,
        tls: None,
    };

    // Both devices enroll and connect; the wall counts them and draws both screens.
    let page = poll(&wall, "/", "both devices connected", |a| {
        a.body.contains(r#"id="count-connected">2<"#)
    })
    .await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains(r#"data-device="kiosk""#),
        "{}",
        page.body
    );
    assert!(page.body.contains(r#"data-device="alice-phone""#));
    assert!(page.body.contains(r#"href="/devices/kiosk""#));
    assert!(page.body.contains(r#"id="count-offline">0<"#));
    assert!(page.body.contains("<svg"), "the chart is drawn");
    assert_eq!(
        page.header("content-security-policy"),
        Some(droidfleet_console::http::CONTENT_SECURITY_POLICY)
    );
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("cache-control"), Some("no-store"));
    let unknown = wall.get("/devices/nobody", "").await;
    assert_eq!(unknown.status, 404);
    assert!(unknown.body.contains("nobody"));

    // The device's page in a real browser, reached from its screen on the wall.
    let browser = Browser::start().await;
    browser.client.goto(&address).await.unwrap();
    browser
        .click(r#"#screens a.screen[data-device="kiosk"]"#)
        .await;
    browser.wait_for("#device-screen").await;
    assert_eq!(browser.text("#device-name").await, "kiosk");

    // The user sets a passcode and locks the phone through the harness.
    let mut harness = DeviceHarnessClient::connect(format!("http://{}", agent.address))
        .await
        .unwrap();
    harness
        .set_passcode(pb::SetPasscodeRequest {
            name: "kiosk".into(),
            scope: DEVICE as i32,
            current_passcode: String::new(),
            new_passcode: PASSCODE.into(),
        })
        .await
        .unwrap();
    let locked = harness
        .lock(pb::StoreRef {
            name: "kiosk".into(),
            scope: DEVICE as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(locked.stores.iter().any(|s| s.locked));

    // The open page redraws itself with the lock; the page fetched anew shows it too.
    browser
        .wait_for(r#"#device-screen td[data-store="Device"][data-lock="locked"]"#)
        .await;
    browser.close().await;
    let device = poll(&wall, "/devices/kiosk", "the lock on the page", |a| {
        a.body.contains(r#"data-store="Device" data-lock="locked""#)
    })
    .await;
    assert_eq!(device.status, 200);
    let page = poll(&wall, "/", "the locked store counted", |a| {
        a.body.contains(r#"id="count-locked">1<"#)
    })
    .await;
    for answer in [&page, &device] {
        assert!(!answer.body.contains(PASSCODE), "no passcode on a page");
        assert!(!answer.body.contains(&enrollment), "no token on a page");
    }
}

/// `droidfleet agent run` with `args`; returns its failure's stderr.
fn failing_agent(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_droidfleet"))
        .args(["agent", "run", "--in-memory", "--devices", "1"])
        .args(["--harness-listen", "127.0.0.1:0"])
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success(), "{args:?} was accepted");
    String::from_utf8(output.stderr).unwrap()
}

#[test]
fn a_bad_console_address_is_refused_by_name() {
    let error = failing_agent(&["--console", "not-an-address"]);
    assert!(
        error.contains("not-an-address") && error.contains("--console"),
        "{error}"
    );

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let error = failing_agent(&["--console", &address]);
    assert!(
        error.contains(&address) && error.contains("--console"),
        "{error}"
    );
}
