//! The control plane's use cases: enrollment, sessions' bookkeeping, admin operations, with their
//! rules (RBAC scoped to device groups, the support matrix, "no policy, no reset or lock", the
//! reveal window) and their audit. No protobuf here: `grpc/` converts requests into these calls
//! and results back.

use crate::action::{ActionEvent, ActionState};
use crate::clock::{Clock, DAY, MINUTE, Millis, SECOND};
use crate::crypto::{CryptoError, KeyRing, sha256};
use crate::model::{
    Action, ActionKind, AuditEvent, AuditFilter, Device, ErrorCode, Ownership, PasscodePolicy,
    Principal, Role, RoleAssignment, Scope, StoreStatus,
};
use crate::passcode_gen;
use crate::rbac::{self, Denied, DeviceDenial, Permission, Visibility};
use crate::secret::{BearerToken, EscrowToken, Passcode};
use crate::store::{
    ActionUpdate, AuthenticatedPrincipal, NewAction, NewDevice, NewEnrollmentToken, Store,
    StoreError,
};
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, broadcast, watch};

/// How long a reset's passcode stays revealable (Intune shows it for seven days).
pub const PASSCODE_VISIBLE_FOR: Millis = 7 * DAY;
/// Default time-to-live of a command (the Android Management API's default duration).
pub const DEFAULT_COMMAND_TTL: Millis = 10 * MINUTE;
/// The longest time-to-live a request may ask for: a command must not outlive its passcode.
pub const MAX_COMMAND_TTL: Millis = PASSCODE_VISIBLE_FOR;
const DEFAULT_ENROLLMENT_TTL: Millis = 60 * MINUTE;
const MAX_ENROLLMENT_TTL: Millis = 365 * DAY;
const MAX_ENROLLMENT_USES: u32 = 1_000_000;
const MAX_ID_LEN: usize = 128;
const MAX_PASSCODE_LEN: usize = 64;
/// Enrollment tokens and credentials are generated well below this; longer is never ours.
const MAX_TOKEN_LEN: usize = 256;
/// Escrow tokens are 32 bytes on Android; anything past this is not a token.
const MAX_ESCROW_TOKEN_LEN: usize = 1024;
/// A device's sentence about a result, shown to admins.
const MAX_REASON_LEN: usize = 1024;
const MAX_AUDIT_LIMIT: u32 = 10_000;
/// Permissions a role may list, and role assignments a request may carry.
const MAX_LIST_LEN: usize = 64;

/// Errors of the admin and gateway use cases; `grpc/` maps each to a status code.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("invalid {field}: {problem}")]
    InvalidArgument {
        field: &'static str,
        problem: String,
    },
    #[error("{what} {id:?} not found")]
    NotFound { what: &'static str, id: String },
    #[error("permission denied: {0}")]
    PermissionDenied(#[from] Denied),
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("the enrollment token is unknown, used up or expired")]
    EnrollmentRefused,
    #[error("storage: {0}")]
    Store(StoreError),
    #[error("crypto: {0}")]
    Crypto(#[from] CryptoError),
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> ServiceError {
        match error {
            StoreError::AlreadyExists { kind, name } => {
                ServiceError::AlreadyExists(format!("{kind} {name:?} already exists"))
            }
            StoreError::NotFound { kind, name } => ServiceError::NotFound {
                what: kind,
                id: name,
            },
            StoreError::EnrollmentTokenInvalid => ServiceError::EnrollmentRefused,
            StoreError::EnrollmentOwnership { expected } => ServiceError::InvalidArgument {
                field: "ownership",
                problem: format!(
                    "the token re-enrolls a {} device, so it must enroll as one",
                    expected.as_str().to_uppercase()
                ),
            },
            e @ (StoreError::BuiltInRole(_)
            | StoreError::RoleInUse(_)
            | StoreError::WouldLockOut) => ServiceError::FailedPrecondition(e.to_string()),
            other => ServiceError::Store(other),
        }
    }
}

impl ServiceError {
    fn invalid(field: &'static str, problem: impl Into<String>) -> ServiceError {
        ServiceError::InvalidArgument {
            field,
            problem: problem.into(),
        }
    }

    /// The word the audit log records as the result.
    pub fn audit_result(&self) -> &'static str {
        match self {
            ServiceError::InvalidArgument { .. } => "INVALID_ARGUMENT",
            ServiceError::NotFound { .. } => "NOT_FOUND",
            ServiceError::PermissionDenied(_) | ServiceError::EnrollmentRefused => {
                "PERMISSION_DENIED"
            }
            ServiceError::Unauthenticated(_) => "UNAUTHENTICATED",
            ServiceError::FailedPrecondition(_) => "FAILED_PRECONDITION",
            ServiceError::AlreadyExists(_) => "ALREADY_EXISTS",
            ServiceError::Store(_) | ServiceError::Crypto(_) => "INTERNAL",
        }
    }
}

/// Every admin operation: its name in the audit log (the RPC's name) and the permissions a caller
/// must hold somewhere before anything is looked at. A call about a device checks again, against
/// what the caller holds in the device's group (see [`rbac::Grants`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    ListDevices,
    GetDevice,
    WatchDevice,
    CreateEnrollmentToken,
    ReEnrollDevice,
    AssignPasscodePolicy,
    ResetPasscode,
    RemoteLock,
    GetAction,
    ListActions,
    WatchAction,
    CancelAction,
    RevealPasscode,
    ListAuditEvents,
    ListRoles,
    CreateRole,
    UpdateRole,
    DeleteRole,
    CreatePrincipal,
    ListPrincipals,
    AssignRole,
    UnassignRole,
    DeletePrincipal,
}

/// What a remote lock needs: the task, and the device visible.
pub const REMOTE_LOCK: [Permission; 2] = [
    Permission::RemoteTasksRemoteLock,
    Permission::ManagedDevicesRead,
];
const RE_ENROLL: [Permission; 3] = [
    Permission::EnrollmentCreate,
    Permission::ManagedDevicesRead,
    Permission::ManagedDevicesUpdate,
];
const ASSIGN_POLICY: [Permission; 2] = [
    Permission::DeviceConfigurationsAssign,
    Permission::ManagedDevicesRead,
];
const REVEAL_PASSCODE: [Permission; 2] = [
    Permission::RemoteTasksResetPasscode,
    Permission::ManagedDevicesRead,
];
const READ: [Permission; 1] = [Permission::ManagedDevicesRead];

impl Operation {
    pub const ALL: [Operation; 23] = [
        Operation::ListDevices,
        Operation::GetDevice,
        Operation::WatchDevice,
        Operation::CreateEnrollmentToken,
        Operation::ReEnrollDevice,
        Operation::AssignPasscodePolicy,
        Operation::ResetPasscode,
        Operation::RemoteLock,
        Operation::GetAction,
        Operation::ListActions,
        Operation::WatchAction,
        Operation::CancelAction,
        Operation::RevealPasscode,
        Operation::ListAuditEvents,
        Operation::ListRoles,
        Operation::CreateRole,
        Operation::UpdateRole,
        Operation::DeleteRole,
        Operation::CreatePrincipal,
        Operation::ListPrincipals,
        Operation::AssignRole,
        Operation::UnassignRole,
        Operation::DeletePrincipal,
    ];

    /// The RPC name, as the audit log records it.
    pub fn name(self) -> &'static str {
        match self {
            Operation::ListDevices => "ListDevices",
            Operation::GetDevice => "GetDevice",
            Operation::WatchDevice => "WatchDevice",
            Operation::CreateEnrollmentToken => "CreateEnrollmentToken",
            Operation::ReEnrollDevice => "ReEnrollDevice",
            Operation::AssignPasscodePolicy => "AssignPasscodePolicy",
            Operation::ResetPasscode => "ResetPasscode",
            Operation::RemoteLock => "RemoteLock",
            Operation::GetAction => "GetAction",
            Operation::ListActions => "ListActions",
            Operation::WatchAction => "WatchAction",
            Operation::CancelAction => "CancelAction",
            Operation::RevealPasscode => "RevealPasscode",
            Operation::ListAuditEvents => "ListAuditEvents",
            Operation::ListRoles => "ListRoles",
            Operation::CreateRole => "CreateRole",
            Operation::UpdateRole => "UpdateRole",
            Operation::DeleteRole => "DeleteRole",
            Operation::CreatePrincipal => "CreatePrincipal",
            Operation::ListPrincipals => "ListPrincipals",
            Operation::AssignRole => "AssignRole",
            Operation::UnassignRole => "UnassignRole",
            Operation::DeletePrincipal => "DeletePrincipal",
        }
    }

    pub fn parse(name: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|o| o.name() == name)
    }

    /// What the caller must hold somewhere for the call to be considered at all.
    pub fn needs(self) -> &'static [Permission] {
        match self {
            Operation::ListDevices
            | Operation::GetDevice
            | Operation::WatchDevice
            | Operation::GetAction
            | Operation::ListActions
            | Operation::WatchAction
            // The action's kind decides the rest, once it is read.
            | Operation::CancelAction => &READ,
            Operation::CreateEnrollmentToken => &[Permission::EnrollmentCreate],
            Operation::ReEnrollDevice => &RE_ENROLL,
            Operation::AssignPasscodePolicy => &ASSIGN_POLICY,
            Operation::ResetPasscode => &rbac::RESET_PASSCODE,
            Operation::RemoteLock => &REMOTE_LOCK,
            Operation::RevealPasscode => &REVEAL_PASSCODE,
            Operation::ListAuditEvents => &[Permission::AuditRead],
            Operation::ListRoles
            | Operation::CreateRole
            | Operation::UpdateRole
            | Operation::DeleteRole
            | Operation::CreatePrincipal
            | Operation::ListPrincipals
            | Operation::AssignRole
            | Operation::UnassignRole
            | Operation::DeletePrincipal => &[Permission::RolesManage],
        }
    }
}

/// The permission a remote task of this kind needs (to start it or to cancel it).
pub fn task_permission(kind: ActionKind) -> Permission {
    match kind {
        ActionKind::ResetPasscode => Permission::RemoteTasksResetPasscode,
        ActionKind::RemoteLock => Permission::RemoteTasksRemoteLock,
    }
}

/// Tunables of a control plane.
#[derive(Clone, Debug)]
pub struct Config {
    /// Holds the database file, the key files and the bootstrap admin token.
    pub data_dir: PathBuf,
    /// How often the background task purges passcodes past their seven days.
    pub purge_interval: std::time::Duration,
    /// How often the background task expires commands past their time-to-live.
    pub expiry_interval: std::time::Duration,
}

impl Config {
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            purge_interval: std::time::Duration::from_secs(60),
            expiry_interval: std::time::Duration::from_secs(1),
        }
    }
}

/// A request for an enrollment token, already parsed from the wire.
#[derive(Debug, Default)]
pub struct EnrollmentTokenRequest {
    /// 0 means 1.
    pub max_uses: u32,
    /// `None` means one hour.
    pub ttl: Option<Millis>,
    /// `None` means [`rbac::DEFAULT_GROUP`].
    pub group: Option<String>,
}

/// A request to reset a passcode, already parsed from the wire.
#[derive(Debug, Default)]
pub struct ResetRequest {
    pub device_id: String,
    /// `None` picks the store the enrollment type supports.
    pub scope: Option<Scope>,
    /// `None` generates one from the policy.
    pub new_passcode: Option<Passcode>,
    /// `None` means [`DEFAULT_COMMAND_TTL`].
    pub ttl: Option<Millis>,
}

/// A request to lock a credential store, already parsed from the wire.
#[derive(Debug, Default)]
pub struct LockRequest {
    pub device_id: String,
    /// `None` picks the store the enrollment type manages.
    pub scope: Option<Scope>,
    /// `None` means [`DEFAULT_COMMAND_TTL`].
    pub ttl: Option<Millis>,
}

/// A command to send to a device, with everything the gateway needs to encode and sign it.
#[derive(Debug)]
pub struct OutboundCommand {
    pub action: Action,
    pub payload: CommandPayload,
}

#[derive(Debug)]
pub enum CommandPayload {
    ResetPasscode {
        passcode: Passcode,
        token: EscrowToken,
    },
    RemoteLock,
}

/// Wakes a device's session task when it has something new to send.
#[derive(Debug, Default)]
pub struct SessionSignals {
    /// A command was queued for the device.
    pub commands: Notify,
    /// A policy of the device changed.
    pub policy: Notify,
    /// Another session of the same device replaced this one.
    pub replaced: Notify,
    /// The device's credential was revoked (re-enrollment); the session must end.
    pub revoked: Notify,
}

/// What the device told us in one message, for [`ControlPlane::handle_device_report`].
#[derive(Debug)]
pub enum DeviceReport {
    Status(Vec<StoreStatus>),
    EscrowToken {
        scope: Scope,
        token: EscrowToken,
    },
    Ack {
        command_id: String,
    },
    Result {
        command_id: String,
        success: bool,
        error: Option<(ErrorCode, String)>,
        completed_at: Millis,
    },
    NewPasscodeEntered {
        command_id: String,
        at: Millis,
    },
    StoreWiped {
        scope: Scope,
    },
}

/// The control plane: the store, the keys, the clock, and the devices connected right now.
pub struct ControlPlane {
    store: Arc<dyn Store>,
    keys: KeyRing,
    clock: Arc<dyn Clock>,
    config: Config,
    /// The session task of every connected device, so a new action reaches it at once.
    sessions: Mutex<HashMap<String, Arc<SessionSignals>>>,
    /// Every action change, for WatchAction.
    action_changes: broadcast::Sender<Action>,
    /// The id of every device that changed, for WatchDevice.
    device_changes: broadcast::Sender<String>,
    /// Counts completed purge runs, so tests can wait for one instead of sleeping.
    purge_runs: watch::Sender<u64>,
    /// Set when the server stops, so device sessions end instead of holding shutdown open.
    stopping: watch::Sender<bool>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Where the bootstrap admin's token was written on first start.
pub const BOOTSTRAP_TOKEN_FILE: &str = "bootstrap-admin.token";
pub const BOOTSTRAP_PRINCIPAL: &str = "admin";

impl ControlPlane {
    pub fn new(
        store: Arc<dyn Store>,
        keys: KeyRing,
        clock: Arc<dyn Clock>,
        config: Config,
    ) -> ControlPlane {
        ControlPlane {
            store,
            keys,
            clock,
            config,
            sessions: Mutex::new(HashMap::new()),
            action_changes: broadcast::channel(4096).0,
            device_changes: broadcast::channel(4096).0,
            purge_runs: watch::channel(0).0,
            stopping: watch::channel(false).0,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn now(&self) -> Millis {
        self.clock.now()
    }

    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// On first start (no principal yet) creates the `admin` principal with the Administrator
    /// role for every group and writes its token to a file only the owner can read; returns that
    /// file's path.
    pub async fn bootstrap_admin(&self) -> Result<Option<PathBuf>, ServiceError> {
        if !self.store.list_principals().await?.is_empty() {
            return Ok(None);
        }
        let token = BearerToken::new(self.keys.new_credential("dfa_")?);
        self.store
            .create_principal(
                BOOTSTRAP_PRINCIPAL,
                sha256(token.expose().as_bytes()),
                &[RoleAssignment {
                    role: rbac::ADMINISTRATOR.to_string(),
                    group: None,
                }],
                self.now(),
            )
            .await?;
        let path = self.config.data_dir.join(BOOTSTRAP_TOKEN_FILE);
        crate::crypto::write_private_file(&path, format!("{}\n", token.expose()).as_bytes())
            .map_err(|e| {
                ServiceError::FailedPrecondition(format!("cannot write {}: {e}", path.display()))
            })?;
        Ok(Some(path))
    }

    // ---------------------------------------------------------------- authentication and audit

    pub async fn authenticate(
        &self,
        bearer: Option<&BearerToken>,
    ) -> Result<AuthenticatedPrincipal, ServiceError> {
        let bearer = bearer.ok_or(ServiceError::Unauthenticated(
            "missing bearer token (metadata `authorization: Bearer <token>`)",
        ))?;
        if bearer.expose().len() > MAX_TOKEN_LEN {
            return Err(ServiceError::Unauthenticated("unknown bearer token"));
        }
        self.store
            .principal_by_token(sha256(bearer.expose().as_bytes()))
            .await?
            .ok_or(ServiceError::Unauthenticated("unknown bearer token"))
    }

    /// Runs one admin operation: authenticates, checks that the caller holds what `operation`
    /// needs somewhere, runs `body`, and audits the outcome whatever it is. `device_id` is the
    /// device the request names, recorded when the call fails before `body` says otherwise.
    pub async fn admin_call<T, F, Fut>(
        &self,
        bearer: Option<&BearerToken>,
        operation: Operation,
        device_id: Option<&str>,
        body: F,
    ) -> Result<T, ServiceError>
    where
        F: FnOnce(AuthenticatedPrincipal) -> Fut,
        Fut: std::future::Future<Output = Result<(T, AuditNote), ServiceError>>,
    {
        let principal = self.authenticate(bearer).await;
        let name = principal
            .as_ref()
            .map(|p| p.name.clone())
            .unwrap_or_else(|_| "anonymous".to_string());
        let outcome = match principal {
            Ok(principal) => match principal.grants.authorize_anywhere(operation.needs()) {
                Ok(()) => body(principal).await,
                Err(denied) => Err(denied.into()),
            },
            Err(e) => Err(e),
        };
        let (result, note) = match &outcome {
            Ok((_, note)) => ("ok", note.clone()),
            Err(e) => (e.audit_result(), AuditNote::detail(e.to_string())),
        };
        // A malformed id from the request is not worth recording (the detail says what was wrong).
        let requested_device = device_id
            .filter(|id| check_id("device_id", id).is_ok())
            .map(str::to_string);
        let operation = operation.name();
        let event = AuditEvent {
            id: 0,
            at: self.now(),
            principal: name.clone(),
            operation: operation.to_string(),
            device_id: note.device_id.or(requested_device),
            action_id: note.action_id,
            result: result.to_string(),
            detail: note.detail,
        };
        if let Err(error) = self.store.append_audit(event).await {
            tracing::error!(%error, operation, "cannot write the audit log");
            return Err(error.into());
        }
        tracing::info!(principal = %name, operation, result, "admin call");
        outcome.map(|(value, _)| value)
    }

    /// The device, if `caller` may see it and holds `needed` in its group. A device of a group the
    /// caller may not read is answered exactly like an unknown one.
    async fn device_for(
        &self,
        caller: &AuthenticatedPrincipal,
        device_id: &str,
        needed: &[Permission],
    ) -> Result<Device, ServiceError> {
        check_id("device_id", device_id)?;
        let not_found = || ServiceError::NotFound {
            what: "device",
            id: device_id.to_string(),
        };
        let device = self
            .store
            .get_device(device_id)
            .await?
            .ok_or_else(not_found)?;
        match caller.grants.authorize_device(&device.group, needed) {
            Ok(()) => Ok(device),
            Err(DeviceDenial::Invisible) => Err(not_found()),
            Err(DeviceDenial::Denied(denied)) => Err(denied.into()),
        }
    }

    /// The action and its device, if `caller` may see the device and holds `needed` in its group.
    async fn action_for(
        &self,
        caller: &AuthenticatedPrincipal,
        action_id: &str,
        needed: &[Permission],
    ) -> Result<(Action, Device), ServiceError> {
        check_id("action_id", action_id)?;
        let not_found = || ServiceError::NotFound {
            what: "action",
            id: action_id.to_string(),
        };
        let action = self
            .store
            .get_action(action_id)
            .await?
            .ok_or_else(not_found)?;
        let device = self
            .store
            .get_device(&action.device_id)
            .await?
            .ok_or_else(not_found)?;
        match caller.grants.authorize_device(&device.group, needed) {
            Ok(()) => Ok((action, device)),
            Err(DeviceDenial::Invisible) => Err(not_found()),
            Err(DeviceDenial::Denied(denied)) => Err(denied.into()),
        }
    }

    /// The groups `caller` may see, as the store filters them (`None`: every group).
    fn visible_groups(
        caller: &AuthenticatedPrincipal,
        only: Option<&str>,
    ) -> Option<BTreeSet<String>> {
        match (caller.grants.visible_groups(), only) {
            (Visibility::All, None) => None,
            (Visibility::All, Some(group)) => Some([group.to_string()].into()),
            (Visibility::Groups(groups), None) => Some(groups),
            (Visibility::Groups(groups), Some(group)) => Some(
                groups
                    .into_iter()
                    .filter(|g| g == group)
                    .collect::<BTreeSet<_>>(),
            ),
        }
    }

    // ---------------------------------------------------------------- devices and enrollment

    /// Creates an enrollment token for a group the caller may enroll devices into.
    pub async fn create_enrollment_token(
        &self,
        caller: &AuthenticatedPrincipal,
        request: EnrollmentTokenRequest,
    ) -> Result<(BearerToken, Millis, u32, String), ServiceError> {
        let max_uses = if request.max_uses == 0 {
            1
        } else {
            request.max_uses
        };
        if max_uses > MAX_ENROLLMENT_USES {
            return Err(ServiceError::invalid(
                "max_uses",
                format!("must be at most {MAX_ENROLLMENT_USES}"),
            ));
        }
        let ttl = check_enrollment_ttl(request.ttl)?;
        let group = match request.group {
            Some(group) => {
                rbac::validate_group_name(&group)
                    .map_err(|problem| ServiceError::invalid("group", problem))?;
                group
            }
            None => rbac::DEFAULT_GROUP.to_string(),
        };
        caller
            .grants
            .authorize_group(&group, &[Permission::EnrollmentCreate])?;
        let token = BearerToken::new(self.keys.new_credential("dfe_")?);
        let expires_at = self.now() + ttl;
        self.store
            .create_enrollment_token(NewEnrollmentToken {
                hash: sha256(token.expose().as_bytes()),
                max_uses,
                expires_at,
                created_by: caller.name.clone(),
                group: group.clone(),
            })
            .await?;
        Ok((token, expires_at, max_uses, group))
    }

    /// Starts the explicit re-enrollment of a known device: revokes its credential now (ending
    /// any open session) and returns a single-use enrollment token bound to it.
    pub async fn reenroll_device(
        &self,
        caller: &AuthenticatedPrincipal,
        device_id: &str,
        ttl: Option<Millis>,
    ) -> Result<(BearerToken, Millis), ServiceError> {
        let ttl = check_enrollment_ttl(ttl)?;
        let device = self.device_for(caller, device_id, &RE_ENROLL).await?;
        let token = BearerToken::new(self.keys.new_credential("dfe_")?);
        // A credential nobody is ever given: the device's old one stops matching at once.
        let revoked = BearerToken::new(self.keys.new_credential("dfd_")?);
        let expires_at = self.now() + ttl;
        self.store
            .reenroll_device(
                &device.id,
                sha256(revoked.expose().as_bytes()),
                NewEnrollmentToken {
                    hash: sha256(token.expose().as_bytes()),
                    max_uses: 1,
                    expires_at,
                    created_by: caller.name.clone(),
                    group: device.group.clone(),
                },
            )
            .await?;
        if let Some(signals) = self.sessions_lock().get(&device.id) {
            signals.revoked.notify_one();
        }
        self.device_changed(&device.id);
        tracing::info!(device_id = %device.id, by = %caller.name, "device credential revoked for re-enrollment");
        Ok((token, expires_at))
    }

    /// Enrolls a device: returns it and its session credential. A re-enrollment token gives a
    /// known device its id back.
    pub async fn enroll(
        &self,
        enrollment_token: &BearerToken,
        ownership: Ownership,
        display_name: &str,
    ) -> Result<(Device, BearerToken), ServiceError> {
        check_credential_text("enrollment_token", enrollment_token)?;
        check_text("display_name", display_name, MAX_ID_LEN)?;
        let credential = BearerToken::new(self.keys.new_credential("dfd_")?);
        let device = NewDevice {
            id: self.keys.new_id("dev_")?,
            display_name: display_name.to_string(),
            ownership,
            credential_hash: sha256(credential.expose().as_bytes()),
            enrolled_at: self.now(),
        };
        let enrolled = self
            .store
            .enroll_device(sha256(enrollment_token.expose().as_bytes()), device)
            .await?;
        let device = enrolled.device;
        tracing::info!(
            device_id = %device.id,
            ownership = %ownership,
            group = %device.group,
            re_enrolled = enrolled.re_enrolled,
            "device enrolled"
        );
        self.device_changed(&device.id);
        Ok((device, credential))
    }

    pub async fn device_by_credential(
        &self,
        credential: &BearerToken,
    ) -> Result<Option<Device>, ServiceError> {
        if credential.expose().len() > MAX_TOKEN_LEN {
            return Ok(None);
        }
        Ok(self
            .store
            .device_by_credential(sha256(credential.expose().as_bytes()))
            .await?)
    }

    /// The device as stored, for its own session (no caller to check).
    pub async fn device_record(&self, device_id: &str) -> Result<Device, ServiceError> {
        self.store
            .get_device(device_id)
            .await?
            .ok_or_else(|| ServiceError::NotFound {
                what: "device",
                id: device_id.to_string(),
            })
    }

    /// A device the caller may see.
    pub async fn device(
        &self,
        caller: &AuthenticatedPrincipal,
        device_id: &str,
    ) -> Result<Device, ServiceError> {
        self.device_for(caller, device_id, &READ).await
    }

    /// The devices the caller may see, of one group or of all.
    pub async fn devices(
        &self,
        caller: &AuthenticatedPrincipal,
        group: Option<&str>,
    ) -> Result<Vec<Device>, ServiceError> {
        if let Some(group) = group {
            rbac::validate_group_name(group)
                .map_err(|problem| ServiceError::invalid("group", problem))?;
        }
        let groups = Self::visible_groups(caller, group);
        Ok(self.store.list_devices(groups.as_ref()).await?)
    }

    pub fn is_online(&self, device_id: &str) -> bool {
        self.sessions_lock().contains_key(device_id)
    }

    pub async fn assign_policy(
        &self,
        caller: &AuthenticatedPrincipal,
        device_id: &str,
        scope: Scope,
        policy: Option<PasscodePolicy>,
    ) -> Result<Device, ServiceError> {
        check_id("device_id", device_id)?;
        if let Some(policy) = &policy {
            check_policy(policy)?;
        }
        let device = self.device_for(caller, device_id, &ASSIGN_POLICY).await?;
        if !device.has_store(scope) {
            return Err(ServiceError::invalid(
                "scope",
                format!("a {} device has no work profile", device.ownership),
            ));
        }
        self.store
            .set_policy(device_id, scope, policy.as_ref())
            .await?;
        if let Some(signals) = self.sessions_lock().get(device_id) {
            signals.policy.notify_one();
        }
        self.device_changed(device_id);
        self.device_record(device_id).await
    }

    // ---------------------------------------------------------------- actions

    /// Starts a reset. Rules that are not met end the action at once (`failed`,
    /// `not_supported`), as an MDM shows them; only bad input is an error.
    pub async fn reset_passcode(
        &self,
        caller: &AuthenticatedPrincipal,
        request: ResetRequest,
    ) -> Result<Action, ServiceError> {
        check_id("device_id", &request.device_id)?;
        if let Some(passcode) = &request.new_passcode {
            check_passcode_text(passcode)?;
        }
        let ttl = check_ttl(request.ttl)?;
        let device = self
            .device_for(caller, &request.device_id, &rbac::RESET_PASSCODE)
            .await?;
        let supported = device.ownership.resettable_scope();
        let scope = request.scope.unwrap_or(supported);
        let refusal = if scope != supported {
            Some((
                ActionState::NotSupported,
                ErrorCode::ScopeNotSupported,
                format!(
                    "a {} device supports only a {} passcode reset, not {}",
                    device.ownership.as_str().to_uppercase(),
                    supported.as_str().replace('_', "-"),
                    scope.as_str().replace('_', "-"),
                ),
            ))
        } else if device.stores.iter().any(|s| s.scope == scope && s.wiped) {
            Some((
                ActionState::Failed,
                ErrorCode::StoreWiped,
                format!(
                    "the device reports its {} was wiped after too many failed passcode \
                     entries; there is no credential left to reset",
                    scope_words(scope)
                ),
            ))
        } else if device.policy(scope).is_none() {
            Some(no_policy(scope, "reset"))
        } else if !device.escrowed_token_scopes.contains(&scope) {
            Some((
                ActionState::Failed,
                ErrorCode::NoEscrowedToken,
                format!(
                    "the device has not escrowed a reset token for its {} yet",
                    scope_words(scope)
                ),
            ))
        } else {
            None
        };
        let id = self.keys.new_id("act_")?;
        let sealed_passcode = if refusal.is_none() {
            let passcode = match request.new_passcode {
                Some(passcode) => passcode,
                None => {
                    let policy = device.policy(scope).expect("checked above");
                    passcode_gen::generate(policy, self.keys.rng()).map_err(|e| {
                        ServiceError::FailedPrecondition(format!(
                            "cannot generate a passcode for the assigned policy: {e}"
                        ))
                    })?
                }
            };
            let sealed = self.keys.seal(passcode.expose().as_bytes(), &id)?;
            Some((sealed, self.now() + PASSCODE_VISIBLE_FOR))
        } else {
            None
        };
        let action = NewAction {
            id,
            device_id: device.id.clone(),
            kind: ActionKind::ResetPasscode,
            scope,
            requested_by: caller.name.clone(),
            created_at: self.now(),
            not_after: self.now() + ttl,
            state: ActionState::Pending,
            error_code: None,
            reason: String::new(),
            sealed_passcode,
        };
        self.start_action(action, refusal).await
    }

    /// Starts a remote lock of one credential store. Like a reset it needs a passcode policy for
    /// that store; a store the device does not have ends `not_supported`.
    pub async fn remote_lock(
        &self,
        caller: &AuthenticatedPrincipal,
        request: LockRequest,
    ) -> Result<Action, ServiceError> {
        check_id("device_id", &request.device_id)?;
        let ttl = check_ttl(request.ttl)?;
        let device = self
            .device_for(caller, &request.device_id, &REMOTE_LOCK)
            .await?;
        let scope = request.scope.unwrap_or(device.ownership.resettable_scope());
        let refusal = if !device.has_store(scope) {
            Some((
                ActionState::NotSupported,
                ErrorCode::ScopeNotSupported,
                format!(
                    "a {} device has no {} to lock",
                    device.ownership.as_str().to_uppercase(),
                    scope_words(scope)
                ),
            ))
        } else if device.policy(scope).is_none() {
            Some(no_policy(scope, "lock"))
        } else {
            None
        };
        let action = NewAction {
            id: self.keys.new_id("act_")?,
            device_id: device.id.clone(),
            kind: ActionKind::RemoteLock,
            scope,
            requested_by: caller.name.clone(),
            created_at: self.now(),
            not_after: self.now() + ttl,
            state: ActionState::Pending,
            error_code: None,
            reason: String::new(),
            sealed_passcode: None,
        };
        self.start_action(action, refusal).await
    }

    /// Stores a new action: pending (it becomes the device's next command) or, when a rule is not
    /// met, already in its final state with the reason.
    async fn start_action(
        &self,
        mut action: NewAction,
        refusal: Option<(ActionState, ErrorCode, String)>,
    ) -> Result<Action, ServiceError> {
        if let Some((state, code, reason)) = refusal {
            action.state = state;
            action.error_code = Some(code);
            action.reason = reason;
            action.sealed_passcode = None;
        }
        let action = self.store.create_action(action).await?;
        tracing::info!(
            action_id = %action.id,
            device_id = %action.device_id,
            kind = action.kind.as_str(),
            scope = %action.scope,
            state = %action.state,
            "remote action requested"
        );
        self.publish(&action);
        if action.state == ActionState::Pending {
            self.wake_commands(&action.device_id);
        }
        Ok(action)
    }

    pub async fn action(
        &self,
        caller: &AuthenticatedPrincipal,
        action_id: &str,
    ) -> Result<Action, ServiceError> {
        Ok(self.action_for(caller, action_id, &READ).await?.0)
    }

    /// The history of one device, or of every device the caller may see; newest first.
    pub async fn actions(
        &self,
        caller: &AuthenticatedPrincipal,
        device_id: Option<&str>,
    ) -> Result<Vec<Action>, ServiceError> {
        match device_id {
            Some(device_id) => {
                let device = self.device(caller, device_id).await?;
                Ok(self.store.list_actions(Some(&device.id), None).await?)
            }
            None => {
                let groups = Self::visible_groups(caller, None);
                Ok(self.store.list_actions(None, groups.as_ref()).await?)
            }
        }
    }

    pub async fn cancel_action(
        &self,
        caller: &AuthenticatedPrincipal,
        action_id: &str,
    ) -> Result<Action, ServiceError> {
        let (action, device) = self.action_for(caller, action_id, &READ).await?;
        caller
            .grants
            .authorize_group(&device.group, &[task_permission(action.kind)])?;
        let update = ActionUpdate {
            reason: Some("canceled by an admin before delivery".into()),
            purge_passcode: true,
            ..ActionUpdate::default()
        };
        match self
            .apply_event(&action.id, ActionEvent::Canceled, update)
            .await?
        {
            Some(action) => Ok(action),
            None => Err(ServiceError::FailedPrecondition(format!(
                "action {} is {} and can no longer be canceled",
                action.id,
                self.action(caller, action_id).await?.state
            ))),
        }
    }

    /// The passcode a reset set, while it is visible.
    pub async fn reveal_passcode(
        &self,
        caller: &AuthenticatedPrincipal,
        action_id: &str,
    ) -> Result<(Passcode, Action), ServiceError> {
        let (action, _) = self.action_for(caller, action_id, &REVEAL_PASSCODE).await?;
        if action.kind != ActionKind::ResetPasscode {
            return Err(ServiceError::FailedPrecondition(format!(
                "action {} is not a passcode reset",
                action.id
            )));
        }
        let sealed = self
            .store
            .sealed_passcode(action_id, self.now())
            .await?
            .ok_or_else(|| {
                ServiceError::FailedPrecondition(format!(
                    "the passcode of action {} is no longer available (it is shown for 7 days \
                     after a reset, and not at all for a reset that did not succeed)",
                    action.id
                ))
            })?;
        let plain = self.keys.open(&sealed, &action.id)?;
        let text = String::from_utf8(plain.to_vec()).map_err(|_| {
            ServiceError::Store(StoreError::Corrupt("passcode is not UTF-8".into()))
        })?;
        Ok((Passcode::new(text), action))
    }

    pub fn watch_actions(&self) -> broadcast::Receiver<Action> {
        self.action_changes.subscribe()
    }

    pub fn watch_devices(&self) -> broadcast::Receiver<String> {
        self.device_changes.subscribe()
    }

    fn device_changed(&self, device_id: &str) {
        // No receiver is fine: nobody is watching.
        let _ = self.device_changes.send(device_id.to_string());
    }

    // ---------------------------------------------------------------- audit, roles, principals

    pub async fn audit_events(
        &self,
        filter: &AuditFilter,
    ) -> Result<Vec<AuditEvent>, ServiceError> {
        if let Some(device_id) = &filter.device_id {
            check_id("device_id", device_id)?;
        }
        if let Some(principal) = &filter.principal {
            rbac::validate_principal_name(principal)
                .map_err(|problem| ServiceError::invalid("principal", problem))?;
        }
        if let Some(operation) = &filter.operation
            && Operation::parse(operation).is_none()
        {
            return Err(ServiceError::invalid(
                "operation",
                "must be the name of an admin RPC, such as ResetPasscode",
            ));
        }
        if let (Some(since), Some(until)) = (filter.since, filter.until)
            && until < since
        {
            return Err(ServiceError::invalid(
                "until_ms",
                "must not be before since_ms",
            ));
        }
        if filter.limit > MAX_AUDIT_LIMIT {
            return Err(ServiceError::invalid(
                "limit",
                format!("must be at most {MAX_AUDIT_LIMIT}"),
            ));
        }
        Ok(self.store.list_audit(filter).await?)
    }

    pub async fn roles(&self) -> Result<Vec<Role>, ServiceError> {
        Ok(self.store.list_roles().await?)
    }

    pub async fn create_role(
        &self,
        name: &str,
        permissions: &[String],
    ) -> Result<Role, ServiceError> {
        let role = custom_role(name, permissions)?;
        self.store.create_role(&role).await?;
        tracing::info!(role = %role.name, "custom role created");
        Ok(role)
    }

    pub async fn update_role(
        &self,
        name: &str,
        permissions: &[String],
    ) -> Result<Role, ServiceError> {
        let role = custom_role(name, permissions)?;
        self.store.update_role(&role).await?;
        tracing::info!(role = %role.name, "custom role changed");
        Ok(role)
    }

    pub async fn delete_role(&self, name: &str) -> Result<(), ServiceError> {
        rbac::validate_role_name(name).map_err(|problem| ServiceError::invalid("name", problem))?;
        self.store.delete_role(name).await?;
        tracing::info!(role = %name, "custom role deleted");
        Ok(())
    }

    /// Creates a principal with `roles` for every group plus `assignments`; returns its token.
    pub async fn create_principal(
        &self,
        name: &str,
        roles: &[String],
        assignments: &[RoleAssignment],
    ) -> Result<(Principal, BearerToken), ServiceError> {
        rbac::validate_principal_name(name)
            .map_err(|problem| ServiceError::invalid("name", problem))?;
        if roles.len() + assignments.len() > MAX_LIST_LEN {
            return Err(ServiceError::invalid(
                "roles",
                format!("at most {MAX_LIST_LEN} role assignments"),
            ));
        }
        let mut all = Vec::with_capacity(roles.len() + assignments.len());
        for role in roles {
            rbac::validate_role_name(role)
                .map_err(|problem| ServiceError::invalid("roles", problem))?;
            all.push(RoleAssignment {
                role: role.clone(),
                group: None,
            });
        }
        for assignment in assignments {
            check_assignment("assignments.role", "assignments.group", assignment)?;
            all.push(assignment.clone());
        }
        if all.is_empty() {
            return Err(ServiceError::invalid(
                "roles",
                "a principal needs at least one role",
            ));
        }
        let token = BearerToken::new(self.keys.new_credential("dfa_")?);
        let principal = self
            .store
            .create_principal(name, sha256(token.expose().as_bytes()), &all, self.now())
            .await?;
        tracing::info!(principal = %principal.name, "principal created");
        Ok((principal, token))
    }

    pub async fn principals(&self) -> Result<Vec<Principal>, ServiceError> {
        Ok(self.store.list_principals().await?)
    }

    pub async fn assign_role(
        &self,
        principal: &str,
        assignment: &RoleAssignment,
    ) -> Result<Principal, ServiceError> {
        rbac::validate_principal_name(principal)
            .map_err(|problem| ServiceError::invalid("principal", problem))?;
        check_assignment("role", "group", assignment)?;
        let after = self.store.assign_role(principal, assignment).await?;
        tracing::info!(principal = %principal, assignment = %assignment, "role assigned");
        Ok(after)
    }

    pub async fn unassign_role(
        &self,
        principal: &str,
        assignment: &RoleAssignment,
    ) -> Result<Principal, ServiceError> {
        rbac::validate_principal_name(principal)
            .map_err(|problem| ServiceError::invalid("principal", problem))?;
        check_assignment("role", "group", assignment)?;
        let after = self.store.unassign_role(principal, assignment).await?;
        tracing::info!(principal = %principal, assignment = %assignment, "role unassigned");
        Ok(after)
    }

    pub async fn delete_principal(
        &self,
        caller: &AuthenticatedPrincipal,
        name: &str,
    ) -> Result<(), ServiceError> {
        rbac::validate_principal_name(name)
            .map_err(|problem| ServiceError::invalid("name", problem))?;
        if name == caller.name {
            return Err(ServiceError::FailedPrecondition(
                "a principal cannot delete itself".into(),
            ));
        }
        self.store.delete_principal(name).await?;
        tracing::info!(principal = %name, "principal deleted");
        Ok(())
    }

    // ---------------------------------------------------------------- device sessions

    /// Registers a device's session and returns the signals that wake it. A second session of the
    /// same device replaces the first.
    pub fn open_session(&self, device_id: &str) -> Arc<SessionSignals> {
        let signals = Arc::new(SessionSignals::default());
        let previous = self
            .sessions_lock()
            .insert(device_id.to_string(), signals.clone());
        if let Some(previous) = previous {
            previous.replaced.notify_one();
        }
        self.device_changed(device_id);
        signals
    }

    /// Checks a session's Hello: it must name the device the credential belongs to (a device can
    /// open only its own session) and carry a printable agent version.
    pub fn check_hello(
        &self,
        device: &Device,
        claimed_device_id: &str,
        agent_version: &str,
    ) -> Result<(), ServiceError> {
        check_id("hello.device_id", claimed_device_id)?;
        if claimed_device_id != device.id {
            return Err(ServiceError::invalid(
                "hello.device_id",
                "does not match the device the credential belongs to",
            ));
        }
        if agent_version.len() > MAX_ID_LEN {
            return Err(ServiceError::invalid(
                "hello.agent_version",
                format!("must be at most {MAX_ID_LEN} bytes"),
            ));
        }
        if agent_version.chars().any(char::is_control) {
            return Err(ServiceError::invalid(
                "hello.agent_version",
                "must not contain control characters",
            ));
        }
        Ok(())
    }

    /// Forgets the session, unless a newer one already replaced it.
    pub fn close_session(&self, device_id: &str, signals: &Arc<SessionSignals>) {
        let mut sessions = self.sessions_lock();
        if sessions
            .get(device_id)
            .is_some_and(|current| Arc::ptr_eq(current, signals))
        {
            sessions.remove(device_id);
            drop(sessions);
            self.device_changed(device_id);
        }
    }

    /// Commands of the device that still need a result and whose sequence is above
    /// `after_sequence`, ready to sign, in sequence order.
    pub async fn commands_to_send(
        &self,
        device_id: &str,
        after_sequence: u64,
    ) -> Result<Vec<OutboundCommand>, ServiceError> {
        let mut out = Vec::new();
        for action in self.store.open_commands(device_id).await? {
            if action.sequence.unwrap_or(0) <= after_sequence {
                continue;
            }
            if action.not_after < self.now() {
                self.expire(&action).await?;
                continue;
            }
            let payload = match action.kind {
                ActionKind::RemoteLock => CommandPayload::RemoteLock,
                ActionKind::ResetPasscode => {
                    let Some(sealed_passcode) =
                        self.store.sealed_passcode(&action.id, self.now()).await?
                    else {
                        self.fail(
                            &action,
                            ErrorCode::Internal,
                            "the passcode is no longer stored",
                        )
                        .await?;
                        continue;
                    };
                    let Some(sealed_token) =
                        self.store.escrow_token(device_id, action.scope).await?
                    else {
                        self.fail(
                            &action,
                            ErrorCode::NoEscrowedToken,
                            "the device's escrowed reset token is gone",
                        )
                        .await?;
                        continue;
                    };
                    let passcode = self.keys.open(&sealed_passcode, &action.id)?;
                    let token = self
                        .keys
                        .open(&sealed_token, &token_context(device_id, action.scope))?;
                    CommandPayload::ResetPasscode {
                        passcode: Passcode::new(String::from_utf8_lossy(&passcode).into_owned()),
                        token: EscrowToken::new(token.to_vec()),
                    }
                }
            };
            out.push(OutboundCommand { action, payload });
        }
        Ok(out)
    }

    /// Records what a device reported on its session.
    pub async fn handle_device_report(
        &self,
        device: &Device,
        report: DeviceReport,
    ) -> Result<(), ServiceError> {
        let now = self.now();
        match report {
            DeviceReport::Status(stores) => {
                check_stores(device, &stores)?;
                self.store
                    .update_device_status(&device.id, &stores, now)
                    .await?;
                self.device_changed(&device.id);
            }
            DeviceReport::EscrowToken { scope, token } => {
                if token.expose().len() < EscrowToken::MIN_LEN {
                    return Err(ServiceError::invalid(
                        "escrow_token.token",
                        "must be at least 32 bytes long",
                    ));
                }
                if token.expose().len() > MAX_ESCROW_TOKEN_LEN {
                    return Err(ServiceError::invalid(
                        "escrow_token.token",
                        format!("must be at most {MAX_ESCROW_TOKEN_LEN} bytes long"),
                    ));
                }
                if scope == Scope::WorkProfile && !device.ownership.has_work_profile() {
                    return Err(ServiceError::invalid(
                        "escrow_token.scope",
                        "the device has no work profile",
                    ));
                }
                let context = token_context(&device.id, scope);
                // Devices escrow their tokens again on every new session (the protocol has no
                // acknowledgement): the token already held costs a read, not a durable write.
                if let Some(held) = self.store.escrow_token(&device.id, scope).await? {
                    let held = self.keys.open(&held, &context)?;
                    if bool::from(subtle::ConstantTimeEq::ct_eq(
                        held.as_slice(),
                        token.expose(),
                    )) {
                        return Ok(());
                    }
                }
                let sealed = self.keys.seal(token.expose(), &context)?;
                self.store
                    .put_escrow_token(&device.id, scope, &sealed)
                    .await?;
                self.device_changed(&device.id);
                tracing::info!(device_id = %device.id, scope = %scope, "escrow token stored");
            }
            DeviceReport::Ack { command_id } => {
                let action = self
                    .own_action(device, "ack.command_id", &command_id)
                    .await?;
                let update = ActionUpdate {
                    delivered_at: Some(now),
                    ..ActionUpdate::default()
                };
                self.apply_event(&action.id, ActionEvent::Delivered, update)
                    .await?;
            }
            DeviceReport::Result {
                command_id,
                success,
                error,
                completed_at,
            } => {
                if let Some((_, reason)) = &error
                    && reason.len() > MAX_REASON_LEN
                {
                    return Err(ServiceError::invalid(
                        "result.reason",
                        format!("must be at most {MAX_REASON_LEN} bytes"),
                    ));
                }
                let action = self
                    .own_action(device, "result.command_id", &command_id)
                    .await?;
                let (event, update) = if success {
                    (
                        ActionEvent::Succeeded,
                        ActionUpdate {
                            completed_at: Some(completed_at),
                            delivered_at: action.delivered_at.is_none().then_some(now),
                            ..ActionUpdate::default()
                        },
                    )
                } else {
                    let (code, reason) =
                        error.unwrap_or((ErrorCode::Internal, "the device gave no reason".into()));
                    (
                        ActionEvent::Failed(code),
                        ActionUpdate {
                            error_code: Some(code),
                            reason: Some(reason),
                            completed_at: Some(completed_at),
                            delivered_at: action.delivered_at.is_none().then_some(now),
                            purge_passcode: true,
                            ..ActionUpdate::default()
                        },
                    )
                };
                self.apply_event(&action.id, event, update).await?;
            }
            DeviceReport::NewPasscodeEntered { command_id, at } => {
                let action = self
                    .own_action(device, "user_event.command_id", &command_id)
                    .await?;
                self.store.set_user_entered(&action.id, at).await?;
                if let Some(action) = self.store.get_action(&action.id).await? {
                    self.publish(&action);
                }
            }
            DeviceReport::StoreWiped { scope } => {
                if !device.has_store(scope) {
                    return Err(ServiceError::invalid(
                        "user_event.scope",
                        "the device has no work profile",
                    ));
                }
                tracing::warn!(device_id = %device.id, scope = %scope, "device reports a wiped credential store");
            }
        }
        Ok(())
    }

    /// Marks the device seen now.
    pub async fn touch(&self, device: &Device, stores: &[StoreStatus]) -> Result<(), ServiceError> {
        check_stores(device, stores)?;
        self.store
            .update_device_status(&device.id, stores, self.now())
            .await?;
        self.device_changed(&device.id);
        Ok(())
    }

    // ---------------------------------------------------------------- background work

    /// Ends every pending or active action whose time-to-live has passed.
    pub async fn expire_overdue(&self) -> Result<usize, ServiceError> {
        let overdue = self.store.overdue_actions(self.now()).await?;
        let mut expired = 0;
        for action in &overdue {
            if self.expire(action).await?.is_some() {
                expired += 1;
            }
        }
        Ok(expired)
    }

    /// Deletes passcodes past their seven days from the database.
    pub async fn purge_expired_passcodes(&self) -> Result<u64, ServiceError> {
        let purged = self.store.purge_passcodes(self.now()).await?;
        if purged > 0 {
            tracing::info!(purged, "passcodes past their reveal window purged");
        }
        self.purge_runs.send_modify(|runs| *runs += 1);
        Ok(purged)
    }

    /// Ends every device session; the server calls it when it begins to shut down.
    pub fn stop_sessions(&self) {
        self.stopping.send_replace(true);
    }

    /// Resolves once [`ControlPlane::stop_sessions`] was called.
    pub async fn sessions_stopped(&self) {
        let mut stopping = self.stopping.subscribe();
        let _ = stopping.wait_for(|stop| *stop).await;
    }

    /// Completed purge runs so far; changes after each run.
    pub fn purge_runs(&self) -> watch::Receiver<u64> {
        self.purge_runs.subscribe()
    }

    /// Runs the purge and expiry loops until `shutdown` resolves.
    pub async fn run_background(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        let mut purge = tokio::time::interval(self.config.purge_interval);
        let mut expiry = tokio::time::interval(self.config.expiry_interval);
        purge.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = purge.tick() => {
                    if let Err(error) = self.purge_expired_passcodes().await {
                        tracing::error!(%error, "passcode purge failed");
                    }
                }
                _ = expiry.tick() => {
                    if let Err(error) = self.expire_overdue().await {
                        tracing::error!(%error, "command expiry failed");
                    }
                }
            }
        }
    }

    // ---------------------------------------------------------------- internals

    fn sessions_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<SessionSignals>>> {
        self.sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn wake_commands(&self, device_id: &str) {
        if let Some(signals) = self.sessions_lock().get(device_id) {
            signals.commands.notify_one();
        }
    }

    fn publish(&self, action: &Action) {
        // No receiver is fine: nobody is watching.
        let _ = self.action_changes.send(action.clone());
    }

    async fn apply_event(
        &self,
        action_id: &str,
        event: ActionEvent,
        update: ActionUpdate,
    ) -> Result<Option<Action>, ServiceError> {
        let (from, to) = event.rule();
        let changed = self
            .store
            .transition_action(action_id, from, to, update, self.now())
            .await?;
        if let Some(action) = &changed {
            tracing::info!(action_id = %action.id, device_id = %action.device_id, state = %action.state, "action state changed");
            self.publish(action);
        }
        Ok(changed)
    }

    async fn expire(&self, action: &Action) -> Result<Option<Action>, ServiceError> {
        let update = ActionUpdate {
            error_code: Some(ErrorCode::Expired),
            reason: Some("the command's time-to-live passed before the device ran it".into()),
            purge_passcode: true,
            ..ActionUpdate::default()
        };
        self.apply_event(&action.id, ActionEvent::Expired, update)
            .await
    }

    async fn fail(
        &self,
        action: &Action,
        code: ErrorCode,
        reason: &str,
    ) -> Result<(), ServiceError> {
        let update = ActionUpdate {
            error_code: Some(code),
            reason: Some(reason.to_string()),
            purge_passcode: true,
            ..ActionUpdate::default()
        };
        self.apply_event(&action.id, ActionEvent::Failed(code), update)
            .await?;
        Ok(())
    }

    /// The action a device refers to, if it is that device's: a device can only report on its
    /// own commands.
    async fn own_action(
        &self,
        device: &Device,
        field: &'static str,
        command_id: &str,
    ) -> Result<Action, ServiceError> {
        check_id(field, command_id)?;
        match self.store.get_action(command_id).await? {
            Some(action) if action.device_id == device.id => Ok(action),
            _ => Err(ServiceError::NotFound {
                what: "command",
                id: command_id.to_string(),
            }),
        }
    }
}

/// Extra audit facts from a successful call.
#[derive(Clone, Debug, Default)]
pub struct AuditNote {
    pub device_id: Option<String>,
    pub action_id: Option<String>,
    pub detail: String,
}

impl AuditNote {
    pub fn detail(detail: impl Into<String>) -> AuditNote {
        AuditNote {
            detail: detail.into(),
            ..AuditNote::default()
        }
    }
}

fn token_context(device_id: &str, scope: Scope) -> String {
    format!("escrow/{device_id}/{scope}")
}

pub fn scope_words(scope: Scope) -> &'static str {
    match scope {
        Scope::Device => "device lock screen",
        Scope::WorkProfile => "work profile",
    }
}

fn check_text(field: &'static str, value: &str, max: usize) -> Result<(), ServiceError> {
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

/// Ids are printable ASCII without spaces, so they are safe in logs and file names.
pub fn check_id(field: &'static str, value: &str) -> Result<(), ServiceError> {
    check_printable_ascii(field, value, MAX_ID_LEN)
}

/// A bearer credential from the wire: ours are short printable ASCII, so anything else is
/// malformed rather than merely unknown.
fn check_credential_text(field: &'static str, token: &BearerToken) -> Result<(), ServiceError> {
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
fn check_stores(device: &Device, stores: &[StoreStatus]) -> Result<(), ServiceError> {
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

/// The refusal of a reset or lock of a store that has no passcode policy.
fn no_policy(scope: Scope, what: &str) -> (ActionState, ErrorCode, String) {
    (
        ActionState::Failed,
        ErrorCode::NoPasscodePolicy,
        format!(
            "no passcode policy is assigned for the {} of this device; assign one that enforces \
             a passcode, then retry the {what}",
            scope_words(scope)
        ),
    )
}

fn custom_role(name: &str, permissions: &[String]) -> Result<Role, ServiceError> {
    rbac::validate_role_name(name).map_err(|problem| ServiceError::invalid("name", problem))?;
    if permissions.is_empty() {
        return Err(ServiceError::invalid(
            "permissions",
            "a role needs at least one permission",
        ));
    }
    if permissions.len() > MAX_LIST_LEN {
        return Err(ServiceError::invalid(
            "permissions",
            format!("at most {MAX_LIST_LEN} entries"),
        ));
    }
    let mut parsed: Vec<Permission> = Vec::new();
    for p in permissions {
        let permission = Permission::parse(p).ok_or_else(|| {
            let shown: String = p.chars().take(64).collect();
            ServiceError::invalid(
                "permissions",
                format!(
                    "unknown permission {shown:?}; known: {}",
                    Permission::ALL.map(|p| p.as_str()).join(", ")
                ),
            )
        })?;
        if !parsed.contains(&permission) {
            parsed.push(permission);
        }
    }
    Ok(Role {
        name: name.to_string(),
        permissions: parsed,
        built_in: false,
    })
}

fn check_assignment(
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

fn check_enrollment_ttl(ttl: Option<Millis>) -> Result<Millis, ServiceError> {
    let ttl = ttl.unwrap_or(DEFAULT_ENROLLMENT_TTL);
    if ttl > MAX_ENROLLMENT_TTL {
        return Err(ServiceError::invalid(
            "ttl_seconds",
            "must be at most one year",
        ));
    }
    Ok(ttl)
}

fn check_passcode_text(passcode: &Passcode) -> Result<(), ServiceError> {
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

fn check_ttl(ttl: Option<Millis>) -> Result<Millis, ServiceError> {
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

fn check_policy(policy: &PasscodePolicy) -> Result<(), ServiceError> {
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
