//! Tests of escrow tokens: set, pending, active, lost on reboot, re-created by the management
//! app, and every change of token state reported.

use super::*;

#[test]
fn token_lifecycle() {
    let (mut device, rng) = new_device(Ownership::Cosu);
    // No passcode: active at once.
    let first = EscrowToken::new(vec![1; 32]);
    assert_eq!(
        device.set_escrow_token(Scope::Device, first).unwrap(),
        TokenState::Active
    );
    device
        .set_passcode(Scope::Device, None, &pass("2580"), NOW, &rng)
        .unwrap();
    assert_eq!(
        status(&device, Scope::Device).token_state,
        TokenState::Active
    );

    // Too short: refused, the active token stays.
    assert_eq!(
        device.set_escrow_token(Scope::Device, EscrowToken::new(vec![2; 31])),
        Err(DeviceError::Token(TokenError::TooShort))
    );
    assert_eq!(
        status(&device, Scope::Device).token_state,
        TokenState::Active
    );

    // Replacing an active token makes the new one pending.
    assert_eq!(
        device
            .set_escrow_token(Scope::Device, EscrowToken::new(vec![3; 32]))
            .unwrap(),
        TokenState::Pending
    );
    // A wrong entry does not activate it; a reboot loses it.
    assert!(matches!(
        enter(&mut device, Scope::Device, "0000", NOW),
        EntryOutcome::Refused(Refusal::WrongPasscode { .. })
    ));
    assert_eq!(
        status(&device, Scope::Device).token_state,
        TokenState::Pending
    );
    device.reboot();
    assert_eq!(status(&device, Scope::Device).token_state, TokenState::None);

    // The management app re-creates it on boot; the next entry activates it.
    device.take_events();
    device.ensure_tokens(&rng);
    let token = escrowed(&device.take_events(), Scope::Device).unwrap();
    assert_eq!(token.expose().len(), 32);
    assert_eq!(
        status(&device, Scope::Device).token_state,
        TokenState::Pending
    );
    device.ensure_tokens(&rng);
    assert!(escrowed(&device.take_events(), Scope::Device).is_none());
    assert_eq!(
        enter(&mut device, Scope::Device, "2580", NOW),
        EntryOutcome::Unlocked
    );
    assert_eq!(
        status(&device, Scope::Device).token_state,
        TokenState::Active
    );

    // Active survives a reboot and a round trip through persisted state.
    device.reboot();
    assert_eq!(
        status(&device, Scope::Device).token_state,
        TokenState::Active
    );
    let json = serde_json::to_string(&device.to_persisted()).unwrap();
    let mut restored = Device::from_persisted(serde_json::from_str(&json).unwrap(), KDF).unwrap();
    assert_eq!(
        status(&restored, Scope::Device).token_state,
        TokenState::Active
    );
    restored
        .reset_with_token(
            Scope::Device,
            &token,
            &pass("9146"),
            REQUIRE_ENTRY,
            "c1",
            &rng,
        )
        .unwrap();
}

/// Token states of every store, in scope order.
fn token_states(device: &Device) -> Vec<TokenState> {
    device.statuses(NOW).iter().map(|s| s.token_state).collect()
}

/// Runs `change` and asserts that it changed some store's token state from `before` to
/// `after` and queued a status report for it.
fn assert_reported(
    device: &mut Device,
    what: &str,
    after: &[TokenState],
    change: impl FnOnce(&mut Device),
) {
    let before = token_states(device);
    device.take_events();
    change(device);
    assert_eq!(token_states(device), after, "{what}: token states");
    assert_ne!(before, after, "{what}: the token state must change");
    assert!(
        device
            .take_events()
            .iter()
            .any(|e| matches!(e, DeviceEvent::StatusChanged)),
        "{what}: no status report for a token-state change"
    );
}

#[test]
fn every_token_state_change_is_reported() {
    use TokenState::{Active, None as Gone, Pending};
    let (mut device, rng) = new_device(Ownership::Cope);
    assert_eq!(token_states(&device), [Gone, Gone]);
    // Enrollment: no passcode yet, so both activate at once.
    assert_reported(&mut device, "enrollment", &[Active, Active], |d| {
        d.ensure_tokens(&rng)
    });
    device
        .set_passcode(Scope::Device, None, &pass("2580"), NOW, &rng)
        .unwrap();
    // Replacing a token over a passcode makes it pending.
    assert_reported(&mut device, "set token", &[Pending, Active], |d| {
        d.set_escrow_token(Scope::Device, EscrowToken::new(vec![3; 32]))
            .unwrap();
    });
    // The next entry activates it.
    assert_reported(&mut device, "entry", &[Active, Active], |d| {
        assert_eq!(
            d.enter_passcode(Scope::Device, &pass("2580"), NOW).unwrap(),
            EntryOutcome::Unlocked
        );
    });
    // A unified work profile's token activates with the device's entry.
    device
        .set_escrow_token(Scope::WorkProfile, EscrowToken::new(vec![4; 32]))
        .unwrap();
    device
        .set_escrow_token(Scope::Device, EscrowToken::new(vec![5; 32]))
        .unwrap();
    assert_reported(&mut device, "reboot", &[Gone, Gone], |d| d.reboot());
    assert_reported(&mut device, "boot re-creation", &[Pending, Pending], |d| {
        d.ensure_tokens(&rng)
    });
    assert_reported(&mut device, "unified entry", &[Active, Active], |d| {
        assert_eq!(
            d.enter_passcode(Scope::WorkProfile, &pass("2580"), NOW)
                .unwrap(),
            EntryOutcome::Unlocked
        );
    });
    // A reset rotates the used token: the new one is pending.
    device
        .set_escrow_token(Scope::WorkProfile, EscrowToken::new(vec![6; 32]))
        .unwrap();
    device
        .enter_passcode(Scope::Device, &pass("2580"), NOW)
        .unwrap();
    assert_reported(&mut device, "reset", &[Active, Pending], |d| {
        d.reset_with_token(
            Scope::WorkProfile,
            &EscrowToken::new(vec![6; 32]),
            &pass("Work9182"),
            REQUIRE_ENTRY,
            "cmd",
            &rng,
        )
        .unwrap();
    });
    // A wipe takes the token with the store.
    device
        .set_policy(
            Scope::WorkProfile,
            Some(PasscodePolicy {
                max_failed_attempts_before_wipe: 1,
                ..PasscodePolicy::default()
            }),
        )
        .unwrap();
    assert_reported(&mut device, "wipe", &[Active, Gone], |d| {
        d.enter_passcode(Scope::WorkProfile, &pass("0000"), NOW)
            .unwrap();
    });
}

#[test]
fn reboot_locks_every_store_loses_pending_tokens_and_keeps_the_notification() {
    let (mut device, rng, work_token) = cope_ready();
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
    let rotated = escrowed(&device.take_events(), Scope::WorkProfile).unwrap();
    assert_eq!(
        enter(&mut device, Scope::Device, "2580", NOW),
        EntryOutcome::Unlocked
    );
    let before = device.statuses(NOW);
    assert!(!before[0].locked);
    assert_eq!(before[0].token_state, TokenState::Active);
    assert_eq!(before[1].token_state, TokenState::Pending);

    device.reboot();
    let after = device.statuses(NOW);
    assert!(
        after.iter().all(|s| s.locked),
        "every store locks: {after:?}"
    );
    assert_eq!(
        after[0].token_state,
        TokenState::Active,
        "an active token survives: its wrap is on disk"
    );
    assert_eq!(
        after[1].token_state,
        TokenState::None,
        "a pending one is lost"
    );
    assert!(after[1].require_entry);
    let notifications = device.notifications();
    assert_eq!(notifications.len(), 1);
    assert_eq!(notifications[0].id, "enter-new-passcode/work_profile");
    // The lost token no longer resets anything.
    assert_eq!(
        device.reset_with_token(
            Scope::WorkProfile,
            &rotated,
            &pass("Work5555x"),
            REQUIRE_ENTRY,
            "c",
            &rng
        ),
        Err(ResetError::TokenMissing)
    );

    // The management app re-creates it; the user's entry of the new passcode clears the
    // notification and activates the new token.
    device.take_events();
    device.ensure_tokens(&rng);
    let recreated = escrowed(&device.take_events(), Scope::WorkProfile).unwrap();
    assert_ne!(recreated.expose(), rotated.expose());
    assert_eq!(
        status(&device, Scope::WorkProfile).token_state,
        TokenState::Pending
    );
    assert_eq!(
        enter(&mut device, Scope::WorkProfile, "Work9182", NOW),
        EntryOutcome::Unlocked
    );
    assert!(device.notifications().is_empty());
    assert_eq!(
        status(&device, Scope::WorkProfile).token_state,
        TokenState::Active
    );
    device
        .reset_with_token(
            Scope::WorkProfile,
            &recreated,
            &pass("Work5555x"),
            REQUIRE_ENTRY,
            "c2",
            &rng,
        )
        .unwrap();
}
