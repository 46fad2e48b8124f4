//! Remote actions: the buttons' forms (ResetPasscode, RemoteLock, CancelAction, RevealPasscode),
//! and an action's page: its state live (pending → active → done), the reason and the seed's rule
//! when it did not succeed, whether the user has entered the new passcode, and the reveal panel.
//!
//! The passcode appears only in the reveal panel, in the answer to the Show passcode form (a
//! POST: no address to bookmark, never cached), and every reveal is a RevealPasscode call,
//! audited as one.

use super::words;
use super::{Section, SignedIn, State, csrf_field, frame};
use crate::error::PageError;
use crate::layout::{relative, time_of_day, utc};
use axum::Form;
use axum::extract::{Path, State as Shared};
use axum::response::Redirect;
use droidfleet_proto::v1 as pb;
use droidfleet_proto::v1::admin_service_server::AdminService;
use maud::{Markup, html};

#[derive(serde::Deserialize)]
pub(crate) struct CsrfForm {
    csrf: String,
}

#[derive(serde::Deserialize)]
pub(crate) struct LockForm {
    csrf: String,
    /// `device` or `work_profile`.
    scope: String,
}

/// Reset passcode: starts the reset (the control plane picks the store the enrollment type
/// supports and generates the passcode), then shows the action.
pub(crate) async fn reset(
    Shared(state): Shared<State>,
    signed_in: SignedIn,
    Path(device_id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Redirect, PageError> {
    signed_in.check_csrf(&form.csrf)?;
    let action = state
        .api
        .reset_passcode(signed_in.request(pb::ResetPasscodeRequest {
            device_id,
            ..pb::ResetPasscodeRequest::default()
        }))
        .await?
        .into_inner();
    Ok(Redirect::to(&format!("/actions/{}", action.action_id)))
}

pub(crate) async fn lock(
    Shared(state): Shared<State>,
    signed_in: SignedIn,
    Path(device_id): Path<String>,
    Form(form): Form<LockForm>,
) -> Result<Redirect, PageError> {
    signed_in.check_csrf(&form.csrf)?;
    let scope = words::parse_scope(&form.scope).ok_or_else(|| {
        PageError::Invalid(format!(
            "scope {:?} is not a credential store (device, work_profile)",
            form.scope
        ))
    })?;
    let action = state
        .api
        .remote_lock(signed_in.request(pb::RemoteLockRequest {
            device_id,
            scope: scope as i32,
            ttl_seconds: 0,
        }))
        .await?
        .into_inner();
    Ok(Redirect::to(&format!("/actions/{}", action.action_id)))
}

pub(crate) async fn cancel(
    Shared(state): Shared<State>,
    signed_in: SignedIn,
    Path(action_id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Redirect, PageError> {
    signed_in.check_csrf(&form.csrf)?;
    let action = state
        .api
        .cancel_action(signed_in.request(pb::GetActionRequest {
            action_id,
            until_user_entered: false,
        }))
        .await?
        .into_inner();
    Ok(Redirect::to(&format!("/actions/{}", action.action_id)))
}

pub(crate) async fn action(
    Shared(state): Shared<State>,
    signed_in: SignedIn,
    Path(action_id): Path<String>,
) -> Result<Markup, PageError> {
    action_page(&state, &signed_in, action_id, None).await
}

/// Show passcode: RevealPasscode, then the action's page with the reveal panel filled.
pub(crate) async fn reveal(
    Shared(state): Shared<State>,
    signed_in: SignedIn,
    Path(action_id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Markup, PageError> {
    signed_in.check_csrf(&form.csrf)?;
    let revealed = state
        .api
        .reveal_passcode(signed_in.request(pb::GetActionRequest {
            action_id: action_id.clone(),
            until_user_entered: false,
        }))
        .await?
        .into_inner();
    action_page(&state, &signed_in, action_id, Some(revealed)).await
}

async fn action_page(
    state: &State,
    signed_in: &SignedIn,
    action_id: String,
    revealed: Option<pb::RevealPasscodeResponse>,
) -> Result<Markup, PageError> {
    let action = state
        .api
        .get_action(signed_in.request(pb::GetActionRequest {
            action_id,
            until_user_entered: false,
        }))
        .await?
        .into_inner();
    let device = state
        .api
        .get_device(signed_in.request(pb::GetDeviceRequest {
            device_id: action.device_id.clone(),
        }))
        .await?
        .into_inner();
    let caller = state
        .api
        .get_caller(signed_in.request(pb::GetCallerRequest {
            device_id: action.device_id.clone(),
        }))
        .await?
        .into_inner();
    let holds = |permission: &str| caller.device_permissions.iter().any(|p| p == permission);
    let can_reveal = holds("RemoteTasks.ResetPasscode") && holds("ManagedDevices.Read");
    let can_cancel = holds(if words::is_reset(&action) {
        "RemoteTasks.ResetPasscode"
    } else {
        "RemoteTasks.RemoteLock"
    });
    let now = state.clock.now();
    let title = words::kind_name(action.kind);
    let body = html! {
        p.crumbs {
            a href="/devices" { "Devices" } " › "
            a #device-link href={ "/devices/" (device.device_id) } { (device.display_name) } " › "
            (title)
        }
        h1 { (title) }
        p.lead {
            "Of the " (words::scope_name(action.scope)) " of "
            a href={ "/devices/" (device.device_id) } { (device.display_name) }
            " (" (words::ownership_short(device.ownership)) "), requested by "
            (action.requested_by) " " (relative(now, action.created_at_ms)) "."
        }
        section.card #action-status data-live={ "/actions/" (action.action_id) "/live" } {
            (status(&action, now))
        }
        @if words::is_reset(&action) {
            section.card #passcode-card {
                h2 { "New passcode" }
                @if let Some(revealed) = &revealed {
                    div.reveal #reveal-panel {
                        output #passcode { (revealed.passcode) }
                        p #visible-until {
                            "Shown here until " (utc(revealed.visible_until_ms))
                            " (" (relative(now, revealed.visible_until_ms)) ")."
                        }
                        p.muted { (words::USER_EXPERIENCE) }
                    }
                } @else if action.passcode_visible_until_ms > now && can_reveal {
                    form method="post" action={ "/actions/" (action.action_id) "/reveal" } {
                        (csrf_field(signed_in))
                        button.primary #show-passcode type="submit" { "Show passcode" }
                    }
                    p.muted {
                        "Shown for seven days after the reset, until "
                        (utc(action.passcode_visible_until_ms)) ". Each showing is audited."
                    }
                } @else if action.passcode_visible_until_ms > now {
                    p.muted { "Your roles do not allow showing this passcode." }
                } @else {
                    p.muted #passcode-gone {
                        "No passcode to show: it is shown only for seven days after a reset that "
                        "did not fail."
                    }
                }
            }
        }
        @if action.state == pb::ActionState::Pending as i32 && can_cancel {
            section.card {
                form method="post" action={ "/actions/" (action.action_id) "/cancel" } {
                    (csrf_field(signed_in))
                    button #cancel-action type="submit" { "Cancel this action" }
                    span.hint { "possible until the device receives it" }
                }
            }
        }
    };
    Ok(frame(signed_in, Section::Devices, title, body))
}

/// The live part of an action's page: the state, the steps it went through, the reason and the
/// rule when it did not succeed, and for a reset whether the user has entered the passcode. The
/// page and its event stream both render it; it never holds the passcode.
pub(crate) fn status(action: &pb::Action, now: u64) -> Markup {
    let state = words::state_name(action.state);
    let step = |reached: u64, label: &str| {
        html! {
            li class=[(reached > 0).then_some("reached")] {
                span.step { (label) }
                @if reached > 0 {
                    " " time title=(utc(reached)) { (time_of_day(reached)) }
                }
            }
        }
    };
    html! {
        h2 { "State " span #action-state class={ "badge " (state) } { (state.replace('_', " ")) } }
        ol.timeline {
            (step(action.created_at_ms, "pending: requested"))
            (step(action.delivered_at_ms, "active: the device received it"))
            @if words::is_final(action.state) {
                @let ended = if action.completed_at_ms > 0 { action.completed_at_ms } else { action.updated_at_ms };
                (step(ended, &format!("{}: final", state.replace('_', " "))))
            } @else {
                li { span.step { "done, failed or expired" } }
            }
        }
        @if !action.reason.is_empty() {
            p.reason #action-reason { (action.reason) }
        }
        @if let Some(rule) = words::rule_for(action) {
            p.rule #action-rule { (rule) }
        }
        @if words::is_reset(action) && action.state == pb::ActionState::Done as i32 {
            p #user-entered data-entered=(if action.user_entered_at_ms > 0 { "yes" } else { "no" }) {
                "Entered on the device: "
                @if action.user_entered_at_ms > 0 {
                    strong { "entered" } " at " time title=(utc(action.user_entered_at_ms)) {
                        (time_of_day(action.user_entered_at_ms))
                    }
                } @else {
                    strong { "not yet" }
                    " (the user is notified to enter the new passcode)"
                }
            }
        }
        @if action.state == pb::ActionState::Pending as i32 {
            p.muted { "Delivered when the device is online; expires " (relative(now, action.not_after_ms)) "." }
        }
    }
}
