//! What the control plane keeps on disk ([`crate::disk::DiskLimits`]): pruning the audit log
//! past its age and row limits, and refusing work that adds rows while free space is under the
//! reserve.

use super::{ControlPlane, ServiceError};
use crate::disk;

impl ControlPlane {
    /// Deletes audit rows past the retention period or the row limit; returns how many.
    pub(super) async fn prune_audit(&self) -> Result<u64, ServiceError> {
        let limits = &self.config.disk;
        let retention = u64::try_from(limits.audit_retention.as_millis()).unwrap_or(u64::MAX);
        let pruned = self
            .store
            .prune_audit(
                self.now().saturating_sub(retention),
                limits.audit_max_rows,
                disk::AUDIT_PRUNE_BATCH,
            )
            .await?;
        if pruned > 0 {
            tracing::info!(pruned, "audit rows past their retention pruned");
        }
        Ok(pruned)
    }

    /// Refuses RESOURCE_EXHAUSTED while the data folder's free space is under the reserve. A
    /// free space that cannot be read lets the call through: the reserve guards against a full
    /// disk, it is not a reason to stop when the check itself fails.
    pub(crate) fn check_disk_reserve(&self) -> Result<(), ServiceError> {
        let reserve = self.config.disk.disk_reserve_bytes;
        if reserve == 0 {
            return Ok(());
        }
        match disk::free_bytes(&self.config.data_dir) {
            Ok(free) => disk::check_reserve(free, reserve).map_err(|below| {
                tracing::warn!(
                    free_bytes = below.free,
                    reserve_bytes = below.reserve,
                    "a call that adds data refused: free disk space under the reserve"
                );
                ServiceError::ResourceExhausted(below.to_string())
            }),
            Err(error) => {
                tracing::warn!(%error, "cannot read the data folder's free disk space");
                Ok(())
            }
        }
    }
}
