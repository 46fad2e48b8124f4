//! A device played by hand over the control plane's `DeviceGateway`, for what a well-behaved
//! device would never do: a [`RawDevice`] enrolls, opens [`RawSession`]s proving any key (or
//! none) with any first messages, reads (or does not read) what the control plane sends, and says whatever the
//! case wants. Everything it says and hears goes in the case's transcript.

use super::super::runner::{self, Outcome, fail};
use super::super::transcript::{self, Transcript};
use droidfleet_proto::identity;
use droidfleet_proto::v1 as pb;
use droidfleet_proto::v1::device_gateway_client::DeviceGatewayClient;
use prost::Message as _;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::sync::mpsc;
use tonic::transport::Channel;

/// How long a raw device waits for the control plane to send or do something.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// An enrolled raw device.
pub(crate) struct RawDevice {
    pub(crate) device_id: String,
    /// The seed of the Ed25519 key it enrolled with; never shown.
    pub(crate) key: [u8; identity::KEY_LEN],
    /// The CA fingerprint its session proofs sign (`None`: a plaintext gateway).
    pub(crate) ca: Option<[u8; 32]>,
    /// The key that must verify its commands.
    pub(crate) signing_key: Vec<u8>,
    pub(crate) ownership: pb::Ownership,
    pub(crate) client: DeviceGatewayClient<Channel>,
    pub(crate) transcript: Transcript,
    /// The token state each store reports in this device's Hello.
    pub(crate) token_state: pb::TokenState,
}

impl RawDevice {
    /// The stores its enrollment type has.
    pub(crate) fn scopes(&self) -> Vec<pb::CredentialScope> {
        match self.ownership {
            pb::Ownership::Cosu | pb::Ownership::Aosp => vec![pb::CredentialScope::Device],
            _ => vec![
                pb::CredentialScope::Device,
                pb::CredentialScope::WorkProfile,
            ],
        }
    }

    /// The store a reset targets for its enrollment type.
    pub(crate) fn reset_scope(&self) -> pb::CredentialScope {
        match self.ownership {
            pb::Ownership::Cosu | pb::Ownership::Aosp => pb::CredentialScope::Device,
            _ => pb::CredentialScope::WorkProfile,
        }
    }

    /// Every store's status, with `failed_attempts` on the device store as a marker.
    pub(crate) fn status(&self, marker: u32) -> pb::DeviceStatus {
        pb::DeviceStatus {
            stores: self
                .scopes()
                .into_iter()
                .map(|scope| pb::StoreStatus {
                    scope: scope as i32,
                    has_passcode: true,
                    token_state: self.token_state as i32,
                    failed_attempts: if scope == pb::CredentialScope::Device {
                        marker
                    } else {
                        0
                    },
                    ..Default::default()
                })
                .collect(),
        }
    }

    /// A valid Hello reporting every store.
    pub(crate) fn hello(&self) -> pb::DeviceMessage {
        message(pb::device_message::Body::Hello(pb::Hello {
            device_id: self.device_id.clone(),
            agent_version: "droidfleet-conformance raw device".into(),
            status: Some(self.status(0)),
            // Unknown (0): the kit tests the protocol, not what an Android version may run, so
            // its raw devices leave the control plane nothing to refuse early.
            api_level: 0,
            maker_profile: String::new(),
        }))
    }

    /// Opens a session with a valid Hello and the proof of its own key.
    pub(crate) async fn open(&self) -> Result<RawSession, Outcome> {
        let hello = self.hello();
        let opened = self.open_with(Some(&self.key), vec![hello]).await;
        let refused = |status: tonic::Status| {
            fail(format!(
                "the control plane refused a valid session: {:?}: {}",
                status.code(),
                status.message()
            ))
        };
        let mut session = opened.map_err(refused)?;
        // A refused proof ends the stream: a valid session must not end on its first read.
        session.proven().await.map_err(refused)?;
        Ok(session)
    }

    /// Opens a session with the first of `first` (normally a Hello). With a `key`, it then
    /// answers the control plane's challenge (PROTOCOL.md CP-SESSION-1) with a proof by that key
    /// for the Hello's device id and sends the rest after it; without one, it sends the rest at
    /// once, with no proof.
    pub(crate) async fn open_with(
        &self,
        key: Option<&[u8; identity::KEY_LEN]>,
        first: Vec<pb::DeviceMessage>,
    ) -> Result<RawSession, tonic::Status> {
        let (tx, rx) = mpsc::channel(64);
        let mut first = first.into_iter();
        let hello = first.next();
        let device_id = match &hello {
            Some(pb::DeviceMessage {
                body: Some(pb::device_message::Body::Hello(hello)),
            }) => hello.device_id.clone(),
            _ => String::new(),
        };
        let mut queued: Vec<_> = hello.into_iter().collect();
        if key.is_none() {
            queued.extend(first.by_ref());
        }
        for message in queued {
            self.transcript
                .record("device → cp", transcript::device_message(&message));
            let _ = tx.send(message).await;
        }
        let request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        self.transcript
            .record("kit", format!("{} opens a session", self.device_id));
        let call = tokio::time::timeout(WAIT, self.client.clone().session(request)).await;
        let mut inbound = match call {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => {
                self.transcript.record(
                    "cp → device",
                    format!("refused: {:?}: {}", status.code(), status.message()),
                );
                return Err(status);
            }
            Err(_) => {
                return Err(tonic::Status::deadline_exceeded(
                    "the control plane did not answer the session call",
                ));
            }
        };
        if let Some(key) = key {
            let challenge = match tokio::time::timeout(WAIT, inbound.message()).await {
                Ok(Ok(Some(pb::ControlMessage {
                    body: Some(pb::control_message::Body::Challenge(challenge)),
                }))) => challenge,
                Ok(Ok(_)) => {
                    return Err(tonic::Status::failed_precondition(
                        "the control plane did not answer the Hello with a SessionChallenge \
                         (CP-SESSION-1)",
                    ));
                }
                Ok(Err(status)) => return Err(status),
                Err(_) => {
                    return Err(tonic::Status::deadline_exceeded(
                        "no SessionChallenge after the Hello",
                    ));
                }
            };
            self.transcript.record(
                "cp → device",
                transcript::control_message(&pb::ControlMessage {
                    body: Some(pb::control_message::Body::Challenge(challenge.clone())),
                }),
            );
            let signature =
                identity::sign_session_proof(key, &challenge.nonce, self.ca.as_ref(), &device_id);
            let proof = message(pb::device_message::Body::Proof(pb::SessionProof {
                signature,
            }));
            self.transcript
                .record("device → cp", transcript::device_message(&proof));
            let _ = tx.send(proof).await;
            for message in first {
                self.transcript
                    .record("device → cp", transcript::device_message(&message));
                let _ = tx.send(message).await;
            }
        }
        Ok(RawSession {
            device_id: self.device_id.clone(),
            signing_key: self.signing_key.clone(),
            tx: Some(tx),
            inbound,
            read: VecDeque::new(),
            transcript: self.transcript.clone(),
            marker: 0,
        })
    }
}

/// One open session of a [`RawDevice`].
pub(crate) struct RawSession {
    device_id: String,
    /// The key from the device's enrollment, which must sign its policies (CP-POLICY-3).
    signing_key: Vec<u8>,
    /// The device's side; `None` once hung up.
    tx: Option<mpsc::Sender<pb::DeviceMessage>>,
    inbound: tonic::Streaming<pb::ControlMessage>,
    /// Messages read while waiting for something else, not yet taken.
    read: VecDeque<pb::ControlMessage>,
    transcript: Transcript,
    /// The last `failed_attempts` marker sent by [`RawSession::sync`].
    marker: u32,
}

/// How a session stood after a [`RawSession::sync`].
#[derive(Debug)]
pub(crate) enum Synced {
    /// The control plane recorded everything sent before and the session is open.
    Open,
    /// The control plane ended the session (`None`: cleanly) before recording the marker.
    Ended(Option<tonic::Status>),
}

pub(crate) fn message(body: pb::device_message::Body) -> pb::DeviceMessage {
    pb::DeviceMessage { body: Some(body) }
}

impl RawSession {
    pub(crate) async fn send(&self, body: pb::device_message::Body) {
        let message = message(body);
        self.transcript
            .record("device → cp", transcript::device_message(&message));
        if let Some(tx) = &self.tx {
            // The control plane may have ended the session already; `ended` says why.
            let _ = tx.send(message).await;
        }
    }

    pub(crate) async fn ack(&self, command_id: &str) {
        self.send(pb::device_message::Body::Ack(pb::CommandAck {
            command_id: command_id.to_string(),
            traceparent: String::new(),
        }))
        .await;
    }

    /// A result as a device would send it, with the device's time `completed_at_ms`.
    pub(crate) async fn result(&self, command_id: &str, code: Option<pb::ErrorCode>) {
        self.send(pb::device_message::Body::Result(pb::CommandResult {
            command_id: command_id.to_string(),
            success: code.is_none(),
            error_code: code.map(|c| c as i32).unwrap_or(0),
            reason: code
                .map(|_| "the conformance kit's raw device says no".to_string())
                .unwrap_or_default(),
            completed_at_ms: super::super::device::now_ms(),
            traceparent: String::new(),
        }))
        .await;
    }

    pub(crate) async fn entered(&self, command_id: &str, scope: pb::CredentialScope, at_ms: u64) {
        self.send(pb::device_message::Body::UserEvent(pb::UserEvent {
            kind: pb::user_event::Kind::NewPasscodeEntered as i32,
            scope: scope as i32,
            at_ms,
            command_id: command_id.to_string(),
        }))
        .await;
    }

    /// Waits for the first message after the proof (a policy, CP-POLICY-1) and keeps it for
    /// [`RawSession::next`]: the status the session ended with when the proof was refused.
    async fn proven(&mut self) -> Result<(), tonic::Status> {
        match tokio::time::timeout(WAIT, self.inbound.message()).await {
            Ok(Ok(Some(message))) => {
                self.transcript
                    .record("cp → device", transcript::control_message(&message));
                self.read.push_back(message);
                Ok(())
            }
            Ok(Ok(None)) => Err(tonic::Status::aborted("the session ended after the proof")),
            Ok(Err(status)) => Err(status),
            Err(_) => Err(tonic::Status::deadline_exceeded(
                "nothing came after the proof (CP-POLICY-1 asks for the policies)",
            )),
        }
    }

    /// The next message from the control plane, within [`WAIT`].
    pub(crate) async fn next(&mut self, what: &str) -> Result<pb::ControlMessage, Outcome> {
        if let Some(message) = self.read.pop_front() {
            return Ok(message);
        }
        match tokio::time::timeout(WAIT, self.inbound.message()).await {
            Ok(Ok(Some(message))) => {
                self.transcript
                    .record("cp → device", transcript::control_message(&message));
                Ok(message)
            }
            Ok(Ok(None)) => Err(fail(format!("the session ended while waiting for {what}"))),
            Ok(Err(status)) => Err(fail(format!(
                "the session ended with {:?} ({}) while waiting for {what}",
                status.code(),
                status.message()
            ))),
            Err(_) => Err(fail(format!(
                "timed out after {} s waiting for {what}",
                WAIT.as_secs()
            ))),
        }
    }

    /// The next command (the bodies of the policies before it are returned too, in order, each
    /// checked to be signed for this device as CP-POLICY-3 says).
    pub(crate) async fn next_command(
        &mut self,
        what: &str,
    ) -> Result<(Vec<pb::PolicyBody>, pb::CommandBody, pb::SignedCommand), Outcome> {
        let mut policies = Vec::new();
        loop {
            match self.next(what).await?.body {
                Some(pb::control_message::Body::Policy(signed)) => {
                    policies.push(self.verified_policy(&signed)?);
                }
                // CP-TOKEN-2: acknowledgements of escrows come between other messages; the
                // escrow case reads them with [`RawSession::next_escrow_ack`].
                Some(pb::control_message::Body::EscrowAck(_)) => {}
                // CP-KEY-2: updates from keys before the one this device enrolled with (a
                // device refuses them, DEV-KEY-2), before anything signed.
                Some(pb::control_message::Body::KeyUpdate(signed)) => {
                    self.check_key_update(&signed, policies.is_empty())?;
                }
                Some(pb::control_message::Body::Command(signed)) => {
                    let body = pb::CommandBody::decode(signed.body.as_slice()).map_err(|e| {
                        fail(format!(
                            "a command's body does not decode as CommandBody: {e}"
                        ))
                    })?;
                    return Ok((policies, body, signed));
                }
                Some(pb::control_message::Body::Challenge(_)) => {
                    return Err(fail(
                        "the control plane sent a second SessionChallenge on a proven session",
                    ));
                }
                None => return Err(fail("the control plane sent a ControlMessage with no body")),
            }
        }
    }

    /// CP-KEY-2 as far as a device that just enrolled can tell: a key update comes before any
    /// policy of its session, names this device, and names the key the device enrolled with
    /// (the current one). Its signature is by an earlier key, which the kit does not know.
    fn check_key_update(
        &self,
        signed: &pb::SignedKeyUpdate,
        before_policies: bool,
    ) -> Result<(), Outcome> {
        runner::ensure!(
            before_policies,
            "a SignedKeyUpdate came after a policy of the session (CP-KEY-2)"
        );
        let body = pb::KeyUpdateBody::decode(signed.body.as_slice()).map_err(|e| {
            fail(format!(
                "a key update's body does not decode as KeyUpdateBody: {e}"
            ))
        })?;
        runner::ensure!(
            body.device_id == self.device_id && body.public_key == self.signing_key,
            "a key update on {:?}'s session names device {:?} and a key other than the one \
             given at enrollment (CP-KEY-2)",
            self.device_id,
            body.device_id
        );
        Ok(())
    }

    /// A policy's body, once its signature verifies with the enrollment's key over the policy
    /// prefix and the body, and it names this device (CP-POLICY-3).
    fn verified_policy(&self, signed: &pb::SignedPolicy) -> Result<pb::PolicyBody, Outcome> {
        runner::ensure!(
            droidfleet_proto::signing::policy_signature_verifies(
                &self.signing_key,
                &signed.body,
                &signed.signature
            ),
            "a SignedPolicy's signature does not verify with the enrollment's key over \
             \"droidfleet.v1 policy\\0\" and the body (CP-POLICY-3)"
        );
        runner::ensure!(
            signed.key_id == droidfleet_proto::signing::key_id(&self.signing_key),
            "a SignedPolicy's key_id is {:02x?}, not the id of the enrollment's key (CP-KEY-1)",
            signed.key_id
        );
        let body = pb::PolicyBody::decode(signed.body.as_slice()).map_err(|e| {
            fail(format!(
                "a policy's body does not decode as PolicyBody: {e}"
            ))
        })?;
        runner::ensure!(
            body.device_id == self.device_id,
            "a policy on {:?}'s session names device {:?} (CP-POLICY-3)",
            self.device_id,
            body.device_id
        );
        Ok(body)
    }

    /// The next escrow acknowledgement; other messages read meanwhile are kept, in order, for
    /// [`RawSession::next`].
    pub(crate) async fn next_escrow_ack(&mut self, what: &str) -> Result<pb::EscrowAck, Outcome> {
        let mut passed = Vec::new();
        let found = loop {
            match self.next(what).await {
                Ok(pb::ControlMessage {
                    body: Some(pb::control_message::Body::EscrowAck(ack)),
                }) => break Ok(ack),
                Ok(other) => passed.push(other),
                Err(outcome) => break Err(outcome),
            }
        };
        for message in passed.into_iter().rev() {
            self.read.push_front(message);
        }
        found
    }

    /// Sends a status with a new marker, then waits until the admin API shows it (the control
    /// plane recorded everything sent before) or the session ends. Messages the control plane
    /// sends meanwhile are kept for [`RawSession::next`].
    pub(crate) async fn sync(
        &mut self,
        device: &RawDevice,
        admin: &crate::admin::Client,
    ) -> Result<Synced, Outcome> {
        self.marker += 1;
        let marker = self.marker + 1000;
        self.send(pb::device_message::Body::Status(device.status(marker)))
            .await;
        let device_id = self.device_id.clone();
        let recorded = admin.wait_device(&device_id, |d| {
            d.stores.iter().any(|s| {
                s.scope == pb::CredentialScope::Device as i32 && s.failed_attempts == marker
            })
        });
        tokio::pin!(recorded);
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            tokio::select! {
                outcome = &mut recorded => {
                    return match outcome {
                        Ok(_) => Ok(Synced::Open),
                        Err(error) => Err(fail(format!("admin API: {error}"))),
                    };
                }
                message = self.inbound.message() => match message {
                    Ok(Some(message)) => {
                        self.transcript
                            .record("cp → device", transcript::control_message(&message));
                        self.read.push_back(message);
                    }
                    Ok(None) => return Ok(Synced::Ended(None)),
                    Err(status) => {
                        self.transcript.record(
                            "cp → device",
                            format!("session ended: {:?}: {}", status.code(), status.message()),
                        );
                        return Ok(Synced::Ended(Some(status)));
                    }
                },
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(fail(format!(
                        "timed out after {} s waiting for the control plane to record a status",
                        WAIT.as_secs()
                    )));
                }
            }
        }
    }

    /// Waits for the control plane to end the session: `Ok(None)` for a clean end, else the
    /// status. Messages before the end are kept.
    pub(crate) async fn ended(&mut self) -> Result<Option<tonic::Status>, Outcome> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.inbound.message()).await {
                Ok(Ok(Some(message))) => {
                    self.transcript
                        .record("cp → device", transcript::control_message(&message));
                    self.read.push_back(message);
                }
                Ok(Ok(None)) => return Ok(None),
                Ok(Err(status)) => {
                    self.transcript.record(
                        "cp → device",
                        format!("session ended: {:?}: {}", status.code(), status.message()),
                    );
                    return Ok(Some(status));
                }
                Err(_) => {
                    return Err(fail(format!(
                        "the control plane kept the session open for {} s; it should have \
                         ended it",
                        WAIT.as_secs()
                    )));
                }
            }
        }
    }

    /// Hangs up from the device's side, as a dropped connection would, without waiting.
    pub(crate) fn drop_connection(mut self) {
        self.transcript
            .record("kit", format!("{} drops its session", self.device_id));
        self.tx = None;
    }

    /// Ends the session from the device's side and waits for the control plane to close it.
    pub(crate) async fn close(mut self) {
        self.tx = None;
        let _ = tokio::time::timeout(WAIT, async {
            while let Ok(Some(_)) = self.inbound.message().await {}
        })
        .await;
    }
}

/// Fails unless `status` is an error with `code` whose message mentions `names`.
pub(crate) fn expect_status(
    got: Option<tonic::Status>,
    code: tonic::Code,
    names: &str,
    what: &str,
) -> Result<(), Outcome> {
    match got {
        Some(status) if status.code() == code && status.message().contains(names) => Ok(()),
        Some(status) => Err(fail(format!(
            "{what}: the session ended with {:?} ({}), expected {code:?} naming {names:?}",
            status.code(),
            status.message()
        ))),
        None => Err(fail(format!(
            "{what}: the session ended cleanly, expected {code:?} naming {names:?}"
        ))),
    }
}
