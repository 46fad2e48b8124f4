//! Each device's link to the control plane: the loop that keeps its Session stream open
//! (enrolling first when needed, reconnecting with backoff), the protobuf it sends (hello,
//! acknowledgements, command results, status reports, escrowed tokens, passcode entries) and
//! receives (signed commands, passcode policies), and [`Outbound`], the request stream that
//! injects the configured faults into what the device sends.
//!
//! What a device reports while it has no session waits in its slot and leaves first on the next
//! one, followed by its newest escrow tokens the control plane has not acknowledged yet and its
//! passcode entries again (the protocol has no acknowledgement for those).
//!
//! Every session opens with the control plane's challenge, which the device answers with a proof
//! signed by the key it made at enrollment (PROTOCOL.md DEV-SESSION-4). A proof the control plane
//! refuses (`UNAUTHENTICATED`: an admin's ReEnrollDevice revoked the key) is not retried: the
//! device shows that it needs re-enrollment and waits until the harness hands it the single-use
//! token, then enrolls again with it (same device id, a new key), sets new reset tokens, since
//! the control plane dropped the escrowed ones, and reconnects.

use super::spec::FleetError;
use super::{Fleet, Slot, lock};
use crate::convert::*;
use crate::device::crypto::key_id;
use crate::device::{
    CommandKind, CommandResult, DeviceEvent, DeviceKey, Enrollment, ErrorCode, EscrowToken,
    KeyUpdateRefusal, Scope, StoreStatus, TokenState,
};
use crate::faults::{Direction, FaultAction};
use crate::metrics::CommandOutcome;
use droidfleet_proto::identity;
use droidfleet_proto::v1 as pb;
use droidfleet_proto::v1::device_gateway_client::DeviceGatewayClient;
use droidfleet_telemetry::traceparent::TraceParent;
use ring::rand::{SecureRandom, SystemRandom};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

/// Sent in every Hello, so the control plane knows which agent build a device runs.
const AGENT_VERSION: &str = concat!("droidfleet-agent ", env!("CARGO_PKG_VERSION"));

/// The last escrow token the management app set on one store.
pub(super) struct Escrow {
    scope: Scope,
    token: EscrowToken,
    /// What the device reports of the token in its status (`StoreStatus.escrow_token_fingerprint`).
    fingerprint: [u8; 8],
    /// The control plane answered that it durably holds this token.
    acknowledged: bool,
}

/// The first 8 bytes of the token's SHA-256, as the protocol defines a token's fingerprint.
fn fingerprint(token: &EscrowToken) -> [u8; 8] {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.expose());
    let mut fingerprint = [0u8; 8];
    fingerprint.copy_from_slice(&digest.as_ref()[..8]);
    fingerprint
}

impl Fleet {
    /// Keeps the device's session open whenever it is online, reconnecting with backoff, until
    /// `shutdown` changes.
    pub(super) async fn device_loop(
        self: Arc<Self>,
        slot: Arc<Slot>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut backoff = Duration::from_millis(100);
        const MAX_BACKOFF: Duration = Duration::from_secs(5);
        loop {
            if *shutdown.borrow() {
                return;
            }
            tokio::select! {
                _ = online_becomes(&slot, true) => {}
                _ = shutdown.changed() => return,
            }
            // Boxed: a session's future is large and lives only while connected, so the parked
            // loop of an idle or offline device stays small.
            let session_future = Box::pin(self.clone().connect_once(slot.clone()));
            let outcome = tokio::select! {
                outcome = session_future => Some(outcome),
                _ = online_becomes(&slot, false) => Some(Ok(())),
                _ = shutdown.changed() => None,
            };
            // Dropping the sender ends the request stream, which closes the session cleanly.
            *lock(&slot.session) = None;
            if slot.connected.swap(false, Ordering::SeqCst) {
                self.metrics.session_closed();
                self.announce(&slot);
            }
            let Some(outcome) = outcome else { return };
            match outcome {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(SessionError::Fault(kind)) => {
                    tracing::debug!(device = %slot.name, fault = kind, "injected fault broke the session");
                    backoff = Duration::from_millis(100);
                }
                Err(SessionError::Status(status))
                    if status.code() == tonic::Code::Unauthenticated =>
                {
                    tracing::warn!(device = %slot.name, message = status.message(), "the control plane refused the device's proof of its key; waiting for re-enrollment");
                    slot.re_enrollment_required.store(true, Ordering::SeqCst);
                    self.announce(&slot);
                    tokio::select! {
                        _ = self.re_enrollment_token_handed(&slot) => {}
                        _ = shutdown.changed() => return,
                    }
                    backoff = Duration::from_millis(100);
                    continue;
                }
                Err(error) => {
                    tracing::warn!(device = %slot.name, %error, "session to the control plane failed; retrying");
                }
            }
            let jitter = Duration::from_millis(u64::from(rand_u16(&self.rng)) % 100);
            tokio::select! {
                _ = tokio::time::sleep(backoff + jitter) => {}
                _ = shutdown.changed() => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Resolves once a re-enrollment token for the device has been handed over.
    async fn re_enrollment_token_handed(&self, slot: &Slot) {
        loop {
            let handed = slot.online_changed.notified();
            tokio::pin!(handed);
            // Registered before the check, so a token handed in between still wakes.
            handed.as_mut().enable();
            if lock(&self.handed_tokens).contains_key(&slot.name) {
                return;
            }
            handed.await;
        }
    }

    /// Enrolls if needed (again, with a handed re-enrollment token), then holds one session
    /// until it ends.
    async fn connect_once(self: Arc<Self>, slot: Arc<Slot>) -> Result<(), SessionError> {
        let slot = &slot;
        let connecting = self
            .connecting
            .acquire()
            .await
            .map_err(|_| SessionError::Closed)?;
        let handed = lock(&self.handed_tokens).remove(&slot.name);
        let enrollment = lock(&slot.device).enrollment().cloned();
        let mut enrollment = match (handed, enrollment) {
            (Some(token), _) => {
                let enrollment = Box::pin(self.enroll(slot, token.expose(), true)).await?;
                slot.re_enrollment_required.store(false, Ordering::SeqCst);
                enrollment
            }
            (None, Some(enrollment)) => enrollment,
            (None, None) => {
                let token = self.config.enrollment_token.clone().ok_or_else(|| {
                    SessionError::Fleet(FleetError::NoEnrollmentToken(slot.name.clone()))
                })?;
                Box::pin(self.enroll(slot, &token, false)).await?
            }
        };
        let (tx, rx) = mpsc::channel(256);
        let build = lock(&slot.device).build();
        let hello = pb::Hello {
            device_id: enrollment.device_id.clone(),
            agent_version: AGENT_VERSION.to_string(),
            status: Some(self.status_of(slot)),
            api_level: build.api_level.get(),
            maker_profile: build.profile.name().to_string(),
        };
        tx.try_send(Box::new(pb::DeviceMessage {
            body: Some(pb::device_message::Body::Hello(hello)),
        }))
        .map_err(|_| SessionError::Closed)?;
        let broken = Arc::new(tokio::sync::Notify::new());
        let outbound = Outbound {
            rx,
            faults: (!self.config.faults.is_none()).then(|| OutboundFaults {
                fleet: self.clone(),
                slot: slot.clone(),
                broken: broken.clone(),
                held: None,
                repeat: None,
                stalled: false,
            }),
        };
        let mut inbound = Box::pin(self.call_session(slot, outbound)).await?;
        // PROTOCOL.md DEV-SESSION-4: the control plane answers the Hello with a challenge; the
        // proof goes before anything else.
        let challenge = match inbound.message().await? {
            Some(pb::ControlMessage {
                body: Some(pb::control_message::Body::Challenge(challenge)),
            }) => challenge,
            _ => return Err(SessionError::NoChallenge),
        };
        let proof = pb::SessionProof {
            signature: identity::sign_session_proof(
                enrollment.key.expose(),
                &challenge.nonce,
                self.pin.as_ref().map(|pin| pin.as_bytes()),
                &enrollment.device_id,
            ),
        };
        tx.send(Box::new(pb::DeviceMessage {
            body: Some(pb::device_message::Body::Proof(proof)),
        }))
        .await
        .map_err(|_| SessionError::Closed)?;
        Box::pin(self.open_session(slot, &tx)).await?;
        drop(connecting);
        if !slot.connected.swap(true, Ordering::SeqCst) {
            self.metrics.session_opened();
        }
        self.announce(slot);
        tracing::info!(device = %slot.name, device_id = %enrollment.device_id, "session open");
        let receive = async {
            while let Some(message) = inbound.message().await? {
                let copies = match self.fault(slot, Direction::ToDevice) {
                    FaultAction::Deliver => 1,
                    FaultAction::Duplicate => 2,
                    FaultAction::Delay { ms } => {
                        Box::pin(tokio::time::sleep(Duration::from_millis(u64::from(ms)))).await;
                        1
                    }
                    FaultAction::Drop => return Err(SessionError::Fault("drop")),
                    FaultAction::Disconnect => return Err(SessionError::Fault("disconnect")),
                };
                for _ in 0..copies {
                    Box::pin(self.receive(slot, &tx, &mut enrollment, message.clone())).await?;
                }
            }
            Ok(())
        };
        tokio::select! {
            outcome = receive => outcome,
            _ = broken.notified() => Err(SessionError::Fault("outbound")),
        }
    }

    /// Opens the Session stream. Its own function so the client and the request, needed only
    /// for the call, are not kept for the session's whole life.
    async fn call_session(
        &self,
        slot: &Slot,
        outbound: Outbound,
    ) -> Result<tonic::Streaming<pb::ControlMessage>, SessionError> {
        let mut client = DeviceGatewayClient::new(self.pool[slot.connection as usize].clone());
        Ok(client.session(outbound).await?.into_inner())
    }

    /// Sends the reports waiting for a session, then makes `tx` the device's open session.
    async fn open_session(
        &self,
        slot: &Arc<Slot>,
        tx: &mpsc::Sender<Box<pb::DeviceMessage>>,
    ) -> Result<(), SessionError> {
        // In the device's turn, so no change can report between the backlog and the switch
        // to the open session: its report would wait in the backlog for the next session.
        let _turn = slot.turn.lock().await;
        // A waiting escrow or passcode entry is superseded by the lists below, which hold the
        // newest token and the last entry of each store.
        let entered = pb::user_event::Kind::NewPasscodeEntered as i32;
        let mut backlog: Vec<_> = std::mem::take(&mut *lock(&slot.undelivered))
            .into_iter()
            .filter(|message| match &message.body {
                Some(pb::device_message::Body::EscrowToken(_)) => false,
                Some(pb::device_message::Body::UserEvent(event)) => event.kind != entered,
                _ => true,
            })
            .collect();
        // Escrow the tokens not acknowledged yet and repeat the last passcode entries, last, so
        // the control plane ends up with the newest even if an earlier report was lost with a
        // dying stream.
        backlog.extend(
            lock(&slot.escrows)
                .iter()
                .filter(|escrow| !escrow.acknowledged)
                .map(|escrow| pb::DeviceMessage {
                    body: Some(pb::device_message::Body::EscrowToken(
                        pb::EscrowTokenUpdate {
                            scope: scope_to_pb(escrow.scope) as i32,
                            token: escrow.token.expose().to_vec(),
                        },
                    )),
                }),
        );
        // An entry follows its command's result on every session (PROTOCOL.md DEV-RESET-3):
        // the result may have been lost with the stream that carried it, so the stored answer
        // (acknowledgement and result) goes again right before the entry.
        let entries = lock(&slot.entries).clone();
        for entry in entries {
            let stored = lock(&slot.device)
                .command_result(&entry.command_id)
                .map(command_result_to_pb);
            if let Some(result) = stored {
                // The trace went with the first answer; a repeat carries none (it is optional).
                let ack = pb::CommandAck {
                    command_id: entry.command_id.clone(),
                    traceparent: String::new(),
                };
                backlog.push(pb::DeviceMessage {
                    body: Some(pb::device_message::Body::Ack(ack)),
                });
                backlog.push(pb::DeviceMessage {
                    body: Some(pb::device_message::Body::Result(result)),
                });
            }
            backlog.push(pb::DeviceMessage {
                body: Some(pb::device_message::Body::UserEvent(entry)),
            });
        }
        for message in backlog {
            tx.send(Box::new(message))
                .await
                .map_err(|_| SessionError::Closed)?;
            self.metrics.report_sent();
        }
        *lock(&slot.session) = Some(tx.clone());
        Ok(())
    }

    /// Handles one message from the control plane. A key update the device follows changes
    /// `enrollment`, the session's copy, before the next message is read.
    async fn receive(
        &self,
        slot: &Arc<Slot>,
        tx: &mpsc::Sender<Box<pb::DeviceMessage>>,
        enrollment: &mut Enrollment,
        message: pb::ControlMessage,
    ) -> Result<(), SessionError> {
        match message.body {
            Some(pb::control_message::Body::Command(command)) => {
                self.run_command(slot, tx, enrollment, command).await?;
            }
            Some(pb::control_message::Body::EscrowAck(ack)) => {
                if let Some(scope) = scope_from_pb(ack.scope) {
                    for escrow in lock(&slot.escrows).iter_mut() {
                        if escrow.scope == scope && escrow.fingerprint[..] == ack.fingerprint[..] {
                            escrow.acknowledged = true;
                        }
                    }
                }
            }
            Some(pb::control_message::Body::Policy(policy)) => {
                let applied = self
                    .mutate(slot, move |device, _| {
                        Ok(device.apply_signed_policy(
                            &policy.body,
                            &policy.signature,
                            &policy.key_id,
                            decode_policy,
                        ))
                    })
                    .await?;
                // PROTOCOL.md DEV-POLICY-2: the store keeps its policy, and the control plane
                // hears why.
                if let Err(refusal) = applied {
                    tracing::warn!(device = %slot.name, code = ?refusal.code, reason = %refusal.reason, "policy refused");
                    tx.send(Box::new(pb::DeviceMessage {
                        body: Some(pb::device_message::Body::PolicyRefusal(
                            policy_refusal_to_pb(&refusal),
                        )),
                    }))
                    .await
                    .map_err(|_| SessionError::Closed)?;
                    self.metrics.report_sent();
                }
            }
            Some(pb::control_message::Body::KeyUpdate(update)) => {
                // PROTOCOL.md DEV-KEY-2: persisted before the next message, which the new key
                // may sign, is read.
                let followed = self
                    .mutate(slot, move |device, _| {
                        let followed = device.apply_key_update(
                            &update.body,
                            &update.signature,
                            &update.key_id,
                            decode_key_update,
                        );
                        Ok(followed
                            .map(|changed| changed.then(|| device.enrollment().cloned()).flatten()))
                    })
                    .await?;
                match followed {
                    Ok(Some(updated)) => {
                        tracing::info!(device = %slot.name, "the control plane's signing key changed; following it");
                        *enrollment = updated;
                    }
                    Ok(None) => {}
                    // One update per earlier key comes on every session: those signed by keys
                    // the device no longer trusts are expected.
                    Err(KeyUpdateRefusal::NotTrustedKey) => {
                        tracing::debug!(device = %slot.name, "key update from a key this device does not trust; ignored");
                    }
                    Err(KeyUpdateRefusal::Invalid(reason)) => {
                        tracing::warn!(device = %slot.name, reason = %reason, "key update refused");
                    }
                }
            }
            // A session's challenge was answered before this loop; a later one asks nothing.
            Some(pb::control_message::Body::Challenge(_)) | None => {}
        }
        Ok(())
    }

    /// The next fault decision for a message of `slot` going `direction`.
    fn fault(&self, slot: &Slot, direction: Direction) -> FaultAction {
        if self.config.faults.is_none() {
            return FaultAction::Deliver;
        }
        let action = lock(&slot.fault_dice).next(&self.config.faults, direction);
        self.metrics.fault(action);
        action
    }

    /// Enrolls with `token` and a new key pair, whose public key the control plane binds to the
    /// device. A re-enrollment (`renew`) gives the known device its new key; the control plane
    /// dropped its escrowed tokens, so every store gets a new one.
    async fn enroll(
        &self,
        slot: &Arc<Slot>,
        token: &str,
        renew: bool,
    ) -> Result<Enrollment, SessionError> {
        let key = DeviceKey::generate(self.rng.as_ref()).map_err(|_| SessionError::Random)?;
        let mut client = DeviceGatewayClient::new(self.pool[slot.connection as usize].clone());
        let response = client
            .enroll(pb::EnrollRequest {
                enrollment_token: token.to_string(),
                ownership: ownership_to_pb(slot.ownership) as i32,
                display_name: slot.name.clone(),
                device_public_key: identity::device_public_key(key.expose()).to_vec(),
            })
            .await?
            .into_inner();
        let enrollment = Enrollment {
            device_id: response.device_id,
            key,
            command_public_key: response.command_signing_public_key,
        };
        let stored = enrollment.clone();
        let rng = self.rng.clone();
        self.mutate(slot, move |device, _| {
            device.set_enrollment(stored);
            if renew {
                device.renew_tokens(rng.as_ref());
            } else {
                device.ensure_tokens(rng.as_ref());
            }
            Ok(())
        })
        .await?;
        tracing::info!(device = %slot.name, device_id = %enrollment.device_id, re_enrolled = renew, "enrolled");
        Ok(enrollment)
    }

    async fn run_command(
        &self,
        slot: &Arc<Slot>,
        tx: &mpsc::Sender<Box<pb::DeviceMessage>>,
        enrollment: &Enrollment,
        command: pb::SignedCommand,
    ) -> Result<(), SessionError> {
        // Every log line about the command carries its action id and, once the signature
        // verified, the trace id the admin's request started.
        let span = tracing::info_span!(
            "command",
            device = %slot.name,
            action_id = tracing::field::Empty,
            trace_id = tracing::field::Empty,
        );
        self.answer_command(slot, tx, enrollment, command)
            .instrument(span)
            .await
    }

    async fn answer_command(
        &self,
        slot: &Arc<Slot>,
        tx: &mpsc::Sender<Box<pb::DeviceMessage>>,
        enrollment: &Enrollment,
        command: pb::SignedCommand,
    ) -> Result<(), SessionError> {
        let arrived = std::time::Instant::now();
        let signature = command.signature.clone();
        let signed_by = command.key_id.clone();
        // The command's trace, continued by a span of this device; only from a body whose
        // signature verifies.
        let mut trace: Option<TraceParent> = None;
        // The command a verified cancel names, whose answer the device repeats when it refuses
        // the cancel (PROTOCOL.md DEV-CANCEL-1).
        let mut cancel_target: Option<String> = None;
        // Acknowledge receipt first (the action becomes "active"), but only for a command that is
        // genuinely ours; the device model judges everything else.
        if let Some(decoded) = decode_command(&command.body) {
            tracing::Span::current()
                .record("action_id", tracing::field::display(&decoded.command_id));
            let key = ring::signature::UnparsedPublicKey::new(
                &ring::signature::ED25519,
                &enrollment.command_public_key,
            );
            if decoded.device_id == enrollment.device_id
                && command.key_id == key_id(&enrollment.command_public_key)
                && key.verify(&command.body, &command.signature).is_ok()
            {
                if let CommandKind::Cancel { command_id } = &decoded.kind {
                    cancel_target = Some(command_id.clone());
                }
                trace = decoded
                    .traceparent
                    .map(|parent| parent.child(span_id(&self.rng)));
                if let Some(trace) = &trace {
                    tracing::Span::current()
                        .record("trace_id", tracing::field::display(trace.trace_id_hex()));
                }
                let ack = pb::CommandAck {
                    command_id: decoded.command_id.clone(),
                    traceparent: trace_text(trace.as_ref()),
                };
                tx.send(Box::new(pb::DeviceMessage {
                    body: Some(pb::device_message::Body::Ack(ack)),
                }))
                .await
                .map_err(|_| SessionError::Closed)?;
                self.metrics.report_sent();
            }
        }
        let rng = self.rng.clone();
        let body = command.body.clone();
        // The result leaves in the device's turn, right behind the reports of the change it
        // made (rotated token, status): a user's entry, which needs the turn too, can then
        // never overtake the result it follows (PROTOCOL.md DEV-RESET-3).
        let turn = slot.turn.lock().await;
        let (result, repeated): (Option<CommandResult>, Option<CommandResult>) = self
            .mutate_in_turn(slot, &turn, move |device, now| {
                let result = device.run_command(
                    &command.body,
                    &command.signature,
                    &command.key_id,
                    decode_command,
                    now,
                    rng.as_ref(),
                );
                let refused_as_answered = result
                    .as_ref()
                    .is_some_and(|r| matches!(r.error, Some((ErrorCode::AlreadyAnswered, _))));
                let repeated = cancel_target
                    .filter(|_| refused_as_answered)
                    .and_then(|target| device.command_result(&target).cloned());
                Ok((result, repeated))
            })
            .await?;
        let outcome = match &result {
            Some(result) if result.success => CommandOutcome::Success,
            Some(_) => CommandOutcome::Failure,
            None => CommandOutcome::Ignored,
        };
        self.metrics.command(outcome, arrived.elapsed());
        let result = result.or_else(|| self.malformed(&body, &signature, &signed_by, enrollment));
        if let Some(result) = result {
            tracing::info!(success = result.success, "command result");
            let mut answer = command_result_to_pb(&result);
            answer.traceparent = trace_text(trace.as_ref());
            tx.send(Box::new(pb::DeviceMessage {
                body: Some(pb::device_message::Body::Result(answer)),
            }))
            .await
            .map_err(|_| SessionError::Closed)?;
            self.metrics.report_sent();
        }
        // A refused cancel: the command it named was answered, and that answer, repeated as for
        // a redelivery (ack, then the recorded result), is what ends the action.
        if let Some(repeated) = repeated {
            let ack = pb::CommandAck {
                command_id: repeated.command_id.clone(),
                traceparent: String::new(),
            };
            for body in [
                pb::device_message::Body::Ack(ack),
                pb::device_message::Body::Result(command_result_to_pb(&repeated)),
            ] {
                tx.send(Box::new(pb::DeviceMessage { body: Some(body) }))
                    .await
                    .map_err(|_| SessionError::Closed)?;
                self.metrics.report_sent();
            }
        }
        drop(turn);
        Ok(())
    }

    /// The answer to a signed body that is not a command this device understands (PROTOCOL.md
    /// DEV-CMD-4): MALFORMED_COMMAND under the id it names, when it verifies, parses and names
    /// this device. Nothing runs and nothing is recorded; without an id there is nobody to
    /// answer.
    fn malformed(
        &self,
        body: &[u8],
        signature: &[u8],
        signed_by: &[u8],
        enrollment: &Enrollment,
    ) -> Option<CommandResult> {
        if signed_by != key_id(&enrollment.command_public_key) {
            return None;
        }
        let key = ring::signature::UnparsedPublicKey::new(
            &ring::signature::ED25519,
            &enrollment.command_public_key,
        );
        key.verify(body, signature).ok()?;
        let parsed = <pb::CommandBody as prost::Message>::decode(body).ok()?;
        if parsed.command_id.is_empty() || parsed.device_id != enrollment.device_id {
            return None;
        }
        Some(CommandResult {
            command_id: parsed.command_id,
            success: false,
            error: Some((
                crate::device::ErrorCode::MalformedCommand,
                "the command body does not decode into a command this device knows".to_owned(),
            )),
            completed_at_ms: self.config.clock.now_ms(),
        })
    }

    /// Sends what `events` call for; `statuses` is the device's status right after the change.
    pub(super) fn report_events(
        &self,
        slot: &Slot,
        events: Vec<DeviceEvent>,
        statuses: &[StoreStatus],
    ) {
        use pb::device_message::Body;
        let mut status_changed = false;
        for event in events {
            let body = match event {
                DeviceEvent::StatusChanged => {
                    status_changed = true;
                    continue;
                }
                DeviceEvent::EscrowToken { scope, token } => {
                    tracing::info!(device = %slot.name, scope = scope.as_str(), "escrow token set; escrowing it");
                    let mut escrows = lock(&slot.escrows);
                    escrows.retain(|kept| kept.scope != scope);
                    escrows.push(Escrow {
                        scope,
                        fingerprint: fingerprint(&token),
                        token: token.clone(),
                        acknowledged: false,
                    });
                    drop(escrows);
                    Body::EscrowToken(pb::EscrowTokenUpdate {
                        scope: scope_to_pb(scope) as i32,
                        token: token.expose().to_vec(),
                    })
                }
                DeviceEvent::NewPasscodeEntered {
                    scope,
                    command_id,
                    at_ms,
                } => {
                    let entry = pb::UserEvent {
                        kind: pb::user_event::Kind::NewPasscodeEntered as i32,
                        scope: scope_to_pb(scope) as i32,
                        at_ms,
                        command_id,
                    };
                    let mut entries = lock(&slot.entries);
                    entries.retain(|kept| kept.scope != entry.scope);
                    entries.push(entry.clone());
                    Body::UserEvent(entry)
                }
                DeviceEvent::StoreWiped { scope, at_ms } => Body::UserEvent(pb::UserEvent {
                    kind: pb::user_event::Kind::StoreWiped as i32,
                    scope: scope_to_pb(scope) as i32,
                    at_ms,
                    command_id: String::new(),
                }),
            };
            self.send(slot, body);
        }
        if status_changed {
            let status = status_pb(slot, statuses);
            self.send(slot, pb::device_message::Body::Status(status));
        }
    }

    fn status_of(&self, slot: &Slot) -> pb::DeviceStatus {
        let statuses = lock(&slot.device).statuses(self.config.clock.now_ms());
        status_pb(slot, &statuses)
    }

    /// Sends on the open session, or keeps the message for the next one.
    fn send(&self, slot: &Slot, body: pb::device_message::Body) {
        let message = Box::new(pb::DeviceMessage { body: Some(body) });
        let session = lock(&slot.session).clone();
        let message = match session {
            Some(tx) => match tx.try_send(message) {
                Ok(()) => {
                    self.metrics.report_sent();
                    return;
                }
                Err(mpsc::error::TrySendError::Full(m) | mpsc::error::TrySendError::Closed(m)) => m,
            },
            None => message,
        };
        lock(&slot.undelivered).push(*message);
    }
}

/// The device's status as reported: each store's, with the fingerprint of the token the store
/// holds (the last one set, while the store has a token).
fn status_pb(slot: &Slot, statuses: &[StoreStatus]) -> pb::DeviceStatus {
    let escrows = lock(&slot.escrows);
    pb::DeviceStatus {
        stores: statuses
            .iter()
            .map(|status| {
                let mut reported = store_status_to_pb(status);
                if status.token_state != TokenState::None
                    && let Some(escrow) = escrows.iter().find(|e| e.scope == status.scope)
                {
                    reported.escrow_token_fingerprint = escrow.fingerprint.to_vec();
                }
                reported
            })
            .collect(),
    }
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error(transparent)]
    Fleet(#[from] FleetError),
    #[error("control plane answered: {0}")]
    Status(#[from] tonic::Status),
    #[error("the session closed")]
    Closed,
    #[error("the control plane did not answer the Hello with a SessionChallenge")]
    NoChallenge,
    #[error("the system's random generator failed")]
    Random,
    /// An injected fault (`--faults`) broke the session on purpose.
    #[error("an injected {0} fault broke the session")]
    Fault(&'static str),
}

/// Resolves once the device's network is `on` (airplane mode off) or off.
async fn online_becomes(slot: &Slot, on: bool) {
    loop {
        let changed = slot.online_changed.notified();
        tokio::pin!(changed);
        // Registered before the check, so a change between the check and the wait still wakes.
        changed.as_mut().enable();
        if slot.online.load(Ordering::SeqCst) == on {
            return;
        }
        changed.await;
    }
}

/// A session's request stream: the device's messages in the order it made them, through the
/// fault injector when faults are configured.
struct Outbound {
    rx: mpsc::Receiver<Box<pb::DeviceMessage>>,
    faults: Option<OutboundFaults>,
}

/// The fault injector's state for one session's outgoing messages.
struct OutboundFaults {
    fleet: Arc<Fleet>,
    slot: Arc<Slot>,
    /// Told when a fault breaks the session; the session's receive loop ends on it.
    broken: Arc<tokio::sync::Notify>,
    /// A delayed message and its timer. Later messages wait behind it: a stream keeps order.
    held: Option<(Pin<Box<tokio::time::Sleep>>, Box<pb::DeviceMessage>)>,
    /// The second copy of a duplicated message, sent next.
    repeat: Option<Box<pb::DeviceMessage>>,
    /// Set once a fault broke the session: nothing more leaves on it.
    stalled: bool,
}

impl tokio_stream::Stream for Outbound {
    type Item = pb::DeviceMessage;

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<pb::DeviceMessage>> {
        use std::task::Poll;
        let this = self.get_mut();
        let Some(faults) = this.faults.as_mut() else {
            return this.rx.poll_recv(cx).map(|m| m.map(|m| *m));
        };
        if faults.stalled {
            return Poll::Pending;
        }
        if let Some(message) = faults.repeat.take() {
            return Poll::Ready(Some(*message));
        }
        if let Some((timer, _)) = faults.held.as_mut() {
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if let Some((_, message)) = faults.held.take() {
                return Poll::Ready(Some(*message));
            }
        }
        let Some(message) = std::task::ready!(this.rx.poll_recv(cx)) else {
            return Poll::Ready(None);
        };
        // The Hello and the proof open the session; faults start after them.
        if matches!(
            message.body,
            Some(pb::device_message::Body::Hello(_) | pb::device_message::Body::Proof(_))
        ) {
            return Poll::Ready(Some(*message));
        }
        match faults.fleet.fault(&faults.slot, Direction::ToControlPlane) {
            FaultAction::Deliver => Poll::Ready(Some(*message)),
            FaultAction::Duplicate => {
                faults.repeat = Some(message.clone());
                Poll::Ready(Some(*message))
            }
            FaultAction::Delay { ms } => {
                let mut timer = Box::pin(tokio::time::sleep(Duration::from_millis(u64::from(ms))));
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(*message));
                }
                faults.held = Some((timer, message));
                Poll::Pending
            }
            FaultAction::Drop => {
                faults.stalled = true;
                faults.broken.notify_one();
                Poll::Pending
            }
            FaultAction::Disconnect => {
                // Not sent: the device keeps it for its next session.
                lock(&faults.slot.undelivered).push(*message);
                faults.stalled = true;
                faults.broken.notify_one();
                Poll::Pending
            }
        }
    }
}

fn rand_u16(rng: &SystemRandom) -> u16 {
    let mut bytes = [0u8; 2];
    let _ = ring::rand::SecureRandom::fill(rng, &mut bytes);
    u16::from_le_bytes(bytes)
}

/// A new span id of this device; all zeros (a failed random source) is made valid by
/// [`TraceParent::child`].
fn span_id(rng: &SystemRandom) -> [u8; 8] {
    let mut id = [0u8; 8];
    let _ = rng.fill(&mut id);
    id
}

/// A report's optional `traceparent`: empty when the command carried none.
fn trace_text(trace: Option<&TraceParent>) -> String {
    trace.map(TraceParent::to_string).unwrap_or_default()
}
