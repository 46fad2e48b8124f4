//! What a page answers when it cannot show what was asked: the admin API's refusal with its
//! status and message (the same words the gRPC API gives), a form without its CSRF token, or a
//! session that is gone (back to the sign-in page).

use crate::layout;
use crate::session::RandomFailed;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub(crate) enum PageError {
    /// The admin API refused or failed; its message names the reason.
    #[error("{}", .0.message())]
    Api(Status),
    /// No session, or the control plane no longer accepts its token.
    #[error("sign in first")]
    SignIn,
    /// A value in the address or a form the console cannot use; the message names it.
    #[error("{0}")]
    Invalid(String),
    /// A form without the session's CSRF token (or with another one).
    #[error("the form is stale or was not sent by this console; reload the page and try again")]
    Forged,
    #[error(transparent)]
    Random(#[from] RandomFailed),
}

impl From<Status> for PageError {
    fn from(status: Status) -> PageError {
        if status.code() == Code::Unauthenticated {
            PageError::SignIn
        } else {
            PageError::Api(status)
        }
    }
}

/// The HTTP status of an admin API status code.
fn http_status(code: Code) -> StatusCode {
    match code {
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, title) = match &self {
            PageError::SignIn => return Redirect::to("/sign-in").into_response(),
            PageError::Api(api) => match api.code() {
                Code::PermissionDenied => (StatusCode::FORBIDDEN, "Refused"),
                Code::NotFound => (StatusCode::NOT_FOUND, "Not found"),
                code => (http_status(code), "Not done"),
            },
            PageError::Invalid(_) => (StatusCode::BAD_REQUEST, "Not done"),
            PageError::Forged => (StatusCode::FORBIDDEN, "Refused"),
            PageError::Random(_) => (StatusCode::INTERNAL_SERVER_ERROR, "Not done"),
        };
        if status.is_server_error() {
            tracing::error!(error = %self, "console page failed");
        }
        let body = html! {
            section.card.refusal {
                h1 { (title) }
                p #error-message { (self.to_string()) }
                p { a href="/devices" { "Back to the devices" } }
            }
        };
        (status, layout::page(title, html! {}, body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_refusals_keep_their_meaning_in_http() {
        assert_eq!(http_status(Code::PermissionDenied), StatusCode::FORBIDDEN);
        assert_eq!(http_status(Code::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(http_status(Code::InvalidArgument), StatusCode::BAD_REQUEST);
        assert_eq!(http_status(Code::FailedPrecondition), StatusCode::CONFLICT);
        assert_eq!(
            http_status(Code::Internal),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert!(matches!(
            PageError::from(Status::unauthenticated("unknown bearer token")),
            PageError::SignIn
        ));
    }
}
