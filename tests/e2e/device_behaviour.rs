//! The simulated device behaves like Android, seen end to end: over the device harness (what the
//! user sees and does) and the admin API (what the control plane learns), with a control plane
//! and an agent in this process talking real gRPC on loopback.
//!
//! Covered here: Gatekeeper throttling on the screen; a wipe after too many failed attempts,
//! reported to the control plane and refusing the next reset with its own error code; a reboot
//! that locks every store, loses a pending token that the management app then re-creates and
//! escrows, and keeps the enter-new-passcode notification.
//!
//! The agent's clock is the wall clock here, so throttles are checked by their end time, never
//! waited out; every wait is on an event (WatchScreens, WatchDevice, WatchAction).

use crate::support::{DEADLINE, World, password_policy};
use droidfleet_agent::device::{Ownership, Scope};
use droidfleet_agent::fleet::Screen;
use droidfleet_proto::v1 as pb;
use pb::CredentialScope::{Device as DEVICE, WorkProfile as WORK};
use std::time::{SystemTime, UNIX_EPOCH};

const DEVICE_PIN: &str = "2580";
const WORK_PASSWORD: &str = "orchid42";

fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis() as u64
}

/// Types a passcode and returns the whole answer (refusal message and screen).
async fn enter(
    world: &mut World,
    name: &str,
    scope: pb::CredentialScope,
    passcode: &str,
) -> pb::EnterPasscodeResponse {
    world
        .harness
        .enter_passcode(pb::EnterPasscodeRequest {
            name: name.to_string(),
            scope: scope as i32,
            passcode: passcode.to_string(),
        })
        .await
        .expect("a refused entry is an answer, not an RPC error")
        .into_inner()
}

fn store_of(response: &pb::EnterPasscodeResponse, scope: pb::CredentialScope) -> pb::StoreStatus {
    let screen = response
        .screen
        .as_ref()
        .expect("the answer shows the screen");
    World::store(screen, scope).clone()
}

/// Waits, on the fleet's own change feed, until the device's screen satisfies `ready`. Used for
/// what the harness's protobuf screen does not show (the policies a device applies).
async fn wait_fleet(world: &World, name: &str, ready: impl Fn(&Screen) -> bool) -> Screen {
    // Subscribe before the first look, so no change falls between the two.
    let mut changes = world.fleet.screen_changes();
    tokio::time::timeout(DEADLINE, async {
        loop {
            let screen = world.fleet.screen(name).expect("the device exists");
            if ready(&screen) {
                return screen;
            }
            // A change or a lag: either way, look again.
            let _ = changes.recv().await;
        }
    })
    .await
    .expect("the device reaches the expected state in time")
}

/// Assigns `policy` to `scope` through the admin API and waits until the device applies it.
async fn assign_and_apply(
    world: &mut World,
    name: &str,
    id: &str,
    scope: pb::CredentialScope,
    policy: pb::PasscodePolicy,
) {
    let limit = policy.max_failed_attempts_before_wipe;
    world.admin.assign_policy(id, scope, policy).await;
    let model_scope = if scope == DEVICE {
        Scope::Device
    } else {
        Scope::WorkProfile
    };
    wait_fleet(world, name, |screen| {
        screen
            .policies
            .get(&model_scope)
            .is_some_and(|p| p.max_failed_attempts_before_wipe == limit)
    })
    .await;
}

/// Sets the device PIN and, for a work-profile target, a separate work password; saves a note
/// in the target store; waits until its token is escrowed. Returns the device id.
async fn prepare(world: &mut World, name: &str, target: pb::CredentialScope) -> String {
    let id = world.device_id(name).await;
    world.set_passcode(name, DEVICE, "", DEVICE_PIN).await;
    if target == WORK {
        world
            .set_passcode(name, WORK, DEVICE_PIN, WORK_PASSWORD)
            .await;
    }
    world
        .write(name, target, "notes", b"quarterly figures")
        .await;
    world.admin.wait_escrowed(&id, target).await;
    id
}

#[tokio::test]
async fn throttling_is_on_the_screen_and_reported() {
    let mut world = World::start(&[("kiosk", Ownership::Cosu)]).await;
    let id = prepare(&mut world, "kiosk", DEVICE).await;
    world.lock("kiosk", DEVICE).await;

    for n in 1..=4 {
        let answer = enter(&mut world, "kiosk", DEVICE, "0000").await;
        assert!(!answer.unlocked);
        let store = store_of(&answer, DEVICE);
        assert_eq!(store.failed_attempts, n, "the screen counts failures");
        assert_eq!(
            store.throttled_until_ms, 0,
            "no wait before the fifth failure"
        );
        assert!(
            answer.message.contains(&format!("({n} failed attempt")),
            "{}",
            answer.message
        );
    }

    let before = wall_clock_ms();
    let fifth = enter(&mut world, "kiosk", DEVICE, "0000").await;
    let after = wall_clock_ms();
    let store = store_of(&fifth, DEVICE);
    assert_eq!(store.failed_attempts, 5);
    let until = store.throttled_until_ms;
    assert!(
        (before + 30_000..=after + 30_000).contains(&until),
        "Gatekeeper waits 30 s after the fifth failure: {until} not within [{}, {}]",
        before + 30_000,
        after + 30_000
    );
    assert!(
        fifth.message.contains(&until.to_string()),
        "{}",
        fifth.message
    );

    // Even the right passcode is refused unchecked while throttled, and the answer says when
    // the next try is allowed.
    let sixth = enter(&mut world, "kiosk", DEVICE, DEVICE_PIN).await;
    assert!(!sixth.unlocked, "a throttled entry is refused");
    assert!(
        sixth.message.contains("try again at") && sixth.message.contains(&until.to_string()),
        "{}",
        sixth.message
    );
    let store = store_of(&sixth, DEVICE);
    assert!(store.locked);
    assert_eq!(store.failed_attempts, 5, "a refused entry is not counted");
    assert_eq!(store.throttled_until_ms, until);

    // The control plane sees the same.
    world
        .admin
        .wait_device(&id, |d| {
            d.stores.iter().any(|s| {
                s.scope == DEVICE as i32 && s.failed_attempts == 5 && s.throttled_until_ms == until
            })
        })
        .await;
}

#[tokio::test]
async fn work_profile_wipe_is_reported_and_the_next_reset_fails_with_store_wiped() {
    let mut world = World::start(&[("phone", Ownership::Byod)]).await;
    let id = prepare(&mut world, "phone", WORK).await;
    world.write("phone", DEVICE, "photos", b"holiday").await;
    let policy = pb::PasscodePolicy {
        max_failed_attempts_before_wipe: 3,
        ..password_policy(8)
    };
    assign_and_apply(&mut world, "phone", &id, WORK, policy).await;
    world.lock("phone", WORK).await;

    for n in 1..=2 {
        let answer = enter(&mut world, "phone", WORK, "wrong-guess1").await;
        assert!(!answer.unlocked);
        let work = store_of(&answer, WORK);
        assert_eq!(work.failed_attempts, n);
        assert!(!work.wiped);
    }
    let third = enter(&mut world, "phone", WORK, "wrong-guess1").await;
    assert!(!third.unlocked);
    assert!(third.message.contains("wiped"), "{}", third.message);
    let work = store_of(&third, WORK);
    assert!(work.wiped && work.locked && !work.has_passcode);
    assert_eq!(work.token_state, pb::TokenState::None as i32);

    // The data is gone, and not even the old passcode brings it back.
    let read = world.read("phone", WORK, "notes").await.unwrap_err();
    assert_eq!(read.code(), tonic::Code::FailedPrecondition);
    assert!(read.message().contains("wiped"), "{}", read.message());
    let again = enter(&mut world, "phone", WORK, WORK_PASSWORD).await;
    assert!(!again.unlocked);

    // A work profile's limit takes the profile only.
    let device_store = World::store(third.screen.as_ref().unwrap(), DEVICE).clone();
    assert!(!device_store.wiped);
    world.lock("phone", DEVICE).await;
    assert!(world.enter("phone", DEVICE, DEVICE_PIN).await);
    assert_eq!(
        world
            .read("phone", DEVICE, "photos")
            .await
            .unwrap()
            .as_deref(),
        Some(&b"holiday"[..])
    );

    // The device reports the wipe; the control plane shows it.
    world
        .admin
        .wait_device(&id, |d| {
            d.stores.iter().any(|s| {
                s.scope == WORK as i32 && s.wiped && s.token_state == pb::TokenState::None as i32
            })
        })
        .await;

    let action = world.admin.reset(&id, WORK).await.unwrap();
    let action = world.admin.wait_final(&action.action_id).await;
    assert_eq!(
        action.state,
        pb::ActionState::Failed as i32,
        "{}",
        action.reason
    );
    assert_eq!(
        action.error_code,
        pb::ErrorCode::StoreWiped as i32,
        "{}",
        action.reason
    );
    assert!(action.reason.contains("wiped"), "{}", action.reason);
}

#[tokio::test]
async fn device_store_wipe_takes_the_whole_device() {
    let mut world = World::start(&[("kiosk", Ownership::Cosu)]).await;
    let id = prepare(&mut world, "kiosk", DEVICE).await;
    let policy = pb::PasscodePolicy {
        r#type: pb::PasscodeType::Pin as i32,
        min_length: 4,
        max_failed_attempts_before_wipe: 2,
        ..Default::default()
    };
    assign_and_apply(&mut world, "kiosk", &id, DEVICE, policy).await;
    world.lock("kiosk", DEVICE).await;

    assert!(!enter(&mut world, "kiosk", DEVICE, "0000").await.unlocked);
    let second = enter(&mut world, "kiosk", DEVICE, "0000").await;
    assert!(store_of(&second, DEVICE).wiped, "{}", second.message);
    let read = world.read("kiosk", DEVICE, "notes").await.unwrap_err();
    assert_eq!(read.code(), tonic::Code::FailedPrecondition);

    world
        .admin
        .wait_device(&id, |d| {
            d.stores.iter().any(|s| s.scope == DEVICE as i32 && s.wiped)
        })
        .await;
    let action = world.admin.reset(&id, DEVICE).await.unwrap();
    let action = world.admin.wait_final(&action.action_id).await;
    assert_eq!(
        action.state,
        pb::ActionState::Failed as i32,
        "{}",
        action.reason
    );
    assert_eq!(
        action.error_code,
        pb::ErrorCode::StoreWiped as i32,
        "{}",
        action.reason
    );
}

#[tokio::test]
async fn reboot_locks_every_store_recreates_the_lost_token_and_keeps_the_notification() {
    let mut world = World::start(&[("phone", Ownership::Byod)]).await;
    let id = prepare(&mut world, "phone", WORK).await;
    world
        .admin
        .assign_policy(&id, WORK, password_policy(8))
        .await;

    // A reset leaves the work profile waiting for its new passcode, with a rotated, pending
    // token.
    let first = world.admin.reset(&id, WORK).await.unwrap();
    let first = world.admin.wait_final(&first.action_id).await;
    assert_eq!(
        first.state,
        pb::ActionState::Done as i32,
        "{}",
        first.reason
    );
    let passcode = world.admin.reveal(&first.action_id).await.unwrap();
    let screen = world.screen("phone").await;
    let work = World::store(&screen, WORK);
    assert!(work.locked && work.require_entry);
    assert_eq!(work.token_state, pb::TokenState::Pending as i32);
    assert_eq!(screen.notifications.len(), 1);
    assert!(!World::store(&screen, DEVICE).locked);

    // Watch every screen the reboot goes through.
    let mut watch = world
        .harness
        .watch_screens(pb::WatchScreensRequest {
            name: "phone".to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    let rebooted = world
        .harness
        .reboot(pb::DeviceRef {
            name: "phone".to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        rebooted.stores.iter().all(|s| s.locked),
        "every store locks: {:?}",
        rebooted.stores
    );
    assert_eq!(
        World::store(&rebooted, WORK).token_state,
        pb::TokenState::Pending as i32,
        "the management app re-created the token at boot"
    );
    assert_eq!(
        rebooted.notifications.len(),
        1,
        "the enter-new-passcode notification survives the reboot"
    );
    assert_eq!(rebooted.notifications[0].scope, WORK as i32);

    // On the way there: the boot lost the pending token before the app made a new one.
    tokio::time::timeout(DEADLINE, async {
        let mut lost = false;
        while let Some(screen) = watch.message().await.unwrap() {
            let work = World::store(&screen, WORK);
            let token = work.token_state;
            if token == pb::TokenState::None as i32 {
                assert!(screen.stores.iter().all(|s| s.locked), "{screen:?}");
                assert_eq!(screen.notifications.len(), 1, "{screen:?}");
                lost = true;
            } else if lost && token == pb::TokenState::Pending as i32 {
                return;
            }
        }
        panic!("WatchScreens ended");
    })
    .await
    .expect("the screens show the token lost, then re-created");

    // Pending is not active: a reset now fails on the device with its own code.
    let second = world.admin.reset(&id, WORK).await.unwrap();
    let second = world.admin.wait_final(&second.action_id).await;
    assert_eq!(second.state, pb::ActionState::Failed as i32);
    assert_eq!(
        second.error_code,
        pb::ErrorCode::TokenNotActive as i32,
        "{}",
        second.reason
    );

    // The user enters the new passcode: the notification clears, the new token activates, the
    // control plane learns both.
    let answer = enter(&mut world, "phone", WORK, &passcode).await;
    assert!(answer.unlocked, "{}", answer.message);
    let screen = answer.screen.unwrap();
    assert!(screen.notifications.is_empty());
    assert_eq!(
        World::store(&screen, WORK).token_state,
        pb::TokenState::Active as i32
    );
    assert_eq!(
        world.read("phone", WORK, "notes").await.unwrap().as_deref(),
        Some(&b"quarterly figures"[..]),
        "the data survived the reset and the reboot"
    );
    world
        .admin
        .wait_device(&id, |d| {
            d.stores
                .iter()
                .any(|s| s.scope == WORK as i32 && s.token_state == pb::TokenState::Active as i32)
        })
        .await;
    assert!(
        world
            .admin
            .action(&first.action_id)
            .await
            .user_entered_at_ms
            > 0
    );

    // The control plane holds the token made at boot (the lost one would not match): the next
    // reset goes through.
    let third = world.admin.reset(&id, WORK).await.unwrap();
    let third = world.admin.wait_final(&third.action_id).await;
    assert_eq!(
        third.state,
        pb::ActionState::Done as i32,
        "{}",
        third.reason
    );
}

#[tokio::test]
async fn a_refused_entry_says_when_the_next_try_is_allowed() {
    let mut world = World::start(&[("kiosk", Ownership::Cosu)]).await;
    world
        .set_passcode("kiosk", pb::CredentialScope::Device, "", "2580")
        .await;
    world.lock("kiosk", pb::CredentialScope::Device).await;
    let mut retry_at = Vec::new();
    for _ in 0..6 {
        let response = world
            .harness
            .enter_passcode(pb::EnterPasscodeRequest {
                name: "kiosk".into(),
                scope: pb::CredentialScope::Device as i32,
                passcode: "0000".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!response.unlocked);
        retry_at.push(response.retry_at_ms);
    }
    assert!(
        retry_at[..4].iter().all(|t| *t == 0),
        "no wait for failures 1-4: {retry_at:?}"
    );
    assert!(
        retry_at[4] > 0,
        "the 5th failure starts a 30 s wait: {retry_at:?}"
    );
    assert_eq!(
        retry_at[5], retry_at[4],
        "a throttled entry is refused until then: {retry_at:?}"
    );
}
