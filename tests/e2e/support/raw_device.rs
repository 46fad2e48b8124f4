//! A device played by hand over the DeviceGateway, for what the agent would never do: a
//! [`RawDevice`] enrolls, opens [`RawSession`]s with any credential and first messages, receives
//! the signed commands and escrow acknowledgements, and answers (or not) whatever the test wants.

use super::DEADLINE;
use droidfleet_proto::v1 as pb;
use droidfleet_proto::v1::device_gateway_client::DeviceGatewayClient;
use prost::Message;
use tokio::sync::mpsc;
use tonic::transport::Channel;

/// A device played by hand over the DeviceGateway: enrolls, opens sessions, receives signed
/// commands and says whatever the test wants it to say.
pub(crate) struct RawDevice {
    pub(crate) device_id: String,
    /// The bearer credential Enroll issued; tests also present it for other devices.
    pub(crate) credential: String,
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
        let response = client
            .enroll(pb::EnrollRequest {
                enrollment_token: enrollment_token.to_string(),
                ownership: ownership as i32,
                display_name: name.to_string(),
            })
            .await
            .unwrap()
            .into_inner();
        RawDevice {
            device_id: response.device_id,
            credential: response.device_credential,
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

    /// Opens this device's session with a plain Hello.
    pub(crate) async fn open(&self) -> RawSession {
        self.open_with(&self.credential, vec![self.hello()])
            .await
            .expect("the session opens")
    }

    /// Opens a session with `credential` and sends `messages` first (normally a Hello).
    pub(crate) async fn open_with(
        &self,
        credential: &str,
        messages: Vec<pb::DeviceMessage>,
    ) -> Result<RawSession, tonic::Status> {
        open_session(&self.client, Some(credential), messages).await
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

/// Opens a session presenting `credential` (or none) with `messages` queued to go first.
pub(crate) async fn open_session(
    client: &DeviceGatewayClient<Channel>,
    credential: Option<&str>,
    messages: Vec<pb::DeviceMessage>,
) -> Result<RawSession, tonic::Status> {
    let (tx, rx) = mpsc::channel(64);
    for message in messages {
        tx.send(message).await.unwrap();
    }
    let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    if let Some(credential) = credential {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {credential}").parse().unwrap(),
        );
    }
    let inbound = client.clone().session(request).await?.into_inner();
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
