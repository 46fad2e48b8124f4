//! The paged, filtered device list ([`Store::search_devices`](crate::store::Store)): keyset
//! paging over the (display name, id) order, every filter in the WHERE clause, so a page of a
//! hundred thousand devices reads about a page of rows through the `0004` indexes instead of
//! the whole table. Each device's newest action is on its row (`latest_action_id`,
//! `latest_action_state`, kept by the `0004` triggers); a second read in the same snapshot loads
//! those actions.

use super::SqliteStore;
use super::rows::{action_from_row, action_select, device_from_row, groups_json};
use crate::model::Action;
use crate::store::{DeviceQuery, ListedDevice, PageStart, SearchText, StoreError};
use sqlx::Row;
use std::collections::HashMap;

/// The device columns `device_from_row` reads, and the id of the device's newest action.
const DEVICE_PAGE_SELECT: &str = "SELECT d.id, d.display_name, d.ownership, d.enrolled_at, \
     d.last_seen, d.stores_json, d.device_policy_json, d.work_profile_policy_json, \
     d.policy_version, \
     d.device_group, d.api_level, d.maker_profile, \
     (SELECT group_concat(e.scope, ',') FROM escrow_tokens e WHERE e.device_id = d.id) \
         AS escrow_scopes, \
     d.latest_action_id \
     FROM devices d \
     WHERE 1 = 1";

/// `text` as a LIKE pattern that matches it anywhere, its wildcards taken literally.
pub(super) fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// The page's query: fixed fragments with every value bound, and whether it walks backwards.
pub(super) struct PageSql {
    pub(super) sql: String,
    pub(super) binds: Vec<Bind>,
    /// A page before a cursor is read in descending order, then reversed.
    pub(super) descending: bool,
}

/// A bound value of the assembled query, in order.
pub(super) enum Bind {
    Text(String),
    Int(i64),
}

impl PageSql {
    pub(super) fn new(query: &DeviceQuery) -> Result<PageSql, StoreError> {
        let mut sql = String::from(DEVICE_PAGE_SELECT);
        let mut binds = Vec::new();
        match query.groups.as_ref() {
            None => {}
            // One group as an equality, so the planner walks (device_group, display_name, id).
            Some(groups) if groups.len() == 1 => {
                sql.push_str(" AND d.device_group = ?");
                binds.extend(groups.iter().map(|g| Bind::Text(g.clone())));
            }
            Some(groups) => {
                sql.push_str(" AND d.device_group IN (SELECT value FROM json_each(?))");
                binds.push(Bind::Text(groups_json(groups)?));
            }
        }
        if let Some(ownership) = query.ownership {
            sql.push_str(" AND d.ownership = ?");
            binds.push(Bind::Text(ownership.as_str().to_string()));
        }
        match &query.search {
            None => {}
            Some(SearchText::NameContains(text)) => {
                sql.push_str(" AND d.display_name LIKE ? ESCAPE '\\'");
                binds.push(Bind::Text(contains_pattern(text)));
            }
            Some(SearchText::Id(id)) => {
                sql.push_str(" AND d.id = ?");
                binds.push(Bind::Text(id.clone()));
            }
        }
        if let Some(state) = query.latest_action_state {
            sql.push_str(" AND d.latest_action_state = ?");
            binds.push(Bind::Text(state.as_str().to_string()));
        }
        let descending = match &query.start {
            PageStart::First => false,
            PageStart::After(cursor) => {
                sql.push_str(" AND (d.display_name, d.id) > (?, ?)");
                binds.push(Bind::Text(cursor.display_name.clone()));
                binds.push(Bind::Text(cursor.id.clone()));
                false
            }
            PageStart::Before(cursor) => {
                sql.push_str(" AND (d.display_name, d.id) < (?, ?)");
                binds.push(Bind::Text(cursor.display_name.clone()));
                binds.push(Bind::Text(cursor.id.clone()));
                true
            }
        };
        sql.push_str(if descending {
            " ORDER BY d.display_name DESC, d.id DESC LIMIT ?"
        } else {
            " ORDER BY d.display_name, d.id LIMIT ?"
        });
        binds.push(Bind::Int(i64::from(query.limit)));
        Ok(PageSql {
            sql,
            binds,
            descending,
        })
    }

    /// The statement with its values bound, `prefix` (such as `EXPLAIN QUERY PLAN`) before it.
    pub(super) fn statement(
        self,
        prefix: &str,
    ) -> sqlx::query::Query<'static, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
        let mut statement = sqlx::query(sqlx::AssertSqlSafe(format!("{prefix}{}", self.sql)));
        for bind in self.binds {
            statement = match bind {
                Bind::Text(text) => statement.bind(text),
                Bind::Int(number) => statement.bind(number),
            };
        }
        statement
    }
}

impl SqliteStore {
    pub(super) async fn search_device_page(
        &self,
        query: &DeviceQuery,
    ) -> Result<Vec<ListedDevice>, StoreError> {
        let page = PageSql::new(query)?;
        let descending = page.descending;
        // One read transaction: the actions read second belong to the same snapshot.
        let mut tx = self.pool.begin().await?;
        let rows = page.statement("").fetch_all(&mut *tx).await?;
        let mut listed = Vec::with_capacity(rows.len());
        let mut latest_ids = Vec::new();
        for row in &rows {
            let latest: Option<String> = row.try_get("latest_action_id")?;
            latest_ids.extend(latest.clone());
            listed.push((device_from_row(row)?, latest));
        }
        let mut latest_actions: HashMap<String, Action> = HashMap::new();
        if !latest_ids.is_empty() {
            let ids = serde_json::to_string(&latest_ids)
                .map_err(|e| StoreError::Corrupt(format!("action ids: {e}")))?;
            let rows = sqlx::query(concat!(
                action_select!(),
                " WHERE a.id IN (SELECT value FROM json_each(?))"
            ))
            .bind(ids)
            .fetch_all(&mut *tx)
            .await?;
            for row in &rows {
                let action = action_from_row(row)?;
                latest_actions.insert(action.id.clone(), action);
            }
        }
        tx.commit().await?;
        let mut page: Vec<ListedDevice> = listed
            .into_iter()
            .map(|(device, latest)| ListedDevice {
                device,
                latest_action: latest.and_then(|id| latest_actions.remove(&id)),
            })
            .collect();
        if descending {
            page.reverse();
        }
        Ok(page)
    }
}
