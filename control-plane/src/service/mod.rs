//! The control plane's use cases: enrollment, device sessions' bookkeeping, admin operations,
//! with their rules (RBAC scoped to device groups, the support matrix, "no policy, no reset or
//! lock", the reveal window) and their audit. No protobuf here: `grpc/` converts requests into
//! these calls and results back.
//!
//! One [`ControlPlane`], its methods split by what a reader looks for, each file one
//! `impl ControlPlane` block:
//! - `mod.rs`: the struct and its constructor, [`Config`], and the signals that wake a connected
//!   device's session task.
//! - `hot.rs`: the hot state in memory (what the per-message path reads), kept in step by the
//!   store's commits, and who follows what (sessions, watches of a device or an action).
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
//! - `roles.rs`: roles, principals and their role assignments.
//! - `admin_tokens.rs`: admin tokens' lifecycle (time-to-live, rotation, revocation) and the
//!   bootstrap admin's token.
//! - `background.rs`: the passcode purge, audit pruning and command expiry loops.
//! - `retention.rs`: audit pruning and the disk reserve.
//! - `paging.rs`: every list's page sizes and its opaque page tokens, bound to the list and the
//!   request's filters.
//! - `validation.rs`: the checks of incoming fields, and their limits.
//! - `error.rs`: [`ServiceError`] and the one table of its status codes.

mod access;
mod actions;
mod admin_tokens;
mod background;
mod device_meta;
mod devices;
mod error;
mod hot;
mod paging;
mod retention;
mod roles;
mod sessions;
mod validation;

pub(crate) use access::{AuditNote, Operation};
pub(crate) use actions::{LockRequest, ResetRequest, scope_words};
pub(crate) use admin_tokens::Rotation;
pub use admin_tokens::{
    AdminTokenPolicy, DEFAULT_ADMIN_TOKEN_TTL, MAX_ADMIN_TOKEN_TTL, MAX_ROTATION_GRACE,
};
pub(crate) use devices::{DeviceSearch, EnrollmentTokenRequest};
pub use error::ServiceError;
pub(crate) use error::StatusCode;
pub(crate) use paging::PageRequest;
pub use sessions::DeviceReport;
pub(crate) use sessions::{CommandPayload, DeviceReply};

use crate::clock::{Clock, Millis};
use crate::crypto::KeyRing;
use crate::model::Action;
use crate::store::{AuthenticatedPrincipal, Store};
use hot::Hot;
pub(crate) use hot::Watch;
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
    /// The listener's abuse limits (the gateway reads its Hello timeout here).
    pub limits: crate::limits::Limits,
    /// Where the server's TLS identity comes from (its own CA in the data directory by default).
    pub tls: TlsSource,
    /// How long admin tokens live.
    pub admin_tokens: AdminTokenPolicy,
    /// Audit retention and the free space kept on the data folder's disk.
    pub disk: crate::disk::DiskLimits,
}

/// Where the control plane's TLS identity comes from.
#[derive(Clone, Debug)]
pub enum TlsSource {
    /// Its own CA and server certificate in `<data_dir>/tls`, made on first start; the server
    /// certificate names the loopback names and these.
    Generated { extra_names: Vec<String> },
    /// The user's certificate chain (ending with the CA devices pin) and its key.
    Files { cert: PathBuf, key: PathBuf },
    /// No TLS, for tests and experiments on one machine: serving refuses a non-loopback listener.
    Plaintext,
}

impl Config {
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            purge_interval: std::time::Duration::from_secs(60),
            expiry_interval: std::time::Duration::from_secs(1),
            limits: crate::limits::Limits::default(),
            tls: TlsSource::Generated {
                extra_names: Vec::new(),
            },
            admin_tokens: AdminTokenPolicy::default(),
            disk: crate::disk::DiskLimits::default(),
        }
    }
}

/// Where the bootstrap admin's token is written (on first start, and when no valid token could
/// manage roles any more).
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
    /// The device's key was revoked (re-enrollment); the session must end.
    pub(crate) revoked: Notify,
}

/// One open watch of a principal; dropping it (the stream ended) frees the slot.
pub(crate) struct WatchSlot {
    control_plane: Arc<ControlPlane>,
    principal: String,
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        let mut watches = self
            .control_plane
            .watches
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(open) = watches.get_mut(&self.principal) {
            *open -= 1;
            if *open == 0 {
                watches.remove(&self.principal);
            }
        }
    }
}

/// Authenticated principals by token hash, valid for one generation of the access rules.
#[derive(Debug, Default)]
struct PrincipalCache {
    /// The `Hot::access_generation` the entries were read at.
    generation: u64,
    by_token: HashMap<[u8; 32], AuthenticatedPrincipal>,
}

/// Principals cached at most; past it the cache starts again (it only ever saves a read).
const MAX_CACHED_PRINCIPALS: usize = 10_000;

/// The control plane: the store, the keys, the clock, and the hot state of the devices.
pub struct ControlPlane {
    store: Arc<dyn Store>,
    keys: KeyRing,
    clock: Arc<dyn Clock>,
    config: Config,
    /// What the per-message path reads, in memory; also the store's commit observer.
    hot: Arc<Hot>,
    /// Saves every admin call two reads of the principal tables.
    principals: Mutex<PrincipalCache>,
    /// Open watch streams by principal, bounded by `Limits::max_watches_per_principal`.
    watches: Mutex<HashMap<String, usize>>,
    /// Counts completed purge runs, so tests can wait for one instead of sleeping.
    purge_runs: watch::Sender<u64>,
    /// Set when the server stops, so device sessions end instead of holding shutdown open.
    stopping: watch::Sender<bool>,
    /// The fingerprint of the CA the server's certificate chains to, as text, appended to every
    /// enrollment token (`<secret>.<fingerprint>`) so a device pins it before it sends anything;
    /// `None` when serving plaintext. The gRPC edge strips it from the tokens devices send.
    enrollment_pin: Option<String>,
    /// The same fingerprint's 32 bytes, which every session proof signs (PROTOCOL.md
    /// CP-SESSION-1), so a proof made towards another control plane is worthless here.
    session_pin: Option<[u8; 32]>,
    /// Sessions refused for a missing or wrong proof of possession, so far; the metrics follow it.
    refused_proofs: watch::Sender<u64>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// Loads the hot state from `store` and follows its commits from then on. Nothing may write
    /// to the store between the load and the end of this call.
    pub(crate) async fn start(
        store: Arc<dyn Store>,
        keys: KeyRing,
        clock: Arc<dyn Clock>,
        config: Config,
    ) -> Result<ControlPlane, ServiceError> {
        let states = store.session_state().await?;
        let devices = states.len();
        let hot = Arc::new(Hot::new(states));
        store.observe(hot.clone());
        tracing::info!(devices, "hot state loaded");
        Ok(ControlPlane {
            store,
            keys,
            clock,
            config,
            hot,
            principals: Mutex::new(PrincipalCache::default()),
            watches: Mutex::new(HashMap::new()),
            purge_runs: watch::channel(0).0,
            stopping: watch::channel(false).0,
            enrollment_pin: None,
            session_pin: None,
            refused_proofs: watch::channel(0).0,
        })
    }

    /// Sets the CA fingerprint enrollment tokens carry (see [`crate::server::open`]).
    /// `pin` is the CA fingerprint as enrollment tokens carry it (text) and as session proofs
    /// sign it (its 32 bytes).
    pub(crate) fn with_enrollment_pin(mut self, pin: Option<(String, [u8; 32])>) -> ControlPlane {
        (self.enrollment_pin, self.session_pin) = pin.unzip();
        self
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub(crate) fn now(&self) -> Millis {
        self.clock.now()
    }

    pub(crate) fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// The CA fingerprint a device's session proof signs; `None` when serving plaintext.
    pub(crate) fn session_pin(&self) -> Option<&[u8; 32]> {
        self.session_pin.as_ref()
    }

    /// Counts a session refused for a missing or wrong proof of possession.
    pub(crate) fn proof_refused(&self) {
        self.refused_proofs.send_modify(|n| *n += 1);
    }

    /// The number of sessions refused for a missing or wrong proof so far, and its changes.
    pub(crate) fn refused_proofs(&self) -> watch::Receiver<u64> {
        self.refused_proofs.subscribe()
    }

    /// Every action change, for the metrics.
    pub(crate) fn watch_actions(&self) -> broadcast::Receiver<Action> {
        self.hot.watch_actions()
    }

    /// The id of every device that changed, for the metrics.
    pub(crate) fn watch_devices(&self) -> broadcast::Receiver<String> {
        self.hot.watch_devices()
    }

    /// Follows the actions `action_ids`: each committed change of one is handed to the watch.
    pub(crate) fn follow_actions(&self, action_ids: Vec<String>) -> Watch<Action> {
        self.hot.action_watchers.watch(action_ids)
    }

    /// Takes one of `principal`'s watch slots for as long as the returned slot lives; refused
    /// RESOURCE_EXHAUSTED when it already holds `Limits::max_watches_per_principal` open.
    pub(crate) fn open_watch(self: &Arc<Self>, principal: &str) -> Result<WatchSlot, ServiceError> {
        let limit = self.config.limits.max_watches_per_principal;
        let mut watches = self.watches.lock().unwrap_or_else(|p| p.into_inner());
        let open = watches.entry(principal.to_string()).or_insert(0);
        if *open >= limit {
            return Err(ServiceError::ResourceExhausted(format!(
                "this principal already holds {limit} watches open (--max-watches-per-principal); \
                 close one first"
            )));
        }
        *open += 1;
        Ok(WatchSlot {
            control_plane: self.clone(),
            principal: principal.to_string(),
        })
    }

    /// Follows the devices `device_ids`: the id of each one that changes (status, tokens,
    /// policy, online) is handed to the watch.
    pub(crate) fn follow_devices(&self, device_ids: Vec<String>) -> Watch<String> {
        self.hot.device_watchers.watch(device_ids)
    }
}
