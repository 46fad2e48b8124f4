//! Deliberately broken peers for the conformance kit to catch, built only here in test code: a
//! [`BrokenGateway`] sits in front of a real gateway (our control plane's, or the kit's when it
//! plays the control plane) and gives the side behind it one realistic [`Bug`]; a
//! [`BrokenHarness`] does the same for a device's harness. To give a device bugs in what it
//! accepts, the gateway hands the device its own signing key at enrollment and re-signs what it
//! passes on, so the device trusts whatever the bug lets through.

use droidfleet_proto::v1 as pb;
use droidfleet_proto::v1::device_gateway_client::DeviceGatewayClient;
use droidfleet_proto::v1::device_gateway_server::{DeviceGateway, DeviceGatewayServer};
use droidfleet_proto::v1::device_harness_client::DeviceHarnessClient;
use droidfleet_proto::v1::device_harness_server::{DeviceHarness, DeviceHarnessServer};
use prost::Message as _;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use std::collections::{BTreeSet, HashMap};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

/// One realistic defect, of a control plane (`Cp…`) or of a device (`Device…`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bug {
    /// Sends queued commands out of order (each pair swapped).
    CpReordersCommands,
    /// Forgets a command once it went out: nothing is sent again after a reconnect.
    CpLosesCommandOnReconnect,
    /// Takes a device's ack, result or user event about a command that is not its own, quietly.
    CpAcceptsOtherDevicesReports,
    /// Sends every unanswered command again on every session, expired or not.
    CpIgnoresTimeToLive,
    /// Takes a result for a command that was never acknowledged.
    CpAcceptsResultWithoutAck,
    /// Signs one encoding of the body and sends another.
    CpSignsOtherBytes,
    /// Sends no PolicyUpdate when a session opens.
    CpSkipsPoliciesAtSessionStart,
    /// Lets a command overtake the policy change made before it.
    CpCommandOvertakesPolicy,
    /// Takes a Hello without the status of every store.
    CpAcceptsHelloWithoutStatus,
    /// Takes a passcode entry without a time, and records the wrong one.
    CpAcceptsEntryWithoutTime,
    /// Never acknowledges an escrowed token.
    CpSkipsEscrowAcks,
    /// Runs commands whose signature does not verify.
    DeviceAcceptsForged,
    /// Runs a new command whose sequence is not above the highest it answered.
    DeviceAcceptsReplayed,
    /// Runs commands after their not_after time.
    DeviceRunsExpired,
    /// Runs commands addressed to another device.
    DeviceAcceptsOtherDevices,
    /// Verifies the signature over its own re-encoding of the body, not the bytes received.
    DeviceVerifiesReencoding,
    /// Reports results before persisting them: after a reboot it runs an answered command again.
    DeviceForgetsAfterReboot,
    /// Keeps the enter-new-passcode notification after the user entered the new passcode.
    DeviceKeepsNotification,
    /// Sets a new passcode that breaks the store's policy.
    DeviceAcceptsViolatingPasscode,
    /// Never acknowledges commands.
    DeviceSendsNoAck,
    /// Reports a reset's result before its rotated token and status.
    DeviceResultBeforeEscrow,
    /// Opens sessions with a Hello that reports no status.
    DeviceHelloWithoutStatus,
    /// Acknowledges commands whose signature does not verify.
    DeviceAcksForged,
    /// Takes any key id for the key it trusts: verifies every command with that key.
    DeviceIgnoresKeyIds,
}

impl Bug {
    /// Whether the bug is the device's, so the gateway re-signs commands for it.
    fn resigns(self) -> bool {
        matches!(
            self,
            Bug::DeviceAcceptsForged
                | Bug::DeviceAcceptsReplayed
                | Bug::DeviceRunsExpired
                | Bug::DeviceAcceptsOtherDevices
                | Bug::DeviceVerifiesReencoding
                | Bug::DeviceForgetsAfterReboot
                | Bug::DeviceAcceptsViolatingPasscode
        )
    }
}

/// What the broken gateway remembers across sessions.
#[derive(Default)]
struct Memory {
    /// The upstream's signing key, from the enrollment it passed on.
    upstream_key: Vec<u8>,
    /// Each device's ownership, from the enrollments it passed on.
    ownership: HashMap<String, pb::Ownership>,
    /// Command ids sent down to each device.
    sent: HashMap<String, BTreeSet<String>>,
    /// Commands sent down without a result come back up, per device.
    unanswered: HashMap<String, Vec<(String, pb::SignedCommand)>>,
    /// The device's sequence as the bug rewrites it.
    sequence: u64,
    /// Set by the broken harness when the device reboots.
    rebooted: bool,
    /// Command ids renamed for a forgetful device, new id → original id.
    renamed: HashMap<String, String>,
    /// Notifications the broken harness keeps showing.
    sticky: Vec<pb::Notification>,
}

/// A DeviceGateway in front of `upstream` with one bug.
#[derive(Clone)]
pub(crate) struct BrokenGateway {
    upstream: DeviceGatewayClient<Channel>,
    bug: Bug,
    /// The key the gateway signs with when it re-signs for a device.
    key: Arc<Ed25519KeyPair>,
    memory: Arc<Mutex<Memory>>,
}

impl BrokenGateway {
    /// Serves the broken gateway on a loopback port in front of `upstream`; returns its URL and
    /// the gateway (for a [`BrokenHarness`] to share its memory).
    pub(crate) async fn start(upstream: &str, bug: Bug) -> (String, BrokenGateway) {
        let channel = tonic::transport::Endpoint::from_shared(upstream.to_string())
            .unwrap()
            .connect_lazy();
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let gateway = BrokenGateway {
            upstream: DeviceGatewayClient::new(channel),
            bug,
            key: Arc::new(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()),
            memory: Arc::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(DeviceGatewayServer::new(gateway.clone()))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        (url, gateway)
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A command on its way down to the device, as the bug lets it through.
    fn down_command(
        &self,
        device_id: &str,
        signed: pb::SignedCommand,
    ) -> Option<pb::SignedCommand> {
        let bug = self.bug;
        let mut body = pb::CommandBody::decode(signed.body.as_slice()).ok();
        if let Some(body) = &body {
            let mut memory = self.memory();
            let first_time = memory
                .sent
                .entry(device_id.to_string())
                .or_default()
                .insert(body.command_id.clone());
            if bug == Bug::CpLosesCommandOnReconnect && !first_time {
                return None;
            }
            memory
                .unanswered
                .entry(device_id.to_string())
                .or_default()
                .push((body.command_id.clone(), signed.clone()));
        }
        if bug == Bug::DeviceIgnoresKeyIds {
            // Relabelled as the trusted key's, the kit's own signature under a wrong id
            // verifies, as it would on a device that never looks at the id.
            let upstream_key = self.memory().upstream_key.clone();
            let key_id = droidfleet_proto::signing::key_id(&upstream_key).to_vec();
            return Some(pb::SignedCommand { key_id, ..signed });
        }
        if bug == Bug::CpSignsOtherBytes {
            let mut bytes = signed.body.clone();
            bytes.extend([0x98, 0x06, 0x01]);
            return Some(pb::SignedCommand {
                body: bytes,
                signature: signed.signature,
                key_id: signed.key_id,
            });
        }
        if !bug.resigns() {
            return Some(signed);
        }
        let upstream_key = self.memory().upstream_key.clone();
        let key = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, upstream_key);
        let genuine = key.verify(&signed.body, &signed.signature).is_ok();
        let Some(body) = body.as_mut() else {
            return Some(self.sign_bytes(signed.body, genuine));
        };
        match bug {
            Bug::DeviceAcceptsForged => return Some(self.sign_bytes(signed.body, true)),
            Bug::DeviceVerifiesReencoding => {
                let reencoded = body.encode_to_vec();
                let verifies = key.verify(&reencoded, &signed.signature).is_ok();
                return Some(self.sign_bytes(signed.body, verifies));
            }
            Bug::DeviceAcceptsReplayed => {
                let mut memory = self.memory();
                memory.sequence += 1;
                body.sequence = memory.sequence;
            }
            Bug::DeviceRunsExpired => body.not_after_ms = u64::MAX,
            Bug::DeviceAcceptsOtherDevices => {
                body.device_id = device_id.to_string();
            }
            Bug::DeviceAcceptsViolatingPasscode => {
                if let Some(pb::command_body::Kind::ResetPasscode(reset)) = &mut body.kind {
                    reset.new_passcode = if reset.scope == pb::CredentialScope::WorkProfile as i32 {
                        "Tulip4Lane".into()
                    } else {
                        "860273".into()
                    };
                }
            }
            Bug::DeviceForgetsAfterReboot => {
                let mut memory = self.memory();
                if memory.rebooted {
                    let again = format!("{}-again", body.command_id);
                    memory
                        .renamed
                        .insert(again.clone(), body.command_id.clone());
                    body.command_id = again;
                }
            }
            _ => {}
        }
        Some(self.sign_bytes(body.encode_to_vec(), genuine))
    }

    /// `bytes` signed with the gateway's key, or with a signature that cannot verify.
    fn sign_bytes(&self, bytes: Vec<u8>, verifies: bool) -> pb::SignedCommand {
        let signature = if verifies {
            self.key.sign(&bytes).as_ref().to_vec()
        } else {
            vec![0; 64]
        };
        pb::SignedCommand {
            body: bytes,
            signature,
            key_id: droidfleet_proto::signing::key_id(self.key.public_key().as_ref()).to_vec(),
        }
    }
}

type ControlStream = Pin<Box<dyn Stream<Item = Result<pb::ControlMessage, Status>> + Send>>;

#[tonic::async_trait]
impl DeviceGateway for BrokenGateway {
    async fn enroll(
        &self,
        request: Request<pb::EnrollRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        let request = request.into_inner();
        let ownership = pb::Ownership::try_from(request.ownership).unwrap_or_default();
        let mut response = self.upstream.clone().enroll(request).await?.into_inner();
        let mut memory = self.memory();
        memory.upstream_key = response.command_signing_public_key.clone();
        memory
            .ownership
            .insert(response.device_id.clone(), ownership);
        drop(memory);
        if self.bug.resigns() {
            response.command_signing_public_key = self.key.public_key().as_ref().to_vec();
        }
        Ok(Response::new(response))
    }

    type SessionStream = ControlStream;

    async fn session(
        &self,
        request: Request<Streaming<pb::DeviceMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let mut from_device = request.into_inner();
        let (up_tx, up_rx) = mpsc::channel::<pb::DeviceMessage>(64);
        let upstream_request = Request::new(tokio_stream::wrappers::ReceiverStream::new(up_rx));
        let (down_tx, down_rx) = mpsc::channel::<Result<pb::ControlMessage, Status>>(64);
        // The session's device, from its Hello (which the proof that follows binds).
        let device = Arc::new(std::sync::OnceLock::<String>::new());
        // Up: the device's messages, as the bug changes them.
        let gateway = self.clone();
        let up_device = device.clone();
        tokio::spawn(async move {
            let mut up = Up::default();
            while let Ok(Some(message)) = from_device.message().await {
                for message in gateway.up(&up_device, &mut up, message) {
                    if up_tx.send(message).await.is_err() {
                        return;
                    }
                }
            }
        });
        let mut from_upstream = self
            .upstream
            .clone()
            .session(upstream_request)
            .await?
            .into_inner();
        // Down: the upstream's messages, as the bug changes them. The upstream answered the
        // call once it read the Hello, which the up task had seen first.
        let gateway = self.clone();
        let device_id = device.get().cloned().unwrap_or_default();
        tokio::spawn(async move {
            let mut held: Vec<pb::ControlMessage> = Vec::new();
            if gateway.bug == Bug::CpIgnoresTimeToLive {
                let cached = gateway.memory().unanswered.get(&device_id).cloned();
                for (_, signed) in cached.unwrap_or_default() {
                    let message = pb::ControlMessage {
                        body: Some(pb::control_message::Body::Command(signed)),
                    };
                    let _ = down_tx.send(Ok(message)).await;
                }
            }
            loop {
                let next = tokio::time::timeout(Duration::from_millis(300), from_upstream.next());
                let message = match next.await {
                    Err(_) => {
                        // Nothing more came: whatever a bug held back goes now.
                        for message in held.drain(..) {
                            let _ = down_tx.send(Ok(message)).await;
                        }
                        continue;
                    }
                    Ok(None) => return,
                    Ok(Some(Err(status))) => {
                        let _ = down_tx.send(Err(status)).await;
                        return;
                    }
                    Ok(Some(Ok(message))) => message,
                };
                for message in gateway.down(&device_id, &mut held, message) {
                    if down_tx.send(Ok(message)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(down_rx),
        )))
    }
}

/// One session's state for the device's messages going up.
#[derive(Default)]
struct Up {
    /// Commands acknowledged on this session.
    acked: BTreeSet<String>,
    /// Between a command's ack and its result.
    in_command: bool,
    /// Reports held back until the next result.
    held: Vec<pb::DeviceMessage>,
}

impl BrokenGateway {
    fn up(
        &self,
        device: &std::sync::OnceLock<String>,
        up: &mut Up,
        mut message: pb::DeviceMessage,
    ) -> Vec<pb::DeviceMessage> {
        use pb::device_message::Body;
        let bug = self.bug;
        let mut out = Vec::new();
        if let Some(Body::Hello(hello)) = &message.body {
            let _ = device.set(hello.device_id.clone());
        }
        let device_id = device.get().map(String::as_str).unwrap_or_default();
        match &mut message.body {
            Some(Body::Hello(hello)) => {
                if bug == Bug::DeviceHelloWithoutStatus {
                    hello.status = None;
                }
                if bug == Bug::CpAcceptsHelloWithoutStatus {
                    let ownership = self.memory().ownership.get(device_id).copied();
                    let mut scopes = vec![pb::CredentialScope::Device];
                    if !matches!(ownership, Some(pb::Ownership::Cosu | pb::Ownership::Aosp)) {
                        scopes.push(pb::CredentialScope::WorkProfile);
                    }
                    let status = hello.status.get_or_insert_default();
                    for scope in scopes {
                        if !status.stores.iter().any(|s| s.scope == scope as i32) {
                            status.stores.push(pb::StoreStatus {
                                scope: scope as i32,
                                token_state: pb::TokenState::None as i32,
                                ..Default::default()
                            });
                        }
                    }
                }
            }
            Some(Body::Ack(ack)) => {
                if bug == Bug::DeviceSendsNoAck {
                    return out;
                }
                up.acked.insert(ack.command_id.clone());
                up.in_command = true;
                self.rename_back(&mut ack.command_id);
            }
            Some(Body::Result(result)) => {
                up.in_command = false;
                self.rename_back(&mut result.command_id);
                let mine = self
                    .memory()
                    .sent
                    .get(device_id)
                    .is_some_and(|ids| ids.contains(&result.command_id));
                if bug == Bug::CpAcceptsOtherDevicesReports && !mine {
                    return out;
                }
                if let Some(list) = self.memory().unanswered.get_mut(device_id) {
                    list.retain(|(id, _)| *id != result.command_id);
                }
                let unacked = !up.acked.contains(&result.command_id);
                if bug == Bug::CpAcceptsResultWithoutAck && unacked {
                    out.push(pb::DeviceMessage {
                        body: Some(Body::Ack(pb::CommandAck {
                            command_id: result.command_id.clone(),
                            traceparent: String::new(),
                        })),
                    });
                }
                if bug == Bug::DeviceAcksForged
                    && result.error_code == pb::ErrorCode::BadSignature as i32
                {
                    out.push(pb::DeviceMessage {
                        body: Some(Body::Ack(pb::CommandAck {
                            command_id: result.command_id.clone(),
                            traceparent: String::new(),
                        })),
                    });
                }
                out.push(message);
                out.append(&mut up.held);
                return out;
            }
            Some(Body::UserEvent(event)) => {
                self.rename_back(&mut event.command_id);
                let mine = self
                    .memory()
                    .sent
                    .get(device_id)
                    .is_some_and(|ids| ids.contains(&event.command_id));
                if bug == Bug::CpAcceptsOtherDevicesReports && !mine {
                    return out;
                }
                if bug == Bug::CpAcceptsEntryWithoutTime && event.at_ms == 0 {
                    event.at_ms = 1;
                }
            }
            Some(Body::EscrowToken(_) | Body::Status(_))
                if bug == Bug::DeviceResultBeforeEscrow && up.in_command =>
            {
                up.held.push(message);
                return out;
            }
            _ => {}
        }
        if let Some(Body::Ack(ack)) = &message.body {
            let mine = self
                .memory()
                .sent
                .get(device_id)
                .is_some_and(|ids| ids.contains(&ack.command_id));
            if bug == Bug::CpAcceptsOtherDevicesReports && !mine {
                return out;
            }
        }
        out.push(message);
        out
    }

    /// A forgetful device answers under the new id; the upstream must see the original.
    fn rename_back(&self, command_id: &mut String) {
        if let Some(original) = self.memory().renamed.get(command_id.as_str()) {
            *command_id = original.clone();
        }
    }

    fn down(
        &self,
        device_id: &str,
        held: &mut Vec<pb::ControlMessage>,
        message: pb::ControlMessage,
    ) -> Vec<pb::ControlMessage> {
        use pb::control_message::Body;
        match (self.bug, message.body) {
            (Bug::CpSkipsPoliciesAtSessionStart, Some(Body::Policy(_))) => vec![],
            (Bug::CpSkipsEscrowAcks, Some(Body::EscrowAck(_))) => vec![],
            (Bug::CpCommandOvertakesPolicy, Some(Body::Policy(update))) => {
                held.push(pb::ControlMessage {
                    body: Some(Body::Policy(update)),
                });
                vec![]
            }
            (bug, Some(Body::Command(signed))) => {
                let Some(signed) = self.down_command(device_id, signed) else {
                    return vec![];
                };
                let command = pb::ControlMessage {
                    body: Some(Body::Command(signed)),
                };
                match bug {
                    Bug::CpCommandOvertakesPolicy => {
                        let mut out = vec![command];
                        out.append(held);
                        out
                    }
                    Bug::CpReordersCommands => {
                        if held.is_empty() {
                            held.push(command);
                            vec![]
                        } else {
                            let mut out = vec![command];
                            out.append(held);
                            out
                        }
                    }
                    _ => vec![command],
                }
            }
            (_, body) => vec![pb::ControlMessage { body }],
        }
    }
}

/// A DeviceHarness in front of a device's harness, sharing a [`BrokenGateway`]'s memory: it
/// tells the gateway about reboots, and keeps notifications for [`Bug::DeviceKeepsNotification`].
#[derive(Clone)]
pub(crate) struct BrokenHarness {
    upstream: DeviceHarnessClient<Channel>,
    bug: Bug,
    memory: Arc<Mutex<Memory>>,
}

impl BrokenHarness {
    /// Serves it on a loopback port in front of `upstream`; returns its URL.
    pub(crate) async fn start(upstream: &str, gateway: &BrokenGateway) -> String {
        let channel = tonic::transport::Endpoint::from_shared(upstream.to_string())
            .unwrap()
            .connect_lazy();
        let harness = BrokenHarness {
            upstream: DeviceHarnessClient::new(channel),
            bug: gateway.bug,
            memory: gateway.memory.clone(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(DeviceHarnessServer::new(harness))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        url
    }

    /// The screen as the bug shows it.
    fn screen(&self, mut screen: pb::Screen) -> pb::Screen {
        if self.bug == Bug::DeviceKeepsNotification {
            let mut memory = self.memory.lock().unwrap_or_else(|p| p.into_inner());
            for notification in &screen.notifications {
                if !memory.sticky.iter().any(|n| n.id == notification.id) {
                    memory.sticky.push(notification.clone());
                }
            }
            screen.notifications = memory.sticky.clone();
        }
        screen
    }
}

type ScreenStream = Pin<Box<dyn Stream<Item = Result<pb::Screen, Status>> + Send>>;

#[tonic::async_trait]
impl DeviceHarness for BrokenHarness {
    async fn list_devices(
        &self,
        request: Request<pb::HarnessListDevicesRequest>,
    ) -> Result<Response<pb::HarnessListDevicesResponse>, Status> {
        self.upstream
            .clone()
            .list_devices(request.into_inner())
            .await
    }

    async fn get_screen(
        &self,
        request: Request<pb::DeviceRef>,
    ) -> Result<Response<pb::Screen>, Status> {
        let screen = self
            .upstream
            .clone()
            .get_screen(request.into_inner())
            .await?;
        Ok(Response::new(self.screen(screen.into_inner())))
    }

    async fn enter_passcode(
        &self,
        request: Request<pb::EnterPasscodeRequest>,
    ) -> Result<Response<pb::EnterPasscodeResponse>, Status> {
        let mut response = self
            .upstream
            .clone()
            .enter_passcode(request.into_inner())
            .await?
            .into_inner();
        response.screen = response.screen.map(|s| self.screen(s));
        Ok(Response::new(response))
    }

    async fn set_passcode(
        &self,
        request: Request<pb::SetPasscodeRequest>,
    ) -> Result<Response<pb::Screen>, Status> {
        let screen = self
            .upstream
            .clone()
            .set_passcode(request.into_inner())
            .await?;
        Ok(Response::new(self.screen(screen.into_inner())))
    }

    async fn lock(&self, request: Request<pb::StoreRef>) -> Result<Response<pb::Screen>, Status> {
        self.upstream.clone().lock(request.into_inner()).await
    }

    async fn write_user_data(
        &self,
        request: Request<pb::WriteUserDataRequest>,
    ) -> Result<Response<pb::WriteUserDataResponse>, Status> {
        self.upstream
            .clone()
            .write_user_data(request.into_inner())
            .await
    }

    async fn read_user_data(
        &self,
        request: Request<pb::ReadUserDataRequest>,
    ) -> Result<Response<pb::ReadUserDataResponse>, Status> {
        self.upstream
            .clone()
            .read_user_data(request.into_inner())
            .await
    }

    async fn reboot(
        &self,
        request: Request<pb::DeviceRef>,
    ) -> Result<Response<pb::Screen>, Status> {
        let screen = self.upstream.clone().reboot(request.into_inner()).await?;
        self.memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .rebooted = true;
        Ok(screen)
    }

    async fn set_online(
        &self,
        request: Request<pb::SetOnlineRequest>,
    ) -> Result<Response<pb::Screen>, Status> {
        self.upstream.clone().set_online(request.into_inner()).await
    }

    async fn open_work_app(
        &self,
        request: Request<pb::DeviceRef>,
    ) -> Result<Response<pb::Screen>, Status> {
        let screen = self
            .upstream
            .clone()
            .open_work_app(request.into_inner())
            .await?;
        Ok(Response::new(self.screen(screen.into_inner())))
    }

    async fn re_enroll(
        &self,
        request: Request<pb::ReEnrollRequest>,
    ) -> Result<Response<pb::Screen>, Status> {
        self.upstream.clone().re_enroll(request.into_inner()).await
    }

    type WatchScreensStream = ScreenStream;

    async fn watch_screens(
        &self,
        _: Request<pb::WatchScreensRequest>,
    ) -> Result<Response<Self::WatchScreensStream>, Status> {
        Err(Status::unimplemented(
            "the broken harness does not stream screens",
        ))
    }
}
