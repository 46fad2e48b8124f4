//! Admin tokens, inside their writes and reads: storing a principal's token, finding the
//! principal a token belongs to (with the token's lifecycle), rotating and revoking a principal's
//! tokens, and giving the bootstrap principal a token when nobody could manage roles any more.

use super::rows::{db_time, fetch_principal, is_unique_violation, role_from_row, time_from_db};
use super::writer::Written;
use crate::clock::Millis;
use crate::model::{AdminToken, Permission, Principal};
use crate::rbac::{Grant, Grants};
use crate::store::{AuthenticatedPrincipal, Change, NewAdminToken, StoreError};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

/// A token's lifecycle from a row with its `issued_at, expires_at, revoked_at, rotated_at`.
pub(super) fn token_from_row(row: &SqliteRow) -> Result<AdminToken, StoreError> {
    let optional = |column: &str| -> Result<Option<Millis>, StoreError> {
        row.try_get::<Option<i64>, _>(column)?
            .map(|at| time_from_db(at, column))
            .transpose()
    };
    Ok(AdminToken {
        issued_at: time_from_db(row.try_get("issued_at")?, "issued_at")?,
        expires_at: time_from_db(row.try_get("expires_at")?, "expires_at")?,
        revoked_at: optional("revoked_at")?,
        rotated_at: optional("rotated_at")?,
    })
}

/// Stores `token` for `principal` (which exists). A colliding hash is refused without naming it.
pub(super) async fn insert_token(
    connection: &mut SqliteConnection,
    principal: &str,
    token: &NewAdminToken,
) -> Result<(), StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO admin_tokens (token_hash, principal, issued_at, expires_at)
         VALUES (?, ?, ?, ?)",
    )
    .bind(&token.hash[..])
    .bind(principal)
    .bind(db_time(token.issued_at))
    .bind(db_time(token.expires_at))
    .execute(&mut *connection)
    .await;
    match inserted {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(StoreError::AlreadyExists {
            kind: "principal token",
            name: String::new(),
        }),
        Err(e) => Err(e.into()),
    }
}

/// The principal `token_hash` belongs to, with its grants and the token's lifecycle, whether or
/// not the token is still valid; one read transaction.
pub(super) async fn principal_by_token(
    connection: &mut SqliteConnection,
    token_hash: [u8; 32],
) -> Result<Option<AuthenticatedPrincipal>, StoreError> {
    let row = sqlx::query(
        "SELECT principal, issued_at, expires_at, revoked_at, rotated_at
         FROM admin_tokens WHERE token_hash = ?",
    )
    .bind(&token_hash[..])
    .fetch_optional(&mut *connection)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let name: String = row.try_get("principal")?;
    let token = token_from_row(&row)?;
    let rows = sqlx::query(
        "SELECT r.name, r.permissions_json, r.built_in, ra.device_group
         FROM role_assignments ra JOIN roles r ON r.name = ra.role
         WHERE ra.principal = ? ORDER BY ra.rowid",
    )
    .bind(&name)
    .fetch_all(&mut *connection)
    .await?;
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
        token,
        token_hash,
    }))
}

/// Gives `principal` the token `new`; each of its tokens still valid at `new.issued_at` is
/// marked rotated and ends at `old_tokens_end` at the latest (its grace period).
pub(super) async fn rotate(
    connection: &mut SqliteConnection,
    principal: &str,
    new: NewAdminToken,
    old_tokens_end: Millis,
) -> Result<Written<Principal>, StoreError> {
    if fetch_principal(connection, principal).await?.is_none() {
        return Err(super::rows::principal_not_found(principal));
    }
    let now = db_time(new.issued_at);
    sqlx::query(
        "UPDATE admin_tokens SET expires_at = MIN(expires_at, ?), rotated_at = ?
         WHERE principal = ? AND revoked_at IS NULL AND expires_at > ?",
    )
    .bind(db_time(old_tokens_end))
    .bind(now)
    .bind(principal)
    .bind(now)
    .execute(&mut *connection)
    .await?;
    insert_token(connection, principal, &new).await?;
    let after = fetch_principal(connection, principal)
        .await?
        .ok_or_else(|| super::rows::principal_not_found(principal))?;
    Ok(Written::new(after, vec![Change::AccessChanged]))
}

/// Revokes every token of `principal` not yet ended at `now`; returns how many.
pub(super) async fn revoke(
    connection: &mut SqliteConnection,
    principal: &str,
    now: Millis,
) -> Result<Written<u64>, StoreError> {
    if fetch_principal(connection, principal).await?.is_none() {
        return Err(super::rows::principal_not_found(principal));
    }
    let revoked = sqlx::query(
        "UPDATE admin_tokens SET revoked_at = ?
         WHERE principal = ? AND revoked_at IS NULL AND expires_at > ?",
    )
    .bind(db_time(now))
    .bind(principal)
    .bind(db_time(now))
    .execute(&mut *connection)
    .await?
    .rows_affected();
    Ok(Written::new(revoked, vec![Change::AccessChanged]))
}

/// When no principal holding Roles.Manage for every group has a token valid at `token.issued_at`
/// (first start, or every such token expired or was revoked), makes sure `principal` exists and
/// holds `role` for every group, and gives it `token`. Returns whether it did.
pub(super) async fn recover(
    connection: &mut SqliteConnection,
    principal: &str,
    role: &str,
    token: NewAdminToken,
) -> Result<Written<bool>, StoreError> {
    let managed: i64 = sqlx::query_scalar(
        "SELECT EXISTS (
             SELECT 1 FROM role_assignments ra
             JOIN roles r ON r.name = ra.role, json_each(r.permissions_json) p
             JOIN admin_tokens t ON t.principal = ra.principal
             WHERE ra.device_group IS NULL AND p.value = ?
               AND t.revoked_at IS NULL AND t.expires_at > ?
         )",
    )
    .bind(Permission::RolesManage.as_str())
    .bind(db_time(token.issued_at))
    .fetch_one(&mut *connection)
    .await?;
    if managed != 0 {
        return Ok(Written::new(false, Vec::new()));
    }
    sqlx::query("INSERT INTO principals (name, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING")
        .bind(principal)
        .bind(db_time(token.issued_at))
        .execute(&mut *connection)
        .await?;
    sqlx::query(
        "INSERT INTO role_assignments (principal, role, device_group) VALUES (?, ?, NULL)
         ON CONFLICT DO NOTHING",
    )
    .bind(principal)
    .bind(role)
    .execute(&mut *connection)
    .await?;
    insert_token(connection, principal, &token).await?;
    Ok(Written::new(true, vec![Change::AccessChanged]))
}
