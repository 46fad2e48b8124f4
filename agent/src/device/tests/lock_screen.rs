//! Tests of the lock screen: entries, refusals and their messages, throttling, changing a
//! passcode, the device store's wipe limit, and the Argon2id runs each of them costs.

use super::*;

#[test]
fn entry_errors() {
    let (mut device, _) = new_device(Ownership::Cosu);
    assert_eq!(
        device.enter_passcode(Scope::Device, &pass("1234"), NOW),
        Err(DeviceError::NoPasscode(Scope::Device))
    );
    assert_eq!(
        device.enter_passcode(Scope::WorkProfile, &pass("1234"), NOW),
        Err(DeviceError::StoreMissing(Scope::WorkProfile))
    );
}

#[test]
fn throttled_entry_is_refused_without_counting() {
    let (mut device, _, _) = cosu_ready();
    device.lock(Scope::Device).unwrap();
    for n in 1..=4 {
        assert_eq!(
            enter(&mut device, Scope::Device, "0000", NOW),
            EntryOutcome::Refused(Refusal::WrongPasscode {
                failed_attempts: n,
                throttled_until_ms: 0
            })
        );
    }
    assert_eq!(
        enter(&mut device, Scope::Device, "0000", NOW),
        EntryOutcome::Refused(Refusal::WrongPasscode {
            failed_attempts: 5,
            throttled_until_ms: NOW + 30_000
        })
    );
    // Even the right passcode is refused unchecked, and the count stays.
    assert_eq!(
        enter(&mut device, Scope::Device, "2580", NOW + 29_999),
        EntryOutcome::Refused(Refusal::Throttled {
            until_ms: NOW + 30_000
        })
    );
    let throttled = status(&device, Scope::Device);
    assert_eq!(throttled.failed_attempts, 5);
    assert_eq!(throttled.throttled_until_ms, NOW + 30_000);
    assert!(throttled.locked);
    assert_eq!(
        device.statuses(NOW + 30_000)[0].throttled_until_ms,
        0,
        "no throttle shown once it has passed"
    );
    assert_eq!(
        enter(&mut device, Scope::Device, "2580", NOW + 30_000),
        EntryOutcome::Unlocked
    );
    assert_eq!(status(&device, Scope::Device).failed_attempts, 0);
}

#[test]
fn refusal_messages() {
    let wrong = Refusal::WrongPasscode {
        failed_attempts: 5,
        throttled_until_ms: 30_000,
    };
    assert_eq!(
        wrong.to_string(),
        "wrong passcode (5 failed attempts); try again at 30000 ms since the epoch"
    );
    assert_eq!(
        EntryOutcome::Refused(Refusal::Wiped).to_string(),
        "the store was wiped after too many failed attempts"
    );
    let first = Refusal::WrongPasscode {
        failed_attempts: 1,
        throttled_until_ms: 0,
    };
    assert_eq!(first.to_string(), "wrong passcode (1 failed attempt)");
}

#[test]
fn throttled_refusal_says_when_to_try_again() {
    assert_eq!(
        EntryOutcome::Refused(Refusal::Throttled {
            until_ms: NOW + 30_000
        })
        .to_string(),
        format!(
            "too many failed attempts; try again at {} ms since the epoch",
            NOW + 30_000
        )
    );
    assert_eq!(EntryOutcome::Unlocked.to_string(), "the store is unlocked");
}

#[test]
fn set_passcode_confirms_the_current_one() {
    let (mut device, rng, token) = cosu_ready();
    assert_eq!(
        device.set_passcode(Scope::Device, None, &pass("1739"), NOW, &rng),
        Err(DeviceError::CurrentPasscodeRequired(Scope::Device))
    );
    assert_eq!(
        device.set_passcode(Scope::Device, Some(&pass("0000")), &pass("1739"), NOW, &rng),
        Err(DeviceError::WrongPasscode)
    );
    assert_eq!(status(&device, Scope::Device).failed_attempts, 1);
    device.set_policy(Scope::Device, Some(min_six())).unwrap();
    assert_eq!(
        device.set_passcode(Scope::Device, Some(&pass("2580")), &pass("1739"), NOW, &rng),
        Err(DeviceError::Policy(PolicyViolation::TooShort { min: 6 }))
    );
    assert_eq!(status(&device, Scope::Device).failed_attempts, 1);
    device
        .set_passcode(
            Scope::Device,
            Some(&pass("2580")),
            &pass("173946"),
            NOW,
            &rng,
        )
        .unwrap();
    let after = status(&device, Scope::Device);
    assert!(!after.locked);
    assert_eq!(after.failed_attempts, 0);
    assert_eq!(after.token_state, TokenState::Active);
    device.lock(Scope::Device).unwrap();
    assert!(matches!(
        enter(&mut device, Scope::Device, "2580", NOW),
        EntryOutcome::Refused(_)
    ));
    assert_eq!(
        enter(&mut device, Scope::Device, "173946", NOW),
        EntryOutcome::Unlocked
    );
    // The token escrowed before the change still resets the store.
    device
        .reset_with_token(
            Scope::Device,
            &token,
            &pass("914682"),
            REQUIRE_ENTRY,
            "c",
            &rng,
        )
        .unwrap();
}

#[test]
fn set_passcode_while_throttled_is_refused() {
    let (mut device, rng, _) = cosu_ready();
    for _ in 0..5 {
        enter(&mut device, Scope::Device, "0000", NOW);
    }
    assert_eq!(
        device.set_passcode(Scope::Device, Some(&pass("2580")), &pass("1739"), NOW, &rng),
        Err(DeviceError::Throttled {
            until_ms: NOW + 30_000
        })
    );
    assert_eq!(status(&device, Scope::Device).failed_attempts, 5);
}

#[test]
fn device_store_wipe_takes_the_whole_device() {
    let (mut device, _, _) = cosu_ready();
    device
        .set_policy(
            Scope::Device,
            Some(PasscodePolicy {
                max_failed_attempts_before_wipe: 2,
                ..PasscodePolicy::default()
            }),
        )
        .unwrap();
    enter(&mut device, Scope::Device, "0000", NOW);
    assert_eq!(
        enter(&mut device, Scope::Device, "0000", NOW),
        EntryOutcome::Refused(Refusal::Wiped)
    );
    assert!(status(&device, Scope::Device).wiped);
    assert_eq!(
        device.read_user_data(Scope::Device, "notes"),
        Err(DeviceError::StoreWiped(Scope::Device))
    );

    // On a device with a work profile, the device store's limit removes the profile too.
    let (mut cope, rng, _) = cope_ready();
    cope.set_passcode(
        Scope::WorkProfile,
        Some(&pass("2580")),
        &pass("7391"),
        NOW,
        &rng,
    )
    .unwrap();
    cope.set_policy(
        Scope::Device,
        Some(PasscodePolicy {
            max_failed_attempts_before_wipe: 1,
            ..PasscodePolicy::default()
        }),
    )
    .unwrap();
    cope.take_events();
    enter(&mut cope, Scope::Device, "0000", NOW);
    assert!(cope.statuses(NOW).iter().all(|s| s.wiped));
    let wiped = cope
        .take_events()
        .iter()
        .filter(|e| matches!(e, DeviceEvent::StoreWiped { .. }))
        .count();
    assert_eq!(wiped, 2);
}

#[test]
fn argon2_runs_are_counted_where_they_run() {
    let (mut device, rng) = new_device(Ownership::Cope);
    device.ensure_tokens(&rng);
    let work_token = escrowed(&device.take_events(), Scope::WorkProfile).unwrap();
    assert_eq!(device.take_argon2_runs(), 0, "tokens are wrapped with HKDF");
    device
        .set_passcode(Scope::Device, None, &pass("2580"), NOW, &rng)
        .unwrap();
    assert_eq!(device.take_argon2_runs(), 1);
    // A separate work challenge: the device's PIN confirmed, then the new password wrapped.
    device
        .set_passcode(
            Scope::WorkProfile,
            Some(&pass("2580")),
            &pass("ledger4821"),
            NOW,
            &rng,
        )
        .unwrap();
    assert_eq!(device.take_argon2_runs(), 2);
    assert_eq!(device.take_argon2_runs(), 0, "taking the count resets it");

    // A reset refused before the new wrap runs none; a reset applied runs one.
    let wrong = EscrowToken::new(vec![7; 32]);
    assert_eq!(
        device.reset_with_token(
            Scope::WorkProfile,
            &wrong,
            &pass("folio3917"),
            REQUIRE_ENTRY,
            "c1",
            &rng
        ),
        Err(ResetError::TokenMismatch)
    );
    assert_eq!(device.take_argon2_runs(), 0);
    device
        .reset_with_token(
            Scope::WorkProfile,
            &work_token,
            &pass("folio3917"),
            REQUIRE_ENTRY,
            "c2",
            &rng,
        )
        .unwrap();
    assert_eq!(device.take_argon2_runs(), 1);

    // Each entry checked against the passcode is one run, right or wrong.
    assert!(matches!(
        enter(&mut device, Scope::WorkProfile, "folio0000", NOW),
        EntryOutcome::Refused(Refusal::WrongPasscode { .. })
    ));
    assert_eq!(
        enter(&mut device, Scope::WorkProfile, "folio3917", NOW),
        EntryOutcome::Unlocked
    );
    assert_eq!(device.take_argon2_runs(), 2);
    device.lock(Scope::Device).unwrap();
    device.reboot();
    assert_eq!(device.take_argon2_runs(), 0);
}
