//! The control plane's domain types, the vocabulary every other module speaks. They mirror the
//! protocol's concepts but carry no protobuf; `grpc/convert.rs` maps between the two at the edge.
//! This is the bottom of the domain: it names states and permissions, while the rules over them
//! live above it, in `action.rs` (which event moves which state) and `rbac.rs` (who holds what).

use crate::clock::Millis;
use droidfleet_telemetry::traceparent::TraceParent;
use std::fmt;

/// How a device is enrolled; decides which credential store a reset may target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ownership {
    Cosu,
    Cobo,
    Cope,
    Byod,
    Aosp,
}

impl Ownership {
    pub const ALL: [Ownership; 5] = [
        Ownership::Cosu,
        Ownership::Cobo,
        Ownership::Cope,
        Ownership::Byod,
        Ownership::Aosp,
    ];

    /// The one credential store a passcode reset may target (the seed's support matrix).
    pub fn resettable_scope(self) -> Scope {
        match self {
            Ownership::Cosu | Ownership::Aosp => Scope::Device,
            Ownership::Cobo | Ownership::Cope | Ownership::Byod => Scope::WorkProfile,
        }
    }

    /// Whether the device has a work profile.
    pub fn has_work_profile(self) -> bool {
        matches!(self, Ownership::Cobo | Ownership::Cope | Ownership::Byod)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Ownership::Cosu => "cosu",
            Ownership::Cobo => "cobo",
            Ownership::Cope => "cope",
            Ownership::Byod => "byod",
            Ownership::Aosp => "aosp",
        }
    }

    pub fn parse(text: &str) -> Option<Ownership> {
        Ownership::ALL
            .into_iter()
            .find(|o| o.as_str().eq_ignore_ascii_case(text))
    }
}

impl fmt::Display for Ownership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A credential store on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Device,
    WorkProfile,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Device => "device",
            Scope::WorkProfile => "work_profile",
        }
    }

    pub fn parse(text: &str) -> Option<Scope> {
        match text {
            "device" => Some(Scope::Device),
            "work_profile" | "work-profile" | "work" => Some(Scope::WorkProfile),
            _ => None,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasscodeType {
    Pin,
    NumericComplex,
    Alphanumeric,
    Complex,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Complexity {
    Unspecified,
    Low,
    Medium,
    High,
}

/// A passcode requirement for one credential store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasscodePolicy {
    pub passcode_type: PasscodeType,
    pub min_length: u32,
    pub complexity: Complexity,
    pub min_letters: u32,
    pub min_upper_case: u32,
    pub min_lower_case: u32,
    pub min_digits: u32,
    pub min_symbols: u32,
    pub min_non_letters: u32,
    /// 0 means never wipe.
    pub max_failed_attempts_before_wipe: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenState {
    None,
    Pending,
    Active,
}

/// A credential store's status as the device last reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreStatus {
    pub scope: Scope,
    pub has_passcode: bool,
    pub locked: bool,
    pub token_state: TokenState,
    pub failed_attempts: u32,
    pub throttled_until: Millis,
    pub wiped: bool,
    pub separate_challenge: bool,
    pub require_entry: bool,
    /// The fingerprint of the escrow token the device holds for this store (the first 8 bytes of
    /// its SHA-256), when the device reports it.
    pub token_fingerprint: Option<[u8; 8]>,
}

/// An enrolled device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    pub id: String,
    pub display_name: String,
    pub ownership: Ownership,
    pub enrolled_at: Millis,
    pub last_seen: Millis,
    pub stores: Vec<StoreStatus>,
    pub device_policy: Option<PasscodePolicy>,
    pub work_profile_policy: Option<PasscodePolicy>,
    /// Counts the changes of either policy. Every signed policy carries it, so the device can
    /// refuse an older one replayed to it (PROTOCOL.md CP-POLICY-3).
    pub policy_version: u64,
    /// Stores for which an escrow token is held.
    pub escrowed_token_scopes: Vec<Scope>,
    /// The device group (from the enrollment token or a move), which role assignments can be
    /// scoped to.
    pub group: String,
    /// The Android API level the device reported in its last Hello; 0 while unknown. Decides
    /// early whether it can run a reset (escrow-token resets need API level 26).
    pub api_level: u32,
    /// The maker profile the device reported in its last Hello; empty while unknown.
    pub maker_profile: String,
}

impl Device {
    /// The credential stores the device has: the lock screen, and a work profile when its
    /// enrollment type gives it one.
    pub fn has_store(&self, scope: Scope) -> bool {
        scope == Scope::Device || self.ownership.has_work_profile()
    }

    pub fn policy(&self, scope: Scope) -> Option<&PasscodePolicy> {
        match scope {
            Scope::Device => self.device_policy.as_ref(),
            Scope::WorkProfile => self.work_profile_policy.as_ref(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActionKind {
    ResetPasscode,
    RemoteLock,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::ResetPasscode => "reset_passcode",
            ActionKind::RemoteLock => "remote_lock",
        }
    }

    pub fn parse(text: &str) -> Option<ActionKind> {
        [ActionKind::ResetPasscode, ActionKind::RemoteLock]
            .into_iter()
            .find(|k| k.as_str() == text)
    }
}

/// Where a remote action stands; `action.rs` says which events move it between these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActionState {
    Pending,
    Active,
    Done,
    Failed,
    Canceled,
    NotSupported,
    Expired,
}

impl ActionState {
    pub const ALL: [ActionState; 7] = [
        ActionState::Pending,
        ActionState::Active,
        ActionState::Done,
        ActionState::Failed,
        ActionState::Canceled,
        ActionState::NotSupported,
        ActionState::Expired,
    ];

    pub fn is_final(self) -> bool {
        !matches!(self, ActionState::Pending | ActionState::Active)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ActionState::Pending => "pending",
            ActionState::Active => "active",
            ActionState::Done => "done",
            ActionState::Failed => "failed",
            ActionState::Canceled => "canceled",
            ActionState::NotSupported => "not_supported",
            ActionState::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<ActionState> {
        ActionState::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl fmt::Display for ActionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Machine-readable reason an action did not end `done` (mirrors the protocol's ErrorCode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    NoPasscodePolicy,
    ScopeNotSupported,
    NoEscrowedToken,
    /// The device's Android API level cannot run the command; the action ends `not_supported`.
    ApiLevel,
    TokenMissing,
    TokenNotActive,
    TokenMismatch,
    PasscodePolicyViolation,
    StoreWiped,
    StoreMissing,
    NoPasscode,
    BadSignature,
    WrongDevice,
    Replayed,
    Expired,
    MalformedCommand,
    /// The device refused a cancel: it had already answered the command (PROTOCOL.md
    /// DEV-CANCEL-1).
    AlreadyAnswered,
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 18] = [
        ErrorCode::NoPasscodePolicy,
        ErrorCode::ScopeNotSupported,
        ErrorCode::NoEscrowedToken,
        ErrorCode::ApiLevel,
        ErrorCode::TokenMissing,
        ErrorCode::TokenNotActive,
        ErrorCode::TokenMismatch,
        ErrorCode::PasscodePolicyViolation,
        ErrorCode::StoreWiped,
        ErrorCode::StoreMissing,
        ErrorCode::NoPasscode,
        ErrorCode::BadSignature,
        ErrorCode::WrongDevice,
        ErrorCode::Replayed,
        ErrorCode::Expired,
        ErrorCode::MalformedCommand,
        ErrorCode::AlreadyAnswered,
        ErrorCode::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NoPasscodePolicy => "no_passcode_policy",
            ErrorCode::ScopeNotSupported => "scope_not_supported",
            ErrorCode::NoEscrowedToken => "no_escrowed_token",
            ErrorCode::ApiLevel => "api_level",
            ErrorCode::TokenMissing => "token_missing",
            ErrorCode::TokenNotActive => "token_not_active",
            ErrorCode::TokenMismatch => "token_mismatch",
            ErrorCode::PasscodePolicyViolation => "passcode_policy_violation",
            ErrorCode::StoreWiped => "store_wiped",
            ErrorCode::StoreMissing => "store_missing",
            ErrorCode::NoPasscode => "no_passcode",
            ErrorCode::BadSignature => "bad_signature",
            ErrorCode::WrongDevice => "wrong_device",
            ErrorCode::Replayed => "replayed",
            ErrorCode::Expired => "expired",
            ErrorCode::MalformedCommand => "malformed_command",
            ErrorCode::AlreadyAnswered => "already_answered",
            ErrorCode::Internal => "internal",
        }
    }

    pub fn parse(text: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == text)
    }
}

/// What ends the command id of a signed cancel, after the canceled command's id.
pub const CANCEL_SUFFIX: &str = ".cancel";

/// One remote action and where it stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Action {
    pub id: String,
    pub device_id: String,
    pub kind: ActionKind,
    pub scope: Scope,
    pub state: ActionState,
    pub error_code: Option<ErrorCode>,
    pub reason: String,
    pub requested_by: String,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub delivered_at: Option<Millis>,
    pub completed_at: Option<Millis>,
    pub user_entered_at: Option<Millis>,
    pub not_after: Millis,
    /// The device-wide command sequence number; `None` for an action that never became a command
    /// (ended at the control plane, e.g. no passcode policy).
    pub sequence: Option<u64>,
    /// When the command was first handed to the device's session; `None` while it never was.
    /// Only a command never sent may be canceled or expire outright (PROTOCOL.md CP-DELIVERY-4).
    pub sent_at: Option<Millis>,
    /// When an admin asked to cancel the command after it was sent; the device decides
    /// (PROTOCOL.md CP-CANCEL-1). `None` while nobody did.
    pub cancel_requested_at: Option<Millis>,
    /// The sequence of the signed cancel that goes to the device in the command's place while the
    /// request stands; `None` before a request and again once the device refused it without
    /// answering the command (which then goes again on the next session).
    pub cancel_sequence: Option<u64>,
    /// Why the device refused the cancel, for a human (printable only); empty while it did not.
    pub cancel_refusal: String,
    /// Until when RevealPasscode may show the passcode; `None` when none is stored.
    pub passcode_visible_until: Option<Millis>,
    /// The W3C trace context the command carries to the device and every log line about the
    /// action names (its trace id); `None` only for actions stored before actions had one.
    pub traceparent: Option<TraceParent>,
}

impl Action {
    /// The id of the signed cancel of this action's command: the command's id and `.cancel`
    /// (action ids never hold a dot).
    pub fn cancel_command_id(&self) -> String {
        format!("{}{CANCEL_SUFFIX}", self.id)
    }

    /// The trace id its log lines carry (32 hex digits), empty for an action without a trace.
    pub fn trace_id(&self) -> String {
        self.traceparent
            .as_ref()
            .map(TraceParent::trace_id_hex)
            .unwrap_or_default()
    }
}

/// A principal (an admin or a service account) and its role assignments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub assignments: Vec<RoleAssignment>,
    pub created_at: Millis,
    /// Its newest token's lifecycle (a listing shows when it expires or that it was revoked);
    /// `None` only for a principal whose tokens were all pruned.
    pub token: Option<AdminToken>,
}

/// An admin bearer token's lifecycle, never the token itself (the store keeps its SHA-256).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdminToken {
    pub issued_at: Millis,
    /// Refused from then on: its time-to-live, brought forward by a rotation to the end of the
    /// rotation's grace period.
    pub expires_at: Millis,
    /// Set by a revocation: refused at once, whatever its expiry.
    pub revoked_at: Option<Millis>,
    /// Set when a rotation replaced it; it still works until `expires_at` (the grace period).
    pub rotated_at: Option<Millis>,
}

/// Why an admin token is refused, for an answer that says which without showing the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminTokenEnd {
    Expired,
    Revoked,
    /// A rotation replaced it and its grace period is over.
    Rotated,
}

impl AdminToken {
    /// Why the token is refused at `now`, or `None` while it is valid.
    pub fn ended(&self, now: Millis) -> Option<AdminTokenEnd> {
        if self.revoked_at.is_some_and(|at| at <= now) {
            return Some(AdminTokenEnd::Revoked);
        }
        if now >= self.expires_at {
            return Some(match self.rotated_at {
                Some(_) => AdminTokenEnd::Rotated,
                None => AdminTokenEnd::Expired,
            });
        }
        None
    }
}

impl AdminTokenEnd {
    /// The answer to a call with the token: which end it met, never the token.
    pub fn message(self) -> &'static str {
        match self {
            AdminTokenEnd::Expired => "the bearer token expired; ask an admin to rotate it",
            AdminTokenEnd::Revoked => "the bearer token was revoked",
            AdminTokenEnd::Rotated => {
                "the bearer token was replaced by a rotation and its grace period is over"
            }
        }
    }
}

impl Principal {
    /// The name of every role held, in any group, each once.
    pub fn role_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for assignment in &self.assignments {
            if !names.contains(&assignment.role) {
                names.push(assignment.role.clone());
            }
        }
        names
    }
}

/// A role held by a principal, for every device group (`group: None`) or for one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RoleAssignment {
    pub role: String,
    pub group: Option<String>,
}

impl fmt::Display for RoleAssignment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.group {
            Some(group) => write!(f, "{} (group {group})", self.role),
            None => write!(f, "{} (every group)", self.role),
        }
    }
}

/// One thing a principal may be allowed to do; `rbac.rs` holds the rules over them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    ManagedDevicesRead,
    ManagedDevicesUpdate,
    RemoteTasksResetPasscode,
    RemoteTasksRemoteLock,
    DeviceConfigurationsAssign,
    EnrollmentCreate,
    AuditRead,
    RolesManage,
}

impl Permission {
    pub const ALL: [Permission; 8] = [
        Permission::ManagedDevicesRead,
        Permission::ManagedDevicesUpdate,
        Permission::RemoteTasksResetPasscode,
        Permission::RemoteTasksRemoteLock,
        Permission::DeviceConfigurationsAssign,
        Permission::EnrollmentCreate,
        Permission::AuditRead,
        Permission::RolesManage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::ManagedDevicesRead => "ManagedDevices.Read",
            Permission::ManagedDevicesUpdate => "ManagedDevices.Update",
            Permission::RemoteTasksResetPasscode => "RemoteTasks.ResetPasscode",
            Permission::RemoteTasksRemoteLock => "RemoteTasks.RemoteLock",
            Permission::DeviceConfigurationsAssign => "DeviceConfigurations.Assign",
            Permission::EnrollmentCreate => "Enrollment.Create",
            Permission::AuditRead => "Audit.Read",
            Permission::RolesManage => "Roles.Manage",
        }
    }

    /// The permission named `text` (exact spelling, as `as_str` prints it).
    pub fn parse(text: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.as_str() == text)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role: a named set of permissions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Role {
    pub name: String,
    pub permissions: Vec<Permission>,
    pub built_in: bool,
}

/// One audit log entry. `detail` is free text and must never carry a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    pub id: u64,
    pub at: Millis,
    pub principal: String,
    pub operation: String,
    pub device_id: Option<String>,
    pub action_id: Option<String>,
    pub result: String,
    pub detail: String,
}

/// Which audit events to list; `None` fields match everything.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub device_id: Option<String>,
    pub principal: Option<String>,
    pub operation: Option<String>,
    pub since: Option<Millis>,
    pub until: Option<Millis>,
}
