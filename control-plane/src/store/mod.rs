//! Persistence behind the [`Store`] trait. SQLite (embedded, WAL, durable on commit) is the only
//! implementation today; a PostgreSQL one would pass the same tests.
//!
//! The store holds no plaintext secret: escrow tokens and revealable passcodes arrive sealed
//! (AES-256-GCM, see `crypto.rs`), principal tokens, enrollment tokens and device credentials
//! arrive as SHA-256 hashes.

mod sqlite;

pub use sqlite::SqliteStore;

use crate::clock::Millis;
use crate::model::{
    Action, ActionKind, ActionState, AuditEvent, AuditFilter, Device, ErrorCode, Ownership,
    PasscodePolicy, Principal, Role, RoleAssignment, Scope, StoreStatus,
};
use crate::rbac::Grants;
use std::collections::BTreeSet;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("the enrollment token is unknown, used up or expired")]
    EnrollmentTokenInvalid,
    #[error("{kind} {name:?} already exists")]
    AlreadyExists { kind: &'static str, name: String },
    #[error("{kind} {name:?} does not exist")]
    NotFound { kind: &'static str, name: String },
    #[error("the token re-enrolls a {expected} device; enroll it with that ownership")]
    EnrollmentOwnership { expected: Ownership },
    #[error("role {0:?} is built in and cannot change")]
    BuiltInRole(String),
    #[error("role {0:?} is still assigned; unassign it first")]
    RoleInUse(String),
    #[error(
        "refused: no principal would be left holding Roles.Manage for every group, so nobody \
         could manage roles any more"
    )]
    WouldLockOut,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// An enrollment token to create.
#[derive(Clone, Debug)]
pub struct NewEnrollmentToken {
    /// SHA-256 of the token.
    pub hash: [u8; 32],
    pub max_uses: u32,
    pub expires_at: Millis,
    pub created_by: String,
    /// The group devices enrolling with it join.
    pub group: String,
}

/// What [`Store::enroll_device`] did.
#[derive(Clone, Debug)]
pub struct Enrolled {
    pub device: Device,
    /// The token was bound to a known device, which now has the new credential.
    pub re_enrolled: bool,
}

/// A device to create at enrollment (its group comes from the enrollment token).
#[derive(Clone, Debug)]
pub struct NewDevice {
    pub id: String,
    pub display_name: String,
    pub ownership: Ownership,
    /// SHA-256 of the device credential.
    pub credential_hash: [u8; 32],
    pub enrolled_at: Millis,
}

/// An action to create.
#[derive(Clone, Debug)]
pub struct NewAction {
    pub id: String,
    pub device_id: String,
    pub kind: ActionKind,
    pub scope: Scope,
    pub requested_by: String,
    pub created_at: Millis,
    pub not_after: Millis,
    /// `Pending` for an action that becomes a command (the store then allocates the device's next
    /// sequence number in the same transaction); a final state for one that ends at once.
    pub state: ActionState,
    pub error_code: Option<ErrorCode>,
    pub reason: String,
    /// The new passcode, sealed, with how long it may be revealed.
    pub sealed_passcode: Option<(Vec<u8>, Millis)>,
}

/// Fields a state transition sets alongside the new state. `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct ActionUpdate {
    pub error_code: Option<ErrorCode>,
    pub reason: Option<String>,
    pub delivered_at: Option<Millis>,
    pub completed_at: Option<Millis>,
    pub user_entered_at: Option<Millis>,
    /// Delete the sealed passcode in the same transaction (the action failed, so there is nothing
    /// worth revealing).
    pub purge_passcode: bool,
}

/// A device list's position: lists are ordered by display name, then id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceCursor {
    pub display_name: String,
    pub id: String,
}

/// Where a page of devices starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PageStart {
    First,
    /// The devices after this position.
    After(DeviceCursor),
    /// The devices before this position (the page still comes in ascending order).
    Before(DeviceCursor),
}

/// What a device search looks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SearchText {
    /// Display names that contain this (ASCII case-insensitively).
    NameContains(String),
    /// The device with this id.
    Id(String),
}

/// Which devices [`Store::search_devices`] lists; `None` filters match every device.
#[derive(Clone, Debug)]
pub struct DeviceQuery {
    /// Devices of these groups only.
    pub groups: Option<BTreeSet<String>>,
    pub search: Option<SearchText>,
    pub ownership: Option<Ownership>,
    /// The state of the device's newest action (the last one created).
    pub latest_action_state: Option<ActionState>,
    pub start: PageStart,
    /// At most this many devices.
    pub limit: u32,
}

/// A device as a list shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedDevice {
    pub device: Device,
    /// Its newest action, if it ever had one.
    pub latest_action: Option<Action>,
}

/// A principal's name and role assignments, found by its token hash.
#[derive(Clone, Debug)]
pub struct AuthenticatedPrincipal {
    pub name: String,
    pub grants: Grants,
}

/// Storage for the control plane. Every method is one transaction, durable when it returns.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    // Enrollment and devices.
    async fn create_enrollment_token(&self, token: NewEnrollmentToken) -> Result<(), StoreError>;
    /// Uses one use of the enrollment token and creates the device in the token's group,
    /// atomically. A token bound to a known device (see [`Store::reenroll_device`]) instead gives
    /// that device `device.credential_hash` and drops its escrowed tokens and reported status;
    /// `device.id` is then unused. `EnrollmentTokenInvalid` when the token is unknown, used up or
    /// expired at `device.enrolled_at`; `EnrollmentOwnership` when it re-enrolls a device of
    /// another ownership (the use is not spent).
    async fn enroll_device(
        &self,
        token_hash: [u8; 32],
        device: NewDevice,
    ) -> Result<Enrolled, StoreError>;
    /// Revokes the device's credential (replacing its hash with `revoked_credential_hash`, of a
    /// credential nobody holds) and creates a single-use token bound to the device, replacing any
    /// earlier one, atomically. `token.group` is ignored: the device keeps its group.
    async fn reenroll_device(
        &self,
        device_id: &str,
        revoked_credential_hash: [u8; 32],
        token: NewEnrollmentToken,
    ) -> Result<(), StoreError>;
    async fn get_device(&self, device_id: &str) -> Result<Option<Device>, StoreError>;
    /// Devices of `groups` (every group when `None`), in enrollment order.
    async fn list_devices(
        &self,
        groups: Option<&BTreeSet<String>>,
    ) -> Result<Vec<Device>, StoreError>;
    /// One page of devices matching `query`, in ascending (display name, id) order, filtered and
    /// paged by the database (indexes, keyset paging), each with its newest action.
    async fn search_devices(&self, query: &DeviceQuery) -> Result<Vec<ListedDevice>, StoreError>;
    /// The device whose credential hashes to `credential_hash`.
    async fn device_by_credential(
        &self,
        credential_hash: [u8; 32],
    ) -> Result<Option<Device>, StoreError>;
    async fn update_device_status(
        &self,
        device_id: &str,
        stores: &[StoreStatus],
        last_seen: Millis,
    ) -> Result<(), StoreError>;
    /// Records the Android the device reports it runs (API level, maker profile).
    async fn set_device_build(
        &self,
        device_id: &str,
        api_level: u32,
        maker_profile: &str,
    ) -> Result<(), StoreError>;
    /// Moves the device to `group`; its actions, policies and tokens stay. `NotFound` for an
    /// unknown device.
    async fn move_device(&self, device_id: &str, group: &str) -> Result<(), StoreError>;
    async fn set_policy(
        &self,
        device_id: &str,
        scope: Scope,
        policy: Option<&PasscodePolicy>,
    ) -> Result<(), StoreError>;
    /// Replaces the store's escrowed token (sealed).
    async fn put_escrow_token(
        &self,
        device_id: &str,
        scope: Scope,
        sealed_token: &[u8],
    ) -> Result<(), StoreError>;
    async fn escrow_token(
        &self,
        device_id: &str,
        scope: Scope,
    ) -> Result<Option<Vec<u8>>, StoreError>;

    // Actions.
    async fn create_action(&self, action: NewAction) -> Result<Action, StoreError>;
    async fn get_action(&self, action_id: &str) -> Result<Option<Action>, StoreError>;
    /// Newest first; every device's when `device_id` is `None`, limited to devices of `groups`
    /// unless that is `None`.
    async fn list_actions(
        &self,
        device_id: Option<&str>,
        groups: Option<&BTreeSet<String>>,
    ) -> Result<Vec<Action>, StoreError>;
    /// Actions of the device that still need delivery or a result (pending or active), by sequence.
    async fn open_commands(&self, device_id: &str) -> Result<Vec<Action>, StoreError>;
    /// Moves the action to `to` if it is in one of `from` (compare-and-set), setting `update`'s
    /// fields and `updated_at = now`. `Ok(None)` when it was not in `from`.
    async fn transition_action(
        &self,
        action_id: &str,
        from: &[ActionState],
        to: ActionState,
        update: ActionUpdate,
        now: Millis,
    ) -> Result<Option<Action>, StoreError>;
    /// Records that the user entered the passcode a reset set (the action stays `done`).
    async fn set_user_entered(&self, action_id: &str, at: Millis) -> Result<(), StoreError>;
    /// Pending or active actions whose not-after time is before `now`.
    async fn overdue_actions(&self, now: Millis) -> Result<Vec<Action>, StoreError>;
    /// The sealed passcode of the action while it is visible at `now`.
    async fn sealed_passcode(
        &self,
        action_id: &str,
        now: Millis,
    ) -> Result<Option<Vec<u8>>, StoreError>;
    /// Deletes every passcode whose visibility ended before `now`, so its bytes leave the file;
    /// returns how many.
    async fn purge_passcodes(&self, now: Millis) -> Result<u64, StoreError>;

    // Principals and roles. Changes that would leave no principal holding Roles.Manage for every
    // group fail with `WouldLockOut` and change nothing.
    async fn create_role(&self, role: &Role) -> Result<(), StoreError>;
    async fn list_roles(&self) -> Result<Vec<Role>, StoreError>;
    /// Replaces a custom role's permissions (`BuiltInRole` for a built-in one).
    async fn update_role(&self, role: &Role) -> Result<(), StoreError>;
    /// Deletes a custom role nobody holds (`BuiltInRole`, `RoleInUse`).
    async fn delete_role(&self, name: &str) -> Result<(), StoreError>;
    /// Creates a principal; duplicate assignments count once; an unknown role is `NotFound`.
    async fn create_principal(
        &self,
        name: &str,
        token_hash: [u8; 32],
        assignments: &[RoleAssignment],
        created_at: Millis,
    ) -> Result<Principal, StoreError>;
    async fn list_principals(&self) -> Result<Vec<Principal>, StoreError>;
    /// Adds an assignment (nothing changes if it exists); returns the principal after.
    async fn assign_role(
        &self,
        principal: &str,
        assignment: &RoleAssignment,
    ) -> Result<Principal, StoreError>;
    /// Removes an assignment (`NotFound` if it does not exist); returns the principal after.
    async fn unassign_role(
        &self,
        principal: &str,
        assignment: &RoleAssignment,
    ) -> Result<Principal, StoreError>;
    async fn delete_principal(&self, name: &str) -> Result<(), StoreError>;
    async fn principal_by_token(
        &self,
        token_hash: [u8; 32],
    ) -> Result<Option<AuthenticatedPrincipal>, StoreError>;

    // Audit.
    async fn append_audit(&self, event: AuditEvent) -> Result<(), StoreError>;
    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>, StoreError>;
}
