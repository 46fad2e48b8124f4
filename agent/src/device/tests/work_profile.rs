//! Tests of the work profile: unified with the device's challenge or separate from it, and
//! its own wipe limit.

use super::*;

#[test]
fn unified_work_profile_follows_the_device_store() {
    let (mut device, rng, _) = cope_ready();
    let work = status(&device, Scope::WorkProfile);
    assert!(work.has_passcode && !work.separate_challenge && !work.locked);

    device.lock(Scope::Device).unwrap();
    assert!(status(&device, Scope::WorkProfile).locked);
    assert_eq!(
        device.read_user_data(Scope::WorkProfile, "mail"),
        Err(DeviceError::StoreLocked(Scope::WorkProfile))
    );
    // Its lock screen is the device's.
    assert_eq!(
        enter(&mut device, Scope::WorkProfile, "2580", NOW),
        EntryOutcome::Unlocked
    );
    assert!(!status(&device, Scope::Device).locked);
    assert_eq!(
        device
            .read_user_data(Scope::WorkProfile, "mail")
            .unwrap()
            .unwrap(),
        b"quarterly report"
    );

    // A token set now is pending until the device passcode is entered.
    device
        .set_escrow_token(Scope::WorkProfile, EscrowToken::new(vec![5; 32]))
        .unwrap();
    assert_eq!(
        status(&device, Scope::WorkProfile).token_state,
        TokenState::Pending
    );
    device.reboot();
    assert!(status(&device, Scope::WorkProfile).locked);
    assert_eq!(
        status(&device, Scope::WorkProfile).token_state,
        TokenState::None
    );
    device
        .set_escrow_token(Scope::WorkProfile, EscrowToken::new(vec![5; 32]))
        .unwrap();
    assert_eq!(
        enter(&mut device, Scope::Device, "2580", NOW),
        EntryOutcome::Unlocked
    );
    let work = status(&device, Scope::WorkProfile);
    assert!(!work.locked);
    assert_eq!(work.token_state, TokenState::Active);

    // Setting a work passcode needs the device passcode and makes the challenge separate.
    assert_eq!(
        device.set_passcode(Scope::WorkProfile, None, &pass("7391"), NOW, &rng),
        Err(DeviceError::CurrentPasscodeRequired(Scope::Device))
    );
    device
        .set_passcode(
            Scope::WorkProfile,
            Some(&pass("2580")),
            &pass("7391"),
            NOW,
            &rng,
        )
        .unwrap();
    assert!(status(&device, Scope::WorkProfile).separate_challenge);
    device.lock(Scope::Device).unwrap();
    assert!(!status(&device, Scope::WorkProfile).locked, "separate now");
    device.lock(Scope::WorkProfile).unwrap();
    assert_eq!(
        enter(&mut device, Scope::Device, "2580", NOW),
        EntryOutcome::Unlocked
    );
    assert!(status(&device, Scope::WorkProfile).locked);
    assert_eq!(
        enter(&mut device, Scope::WorkProfile, "7391", NOW),
        EntryOutcome::Unlocked
    );
}

#[test]
fn work_profile_wipe_leaves_the_device() {
    let (mut device, rng, _) = cope_ready();
    device
        .write_user_data(Scope::Device, "photos", b"cat", &rng)
        .unwrap();
    device
        .set_passcode(
            Scope::WorkProfile,
            Some(&pass("2580")),
            &pass("7391"),
            NOW,
            &rng,
        )
        .unwrap();
    device
        .set_policy(
            Scope::WorkProfile,
            Some(PasscodePolicy {
                max_failed_attempts_before_wipe: 3,
                ..PasscodePolicy::default()
            }),
        )
        .unwrap();
    device.lock(Scope::WorkProfile).unwrap();
    device.take_events();
    for _ in 0..2 {
        enter(&mut device, Scope::WorkProfile, "0000", NOW);
    }
    assert!(!status(&device, Scope::WorkProfile).wiped);
    assert_eq!(
        enter(&mut device, Scope::WorkProfile, "0000", NOW),
        EntryOutcome::Refused(Refusal::Wiped)
    );
    let events = device.take_events();
    let wiped: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            DeviceEvent::StoreWiped { scope, at_ms } => Some((*scope, *at_ms)),
            _ => None,
        })
        .collect();
    assert_eq!(wiped, vec![(Scope::WorkProfile, NOW)]);
    let work = status(&device, Scope::WorkProfile);
    assert!(work.wiped && work.locked && !work.has_passcode);
    assert_eq!(work.token_state, TokenState::None);
    assert_eq!(
        enter(&mut device, Scope::WorkProfile, "7391", NOW),
        EntryOutcome::Refused(Refusal::Wiped)
    );
    assert_eq!(
        device.read_user_data(Scope::WorkProfile, "mail"),
        Err(DeviceError::StoreWiped(Scope::WorkProfile))
    );
    assert_eq!(
        device.set_escrow_token(Scope::WorkProfile, EscrowToken::new(vec![1; 32])),
        Err(DeviceError::StoreWiped(Scope::WorkProfile))
    );
    device.ensure_tokens(&rng);
    assert!(escrowed(&device.take_events(), Scope::WorkProfile).is_none());

    // The device itself is untouched.
    assert!(!status(&device, Scope::Device).wiped);
    device.lock(Scope::Device).unwrap();
    assert_eq!(
        enter(&mut device, Scope::Device, "2580", NOW),
        EntryOutcome::Unlocked
    );
    assert_eq!(
        device
            .read_user_data(Scope::Device, "photos")
            .unwrap()
            .unwrap(),
        b"cat"
    );
}

#[test]
fn unified_work_profile_wipe_limit_counts_the_device_failures() {
    let limit = |n| {
        Some(PasscodePolicy {
            max_failed_attempts_before_wipe: n,
            ..PasscodePolicy::default()
        })
    };
    let (mut device, _, _) = cope_ready();
    device.set_policy(Scope::WorkProfile, limit(3)).unwrap();
    device.lock(Scope::Device).unwrap();
    device.take_events();
    assert!(matches!(
        enter(&mut device, Scope::Device, "0000", NOW),
        EntryOutcome::Refused(Refusal::WrongPasscode {
            failed_attempts: 1,
            ..
        })
    ));
    assert!(matches!(
        enter(&mut device, Scope::WorkProfile, "0000", NOW),
        EntryOutcome::Refused(Refusal::WrongPasscode {
            failed_attempts: 2,
            ..
        })
    ));
    assert!(!status(&device, Scope::WorkProfile).wiped);
    // The third failure reaches the profile's limit: the profile goes, the device stays.
    assert_eq!(
        enter(&mut device, Scope::WorkProfile, "0000", NOW),
        EntryOutcome::Refused(Refusal::Wiped)
    );
    let wiped: Vec<_> = device
        .take_events()
        .into_iter()
        .filter_map(|e| match e {
            DeviceEvent::StoreWiped { scope, .. } => Some(scope),
            _ => None,
        })
        .collect();
    assert_eq!(wiped, [Scope::WorkProfile]);
    let device_store = status(&device, Scope::Device);
    assert!(!device_store.wiped);
    assert_eq!(device_store.failed_attempts, 3);
    assert_eq!(
        enter(&mut device, Scope::Device, "2580", NOW),
        EntryOutcome::Unlocked
    );

    // The strictest limit wins: the device's 2 comes before the profile's 3, and a device
    // limit takes every store.
    let (mut device, _, _) = cope_ready();
    device.set_policy(Scope::WorkProfile, limit(3)).unwrap();
    device.set_policy(Scope::Device, limit(2)).unwrap();
    enter(&mut device, Scope::Device, "0000", NOW);
    assert!(device.statuses(NOW).iter().all(|s| !s.wiped));
    assert_eq!(
        enter(&mut device, Scope::Device, "0000", NOW),
        EntryOutcome::Refused(Refusal::Wiped)
    );
    assert!(device.statuses(NOW).iter().all(|s| s.wiped));

    // A separate profile keeps its own count: device failures never reach its limit.
    let (mut device, rng, _) = cope_ready();
    device
        .set_passcode(
            Scope::WorkProfile,
            Some(&pass("2580")),
            &pass("7391"),
            NOW,
            &rng,
        )
        .unwrap();
    device.set_policy(Scope::WorkProfile, limit(1)).unwrap();
    enter(&mut device, Scope::Device, "0000", NOW);
    assert!(!status(&device, Scope::WorkProfile).wiped);
}

#[test]
fn wrong_current_passcode_that_wipes_a_unified_profile_says_so() {
    let (mut device, rng, _) = cope_ready();
    device
        .set_policy(
            Scope::WorkProfile,
            Some(PasscodePolicy {
                max_failed_attempts_before_wipe: 1,
                ..PasscodePolicy::default()
            }),
        )
        .unwrap();
    assert_eq!(
        device.set_passcode(
            Scope::WorkProfile,
            Some(&pass("0000")),
            &pass("7391"),
            NOW,
            &rng
        ),
        Err(DeviceError::StoreWiped(Scope::WorkProfile))
    );
    assert!(status(&device, Scope::WorkProfile).wiped);
    assert!(!status(&device, Scope::Device).wiped);
}

/// A unified work profile shares the device's credential, so Android holds that credential to
/// the work profile's admin too: `DevicePolicyManagerService.getPasswordMinimumMetrics` gathers
/// the admins of every profile without a separate challenge and `PasswordMetrics.merge` takes
/// the stricter of each requirement. Once the profile has its own challenge, only the device's
/// policy applies to the device passcode.
#[test]
fn unified_work_profile_requirements_hold_the_device_passcode() {
    let (mut device, rng, _) = cope_ready();
    device
        .set_policy(
            Scope::WorkProfile,
            Some(PasscodePolicy {
                passcode_type: PasscodeType::Alphanumeric,
                min_length: 8,
                ..PasscodePolicy::default()
            }),
        )
        .unwrap();
    device.set_policy(Scope::Device, Some(min_six())).unwrap();
    // The device's own policy asks for a 6-digit PIN; the work profile's for a password of 8.
    assert_eq!(
        device.set_passcode(
            Scope::Device,
            Some(&pass("2580")),
            &pass("914682"),
            NOW,
            &rng
        ),
        Err(DeviceError::Policy(PolicyViolation::WeakCredentialType))
    );
    assert_eq!(
        device
            .requirement(Scope::Device)
            .unwrap()
            .policy
            .unwrap()
            .passcode_type,
        PasscodeType::Alphanumeric
    );
    device
        .set_passcode(
            Scope::Device,
            Some(&pass("2580")),
            &pass("orchid42"),
            NOW,
            &rng,
        )
        .unwrap();

    // A separate work challenge frees the device passcode from the work policy.
    device
        .set_passcode(
            Scope::WorkProfile,
            Some(&pass("orchid42")),
            &pass("wq8r2t5z"),
            NOW,
            &rng,
        )
        .unwrap();
    device
        .set_passcode(
            Scope::Device,
            Some(&pass("orchid42")),
            &pass("914682"),
            NOW,
            &rng,
        )
        .unwrap();
}
