//! What ends an admin watch stream besides its own last change: its client going away, its
//! caller's access ending (the token expired, was revoked or rotated out, or the permission the
//! watch needs is gone) or its lifetime (`--max-watch-lifetime`). The three watches
//! (WatchDevice, WatchDevices, WatchAction) share it, so each ends the same way.

use crate::service::{ControlPlane, Operation, ServiceError, WatchSlot};
use crate::store::AuthenticatedPrincipal;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::mpsc::Sender;
use tonic::Status;

pub(super) struct Watch {
    control_plane: Arc<ControlPlane>,
    /// The caller's share of `--max-watches-per-principal`, held while the stream lives; freed
    /// before the lifetime's error is sent, so a client told its watch ended may open another at
    /// once.
    slot: Option<WatchSlot>,
    /// When the watch reaches its lifetime.
    ends: tokio::time::Instant,
    /// Kept current by the access checks, so the stream's own reads (a device's group) use the
    /// caller's grants of now, not of when the watch opened.
    caller: AuthenticatedPrincipal,
    /// Changes of the access rules, followed from before the stream's first read so none is
    /// missed.
    access: tokio::sync::watch::Receiver<u64>,
    /// The watch's operation, whose permission the caller must keep.
    operation: Operation,
}

/// Why a watch stops before its next change.
enum End {
    ClientGone,
    AccessEnded(ServiceError),
    Lifetime,
}

impl Watch {
    /// Takes one of `caller`'s watch slots (refused past `--max-watches-per-principal`) and
    /// starts following the access rules. Open it before the stream's first read.
    pub(super) fn open(
        control_plane: &Arc<ControlPlane>,
        caller: AuthenticatedPrincipal,
        operation: Operation,
    ) -> Result<Watch, ServiceError> {
        let slot = control_plane.open_watch(&caller.name)?;
        Ok(Watch {
            control_plane: control_plane.clone(),
            slot: Some(slot),
            ends: tokio::time::Instant::now() + control_plane.config().limits.max_watch_lifetime,
            caller,
            access: control_plane.follow_access(),
            operation,
        })
    }

    /// The caller, with its current grants.
    pub(super) fn caller(&self) -> &AuthenticatedPrincipal {
        &self.caller
    }

    /// Waits for `next` unless the watch must end first. Then sends the stream's last error
    /// (none when the client went away) and answers `None`: the stream ends.
    pub(super) async fn until<T, Item>(
        &mut self,
        tx: &Sender<Result<Item, Status>>,
        next: impl Future<Output = T>,
    ) -> Option<T> {
        let control_plane = &self.control_plane;
        let end = tokio::select! {
            value = next => return Some(value),
            _ = tx.closed() => End::ClientGone,
            error = control_plane.access_ended(&mut self.caller, self.operation, &mut self.access) => {
                End::AccessEnded(error)
            }
            () = tokio::time::sleep_until(self.ends) => End::Lifetime,
        };
        let last = match end {
            End::ClientGone => return None,
            End::AccessEnded(error) => error.into(),
            End::Lifetime => {
                self.slot = None;
                Status::deadline_exceeded(format!(
                    "the watch reached its lifetime of {} s (--max-watch-lifetime); open it again",
                    self.control_plane
                        .config()
                        .limits
                        .max_watch_lifetime
                        .as_secs_f64()
                ))
            }
        };
        let _ = tx.send(Err(last)).await;
        None
    }
}
