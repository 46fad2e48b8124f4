//! The SQLite implementation of [`Store`]: one embedded file, WAL journal, `synchronous = FULL`,
//! so a method that returned has its transaction on disk.
//!
//! Every write runs in a `BEGIN IMMEDIATE` transaction: it takes the write lock up front, so two
//! writers queue on the busy timeout instead of one failing when it upgrades a read lock. Checks
//! that must hold under concurrency (enrollment-token uses, action state) are part of the UPDATE's
//! WHERE clause rather than a read followed by a write.
//!
//! Passcode purging must remove the bytes, not just the row: `secure_delete` makes SQLite
//! overwrite deleted content, and a `wal_checkpoint(TRUNCATE)` after the delete copies the
//! overwritten pages into the main file and empties the WAL, which still held the old page images.
//!
//! Only runtime queries (`sqlx::query` with `bind`) are used, so building needs no database.

use super::{
    ActionUpdate, AuthenticatedPrincipal, Enrolled, NewAction, NewDevice, NewEnrollmentToken,
    Store, StoreError,
};
use crate::action::ActionState;
use crate::clock::Millis;
use crate::model::{
    Action, ActionKind, AuditEvent, AuditFilter, Complexity, Device, ErrorCode, Ownership,
    PasscodePolicy, PasscodeType, Principal, Role, RoleAssignment, Scope, StoreStatus, TokenState,
};
use crate::rbac::{Grant, Grants, Permission};
use serde::{Deserialize, Serialize};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Connections in the pool: WAL lets readers run beside the one writer; more than a few buys
/// nothing on an embedded file.
const POOL_SIZE: u32 = 4;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// `list_audit`'s limit when the filter asks for 0.
const DEFAULT_AUDIT_LIMIT: u32 = 1000;

/// The control plane's store in one SQLite file.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `path`, brings its schema up to date and makes
    /// sure the built-in roles exist with their current permissions.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: the WAL is synced at every commit, so a returned write survives power loss.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            // Deleted content (purged passcodes, replaced escrow tokens) is overwritten with zeros.
            .pragma("secure_delete", "ON");
        let pool = SqlitePoolOptions::new()
            .max_connections(POOL_SIZE)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        let store = SqliteStore {
            pool,
            path: path.to_path_buf(),
        };
        store.install_built_in_roles().await?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes every connection, waiting for those in use; later calls fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Inserts the built-in roles, or brings an existing built-in role's permissions up to date
    /// with this version of the code. A custom role is never overwritten.
    async fn install_built_in_roles(&self) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        for role in crate::rbac::built_in_roles() {
            sqlx::query(
                "INSERT INTO roles (name, permissions_json, built_in) VALUES (?, ?, 1)
                 ON CONFLICT (name) DO UPDATE SET permissions_json = excluded.permissions_json
                 WHERE roles.built_in = 1",
            )
            .bind(&role.name)
            .bind(permissions_json(&role.permissions)?)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A write transaction holding the write lock from its first statement.
    async fn write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Moves the WAL's content into the main file and truncates the WAL to zero bytes, so deleted
    /// data leaves the WAL too. Best effort: a long-running reader can keep it from completing;
    /// the next purge tries again.
    async fn checkpoint_truncate(&self) {
        let result = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&self.pool)
            .await;
        match result {
            Ok(row) => {
                let busy: i64 = row.try_get(0).unwrap_or(1);
                if busy != 0 {
                    tracing::warn!("WAL checkpoint could not complete (readers busy); will retry");
                }
            }
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; will retry"),
        }
    }
}

// ---- Conversions between domain values and columns. ----

/// Millis are `u64`; SQLite integers are `i64`. Times beyond year 292 million saturate, which
/// keeps comparisons right.
fn db_time(ms: Millis) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn time_from_db(value: i64, column: &str) -> Result<Millis, StoreError> {
    Millis::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative {column}")))
}

fn opt_time_from_db(value: Option<i64>, column: &str) -> Result<Option<Millis>, StoreError> {
    value.map(|v| time_from_db(v, column)).transpose()
}

fn corrupt(column: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("unknown {column} {value:?}"))
}

fn parse_scope(text: &str) -> Result<Scope, StoreError> {
    Scope::parse(text).ok_or_else(|| corrupt("scope", text))
}

fn passcode_type_str(t: PasscodeType) -> &'static str {
    match t {
        PasscodeType::Pin => "pin",
        PasscodeType::NumericComplex => "numeric_complex",
        PasscodeType::Alphanumeric => "alphanumeric",
        PasscodeType::Complex => "complex",
    }
}

fn passcode_type_parse(text: &str) -> Result<PasscodeType, StoreError> {
    [
        PasscodeType::Pin,
        PasscodeType::NumericComplex,
        PasscodeType::Alphanumeric,
        PasscodeType::Complex,
    ]
    .into_iter()
    .find(|t| passcode_type_str(*t) == text)
    .ok_or_else(|| corrupt("passcode type", text))
}

fn complexity_str(c: Complexity) -> &'static str {
    match c {
        Complexity::Unspecified => "unspecified",
        Complexity::Low => "low",
        Complexity::Medium => "medium",
        Complexity::High => "high",
    }
}

fn complexity_parse(text: &str) -> Result<Complexity, StoreError> {
    [
        Complexity::Unspecified,
        Complexity::Low,
        Complexity::Medium,
        Complexity::High,
    ]
    .into_iter()
    .find(|c| complexity_str(*c) == text)
    .ok_or_else(|| corrupt("complexity", text))
}

fn token_state_str(s: TokenState) -> &'static str {
    match s {
        TokenState::None => "none",
        TokenState::Pending => "pending",
        TokenState::Active => "active",
    }
}

fn token_state_parse(text: &str) -> Result<TokenState, StoreError> {
    [TokenState::None, TokenState::Pending, TokenState::Active]
        .into_iter()
        .find(|s| token_state_str(*s) == text)
        .ok_or_else(|| corrupt("token state", text))
}

/// The JSON shape of a passcode policy column. A private mirror keeps serde out of the domain
/// types and pins the stored format independently of them.
#[derive(Serialize, Deserialize)]
struct PolicyJson {
    passcode_type: String,
    min_length: u32,
    complexity: String,
    min_letters: u32,
    min_upper_case: u32,
    min_lower_case: u32,
    min_digits: u32,
    min_symbols: u32,
    min_non_letters: u32,
    max_failed_attempts_before_wipe: u32,
}

fn policy_to_json(p: &PasscodePolicy) -> Result<String, StoreError> {
    let json = PolicyJson {
        passcode_type: passcode_type_str(p.passcode_type).to_string(),
        min_length: p.min_length,
        complexity: complexity_str(p.complexity).to_string(),
        min_letters: p.min_letters,
        min_upper_case: p.min_upper_case,
        min_lower_case: p.min_lower_case,
        min_digits: p.min_digits,
        min_symbols: p.min_symbols,
        min_non_letters: p.min_non_letters,
        max_failed_attempts_before_wipe: p.max_failed_attempts_before_wipe,
    };
    serde_json::to_string(&json).map_err(|e| StoreError::Corrupt(format!("policy: {e}")))
}

fn policy_from_json(text: Option<String>) -> Result<Option<PasscodePolicy>, StoreError> {
    let Some(text) = text else { return Ok(None) };
    let j: PolicyJson =
        serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("policy: {e}")))?;
    Ok(Some(PasscodePolicy {
        passcode_type: passcode_type_parse(&j.passcode_type)?,
        min_length: j.min_length,
        complexity: complexity_parse(&j.complexity)?,
        min_letters: j.min_letters,
        min_upper_case: j.min_upper_case,
        min_lower_case: j.min_lower_case,
        min_digits: j.min_digits,
        min_symbols: j.min_symbols,
        min_non_letters: j.min_non_letters,
        max_failed_attempts_before_wipe: j.max_failed_attempts_before_wipe,
    }))
}

/// The JSON shape of one credential store's status in `devices.stores_json`.
#[derive(Serialize, Deserialize)]
struct StoreStatusJson {
    scope: String,
    has_passcode: bool,
    locked: bool,
    token_state: String,
    failed_attempts: u32,
    throttled_until: u64,
    wiped: bool,
    separate_challenge: bool,
    require_entry: bool,
}

fn stores_to_json(stores: &[StoreStatus]) -> Result<String, StoreError> {
    let json: Vec<StoreStatusJson> = stores
        .iter()
        .map(|s| StoreStatusJson {
            scope: s.scope.as_str().to_string(),
            has_passcode: s.has_passcode,
            locked: s.locked,
            token_state: token_state_str(s.token_state).to_string(),
            failed_attempts: s.failed_attempts,
            throttled_until: s.throttled_until,
            wiped: s.wiped,
            separate_challenge: s.separate_challenge,
            require_entry: s.require_entry,
        })
        .collect();
    serde_json::to_string(&json).map_err(|e| StoreError::Corrupt(format!("stores: {e}")))
}

fn stores_from_json(text: &str) -> Result<Vec<StoreStatus>, StoreError> {
    let json: Vec<StoreStatusJson> =
        serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("stores: {e}")))?;
    json.into_iter()
        .map(|s| {
            Ok(StoreStatus {
                scope: parse_scope(&s.scope)?,
                has_passcode: s.has_passcode,
                locked: s.locked,
                token_state: token_state_parse(&s.token_state)?,
                failed_attempts: s.failed_attempts,
                throttled_until: s.throttled_until,
                wiped: s.wiped,
                separate_challenge: s.separate_challenge,
                require_entry: s.require_entry,
            })
        })
        .collect()
}

fn permissions_json(permissions: &[Permission]) -> Result<String, StoreError> {
    let names: Vec<&str> = permissions.iter().map(|p| p.as_str()).collect();
    serde_json::to_string(&names).map_err(|e| StoreError::Corrupt(format!("permissions: {e}")))
}

fn permissions_from_json(text: &str) -> Result<Vec<Permission>, StoreError> {
    let names: Vec<String> =
        serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("permissions: {e}")))?;
    names
        .iter()
        .map(|n| Permission::parse(n).ok_or_else(|| corrupt("permission", n)))
        .collect()
}

fn states_json(states: &[ActionState]) -> String {
    let names: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
    serde_json::to_string(&names).unwrap_or_else(|_| "[]".to_string())
}

/// A set of group names as the JSON array `json_each` reads.
fn groups_json(groups: &BTreeSet<String>) -> Result<String, StoreError> {
    serde_json::to_string(groups).map_err(|e| StoreError::Corrupt(format!("groups: {e}")))
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

fn device_not_found(device_id: &str) -> StoreError {
    StoreError::NotFound {
        kind: "device",
        name: device_id.to_string(),
    }
}

// ---- Row mapping. ----

/// The device columns plus its escrowed scopes, as `device_from_row` reads them.
macro_rules! device_select {
    () => {
        "SELECT d.id, d.display_name, d.ownership, d.enrolled_at, d.last_seen, d.stores_json,
                d.device_policy_json, d.work_profile_policy_json, d.device_group,
                (SELECT group_concat(e.scope, ',') FROM escrow_tokens e WHERE e.device_id = d.id)
                    AS escrow_scopes
         FROM devices d"
    };
}

fn device_from_row(row: &SqliteRow) -> Result<Device, StoreError> {
    let ownership: String = row.try_get("ownership")?;
    let stores: String = row.try_get("stores_json")?;
    let escrow: Option<String> = row.try_get("escrow_scopes")?;
    let mut escrowed_token_scopes = escrow
        .as_deref()
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(parse_scope)
        .collect::<Result<Vec<_>, _>>()?;
    escrowed_token_scopes.sort();
    Ok(Device {
        id: row.try_get("id")?,
        display_name: row.try_get("display_name")?,
        ownership: Ownership::parse(&ownership).ok_or_else(|| corrupt("ownership", &ownership))?,
        enrolled_at: time_from_db(row.try_get("enrolled_at")?, "enrolled_at")?,
        last_seen: time_from_db(row.try_get("last_seen")?, "last_seen")?,
        stores: stores_from_json(&stores)?,
        device_policy: policy_from_json(row.try_get("device_policy_json")?)?,
        work_profile_policy: policy_from_json(row.try_get("work_profile_policy_json")?)?,
        escrowed_token_scopes,
        group: row.try_get("device_group")?,
    })
}

/// The action columns; `passcode_visible_until` comes from the passcode row, so it is NULL as
/// soon as the passcode is purged.
macro_rules! action_select {
    () => {
        "SELECT a.id, a.device_id, a.kind, a.scope, a.state, a.error_code, a.reason,
                a.requested_by, a.created_at, a.updated_at, a.delivered_at, a.completed_at,
                a.user_entered_at, a.not_after, a.sequence, p.visible_until AS passcode_visible_until
         FROM actions a LEFT JOIN action_passcodes p ON p.action_id = a.id"
    };
}

fn action_from_row(row: &SqliteRow) -> Result<Action, StoreError> {
    let kind: String = row.try_get("kind")?;
    let scope: String = row.try_get("scope")?;
    let state: String = row.try_get("state")?;
    let error_code: Option<String> = row.try_get("error_code")?;
    let sequence: Option<i64> = row.try_get("sequence")?;
    Ok(Action {
        id: row.try_get("id")?,
        device_id: row.try_get("device_id")?,
        kind: ActionKind::parse(&kind).ok_or_else(|| corrupt("action kind", &kind))?,
        scope: parse_scope(&scope)?,
        state: ActionState::parse(&state).ok_or_else(|| corrupt("action state", &state))?,
        error_code: error_code
            .map(|c| ErrorCode::parse(&c).ok_or_else(|| corrupt("error code", &c)))
            .transpose()?,
        reason: row.try_get("reason")?,
        requested_by: row.try_get("requested_by")?,
        created_at: time_from_db(row.try_get("created_at")?, "created_at")?,
        updated_at: time_from_db(row.try_get("updated_at")?, "updated_at")?,
        delivered_at: opt_time_from_db(row.try_get("delivered_at")?, "delivered_at")?,
        completed_at: opt_time_from_db(row.try_get("completed_at")?, "completed_at")?,
        user_entered_at: opt_time_from_db(row.try_get("user_entered_at")?, "user_entered_at")?,
        not_after: time_from_db(row.try_get("not_after")?, "not_after")?,
        sequence: sequence
            .map(|s| u64::try_from(s).map_err(|_| StoreError::Corrupt("negative sequence".into())))
            .transpose()?,
        passcode_visible_until: opt_time_from_db(
            row.try_get("passcode_visible_until")?,
            "visible_until",
        )?,
    })
}

fn actions_from_rows(rows: &[SqliteRow]) -> Result<Vec<Action>, StoreError> {
    rows.iter().map(action_from_row).collect()
}

fn role_from_row(row: &SqliteRow) -> Result<Role, StoreError> {
    let permissions: String = row.try_get("permissions_json")?;
    Ok(Role {
        name: row.try_get("name")?,
        permissions: permissions_from_json(&permissions)?,
        built_in: row.try_get::<i64, _>("built_in")? != 0,
    })
}

fn audit_from_row(row: &SqliteRow) -> Result<AuditEvent, StoreError> {
    let id: i64 = row.try_get("id")?;
    Ok(AuditEvent {
        id: u64::try_from(id).map_err(|_| StoreError::Corrupt("negative audit id".into()))?,
        at: time_from_db(row.try_get("at")?, "at")?,
        principal: row.try_get("principal")?,
        operation: row.try_get("operation")?,
        device_id: row.try_get("device_id")?,
        action_id: row.try_get("action_id")?,
        result: row.try_get("result")?,
        detail: row.try_get("detail")?,
    })
}

async fn fetch_action(
    tx: &mut Transaction<'static, Sqlite>,
    action_id: &str,
) -> Result<Option<Action>, StoreError> {
    let row = sqlx::query(concat!(action_select!(), " WHERE a.id = ?"))
        .bind(action_id)
        .fetch_optional(&mut **tx)
        .await?;
    row.as_ref().map(action_from_row).transpose()
}

async fn fetch_device(
    tx: &mut Transaction<'static, Sqlite>,
    device_id: &str,
) -> Result<Option<Device>, StoreError> {
    let row = sqlx::query(concat!(device_select!(), " WHERE d.id = ?"))
        .bind(device_id)
        .fetch_optional(&mut **tx)
        .await?;
    row.as_ref().map(device_from_row).transpose()
}

/// A principal with its assignments, read inside `tx`.
async fn fetch_principal(
    tx: &mut Transaction<'static, Sqlite>,
    name: &str,
) -> Result<Option<Principal>, StoreError> {
    let created_at: Option<i64> =
        sqlx::query_scalar("SELECT created_at FROM principals WHERE name = ?")
            .bind(name)
            .fetch_optional(&mut **tx)
            .await?;
    let Some(created_at) = created_at else {
        return Ok(None);
    };
    let rows = sqlx::query(
        "SELECT role, device_group FROM role_assignments WHERE principal = ? ORDER BY rowid",
    )
    .bind(name)
    .fetch_all(&mut **tx)
    .await?;
    let assignments = rows
        .iter()
        .map(|row| {
            Ok(RoleAssignment {
                role: row.try_get("role")?,
                group: row.try_get("device_group")?,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(Some(Principal {
        name: name.to_string(),
        assignments,
        created_at: time_from_db(created_at, "created_at")?,
    }))
}

async fn role_exists(
    tx: &mut Transaction<'static, Sqlite>,
    name: &str,
) -> Result<Option<bool>, StoreError> {
    let built_in: Option<i64> = sqlx::query_scalar("SELECT built_in FROM roles WHERE name = ?")
        .bind(name)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(built_in.map(|b| b != 0))
}

fn principal_not_found(name: &str) -> StoreError {
    StoreError::NotFound {
        kind: "principal",
        name: name.to_string(),
    }
}

fn role_not_found(name: &str) -> StoreError {
    StoreError::NotFound {
        kind: "role",
        name: name.to_string(),
    }
}

/// Fails with `WouldLockOut` unless some principal still holds Roles.Manage for every group;
/// called inside a write transaction before it commits, so a refused change is rolled back.
async fn ensure_someone_manages_roles(
    tx: &mut Transaction<'static, Sqlite>,
) -> Result<(), StoreError> {
    let managed: i64 = sqlx::query_scalar(
        "SELECT EXISTS (
             SELECT 1 FROM role_assignments ra
             JOIN roles r ON r.name = ra.role, json_each(r.permissions_json) p
             WHERE ra.device_group IS NULL AND p.value = ?
         )",
    )
    .bind(Permission::RolesManage.as_str())
    .fetch_one(&mut **tx)
    .await?;
    if managed == 0 {
        return Err(StoreError::WouldLockOut);
    }
    Ok(())
}

async fn device_exists(
    tx: &mut Transaction<'static, Sqlite>,
    device_id: &str,
) -> Result<bool, StoreError> {
    Ok(sqlx::query("SELECT 1 FROM devices WHERE id = ?")
        .bind(device_id)
        .fetch_optional(&mut **tx)
        .await?
        .is_some())
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn create_enrollment_token(&self, token: NewEnrollmentToken) -> Result<(), StoreError> {
        let result = sqlx::query(
            "INSERT INTO enrollment_tokens (hash, max_uses, uses, expires_at, created_by,
                                            device_group)
             VALUES (?, ?, 0, ?, ?, ?)",
        )
        .bind(&token.hash[..])
        .bind(token.max_uses)
        .bind(db_time(token.expires_at))
        .bind(&token.created_by)
        .bind(&token.group)
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(StoreError::AlreadyExists {
                kind: "enrollment token",
                // The hash identifies a credential; it stays out of messages.
                name: String::new(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    async fn enroll_device(
        &self,
        token_hash: [u8; 32],
        device: NewDevice,
    ) -> Result<Enrolled, StoreError> {
        let mut tx = self.write().await?;
        // The write lock is held from the first statement, so the token read here is still as
        // read when its use is counted below.
        let token = sqlx::query(
            "SELECT device_group, device_id FROM enrollment_tokens
             WHERE hash = ? AND uses < max_uses AND ? < expires_at",
        )
        .bind(&token_hash[..])
        .bind(db_time(device.enrolled_at))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(token) = token else {
            return Err(StoreError::EnrollmentTokenInvalid);
        };
        let group: String = token.try_get("device_group")?;
        let bound: Option<String> = token.try_get("device_id")?;
        let re_enrolled = bound.is_some();
        if let Some(known) = &bound {
            // Re-enrollment of a known device: same id, group, policies and actions; a new
            // credential; the old install's escrowed tokens and status are gone with it.
            let existing = fetch_device(&mut tx, known)
                .await?
                .ok_or_else(|| device_not_found(known))?;
            if existing.ownership != device.ownership {
                return Err(StoreError::EnrollmentOwnership {
                    expected: existing.ownership,
                });
            }
        }
        sqlx::query("UPDATE enrollment_tokens SET uses = uses + 1 WHERE hash = ?")
            .bind(&token_hash[..])
            .execute(&mut *tx)
            .await?;
        let id = match bound {
            Some(known) => {
                let updated = sqlx::query(
                    "UPDATE devices SET credential_hash = ?, stores_json = '[]', last_seen = ?
                     WHERE id = ?",
                )
                .bind(&device.credential_hash[..])
                .bind(db_time(device.enrolled_at))
                .bind(&known)
                .execute(&mut *tx)
                .await;
                match updated {
                    Ok(_) => {}
                    Err(e) if is_unique_violation(&e) => {
                        return Err(StoreError::AlreadyExists {
                            kind: "device credential",
                            name: String::new(),
                        });
                    }
                    Err(e) => return Err(e.into()),
                }
                sqlx::query("DELETE FROM escrow_tokens WHERE device_id = ?")
                    .bind(&known)
                    .execute(&mut *tx)
                    .await?;
                known
            }
            None => {
                let inserted = sqlx::query(
                    "INSERT INTO devices (id, display_name, ownership, credential_hash,
                                          enrolled_at, last_seen, stores_json, next_sequence,
                                          device_group)
                     VALUES (?, ?, ?, ?, ?, ?, '[]', 1, ?)",
                )
                .bind(&device.id)
                .bind(&device.display_name)
                .bind(device.ownership.as_str())
                .bind(&device.credential_hash[..])
                .bind(db_time(device.enrolled_at))
                .bind(db_time(device.enrolled_at))
                .bind(&group)
                .execute(&mut *tx)
                .await;
                match inserted {
                    Ok(_) => {}
                    Err(e) if is_unique_violation(&e) => {
                        return Err(StoreError::AlreadyExists {
                            kind: "device",
                            name: device.id,
                        });
                    }
                    Err(e) => return Err(e.into()),
                }
                device.id
            }
        };
        let enrolled = fetch_device(&mut tx, &id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("an enrolled device vanished".into()))?;
        tx.commit().await?;
        Ok(Enrolled {
            device: enrolled,
            re_enrolled,
        })
    }

    async fn reenroll_device(
        &self,
        device_id: &str,
        revoked_credential_hash: [u8; 32],
        token: NewEnrollmentToken,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        let revoked = sqlx::query("UPDATE devices SET credential_hash = ? WHERE id = ?")
            .bind(&revoked_credential_hash[..])
            .bind(device_id)
            .execute(&mut *tx)
            .await?;
        if revoked.rows_affected() == 0 {
            return Err(device_not_found(device_id));
        }
        // Only the newest re-enrollment token of a device works.
        sqlx::query("DELETE FROM enrollment_tokens WHERE device_id = ?")
            .bind(device_id)
            .execute(&mut *tx)
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO enrollment_tokens (hash, max_uses, uses, expires_at, created_by,
                                            device_group, device_id)
             SELECT ?, 1, 0, ?, ?, device_group, id FROM devices WHERE id = ?",
        )
        .bind(&token.hash[..])
        .bind(db_time(token.expires_at))
        .bind(&token.created_by)
        .bind(device_id)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::AlreadyExists {
                    kind: "enrollment token",
                    name: String::new(),
                });
            }
            Err(e) => return Err(e.into()),
        }
        tx.commit().await?;
        Ok(())
    }

    async fn get_device(&self, device_id: &str) -> Result<Option<Device>, StoreError> {
        let row = sqlx::query(concat!(device_select!(), " WHERE d.id = ?"))
            .bind(device_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(device_from_row).transpose()
    }

    async fn list_devices(
        &self,
        groups: Option<&BTreeSet<String>>,
    ) -> Result<Vec<Device>, StoreError> {
        let rows = match groups {
            None => {
                sqlx::query(concat!(device_select!(), " ORDER BY d.enrolled_at, d.id"))
                    .fetch_all(&self.pool)
                    .await?
            }
            Some(groups) => {
                sqlx::query(concat!(
                    device_select!(),
                    " WHERE d.device_group IN (SELECT value FROM json_each(?))
                      ORDER BY d.enrolled_at, d.id"
                ))
                .bind(groups_json(groups)?)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(device_from_row).collect()
    }

    async fn device_by_credential(
        &self,
        credential_hash: [u8; 32],
    ) -> Result<Option<Device>, StoreError> {
        let row = sqlx::query(concat!(device_select!(), " WHERE d.credential_hash = ?"))
            .bind(&credential_hash[..])
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(device_from_row).transpose()
    }

    async fn update_device_status(
        &self,
        device_id: &str,
        stores: &[StoreStatus],
        last_seen: Millis,
    ) -> Result<(), StoreError> {
        let result = sqlx::query("UPDATE devices SET stores_json = ?, last_seen = ? WHERE id = ?")
            .bind(stores_to_json(stores)?)
            .bind(db_time(last_seen))
            .bind(device_id)
            .execute(&self.pool)
            .await?;
        if result.rows_affected() == 0 {
            return Err(device_not_found(device_id));
        }
        Ok(())
    }

    async fn set_policy(
        &self,
        device_id: &str,
        scope: Scope,
        policy: Option<&PasscodePolicy>,
    ) -> Result<(), StoreError> {
        let json = policy.map(policy_to_json).transpose()?;
        let sql = match scope {
            Scope::Device => "UPDATE devices SET device_policy_json = ? WHERE id = ?",
            Scope::WorkProfile => "UPDATE devices SET work_profile_policy_json = ? WHERE id = ?",
        };
        let result = sqlx::query(sql)
            .bind(json)
            .bind(device_id)
            .execute(&self.pool)
            .await?;
        if result.rows_affected() == 0 {
            return Err(device_not_found(device_id));
        }
        Ok(())
    }

    async fn put_escrow_token(
        &self,
        device_id: &str,
        scope: Scope,
        sealed_token: &[u8],
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        if !device_exists(&mut tx, device_id).await? {
            return Err(device_not_found(device_id));
        }
        sqlx::query(
            "INSERT INTO escrow_tokens (device_id, scope, sealed) VALUES (?, ?, ?)
             ON CONFLICT (device_id, scope) DO UPDATE SET sealed = excluded.sealed",
        )
        .bind(device_id)
        .bind(scope.as_str())
        .bind(sealed_token)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn escrow_token(
        &self,
        device_id: &str,
        scope: Scope,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(
            sqlx::query_scalar(
                "SELECT sealed FROM escrow_tokens WHERE device_id = ? AND scope = ?",
            )
            .bind(device_id)
            .bind(scope.as_str())
            .fetch_optional(&self.pool)
            .await?,
        )
    }

    async fn create_action(&self, action: NewAction) -> Result<Action, StoreError> {
        let mut tx = self.write().await?;
        // A command (not yet final) takes the device's next sequence number in this same
        // transaction; an action that ended at the control plane never reaches the device.
        let sequence: Option<i64> = if action.state.is_final() {
            if !device_exists(&mut tx, &action.device_id).await? {
                return Err(device_not_found(&action.device_id));
            }
            None
        } else {
            let allocated: Option<i64> = sqlx::query_scalar(
                "UPDATE devices SET next_sequence = next_sequence + 1 WHERE id = ?
                 RETURNING next_sequence - 1",
            )
            .bind(&action.device_id)
            .fetch_optional(&mut *tx)
            .await?;
            Some(allocated.ok_or_else(|| device_not_found(&action.device_id))?)
        };
        let visible_until = action.sealed_passcode.as_ref().map(|(_, until)| *until);
        let inserted = sqlx::query(
            "INSERT INTO actions (id, device_id, kind, scope, state, error_code, reason,
                                  requested_by, created_at, updated_at, not_after, sequence,
                                  passcode_visible_until)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&action.id)
        .bind(&action.device_id)
        .bind(action.kind.as_str())
        .bind(action.scope.as_str())
        .bind(action.state.as_str())
        .bind(action.error_code.map(ErrorCode::as_str))
        .bind(&action.reason)
        .bind(&action.requested_by)
        .bind(db_time(action.created_at))
        .bind(db_time(action.created_at))
        .bind(db_time(action.not_after))
        .bind(sequence)
        .bind(visible_until.map(db_time))
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::AlreadyExists {
                    kind: "action",
                    name: action.id,
                });
            }
            Err(e) => return Err(e.into()),
        }
        if let Some((sealed, until)) = &action.sealed_passcode {
            sqlx::query(
                "INSERT INTO action_passcodes (action_id, sealed, visible_until) VALUES (?, ?, ?)",
            )
            .bind(&action.id)
            .bind(&sealed[..])
            .bind(db_time(*until))
            .execute(&mut *tx)
            .await?;
        }
        let created = fetch_action(&mut tx, &action.id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("a created action vanished".into()))?;
        tx.commit().await?;
        Ok(created)
    }

    async fn get_action(&self, action_id: &str) -> Result<Option<Action>, StoreError> {
        let row = sqlx::query(concat!(action_select!(), " WHERE a.id = ?"))
            .bind(action_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(action_from_row).transpose()
    }

    async fn list_actions(
        &self,
        device_id: Option<&str>,
        groups: Option<&BTreeSet<String>>,
    ) -> Result<Vec<Action>, StoreError> {
        // Assembled from fixed fragments only; every value is bound.
        let mut sql = String::from(concat!(action_select!(), " WHERE 1 = 1"));
        if device_id.is_some() {
            sql.push_str(" AND a.device_id = ?");
        }
        if groups.is_some() {
            sql.push_str(
                " AND a.device_id IN (SELECT id FROM devices
                                      WHERE device_group IN (SELECT value FROM json_each(?)))",
            );
        }
        sql.push_str(" ORDER BY a.created_at DESC, a.rowid DESC");
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        if let Some(device_id) = device_id {
            query = query.bind(device_id.to_string());
        }
        if let Some(groups) = groups {
            query = query.bind(groups_json(groups)?);
        }
        let rows = query.fetch_all(&self.pool).await?;
        actions_from_rows(&rows)
    }

    async fn open_commands(&self, device_id: &str) -> Result<Vec<Action>, StoreError> {
        let rows = sqlx::query(concat!(
            action_select!(),
            " WHERE a.device_id = ? AND a.state IN ('pending', 'active') ORDER BY a.sequence"
        ))
        .bind(device_id)
        .fetch_all(&self.pool)
        .await?;
        actions_from_rows(&rows)
    }

    async fn transition_action(
        &self,
        action_id: &str,
        from: &[ActionState],
        to: ActionState,
        update: ActionUpdate,
        now: Millis,
    ) -> Result<Option<Action>, StoreError> {
        let mut tx = self.write().await?;
        // Compare-and-set: the state test is in the UPDATE itself, so of two racing transitions
        // (a result and an expiry, say) exactly one wins.
        let changed = sqlx::query(
            "UPDATE actions SET
                 state = ?,
                 updated_at = ?,
                 error_code = COALESCE(?, error_code),
                 reason = COALESCE(?, reason),
                 delivered_at = COALESCE(?, delivered_at),
                 completed_at = COALESCE(?, completed_at),
                 user_entered_at = COALESCE(?, user_entered_at)
             WHERE id = ? AND state IN (SELECT value FROM json_each(?))",
        )
        .bind(to.as_str())
        .bind(db_time(now))
        .bind(update.error_code.map(ErrorCode::as_str))
        .bind(update.reason.as_deref())
        .bind(update.delivered_at.map(db_time))
        .bind(update.completed_at.map(db_time))
        .bind(update.user_entered_at.map(db_time))
        .bind(action_id)
        .bind(states_json(from))
        .execute(&mut *tx)
        .await?;
        if changed.rows_affected() == 0 {
            return Ok(None);
        }
        let mut purged = 0;
        if update.purge_passcode {
            purged = sqlx::query("DELETE FROM action_passcodes WHERE action_id = ?")
                .bind(action_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        let action = fetch_action(&mut tx, action_id).await?;
        tx.commit().await?;
        if purged > 0 {
            self.checkpoint_truncate().await;
        }
        Ok(action)
    }

    async fn set_user_entered(&self, action_id: &str, at: Millis) -> Result<(), StoreError> {
        let result = sqlx::query(
            "UPDATE actions SET user_entered_at = ?, updated_at = MAX(updated_at, ?) WHERE id = ?",
        )
        .bind(db_time(at))
        .bind(db_time(at))
        .bind(action_id)
        .execute(&self.pool)
        .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                kind: "action",
                name: action_id.to_string(),
            });
        }
        Ok(())
    }

    async fn overdue_actions(&self, now: Millis) -> Result<Vec<Action>, StoreError> {
        let rows = sqlx::query(concat!(
            action_select!(),
            " WHERE a.state IN ('pending', 'active') AND a.not_after < ? ORDER BY a.not_after"
        ))
        .bind(db_time(now))
        .fetch_all(&self.pool)
        .await?;
        actions_from_rows(&rows)
    }

    async fn sealed_passcode(
        &self,
        action_id: &str,
        now: Millis,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT sealed FROM action_passcodes WHERE action_id = ? AND ? < visible_until",
        )
        .bind(action_id)
        .bind(db_time(now))
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn purge_passcodes(&self, now: Millis) -> Result<u64, StoreError> {
        let mut tx = self.write().await?;
        let purged = sqlx::query("DELETE FROM action_passcodes WHERE visible_until <= ?")
            .bind(db_time(now))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        // Always, not only when rows went now: it also finishes a checkpoint an earlier purge
        // could not complete.
        self.checkpoint_truncate().await;
        Ok(purged)
    }

    async fn create_role(&self, role: &Role) -> Result<(), StoreError> {
        let result =
            sqlx::query("INSERT INTO roles (name, permissions_json, built_in) VALUES (?, ?, ?)")
                .bind(&role.name)
                .bind(permissions_json(&role.permissions)?)
                .bind(role.built_in)
                .execute(&self.pool)
                .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(StoreError::AlreadyExists {
                kind: "role",
                name: role.name.clone(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    async fn list_roles(&self) -> Result<Vec<Role>, StoreError> {
        let rows = sqlx::query("SELECT name, permissions_json, built_in FROM roles ORDER BY rowid")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(role_from_row).collect()
    }

    async fn update_role(&self, role: &Role) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        match role_exists(&mut tx, &role.name).await? {
            None => return Err(role_not_found(&role.name)),
            Some(true) => return Err(StoreError::BuiltInRole(role.name.clone())),
            Some(false) => {}
        }
        sqlx::query("UPDATE roles SET permissions_json = ? WHERE name = ?")
            .bind(permissions_json(&role.permissions)?)
            .bind(&role.name)
            .execute(&mut *tx)
            .await?;
        ensure_someone_manages_roles(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_role(&self, name: &str) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        match role_exists(&mut tx, name).await? {
            None => return Err(role_not_found(name)),
            Some(true) => return Err(StoreError::BuiltInRole(name.to_string())),
            Some(false) => {}
        }
        let assigned = sqlx::query("SELECT 1 FROM role_assignments WHERE role = ? LIMIT 1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        if assigned.is_some() {
            return Err(StoreError::RoleInUse(name.to_string()));
        }
        sqlx::query("DELETE FROM roles WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_principal(
        &self,
        name: &str,
        token_hash: [u8; 32],
        assignments: &[RoleAssignment],
        created_at: Millis,
    ) -> Result<Principal, StoreError> {
        let mut tx = self.write().await?;
        let exists = sqlx::query("SELECT 1 FROM principals WHERE name = ?")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_some() {
            return Err(StoreError::AlreadyExists {
                kind: "principal",
                name: name.to_string(),
            });
        }
        let mut assigned: Vec<RoleAssignment> = Vec::new();
        for assignment in assignments {
            if assigned.contains(assignment) {
                continue;
            }
            if role_exists(&mut tx, &assignment.role).await?.is_none() {
                return Err(role_not_found(&assignment.role));
            }
            assigned.push(assignment.clone());
        }
        let inserted =
            sqlx::query("INSERT INTO principals (name, token_hash, created_at) VALUES (?, ?, ?)")
                .bind(name)
                .bind(&token_hash[..])
                .bind(db_time(created_at))
                .execute(&mut *tx)
                .await;
        match inserted {
            Ok(_) => {}
            // The name was checked above, so the token is what collides; its hash stays out of
            // the message.
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::AlreadyExists {
                    kind: "principal token",
                    name: String::new(),
                });
            }
            Err(e) => return Err(e.into()),
        }
        for assignment in &assigned {
            sqlx::query(
                "INSERT INTO role_assignments (principal, role, device_group) VALUES (?, ?, ?)",
            )
            .bind(name)
            .bind(&assignment.role)
            .bind(&assignment.group)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Principal {
            name: name.to_string(),
            assignments: assigned,
            created_at,
        })
    }

    async fn list_principals(&self) -> Result<Vec<Principal>, StoreError> {
        // One read transaction, so principals and their roles come from the same snapshot.
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query("SELECT name, created_at FROM principals ORDER BY rowid")
            .fetch_all(&mut *tx)
            .await?;
        let mut principals = rows
            .iter()
            .map(|row| {
                Ok(Principal {
                    name: row.try_get("name")?,
                    assignments: Vec::new(),
                    created_at: time_from_db(row.try_get("created_at")?, "created_at")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let assignments = sqlx::query(
            "SELECT principal, role, device_group FROM role_assignments ORDER BY rowid",
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        for row in &assignments {
            let principal: String = row.try_get("principal")?;
            if let Some(p) = principals.iter_mut().find(|p| p.name == principal) {
                p.assignments.push(RoleAssignment {
                    role: row.try_get("role")?,
                    group: row.try_get("device_group")?,
                });
            }
        }
        Ok(principals)
    }

    async fn assign_role(
        &self,
        principal: &str,
        assignment: &RoleAssignment,
    ) -> Result<Principal, StoreError> {
        let mut tx = self.write().await?;
        if fetch_principal(&mut tx, principal).await?.is_none() {
            return Err(principal_not_found(principal));
        }
        if role_exists(&mut tx, &assignment.role).await?.is_none() {
            return Err(role_not_found(&assignment.role));
        }
        sqlx::query(
            "INSERT INTO role_assignments (principal, role, device_group) VALUES (?, ?, ?)
             ON CONFLICT DO NOTHING",
        )
        .bind(principal)
        .bind(&assignment.role)
        .bind(&assignment.group)
        .execute(&mut *tx)
        .await?;
        let after = fetch_principal(&mut tx, principal)
            .await?
            .ok_or_else(|| principal_not_found(principal))?;
        tx.commit().await?;
        Ok(after)
    }

    async fn unassign_role(
        &self,
        principal: &str,
        assignment: &RoleAssignment,
    ) -> Result<Principal, StoreError> {
        let mut tx = self.write().await?;
        if fetch_principal(&mut tx, principal).await?.is_none() {
            return Err(principal_not_found(principal));
        }
        let removed = sqlx::query(
            "DELETE FROM role_assignments
             WHERE principal = ? AND role = ? AND IFNULL(device_group, '') = IFNULL(?, '')",
        )
        .bind(principal)
        .bind(&assignment.role)
        .bind(&assignment.group)
        .execute(&mut *tx)
        .await?;
        if removed.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                kind: "role assignment",
                name: format!("{principal}: {assignment}"),
            });
        }
        ensure_someone_manages_roles(&mut tx).await?;
        let after = fetch_principal(&mut tx, principal)
            .await?
            .ok_or_else(|| principal_not_found(principal))?;
        tx.commit().await?;
        Ok(after)
    }

    async fn delete_principal(&self, name: &str) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        // Its assignments go with it (ON DELETE CASCADE).
        let deleted = sqlx::query("DELETE FROM principals WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(principal_not_found(name));
        }
        ensure_someone_manages_roles(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn principal_by_token(
        &self,
        token_hash: [u8; 32],
    ) -> Result<Option<AuthenticatedPrincipal>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let name: Option<String> =
            sqlx::query_scalar("SELECT name FROM principals WHERE token_hash = ?")
                .bind(&token_hash[..])
                .fetch_optional(&mut *tx)
                .await?;
        let Some(name) = name else {
            return Ok(None);
        };
        let rows = sqlx::query(
            "SELECT r.name, r.permissions_json, r.built_in, ra.device_group
             FROM role_assignments ra JOIN roles r ON r.name = ra.role
             WHERE ra.principal = ? ORDER BY ra.rowid",
        )
        .bind(&name)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let grants = rows
            .iter()
            .map(|row| {
                Ok(Grant {
                    role: role_from_row(row)?,
                    group: row.try_get("device_group")?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Some(AuthenticatedPrincipal {
            name,
            grants: Grants(grants),
        }))
    }

    async fn append_audit(&self, event: AuditEvent) -> Result<(), StoreError> {
        // The id is the store's to assign; the event's own is ignored.
        sqlx::query(
            "INSERT INTO audit (at, principal, operation, device_id, action_id, result, detail)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(db_time(event.at))
        .bind(&event.principal)
        .bind(&event.operation)
        .bind(&event.device_id)
        .bind(&event.action_id)
        .bind(&event.result)
        .bind(&event.detail)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>, StoreError> {
        // The WHERE clause is assembled from fixed fragments only (every value is bound), so the
        // planner sees plain equality terms and can use the matching index.
        let mut sql = String::from(
            "SELECT id, at, principal, operation, device_id, action_id, result, detail
             FROM audit WHERE 1 = 1",
        );
        if filter.device_id.is_some() {
            sql.push_str(" AND device_id = ?");
        }
        if filter.principal.is_some() {
            sql.push_str(" AND principal = ?");
        }
        if filter.operation.is_some() {
            sql.push_str(" AND operation = ?");
        }
        if filter.since.is_some() {
            sql.push_str(" AND at >= ?");
        }
        if filter.until.is_some() {
            sql.push_str(" AND at <= ?");
        }
        sql.push_str(" ORDER BY at DESC, id DESC LIMIT ?");
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for value in [&filter.device_id, &filter.principal, &filter.operation]
            .into_iter()
            .flatten()
        {
            query = query.bind(value.clone());
        }
        for time in [filter.since, filter.until].into_iter().flatten() {
            query = query.bind(db_time(time));
        }
        let limit = if filter.limit == 0 {
            DEFAULT_AUDIT_LIMIT
        } else {
            filter.limit
        };
        let rows = query.bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(audit_from_row).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::DAY;
    use crate::rbac;
    use ring::rand::{SecureRandom, SystemRandom};

    const T0: Millis = 1_700_000_000_000;

    struct Fixture {
        _dir: tempfile::TempDir,
        path: PathBuf,
        store: SqliteStore,
    }

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data").join("droidfleet.db");
        let store = SqliteStore::open(&path).await.unwrap();
        Fixture {
            _dir: dir,
            path,
            store,
        }
    }

    fn hash(tag: u8) -> [u8; 32] {
        [tag; 32]
    }

    fn new_device(id: &str, credential: u8) -> NewDevice {
        NewDevice {
            id: id.to_string(),
            display_name: format!("Phone {id}"),
            ownership: Ownership::Byod,
            credential_hash: hash(credential),
            enrolled_at: T0,
        }
    }

    fn token(hash: [u8; 32], max_uses: u32, expires_at: Millis) -> NewEnrollmentToken {
        NewEnrollmentToken {
            hash,
            max_uses,
            expires_at,
            created_by: "admin".into(),
            group: rbac::DEFAULT_GROUP.into(),
        }
    }

    /// Enrolls `id` with a fresh single-use token.
    async fn enroll(store: &SqliteStore, id: &str, credential: u8) -> Device {
        enroll_in(store, id, credential, rbac::DEFAULT_GROUP).await
    }

    async fn enroll_in(store: &SqliteStore, id: &str, credential: u8, group: &str) -> Device {
        let hash = crate::crypto::sha256(id.as_bytes());
        let mut new_token = token(hash, 1, T0 + DAY);
        new_token.group = group.into();
        store.create_enrollment_token(new_token).await.unwrap();
        store
            .enroll_device(hash, new_device(id, credential))
            .await
            .unwrap()
            .device
    }

    fn everywhere(role: &str) -> RoleAssignment {
        RoleAssignment {
            role: role.into(),
            group: None,
        }
    }

    fn in_group(role: &str, group: &str) -> RoleAssignment {
        RoleAssignment {
            role: role.into(),
            group: Some(group.into()),
        }
    }

    fn new_action(id: &str, device_id: &str, state: ActionState) -> NewAction {
        NewAction {
            id: id.to_string(),
            device_id: device_id.to_string(),
            kind: ActionKind::ResetPasscode,
            scope: Scope::WorkProfile,
            requested_by: "helpdesk".to_string(),
            created_at: T0,
            not_after: T0 + 600_000,
            state,
            error_code: None,
            reason: String::new(),
            sealed_passcode: None,
        }
    }

    fn policy() -> PasscodePolicy {
        PasscodePolicy {
            passcode_type: PasscodeType::Complex,
            min_length: 10,
            complexity: Complexity::High,
            min_letters: 2,
            min_upper_case: 1,
            min_lower_case: 1,
            min_digits: 2,
            min_symbols: 1,
            min_non_letters: 3,
            max_failed_attempts_before_wipe: 10,
        }
    }

    fn status(scope: Scope) -> StoreStatus {
        StoreStatus {
            scope,
            has_passcode: true,
            locked: false,
            token_state: TokenState::Pending,
            failed_attempts: 3,
            throttled_until: T0 + 30_000,
            wiped: false,
            separate_challenge: true,
            require_entry: false,
        }
    }

    fn random_bytes(n: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; n];
        SystemRandom::new().fill(&mut bytes).unwrap();
        bytes
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    /// Whether `needle` occurs in the database file or its WAL.
    fn on_disk(path: &Path, needle: &[u8]) -> bool {
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        [path.to_path_buf(), PathBuf::from(wal)]
            .iter()
            .filter_map(|p| std::fs::read(p).ok())
            .any(|bytes| contains(&bytes, needle))
    }

    #[tokio::test]
    async fn open_sets_the_durability_and_erasure_pragmas() {
        let f = fixture().await;
        let mut conn = f.store.pool.acquire().await.unwrap();
        let text = |sql: &'static str| sqlx::query_scalar::<_, String>(sql);
        let int = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql);
        assert_eq!(
            text("PRAGMA journal_mode")
                .fetch_one(&mut *conn)
                .await
                .unwrap(),
            "wal"
        );
        // 2 = FULL
        assert_eq!(
            int("PRAGMA synchronous")
                .fetch_one(&mut *conn)
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            int("PRAGMA foreign_keys")
                .fetch_one(&mut *conn)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            int("PRAGMA secure_delete")
                .fetch_one(&mut *conn)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            int("PRAGMA busy_timeout")
                .fetch_one(&mut *conn)
                .await
                .unwrap(),
            5000
        );
        assert_eq!(f.store.path(), f.path);
    }

    #[tokio::test]
    async fn built_in_roles_are_installed_once() {
        let f = fixture().await;
        let roles = f.store.list_roles().await.unwrap();
        assert_eq!(roles, rbac::built_in_roles());
        f.store.close().await;
        let reopened = SqliteStore::open(&f.path).await.unwrap();
        assert_eq!(reopened.list_roles().await.unwrap(), rbac::built_in_roles());
    }

    #[tokio::test]
    async fn an_enrollment_token_is_single_use_and_expires() {
        let f = fixture().await;
        let s = &f.store;
        s.create_enrollment_token(token(hash(1), 1, T0 + DAY))
            .await
            .unwrap();
        let enrolled = s
            .enroll_device(hash(1), new_device("dev_a", 101))
            .await
            .unwrap();
        assert!(!enrolled.re_enrolled);
        let device = enrolled.device;
        assert_eq!(device.id, "dev_a");
        assert_eq!(device.last_seen, T0);
        assert_eq!(device.group, rbac::DEFAULT_GROUP);
        assert!(matches!(
            s.enroll_device(hash(1), new_device("dev_b", 102)).await,
            Err(StoreError::EnrollmentTokenInvalid)
        ));
        // Unknown token.
        assert!(matches!(
            s.enroll_device(hash(9), new_device("dev_b", 102)).await,
            Err(StoreError::EnrollmentTokenInvalid)
        ));
        // Expired: valid strictly before expires_at.
        s.create_enrollment_token(token(hash(2), 5, T0 + DAY))
            .await
            .unwrap();
        let mut late = new_device("dev_b", 102);
        late.enrolled_at = T0 + DAY;
        assert!(matches!(
            s.enroll_device(hash(2), late).await,
            Err(StoreError::EnrollmentTokenInvalid)
        ));
        // A duplicate token is refused without naming it.
        match s.create_enrollment_token(token(hash(2), 1, T0)).await {
            Err(e @ StoreError::AlreadyExists { .. }) => assert!(!e.to_string().contains("02")),
            other => panic!("{other:?}"),
        }
        // A failed enrollment (duplicate device) does not use the token up.
        assert!(matches!(
            s.enroll_device(hash(2), new_device("dev_a", 103)).await,
            Err(StoreError::AlreadyExists { kind: "device", .. })
        ));
        assert!(matches!(
            s.enroll_device(hash(2), new_device("dev_c", 101)).await,
            Err(StoreError::AlreadyExists { kind: "device", .. })
        ));
        for (i, id) in ["dev_b", "dev_c", "dev_d", "dev_e", "dev_f"]
            .iter()
            .enumerate()
        {
            let result = s
                .enroll_device(hash(2), new_device(id, 110 + i as u8))
                .await;
            assert_eq!(result.is_ok(), i < 5, "{id}");
        }
        assert!(matches!(
            s.enroll_device(hash(2), new_device("dev_g", 120)).await,
            Err(StoreError::EnrollmentTokenInvalid)
        ));
        assert_eq!(s.list_devices(None).await.unwrap().len(), 6);
    }

    #[tokio::test]
    async fn concurrent_enrollments_never_exceed_max_uses() {
        let f = fixture().await;
        f.store
            .create_enrollment_token(token(hash(1), 3, T0 + DAY))
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for i in 0..12u8 {
            let store = f.store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .enroll_device(hash(1), new_device(&format!("dev_{i}"), 100 + i))
                    .await
            }));
        }
        let mut ok = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => ok += 1,
                Err(StoreError::EnrollmentTokenInvalid) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(ok, 3);
        assert_eq!(f.store.list_devices(None).await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn devices_status_policies_and_escrow_tokens() {
        let f = fixture().await;
        let s = &f.store;
        enroll(s, "dev_a", 1).await;
        enroll(s, "dev_b", 2).await;

        let found = s.device_by_credential(hash(2)).await.unwrap().unwrap();
        assert_eq!(found.id, "dev_b");
        assert!(s.device_by_credential(hash(3)).await.unwrap().is_none());
        assert!(s.get_device("nope").await.unwrap().is_none());

        let stores = vec![status(Scope::Device), status(Scope::WorkProfile)];
        s.update_device_status("dev_a", &stores, T0 + 5)
            .await
            .unwrap();
        s.set_policy("dev_a", Scope::WorkProfile, Some(&policy()))
            .await
            .unwrap();
        let mut pin = policy();
        pin.passcode_type = PasscodeType::NumericComplex;
        pin.complexity = Complexity::Medium;
        s.set_policy("dev_a", Scope::Device, Some(&pin))
            .await
            .unwrap();
        s.put_escrow_token("dev_a", Scope::WorkProfile, b"sealed-1")
            .await
            .unwrap();
        s.put_escrow_token("dev_a", Scope::Device, b"sealed-d")
            .await
            .unwrap();
        s.put_escrow_token("dev_a", Scope::WorkProfile, b"sealed-2")
            .await
            .unwrap();

        let device = s.get_device("dev_a").await.unwrap().unwrap();
        assert_eq!(device.stores, stores);
        assert_eq!(device.last_seen, T0 + 5);
        assert_eq!(device.ownership, Ownership::Byod);
        assert_eq!(device.display_name, "Phone dev_a");
        assert_eq!(device.work_profile_policy, Some(policy()));
        assert_eq!(device.device_policy, Some(pin));
        assert_eq!(
            device.escrowed_token_scopes,
            vec![Scope::Device, Scope::WorkProfile]
        );
        assert_eq!(
            s.escrow_token("dev_a", Scope::WorkProfile).await.unwrap(),
            Some(b"sealed-2".to_vec())
        );
        assert_eq!(s.escrow_token("dev_b", Scope::Device).await.unwrap(), None);

        s.set_policy("dev_a", Scope::Device, None).await.unwrap();
        let device = s.get_device("dev_a").await.unwrap().unwrap();
        assert_eq!(device.device_policy, None);
        assert!(device.work_profile_policy.is_some());

        let other = s.get_device("dev_b").await.unwrap().unwrap();
        assert!(other.stores.is_empty() && other.escrowed_token_scopes.is_empty());
        let ids: Vec<String> = s
            .list_devices(None)
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(ids, ["dev_a", "dev_b"]);

        let not_found = |r: Result<(), StoreError>| matches!(r, Err(StoreError::NotFound { kind: "device", name }) if name == "ghost");
        assert!(not_found(s.update_device_status("ghost", &[], T0).await));
        assert!(not_found(s.set_policy("ghost", Scope::Device, None).await));
        assert!(not_found(
            s.put_escrow_token("ghost", Scope::Device, b"x").await
        ));
    }

    #[tokio::test]
    async fn sequences_are_allocated_per_device_for_commands_only() {
        let f = fixture().await;
        let s = &f.store;
        enroll(s, "dev_a", 1).await;
        enroll(s, "dev_b", 2).await;
        let a1 = s
            .create_action(new_action("a1", "dev_a", ActionState::Pending))
            .await
            .unwrap();
        let mut refused = new_action("a2", "dev_a", ActionState::Failed);
        refused.error_code = Some(ErrorCode::NoPasscodePolicy);
        refused.reason = "no passcode policy".into();
        let a2 = s.create_action(refused).await.unwrap();
        let a3 = s
            .create_action(new_action("a3", "dev_a", ActionState::Pending))
            .await
            .unwrap();
        let b1 = s
            .create_action(new_action("b1", "dev_b", ActionState::Pending))
            .await
            .unwrap();
        assert_eq!(a1.sequence, Some(1));
        assert_eq!(a2.sequence, None);
        assert_eq!(a2.state, ActionState::Failed);
        assert_eq!(a2.error_code, Some(ErrorCode::NoPasscodePolicy));
        assert_eq!(a2.reason, "no passcode policy");
        assert_eq!(a3.sequence, Some(2));
        assert_eq!(b1.sequence, Some(1));

        assert!(matches!(
            s.create_action(new_action("a1", "dev_a", ActionState::Pending))
                .await,
            Err(StoreError::AlreadyExists { kind: "action", .. })
        ));
        assert!(matches!(
            s.create_action(new_action("x", "ghost", ActionState::Pending))
                .await,
            Err(StoreError::NotFound { kind: "device", .. })
        ));
        assert!(matches!(
            s.create_action(new_action("y", "ghost", ActionState::NotSupported))
                .await,
            Err(StoreError::NotFound { kind: "device", .. })
        ));
        // The refused duplicate did not burn a sequence number.
        let a4 = s
            .create_action(new_action("a4", "dev_a", ActionState::Pending))
            .await
            .unwrap();
        assert_eq!(a4.sequence, Some(3));
    }

    #[tokio::test]
    async fn actions_are_listed_and_transitioned_by_compare_and_set() {
        let f = fixture().await;
        let s = &f.store;
        enroll(s, "dev_a", 1).await;
        enroll(s, "dev_b", 2).await;
        for (i, (id, device)) in [("a1", "dev_a"), ("b1", "dev_b"), ("a2", "dev_a")]
            .into_iter()
            .enumerate()
        {
            let mut action = new_action(id, device, ActionState::Pending);
            action.created_at = T0 + i as Millis;
            action.not_after = T0 + 1_000 * (i as Millis + 1);
            s.create_action(action).await.unwrap();
        }
        let ids = |actions: Vec<Action>| actions.into_iter().map(|a| a.id).collect::<Vec<_>>();
        assert_eq!(
            ids(s.list_actions(None, None).await.unwrap()),
            ["a2", "b1", "a1"]
        );
        assert_eq!(
            ids(s.list_actions(Some("dev_a"), None).await.unwrap()),
            ["a2", "a1"]
        );
        assert_eq!(ids(s.open_commands("dev_a").await.unwrap()), ["a1", "a2"]);
        assert!(s.get_action("nope").await.unwrap().is_none());

        // Delivered: pending → active.
        let active = s
            .transition_action(
                "a1",
                &[ActionState::Pending],
                ActionState::Active,
                ActionUpdate {
                    delivered_at: Some(T0 + 10),
                    ..ActionUpdate::default()
                },
                T0 + 10,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(active.state, ActionState::Active);
        assert_eq!(active.delivered_at, Some(T0 + 10));
        assert_eq!(active.updated_at, T0 + 10);
        // Cancel from pending only: refused now, and nothing changes.
        let refused = s
            .transition_action(
                "a1",
                &[ActionState::Pending],
                ActionState::Canceled,
                ActionUpdate::default(),
                T0 + 20,
            )
            .await
            .unwrap();
        assert!(refused.is_none());
        assert_eq!(s.get_action("a1").await.unwrap().unwrap(), active);
        // Unknown action: also None.
        assert!(
            s.transition_action(
                "nope",
                &ActionState::ALL,
                ActionState::Done,
                ActionUpdate::default(),
                T0
            )
            .await
            .unwrap()
            .is_none()
        );
        // Failed: fields are set, unset ones keep their value.
        let failed = s
            .transition_action(
                "a1",
                &[ActionState::Pending, ActionState::Active],
                ActionState::Failed,
                ActionUpdate {
                    error_code: Some(ErrorCode::TokenNotActive),
                    reason: Some("the reset token is not active".into()),
                    completed_at: Some(T0 + 30),
                    ..ActionUpdate::default()
                },
                T0 + 30,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(failed.state, ActionState::Failed);
        assert_eq!(failed.error_code, Some(ErrorCode::TokenNotActive));
        assert_eq!(failed.reason, "the reset token is not active");
        assert_eq!(failed.delivered_at, Some(T0 + 10));
        assert_eq!(failed.completed_at, Some(T0 + 30));
        assert_eq!(ids(s.open_commands("dev_a").await.unwrap()), ["a2"]);

        // Overdue: open actions whose not_after is before now (a1 is final).
        assert_eq!(ids(s.overdue_actions(T0 + 2_001).await.unwrap()), ["b1"]);
        assert_eq!(
            ids(s.overdue_actions(T0 + 3_001).await.unwrap()),
            ["b1", "a2"]
        );
        assert!(s.overdue_actions(T0 + 1_000).await.unwrap().is_empty());

        // The user entered the new passcode of a done reset.
        s.transition_action(
            "a2",
            &[ActionState::Pending, ActionState::Active],
            ActionState::Done,
            ActionUpdate::default(),
            T0 + 40,
        )
        .await
        .unwrap()
        .unwrap();
        s.set_user_entered("a2", T0 + 50).await.unwrap();
        let done = s.get_action("a2").await.unwrap().unwrap();
        assert_eq!(done.state, ActionState::Done);
        assert_eq!(done.user_entered_at, Some(T0 + 50));
        assert!(matches!(
            s.set_user_entered("nope", T0).await,
            Err(StoreError::NotFound { kind: "action", .. })
        ));
    }

    #[tokio::test]
    async fn passcodes_are_visible_for_their_window_then_purged_from_the_files() {
        let f = fixture().await;
        let s = &f.store;
        enroll(s, "dev_a", 1).await;
        let sealed = random_bytes(44);
        let kept = random_bytes(44);
        let until = T0 + 7 * DAY;
        let mut action = new_action("a1", "dev_a", ActionState::Pending);
        action.sealed_passcode = Some((sealed.clone(), until));
        let created = s.create_action(action).await.unwrap();
        assert_eq!(created.passcode_visible_until, Some(until));
        let mut later = new_action("a2", "dev_a", ActionState::Pending);
        later.sealed_passcode = Some((kept.clone(), until + DAY));
        s.create_action(later).await.unwrap();

        assert_eq!(
            s.sealed_passcode("a1", T0).await.unwrap(),
            Some(sealed.clone())
        );
        assert_eq!(
            s.sealed_passcode("a1", until - 1).await.unwrap(),
            Some(sealed.clone())
        );
        assert_eq!(s.sealed_passcode("a1", until).await.unwrap(), None);
        assert_eq!(s.sealed_passcode("nope", T0).await.unwrap(), None);
        assert!(
            on_disk(&f.path, &sealed),
            "the test must see the bytes before purging"
        );

        assert_eq!(s.purge_passcodes(until - 1).await.unwrap(), 0);
        assert_eq!(s.purge_passcodes(until).await.unwrap(), 1);
        assert_eq!(s.purge_passcodes(until).await.unwrap(), 0);
        let purged = s.get_action("a1").await.unwrap().unwrap();
        assert_eq!(purged.passcode_visible_until, None);
        assert_eq!(s.sealed_passcode("a1", T0).await.unwrap(), None);
        assert!(
            !on_disk(&f.path, &sealed),
            "purged passcode bytes remain on disk"
        );
        // The other passcode is untouched.
        assert_eq!(
            s.sealed_passcode("a2", until).await.unwrap(),
            Some(kept.clone())
        );
        assert!(on_disk(&f.path, &kept));
    }

    #[tokio::test]
    async fn a_failing_transition_can_purge_the_passcode_at_once() {
        let f = fixture().await;
        let s = &f.store;
        enroll(s, "dev_a", 1).await;
        let sealed = random_bytes(44);
        let mut action = new_action("a1", "dev_a", ActionState::Pending);
        action.sealed_passcode = Some((sealed.clone(), T0 + 7 * DAY));
        s.create_action(action).await.unwrap();
        // A refused transition does not purge.
        let refused = s
            .transition_action(
                "a1",
                &[ActionState::Active],
                ActionState::Failed,
                ActionUpdate {
                    purge_passcode: true,
                    ..ActionUpdate::default()
                },
                T0 + 1,
            )
            .await
            .unwrap();
        assert!(refused.is_none());
        assert!(s.sealed_passcode("a1", T0 + 1).await.unwrap().is_some());

        let failed = s
            .transition_action(
                "a1",
                &[ActionState::Pending, ActionState::Active],
                ActionState::Failed,
                ActionUpdate {
                    error_code: Some(ErrorCode::TokenMismatch),
                    purge_passcode: true,
                    ..ActionUpdate::default()
                },
                T0 + 2,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(failed.passcode_visible_until, None);
        assert!(s.sealed_passcode("a1", T0 + 2).await.unwrap().is_none());
        assert!(!on_disk(&f.path, &sealed));
    }

    #[tokio::test]
    async fn roles_and_principals() {
        let f = fixture().await;
        let s = &f.store;
        let custom = Role {
            name: "Reset Only".into(),
            permissions: vec![
                rbac::Permission::RemoteTasksResetPasscode,
                rbac::Permission::ManagedDevicesRead,
                rbac::Permission::ManagedDevicesUpdate,
            ],
            built_in: false,
        };
        s.create_role(&custom).await.unwrap();
        assert!(matches!(
            s.create_role(&custom).await,
            Err(StoreError::AlreadyExists { kind: "role", .. })
        ));
        let roles = s.list_roles().await.unwrap();
        assert_eq!(roles.len(), 5);
        assert_eq!(roles.last(), Some(&custom));

        let alice = s
            .create_principal(
                "alice",
                hash(1),
                &[
                    everywhere(rbac::HELP_DESK_OPERATOR),
                    in_group("Reset Only", "north"),
                    in_group("Reset Only", "north"),
                    everywhere("Reset Only"),
                ],
                T0,
            )
            .await
            .unwrap();
        assert_eq!(
            alice.assignments,
            [
                everywhere(rbac::HELP_DESK_OPERATOR),
                in_group("Reset Only", "north"),
                everywhere("Reset Only")
            ]
        );
        assert_eq!(alice.role_names(), [rbac::HELP_DESK_OPERATOR, "Reset Only"]);
        s.create_principal("bob", hash(2), &[], T0 + 1)
            .await
            .unwrap();
        assert!(matches!(
            s.create_principal("alice", hash(3), &[], T0).await,
            Err(StoreError::AlreadyExists {
                kind: "principal",
                ..
            })
        ));
        match s.create_principal("carol", hash(1), &[], T0).await {
            Err(StoreError::AlreadyExists { name, .. }) => assert!(name.is_empty()),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            s.create_principal("dave", hash(4), &[everywhere("Nope")], T0)
                .await,
            Err(StoreError::NotFound { kind: "role", name }) if name == "Nope"
        ));
        // Nothing of a refused principal is left behind.
        assert!(s.principal_by_token(hash(4)).await.unwrap().is_none());

        let principals = s.list_principals().await.unwrap();
        assert_eq!(principals.len(), 2);
        assert_eq!(principals[0], alice);
        assert_eq!(principals[1].name, "bob");
        assert!(principals[1].assignments.is_empty());

        let authenticated = s.principal_by_token(hash(1)).await.unwrap().unwrap();
        assert_eq!(authenticated.name, "alice");
        let help_desk = rbac::built_in_roles()
            .into_iter()
            .find(|r| r.name == rbac::HELP_DESK_OPERATOR)
            .unwrap();
        assert_eq!(
            authenticated.grants,
            rbac::Grants(vec![
                rbac::Grant {
                    role: help_desk,
                    group: None
                },
                rbac::Grant {
                    role: custom.clone(),
                    group: Some("north".into())
                },
                rbac::Grant {
                    role: custom,
                    group: None
                },
            ])
        );
        assert!(
            authenticated
                .grants
                .authorize_device("south", &rbac::RESET_PASSCODE)
                .is_ok()
        );
        assert!(s.principal_by_token(hash(9)).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn assignments_change_and_nobody_can_lock_roles_management_out() {
        let f = fixture().await;
        let s = &f.store;
        s.create_principal("root", hash(1), &[everywhere(rbac::ADMINISTRATOR)], T0)
            .await
            .unwrap();
        s.create_principal("nora", hash(2), &[], T0).await.unwrap();
        let nora = s
            .assign_role("nora", &in_group(rbac::HELP_DESK_OPERATOR, "north"))
            .await
            .unwrap();
        assert_eq!(
            nora.assignments,
            [in_group(rbac::HELP_DESK_OPERATOR, "north")]
        );
        // Assigning again changes nothing; the same role for another group is another assignment.
        s.assign_role("nora", &in_group(rbac::HELP_DESK_OPERATOR, "north"))
            .await
            .unwrap();
        let nora = s
            .assign_role("nora", &everywhere(rbac::HELP_DESK_OPERATOR))
            .await
            .unwrap();
        assert_eq!(nora.assignments.len(), 2);
        assert!(matches!(
            s.assign_role("ghost", &everywhere(rbac::ADMINISTRATOR))
                .await,
            Err(StoreError::NotFound {
                kind: "principal",
                ..
            })
        ));
        assert!(matches!(
            s.assign_role("nora", &everywhere("Nope")).await,
            Err(StoreError::NotFound { kind: "role", .. })
        ));
        let nora = s
            .unassign_role("nora", &everywhere(rbac::HELP_DESK_OPERATOR))
            .await
            .unwrap();
        assert_eq!(
            nora.assignments,
            [in_group(rbac::HELP_DESK_OPERATOR, "north")]
        );
        assert!(matches!(
            s.unassign_role("nora", &everywhere(rbac::HELP_DESK_OPERATOR))
                .await,
            Err(StoreError::NotFound {
                kind: "role assignment",
                ..
            })
        ));

        // The last holder of Roles.Manage for every group cannot lose it, by any route.
        assert!(matches!(
            s.unassign_role("root", &everywhere(rbac::ADMINISTRATOR))
                .await,
            Err(StoreError::WouldLockOut)
        ));
        assert!(matches!(
            s.delete_principal("root").await,
            Err(StoreError::WouldLockOut)
        ));
        assert!(s.principal_by_token(hash(1)).await.unwrap().is_some());
        let managers = Role {
            name: "Managers".into(),
            permissions: vec![rbac::Permission::RolesManage],
            built_in: false,
        };
        s.create_role(&managers).await.unwrap();
        s.assign_role("nora", &everywhere("Managers"))
            .await
            .unwrap();
        // A group-scoped Roles.Manage does not count.
        s.create_principal("gina", hash(3), &[in_group("Managers", "north")], T0)
            .await
            .unwrap();
        s.delete_principal("root").await.unwrap();
        assert!(s.principal_by_token(hash(1)).await.unwrap().is_none());
        let demoted = Role {
            permissions: vec![rbac::Permission::AuditRead],
            ..managers.clone()
        };
        assert!(matches!(
            s.update_role(&demoted).await,
            Err(StoreError::WouldLockOut)
        ));
        assert!(matches!(
            s.delete_role("Managers").await,
            Err(StoreError::RoleInUse(_))
        ));
        assert!(matches!(
            s.update_role(&rbac::built_in_roles()[0]).await,
            Err(StoreError::BuiltInRole(_))
        ));
        assert!(matches!(
            s.delete_role(rbac::READ_ONLY_OPERATOR).await,
            Err(StoreError::BuiltInRole(_))
        ));
        let audit_only = Role {
            name: "Audit only".into(),
            permissions: vec![rbac::Permission::AuditRead],
            built_in: false,
        };
        s.create_role(&audit_only).await.unwrap();
        let updated = Role {
            permissions: vec![
                rbac::Permission::AuditRead,
                rbac::Permission::ManagedDevicesRead,
            ],
            ..audit_only
        };
        s.update_role(&updated).await.unwrap();
        assert!(s.list_roles().await.unwrap().contains(&updated));
        s.delete_role("Audit only").await.unwrap();
        assert!(matches!(
            s.delete_role("Audit only").await,
            Err(StoreError::NotFound { kind: "role", .. })
        ));
    }

    #[tokio::test]
    async fn devices_and_actions_are_listed_by_group() {
        let f = fixture().await;
        let s = &f.store;
        enroll_in(s, "dev_n", 1, "north").await;
        enroll_in(s, "dev_s", 2, "south").await;
        enroll(s, "dev_d", 3).await;
        s.create_action(new_action("a_n", "dev_n", ActionState::Pending))
            .await
            .unwrap();
        s.create_action(new_action("a_s", "dev_s", ActionState::Pending))
            .await
            .unwrap();
        let north: BTreeSet<String> = ["north".to_string()].into();
        let ids = |devices: Vec<Device>| devices.into_iter().map(|d| d.id).collect::<Vec<_>>();
        assert_eq!(ids(s.list_devices(Some(&north)).await.unwrap()), ["dev_n"]);
        assert_eq!(s.list_devices(None).await.unwrap().len(), 3);
        assert!(
            s.list_devices(Some(&BTreeSet::new()))
                .await
                .unwrap()
                .is_empty()
        );
        let action_ids =
            |actions: Vec<Action>| actions.into_iter().map(|a| a.id).collect::<Vec<_>>();
        assert_eq!(
            action_ids(s.list_actions(None, Some(&north)).await.unwrap()),
            ["a_n"]
        );
        assert!(
            s.list_actions(Some("dev_s"), Some(&north))
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            action_ids(s.list_actions(Some("dev_s"), None).await.unwrap()),
            ["a_s"]
        );
        assert_eq!(s.list_actions(None, None).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn re_enrollment_gives_a_known_device_a_new_credential_and_nothing_else() {
        let f = fixture().await;
        let s = &f.store;
        let device = enroll_in(s, "dev_a", 1, "north").await;
        s.put_escrow_token("dev_a", Scope::WorkProfile, b"sealed")
            .await
            .unwrap();
        s.set_policy("dev_a", Scope::WorkProfile, Some(&policy()))
            .await
            .unwrap();
        s.create_action(new_action("a1", "dev_a", ActionState::Pending))
            .await
            .unwrap();

        s.reenroll_device("dev_a", hash(50), token(hash(60), 9, T0 + DAY))
            .await
            .unwrap();
        assert!(
            s.device_by_credential(hash(1)).await.unwrap().is_none(),
            "the old credential is revoked at once"
        );
        // A newer re-enrollment token replaces the older one.
        s.reenroll_device("dev_a", hash(51), token(hash(61), 9, T0 + DAY))
            .await
            .unwrap();
        assert!(matches!(
            s.enroll_device(hash(60), new_device("dev_new", 70)).await,
            Err(StoreError::EnrollmentTokenInvalid)
        ));
        let mut cosu = new_device("dev_new", 70);
        cosu.ownership = Ownership::Cosu;
        assert!(matches!(
            s.enroll_device(hash(61), cosu).await,
            Err(StoreError::EnrollmentOwnership {
                expected: Ownership::Byod
            })
        ));
        let enrolled = s
            .enroll_device(hash(61), new_device("dev_new", 70))
            .await
            .unwrap();
        assert!(enrolled.re_enrolled);
        assert_eq!(enrolled.device.id, "dev_a");
        assert_eq!(enrolled.device.group, "north");
        assert_eq!(enrolled.device.work_profile_policy, Some(policy()));
        assert!(enrolled.device.escrowed_token_scopes.is_empty());
        assert_eq!(enrolled.device.enrolled_at, device.enrolled_at);
        assert_eq!(
            s.device_by_credential(hash(70)).await.unwrap().unwrap().id,
            "dev_a"
        );
        assert!(s.get_device("dev_new").await.unwrap().is_none());
        assert_eq!(s.open_commands("dev_a").await.unwrap().len(), 1);
        // Single use.
        assert!(matches!(
            s.enroll_device(hash(61), new_device("dev_new", 71)).await,
            Err(StoreError::EnrollmentTokenInvalid)
        ));
        assert!(matches!(
            s.reenroll_device("nope", hash(52), token(hash(62), 1, T0 + DAY))
                .await,
            Err(StoreError::NotFound { kind: "device", .. })
        ));
    }

    #[tokio::test]
    async fn a_database_of_schema_version_1_keeps_its_devices_and_roles() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("droidfleet.db");
        {
            let options = SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true)
                .foreign_keys(true);
            let pool = SqlitePool::connect_with(options).await.unwrap();
            let mut version_1 = sqlx::migrate!("./migrations");
            version_1.migrations = std::borrow::Cow::Owned(version_1.migrations[..1].to_vec());
            version_1.run(&pool).await.unwrap();
            sqlx::query("INSERT INTO roles (name, permissions_json, built_in) VALUES (?, ?, 1)")
                .bind(rbac::ADMINISTRATOR)
                .bind(permissions_json(&rbac::Permission::ALL).unwrap())
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query("INSERT INTO principals (name, token_hash, created_at) VALUES (?, ?, ?)")
                .bind("admin")
                .bind(&hash(1)[..])
                .bind(db_time(T0))
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query("INSERT INTO principal_roles (principal, role) VALUES (?, ?)")
                .bind("admin")
                .bind(rbac::ADMINISTRATOR)
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query(
                "INSERT INTO devices (id, display_name, ownership, credential_hash, enrolled_at,
                                      last_seen)
                 VALUES ('dev_old', 'Old phone', 'cosu', ?, ?, ?)",
            )
            .bind(&hash(2)[..])
            .bind(db_time(T0))
            .bind(db_time(T0))
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        }
        let store = SqliteStore::open(&path).await.unwrap();
        let admin = store.principal_by_token(hash(1)).await.unwrap().unwrap();
        assert_eq!(admin.grants.0.len(), 1);
        assert_eq!(
            admin.grants.0[0].group, None,
            "held for every group, as before"
        );
        assert_eq!(
            admin.grants.authorize_anywhere(&rbac::Permission::ALL),
            Ok(())
        );
        let device = store.get_device("dev_old").await.unwrap().unwrap();
        assert_eq!(device.group, rbac::DEFAULT_GROUP);
        assert_eq!(
            store
                .device_by_credential(hash(2))
                .await
                .unwrap()
                .unwrap()
                .id,
            "dev_old"
        );
    }

    #[tokio::test]
    async fn audit_events_are_filtered_newest_first() {
        let f = fixture().await;
        let s = &f.store;
        let event =
            |at: Millis, principal: &str, operation: &str, device: Option<&str>| AuditEvent {
                id: 0,
                at,
                principal: principal.into(),
                operation: operation.into(),
                device_id: device.map(str::to_string),
                action_id: device.map(|d| format!("act_{d}_{at}")),
                result: "ok".into(),
                detail: format!("event at {at}"),
            };
        s.append_audit(event(T0, "alice", "ResetPasscode", Some("dev_a")))
            .await
            .unwrap();
        s.append_audit(event(T0 + 1, "bob", "RevealPasscode", Some("dev_a")))
            .await
            .unwrap();
        s.append_audit(event(T0 + 2, "alice", "ListDevices", None))
            .await
            .unwrap();
        s.append_audit(event(T0 + 3, "alice", "ResetPasscode", Some("dev_b")))
            .await
            .unwrap();

        let ats = |filter: AuditFilter| {
            let s = s.clone();
            async move {
                s.list_audit(&filter)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|e| e.at - T0)
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(ats(AuditFilter::default()).await, [3, 2, 1, 0]);
        let by_device = AuditFilter {
            device_id: Some("dev_a".into()),
            ..AuditFilter::default()
        };
        assert_eq!(ats(by_device).await, [1, 0]);
        let by_principal = AuditFilter {
            principal: Some("alice".into()),
            ..AuditFilter::default()
        };
        assert_eq!(ats(by_principal).await, [3, 2, 0]);
        let by_operation = AuditFilter {
            operation: Some("ResetPasscode".into()),
            principal: Some("alice".into()),
            ..AuditFilter::default()
        };
        assert_eq!(ats(by_operation).await, [3, 0]);
        let window = AuditFilter {
            since: Some(T0 + 1),
            until: Some(T0 + 2),
            ..AuditFilter::default()
        };
        assert_eq!(ats(window).await, [2, 1]);
        let limited = AuditFilter {
            limit: 2,
            ..AuditFilter::default()
        };
        assert_eq!(ats(limited).await, [3, 2]);

        let events = s.list_audit(&AuditFilter::default()).await.unwrap();
        let oldest = events.last().unwrap();
        assert_eq!(oldest.principal, "alice");
        assert_eq!(oldest.operation, "ResetPasscode");
        assert_eq!(oldest.device_id.as_deref(), Some("dev_a"));
        assert_eq!(
            oldest.action_id.as_deref(),
            Some(&*format!("act_dev_a_{T0}"))
        );
        assert_eq!(oldest.result, "ok");
        assert_eq!(oldest.detail, format!("event at {T0}"));
        assert!(events.windows(2).all(|w| w[0].id > w[1].id));
        assert_eq!(events[1].device_id, None);
    }

    #[tokio::test]
    async fn data_survives_reopening_the_file() {
        let f = fixture().await;
        let s = &f.store;
        enroll(s, "dev_a", 1).await;
        s.set_policy("dev_a", Scope::WorkProfile, Some(&policy()))
            .await
            .unwrap();
        s.update_device_status("dev_a", &[status(Scope::WorkProfile)], T0 + 9)
            .await
            .unwrap();
        s.put_escrow_token("dev_a", Scope::WorkProfile, b"sealed")
            .await
            .unwrap();
        let mut action = new_action("a1", "dev_a", ActionState::Pending);
        action.sealed_passcode = Some((b"sealed-passcode".to_vec(), T0 + 7 * DAY));
        let created = s.create_action(action).await.unwrap();
        s.create_principal(
            "alice",
            hash(7),
            &[in_group(rbac::SCHOOL_ADMINISTRATOR, "north")],
            T0,
        )
        .await
        .unwrap();
        s.append_audit(AuditEvent {
            id: 0,
            at: T0,
            principal: "alice".into(),
            operation: "ResetPasscode".into(),
            device_id: Some("dev_a".into()),
            action_id: Some("a1".into()),
            result: "ok".into(),
            detail: String::new(),
        })
        .await
        .unwrap();
        let device = s.get_device("dev_a").await.unwrap().unwrap();
        s.close().await;

        let reopened = SqliteStore::open(&f.path).await.unwrap();
        assert_eq!(reopened.get_device("dev_a").await.unwrap(), Some(device));
        assert_eq!(reopened.get_action("a1").await.unwrap(), Some(created));
        assert_eq!(
            reopened.sealed_passcode("a1", T0).await.unwrap().as_deref(),
            Some(&b"sealed-passcode"[..])
        );
        assert_eq!(
            reopened
                .escrow_token("dev_a", Scope::WorkProfile)
                .await
                .unwrap()
                .as_deref(),
            Some(&b"sealed"[..])
        );
        let alice = reopened.principal_by_token(hash(7)).await.unwrap().unwrap();
        assert_eq!(alice.grants.0[0].role.name, rbac::SCHOOL_ADMINISTRATOR);
        assert_eq!(alice.grants.0[0].group.as_deref(), Some("north"));
        assert_eq!(
            reopened
                .list_audit(&AuditFilter::default())
                .await
                .unwrap()
                .len(),
            1
        );
        // The sequence counter persisted too.
        let next = reopened
            .create_action(new_action("a2", "dev_a", ActionState::Pending))
            .await
            .unwrap();
        assert_eq!(next.sequence, Some(2));
    }
}
