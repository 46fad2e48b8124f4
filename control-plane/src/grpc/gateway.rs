//! `droidfleet.v1.DeviceGateway`: enrollment, and one Session stream per device. A session opens
//! with a challenge the device answers with a proof of its enrolled key; then its task sends the
//! device a key update from each earlier signing key, its signed policies and every command that
//! still needs a result, in sequence order, then waits for reports from the device and for
//! signals that something new is queued.

use super::convert::*;
use super::oversize::oversize_is_exhausted;
use crate::model::{Device, Scope};
use crate::secret::BearerToken;
use crate::service::{CommandPayload, ControlPlane, DeviceReply, SessionSignals};
use droidfleet_proto::identity;
use droidfleet_proto::v1 as pb;
use droidfleet_proto::v1::device_gateway_server::DeviceGateway;
use prost::Message;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

pub struct Gateway {
    control_plane: Arc<ControlPlane>,
}

impl Gateway {
    pub fn new(control_plane: Arc<ControlPlane>) -> Gateway {
        Gateway { control_plane }
    }
}

type ControlStream = Pin<Box<dyn Stream<Item = Result<pb::ControlMessage, Status>> + Send>>;

/// What a session task hands its response stream.
type SessionItem = Result<Box<pb::ControlMessage>, Status>;

#[tonic::async_trait]
impl DeviceGateway for Gateway {
    async fn enroll(
        &self,
        request: Request<pb::EnrollRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        let request = request.into_inner();
        let ownership = ownership_from_pb(request.ownership, "ownership")?;
        // Only the secret is stored: the CA fingerprint after it was for the device to pin.
        let token = BearerToken::new(
            droidfleet_proto::tls::enrollment_token_secret(&request.enrollment_token).to_string(),
        );
        let device = self
            .control_plane
            .enroll(
                &token,
                ownership,
                &request.display_name,
                &request.device_public_key,
            )
            .await?;
        Ok(Response::new(pb::EnrollResponse {
            device_id: device.id,
            command_signing_public_key: self.control_plane.keys().signing_public_key().to_vec(),
        }))
    }

    type SessionStream = ControlStream;

    async fn session(
        &self,
        request: Request<Streaming<pb::DeviceMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let control_plane = self.control_plane.clone();
        let mut inbound = request.into_inner();
        // PROTOCOL.md CP-SESSION-2: the Hello comes first, and (--hello-timeout) soon; a stream that says nothing
        // holds a task and its buffers for nothing.
        let hello = match first_message(&control_plane, &mut inbound, "a Hello").await? {
            Some(pb::DeviceMessage {
                body: Some(pb::device_message::Body::Hello(hello)),
            }) => hello,
            _ => {
                return Err(Status::invalid_argument(
                    "the first session message must be a Hello",
                ));
            }
        };
        control_plane.check_hello(&hello.device_id, &hello.agent_version)?;
        // Boxed messages: a channel allocates its slots in blocks of 32 up front, and every
        // connected device holds one.
        let (tx, rx) = mpsc::channel::<SessionItem>(64);
        tokio::spawn(async move {
            let opened = Box::pin(open_session(&control_plane, hello, &mut inbound, &tx)).await;
            let (device, signals) = match opened {
                Ok(opened) => opened,
                Err(status) => {
                    tracing::info!(code = ?status.code(), message = status.message(), "device session refused");
                    let _ = tx.send(Err(status)).await;
                    return;
                }
            };
            let outcome = run_session(&control_plane, &device, &signals, &mut inbound, &tx).await;
            control_plane.close_session(&device.id, &signals);
            match outcome {
                Ok(()) => tracing::info!(device_id = %device.id, "device session closed"),
                Err(status) => {
                    tracing::info!(device_id = %device.id, code = ?status.code(), message = status.message(), "device session ended");
                    let _ = tx.send(Err(status)).await;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx)
                .map(|item| item.map(|message| *message)),
        )))
    }
}

/// The next message of a session that has not proved itself yet, within `--hello-timeout`.
async fn first_message(
    control_plane: &ControlPlane,
    inbound: &mut Streaming<pb::DeviceMessage>,
    expected: &str,
) -> Result<Option<pb::DeviceMessage>, Status> {
    let timeout = control_plane.config().limits.hello_timeout;
    let message = tokio::time::timeout(timeout, inbound.message())
        .await
        .map_err(|_| {
            Status::deadline_exceeded(format!(
                "no {expected} within {} ms (--hello-timeout)",
                timeout.as_millis()
            ))
        })?;
    message.map_err(oversize_is_exhausted)
}

/// Challenges the device the Hello names to prove it holds its enrolled key (PROTOCOL.md
/// CP-SESSION-1), then records the Hello and registers the session. Nothing the device sends is
/// recorded before the proof checks.
async fn open_session(
    control_plane: &ControlPlane,
    hello: pb::Hello,
    inbound: &mut Streaming<pb::DeviceMessage>,
    tx: &mpsc::Sender<SessionItem>,
) -> Result<(Device, Arc<SessionSignals>), Status> {
    let mut nonce = [0u8; identity::NONCE_LEN];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
        .map_err(|_| Status::internal("no randomness for the session challenge"))?;
    // An unknown device is challenged like a known one: the refusal that follows does not tell
    // a caller which device ids exist.
    let challenge = pb::SessionChallenge {
        nonce: nonce.to_vec(),
    };
    send(tx, pb::control_message::Body::Challenge(challenge)).await?;
    let refused = |why: &str| {
        control_plane.proof_refused();
        Status::unauthenticated(format!(
            "{why}: the session is refused (a device whose key an admin revoked must re-enroll)"
        ))
    };
    let signature =
        match first_message(control_plane, inbound, "SessionProof after the challenge").await {
            Ok(Some(pb::DeviceMessage {
                body: Some(pb::device_message::Body::Proof(proof)),
            })) => proof.signature,
            // A stream half-closed before the proof may still be read: it learns why it ends.
            Ok(None) => {
                return Err(Status::unauthenticated(
                    "the device's stream ended before its SessionProof: the session is refused",
                ));
            }
            Ok(Some(_)) => {
                return Err(refused(
                    "the message after the SessionChallenge must be a SessionProof",
                ));
            }
            Err(status) if status.code() == tonic::Code::DeadlineExceeded => {
                return Err(refused(status.message()));
            }
            Err(status) => return Err(status),
        };
    let proven = control_plane
        .device_with_key(&hello.device_id)
        .filter(|(_, key)| {
            identity::session_proof_verifies(
                key,
                &nonce,
                control_plane.session_pin(),
                &hello.device_id,
                &signature,
            )
        });
    let Some((device, key)) = proven else {
        return Err(refused(
            "the session proof does not verify with the key enrolled for the Hello's device",
        ));
    };
    let stores = hello_stores_from_pb(&hello)?;
    control_plane.check_hello_stores(&device, &stores)?;
    control_plane
        .record_build(&device, hello.api_level, &hello.maker_profile)
        .await?;
    control_plane.touch(&device, &stores).await?;
    let signals = control_plane.open_session(&device.id).await?;
    // A re-enrollment that revoked or replaced the key between the check above and the
    // registration just now would have found no session to end: look again.
    if control_plane
        .device_with_key(&device.id)
        .is_none_or(|(_, current)| current != key)
    {
        control_plane.close_session(&device.id, &signals);
        return Err(Status::unauthenticated(
            "the device's key was revoked for re-enrollment; the device must re-enroll",
        ));
    }
    tracing::info!(device_id = %device.id, agent = %hello.agent_version, "device session opened");
    Ok((device, signals))
}

async fn run_session(
    control_plane: &ControlPlane,
    device: &Device,
    signals: &SessionSignals,
    inbound: &mut Streaming<pb::DeviceMessage>,
    tx: &mpsc::Sender<SessionItem>,
) -> Result<(), Status> {
    // Every step's work is boxed: this future is parked for as long as the device is connected,
    // and unboxed it would be as large as its largest step for all that time.
    Box::pin(send_key_updates(control_plane, device, tx)).await?;
    Box::pin(send_policies(control_plane, device, tx)).await?;
    let mut last_sent = Box::pin(send_commands(control_plane, device, 0, tx)).await?;
    loop {
        tokio::select! {
            // Biased, in this order: a policy change that happened before a command was created
            // goes out before that command (PROTOCOL.md CP-POLICY-2), whichever woke first.
            biased;
            message = inbound.message() => {
                let Some(message) = message.map_err(oversize_is_exhausted)? else { return Ok(()) };
                let report = device_report_from_pb(message)?;
                let reply = Box::pin(control_plane.handle_device_report(device, report)).await?;
                match reply {
                    Some(DeviceReply::EscrowAck { scope, fingerprint }) => {
                        let ack = pb::EscrowAck {
                            scope: scope_to_pb(scope) as i32,
                            fingerprint: fingerprint.to_vec(),
                        };
                        send(tx, pb::control_message::Body::EscrowAck(ack)).await?;
                    }
                    None => {}
                }
            }
            _ = signals.policy.notified() => Box::pin(send_policies(control_plane, device, tx)).await?,
            _ = signals.commands.notified() => {
                let sent = Box::pin(send_commands(control_plane, device, last_sent, tx)).await?;
                last_sent = last_sent.max(sent);
            }
            _ = signals.replaced.notified() => {
                return Err(Status::aborted("a newer session of this device replaced this one"));
            }
            _ = signals.revoked.notified() => {
                return Err(Status::unauthenticated(
                    "the device's key was revoked for re-enrollment; the device must re-enroll",
                ));
            }
            _ = control_plane.sessions_stopped() => {
                return Err(Status::unavailable("the control plane is shutting down"));
            }
        }
    }
}

/// PROTOCOL.md CP-KEY-2: before anything signed, one key update per retired signing key, each
/// signed by that key and naming the current one, so a device that still trusts any earlier key
/// trusts the current key before the first policy or command signed with it.
async fn send_key_updates(
    control_plane: &ControlPlane,
    device: &Device,
    tx: &mpsc::Sender<SessionItem>,
) -> Result<(), Status> {
    let keys = control_plane.keys();
    let body = pb::KeyUpdateBody {
        device_id: device.id.clone(),
        public_key: keys.signing_public_key().to_vec(),
    }
    .encode_to_vec();
    let signed = droidfleet_proto::signing::key_update_signed_bytes(&body);
    for (key_id, signature) in keys.retired_signatures(&signed) {
        let update = pb::SignedKeyUpdate {
            body: body.clone(),
            signature,
            key_id: key_id.to_vec(),
        };
        send(tx, pb::control_message::Body::KeyUpdate(update)).await?;
    }
    Ok(())
}

async fn send_policies(
    control_plane: &ControlPlane,
    device: &Device,
    tx: &mpsc::Sender<SessionItem>,
) -> Result<(), Status> {
    let device = control_plane.device_record(&device.id).await?;
    let mut scopes = vec![Scope::Device];
    if device.ownership.has_work_profile() {
        scopes.push(Scope::WorkProfile);
    }
    for scope in scopes {
        let body = pb::PolicyBody {
            device_id: device.id.clone(),
            scope: scope_to_pb(scope) as i32,
            policy: device.policy(scope).map(policy_to_pb),
            version: device.policy_version,
        }
        .encode_to_vec();
        // PROTOCOL.md CP-POLICY-3: signed like a command, behind a prefix of its own.
        let signature = control_plane
            .keys()
            .sign(&droidfleet_proto::signing::policy_signed_bytes(&body));
        let policy = pb::SignedPolicy {
            body,
            signature,
            key_id: control_plane.keys().signing_key_id().to_vec(),
        };
        send(tx, pb::control_message::Body::Policy(policy)).await?;
    }
    Ok(())
}

/// Signs and sends every open command above `after`; returns the highest sequence sent.
async fn send_commands(
    control_plane: &ControlPlane,
    device: &Device,
    after: u64,
    tx: &mpsc::Sender<SessionItem>,
) -> Result<u64, Status> {
    let mut highest = after;
    for command in control_plane.commands_to_send(&device.id, after).await? {
        let sequence = command.sequence();
        let kind = match &command.payload {
            CommandPayload::ResetPasscode { passcode, token } => {
                pb::command_body::Kind::ResetPasscode(pb::ResetPasscodeCommand {
                    scope: scope_to_pb(command.action.scope) as i32,
                    new_passcode: passcode.expose().to_string(),
                    escrow_token: token.expose().to_vec(),
                    flags: vec![pb::ResetFlag::RequireEntry as i32],
                })
            }
            CommandPayload::RemoteLock => {
                pb::command_body::Kind::RemoteLock(pb::RemoteLockCommand {
                    scope: scope_to_pb(command.action.scope) as i32,
                })
            }
            CommandPayload::Cancel => pb::command_body::Kind::Cancel(pb::CancelCommand {
                command_id: command.action.id.clone(),
            }),
        };
        let body = pb::CommandBody {
            command_id: command.command_id(),
            device_id: device.id.clone(),
            sequence,
            not_after_ms: command.action.not_after,
            kind: Some(kind),
            traceparent: command
                .action
                .traceparent
                .map(|trace| trace.to_string())
                .unwrap_or_default(),
        };
        let mut bytes = body.encode_to_vec();
        drop(body);
        let signature = control_plane.keys().sign(&bytes);
        let message = pb::SignedCommand {
            body: std::mem::take(&mut bytes),
            signature,
            key_id: control_plane.keys().signing_key_id().to_vec(),
        };
        tracing::info!(device_id = %device.id, action_id = %command.action.id, trace_id = %command.action.trace_id(), sequence, cancel = matches!(command.payload, CommandPayload::Cancel), "command sent");
        send(tx, pb::control_message::Body::Command(message)).await?;
        highest = highest.max(sequence);
    }
    Ok(highest)
}

async fn send(
    tx: &mpsc::Sender<SessionItem>,
    body: pb::control_message::Body,
) -> Result<(), Status> {
    tx.send(Ok(Box::new(pb::ControlMessage { body: Some(body) })))
        .await
        .map_err(|_| Status::cancelled("the device closed its session"))
}
