//! The Prometheus endpoints over loopback: after a reset, `GET /metrics` on the control plane and
//! on the agent shows the expected counts, and neither names a device.

use crate::support::{Admin, DEADLINE, pin_policy};
use droidfleet_agent::device::{EntryOutcome, KdfParams, Ownership, Passcode, Scope};
use droidfleet_agent::fleet::{DeviceSpec, Fleet, FleetConfig};
use droidfleet_control_plane::clock::SystemClock;
use droidfleet_control_plane::metrics::ControlPlaneMetrics;
use droidfleet_control_plane::server::MetricsEndpoint;
use droidfleet_control_plane::service::Config;
use droidfleet_proto::v1 as pb;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One plain HTTP/1.1 GET on a connection the server then closes; returns the status line and
/// the body.
async fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

async fn metrics_text(addr: SocketAddr) -> String {
    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    body
}

fn missing<'a>(text: &str, lines: &[&'a str]) -> Vec<&'a str> {
    lines
        .iter()
        .copied()
        .filter(|line| !text.lines().any(|l| l == *line))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_endpoints_count_a_reset_without_naming_the_device() {
    // The control plane, with its metrics on a second loopback port.
    let data_dir = tempfile::tempdir().unwrap();
    let opened =
        droidfleet_control_plane::server::open(Config::new(data_dir.path()), Arc::new(SystemClock))
            .await
            .unwrap();
    let admin_token = std::fs::read_to_string(opened.bootstrap_token_path.unwrap()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    // Over TLS, as `droidfleet serve` serves by default: the admin and the devices pin its CA.
    let ca = opened.tls.as_ref().unwrap().ca_fingerprint();
    let address = format!("https://{}", listener.local_addr().unwrap());
    let metrics_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cp_metrics_addr = metrics_listener.local_addr().unwrap();
    let cp_metrics = Arc::new(ControlPlaneMetrics::default());
    let mut cp_updates = cp_metrics.updates();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut server_stopped = stopped.clone();
    let server = tokio::spawn(droidfleet_control_plane::server::serve_with_metrics(
        opened.control_plane,
        opened.tls,
        listener,
        Some(MetricsEndpoint {
            listener: metrics_listener,
            metrics: cp_metrics.clone(),
        }),
        async move {
            let _ = server_stopped.wait_for(|s| *s).await;
        },
    ));
    let mut admin =
        Admin::connect_pinned(&address, Some(ca), Some(admin_token.trim().to_string())).await;
    let enrollment_token = admin.enrollment_token(1, "").await;

    // The agent, with its metrics endpoint.
    let agent_dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::load(FleetConfig {
        control_plane: address.clone(),
        state_dir: Some(agent_dir.path().to_path_buf()),
        enrollment_token: Some(enrollment_token),
        kdf: KdfParams::LIGHT,
        devices: vec![DeviceSpec {
            name: "kiosk-lobby".to_string(),
            ownership: Ownership::Cosu,
            build: Default::default(),
        }],
        clock: Arc::new(droidfleet_agent::clock::SystemClock),
        connections: 1,
        faults: Default::default(),
    })
    .await
    .unwrap();
    let agent_metrics_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let agent_metrics_addr = agent_metrics_listener.local_addr().unwrap();
    let counts = fleet.metrics().clone();
    let mut agent_metrics_stopped = stopped.clone();
    let agent_metrics = tokio::spawn(droidfleet_agent::metrics::serve_metrics(
        agent_metrics_listener,
        move || counts.render(),
        async move {
            let _ = agent_metrics_stopped.wait_for(|s| *s).await;
        },
    ));
    let mut changes = fleet.screen_changes();
    let agent = tokio::spawn(fleet.clone().run(stopped.clone()));
    let device_id = tokio::time::timeout(DEADLINE, async {
        loop {
            let screen = fleet.screen("kiosk-lobby").unwrap();
            if let (true, Some(id)) = (screen.connected, screen.device_id) {
                return id;
            }
            let _ = changes.recv().await;
        }
    })
    .await
    .expect("the device enrolls in time");

    // A reset, start to end: the user's PIN is escrowed, a policy applies, the admin resets, and
    // the user types the new PIN.
    fleet
        .set_passcode("kiosk-lobby", Scope::Device, None, Passcode::new("2580"))
        .await
        .unwrap();
    admin
        .wait_escrowed(&device_id, pb::CredentialScope::Device)
        .await;
    admin
        .assign_policy(&device_id, pb::CredentialScope::Device, pin_policy(6))
        .await;
    let action = admin
        .reset(&device_id, pb::CredentialScope::Device)
        .await
        .unwrap();
    let done = admin.wait_final(&action.action_id).await;
    assert_eq!(done.state, pb::ActionState::Done as i32);
    let passcode = admin.reveal(&action.action_id).await.unwrap();
    let entered = fleet
        .enter_passcode(
            "kiosk-lobby",
            Scope::Device,
            Passcode::new(passcode.clone()),
        )
        .await
        .unwrap();
    assert!(matches!(entered, EntryOutcome::Unlocked));
    let refused = admin
        .reset("no-such-device", pb::CredentialScope::Device)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::NotFound);

    // The control plane counts from its change broadcasts, a moment after the fact: wait for
    // its counts to move rather than for a fixed time.
    let expected = [
        "droidfleet_actions_created_total{kind=\"reset_passcode\"} 1",
        "droidfleet_actions_finished_total{state=\"done\",error_code=\"\"} 1",
        "droidfleet_actions_delivered_total 1",
        "droidfleet_actions_user_entered_total 1",
        "droidfleet_devices_connected 1",
        "droidfleet_sessions_opened_total 1",
        "droidfleet_admin_calls_total{operation=\"ResetPasscode\",result=\"ok\"} 1",
        "droidfleet_admin_calls_total{operation=\"ResetPasscode\",result=\"not_found\"} 1",
        "droidfleet_admin_calls_total{operation=\"RevealPasscode\",result=\"ok\"} 1",
        "droidfleet_admin_call_duration_seconds_count{operation=\"ResetPasscode\"} 2",
        "droidfleet_action_phase_seconds_count{kind=\"reset_passcode\",phase=\"delivered\"} 1",
        "droidfleet_action_phase_seconds_count{kind=\"reset_passcode\",phase=\"applied\"} 1",
        "droidfleet_action_phase_seconds_count{kind=\"reset_passcode\",phase=\"user_entered\"} 1",
    ];
    let control_plane_text = tokio::time::timeout(DEADLINE, async {
        loop {
            let text = metrics_text(cp_metrics_addr).await;
            if missing(&text, &expected).is_empty() {
                return text;
            }
            cp_updates.changed().await.unwrap();
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "control plane metrics never showed {:?}:\n{}",
            expected,
            cp_metrics.render()
        )
    });

    // The agent counts before it reports, so its counts are already there.
    let agent_text = metrics_text(agent_metrics_addr).await;
    let agent_expected = [
        "droidfleet_agent_devices_hosted 1",
        "droidfleet_agent_devices_connected 1",
        "droidfleet_agent_commands_total{outcome=\"success\"} 1",
        "droidfleet_agent_commands_total{outcome=\"failure\"} 0",
        "droidfleet_agent_passcode_entries_total{result=\"accepted\"} 1",
        "droidfleet_agent_command_duration_seconds_count{outcome=\"success\"} 1",
        // Argon2id ran three times: the user's PIN set, the reset's new wrap, the entry.
        "droidfleet_agent_argon2_seconds_count 3",
    ];
    assert_eq!(
        missing(&agent_text, &agent_expected),
        Vec::<&str>::new(),
        "{agent_text}"
    );
    let reports: u64 = agent_text
        .lines()
        .find_map(|l| l.strip_prefix("droidfleet_agent_reports_sent_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        reports >= 3,
        "ack, result, escrowed token at least: {reports}"
    );

    for text in [&control_plane_text, &agent_text] {
        assert!(
            !text.contains(&device_id),
            "a device id in the metrics:\n{text}"
        );
        assert!(
            !text.contains("kiosk-lobby"),
            "a device name in the metrics:\n{text}"
        );
        assert!(
            !text.contains(&passcode),
            "the passcode in the metrics:\n{text}"
        );
    }

    // Anything but GET /metrics is refused.
    assert_eq!(get(cp_metrics_addr, "/").await.0, "HTTP/1.1 404 Not Found");
    assert_eq!(
        get(agent_metrics_addr, "/other").await.0,
        "HTTP/1.1 404 Not Found"
    );

    stop.send(true).unwrap();
    agent.await.unwrap();
    agent_metrics.await.unwrap().unwrap();
    server.await.unwrap().unwrap();
}
