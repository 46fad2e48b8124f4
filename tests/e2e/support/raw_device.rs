//! A device played by hand over the DeviceGateway, for what the agent would never do: a
//! [`RawDevice`] enrolls, opens [`RawSession`]s proving any key (or none) with any first
//! messages, receives the signed commands and escrow acknowledgements, and answers (or not)
//! whatever the test wants.

use super::DEADLINE;
use droidfleet_proto::identity;
use droidfleet_proto::v1 as pb;
use droidfleet_proto::v1::device_gateway_client::DeviceGatewayClient;
use prost::Message;
use tokio::sync::mpsc;
use tonic::transport::Channel;

/// A device played by hand over the DeviceGateway: enrolls, opens sessions, receives signed
/// commands and says whatever the test wants it to say.
pub(crate) struct RawDevice {
    pub(crate) device_id: String,
    /// The seed of the Ed25519 key it enrolled with; tests also prove it for other devices.
    pub(crate) key: [u8; 32],
    /// The control plane's Ed25519 public key, to check the commands' signatures.
    pub(crate) signing_key: Vec<u8>,
    /// The raw gateway client, for calls no helper makes.
    pub(crate) client: DeviceGatewayClient<Channel>,
    /// What it enrolled as, so its Hello reports every store it has.
    pub(crate) ownership: pb::Ownership,
}

impl RawDevice {
    pub(crate) async fn gateway(address: &str) -> DeviceGatewayClient<Channel> {
        DeviceGatewayClient::connect(address.to_string())
            .await
            .unwrap()
    }

    pub(crate) async fn enroll(
        address: &str,
        enrollment_token: &str,
        ownership: pb::Ownership,
        name: &str,
    ) -> RawDevice {
        let mut client = RawDevice::gateway(address).await;
        let key = new_key();
        let response = client
            .enroll(pb::EnrollRequest {
                enrollment_token: enrollment_token.to_string(),
                ownership: ownership as i32,
                display_name: name.to_string(),
                device_public_key: identity::device_public_key(&key).to_vec(),
            })
            .await
            .unwrap()
            .into_inner();
        RawDevice {
            device_id: response.device_id,
            key,
            signing_key: response.command_signing_public_key,
            client,
            ownership,
        }
    }

    pub(crate) fn hello(&self) -> pb::DeviceMessage {
        let mut message = hello(&self.device_id);
        if let Some(pb::device_message::Body::Hello(hello)) = &mut message.body
            && !matches!(self.ownership, pb::Ownership::Cosu | pb::Ownership::Aosp)
        {
            let status = hello.status.get_or_insert_default();
            status.stores.push(store(pb::CredentialScope::WorkProfile));
        }
        message
    }

    /// Opens this device's session with a plain Hello and the proof of its key.
    pub(crate) async fn open(&self) -> RawSession {
        self.open_with(&self.key, vec![self.hello()])
            .await
            .expect("the session opens")
    }

    /// Opens a session proving `key` and sends `messages` (normally a Hello first).
    pub(crate) async fn open_with(
        &self,
        key: &[u8; 32],
        messages: Vec<pb::DeviceMessage>,
    ) -> Result<RawSession, tonic::Status> {
        open_session(&self.client, Some(key), messages).await
    }

    /// Sends one escrow token for `scope` on a short session, as the management app would.
    pub(crate) async fn escrow(&self, scope: pb::CredentialScope) {
        let session = self.open().await;
        session
            .send(pb::device_message::Body::EscrowToken(
                pb::EscrowTokenUpdate {
                    scope: scope as i32,
                    token: vec![7; 32],
                },
            ))
            .await;
        session.close().await;
    }
}

/// A Hello from `device_id` reporting its device store (all a COSU or AOSP device has): no
/// passcode, no token.
pub(crate) fn hello(device_id: &str) -> pb::DeviceMessage {
    hello_on(device_id, 0)
}

/// A Hello from `device_id` reporting its device store, on Android API level `api_level`.
pub(crate) fn hello_on(device_id: &str, api_level: u32) -> pb::DeviceMessage {
    pb::DeviceMessage {
        body: Some(pb::device_message::Body::Hello(pb::Hello {
            device_id: device_id.to_string(),
            agent_version: "raw-test-device".into(),
            status: Some(pb::DeviceStatus {
                stores: vec![store(pb::CredentialScope::Device)],
            }),
            api_level,
            maker_profile: String::new(),
        })),
    }
}

/// A store with no passcode and no token.
fn store(scope: pb::CredentialScope) -> pb::StoreStatus {
    pb::StoreStatus {
        scope: scope as i32,
        token_state: pb::TokenState::None as i32,
        ..Default::default()
    }
}

/// A fresh Ed25519 key seed for a test device.
pub(crate) fn new_key() -> [u8; 32] {
    let mut seed = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed).unwrap();
    seed
}

/// Opens a session with the first of `messages` (normally a Hello). With a `key`, it then answers
/// the control plane's challenge with a proof by that key for the Hello's device id, as a device
/// does (PROTOCOL.md DEV-SESSION-4), and sends the other messages after the proof; without one,
/// it sends them at once, with no proof.
pub(crate) async fn open_session(
    client: &DeviceGatewayClient<Channel>,
    key: Option<&[u8; 32]>,
    messages: Vec<pb::DeviceMessage>,
) -> Result<RawSession, tonic::Status> {
    let (tx, rx) = mpsc::channel(64);
    let mut messages = messages.into_iter();
    let first = messages.next();
    let device_id = match &first {
        Some(pb::DeviceMessage {
            body: Some(pb::device_message::Body::Hello(hello)),
        }) => hello.device_id.clone(),
        _ => String::new(),
    };
    if let Some(first) = first {
        tx.send(first).await.unwrap();
    }
    if key.is_none() {
        for message in messages.by_ref() {
            tx.send(message).await.unwrap();
        }
    }
    let request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut inbound = client.clone().session(request).await?.into_inner();
    if let Some(key) = key {
        let challenge = tokio::time::timeout(DEADLINE, inbound.message())
            .await
            .expect("the challenge arrives in time")?;
        let Some(pb::ControlMessage {
            body: Some(pb::control_message::Body::Challenge(challenge)),
        }) = challenge
        else {
            panic!("the control plane answers a Hello with a SessionChallenge: {challenge:?}");
        };
        let signature = identity::sign_session_proof(key, &challenge.nonce, None, &device_id);
        let _ = tx
            .send(pb::DeviceMessage {
                body: Some(pb::device_message::Body::Proof(pb::SessionProof {
                    signature,
                })),
            })
            .await;
        for message in messages {
            let _ = tx.send(message).await;
        }
    }
    Ok(RawSession { tx, inbound })
}

/// One open session of a [`RawDevice`].
pub(crate) struct RawSession {
    /// The device's side of the stream; dropping it ends the session from the device.
    tx: mpsc::Sender<pb::DeviceMessage>,
    /// What the control plane sends: commands and policy updates, then how the session ended.
    inbound: tonic::Streaming<pb::ControlMessage>,
}

impl RawSession {
    pub(crate) async fn send(&self, body: pb::device_message::Body) {
        // The control plane may have ended the session already; the test reads why from
        // `ended`.
        let _ = self.tx.send(pb::DeviceMessage { body: Some(body) }).await;
    }

    /// The next signed command, skipping policy updates; with its decoded body.
    pub(crate) async fn next_command(&mut self) -> (pb::CommandBody, pb::SignedCommand) {
        tokio::time::timeout(DEADLINE, async {
            loop {
                let message = self
                    .inbound
                    .message()
                    .await
                    .expect("the session stays open")
                    .expect("the session does not end");
                if let Some(pb::control_message::Body::Command(signed)) = message.body {
                    let body = pb::CommandBody::decode(&signed.body[..]).unwrap();
                    return (body, signed);
                }
            }
        })
        .await
        .expect("a command arrives in time")
    }

    /// The next escrow acknowledgement, skipping whatever else arrives first.
    pub(crate) async fn next_escrow_ack(&mut self) -> pb::EscrowAck {
        tokio::time::timeout(DEADLINE, async {
            loop {
                let message = self
                    .inbound
                    .message()
                    .await
                    .expect("the session stays open")
                    .expect("the session does not end");
                if let Some(pb::control_message::Body::EscrowAck(ack)) = message.body {
                    return ack;
                }
            }
        })
        .await
        .expect("an escrow acknowledgement arrives in time")
    }

    pub(crate) async fn ack(&self, command_id: &str) {
        self.send(pb::device_message::Body::Ack(pb::CommandAck {
            command_id: command_id.to_string(),
            traceparent: String::new(),
        }))
        .await;
    }

    pub(crate) async fn result(&self, command_id: &str, success: bool) {
        self.send(pb::device_message::Body::Result(pb::CommandResult {
            command_id: command_id.to_string(),
            success,
            error_code: if success {
                0
            } else {
                pb::ErrorCode::TokenMismatch as i32
            },
            reason: if success {
                String::new()
            } else {
                "test device says no".into()
            },
            completed_at_ms: 1,
            traceparent: String::new(),
        }))
        .await;
    }

    /// Waits for the control plane to end the session and returns its status (`Ok` for a clean
    /// end).
    pub(crate) async fn ended(mut self) -> Result<(), tonic::Status> {
        until_ended(&mut self.inbound).await
    }

    /// Ends the session from the device's side and returns how the control plane finished it
    /// (`Ok` for a clean end).
    pub(crate) async fn hang_up(self) -> Result<(), tonic::Status> {
        let RawSession { tx, mut inbound } = self;
        drop(tx);
        until_ended(&mut inbound).await
    }

    /// Ends the session from the device's side and waits for the control plane to finish it.
    pub(crate) async fn close(self) {
        let _ = self.hang_up().await;
    }
}

/// Reads the session's inbound stream to its end: `Ok` for a clean end, else the status.
async fn until_ended(
    inbound: &mut tonic::Streaming<pb::ControlMessage>,
) -> Result<(), tonic::Status> {
    tokio::time::timeout(DEADLINE, async {
        loop {
            match inbound.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return Ok(()),
                Err(status) => return Err(status),
            }
        }
    })
    .await
    .expect("the session ends in time")
}
