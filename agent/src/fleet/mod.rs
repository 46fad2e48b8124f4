//! The agent's runtime: hosts simulated devices, keeps each one's state file, enrolls it, keeps
//! its Session stream to the control plane open (reconnecting with backoff), runs the commands
//! it receives, and carries out the harness's user operations.
//!
//! Every change to a device goes through `Fleet::mutate`: the change runs on a blocking thread
//! (Argon2 is slow by design), then the device's state file is rewritten, and only then are the
//! resulting reports sent, so a report never claims something a crash could undo. Changes to one
//! device take turns through all three steps, so its state file and its reports follow the order
//! of its changes (an escrowed token can never be overtaken by the token it replaced).
//!
//! Layout:
//! - this file: [`Fleet`] and each device's slot in it, loading and running the fleet, the user
//!   operations the harness calls, and `mutate`.
//! - `spec`: what a fleet is given to host ([`DeviceSpec`], [`FleetConfig`], [`RampUp`]) and
//!   [`FleetError`].
//! - `session`: each device's Session with the control plane: enrollment, reconnection, the
//!   protobuf it sends and receives, and the fault-injecting outbound stream.
//! - `state_file`: loading and atomically rewriting each device's JSON state file.

mod session;
mod spec;
mod state_file;

pub use spec::{DeviceSpec, FleetConfig, FleetError, RampUp};

use crate::device::{
    Build, Device, DeviceError, EnrollmentToken, EntryOutcome, LockScreenPrompt, Notification,
    Ownership, Passcode, PasscodePolicy, PersistedDevice, Scope, StoreStatus,
};
use crate::faults::FaultDice;
use crate::metrics::{AgentMetrics, EntryResult};
use crate::seeded::SplitMix64;
use droidfleet_proto::tls::CaFingerprint;
use droidfleet_proto::v1 as pb;
use ring::rand::SystemRandom;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, watch};
use tonic::transport::Channel;

/// At most this many devices enroll or open their session at once (see [`Fleet::connecting`]).
const MAX_CONNECTING: usize = 256;

/// What the harness shows of a device.
#[derive(Clone, Debug)]
pub struct Screen {
    pub name: String,
    pub device_id: Option<String>,
    pub ownership: Ownership,
    /// The Android it runs.
    pub build: Build,
    pub stores: Vec<StoreStatus>,
    pub notifications: Vec<Notification>,
    /// What the locked keyguard says above its passcode field.
    pub lock_screen_prompts: Vec<LockScreenPrompt>,
    /// The control plane revoked the credential; the device waits for a re-enrollment token.
    pub re_enrollment_required: bool,
    pub connected: bool,
    pub applied_commands: BTreeMap<String, u32>,
    /// The passcode policy each store applies now, as the control plane last sent it.
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
    /// The last escrow token set per store, escrowed again on every new session until the
    /// control plane acknowledges it: a token escrowed just before its session broke may already
    /// be active when the device reconnects, and the control plane would never learn it. Its
    /// fingerprint goes into every status report, so the control plane can tell that the token
    /// it holds is older. The management app holds its tokens the same way; in memory only, like
    /// every token.
    escrows: Mutex<Vec<session::Escrow>>,
    connected: AtomicBool,
    /// False while the harness holds the device offline (airplane mode): no session then.
    online: AtomicBool,
    /// The control plane refused the credential (an admin's ReEnrollDevice revoked it): the
    /// device stops calling until it is handed a re-enrollment token.
    re_enrollment_required: AtomicBool,
    /// Wakes the device's session loop when `online` changes or a re-enrollment token arrives.
    online_changed: tokio::sync::Notify,
    /// This device's seeded stream of fault decisions; untouched when no faults are configured.
    fault_dice: Mutex<FaultDice>,
    /// Held by a change from start to its last report: the state file then never goes back to
    /// an older state, and reports leave in the order of the changes. Tokio's mutex is fair, so
    /// changes take their turns in the order they asked.
    turn: tokio::sync::Mutex<()>,
}

/// The devices one agent process hosts, each with its state and its link to the control plane.
pub struct Fleet {
    slots: BTreeMap<String, Arc<Slot>>,
    /// The HTTP/2 connections the devices share (see [`FleetConfig::connections`]).
    pool: Vec<Channel>,
    /// The control plane CA the connections pin; a handed re-enrollment token must name it.
    pin: Option<CaFingerprint>,
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
    /// Re-enrollment tokens handed over through the harness, by device name, until the device
    /// enrolls with them. Rare, so kept here rather than in every slot; in memory only.
    handed_tokens: Mutex<HashMap<String, EnrollmentToken>>,
    /// Devices left out at load because their state file is corrupt or from before devices had
    /// key pairs (each a [`FleetError::CorruptState`] or [`FleetError::EnrolledWithoutKey`]);
    /// their files are left untouched for inspection.
    quarantined: Vec<FleetError>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("devices", &self.slots.len())
            .field("control_plane", &self.config.control_plane)
            .finish_non_exhaustive()
    }
}

/// The CA the fleet pins: the one its enrollment token names, or the one its devices pinned when
/// they enrolled (kept in the state directory); both must agree. `None` when the token carries
/// none and nothing was pinned (a control plane serving plaintext on loopback).
fn pinned_ca(config: &FleetConfig) -> Result<Option<CaFingerprint>, FleetError> {
    let from_token = match &config.enrollment_token {
        Some(token) if token.contains('.') => Some(
            droidfleet_proto::tls::split_enrollment_token(token)
                .map_err(FleetError::Token)?
                .1,
        ),
        _ => None,
    };
    let Some(dir) = &config.state_dir else {
        return Ok(from_token);
    };
    match (from_token, state_file::pinned_ca(dir)?) {
        (Some(token), Some((pinned, path))) if token != pinned => Err(FleetError::OtherCa {
            token: token.to_string(),
            pinned: pinned.to_string(),
            path,
        }),
        (Some(token), None) => {
            state_file::save_pinned_ca(dir, token)?;
            Ok(Some(token))
        }
        (_, pinned) => Ok(from_token.or(pinned.map(|(ca, _)| ca))),
    }
}

impl Fleet {
    /// Loads each device's state (or creates the device) and prepares the connection. Nothing is
    /// sent until [`Fleet::run`].
    pub async fn load(config: FleetConfig) -> Result<Arc<Fleet>, FleetError> {
        if let Some(dir) = &config.state_dir {
            state_file::create_dir(dir)?;
        }
        let pin = pinned_ca(&config)?;
        if pin.is_none() && config.control_plane.starts_with("https://") {
            return Err(FleetError::NoPinnedCa(config.control_plane.clone()));
        }
        let endpoint = droidfleet_proto::tls::client_endpoint(&config.control_plane, pin)
            .map_err(|e| FleetError::Address(config.control_plane.clone(), e.to_string()))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .initial_connection_window_size(Some(16 * 1024 * 1024));
        // Each lazily connected Channel owns its own HTTP/2 connection; no pool is larger than
        // the fleet, since an unused connection would only cost a socket.
        let pool_size = config.connections.clamp(1, config.devices.len().max(1));
        let pool: Vec<Channel> = (0..pool_size).map(|_| endpoint.connect_lazy()).collect();
        let rng = Arc::new(SystemRandom::new());
        let mut slots = BTreeMap::new();
        let mut names: Vec<&DeviceSpec> = config.devices.iter().collect();
        names.sort_by(|a, b| a.name.cmp(&b.name));
        let index_of: BTreeMap<&str, usize> = names
            .iter()
            .enumerate()
            .map(|(i, spec)| (spec.name.as_str(), i))
            .collect();
        let mut quarantined = Vec::new();
        for spec in &config.devices {
            spec::check_name(&spec.name)?;
            let device = match &config.state_dir {
                Some(dir) => match state_file::load(dir, spec, config.kdf, &rng) {
                    Ok(device) => device,
                    // One unreadable device must not keep the rest of the fleet down: it is
                    // quarantined (not hosted, its file untouched) and the others start.
                    Err(
                        error @ (FleetError::CorruptState { .. }
                        | FleetError::EnrolledWithoutKey { .. }),
                    ) => {
                        tracing::error!(device = %spec.name, %error, "device quarantined");
                        quarantined.push(error);
                        continue;
                    }
                    Err(error) => return Err(error),
                },
                None => Device::new(
                    spec.name.clone(),
                    spec.ownership,
                    spec.build,
                    config.kdf,
                    rng.as_ref(),
                ),
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
                    re_enrollment_required: AtomicBool::new(false),
                    online_changed: tokio::sync::Notify::new(),
                    fault_dice: Mutex::new(config.faults.dice(index as u64)),
                    turn: tokio::sync::Mutex::new(()),
                }),
            );
        }
        let metrics = Arc::new(AgentMetrics::default());
        metrics.set_devices_hosted(slots.len());
        let fleet = Arc::new(Fleet {
            slots,
            pool,
            pin,
            connecting: tokio::sync::Semaphore::new(MAX_CONNECTING),
            config,
            rng,
            metrics,
            screen_changes: broadcast::channel(1024).0,
            handed_tokens: Mutex::new(HashMap::new()),
            quarantined,
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

    /// The devices quarantined at load (corrupt state files), each with its file and problem.
    pub fn quarantined(&self) -> &[FleetError] {
        &self.quarantined
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.slots.keys().map(String::as_str)
    }

    /// The device names after `after` (all of them for `None`), in order: a page of the
    /// harness's ListDevices starts here without walking the names before it.
    pub fn names_after(&self, after: Option<&str>) -> impl Iterator<Item = &str> {
        use std::ops::Bound;
        let start = match after {
            Some(name) => Bound::Excluded(name),
            None => Bound::Unbounded,
        };
        self.slots
            .range::<str, _>((start, Bound::Unbounded))
            .map(|(name, _)| name.as_str())
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

    /// The user opens a work app; the work profile must be unlocked.
    pub async fn open_work_app(&self, name: &str) -> Result<(), FleetError> {
        let slot = self.slot(name)?;
        self.mutate(slot, |device, _| device.open_work_app()).await
    }

    /// Hands the device a re-enrollment token (from the admin's ReEnrollDevice), as its user
    /// would type it into the management app. The device enrolls with it on its next session
    /// attempt, at once if it is waiting for one.
    pub fn hand_re_enrollment_token(
        &self,
        name: &str,
        token: EnrollmentToken,
    ) -> Result<(), FleetError> {
        let slot = self.slot(name)?;
        if let Some(pin) = self.pin {
            let (_, ca) = droidfleet_proto::tls::split_enrollment_token(token.expose())
                .map_err(FleetError::Token)?;
            if ca != pin {
                return Err(FleetError::OtherCa {
                    token: ca.to_string(),
                    pinned: pin.to_string(),
                    path: self.config.state_dir.clone().unwrap_or_default(),
                });
            }
        }
        lock(&self.handed_tokens).insert(name.to_string(), token);
        slot.online_changed.notify_waiters();
        Ok(())
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
        let turn = slot.turn.lock().await;
        self.mutate_in_turn(slot, &turn, change).await
    }

    /// [`Fleet::mutate`] for a caller that already holds the device's turn, so it can send
    /// something more (a command's result) before the next change reports.
    async fn mutate_in_turn<T, F>(
        &self,
        slot: &Arc<Slot>,
        _turn: &tokio::sync::MutexGuard<'_, ()>,
        change: F,
    ) -> Result<T, FleetError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Device, u64) -> Result<T, DeviceError> + Send + 'static,
    {
        let worker_slot = slot.clone();
        let clock = self.config.clock.clone();
        let screen_changes = self.screen_changes.clone();
        let durable = self.config.state_dir.is_some();
        let (result, argon2, events, persisted, statuses, screen) =
            tokio::task::spawn_blocking(move || {
                let mut device = lock(&worker_slot.device);
                let now = clock.now_ms();
                // Timed here, at the edge, since the model reads no clock: the change alone,
                // without the wait for a blocking thread, so it is the Argon2 runs' own cost.
                let started = Instant::now();
                let result = change(&mut device, now);
                let argon2 = (device.take_argon2_runs(), started.elapsed());
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
                (result, argon2, events, persisted, statuses, screen)
            })
            .await
            .map_err(|_| FleetError::Worker)?;
        self.metrics.argon2_runs(argon2.0, argon2.1);
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
        match &self.config.state_dir {
            Some(dir) => state_file::save(dir, &slot.name, state).await,
            None => Ok(()),
        }
    }
}

/// What the harness shows of `device` at `now_ms`.
fn screen_from(slot: &Slot, device: &Device, now_ms: u64) -> Screen {
    let re_enrollment_required = slot.re_enrollment_required.load(Ordering::SeqCst);
    let mut notifications = device.notifications();
    if re_enrollment_required {
        // The management app's own notice: it can no longer reach its control plane.
        notifications.push(Notification {
            id: "re-enrollment-required".to_string(),
            scope: Scope::Device,
            title: "Re-enrollment required".to_string(),
            text: "Your IT admin revoked this device's enrollment. Enter the re-enrollment code \
                   they give you to manage this device again."
                .to_string(),
        });
    }
    Screen {
        name: slot.name.clone(),
        device_id: device.enrollment().map(|e| e.device_id.clone()),
        ownership: slot.ownership,
        build: device.build(),
        stores: device.statuses(now_ms),
        notifications,
        lock_screen_prompts: device.lock_screen_prompts(),
        re_enrollment_required,
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

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{Build, KdfParams, Ownership};
    use droidfleet_proto::tls::enrollment_token;

    fn config(state_dir: &std::path::Path, token: Option<String>) -> FleetConfig {
        FleetConfig {
            control_plane: "https://127.0.0.1:1".into(),
            state_dir: Some(state_dir.to_path_buf()),
            enrollment_token: token,
            kdf: KdfParams::LIGHT,
            devices: vec![DeviceSpec {
                name: "kiosk".into(),
                ownership: Ownership::Cosu,
                build: Build::default(),
            }],
            clock: Arc::new(crate::clock::SystemClock),
            connections: 1,
            faults: Default::default(),
        }
    }

    fn error_text(result: Result<Arc<Fleet>, FleetError>) -> String {
        match result {
            Ok(_) => panic!("the fleet loaded"),
            Err(error) => error.to_string(),
        }
    }

    #[tokio::test]
    async fn the_pin_comes_from_the_token_then_from_the_state_directory() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CaFingerprint::of_der(b"the control plane's CA");
        let fleet = Fleet::load(config(dir.path(), Some(enrollment_token("dfe_a", ca))))
            .await
            .unwrap();
        assert_eq!(fleet.pin, Some(ca));
        // Restarted without a token: the pin kept beside the state files.
        let fleet = Fleet::load(config(dir.path(), None)).await.unwrap();
        assert_eq!(fleet.pin, Some(ca));
        // A token naming another CA is for another control plane.
        let other = CaFingerprint::of_der(b"another CA");
        let error = error_text(
            Fleet::load(config(dir.path(), Some(enrollment_token("dfe_b", other)))).await,
        );
        assert!(error.contains("for another control plane"), "{error}");
        let error = error_text(
            fleet
                .hand_re_enrollment_token(
                    "kiosk",
                    EnrollmentToken::new(enrollment_token("dfe_c", other)),
                )
                .map(|()| fleet.clone()),
        );
        assert!(error.contains("for another control plane"), "{error}");
    }

    #[tokio::test]
    async fn tls_without_a_known_ca_and_tokens_without_one_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let error = error_text(Fleet::load(config(dir.path(), None)).await);
        assert!(error.contains("no CA to pin is known"), "{error}");
        let error = error_text(Fleet::load(config(dir.path(), Some("dfe_a.b".into()))).await);
        assert!(error.contains("carries no CA fingerprint"), "{error}");
    }
}
