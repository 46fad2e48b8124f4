//! Signing in: the admin token is typed into a form and posted (never put in a URL), checked by
//! the admin API (GetCaller, audited like any call; an unknown token is refused unaudited, counted
//! by the admin-call metric), and kept in
//! a server-side session; the browser gets only the session's id. Signing out ends the session.

use super::{SignedIn, State, authorized};
use crate::error::PageError;
use crate::layout;
use crate::session::{SESSION_COOKIE, SIGN_IN_COOKIE, cookie, set_cookie, tokens_match};
use axum::Form;
use axum::extract::State as Shared;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use droidfleet_control_plane::secret::BearerToken;
use droidfleet_proto::v1 as pb;
use droidfleet_proto::v1::admin_service_server::AdminService;
use maud::html;

/// The sign-in form's fields. No `Debug`: it holds the token.
#[derive(serde::Deserialize)]
pub(crate) struct SignInForm {
    token: String,
    /// Must equal the sign-in cookie (a double submit): a page of this console sent the form.
    sign_in: String,
}

#[derive(serde::Deserialize)]
pub(crate) struct CsrfForm {
    csrf: String,
}

/// Where the sign-in cookie is sent: only to the sign-in form's own address.
const SIGN_IN_PATH: &str = "/sign-in";
/// How long a sign-in form stays usable, in seconds.
const SIGN_IN_FORM_SECONDS: u64 = 600;

pub(crate) async fn form(
    Shared(state): Shared<State>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    if let Some(id) = cookie(&headers, SESSION_COOKIE)
        && state.sessions.find(id).is_some()
    {
        return Ok(Redirect::to("/devices").into_response());
    }
    render(&state, StatusCode::OK, None)
}

/// The sign-in page with a fresh one-time token in its form and its cookie.
fn render(state: &State, status: StatusCode, problem: Option<&str>) -> Result<Response, PageError> {
    let token = state.sessions.random_token()?;
    let body = html! {
        section.card.sign-in {
            h1 { "Sign in" }
            p { "Paste your admin token. It is sent to this console once, kept on the server for \
                 your session, and never shown or put in an address." }
            @if let Some(problem) = problem {
                p.problem #sign-in-problem { (problem) }
            }
            form method="post" action=(SIGN_IN_PATH) {
                input type="hidden" name="sign_in" value=(token);
                label for="token" { "Admin token" }
                input #token type="password" name="token" autocomplete="off" required autofocus;
                button.primary type="submit" { "Sign in" }
            }
        }
    };
    let cookie = set_cookie(
        SIGN_IN_COOKIE,
        &token,
        SIGN_IN_PATH,
        state.secure_cookies,
        Some(SIGN_IN_FORM_SECONDS),
    );
    Ok((
        status,
        [(header::SET_COOKIE, cookie)],
        layout::page("Sign in", html! {}, body),
    )
        .into_response())
}

pub(crate) async fn submit(
    Shared(state): Shared<State>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Result<Response, PageError> {
    let expected = cookie(&headers, SIGN_IN_COOKIE).unwrap_or_default();
    if !tokens_match(expected, &form.sign_in) {
        return render(
            &state,
            StatusCode::FORBIDDEN,
            Some("This sign-in form expired or was not sent by this console. Try again."),
        );
    }
    let bearer = BearerToken::new(form.token.trim().to_string());
    let answer = state
        .api
        .get_caller(authorized(&bearer, pb::GetCallerRequest::default()))
        .await;
    let caller = match answer {
        Ok(caller) => caller.into_inner(),
        Err(status) if status.code() == tonic::Code::Unauthenticated => {
            return render(
                &state,
                StatusCode::UNAUTHORIZED,
                Some("The control plane does not know that token."),
            );
        }
        Err(status) => return Err(PageError::Api(status)),
    };
    let id = state.sessions.create(bearer, caller.name.clone())?;
    tracing::info!(principal = %caller.name, "console sign-in");
    // A browser-session cookie: closing the browser forgets it; the server ends it sooner.
    let session = set_cookie(SESSION_COOKIE, &id, "/", state.secure_cookies, None);
    let used = set_cookie(
        SIGN_IN_COOKIE,
        "",
        SIGN_IN_PATH,
        state.secure_cookies,
        Some(0),
    );
    let mut response = Redirect::to("/devices").into_response();
    response.headers_mut().append(header::SET_COOKIE, session);
    response.headers_mut().append(header::SET_COOKIE, used);
    Ok(response)
}

pub(crate) async fn sign_out(
    Shared(state): Shared<State>,
    headers: HeaderMap,
    signed_in: SignedIn,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    signed_in.check_csrf(&form.csrf)?;
    if let Some(id) = cookie(&headers, SESSION_COOKIE) {
        state.sessions.remove(id);
    }
    let gone = set_cookie(SESSION_COOKIE, "", "/", state.secure_cookies, Some(0));
    let mut response = Redirect::to(SIGN_IN_PATH).into_response();
    response.headers_mut().append(header::SET_COOKIE, gone);
    Ok(response)
}
