//! Delivery of commands, over real gRPC on loopback: a command past its time-to-live ends
//! `expired` and never runs, even when the device turns up later or its clock says so first; one
//! that expires once sent keeps its passcode and a late success still ends it `done`; a
//! canceled command never runs; an offline device gets its pending commands in sequence order
//! when it reconnects; a lost result means a second delivery, which the device answers with the
//! same result without running the command twice; a duplicate result changes nothing.

use crate::support::{RawDevice, World, pin_policy};
use droidfleet_agent::device::Ownership;
use droidfleet_control_plane::clock::{Clock, HOUR, SECOND};
use droidfleet_proto::v1 as pb;
use droidfleet_proto::v1::device_gateway_client::DeviceGatewayClient;
use droidfleet_proto::v1::device_gateway_server::{DeviceGateway, DeviceGatewayServer};
use pb::CredentialScope::{Device as DEVICE, Unspecified as UNSPECIFIED};
use prost::Message;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

const DEVICE_PIN: &str = "258036";

fn state(action: &pb::Action) -> pb::ActionState {
    pb::ActionState::try_from(action.state).unwrap()
}

/// A kiosk with a passcode, its token escrowed and a PIN policy assigned: ready for a reset.
async fn ready_kiosk(expiry_every: Duration) -> (World, String) {
    let mut world = World::start_with(&[("kiosk", Ownership::Cosu)], |config| {
        config.expiry_interval = expiry_every;
    })
    .await;
    let id = world.device_id("kiosk").await;
    world.set_passcode("kiosk", DEVICE, "", DEVICE_PIN).await;
    world.admin.wait_escrowed(&id, DEVICE).await;
    world.admin.assign_policy(&id, DEVICE, pin_policy(6)).await;
    (world, id)
}

async fn reset_with_ttl(world: &mut World, device_id: &str, ttl_seconds: u64) -> pb::Action {
    let request = world.admin.request(pb::ResetPasscodeRequest {
        device_id: device_id.to_string(),
        ttl_seconds,
        ..Default::default()
    });
    world
        .admin
        .client
        .reset_passcode(request)
        .await
        .unwrap()
        .into_inner()
}

/// A newer command to the same device, followed to `done`. Commands to one device go out in
/// sequence order from one session task, so once this one has run, any older command that was
/// going to be sent has been.
async fn run_a_later_command(world: &mut World, device_id: &str) -> pb::Action {
    let lock = world
        .admin
        .remote_lock(device_id, UNSPECIFIED)
        .await
        .unwrap();
    let done = world.admin.wait_final(&lock.action_id).await;
    assert_eq!(
        state(&done),
        pb::ActionState::Done,
        "reason: {}",
        done.reason
    );
    done
}

#[tokio::test]
async fn a_command_past_its_time_to_live_expires_and_never_runs_even_if_the_device_comes_back() {
    let (mut world, id) = ready_kiosk(Duration::from_millis(20)).await;
    world.stop_agent().await;
    let action = reset_with_ttl(&mut world, &id, 60).await;
    assert_eq!(state(&action), pb::ActionState::Pending);
    assert_eq!(action.not_after_ms, action.created_at_ms + 60 * SECOND);

    world.clock.advance(61 * SECOND);
    let expired = world.admin.wait_final(&action.action_id).await;
    assert_eq!(state(&expired), pb::ActionState::Expired);
    assert_eq!(expired.error_code, pb::ErrorCode::Expired as i32);
    assert_eq!(expired.delivered_at_ms, 0, "it never reached the device");
    let gone = world.admin.reveal(&action.action_id).await.unwrap_err();
    assert_eq!(
        gone.code(),
        tonic::Code::FailedPrecondition,
        "an expired reset's passcode is purged at once"
    );

    world.start_agent().await;
    let later = run_a_later_command(&mut world, &id).await;
    let screen = world.screen("kiosk").await;
    assert!(
        !screen.applied_commands.contains_key(&action.action_id),
        "the device never even saw the expired command: {:?}",
        screen.applied_commands
    );
    assert_eq!(screen.applied_commands.get(&later.action_id), Some(&1));
    assert!(
        world.enter("kiosk", DEVICE, DEVICE_PIN).await,
        "the user's passcode was never reset"
    );
    let expired = world.admin.action(&action.action_id).await;
    assert_eq!(
        state(&expired),
        pb::ActionState::Expired,
        "and it stays expired"
    );
}

#[tokio::test]
async fn a_command_that_expires_once_sent_keeps_its_passcode_and_a_late_success_ends_done() {
    let mut world = World::start_with(&[], |config| {
        config.expiry_interval = Duration::from_millis(20);
    })
    .await;
    let token = world.admin.enrollment_token(1, "").await;
    let device = RawDevice::enroll(&world.address, &token, pb::Ownership::Cosu, "bench").await;
    device.escrow(DEVICE).await;
    world
        .admin
        .assign_policy(&device.device_id, DEVICE, pin_policy(6))
        .await;
    let action = reset_with_ttl(&mut world, &device.device_id, 60).await;

    // The command is on the device, which may apply it however late; then its time-to-live
    // passes before the device reports (PROTOCOL.md CP-DELIVERY-3).
    let mut session = device.open().await;
    let (body, _) = session.next_command().await;
    let Some(pb::command_body::Kind::ResetPasscode(reset)) = body.kind else {
        panic!("a reset command: {body:?}");
    };
    session.ack(&action.action_id).await;
    world.clock.advance(61 * SECOND);
    let expired = world.admin.wait_final(&action.action_id).await;
    assert_eq!(state(&expired), pb::ActionState::Expired);
    assert_eq!(
        world.admin.reveal(&action.action_id).await.unwrap(),
        reset.new_passcode,
        "the passcode the device may hold stays revealable after expiry"
    );

    session.result(&action.action_id, true).await;
    session.close().await;
    let done = world.admin.action(&action.action_id).await;
    assert_eq!(state(&done), pb::ActionState::Done, "{done:?}");
    assert_eq!(done.error_code, 0, "the expiry's code is cleared");
    assert!(done.reason.contains("late arrival"), "{}", done.reason);
    assert_eq!(
        world.admin.reveal(&action.action_id).await.unwrap(),
        reset.new_passcode,
        "the admin can reveal the passcode the device now holds"
    );
}

#[tokio::test]
async fn a_command_that_reaches_the_device_too_late_is_refused_by_the_device_itself() {
    let (mut world, id) = ready_kiosk(Duration::from_millis(20)).await;
    world.stop_agent().await;
    // The control plane's clock runs an hour behind the device's: the command is still valid for
    // the control plane, but its not-after time has passed by the device's own clock when it
    // arrives (a device that was off for longer than the time-to-live, a clock skew).
    world.clock.set(world.clock.now() - HOUR);
    let action = reset_with_ttl(&mut world, &id, 600).await;
    assert_eq!(state(&action), pb::ActionState::Pending);

    world.start_agent().await;
    let refused = world.admin.wait_final(&action.action_id).await;
    assert_eq!(state(&refused), pb::ActionState::Expired);
    assert_eq!(refused.error_code, pb::ErrorCode::Expired as i32);
    assert!(refused.reason.contains("expired"), "{}", refused.reason);
    let screen = world.screen("kiosk").await;
    assert_eq!(
        screen.applied_commands.get(&action.action_id),
        Some(&0),
        "answered, never applied"
    );
    assert!(
        world.enter("kiosk", DEVICE, DEVICE_PIN).await,
        "the user's passcode was never reset"
    );
}

#[tokio::test]
async fn a_canceled_command_never_runs() {
    let (mut world, id) = ready_kiosk(Duration::from_secs(1)).await;
    world.stop_agent().await;
    let action = reset_with_ttl(&mut world, &id, 0).await;
    let canceled = world.admin.cancel(&action.action_id).await.unwrap();
    assert_eq!(state(&canceled), pb::ActionState::Canceled);
    let again = world.admin.cancel(&action.action_id).await.unwrap_err();
    assert_eq!(again.code(), tonic::Code::FailedPrecondition);
    let gone = world.admin.reveal(&action.action_id).await.unwrap_err();
    assert_eq!(gone.code(), tonic::Code::FailedPrecondition);

    world.start_agent().await;
    let later = run_a_later_command(&mut world, &id).await;
    let screen = world.screen("kiosk").await;
    assert!(!screen.applied_commands.contains_key(&action.action_id));
    assert!(world.enter("kiosk", DEVICE, DEVICE_PIN).await);

    // Once delivered, it is too late to cancel.
    let late = world.admin.cancel(&later.action_id).await.unwrap_err();
    assert_eq!(late.code(), tonic::Code::FailedPrecondition);
    assert!(late.message().contains("done"), "{}", late.message());
}

#[tokio::test]
async fn an_offline_device_gets_its_pending_commands_in_order_when_it_reconnects() {
    let (mut world, id) = ready_kiosk(Duration::from_secs(1)).await;
    world.stop_agent().await;
    let mut queued = Vec::new();
    for kind in ["lock", "reset", "lock", "lock"] {
        let action = if kind == "reset" {
            reset_with_ttl(&mut world, &id, 0).await
        } else {
            world.admin.remote_lock(&id, UNSPECIFIED).await.unwrap()
        };
        assert_eq!(state(&action), pb::ActionState::Pending);
        queued.push(action);
    }

    world.start_agent().await;
    let mut finished = Vec::new();
    for action in &queued {
        let done = world.admin.wait_final(&action.action_id).await;
        assert_eq!(
            state(&done),
            pb::ActionState::Done,
            "reason: {} (a command delivered out of order is refused as replayed)",
            done.reason
        );
        finished.push(done);
    }
    assert!(
        finished
            .windows(2)
            .all(|w| w[0].completed_at_ms <= w[1].completed_at_ms),
        "run in the order they were queued"
    );
    let screen = world.screen("kiosk").await;
    for action in &queued {
        assert_eq!(screen.applied_commands.get(&action.action_id), Some(&1));
    }
}

#[tokio::test]
async fn commands_reach_a_reconnecting_device_signed_for_it_in_sequence_order() {
    let mut world = World::start(&[]).await;
    let token = world.admin.enrollment_token(1, "").await;
    let device = RawDevice::enroll(&world.address, &token, pb::Ownership::Cosu, "bench").await;
    device.escrow(DEVICE).await;
    world
        .admin
        .assign_policy(&device.device_id, DEVICE, pin_policy(6))
        .await;
    let mut queued = Vec::new();
    for i in 0..4 {
        let action = if i == 1 {
            reset_with_ttl(&mut world, &device.device_id, 0).await
        } else {
            world
                .admin
                .remote_lock(&device.device_id, UNSPECIFIED)
                .await
                .unwrap()
        };
        queued.push(action);
    }

    let mut session = device.open().await;
    let key =
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &device.signing_key);
    let mut last_sequence = 0;
    for action in &queued {
        let (body, signed) = session.next_command().await;
        assert_eq!(
            body.command_id, action.action_id,
            "in the order they were queued"
        );
        assert_eq!(body.device_id, device.device_id);
        assert!(body.sequence > last_sequence, "sequence numbers increase");
        last_sequence = body.sequence;
        assert_eq!(body.not_after_ms, action.not_after_ms);
        key.verify(&signed.body, &signed.signature)
            .expect("signed with the key given at enrollment");
    }
    session.close().await;
}

#[tokio::test]
async fn an_unanswered_command_is_sent_again_and_a_duplicate_result_changes_nothing() {
    let mut world = World::start(&[]).await;
    let token = world.admin.enrollment_token(1, "").await;
    let device = RawDevice::enroll(&world.address, &token, pb::Ownership::Cosu, "bench").await;
    world
        .admin
        .assign_policy(&device.device_id, DEVICE, pin_policy(6))
        .await;
    let action = world
        .admin
        .remote_lock(&device.device_id, UNSPECIFIED)
        .await
        .unwrap();

    // Delivered and acknowledged, then the connection drops before the result.
    let mut session = device.open().await;
    let (first_body, first) = session.next_command().await;
    session.ack(&first_body.command_id).await;
    session.close().await;
    let active = world.admin.action(&action.action_id).await;
    assert_eq!(state(&active), pb::ActionState::Active);

    // At least once: the same signed command again, byte for byte, on the next session.
    let mut session = device.open().await;
    let (again_body, again) = session.next_command().await;
    assert_eq!(again_body.command_id, action.action_id);
    assert_eq!(again.body, first.body);
    assert_eq!(again.signature, first.signature);
    session.ack(&action.action_id).await;
    session.result(&action.action_id, true).await;
    session.result(&action.action_id, true).await;
    session.close().await;
    let done = world.admin.action(&action.action_id).await;
    assert_eq!(state(&done), pb::ActionState::Done);

    // A late duplicate (and a contradicting one) on a later session changes nothing.
    let session = device.open().await;
    session.result(&action.action_id, true).await;
    session.result(&action.action_id, false).await;
    session.ack(&action.action_id).await;
    session.close().await;
    assert_eq!(world.admin.action(&action.action_id).await, done);
    // And a done command is not sent again.
    let later = world
        .admin
        .remote_lock(&device.device_id, UNSPECIFIED)
        .await
        .unwrap();
    let mut session = device.open().await;
    let (next, _) = session.next_command().await;
    assert_eq!(next.command_id, later.action_id);
    session.close().await;
}

/// A DeviceGateway in front of the control plane that loses the first command result it is
/// asked to lose, together with the connection, as a flaky network would; and counts how often
/// each command went down to the device.
#[derive(Clone)]
struct LossyGateway {
    upstream: DeviceGatewayClient<Channel>,
    lose_next_result: Arc<AtomicBool>,
    lost: Arc<Mutex<Vec<String>>>,
    deliveries: Arc<Mutex<HashMap<String, usize>>>,
}

type ControlStream = Pin<Box<dyn Stream<Item = Result<pb::ControlMessage, Status>> + Send>>;

#[tonic::async_trait]
impl DeviceGateway for LossyGateway {
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
        let authorization = request.metadata().get("authorization").cloned();
        let mut from_device = request.into_inner();
        let (up, up_rx) = mpsc::channel(64);
        let (down, down_rx) = mpsc::channel(64);
        let lose = self.lose_next_result.clone();
        let lost = self.lost.clone();
        let broken = down.clone();
        tokio::spawn(async move {
            while let Ok(Some(message)) = from_device.message().await {
                if let Some(pb::device_message::Body::Result(result)) = &message.body
                    && lose.swap(false, Ordering::SeqCst)
                {
                    lost.lock().unwrap().push(result.command_id.clone());
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
        let deliveries = self.deliveries.clone();
        tokio::spawn(async move {
            loop {
                match from_control_plane.message().await {
                    Ok(Some(message)) => {
                        if let Some(pb::control_message::Body::Command(signed)) = &message.body {
                            let body = pb::CommandBody::decode(&signed.body[..]).unwrap();
                            *deliveries
                                .lock()
                                .unwrap()
                                .entry(body.command_id)
                                .or_default() += 1;
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

#[tokio::test]
async fn a_lost_result_means_a_second_delivery_that_the_device_answers_without_running_twice() {
    let (mut world, id) = ready_kiosk(Duration::from_secs(1)).await;
    world.stop_agent().await;
    let proxy = LossyGateway {
        upstream: RawDevice::gateway(&world.address).await,
        lose_next_result: Arc::new(AtomicBool::new(false)),
        lost: Arc::default(),
        deliveries: Arc::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(DeviceGatewayServer::new(proxy.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    world.start_agent_at(&proxy_address).await;

    proxy.lose_next_result.store(true, Ordering::SeqCst);
    let action = reset_with_ttl(&mut world, &id, 0).await;
    let done = world.admin.wait_final(&action.action_id).await;
    assert_eq!(
        state(&done),
        pb::ActionState::Done,
        "reason: {}",
        done.reason
    );
    assert_eq!(
        *proxy.lost.lock().unwrap(),
        std::slice::from_ref(&action.action_id)
    );
    let deliveries = proxy.deliveries.lock().unwrap()[&action.action_id];
    assert!(deliveries >= 2, "delivered {deliveries} time(s)");

    let screen = world.screen("kiosk").await;
    assert_eq!(
        screen.applied_commands.get(&action.action_id),
        Some(&1),
        "delivered twice, applied once"
    );
    let passcode = world.admin.reveal(&action.action_id).await.unwrap();
    assert!(!world.enter("kiosk", DEVICE, DEVICE_PIN).await);
    assert!(world.enter("kiosk", DEVICE, &passcode).await);
}

#[tokio::test]
async fn a_device_in_airplane_mode_gets_its_reset_when_it_comes_back_online() {
    let (mut world, id) = ready_kiosk(Duration::from_secs(1)).await;
    let offline = world
        .harness
        .set_online(pb::SetOnlineRequest {
            name: "kiosk".into(),
            online: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!offline.connected);
    world.admin.wait_device(&id, |d| !d.online).await;

    let action = reset_with_ttl(&mut world, &id, 0).await;
    assert_eq!(state(&action), pb::ActionState::Pending);
    let still = world.admin.action(&action.action_id).await;
    assert_eq!(
        state(&still),
        pb::ActionState::Pending,
        "no session, no delivery"
    );

    world
        .harness
        .set_online(pb::SetOnlineRequest {
            name: "kiosk".into(),
            online: true,
        })
        .await
        .unwrap();
    let done = world.admin.wait_final(&action.action_id).await;
    assert_eq!(
        state(&done),
        pb::ActionState::Done,
        "reason: {}",
        done.reason
    );
    let screen = world.wait_screen("kiosk", |s| s.connected).await;
    assert_eq!(screen.applied_commands.get(&action.action_id), Some(&1));
}
