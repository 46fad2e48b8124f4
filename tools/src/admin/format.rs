//! How the tools show admin-API answers: names for the proto's enum values, one-line and
//! multi-line text for people, and JSON objects for programs.

use droidfleet_proto::v1 as pb;
use serde_json::{Value, json};

/// A timestamp in milliseconds since the epoch as RFC 3339 (seconds); `-` for 0 (never).
pub(crate) fn time(ms: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}

pub(crate) fn ownership_name(value: i32) -> &'static str {
    match pb::Ownership::try_from(value) {
        Ok(pb::Ownership::Cosu) => "COSU",
        Ok(pb::Ownership::Cobo) => "COBO",
        Ok(pb::Ownership::Cope) => "COPE",
        Ok(pb::Ownership::Byod) => "BYOD",
        Ok(pb::Ownership::Aosp) => "AOSP",
        _ => "?",
    }
}

pub(crate) fn scope_name(value: i32) -> &'static str {
    match pb::CredentialScope::try_from(value) {
        Ok(pb::CredentialScope::Device) => "device",
        Ok(pb::CredentialScope::WorkProfile) => "work_profile",
        _ => "-",
    }
}

pub(crate) fn state_name(value: i32) -> &'static str {
    match pb::ActionState::try_from(value) {
        Ok(pb::ActionState::Pending) => "pending",
        Ok(pb::ActionState::Active) => "active",
        Ok(pb::ActionState::Done) => "done",
        Ok(pb::ActionState::Failed) => "failed",
        Ok(pb::ActionState::Canceled) => "canceled",
        Ok(pb::ActionState::NotSupported) => "not_supported",
        Ok(pb::ActionState::Expired) => "expired",
        _ => "?",
    }
}

pub(crate) fn error_name(value: i32) -> String {
    pb::ErrorCode::try_from(value)
        .map(|c| {
            c.as_str_name()
                .trim_start_matches("ERROR_CODE_")
                .to_lowercase()
        })
        .unwrap_or_else(|_| format!("code {value}"))
}

fn token_state_name(value: i32) -> &'static str {
    match pb::TokenState::try_from(value) {
        Ok(pb::TokenState::Pending) => "pending",
        Ok(pb::TokenState::Active) => "active",
        _ => "none",
    }
}

pub(crate) fn kind_name(value: i32) -> &'static str {
    match pb::ActionKind::try_from(value) {
        Ok(pb::ActionKind::ResetPasscode) => "reset_passcode",
        Ok(pb::ActionKind::RemoteLock) => "remote_lock",
        _ => "?",
    }
}

pub(crate) fn device_line(device: &pb::Device) -> String {
    format!(
        "{}  {:<4}  {:<20} {:<12} {}",
        device.device_id,
        ownership_name(device.ownership),
        device.display_name,
        device.group,
        if device.online { "online" } else { "offline" }
    )
}

/// The device's line, then one line per credential store and its passcode policies.
pub(crate) fn device_details(device: &pb::Device) -> String {
    let mut lines = vec![device_line(device)];
    lines.push(match device.api_level {
        0 => "  android: not reported yet".to_string(),
        level => format!(
            "  android: API level {level}, maker profile {}",
            if device.maker_profile.is_empty() {
                "not reported"
            } else {
                &device.maker_profile
            }
        ),
    });
    for store in &device.stores {
        lines.push(format!(
            "  {:<12} passcode {}, {}, reset token {}, {} failed attempt(s){}",
            scope_name(store.scope),
            if store.has_passcode { "set" } else { "not set" },
            if store.locked { "locked" } else { "unlocked" },
            token_state_name(store.token_state),
            store.failed_attempts,
            if store.wiped { ", WIPED" } else { "" }
        ));
    }
    let policy = |p: &Option<pb::PasscodePolicy>| match p {
        Some(p) => format!(
            "{} of at least {} characters",
            pb::PasscodeType::try_from(p.r#type)
                .map(|t| t
                    .as_str_name()
                    .trim_start_matches("PASSCODE_TYPE_")
                    .to_lowercase())
                .unwrap_or_default(),
            p.min_length.max(4)
        ),
        None => "none".into(),
    };
    lines.push(format!(
        "  device passcode policy: {}",
        policy(&device.device_policy)
    ));
    if ownership_name(device.ownership) != "COSU" && ownership_name(device.ownership) != "AOSP" {
        lines.push(format!(
            "  work profile passcode policy: {}",
            policy(&device.work_profile_policy)
        ));
    }
    lines.join("\n")
}

pub(crate) fn action_line(action: &pb::Action) -> String {
    let mut line = format!(
        "{}  {:<14} {:<13} {:<12} {}",
        action.action_id,
        kind_name(action.kind),
        state_name(action.state),
        scope_name(action.scope),
        time(action.updated_at_ms)
    );
    if action.error_code != 0 {
        line.push_str(&format!("  [{}]", error_name(action.error_code)));
    }
    if action.cancel_requested_at_ms != 0 {
        line.push_str(&format!(
            "  (cancel requested at {})",
            time(action.cancel_requested_at_ms)
        ));
    }
    line
}

/// The action's line, then who asked for it and when, its reason, and where its passcode is.
pub(crate) fn action_details(action: &pb::Action) -> String {
    let mut lines = vec![
        action_line(action),
        format!(
            "  device {} requested by {} at {}",
            action.device_id,
            action.requested_by,
            time(action.created_at_ms)
        ),
    ];
    if !action.trace_id.is_empty() {
        lines.push(format!("  trace {}", action.trace_id));
    }
    if !action.reason.is_empty() {
        lines.push(format!("  reason: {}", action.reason));
    }
    if !action.cancel_refusal.is_empty() {
        lines.push(format!(
            "  the device refused the cancel: {}",
            action.cancel_refusal
        ));
    }
    if action.passcode_visible_until_ms > 0 {
        lines.push(format!(
            "  passcode: droidfleet admin reveal-passcode {} (until {})",
            action.action_id,
            time(action.passcode_visible_until_ms)
        ));
    }
    lines.join("\n")
}

pub(crate) fn audit_event_line(event: &pb::AuditEvent) -> String {
    format!(
        "{}  {:<12} {:<22} {:<18} {:<24} {}",
        time(event.at_ms),
        event.principal,
        event.operation,
        event.result,
        event.device_id,
        event.detail
    )
}

pub(crate) fn role_line(role: &pb::Role) -> String {
    let kind = if role.built_in { "built-in" } else { "custom" };
    format!("{} ({kind}): {}", role.name, role.permissions.join(", "))
}

fn assignment_text(assignment: &pb::RoleAssignment) -> String {
    if assignment.group.is_empty() {
        assignment.role.clone()
    } else {
        format!("{} (group {})", assignment.role, assignment.group)
    }
}

pub(crate) fn principal_line(principal: &pb::Principal) -> String {
    let held: Vec<String> = principal.assignments.iter().map(assignment_text).collect();
    format!(
        "{}: {} (token {})",
        principal.name,
        held.join(", "),
        token_text(principal)
    )
}

/// The principal's newest token as a listing shows it: revoked, or when it expires.
fn token_text(principal: &pb::Principal) -> String {
    if principal.token_revoked_at_ms != 0 {
        return format!("revoked {}", time(principal.token_revoked_at_ms));
    }
    format!("expires {}", time(principal.token_expires_at_ms))
}

pub(crate) fn device_json(device: &pb::Device) -> Value {
    json!({
        "device_id": device.device_id,
        "display_name": device.display_name,
        "ownership": ownership_name(device.ownership),
        "group": device.group,
        "api_level": device.api_level,
        "maker_profile": device.maker_profile,
        "online": device.online,
        "enrolled_at": time(device.enrolled_at_ms),
        "last_seen": time(device.last_seen_ms),
        "stores": device.stores.iter().map(|s| json!({
            "scope": scope_name(s.scope), "has_passcode": s.has_passcode, "locked": s.locked,
            "token_state": token_state_name(s.token_state), "failed_attempts": s.failed_attempts,
            "wiped": s.wiped, "separate_challenge": s.separate_challenge, "require_entry": s.require_entry,
        })).collect::<Vec<_>>(),
        "device_policy": device.device_policy.as_ref().map(policy_json),
        "work_profile_policy": device.work_profile_policy.as_ref().map(policy_json),
        "escrowed_token_scopes": device.escrowed_token_scopes.iter().map(|s| scope_name(*s)).collect::<Vec<_>>(),
    })
}

fn policy_json(policy: &pb::PasscodePolicy) -> Value {
    json!({
        "type": pb::PasscodeType::try_from(policy.r#type).map(|t| t.as_str_name()).unwrap_or("?"),
        "min_length": policy.min_length,
        "complexity": pb::PasscodeComplexity::try_from(policy.complexity).map(|t| t.as_str_name()).unwrap_or("?"),
        "max_failed_attempts_before_wipe": policy.max_failed_attempts_before_wipe,
    })
}

pub(crate) fn action_json(action: &pb::Action) -> Value {
    json!({
        "action_id": action.action_id,
        "device_id": action.device_id,
        "kind": kind_name(action.kind),
        "scope": scope_name(action.scope),
        "state": state_name(action.state),
        "error_code": (action.error_code != 0).then(|| error_name(action.error_code)),
        "reason": action.reason,
        "requested_by": action.requested_by,
        "created_at": time(action.created_at_ms),
        "updated_at": time(action.updated_at_ms),
        "delivered_at": time(action.delivered_at_ms),
        "completed_at": time(action.completed_at_ms),
        "user_entered_at": time(action.user_entered_at_ms),
        "not_after": time(action.not_after_ms),
        "passcode_visible_until": time(action.passcode_visible_until_ms),
        "trace_id": (!action.trace_id.is_empty()).then_some(&action.trace_id),
        "cancel_requested_at": time(action.cancel_requested_at_ms),
        "cancel_refusal": (!action.cancel_refusal.is_empty()).then_some(&action.cancel_refusal),
    })
}

pub(crate) fn audit_event_json(event: &pb::AuditEvent) -> Value {
    json!({
        "id": event.id, "at": time(event.at_ms), "principal": event.principal,
        "operation": event.operation, "device_id": event.device_id, "action_id": event.action_id,
        "result": event.result, "detail": event.detail,
    })
}

pub(crate) fn role_json(role: &pb::Role) -> Value {
    json!({"name": role.name, "permissions": role.permissions, "built_in": role.built_in})
}

pub(crate) fn principal_json(principal: &pb::Principal) -> Value {
    json!({
        "name": principal.name,
        "roles": principal.roles,
        "assignments": principal.assignments.iter().map(|a| json!({
            "role": a.role,
            "group": (!a.group.is_empty()).then_some(&a.group),
        })).collect::<Vec<_>>(),
        "created_at": time(principal.created_at_ms),
        "token_issued_at": time(principal.token_issued_at_ms),
        "token_expires_at": time(principal.token_expires_at_ms),
        "token_revoked_at": (principal.token_revoked_at_ms != 0)
            .then(|| time(principal.token_revoked_at_ms)),
    })
}
