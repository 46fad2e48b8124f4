//! `droidfleet agent run [--console ADDR]`: the agent's `run`, plus a live fleet wall of the
//! devices this process hosts while it runs. The agent crate keeps no web UI (it depends on the
//! proto crate only); it hands over its loaded fleet (`droidfleet_agent::cli::load`) and this
//! module samples the fleet's screens once a second: counts of what the screens show, those
//! counts over time, and a grid of screens spread over the fleet, each a link to its device's
//! page. Served and drawn as the load test's wall is (`crate::wall`).
//!
//! Layout: this file has the arguments, the run, the sampled state and the server; `page.rs`
//! renders the pages.
//!
//! The wall is read-only and shows no secret: screens show lock states and notifications, as a
//! phone's lock screen does; never a passcode, a token or the enrollment token.

mod page;

use crate::wall::{Events, HISTORY, RunningWall, TILES, Timed};
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use droidfleet_agent::cli::{RunArgs, RunError};
use droidfleet_agent::device::TokenState;
use droidfleet_agent::fleet::{Fleet, Screen};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::time::Instant;

/// Host simulated Android devices that enroll with a control plane and take its commands.
#[derive(Clone, Debug, clap::Args)]
pub struct AgentRunArgs {
    #[command(flatten)]
    pub agent: RunArgs,
    /// Serve a live, read-only fleet wall of the hosted devices on this address while the agent
    /// runs (counts of what their screens show, those counts over time, a grid of screens each
    /// linking to its device); off when not given. Only `droidfleet agent run` has it.
    #[arg(long, value_name = "ADDR")]
    pub console: Option<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentWallError {
    #[error(transparent)]
    Agent(#[from] RunError),
    #[error("the fleet wall (--console): cannot listen on {address}: {source}")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
}

/// Runs the agent until `shutdown` resolves, with its fleet wall if `--console` is given. The
/// wall's address is bound before the fleet loads, so a taken address fails at once.
pub async fn run(
    args: AgentRunArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), AgentWallError> {
    let listener = match args.console {
        Some(address) => Some(
            tokio::net::TcpListener::bind(address)
                .await
                .map_err(|source| AgentWallError::Listen { address, source })?,
        ),
        None => None,
    };
    let agent = droidfleet_agent::cli::load(args.agent).await?;
    let wall = match listener {
        Some(listener) => {
            let address = listener
                .local_addr()
                .map_err(|source| AgentWallError::Listen {
                    address: args.console.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
                    source,
                })?;
            println!("fleet wall on http://{address}/");
            Some(start_wall(listener, agent.fleet().clone()))
        }
        None => None,
    };
    let ran = agent.run(shutdown).await;
    if let Some(wall) = wall {
        wall.stop().await;
    }
    Ok(ran?)
}

/// The fleet at one moment, counted by what the screens show.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Counts {
    connected: usize,
    offline: usize,
    /// Waiting for a re-enrollment token after an admin revoked the credential.
    re_enrollment_required: usize,
    /// Credential stores (a device's and a work profile's) by lock state.
    stores_locked: usize,
    stores_unlocked: usize,
    stores_wiped: usize,
    /// Devices showing at least one notification.
    notifying: usize,
    /// Escrow tokens by state, over all stores.
    tokens_pending: usize,
    tokens_active: usize,
}

impl Counts {
    /// Counts one more device's screen.
    fn add(&mut self, screen: &Screen) {
        let counts = self;
        {
            if screen.connected {
                counts.connected += 1;
            } else {
                counts.offline += 1;
            }
            if screen.re_enrollment_required {
                counts.re_enrollment_required += 1;
            }
            if !screen.notifications.is_empty() {
                counts.notifying += 1;
            }
            for store in &screen.stores {
                if store.wiped {
                    counts.stores_wiped += 1;
                } else if store.locked {
                    counts.stores_locked += 1;
                } else {
                    counts.stores_unlocked += 1;
                }
                match store.token_state {
                    TokenState::None => {}
                    TokenState::Pending => counts.tokens_pending += 1,
                    TokenState::Active => counts.tokens_active += 1,
                }
            }
        }
    }
}

/// One second of the fleet, for the chart.
#[derive(Clone, Debug)]
struct Sample {
    /// Seconds since the wall started.
    at_s: f64,
    counts: Counts,
}

impl Timed for Sample {
    fn at_s(&self) -> f64 {
        self.at_s
    }
}

/// What the wall shows at one moment.
#[derive(Clone, Debug)]
struct Snapshot {
    elapsed_s: f64,
    devices: usize,
    counts: Counts,
    history: Vec<Sample>,
    tiles: Vec<Screen>,
}

/// The hosted fleet and its latest sample.
struct Wall {
    fleet: Arc<Fleet>,
    /// Every device's name, in the fleet's order; the grid's are spread evenly over them.
    names: Vec<String>,
    /// The same names, to answer a device page's address without a scan.
    known: HashSet<String>,
    started: Instant,
    /// The latest sample; live pages follow its changes.
    latest: watch::Sender<Arc<Snapshot>>,
}

impl Wall {
    fn new(fleet: Arc<Fleet>) -> Wall {
        let names: Vec<String> = fleet.names().map(str::to_string).collect();
        let known = names.iter().cloned().collect();
        let empty = Snapshot {
            elapsed_s: 0.0,
            devices: names.len(),
            counts: Counts::default(),
            history: Vec::new(),
            tiles: Vec::new(),
        };
        Wall {
            fleet,
            names,
            known,
            started: Instant::now(),
            latest: watch::channel(Arc::new(empty)).0,
        }
    }

    /// Names of the grid's devices, spread evenly over the fleet.
    fn tile_names(&self) -> impl Iterator<Item = &str> {
        let devices = self.names.len();
        let count = devices.min(TILES);
        (0..count).map(move |i| self.names[i * devices / count].as_str())
    }

    /// Reads every device's screen once: a clone per device under its lock, the same cost as
    /// one WatchScreens update each.
    fn sample(&self, history: &mut Vec<Sample>) -> Snapshot {
        let elapsed_s = self.started.elapsed().as_secs_f64();
        let mut counts = Counts::default();
        for name in &self.names {
            if let Ok(screen) = self.fleet.screen(name) {
                counts.add(&screen);
            }
        }
        history.push(Sample {
            at_s: elapsed_s,
            counts: counts.clone(),
        });
        if history.len() > HISTORY {
            history.remove(0);
        }
        let tiles = self
            .tile_names()
            .filter_map(|name| self.fleet.screen(name).ok())
            .collect();
        Snapshot {
            elapsed_s,
            devices: self.names.len(),
            counts,
            history: history.clone(),
            tiles,
        }
    }
}

/// Serves the wall of `fleet` on `listener`; samples once a second.
fn start_wall(listener: tokio::net::TcpListener, fleet: Arc<Fleet>) -> RunningWall {
    let routes = Router::new()
        .route("/", get(page::wall))
        .route("/live", get(live_wall))
        .route("/devices/{name}", get(page::device))
        .route("/devices/{name}/live", get(live_device));
    let mut history = Vec::new();
    RunningWall::start(listener, Arc::new(Wall::new(fleet)), routes, move |wall| {
        let snapshot = wall.sample(&mut history);
        wall.latest.send_replace(Arc::new(snapshot));
    })
}

/// What the wall's handlers share.
type Served = crate::wall::Served<Wall>;

async fn live_wall(State(served): State<Served>) -> Events {
    crate::wall::follow(&served.wall.latest, &served.stopped, page::live)
}

async fn live_device(State(served): State<Served>, Path(name): Path<String>) -> Events {
    let wall = served.wall.clone();
    crate::wall::follow(&served.wall.latest, &served.stopped, move |_| {
        page::device_live(&wall, &name)
    })
}
