//! A device rotates its escrow token and the escrow message is lost: the control plane, told the
//! new token's fingerprint by the device's status, holds the reset instead of sending the stale
//! token (which could only fail `token_mismatch`), and sends it with the new token once the
//! device escrows that again on its next session; the reset ends done. Escrows are acknowledged,
//! so a device knows which of its tokens the control plane holds.

use crate::support::{Embedded, RawDevice, pin_policy};
use droidfleet_proto::v1 as pb;
use pb::CredentialScope::Device as DEVICE;

/// The first 8 bytes of the token's SHA-256, as `StoreStatus.escrow_token_fingerprint` defines.
fn fingerprint(token: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, token).as_ref()[..8].to_vec()
}

/// The device's status: a locked store with a passcode and an active token of `fingerprint`.
fn status(fingerprint: Vec<u8>) -> pb::DeviceStatus {
    pb::DeviceStatus {
        stores: vec![pb::StoreStatus {
            scope: DEVICE as i32,
            has_passcode: true,
            locked: true,
            token_state: pb::TokenState::Active as i32,
            escrow_token_fingerprint: fingerprint,
            ..Default::default()
        }],
    }
}

fn hello(device: &RawDevice, status: pb::DeviceStatus) -> pb::DeviceMessage {
    pb::DeviceMessage {
        body: Some(pb::device_message::Body::Hello(pb::Hello {
            device_id: device.device_id.clone(),
            agent_version: "raw-test-device".into(),
            status: Some(status),
            ..Default::default()
        })),
    }
}

fn escrow(token: &[u8]) -> pb::device_message::Body {
    pb::device_message::Body::EscrowToken(pb::EscrowTokenUpdate {
        scope: DEVICE as i32,
        token: token.to_vec(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_after_a_lost_escrow_waits_for_the_new_token_and_ends_done() {
    let control_plane = Embedded::start().await;
    let mut admin = control_plane.admin().await;
    let enrollment_token = admin.enrollment_token(1, "").await;
    let device = RawDevice::enroll(
        &control_plane.address,
        &enrollment_token,
        pb::Ownership::Cosu,
        "kiosk",
    )
    .await;
    admin
        .assign_policy(&device.device_id, DEVICE, pin_policy(6))
        .await;
    let first_token = [1u8; 32];
    let rotated_token = [2u8; 32];

    // The first token is escrowed and acknowledged.
    let mut session = device
        .open_with(
            &device.key,
            vec![hello(&device, status(fingerprint(&first_token)))],
        )
        .await
        .unwrap();
    session.send(escrow(&first_token)).await;
    let ack = session.next_escrow_ack().await;
    assert_eq!(ack.scope, DEVICE as i32);
    assert_eq!(ack.fingerprint, fingerprint(&first_token));
    admin.wait_escrowed(&device.device_id, DEVICE).await;

    // The management app rotates the token; the status saying so arrives, the escrow of the new
    // token is lost with the session.
    session
        .send(pb::device_message::Body::Status(status(fingerprint(
            &rotated_token,
        ))))
        .await;
    admin
        .wait_device(&device.device_id, |d| {
            d.stores
                .iter()
                .any(|s| s.escrow_token_fingerprint == fingerprint(&rotated_token))
        })
        .await;
    session.close().await;

    let action = admin.reset(&device.device_id, DEVICE).await.unwrap();

    // The next session escrows the unacknowledged token again. The first command it receives
    // carries that token: the stale one never left.
    let mut session = device
        .open_with(
            &device.key,
            vec![hello(&device, status(fingerprint(&rotated_token)))],
        )
        .await
        .unwrap();
    session.send(escrow(&rotated_token)).await;
    let (body, _) = session.next_command().await;
    assert_eq!(body.command_id, action.action_id);
    let Some(pb::command_body::Kind::ResetPasscode(reset)) = body.kind else {
        panic!("the command is a reset, not {:?}", body.kind);
    };
    assert!(
        reset.escrow_token == rotated_token,
        "the reset carries the token the device holds now"
    );
    session.ack(&action.action_id).await;
    session.result(&action.action_id, true).await;
    let done = admin.wait_final(&action.action_id).await;
    assert_eq!(done.state, pb::ActionState::Done as i32);
    session.close().await;
    control_plane.stop().await;
}
