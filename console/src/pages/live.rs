//! Live panels: server-sent events that carry a panel's HTML again whenever what it shows changes.
//! They follow the admin API's own change streams (WatchAction, WatchDevice), so nothing polls
//! and each open page costs one audited watch call. The embedded script replaces the panel's
//! content with each `update` event and closes the stream on `end`.
//!
//! A stream ends when its watch ends (an action final, and for a reset the passcode entered),
//! when the browser goes away, or when the console stops.

use super::{SignedIn, State};
use crate::error::PageError;
use crate::pages::{actions, devices};
use axum::extract::{Path, State as Shared};
use axum::response::sse::{Event, KeepAlive, Sse};
use droidfleet_proto::v1 as pb;
use droidfleet_proto::v1::admin_service_server::AdminService;
use maud::Markup;
use std::convert::Infallible;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};

type Events = Sse<axum::response::sse::KeepAliveStream<ReceiverStream<Result<Event, Infallible>>>>;

/// Events buffered for a slow browser; a watch waits (it never drops an update) when it is full.
const BUFFER: usize = 8;

pub(crate) async fn action(
    Shared(state): Shared<State>,
    signed_in: SignedIn,
    Path(action_id): Path<String>,
) -> Result<Events, PageError> {
    let changes = state
        .api
        .watch_action(signed_in.request(pb::GetActionRequest {
            action_id,
            until_user_entered: true,
        }))
        .await?
        .into_inner();
    let clock = state.clock.clone();
    Ok(follow(&state, changes, move |action| {
        actions::status(&action, clock.now())
    }))
}

pub(crate) async fn device(
    Shared(state): Shared<State>,
    signed_in: SignedIn,
    Path(device_id): Path<String>,
) -> Result<Events, PageError> {
    let changes = state
        .api
        .watch_device(signed_in.request(pb::GetDeviceRequest { device_id }))
        .await?
        .into_inner();
    let clock = state.clock.clone();
    Ok(follow(&state, changes, move |device| {
        devices::status(&device, clock.now())
    }))
}

/// An event stream of `render(item)` for every item of `changes`, then `end`.
fn follow<T, S, R>(state: &State, mut changes: S, render: R) -> Events
where
    T: Send + 'static,
    S: Stream<Item = Result<T, tonic::Status>> + Send + Unpin + 'static,
    R: Fn(T) -> Markup + Send + 'static,
{
    let (events, received) = mpsc::channel(BUFFER);
    let mut stopping = state.stopping.clone();
    tokio::spawn(async move {
        loop {
            let item = tokio::select! {
                item = changes.next() => item,
                () = events.closed() => return,
                _ = stopping.wait_for(|stop| *stop) => return,
            };
            let event = match item {
                Some(Ok(item)) => Event::default()
                    .event("update")
                    .data(render(item).into_string()),
                Some(Err(status)) => {
                    tracing::debug!(code = ?status.code(), "a live panel's watch ended");
                    break;
                }
                None => break,
            };
            if events.send(Ok(event)).await.is_err() {
                return;
            }
        }
        let _ = events
            .send(Ok(Event::default().event("end").data("end")))
            .await;
    });
    Sse::new(ReceiverStream::new(received)).keep_alive(KeepAlive::default())
}
