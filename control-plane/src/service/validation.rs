//! The checks of incoming fields, each naming the field and the problem, and the limits they
//! enforce: anything longer than these is never ours, and is refused before it reaches the store.

use super::ServiceError;
use super::actions::PASSCODE_VISIBLE_FOR;
use crate::clock::{DAY, MINUTE, Millis, SECOND};
use crate::model::{Device, PasscodePolicy, RoleAssignment, StoreStatus};
use crate::rbac;
use crate::secret::{BearerToken, Passcode};
use std::collections::BTreeSet;

/// Default time-to-live of a command (the Android Management API's default duration).
pub(super) const DEFAULT_COMMAND_TTL: Millis = 10 * MINUTE;
/// The longest time-to-live a request may ask for: a command must not outlive its passcode.
const MAX_COMMAND_TTL: Millis = PASSCODE_VISIBLE_FOR;
const DEFAULT_ENROLLMENT_TTL: Millis = 60 * MINUTE;
const MAX_ENROLLMENT_TTL: Millis = 365 * DAY;
pub(super) const MAX_ENROLLMENT_USES: u32 = 1_000_000;
pub(super) const MAX_ID_LEN: usize = 128;
const MAX_PASSCODE_LEN: usize = 64;
/// Enrollment tokens and credentials are generated well below this; longer is never ours.
pub(super) const MAX_TOKEN_LEN: usize = 256;
/// Escrow tokens are 32 bytes on Android; anything past this is not a token.
pub(super) const MAX_ESCROW_TOKEN_LEN: usize = 1024;
/// A device's sentence about a result, shown to admins.
pub(super) const MAX_REASON_LEN: usize = 1024;
pub(super) const MAX_AUDIT_LIMIT: u32 = 10_000;
/// Permissions a role may list, and role assignments a request may carry.
pub(super) const MAX_LIST_LEN: usize = 64;
/// Devices one WatchDevices stream may follow: a whole large fleet, in a request of about 3 MB.
pub(super) const MAX_WATCHED_DEVICES: usize = 100_000;

pub(super) fn check_text(field: &'static str, value: &str, max: usize) -> Result<(), ServiceError> {
    if value.trim().is_empty() {
        return Err(ServiceError::invalid(field, "must not be empty"));
    }
    if value.len() > max {
        return Err(ServiceError::invalid(
            field,
            format!("must be at most {max} bytes"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(ServiceError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// A device's free text as it may be shown: every control character (a terminal escape, a bell,
/// a newline that forges a log line) and every bidirectional override (text that reads otherwise
/// than it is) replaced by U+FFFD. Unlike [`check_text`] it refuses nothing, so a device's
/// report is never lost to its wording.
pub(super) fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
            if c.is_control() || bidi {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

/// Ids are printable ASCII without spaces, so they are safe in logs and file names.
pub(super) fn check_id(field: &'static str, value: &str) -> Result<(), ServiceError> {
    check_printable_ascii(field, value, MAX_ID_LEN)
}

/// A bearer credential from the wire: ours are short printable ASCII, so anything else is
/// malformed rather than merely unknown.
pub(super) fn check_credential_text(
    field: &'static str,
    token: &BearerToken,
) -> Result<(), ServiceError> {
    check_printable_ascii(field, token.expose(), MAX_TOKEN_LEN)
}

fn check_printable_ascii(field: &'static str, text: &str, max: usize) -> Result<(), ServiceError> {
    if text.is_empty() {
        return Err(ServiceError::invalid(field, "must not be empty"));
    }
    if text.len() > max {
        return Err(ServiceError::invalid(
            field,
            format!("must be at most {max} bytes"),
        ));
    }
    if !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ServiceError::invalid(
            field,
            "must be printable ASCII without spaces",
        ));
    }
    Ok(())
}

/// The status a device reports: one entry per store, and only stores it has.
pub(super) fn check_stores(device: &Device, stores: &[StoreStatus]) -> Result<(), ServiceError> {
    let mut seen = BTreeSet::new();
    for store in stores {
        if !device.has_store(store.scope) {
            return Err(ServiceError::invalid(
                "status.stores.scope",
                format!("a {} device has no work profile", device.ownership),
            ));
        }
        if !seen.insert(store.scope) {
            return Err(ServiceError::invalid(
                "status.stores",
                format!("the {} store is reported twice", store.scope),
            ));
        }
    }
    Ok(())
}

pub(super) fn check_assignment(
    role_field: &'static str,
    group_field: &'static str,
    assignment: &RoleAssignment,
) -> Result<(), ServiceError> {
    rbac::validate_role_name(&assignment.role)
        .map_err(|problem| ServiceError::invalid(role_field, problem))?;
    if let Some(group) = &assignment.group {
        rbac::validate_group_name(group)
            .map_err(|problem| ServiceError::invalid(group_field, problem))?;
    }
    Ok(())
}

pub(super) fn check_enrollment_ttl(ttl: Option<Millis>) -> Result<Millis, ServiceError> {
    let ttl = ttl.unwrap_or(DEFAULT_ENROLLMENT_TTL);
    if ttl > MAX_ENROLLMENT_TTL {
        return Err(ServiceError::invalid(
            "ttl_seconds",
            "must be at most one year",
        ));
    }
    Ok(ttl)
}

pub(super) fn check_passcode_text(passcode: &Passcode) -> Result<(), ServiceError> {
    let text = passcode.expose();
    if text.len() > MAX_PASSCODE_LEN {
        return Err(ServiceError::invalid(
            "new_passcode",
            format!("must be at most {MAX_PASSCODE_LEN} characters"),
        ));
    }
    if !text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(ServiceError::invalid(
            "new_passcode",
            "must be printable ASCII",
        ));
    }
    Ok(())
}

pub(super) fn check_ttl(ttl: Option<Millis>) -> Result<Millis, ServiceError> {
    match ttl {
        None => Ok(DEFAULT_COMMAND_TTL),
        Some(ttl) if ttl < SECOND => Err(ServiceError::invalid(
            "ttl_seconds",
            "must be at least 1 second",
        )),
        Some(ttl) if ttl > MAX_COMMAND_TTL => Err(ServiceError::invalid(
            "ttl_seconds",
            "must be at most 7 days (604800 seconds): the passcode is kept only that long",
        )),
        Some(ttl) => Ok(ttl),
    }
}

pub(super) fn check_policy(policy: &PasscodePolicy) -> Result<(), ServiceError> {
    const MAX: u32 = 16;
    let fields = [
        ("policy.min_length", policy.min_length),
        ("policy.min_letters", policy.min_letters),
        ("policy.min_upper_case", policy.min_upper_case),
        ("policy.min_lower_case", policy.min_lower_case),
        ("policy.min_digits", policy.min_digits),
        ("policy.min_symbols", policy.min_symbols),
        ("policy.min_non_letters", policy.min_non_letters),
    ];
    for (field, value) in fields {
        if value > MAX {
            return Err(ServiceError::invalid(
                field,
                format!("must be at most {MAX} (Android's longest passcode)"),
            ));
        }
    }
    if policy.max_failed_attempts_before_wipe > 1000 {
        return Err(ServiceError::invalid(
            "policy.max_failed_attempts_before_wipe",
            "must be at most 1000",
        ));
    }
    Ok(())
}
