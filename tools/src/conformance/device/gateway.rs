//! The kit's own `DeviceGateway`: the control plane a device under test enrolls with and keeps
//! its session to. It does what PROTOCOL.md asks of a control plane at the edges (enrollment,
//! the challenge and proof that open a session, one signed policy per store after each proof)
//! and hands everything else, as
//! [`Event`]s in arrival order, to the cases, which decide what to send and judge what comes back.

use super::super::transcript::{self, Transcript};
use super::commands::{policy_message, signed_policy};
use droidfleet_proto::identity;
use droidfleet_proto::v1 as pb;
use droidfleet_proto::v1::device_gateway_server::DeviceGateway;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

/// What the gateway tells the cases, in the order it happened.
#[derive(Debug)]
pub(crate) enum Event {
    /// The device enrolled (or enrolled again).
    Enrolled(pb::EnrollRequest),
    /// A session call arrived; `refused` when the kit turned it away on purpose.
    SessionAttempt { at: Instant, refused: bool },
    /// A session was accepted: the kit sends on `tx`.
    Opened {
        session: u64,
        tx: mpsc::Sender<Result<pb::ControlMessage, Status>>,
    },
    /// The device sent a message on a session.
    Message {
        session: u64,
        message: pb::DeviceMessage,
    },
    /// The device's side of a session ended (cleanly, or with the status it broke with).
    Ended { session: u64, error: Option<Status> },
}

/// The identity the kit gave the device.
#[derive(Clone, Debug)]
pub(crate) struct Enrolled {
    pub(crate) device_id: String,
    /// The Ed25519 public key the device enrolled with; its session proofs must verify with it.
    pub(crate) public_key: Vec<u8>,
    pub(crate) ownership: pb::Ownership,
}

/// What the gateway and the cases share.
pub(crate) struct Shared {
    /// The token the device under test must enroll with.
    pub(crate) enrollment_token: String,
    /// Signs the kit's commands; its public half goes to the device at enrollment.
    pub(crate) key: Ed25519KeyPair,
    pub(crate) transcript: Transcript,
    pub(crate) state: Mutex<GatewayState>,
    events: mpsc::UnboundedSender<Event>,
}

/// The gateway's mutable state.
#[derive(Default)]
pub(crate) struct GatewayState {
    pub(crate) enrolled: Option<Enrolled>,
    /// Turn away this many session attempts with UNAVAILABLE (the reconnect case).
    pub(crate) refuse_sessions: u32,
    /// The policy of each store (`CredentialScope` value), sent after every Hello.
    pub(crate) policies: BTreeMap<i32, Option<pb::PasscodePolicy>>,
    /// The version the policies are sent at: raised by every policy the kit changes.
    pub(crate) policy_version: u64,
    /// Session proofs that verified with the enrolled key, and those that did not (PROTOCOL.md
    /// DEV-SESSION-4).
    pub(crate) proofs_verified: u32,
    pub(crate) proofs_refused: u32,
    next_session: u64,
    next_device: u64,
}

impl Shared {
    pub(crate) fn new(
        enrollment_token: String,
        transcript: Transcript,
    ) -> (Arc<Shared>, mpsc::UnboundedReceiver<Event>) {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("the system RNG works");
        let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("a key just generated parses");
        let (events, received) = mpsc::unbounded_channel();
        let shared = Shared {
            enrollment_token,
            key,
            transcript,
            state: Mutex::new(GatewayState::default()),
            events,
        };
        (Arc::new(shared), received)
    }

    pub(crate) fn state(&self) -> std::sync::MutexGuard<'_, GatewayState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn emit(&self, event: Event) {
        let _ = self.events.send(event);
    }
}

/// The kit's gateway service.
pub(crate) struct KitGateway {
    pub(crate) shared: Arc<Shared>,
}

type ControlStream = Pin<Box<dyn Stream<Item = Result<pb::ControlMessage, Status>> + Send>>;

#[tonic::async_trait]
impl DeviceGateway for KitGateway {
    async fn enroll(
        &self,
        request: Request<pb::EnrollRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        let request = request.into_inner();
        let shared = &self.shared;
        shared.transcript.record(
            "device → kit",
            format!(
                "Enroll ownership={:?} display_name={:?} enrollment_token=<redacted>",
                pb::Ownership::try_from(request.ownership)
                    .map(|o| o.as_str_name())
                    .unwrap_or("unknown"),
                request.display_name
            ),
        );
        if request.enrollment_token != shared.enrollment_token {
            return Err(Status::permission_denied(
                "the enrollment token is not the one the conformance kit was given",
            ));
        }
        let ownership = match pb::Ownership::try_from(request.ownership) {
            Ok(pb::Ownership::Unspecified) | Err(_) => {
                return Err(Status::invalid_argument(
                    "invalid ownership: must be COSU, COBO, COPE, BYOD or AOSP",
                ));
            }
            Ok(ownership) => ownership,
        };
        if request.device_public_key.len() != identity::KEY_LEN {
            return Err(Status::invalid_argument(
                "invalid device_public_key: must be a 32-byte Ed25519 public key",
            ));
        }
        let device_id = {
            let mut state = shared.state();
            state.next_device += 1;
            let enrolled = Enrolled {
                device_id: format!("conformance-device-{}", state.next_device),
                public_key: request.device_public_key.clone(),
                ownership,
            };
            state.enrolled = Some(enrolled.clone());
            enrolled
        };
        shared.emit(Event::Enrolled(request));
        Ok(Response::new(pb::EnrollResponse {
            device_id: device_id.device_id,
            command_signing_public_key: shared.key.public_key().as_ref().to_vec(),
        }))
    }

    type SessionStream = ControlStream;

    async fn session(
        &self,
        request: Request<Streaming<pb::DeviceMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let shared = self.shared.clone();
        let (session, policies, refused, enrolled) = {
            let mut state = shared.state();
            let Some(enrolled) = state.enrolled.clone() else {
                return Err(Status::unauthenticated(
                    "no device has enrolled with the kit",
                ));
            };
            let refused = state.refuse_sessions > 0;
            if refused {
                state.refuse_sessions -= 1;
            }
            state.next_session += 1;
            let policies: Vec<pb::SignedPolicy> = stores_of(enrolled.ownership)
                .into_iter()
                .map(|scope| {
                    let scope = scope as i32;
                    let policy = state.policies.get(&scope).cloned().flatten();
                    signed_policy(
                        &shared.key,
                        &enrolled.device_id,
                        scope,
                        policy,
                        state.policy_version,
                    )
                })
                .collect();
            (state.next_session, policies, refused, enrolled)
        };
        shared.emit(Event::SessionAttempt {
            at: Instant::now(),
            refused,
        });
        if refused {
            shared.transcript.record(
                "kit",
                format!("turned away session attempt {session} (UNAVAILABLE)"),
            );
            return Err(Status::unavailable(
                "the conformance kit turns this attempt away on purpose (backoff check)",
            ));
        }
        let (tx, rx) = mpsc::channel(256);
        let mut inbound = request.into_inner();
        // Only for the challenge, the policies after the proof and handing the session to the
        // cases: the reader must not keep the stream open.
        let mut policy_tx = Some(tx);
        // The nonce of the challenge sent after the Hello, until the proof answers it.
        let mut challenged: Option<[u8; identity::NONCE_LEN]> = None;
        tokio::spawn(async move {
            loop {
                match inbound.message().await {
                    // PROTOCOL.md CP-SESSION-1: the proof answers the challenge; the policies
                    // follow a proof that verifies.
                    Ok(Some(pb::DeviceMessage {
                        body: Some(pb::device_message::Body::Proof(proof)),
                    })) if challenged.is_some() => {
                        let nonce = challenged.take().unwrap_or_default();
                        let verified = identity::session_proof_verifies(
                            &enrolled.public_key,
                            &nonce,
                            None,
                            &enrolled.device_id,
                            &proof.signature,
                        );
                        let Some(tx) = policy_tx.take() else { continue };
                        if !verified {
                            shared.state().proofs_refused += 1;
                            shared.transcript.record(
                                "kit",
                                format!("session {session}: the proof does not verify; refused"),
                            );
                            let _ = tx
                                .send(Err(Status::unauthenticated(
                                    "the session proof does not verify with the enrolled key",
                                )))
                                .await;
                            continue;
                        }
                        shared.state().proofs_verified += 1;
                        shared.transcript.record(
                            "device → kit",
                            format!("SessionProof (session {session}): verified"),
                        );
                        for policy in &policies {
                            let update = policy_message(policy.clone());
                            shared
                                .transcript
                                .record("kit → device", transcript::control_message(&update));
                            let _ = tx.send(Ok(update)).await;
                        }
                        // Only a proven session is open: a case's first command goes after the
                        // proof and the policies, as a control plane's would (CP-SESSION-1).
                        shared
                            .transcript
                            .record("kit", format!("session {session} opened"));
                        shared.emit(Event::Opened { session, tx });
                    }
                    Ok(Some(message)) => {
                        shared
                            .transcript
                            .record("device → kit", transcript::device_message(&message));
                        let is_hello =
                            matches!(message.body, Some(pb::device_message::Body::Hello(_)));
                        shared.emit(Event::Message { session, message });
                        if let Some(tx) = &policy_tx
                            && is_hello
                            && challenged.is_none()
                        {
                            let nonce: [u8; identity::NONCE_LEN] = random_bytes();
                            challenged = Some(nonce);
                            let challenge = pb::ControlMessage {
                                body: Some(pb::control_message::Body::Challenge(
                                    pb::SessionChallenge {
                                        nonce: nonce.to_vec(),
                                    },
                                )),
                            };
                            shared
                                .transcript
                                .record("kit → device", transcript::control_message(&challenge));
                            let _ = tx.send(Ok(challenge)).await;
                        }
                    }
                    Ok(None) => {
                        shared.emit(Event::Ended {
                            session,
                            error: None,
                        });
                        return;
                    }
                    Err(status) => {
                        shared.emit(Event::Ended {
                            session,
                            error: Some(status),
                        });
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// The stores a device of `ownership` has, as PROTOCOL.md DEV-SESSION-2 lists them.
pub(crate) fn stores_of(ownership: pb::Ownership) -> Vec<pb::CredentialScope> {
    match ownership {
        pb::Ownership::Cosu | pb::Ownership::Aosp | pb::Ownership::Unspecified => {
            vec![pb::CredentialScope::Device]
        }
        _ => vec![
            pb::CredentialScope::Device,
            pb::CredentialScope::WorkProfile,
        ],
    }
}

/// 32 random bytes as hex: enrollment tokens.
pub(crate) fn random_text() -> String {
    random_bytes::<32>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `N` random bytes: nonces, and the material of [`random_text`].
fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .expect("the system RNG works");
    bytes
}
