//! Tests of the Android versions and maker profiles in the model: one reset (or passcode) per
//! level where the flow differs, run on every simulated level, and each shipped profile's quirk.

use super::*;

fn on(ownership: Ownership, api_level: u32, profile: &str) -> (Device, SystemRandom) {
    let rng = SystemRandom::new();
    let build = Build {
        api_level: ApiLevel::new(api_level).unwrap(),
        profile: profile.parse().unwrap(),
    };
    (
        Device::new("phone".into(), ownership, build, KDF, &rng),
        rng,
    )
}

/// A device with device PIN 2580, a separate work password when it has a work profile, and an
/// active token on `scope` (set before any passcode, so active at once).
fn ready(
    ownership: Ownership,
    api_level: u32,
    profile: &str,
    scope: Scope,
) -> (Device, SystemRandom, EscrowToken) {
    let (mut device, rng) = on(ownership, api_level, profile);
    device.ensure_tokens(&rng);
    let token = escrowed(&device.take_events(), scope).unwrap();
    device
        .set_passcode(Scope::Device, None, &pass("2580"), NOW, &rng)
        .unwrap();
    if ownership.has_work_profile() {
        device
            .set_passcode(
                Scope::WorkProfile,
                Some(&pass("2580")),
                &pass("wq8r2t5z"),
                NOW,
                &rng,
            )
            .unwrap();
    }
    device.take_events();
    (device, rng, token)
}

/// `setRequiredPasswordComplexity` arrives in API level 31; before it a policy is enforced by
/// its quality alone (the Android Management API: "Prior to Android 12, quality-based settings
/// are always selected"). From 31 a high bucket also refuses a password with a sequence
/// (Android 12's `PasswordMetrics.validatePasswordMetrics`).
#[test]
fn a_work_reset_meets_the_complexity_bucket_from_api_31_only() {
    for level in ApiLevel::all() {
        let (mut device, rng, token) =
            ready(Ownership::Byod, level.get(), "aosp", Scope::WorkProfile);
        device
            .set_policy(
                Scope::WorkProfile,
                Some(PasscodePolicy {
                    passcode_type: PasscodeType::Alphanumeric,
                    min_length: 6,
                    complexity: PasscodeComplexity::High,
                    ..PasscodePolicy::default()
                }),
            )
            .unwrap();
        let reset = device.reset_with_token(
            Scope::WorkProfile,
            &token,
            &pass("abcd2958"),
            REQUIRE_ENTRY,
            "c",
            &rng,
        );
        if level.get() >= 31 {
            assert_eq!(
                reset,
                Err(ResetError::PolicyViolation(
                    PolicyViolation::ContainsSequence
                )),
                "API {level}"
            );
        } else {
            assert_eq!(reset, Ok(()), "API {level}");
        }
    }
}

/// From API level 30 a company-owned work profile is an organisation-owned managed profile:
/// `resetPasswordWithToken` is not among the calls `getParentProfileInstance` takes, so its
/// management app cannot reset the device passcode; up to 29 (COMP) it was the device owner.
/// The refusal is `API_LEVEL`, checked before the token, and changes nothing.
#[test]
fn a_cope_device_reset_ends_with_api_level_from_30() {
    for level in ApiLevel::all() {
        let (mut device, rng, token) = ready(Ownership::Cope, level.get(), "aosp", Scope::Device);
        let before = device.statuses(NOW);
        let reset = device.reset_with_token(
            Scope::Device,
            &EscrowToken::new(vec![3; 32]),
            &pass("7391"),
            REQUIRE_ENTRY,
            "c",
            &rng,
        );
        if level.get() >= 30 {
            let Err(ResetError::ApiLevel(why)) = reset else {
                panic!("API {level}: {reset:?}");
            };
            assert!(why.contains(&format!("API level {level}")), "{why}");
            assert_eq!(ResetError::ApiLevel(why).code(), ErrorCode::ApiLevel);
            assert_eq!(device.statuses(NOW), before);
        } else {
            // Up to 29 the reset reaches the token check: a wrong token is a mismatch, the
            // right one resets the device passcode.
            assert_eq!(reset, Err(ResetError::TokenMismatch), "API {level}");
            device
                .reset_with_token(
                    Scope::Device,
                    &token,
                    &pass("7391"),
                    REQUIRE_ENTRY,
                    "d",
                    &rng,
                )
                .unwrap();
        }
    }
}

/// From API level 31 the owner of a personally owned work profile may not set quality-based
/// requirements on the device (`setPasswordQuality` on the parent instance throws); the Android
/// Management API applies a device-scope PIN quality as the medium complexity bucket instead.
#[test]
fn a_personally_owned_device_takes_its_policy_as_complexity_from_31() {
    for level in ApiLevel::all() {
        let (mut device, rng) = on(Ownership::Byod, level.get(), "aosp");
        device
            .set_policy(
                Scope::Device,
                Some(PasscodePolicy {
                    passcode_type: PasscodeType::Pin,
                    min_length: 6,
                    ..PasscodePolicy::default()
                }),
            )
            .unwrap();
        let four_digits = device.set_passcode(Scope::Device, None, &pass("7391"), NOW, &rng);
        if level.get() >= 31 {
            assert_eq!(four_digits, Ok(()), "API {level}: medium takes 4 digits");
        } else {
            assert_eq!(
                four_digits,
                Err(DeviceError::Policy(PolicyViolation::TooShort { min: 6 })),
                "API {level}"
            );
        }
    }
}

/// The rules that do not change: a COSU device-level reset with the same policy and passcode
/// succeeds on every simulated level (escrow-token reset exists from 26).
#[test]
fn a_device_level_reset_works_on_every_level() {
    for level in ApiLevel::all() {
        let (mut device, rng, token) = ready(Ownership::Cosu, level.get(), "aosp", Scope::Device);
        device.set_policy(Scope::Device, Some(min_six())).unwrap();
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
        assert_eq!(
            enter(&mut device, Scope::Device, "914682", NOW),
            EntryOutcome::Unlocked,
            "API {level}"
        );
    }
}

/// `short-keyguard` (a synthetic variation): the lock screen's rules stop at 6 characters, so a
/// reset to a longer passcode fails with a policy violation naming the maximum, and the user's
/// own longer passcode is refused the same way.
#[test]
fn a_short_keyguard_refuses_passcodes_over_its_cap() {
    let (mut device, rng) = on(Ownership::Cosu, 35, "short-keyguard");
    device.ensure_tokens(&rng);
    let token = escrowed(&device.take_events(), Scope::Device).unwrap();
    assert_eq!(
        device.set_passcode(Scope::Device, None, &pass("9146827"), NOW, &rng),
        Err(DeviceError::Policy(PolicyViolation::TooLong { max: 6 }))
    );
    device
        .set_passcode(Scope::Device, None, &pass("914682"), NOW, &rng)
        .unwrap();
    let reset = device.reset_with_token(
        Scope::Device,
        &token,
        &pass("x7k2m9q4"),
        REQUIRE_ENTRY,
        "c",
        &rng,
    );
    assert_eq!(
        reset,
        Err(ResetError::PolicyViolation(PolicyViolation::TooLong {
            max: 6
        }))
    );
    assert_eq!(
        reset.unwrap_err().to_string(),
        "the new passcode does not satisfy the policy: the passcode is longer than 6 characters"
    );
}

/// `sticky-work-notification` (a synthetic variation): the entry reaches the control plane at
/// once, but the management app's notification stays until the user opens a work app.
#[test]
fn a_sticky_notification_stays_until_a_work_app_is_opened() {
    let (mut device, rng, token) = ready(
        Ownership::Byod,
        35,
        "sticky-work-notification",
        Scope::WorkProfile,
    );
    device
        .reset_with_token(
            Scope::WorkProfile,
            &token,
            &pass("Work9182"),
            REQUIRE_ENTRY,
            "cmd-w",
            &rng,
        )
        .unwrap();
    assert_eq!(
        device.open_work_app(),
        Err(DeviceError::StoreLocked(Scope::WorkProfile)),
        "a work app needs the work profile unlocked"
    );
    assert_eq!(
        enter(&mut device, Scope::WorkProfile, "Work9182", NOW),
        EntryOutcome::Unlocked
    );
    assert!(device.take_events().iter().any(|e| matches!(
        e,
        DeviceEvent::NewPasscodeEntered { command_id, .. } if command_id == "cmd-w"
    )));
    assert!(!status(&device, Scope::WorkProfile).require_entry);
    assert_eq!(device.notifications().len(), 1, "kept after the entry");
    // It survives a restart of the agent, as the app's notification would a reboot.
    let json = serde_json::to_string(&device.to_persisted()).unwrap();
    let mut device = Device::from_persisted(serde_json::from_str(&json).unwrap(), KDF).unwrap();
    assert_eq!(device.notifications().len(), 1);
    assert_eq!(
        enter(&mut device, Scope::Device, "2580", NOW),
        EntryOutcome::Unlocked
    );
    assert_eq!(
        enter(&mut device, Scope::WorkProfile, "Work9182", NOW),
        EntryOutcome::Unlocked
    );
    device.open_work_app().unwrap();
    assert!(device.notifications().is_empty());

    // On AOSP the entry clears it at once.
    let (mut aosp, rng, token) = ready(Ownership::Byod, 35, "aosp", Scope::WorkProfile);
    aosp.reset_with_token(
        Scope::WorkProfile,
        &token,
        &pass("Work9182"),
        REQUIRE_ENTRY,
        "c",
        &rng,
    )
    .unwrap();
    enter(&mut aosp, Scope::WorkProfile, "Work9182", NOW);
    assert!(aosp.notifications().is_empty());
}

#[test]
fn the_build_survives_persistence_and_a_corrupt_profile_is_refused() {
    let (device, _) = on(Ownership::Cope, 30, "short-keyguard");
    let json = serde_json::to_string(&device.to_persisted()).unwrap();
    let restored = Device::from_persisted(serde_json::from_str(&json).unwrap(), KDF).unwrap();
    assert_eq!(restored.build(), device.build());
    assert_eq!(restored.build().to_string(), "API 30 / short-keyguard");
    let renamed = json.replace("\"short-keyguard\"", "\"no-such-maker\"");
    let error = Device::from_persisted(serde_json::from_str(&renamed).unwrap(), KDF).unwrap_err();
    assert!(error.to_string().contains("no-such-maker"), "{error}");
    // A state file from before versions were modelled is the newest level on AOSP.
    let mut value: serde_json::Value = serde_json::from_str(&json).unwrap();
    let object = value.as_object_mut().unwrap();
    object.remove("api_level");
    object.remove("profile");
    let old = Device::from_persisted(serde_json::from_value(value).unwrap(), KDF).unwrap();
    assert_eq!(old.build(), Build::default());
}
