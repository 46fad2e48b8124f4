//! The words pages use for the admin API's values, and the seed's rules as an admin reads them.

use droidfleet_proto::v1 as pb;

/// The seed's rule for a reset of a store without a passcode policy.
pub(crate) const NO_POLICY_RULE: &str = "Before initiating a passcode reset, ensure that the \
     passcode requirement is enforced via device configuration policies; otherwise, the reset \
     fails.";
/// The seed's rule for a remote lock of a store without a passcode policy.
pub(crate) const LOCK_POLICY_RULE: &str = "If the device doesn't have a device passcode \
     assigned, the remote lock action doesn't succeed: assign a passcode policy first.";
/// The seed's user experience after a work-profile reset.
pub(crate) const USER_EXPERIENCE: &str = "The new passcode must be entered on the device. For a \
     work-profile reset the user is notified to activate it; once it is entered, the \
     notification is dismissed.";

/// The enrollment type as the seed names it.
pub(crate) fn ownership_long(ownership: i32) -> &'static str {
    match pb::Ownership::try_from(ownership) {
        Ok(pb::Ownership::Cosu) => "Android Enterprise corporate-owned dedicated (COSU)",
        Ok(pb::Ownership::Cobo) => "Android Enterprise corporate-owned fully managed (COBO)",
        Ok(pb::Ownership::Cope) => "Android Enterprise corporate-owned work profile (COPE)",
        Ok(pb::Ownership::Byod) => "Android Enterprise personally-owned work profile (BYOD)",
        Ok(pb::Ownership::Aosp) => "Android Open Source Project (AOSP)",
        _ => "unknown enrollment type",
    }
}

/// The Android a device reported in its last Hello: `API level 34, maker profile pixel`.
pub(crate) fn android(device: &pb::Device) -> String {
    if device.api_level == 0 {
        return "not reported yet (the device reports it when it connects)".into();
    }
    if device.maker_profile.is_empty() {
        format!("API level {}", device.api_level)
    } else {
        format!(
            "API level {}, maker profile {}",
            device.api_level, device.maker_profile
        )
    }
}

pub(crate) fn ownership_short(ownership: i32) -> &'static str {
    match pb::Ownership::try_from(ownership) {
        Ok(pb::Ownership::Cosu) => "COSU",
        Ok(pb::Ownership::Cobo) => "COBO",
        Ok(pb::Ownership::Cope) => "COPE",
        Ok(pb::Ownership::Byod) => "BYOD",
        Ok(pb::Ownership::Aosp) => "AOSP",
        _ => "?",
    }
}

/// The filter values of the device list's type menu: (query value, shown name, wire value).
pub(crate) const OWNERSHIPS: [(&str, &str, pb::Ownership); 5] = [
    (
        "cosu",
        "COSU: corporate-owned dedicated",
        pb::Ownership::Cosu,
    ),
    (
        "cobo",
        "COBO: corporate-owned fully managed",
        pb::Ownership::Cobo,
    ),
    (
        "cope",
        "COPE: corporate-owned work profile",
        pb::Ownership::Cope,
    ),
    (
        "byod",
        "BYOD: personally-owned work profile",
        pb::Ownership::Byod,
    ),
    (
        "aosp",
        "AOSP: Android Open Source Project",
        pb::Ownership::Aosp,
    ),
];

/// The store a reset of this enrollment type targets (the seed's support matrix): the device
/// lock screen for COSU and AOSP, the work profile otherwise.
pub(crate) fn resettable_scope(ownership: i32) -> pb::CredentialScope {
    match pb::Ownership::try_from(ownership) {
        Ok(pb::Ownership::Cosu | pb::Ownership::Aosp) => pb::CredentialScope::Device,
        _ => pb::CredentialScope::WorkProfile,
    }
}

pub(crate) fn has_work_profile(ownership: i32) -> bool {
    matches!(
        pb::Ownership::try_from(ownership),
        Ok(pb::Ownership::Cobo | pb::Ownership::Cope | pb::Ownership::Byod)
    )
}

pub(crate) fn scope_name(scope: i32) -> &'static str {
    match pb::CredentialScope::try_from(scope) {
        Ok(pb::CredentialScope::Device) => "device",
        Ok(pb::CredentialScope::WorkProfile) => "work profile",
        _ => "unspecified",
    }
}

/// The form value of a scope, as the lock form sends it back.
pub(crate) fn scope_value(scope: pb::CredentialScope) -> &'static str {
    match scope {
        pb::CredentialScope::WorkProfile => "work_profile",
        _ => "device",
    }
}

pub(crate) fn parse_scope(value: &str) -> Option<pb::CredentialScope> {
    match value {
        "device" => Some(pb::CredentialScope::Device),
        "work_profile" => Some(pb::CredentialScope::WorkProfile),
        _ => None,
    }
}

/// The action states in the order an action passes them: (query value, wire value).
pub(crate) const STATES: [(&str, pb::ActionState); 7] = [
    ("pending", pb::ActionState::Pending),
    ("active", pb::ActionState::Active),
    ("done", pb::ActionState::Done),
    ("failed", pb::ActionState::Failed),
    ("not_supported", pb::ActionState::NotSupported),
    ("expired", pb::ActionState::Expired),
    ("canceled", pb::ActionState::Canceled),
];

/// An action state's name, as badges and filters spell it.
pub(crate) fn state_name(state: i32) -> &'static str {
    STATES
        .iter()
        .find(|(_, s)| *s as i32 == state)
        .map(|(name, _)| *name)
        .unwrap_or("unknown")
}

pub(crate) fn kind_name(kind: i32) -> &'static str {
    match pb::ActionKind::try_from(kind) {
        Ok(pb::ActionKind::ResetPasscode) => "Reset passcode",
        Ok(pb::ActionKind::RemoteLock) => "Remote lock",
        _ => "Unknown action",
    }
}

pub(crate) fn is_reset(action: &pb::Action) -> bool {
    action.kind == pb::ActionKind::ResetPasscode as i32
}

pub(crate) fn is_final(state: i32) -> bool {
    !matches!(
        pb::ActionState::try_from(state),
        Ok(pb::ActionState::Pending | pb::ActionState::Active)
    )
}

pub(crate) fn token_state(state: i32) -> &'static str {
    match pb::TokenState::try_from(state) {
        Ok(pb::TokenState::Active) => "active",
        Ok(pb::TokenState::Pending) => "pending (until the user's next unlock)",
        Ok(pb::TokenState::None) => "none",
        _ => "unknown",
    }
}

/// A policy in one line: `alphanumeric, at least 8, high complexity`.
pub(crate) fn policy_summary(policy: &pb::PasscodePolicy) -> String {
    let kind = match pb::PasscodeType::try_from(policy.r#type) {
        Ok(pb::PasscodeType::Pin) => "PIN",
        Ok(pb::PasscodeType::NumericComplex) => "numeric complex",
        Ok(pb::PasscodeType::Alphanumeric) => "alphanumeric",
        Ok(pb::PasscodeType::Complex) => "complex",
        _ => "any passcode",
    };
    let mut summary = format!("{kind}, at least {} characters", policy.min_length.max(4));
    match pb::PasscodeComplexity::try_from(policy.complexity) {
        Ok(pb::PasscodeComplexity::Low) => summary.push_str(", low complexity"),
        Ok(pb::PasscodeComplexity::Medium) => summary.push_str(", medium complexity"),
        Ok(pb::PasscodeComplexity::High) => summary.push_str(", high complexity"),
        _ => {}
    }
    if policy.max_failed_attempts_before_wipe > 0 {
        summary.push_str(&format!(
            ", wipe after {} failed entries",
            policy.max_failed_attempts_before_wipe
        ));
    }
    summary
}

/// The policy of `scope` on the device, if one is assigned.
pub(crate) fn policy_of(
    device: &pb::Device,
    scope: pb::CredentialScope,
) -> Option<&pb::PasscodePolicy> {
    match scope {
        pb::CredentialScope::WorkProfile => device.work_profile_policy.as_ref(),
        _ => device.device_policy.as_ref(),
    }
}

/// What an admin can do about an action's error code, in the seed's words where it has some.
pub(crate) fn rule_for(action: &pb::Action) -> Option<String> {
    match pb::ErrorCode::try_from(action.error_code) {
        Ok(pb::ErrorCode::NoPasscodePolicy) if is_reset(action) => Some(NO_POLICY_RULE.into()),
        Ok(pb::ErrorCode::NoPasscodePolicy) => Some(LOCK_POLICY_RULE.into()),
        Ok(pb::ErrorCode::ScopeNotSupported) => Some(
            "Supported passcode resets: device-level for COSU and AOSP, work profile for COBO, \
             COPE and BYOD."
                .into(),
        ),
        Ok(pb::ErrorCode::NoEscrowedToken) | Ok(pb::ErrorCode::TokenMissing) => Some(
            "The device has no reset token for this store yet: it escrows one once the store \
             has a passcode."
                .into(),
        ),
        Ok(pb::ErrorCode::TokenNotActive) => Some(
            "The reset token becomes active when the user next unlocks the device with the \
             current passcode; then try again."
                .into(),
        ),
        Ok(pb::ErrorCode::ApiLevel) => Some(
            "The device's Android cannot run this command: a passcode reset with an escrow \
             token needs Android 8.0 (API level 26) or later, and a company-owned work \
             profile's device passcode cannot be reset from Android 11 (API level 30)."
                .into(),
        ),
        Ok(pb::ErrorCode::NoPasscode) => Some(
            "A remote lock needs a passcode on the store it locks: without one, locking only \
             turns the screen off. Assign a passcode policy and let the user set a passcode \
             first."
                .into(),
        ),
        Ok(pb::ErrorCode::Expired) => Some(
            "The device did not come online in time to run the command; try again when it is \
             online."
                .into(),
        ),
        _ => None,
    }
}
