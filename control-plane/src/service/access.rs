//! Who calls and what they may do: authentication, the permission gate and audit every admin
//! operation goes through ([`ControlPlane::admin_call`]), each [`Operation`] with the permissions
//! it needs, the checks of a caller against one device or action, and the audit log's reader.

use super::paging::{List, Listing, PageRequest, listing};
use super::validation::{MAX_AUDIT_LIMIT, MAX_TOKEN_LEN, check_id};
use super::{ControlPlane, MAX_CACHED_PRINCIPALS, PrincipalCache, ServiceError};
use crate::crypto::sha256;
use crate::model::{
    Action, ActionKind, AuditEvent, AuditFilter, Device, Permission, RoleAssignment,
};
use crate::rbac::{self, DeviceDenial, Visibility};
use crate::secret::BearerToken;
use crate::store::AuthenticatedPrincipal;
use std::collections::BTreeSet;

/// Every admin operation: its name in the audit log (the RPC's name) and the permissions a caller
/// must hold somewhere before anything is looked at. A call about a device checks again, against
/// what the caller holds in the device's group (see [`rbac::Grants`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Operation {
    ListDevices,
    SearchDevices,
    GetDevice,
    WatchDevice,
    WatchDevices,
    CreateEnrollmentToken,
    ReEnrollDevice,
    MoveDevice,
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
    RotatePrincipalToken,
    RevokePrincipalTokens,
    GetCaller,
}

/// What a remote lock needs: the task, and the device visible.
pub(super) const REMOTE_LOCK: [Permission; 2] = [
    Permission::RemoteTasksRemoteLock,
    Permission::ManagedDevicesRead,
];

pub(super) const RE_ENROLL: [Permission; 3] = [
    Permission::EnrollmentCreate,
    Permission::ManagedDevicesRead,
    Permission::ManagedDevicesUpdate,
];

/// Moving a device: manage it where it is (and, checked separately, where it goes).
pub(super) const MOVE_DEVICE: [Permission; 2] = [
    Permission::ManagedDevicesRead,
    Permission::ManagedDevicesUpdate,
];

pub(super) const ASSIGN_POLICY: [Permission; 2] = [
    Permission::DeviceConfigurationsAssign,
    Permission::ManagedDevicesRead,
];

pub(super) const REVEAL_PASSCODE: [Permission; 2] = [
    Permission::RemoteTasksResetPasscode,
    Permission::ManagedDevicesRead,
];

pub(super) const READ: [Permission; 1] = [Permission::ManagedDevicesRead];

impl Operation {
    pub(crate) const ALL: [Operation; 29] = [
        Operation::ListDevices,
        Operation::SearchDevices,
        Operation::GetDevice,
        Operation::WatchDevice,
        Operation::WatchDevices,
        Operation::CreateEnrollmentToken,
        Operation::ReEnrollDevice,
        Operation::MoveDevice,
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
        Operation::RotatePrincipalToken,
        Operation::RevokePrincipalTokens,
        Operation::GetCaller,
    ];

    /// The RPC name, as the audit log records it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Operation::ListDevices => "ListDevices",
            Operation::SearchDevices => "SearchDevices",
            Operation::GetDevice => "GetDevice",
            Operation::WatchDevice => "WatchDevice",
            Operation::WatchDevices => "WatchDevices",
            Operation::CreateEnrollmentToken => "CreateEnrollmentToken",
            Operation::ReEnrollDevice => "ReEnrollDevice",
            Operation::MoveDevice => "MoveDevice",
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
            Operation::RotatePrincipalToken => "RotatePrincipalToken",
            Operation::RevokePrincipalTokens => "RevokePrincipalTokens",
            Operation::GetCaller => "GetCaller",
        }
    }

    pub(crate) fn parse(name: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|o| o.name() == name)
    }

    /// Whether the call adds rows to the store (beyond its audit row), so that it is refused
    /// while free disk space is under the reserve. Updates and deletions are not: they finish
    /// or undo what exists.
    pub(crate) fn adds_data(self) -> bool {
        matches!(
            self,
            Operation::CreateEnrollmentToken
                | Operation::ReEnrollDevice
                | Operation::ResetPasscode
                | Operation::RemoteLock
                | Operation::CreateRole
                | Operation::CreatePrincipal
                | Operation::AssignRole
                | Operation::RotatePrincipalToken
        )
    }

    /// What the caller must hold somewhere for the call to be considered at all.
    pub(crate) fn needs(self) -> &'static [Permission] {
        match self {
            Operation::ListDevices
            | Operation::SearchDevices
            | Operation::GetDevice
            | Operation::WatchDevice
            | Operation::WatchDevices
            | Operation::GetAction
            | Operation::ListActions
            | Operation::WatchAction
            // The action's kind decides the rest, once it is read.
            | Operation::CancelAction => &READ,
            Operation::CreateEnrollmentToken => &[Permission::EnrollmentCreate],
            Operation::ReEnrollDevice => &RE_ENROLL,
            Operation::MoveDevice => &MOVE_DEVICE,
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
            // Anyone may ask who they are; a device named checks visibility like GetDevice.
            Operation::GetCaller => &[],
            // Anyone may rotate or revoke their own tokens; another's needs Roles.Manage, checked
            // once the principal named is known.
            Operation::RotatePrincipalToken | Operation::RevokePrincipalTokens => &[],
        }
    }
}

/// The permission a remote task of this kind needs (to start it or to cancel it).
pub(super) fn task_permission(kind: ActionKind) -> Permission {
    match kind {
        ActionKind::ResetPasscode => Permission::RemoteTasksResetPasscode,
        ActionKind::RemoteLock => Permission::RemoteTasksRemoteLock,
    }
}

/// What a caller holds, as [`ControlPlane::caller_access`] answers it.
#[derive(Clone, Debug)]
pub(crate) struct CallerAccess {
    pub(crate) assignments: Vec<RoleAssignment>,
    /// What it holds for some device group (tenant-wide permissions only for every group).
    pub(crate) anywhere: BTreeSet<Permission>,
    /// What it holds in the group of the device asked about, if one was.
    pub(crate) on_device: Option<BTreeSet<Permission>>,
}

/// Extra audit facts from a successful call.
#[derive(Clone, Debug, Default)]
pub(crate) struct AuditNote {
    pub(crate) device_id: Option<String>,
    pub(crate) action_id: Option<String>,
    pub(crate) detail: String,
}

impl AuditNote {
    pub(crate) fn detail(detail: impl Into<String>) -> AuditNote {
        AuditNote {
            detail: detail.into(),
            ..AuditNote::default()
        }
    }
}

impl ControlPlane {
    async fn authenticate(
        &self,
        bearer: Option<&BearerToken>,
    ) -> Result<AuthenticatedPrincipal, ServiceError> {
        let bearer = bearer.ok_or(ServiceError::Unauthenticated(
            "missing bearer token (metadata `authorization: Bearer <token>`)",
        ))?;
        if bearer.expose().len() > MAX_TOKEN_LEN {
            return Err(ServiceError::Unauthenticated("unknown bearer token"));
        }
        self.authenticate_hash(sha256(bearer.expose().as_bytes()))
            .await
    }

    /// The principal holding the token with this hash, while the token is valid: an expired,
    /// revoked or rotated-out token is refused with a message saying which.
    async fn authenticate_hash(
        &self,
        hash: [u8; 32],
    ) -> Result<AuthenticatedPrincipal, ServiceError> {
        let principal = self.principal_by_token(hash).await?;
        match principal.token.ended(self.now()) {
            Some(end) => Err(ServiceError::Unauthenticated(end.message())),
            None => Ok(principal),
        }
    }

    /// The principal a token hash belongs to, valid or not, from the cache or the store.
    async fn principal_by_token(
        &self,
        hash: [u8; 32],
    ) -> Result<AuthenticatedPrincipal, ServiceError> {
        // Read before the store, so a change of the access rules committed while the store is
        // read makes the cache refuse what was read.
        let generation = *self.hot.access_generation.borrow();
        {
            let mut cache = self.principal_cache();
            if cache.generation != generation {
                cache.generation = generation;
                cache.by_token.clear();
            }
            if let Some(principal) = cache.by_token.get(&hash) {
                return Ok(principal.clone());
            }
        }
        let principal = self
            .store
            .principal_by_token(hash)
            .await?
            .ok_or(ServiceError::Unauthenticated("unknown bearer token"))?;
        let mut cache = self.principal_cache();
        if cache.generation == generation && *self.hot.access_generation.borrow() == generation {
            if cache.by_token.len() >= MAX_CACHED_PRINCIPALS {
                cache.by_token.clear();
            }
            cache.by_token.insert(hash, principal.clone());
        }
        Ok(principal)
    }

    /// Follows changes of the access rules (roles, assignments, admin tokens) for
    /// [`ControlPlane::access_ended`]; marked changed already, so the first wait checks the
    /// caller at once (a change committed since it was authenticated is not missed).
    pub(crate) fn follow_access(&self) -> tokio::sync::watch::Receiver<u64> {
        let mut changes = self.hot.access_generation.subscribe();
        changes.mark_changed();
        changes
    }

    /// Resolves, with the error to end the stream with, once `caller` may no longer hold a stream
    /// of `operation` open: its token expired, was revoked or rotated out, or it lost what the
    /// operation needs. Checked whenever the access rules change and when the token expires;
    /// `caller` is kept up to date in between, so the stream's own checks (a device's group) use
    /// the caller's current grants. `changes` comes from [`ControlPlane::follow_access`], made
    /// before the stream starts and kept across calls, so no change is missed between them.
    pub(crate) async fn access_ended(
        &self,
        caller: &mut AuthenticatedPrincipal,
        operation: Operation,
        changes: &mut tokio::sync::watch::Receiver<u64>,
    ) -> ServiceError {
        loop {
            // At most a day at a time: a far expiry is checked again rather than slept on whole.
            let until_expiry = caller
                .token
                .expires_at
                .saturating_sub(self.now())
                .min(crate::clock::DAY);
            // The sender lives in the hot state, which outlives every caller of this.
            tokio::select! {
                Ok(()) = changes.changed() => {}
                () = tokio::time::sleep(std::time::Duration::from_millis(until_expiry)) => {}
            }
            match self.authenticate_hash(caller.token_hash).await {
                Ok(principal) => match principal.grants.authorize_anywhere(operation.needs()) {
                    Ok(()) => *caller = principal,
                    Err(denied) => return denied.into(),
                },
                Err(error) => return error,
            }
        }
    }

    fn principal_cache(&self) -> std::sync::MutexGuard<'_, PrincipalCache> {
        self.principals
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs one admin operation: authenticates, checks that the caller holds what `operation`
    /// needs somewhere, runs `body`, and audits the outcome whatever it is, once the caller is
    /// authenticated (a call without a valid token is refused unaudited). `device_id` is the
    /// device the request names, recorded when the call fails before `body` says otherwise.
    pub(crate) async fn admin_call<T, F, Fut>(
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
        let principal = match self.authenticate(bearer).await {
            Ok(principal) => principal,
            Err(error) => {
                // Not audited: a durable row (and an fsync) for every call without a valid token
                // would let anyone fill the disk. The admin-call metric counts them instead
                // (`droidfleet_admin_calls_total{result="unauthenticated"}`).
                tracing::debug!(operation = operation.name(), "unauthenticated admin call");
                return Err(error);
            }
        };
        let name = principal.name.clone();
        let outcome = match principal.grants.authorize_anywhere(operation.needs()) {
            Ok(()) if operation.adds_data() => match self.check_disk_reserve() {
                Ok(()) => body(principal).await,
                Err(full) => Err(full),
            },
            Ok(()) => body(principal).await,
            Err(denied) => Err(denied.into()),
        };
        let (result, note) = match &outcome {
            Ok((_, note)) => ("ok", note.clone()),
            Err(e) => (e.code().as_str(), AuditNote::detail(e.to_string())),
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
    pub(super) async fn device_for(
        &self,
        caller: &AuthenticatedPrincipal,
        device_id: &str,
        needed: &[Permission],
    ) -> Result<Device, ServiceError> {
        check_id("device_id", device_id)?;
        self.device_visible(caller, device_id, needed)
    }

    /// [`ControlPlane::device_for`] of an id already checked. From the hot state, which holds
    /// every committed device as the store does.
    pub(super) fn device_visible(
        &self,
        caller: &AuthenticatedPrincipal,
        device_id: &str,
        needed: &[Permission],
    ) -> Result<Device, ServiceError> {
        let not_found = || ServiceError::NotFound {
            what: "device",
            id: device_id.to_string(),
        };
        let device = self.hot.device(device_id).ok_or_else(not_found)?;
        match caller.grants.authorize_device(&device.group, needed) {
            Ok(()) => Ok(device),
            Err(DeviceDenial::Invisible) => Err(not_found()),
            Err(DeviceDenial::Denied(denied)) => Err(denied.into()),
        }
    }

    /// The action and its device, if `caller` may see the device and holds `needed` in its group.
    pub(super) async fn action_for(
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
        let device = self.hot.device(&action.device_id).ok_or_else(not_found)?;
        match caller.grants.authorize_device(&device.group, needed) {
            Ok(()) => Ok((action, device)),
            Err(DeviceDenial::Invisible) => Err(not_found()),
            Err(DeviceDenial::Denied(denied)) => Err(denied.into()),
        }
    }

    /// The groups `caller` may see, as the store filters them (`None`: every group).
    pub(super) fn visible_groups(
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

    /// Who `caller` is and what it holds, anywhere and, with `device_id`, for that device (which
    /// it must be able to see, as for GetDevice).
    pub(crate) async fn caller_access(
        &self,
        caller: &AuthenticatedPrincipal,
        device_id: Option<&str>,
    ) -> Result<CallerAccess, ServiceError> {
        let on_device = match device_id {
            Some(device_id) => {
                let device = self.device_for(caller, device_id, &READ).await?;
                Some(caller.grants.held_in(&device.group))
            }
            None => None,
        };
        Ok(CallerAccess {
            assignments: caller
                .grants
                .0
                .iter()
                .map(|grant| RoleAssignment {
                    role: grant.role.name.clone(),
                    group: grant.group.clone(),
                })
                .collect(),
            anywhere: caller.grants.held_anywhere(),
            on_device,
        })
    }

    /// A page of the audit events `filter` matches. `limit` is the field clients sent before
    /// paging: the page size when the request's own is 0.
    pub(crate) async fn audit_events(
        &self,
        filter: &AuditFilter,
        limit: u32,
        page: &PageRequest,
    ) -> Result<Listing<AuditEvent>, ServiceError> {
        if let Some(device_id) = &filter.device_id {
            check_id("device_id", device_id)?;
        }
        if let Some(principal) = &filter.principal {
            rbac::validate_principal_name(principal)
                .map_err(|problem| ServiceError::invalid("principal", problem))?;
        }
        if let Some(operation) = &filter.operation
            && Operation::parse(operation).is_none()
            && operation != super::sessions::SESSION_TAKEOVER
        {
            return Err(ServiceError::invalid(
                "operation",
                format!(
                    "must be the name of an admin RPC, such as ResetPasscode, or {}",
                    super::sessions::SESSION_TAKEOVER
                ),
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
        if limit > MAX_AUDIT_LIMIT {
            return Err(ServiceError::invalid(
                "limit",
                format!("must be at most {MAX_AUDIT_LIMIT}"),
            ));
        }
        let page = match (page.page_size, i32::try_from(limit)) {
            (0, Ok(limit)) if limit > 0 => PageRequest {
                page_size: limit,
                page_token: page.page_token.clone(),
            },
            _ => page.clone(),
        };
        let since = filter.since.map(|t| t.to_string()).unwrap_or_default();
        let until = filter.until.map(|t| t.to_string()).unwrap_or_default();
        let filters = [
            filter.device_id.as_deref().unwrap_or(""),
            filter.principal.as_deref().unwrap_or(""),
            filter.operation.as_deref().unwrap_or(""),
            &since,
            &until,
        ];
        let query = page.query(List::AuditEvents, &filters)?;
        let events = self.store.list_audit(filter, &query).await?;
        Ok(listing(List::AuditEvents, &filters, events))
    }
}
