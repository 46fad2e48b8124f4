//! When a device has answered a command, learned from the agent in this process rather than
//! from the control plane.
//!
//! Following every reset with its own WatchAction stream makes the control plane wake every
//! open watch on every action change: with thousands of resets in flight (a --rate the control
//! plane cannot keep up with) that is millions of wake-ups per second, and the load generator
//! would be measuring its own watches. One subscriber to the fleet's screen changes instead
//! learns when each device answered its command, whatever the number in flight; the per-device
//! task then reads the action once (or a few times, backing off) from the control plane.

use super::error::LoadtestError;
use droidfleet_agent::fleet::Fleet;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, oneshot, watch};

/// A device's pending question: has it answered this command yet?
struct Waiter {
    command_id: String,
    answered: oneshot::Sender<()>,
}

pub(super) struct Answers {
    fleet: Arc<Fleet>,
    /// By device name; a device has at most one reset in flight.
    waiting: Mutex<HashMap<String, Waiter>>,
}

impl Answers {
    /// Subscribes to the fleet's screen changes and dispatches them until `stop` turns true.
    pub(super) fn start(
        fleet: Arc<Fleet>,
        mut stop: watch::Receiver<bool>,
    ) -> (Arc<Answers>, tokio::task::JoinHandle<()>) {
        let answers = Arc::new(Answers {
            fleet: fleet.clone(),
            waiting: Mutex::new(HashMap::new()),
        });
        let mut changes = fleet.screen_changes();
        let dispatcher = answers.clone();
        let task = tokio::spawn(async move {
            loop {
                let change = tokio::select! {
                    change = changes.recv() => change,
                    _ = stop.wait_for(|s| *s) => return,
                };
                match change {
                    Ok(screen) => {
                        let mut waiting = dispatcher.lock();
                        let done = waiting
                            .get(&screen.name)
                            .is_some_and(|w| screen.applied_commands.contains_key(&w.command_id));
                        if done && let Some(waiter) = waiting.remove(&screen.name) {
                            let _ = waiter.answered.send(());
                        }
                    }
                    // Fell behind the broadcast: ask each waiting device directly instead.
                    Err(broadcast::error::RecvError::Lagged(_)) => dispatcher.recheck(),
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        (answers, task)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Waiter>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn has_answered(&self, name: &str, command_id: &str) -> bool {
        self.fleet
            .screen(name)
            .is_ok_and(|s| s.applied_commands.contains_key(command_id))
    }

    fn recheck(&self) {
        let mut waiting = self.lock();
        let answered: Vec<String> = waiting
            .iter()
            .filter(|(name, w)| self.has_answered(name, &w.command_id))
            .map(|(name, _)| name.clone())
            .collect();
        for name in answered {
            if let Some(waiter) = waiting.remove(&name) {
                let _ = waiter.answered.send(());
            }
        }
    }

    /// Returns once device `name` has answered command `command_id` (applied it or refused
    /// it), however long it is offline first; the caller bounds the wait.
    pub(super) async fn answered(&self, name: &str, command_id: &str) -> Result<(), LoadtestError> {
        let (tx, rx) = oneshot::channel();
        self.lock().insert(
            name.to_string(),
            Waiter {
                command_id: command_id.to_string(),
                answered: tx,
            },
        );
        // It may have answered before it was registered: that change went by unseen.
        if self.has_answered(name, command_id) {
            self.lock().remove(name);
            return Ok(());
        }
        rx.await.map_err(|_| LoadtestError::FleetStopped {
            device: name.to_string(),
        })
    }
}
