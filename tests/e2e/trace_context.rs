//! Acceptance 4 of issue 15, with real processes: one reset's W3C trace id, started by the
//! `droidfleet admin` CLI, appears in the CLI's output, in the control plane's log (JSON lines,
//! `--log-format json`) on every line about the reset with its action id, and in the agent's log
//! (text) on the device's lines about the command; the device's answers carry it back.

use crate::support::{Admin, DEADLINE, Deployment, World, pin_policy};
use droidfleet_agent::device::Ownership;
use droidfleet_proto::v1 as pb;
use droidfleet_proto::v1::device_harness_client::DeviceHarnessClient;
use pb::CredentialScope::Device as DEVICE;
use serde_json::Value;

#[tokio::test]
async fn one_resets_trace_id_runs_from_the_cli_through_the_control_plane_to_the_agent() {
    let deployment = Deployment::new();
    let control_plane = deployment.control_plane_with(
        &["--log-format", "json"],
        "info,droidfleet_control_plane=debug",
    );
    let mut admin = deployment.admin().await;
    let enrollment = admin.enrollment_token(1, "").await;
    let agent = deployment.agent(&enrollment, &["cosu:kiosk".to_string()]);
    let mut device = DeviceHarnessClient::connect(format!("http://{}", agent.address))
        .await
        .unwrap();
    let mut screens = device
        .watch_screens(pb::WatchScreensRequest {
            name: "kiosk".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let device_id = tokio::time::timeout(DEADLINE, async {
        while let Some(screen) = screens.message().await.unwrap() {
            if screen.connected {
                return screen.device_id;
            }
        }
        panic!("WatchScreens ended")
    })
    .await
    .expect("the device connects in time");
    device
        .set_passcode(pb::SetPasscodeRequest {
            name: "kiosk".into(),
            scope: DEVICE as i32,
            current_passcode: String::new(),
            new_passcode: "2580".into(),
        })
        .await
        .unwrap();
    admin.wait_escrowed(&device_id, DEVICE).await;
    admin.assign_policy(&device_id, DEVICE, pin_policy(6)).await;

    // The CLI starts the trace and prints its id with the action.
    let token_file = deployment.path("cp").join("bootstrap-admin.token");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_droidfleet"))
        .args(["admin", "--server", &deployment.address(), "--token-file"])
        .arg(&token_file)
        .args(["reset-passcode", &device_id])
        .env_remove("DROIDFLEET_TOKEN")
        .env_remove("DROIDFLEET_CA_FILE")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "droidfleet admin reset-passcode: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let action_id = stdout.split_whitespace().next().unwrap().to_string();
    assert!(action_id.starts_with("act_"), "{stdout}");
    let trace_id = stdout
        .lines()
        .find_map(|line| line.trim().strip_prefix("trace "))
        .unwrap_or_else(|| panic!("the CLI prints the trace id: {stdout}"))
        .to_string();
    assert_eq!(trace_id.len(), 32, "{trace_id}");
    assert!(
        trace_id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{trace_id}"
    );
    assert_eq!(admin.action(&action_id).await.trace_id, trace_id);

    let done = admin.wait_final(&action_id).await;
    assert_eq!(done.state, pb::ActionState::Done as i32, "{}", done.reason);
    let passcode = admin.reveal(&action_id).await.unwrap();
    let unlocked = device
        .enter_passcode(pb::EnterPasscodeRequest {
            name: "kiosk".into(),
            scope: DEVICE as i32,
            passcode,
        })
        .await
        .unwrap()
        .into_inner()
        .unlocked;
    assert!(unlocked);
    let entered = admin.wait_entered(&action_id).await;
    assert_ne!(entered.user_entered_at_ms, 0);
    drop(agent);
    drop(control_plane);

    // The control plane: every line naming the action carries the trace id, and the reset's
    // story is all there.
    let log = std::fs::read_to_string(deployment.path("cp.log")).unwrap();
    let lines: Vec<Value> = log
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"))
        })
        .collect();
    let about_action: Vec<&Value> = lines
        .iter()
        .filter(|line| line["fields"]["action_id"] == action_id.as_str())
        .collect();
    for line in &about_action {
        assert_eq!(line["fields"]["trace_id"], trace_id.as_str(), "{line}");
    }
    let messages: Vec<&str> = about_action
        .iter()
        .map(|line| line["fields"]["message"].as_str().unwrap())
        .collect();
    for expected in [
        "remote action requested",
        "command sent",
        "action state changed",
        "device answered in its span",
        "the user entered the new passcode",
    ] {
        assert!(
            messages.contains(&expected),
            "no {expected:?} line about the action in the control plane's log: {messages:?}"
        );
    }
    // The device's answers came back with the trace, under a span id of the device's own.
    let answered = about_action
        .iter()
        .find(|line| line["fields"]["message"] == "device answered in its span")
        .unwrap();
    let device_span = answered["fields"]["device_span_id"].as_str().unwrap();
    assert_eq!(device_span.len(), 16, "{answered}");

    // The agent: its lines about the command, in the command's span, name both ids.
    let log = std::fs::read_to_string(deployment.path("agent.log")).unwrap();
    let result = log
        .lines()
        .find(|line| line.contains("command result") && line.contains(&action_id))
        .unwrap_or_else(|| panic!("no command result line for {action_id} in the agent's log"));
    assert!(
        result.contains(&format!("trace_id={trace_id}")),
        "the agent's line carries the trace id: {result}"
    );
}

/// The admin API's side of the trace: a `traceparent` in the call's metadata makes the action
/// part of that trace; a malformed one, or none, gets a new trace instead of a refusal; a remote
/// lock takes one too.
#[tokio::test]
async fn an_actions_trace_is_the_callers_or_a_new_one_never_a_refusal() {
    let mut world = World::start(&[("kiosk", Ownership::Cosu)]).await;
    let id = world.device_id("kiosk").await;
    let reset = |admin: &Admin, traceparent: Option<&str>| {
        let mut request = admin.request(pb::ResetPasscodeRequest {
            device_id: id.clone(),
            ..Default::default()
        });
        if let Some(value) = traceparent {
            request
                .metadata_mut()
                .insert("traceparent", value.parse().unwrap());
        }
        request
    };
    let given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let request = reset(&world.admin, Some(given));
    let traced = world
        .admin
        .client
        .reset_passcode(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(traced.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(
        world.admin.action(&traced.action_id).await.trace_id,
        traced.trace_id,
        "stored with the action"
    );

    let mut seen = vec![traced.trace_id];
    for traceparent in [
        None,
        Some("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
        Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
        Some("not a traceparent"),
    ] {
        let request = reset(&world.admin, traceparent);
        let action = world
            .admin
            .client
            .reset_passcode(request)
            .await
            .unwrap_or_else(|status| panic!("{traceparent:?} refused: {status}"))
            .into_inner();
        assert_eq!(action.trace_id.len(), 32, "{traceparent:?}");
        assert!(
            action
                .trace_id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{traceparent:?}: {}",
            action.trace_id
        );
        assert!(
            !seen.contains(&action.trace_id),
            "{traceparent:?} started a new trace"
        );
        seen.push(action.trace_id);
    }

    let mut lock = world.admin.request(pb::RemoteLockRequest {
        device_id: id.clone(),
        ..Default::default()
    });
    lock.metadata_mut()
        .insert("traceparent", given.parse().unwrap());
    let locked = world
        .admin
        .client
        .remote_lock(lock)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(locked.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
}
