//! A cancel asked for after the command was sent is a request the device answers (PROTOCOL.md
//! CP-CANCEL-1, CP-CANCEL-2, DEV-CANCEL-1), over real gRPC on loopback with the agent's real
//! device behind a gateway proxy that loses one message with its connection and then keeps the
//! device offline until the test lets it back: a cancel that reaches a device which never got
//! the command is accepted (the action ends canceled, the device keeps its passcode); one that
//! reaches a device which already applied the command is refused (the action ends done, its
//! passcode revealable).

use crate::support::{RawDevice, World, pin_policy};
use droidfleet_agent::device::Ownership;
use droidfleet_proto::v1 as pb;
use droidfleet_proto::v1::device_gateway_client::DeviceGatewayClient;
use droidfleet_proto::v1::device_gateway_server::{DeviceGateway, DeviceGatewayServer};
use pb::CredentialScope::Device as DEVICE;
use prost::Message;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, mpsc};
use tokio_stream::Stream;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

const DEVICE_PIN: &str = "258036";

fn state(action: &pb::Action) -> pb::ActionState {
    pb::ActionState::try_from(action.state).unwrap()
}

/// Which message the proxy loses, together with the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lose {
    /// The next command down to the device: it never reaches the device.
    Command,
    /// The next command result up to the control plane: the device applied it, nobody heard.
    Result,
}

/// A DeviceGateway in front of the control plane that loses one message with its connection,
/// as a flaky network would, and then refuses sessions (the device offline) until let back.
#[derive(Clone)]
struct CuttingGateway {
    upstream: DeviceGatewayClient<Channel>,
    lose: Arc<Mutex<Option<Lose>>>,
    /// The commands it lost, by id; told through `cut`.
    lost: Arc<Mutex<Vec<String>>>,
    cut: Arc<Notify>,
    offline: Arc<AtomicBool>,
    /// Every command id that went down to the device.
    delivered: Arc<Mutex<Vec<String>>>,
}

type ControlStream = Pin<Box<dyn Stream<Item = Result<pb::ControlMessage, Status>> + Send>>;

impl CuttingGateway {
    /// Marks the proxy offline once it lost a message, and tells the waiting test.
    fn lost(&self, id: String) {
        self.offline.store(true, Ordering::SeqCst);
        self.lost.lock().unwrap().push(id);
        self.cut.notify_one();
    }

    fn take(&self, kind: Lose) -> bool {
        let mut lose = self.lose.lock().unwrap();
        if *lose == Some(kind) {
            *lose = None;
            return true;
        }
        false
    }
}

#[tonic::async_trait]
impl DeviceGateway for CuttingGateway {
    async fn enroll(
        &self,
        request: Request<pb::EnrollRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        self.upstream.clone().enroll(request.into_inner()).await
    }

    type SessionStream = ControlStream;

    async fn session(
        &self,
        request: Request<Streaming<pb::DeviceMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        if self.offline.load(Ordering::SeqCst) {
            return Err(Status::unavailable("the device is offline"));
        }
        let authorization = request.metadata().get("authorization").cloned();
        let mut from_device = request.into_inner();
        let (up, up_rx) = mpsc::channel(64);
        let (down, down_rx) = mpsc::channel(64);
        let proxy = self.clone();
        let broken = down.clone();
        tokio::spawn(async move {
            while let Ok(Some(message)) = from_device.message().await {
                if let Some(pb::device_message::Body::Result(result)) = &message.body
                    && proxy.take(Lose::Result)
                {
                    proxy.lost(result.command_id.clone());
                    let _ = broken
                        .send(Err(Status::unavailable("the network lost the connection")))
                        .await;
                    return; // Dropping `up` ends the control plane's side of the session.
                }
                if up.send(message).await.is_err() {
                    return;
                }
            }
        });
        let mut upstream_request = Request::new(tokio_stream::wrappers::ReceiverStream::new(up_rx));
        if let Some(authorization) = authorization {
            upstream_request
                .metadata_mut()
                .insert("authorization", authorization);
        }
        let mut from_control_plane = self
            .upstream
            .clone()
            .session(upstream_request)
            .await?
            .into_inner();
        let proxy = self.clone();
        tokio::spawn(async move {
            loop {
                match from_control_plane.message().await {
                    Ok(Some(message)) => {
                        if let Some(pb::control_message::Body::Command(signed)) = &message.body {
                            let body = pb::CommandBody::decode(&signed.body[..]).unwrap();
                            if proxy.take(Lose::Command) {
                                proxy.lost(body.command_id);
                                let _ = down
                                    .send(Err(Status::unavailable(
                                        "the network lost the connection",
                                    )))
                                    .await;
                                return; // Dropping the upstream stream ends the session.
                            }
                            proxy.delivered.lock().unwrap().push(body.command_id);
                        }
                        if down.send(Ok(message)).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(status) => {
                        let _ = down.send(Err(status)).await;
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

/// A kiosk with a passcode, its token escrowed and a PIN policy assigned, its agent talking
/// through a [`CuttingGateway`].
async fn kiosk_behind_proxy() -> (World, String, CuttingGateway) {
    let mut world = World::start(&[("kiosk", Ownership::Cosu)]).await;
    let id = world.device_id("kiosk").await;
    world.set_passcode("kiosk", DEVICE, "", DEVICE_PIN).await;
    world.admin.wait_escrowed(&id, DEVICE).await;
    world.admin.assign_policy(&id, DEVICE, pin_policy(6)).await;
    world.stop_agent().await;
    let proxy = CuttingGateway {
        upstream: RawDevice::gateway(&world.address).await,
        lose: Arc::default(),
        lost: Arc::default(),
        cut: Arc::default(),
        offline: Arc::default(),
        delivered: Arc::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(DeviceGatewayServer::new(proxy.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    world.start_agent_at(&proxy_address).await;
    (world, id, proxy)
}

/// Starts a reset whose `lose` message the proxy loses, and waits until it did: the device is
/// then offline, and the control plane has marked the command sent.
async fn reset_and_cut(world: &mut World, id: &str, proxy: &CuttingGateway, lose: Lose) -> String {
    *proxy.lose.lock().unwrap() = Some(lose);
    let cut = proxy.cut.notified();
    let action = world.admin.reset(id, DEVICE).await.unwrap();
    tokio::time::timeout(crate::support::DEADLINE, cut)
        .await
        .expect("the proxy never lost the message");
    assert_eq!(
        *proxy.lost.lock().unwrap(),
        std::slice::from_ref(&action.action_id)
    );
    action.action_id
}

#[tokio::test]
async fn a_cancel_that_reaches_a_device_before_its_command_is_accepted() {
    let (mut world, id, proxy) = kiosk_behind_proxy().await;
    let action_id = reset_and_cut(&mut world, &id, &proxy, Lose::Command).await;

    let requested = world.admin.cancel(&action_id).await.unwrap();
    assert_eq!(state(&requested), pb::ActionState::Pending);
    assert!(requested.sent_at_ms > 0, "{requested:?}");
    assert!(requested.cancel_requested_at_ms > 0, "{requested:?}");
    // Until the device answers, it may hold the passcode: still revealable.
    world.admin.reveal(&action_id).await.unwrap();
    let again = world.admin.cancel(&action_id).await.unwrap_err();
    assert_eq!(again.code(), tonic::Code::FailedPrecondition);
    assert!(
        again.message().contains("already requested"),
        "{}",
        again.message()
    );

    proxy.offline.store(false, Ordering::SeqCst);
    let canceled = world.admin.wait_final(&action_id).await;
    assert_eq!(state(&canceled), pb::ActionState::Canceled, "{canceled:?}");
    assert!(
        canceled.reason.contains("accepted the cancel"),
        "{}",
        canceled.reason
    );
    let gone = world.admin.reveal(&action_id).await.unwrap_err();
    assert_eq!(gone.code(), tonic::Code::FailedPrecondition);

    // The command never reached the device, the cancel went in its place, and nothing ran.
    let cancel_id = format!("{action_id}.cancel");
    assert_eq!(
        *proxy.delivered.lock().unwrap(),
        std::slice::from_ref(&cancel_id)
    );
    let screen = world.screen("kiosk").await;
    assert_eq!(screen.applied_commands.get(&action_id), None);
    assert_eq!(screen.applied_commands.get(&cancel_id), Some(&0));
    assert!(
        world.enter("kiosk", DEVICE, DEVICE_PIN).await,
        "the device keeps the user's passcode"
    );
    // A later command still runs: the cancel's sequence is one the device lets grow.
    let lock = world
        .admin
        .remote_lock(&id, pb::CredentialScope::Unspecified)
        .await
        .unwrap();
    let lock = world.admin.wait_final(&lock.action_id).await;
    assert_eq!(state(&lock), pb::ActionState::Done, "{lock:?}");
}

#[tokio::test]
async fn a_cancel_that_reaches_a_device_after_it_applied_the_command_is_refused() {
    let (mut world, id, proxy) = kiosk_behind_proxy().await;
    let action_id = reset_and_cut(&mut world, &id, &proxy, Lose::Result).await;

    let requested = world.admin.cancel(&action_id).await.unwrap();
    assert!(requested.cancel_requested_at_ms > 0, "{requested:?}");
    assert!(
        !pb::ActionState::try_from(requested.state)
            .unwrap()
            .eq(&pb::ActionState::Canceled),
        "{requested:?}"
    );

    proxy.offline.store(false, Ordering::SeqCst);
    let done = world.admin.wait_final(&action_id).await;
    assert_eq!(state(&done), pb::ActionState::Done, "{done:?}");
    assert!(
        done.cancel_refusal.starts_with("already_answered")
            && done.cancel_refusal.contains("already applied"),
        "{}",
        done.cancel_refusal
    );
    // The device holds the reset's passcode, and the admin can reveal it.
    let passcode = world.admin.reveal(&action_id).await.unwrap();
    assert!(!world.enter("kiosk", DEVICE, DEVICE_PIN).await);
    assert!(world.enter("kiosk", DEVICE, &passcode).await);
    let screen = world.screen("kiosk").await;
    assert_eq!(screen.applied_commands.get(&action_id), Some(&1));
}
