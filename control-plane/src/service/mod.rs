//! The control plane's use cases: enrollment, device sessions' bookkeeping, admin operations,
//! with their rules (RBAC scoped to device groups, the support matrix, "no policy, no reset or
//! lock", the reveal window) and their audit. No protobuf here: `grpc/` converts requests into
//! these calls and results back.
//!
//! One [`ControlPlane`], its methods split by what a reader looks for, each file one
//! `impl ControlPlane` block:
//! - `mod.rs`: the struct and its constructor, [`Config`], the change feeds (WatchAction,
//!   WatchDevice) and the signals that wake a connected device's session task.
//! - `access.rs`: who calls and what they may do: authentication, `admin_call` (the permission
//!   gate and the audit of every admin operation), `Operation` and the permissions each needs,
//!   the per-device and per-action checks, the groups a caller sees, what a caller holds
//!   (GetCaller), the audit log's reader.
//! - `devices.rs`: enrollment and re-enrollment, reading, listing and searching devices (one page
//!   at a time, with its page tokens), passcode policies.
//! - `device_meta.rs`: the Android a device reports (API level, maker profile) and moving a
//!   device to another group.
//! - `actions.rs`: passcode reset and remote lock, the action history, cancel and reveal, and the
//!   state transitions the other files apply.
//! - `sessions.rs`: a connected device: its Hello, what it reports, which commands it is sent.
//! - `roles.rs`: roles, principals and their role assignments, and the bootstrap admin.
//! - `background.rs`: the passcode purge and command expiry loops.
//! - `validation.rs`: the checks of incoming fields, and their limits.
//! - `error.rs`: [`ServiceError`] and the one table of its status codes.

mod access;
mod actions;
mod background;
mod device_meta;
mod devices;
mod error;
mod roles;
mod sessions;
mod validation;

pub(crate) use access::{AuditNote, Operation};
pub(crate) use actions::{LockRequest, ResetRequest, scope_words};
pub(crate) use devices::{DeviceSearch, EnrollmentTokenRequest};
pub use error::ServiceError;
pub(crate) use error::StatusCode;
pub(crate) use sessions::{CommandPayload, DeviceReport};

use crate::clock::{Clock, Millis};
use crate::crypto::KeyRing;
use crate::model::Action;
use crate::store::Store;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, broadcast, watch};

/// Tunables of a control plane.
#[derive(Clone, Debug)]
pub struct Config {
    /// Holds the database file, the key files and the bootstrap admin token.
    pub data_dir: PathBuf,
    /// How often the background task purges passcodes past their seven days.
    pub purge_interval: std::time::Duration,
    /// How often the background task expires commands past their time-to-live.
    pub expiry_interval: std::time::Duration,
}

impl Config {
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            purge_interval: std::time::Duration::from_secs(60),
            expiry_interval: std::time::Duration::from_secs(1),
        }
    }
}

/// Where the bootstrap admin's token was written on first start.
pub const BOOTSTRAP_TOKEN_FILE: &str = "bootstrap-admin.token";
pub const BOOTSTRAP_PRINCIPAL: &str = "admin";

/// Wakes a device's session task when it has something new to send.
#[derive(Debug, Default)]
pub(crate) struct SessionSignals {
    /// A command was queued for the device.
    pub(crate) commands: Notify,
    /// A policy of the device changed.
    pub(crate) policy: Notify,
    /// Another session of the same device replaced this one.
    pub(crate) replaced: Notify,
    /// The device's credential was revoked (re-enrollment); the session must end.
    pub(crate) revoked: Notify,
}

/// The control plane: the store, the keys, the clock, and the devices connected right now.
pub struct ControlPlane {
    store: Arc<dyn Store>,
    keys: KeyRing,
    clock: Arc<dyn Clock>,
    config: Config,
    /// The session task of every connected device, so a new action reaches it at once.
    sessions: Mutex<HashMap<String, Arc<SessionSignals>>>,
    /// Every action change, for WatchAction.
    action_changes: broadcast::Sender<Action>,
    /// The id of every device that changed, for WatchDevice.
    device_changes: broadcast::Sender<String>,
    /// Counts completed purge runs, so tests can wait for one instead of sleeping.
    purge_runs: watch::Sender<u64>,
    /// Set when the server stops, so device sessions end instead of holding shutdown open.
    stopping: watch::Sender<bool>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        keys: KeyRing,
        clock: Arc<dyn Clock>,
        config: Config,
    ) -> ControlPlane {
        ControlPlane {
            store,
            keys,
            clock,
            config,
            sessions: Mutex::new(HashMap::new()),
            action_changes: broadcast::channel(4096).0,
            device_changes: broadcast::channel(4096).0,
            purge_runs: watch::channel(0).0,
            stopping: watch::channel(false).0,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    fn now(&self) -> Millis {
        self.clock.now()
    }

    pub(crate) fn keys(&self) -> &KeyRing {
        &self.keys
    }

    pub(crate) fn watch_actions(&self) -> broadcast::Receiver<Action> {
        self.action_changes.subscribe()
    }

    pub(crate) fn watch_devices(&self) -> broadcast::Receiver<String> {
        self.device_changes.subscribe()
    }

    fn device_changed(&self, device_id: &str) {
        // No receiver is fine: nobody is watching.
        let _ = self.device_changes.send(device_id.to_string());
    }

    fn publish(&self, action: &Action) {
        // No receiver is fine: nobody is watching.
        let _ = self.action_changes.send(action.clone());
    }

    fn sessions_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<SessionSignals>>> {
        self.sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn wake_commands(&self, device_id: &str) {
        if let Some(signals) = self.sessions_lock().get(device_id) {
            signals.commands.notify_one();
        }
    }
}
