//! Bad input, as a table: every admin and gateway RPC given an empty, oversized or malformed id or
//! field answers INVALID_ARGUMENT with a message naming the field, and writes nothing. Each row
//! changes one field of a request that is otherwise valid (the last test proves the valid
//! requests pass), sends it over real gRPC, and compares the whole database (every table but the
//! audit log, which records the refusal) before and after.

use crate::support::{RawDevice, World, hello, open_session, pin_policy};
use droidfleet_proto::v1 as pb;
use pb::device_message::Body;
use tonic::Code;

const INVALID: Code = Code::InvalidArgument;

/// One request of the table: the RPC and its message.
enum Call {
    ListDevices(pb::ListDevicesRequest),
    SearchDevices(pb::SearchDevicesRequest),
    GetDevice(pb::GetDeviceRequest),
    WatchDevice(pb::GetDeviceRequest),
    CreateEnrollmentToken(pb::CreateEnrollmentTokenRequest),
    ReEnrollDevice(pb::ReEnrollDeviceRequest),
    MoveDevice(pb::MoveDeviceRequest),
    AssignPasscodePolicy(pb::AssignPasscodePolicyRequest),
    ResetPasscode(pb::ResetPasscodeRequest),
    RemoteLock(pb::RemoteLockRequest),
    GetAction(pb::GetActionRequest),
    ListActions(pb::ListActionsRequest),
    WatchAction(pb::GetActionRequest),
    CancelAction(pb::GetActionRequest),
    RevealPasscode(pb::GetActionRequest),
    ListAuditEvents(pb::ListAuditEventsRequest),
    CreateRole(pb::Role),
    UpdateRole(pb::Role),
    DeleteRole(pb::DeleteRoleRequest),
    CreatePrincipal(pb::CreatePrincipalRequest),
    AssignRole(pb::RoleAssignmentRequest),
    UnassignRole(pb::RoleAssignmentRequest),
    DeletePrincipal(pb::DeletePrincipalRequest),
    RotatePrincipalToken(pb::RotatePrincipalTokenRequest),
    RevokePrincipalTokens(pb::RevokePrincipalTokensRequest),
    GetCaller(pb::GetCallerRequest),
    Enroll(pb::EnrollRequest),
    /// The test device's Session with these messages (normally a Hello first).
    Session(Vec<pb::DeviceMessage>),
}

impl Call {
    fn rpc(&self) -> &'static str {
        match self {
            Call::ListDevices(_) => "ListDevices",
            Call::SearchDevices(_) => "SearchDevices",
            Call::GetDevice(_) => "GetDevice",
            Call::WatchDevice(_) => "WatchDevice",
            Call::CreateEnrollmentToken(_) => "CreateEnrollmentToken",
            Call::ReEnrollDevice(_) => "ReEnrollDevice",
            Call::MoveDevice(_) => "MoveDevice",
            Call::AssignPasscodePolicy(_) => "AssignPasscodePolicy",
            Call::ResetPasscode(_) => "ResetPasscode",
            Call::RemoteLock(_) => "RemoteLock",
            Call::GetAction(_) => "GetAction",
            Call::ListActions(_) => "ListActions",
            Call::WatchAction(_) => "WatchAction",
            Call::CancelAction(_) => "CancelAction",
            Call::RevealPasscode(_) => "RevealPasscode",
            Call::ListAuditEvents(_) => "ListAuditEvents",
            Call::CreateRole(_) => "CreateRole",
            Call::UpdateRole(_) => "UpdateRole",
            Call::DeleteRole(_) => "DeleteRole",
            Call::CreatePrincipal(_) => "CreatePrincipal",
            Call::AssignRole(_) => "AssignRole",
            Call::UnassignRole(_) => "UnassignRole",
            Call::DeletePrincipal(_) => "DeletePrincipal",
            Call::RotatePrincipalToken(_) => "RotatePrincipalToken",
            Call::RevokePrincipalTokens(_) => "RevokePrincipalTokens",
            Call::GetCaller(_) => "GetCaller",
            Call::Enroll(_) => "Enroll",
            Call::Session(_) => "Session",
        }
    }
}

/// One row: RPC, field, what is wrong with it, the request, the status code and a substring
/// the message must contain (the field's name).
struct Row {
    rpc: &'static str,
    field: &'static str,
    bad: &'static str,
    call: Call,
    code: Code,
    says: &'static str,
}

fn row(
    rpc: &'static str,
    field: &'static str,
    bad: &'static str,
    call: Call,
    code: Code,
    says: &'static str,
) -> Row {
    Row {
        rpc,
        field,
        bad,
        call,
        code,
        says,
    }
}

/// The ids of what the table's requests refer to.
struct Fixture {
    device: RawDevice,
    other_device: String,
    action: String,
    enrollment_token: String,
}

/// Valid requests; each row spoils one field.
mod valid {
    use super::*;

    pub(super) fn device(f: &Fixture) -> pb::GetDeviceRequest {
        pb::GetDeviceRequest {
            device_id: f.device.device_id.clone(),
        }
    }
    pub(super) fn action(f: &Fixture) -> pb::GetActionRequest {
        pb::GetActionRequest {
            action_id: f.action.clone(),
            ..Default::default()
        }
    }
    pub(super) fn enrollment_token() -> pb::CreateEnrollmentTokenRequest {
        pb::CreateEnrollmentTokenRequest {
            max_uses: 2,
            ttl_seconds: 60,
            group: "north".into(),
        }
    }
    pub(super) fn re_enroll(f: &Fixture) -> pb::ReEnrollDeviceRequest {
        pb::ReEnrollDeviceRequest {
            device_id: f.other_device.clone(),
            ttl_seconds: 60,
        }
    }
    pub(super) fn move_device(f: &Fixture) -> pb::MoveDeviceRequest {
        pb::MoveDeviceRequest {
            device_id: f.other_device.clone(),
            group: "south".into(),
        }
    }
    pub(super) fn policy(f: &Fixture) -> pb::AssignPasscodePolicyRequest {
        pb::AssignPasscodePolicyRequest {
            device_id: f.device.device_id.clone(),
            scope: pb::CredentialScope::Device as i32,
            policy: Some(pb::PasscodePolicy {
                r#type: pb::PasscodeType::Complex as i32,
                min_length: 8,
                complexity: pb::PasscodeComplexity::High as i32,
                min_letters: 1,
                min_upper_case: 1,
                min_lower_case: 1,
                min_digits: 1,
                min_symbols: 1,
                min_non_letters: 1,
                max_failed_attempts_before_wipe: 10,
            }),
        }
    }
    pub(super) fn reset(f: &Fixture) -> pb::ResetPasscodeRequest {
        pb::ResetPasscodeRequest {
            device_id: f.device.device_id.clone(),
            scope: pb::CredentialScope::Device as i32,
            new_passcode: "583920".into(),
            ttl_seconds: 60,
        }
    }
    pub(super) fn lock(f: &Fixture) -> pb::RemoteLockRequest {
        pb::RemoteLockRequest {
            device_id: f.device.device_id.clone(),
            scope: pb::CredentialScope::Device as i32,
            ttl_seconds: 60,
        }
    }
    pub(super) fn audit(f: &Fixture) -> pb::ListAuditEventsRequest {
        pb::ListAuditEventsRequest {
            device_id: f.device.device_id.clone(),
            principal: "admin".into(),
            operation: "ResetPasscode".into(),
            since_ms: 1,
            until_ms: 2,
            limit: 10,
            ..Default::default()
        }
    }
    pub(super) fn role() -> pb::Role {
        pb::Role {
            name: "Table role".into(),
            permissions: vec!["ManagedDevices.Read".into()],
            built_in: false,
        }
    }
    pub(super) fn principal() -> pb::CreatePrincipalRequest {
        pb::CreatePrincipalRequest {
            name: "table.principal".into(),
            roles: vec!["Read Only Operator".into()],
            assignments: vec![pb::RoleAssignment {
                role: "Help Desk Operator".into(),
                group: "north".into(),
            }],
            token_ttl_seconds: 3_600,
        }
    }
    pub(super) fn rotation() -> pb::RotatePrincipalTokenRequest {
        pb::RotatePrincipalTokenRequest {
            name: "table.principal".into(),
            token_ttl_seconds: 3_600,
            grace_seconds: 60,
        }
    }
    pub(super) fn assignment() -> pb::RoleAssignmentRequest {
        pb::RoleAssignmentRequest {
            principal: "admin".into(),
            role: "Read Only Operator".into(),
            group: "north".into(),
        }
    }
    pub(super) fn enroll(f: &Fixture) -> pb::EnrollRequest {
        pb::EnrollRequest {
            enrollment_token: f.enrollment_token.clone(),
            ownership: pb::Ownership::Cosu as i32,
            display_name: "table-phone".into(),
            device_public_key: vec![9; 32],
        }
    }
    pub(super) fn store(scope: pb::CredentialScope) -> pb::StoreStatus {
        pb::StoreStatus {
            scope: scope as i32,
            has_passcode: true,
            token_state: pb::TokenState::Active as i32,
            ..Default::default()
        }
    }
    pub(super) fn status() -> pb::DeviceStatus {
        pb::DeviceStatus {
            stores: vec![store(pb::CredentialScope::Device)],
        }
    }
}

fn with<T>(mut value: T, change: impl FnOnce(&mut T)) -> T {
    change(&mut value);
    value
}

fn message(body: Body) -> pb::DeviceMessage {
    pb::DeviceMessage { body: Some(body) }
}

/// The test device's session: a valid Hello, then `body`.
fn after_hello(f: &Fixture, body: Body) -> Call {
    Call::Session(vec![hello(&f.device.device_id), message(body)])
}

/// The test device's session opened with a Hello changed by `change`.
fn bad_hello(f: &Fixture, change: impl FnOnce(&mut pb::Hello)) -> Call {
    let Some(Body::Hello(mut first)) = hello(&f.device.device_id).body else {
        unreachable!()
    };
    change(&mut first);
    Call::Session(vec![message(Body::Hello(first))])
}

#[rustfmt::skip]
fn table(f: &Fixture) -> Vec<Row> {
    use pb::CredentialScope::{Device as DEVICE, WorkProfile as WORK};
    let long_id = "d".repeat(129);
    let long_name = "n".repeat(65);
    let dev = || valid::device(f);
    let act = || valid::action(f);
    let token = || valid::enrollment_token();
    let policy = || valid::policy(f);
    let set_policy = |change: fn(&mut pb::PasscodePolicy)| {
        Call::AssignPasscodePolicy(with(policy(), |r| change(r.policy.as_mut().unwrap())))
    };
    let reset = || valid::reset(f);
    let lock = || valid::lock(f);
    let audit = || valid::audit(f);
    let enroll = || valid::enroll(f);
    let escrow = |scope: i32, token: Vec<u8>| Body::EscrowToken(pb::EscrowTokenUpdate { scope, token });
    let status = |stores: Vec<pb::StoreStatus>| Body::Status(pb::DeviceStatus { stores });
    let result = |command_id: &str, reason: String| {
        Body::Result(pb::CommandResult {
            command_id: command_id.to_string(),
            success: false,
            error_code: pb::ErrorCode::TokenMismatch as i32,
            reason,
            completed_at_ms: 1,
            traceparent: String::new(),
        })
    };
    let event = |kind: i32, scope: i32, command_id: &str| {
        Body::UserEvent(pb::UserEvent {
            kind,
            scope,
            at_ms: 1,
            command_id: command_id.to_string(),
        })
    };
    let entered = pb::user_event::Kind::NewPasscodeEntered as i32;
    let wiped = pb::user_event::Kind::StoreWiped as i32;
    let ack = |id: &str| {
        Body::Ack(pb::CommandAck {
            command_id: id.to_string(),
            traceparent: String::new(),
        })
    };

    vec![
        // ---- AdminService
        row("ListDevices", "group", "space", Call::ListDevices(pb::ListDevicesRequest { group: "two words".into(), ..Default::default() }), INVALID, "group"),
        row("ListDevices", "group", "65 chars", Call::ListDevices(pb::ListDevicesRequest { group: long_name.clone(), ..Default::default() }), INVALID, "group"),
        row("ListDevices", "group", "slash", Call::ListDevices(pb::ListDevicesRequest { group: "a/b".into(), ..Default::default() }), INVALID, "group"),
        row("ListDevices", "page_size", "negative", Call::ListDevices(pb::ListDevicesRequest { page_size: -1, ..Default::default() }), INVALID, "page_size"),
        row("ListDevices", "page_token", "not base64", Call::ListDevices(pb::ListDevicesRequest { page_token: "%%%".into(), ..Default::default() }), INVALID, "page_token"),
        row("ListDevices", "page_token", "unknown list", Call::ListDevices(pb::ListDevicesRequest { page_token: "eHl6".into(), ..Default::default() }), INVALID, "page_token"),
        row("SearchDevices", "page_size", "negative", Call::SearchDevices(pb::SearchDevicesRequest { page_size: -1, ..Default::default() }), INVALID, "page_size"),
        row("SearchDevices", "page_token", "not base64", Call::SearchDevices(pb::SearchDevicesRequest { page_token: "%%%".into(), ..Default::default() }), INVALID, "page_token"),
        row("SearchDevices", "page_token", "no cursor", Call::SearchDevices(pb::SearchDevicesRequest { page_token: "eHl6".into(), ..Default::default() }), INVALID, "page_token"),
        row("SearchDevices", "page_token", "oversized", Call::SearchDevices(pb::SearchDevicesRequest { page_token: "A".repeat(2000), ..Default::default() }), INVALID, "page_token"),
        row("SearchDevices", "search", "129 bytes", Call::SearchDevices(pb::SearchDevicesRequest { search: long_id.clone(), ..Default::default() }), INVALID, "search"),
        row("SearchDevices", "search", "newline", Call::SearchDevices(pb::SearchDevicesRequest { search: "a\nb".into(), ..Default::default() }), INVALID, "search"),
        row("SearchDevices", "ownership", "unknown", Call::SearchDevices(pb::SearchDevicesRequest { ownership: 42, ..Default::default() }), INVALID, "ownership"),
        row("SearchDevices", "group", "slash", Call::SearchDevices(pb::SearchDevicesRequest { group: "a/b".into(), ..Default::default() }), INVALID, "group"),
        row("SearchDevices", "latest_action_state", "unknown", Call::SearchDevices(pb::SearchDevicesRequest { latest_action_state: 42, ..Default::default() }), INVALID, "latest_action_state"),
        row("GetCaller", "device_id", "space", Call::GetCaller(pb::GetCallerRequest { device_id: "dev 1".into() }), INVALID, "device_id"),
        row("GetCaller", "device_id", "129 bytes", Call::GetCaller(pb::GetCallerRequest { device_id: long_id.clone() }), INVALID, "device_id"),
        row("GetDevice", "device_id", "empty", Call::GetDevice(with(dev(), |r| r.device_id.clear())), INVALID, "device_id"),
        row("GetDevice", "device_id", "129 bytes", Call::GetDevice(with(dev(), |r| r.device_id = long_id.clone())), INVALID, "device_id"),
        row("GetDevice", "device_id", "space", Call::GetDevice(with(dev(), |r| r.device_id = "dev 1".into())), INVALID, "device_id"),
        row("GetDevice", "device_id", "non-ASCII", Call::GetDevice(with(dev(), |r| r.device_id = "dév".into())), INVALID, "device_id"),
        row("GetDevice", "device_id", "newline", Call::GetDevice(with(dev(), |r| r.device_id = "dev\n1".into())), INVALID, "device_id"),
        row("WatchDevice", "device_id", "empty", Call::WatchDevice(with(dev(), |r| r.device_id.clear())), INVALID, "device_id"),
        row("WatchDevice", "device_id", "129 bytes", Call::WatchDevice(with(dev(), |r| r.device_id = long_id.clone())), INVALID, "device_id"),
        row("CreateEnrollmentToken", "max_uses", "1000001", Call::CreateEnrollmentToken(with(token(), |r| r.max_uses = 1_000_001)), INVALID, "max_uses"),
        row("CreateEnrollmentToken", "ttl_seconds", "a year and a second", Call::CreateEnrollmentToken(with(token(), |r| r.ttl_seconds = 365 * 86_400 + 1)), INVALID, "ttl_seconds"),
        row("CreateEnrollmentToken", "ttl_seconds", "u64::MAX", Call::CreateEnrollmentToken(with(token(), |r| r.ttl_seconds = u64::MAX)), INVALID, "ttl_seconds"),
        row("CreateEnrollmentToken", "group", "space", Call::CreateEnrollmentToken(with(token(), |r| r.group = "bad group".into())), INVALID, "group"),
        row("CreateEnrollmentToken", "group", "65 chars", Call::CreateEnrollmentToken(with(token(), |r| r.group = long_name.clone())), INVALID, "group"),
        row("CreateEnrollmentToken", "group", "non-ASCII", Call::CreateEnrollmentToken(with(token(), |r| r.group = "süd".into())), INVALID, "group"),
        row("ReEnrollDevice", "device_id", "empty", Call::ReEnrollDevice(with(valid::re_enroll(f), |r| r.device_id.clear())), INVALID, "device_id"),
        row("ReEnrollDevice", "device_id", "129 bytes", Call::ReEnrollDevice(with(valid::re_enroll(f), |r| r.device_id = long_id.clone())), INVALID, "device_id"),
        row("ReEnrollDevice", "ttl_seconds", "u64::MAX", Call::ReEnrollDevice(with(valid::re_enroll(f), |r| r.ttl_seconds = u64::MAX)), INVALID, "ttl_seconds"),
        row("MoveDevice", "device_id", "empty", Call::MoveDevice(with(valid::move_device(f), |r| r.device_id.clear())), INVALID, "device_id"),
        row("MoveDevice", "device_id", "129 bytes", Call::MoveDevice(with(valid::move_device(f), |r| r.device_id = long_id.clone())), INVALID, "device_id"),
        row("MoveDevice", "group", "empty", Call::MoveDevice(with(valid::move_device(f), |r| r.group.clear())), INVALID, "group"),
        row("MoveDevice", "group", "space", Call::MoveDevice(with(valid::move_device(f), |r| r.group = "bad group".into())), INVALID, "group"),
        row("MoveDevice", "group", "65 chars", Call::MoveDevice(with(valid::move_device(f), |r| r.group = long_name.clone())), INVALID, "group"),
        row("AssignPasscodePolicy", "device_id", "empty", Call::AssignPasscodePolicy(with(policy(), |r| r.device_id.clear())), INVALID, "device_id"),
        row("AssignPasscodePolicy", "device_id", "129 bytes", Call::AssignPasscodePolicy(with(policy(), |r| r.device_id = long_id.clone())), INVALID, "device_id"),
        row("AssignPasscodePolicy", "scope", "unspecified", Call::AssignPasscodePolicy(with(policy(), |r| r.scope = 0)), INVALID, "scope"),
        row("AssignPasscodePolicy", "scope", "99", Call::AssignPasscodePolicy(with(policy(), |r| r.scope = 99)), INVALID, "scope"),
        row("AssignPasscodePolicy", "scope", "work profile of a COSU", Call::AssignPasscodePolicy(with(policy(), |r| r.scope = WORK as i32)), INVALID, "scope"),
        row("AssignPasscodePolicy", "policy.type", "unspecified", set_policy(|p| p.r#type = 0), INVALID, "policy.type"),
        row("AssignPasscodePolicy", "policy.type", "99", set_policy(|p| p.r#type = 99), INVALID, "policy.type"),
        row("AssignPasscodePolicy", "policy.complexity", "99", set_policy(|p| p.complexity = 99), INVALID, "policy.complexity"),
        row("AssignPasscodePolicy", "policy.min_length", "17", set_policy(|p| p.min_length = 17), INVALID, "policy.min_length"),
        row("AssignPasscodePolicy", "policy.min_letters", "17", set_policy(|p| p.min_letters = 17), INVALID, "policy.min_letters"),
        row("AssignPasscodePolicy", "policy.min_upper_case", "17", set_policy(|p| p.min_upper_case = 17), INVALID, "policy.min_upper_case"),
        row("AssignPasscodePolicy", "policy.min_lower_case", "17", set_policy(|p| p.min_lower_case = 17), INVALID, "policy.min_lower_case"),
        row("AssignPasscodePolicy", "policy.min_digits", "17", set_policy(|p| p.min_digits = 17), INVALID, "policy.min_digits"),
        row("AssignPasscodePolicy", "policy.min_symbols", "u32::MAX", set_policy(|p| p.min_symbols = u32::MAX), INVALID, "policy.min_symbols"),
        row("AssignPasscodePolicy", "policy.min_non_letters", "17", set_policy(|p| p.min_non_letters = 17), INVALID, "policy.min_non_letters"),
        row("AssignPasscodePolicy", "policy.max_failed_attempts_before_wipe", "1001", set_policy(|p| p.max_failed_attempts_before_wipe = 1001), INVALID, "policy.max_failed_attempts_before_wipe"),
        row("ResetPasscode", "device_id", "empty", Call::ResetPasscode(with(reset(), |r| r.device_id.clear())), INVALID, "device_id"),
        row("ResetPasscode", "device_id", "129 bytes", Call::ResetPasscode(with(reset(), |r| r.device_id = long_id.clone())), INVALID, "device_id"),
        row("ResetPasscode", "device_id", "space", Call::ResetPasscode(with(reset(), |r| r.device_id = "dev 1".into())), INVALID, "device_id"),
        row("ResetPasscode", "scope", "99", Call::ResetPasscode(with(reset(), |r| r.scope = 99)), INVALID, "scope"),
        row("ResetPasscode", "new_passcode", "65 chars", Call::ResetPasscode(with(reset(), |r| r.new_passcode = "7".repeat(65))), INVALID, "new_passcode"),
        row("ResetPasscode", "new_passcode", "non-ASCII", Call::ResetPasscode(with(reset(), |r| r.new_passcode = "pässword1".into())), INVALID, "new_passcode"),
        row("ResetPasscode", "new_passcode", "newline", Call::ResetPasscode(with(reset(), |r| r.new_passcode = "1234\n56".into())), INVALID, "new_passcode"),
        row("ResetPasscode", "ttl_seconds", "7 days and a second", Call::ResetPasscode(with(reset(), |r| r.ttl_seconds = 7 * 86_400 + 1)), INVALID, "ttl_seconds"),
        row("ResetPasscode", "ttl_seconds", "u64::MAX", Call::ResetPasscode(with(reset(), |r| r.ttl_seconds = u64::MAX)), INVALID, "ttl_seconds"),
        row("RemoteLock", "device_id", "empty", Call::RemoteLock(with(lock(), |r| r.device_id.clear())), INVALID, "device_id"),
        row("RemoteLock", "device_id", "129 bytes", Call::RemoteLock(with(lock(), |r| r.device_id = long_id.clone())), INVALID, "device_id"),
        row("RemoteLock", "scope", "99", Call::RemoteLock(with(lock(), |r| r.scope = 99)), INVALID, "scope"),
        row("RemoteLock", "ttl_seconds", "7 days and a second", Call::RemoteLock(with(lock(), |r| r.ttl_seconds = 7 * 86_400 + 1)), INVALID, "ttl_seconds"),
        row("GetAction", "action_id", "empty", Call::GetAction(with(act(), |r| r.action_id.clear())), INVALID, "action_id"),
        row("GetAction", "action_id", "129 bytes", Call::GetAction(with(act(), |r| r.action_id = long_id.clone())), INVALID, "action_id"),
        row("GetAction", "action_id", "space", Call::GetAction(with(act(), |r| r.action_id = "act 1".into())), INVALID, "action_id"),
        row("ListActions", "device_id", "129 bytes", Call::ListActions(pb::ListActionsRequest { device_id: long_id.clone(), ..Default::default() }), INVALID, "device_id"),
        row("ListActions", "page_size", "negative", Call::ListActions(pb::ListActionsRequest { page_size: i32::MIN, ..Default::default() }), INVALID, "page_size"),
        row("ListActions", "page_token", "oversized", Call::ListActions(pb::ListActionsRequest { page_token: "A".repeat(2000), ..Default::default() }), INVALID, "page_token"),
        row("ListActions", "device_id", "space", Call::ListActions(pb::ListActionsRequest { device_id: "dev 1".into(), ..Default::default() }), INVALID, "device_id"),
        row("WatchAction", "action_id", "empty", Call::WatchAction(with(act(), |r| r.action_id.clear())), INVALID, "action_id"),
        row("WatchAction", "action_id", "129 bytes", Call::WatchAction(with(act(), |r| r.action_id = long_id.clone())), INVALID, "action_id"),
        row("CancelAction", "action_id", "empty", Call::CancelAction(with(act(), |r| r.action_id.clear())), INVALID, "action_id"),
        row("CancelAction", "action_id", "129 bytes", Call::CancelAction(with(act(), |r| r.action_id = long_id.clone())), INVALID, "action_id"),
        row("CancelAction", "action_id", "non-ASCII", Call::CancelAction(with(act(), |r| r.action_id = "äct".into())), INVALID, "action_id"),
        row("RevealPasscode", "action_id", "empty", Call::RevealPasscode(with(act(), |r| r.action_id.clear())), INVALID, "action_id"),
        row("RevealPasscode", "action_id", "129 bytes", Call::RevealPasscode(with(act(), |r| r.action_id = long_id.clone())), INVALID, "action_id"),
        row("ListAuditEvents", "device_id", "129 bytes", Call::ListAuditEvents(with(audit(), |r| r.device_id = long_id.clone())), INVALID, "device_id"),
        row("ListAuditEvents", "principal", "space", Call::ListAuditEvents(with(audit(), |r| r.principal = "two words".into())), INVALID, "principal"),
        row("ListAuditEvents", "principal", "65 chars", Call::ListAuditEvents(with(audit(), |r| r.principal = long_name.clone())), INVALID, "principal"),
        row("ListAuditEvents", "operation", "unknown RPC", Call::ListAuditEvents(with(audit(), |r| r.operation = "DropTables".into())), INVALID, "operation"),
        row("ListAuditEvents", "until_ms", "before since_ms", Call::ListAuditEvents(with(audit(), |r| { r.since_ms = 10; r.until_ms = 5 })), INVALID, "until_ms"),
        row("ListAuditEvents", "page_size", "negative", Call::ListAuditEvents(with(audit(), |r| r.page_size = -1)), INVALID, "page_size"),
        row("ListAuditEvents", "page_token", "truncated", Call::ListAuditEvents(with(audit(), |r| r.page_token = "ZQ".into())), INVALID, "page_token"),
        row("ListAuditEvents", "limit", "10001", Call::ListAuditEvents(with(audit(), |r| r.limit = 10_001)), INVALID, "limit"),
        row("CreateRole", "name", "empty", Call::CreateRole(with(valid::role(), |r| r.name.clear())), INVALID, "name"),
        row("CreateRole", "name", "65 chars", Call::CreateRole(with(valid::role(), |r| r.name = long_name.clone())), INVALID, "name"),
        row("CreateRole", "name", "semicolon", Call::CreateRole(with(valid::role(), |r| r.name = "drop;table".into())), INVALID, "name"),
        row("CreateRole", "name", "leading space", Call::CreateRole(with(valid::role(), |r| r.name = " Role".into())), INVALID, "name"),
        row("CreateRole", "permissions", "none", Call::CreateRole(with(valid::role(), |r| r.permissions.clear())), INVALID, "permissions"),
        row("CreateRole", "permissions", "unknown", Call::CreateRole(with(valid::role(), |r| r.permissions = vec!["Everything.All".into()])), INVALID, "permissions"),
        row("CreateRole", "permissions", "65 entries", Call::CreateRole(with(valid::role(), |r| r.permissions = vec!["Audit.Read".into(); 65])), INVALID, "permissions"),
        row("CreateRole", "built_in", "true", Call::CreateRole(with(valid::role(), |r| r.built_in = true)), INVALID, "built_in"),
        row("UpdateRole", "name", "empty", Call::UpdateRole(with(valid::role(), |r| r.name.clear())), INVALID, "name"),
        row("UpdateRole", "permissions", "none", Call::UpdateRole(with(valid::role(), |r| r.permissions.clear())), INVALID, "permissions"),
        row("UpdateRole", "permissions", "unknown", Call::UpdateRole(with(valid::role(), |r| r.permissions = vec!["x".repeat(10_000)])), INVALID, "permissions"),
        row("UpdateRole", "built_in", "true", Call::UpdateRole(with(valid::role(), |r| r.built_in = true)), INVALID, "built_in"),
        row("DeleteRole", "name", "empty", Call::DeleteRole(pb::DeleteRoleRequest { name: String::new() }), INVALID, "name"),
        row("DeleteRole", "name", "65 chars", Call::DeleteRole(pb::DeleteRoleRequest { name: long_name.clone() }), INVALID, "name"),
        row("CreatePrincipal", "name", "empty", Call::CreatePrincipal(with(valid::principal(), |r| r.name.clear())), INVALID, "name"),
        row("CreatePrincipal", "name", "65 chars", Call::CreatePrincipal(with(valid::principal(), |r| r.name = long_name.clone())), INVALID, "name"),
        row("CreatePrincipal", "name", "space", Call::CreatePrincipal(with(valid::principal(), |r| r.name = "two words".into())), INVALID, "name"),
        row("CreatePrincipal", "roles", "none at all", Call::CreatePrincipal(with(valid::principal(), |r| { r.roles.clear(); r.assignments.clear() })), INVALID, "roles"),
        row("CreatePrincipal", "roles", "semicolon", Call::CreatePrincipal(with(valid::principal(), |r| r.roles = vec!["bad;role".into()])), INVALID, "roles"),
        row("CreatePrincipal", "roles", "65 entries", Call::CreatePrincipal(with(valid::principal(), |r| r.roles = vec!["Read Only Operator".into(); 65])), INVALID, "roles"),
        row("CreatePrincipal", "assignments.role", "empty", Call::CreatePrincipal(with(valid::principal(), |r| r.assignments[0].role.clear())), INVALID, "assignments.role"),
        row("CreatePrincipal", "assignments.group", "space", Call::CreatePrincipal(with(valid::principal(), |r| r.assignments[0].group = "bad group".into())), INVALID, "assignments.group"),
        row("AssignRole", "principal", "empty", Call::AssignRole(with(valid::assignment(), |r| r.principal.clear())), INVALID, "principal"),
        row("AssignRole", "principal", "space", Call::AssignRole(with(valid::assignment(), |r| r.principal = "two words".into())), INVALID, "principal"),
        row("AssignRole", "role", "empty", Call::AssignRole(with(valid::assignment(), |r| r.role.clear())), INVALID, "role"),
        row("AssignRole", "role", "65 chars", Call::AssignRole(with(valid::assignment(), |r| r.role = long_name.clone())), INVALID, "role"),
        row("AssignRole", "group", "space", Call::AssignRole(with(valid::assignment(), |r| r.group = "bad group".into())), INVALID, "group"),
        row("UnassignRole", "principal", "empty", Call::UnassignRole(with(valid::assignment(), |r| r.principal.clear())), INVALID, "principal"),
        row("UnassignRole", "role", "semicolon", Call::UnassignRole(with(valid::assignment(), |r| r.role = "a;b".into())), INVALID, "role"),
        row("UnassignRole", "group", "65 chars", Call::UnassignRole(with(valid::assignment(), |r| r.group = long_name.clone())), INVALID, "group"),
        row("DeletePrincipal", "name", "empty", Call::DeletePrincipal(pb::DeletePrincipalRequest { name: String::new() }), INVALID, "name"),
        row("DeletePrincipal", "name", "space", Call::DeletePrincipal(pb::DeletePrincipalRequest { name: "two words".into() }), INVALID, "name"),
        row("CreatePrincipal", "token_ttl_seconds", "over 365 days", Call::CreatePrincipal(with(valid::principal(), |r| r.token_ttl_seconds = 366 * 86_400)), INVALID, "token_ttl_seconds"),
        row("RotatePrincipalToken", "name", "space", Call::RotatePrincipalToken(with(valid::rotation(), |r| r.name = "two words".into())), INVALID, "name"),
        row("RotatePrincipalToken", "token_ttl_seconds", "over 365 days", Call::RotatePrincipalToken(with(valid::rotation(), |r| r.token_ttl_seconds = 366 * 86_400)), INVALID, "token_ttl_seconds"),
        row("RotatePrincipalToken", "grace_seconds", "over 7 days", Call::RotatePrincipalToken(with(valid::rotation(), |r| r.grace_seconds = 7 * 86_400 + 1)), INVALID, "grace_seconds"),
        row("RevokePrincipalTokens", "name", "empty", Call::RevokePrincipalTokens(pb::RevokePrincipalTokensRequest { name: String::new() }), INVALID, "name"),
        // ---- DeviceGateway.Enroll
        row("Enroll", "enrollment_token", "empty", Call::Enroll(with(enroll(), |r| r.enrollment_token.clear())), INVALID, "enrollment_token"),
        row("Enroll", "enrollment_token", "10000 chars", Call::Enroll(with(enroll(), |r| r.enrollment_token = "t".repeat(10_000))), INVALID, "enrollment_token"),
        row("Enroll", "enrollment_token", "space", Call::Enroll(with(enroll(), |r| r.enrollment_token.push(' '))), INVALID, "enrollment_token"),
        row("Enroll", "enrollment_token", "non-ASCII", Call::Enroll(with(enroll(), |r| r.enrollment_token.push('é'))), INVALID, "enrollment_token"),
        row("Enroll", "ownership", "unspecified", Call::Enroll(with(enroll(), |r| r.ownership = 0)), INVALID, "ownership"),
        row("Enroll", "ownership", "99", Call::Enroll(with(enroll(), |r| r.ownership = 99)), INVALID, "ownership"),
        row("Enroll", "device_public_key", "empty", Call::Enroll(with(enroll(), |r| r.device_public_key.clear())), INVALID, "device_public_key"),
        row("Enroll", "device_public_key", "33 bytes", Call::Enroll(with(enroll(), |r| r.device_public_key.push(0))), INVALID, "device_public_key"),
        row("Enroll", "display_name", "empty", Call::Enroll(with(enroll(), |r| r.display_name.clear())), INVALID, "display_name"),
        row("Enroll", "display_name", "blank", Call::Enroll(with(enroll(), |r| r.display_name = "   ".into())), INVALID, "display_name"),
        row("Enroll", "display_name", "129 bytes", Call::Enroll(with(enroll(), |r| r.display_name = "n".repeat(129))), INVALID, "display_name"),
        row("Enroll", "display_name", "newline", Call::Enroll(with(enroll(), |r| r.display_name = "a\nb".into())), INVALID, "display_name"),
        // ---- DeviceGateway.Session: the Hello
        row("Session", "hello", "not first", Call::Session(vec![message(Body::Status(valid::status()))]), INVALID, "Hello"),
        row("Session", "hello.device_id", "empty", bad_hello(f, |h| h.device_id.clear()), INVALID, "hello.device_id"),
        row("Session", "hello.device_id", "129 bytes", bad_hello(f, |h| h.device_id = long_id.clone()), INVALID, "hello.device_id"),
        row("Session", "hello.device_id", "space", bad_hello(f, |h| h.device_id = "dev 1".into()), INVALID, "hello.device_id"),
        row("Session", "hello.device_id", "another device's", bad_hello(f, |h| h.device_id = f.other_device.clone()), Code::Unauthenticated, "proof does not verify"),
        row("Session", "hello.agent_version", "129 bytes", bad_hello(f, |h| h.agent_version = "v".repeat(129)), INVALID, "hello.agent_version"),
        row("Session", "hello.agent_version", "newline", bad_hello(f, |h| h.agent_version = "agent\n1".into()), INVALID, "hello.agent_version"),
        row("Session", "hello.api_level", "100", bad_hello(f, |h| h.api_level = 100), INVALID, "hello.api_level"),
        row("Session", "hello.maker_profile", "65 bytes", bad_hello(f, |h| h.maker_profile = "m".repeat(65)), INVALID, "hello.maker_profile"),
        row("Session", "hello.maker_profile", "newline", bad_hello(f, |h| h.maker_profile = "aosp\n".into()), INVALID, "hello.maker_profile"),
        row("Session", "status.stores.scope", "in Hello: work profile of a COSU", bad_hello(f, |h| h.status = Some(pb::DeviceStatus { stores: vec![valid::store(WORK)] })), INVALID, "status.stores.scope"),
        row("Session", "hello.status", "missing", bad_hello(f, |h| h.status = None), INVALID, "hello.status"),
        row("Session", "hello.status.stores", "no device store", bad_hello(f, |h| h.status = Some(pb::DeviceStatus { stores: vec![] })), INVALID, "hello.status.stores"),
        row("Session", "status.stores.scope", "in Hello: 99", bad_hello(f, |h| h.status = Some(pb::DeviceStatus { stores: vec![with(valid::store(DEVICE), |s| s.scope = 99)] })), INVALID, "status.stores.scope"),
        // ---- DeviceGateway.Session: later messages
        row("Session", "body", "empty message", Call::Session(vec![hello(&f.device.device_id), pb::DeviceMessage { body: None }]), INVALID, "body"),
        row("Session", "hello", "sent twice", Call::Session(vec![hello(&f.device.device_id), hello(&f.device.device_id)]), INVALID, "hello"),
        row("Session", "status.stores.scope", "unspecified", after_hello(f, status(vec![with(valid::store(DEVICE), |s| s.scope = 0)])), INVALID, "status.stores.scope"),
        row("Session", "status.stores.scope", "work profile of a COSU", after_hello(f, status(vec![valid::store(WORK)])), INVALID, "status.stores.scope"),
        row("Session", "status.stores", "one store twice", after_hello(f, status(vec![valid::store(DEVICE), valid::store(DEVICE)])), INVALID, "status.stores"),
        row("Session", "status.stores.token_state", "99", after_hello(f, status(vec![with(valid::store(DEVICE), |s| s.token_state = 99)])), INVALID, "status.stores.token_state"),
        row("Session", "escrow_token.token", "31 bytes", after_hello(f, escrow(DEVICE as i32, vec![1; 31])), INVALID, "escrow_token.token"),
        row("Session", "escrow_token.token", "2000 bytes", after_hello(f, escrow(DEVICE as i32, vec![1; 2000])), INVALID, "escrow_token.token"),
        row("Session", "escrow_token.scope", "unspecified", after_hello(f, escrow(0, vec![1; 32])), INVALID, "escrow_token.scope"),
        row("Session", "escrow_token.scope", "work profile of a COSU", after_hello(f, escrow(WORK as i32, vec![1; 32])), INVALID, "escrow_token.scope"),
        row("Session", "ack.command_id", "empty", after_hello(f, ack("")), INVALID, "ack.command_id"),
        row("Session", "ack.command_id", "129 bytes", after_hello(f, ack(&long_id)), INVALID, "ack.command_id"),
        row("Session", "ack.command_id", "space", after_hello(f, ack("act 1")), INVALID, "ack.command_id"),
        row("Session", "result.command_id", "empty", after_hello(f, result("", "no".into())), INVALID, "result.command_id"),
        row("Session", "result.command_id", "129 bytes", after_hello(f, result(&long_id, "no".into())), INVALID, "result.command_id"),
        row("Session", "result.reason", "2000 bytes", after_hello(f, result(&f.action, "r".repeat(2000))), INVALID, "result.reason"),
        row("Session", "result.completed_at_ms", "0", after_hello(f, with(result(&f.action, "no".into()), |b| if let Body::Result(r) = b { r.completed_at_ms = 0 })), INVALID, "result.completed_at_ms"),
        row("Session", "result.error_code", "failure without a code", after_hello(f, with(result(&f.action, "no".into()), |b| if let Body::Result(r) = b { r.error_code = 0 })), INVALID, "result.error_code"),
        row("Session", "result.error_code", "success with a code", after_hello(f, with(result(&f.action, String::new()), |b| if let Body::Result(r) = b { r.success = true })), INVALID, "result.error_code"),
        row("Session", "result.error_code", "a control plane's code", after_hello(f, with(result(&f.action, "no".into()), |b| if let Body::Result(r) = b { r.error_code = pb::ErrorCode::NoPasscodePolicy as i32 })), INVALID, "result.error_code"),
        row("Session", "result.error_code", "77 (unknown)", after_hello(f, with(result(&f.action, "no".into()), |b| if let Body::Result(r) = b { r.error_code = 77 })), INVALID, "result.error_code"),
        row("Session", "user_event.at_ms", "0", after_hello(f, with(event(entered, DEVICE as i32, &f.action), |b| if let Body::UserEvent(e) = b { e.at_ms = 0 })), INVALID, "user_event.at_ms"),
        row("Session", "user_event.kind", "unspecified", after_hello(f, event(0, DEVICE as i32, &f.action)), INVALID, "user_event.kind"),
        row("Session", "user_event.kind", "99", after_hello(f, event(99, DEVICE as i32, &f.action)), INVALID, "user_event.kind"),
        row("Session", "user_event.command_id", "empty", after_hello(f, event(entered, DEVICE as i32, "")), INVALID, "user_event.command_id"),
        row("Session", "user_event.scope", "99", after_hello(f, event(wiped, 99, "")), INVALID, "user_event.scope"),
        row("Session", "user_event.scope", "work profile of a COSU", after_hello(f, event(wiped, WORK as i32, "")), INVALID, "user_event.scope"),
    ]
}

async fn send(world: &World, fixture: &Fixture, call: Call) -> Result<(), tonic::Status> {
    let mut admin = world.admin.clone();
    macro_rules! unary {
        ($method:ident, $message:expr) => {{
            let request = admin.request($message);
            admin.client.$method(request).await.map(|_| ())
        }};
    }
    match call {
        Call::ListDevices(m) => unary!(list_devices, m),
        Call::SearchDevices(m) => unary!(search_devices, m),
        Call::GetDevice(m) => unary!(get_device, m),
        Call::WatchDevice(m) => unary!(watch_device, m),
        Call::CreateEnrollmentToken(m) => unary!(create_enrollment_token, m),
        Call::ReEnrollDevice(m) => unary!(re_enroll_device, m),
        Call::MoveDevice(m) => unary!(move_device, m),
        Call::AssignPasscodePolicy(m) => unary!(assign_passcode_policy, m),
        Call::ResetPasscode(m) => unary!(reset_passcode, m),
        Call::RemoteLock(m) => unary!(remote_lock, m),
        Call::GetAction(m) => unary!(get_action, m),
        Call::ListActions(m) => unary!(list_actions, m),
        Call::WatchAction(m) => unary!(watch_action, m),
        Call::CancelAction(m) => unary!(cancel_action, m),
        Call::RevealPasscode(m) => unary!(reveal_passcode, m),
        Call::ListAuditEvents(m) => unary!(list_audit_events, m),
        Call::CreateRole(m) => unary!(create_role, m),
        Call::UpdateRole(m) => unary!(update_role, m),
        Call::DeleteRole(m) => unary!(delete_role, m),
        Call::CreatePrincipal(m) => unary!(create_principal, m),
        Call::AssignRole(m) => unary!(assign_role, m),
        Call::UnassignRole(m) => unary!(unassign_role, m),
        Call::DeletePrincipal(m) => unary!(delete_principal, m),
        Call::RotatePrincipalToken(m) => unary!(rotate_principal_token, m),
        Call::RevokePrincipalTokens(m) => unary!(revoke_principal_tokens, m),
        Call::GetCaller(m) => unary!(get_caller, m),
        Call::Enroll(m) => fixture.device.client.clone().enroll(m).await.map(|_| ()),
        Call::Session(messages) => {
            let session =
                open_session(&fixture.device.client, Some(&fixture.device.key), messages).await?;
            // Closing our side ends a session that accepted everything cleanly.
            session.hang_up().await
        }
    }
}

/// Everything the control plane stores except the audit log, as text, table by table.
async fn database(world: &World) -> Vec<String> {
    let path = world.data_dir.path().join("droidfleet.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", path.display()))
        .await
        .unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table'
         AND name NOT IN ('audit', '_sqlx_migrations') AND name NOT LIKE 'sqlite_%'
         ORDER BY name",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut rows = Vec::new();
    for table in tables {
        let columns: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT name FROM pragma_table_info('{table}')"
        )))
        .fetch_all(&pool)
        .await
        .unwrap();
        let quoted: Vec<String> = columns.iter().map(|c| format!("quote({c})")).collect();
        let sql = format!(
            "SELECT '{table}: ' || {} FROM {table} ORDER BY rowid",
            quoted.join(" || '|' || ")
        );
        let content: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_all(&pool)
            .await
            .unwrap();
        rows.extend(content);
    }
    pool.close().await;
    rows
}

async fn fixture(world: &mut World) -> Fixture {
    let token = world.admin.enrollment_token(2, "").await;
    let device = RawDevice::enroll(&world.address, &token, pb::Ownership::Cosu, "table").await;
    let other = RawDevice::enroll(&world.address, &token, pb::Ownership::Cosu, "other").await;
    device.escrow(pb::CredentialScope::Device).await;
    world
        .admin
        .assign_policy(
            &device.device_id,
            pb::CredentialScope::Device,
            pin_policy(6),
        )
        .await;
    let action = world
        .admin
        .remote_lock(&device.device_id, pb::CredentialScope::Device)
        .await
        .unwrap()
        .action_id;
    let enrollment_token = world.admin.enrollment_token(10, "").await;
    Fixture {
        device,
        other_device: other.device_id,
        action,
        enrollment_token,
    }
}

#[tokio::test]
async fn every_rpc_refuses_bad_fields_by_name_and_writes_nothing() {
    let mut world = World::start(&[]).await;
    let fixture = fixture(&mut world).await;
    // A clean session first, so the device row already shows what any valid Hello writes.
    open_session(
        &fixture.device.client,
        Some(&fixture.device.key),
        vec![fixture.device.hello()],
    )
    .await
    .unwrap()
    .close()
    .await;

    let rows = table(&fixture);
    let mut failures = Vec::new();
    let mut covered = std::collections::BTreeSet::new();
    for Row {
        rpc,
        field,
        bad,
        call,
        code,
        says,
    } in rows
    {
        assert_eq!(
            call.rpc(),
            rpc,
            "row {rpc}.{field} ({bad}) sends another RPC"
        );
        covered.insert(rpc);
        let before = database(&world).await;
        let outcome = send(&world, &fixture, call).await;
        let after = database(&world).await;
        let what = format!("{rpc} {field} = {bad}");
        match outcome {
            Ok(()) => failures.push(format!("{what}: accepted")),
            Err(status) if status.code() != code || !status.message().contains(says) => failures
                .push(format!(
                    "{what}: {:?} {:?} (wanted {code:?} naming {says:?})",
                    status.code(),
                    status.message()
                )),
            Err(_) => {}
        }
        if before != after {
            let changed: Vec<_> = after.iter().filter(|r| !before.contains(r)).collect();
            failures.push(format!("{what}: wrote {changed:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} row(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    for rpc in [
        "ListDevices",
        "SearchDevices",
        "GetDevice",
        "WatchDevice",
        "CreateEnrollmentToken",
        "ReEnrollDevice",
        "AssignPasscodePolicy",
        "ResetPasscode",
        "RemoteLock",
        "GetAction",
        "ListActions",
        "WatchAction",
        "CancelAction",
        "RevealPasscode",
        "ListAuditEvents",
        "CreateRole",
        "UpdateRole",
        "DeleteRole",
        "CreatePrincipal",
        "AssignRole",
        "UnassignRole",
        "DeletePrincipal",
        "RotatePrincipalToken",
        "RevokePrincipalTokens",
        "GetCaller",
        "Enroll",
        "Session",
    ] {
        assert!(covered.contains(rpc), "the table has no row for {rpc}");
    }
    // Refusals are audited, without the bad value.
    let refused = world.admin.audit("CreateRole").await;
    assert!(refused.iter().all(|e| e.result == "INVALID_ARGUMENT"));
    assert!(refused.iter().all(|e| !e.detail.contains("drop;table")));
}

/// The requests the table spoils, unspoiled, are accepted (or refused for another reason than
/// their input): a row fails only because of its one bad field.
#[tokio::test]
async fn the_tables_valid_requests_pass() {
    let mut world = World::start(&[]).await;
    let f = fixture(&mut world).await;
    let role = valid::role();
    let calls = vec![
        Call::ListDevices(pb::ListDevicesRequest {
            group: "north".into(),
            ..Default::default()
        }),
        Call::SearchDevices(pb::SearchDevicesRequest {
            page_size: 1000,
            search: "tab".into(),
            ownership: pb::Ownership::Cosu as i32,
            group: "default".into(),
            latest_action_state: pb::ActionState::Pending as i32,
            ..Default::default()
        }),
        Call::GetCaller(pb::GetCallerRequest {
            device_id: f.device.device_id.clone(),
        }),
        Call::GetDevice(valid::device(&f)),
        Call::WatchDevice(valid::device(&f)),
        Call::CreateEnrollmentToken(valid::enrollment_token()),
        Call::AssignPasscodePolicy(valid::policy(&f)),
        Call::ResetPasscode(valid::reset(&f)),
        Call::RemoteLock(valid::lock(&f)),
        Call::GetAction(valid::action(&f)),
        Call::ListActions(pb::ListActionsRequest {
            device_id: f.device.device_id.clone(),
            ..Default::default()
        }),
        Call::WatchAction(valid::action(&f)),
        Call::CancelAction(valid::action(&f)),
        Call::ListAuditEvents(valid::audit(&f)),
        Call::CreateRole(role.clone()),
        Call::UpdateRole(role),
        Call::CreatePrincipal(valid::principal()),
        Call::AssignRole(valid::assignment()),
        Call::UnassignRole(valid::assignment()),
        Call::RotatePrincipalToken(valid::rotation()),
        Call::RevokePrincipalTokens(pb::RevokePrincipalTokensRequest {
            name: "table.principal".into(),
        }),
        Call::DeletePrincipal(pb::DeletePrincipalRequest {
            name: "table.principal".into(),
        }),
        Call::DeleteRole(pb::DeleteRoleRequest {
            name: "Table role".into(),
        }),
        Call::Enroll(valid::enroll(&f)),
        Call::Session(vec![
            f.device.hello(),
            message(Body::Status(valid::status())),
        ]),
        Call::MoveDevice(valid::move_device(&f)),
        Call::ReEnrollDevice(valid::re_enroll(&f)),
    ];
    let before = database(&world).await;
    for call in calls {
        let rpc = call.rpc();
        let outcome = send(&world, &f, call).await;
        assert!(outcome.is_ok(), "{rpc}: {outcome:?}");
    }
    assert_ne!(
        database(&world).await,
        before,
        "the database comparison sees writes"
    );
    // RevealPasscode of a lock is refused, but not for its input.
    let refused = send(&world, &f, Call::RevealPasscode(valid::action(&f)))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
}
