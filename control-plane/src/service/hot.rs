//! The hot state in memory: what the per-message path needs (the device, its public key, its
//! status, policies, escrowed tokens in their sealed form, its open commands with their sealed
//! passcodes), loaded from the store at start and kept in step by the store's commit observer;
//! and who follows what (a device's session task, watches of a device or an action), so a change
//! wakes only those.
//!
//! The store stays the only source of truth. This memory is what its commits say, applied in
//! commit order before any caller of a commit is answered (see `store::CommitObserver`), so
//! nothing read here is older than what anyone was told, and a restart rebuilds it from the store.
//! Admin queries (listings, history, audit) still read the store.

use super::SessionSignals;
use crate::model::{Action, Device, Scope};
use crate::store::{Change, CommitObserver, DeviceState, OpenCommand};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::{Notify, broadcast};

/// One device's hot state.
#[derive(Debug)]
struct HotDevice {
    device: Device,
    /// What its session proofs must verify with; `None` while it has no key (revoked).
    public_key: Option<[u8; 32]>,
    /// The escrowed token of each store, sealed as stored.
    escrow_tokens: Vec<(Scope, Vec<u8>)>,
    /// Pending and active commands, by sequence.
    open_commands: Vec<OpenCommand>,
}

#[derive(Debug, Default)]
struct Index {
    devices: HashMap<String, HotDevice>,
}

impl Index {
    fn insert(&mut self, state: DeviceState) {
        let DeviceState {
            device,
            public_key,
            escrow_tokens,
            open_commands,
        } = state;
        self.devices.insert(
            device.id.clone(),
            HotDevice {
                device,
                public_key,
                escrow_tokens,
                open_commands,
            },
        );
    }

    /// Applies one committed change; returns the device it concerns.
    fn apply(&mut self, change: &Change) {
        match change {
            Change::Enrolled(state) => self.insert(DeviceState::clone(state)),
            Change::KeyRevoked { device_id } => {
                if let Some(hot) = self.devices.get_mut(device_id) {
                    hot.public_key = None;
                }
            }
            Change::Status {
                device_id,
                stores,
                last_seen,
            } => {
                if let Some(hot) = self.devices.get_mut(device_id) {
                    hot.device.stores.clone_from(stores);
                    hot.device.last_seen = *last_seen;
                }
            }
            Change::Policy {
                device_id,
                scope,
                policy,
                version,
            } => {
                if let Some(hot) = self.devices.get_mut(device_id) {
                    hot.device.policy_version = *version;
                    match scope {
                        Scope::Device => hot.device.device_policy.clone_from(policy),
                        Scope::WorkProfile => hot.device.work_profile_policy.clone_from(policy),
                    }
                }
            }
            Change::Build {
                device_id,
                api_level,
                maker_profile,
            } => {
                if let Some(hot) = self.devices.get_mut(device_id) {
                    hot.device.api_level = *api_level;
                    hot.device.maker_profile.clone_from(maker_profile);
                }
            }
            Change::Moved { device_id, group } => {
                if let Some(hot) = self.devices.get_mut(device_id) {
                    hot.device.group.clone_from(group);
                }
            }
            Change::EscrowToken {
                device_id,
                scope,
                sealed,
            } => {
                if let Some(hot) = self.devices.get_mut(device_id) {
                    hot.escrow_tokens.retain(|(held, _)| held != scope);
                    hot.escrow_tokens.push((*scope, sealed.clone()));
                    if !hot.device.escrowed_token_scopes.contains(scope) {
                        hot.device.escrowed_token_scopes.push(*scope);
                        hot.device.escrowed_token_scopes.sort();
                    }
                }
            }
            Change::ActionCreated(command) => {
                if !command.action.state.is_final()
                    && let Some(hot) = self.devices.get_mut(&command.action.device_id)
                {
                    let at = hot
                        .open_commands
                        .partition_point(|c| c.action.sequence < command.action.sequence);
                    hot.open_commands.insert(at, command.clone());
                }
            }
            Change::ActionChanged(action) => {
                if let Some(hot) = self.devices.get_mut(&action.device_id) {
                    if action.state.is_final() {
                        hot.open_commands.retain(|c| c.action.id != action.id);
                    } else if let Some(open) = hot
                        .open_commands
                        .iter_mut()
                        .find(|c| c.action.id == action.id)
                    {
                        open.action = action.clone();
                        if action.passcode_visible_until.is_none() {
                            open.sealed_passcode = None;
                        }
                    }
                }
            }
            Change::PasscodesPurged { until } => {
                for hot in self.devices.values_mut() {
                    for open in &mut hot.open_commands {
                        if open
                            .action
                            .passcode_visible_until
                            .is_some_and(|visible| visible <= *until)
                        {
                            open.action.passcode_visible_until = None;
                            open.sealed_passcode = None;
                        }
                    }
                }
            }
            Change::AccessChanged => {}
        }
    }
}

/// The device a change concerns, if any.
fn device_of(change: &Change) -> Option<&str> {
    match change {
        Change::Enrolled(state) => Some(&state.device.id),
        Change::KeyRevoked { device_id }
        | Change::Status { device_id, .. }
        | Change::Policy { device_id, .. }
        | Change::EscrowToken { device_id, .. }
        | Change::Build { device_id, .. }
        | Change::Moved { device_id, .. } => Some(device_id),
        Change::ActionCreated(_)
        | Change::ActionChanged(_)
        | Change::PasscodesPurged { .. }
        | Change::AccessChanged => None,
    }
}

/// A command ready to be signed: the action, and the sealed secrets a reset carries.
#[derive(Debug)]
pub(crate) struct QueuedCommand {
    pub(crate) action: Action,
    pub(crate) sealed_passcode: Option<Vec<u8>>,
    pub(crate) sealed_token: Option<Vec<u8>>,
}

/// The hot state and its followers. Shared by the control plane and the store's writer (as its
/// commit observer).
#[derive(Debug)]
pub(crate) struct Hot {
    index: RwLock<Index>,
    /// The session task of every connected device, so a new command reaches it at once.
    sessions: Mutex<HashMap<String, Arc<SessionSignals>>>,
    /// WatchAction streams, by action id.
    pub(crate) action_watchers: Arc<Watchers<Action>>,
    /// WatchDevice and WatchDevices streams, by device id; told the id of the device that
    /// changed.
    pub(crate) device_watchers: Arc<Watchers<String>>,
    /// Every action change, for the metrics (sent only while someone listens).
    action_changes: broadcast::Sender<Action>,
    /// The id of every device that changed, for the metrics (sent only while someone listens).
    device_changes: broadcast::Sender<String>,
    /// Bumped by every change to roles, principals, assignments or admin tokens, so the control
    /// plane's cache of authenticated principals drops what it holds and open watches check
    /// their caller again.
    pub(crate) access_generation: tokio::sync::watch::Sender<u64>,
}

impl Hot {
    pub(crate) fn new(states: Vec<DeviceState>) -> Hot {
        let mut index = Index::default();
        index.devices.reserve(states.len());
        for state in states {
            index.insert(state);
        }
        Hot {
            index: RwLock::new(index),
            sessions: Mutex::new(HashMap::new()),
            action_watchers: Arc::new(Watchers::default()),
            device_watchers: Arc::new(Watchers::default()),
            action_changes: broadcast::channel(4096).0,
            device_changes: broadcast::channel(4096).0,
            access_generation: tokio::sync::watch::channel(0).0,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn sessions(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, Arc<SessionSignals>>> {
        self.sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn device(&self, device_id: &str) -> Option<Device> {
        self.read().devices.get(device_id).map(|d| d.device.clone())
    }

    /// The device and the public key its session proofs must verify with, if it has one.
    pub(crate) fn device_with_key(&self, device_id: &str) -> Option<(Device, [u8; 32])> {
        let index = self.read();
        let hot = index.devices.get(device_id)?;
        Some((hot.device.clone(), hot.public_key?))
    }

    /// The device's open command `action_id`, if it has one.
    pub(crate) fn open_command(&self, device_id: &str, action_id: &str) -> Option<Action> {
        let index = self.read();
        let hot = index.devices.get(device_id)?;
        hot.open_commands
            .iter()
            .find(|c| c.action.id == action_id)
            .map(|c| c.action.clone())
    }

    /// The device's open commands above `after_sequence`, by sequence, with the sealed passcode
    /// and escrowed token each needs.
    pub(crate) fn commands_after(
        &self,
        device_id: &str,
        after_sequence: u64,
    ) -> Vec<QueuedCommand> {
        let index = self.read();
        let Some(hot) = index.devices.get(device_id) else {
            return Vec::new();
        };
        // A command with a cancel requested goes as its cancel, at the cancel's sequence.
        let outbound = |action: &Action| action.cancel_sequence.or(action.sequence).unwrap_or(0);
        let mut queued: Vec<QueuedCommand> = hot
            .open_commands
            .iter()
            .filter(|c| outbound(&c.action) > after_sequence)
            .map(|c| QueuedCommand {
                action: c.action.clone(),
                sealed_passcode: c.sealed_passcode.clone(),
                sealed_token: hot
                    .escrow_tokens
                    .iter()
                    .find(|(scope, _)| *scope == c.action.scope)
                    .map(|(_, sealed)| sealed.clone()),
            })
            .collect();
        queued.sort_by_key(|c| outbound(&c.action));
        queued
    }

    /// The escrowed token the control plane holds for the store, sealed.
    pub(crate) fn escrow_token(&self, device_id: &str, scope: Scope) -> Option<Vec<u8>> {
        let index = self.read();
        let hot = index.devices.get(device_id)?;
        hot.escrow_tokens
            .iter()
            .find(|(held, _)| *held == scope)
            .map(|(_, sealed)| sealed.clone())
    }

    pub(crate) fn is_online(&self, device_id: &str) -> bool {
        self.sessions().contains_key(device_id)
    }

    pub(crate) fn watch_actions(&self) -> broadcast::Receiver<Action> {
        self.action_changes.subscribe()
    }

    pub(crate) fn watch_devices(&self) -> broadcast::Receiver<String> {
        self.device_changes.subscribe()
    }

    /// Tells whoever follows the device that it changed (status, tokens, policy, online).
    pub(crate) fn device_changed(&self, device_id: &str) {
        self.device_watchers
            .send(device_id, || device_id.to_string());
        if self.device_changes.receiver_count() > 0 {
            let _ = self.device_changes.send(device_id.to_string());
        }
    }

    fn action_changed(&self, action: &Action) {
        self.action_watchers.send(&action.id, || action.clone());
        if self.action_changes.receiver_count() > 0 {
            let _ = self.action_changes.send(action.clone());
        }
    }

    fn signal(&self, device_id: &str, wake: impl FnOnce(&SessionSignals)) {
        if let Some(signals) = self.sessions().get(device_id) {
            wake(signals);
        }
    }
}

impl CommitObserver for Hot {
    fn committed(&self, changes: Vec<Change>) {
        {
            let mut index = self
                .index
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for change in &changes {
                index.apply(change);
            }
        }
        // Followers are told once the index holds the commit, so what they read is at least
        // as new as what woke them.
        for change in &changes {
            if let Some(device_id) = device_of(change) {
                self.device_changed(device_id);
            }
            match change {
                Change::Policy { device_id, .. } => {
                    self.signal(device_id, |s| s.policy.notify_one());
                }
                // A command held for a fresher token may go now.
                Change::EscrowToken { device_id, .. } => {
                    self.signal(device_id, |s| s.commands.notify_one());
                }
                Change::KeyRevoked { device_id } => {
                    self.signal(device_id, |s| s.revoked.notify_one());
                }
                Change::ActionCreated(command) => {
                    self.action_changed(&command.action);
                    if !command.action.state.is_final() {
                        let device_id = &command.action.device_id;
                        self.signal(device_id, |s| s.commands.notify_one());
                    }
                }
                Change::ActionChanged(action) => {
                    self.action_changed(action);
                    // A cancel requested (or withdrawn) changes what the session sends.
                    if action.cancel_requested_at.is_some() && !action.state.is_final() {
                        self.signal(&action.device_id, |s| s.commands.notify_one());
                    }
                }
                Change::AccessChanged => {
                    self.access_generation
                        .send_modify(|generation| *generation += 1);
                }
                Change::Enrolled(_)
                | Change::Status { .. }
                | Change::Build { .. }
                | Change::Moved { .. }
                | Change::PasscodesPurged { .. } => {}
            }
        }
    }
}

/// Streams following keys (an action id, a device id): a change is handed to the watches of its
/// key only, never to every watch.
#[derive(Debug)]
pub(crate) struct Watchers<T> {
    by_key: Mutex<HashMap<String, Vec<Arc<Inbox<T>>>>>,
}

impl<T> Default for Watchers<T> {
    fn default() -> Watchers<T> {
        Watchers {
            by_key: Mutex::new(HashMap::new()),
        }
    }
}

/// What one watch has been handed and not yet taken.
#[derive(Debug)]
struct Inbox<T> {
    items: Mutex<Vec<T>>,
    ready: Notify,
}

/// One watch: follows its keys until dropped.
#[derive(Debug)]
pub(crate) struct Watch<T> {
    inbox: Arc<Inbox<T>>,
    keys: Vec<String>,
    watchers: Arc<Watchers<T>>,
}

impl<T> Watchers<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Arc<Inbox<T>>>>> {
        self.by_key
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts following `keys`.
    pub(crate) fn watch(self: &Arc<Self>, keys: Vec<String>) -> Watch<T> {
        let inbox = Arc::new(Inbox {
            items: Mutex::new(Vec::new()),
            ready: Notify::new(),
        });
        let mut by_key = self.lock();
        for key in &keys {
            by_key.entry(key.clone()).or_default().push(inbox.clone());
        }
        drop(by_key);
        Watch {
            inbox,
            keys,
            watchers: self.clone(),
        }
    }

    /// Hands the watches of `key` the item `make` makes (made only if someone follows `key`).
    fn send(&self, key: &str, make: impl FnOnce() -> T)
    where
        T: Clone,
    {
        let by_key = self.lock();
        let Some(inboxes) = by_key.get(key) else {
            return;
        };
        let item = make();
        for inbox in inboxes {
            inbox
                .items
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(item.clone());
            inbox.ready.notify_one();
        }
    }
}

impl<T> Watch<T> {
    /// Everything handed to this watch since the last call, oldest first; waits for something.
    pub(crate) async fn next(&self) -> Vec<T> {
        loop {
            let items = std::mem::take(
                &mut *self
                    .inbox
                    .items
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()),
            );
            if !items.is_empty() {
                return items;
            }
            // A hand-over after the take above left a permit, so this returns at once then.
            self.inbox.ready.notified().await;
        }
    }
}

impl<T> Drop for Watch<T> {
    fn drop(&mut self) {
        let mut by_key = self.watchers.lock();
        for key in &self.keys {
            if let Some(inboxes) = by_key.get_mut(key) {
                inboxes.retain(|inbox| !Arc::ptr_eq(inbox, &self.inbox));
                if inboxes.is_empty() {
                    by_key.remove(key);
                }
            }
        }
    }
}
