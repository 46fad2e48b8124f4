//! Key ids and rotation with real processes: `droidfleet keys rotate` on the data folder of a
//! `droidfleet serve` whose devices are enrolled and connected, then a restart. The devices
//! follow the new signing key (told by the old one) and resets keep working; a passcode and an
//! escrow token sealed before the sealing rotation still open after it; a device that missed two
//! signing rotations while offline catches up on its next session; a device whose trusted key
//! was thrown away refuses the new key's commands, naming both key ids; `droidfleet serve`
//! missing a key file while a device is enrolled stops, naming the file, and makes no new key.

use crate::support::kiosk_harness::{enter, harness, set_first_passcode, wait_connected};
use crate::support::{DEADLINE, Deployment, pin_policy};
use droidfleet_proto::v1 as pb;
use pb::CredentialScope::Device as DEVICE;

/// `droidfleet keys rotate --data-dir <cp> <flags>`: its stdout, after checking it succeeded.
fn rotate(deployment: &Deployment, flags: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_droidfleet"))
        .args(["keys", "rotate", "--data-dir"])
        .arg(deployment.path("cp"))
        .args(flags)
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "keys rotate failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The signing public key the kiosk's state file says it trusts (base64, as stored).
fn trusted_key(deployment: &Deployment) -> String {
    let path = deployment.path("agent").join("kiosk.json");
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    state["enrollment"]["command_public_key"]
        .as_str()
        .expect("the state file holds the trusted key")
        .to_string()
}

/// A reset of the kiosk's device store, followed to its end; returns its id and new passcode.
async fn reset_done(deployment: &Deployment, device_id: &str) -> (String, String) {
    let mut admin = deployment.admin().await;
    let action = admin.reset(device_id, DEVICE).await.unwrap();
    let done = admin.wait_final(&action.action_id).await;
    assert_eq!(
        done.state,
        pb::ActionState::Done as i32,
        "reason: {}",
        done.reason
    );
    let passcode = admin.reveal(&action.action_id).await.unwrap();
    (action.action_id, passcode)
}

#[tokio::test]
async fn rotated_keys_keep_enrolled_devices_and_sealed_secrets_working() {
    let deployment = Deployment::new();
    let control_plane = deployment.control_plane();
    let mut admin = deployment.admin().await;
    let enrollment = admin.enrollment_token(1, "").await;
    let devices = ["cosu:kiosk".to_string()];
    let agent = deployment.agent(&enrollment, &devices);
    let mut device = harness(&agent).await;
    let id = wait_connected(&mut device).await.device_id;
    set_first_passcode(&mut device, "2580").await;
    admin.wait_escrowed(&id, DEVICE).await;
    admin.assign_policy(&id, DEVICE, pin_policy(6)).await;
    // Sealed with the first sealing key: this reset's passcode, and the token the device
    // escrows after it (a reset rotates the store's token).
    let (before_id, before_passcode) = reset_done(&deployment, &id).await;
    assert!(enter(&mut device, &before_passcode).await);
    admin.wait_escrowed(&id, DEVICE).await;
    let enrolled_key = trusted_key(&deployment);

    // Rotated while the server runs and the device is connected: nothing changes until the
    // server restarts.
    let output = rotate(&deployment, &[]);
    assert!(
        output.contains("signing key rotated") && output.contains("sealing key rotated"),
        "{output}"
    );
    let keys = deployment.path("cp").join("keys");
    let mut retired: Vec<String> = std::fs::read_dir(&keys)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("seal-") || name.starts_with("command-signing-"))
        .collect();
    retired.sort();
    assert_eq!(
        retired.len(),
        2,
        "one retired key of each kind: {retired:?}"
    );
    {
        use std::os::unix::fs::PermissionsExt;
        for name in &retired {
            let mode = std::fs::metadata(keys.join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
    }
    let status = tokio::task::spawn_blocking(move || control_plane.terminate())
        .await
        .unwrap();
    assert!(status.success(), "control plane: {status}");
    let control_plane = deployment.control_plane();
    let mut admin = deployment.admin().await;
    admin.wait_device(&id, |d| d.online).await;

    // The passcode sealed before the rotation still opens.
    assert_eq!(
        admin.reveal(&before_id).await.unwrap(),
        before_passcode,
        "a passcode sealed with the retired sealing key"
    );
    // A reset after the rotation: signed with the new key, which the device learned from the
    // old one, carrying the escrow token sealed with the retired sealing key.
    let (_, after_passcode) = reset_done(&deployment, &id).await;
    assert_ne!(
        trusted_key(&deployment),
        enrolled_key,
        "the device follows the new key"
    );
    assert!(!enter(&mut device, &before_passcode).await);
    assert!(enter(&mut device, &after_passcode).await);
    admin.wait_escrowed(&id, DEVICE).await;

    // The device goes offline and misses two signing rotations: on its next session it gets
    // one update per earlier key, follows the one signed by the key it trusts, and resets work.
    let followed = trusted_key(&deployment);
    agent.kill();
    admin.wait_device(&id, |d| !d.online).await;
    rotate(&deployment, &["--signing"]);
    rotate(&deployment, &["--signing"]);
    let status = tokio::task::spawn_blocking(move || control_plane.terminate())
        .await
        .unwrap();
    assert!(status.success(), "control plane: {status}");
    let _control_plane = deployment.control_plane();
    let agent = deployment.agent(&enrollment, &devices);
    let mut device = harness(&agent).await;
    wait_connected(&mut device).await;
    let (_, latest_passcode) = reset_done(&deployment, &id).await;
    let latest = trusted_key(&deployment);
    assert!(
        latest != followed && latest != enrolled_key,
        "caught up two rotations"
    );
    assert!(enter(&mut device, &latest_passcode).await);

    drop(agent);
    for log in ["cp.log", "agent.log"] {
        let text = std::fs::read_to_string(deployment.path(log)).unwrap();
        for passcode in [&before_passcode, &after_passcode, &latest_passcode] {
            assert!(!text.contains(passcode.as_str()), "{log} holds a passcode");
        }
    }
}

/// The key ids in `keys rotate`'s line for `kind` ("signing" or "sealing"): before and after.
fn rotated_ids(output: &str, kind: &str) -> (String, String) {
    let line = output
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{kind} key rotated: ")))
        .unwrap_or_else(|| panic!("no {kind} rotation in {output:?}"));
    let (old, rest) = line.split_once(" -> ").expect("old -> new");
    let new = rest.split_whitespace().next().expect("the new id");
    (old.to_string(), new.to_string())
}

#[tokio::test]
async fn a_device_whose_trusted_key_was_deleted_refuses_the_new_key_naming_both_ids() {
    let deployment = Deployment::new();
    let control_plane = deployment.control_plane();
    let mut admin = deployment.admin().await;
    let enrollment = admin.enrollment_token(1, "").await;
    let agent = deployment.agent(&enrollment, &["cosu:kiosk".to_string()]);
    let mut device = harness(&agent).await;
    let id = wait_connected(&mut device).await.device_id;
    set_first_passcode(&mut device, "2580").await;
    admin.wait_escrowed(&id, DEVICE).await;
    admin.assign_policy(&id, DEVICE, pin_policy(6)).await;
    let enrolled_key = trusted_key(&deployment);

    // The operator rotates, then throws away the retired signing key: the restarted control
    // plane has no key update the device would follow.
    let (old_id, new_id) = rotated_ids(&rotate(&deployment, &["--signing"]), "signing");
    assert_ne!(old_id, new_id);
    let retired = deployment
        .path("cp")
        .join("keys")
        .join(format!("command-signing-{old_id}.pk8"));
    std::fs::remove_file(&retired).unwrap();
    let status = tokio::task::spawn_blocking(move || control_plane.terminate())
        .await
        .unwrap();
    assert!(status.success(), "control plane: {status}");
    let _control_plane = deployment.control_plane();
    let mut admin = deployment.admin().await;
    admin.wait_device(&id, |d| d.online).await;

    // Signed with the new key, under the new key's id: the device refuses it and says which
    // key it trusts, and nothing on the device changed.
    let action = admin.reset(&id, DEVICE).await.unwrap();
    let failed = admin.wait_final(&action.action_id).await;
    assert_eq!(failed.state, pb::ActionState::Failed as i32, "{failed:?}");
    assert_eq!(
        failed.error_code,
        pb::ErrorCode::BadSignature as i32,
        "{failed:?}"
    );
    assert!(
        failed.reason.contains(&format!(
            "carries key id {new_id}, not {old_id}, the id of the key this device trusts"
        )),
        "the device's reason names both key ids: {:?}",
        failed.reason
    );
    assert_eq!(trusted_key(&deployment), enrolled_key);
    assert!(
        enter(&mut device, "2580").await,
        "the old passcode still unlocks"
    );
}

#[tokio::test]
async fn serve_missing_a_key_file_with_an_enrolled_device_stops_naming_it() {
    let deployment = Deployment::new();
    let control_plane = deployment.control_plane();
    let mut admin = deployment.admin().await;
    let enrollment = admin.enrollment_token(1, "").await;
    let agent = deployment.agent(&enrollment, &["cosu:kiosk".to_string()]);
    wait_connected(&mut harness(&agent).await).await;
    agent.kill();
    let status = tokio::task::spawn_blocking(move || control_plane.terminate())
        .await
        .unwrap();
    assert!(status.success(), "control plane: {status}");

    let keys = deployment.path("cp").join("keys");
    for name in ["seal.key", "command-signing.pk8"] {
        let path = keys.join(name);
        let kept = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        // A serve that started anyway would run until killed: bounded by the deadline.
        let serve = tokio::process::Command::new(env!("CARGO_BIN_EXE_droidfleet"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(deployment.path("cp"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let output = tokio::time::timeout(DEADLINE, serve.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("serve kept running without {name}"))
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "serve started without {name}");
        assert!(
            stderr.contains("refusing to start")
                && stderr.contains(&path.display().to_string())
                && stderr.contains("1 device(s) are enrolled"),
            "{stderr}"
        );
        assert!(!path.exists(), "a new {name} was made");
        std::fs::write(&path, kept).unwrap();
    }
}

#[test]
fn rotating_a_folder_without_keys_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_droidfleet"))
        .args(["keys", "rotate", "--signing", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no keys to rotate") && stderr.contains("command-signing.pk8"),
        "{stderr}"
    );
    assert!(!dir.path().join("keys").exists(), "nothing was created");
}
