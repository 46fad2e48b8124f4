//! What the two fleet walls share (`droidfleet loadtest --console` and `droidfleet agent run
//! --console`): serving a wall the console's way, live panels redrawn on every sample, the
//! charts, and a device's screen drawn small (a grid tile) or in full (its page).
//!
//! Layout: this file serves a wall and follows its samples; `chart.rs` draws a line chart;
//! `screen.rs` draws a device's screen. Each wall keeps its own samples and pages.

mod chart;
mod screen;

pub(crate) use chart::{Timed, chart};
pub(crate) use screen::{screen_card, screen_tile};

use axum::Router;
use axum::response::sse::{Event, KeepAlive, Sse};
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::{ReceiverStream, WatchStream};

/// A live panel's stream of redraws.
pub(crate) type Events =
    Sse<axum::response::sse::KeepAliveStream<ReceiverStream<Result<Event, Infallible>>>>;

/// Serves `router` (with the console's assets and security headers) on `listener` until
/// `stopped` turns true.
pub(crate) async fn serve(
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
