//! Conversions between protobuf messages and the control plane's domain types. Every incoming
//! enum or field that could be malformed is checked here and named in the error.

use crate::model::{
    Action, ActionKind, ActionState, AuditEvent, Complexity, Device, ErrorCode, Ownership,
    PasscodePolicy, PasscodeType, Principal, Role, Scope, StoreStatus, TokenState,
};
use crate::secret::EscrowToken;
use crate::service::{DeviceReport, ServiceError};
use droidfleet_proto::v1 as pb;
use droidfleet_telemetry::traceparent::TraceParent;

fn invalid(field: &'static str, problem: impl Into<String>) -> ServiceError {
    ServiceError::InvalidArgument {
        field,
        problem: problem.into(),
    }
}

pub fn ownership_from_pb(value: i32, field: &'static str) -> Result<Ownership, ServiceError> {
    match pb::Ownership::try_from(value) {
        Ok(pb::Ownership::Cosu) => Ok(Ownership::Cosu),
        Ok(pb::Ownership::Cobo) => Ok(Ownership::Cobo),
        Ok(pb::Ownership::Cope) => Ok(Ownership::Cope),
        Ok(pb::Ownership::Byod) => Ok(Ownership::Byod),
        Ok(pb::Ownership::Aosp) => Ok(Ownership::Aosp),
        _ => Err(invalid(
            field,
            "must be one of COSU, COBO, COPE, BYOD, AOSP",
        )),
    }
}

/// `Ok(None)` for OWNERSHIP_UNSPECIFIED (a filter that matches every type).
pub fn optional_ownership_from_pb(
    value: i32,
    field: &'static str,
) -> Result<Option<Ownership>, ServiceError> {
    if value == pb::Ownership::Unspecified as i32 {
        return Ok(None);
    }
    ownership_from_pb(value, field).map(Some)
}

pub fn ownership_to_pb(ownership: Ownership) -> pb::Ownership {
    match ownership {
        Ownership::Cosu => pb::Ownership::Cosu,
        Ownership::Cobo => pb::Ownership::Cobo,
        Ownership::Cope => pb::Ownership::Cope,
        Ownership::Byod => pb::Ownership::Byod,
        Ownership::Aosp => pb::Ownership::Aosp,
    }
}

/// `Ok(None)` for CREDENTIAL_SCOPE_UNSPECIFIED.
pub fn optional_scope_from_pb(
    value: i32,
    field: &'static str,
) -> Result<Option<Scope>, ServiceError> {
    match pb::CredentialScope::try_from(value) {
        Ok(pb::CredentialScope::Unspecified) => Ok(None),
        Ok(pb::CredentialScope::Device) => Ok(Some(Scope::Device)),
        Ok(pb::CredentialScope::WorkProfile) => Ok(Some(Scope::WorkProfile)),
        Err(_) => Err(invalid(field, format!("unknown credential scope {value}"))),
    }
}

pub fn scope_from_pb(value: i32, field: &'static str) -> Result<Scope, ServiceError> {
    optional_scope_from_pb(value, field)?
        .ok_or_else(|| invalid(field, "must be DEVICE or WORK_PROFILE"))
}

pub fn scope_to_pb(scope: Scope) -> pb::CredentialScope {
    match scope {
        Scope::Device => pb::CredentialScope::Device,
        Scope::WorkProfile => pb::CredentialScope::WorkProfile,
    }
}

pub fn policy_from_pb(policy: &pb::PasscodePolicy) -> Result<PasscodePolicy, ServiceError> {
    let passcode_type = match pb::PasscodeType::try_from(policy.r#type) {
        Ok(pb::PasscodeType::Pin) => PasscodeType::Pin,
        Ok(pb::PasscodeType::NumericComplex) => PasscodeType::NumericComplex,
        Ok(pb::PasscodeType::Alphanumeric) => PasscodeType::Alphanumeric,
        Ok(pb::PasscodeType::Complex) => PasscodeType::Complex,
        _ => {
            return Err(invalid(
                "policy.type",
                "must be PIN, NUMERIC_COMPLEX, ALPHANUMERIC or COMPLEX",
            ));
        }
    };
    let complexity = match pb::PasscodeComplexity::try_from(policy.complexity) {
        Ok(pb::PasscodeComplexity::Unspecified) => Complexity::Unspecified,
        Ok(pb::PasscodeComplexity::Low) => Complexity::Low,
        Ok(pb::PasscodeComplexity::Medium) => Complexity::Medium,
        Ok(pb::PasscodeComplexity::High) => Complexity::High,
        Err(_) => return Err(invalid("policy.complexity", "must be LOW, MEDIUM or HIGH")),
    };
    Ok(PasscodePolicy {
        passcode_type,
        min_length: policy.min_length,
        complexity,
        min_letters: policy.min_letters,
        min_upper_case: policy.min_upper_case,
        min_lower_case: policy.min_lower_case,
        min_digits: policy.min_digits,
        min_symbols: policy.min_symbols,
        min_non_letters: policy.min_non_letters,
        max_failed_attempts_before_wipe: policy.max_failed_attempts_before_wipe,
    })
}

pub fn policy_to_pb(policy: &PasscodePolicy) -> pb::PasscodePolicy {
    pb::PasscodePolicy {
        r#type: match policy.passcode_type {
            PasscodeType::Pin => pb::PasscodeType::Pin,
            PasscodeType::NumericComplex => pb::PasscodeType::NumericComplex,
            PasscodeType::Alphanumeric => pb::PasscodeType::Alphanumeric,
            PasscodeType::Complex => pb::PasscodeType::Complex,
        } as i32,
        min_length: policy.min_length,
        complexity: match policy.complexity {
            Complexity::Unspecified => pb::PasscodeComplexity::Unspecified,
            Complexity::Low => pb::PasscodeComplexity::Low,
            Complexity::Medium => pb::PasscodeComplexity::Medium,
            Complexity::High => pb::PasscodeComplexity::High,
        } as i32,
        min_letters: policy.min_letters,
        min_upper_case: policy.min_upper_case,
        min_lower_case: policy.min_lower_case,
        min_digits: policy.min_digits,
        min_symbols: policy.min_symbols,
        min_non_letters: policy.min_non_letters,
        max_failed_attempts_before_wipe: policy.max_failed_attempts_before_wipe,
    }
}

pub fn store_status_from_pb(status: &pb::StoreStatus) -> Result<StoreStatus, ServiceError> {
    Ok(StoreStatus {
        scope: scope_from_pb(status.scope, "status.stores.scope")?,
        has_passcode: status.has_passcode,
        locked: status.locked,
        token_state: match pb::TokenState::try_from(status.token_state) {
            Ok(pb::TokenState::Pending) => TokenState::Pending,
            Ok(pb::TokenState::Active) => TokenState::Active,
            Ok(pb::TokenState::None | pb::TokenState::Unspecified) => TokenState::None,
            Err(_) => return Err(invalid("status.stores.token_state", "unknown token state")),
        },
        failed_attempts: status.failed_attempts,
        throttled_until: status.throttled_until_ms,
        wiped: status.wiped,
        separate_challenge: status.separate_challenge,
        require_entry: status.require_entry,
        token_fingerprint: match status.escrow_token_fingerprint.len() {
            0 => None,
            _ => Some(
                <[u8; 8]>::try_from(status.escrow_token_fingerprint.as_slice()).map_err(|_| {
                    invalid(
                        "status.stores.escrow_token_fingerprint",
                        "must be empty or 8 bytes",
                    )
                })?,
            ),
        },
    })
}

pub fn store_status_to_pb(status: &StoreStatus) -> pb::StoreStatus {
    pb::StoreStatus {
        scope: scope_to_pb(status.scope) as i32,
        has_passcode: status.has_passcode,
        locked: status.locked,
        token_state: match status.token_state {
            TokenState::None => pb::TokenState::None,
            TokenState::Pending => pb::TokenState::Pending,
            TokenState::Active => pb::TokenState::Active,
        } as i32,
        failed_attempts: status.failed_attempts,
        throttled_until_ms: status.throttled_until,
        wiped: status.wiped,
        separate_challenge: status.separate_challenge,
        require_entry: status.require_entry,
        escrow_token_fingerprint: status
            .token_fingerprint
            .map(|f| f.to_vec())
            .unwrap_or_default(),
    }
}

pub fn device_to_pb(device: &Device, online: bool) -> pb::Device {
    pb::Device {
        device_id: device.id.clone(),
        display_name: device.display_name.clone(),
        ownership: ownership_to_pb(device.ownership) as i32,
        enrolled_at_ms: device.enrolled_at,
        online,
        last_seen_ms: device.last_seen,
        stores: device.stores.iter().map(store_status_to_pb).collect(),
        device_policy: device.device_policy.as_ref().map(policy_to_pb),
        work_profile_policy: device.work_profile_policy.as_ref().map(policy_to_pb),
        escrowed_token_scopes: device
            .escrowed_token_scopes
            .iter()
            .map(|s| scope_to_pb(*s) as i32)
            .collect(),
        group: device.group.clone(),
        api_level: device.api_level,
        maker_profile: device.maker_profile.clone(),
    }
}

pub fn error_code_to_pb(code: ErrorCode) -> pb::ErrorCode {
    match code {
        ErrorCode::NoPasscodePolicy => pb::ErrorCode::NoPasscodePolicy,
        ErrorCode::ScopeNotSupported => pb::ErrorCode::ScopeNotSupported,
        ErrorCode::NoEscrowedToken => pb::ErrorCode::NoEscrowedToken,
        ErrorCode::ApiLevel => pb::ErrorCode::ApiLevel,
        ErrorCode::NoPasscode => pb::ErrorCode::NoPasscode,
        ErrorCode::TokenMissing => pb::ErrorCode::TokenMissing,
        ErrorCode::TokenNotActive => pb::ErrorCode::TokenNotActive,
        ErrorCode::TokenMismatch => pb::ErrorCode::TokenMismatch,
        ErrorCode::PasscodePolicyViolation => pb::ErrorCode::PasscodePolicyViolation,
        ErrorCode::StoreWiped => pb::ErrorCode::StoreWiped,
        ErrorCode::StoreMissing => pb::ErrorCode::StoreMissing,
        ErrorCode::BadSignature => pb::ErrorCode::BadSignature,
        ErrorCode::WrongDevice => pb::ErrorCode::WrongDevice,
        ErrorCode::Replayed => pb::ErrorCode::Replayed,
        ErrorCode::Expired => pb::ErrorCode::Expired,
        ErrorCode::MalformedCommand => pb::ErrorCode::MalformedCommand,
        ErrorCode::AlreadyAnswered => pb::ErrorCode::AlreadyAnswered,
        ErrorCode::Internal => pb::ErrorCode::Internal,
    }
}

/// A device's error code; an unknown number becomes `Internal` (a newer device may know more).
pub fn error_code_from_pb(value: i32) -> ErrorCode {
    match pb::ErrorCode::try_from(value) {
        Ok(pb::ErrorCode::NoPasscodePolicy) => ErrorCode::NoPasscodePolicy,
        Ok(pb::ErrorCode::ScopeNotSupported) => ErrorCode::ScopeNotSupported,
        Ok(pb::ErrorCode::NoEscrowedToken) => ErrorCode::NoEscrowedToken,
        Ok(pb::ErrorCode::ApiLevel) => ErrorCode::ApiLevel,
        Ok(pb::ErrorCode::NoPasscode) => ErrorCode::NoPasscode,
        Ok(pb::ErrorCode::TokenMissing) => ErrorCode::TokenMissing,
        Ok(pb::ErrorCode::TokenNotActive) => ErrorCode::TokenNotActive,
        Ok(pb::ErrorCode::TokenMismatch) => ErrorCode::TokenMismatch,
        Ok(pb::ErrorCode::PasscodePolicyViolation) => ErrorCode::PasscodePolicyViolation,
        Ok(pb::ErrorCode::StoreWiped) => ErrorCode::StoreWiped,
        Ok(pb::ErrorCode::StoreMissing) => ErrorCode::StoreMissing,
        Ok(pb::ErrorCode::BadSignature) => ErrorCode::BadSignature,
        Ok(pb::ErrorCode::WrongDevice) => ErrorCode::WrongDevice,
        Ok(pb::ErrorCode::Replayed) => ErrorCode::Replayed,
        Ok(pb::ErrorCode::Expired) => ErrorCode::Expired,
        Ok(pb::ErrorCode::MalformedCommand) => ErrorCode::MalformedCommand,
        Ok(pb::ErrorCode::AlreadyAnswered) => ErrorCode::AlreadyAnswered,
        _ => ErrorCode::Internal,
    }
}

/// `Ok(None)` for ACTION_STATE_UNSPECIFIED (a filter that matches every state).
pub fn optional_action_state_from_pb(
    value: i32,
    field: &'static str,
) -> Result<Option<ActionState>, ServiceError> {
    match pb::ActionState::try_from(value) {
        Ok(pb::ActionState::Unspecified) => Ok(None),
        Ok(pb::ActionState::Pending) => Ok(Some(ActionState::Pending)),
        Ok(pb::ActionState::Active) => Ok(Some(ActionState::Active)),
        Ok(pb::ActionState::Done) => Ok(Some(ActionState::Done)),
        Ok(pb::ActionState::Failed) => Ok(Some(ActionState::Failed)),
        Ok(pb::ActionState::Canceled) => Ok(Some(ActionState::Canceled)),
        Ok(pb::ActionState::NotSupported) => Ok(Some(ActionState::NotSupported)),
        Ok(pb::ActionState::Expired) => Ok(Some(ActionState::Expired)),
        Err(_) => Err(invalid(field, format!("unknown action state {value}"))),
    }
}

pub fn action_state_to_pb(state: ActionState) -> pb::ActionState {
    match state {
        ActionState::Pending => pb::ActionState::Pending,
        ActionState::Active => pb::ActionState::Active,
        ActionState::Done => pb::ActionState::Done,
        ActionState::Failed => pb::ActionState::Failed,
        ActionState::Canceled => pb::ActionState::Canceled,
        ActionState::NotSupported => pb::ActionState::NotSupported,
        ActionState::Expired => pb::ActionState::Expired,
    }
}

pub fn action_to_pb(action: &Action) -> pb::Action {
    pb::Action {
        action_id: action.id.clone(),
        device_id: action.device_id.clone(),
        kind: match action.kind {
            ActionKind::ResetPasscode => pb::ActionKind::ResetPasscode,
            ActionKind::RemoteLock => pb::ActionKind::RemoteLock,
        } as i32,
        scope: scope_to_pb(action.scope) as i32,
        state: action_state_to_pb(action.state) as i32,
        error_code: action
            .error_code
            .map(|c| error_code_to_pb(c) as i32)
            .unwrap_or(0),
        reason: action.reason.clone(),
        requested_by: action.requested_by.clone(),
        created_at_ms: action.created_at,
        updated_at_ms: action.updated_at,
        delivered_at_ms: action.delivered_at.unwrap_or(0),
        completed_at_ms: action.completed_at.unwrap_or(0),
        user_entered_at_ms: action.user_entered_at.unwrap_or(0),
        not_after_ms: action.not_after,
        passcode_visible_until_ms: action.passcode_visible_until.unwrap_or(0),
        sent_at_ms: action.sent_at.unwrap_or(0),
        trace_id: action.trace_id(),
        cancel_requested_at_ms: action.cancel_requested_at.unwrap_or(0),
        cancel_refusal: action.cancel_refusal.clone(),
    }
}

pub fn audit_to_pb(event: &AuditEvent) -> pb::AuditEvent {
    pb::AuditEvent {
        id: event.id,
        at_ms: event.at,
        principal: event.principal.clone(),
        operation: event.operation.clone(),
        device_id: event.device_id.clone().unwrap_or_default(),
        action_id: event.action_id.clone().unwrap_or_default(),
        result: event.result.clone(),
        detail: event.detail.clone(),
    }
}

pub fn role_to_pb(role: &Role) -> pb::Role {
    pb::Role {
        name: role.name.clone(),
        permissions: role
            .permissions
            .iter()
            .map(|p| p.as_str().to_string())
            .collect(),
        built_in: role.built_in,
    }
}

pub fn principal_to_pb(principal: &Principal) -> pb::Principal {
    pb::Principal {
        name: principal.name.clone(),
        roles: principal.role_names(),
        created_at_ms: principal.created_at,
        assignments: principal
            .assignments
            .iter()
            .map(|a| pb::RoleAssignment {
                role: a.role.clone(),
                group: a.group.clone().unwrap_or_default(),
            })
            .collect(),
        token_issued_at_ms: principal.token.map_or(0, |t| t.issued_at),
        token_expires_at_ms: principal.token.map_or(0, |t| t.expires_at),
        token_revoked_at_ms: principal.token.and_then(|t| t.revoked_at).unwrap_or(0),
    }
}

/// A request's `token_ttl_seconds`: 0 is the server's default.
pub fn token_ttl_from_pb(seconds: u64) -> Option<crate::clock::Millis> {
    (seconds > 0).then(|| seconds.saturating_mul(crate::clock::SECOND))
}

/// The stores a Hello reports. PROTOCOL.md CP-SESSION-3: without the status of every store the
/// control plane cannot show whether a reset could work, so a Hello without it is refused.
pub fn hello_stores_from_pb(hello: &pb::Hello) -> Result<Vec<StoreStatus>, ServiceError> {
    let status = hello
        .status
        .as_ref()
        .ok_or_else(|| ServiceError::InvalidArgument {
            field: "hello.status",
            problem: "required, with the status of every credential store".into(),
        })?;
    status.stores.iter().map(store_status_from_pb).collect()
}

/// A device's session message (other than its Hello) as a domain report; a malformed one is
/// INVALID_ARGUMENT naming its field.
/// A device's optional `traceparent` in a report: `None` when empty. A malformed one is logged
/// and ignored, as W3C Trace Context asks of a receiver: tracing never fails a device's report.
fn reported_trace(field: &'static str, value: &str) -> Option<TraceParent> {
    if value.is_empty() {
        return None;
    }
    TraceParent::parse(value)
        .inspect_err(|error| tracing::warn!(field, %error, "ignored a malformed traceparent"))
        .ok()
}

pub fn device_report_from_pb(message: pb::DeviceMessage) -> Result<DeviceReport, ServiceError> {
    use pb::device_message::Body;
    let invalid = |field: &'static str, problem: &str| ServiceError::InvalidArgument {
        field,
        problem: problem.to_string(),
    };
    Ok(match message.body {
        None => return Err(invalid("body", "an empty DeviceMessage")),
        Some(Body::Hello(_)) => return Err(invalid("hello", "sent twice in one session")),
        Some(Body::Proof(_)) => {
            return Err(invalid("proof", "sent again after the session was proven"));
        }
        Some(Body::Status(status)) => DeviceReport::Status(
            status
                .stores
                .iter()
                .map(store_status_from_pb)
                .collect::<Result<_, _>>()?,
        ),
        Some(Body::EscrowToken(update)) => DeviceReport::EscrowToken {
            scope: scope_from_pb(update.scope, "escrow_token.scope")?,
            token: EscrowToken::new(update.token),
        },
        Some(Body::Ack(ack)) => DeviceReport::Ack {
            device_trace: reported_trace("ack.traceparent", &ack.traceparent),
            command_id: ack.command_id,
        },
        Some(Body::Result(result)) => {
            // PROTOCOL.md CP-RESULT-2: a result says exactly one thing, with the device's time.
            if result.completed_at_ms == 0 {
                return Err(invalid(
                    "result.completed_at_ms",
                    "must be the device's time when it ran or refused the command",
                ));
            }
            let error = match (result.success, result.error_code) {
                (true, 0) => None,
                (true, _) => {
                    return Err(invalid(
                        "result.error_code",
                        "must be unspecified when success is true",
                    ));
                }
                (false, 0) => {
                    return Err(invalid(
                        "result.error_code",
                        "must name why the command failed when success is false",
                    ));
                }
                (false, code) => match device_error_code_from_pb(code) {
                    Some(code) => Some((code, result.reason)),
                    None => {
                        return Err(invalid(
                            "result.error_code",
                            "is not a code a device reports (see PROTOCOL.md, error codes)",
                        ));
                    }
                },
            };
            DeviceReport::Result {
                device_trace: reported_trace("result.traceparent", &result.traceparent),
                command_id: result.command_id,
                success: result.success,
                error,
                completed_at: result.completed_at_ms,
            }
        }
        Some(Body::UserEvent(event)) => match pb::user_event::Kind::try_from(event.kind) {
            Ok(pb::user_event::Kind::NewPasscodeEntered) => {
                if event.at_ms == 0 {
                    return Err(invalid(
                        "user_event.at_ms",
                        "must be the device's time when the user entered the passcode",
                    ));
                }
                DeviceReport::NewPasscodeEntered {
                    command_id: event.command_id,
                    at: event.at_ms,
                }
            }
            Ok(pb::user_event::Kind::StoreWiped) => DeviceReport::StoreWiped {
                scope: scope_from_pb(event.scope, "user_event.scope")?,
            },
            _ => return Err(invalid("user_event.kind", "unknown kind")),
        },
        Some(Body::PolicyRefusal(refusal)) => DeviceReport::PolicyRefused {
            scope: match refusal.scope {
                0 => None,
                scope => Some(scope_from_pb(scope, "policy_refusal.scope")?),
            },
            version: refusal.version,
            code: device_error_code_from_pb(refusal.error_code).ok_or_else(|| {
                invalid(
                    "policy_refusal.error_code",
                    "is not a code a device reports (see PROTOCOL.md, error codes)",
                )
            })?,
            reason: refusal.reason,
        },
    })
}

/// A code a device may report: the control plane's own codes (no policy, scope not supported,
/// no escrowed token) and unknown values are not.
fn device_error_code_from_pb(value: i32) -> Option<ErrorCode> {
    match pb::ErrorCode::try_from(value).ok()? {
        pb::ErrorCode::Unspecified
        | pb::ErrorCode::NoPasscodePolicy
        | pb::ErrorCode::ScopeNotSupported
        | pb::ErrorCode::NoEscrowedToken => None,
        _ => match error_code_from_pb(value) {
            ErrorCode::Internal if value != pb::ErrorCode::Internal as i32 => None,
            code => Some(code),
        },
    }
}
