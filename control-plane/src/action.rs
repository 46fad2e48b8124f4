//! The remote-action state machine, after the MDM convention (Intune's actionState):
//! `pending` → `active` → `done` | `failed`, plus `canceled` and `expired` from a state where the
//! command has not run, and `not_supported` / `failed` straight from creation. The states and
//! error codes are named in `model.rs`; this module says which event moves which state.
//!
//! A command handed to a device's session may be applied however late it arrives, so only one
//! never sent is canceled outright (the compare-and-set also checks `sent_at`); a sent one gets a
//! cancel request, a flag beside its state that the device answers: the action ends `canceled`
//! only when the device reports it never ran the command ([`cancel_path`]). An expired command
//! that was sent still takes the device's final report: a late success ends `done`, with the late
//! arrival noted (PROTOCOL.md CP-DELIVERY-3, CP-DELIVERY-4, CP-CANCEL-1).

use crate::model::{Action, ActionState, ErrorCode};

/// Something that happens to an action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActionEvent {
    /// The command was handed to the device's session (it stays pending until acknowledged).
    Sent,
    /// The device acknowledged the command.
    Delivered,
    /// The device reported success.
    Succeeded,
    /// The device reported failure.
    Failed(ErrorCode),
    /// An admin canceled it before it was sent.
    Canceled,
    /// The device accepted the signed cancel of a sent command: it never ran it and never will.
    CancelAccepted,
    /// Its not-after time passed.
    Expired,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("an action that is {from} cannot become {event:?}")]
pub struct InvalidTransition {
    pub from: ActionState,
    pub event: ActionEvent,
}

impl ActionEvent {
    /// The states this event may leave, and the state it leads to.
    pub fn rule(self) -> (&'static [ActionState], ActionState) {
        use ActionState::*;
        match self {
            ActionEvent::Sent => (&[Pending], Pending),
            ActionEvent::Delivered => (&[Pending], Active),
            // A result can overtake its acknowledgement (or the ack was lost), so it may arrive
            // while the action is still pending; and a command that expired after it was sent
            // may still have run on the device, whose report is the truth (the service accepts
            // a result for an expired action only when it was sent).
            ActionEvent::Succeeded => (&[Pending, Active, Expired], Done),
            // A device that refuses an expired command reports it as such.
            ActionEvent::Failed(ErrorCode::Expired) => (&[Pending, Active, Expired], Expired),
            // A command the device's Android version cannot run is not a failure of the device
            // but outside what it supports, as the Android Management API's API_LEVEL is.
            ActionEvent::Failed(ErrorCode::ApiLevel) => (&[Pending, Active, Expired], NotSupported),
            ActionEvent::Failed(_) => (&[Pending, Active, Expired], Failed),
            // Once delivered, the device may already be running it; cancel is for pending only.
            ActionEvent::Canceled => (&[Pending], Canceled),
            // The device's answer is the truth, as a late result's is after expiry.
            ActionEvent::CancelAccepted => (&[Pending, Active, Expired], Canceled),
            ActionEvent::Expired => (&[Pending, Active], Expired),
        }
    }

    /// The state after this event, or why it cannot happen now.
    pub fn apply(self, from: ActionState) -> Result<ActionState, InvalidTransition> {
        let (sources, to) = self.rule();
        if sources.contains(&from) {
            Ok(to)
        } else {
            Err(InvalidTransition { from, event: self })
        }
    }
}

/// What an admin's cancel does to an action as it stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelPath {
    /// Never sent: it ends `canceled` at once and is never sent.
    Outright,
    /// Sent, no result yet: a cancel request, which the device accepts or refuses.
    Request,
}

/// Why a cancel cannot be asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CancelRefused {
    #[error("it is {0} and can no longer be canceled")]
    Final(ActionState),
    #[error("a cancel was already requested; the device's answer decides")]
    AlreadyRequested,
}

/// How an admin's cancel goes for `action` (PROTOCOL.md CP-DELIVERY-4, CP-CANCEL-1).
pub fn cancel_path(action: &Action) -> Result<CancelPath, CancelRefused> {
    if action.state.is_final() {
        return Err(CancelRefused::Final(action.state));
    }
    if action.cancel_requested_at.is_some() {
        return Err(CancelRefused::AlreadyRequested);
    }
    match (action.state, action.sent_at) {
        (ActionState::Pending, None) => Ok(CancelPath::Outright),
        _ => Ok(CancelPath::Request),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_happy_path_goes_pending_active_done() {
        let active = ActionEvent::Delivered.apply(ActionState::Pending).unwrap();
        assert_eq!(active, ActionState::Active);
        assert_eq!(
            ActionEvent::Succeeded.apply(active).unwrap(),
            ActionState::Done
        );
    }

    #[test]
    fn final_states_accept_no_event_but_a_late_device_report_after_expiry() {
        let control_plane_events = [
            ActionEvent::Sent,
            ActionEvent::Delivered,
            ActionEvent::Canceled,
            ActionEvent::Expired,
        ];
        for state in ActionState::ALL.into_iter().filter(|s| s.is_final()) {
            assert_eq!(
                ActionEvent::CancelAccepted.apply(state).is_ok(),
                state == ActionState::Expired,
                "{state} and an accepted cancel"
            );
        }
        let device_reports = [
            ActionEvent::Succeeded,
            ActionEvent::Failed(ErrorCode::TokenMismatch),
        ];
        for state in ActionState::ALL.into_iter().filter(|s| s.is_final()) {
            for event in control_plane_events {
                assert!(event.apply(state).is_err(), "{state} accepted {event:?}");
            }
            for event in device_reports {
                assert_eq!(
                    event.apply(state).is_ok(),
                    state == ActionState::Expired,
                    "{state} and {event:?}"
                );
            }
        }
    }

    #[test]
    fn a_late_success_after_expiry_ends_done() {
        assert_eq!(
            ActionEvent::Succeeded.apply(ActionState::Expired),
            Ok(ActionState::Done)
        );
    }

    #[test]
    fn sending_keeps_the_command_pending() {
        assert_eq!(
            ActionEvent::Sent.apply(ActionState::Pending),
            Ok(ActionState::Pending)
        );
        assert!(ActionEvent::Sent.apply(ActionState::Active).is_err());
    }

    #[test]
    fn cancel_is_refused_once_delivered() {
        assert_eq!(
            ActionEvent::Canceled.apply(ActionState::Pending),
            Ok(ActionState::Canceled)
        );
        assert!(ActionEvent::Canceled.apply(ActionState::Active).is_err());
    }

    #[test]
    fn an_expired_refusal_from_the_device_ends_expired_not_failed() {
        assert_eq!(
            ActionEvent::Failed(ErrorCode::Expired).apply(ActionState::Active),
            Ok(ActionState::Expired)
        );
        assert_eq!(
            ActionEvent::Failed(ErrorCode::TokenNotActive).apply(ActionState::Active),
            Ok(ActionState::Failed)
        );
    }

    #[test]
    fn an_api_level_refusal_from_the_device_ends_not_supported() {
        assert_eq!(
            ActionEvent::Failed(ErrorCode::ApiLevel).apply(ActionState::Active),
            Ok(ActionState::NotSupported)
        );
        assert_eq!(
            ActionEvent::Failed(ErrorCode::ApiLevel).apply(ActionState::Pending),
            Ok(ActionState::NotSupported)
        );
    }

    fn action(state: ActionState, sent: bool, requested: bool) -> Action {
        Action {
            id: "act_1".into(),
            device_id: "dev_1".into(),
            kind: crate::model::ActionKind::ResetPasscode,
            scope: crate::model::Scope::Device,
            state,
            error_code: None,
            reason: String::new(),
            requested_by: "admin".into(),
            created_at: 1,
            updated_at: 1,
            delivered_at: None,
            completed_at: None,
            user_entered_at: None,
            not_after: 10,
            sequence: Some(1),
            sent_at: sent.then_some(2),
            cancel_requested_at: requested.then_some(3),
            cancel_sequence: requested.then_some(2),
            cancel_refusal: String::new(),
            passcode_visible_until: Some(100),
            traceparent: None,
        }
    }

    #[test]
    fn only_a_command_never_sent_is_canceled_outright_and_a_sent_one_gets_a_request() {
        use ActionState::*;
        assert_eq!(
            cancel_path(&action(Pending, false, false)),
            Ok(CancelPath::Outright)
        );
        assert_eq!(
            cancel_path(&action(Pending, true, false)),
            Ok(CancelPath::Request)
        );
        assert_eq!(
            cancel_path(&action(Active, true, false)),
            Ok(CancelPath::Request)
        );
        assert_eq!(
            cancel_path(&action(Active, true, true)),
            Err(CancelRefused::AlreadyRequested)
        );
        for state in ActionState::ALL.into_iter().filter(|s| s.is_final()) {
            assert_eq!(
                cancel_path(&action(state, true, false)),
                Err(CancelRefused::Final(state))
            );
        }
    }

    #[test]
    fn an_accepted_cancel_ends_a_sent_command_canceled_even_after_expiry() {
        for from in [
            ActionState::Pending,
            ActionState::Active,
            ActionState::Expired,
        ] {
            assert_eq!(
                ActionEvent::CancelAccepted.apply(from),
                Ok(ActionState::Canceled)
            );
        }
    }
}
