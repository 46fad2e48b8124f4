//! Acceptance with real processes: `droidfleet serve` and `droidfleet agent run` are started as
//! child processes and killed with SIGKILL; nothing acknowledged is lost and nothing runs twice.
//! Also checks that their logs never carry a passcode.

use crate::support::kiosk_harness::{enter, harness, set_first_passcode, wait_connected};
use crate::support::{Deployment, pin_policy};
use droidfleet_proto::v1 as pb;
use droidfleet_proto::v1::device_harness_client::DeviceHarnessClient;
use pb::CredentialScope::Device as DEVICE;
use tonic::transport::Channel;

async fn read_notes(harness: &mut DeviceHarnessClient<Channel>) -> Option<Vec<u8>> {
    harness
        .read_user_data(pb::ReadUserDataRequest {
            name: "kiosk".into(),
            scope: DEVICE as i32,
            key: "notes".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .value
}

#[tokio::test]
async fn killed_processes_lose_nothing_and_apply_the_reset_once() {
    let deployment = Deployment::new();
    let devices = ["cosu:kiosk".to_string()];
    let control_plane = deployment.control_plane();
    let mut admin = deployment.admin().await;
    let enrollment = admin.enrollment_token(1, "").await;

    let agent = deployment.agent(&enrollment, &devices);
    let mut device = harness(&agent).await;
    let id = wait_connected(&mut device).await.device_id;
    set_first_passcode(&mut device, "2580").await;
    device
        .write_user_data(pb::WriteUserDataRequest {
            name: "kiosk".into(),
            scope: DEVICE as i32,
            key: "notes".into(),
            value: b"inventory".to_vec(),
        })
        .await
        .unwrap();
    admin.wait_escrowed(&id, DEVICE).await;
    admin.assign_policy(&id, DEVICE, pin_policy(6)).await;

    // Kill the agent: after a restart its device, passcode and data are intact.
    agent.kill();
    let agent = deployment.agent(&enrollment, &devices);
    let mut device = harness(&agent).await;
    let screen = wait_connected(&mut device).await;
    assert_eq!(screen.device_id, id, "the same enrolled device");
    assert!(
        screen.stores[0].locked,
        "a restart is a boot: the store is locked"
    );
    assert!(enter(&mut device, "2580").await, "the passcode survived");
    assert_eq!(
        read_notes(&mut device).await.as_deref(),
        Some(&b"inventory"[..])
    );

    // Device offline, reset requested, control plane killed before delivery.
    agent.kill();
    admin.wait_device(&id, |d| !d.online).await;
    let action = admin.reset(&id, DEVICE).await.unwrap();
    assert_eq!(action.state, pb::ActionState::Pending as i32);
    control_plane.kill();

    let control_plane = deployment.control_plane();
    let mut admin = deployment.admin().await;
    let agent = deployment.agent(&enrollment, &devices);
    let mut device = harness(&agent).await;
    let done = admin.wait_final(&action.action_id).await;
    assert_eq!(
        done.state,
        pb::ActionState::Done as i32,
        "reason: {}",
        done.reason
    );
    let passcode = admin.reveal(&action.action_id).await.unwrap();

    let screen = device
        .get_screen(pb::DeviceRef {
            name: "kiosk".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        screen.applied_commands.get(&action.action_id),
        Some(&1),
        "applied exactly once"
    );
    assert!(
        !enter(&mut device, "2580").await,
        "the old passcode no longer unlocks"
    );
    assert!(enter(&mut device, &passcode).await, "the new one does");
    assert_eq!(
        read_notes(&mut device).await.as_deref(),
        Some(&b"inventory"[..])
    );

    drop(agent);
    drop(control_plane);
    for log in ["cp.log", "agent.log"] {
        let text = std::fs::read_to_string(deployment.path(log)).unwrap();
        assert!(!text.is_empty(), "{log} has log lines");
        assert!(!text.contains(&passcode), "{log} contains the new passcode");
        assert!(!text.contains("2580"), "{log} contains the user's passcode");
        assert!(
            !text.contains(&enrollment),
            "{log} contains the enrollment token"
        );
    }
}

/// SIGTERM (what `kill` and service managers send) stops the control plane and the agent as
/// Ctrl-C does: gracefully, exiting 0, and the control plane starts again on its data.
#[tokio::test]
async fn sigterm_stops_both_processes_gracefully() {
    let deployment = Deployment::new();
    let control_plane = deployment.control_plane();
    let mut admin = deployment.admin().await;
    let enrollment = admin.enrollment_token(1, "").await;
    let agent = deployment.agent(&enrollment, &["cosu:kiosk".to_string()]);
    let mut device = harness(&agent).await;
    wait_connected(&mut device).await;

    let agent_status = tokio::task::spawn_blocking(move || agent.terminate())
        .await
        .unwrap();
    assert!(agent_status.success(), "agent: {agent_status}");
    let status = tokio::task::spawn_blocking(move || control_plane.terminate())
        .await
        .unwrap();
    assert!(status.success(), "control plane: {status}");

    let _again = deployment.control_plane();
    let mut admin = deployment.admin().await;
    assert_eq!(admin.devices().await.unwrap().len(), 1);

    // Every folder holding state is 0700 and every file in it 0600.
    use std::os::unix::fs::PermissionsExt;
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let mut files = 0;
    for dir in [deployment.path("cp"), deployment.path("agent")] {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let expected = if path.is_dir() { 0o700 } else { 0o600 };
            assert_eq!(mode(&path), expected, "{}", path.display());
            files += 1;
        }
    }
    assert!(
        files >= 3,
        "the database, the keys and a device's state file"
    );
}
