//! Acceptance of the reset flow over real gRPC on loopback: every enrollment type, the refusals,
//! and a reset while the token is still pending.

use crate::support::{World, password_policy, pin_policy};
use droidfleet_agent::device::Ownership;
use droidfleet_proto::v1 as pb;
use pb::CredentialScope::{Device as DEVICE, WorkProfile as WORK};

const DEVICE_PIN: &str = "2580";
const WORK_PASSWORD: &str = "orchid42";

/// Sets the user's passcodes, saves a note in the store a reset targets, waits for the escrowed
/// token, and (optionally) assigns the policy that enforces a passcode.
async fn prepare(
    world: &mut World,
    name: &str,
    target: pb::CredentialScope,
    with_policy: bool,
) -> String {
    let id = world.device_id(name).await;
    world.set_passcode(name, DEVICE, "", DEVICE_PIN).await;
    if target == WORK {
        // Leaving the unified challenge needs the device passcode, as on Android.
        world
            .set_passcode(name, WORK, DEVICE_PIN, WORK_PASSWORD)
            .await;
    }
    world
        .write(name, target, "notes", b"quarterly figures")
        .await;
    world.admin.wait_escrowed(&id, target).await;
    if with_policy {
        let policy = if target == DEVICE {
            pin_policy(6)
        } else {
            password_policy(8)
        };
        world.admin.assign_policy(&id, target, policy).await;
    }
    id
}

async fn device_level_reset(ownership: Ownership) {
    let mut world = World::start(&[("phone", ownership)]).await;
    let id = prepare(&mut world, "phone", DEVICE, true).await;

    let action = world
        .admin
        .reset(&id, pb::CredentialScope::Unspecified)
        .await
        .unwrap();
    assert_eq!(
        action.scope, DEVICE as i32,
        "COSU and AOSP reset the device lock screen"
    );
    let done = world.admin.wait_final(&action.action_id).await;
    assert_eq!(
        done.state,
        pb::ActionState::Done as i32,
        "reason: {}",
        done.reason
    );
    let passcode = world.admin.reveal(&action.action_id).await.unwrap();
    assert_ne!(passcode, DEVICE_PIN);

    let screen = world.screen("phone").await;
    assert!(
        World::store(&screen, DEVICE).locked,
        "a reset locks the store"
    );
    // After a device-level reset with REQUIRE_ENTRY Android's keyguard itself asks for the new
    // passcode ("Device locked by admin"); no notification is posted for it.
    assert!(
        screen.notifications.is_empty(),
        "{:?}",
        screen.notifications
    );
    assert_eq!(screen.lock_screen_prompts.len(), 1);
    assert_eq!(screen.lock_screen_prompts[0].scope, DEVICE as i32);
    assert_eq!(
        screen.lock_screen_prompts[0].message,
        "Device locked by admin"
    );
    assert!(
        !world.enter("phone", DEVICE, DEVICE_PIN).await,
        "the old passcode no longer unlocks"
    );
    assert!(
        world.enter("phone", DEVICE, &passcode).await,
        "the revealed passcode unlocks"
    );
    assert_eq!(
        world
            .read("phone", DEVICE, "notes")
            .await
            .unwrap()
            .as_deref(),
        Some(&b"quarterly figures"[..]),
        "user data survives the reset"
    );
    assert_eq!(screen.applied_commands.get(&action.action_id), Some(&1));
}

#[tokio::test]
async fn cosu_device_level_reset() {
    device_level_reset(Ownership::Cosu).await;
}

#[tokio::test]
async fn aosp_device_level_reset() {
    device_level_reset(Ownership::Aosp).await;
}

async fn work_profile_reset(ownership: Ownership) {
    let mut world = World::start(&[("phone", ownership)]).await;
    let id = prepare(&mut world, "phone", WORK, true).await;

    let action = world
        .admin
        .reset(&id, pb::CredentialScope::Unspecified)
        .await
        .unwrap();
    assert_eq!(
        action.scope, WORK as i32,
        "COBO, COPE and BYOD reset the work profile"
    );
    let done = world.admin.wait_final(&action.action_id).await;
    assert_eq!(
        done.state,
        pb::ActionState::Done as i32,
        "reason: {}",
        done.reason
    );
    let passcode = world.admin.reveal(&action.action_id).await.unwrap();

    let screen = world.screen("phone").await;
    let work = World::store(&screen, WORK);
    assert!(work.locked && work.require_entry && work.separate_challenge);
    assert_eq!(
        screen.notifications.len(),
        1,
        "one notification asks for the new work passcode"
    );
    assert_eq!(screen.notifications[0].scope, WORK as i32);

    world.lock("phone", DEVICE).await;
    assert!(
        world.enter("phone", DEVICE, DEVICE_PIN).await,
        "the device passcode is untouched"
    );

    assert!(
        !world.enter("phone", WORK, WORK_PASSWORD).await,
        "the old work passcode is refused"
    );
    assert_eq!(
        world.screen("phone").await.notifications.len(),
        1,
        "a wrong entry keeps the notification"
    );

    assert!(world.enter("phone", WORK, &passcode).await);
    let screen = world.screen("phone").await;
    assert!(
        screen.notifications.is_empty(),
        "the right entry clears the notification"
    );
    assert!(!World::store(&screen, WORK).require_entry);
    assert_eq!(
        world.read("phone", WORK, "notes").await.unwrap().as_deref(),
        Some(&b"quarterly figures"[..])
    );
    let entered = world
        .admin
        .wait_device(&id, |d| {
            d.stores
                .iter()
                .any(|s| s.scope == WORK as i32 && !s.require_entry)
        })
        .await;
    assert!(entered.online);
    let action = world.admin.action(&action.action_id).await;
    assert!(
        action.user_entered_at_ms > 0,
        "the control plane learns the user entered it"
    );
}

#[tokio::test]
async fn cobo_work_profile_reset() {
    work_profile_reset(Ownership::Cobo).await;
}

#[tokio::test]
async fn cope_work_profile_reset() {
    work_profile_reset(Ownership::Cope).await;
}

#[tokio::test]
async fn byod_work_profile_reset() {
    work_profile_reset(Ownership::Byod).await;
}

#[tokio::test]
async fn a_reset_without_a_passcode_policy_fails_and_changes_nothing() {
    let mut world = World::start(&[("kiosk", Ownership::Cosu), ("byod", Ownership::Byod)]).await;
    for (name, target) in [("kiosk", DEVICE), ("byod", WORK)] {
        let id = prepare(&mut world, name, target, false).await;
        let before = world.screen(name).await;

        let action = world
            .admin
            .reset(&id, pb::CredentialScope::Unspecified)
            .await
            .unwrap();
        assert_eq!(action.state, pb::ActionState::Failed as i32);
        assert_eq!(action.error_code, pb::ErrorCode::NoPasscodePolicy as i32);
        assert!(
            action.reason.contains("no passcode policy"),
            "{}",
            action.reason
        );
        assert!(
            world.admin.reveal(&action.action_id).await.is_err(),
            "nothing to reveal"
        );

        let after = world.screen(name).await;
        assert_eq!(before.stores, after.stores, "nothing on the device changes");
        assert!(after.applied_commands.is_empty());
        world.lock(name, target).await;
        let old = if target == DEVICE {
            DEVICE_PIN
        } else {
            WORK_PASSWORD
        };
        assert!(
            world.enter(name, target, old).await,
            "the old passcode still unlocks"
        );
    }
}

#[tokio::test]
async fn a_reset_of_the_store_the_type_does_not_support_is_not_supported() {
    let mut world = World::start(&[("kiosk", Ownership::Cosu), ("byod", Ownership::Byod)]).await;
    let kiosk = prepare(&mut world, "kiosk", DEVICE, true).await;
    let byod = prepare(&mut world, "byod", WORK, true).await;
    for (id, scope) in [(&kiosk, WORK), (&byod, DEVICE)] {
        let action = world.admin.reset(id, scope).await.unwrap();
        assert_eq!(
            action.state,
            pb::ActionState::NotSupported as i32,
            "{id} {scope:?}"
        );
        assert_eq!(action.error_code, pb::ErrorCode::ScopeNotSupported as i32);
        assert!(action.reason.contains("supports only"), "{}", action.reason);
    }
    assert!(world.screen("kiosk").await.applied_commands.is_empty());
    assert!(world.screen("byod").await.applied_commands.is_empty());
}

#[tokio::test]
async fn a_reset_while_the_token_is_pending_fails_with_token_not_active() {
    let mut world = World::start(&[("phone", Ownership::Byod)]).await;
    let id = prepare(&mut world, "phone", WORK, true).await;
    let first = world.admin.reset(&id, WORK).await.unwrap();
    assert_eq!(
        world.admin.wait_final(&first.action_id).await.state,
        pb::ActionState::Done as i32
    );
    let passcode = world.admin.reveal(&first.action_id).await.unwrap();
    // The reset rotated the token; the new one stays pending until the user enters the passcode.
    let screen = world.screen("phone").await;
    assert_eq!(
        World::store(&screen, WORK).token_state,
        pb::TokenState::Pending as i32
    );

    let second = world.admin.reset(&id, WORK).await.unwrap();
    let second = world.admin.wait_final(&second.action_id).await;
    assert_eq!(second.state, pb::ActionState::Failed as i32);
    assert_eq!(
        second.error_code,
        pb::ErrorCode::TokenNotActive as i32,
        "{}",
        second.reason
    );

    let after = world.screen("phone").await;
    assert_eq!(screen.stores, after.stores, "nothing on the device changes");
    assert_eq!(after.applied_commands.get(&second.action_id), Some(&0));
    assert!(
        world.enter("phone", WORK, &passcode).await,
        "the first reset's passcode still unlocks"
    );
    let screen = world.screen("phone").await;
    assert_eq!(
        World::store(&screen, WORK).token_state,
        pb::TokenState::Active as i32
    );
}

#[tokio::test]
async fn the_cli_follows_a_reset_until_the_user_enters_the_new_passcode() {
    let mut world = World::start(&[("kiosk", Ownership::Cosu)]).await;
    let id = prepare(&mut world, "kiosk", DEVICE, true).await;
    let action = world.admin.reset(&id, DEVICE).await.unwrap();
    let done = world.admin.wait_final(&action.action_id).await;
    assert_eq!(done.state, pb::ActionState::Done as i32);

    // Started before the user's entry; it may only end once the entry has been recorded.
    let watch = tokio::spawn(world.cli(&["watch", &action.action_id, "--until-entered"]));
    let passcode = world.admin.reveal(&action.action_id).await.unwrap();
    assert!(world.enter("kiosk", DEVICE, &passcode).await);
    let (ok, stdout, stderr) = watch.await.unwrap();
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("user entered the new passcode at"),
        "the watch ends with the entry: {stdout}"
    );
    let recorded = world.admin.action(&action.action_id).await;
    assert!(recorded.user_entered_at_ms > 0);
}
