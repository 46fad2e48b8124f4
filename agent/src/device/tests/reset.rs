//! Tests of `resetPasswordWithToken`: the order of its checks, a refused reset changing
//! nothing, and what a successful one keeps, locks and rotates.

use super::*;

/// Runs a reset that must fail with `expected` and checks that nothing changed.
fn assert_refused(
    device: &mut Device,
    rng: &SystemRandom,
    scope: Scope,
    token: &EscrowToken,
    new: &str,
    expected: ResetError,
) {
    let before = device.statuses(NOW);
    device.take_events();
    assert_eq!(
        device.reset_with_token(scope, token, &pass(new), REQUIRE_ENTRY, "c", rng),
        Err(expected)
    );
    assert_eq!(device.statuses(NOW), before);
    assert!(device.take_events().is_empty());
    assert!(device.notifications().is_empty());
}

#[test]
fn reset_checks_in_order_and_changes_nothing_on_failure() {
    let rng = SystemRandom::new();
    let any = EscrowToken::new(vec![9; 32]);

    let (mut cosu, _, token) = cosu_ready();
    assert_refused(
        &mut cosu,
        &rng,
        Scope::WorkProfile,
        &token,
        "9146",
        ResetError::StoreMissing(Scope::WorkProfile),
    );

    // Token missing, even with a passcode the policy would refuse.
    let (mut device, _) = new_device(Ownership::Cosu);
    device
        .set_passcode(Scope::Device, None, &pass("2580"), NOW, &rng)
        .unwrap();
    device.set_policy(Scope::Device, Some(min_six())).unwrap();
    assert_refused(
        &mut device,
        &rng,
        Scope::Device,
        &any,
        "1",
        ResetError::TokenMissing,
    );

    // Token pending: not active, whatever the token sent.
    device.set_escrow_token(Scope::Device, any.clone()).unwrap();
    assert_refused(
        &mut device,
        &rng,
        Scope::Device,
        &any,
        "1",
        ResetError::TokenNotActive,
    );

    // Active but another token (or a short one): mismatch before the policy check.
    assert_eq!(
        enter(&mut device, Scope::Device, "2580", NOW),
        EntryOutcome::Unlocked
    );
    let other = EscrowToken::new(vec![8; 32]);
    assert_refused(
        &mut device,
        &rng,
        Scope::Device,
        &other,
        "1",
        ResetError::TokenMismatch,
    );
    let short = EscrowToken::new(vec![9; 4]);
    assert_refused(
        &mut device,
        &rng,
        Scope::Device,
        &short,
        "1",
        ResetError::TokenMismatch,
    );

    // Right token, passcode against the policy.
    assert_refused(
        &mut device,
        &rng,
        Scope::Device,
        &any,
        "91468",
        ResetError::PolicyViolation(PolicyViolation::TooShort { min: 6 }),
    );
    // Without policy, Android's own rule still applies.
    device.set_policy(Scope::Device, None).unwrap();
    assert_refused(
        &mut device,
        &rng,
        Scope::Device,
        &any,
        "914",
        ResetError::PolicyViolation(PolicyViolation::TooShort { min: 4 }),
    );
    assert_eq!(
        enter(&mut device, Scope::Device, "2580", NOW),
        EntryOutcome::Unlocked
    );

    // Wiped comes before any token check.
    let (mut wiped, _) = new_device(Ownership::Cosu);
    wiped
        .set_passcode(Scope::Device, None, &pass("2580"), NOW, &rng)
        .unwrap();
    wiped
        .set_policy(
            Scope::Device,
            Some(PasscodePolicy {
                max_failed_attempts_before_wipe: 1,
                ..PasscodePolicy::default()
            }),
        )
        .unwrap();
    enter(&mut wiped, Scope::Device, "0000", NOW);
    assert_refused(
        &mut wiped,
        &rng,
        Scope::Device,
        &any,
        "9146",
        ResetError::StoreWiped(Scope::Device),
    );
}

#[test]
fn reset_keeps_data_and_requires_entry_of_the_new_passcode() {
    let (mut device, rng, token) = cosu_ready();
    for _ in 0..3 {
        enter(&mut device, Scope::Device, "0000", NOW);
    }
    device
        .reset_with_token(
            Scope::Device,
            &token,
            &pass("9146"),
            REQUIRE_ENTRY,
            "cmd-1",
            &rng,
        )
        .unwrap();
    let events = device.take_events();
    let rotated = escrowed(&events, Scope::Device).expect("token rotated");
    assert_ne!(rotated.expose(), token.expose());
    assert!(
        events
            .iter()
            .any(|e| matches!(e, DeviceEvent::StatusChanged))
    );

    let after = status(&device, Scope::Device);
    assert!(after.locked && after.require_entry && after.has_passcode);
    assert_eq!(after.failed_attempts, 0);
    assert_eq!(after.token_state, TokenState::Pending);
    // The keyguard itself asks for the new passcode; no notification is invented for it.
    assert!(device.notifications().is_empty());
    assert_eq!(
        device.lock_screen_prompts()[0].message,
        "Device locked by admin"
    );
    assert_eq!(
        device.read_user_data(Scope::Device, "notes"),
        Err(DeviceError::StoreLocked(Scope::Device))
    );
    // The old token is gone.
    assert_eq!(
        device.reset_with_token(
            Scope::Device,
            &token,
            &pass("1739"),
            REQUIRE_ENTRY,
            "c",
            &rng
        ),
        Err(ResetError::TokenNotActive)
    );

    // A wrong entry (the old passcode) keeps the keyguard asking.
    assert!(matches!(
        enter(&mut device, Scope::Device, "2580", NOW + 1),
        EntryOutcome::Refused(Refusal::WrongPasscode {
            failed_attempts: 1,
            ..
        })
    ));
    assert!(status(&device, Scope::Device).require_entry);
    assert_eq!(device.lock_screen_prompts().len(), 1);
    device.take_events();

    // The right one unlocks, reports the entry and activates the rotated token.
    assert_eq!(
        enter(&mut device, Scope::Device, "9146", NOW + 2),
        EntryOutcome::Unlocked
    );
    let events = device.take_events();
    assert!(events.iter().any(|e| matches!(
        e,
        DeviceEvent::NewPasscodeEntered { scope: Scope::Device, command_id, at_ms }
            if command_id == "cmd-1" && *at_ms == NOW + 2
    )));
    assert!(device.lock_screen_prompts().is_empty());
    let after = status(&device, Scope::Device);
    assert!(!after.require_entry && !after.locked);
    assert_eq!(after.token_state, TokenState::Active);
    assert_eq!(
        device
            .read_user_data(Scope::Device, "notes")
            .unwrap()
            .unwrap(),
        b"groceries"
    );
    // The rotated token works for the next reset.
    device
        .reset_with_token(
            Scope::Device,
            &rotated,
            &pass("1739"),
            REQUIRE_ENTRY,
            "cmd-2",
            &rng,
        )
        .unwrap();
}

#[test]
fn reset_without_flags_leaves_an_unlocked_store_unlocked() {
    let (mut device, rng, token) = cosu_ready();
    device
        .reset_with_token(
            Scope::Device,
            &token,
            &pass("9146"),
            ResetOptions::default(),
            "c",
            &rng,
        )
        .unwrap();
    let after = status(&device, Scope::Device);
    assert!(!after.locked && !after.require_entry);
    assert!(device.notifications().is_empty());
    let lock_now = ResetOptions {
        require_entry: false,
        lock_now: true,
    };
    let rotated = escrowed(&device.take_events(), Scope::Device).unwrap();
    assert_eq!(
        enter(&mut device, Scope::Device, "9146", NOW),
        EntryOutcome::Unlocked
    );
    device
        .reset_with_token(Scope::Device, &rotated, &pass("1739"), lock_now, "d", &rng)
        .unwrap();
    let after = status(&device, Scope::Device);
    assert!(after.locked && !after.require_entry);
}

#[test]
fn work_reset_keeps_the_device_passcode_and_separates_the_challenge() {
    let (mut device, rng, work_token) = cope_ready();
    device.lock(Scope::Device).unwrap();
    device
        .reset_with_token(
            Scope::WorkProfile,
            &work_token,
            &pass("Work9182"),
            REQUIRE_ENTRY,
            "cmd-w",
            &rng,
        )
        .unwrap();
    let events = device.take_events();
    assert!(escrowed(&events, Scope::WorkProfile).is_some());
    let work = status(&device, Scope::WorkProfile);
    assert!(work.separate_challenge && work.locked && work.require_entry);
    assert_eq!(work.token_state, TokenState::Pending);
    let notifications = device.notifications();
    assert_eq!(notifications.len(), 1);
    assert_eq!(notifications[0].id, "enter-new-passcode/work_profile");
    assert_eq!(notifications[0].scope, Scope::WorkProfile);
    assert_eq!(notifications[0].title, "Enter your new work passcode");

    // The device passcode is untouched and no longer opens the work profile.
    assert_eq!(
        enter(&mut device, Scope::Device, "2580", NOW),
        EntryOutcome::Unlocked
    );
    assert!(status(&device, Scope::WorkProfile).locked);
    assert!(matches!(
        enter(&mut device, Scope::WorkProfile, "2580", NOW),
        EntryOutcome::Refused(Refusal::WrongPasscode { .. })
    ));
    assert_eq!(device.notifications().len(), 1);
    device.take_events();
    assert_eq!(
        enter(&mut device, Scope::WorkProfile, "Work9182", NOW + 5),
        EntryOutcome::Unlocked
    );
    assert!(device.take_events().iter().any(|e| matches!(
        e,
        DeviceEvent::NewPasscodeEntered { scope: Scope::WorkProfile, command_id, .. }
            if command_id == "cmd-w"
    )));
    assert!(device.notifications().is_empty());
    assert_eq!(
        status(&device, Scope::WorkProfile).token_state,
        TokenState::Active
    );
    assert_eq!(
        device
            .read_user_data(Scope::WorkProfile, "mail")
            .unwrap()
            .unwrap(),
        b"quarterly report"
    );
    assert_eq!(
        status(&device, Scope::Device).token_state,
        TokenState::Active
    );
}

/// After a device-level reset with `RESET_PASSWORD_REQUIRE_ENTRY`, Android's
/// `DevicePolicyManagerService` requires strong authentication
/// (`STRONG_AUTH_REQUIRED_AFTER_DPM_LOCK_NOW`) and SystemUI's bouncer says "Device locked by
/// admin" (`kg_prompt_reason_device_admin`); no notification is posted, since the one Intune
/// documents is for work-profile resets. After a boot the keyguard gives the boot's reason
/// instead; the entry clears the prompt.
#[test]
fn a_device_level_reset_shows_the_keyguard_prompt_not_a_notification() {
    let (mut device, rng, token) = cosu_ready();
    assert!(device.lock_screen_prompts().is_empty(), "unlocked");
    device
        .reset_with_token(
            Scope::Device,
            &token,
            &pass("914682"),
            REQUIRE_ENTRY,
            "cmd-1",
            &rng,
        )
        .unwrap();
    assert!(device.notifications().is_empty());
    let prompts = device.lock_screen_prompts();
    assert_eq!(prompts.len(), 1);
    assert_eq!(prompts[0].scope, Scope::Device);
    assert_eq!(prompts[0].reason, PromptReason::DeviceAdmin);
    assert_eq!(prompts[0].message, "Device locked by admin");

    device.reboot();
    assert_eq!(
        device.lock_screen_prompts()[0].message,
        "PIN is required after device restarts"
    );
    assert!(status(&device, Scope::Device).require_entry);
    assert!(device.notifications().is_empty());
    assert_eq!(
        enter(&mut device, Scope::Device, "914682", NOW),
        EntryOutcome::Unlocked
    );
    assert!(device.lock_screen_prompts().is_empty());

    // The user's own lock (the power button) is a routine unlock: no prompt.
    device.lock(Scope::Device).unwrap();
    assert!(device.lock_screen_prompts().is_empty());
    // A remote lock (lockNow) is an admin's.
    device.remote_lock(Scope::Device).unwrap();
    assert_eq!(
        device.lock_screen_prompts()[0].message,
        "Device locked by admin"
    );

    // A password says so after a boot.
    let (mut aosp, rng) = new_device(Ownership::Aosp);
    aosp.set_passcode(Scope::Device, None, &pass("orchid42"), NOW, &rng)
        .unwrap();
    aosp.reboot();
    assert_eq!(
        aosp.lock_screen_prompts()[0].message,
        "Password is required after device restarts"
    );
}
