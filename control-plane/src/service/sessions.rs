//! A connected device's session: its Hello, what it reports (status, escrow tokens,
//! acknowledgements, results, user events), the commands it is sent, and the end of every session
//! when the server stops.

use super::validation::{
    MAX_ESCROW_TOKEN_LEN, MAX_ID_LEN, MAX_REASON_LEN, check_id, check_stores, printable,
};
use super::{ControlPlane, ServiceError, SessionSignals};
use crate::action::ActionEvent;
use crate::clock::Millis;
use crate::model::{
    Action, ActionKind, ActionState, AuditEvent, CANCEL_SUFFIX, Device, ErrorCode, Scope,
    StoreStatus,
};
use crate::secret::{EscrowToken, Passcode};
use crate::store::{ActionUpdate, StoreError};
use droidfleet_telemetry::traceparent::TraceParent;
use std::sync::Arc;

/// The audit operation of a session that replaced the device's open one.
pub(crate) const SESSION_TAKEOVER: &str = "device.session_takeover";

/// A command to send to a device, with everything the gateway needs to encode and sign it.
#[derive(Debug)]
pub(crate) struct OutboundCommand {
    pub(crate) action: Action,
    pub(crate) payload: CommandPayload,
}

#[derive(Debug)]
pub(crate) enum CommandPayload {
    ResetPasscode {
        passcode: Passcode,
        token: EscrowToken,
    },
    RemoteLock,
    /// The signed cancel of the action's command, sent in its place once an admin asked for it
    /// (PROTOCOL.md CP-CANCEL-1).
    Cancel,
}

impl OutboundCommand {
    /// The `command_id` of the signed body: the action's, or its cancel's.
    pub(crate) fn command_id(&self) -> String {
        match self.payload {
            CommandPayload::Cancel => self.action.cancel_command_id(),
            _ => self.action.id.clone(),
        }
    }

    /// The `sequence` of the signed body: the action's, or its cancel's.
    pub(crate) fn sequence(&self) -> u64 {
        match self.payload {
            CommandPayload::Cancel => self.action.cancel_sequence,
            _ => self.action.sequence,
        }
        .unwrap_or(0)
    }
}

/// What the control plane answers a device report with.
#[derive(Debug)]
pub(crate) enum DeviceReply {
    /// The escrow token with this fingerprint is durably held for the store.
    EscrowAck { scope: Scope, fingerprint: [u8; 8] },
}

/// What the device told us in one message, for [`ControlPlane::handle_device_report`].
#[derive(Debug)]
pub enum DeviceReport {
    Status(Vec<StoreStatus>),
    EscrowToken {
        scope: Scope,
        token: EscrowToken,
    },
    Ack {
        command_id: String,
        /// The device's span of the command's trace, when it traces.
        device_trace: Option<TraceParent>,
    },
    Result {
        command_id: String,
        /// As in `Ack`.
        device_trace: Option<TraceParent>,
        success: bool,
        error: Option<(ErrorCode, String)>,
        completed_at: Millis,
    },
    NewPasscodeEntered {
        command_id: String,
        at: Millis,
    },
    StoreWiped {
        scope: Scope,
    },
    /// The device refused a signed policy and keeps the one it had (PROTOCOL.md DEV-POLICY-2).
    PolicyRefused {
        /// As the refused body named it, when it parsed.
        scope: Option<Scope>,
        version: u64,
        code: ErrorCode,
        reason: String,
    },
}

impl ControlPlane {
    /// Registers a device's session, whose proof of possession checked, and returns the signals
    /// that wake it. A second session of the same device replaces the first (PROTOCOL.md
    /// CP-SESSION-5): the first ends, and the takeover is audited as `device.session_takeover`.
    pub(crate) async fn open_session(
        &self,
        device_id: &str,
    ) -> Result<Arc<SessionSignals>, ServiceError> {
        let signals = Arc::new(SessionSignals::default());
        let previous = self
            .hot
            .sessions()
            .insert(device_id.to_string(), signals.clone());
        self.hot.device_changed(device_id);
        if let Some(previous) = previous {
            tracing::warn!(
                device_id,
                "a newer session with a valid proof replaced the device's open session"
            );
            let event = AuditEvent {
                id: 0,
                at: self.now(),
                principal: device_id.to_string(),
                operation: SESSION_TAKEOVER.to_string(),
                device_id: Some(device_id.to_string()),
                action_id: None,
                result: "ok".to_string(),
                detail: "a newer session with a valid proof of the device's key replaced the \
                         open one, which ended ABORTED"
                    .to_string(),
            };
            let audited = self.store.append_audit(event).await;
            // Only now does the old session end: whoever sees it end finds the takeover recorded.
            // It ends either way, since it is no longer the device's registered session.
            previous.replaced.notify_one();
            if let Err(error) = audited {
                self.close_session(device_id, &signals);
                return Err(error.into());
            }
        }
        Ok(signals)
    }

    /// Checks a session's Hello before its challenge: a well-formed device id and a printable
    /// agent version. Which device it is, the proof of possession shows.
    pub(crate) fn check_hello(
        &self,
        claimed_device_id: &str,
        agent_version: &str,
    ) -> Result<(), ServiceError> {
        check_id("hello.device_id", claimed_device_id)?;
        if agent_version.len() > MAX_ID_LEN {
            return Err(ServiceError::invalid(
                "hello.agent_version",
                format!("must be at most {MAX_ID_LEN} bytes"),
            ));
        }
        if agent_version.chars().any(char::is_control) {
            return Err(ServiceError::invalid(
                "hello.agent_version",
                "must not contain control characters",
            ));
        }
        Ok(())
    }

    /// Checks the stores a Hello reports: valid, and every store the device has (PROTOCOL.md
    /// CP-SESSION-3), so the control plane always knows each store's token state.
    pub(crate) fn check_hello_stores(
        &self,
        device: &Device,
        stores: &[StoreStatus],
    ) -> Result<(), ServiceError> {
        check_stores(device, stores)?;
        let mut scopes = vec![Scope::Device];
        if device.ownership.has_work_profile() {
            scopes.push(Scope::WorkProfile);
        }
        for scope in scopes {
            if !stores.iter().any(|store| store.scope == scope) {
                return Err(ServiceError::invalid(
                    "hello.status.stores",
                    format!(
                        "must report the {scope} store of a {} device",
                        device.ownership
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Forgets the session, unless a newer one already replaced it.
    pub(crate) fn close_session(&self, device_id: &str, signals: &Arc<SessionSignals>) {
        let mut sessions = self.hot.sessions();
        if sessions
            .get(device_id)
            .is_some_and(|current| Arc::ptr_eq(current, signals))
        {
            sessions.remove(device_id);
            drop(sessions);
            self.hot.device_changed(device_id);
        }
    }

    /// Commands of the device that still need a result and whose sequence is above
    /// `after_sequence`, ready to sign, in sequence order. Read from the hot state. A reset whose
    /// escrowed token the device reports it has replaced is held, with every command after it
    /// (they leave in sequence order), until the device's newer token arrives: sent with the old
    /// one it could only fail `token_mismatch`.
    pub(crate) async fn commands_to_send(
        &self,
        device_id: &str,
        after_sequence: u64,
    ) -> Result<Vec<OutboundCommand>, ServiceError> {
        let mut out = Vec::new();
        for queued in self.hot.commands_after(device_id, after_sequence) {
            let mut action = queued.action;
            if action.not_after < self.now() {
                self.expire(&action).await?;
                continue;
            }
            // A cancel goes in the command's place: a device that never got the command then
            // never will, and one that did answers the cancel with what it did.
            if action.cancel_sequence.is_some() {
                out.push(OutboundCommand {
                    action,
                    payload: CommandPayload::Cancel,
                });
                continue;
            }
            let payload = match action.kind {
                ActionKind::RemoteLock => CommandPayload::RemoteLock,
                ActionKind::ResetPasscode => {
                    let visible = action
                        .passcode_visible_until
                        .is_some_and(|until| self.now() < until);
                    let Some(sealed_passcode) = queued.sealed_passcode.filter(|_| visible) else {
                        self.fail(
                            &action,
                            ErrorCode::Internal,
                            "the passcode is no longer stored",
                        )
                        .await?;
                        continue;
                    };
                    let Some(sealed_token) = queued.sealed_token else {
                        self.fail(
                            &action,
                            ErrorCode::NoEscrowedToken,
                            "the device's escrowed reset token is gone",
                        )
                        .await?;
                        continue;
                    };
                    let token = self
                        .keys
                        .open(&sealed_token, &token_context(device_id, action.scope))?;
                    if self.token_is_stale(device_id, action.scope, &token) {
                        tracing::info!(device_id, action_id = %action.id, trace_id = %action.trace_id(), "command held until the device's newer escrow token arrives");
                        break;
                    }
                    let passcode = self.keys.open(&sealed_passcode, &action.id)?;
                    CommandPayload::ResetPasscode {
                        passcode: Passcode::new(String::from_utf8_lossy(&passcode).into_owned()),
                        token: EscrowToken::new(token.to_vec()),
                    }
                }
            };
            // Durably marked sent before it leaves (PROTOCOL.md CP-DELIVERY-4): from then on the
            // device may hold the passcode, so no cancel or expiry may purge it.
            if action.state == ActionState::Pending && action.sent_at.is_none() {
                match self.mark_sent(&action).await? {
                    Some(sent) => action = sent,
                    None => continue,
                }
            }
            out.push(OutboundCommand { action, payload });
        }
        Ok(out)
    }

    /// Whether the device reports, for `scope`, a token other than `held`.
    fn token_is_stale(&self, device_id: &str, scope: Scope, held: &[u8]) -> bool {
        let Some(device) = self.hot.device(device_id) else {
            return false;
        };
        device
            .stores
            .iter()
            .find(|s| s.scope == scope)
            .and_then(|s| s.token_fingerprint)
            .is_some_and(|reported| reported != token_fingerprint(held))
    }

    /// Records what a device reported on its session; returns what to answer it, if anything.
    pub(crate) async fn handle_device_report(
        &self,
        device: &Device,
        report: DeviceReport,
    ) -> Result<Option<DeviceReply>, ServiceError> {
        let now = self.now();
        match report {
            DeviceReport::Status(stores) => {
                check_stores(device, &stores)?;
                self.store
                    .update_device_status(&device.id, &stores, now)
                    .await?;
            }
            DeviceReport::EscrowToken { scope, token } => {
                if token.expose().len() < EscrowToken::MIN_LEN {
                    return Err(ServiceError::invalid(
                        "escrow_token.token",
                        "must be at least 32 bytes long",
                    ));
                }
                if token.expose().len() > MAX_ESCROW_TOKEN_LEN {
                    return Err(ServiceError::invalid(
                        "escrow_token.token",
                        format!("must be at most {MAX_ESCROW_TOKEN_LEN} bytes long"),
                    ));
                }
                if scope == Scope::WorkProfile && !device.ownership.has_work_profile() {
                    return Err(ServiceError::invalid(
                        "escrow_token.scope",
                        "the device has no work profile",
                    ));
                }
                let context = token_context(&device.id, scope);
                let ack = DeviceReply::EscrowAck {
                    scope,
                    fingerprint: token_fingerprint(token.expose()),
                };
                // A device escrows a token again until it is acknowledged: the token already
                // held costs a look in memory, not a durable write.
                if let Some(held) = self.hot.escrow_token(&device.id, scope) {
                    let held = self.keys.open(&held, &context)?;
                    if bool::from(subtle::ConstantTimeEq::ct_eq(
                        held.as_slice(),
                        token.expose(),
                    )) {
                        return Ok(Some(ack));
                    }
                }
                let sealed = self.keys.seal(token.expose(), &context)?;
                self.store
                    .put_escrow_token(&device.id, scope, &sealed)
                    .await?;
                tracing::info!(device_id = %device.id, scope = %scope, "escrow token stored");
                return Ok(Some(ack));
            }
            DeviceReport::Ack {
                command_id,
                device_trace,
            } => {
                // A cancel's ack moves nothing: its answer decides (PROTOCOL.md CP-CANCEL-2).
                if let Some(action) = self
                    .own_cancel(device, "ack.command_id", &command_id)
                    .await?
                {
                    log_device_span(&action, device_trace);
                    return Ok(None);
                }
                let action = self
                    .own_action(device, "ack.command_id", &command_id)
                    .await?;
                log_device_span(&action, device_trace);
                let update = ActionUpdate {
                    delivered_at: Some(now),
                    ..ActionUpdate::default()
                };
                self.apply_event(&action.id, ActionEvent::Delivered, update)
                    .await?;
            }
            DeviceReport::Result {
                command_id,
                success,
                error,
                completed_at,
                device_trace,
            } => {
                if let Some((_, reason)) = &error
                    && reason.len() > MAX_REASON_LEN
                {
                    return Err(ServiceError::invalid(
                        "result.reason",
                        format!("must be at most {MAX_REASON_LEN} bytes"),
                    ));
                }
                if let Some(action) = self
                    .own_cancel(device, "result.command_id", &command_id)
                    .await?
                {
                    log_device_span(&action, device_trace);
                    self.cancel_answered(&action, error, completed_at).await?;
                    return Ok(None);
                }
                let action = self
                    .own_action(device, "result.command_id", &command_id)
                    .await?;
                log_device_span(&action, device_trace);
                // PROTOCOL.md CP-ACK-2: a device acknowledges every command it accepts before
                // answering it, so a result for a command still pending is out of order. Only
                // the refusals of a command the device could not accept come without an ack.
                let unacknowledgeable = matches!(
                    error,
                    Some((
                        ErrorCode::BadSignature
                            | ErrorCode::WrongDevice
                            | ErrorCode::MalformedCommand,
                        _
                    ))
                );
                if action.state == ActionState::Pending && !unacknowledgeable {
                    return Err(ServiceError::FailedPrecondition(format!(
                        "command {command_id:?} was never acknowledged: a CommandAck must come \
                         before its CommandResult"
                    )));
                }
                // PROTOCOL.md CP-DELIVERY-3: a command that expired after it was sent still takes
                // the device's report; one never sent cannot have a result.
                let late = action.state == ActionState::Expired;
                if late && action.sent_at.is_none() {
                    return Err(ServiceError::FailedPrecondition(format!(
                        "command {command_id:?} expired before it was ever sent: it has no result"
                    )));
                }
                let (event, update) = if success {
                    (
                        ActionEvent::Succeeded,
                        ActionUpdate {
                            completed_at: Some(completed_at),
                            delivered_at: action.delivered_at.is_none().then_some(now),
                            clear_error_code: late,
                            reason: late.then(|| {
                                "the device reported success after the command's time-to-live \
                                 had passed (late arrival)"
                                    .to_string()
                            }),
                            ..ActionUpdate::default()
                        },
                    )
                } else {
                    let (code, reason) =
                        error.unwrap_or((ErrorCode::Internal, "the device gave no reason".into()));
                    (
                        ActionEvent::Failed(code),
                        ActionUpdate {
                            error_code: Some(code),
                            // Shown to admins in terminals and pages: printable only.
                            reason: Some(printable(&reason)),
                            completed_at: Some(completed_at),
                            delivered_at: action.delivered_at.is_none().then_some(now),
                            purge_passcode: true,
                            ..ActionUpdate::default()
                        },
                    )
                };
                self.apply_event(&action.id, event, update).await?;
            }
            DeviceReport::NewPasscodeEntered { command_id, at } => {
                let action = self
                    .own_action(device, "user_event.command_id", &command_id)
                    .await?;
                // PROTOCOL.md CP-USER-1: only a reset that took effect set a passcode to enter,
                // and its result comes first.
                if action.kind != ActionKind::ResetPasscode || action.state != ActionState::Done {
                    return Err(ServiceError::FailedPrecondition(format!(
                        "command {command_id:?} is a {} that is {}: a new passcode is entered \
                         only after a reset's successful CommandResult",
                        action.kind.as_str(),
                        action.state
                    )));
                }
                // The store checks again that it is this device's action, in the same statement.
                self.store
                    .set_user_entered(&device.id, &command_id, at)
                    .await
                    .map_err(|error| match error {
                        StoreError::NotFound { .. } => ServiceError::NotFound {
                            what: "command",
                            id: command_id.clone(),
                        },
                        other => other.into(),
                    })?;
                tracing::info!(action_id = %action.id, trace_id = %action.trace_id(), device_id = %device.id, "the user entered the new passcode");
            }
            DeviceReport::StoreWiped { scope } => {
                if !device.has_store(scope) {
                    return Err(ServiceError::invalid(
                        "user_event.scope",
                        "the device has no work profile",
                    ));
                }
                tracing::warn!(device_id = %device.id, scope = %scope, "device reports a wiped credential store");
            }
            DeviceReport::PolicyRefused {
                scope,
                version,
                code,
                reason,
            } => {
                if reason.len() > MAX_REASON_LEN {
                    return Err(ServiceError::invalid(
                        "policy_refusal.reason",
                        format!("must be at most {MAX_REASON_LEN} bytes"),
                    ));
                }
                // Nothing to record: the policy stays assigned and goes again on the next
                // session. A refusal of a policy this control plane signed means a key or
                // version mix-up an operator must see; any other means someone forged one.
                tracing::warn!(
                    device_id = %device.id,
                    scope = scope.map(|s| s.to_string()),
                    version,
                    code = code.as_str(),
                    reason = %printable(&reason),
                    "device refused a policy"
                );
            }
        }
        Ok(None)
    }

    /// Marks the device seen now.
    pub(crate) async fn touch(
        &self,
        device: &Device,
        stores: &[StoreStatus],
    ) -> Result<(), ServiceError> {
        check_stores(device, stores)?;
        self.store
            .update_device_status(&device.id, stores, self.now())
            .await?;
        Ok(())
    }

    /// The action a device refers to, if it is that device's: a device can only report on its
    /// own commands.
    async fn own_action(
        &self,
        device: &Device,
        field: &'static str,
        command_id: &str,
    ) -> Result<Action, ServiceError> {
        check_id(field, command_id)?;
        // An open command is in memory; a late duplicate about a finished one is read.
        if let Some(action) = self.hot.open_command(&device.id, command_id) {
            return Ok(action);
        }
        match self.store.get_action(command_id).await? {
            Some(action) if action.device_id == device.id => Ok(action),
            _ => Err(ServiceError::NotFound {
                what: "command",
                id: command_id.to_string(),
            }),
        }
    }

    /// The action whose signed cancel `command_id` names, when it is one (`<action id>.cancel`):
    /// only this device's, and only one an admin asked to cancel.
    async fn own_cancel(
        &self,
        device: &Device,
        field: &'static str,
        command_id: &str,
    ) -> Result<Option<Action>, ServiceError> {
        let Some(action_id) = command_id.strip_suffix(CANCEL_SUFFIX) else {
            return Ok(None);
        };
        let action = self.own_action(device, field, action_id).await?;
        if action.cancel_requested_at.is_none() {
            return Err(ServiceError::NotFound {
                what: "command",
                id: command_id.to_string(),
            });
        }
        Ok(Some(action))
    }

    /// Records the device's answer to a signed cancel (PROTOCOL.md CP-CANCEL-2): accepted, the
    /// action ends canceled and its passcode is purged (the device never ran the command and
    /// never will); refused as expired, it ends expired the same way; refused because the device
    /// already answered the command, the refusal is noted and that answer, which the device
    /// repeats, ends the action; refused otherwise (a device that does not know cancels), the
    /// command goes again in the cancel's place on the next session.
    async fn cancel_answered(
        &self,
        action: &Action,
        error: Option<(ErrorCode, String)>,
        completed_at: Millis,
    ) -> Result<(), ServiceError> {
        let (event, update) = match error {
            None => (
                ActionEvent::CancelAccepted,
                ActionUpdate {
                    clear_error_code: true,
                    reason: Some(
                        "canceled: the device accepted the cancel, it had not run the command \
                         and never will"
                            .into(),
                    ),
                    completed_at: Some(completed_at),
                    purge_passcode: true,
                    ..ActionUpdate::default()
                },
            ),
            Some((ErrorCode::Expired, _)) => (
                ActionEvent::Failed(ErrorCode::Expired),
                ActionUpdate {
                    error_code: Some(ErrorCode::Expired),
                    reason: Some(
                        "the device had not run the command when its time-to-live passed, and \
                         never will"
                            .into(),
                    ),
                    completed_at: Some(completed_at),
                    purge_passcode: true,
                    ..ActionUpdate::default()
                },
            ),
            Some((code, reason)) => {
                // Shown to admins in terminals and pages: printable only.
                let refusal = format!("{}: {}", code.as_str(), printable(&reason));
                tracing::info!(action_id = %action.id, trace_id = %action.trace_id(), code = code.as_str(), "the device refused the cancel");
                let update = ActionUpdate {
                    cancel_refusal: Some(refusal),
                    withdraw_cancel: code != ErrorCode::AlreadyAnswered,
                    ..ActionUpdate::default()
                };
                self.store
                    .transition_action(
                        &action.id,
                        &[action.state],
                        action.state,
                        update,
                        self.now(),
                    )
                    .await?;
                return Ok(());
            }
        };
        self.apply_event(&action.id, event, update).await?;
        Ok(())
    }

    /// Ends every device session; the server calls it when it begins to shut down.
    pub(crate) fn stop_sessions(&self) {
        self.stopping.send_replace(true);
    }

    /// Resolves once [`ControlPlane::stop_sessions`] was called.
    pub(crate) async fn sessions_stopped(&self) {
        let mut stopping = self.stopping.subscribe();
        let _ = stopping.wait_for(|stop| *stop).await;
    }
}

fn token_context(device_id: &str, scope: Scope) -> String {
    format!("escrow/{device_id}/{scope}")
}

/// The fingerprint of an escrow token, as a device reports the token it holds in its status
/// (`StoreStatus.escrow_token_fingerprint`): the first 8 bytes of the token's SHA-256.
pub(crate) fn token_fingerprint(token: &[u8]) -> [u8; 8] {
    let digest = crate::crypto::sha256(token);
    let mut fingerprint = [0u8; 8];
    fingerprint.copy_from_slice(&digest[..8]);
    fingerprint
}

/// Links the device's span of an action's trace to the action in the log: the device continues
/// the trace the command carried, under a span id of its own.
fn log_device_span(action: &Action, device_trace: Option<TraceParent>) {
    if let Some(device_trace) = device_trace {
        tracing::debug!(
            action_id = %action.id,
            trace_id = %device_trace.trace_id_hex(),
            device_span_id = %device_trace.parent_id_hex(),
            "device answered in its span"
        );
    }
}
