//! The fleet wall of `droidfleet loadtest --console ADDR`: a live page of the run while it goes,
//! as Locust's web UI and k6's dashboard show theirs. It samples what this process already holds
//! (the run's per-device records and the hosted fleet's screens) once a second: the counts by
//! state, throughput and latency over time, and a grid of device screens spread over the fleet,
//! each a link to that device's page. Pages and live panels use the console's layout, stylesheet
//! and script (`droidfleet_console::layout`), served the console's way (`droidfleet_console::http`).
//!
//! Layout: this file keeps the sampled state and serves it; `page.rs` renders it.
//!
//! The wall is read-only and shows no secret: a simulated user's passcodes and the admin token
//! stay with the run; screens show lock states and notifications, as a phone's lock screen does.

mod page;

use super::error::LoadtestError;
use super::report::DeviceRecord;
use crate::wall::{Events, HISTORY, RunningWall, TILES};
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use droidfleet_agent::clock::{Clock, SystemClock};
use droidfleet_agent::fleet::{Fleet, Screen};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::watch;
use tokio::time::Instant;

/// Where the run stands, as the wall's top bar says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    Connecting,
    SettingUp,
    Resetting,
    Finished,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Connecting => "connecting",
            Phase::SettingUp => "setting up",
            Phase::Resetting => "resetting",
            Phase::Finished => "finished",
        }
    }
}

/// One second of the run, for the charts.
#[derive(Clone, Debug)]
struct Sample {
    /// Seconds since the run started.
    at_s: f64,
    /// Resets that reached a final state in this second.
    finished: usize,
    /// Requested → applied, in ms, of the resets done in this second (`None`: none was).
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
}

/// One device of the grid: its screen now and its reset's state.
#[derive(Clone, Debug)]
struct Tile {
    screen: Screen,
    state: String,
}

/// What the wall shows at one moment.
#[derive(Clone, Debug)]
struct Snapshot {
    phase: Phase,
    elapsed_s: f64,
    devices: usize,
    connected: u64,
    /// Devices per reset state (`not_issued` before a device's reset is requested).
    states: BTreeMap<String, usize>,
    /// Resets whose new passcode the user has entered.
    entered: usize,
    /// Final resets that did not end as the device's injected failure predicts.
    unexpected: usize,
    history: Vec<Sample>,
    tiles: Vec<Tile>,
}

/// The run's live state, fed by the run and sampled for the pages.
pub(super) struct Wall {
    devices: usize,
    started: Instant,
    phase: Mutex<Phase>,
    /// The hosted fleet, once loaded.
    fleet: OnceLock<Arc<Fleet>>,
    /// Device names in plan order, and each one's index there (for the device pages).
    names: OnceLock<(Vec<String>, HashMap<String, usize>)>,
    /// The measured phase's records, once it starts.
    records: OnceLock<Arc<Mutex<Vec<DeviceRecord>>>>,
    /// The latest sample; live pages follow its changes.
    latest: watch::Sender<Arc<Snapshot>>,
}

impl Wall {
    fn new(devices: usize) -> Wall {
        let started = Instant::now();
        let empty = Snapshot {
            phase: Phase::Connecting,
            elapsed_s: 0.0,
            devices,
            connected: 0,
            states: BTreeMap::new(),
            entered: 0,
            unexpected: 0,
            history: Vec::new(),
            tiles: Vec::new(),
        };
        Wall {
            devices,
            started,
            phase: Mutex::new(Phase::Connecting),
            fleet: OnceLock::new(),
            names: OnceLock::new(),
            records: OnceLock::new(),
            latest: watch::channel(Arc::new(empty)).0,
        }
    }

    pub(super) fn set_phase(&self, phase: Phase) {
        *self.phase.lock().expect("phase lock") = phase;
    }

    /// The fleet is loaded: its screens can be sampled.
    pub(super) fn attach_fleet(&self, fleet: Arc<Fleet>, names: Vec<String>) {
        let index = names
            .iter()
            .enumerate()
            .map(|(i, name)| (name.clone(), i))
            .collect();
        let _ = self.names.set((names, index));
        let _ = self.fleet.set(fleet);
    }

    /// The measured phase started: its records give the states and latencies.
    pub(super) fn attach_records(&self, records: Arc<Mutex<Vec<DeviceRecord>>>) {
        let _ = self.records.set(records);
    }

    /// Indices of the grid's devices, spread evenly over the plan order.
    fn tile_indices(&self) -> Vec<usize> {
        let count = self.devices.min(TILES);
        (0..count).map(|i| i * self.devices / count).collect()
    }

    /// The record of device `index`, if the measured phase has started.
    fn record(&self, index: usize) -> Option<DeviceRecord> {
        let records = self.records.get()?.lock().expect("records lock");
        records.get(index).cloned()
    }

    fn screen(&self, index: usize) -> Option<Screen> {
        let (names, _) = self.names.get()?;
        self.fleet.get()?.screen(names.get(index)?).ok()
    }

    /// Takes a sample: `previous` is the last one's wall-clock time (ms) for the latencies.
    fn sample(&self, history: &mut Vec<Sample>, previous_ms: u64, now_ms: u64) -> Snapshot {
        let phase = *self.phase.lock().expect("phase lock");
        let elapsed_s = self.started.elapsed().as_secs_f64();
        let connected = self
            .fleet
            .get()
            .map(|f| f.metrics().devices_connected.load(Ordering::Relaxed))
            .unwrap_or(0);
        let mut states = BTreeMap::new();
        let (mut entered, mut unexpected, mut finished) = (0, 0, 0);
        let mut latencies = Vec::new();
        if let Some(records) = self.records.get() {
            for record in records.lock().expect("records lock").iter() {
                // Looked up before inserting: a hundred thousand records, a handful of states.
                match states.get_mut(&record.state) {
                    Some(count) => *count += 1,
                    None => {
                        states.insert(record.state.clone(), 1);
                    }
                }
                if record.user_entered_at_ms > 0 {
                    entered += 1;
                }
                let is_final = super::report::is_final(&record.state);
                // A reset done as predicted is still awaiting its user's entry, not unexpected.
                let awaiting_entry =
                    record.state == "done" && record.predicted.error_code.is_none();
                if is_final && !record.as_expected() && !awaiting_entry {
                    unexpected += 1;
                }
                let ended_now =
                    record.completed_at_ms > previous_ms && record.completed_at_ms <= now_ms;
                if is_final && ended_now {
                    finished += 1;
                    if record.state == "done" && record.created_at_ms > 0 {
                        latencies.push(
                            record.completed_at_ms.saturating_sub(record.created_at_ms) as f64
                        );
                    }
                }
            }
        }
        latencies.sort_by(f64::total_cmp);
        let quantile = |q: f64| -> Option<f64> {
            (!latencies.is_empty()).then(|| {
                let rank = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len());
                latencies[rank - 1]
            })
        };
        if phase == Phase::Resetting || finished > 0 {
            history.push(Sample {
                at_s: elapsed_s,
                finished,
                p50_ms: quantile(0.5),
                p99_ms: quantile(0.99),
            });
            if history.len() > HISTORY {
                history.remove(0);
            }
        }
        let tiles = self
            .tile_indices()
            .into_iter()
            .filter_map(|i| {
                Some(Tile {
                    screen: self.screen(i)?,
                    state: self
                        .record(i)
                        .map(|r| r.state)
                        .unwrap_or_else(|| "not_issued".into()),
                })
            })
            .collect();
        Snapshot {
            phase,
            elapsed_s,
            devices: self.devices,
            connected,
            states,
            entered,
            unexpected,
            history: history.clone(),
            tiles,
        }
    }
}

/// A running wall: stops with [`WallServer::stop`].
pub(super) struct WallServer {
    pub(super) wall: Arc<Wall>,
    pub(super) address: SocketAddr,
    running: RunningWall,
}

impl WallServer {
    /// Binds `address` and serves the wall of a run of `devices` devices; samples once a second.
    pub(super) async fn start(
        address: SocketAddr,
        devices: usize,
    ) -> Result<WallServer, LoadtestError> {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|source| LoadtestError::WallListen { address, source })?;
        let address = listener
            .local_addr()
            .map_err(|source| LoadtestError::WallListen { address, source })?;
        let wall = Arc::new(Wall::new(devices));
        let routes = Router::new()
            .route("/", get(page::wall))
            .route("/live", get(live_wall))
            .route("/devices/{name}", get(page::device))
            .route("/devices/{name}/live", get(live_device));
        let mut history = Vec::new();
        let mut previous_ms = SystemClock.now_ms();
        let running = RunningWall::start(listener, wall.clone(), routes, move |wall| {
            let now_ms = SystemClock.now_ms();
            let snapshot = wall.sample(&mut history, previous_ms, now_ms);
            previous_ms = now_ms;
            wall.latest.send_replace(Arc::new(snapshot));
        });
        Ok(WallServer {
            wall,
            address,
            running,
        })
    }

    /// Stops serving (live pages end) and waits until it has.
    pub(super) async fn stop(self) {
        self.running.stop().await;
    }
}

/// What the wall's handlers share.
type Served = crate::wall::Served<Wall>;

/// Redraws `render(snapshot)` on every sample until the wall stops or the page goes away.
fn follow<R>(served: &Served, render: R) -> Events
where
    R: Fn(&Snapshot) -> maud::Markup + Send + 'static,
{
    crate::wall::follow(&served.wall.latest, &served.stopped, render)
}

async fn live_wall(State(served): State<Served>) -> Events {
    follow(&served, page::live)
}

async fn live_device(State(served): State<Served>, Path(name): Path<String>) -> Events {
    let wall = served.wall.clone();
    follow(&served, move |_| page::device_live(&wall, &name))
}
