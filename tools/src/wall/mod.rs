//! What the two fleet walls share (`droidfleet loadtest --console` and `droidfleet agent run
//! --console`): serving a wall the console's way, live panels redrawn on every sample, the
//! charts, and a device's screen drawn small (a grid tile) or in full (its page).
//!
//! Layout: this file runs a wall (its sampler and its server, stopped together) and follows its
//! samples; `chart.rs` draws a line chart; `screen.rs` draws a device's screen. Each wall keeps
//! its own samples and pages.

mod chart;
mod screen;

pub(crate) use chart::{Timed, chart};
pub(crate) use screen::{screen_card, screen_tile};

use axum::Router;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use droidfleet_console::layout;
use maud::{Markup, html};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::{ReceiverStream, WatchStream};

/// How often a wall samples what it shows (and live pages redraw).
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// Samples the charts keep: the last ten minutes.
pub(crate) const HISTORY: usize = 600;
/// Screens in a wall's grid.
pub(crate) const TILES: usize = 24;

/// A device's page on a wall: crumbs back to the wall, its name, and `live`, the part redrawn
/// from `/devices/<name>/live` on every sample. `bar` is the wall's status bar.
pub(crate) fn device_page(name: &str, bar: Markup, live: Markup) -> Markup {
    let main = html! {
        p.crumbs { a href="/" { "Fleet wall" } " › " (name) }
        h1 #device-name { (name) }
        section #device data-live={ "/devices/" (name) "/live" } { (live) }
    };
    layout::page(name, bar, main)
}

/// The answer for a device the wall does not show: 404, naming it. `host` says who would host it
/// ("This agent", "This run").
pub(crate) fn unknown_device(host: &str, name: &str, bar: Markup) -> (StatusCode, Markup) {
    let body = html! {
        section.card.refusal {
            h1 { "Not found" }
            p { (host) " hosts no device named " code { (name) } "." }
            p { a href="/" { "Back to the wall" } }
        }
    };
    (StatusCode::NOT_FOUND, layout::page("Not found", bar, body))
}

/// What a wall's handlers share.
pub(crate) struct Served<W> {
    pub(crate) wall: Arc<W>,
    /// Turns true when the wall stops; live streams end then.
    pub(crate) stopped: watch::Receiver<bool>,
}

// Derived `Clone` would ask `W: Clone`; handlers only clone the `Arc`.
impl<W> Clone for Served<W> {
    fn clone(&self) -> Self {
        Served {
            wall: self.wall.clone(),
            stopped: self.stopped.clone(),
        }
    }
}

/// A running wall: its sampler and its server, stopped together by [`RunningWall::stop`].
pub(crate) struct RunningWall {
    stop: watch::Sender<bool>,
    tasks: tokio::task::JoinSet<()>,
}

impl RunningWall {
    /// Serves `routes` for `wall` on `listener` and calls `sample` every [`SAMPLE_EVERY`] until
    /// stopped.
    pub(crate) fn start<W>(
        listener: tokio::net::TcpListener,
        wall: Arc<W>,
        routes: Router<Served<W>>,
        mut sample: impl FnMut(&W) + Send + 'static,
    ) -> RunningWall
    where
        W: Send + Sync + 'static,
    {
        let (stop, stopped) = watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        let sampled = wall.clone();
        let mut sampler_stopped = stopped.clone();
        tasks.spawn(async move {
            let mut ticks = tokio::time::interval(SAMPLE_EVERY);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = sampler_stopped.wait_for(|s| *s) => return,
                }
                sample(&sampled);
            }
        });
        let router = routes.with_state(Served {
            wall,
            stopped: stopped.clone(),
        });
        tasks.spawn(serve(listener, router, stopped));
        RunningWall { stop, tasks }
    }

    /// Stops serving (live pages end) and sampling, and waits until both have.
    pub(crate) async fn stop(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

/// A live panel's stream of redraws.
pub(crate) type Events =
    Sse<axum::response::sse::KeepAliveStream<ReceiverStream<Result<Event, Infallible>>>>;

/// Serves `router` (with the console's assets and security headers) on `listener` until
/// `stopped` turns true.
async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    mut stopped: watch::Receiver<bool>,
) {
    let router = router.merge(droidfleet_console::layout::asset_routes());
    let router = droidfleet_console::http::with_security_headers(router);
    droidfleet_console::http::serve(listener, None, router, async move {
        let _ = stopped.wait_for(|s| *s).await;
    })
    .await;
}

/// Redraws `render(sample)` on every change of `latest` until `stopped` turns true or the page
/// goes away.
pub(crate) fn follow<S, R>(
    latest: &watch::Sender<Arc<S>>,
    stopped: &watch::Receiver<bool>,
    render: R,
) -> Events
where
    S: Send + Sync + 'static,
    R: Fn(&S) -> maud::Markup + Send + 'static,
{
    let (events, received) = tokio::sync::mpsc::channel(4);
    let mut samples = WatchStream::new(latest.subscribe());
    let mut stopped = stopped.clone();
    tokio::spawn(async move {
        loop {
            let sample = tokio::select! {
                sample = samples.next() => match sample {
                    Some(sample) => sample,
                    None => return,
                },
                () = events.closed() => return,
                _ = stopped.wait_for(|s| *s) => return,
            };
            let event = Event::default()
                .event("update")
                .data(render(&sample).into_string());
            if events.send(Ok(event)).await.is_err() {
                return;
            }
        }
    });
    Sse::new(ReceiverStream::new(received)).keep_alive(KeepAlive::default())
}
