//! Rows ⇄ domain values: how each value is encoded in its column (times as integers, enums as
//! text, policies and store statuses as JSON of a private, pinned shape), how a row becomes a
//! domain value, and the reads and checks inside a transaction that several queries share.

use super::admin_tokens::token_from_row;
use crate::clock::Millis;
use crate::model::{
    Action, ActionKind, ActionState, AuditEvent, Complexity, Device, ErrorCode, Ownership,
    PasscodePolicy, PasscodeType, Permission, Principal, Role, RoleAssignment, Scope, StoreStatus,
    TokenState,
};
use crate::store::StoreError;
use droidfleet_telemetry::traceparent::TraceParent;
use serde::{Deserialize, Serialize};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};
use std::collections::BTreeSet;

/// Millis are `u64`; SQLite integers are `i64`. Times beyond year 292 million saturate, which
/// keeps comparisons right.
pub(super) fn db_time(ms: Millis) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

pub(super) fn time_from_db(value: i64, column: &str) -> Result<Millis, StoreError> {
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

pub(super) fn policy_to_json(p: &PasscodePolicy) -> Result<String, StoreError> {
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
    /// Hex; absent in statuses stored before devices reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_fingerprint: Option<String>,
}

pub(super) fn stores_to_json(stores: &[StoreStatus]) -> Result<String, StoreError> {
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
            token_fingerprint: s.token_fingerprint.map(|f| crate::crypto::hex(&f)),
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
                token_fingerprint: s
                    .token_fingerprint
                    .as_deref()
                    .map(fingerprint_from_hex)
                    .transpose()?,
            })
        })
        .collect()
}

fn fingerprint_from_hex(text: &str) -> Result<[u8; 8], StoreError> {
    let bad = || corrupt("token fingerprint", text);
    if text.len() != 16 {
        return Err(bad());
    }
    let mut fingerprint = [0u8; 8];
    for (i, byte) in fingerprint.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16)
            .map_err(|_| bad())?;
    }
    Ok(fingerprint)
}

pub(super) fn permissions_json(permissions: &[Permission]) -> Result<String, StoreError> {
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

/// A set of group names as the JSON array `json_each` reads.
pub(super) fn groups_json(groups: &BTreeSet<String>) -> Result<String, StoreError> {
    serde_json::to_string(groups).map_err(|e| StoreError::Corrupt(format!("groups: {e}")))
}

pub(super) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

pub(super) fn device_not_found(device_id: &str) -> StoreError {
    StoreError::NotFound {
        kind: "device",
        name: device_id.to_string(),
    }
}

/// The device columns plus its escrowed scopes, as `device_from_row` reads them (and the
/// public key, which only the session state reads).
macro_rules! device_select {
    () => {
        "SELECT d.id, d.display_name, d.ownership, d.enrolled_at, d.last_seen, d.stores_json,
                d.public_key,
                d.device_policy_json, d.work_profile_policy_json, d.policy_version,
                d.device_group,
                d.api_level, d.maker_profile,
                (SELECT group_concat(e.scope, ',') FROM escrow_tokens e WHERE e.device_id = d.id)
                    AS escrow_scopes
         FROM devices d"
    };
}
pub(super) use device_select;

pub(super) fn device_from_row(row: &SqliteRow) -> Result<Device, StoreError> {
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
        policy_version: u64::try_from(row.try_get::<i64, _>("policy_version")?)
            .map_err(|_| corrupt("policy_version", "out of range"))?,
        escrowed_token_scopes,
        group: row.try_get("device_group")?,
        api_level: u32::try_from(row.try_get::<i64, _>("api_level")?)
            .map_err(|_| corrupt("api_level", "out of range"))?,
        maker_profile: row.try_get("maker_profile")?,
    })
}

/// The action columns; `passcode_visible_until` comes from the passcode row, so it is NULL as
/// soon as the passcode is purged. `row_key` is the row number that orders ListActions' pages.
macro_rules! action_select {
    () => {
        "SELECT a.rowid AS row_key, a.id, a.device_id, a.kind, a.scope, a.state, a.error_code, a.reason,
                a.requested_by, a.created_at, a.updated_at, a.delivered_at, a.completed_at,
                a.user_entered_at, a.not_after, a.sequence, a.sent_at, a.traceparent,
                a.cancel_requested_at, a.cancel_sequence, a.cancel_refusal,
                p.visible_until AS passcode_visible_until
         FROM actions a LEFT JOIN action_passcodes p ON p.action_id = a.id"
    };
}
pub(super) use action_select;

pub(super) fn action_from_row(row: &SqliteRow) -> Result<Action, StoreError> {
    let kind: String = row.try_get("kind")?;
    let scope: String = row.try_get("scope")?;
    let state: String = row.try_get("state")?;
    let error_code: Option<String> = row.try_get("error_code")?;
    let sequence: Option<i64> = row.try_get("sequence")?;
    let traceparent: Option<String> = row.try_get("traceparent")?;
    let cancel_sequence: Option<i64> = row.try_get("cancel_sequence")?;
    let cancel_refusal: Option<String> = row.try_get("cancel_refusal")?;
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
        sent_at: opt_time_from_db(row.try_get("sent_at")?, "sent_at")?,
        cancel_requested_at: opt_time_from_db(
            row.try_get("cancel_requested_at")?,
            "cancel_requested_at",
        )?,
        cancel_sequence: cancel_sequence
            .map(|s| {
                u64::try_from(s).map_err(|_| StoreError::Corrupt("negative cancel sequence".into()))
            })
            .transpose()?,
        cancel_refusal: cancel_refusal.unwrap_or_default(),
        traceparent: traceparent
            .map(|text| TraceParent::parse(&text).map_err(|_| corrupt("traceparent", &text)))
            .transpose()?,
        passcode_visible_until: opt_time_from_db(
            row.try_get("passcode_visible_until")?,
            "visible_until",
        )?,
    })
}

/// The columns of an action as a statement that changed it returns them (`RETURNING`), in the
/// shape `action_from_row` reads; qualified, for an `UPDATE … FROM` whose other table has
/// columns of the same names.
macro_rules! action_returning {
    () => {
        " RETURNING actions.id AS id, actions.device_id AS device_id, actions.kind AS kind,
                    actions.scope AS scope, actions.state AS state,
                    actions.error_code AS error_code, actions.reason AS reason,
                    actions.requested_by AS requested_by, actions.created_at AS created_at,
                    actions.updated_at AS updated_at, actions.delivered_at AS delivered_at,
                    actions.completed_at AS completed_at,
                    actions.user_entered_at AS user_entered_at, actions.not_after AS not_after,
                    actions.sequence AS sequence, actions.sent_at AS sent_at,
                    actions.traceparent AS traceparent,
                    actions.cancel_requested_at AS cancel_requested_at,
                    actions.cancel_sequence AS cancel_sequence,
                    actions.cancel_refusal AS cancel_refusal,
                    (SELECT p.visible_until FROM action_passcodes p WHERE p.action_id = actions.id)
                        AS passcode_visible_until"
    };
}
pub(super) use action_returning;

/// Open commands (pending or active actions) with their sealed passcodes, by device and
/// sequence, as the session state reads them.
macro_rules! open_command_select {
    () => {
        "SELECT a.id, a.device_id, a.kind, a.scope, a.state, a.error_code, a.reason,
                a.requested_by, a.created_at, a.updated_at, a.delivered_at, a.completed_at,
                a.user_entered_at, a.not_after, a.sequence, a.sent_at, a.traceparent,
                a.cancel_requested_at, a.cancel_sequence, a.cancel_refusal,
                p.visible_until AS passcode_visible_until, p.sealed AS sealed_passcode
         FROM actions a LEFT JOIN action_passcodes p ON p.action_id = a.id
         WHERE a.state IN ('pending', 'active')"
    };
}
pub(super) use open_command_select;

/// The device's public key; `None` when it has none (enrolled before keys, or revoked).
pub(super) fn public_key_from_row(row: &SqliteRow) -> Result<Option<[u8; 32]>, StoreError> {
    let key: Option<Vec<u8>> = row.try_get("public_key")?;
    key.map(|key| {
        key.try_into()
            .map_err(|_| StoreError::Corrupt("a device public key is not 32 bytes".into()))
    })
    .transpose()
}

pub(super) fn actions_from_rows(rows: &[SqliteRow]) -> Result<Vec<Action>, StoreError> {
    rows.iter().map(action_from_row).collect()
}

pub(super) fn role_from_row(row: &SqliteRow) -> Result<Role, StoreError> {
    let permissions: String = row.try_get("permissions_json")?;
    Ok(Role {
        name: row.try_get("name")?,
        permissions: permissions_from_json(&permissions)?,
        built_in: row.try_get::<i64, _>("built_in")? != 0,
    })
}

pub(super) fn audit_from_row(row: &SqliteRow) -> Result<AuditEvent, StoreError> {
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

pub(super) async fn fetch_device(
    connection: &mut SqliteConnection,
    device_id: &str,
) -> Result<Option<Device>, StoreError> {
    let row = sqlx::query(concat!(device_select!(), " WHERE d.id = ?"))
        .bind(device_id)
        .fetch_optional(&mut *connection)
        .await?;
    row.as_ref().map(device_from_row).transpose()
}

/// A principal with its assignments, read on `connection` (inside its write).
pub(super) async fn fetch_principal(
    connection: &mut SqliteConnection,
    name: &str,
) -> Result<Option<Principal>, StoreError> {
    let created_at: Option<i64> =
        sqlx::query_scalar("SELECT created_at FROM principals WHERE name = ?")
            .bind(name)
            .fetch_optional(&mut *connection)
            .await?;
    let Some(created_at) = created_at else {
        return Ok(None);
    };
    let rows = sqlx::query(
        "SELECT role, device_group FROM role_assignments WHERE principal = ? ORDER BY rowid",
    )
    .bind(name)
    .fetch_all(&mut *connection)
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
    let token = sqlx::query(
        "SELECT issued_at, expires_at, revoked_at, rotated_at
         FROM admin_tokens WHERE principal = ? ORDER BY rowid DESC LIMIT 1",
    )
    .bind(name)
    .fetch_optional(&mut *connection)
    .await?;
    Ok(Some(Principal {
        name: name.to_string(),
        assignments,
        created_at: time_from_db(created_at, "created_at")?,
        token: token.as_ref().map(token_from_row).transpose()?,
    }))
}

pub(super) async fn role_exists(
    connection: &mut SqliteConnection,
    name: &str,
) -> Result<Option<bool>, StoreError> {
    let built_in: Option<i64> = sqlx::query_scalar("SELECT built_in FROM roles WHERE name = ?")
        .bind(name)
        .fetch_optional(&mut *connection)
        .await?;
    Ok(built_in.map(|b| b != 0))
}

pub(super) fn principal_not_found(name: &str) -> StoreError {
    StoreError::NotFound {
        kind: "principal",
        name: name.to_string(),
    }
}

pub(super) fn role_not_found(name: &str) -> StoreError {
    StoreError::NotFound {
        kind: "role",
        name: name.to_string(),
    }
}

/// Fails with `WouldLockOut` unless some principal still holds Roles.Manage for every group;
/// called inside a write transaction before it commits, so a refused change is rolled back.
pub(super) async fn ensure_someone_manages_roles(
    connection: &mut SqliteConnection,
) -> Result<(), StoreError> {
    let managed: i64 = sqlx::query_scalar(
        "SELECT EXISTS (
             SELECT 1 FROM role_assignments ra
             JOIN roles r ON r.name = ra.role, json_each(r.permissions_json) p
             WHERE ra.device_group IS NULL AND p.value = ?
         )",
    )
    .bind(Permission::RolesManage.as_str())
    .fetch_one(&mut *connection)
    .await?;
    if managed == 0 {
        return Err(StoreError::WouldLockOut);
    }
    Ok(())
}
