//! The console's pages and the forms they post, one file per part of the console:
//! - `sign_in.rs`: signing in with an admin token and out again.
//! - `devices.rs`: the device list (search, filters, pages) and a device's page with its stores,
//!   policies, rules, actions and the Reset passcode / Remote lock buttons.
//! - `actions.rs`: an action's page (its state live, the reveal panel), and the forms that start,
//!   cancel and reveal actions.
//! - `live.rs`: the server-sent events that keep a device's status and an action's state live.
//! - `audit.rs`: the audit log.
//! - `access.rs`: the caller's own roles, and roles and assignments (changed where allowed).
//! - `words.rs`: the words for the API's values and the seed's rules.
//!
//! Every handler reaches the control plane only through [`AdminApi`], with the session's token,
//! so each page and each button is exactly one admin API call: the same RBAC, the same audit.

mod access;
mod actions;
mod audit;
mod devices;
mod live;
mod sign_in;
mod words;

use crate::error::PageError;
use crate::layout;
use crate::session::{SESSION_COOKIE, Session, Sessions, cookie, tokens_match};
use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::routing::{get, post};
use droidfleet_control_plane::clock::Clock;
use droidfleet_control_plane::grpc::AdminApi;
use droidfleet_control_plane::secret::BearerToken;
use maud::{Markup, html};
use std::sync::Arc;
use tokio::sync::watch;

/// What every handler shares.
pub(crate) struct ConsoleState {
    /// The control plane's admin API, called in this process.
    pub(crate) api: AdminApi,
    pub(crate) sessions: Sessions,
    /// For the dates pages show relative to now.
    pub(crate) clock: Arc<dyn Clock>,
    /// Served over TLS: cookies get the Secure attribute.
    pub(crate) secure_cookies: bool,
    /// Turns true when the server stops, so live streams end instead of holding it open.
    pub(crate) stopping: watch::Receiver<bool>,
}

pub(crate) type State = Arc<ConsoleState>;

/// The console's routes.
pub(crate) fn routes() -> Router<State> {
    Router::new()
        .route(
            "/",
            get(|| async { axum::response::Redirect::to("/devices") }),
        )
        .route("/sign-in", get(sign_in::form).post(sign_in::submit))
        .route("/sign-out", post(sign_in::sign_out))
        .route("/devices", get(devices::list))
        .route("/devices/{device_id}", get(devices::device))
        .route("/devices/{device_id}/live", get(live::device))
        .route("/devices/{device_id}/reset", post(actions::reset))
        .route("/devices/{device_id}/lock", post(actions::lock))
        .route("/actions/{action_id}", get(actions::action))
        .route("/actions/{action_id}/live", get(live::action))
        .route("/actions/{action_id}/reveal", post(actions::reveal))
        .route("/actions/{action_id}/cancel", post(actions::cancel))
        .route("/audit", get(audit::log))
        .route("/access", get(access::page))
        .route("/access/assign", post(access::assign))
        .route("/access/unassign", post(access::unassign))
}

/// A request from a signed-in admin: its session, found by the session cookie.
pub(crate) struct SignedIn {
    pub(crate) session: Arc<Session>,
}

impl FromRequestParts<State> for SignedIn {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Self, PageError> {
        let id = cookie(&parts.headers, SESSION_COOKIE).ok_or(PageError::SignIn)?;
        let session = state.sessions.find(id).ok_or(PageError::SignIn)?;
        Ok(SignedIn { session })
    }
}

impl SignedIn {
    /// An admin API request carrying this session's token.
    pub(crate) fn request<T>(&self, message: T) -> tonic::Request<T> {
        authorized(&self.session.bearer, message)
    }

    /// Refuses a form whose CSRF token is not this session's.
    pub(crate) fn check_csrf(&self, given: &str) -> Result<(), PageError> {
        if tokens_match(&self.session.csrf, given) {
            Ok(())
        } else {
            Err(PageError::Forged)
        }
    }
}

/// An admin API request carrying `bearer`, as the gRPC API receives it from a client.
pub(crate) fn authorized<T>(bearer: &BearerToken, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    // Tokens are visible ASCII (the control plane makes them); anything else is sent as none,
    // which the API answers as unauthenticated.
    if let Ok(value) = format!("Bearer {}", bearer.expose()).parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// The parts of the console the top bar links to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    Devices,
    Audit,
    Access,
}

/// A page of a signed-in session: the top bar with its links, who is signed in and the sign-out
/// button, then `main`.
pub(crate) fn frame(signed_in: &SignedIn, section: Section, title: &str, main: Markup) -> Markup {
    let link = |to: Section, href: &str, text: &str| {
        html! {
            a href=(href) class=[(section == to).then_some("current")] { (text) }
        }
    };
    let bar = html! {
        nav {
            (link(Section::Devices, "/devices", "Devices"))
            (link(Section::Audit, "/audit", "Audit log"))
            (link(Section::Access, "/access", "Roles and access"))
        }
        div.who {
            span #principal { (signed_in.session.principal) }
            form method="post" action="/sign-out" {
                (csrf_field(signed_in))
                button.link type="submit" { "Sign out" }
            }
        }
    };
    layout::page(title, bar, main)
}

/// The hidden CSRF field every form of a session carries.
pub(crate) fn csrf_field(signed_in: &SignedIn) -> Markup {
    html! { input type="hidden" name="csrf" value=(signed_in.session.csrf); }
}
