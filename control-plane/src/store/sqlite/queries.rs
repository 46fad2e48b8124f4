//! [`Store`] on SQLite: each method one transaction, writes in `BEGIN IMMEDIATE` (see the module
//! above), with the checks that must hold under concurrency inside the statements themselves.

use super::SqliteStore;
use super::rows::{
    action_from_row, action_select, actions_from_rows, audit_from_row, db_time, device_exists,
    device_from_row, device_not_found, device_select, ensure_someone_manages_roles, fetch_action,
    fetch_device, fetch_principal, groups_json, is_unique_violation, permissions_json,
    policy_to_json, principal_not_found, role_exists, role_from_row, role_not_found, states_json,
    stores_to_json, time_from_db,
};
use crate::clock::Millis;
use crate::model::{
    Action, ActionState, AuditEvent, AuditFilter, Device, ErrorCode, PasscodePolicy, Principal,
    Role, RoleAssignment, Scope, StoreStatus,
};
use crate::rbac::{Grant, Grants};
use crate::store::{
    ActionUpdate, AuthenticatedPrincipal, DeviceQuery, Enrolled, ListedDevice, NewAction,
    NewDevice, NewEnrollmentToken, Store, StoreError,
};
use sqlx::Row;
use std::collections::BTreeSet;

/// `list_audit`'s limit when the filter asks for 0.
const DEFAULT_AUDIT_LIMIT: u32 = 1000;

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

    async fn search_devices(&self, query: &DeviceQuery) -> Result<Vec<ListedDevice>, StoreError> {
        self.search_device_page(query).await
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

    async fn set_device_build(
        &self,
        device_id: &str,
        api_level: u32,
        maker_profile: &str,
    ) -> Result<(), StoreError> {
        let result =
            sqlx::query("UPDATE devices SET api_level = ?, maker_profile = ? WHERE id = ?")
                .bind(i64::from(api_level))
                .bind(maker_profile)
                .bind(device_id)
                .execute(&self.pool)
                .await?;
        if result.rows_affected() == 0 {
            return Err(device_not_found(device_id));
        }
        Ok(())
    }

    async fn move_device(&self, device_id: &str, group: &str) -> Result<(), StoreError> {
        let result = sqlx::query("UPDATE devices SET device_group = ? WHERE id = ?")
            .bind(group)
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
