//! Remote lock, the second remote action, end to end over real gRPC: admin API and CLI, the
//! signed command, the device's lock screen, the action's states, and the same rules as a reset
//! (no passcode policy, no lock; a store the device does not have is not supported).

use crate::support::{World, password_policy, pin_policy};
use droidfleet_agent::device::Ownership;
use droidfleet_proto::v1 as pb;
use pb::CredentialScope::{Device as DEVICE, Unspecified as UNSPECIFIED, WorkProfile as WORK};

const DEVICE_PIN: &str = "2580";
const WORK_PASSWORD: &str = "orchid42";

fn state(action: &pb::Action) -> pb::ActionState {
    pb::ActionState::try_from(action.state).unwrap()
}

fn error(action: &pb::Action) -> pb::ErrorCode {
    pb::ErrorCode::try_from(action.error_code).unwrap()
}

#[tokio::test]
async fn a_remote_lock_locks_the_store_and_follows_the_rules_of_a_reset() {
    let mut world = World::start(&[("kiosk", Ownership::Cosu), ("phone", Ownership::Byod)]).await;
    let kiosk = world.device_id("kiosk").await;
    world.set_passcode("kiosk", DEVICE, "", DEVICE_PIN).await;
    assert!(!World::store(&world.screen("kiosk").await, DEVICE).locked);

    // No passcode policy for the store: the action ends failed and never reaches the device.
    let refused = world.admin.remote_lock(&kiosk, UNSPECIFIED).await.unwrap();
    assert_eq!(refused.kind, pb::ActionKind::RemoteLock as i32);
    assert_eq!(refused.scope, DEVICE as i32, "COSU locks the lock screen");
    assert_eq!(state(&refused), pb::ActionState::Failed);
    assert_eq!(error(&refused), pb::ErrorCode::NoPasscodePolicy);
    assert!(
        refused.reason.contains("passcode policy"),
        "{}",
        refused.reason
    );

    // A store the device does not have.
    let missing = world.admin.remote_lock(&kiosk, WORK).await.unwrap();
    assert_eq!(state(&missing), pb::ActionState::NotSupported);
    assert_eq!(error(&missing), pb::ErrorCode::ScopeNotSupported);

    // With a policy it runs: pending → (active) → done, and the lock screen is locked.
    world
        .admin
        .assign_policy(&kiosk, DEVICE, pin_policy(4))
        .await;
    let action = world.admin.remote_lock(&kiosk, UNSPECIFIED).await.unwrap();
    assert_eq!(state(&action), pb::ActionState::Pending);
    let done = world.admin.wait_final(&action.action_id).await;
    assert_eq!(
        state(&done),
        pb::ActionState::Done,
        "reason: {}",
        done.reason
    );
    assert!(done.delivered_at_ms > 0 && done.completed_at_ms > 0);
    assert_eq!(done.passcode_visible_until_ms, 0, "a lock sets no passcode");
    let screen = world.screen("kiosk").await;
    assert!(
        World::store(&screen, DEVICE).locked,
        "the lock screen is locked"
    );
    assert_eq!(screen.applied_commands.get(&action.action_id), Some(&1));
    assert!(!screen.applied_commands.contains_key(&refused.action_id));
    assert!(!screen.applied_commands.contains_key(&missing.action_id));
    assert!(
        world.enter("kiosk", DEVICE, DEVICE_PIN).await,
        "the user's own passcode still unlocks: a lock changes no credential"
    );
    let reveal = world.admin.reveal(&action.action_id).await.unwrap_err();
    assert_eq!(reveal.code(), tonic::Code::FailedPrecondition);

    // A work-profile device: the work profile by default, the lock screen when asked.
    let phone = world.device_id("phone").await;
    world.set_passcode("phone", DEVICE, "", DEVICE_PIN).await;
    world
        .set_passcode("phone", WORK, DEVICE_PIN, WORK_PASSWORD)
        .await;
    world
        .admin
        .assign_policy(&phone, WORK, password_policy(8))
        .await;
    let screen = world.screen("phone").await;
    assert!(!World::store(&screen, WORK).locked);
    let work_lock = world.admin.remote_lock(&phone, UNSPECIFIED).await.unwrap();
    assert_eq!(work_lock.scope, WORK as i32);
    let done = world.admin.wait_final(&work_lock.action_id).await;
    assert_eq!(
        state(&done),
        pb::ActionState::Done,
        "reason: {}",
        done.reason
    );
    let screen = world.screen("phone").await;
    assert!(
        World::store(&screen, WORK).locked,
        "the work profile is locked"
    );
    assert!(
        !World::store(&screen, DEVICE).locked,
        "a work-profile lock leaves the personal side alone"
    );
    let device_lock = world.admin.remote_lock(&phone, DEVICE).await.unwrap();
    assert_eq!(
        (state(&device_lock), error(&device_lock)),
        (pb::ActionState::Failed, pb::ErrorCode::NoPasscodePolicy),
        "the phone's lock screen has no policy of its own"
    );

    // The device's action history shows both kinds.
    let history = world.admin.actions(&kiosk).await.unwrap();
    assert_eq!(history.len(), 3);
    assert!(
        history
            .iter()
            .all(|a| a.kind == pb::ActionKind::RemoteLock as i32)
    );
    let audit = world.admin.audit("RemoteLock").await;
    assert_eq!(audit.len(), 5, "every request is audited: {audit:#?}");
}

/// `DevicePolicyManager.lockNow` on a user without a secure lock screen only turns the screen
/// off, and a swipe opens it again: the device refuses such a lock with its own code rather
/// than report it done, and the store stays as it was. With a passcode, the keyguard then says
/// "Device locked by admin".
#[tokio::test]
async fn a_remote_lock_of_a_store_without_passcode_fails_with_no_passcode() {
    let mut world = World::start(&[("kiosk", Ownership::Cosu)]).await;
    let kiosk = world.device_id("kiosk").await;
    world
        .admin
        .assign_policy(&kiosk, DEVICE, pin_policy(4))
        .await;
    let action = world.admin.remote_lock(&kiosk, UNSPECIFIED).await.unwrap();
    let ended = world.admin.wait_final(&action.action_id).await;
    assert_eq!(state(&ended), pb::ActionState::Failed);
    assert_eq!(error(&ended), pb::ErrorCode::NoPasscode);
    assert!(ended.reason.contains("no passcode"), "{}", ended.reason);
    let screen = world.screen("kiosk").await;
    assert!(!World::store(&screen, DEVICE).locked);
    assert!(screen.lock_screen_prompts.is_empty());

    world.set_passcode("kiosk", DEVICE, "", DEVICE_PIN).await;
    let action = world.admin.remote_lock(&kiosk, UNSPECIFIED).await.unwrap();
    assert_eq!(
        state(&world.admin.wait_final(&action.action_id).await),
        pb::ActionState::Done
    );
    let screen = world.screen("kiosk").await;
    assert!(World::store(&screen, DEVICE).locked);
    assert_eq!(screen.lock_screen_prompts.len(), 1);
    assert_eq!(
        screen.lock_screen_prompts[0].message,
        "Device locked by admin"
    );
    assert!(screen.notifications.is_empty());
}

#[tokio::test]
async fn a_remote_lock_needs_its_own_permission_and_device_visibility() {
    let mut world = World::start(&[("kiosk", Ownership::Cosu)]).await;
    let kiosk = world.device_id("kiosk").await;
    world.set_passcode("kiosk", DEVICE, "", DEVICE_PIN).await;
    world
        .admin
        .assign_policy(&kiosk, DEVICE, pin_policy(4))
        .await;
    for (role, permissions) in [
        (
            "Lockers",
            vec!["RemoteTasks.RemoteLock", "ManagedDevices.Read"],
        ),
        ("Blind lockers", vec!["RemoteTasks.RemoteLock"]),
        (
            "Resetters",
            vec![
                "RemoteTasks.ResetPasscode",
                "ManagedDevices.Read",
                "ManagedDevices.Update",
            ],
        ),
    ] {
        let request = world.admin.request(pb::Role {
            name: role.into(),
            permissions: permissions.into_iter().map(String::from).collect(),
            built_in: false,
        });
        world.admin.client.create_role(request).await.unwrap();
    }
    let mut reader = world.admin.principal("rita", &["Read Only Operator"]).await;
    let mut locker = world.admin.principal("lou", &["Lockers"]).await;
    let mut blind = world.admin.principal("bea", &["Blind lockers"]).await;
    let mut resetter = world.admin.principal("reese", &["Resetters"]).await;

    for (who, missing) in [
        (&mut reader, "RemoteTasks.RemoteLock"),
        (&mut blind, "ManagedDevices.Read"),
        (&mut resetter, "RemoteTasks.RemoteLock"),
    ] {
        let denied = who.remote_lock(&kiosk, UNSPECIFIED).await.unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert!(denied.message().contains(missing), "{}", denied.message());
    }

    // Canceling a lock takes the lock permission, not the reset one.
    world.stop_agent().await;
    let pending = locker.remote_lock(&kiosk, UNSPECIFIED).await.unwrap();
    assert_eq!(state(&pending), pb::ActionState::Pending);
    assert_eq!(pending.requested_by, "lou");
    let denied = resetter.cancel(&pending.action_id).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    assert!(denied.message().contains("RemoteTasks.RemoteLock"));
    let canceled = locker.cancel(&pending.action_id).await.unwrap();
    assert_eq!(state(&canceled), pb::ActionState::Canceled);

    world.start_agent().await;
    let next = locker.remote_lock(&kiosk, UNSPECIFIED).await.unwrap();
    assert_eq!(
        state(&world.admin.wait_final(&next.action_id).await),
        pb::ActionState::Done
    );
    let screen = world.screen("kiosk").await;
    assert!(
        !screen.applied_commands.contains_key(&pending.action_id),
        "a canceled lock never runs"
    );

    let audit = world.admin.audit("RemoteLock").await;
    let result_of = |principal: &str| {
        audit
            .iter()
            .filter(|e| e.principal == principal)
            .map(|e| e.result.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(result_of("rita"), ["PERMISSION_DENIED"]);
    assert_eq!(result_of("lou"), ["ok", "ok"]);
    assert!(audit.iter().all(|e| e.device_id == kiosk));
}

#[tokio::test]
async fn the_cli_locks_a_device_and_follows_the_action() {
    let mut world = World::start(&[("kiosk", Ownership::Cosu)]).await;
    let kiosk = world.device_id("kiosk").await;
    world.set_passcode("kiosk", DEVICE, "", DEVICE_PIN).await;
    world
        .admin
        .assign_policy(&kiosk, DEVICE, pin_policy(4))
        .await;

    let (ok, stdout, stderr) = world.cli(&["remote-lock", &kiosk, "--wait"]).await;
    assert!(ok, "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].contains("remote_lock") && lines[0].contains("pending"),
        "{stdout}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("remote_lock") && l.contains("done")),
        "each transition is printed: {stdout}"
    );
    assert!(World::store(&world.screen("kiosk").await, DEVICE).locked);

    let (ok, stdout, stderr) = world
        .cli(&[
            "--output",
            "json",
            "remote-lock",
            &kiosk,
            "--scope",
            "work-profile",
        ])
        .await;
    assert!(ok, "{stdout}\n{stderr}");
    let action: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(action["kind"], "remote_lock");
    assert_eq!(action["state"], "not_supported");
    assert_eq!(action["error_code"], "scope_not_supported");

    let (ok, _, stderr) = world.cli(&["remote-lock", "no such device"]).await;
    assert!(!ok);
    assert!(stderr.contains("device_id"), "{stderr}");
}
