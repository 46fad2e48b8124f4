//! The admin lists, a page at a time ([`Store::list_devices`](crate::store::Store) and the other
//! `list_*`): keyset paging, each page read from its key onwards through an index in list order
//! and one row past the page to tell whether another follows, so a page costs its own rows
//! whatever the list's length and never shifts when rows are inserted or deleted elsewhere.
//! Devices walk `0009`'s (enrolled_at, id) indexes; actions and the audit log walk their time
//! indexes, whose entries end with the row id that breaks ties; roles and principals walk their
//! tables in row order.

use super::SqliteStore;
use super::admin_tokens::token_from_row;
use super::device_search::{Bind, PageSql};
use super::rows::{
    action_from_row, action_select, audit_from_row, db_time, device_from_row, device_select,
    groups_json, role_from_row, time_from_db,
};
use crate::model::{Action, AuditEvent, AuditFilter, Device, Principal, Role, RoleAssignment};
use crate::store::{ActionKey, AuditKey, DeviceKey, Page, PageQuery, RowKey, StoreError};
use sqlx::Row;
use std::collections::BTreeSet;

/// A page from up to `limit + 1` keyed rows: the row past the page only says another follows.
fn page<T, K>(mut rows: Vec<(T, K)>, limit: u32) -> Page<T, K> {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let mut next = None;
    let mut items = Vec::with_capacity(rows.len());
    let last = rows.len().saturating_sub(1);
    for (i, (item, key)) in rows.into_iter().enumerate() {
        if more && i == last {
            next = Some(key);
        }
        items.push(item);
    }
    Page { items, next }
}

/// The rows a page reads: its size and the one past it.
fn fetch_limit(query_limit: u32) -> i64 {
    i64::from(query_limit) + 1
}

/// ListDevices' page: devices of `groups` (every group when `None`) after the query's key.
pub(super) fn device_list_sql(
    groups: Option<&BTreeSet<String>>,
    query: &PageQuery<DeviceKey>,
) -> Result<PageSql, StoreError> {
    // Assembled from fixed fragments only; every value is bound.
    let mut sql = String::from(concat!(device_select!(), " WHERE 1 = 1"));
    let mut binds = Vec::new();
    match groups {
        None => {}
        // One group as an equality, so the planner walks (device_group, enrolled_at, id).
        Some(groups) if groups.len() == 1 => {
            sql.push_str(" AND d.device_group = ?");
            binds.extend(groups.iter().map(|g| Bind::Text(g.clone())));
        }
        Some(groups) => {
            sql.push_str(" AND d.device_group IN (SELECT value FROM json_each(?))");
            binds.push(Bind::Text(groups_json(groups)?));
        }
    }
    if let Some(after) = &query.after {
        sql.push_str(" AND (d.enrolled_at, d.id) > (?, ?)");
        binds.push(Bind::Int(db_time(after.enrolled_at)));
        binds.push(Bind::Text(after.id.clone()));
    }
    sql.push_str(" ORDER BY d.enrolled_at, d.id LIMIT ?");
    binds.push(Bind::Int(fetch_limit(query.limit)));
    Ok(PageSql {
        sql,
        binds,
        descending: false,
    })
}

/// ListActions' page, newest first: the device's actions, or those of devices of `groups`
/// (every group when `None`), before the query's key.
pub(super) fn action_list_sql(
    device_id: Option<&str>,
    groups: Option<&BTreeSet<String>>,
    query: &PageQuery<ActionKey>,
) -> Result<PageSql, StoreError> {
    // Assembled from fixed fragments only; every value is bound.
    let mut sql = String::from(concat!(action_select!(), " WHERE 1 = 1"));
    let mut binds = Vec::new();
    if let Some(device_id) = device_id {
        sql.push_str(" AND a.device_id = ?");
        binds.push(Bind::Text(device_id.to_string()));
    }
    if let Some(groups) = groups {
        sql.push_str(
            " AND a.device_id IN (SELECT id FROM devices
                                  WHERE device_group IN (SELECT value FROM json_each(?)))",
        );
        binds.push(Bind::Text(groups_json(groups)?));
    }
    if let Some(after) = &query.after {
        sql.push_str(" AND (a.created_at, a.rowid) < (?, ?)");
        binds.push(Bind::Int(db_time(after.created_at)));
        binds.push(Bind::Int(after.row));
    }
    sql.push_str(" ORDER BY a.created_at DESC, a.rowid DESC LIMIT ?");
    binds.push(Bind::Int(fetch_limit(query.limit)));
    Ok(PageSql {
        sql,
        binds,
        descending: false,
    })
}

/// ListAuditEvents' page, newest first: the events `filter` matches before the query's key.
pub(super) fn audit_list_sql(filter: &AuditFilter, query: &PageQuery<AuditKey>) -> PageSql {
    // Assembled from fixed fragments only (every value is bound), so the planner sees plain
    // equality terms and can use the matching index.
    let mut sql = String::from(
        "SELECT id, at, principal, operation, device_id, action_id, result, detail
         FROM audit WHERE 1 = 1",
    );
    let mut binds = Vec::new();
    for (column, value) in [
        (" AND device_id = ?", &filter.device_id),
        (" AND principal = ?", &filter.principal),
        (" AND operation = ?", &filter.operation),
    ] {
        if let Some(value) = value {
            sql.push_str(column);
            binds.push(Bind::Text(value.clone()));
        }
    }
    for (column, time) in [
        (" AND at >= ?", filter.since),
        (" AND at <= ?", filter.until),
    ] {
        if let Some(time) = time {
            sql.push_str(column);
            binds.push(Bind::Int(db_time(time)));
        }
    }
    if let Some(after) = &query.after {
        sql.push_str(" AND (at, id) < (?, ?)");
        binds.push(Bind::Int(db_time(after.at)));
        binds.push(Bind::Int(i64::try_from(after.id).unwrap_or(i64::MAX)));
    }
    sql.push_str(" ORDER BY at DESC, id DESC LIMIT ?");
    binds.push(Bind::Int(fetch_limit(query.limit)));
    PageSql {
        sql,
        binds,
        descending: false,
    }
}

impl SqliteStore {
    pub(super) async fn device_page(
        &self,
        groups: Option<&BTreeSet<String>>,
        query: &PageQuery<DeviceKey>,
    ) -> Result<Page<Device, DeviceKey>, StoreError> {
        let rows = device_list_sql(groups, query)?
            .statement("")
            .fetch_all(&self.pool)
            .await?;
        let keyed = rows
            .iter()
            .map(|row| {
                let device = device_from_row(row)?;
                let key = DeviceKey {
                    enrolled_at: device.enrolled_at,
                    id: device.id.clone(),
                };
                Ok((device, key))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(page(keyed, query.limit))
    }

    pub(super) async fn action_page(
        &self,
        device_id: Option<&str>,
        groups: Option<&BTreeSet<String>>,
        query: &PageQuery<ActionKey>,
    ) -> Result<Page<Action, ActionKey>, StoreError> {
        let rows = action_list_sql(device_id, groups, query)?
            .statement("")
            .fetch_all(&self.pool)
            .await?;
        let keyed = rows
            .iter()
            .map(|row| {
                let action = action_from_row(row)?;
                let key = ActionKey {
                    created_at: action.created_at,
                    row: row.try_get("row_key")?,
                };
                Ok((action, key))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(page(keyed, query.limit))
    }

    pub(super) async fn audit_page(
        &self,
        filter: &AuditFilter,
        query: &PageQuery<AuditKey>,
    ) -> Result<Page<AuditEvent, AuditKey>, StoreError> {
        let rows = audit_list_sql(filter, query)
            .statement("")
            .fetch_all(&self.pool)
            .await?;
        let keyed = rows
            .iter()
            .map(|row| {
                let event = audit_from_row(row)?;
                let key = AuditKey {
                    at: event.at,
                    id: event.id,
                };
                Ok((event, key))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(page(keyed, query.limit))
    }

    pub(super) async fn role_page(
        &self,
        query: &PageQuery<RowKey>,
    ) -> Result<Page<Role, RowKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT rowid AS row_key, name, permissions_json, built_in FROM roles
             WHERE rowid > ? ORDER BY rowid LIMIT ?",
        )
        .bind(query.after.unwrap_or(RowKey::MIN))
        .bind(fetch_limit(query.limit))
        .fetch_all(&self.pool)
        .await?;
        let keyed = rows
            .iter()
            .map(|row| Ok((role_from_row(row)?, row.try_get("row_key")?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(page(keyed, query.limit))
    }

    pub(super) async fn principal_page(
        &self,
        query: &PageQuery<RowKey>,
    ) -> Result<Page<Principal, RowKey>, StoreError> {
        // One read transaction, so principals and their roles come from the same snapshot.
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "SELECT rowid AS row_key, name, created_at FROM principals
             WHERE rowid > ? ORDER BY rowid LIMIT ?",
        )
        .bind(query.after.unwrap_or(RowKey::MIN))
        .bind(fetch_limit(query.limit))
        .fetch_all(&mut *tx)
        .await?;
        let keyed = rows
            .iter()
            .map(|row| {
                let principal = Principal {
                    name: row.try_get("name")?,
                    assignments: Vec::new(),
                    created_at: time_from_db(row.try_get("created_at")?, "created_at")?,
                    token: None,
                };
                Ok((principal, row.try_get("row_key")?))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let mut listed = page(keyed, query.limit);
        let names: BTreeSet<String> = listed.items.iter().map(|p| p.name.clone()).collect();
        let names = groups_json(&names)?;
        let assignments = sqlx::query(
            "SELECT principal, role, device_group FROM role_assignments
             WHERE principal IN (SELECT value FROM json_each(?)) ORDER BY rowid",
        )
        .bind(&names)
        .fetch_all(&mut *tx)
        .await?;
        // In issue order, so each principal ends with its newest.
        let tokens = sqlx::query(
            "SELECT principal, issued_at, expires_at, revoked_at, rotated_at FROM admin_tokens
             WHERE principal IN (SELECT value FROM json_each(?)) ORDER BY rowid",
        )
        .bind(&names)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        for row in &tokens {
            let principal: String = row.try_get("principal")?;
            if let Some(p) = listed.items.iter_mut().find(|p| p.name == principal) {
                p.token = Some(token_from_row(row)?);
            }
        }
        for row in &assignments {
            let principal: String = row.try_get("principal")?;
            if let Some(p) = listed.items.iter_mut().find(|p| p.name == principal) {
                p.assignments.push(RoleAssignment {
                    role: row.try_get("role")?,
                    group: row.try_get("device_group")?,
                });
            }
        }
        Ok(listed)
    }
}
