//! Persistence behind the [`Store`] trait. SQLite (embedded, WAL, durable on commit) is the only
//! implementation today; a PostgreSQL one would pass the same tests.
//!
//! The store holds no plaintext secret: escrow tokens and revealable passcodes arrive sealed
//! (AES-256-GCM, see `crypto.rs`), principal tokens and enrollment tokens arrive as SHA-256
//! hashes; devices have only public keys.
//!
//! Writes are group-committed: many callers' writes share one transaction and one fsync, and each
//! caller is answered once that transaction is durable. A store reports what each commit changed,
//! in commit order and before any caller of that commit is answered, to the [`CommitObserver`]
//! given to [`Store::observe`]; [`Store::session_state`] reads the same state in bulk. Together
//! they let the control plane keep its sessions' hot state in memory without a second source of
//! truth: the memory follows the store.

mod sqlite;

pub use sqlite::SqliteStore;

use crate::clock::Millis;
use crate::model::{
    Action, ActionKind, ActionState, AdminToken, AuditEvent, AuditFilter, Device, ErrorCode,
    Ownership, PasscodePolicy, Principal, Role, RoleAssignment, Scope, StoreStatus,
};
use crate::rbac::Grants;
use droidfleet_telemetry::traceparent::TraceParent;
use std::collections::BTreeSet;
use std::sync::Arc;

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
    /// The write ran, but the transaction it shared with other callers' writes could not be
    /// committed, so nothing of it is stored.
    #[error("the write was not committed: {0}")]
    NotCommitted(Arc<StoreError>),
    #[error("the store is closed")]
    Closed,
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
    /// The token was bound to a known device, which now has the new key.
    pub re_enrolled: bool,
}

/// A device to create at enrollment (its group comes from the enrollment token).
#[derive(Clone, Debug)]
pub struct NewDevice {
    pub id: String,
    pub display_name: String,
    pub ownership: Ownership,
    /// The Ed25519 public key the device made for this enrollment; its sessions open with a
    /// proof by the private key.
    pub public_key: [u8; 32],
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
    /// The trace the action belongs to, continued by the control plane.
    pub traceparent: TraceParent,
}

/// Fields a state transition sets alongside the new state. `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct ActionUpdate {
    pub error_code: Option<ErrorCode>,
    /// Clears the error code: a late success recorded after the action expired.
    pub clear_error_code: bool,
    pub reason: Option<String>,
    pub delivered_at: Option<Millis>,
    pub completed_at: Option<Millis>,
    pub user_entered_at: Option<Millis>,
    /// Records when the command was first handed to the device's session.
    pub sent_at: Option<Millis>,
    /// The change applies only to a command never sent (cancel and outright expiry), checked in
    /// the same compare-and-set as the state, so it cannot race the session sending it.
    pub only_if_unsent: bool,
    /// Records an admin's cancel request at this time and gives the signed cancel the device's
    /// next sequence number; applies only to a command already sent with no request yet, checked
    /// in the same compare-and-set (PROTOCOL.md CP-CANCEL-1).
    pub request_cancel: Option<Millis>,
    /// The device refused the cancel without answering the command: the command goes again in
    /// the cancel's place on the next session.
    pub withdraw_cancel: bool,
    /// The device's reason for refusing the cancel.
    pub cancel_refusal: Option<String>,
    /// Delete the sealed passcode in the same transaction (the action failed, so there is nothing
    /// worth revealing).
    pub purge_passcode: bool,
}

/// Where a page of a list starts and how long it is. Lists page by keyset: a page starts after
/// the previous page's last key, so it costs its own rows whatever the list's length, and rows
/// inserted or deleted elsewhere never shift it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageQuery<K> {
    /// The key of the previous page's last item; `None` for the first page.
    pub after: Option<K>,
    /// At most this many items.
    pub limit: u32,
}

impl<K> PageQuery<K> {
    /// The first `limit` items.
    pub fn first(limit: u32) -> PageQuery<K> {
        PageQuery { after: None, limit }
    }
}

/// One page of a list.
#[derive(Clone, Debug)]
pub struct Page<T, K> {
    pub items: Vec<T>,
    /// The key of the page's last item when another page follows; `None` on the last page.
    pub next: Option<K>,
}

/// ListDevices' order: enrollment time, then id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceKey {
    pub enrolled_at: Millis,
    pub id: String,
}

/// ListActions' order, newest first: creation time, then the store's row number (the order the
/// store created them in, newest first among actions of the same millisecond).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActionKey {
    pub created_at: Millis,
    pub row: i64,
}

/// The audit log's order, newest first: time, then id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditKey {
    pub at: Millis,
    pub id: u64,
}

/// Roles' and principals' order: the store's row number, the order they were created in.
pub type RowKey = i64;

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

/// A principal's name and role assignments, found by its token hash, with that token's
/// lifecycle (the service decides whether it is still valid).
#[derive(Clone, Debug)]
pub struct AuthenticatedPrincipal {
    pub name: String,
    pub grants: Grants,
    /// The token the call presented: its expiry, revocation, rotation.
    pub token: AdminToken,
    /// SHA-256 of that token, so a watch can look it up again when access rules change.
    pub token_hash: [u8; 32],
}

/// An admin token to store: its hash and when it expires.
#[derive(Clone, Copy, Debug)]
pub struct NewAdminToken {
    pub hash: [u8; 32],
    pub issued_at: Millis,
    pub expires_at: Millis,
}

/// A command of a device that still needs delivery or a result, with its sealed passcode (a
/// reset's, while it is stored).
#[derive(Clone, Debug)]
pub struct OpenCommand {
    pub action: Action,
    pub sealed_passcode: Option<Vec<u8>>,
}

/// What a connected device's session needs, as stored.
#[derive(Clone, Debug)]
pub struct DeviceState {
    pub device: Device,
    /// The device's Ed25519 public key, which its session proofs must verify with; `None` when
    /// it enrolled before keys or an admin revoked the key for re-enrollment (no session opens).
    pub public_key: Option<[u8; 32]>,
    /// The escrowed token of each store, sealed.
    pub escrow_tokens: Vec<(Scope, Vec<u8>)>,
    /// Its pending and active commands, by sequence.
    pub open_commands: Vec<OpenCommand>,
}

/// One committed change, as a [`CommitObserver`] is told of it.
#[derive(Clone, Debug)]
pub enum Change {
    /// A device enrolled: a new one, or a known one re-enrolled (a new key, no escrowed token,
    /// no reported status; its commands kept).
    Enrolled(Box<DeviceState>),
    /// An admin revoked the device's key for re-enrollment: no session opens until it enrolls.
    KeyRevoked { device_id: String },
    Status {
        device_id: String,
        stores: Vec<StoreStatus>,
        last_seen: Millis,
    },
    Policy {
        device_id: String,
        scope: Scope,
        policy: Option<PasscodePolicy>,
        /// The device's policy version after this change.
        version: u64,
    },
    EscrowToken {
        device_id: String,
        scope: Scope,
        sealed: Vec<u8>,
    },
    /// The device reported another Android build in its Hello.
    Build {
        device_id: String,
        api_level: u32,
        maker_profile: String,
    },
    /// An admin moved the device to another group.
    Moved { device_id: String, group: String },
    /// An action was created; `sealed_passcode` is set for a pending reset.
    ActionCreated(OpenCommand),
    /// An action changed state or fields; its passcode is gone when `passcode_visible_until` is
    /// `None`.
    ActionChanged(Action),
    /// Every passcode visible until `until` or earlier was deleted.
    PasscodesPurged { until: Millis },
    /// Roles, principals or role assignments changed.
    AccessChanged,
}

/// Told of every commit's changes, in commit order, before any caller of that commit is answered,
/// so what it keeps can never be older than what a caller saw acknowledged. It runs inside the
/// writer: it must not block.
pub trait CommitObserver: Send + Sync + 'static {
    fn committed(&self, changes: Vec<Change>);
}

/// Storage for the control plane. Every method is atomic (one transaction, or one part of a
/// shared transaction that commits or rolls back whole) and durable when it returns.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Tells `observer` of every later commit's changes (see [`CommitObserver`]). One observer
    /// per store; a second call replaces the first.
    fn observe(&self, observer: Arc<dyn CommitObserver>);
    /// Every device with what its sessions need, read in one snapshot. Read before
    /// [`Store::observe`]'s observer may miss nothing: call it before the first write.
    async fn session_state(&self) -> Result<Vec<DeviceState>, StoreError>;

    // Enrollment and devices.
    async fn create_enrollment_token(&self, token: NewEnrollmentToken) -> Result<(), StoreError>;
    /// Uses one use of the enrollment token and creates the device in the token's group,
    /// atomically. A token bound to a known device (see [`Store::reenroll_device`]) instead gives
    /// that device `device.public_key` and drops its escrowed tokens and reported status;
    /// `device.id` is then unused. `EnrollmentTokenInvalid` when the token is unknown, used up or
    /// expired at `device.enrolled_at`; `EnrollmentOwnership` when it re-enrolls a device of
    /// another ownership (the use is not spent).
    async fn enroll_device(
        &self,
        token_hash: [u8; 32],
        device: NewDevice,
    ) -> Result<Enrolled, StoreError>;
    /// Revokes the device's key (no session opens until it enrolls again) and creates a
    /// single-use token bound to the device, replacing any earlier one, atomically.
    /// `token.group` is ignored: the device keeps its group.
    async fn reenroll_device(
        &self,
        device_id: &str,
        token: NewEnrollmentToken,
    ) -> Result<(), StoreError>;
    async fn get_device(&self, device_id: &str) -> Result<Option<Device>, StoreError>;
    /// A page of the devices of `groups` (every group when `None`), in enrollment order.
    async fn list_devices(
        &self,
        groups: Option<&BTreeSet<String>>,
        page: &PageQuery<DeviceKey>,
    ) -> Result<Page<Device, DeviceKey>, StoreError>;
    /// One page of devices matching `query`, in ascending (display name, id) order, filtered and
    /// paged by the database (indexes, keyset paging), each with its newest action.
    async fn search_devices(&self, query: &DeviceQuery) -> Result<Vec<ListedDevice>, StoreError>;
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
    /// A page of actions, newest first; every device's when `device_id` is `None`, limited to
    /// devices of `groups` unless that is `None`.
    async fn list_actions(
        &self,
        device_id: Option<&str>,
        groups: Option<&BTreeSet<String>>,
        page: &PageQuery<ActionKey>,
    ) -> Result<Page<Action, ActionKey>, StoreError>;
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
    /// Records that the user entered the passcode a reset of `device_id` set (the action stays
    /// `done`); returns the action after, `NotFound` when it is not that device's.
    async fn set_user_entered(
        &self,
        device_id: &str,
        action_id: &str,
        at: Millis,
    ) -> Result<Action, StoreError>;
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
    /// A page of roles, in creation order.
    async fn list_roles(&self, page: &PageQuery<RowKey>) -> Result<Page<Role, RowKey>, StoreError>;
    /// Replaces a custom role's permissions (`BuiltInRole` for a built-in one).
    async fn update_role(&self, role: &Role) -> Result<(), StoreError>;
    /// Deletes a custom role nobody holds (`BuiltInRole`, `RoleInUse`).
    async fn delete_role(&self, name: &str) -> Result<(), StoreError>;
    /// Creates a principal; duplicate assignments count once; an unknown role is `NotFound`.
    /// Created at `token.issued_at`, with that token.
    async fn create_principal(
        &self,
        name: &str,
        token: NewAdminToken,
        assignments: &[RoleAssignment],
    ) -> Result<Principal, StoreError>;
    /// A page of principals, in creation order, each with its assignments and newest token.
    async fn list_principals(
        &self,
        page: &PageQuery<RowKey>,
    ) -> Result<Page<Principal, RowKey>, StoreError>;
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
    /// The principal the token belongs to, with the token's lifecycle, even when it has ended
    /// (the caller says why it is refused).
    async fn principal_by_token(
        &self,
        token_hash: [u8; 32],
    ) -> Result<Option<AuthenticatedPrincipal>, StoreError>;
    /// Gives the principal the token `new`; each of its tokens still valid at `new.issued_at` is
    /// marked rotated and ends at `old_tokens_end` at the latest. `NotFound` for an unknown one.
    async fn rotate_admin_token(
        &self,
        principal: &str,
        new: NewAdminToken,
        old_tokens_end: Millis,
    ) -> Result<Principal, StoreError>;
    /// Revokes every token of the principal still valid at `now`; returns how many.
    /// `NotFound` for an unknown principal.
    async fn revoke_admin_tokens(&self, principal: &str, now: Millis) -> Result<u64, StoreError>;
    /// When no principal holding Roles.Manage for every group has a token valid at
    /// `token.issued_at`, makes sure `principal` exists and holds `role` for every group and gives
    /// it `token`, in one write; returns whether it did.
    async fn recover_admin(
        &self,
        principal: &str,
        role: &str,
        token: NewAdminToken,
    ) -> Result<bool, StoreError>;

    // Audit.
    async fn append_audit(&self, event: AuditEvent) -> Result<(), StoreError>;
    /// A page of the events `filter` matches, newest first.
    async fn list_audit(
        &self,
        filter: &AuditFilter,
        page: &PageQuery<AuditKey>,
    ) -> Result<Page<AuditEvent, AuditKey>, StoreError>;
    /// Deletes the oldest audit rows: every row up to the newest one recorded before
    /// `recorded_before`, and every row past the newest `keep_newest`, in turns of at most
    /// `batch` rows so other writers wait little; returns how many went. Rows are appended in
    /// time order, so "oldest" is by id.
    async fn prune_audit(
        &self,
        recorded_before: Millis,
        keep_newest: u64,
        batch: u64,
    ) -> Result<u64, StoreError>;
}
