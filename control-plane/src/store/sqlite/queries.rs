//! [`Store`] on SQLite: every write one job of the group-commit writer (`writer.rs`), every read
//! one statement (or one read transaction) on the pool, with the checks that must hold under
//! concurrency inside the statements themselves. Each write returns the [`Change`]s its commit
//! tells the observer.

use super::SqliteStore;
use super::admin_tokens::{insert_token, principal_by_token, recover, revoke, rotate};
use super::bulk::{BulkDone, BulkWrite};
use super::enrollment::enroll;
use super::rows::{
    action_from_row, action_select, actions_from_rows, db_time, device_from_row, device_not_found,
    device_select, ensure_someone_manages_roles, fetch_principal, is_unique_violation,
    open_command_select, permissions_json, policy_to_json, principal_not_found,
    public_key_from_row, role_exists, role_not_found,
};
use super::writer::Written;
use crate::clock::Millis;
use crate::model::{
    Action, ActionState, AdminToken, AuditEvent, AuditFilter, Device, PasscodePolicy, Principal,
    Role, RoleAssignment, Scope, StoreStatus,
};
use crate::store::{
    ActionKey, ActionUpdate, AuditKey, AuthenticatedPrincipal, Change, CommitObserver, DeviceKey,
    DeviceQuery, DeviceState, Enrolled, ListedDevice, NewAction, NewAdminToken, NewDevice,
    NewEnrollmentToken, OpenCommand, Page, PageQuery, RowKey, Store, StoreError,
};
use sqlx::{Row, SqliteConnection};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// A bulk write answered with another kind's outcome: a bug of the writer, reported as such.
fn unexpected(done: BulkDone) -> StoreError {
    StoreError::Corrupt(format!("the writer answered with {done:?}"))
}

/// The commands of a device that still need delivery or a result, read inside a write.
pub(super) async fn open_commands_of(
    connection: &mut SqliteConnection,
    device_id: &str,
) -> Result<Vec<OpenCommand>, StoreError> {
    let rows = sqlx::query(concat!(
        open_command_select!(),
        " AND a.device_id = ? ORDER BY a.sequence"
    ))
    .bind(device_id)
    .fetch_all(&mut *connection)
    .await?;
    rows.iter().map(open_command_from_row).collect()
}

fn open_command_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<OpenCommand, StoreError> {
    Ok(OpenCommand {
        action: action_from_row(row)?,
        sealed_passcode: row.try_get("sealed_passcode")?,
    })
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    fn observe(&self, observer: Arc<dyn CommitObserver>) {
        self.writer.observe(observer);
    }

    async fn session_state(&self) -> Result<Vec<DeviceState>, StoreError> {
        // One read transaction: the devices, their tokens and their commands from one snapshot.
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(concat!(device_select!(), " ORDER BY d.enrolled_at, d.id"))
            .fetch_all(&mut *tx)
            .await?;
        let mut states = Vec::with_capacity(rows.len());
        let mut index: HashMap<String, usize> = HashMap::with_capacity(rows.len());
        for row in &rows {
            let device = device_from_row(row)?;
            index.insert(device.id.clone(), states.len());
            states.push(DeviceState {
                public_key: public_key_from_row(row)?,
                device,
                escrow_tokens: Vec::new(),
                open_commands: Vec::new(),
            });
        }
        drop(rows);
        let tokens = sqlx::query("SELECT device_id, scope, sealed FROM escrow_tokens")
            .fetch_all(&mut *tx)
            .await?;
        for row in &tokens {
            let device_id: String = row.try_get("device_id")?;
            let scope: String = row.try_get("scope")?;
            let scope = Scope::parse(&scope)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown scope {scope:?}")))?;
            if let Some(&i) = index.get(&device_id) {
                states[i]
                    .escrow_tokens
                    .push((scope, row.try_get("sealed")?));
            }
        }
        let commands = sqlx::query(concat!(
            open_command_select!(),
            " ORDER BY a.device_id, a.sequence"
        ))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        for row in &commands {
            let command = open_command_from_row(row)?;
            if let Some(&i) = index.get(&command.action.device_id) {
                states[i].open_commands.push(command);
            }
        }
        Ok(states)
    }

    async fn create_enrollment_token(&self, token: NewEnrollmentToken) -> Result<(), StoreError> {
        self.writer
            .write(false, move |connection| {
                Box::pin(async move {
                    let result = sqlx::query(
                        "INSERT INTO enrollment_tokens (hash, max_uses, uses, expires_at,
                                                        created_by, device_group)
                         VALUES (?, ?, 0, ?, ?, ?)",
                    )
                    .bind(&token.hash[..])
                    .bind(token.max_uses)
                    .bind(db_time(token.expires_at))
                    .bind(&token.created_by)
                    .bind(&token.group)
                    .execute(&mut *connection)
                    .await;
                    match result {
                        Ok(_) => Ok(Written::new((), Vec::new())),
                        Err(e) if is_unique_violation(&e) => Err(StoreError::AlreadyExists {
                            kind: "enrollment token",
                            // The hash identifies a credential; it stays out of messages.
                            name: String::new(),
                        }),
                        Err(e) => Err(e.into()),
                    }
                })
            })
            .await
    }

    async fn enroll_device(
        &self,
        token_hash: [u8; 32],
        device: NewDevice,
    ) -> Result<Enrolled, StoreError> {
        self.writer
            .write(true, move |connection| {
                Box::pin(async move { enroll(connection, token_hash, device).await })
            })
            .await
    }

    async fn reenroll_device(
        &self,
        device_id: &str,
        token: NewEnrollmentToken,
    ) -> Result<(), StoreError> {
        let device_id = device_id.to_string();
        self.writer
            .write(true, move |connection| {
                Box::pin(async move {
                    let revoked = sqlx::query("UPDATE devices SET public_key = NULL WHERE id = ?")
                        .bind(&device_id)
                        .execute(&mut *connection)
                        .await?;
                    if revoked.rows_affected() == 0 {
                        return Err(device_not_found(&device_id));
                    }
                    // Only the newest re-enrollment token of a device works.
                    sqlx::query("DELETE FROM enrollment_tokens WHERE device_id = ?")
                        .bind(&device_id)
                        .execute(&mut *connection)
                        .await?;
                    let inserted = sqlx::query(
                        "INSERT INTO enrollment_tokens (hash, max_uses, uses, expires_at,
                                                        created_by, device_group, device_id)
                         SELECT ?, 1, 0, ?, ?, device_group, id FROM devices WHERE id = ?",
                    )
                    .bind(&token.hash[..])
                    .bind(db_time(token.expires_at))
                    .bind(&token.created_by)
                    .bind(&device_id)
                    .execute(&mut *connection)
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
                    let change = Change::KeyRevoked { device_id };
                    Ok(Written::new((), vec![change]))
                })
            })
            .await
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
        page: &PageQuery<DeviceKey>,
    ) -> Result<Page<Device, DeviceKey>, StoreError> {
        self.device_page(groups, page).await
    }

    async fn search_devices(&self, query: &DeviceQuery) -> Result<Vec<ListedDevice>, StoreError> {
        self.search_device_page(query).await
    }

    async fn update_device_status(
        &self,
        device_id: &str,
        stores: &[StoreStatus],
        last_seen: Millis,
    ) -> Result<(), StoreError> {
        self.writer
            .bulk(BulkWrite::Status {
                device_id: device_id.to_string(),
                stores: stores.to_vec(),
                last_seen,
            })
            .await
            .map(|_| ())
    }

    async fn set_device_build(
        &self,
        device_id: &str,
        api_level: u32,
        maker_profile: &str,
    ) -> Result<(), StoreError> {
        let device_id = device_id.to_string();
        let maker_profile = maker_profile.to_string();
        self.writer
            .write(false, move |connection| {
                Box::pin(async move {
                    let result = sqlx::query(
                        "UPDATE devices SET api_level = ?, maker_profile = ? WHERE id = ?",
                    )
                    .bind(i64::from(api_level))
                    .bind(&maker_profile)
                    .bind(&device_id)
                    .execute(&mut *connection)
                    .await?;
                    if result.rows_affected() == 0 {
                        return Err(device_not_found(&device_id));
                    }
                    let change = Change::Build {
                        device_id,
                        api_level,
                        maker_profile,
                    };
                    Ok(Written::new((), vec![change]))
                })
            })
            .await
    }

    async fn move_device(&self, device_id: &str, group: &str) -> Result<(), StoreError> {
        let device_id = device_id.to_string();
        let group = group.to_string();
        self.writer
            .write(false, move |connection| {
                Box::pin(async move {
                    let result = sqlx::query("UPDATE devices SET device_group = ? WHERE id = ?")
                        .bind(&group)
                        .bind(&device_id)
                        .execute(&mut *connection)
                        .await?;
                    if result.rows_affected() == 0 {
                        return Err(device_not_found(&device_id));
                    }
                    Ok(Written::new((), vec![Change::Moved { device_id, group }]))
                })
            })
            .await
    }

    async fn set_policy(
        &self,
        device_id: &str,
        scope: Scope,
        policy: Option<&PasscodePolicy>,
    ) -> Result<(), StoreError> {
        let json = policy.map(policy_to_json).transpose()?;
        let sql = match scope {
            Scope::Device => {
                "UPDATE devices SET device_policy_json = ?, policy_version = policy_version + 1 \
                 WHERE id = ? RETURNING policy_version"
            }
            Scope::WorkProfile => {
                "UPDATE devices SET work_profile_policy_json = ?, \
                 policy_version = policy_version + 1 WHERE id = ? RETURNING policy_version"
            }
        };
        let device_id = device_id.to_string();
        let policy = policy.cloned();
        self.writer
            .write(false, move |connection| {
                Box::pin(async move {
                    let version: Option<i64> = sqlx::query_scalar(sql)
                        .bind(json)
                        .bind(&device_id)
                        .fetch_optional(&mut *connection)
                        .await?;
                    let Some(version) = version else {
                        return Err(device_not_found(&device_id));
                    };
                    let change = Change::Policy {
                        device_id,
                        scope,
                        policy,
                        version: u64::try_from(version).unwrap_or(0),
                    };
                    Ok(Written::new((), vec![change]))
                })
            })
            .await
    }

    async fn put_escrow_token(
        &self,
        device_id: &str,
        scope: Scope,
        sealed_token: &[u8],
    ) -> Result<(), StoreError> {
        self.writer
            .bulk(BulkWrite::Escrow {
                device_id: device_id.to_string(),
                scope,
                sealed: sealed_token.to_vec(),
            })
            .await
            .map(|_| ())
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
        match self.writer.bulk(BulkWrite::CreateAction(action)).await? {
            BulkDone::Action(created) => Ok(created),
            other => Err(unexpected(other)),
        }
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
        page: &PageQuery<ActionKey>,
    ) -> Result<Page<Action, ActionKey>, StoreError> {
        self.action_page(device_id, groups, page).await
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
        let write = BulkWrite::Transition {
            action_id: action_id.to_string(),
            from: from.to_vec(),
            to,
            update,
            now,
        };
        match self.writer.bulk(write).await? {
            BulkDone::Transitioned(changed) => Ok(changed),
            other => Err(unexpected(other)),
        }
    }

    async fn set_user_entered(
        &self,
        device_id: &str,
        action_id: &str,
        at: Millis,
    ) -> Result<Action, StoreError> {
        let write = BulkWrite::UserEntered {
            device_id: device_id.to_string(),
            action_id: action_id.to_string(),
            at,
        };
        match self.writer.bulk(write).await? {
            BulkDone::Action(action) => Ok(action),
            other => Err(unexpected(other)),
        }
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
        self.writer
            .write(false, move |connection| {
                Box::pin(async move {
                    let purged =
                        sqlx::query("DELETE FROM action_passcodes WHERE visible_until <= ?")
                            .bind(db_time(now))
                            .execute(&mut *connection)
                            .await?
                            .rows_affected();
                    Ok(Written {
                        value: purged,
                        changes: vec![Change::PasscodesPurged { until: now }],
                        // Always, not only when rows went now: it also finishes a checkpoint an
                        // earlier purge could not complete.
                        checkpoint: true,
                    })
                })
            })
            .await
    }

    async fn create_role(&self, role: &Role) -> Result<(), StoreError> {
        let name = role.name.clone();
        let permissions = permissions_json(&role.permissions)?;
        let built_in = role.built_in;
        self.writer
            .write(false, move |connection| {
                Box::pin(async move {
                    let result = sqlx::query(
                        "INSERT INTO roles (name, permissions_json, built_in) VALUES (?, ?, ?)",
                    )
                    .bind(&name)
                    .bind(permissions)
                    .bind(built_in)
                    .execute(&mut *connection)
                    .await;
                    match result {
                        Ok(_) => Ok(Written::new((), vec![Change::AccessChanged])),
                        Err(e) if is_unique_violation(&e) => {
                            Err(StoreError::AlreadyExists { kind: "role", name })
                        }
                        Err(e) => Err(e.into()),
                    }
                })
            })
            .await
    }

    async fn list_roles(&self, page: &PageQuery<RowKey>) -> Result<Page<Role, RowKey>, StoreError> {
        self.role_page(page).await
    }

    async fn update_role(&self, role: &Role) -> Result<(), StoreError> {
        let name = role.name.clone();
        let permissions = permissions_json(&role.permissions)?;
        self.writer
            .write(true, move |connection| {
                Box::pin(async move {
                    match role_exists(connection, &name).await? {
                        None => return Err(role_not_found(&name)),
                        Some(true) => return Err(StoreError::BuiltInRole(name)),
                        Some(false) => {}
                    }
                    sqlx::query("UPDATE roles SET permissions_json = ? WHERE name = ?")
                        .bind(permissions)
                        .bind(&name)
                        .execute(&mut *connection)
                        .await?;
                    ensure_someone_manages_roles(connection).await?;
                    Ok(Written::new((), vec![Change::AccessChanged]))
                })
            })
            .await
    }

    async fn delete_role(&self, name: &str) -> Result<(), StoreError> {
        let name = name.to_string();
        self.writer
            .write(false, move |connection| {
                Box::pin(async move {
                    match role_exists(connection, &name).await? {
                        None => return Err(role_not_found(&name)),
                        Some(true) => return Err(StoreError::BuiltInRole(name)),
                        Some(false) => {}
                    }
                    let assigned =
                        sqlx::query("SELECT 1 FROM role_assignments WHERE role = ? LIMIT 1")
                            .bind(&name)
                            .fetch_optional(&mut *connection)
                            .await?;
                    if assigned.is_some() {
                        return Err(StoreError::RoleInUse(name));
                    }
                    sqlx::query("DELETE FROM roles WHERE name = ?")
                        .bind(&name)
                        .execute(&mut *connection)
                        .await?;
                    Ok(Written::new((), vec![Change::AccessChanged]))
                })
            })
            .await
    }

    async fn create_principal(
        &self,
        name: &str,
        token: NewAdminToken,
        assignments: &[RoleAssignment],
    ) -> Result<Principal, StoreError> {
        let name = name.to_string();
        let assignments = assignments.to_vec();
        self.writer
            .write(true, move |connection| {
                Box::pin(async move {
                    let exists = sqlx::query("SELECT 1 FROM principals WHERE name = ?")
                        .bind(&name)
                        .fetch_optional(&mut *connection)
                        .await?;
                    if exists.is_some() {
                        return Err(StoreError::AlreadyExists {
                            kind: "principal",
                            name,
                        });
                    }
                    let mut assigned: Vec<RoleAssignment> = Vec::new();
                    for assignment in assignments {
                        if assigned.contains(&assignment) {
                            continue;
                        }
                        if role_exists(connection, &assignment.role).await?.is_none() {
                            return Err(role_not_found(&assignment.role));
                        }
                        assigned.push(assignment);
                    }
                    sqlx::query("INSERT INTO principals (name, created_at) VALUES (?, ?)")
                        .bind(&name)
                        .bind(db_time(token.issued_at))
                        .execute(&mut *connection)
                        .await?;
                    insert_token(connection, &name, &token).await?;
                    for assignment in &assigned {
                        sqlx::query(
                            "INSERT INTO role_assignments (principal, role, device_group)
                             VALUES (?, ?, ?)",
                        )
                        .bind(&name)
                        .bind(&assignment.role)
                        .bind(&assignment.group)
                        .execute(&mut *connection)
                        .await?;
                    }
                    let principal = Principal {
                        name,
                        assignments: assigned,
                        created_at: token.issued_at,
                        token: Some(AdminToken {
                            issued_at: token.issued_at,
                            expires_at: token.expires_at,
                            revoked_at: None,
                            rotated_at: None,
                        }),
                    };
                    Ok(Written::new(principal, vec![Change::AccessChanged]))
                })
            })
            .await
    }

    async fn list_principals(
        &self,
        page: &PageQuery<RowKey>,
    ) -> Result<Page<Principal, RowKey>, StoreError> {
        self.principal_page(page).await
    }

    async fn assign_role(
        &self,
        principal: &str,
        assignment: &RoleAssignment,
    ) -> Result<Principal, StoreError> {
        let principal = principal.to_string();
        let assignment = assignment.clone();
        self.writer
            .write(false, move |connection| {
                Box::pin(async move {
                    if fetch_principal(connection, &principal).await?.is_none() {
                        return Err(principal_not_found(&principal));
                    }
                    if role_exists(connection, &assignment.role).await?.is_none() {
                        return Err(role_not_found(&assignment.role));
                    }
                    sqlx::query(
                        "INSERT INTO role_assignments (principal, role, device_group)
                         VALUES (?, ?, ?)
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(&principal)
                    .bind(&assignment.role)
                    .bind(&assignment.group)
                    .execute(&mut *connection)
                    .await?;
                    let after = fetch_principal(connection, &principal)
                        .await?
                        .ok_or_else(|| principal_not_found(&principal))?;
                    Ok(Written::new(after, vec![Change::AccessChanged]))
                })
            })
            .await
    }

    async fn unassign_role(
        &self,
        principal: &str,
        assignment: &RoleAssignment,
    ) -> Result<Principal, StoreError> {
        let principal = principal.to_string();
        let assignment = assignment.clone();
        self.writer
            .write(true, move |connection| {
                Box::pin(async move {
                    if fetch_principal(connection, &principal).await?.is_none() {
                        return Err(principal_not_found(&principal));
                    }
                    let removed = sqlx::query(
                        "DELETE FROM role_assignments
                         WHERE principal = ? AND role = ? AND IFNULL(device_group, '') = IFNULL(?, '')",
                    )
                    .bind(&principal)
                    .bind(&assignment.role)
                    .bind(&assignment.group)
                    .execute(&mut *connection)
                    .await?;
                    if removed.rows_affected() == 0 {
                        return Err(StoreError::NotFound {
                            kind: "role assignment",
                            name: format!("{principal}: {assignment}"),
                        });
                    }
                    ensure_someone_manages_roles(connection).await?;
                    let after = fetch_principal(connection, &principal)
                        .await?
                        .ok_or_else(|| principal_not_found(&principal))?;
                    Ok(Written::new(after, vec![Change::AccessChanged]))
                })
            })
            .await
    }

    async fn delete_principal(&self, name: &str) -> Result<(), StoreError> {
        let name = name.to_string();
        self.writer
            .write(true, move |connection| {
                Box::pin(async move {
                    // Its assignments go with it (ON DELETE CASCADE).
                    let deleted = sqlx::query("DELETE FROM principals WHERE name = ?")
                        .bind(&name)
                        .execute(&mut *connection)
                        .await?;
                    if deleted.rows_affected() == 0 {
                        return Err(principal_not_found(&name));
                    }
                    ensure_someone_manages_roles(connection).await?;
                    Ok(Written::new((), vec![Change::AccessChanged]))
                })
            })
            .await
    }

    async fn principal_by_token(
        &self,
        token_hash: [u8; 32],
    ) -> Result<Option<AuthenticatedPrincipal>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let principal = principal_by_token(&mut tx, token_hash).await?;
        tx.commit().await?;
        Ok(principal)
    }

    async fn rotate_admin_token(
        &self,
        principal: &str,
        new: NewAdminToken,
        old_tokens_end: Millis,
    ) -> Result<Principal, StoreError> {
        let principal = principal.to_string();
        self.writer
            .write(false, move |connection| {
                Box::pin(async move { rotate(connection, &principal, new, old_tokens_end).await })
            })
            .await
    }

    async fn revoke_admin_tokens(&self, principal: &str, now: Millis) -> Result<u64, StoreError> {
        let principal = principal.to_string();
        self.writer
            .write(false, move |connection| {
                Box::pin(async move { revoke(connection, &principal, now).await })
            })
            .await
    }

    async fn recover_admin(
        &self,
        principal: &str,
        role: &str,
        token: NewAdminToken,
    ) -> Result<bool, StoreError> {
        let principal = principal.to_string();
        let role = role.to_string();
        self.writer
            .write(false, move |connection| {
                Box::pin(async move { recover(connection, &principal, &role, token).await })
            })
            .await
    }

    async fn append_audit(&self, event: AuditEvent) -> Result<(), StoreError> {
        self.writer.bulk(BulkWrite::Audit(event)).await.map(|_| ())
    }

    async fn prune_audit(
        &self,
        recorded_before: Millis,
        keep_newest: u64,
        batch: u64,
    ) -> Result<u64, StoreError> {
        // Found on the read pool, so the writer is held only by the deletions themselves.
        let past_age: Option<i64> = sqlx::query_scalar("SELECT max(id) FROM audit WHERE at < ?")
            .bind(db_time(recorded_before))
            .fetch_one(&self.pool)
            .await?;
        let past_count: Option<i64> =
            sqlx::query_scalar("SELECT id FROM audit ORDER BY id DESC LIMIT 1 OFFSET ?")
                .bind(i64::try_from(keep_newest).unwrap_or(i64::MAX))
                .fetch_optional(&self.pool)
                .await?;
        let Some(last) = past_age.max(past_count) else {
            return Ok(0);
        };
        let batch = i64::try_from(batch.max(1)).unwrap_or(i64::MAX);
        let mut pruned = 0;
        // Bounded by the rows there were: each full turn deletes `batch` of them.
        loop {
            let deleted = self
                .writer
                .write(false, move |connection| {
                    Box::pin(async move {
                        let deleted = sqlx::query(
                            "DELETE FROM audit WHERE id IN \
                             (SELECT id FROM audit WHERE id <= ? ORDER BY id LIMIT ?)",
                        )
                        .bind(last)
                        .bind(batch)
                        .execute(&mut *connection)
                        .await?
                        .rows_affected();
                        Ok(Written::new(deleted, Vec::new()))
                    })
                })
                .await?;
            pruned += deleted;
            if deleted < batch.unsigned_abs() {
                return Ok(pruned);
            }
        }
    }

    async fn list_audit(
        &self,
        filter: &AuditFilter,
        page: &PageQuery<AuditKey>,
    ) -> Result<Page<AuditEvent, AuditKey>, StoreError> {
        self.audit_page(filter, page).await
    }
}
