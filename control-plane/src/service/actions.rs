//! Remote actions: starting a passcode reset or a remote lock (a rule not met ends the action at
//! once, as an MDM shows it), reading the history, cancel and reveal, and the state transitions
//! (through [`ActionEvent::rule`]) that sessions and the background loops apply too.

use super::access::{READ, REMOTE_LOCK, REVEAL_PASSCODE, task_permission};
use super::device_meta::reset_api_level_refusal;
use super::paging::{List, Listing, PageRequest, listing};
use super::validation::{check_id, check_passcode_text, check_ttl};
use super::{ControlPlane, ServiceError};
use crate::action::{ActionEvent, CancelPath, CancelRefused, cancel_path};
use crate::clock::{DAY, Millis};
use crate::model::{Action, ActionKind, ActionState, ErrorCode, Scope};
use crate::passcode_gen;
use crate::rbac;
use crate::secret::Passcode;
use crate::store::{ActionUpdate, AuthenticatedPrincipal, NewAction, StoreError};
use droidfleet_telemetry::traceparent::TraceParent;

/// How long a reset's passcode stays revealable (Intune shows it for seven days).
pub(super) const PASSCODE_VISIBLE_FOR: Millis = 7 * DAY;

/// A request to reset a passcode, already parsed from the wire.
#[derive(Debug, Default)]
pub(crate) struct ResetRequest {
    pub(crate) device_id: String,
    /// `None` picks the store the enrollment type supports.
    pub(crate) scope: Option<Scope>,
    /// `None` generates one from the policy.
    pub(crate) new_passcode: Option<Passcode>,
    /// `None` means [`DEFAULT_COMMAND_TTL`](super::validation::DEFAULT_COMMAND_TTL).
    pub(crate) ttl: Option<Millis>,
    /// The caller's trace (its `traceparent` metadata); `None` starts a new one.
    pub(crate) traceparent: Option<TraceParent>,
}

/// A request to lock a credential store, already parsed from the wire.
#[derive(Debug, Default)]
pub(crate) struct LockRequest {
    pub(crate) device_id: String,
    /// `None` picks the store the enrollment type manages.
    pub(crate) scope: Option<Scope>,
    /// `None` means [`DEFAULT_COMMAND_TTL`](super::validation::DEFAULT_COMMAND_TTL).
    pub(crate) ttl: Option<Millis>,
    /// The caller's trace (its `traceparent` metadata); `None` starts a new one.
    pub(crate) traceparent: Option<TraceParent>,
}

impl ControlPlane {
    /// Starts a reset. Rules that are not met end the action at once (`failed`,
    /// `not_supported`), as an MDM shows them; only bad input is an error.
    pub(crate) async fn reset_passcode(
        &self,
        caller: &AuthenticatedPrincipal,
        request: ResetRequest,
    ) -> Result<Action, ServiceError> {
        check_id("device_id", &request.device_id)?;
        if let Some(passcode) = &request.new_passcode {
            check_passcode_text(passcode)?;
        }
        let ttl = check_ttl(request.ttl)?;
        let device = self
            .device_for(caller, &request.device_id, &rbac::RESET_PASSCODE)
            .await?;
        let supported = device.ownership.resettable_scope();
        let scope = request.scope.unwrap_or(supported);
        let refusal = if scope != supported {
            Some((
                ActionState::NotSupported,
                ErrorCode::ScopeNotSupported,
                format!(
                    "a {} device supports only a {} passcode reset, not {}",
                    device.ownership.as_str().to_uppercase(),
                    supported.as_str().replace('_', "-"),
                    scope.as_str().replace('_', "-"),
                ),
            ))
        } else if let Some(refusal) = reset_api_level_refusal(&device, scope) {
            Some(refusal)
        } else if device.stores.iter().any(|s| s.scope == scope && s.wiped) {
            Some((
                ActionState::Failed,
                ErrorCode::StoreWiped,
                format!(
                    "the device reports its {} was wiped after too many failed passcode \
                     entries; there is no credential left to reset",
                    scope_words(scope)
                ),
            ))
        } else if device.policy(scope).is_none() {
            Some(no_policy(scope, "reset"))
        } else if !device.escrowed_token_scopes.contains(&scope) {
            Some((
                ActionState::Failed,
                ErrorCode::NoEscrowedToken,
                format!(
                    "the device has not escrowed a reset token for its {} yet",
                    scope_words(scope)
                ),
            ))
        } else {
            None
        };
        let id = self.keys.new_id("act_")?;
        let sealed_passcode = if refusal.is_none() {
            let passcode = match request.new_passcode {
                Some(passcode) => passcode,
                None => {
                    let policy = device.policy(scope).expect("checked above");
                    passcode_gen::generate(policy, self.keys.rng()).map_err(|e| {
                        ServiceError::FailedPrecondition(format!(
                            "cannot generate a passcode for the assigned policy: {e}"
                        ))
                    })?
                }
            };
            let sealed = self.keys.seal(passcode.expose().as_bytes(), &id)?;
            Some((sealed, self.now() + PASSCODE_VISIBLE_FOR))
        } else {
            None
        };
        let action = NewAction {
            id,
            device_id: device.id.clone(),
            kind: ActionKind::ResetPasscode,
            scope,
            requested_by: caller.name.clone(),
            created_at: self.now(),
            not_after: self.now() + ttl,
            state: ActionState::Pending,
            error_code: None,
            reason: String::new(),
            sealed_passcode,
            traceparent: self.continue_trace(request.traceparent)?,
        };
        self.start_action(action, refusal).await
    }

    /// Starts a remote lock of one credential store. Like a reset it needs a passcode policy for
    /// that store; a store the device does not have ends `not_supported`.
    pub(crate) async fn remote_lock(
        &self,
        caller: &AuthenticatedPrincipal,
        request: LockRequest,
    ) -> Result<Action, ServiceError> {
        check_id("device_id", &request.device_id)?;
        let ttl = check_ttl(request.ttl)?;
        let device = self
            .device_for(caller, &request.device_id, &REMOTE_LOCK)
            .await?;
        let scope = request.scope.unwrap_or(device.ownership.resettable_scope());
        let refusal = if !device.has_store(scope) {
            Some((
                ActionState::NotSupported,
                ErrorCode::ScopeNotSupported,
                format!(
                    "a {} device has no {} to lock",
                    device.ownership.as_str().to_uppercase(),
                    scope_words(scope)
                ),
            ))
        } else if device.policy(scope).is_none() {
            Some(no_policy(scope, "lock"))
        } else {
            None
        };
        let action = NewAction {
            id: self.keys.new_id("act_")?,
            device_id: device.id.clone(),
            kind: ActionKind::RemoteLock,
            scope,
            requested_by: caller.name.clone(),
            created_at: self.now(),
            not_after: self.now() + ttl,
            state: ActionState::Pending,
            error_code: None,
            reason: String::new(),
            sealed_passcode: None,
            traceparent: self.continue_trace(request.traceparent)?,
        };
        self.start_action(action, refusal).await
    }

    /// The trace a new action belongs to: the caller's, continued by a span of the control plane,
    /// or a new one when the caller sent none.
    fn continue_trace(&self, caller: Option<TraceParent>) -> Result<TraceParent, ServiceError> {
        Ok(match caller {
            Some(caller) => caller.child(self.keys.random()?),
            None => TraceParent::new_root(self.keys.random()?),
        })
    }

    /// Stores a new action: pending (it becomes the device's next command) or, when a rule is not
    /// met, already in its final state with the reason.
    async fn start_action(
        &self,
        mut action: NewAction,
        refusal: Option<(ActionState, ErrorCode, String)>,
    ) -> Result<Action, ServiceError> {
        if let Some((state, code, reason)) = refusal {
            action.state = state;
            action.error_code = Some(code);
            action.reason = reason;
            action.sealed_passcode = None;
        }
        let action = self.store.create_action(action).await?;
        tracing::info!(
            action_id = %action.id,
            trace_id = %action.trace_id(),
            device_id = %action.device_id,
            kind = action.kind.as_str(),
            scope = %action.scope,
            state = %action.state,
            "remote action requested"
        );
        // The commit already woke the device's session and the action's watches.
        Ok(action)
    }

    pub(crate) async fn action(
        &self,
        caller: &AuthenticatedPrincipal,
        action_id: &str,
    ) -> Result<Action, ServiceError> {
        Ok(self.action_for(caller, action_id, &READ).await?.0)
    }

    /// The history of one device, or of every device the caller may see; newest first.
    pub(crate) async fn actions(
        &self,
        caller: &AuthenticatedPrincipal,
        device_id: Option<&str>,
        page: &PageRequest,
    ) -> Result<Listing<Action>, ServiceError> {
        let filters = [device_id.unwrap_or("")];
        let query = page.query(List::Actions, &filters)?;
        let actions = match device_id {
            Some(device_id) => {
                let device = self.device(caller, device_id).await?;
                self.store
                    .list_actions(Some(&device.id), None, &query)
                    .await?
            }
            None => {
                let groups = Self::visible_groups(caller, None);
                self.store
                    .list_actions(None, groups.as_ref(), &query)
                    .await?
            }
        };
        Ok(listing(List::Actions, &filters, actions))
    }

    /// Cancels an action: one never sent at once, one sent by a request the device answers
    /// (PROTOCOL.md CP-DELIVERY-4, CP-CANCEL-1). Both are one compare-and-set, so neither can
    /// race the session sending the command.
    pub(crate) async fn cancel_action(
        &self,
        caller: &AuthenticatedPrincipal,
        action_id: &str,
    ) -> Result<Action, ServiceError> {
        let (action, device) = self.action_for(caller, action_id, &READ).await?;
        caller
            .grants
            .authorize_group(&device.group, &[task_permission(action.kind)])?;
        let refused = |action: &Action, why: CancelRefused| {
            ServiceError::FailedPrecondition(format!("action {}: {why}", action.id))
        };
        let path = cancel_path(&action).map_err(|why| refused(&action, why))?;
        let changed = match path {
            CancelPath::Outright => {
                let update = ActionUpdate {
                    reason: Some("canceled by an admin before it was sent to the device".into()),
                    purge_passcode: true,
                    only_if_unsent: true,
                    ..ActionUpdate::default()
                };
                self.apply_event(&action.id, ActionEvent::Canceled, update)
                    .await?
            }
            CancelPath::Request => self.request_cancel(&action).await?,
        };
        match changed {
            Some(action) => Ok(action),
            // Sent, answered or asked for meanwhile: say how it stands now.
            None => {
                let now = self.action(caller, action_id).await?;
                match cancel_path(&now) {
                    Err(why) => Err(refused(&now, why)),
                    Ok(CancelPath::Request) => self
                        .request_cancel(&now)
                        .await?
                        .ok_or_else(|| refused(&now, CancelRefused::AlreadyRequested)),
                    Ok(CancelPath::Outright) => Err(ServiceError::FailedPrecondition(format!(
                        "action {} changed while it was being canceled; try again",
                        now.id
                    ))),
                }
            }
        }
    }

    /// Records a cancel request on a sent command, in the state it is in; the session then sends
    /// the device a signed cancel in the command's place. The passcode stays revealable until the
    /// device answers.
    async fn request_cancel(&self, action: &Action) -> Result<Option<Action>, ServiceError> {
        let update = ActionUpdate {
            request_cancel: Some(self.now()),
            ..ActionUpdate::default()
        };
        let changed = self
            .store
            .transition_action(
                &action.id,
                &[action.state],
                action.state,
                update,
                self.now(),
            )
            .await?;
        if let Some(changed) = &changed {
            tracing::info!(action_id = %changed.id, trace_id = %changed.trace_id(), device_id = %changed.device_id, state = %changed.state, "cancel requested; the device decides");
        }
        Ok(changed)
    }

    /// The passcode a reset set, while it is visible.
    pub(crate) async fn reveal_passcode(
        &self,
        caller: &AuthenticatedPrincipal,
        action_id: &str,
    ) -> Result<(Passcode, Action), ServiceError> {
        let (action, _) = self.action_for(caller, action_id, &REVEAL_PASSCODE).await?;
        if action.kind != ActionKind::ResetPasscode {
            return Err(ServiceError::FailedPrecondition(format!(
                "action {} is not a passcode reset",
                action.id
            )));
        }
        let sealed = self
            .store
            .sealed_passcode(action_id, self.now())
            .await?
            .ok_or_else(|| {
                ServiceError::FailedPrecondition(format!(
                    "the passcode of action {} is no longer available (it is shown for 7 days \
                     after a reset, and not at all for a reset that did not succeed)",
                    action.id
                ))
            })?;
        let plain = self.keys.open(&sealed, &action.id)?;
        let text = String::from_utf8(plain.to_vec()).map_err(|_| {
            ServiceError::Store(StoreError::Corrupt("passcode is not UTF-8".into()))
        })?;
        Ok((Passcode::new(text), action))
    }

    pub(super) async fn apply_event(
        &self,
        action_id: &str,
        event: ActionEvent,
        update: ActionUpdate,
    ) -> Result<Option<Action>, ServiceError> {
        let (from, to) = event.rule();
        let changed = self
            .store
            .transition_action(action_id, from, to, update, self.now())
            .await?;
        if let Some(action) = &changed {
            tracing::info!(action_id = %action.id, trace_id = %action.trace_id(), device_id = %action.device_id, state = %action.state, "action state changed");
        }
        Ok(changed)
    }

    /// Expires an action past its time-to-live. One never sent ends outright, its passcode
    /// purged; one sent keeps its passcode until the device's final report, which is still
    /// recorded when it comes (PROTOCOL.md CP-DELIVERY-3).
    pub(super) async fn expire(&self, action: &Action) -> Result<Option<Action>, ServiceError> {
        let update = if action.sent_at.is_none() {
            ActionUpdate {
                error_code: Some(ErrorCode::Expired),
                reason: Some("the command's time-to-live passed before it was sent".into()),
                purge_passcode: true,
                only_if_unsent: true,
                ..ActionUpdate::default()
            }
        } else {
            ActionUpdate {
                error_code: Some(ErrorCode::Expired),
                reason: Some(
                    "the command's time-to-live passed after it was sent and before the device \
                     reported; the device may still have applied it, so its passcode stays \
                     revealable and a late report is recorded"
                        .into(),
                ),
                ..ActionUpdate::default()
            }
        };
        self.apply_event(&action.id, ActionEvent::Expired, update)
            .await
    }

    /// Records that a command was handed to the device's session; `None` when it can no longer
    /// be sent (an admin canceled it meanwhile).
    pub(super) async fn mark_sent(&self, action: &Action) -> Result<Option<Action>, ServiceError> {
        let update = ActionUpdate {
            sent_at: Some(self.now()),
            ..ActionUpdate::default()
        };
        self.apply_event(&action.id, ActionEvent::Sent, update)
            .await
    }

    pub(super) async fn fail(
        &self,
        action: &Action,
        code: ErrorCode,
        reason: &str,
    ) -> Result<(), ServiceError> {
        let update = ActionUpdate {
            error_code: Some(code),
            reason: Some(reason.to_string()),
            purge_passcode: true,
            ..ActionUpdate::default()
        };
        self.apply_event(&action.id, ActionEvent::Failed(code), update)
            .await?;
        Ok(())
    }
}

/// The refusal of a reset or lock of a store that has no passcode policy.
fn no_policy(scope: Scope, what: &str) -> (ActionState, ErrorCode, String) {
    (
        ActionState::Failed,
        ErrorCode::NoPasscodePolicy,
        format!(
            "no passcode policy is assigned for the {} of this device; assign one that enforces \
             a passcode, then retry the {what}",
            scope_words(scope)
        ),
    )
}

pub(crate) fn scope_words(scope: Scope) -> &'static str {
    match scope {
        Scope::Device => "device lock screen",
        Scope::WorkProfile => "work profile",
    }
}
