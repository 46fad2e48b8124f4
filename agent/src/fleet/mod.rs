//! The agent's runtime: hosts simulated devices, keeps each one's state file, enrolls it, keeps
//! its Session stream to the control plane open (reconnecting with backoff), runs the commands
//! it receives, and carries out the harness's user operations.
//!
//! Every change to a device goes through [`Fleet::mutate`]: the change runs on a blocking thread
//! (Argon2 is slow by design), then the device's state file is rewritten, and only then are the
//! resulting reports sent, so a report never claims something a crash could undo. Changes to one
//! device take turns through all three steps, so its state file and its reports follow the order
//! of its changes (an escrowed token can never be overtaken by the token it replaced).

use crate::clock::Clock;
use crate::convert::*;
use crate::device::{
    CommandResult, Device, DeviceCredential, DeviceError, DeviceEvent, Enrollment, EntryOutcome,
    EscrowToken, KdfParams, Notification, Ownership, Passcode, PasscodePolicy, PersistedDevice,
    Scope, StoreStatus,
};
use crate::faults::{Direction, FaultAction, FaultConfig, FaultDice};
use crate::metrics::{AgentMetrics, CommandOutcome, EntryResult};
use crate::seeded::SplitMix64;
use droidfleet_proto::v1 as pb;
use droidfleet_proto::v1::device_gateway_client::DeviceGatewayClient;
use ring::rand::SystemRandom;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};
use tonic::transport::{Channel, Endpoint};

pub const AGENT_VERSION: &str = concat!("droidfleet-agent ", env!("CARGO_PKG_VERSION"));

/// At most this many devices enroll or open their session at once (see [`Fleet::connecting`]).
const MAX_CONNECTING: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("no device named {0:?} in this agent")]
    UnknownDevice(String),
    #[error("device {name:?}: {source}")]
    Device {
        name: String,
        #[source]
        source: DeviceError,
    },
    #[error("device {name:?}: cannot read or write its state file {path}: {source}")]
    StateFile {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("device {name:?}: its state file {path} is corrupt: {problem}")]
    CorruptState {
        name: String,
        path: PathBuf,
        problem: String,
    },
    #[error("invalid control plane address {0:?}: {1}")]
    Address(String, String),
    #[error("device {0:?} is not enrolled and no enrollment token was given (--enrollment-token)")]
    NoEnrollmentToken(String),
    #[error("invalid device name {0:?}: use 1 to 64 letters, digits, '-' or '_'")]
    BadName(String),
    #[error("the device model's worker thread failed")]
    Worker,
}

/// One device the agent should host.
#[derive(Clone, Debug)]
pub struct DeviceSpec {
    pub name: String,
    pub ownership: Ownership,
}

impl std::str::FromStr for DeviceSpec {
    type Err = String;

    /// `cosu:kiosk-1` or `byod:alice-phone`.
    fn from_str(text: &str) -> Result<DeviceSpec, String> {
        let (ownership, name) = text
            .split_once(':')
            .ok_or_else(|| format!("{text:?}: expected TYPE:NAME, e.g. byod:alice-phone"))?;
        let ownership = Ownership::parse(ownership).ok_or_else(|| {
            format!("{text:?}: unknown enrollment type {ownership:?}; use cosu, cobo, cope, byod or aosp")
        })?;
        check_name(name).map_err(|e| e.to_string())?;
        Ok(DeviceSpec {
            name: name.to_string(),
            ownership,
        })
    }
}

fn check_name(name: &str) -> Result<(), FleetError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(FleetError::BadName(name.to_string()))
    }
}

#[derive(Clone)]
pub struct FleetConfig {
    /// The control plane's gateway, e.g. `http://127.0.0.1:7300`.
    pub control_plane: String,
    /// One JSON state file per device lives here, rewritten (and synced) on every change, so a
    /// restarted agent finds its devices as they were. `None` keeps the devices in memory only:
    /// what a load test of tens of thousands of devices wants, since a file per device and a
    /// sync per change would measure the disk rather than the control plane.
    pub state_dir: Option<PathBuf>,
    /// Needed only for devices not enrolled yet.
    pub enrollment_token: Option<String>,
    pub kdf: KdfParams,
    pub devices: Vec<DeviceSpec>,
    pub clock: Arc<dyn Clock>,
    /// HTTP/2 connections the devices share: device `i` (in name order) uses connection
    /// `i % connections`. Many streams on one connection hit h2's flow-control limits; one
    /// connection per device costs a file descriptor and an ephemeral port each (DESIGN.md §5).
    /// 0 is taken as 1.
    pub connections: usize,
    /// Message-level faults injected on every session (none by default).
    pub faults: FaultConfig,
}

/// How [`Fleet::run_ramped`] spreads the devices' first connections over time.
#[derive(Clone, Copy, Debug, Default)]
pub struct RampUp {
    /// Each device waits a delay drawn from `[0, window_ms)` before its first connection, so a
    /// large fleet does not hit the control plane (and its accept queue) all at once.
    pub window_ms: u64,
    /// Seeds the delays: the same seed gives each device the same delay.
    pub seed: u64,
}

/// What the harness shows of a device.
#[derive(Clone, Debug)]
pub struct Screen {
    pub name: String,
    pub device_id: Option<String>,
    pub ownership: Ownership,
    pub stores: Vec<StoreStatus>,
    pub notifications: Vec<Notification>,
    pub connected: bool,
    pub applied_commands: BTreeMap<String, u32>,
    /// The passcode policy each store applies now, as the control plane last sent it. Not in
    /// `droidfleet.v1.Screen` yet; in-process tests use it to know a policy has arrived.
    pub policies: BTreeMap<Scope, PasscodePolicy>,
}

/// One hosted device and its link to the control plane. A fleet holds one per device, so every
/// field here is paid for a hundred thousand times over: nothing is kept that can be derived
/// (the state file's path), shared (the connection) or made only while a session is open.
struct Slot {
    name: String,
    ownership: Ownership,
    device: Mutex<Device>,
    /// This device's connection in [`Fleet::pool`].
    connection: u32,
    /// The open session's sender; `None` while disconnected. Messages are boxed because a
    /// channel allocates its slots in blocks of 32 up front.
    session: Mutex<Option<mpsc::Sender<Box<pb::DeviceMessage>>>>,
    /// Reports made while disconnected, sent first on the next session. In memory only: escrow
    /// tokens must never reach the disk.
    undelivered: Mutex<Vec<pb::DeviceMessage>>,
    /// The last passcode entry reported per store, sent again on every new session: without an
    /// acknowledgement in the protocol, an entry lost with a dying stream would otherwise never
    /// reach the control plane. Recording it twice is harmless.
    entries: Mutex<Vec<pb::UserEvent>>,
    /// The last escrow token reported per store, escrowed again on every new session for the
    /// same reason: a token escrowed just before its session broke may already be active when
    /// the device reconnects, and the control plane would never learn it. The management app
    /// holds its tokens the same way; in memory only, like every token.
    escrows: Mutex<Vec<(Scope, EscrowToken)>>,
    connected: AtomicBool,
    /// False while the harness holds the device offline (airplane mode): no session then.
    online: AtomicBool,
    /// Wakes the device's session loop when `online` changes.
    online_changed: tokio::sync::Notify,
    /// This device's seeded stream of fault decisions; untouched when no faults are configured.
    fault_dice: Mutex<FaultDice>,
    /// Held by a change from start to its last report: the state file then never goes back to
    /// an older state, and reports leave in the order of the changes. Tokio's mutex is fair, so
    /// changes take their turns in the order they asked.
    turn: tokio::sync::Mutex<()>,
}

pub struct Fleet {
    slots: BTreeMap<String, Arc<Slot>>,
    /// The HTTP/2 connections the devices share (see [`FleetConfig::connections`]).
    pool: Vec<Channel>,
    /// Bounds the devices enrolling or opening a session at once. A fleet starting all at once
    /// would otherwise queue every enrollment in the connection's buffer together, and the
    /// control plane would see a burst no real fleet makes; on both sides the burst's short-lived
    /// allocations fragment the heap for good.
    connecting: tokio::sync::Semaphore,
    config: FleetConfig,
    rng: Arc<SystemRandom>,
    metrics: Arc<AgentMetrics>,
    /// Every device screen as it was right after each change, for WatchScreens. Taken with the
    /// change rather than when a watcher gets to it, so a watcher sees short-lived states too
    /// (a reboot's lost token before the management app re-creates it).
    screen_changes: broadcast::Sender<Arc<Screen>>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("devices", &self.slots.len())
            .field("control_plane", &self.config.control_plane)
            .finish_non_exhaustive()
    }
}

impl Fleet {
    /// Loads each device's state (or creates the device) and prepares the connection. Nothing is
    /// sent until [`Fleet::run`].
    pub async fn load(config: FleetConfig) -> Result<Arc<Fleet>, FleetError> {
        let endpoint = Endpoint::from_shared(config.control_plane.clone())
            .map_err(|e| FleetError::Address(config.control_plane.clone(), e.to_string()))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .initial_connection_window_size(Some(16 * 1024 * 1024));
        // Each lazily connected Channel owns its own HTTP/2 connection; no pool is larger than
        // the fleet, since an unused connection would only cost a socket.
        let pool_size = config.connections.clamp(1, config.devices.len().max(1));
        let pool: Vec<Channel> = (0..pool_size).map(|_| endpoint.connect_lazy()).collect();
        if let Some(dir) = &config.state_dir {
            std::fs::create_dir_all(dir).map_err(|source| FleetError::StateFile {
                name: String::new(),
                path: dir.clone(),
                source,
            })?;
        }
        let rng = Arc::new(SystemRandom::new());
        let mut slots = BTreeMap::new();
        let mut names: Vec<&DeviceSpec> = config.devices.iter().collect();
        names.sort_by(|a, b| a.name.cmp(&b.name));
        let index_of: BTreeMap<&str, usize> = names
            .iter()
            .enumerate()
            .map(|(i, spec)| (spec.name.as_str(), i))
            .collect();
        for spec in &config.devices {
            check_name(&spec.name)?;
            let device = match &config.state_dir {
                Some(dir) => load_device(spec, &state_path(dir, &spec.name), config.kdf, &rng)?,
                None => Device::new(spec.name.clone(), spec.ownership, config.kdf, rng.as_ref()),
            };
            let index = index_of[spec.name.as_str()];
            slots.insert(
                spec.name.clone(),
                Arc::new(Slot {
                    name: spec.name.clone(),
                    ownership: device.ownership(),
                    device: Mutex::new(device),
                    connection: u32::try_from(index % pool.len()).unwrap_or(0),
                    session: Mutex::new(None),
                    undelivered: Mutex::new(Vec::new()),
                    entries: Mutex::new(Vec::new()),
                    escrows: Mutex::new(Vec::new()),
                    connected: AtomicBool::new(false),
                    online: AtomicBool::new(true),
                    online_changed: tokio::sync::Notify::new(),
                    fault_dice: Mutex::new(config.faults.dice(index as u64)),
                    turn: tokio::sync::Mutex::new(()),
                }),
            );
        }
        let metrics = Arc::new(AgentMetrics::default());
        metrics
            .devices_hosted
            .store(slots.len() as u64, Ordering::Relaxed);
        let fleet = Arc::new(Fleet {
            slots,
            pool,
            connecting: tokio::sync::Semaphore::new(MAX_CONNECTING),
            config,
            rng,
            metrics,
            screen_changes: broadcast::channel(1024).0,
        });
        // Loading a device is a boot: the management app re-creates tokens a reboot lost.
        for slot in fleet.slots.values() {
            let rng = fleet.rng.clone();
            fleet
                .mutate(slot, move |device, _| {
                    device.ensure_tokens(rng.as_ref());
                    Ok(())
                })
                .await?;
        }
        Ok(fleet)
    }

    /// Enrolls devices that need it and keeps every device's session open until `shutdown`
    /// changes to `true`.
    pub async fn run(self: Arc<Self>, shutdown: watch::Receiver<bool>) {
        self.run_ramped(shutdown, RampUp::default()).await
    }

    /// As [`Fleet::run`], with each device's first connection delayed by `ramp`.
    pub async fn run_ramped(self: Arc<Self>, shutdown: watch::Receiver<bool>, ramp: RampUp) {
        let mut tasks = tokio::task::JoinSet::new();
        let mut rng = SplitMix64::new(ramp.seed);
        for slot in self.slots.values() {
            let fleet = self.clone();
            let slot = slot.clone();
            let mut shutdown = shutdown.clone();
            // Drawn in name order whatever the window, so a seed gives a device the same delay.
            let draw = rng.next_u64();
            let delay = Duration::from_millis(draw.checked_rem(ramp.window_ms).unwrap_or(0));
            tasks.spawn(async move {
                if !delay.is_zero() {
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.changed() => return,
                    }
                }
                fleet.device_loop(slot, shutdown).await
            });
        }
        while tasks.join_next().await.is_some() {}
    }

    /// The fleet's Prometheus counters.
    pub fn metrics(&self) -> &Arc<AgentMetrics> {
        &self.metrics
    }

    /// The devices' clock, in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        self.config.clock.now_ms()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.slots.keys().map(String::as_str)
    }

    /// Each device's screen after each change to it, in the order of its changes.
    pub fn screen_changes(&self) -> broadcast::Receiver<Arc<Screen>> {
        self.screen_changes.subscribe()
    }

    pub fn screen(&self, name: &str) -> Result<Screen, FleetError> {
        let slot = self.slot(name)?;
        Ok(self.screen_of(slot))
    }

    pub async fn enter_passcode(
        &self,
        name: &str,
        scope: Scope,
        passcode: Passcode,
    ) -> Result<EntryOutcome, FleetError> {
        let slot = self.slot(name)?;
        let outcome = self
            .mutate(slot, move |device, now| {
                device.enter_passcode(scope, &passcode, now)
            })
            .await;
        self.metrics.passcode_entry(match &outcome {
            Ok(EntryOutcome::Unlocked) => EntryResult::Accepted,
            Ok(EntryOutcome::Refused(_)) => EntryResult::Rejected,
            Err(_) => EntryResult::Error,
        });
        outcome
    }

    pub async fn set_passcode(
        &self,
        name: &str,
        scope: Scope,
        current: Option<Passcode>,
        new: Passcode,
    ) -> Result<(), FleetError> {
        let slot = self.slot(name)?;
        let rng = self.rng.clone();
        self.mutate(slot, move |device, now| {
            device.set_passcode(scope, current.as_ref(), &new, now, rng.as_ref())
        })
        .await
    }

    /// Takes the device off the network or puts it back; offline it holds no session. Taking it
    /// offline returns once its session has closed; going online does not wait for a session,
    /// since the control plane may be down.
    pub async fn set_online(&self, name: &str, online: bool) -> Result<(), FleetError> {
        let slot = self.slot(name)?;
        let mut changes = self.screen_changes.subscribe();
        slot.online.store(online, Ordering::SeqCst);
        slot.online_changed.notify_waiters();
        while !online && slot.connected.load(Ordering::SeqCst) {
            match changes.recv().await {
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
        Ok(())
    }

    pub async fn lock(&self, name: &str, scope: Scope) -> Result<(), FleetError> {
        let slot = self.slot(name)?;
        self.mutate(slot, move |device, _| device.lock(scope)).await
    }

    /// Restarts the device, then runs what its management app does on boot: re-create the tokens
    /// the boot lost. Two changes, each persisted and reported on its own, because that is what
    /// a phone shows its control plane: the boot (every store locked, pending tokens gone), then
    /// the app's new tokens.
    pub async fn reboot(&self, name: &str) -> Result<(), FleetError> {
        let slot = self.slot(name)?;
        self.mutate(slot, |device, _| {
            device.reboot();
            Ok(())
        })
        .await?;
        let rng = self.rng.clone();
        self.mutate(slot, move |device, _| {
            device.ensure_tokens(rng.as_ref());
            Ok(())
        })
        .await
    }

    pub async fn write_user_data(
        &self,
        name: &str,
        scope: Scope,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), FleetError> {
        let slot = self.slot(name)?;
        let rng = self.rng.clone();
        self.mutate(slot, move |device, _| {
            device.write_user_data(scope, &key, &value, rng.as_ref())
        })
        .await
    }

    pub fn read_user_data(
        &self,
        name: &str,
        scope: Scope,
        key: &str,
    ) -> Result<Option<Vec<u8>>, FleetError> {
        let slot = self.slot(name)?;
        lock(&slot.device)
            .read_user_data(scope, key)
            .map_err(|source| FleetError::Device {
                name: name.to_string(),
                source,
            })
    }

    // ------------------------------------------------------------------ internals

    fn slot(&self, name: &str) -> Result<&Arc<Slot>, FleetError> {
        self.slots
            .get(name)
            .ok_or_else(|| FleetError::UnknownDevice(name.to_string()))
    }

    fn screen_of(&self, slot: &Slot) -> Screen {
        screen_from(slot, &lock(&slot.device), self.config.clock.now_ms())
    }

    /// Runs `change` on the device (on a blocking thread), persists the device, then sends the
    /// reports its events call for, all in the device's turn.
    async fn mutate<T, F>(&self, slot: &Arc<Slot>, change: F) -> Result<T, FleetError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Device, u64) -> Result<T, DeviceError> + Send + 'static,
    {
        let _turn = slot.turn.lock().await;
        let worker_slot = slot.clone();
        let clock = self.config.clock.clone();
        let screen_changes = self.screen_changes.clone();
        let durable = self.config.state_dir.is_some();
        let (result, events, persisted, statuses, screen) =
            tokio::task::spawn_blocking(move || {
                let mut device = lock(&worker_slot.device);
                let now = clock.now_ms();
                let result = change(&mut device, now);
                let events = device.take_events();
                // The status report and the screen show the device as this change left it. Nobody
                // but this change can alter it before they leave (it holds the turn), but time
                // passes, and a throttle must be reported as it was set.
                let statuses = device.statuses(now);
                // Asked after the change and under the device's lock: a watcher that subscribes
                // later reads the screen under that lock too, so it sees this change either way.
                let watched = screen_changes.receiver_count() > 0;
                let screen = watched.then(|| screen_from(&worker_slot, &device, now));
                let persisted = durable.then(|| device.to_persisted());
                (result, events, persisted, statuses, screen)
            })
            .await
            .map_err(|_| FleetError::Worker)?;
        if let Some(persisted) = persisted {
            self.persist(slot, &persisted).await?;
        }
        self.report_events(slot, events, &statuses);
        if let Some(screen) = screen {
            let _ = self.screen_changes.send(Arc::new(screen));
        }
        result.map_err(|source| FleetError::Device {
            name: slot.name.clone(),
            source,
        })
    }

    /// Tells WatchScreens that something outside the device model changed (the session).
    fn announce(&self, slot: &Slot) {
        if self.screen_changes.receiver_count() > 0 {
            let _ = self.screen_changes.send(Arc::new(self.screen_of(slot)));
        }
    }

    async fn persist(&self, slot: &Slot, state: &PersistedDevice) -> Result<(), FleetError> {
        let Some(dir) = &self.config.state_dir else {
            return Ok(());
        };
        let path = state_path(dir, &slot.name);
        let bytes = serde_json::to_vec(state).map_err(|e| FleetError::CorruptState {
            name: slot.name.clone(),
            path: path.clone(),
            problem: e.to_string(),
        })?;
        let written = path.clone();
        tokio::task::spawn_blocking(move || write_atomically(&written, &bytes))
            .await
            .map_err(|_| FleetError::Worker)?
            .map_err(|source| FleetError::StateFile {
                name: slot.name.clone(),
                path,
                source,
            })
    }

    /// Sends what `events` call for; `statuses` is the device's status right after the change.
    fn report_events(&self, slot: &Slot, events: Vec<DeviceEvent>, statuses: &[StoreStatus]) {
        use pb::device_message::Body;
        let mut status_changed = false;
        for event in events {
            let body = match event {
                DeviceEvent::StatusChanged => {
                    status_changed = true;
                    continue;
                }
                DeviceEvent::EscrowToken { scope, token } => {
                    tracing::info!(device = %slot.name, scope = scope.as_str(), "escrow token set; escrowing it");
                    let mut escrows = lock(&slot.escrows);
                    escrows.retain(|(kept, _)| *kept != scope);
                    escrows.push((scope, token.clone()));
                    drop(escrows);
                    Body::EscrowToken(pb::EscrowTokenUpdate {
                        scope: scope_to_pb(scope) as i32,
                        token: token.expose().to_vec(),
                    })
                }
                DeviceEvent::NewPasscodeEntered {
                    scope,
                    command_id,
                    at_ms,
                } => {
                    let entry = pb::UserEvent {
                        kind: pb::user_event::Kind::NewPasscodeEntered as i32,
                        scope: scope_to_pb(scope) as i32,
                        at_ms,
                        command_id,
                    };
                    let mut entries = lock(&slot.entries);
                    entries.retain(|kept| kept.scope != entry.scope);
                    entries.push(entry.clone());
                    Body::UserEvent(entry)
                }
                DeviceEvent::StoreWiped { scope, at_ms } => Body::UserEvent(pb::UserEvent {
                    kind: pb::user_event::Kind::StoreWiped as i32,
                    scope: scope_to_pb(scope) as i32,
                    at_ms,
                    command_id: String::new(),
                }),
            };
            self.send(slot, body);
        }
        if status_changed {
            let status = pb::DeviceStatus {
                stores: statuses.iter().map(store_status_to_pb).collect(),
            };
            self.send(slot, pb::device_message::Body::Status(status));
        }
    }

    fn status_of(&self, slot: &Slot) -> pb::DeviceStatus {
        let device = lock(&slot.device);
        pb::DeviceStatus {
            stores: device
                .statuses(self.config.clock.now_ms())
                .iter()
                .map(store_status_to_pb)
                .collect(),
        }
    }

    /// Sends on the open session, or keeps the message for the next one.
    fn send(&self, slot: &Slot, body: pb::device_message::Body) {
        let message = Box::new(pb::DeviceMessage { body: Some(body) });
        let session = lock(&slot.session).clone();
        let message = match session {
            Some(tx) => match tx.try_send(message) {
                Ok(()) => {
                    self.metrics.reports_sent.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(mpsc::error::TrySendError::Full(m) | mpsc::error::TrySendError::Closed(m)) => m,
            },
            None => message,
        };
        lock(&slot.undelivered).push(*message);
    }

    async fn device_loop(self: Arc<Self>, slot: Arc<Slot>, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(100);
        const MAX_BACKOFF: Duration = Duration::from_secs(5);
        loop {
            if *shutdown.borrow() {
                return;
            }
            tokio::select! {
                _ = online_becomes(&slot, true) => {}
                _ = shutdown.changed() => return,
            }
            // Boxed: a session's future is large and lives only while connected, so the parked
            // loop of an idle or offline device stays small.
            let session_future = Box::pin(self.clone().connect_once(slot.clone()));
            let outcome = tokio::select! {
                outcome = session_future => Some(outcome),
                _ = online_becomes(&slot, false) => Some(Ok(())),
                _ = shutdown.changed() => None,
            };
            // Dropping the sender ends the request stream, which closes the session cleanly.
            *lock(&slot.session) = None;
            if slot.connected.swap(false, Ordering::SeqCst) {
                self.metrics
                    .devices_connected
                    .fetch_sub(1, Ordering::Relaxed);
                self.announce(&slot);
            }
            let Some(outcome) = outcome else { return };
            match outcome {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(SessionError::Fault(kind)) => {
                    tracing::debug!(device = %slot.name, fault = kind, "injected fault broke the session");
                    backoff = Duration::from_millis(100);
                }
                Err(error) => {
                    tracing::warn!(device = %slot.name, %error, "session to the control plane failed; retrying");
                }
            }
            let jitter = Duration::from_millis(u64::from(rand_u16(&self.rng)) % 100);
            tokio::select! {
                _ = tokio::time::sleep(backoff + jitter) => {}
                _ = shutdown.changed() => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Enrolls if needed, then holds one session until it ends.
    async fn connect_once(self: Arc<Self>, slot: Arc<Slot>) -> Result<(), SessionError> {
        let slot = &slot;
        let connecting = self
            .connecting
            .acquire()
            .await
            .map_err(|_| SessionError::Closed)?;
        let enrollment = lock(&slot.device).enrollment().cloned();
        let enrollment = match enrollment {
            Some(enrollment) => enrollment,
            None => Box::pin(self.enroll(slot)).await?,
        };
        let (tx, rx) = mpsc::channel(256);
        let hello = pb::Hello {
            device_id: enrollment.device_id.clone(),
            agent_version: AGENT_VERSION.to_string(),
            status: Some(self.status_of(slot)),
        };
        tx.try_send(Box::new(pb::DeviceMessage {
            body: Some(pb::device_message::Body::Hello(hello)),
        }))
        .map_err(|_| SessionError::Closed)?;
        let broken = Arc::new(tokio::sync::Notify::new());
        let outbound = Outbound {
            rx,
            faults: (!self.config.faults.is_none()).then(|| OutboundFaults {
                fleet: self.clone(),
                slot: slot.clone(),
                broken: broken.clone(),
                held: None,
                repeat: None,
                stalled: false,
            }),
        };
        let mut inbound = Box::pin(self.call_session(slot, &enrollment, outbound)).await?;
        Box::pin(self.open_session(slot, &tx)).await?;
        drop(connecting);
        if !slot.connected.swap(true, Ordering::SeqCst) {
            self.metrics
                .devices_connected
                .fetch_add(1, Ordering::Relaxed);
        }
        self.announce(slot);
        tracing::info!(device = %slot.name, device_id = %enrollment.device_id, "session open");
        let receive = async {
            while let Some(message) = inbound.message().await? {
                let copies = match self.fault(slot, Direction::ToDevice) {
                    FaultAction::Deliver => 1,
                    FaultAction::Duplicate => 2,
                    FaultAction::Delay { ms } => {
                        Box::pin(tokio::time::sleep(Duration::from_millis(u64::from(ms)))).await;
                        1
                    }
                    FaultAction::Drop => return Err(SessionError::Fault("drop")),
                    FaultAction::Disconnect => return Err(SessionError::Fault("disconnect")),
                };
                for _ in 0..copies {
                    Box::pin(self.receive(slot, &tx, &enrollment, message.clone())).await?;
                }
            }
            Ok(())
        };
        tokio::select! {
            outcome = receive => outcome,
            _ = broken.notified() => Err(SessionError::Fault("outbound")),
        }
    }

    /// Opens the Session stream. Its own function so the client and the request, needed only
    /// for the call, are not kept for the session's whole life.
    async fn call_session(
        &self,
        slot: &Slot,
        enrollment: &Enrollment,
        outbound: Outbound,
    ) -> Result<tonic::Streaming<pb::ControlMessage>, SessionError> {
        let mut client = DeviceGatewayClient::new(self.pool[slot.connection as usize].clone());
        let mut request = tonic::Request::new(outbound);
        let bearer = format!("Bearer {}", enrollment.credential.expose())
            .parse()
            .map_err(|_| SessionError::Closed)?;
        request.metadata_mut().insert("authorization", bearer);
        Ok(client.session(request).await?.into_inner())
    }

    /// Sends the reports waiting for a session, then makes `tx` the device's open session.
    async fn open_session(
        &self,
        slot: &Arc<Slot>,
        tx: &mpsc::Sender<Box<pb::DeviceMessage>>,
    ) -> Result<(), SessionError> {
        // In the device's turn, so no change can report between the backlog and the switch
        // to the open session: its report would wait in the backlog for the next session.
        let _turn = slot.turn.lock().await;
        // A waiting escrow is superseded by the escrow list below, which holds the newest token
        // of each store.
        let mut backlog: Vec<_> = std::mem::take(&mut *lock(&slot.undelivered))
            .into_iter()
            .filter(|message| {
                !matches!(message.body, Some(pb::device_message::Body::EscrowToken(_)))
            })
            .collect();
        // Escrow the tokens and repeat the last passcode entries again, last, so the control
        // plane ends up with the newest even if an earlier report was lost with a dying stream.
        backlog.extend(
            lock(&slot.escrows)
                .iter()
                .map(|(scope, token)| pb::DeviceMessage {
                    body: Some(pb::device_message::Body::EscrowToken(
                        pb::EscrowTokenUpdate {
                            scope: scope_to_pb(*scope) as i32,
                            token: token.expose().to_vec(),
                        },
                    )),
                }),
        );
        backlog.extend(lock(&slot.entries).iter().map(|entry| pb::DeviceMessage {
            body: Some(pb::device_message::Body::UserEvent(entry.clone())),
        }));
        for message in backlog {
            tx.send(Box::new(message))
                .await
                .map_err(|_| SessionError::Closed)?;
            self.metrics.reports_sent.fetch_add(1, Ordering::Relaxed);
        }
        *lock(&slot.session) = Some(tx.clone());
        Ok(())
    }

    /// Handles one message from the control plane.
    async fn receive(
        &self,
        slot: &Arc<Slot>,
        tx: &mpsc::Sender<Box<pb::DeviceMessage>>,
        enrollment: &Enrollment,
        message: pb::ControlMessage,
    ) -> Result<(), SessionError> {
        match message.body {
            Some(pb::control_message::Body::Command(command)) => {
                self.run_command(slot, tx, enrollment, command).await?;
            }
            Some(pb::control_message::Body::Policy(update)) => {
                let Some(scope) = scope_from_pb(update.scope) else {
                    return Ok(());
                };
                let policy = update.policy.as_ref().and_then(policy_from_pb);
                let applied = self
                    .mutate(slot, move |device, _| device.set_policy(scope, policy))
                    .await;
                if let Err(error) = applied {
                    tracing::warn!(device = %slot.name, %error, "policy not applied");
                }
            }
            None => {}
        }
        Ok(())
    }

    /// The next fault decision for a message of `slot` going `direction`.
    fn fault(&self, slot: &Slot, direction: Direction) -> FaultAction {
        if self.config.faults.is_none() {
            return FaultAction::Deliver;
        }
        let action = lock(&slot.fault_dice).next(&self.config.faults, direction);
        self.metrics.fault(action);
        action
    }

    async fn enroll(&self, slot: &Arc<Slot>) -> Result<Enrollment, SessionError> {
        let token =
            self.config.enrollment_token.clone().ok_or_else(|| {
                SessionError::Fleet(FleetError::NoEnrollmentToken(slot.name.clone()))
            })?;
        let mut client = DeviceGatewayClient::new(self.pool[slot.connection as usize].clone());
        let response = client
            .enroll(pb::EnrollRequest {
                enrollment_token: token,
                ownership: ownership_to_pb(slot.ownership) as i32,
                display_name: slot.name.clone(),
            })
            .await?
            .into_inner();
        let enrollment = Enrollment {
            device_id: response.device_id,
            credential: DeviceCredential::new(response.device_credential),
            command_public_key: response.command_signing_public_key,
        };
        let stored = enrollment.clone();
        let rng = self.rng.clone();
        self.mutate(slot, move |device, _| {
            device.set_enrollment(stored);
            device.ensure_tokens(rng.as_ref());
            Ok(())
        })
        .await?;
        tracing::info!(device = %slot.name, device_id = %enrollment.device_id, "enrolled");
        Ok(enrollment)
    }

    async fn run_command(
        &self,
        slot: &Arc<Slot>,
        tx: &mpsc::Sender<Box<pb::DeviceMessage>>,
        enrollment: &Enrollment,
        command: pb::SignedCommand,
    ) -> Result<(), SessionError> {
        // Acknowledge receipt first (the action becomes "active"), but only for a command that is
        // genuinely ours; the device model judges everything else.
        if let Some(decoded) = decode_command(&command.body) {
            let key = ring::signature::UnparsedPublicKey::new(
                &ring::signature::ED25519,
                &enrollment.command_public_key,
            );
            if decoded.device_id == enrollment.device_id
                && key.verify(&command.body, &command.signature).is_ok()
            {
                let ack = pb::CommandAck {
                    command_id: decoded.command_id.clone(),
                };
                tx.send(Box::new(pb::DeviceMessage {
                    body: Some(pb::device_message::Body::Ack(ack)),
                }))
                .await
                .map_err(|_| SessionError::Closed)?;
                self.metrics.reports_sent.fetch_add(1, Ordering::Relaxed);
            }
        }
        let rng = self.rng.clone();
        let result: Option<CommandResult> = self
            .mutate(slot, move |device, now| {
                Ok(device.run_command(
                    &command.body,
                    &command.signature,
                    decode_command,
                    now,
                    rng.as_ref(),
                ))
            })
            .await?;
        self.metrics.command(match &result {
            Some(result) if result.success => CommandOutcome::Success,
            Some(_) => CommandOutcome::Failure,
            None => CommandOutcome::Ignored,
        });
        if let Some(result) = result {
            tracing::info!(device = %slot.name, command_id = %result.command_id, success = result.success, "command result");
            tx.send(Box::new(pb::DeviceMessage {
                body: Some(pb::device_message::Body::Result(command_result_to_pb(
                    &result,
                ))),
            }))
            .await
            .map_err(|_| SessionError::Closed)?;
            self.metrics.reports_sent.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error(transparent)]
    Fleet(#[from] FleetError),
    #[error("control plane answered: {0}")]
    Status(#[from] tonic::Status),
    #[error("the session closed")]
    Closed,
    /// An injected fault (`--faults`) broke the session on purpose.
    #[error("an injected {0} fault broke the session")]
    Fault(&'static str),
}

/// Resolves once the device's network is `on` (airplane mode off) or off.
async fn online_becomes(slot: &Slot, on: bool) {
    loop {
        let changed = slot.online_changed.notified();
        tokio::pin!(changed);
        // Registered before the check, so a change between the check and the wait still wakes.
        changed.as_mut().enable();
        if slot.online.load(Ordering::SeqCst) == on {
            return;
        }
        changed.await;
    }
}

/// A session's request stream: the device's messages in the order it made them, through the
/// fault injector when faults are configured.
struct Outbound {
    rx: mpsc::Receiver<Box<pb::DeviceMessage>>,
    faults: Option<OutboundFaults>,
}

/// The fault injector's state for one session's outgoing messages.
struct OutboundFaults {
    fleet: Arc<Fleet>,
    slot: Arc<Slot>,
    /// Told when a fault breaks the session; the session's receive loop ends on it.
    broken: Arc<tokio::sync::Notify>,
    /// A delayed message and its timer. Later messages wait behind it: a stream keeps order.
    held: Option<(Pin<Box<tokio::time::Sleep>>, Box<pb::DeviceMessage>)>,
    /// The second copy of a duplicated message, sent next.
    repeat: Option<Box<pb::DeviceMessage>>,
    /// Set once a fault broke the session: nothing more leaves on it.
    stalled: bool,
}

impl tokio_stream::Stream for Outbound {
    type Item = pb::DeviceMessage;

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<pb::DeviceMessage>> {
        use std::task::Poll;
        let this = self.get_mut();
        let Some(faults) = this.faults.as_mut() else {
            return this.rx.poll_recv(cx).map(|m| m.map(|m| *m));
        };
        if faults.stalled {
            return Poll::Pending;
        }
        if let Some(message) = faults.repeat.take() {
            return Poll::Ready(Some(*message));
        }
        if let Some((timer, _)) = faults.held.as_mut() {
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if let Some((_, message)) = faults.held.take() {
                return Poll::Ready(Some(*message));
            }
        }
        let Some(message) = std::task::ready!(this.rx.poll_recv(cx)) else {
            return Poll::Ready(None);
        };
        // The Hello opens the session; faults start after it.
        if matches!(message.body, Some(pb::device_message::Body::Hello(_))) {
            return Poll::Ready(Some(*message));
        }
        match faults.fleet.fault(&faults.slot, Direction::ToControlPlane) {
            FaultAction::Deliver => Poll::Ready(Some(*message)),
            FaultAction::Duplicate => {
                faults.repeat = Some(message.clone());
                Poll::Ready(Some(*message))
            }
            FaultAction::Delay { ms } => {
                let mut timer = Box::pin(tokio::time::sleep(Duration::from_millis(u64::from(ms))));
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(*message));
                }
                faults.held = Some((timer, message));
                Poll::Pending
            }
            FaultAction::Drop => {
                faults.stalled = true;
                faults.broken.notify_one();
                Poll::Pending
            }
            FaultAction::Disconnect => {
                // Not sent: the device keeps it for its next session.
                lock(&faults.slot.undelivered).push(*message);
                faults.stalled = true;
                faults.broken.notify_one();
                Poll::Pending
            }
        }
    }
}

fn state_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.json"))
}

fn load_device(
    spec: &DeviceSpec,
    path: &Path,
    kdf: KdfParams,
    rng: &SystemRandom,
) -> Result<Device, FleetError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let corrupt = |problem: String| FleetError::CorruptState {
                name: spec.name.clone(),
                path: path.to_path_buf(),
                problem,
            };
            let persisted: PersistedDevice =
                serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
            let device =
                Device::from_persisted(persisted, kdf).map_err(|e| corrupt(e.to_string()))?;
            if device.ownership() != spec.ownership {
                return Err(corrupt(format!(
                    "it holds a {} device, but the command line says {}",
                    device.ownership().as_str(),
                    spec.ownership.as_str()
                )));
            }
            Ok(device)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(Device::new(spec.name.clone(), spec.ownership, kdf, rng))
        }
        Err(source) => Err(FleetError::StateFile {
            name: spec.name.clone(),
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// What the harness shows of `device` at `now_ms`.
fn screen_from(slot: &Slot, device: &Device, now_ms: u64) -> Screen {
    Screen {
        name: slot.name.clone(),
        device_id: device.enrollment().map(|e| e.device_id.clone()),
        ownership: slot.ownership,
        stores: device.statuses(now_ms),
        notifications: device.notifications(),
        connected: slot.connected.load(Ordering::SeqCst),
        applied_commands: device
            .applied_commands()
            .map(|(id, times)| (id.to_string(), times))
            .collect(),
        policies: device
            .scopes()
            .into_iter()
            .filter_map(|scope| Some((scope, device.policy(scope).ok()??.clone())))
            .collect(),
    }
}

/// Replaces `path` with `bytes` so that a crash leaves either the old or the new file.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("json.tmp");
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn rand_u16(rng: &SystemRandom) -> u16 {
    let mut bytes = [0u8; 2];
    let _ = ring::rand::SecureRandom::fill(rng, &mut bytes);
    u16::from_le_bytes(bytes)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
