//! Conversions between protobuf messages and the device model's types, at the gRPC edge.

use crate::device::{
    Command, CommandKind, CommandResult, Complexity, ErrorCode, EscrowToken, KeyUpdate,
    Notification, Ownership, Passcode, PasscodePolicy, PasscodeType, PolicyRefusal, PolicyUpdate,
    Scope, StoreStatus, TokenState,
};
use droidfleet_proto::v1 as pb;
use droidfleet_telemetry::traceparent::TraceParent;
use prost::Message;

pub(crate) fn ownership_to_pb(ownership: Ownership) -> pb::Ownership {
    match ownership {
        Ownership::Cosu => pb::Ownership::Cosu,
        Ownership::Cobo => pb::Ownership::Cobo,
        Ownership::Cope => pb::Ownership::Cope,
        Ownership::Byod => pb::Ownership::Byod,
        Ownership::Aosp => pb::Ownership::Aosp,
    }
}

pub(crate) fn scope_to_pb(scope: Scope) -> pb::CredentialScope {
    match scope {
        Scope::Device => pb::CredentialScope::Device,
        Scope::WorkProfile => pb::CredentialScope::WorkProfile,
    }
}

pub(crate) fn scope_from_pb(value: i32) -> Option<Scope> {
    match pb::CredentialScope::try_from(value) {
        Ok(pb::CredentialScope::Device) => Some(Scope::Device),
        Ok(pb::CredentialScope::WorkProfile) => Some(Scope::WorkProfile),
        _ => None,
    }
}

pub(crate) fn store_status_to_pb(status: &StoreStatus) -> pb::StoreStatus {
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
        throttled_until_ms: status.throttled_until_ms,
        wiped: status.wiped,
        separate_challenge: status.separate_challenge,
        require_entry: status.require_entry,
        // Filled by the session from the management app's tokens; the model holds none.
        escrow_token_fingerprint: Vec::new(),
    }
}

pub(crate) fn notification_to_pb(notification: &Notification) -> pb::Notification {
    pb::Notification {
        id: notification.id.clone(),
        scope: scope_to_pb(notification.scope) as i32,
        title: notification.title.clone(),
        text: notification.text.clone(),
    }
}

pub(crate) fn policy_from_pb(policy: &pb::PasscodePolicy) -> Option<PasscodePolicy> {
    let passcode_type = match pb::PasscodeType::try_from(policy.r#type).ok()? {
        pb::PasscodeType::Pin => PasscodeType::Pin,
        pb::PasscodeType::NumericComplex => PasscodeType::NumericComplex,
        pb::PasscodeType::Alphanumeric => PasscodeType::Alphanumeric,
        pb::PasscodeType::Complex => PasscodeType::Complex,
        pb::PasscodeType::Unspecified => return None,
    };
    let complexity = match pb::PasscodeComplexity::try_from(policy.complexity).ok()? {
        pb::PasscodeComplexity::Unspecified => Complexity::Unspecified,
        pb::PasscodeComplexity::Low => Complexity::Low,
        pb::PasscodeComplexity::Medium => Complexity::Medium,
        pb::PasscodeComplexity::High => Complexity::High,
    };
    Some(PasscodePolicy {
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

pub(crate) fn policy_to_pb(policy: &PasscodePolicy) -> pb::PasscodePolicy {
    pb::PasscodePolicy {
        r#type: match policy.passcode_type {
            PasscodeType::Unspecified => pb::PasscodeType::Unspecified,
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

pub(crate) fn error_code_to_pb(code: ErrorCode) -> pb::ErrorCode {
    match code {
        ErrorCode::TokenMissing => pb::ErrorCode::TokenMissing,
        ErrorCode::TokenNotActive => pb::ErrorCode::TokenNotActive,
        ErrorCode::TokenMismatch => pb::ErrorCode::TokenMismatch,
        ErrorCode::PasscodePolicyViolation => pb::ErrorCode::PasscodePolicyViolation,
        ErrorCode::StoreWiped => pb::ErrorCode::StoreWiped,
        ErrorCode::StoreMissing => pb::ErrorCode::StoreMissing,
        ErrorCode::ApiLevel => pb::ErrorCode::ApiLevel,
        ErrorCode::NoPasscode => pb::ErrorCode::NoPasscode,
        ErrorCode::BadSignature => pb::ErrorCode::BadSignature,
        ErrorCode::WrongDevice => pb::ErrorCode::WrongDevice,
        ErrorCode::Replayed => pb::ErrorCode::Replayed,
        ErrorCode::Expired => pb::ErrorCode::Expired,
        ErrorCode::MalformedCommand => pb::ErrorCode::MalformedCommand,
        ErrorCode::AlreadyAnswered => pb::ErrorCode::AlreadyAnswered,
        ErrorCode::Internal => pb::ErrorCode::Internal,
    }
}

pub(crate) fn command_result_to_pb(result: &CommandResult) -> pb::CommandResult {
    let (error_code, reason) = match &result.error {
        Some((code, reason)) => (error_code_to_pb(*code) as i32, reason.clone()),
        None => (0, String::new()),
    };
    pb::CommandResult {
        command_id: result.command_id.clone(),
        success: result.success,
        error_code,
        reason,
        completed_at_ms: result.completed_at_ms,
        traceparent: String::new(),
    }
}

/// Decodes a signed command's body (`droidfleet.v1.CommandBody`) into the device model's command;
/// `None` when it is not a well-formed command. [`device::Device::run_command`] takes it as its
/// decoder.
pub fn decode_command(body: &[u8]) -> Option<Command> {
    let body = pb::CommandBody::decode(body).ok()?;
    let kind = match body.kind? {
        pb::command_body::Kind::ResetPasscode(reset) => {
            let flags: Vec<_> = reset
                .flags
                .iter()
                .filter_map(|f| pb::ResetFlag::try_from(*f).ok())
                .collect();
            CommandKind::ResetPasscode {
                scope: scope_from_pb(reset.scope)?,
                new_passcode: Passcode::new(reset.new_passcode),
                escrow_token: EscrowToken::new(reset.escrow_token),
                require_entry: flags.contains(&pb::ResetFlag::RequireEntry),
                lock_now: flags.contains(&pb::ResetFlag::LockNow),
            }
        }
        pb::command_body::Kind::RemoteLock(lock) => CommandKind::RemoteLock {
            scope: scope_from_pb(lock.scope)?,
        },
        pb::command_body::Kind::Cancel(cancel) if !cancel.command_id.is_empty() => {
            CommandKind::Cancel {
                command_id: cancel.command_id,
            }
        }
        pb::command_body::Kind::Cancel(_) => return None,
    };
    Some(Command {
        traceparent: TraceParent::parse(&body.traceparent).ok(),
        command_id: body.command_id,
        device_id: body.device_id,
        sequence: body.sequence,
        not_after_ms: body.not_after_ms,
        kind,
    })
}

/// Decodes a signed policy's body (`droidfleet.v1.PolicyBody`); `None` when it is not a
/// well-formed policy. [`device::Device::apply_signed_policy`] takes it as its decoder.
pub fn decode_policy(body: &[u8]) -> Option<PolicyUpdate> {
    let body = pb::PolicyBody::decode(body).ok()?;
    let policy = match &body.policy {
        Some(policy) => Some(policy_from_pb(policy)?),
        None => None,
    };
    Some(PolicyUpdate {
        device_id: body.device_id,
        scope: scope_from_pb(body.scope)?,
        policy,
        version: body.version,
    })
}

/// Decodes a signed key update's body (`droidfleet.v1.KeyUpdateBody`); `None` when it does not
/// parse. [`device::Device::apply_key_update`] takes it as its decoder.
pub fn decode_key_update(body: &[u8]) -> Option<KeyUpdate> {
    let body = pb::KeyUpdateBody::decode(body).ok()?;
    Some(KeyUpdate {
        device_id: body.device_id,
        public_key: body.public_key,
    })
}

pub(crate) fn policy_refusal_to_pb(refusal: &PolicyRefusal) -> pb::PolicyRefusal {
    pb::PolicyRefusal {
        scope: refusal.scope.map_or(0, |scope| scope_to_pb(scope) as i32),
        version: refusal.version,
        error_code: error_code_to_pb(refusal.code) as i32,
        reason: refusal.reason.clone(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_model_signs_policies_in_the_protocols_domain() {
        assert_eq!(
            crate::device::crypto::POLICY_CONTEXT,
            droidfleet_proto::signing::POLICY_CONTEXT
        );
    }

    #[test]
    fn the_model_names_and_updates_keys_as_the_protocol_does() {
        assert_eq!(
            crate::device::crypto::KEY_UPDATE_CONTEXT,
            droidfleet_proto::signing::KEY_UPDATE_CONTEXT
        );
        let public_key = [9u8; 32];
        assert_eq!(
            crate::device::crypto::key_id(&public_key),
            droidfleet_proto::signing::key_id(&public_key)
        );
    }
}
