//! Background work: purging passcodes past their reveal window and audit rows past their
//! retention, and expiring commands past their time-to-live, on the intervals of
//! [`super::Config`], until the server stops.

use super::{ControlPlane, ServiceError};
use std::sync::Arc;
use tokio::sync::watch;

impl ControlPlane {
    /// Ends every pending or active action whose time-to-live has passed.
    async fn expire_overdue(&self) -> Result<usize, ServiceError> {
        let overdue = self.store.overdue_actions(self.now()).await?;
        let mut expired = 0;
        for action in &overdue {
            if self.expire(action).await?.is_some() {
                expired += 1;
            }
        }
        Ok(expired)
    }

    /// Deletes passcodes past their seven days from the database.
    async fn purge_expired_passcodes(&self) -> Result<u64, ServiceError> {
        let purged = self.store.purge_passcodes(self.now()).await?;
        if purged > 0 {
            tracing::info!(purged, "passcodes past their reveal window purged");
        }
        self.purge_runs.send_modify(|runs| *runs += 1);
        Ok(purged)
    }

    /// Completed purge runs so far; changes after each run.
    pub fn purge_runs(&self) -> watch::Receiver<u64> {
        self.purge_runs.subscribe()
    }

    /// Runs the purge and expiry loops until `shutdown` resolves.
    pub(crate) async fn run_background(
        self: Arc<Self>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let mut purge = tokio::time::interval(self.config.purge_interval);
        let mut expiry = tokio::time::interval(self.config.expiry_interval);
        purge.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = purge.tick() => {
                    if let Err(error) = self.prune_audit().await {
                        tracing::error!(%error, "audit pruning failed");
                    }
                    if let Err(error) = self.purge_expired_passcodes().await {
                        tracing::error!(%error, "passcode purge failed");
                    }
                }
                _ = expiry.tick() => {
                    if let Err(error) = self.expire_overdue().await {
                        tracing::error!(%error, "command expiry failed");
                    }
                }
            }
        }
    }
}
