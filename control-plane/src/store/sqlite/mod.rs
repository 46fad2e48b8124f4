//! The SQLite implementation of [`Store`](super::Store): one embedded file, WAL journal,
//! `synchronous = FULL`, so a method that returned has its transaction on disk.
//!
//! Every write goes through the group-commit writer (`writer.rs`): one task, one connection, one
//! `BEGIN IMMEDIATE` transaction and one fsync per turn for every write waiting, each caller
//! answered after the commit. Reads use a small pool beside it (WAL lets them run while the
//! writer writes) and see only committed data. Checks that must hold under concurrency
//! (enrollment-token uses, action state) are part of the UPDATE's WHERE clause rather than a read
//! followed by a write, and the writes are written to need as few statements as they can, since
//! every statement is a hop to sqlx's connection thread.
//!
//! Passcode purging must remove the bytes, not just the row: `secure_delete` makes SQLite
//! overwrite deleted content, and a `wal_checkpoint(TRUNCATE)` after the delete copies the
//! overwritten pages into the main file and empties the WAL, which still held the old page images.
//!
//! Only runtime queries (`sqlx::query` with `bind`) are used, so building needs no database.
//!
//! Layout: this file opens the database; `writer.rs` is the group-commit writer and `bulk.rs`
//! its statements for the per-message path's writes, a kind at a time; `queries.rs`
//! implements the store, one write or read per method (`enrollment.rs` its enrollment,
//! `device_search.rs` the paged device list, `lists.rs` the keyset pages of every admin list, `admin_tokens.rs` admin tokens and their lifecycle); `rows.rs` converts between rows and domain values
//! (column encodings, JSON shapes) and holds the reads several writes share; `tests/` runs it all
//! against real database files.

mod admin_tokens;
mod bulk;
mod device_search;
mod enrollment;
mod lists;
mod queries;
mod rows;
#[cfg(test)]
mod tests;
mod writer;

use super::{Change, StoreError};
use rows::permissions_json;
use sqlx::ConnectOptions;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::path::{Path, PathBuf};
use std::time::Duration;
use writer::{Writer, Written};

/// Read connections in the pool: WAL lets readers run beside the one writer; more than a few buys
/// nothing on an embedded file.
const POOL_SIZE: u32 = 4;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The control plane's store in one SQLite file.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    /// For reads.
    pool: SqlitePool,
    /// For every write (see `writer.rs`).
    writer: Writer,
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
        let io = |e| StoreError::Database(sqlx::Error::Io(e));
        // Created 0600 before SQLite opens it: SQLite gives its WAL and shared-memory files the
        // database file's permissions, so none of the three is ever readable by others.
        if !path.exists() {
            let mut create = std::fs::OpenOptions::new();
            create.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut create, 0o600);
            match create.open(path) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io(e)),
            }
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
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        // A database an older version created 0644 is made private too.
        for file in database_files(path) {
            if file.exists() {
                crate::crypto::set_mode(&file, 0o600).map_err(io)?;
            }
        }
        let writer = Writer::start(options.connect().await?);
        let store = SqliteStore {
            pool,
            writer,
            path: path.to_path_buf(),
        };
        store.install_built_in_roles().await?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Lets the writes already queued commit, then closes every connection, waiting for those in
    /// use; later calls fail.
    pub async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }

    /// Inserts the built-in roles, or brings an existing built-in role's permissions up to date
    /// with this version of the code. A custom role is never overwritten.
    async fn install_built_in_roles(&self) -> Result<(), StoreError> {
        let roles = crate::rbac::built_in_roles()
            .into_iter()
            .map(|role| Ok((role.name, permissions_json(&role.permissions)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.writer
            .write(true, move |connection| {
                Box::pin(async move {
                    for (name, permissions) in &roles {
                        sqlx::query(
                            "INSERT INTO roles (name, permissions_json, built_in) VALUES (?, ?, 1)
                             ON CONFLICT (name) DO UPDATE
                             SET permissions_json = excluded.permissions_json
                             WHERE roles.built_in = 1",
                        )
                        .bind(name)
                        .bind(permissions)
                        .execute(&mut *connection)
                        .await?;
                    }
                    Ok(Written::new((), vec![Change::AccessChanged]))
                })
            })
            .await
    }
}

/// The database file and the WAL and shared-memory files SQLite keeps beside it.
fn database_files(path: &Path) -> [PathBuf; 3] {
    let with_suffix = |suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    [path.to_path_buf(), with_suffix("-wal"), with_suffix("-shm")]
}
