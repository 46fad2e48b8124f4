//! The SQLite implementation of [`Store`](super::Store): one embedded file, WAL journal,
//! `synchronous = FULL`, so a method that returned has its transaction on disk.
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
//!
//! Layout: this file opens the database and runs transactions; `queries.rs` implements the store,
//! one transaction per method (`device_search.rs` the paged device list); `rows.rs` converts between rows and domain values (column
//! encodings, JSON shapes) and holds the reads several transactions share; `tests/` runs it all
//! against real database files.

mod device_search;
mod queries;
mod rows;
#[cfg(test)]
mod tests;

use super::StoreError;
use rows::permissions_json;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Connections in the pool: WAL lets readers run beside the one writer; more than a few buys
/// nothing on an embedded file.
const POOL_SIZE: u32 = 4;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

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
