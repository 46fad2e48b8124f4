//! What the control plane may keep on disk: how long and how many audit rows it keeps, and the
//! free space it leaves on the data folder's file system.
//!
//! Without these an authenticated caller could grow the database until the disk is full, and a
//! full disk fails every write, device reports of work already acknowledged included (SQLite
//! answers `SQLITE_FULL` to the whole group-commit turn). So the audit table is pruned oldest
//! first past an age or a row count, and work that adds rows is refused while free space is under
//! the reserve, which keeps the room the writes that finish acknowledged work still need.

use std::path::Path;
use std::time::Duration;

/// The disk limits, each a named `droidfleet serve` setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskLimits {
    /// `--audit-retention`: audit rows older than this are deleted by the background task.
    pub audit_retention: Duration,
    /// `--audit-max-rows`: past this many audit rows the oldest are deleted, whatever their
    /// age. About 200 bytes each, so the default bounds the table near 1 GB.
    pub audit_max_rows: u64,
    /// `--disk-reserve-mib`, in bytes: calls that add rows (new actions, enrollments, tokens,
    /// principals, roles) are refused RESOURCE_EXHAUSTED while the data folder's file system has
    /// less free space than this. Reads, device reports and deletions go on.
    pub disk_reserve_bytes: u64,
}

/// Audit rows a pruning run deletes per write turn: small enough that other writers of the same
/// group commit wait milliseconds, not seconds.
pub const AUDIT_PRUNE_BATCH: u64 = 5_000;

impl Default for DiskLimits {
    fn default() -> DiskLimits {
        DiskLimits {
            // A year: what audit policies most often ask an MDM to keep.
            audit_retention: Duration::from_secs(365 * 24 * 3_600),
            audit_max_rows: 5_000_000,
            disk_reserve_bytes: 256 * 1024 * 1024,
        }
    }
}

/// The free space (for an unprivileged writer) of the file system holding `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let stats = rustix::fs::statvfs(path)?;
    Ok(stats.f_bavail.saturating_mul(stats.f_frsize))
}

/// Whether `free` bytes leave the reserve untouched; the error says both figures in MiB.
pub fn check_reserve(free: u64, reserve: u64) -> Result<(), BelowReserve> {
    if free >= reserve {
        Ok(())
    } else {
        Err(BelowReserve { free, reserve })
    }
}

/// Free space under the disk reserve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the control plane's disk has {} MiB free, under its reserve of {} MiB: calls that add data \
     are refused until space is freed (or --disk-reserve-mib lowered)",
    .free / (1024 * 1024),
    .reserve / (1024 * 1024)
)]
pub struct BelowReserve {
    pub free: u64,
    pub reserve: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_refuses_only_under_it() {
        assert_eq!(check_reserve(10, 10), Ok(()));
        assert_eq!(check_reserve(11, 10), Ok(()));
        let below = check_reserve(9 * 1024 * 1024, 10 * 1024 * 1024).unwrap_err();
        assert!(below.to_string().contains("9 MiB free"), "{below}");
        assert!(below.to_string().contains("reserve of 10 MiB"), "{below}");
    }

    #[test]
    fn free_space_of_a_real_folder_is_read() {
        let folder = tempfile::tempdir().unwrap();
        let free = free_bytes(folder.path()).unwrap();
        assert!(free > 0);
        assert!(free_bytes(&folder.path().join("missing")).is_err());
    }
}
