//! Device identity over real gRPC: a device's key opens only its own device's session, which
//! receives only that device's commands and reports only on them; a newer session with a valid
//! proof takes over, audited; what the control plane stores about a device opens nothing;
//! re-enrollment of a known device is explicit (an admin revokes the key and hands out a token
//! bound to the device).

use crate::support::{RawDevice, World, hello, open_session, pin_policy};
use droidfleet_agent::device::Ownership;
use droidfleet_proto::v1 as pb;
use pb::CredentialScope::{Device as DEVICE, Unspecified as UNSPECIFIED};

fn state(action: &pb::Action) -> pb::ActionState {
    pb::ActionState::try_from(action.state).unwrap()
}

fn user_event(command_id: &str) -> pb::device_message::Body {
    pb::device_message::Body::UserEvent(pb::UserEvent {
        kind: pb::user_event::Kind::NewPasscodeEntered as i32,
        scope: DEVICE as i32,
        at_ms: 1,
        command_id: command_id.to_string(),
    })
}

#[tokio::test]
async fn one_device_credential_cannot_open_receive_or_report_for_another_device() {
    let mut world = World::start(&[]).await;
    let token = world.admin.enrollment_token(2, "").await;
    let a = RawDevice::enroll(&world.address, &token, pb::Ownership::Cosu, "device-a").await;
    let b = RawDevice::enroll(&world.address, &token, pb::Ownership::Cosu, "device-b").await;
    assert_ne!(a.device_id, b.device_id);
    for device in [&a, &b] {
        world
            .admin
            .assign_policy(&device.device_id, DEVICE, pin_policy(6))
            .await;
    }
    let b_action = world
        .admin
        .remote_lock(&b.device_id, UNSPECIFIED)
        .await
        .unwrap();
    let a_action = world
        .admin
        .remote_lock(&a.device_id, UNSPECIFIED)
        .await
        .unwrap();

    // A's key with a Hello naming B: refused before anything of B is recorded.
    let refused = a
        .open_with(&a.key, vec![hello(&b.device_id)])
        .await
        .expect("the challenge comes")
        .ended()
        .await
        .expect_err("A cannot open B's session");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert!(
        refused.message().contains("proof does not verify"),
        "{}",
        refused.message()
    );
    let b_seen = world.admin.wait_device(&b.device_id, |_| true).await;
    assert!(!b_seen.online, "B never came online");
    assert_eq!(b_seen.last_seen_ms, b_seen.enrolled_at_ms);

    // No proof (a status where the proof belongs), or a made-up key.
    let status = pb::device_message::Body::Status(pb::DeviceStatus::default());
    let made_up = crate::support::new_key();
    for (key, what) in [(None, "no proof"), (Some(&made_up), "a made-up key")] {
        let first = vec![
            hello(&b.device_id),
            pb::DeviceMessage {
                body: Some(status.clone()),
            },
        ];
        let refused = open_session(&a.client, key, first)
            .await
            .expect("the challenge comes")
            .ended()
            .await
            .expect_err(what);
        assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{what}");
    }

    // A's own session carries A's commands only.
    let mut session = a.open().await;
    let (command, _) = session.next_command().await;
    assert_eq!(command.command_id, a_action.action_id);
    assert_eq!(command.device_id, a.device_id);
    session.ack(&a_action.action_id).await;
    session.result(&a_action.action_id, true).await;
    session.close().await;
    assert_eq!(
        state(&world.admin.wait_final(&a_action.action_id).await),
        pb::ActionState::Done
    );

    // A acknowledging, completing or reporting a user event for B's command: NotFound, the
    // session ends, and B's action does not move.
    let b_before = world.admin.action(&b_action.action_id).await;
    for body in [
        pb::device_message::Body::Ack(pb::CommandAck {
            command_id: b_action.action_id.clone(),
            traceparent: String::new(),
        }),
        pb::device_message::Body::Result(pb::CommandResult {
            command_id: b_action.action_id.clone(),
            success: true,
            completed_at_ms: 1,
            ..Default::default()
        }),
        pb::device_message::Body::Result(pb::CommandResult {
            command_id: b_action.action_id.clone(),
            success: false,
            error_code: pb::ErrorCode::TokenMismatch as i32,
            reason: "forged".into(),
            completed_at_ms: 1,
            traceparent: String::new(),
        }),
        user_event(&b_action.action_id),
    ] {
        let session = a.open().await;
        session.send(body).await;
        let ended = session.ended().await.unwrap_err();
        assert_eq!(ended.code(), tonic::Code::NotFound, "{}", ended.message());
        assert_eq!(world.admin.action(&b_action.action_id).await, b_before);
    }
    assert_eq!(state(&b_before), pb::ActionState::Pending);

    // B itself still gets its command.
    let mut session = b.open().await;
    let (command, _) = session.next_command().await;
    assert_eq!(command.command_id, b_action.action_id);
    session.close().await;
}

#[tokio::test]
async fn re_enrolling_a_known_device_is_explicit_and_revokes_the_old_credential() {
    let mut world = World::start(&[]).await;
    let token = world.admin.enrollment_token(1, "field").await;
    let old = RawDevice::enroll(&world.address, &token, pb::Ownership::Byod, "phone").await;
    old.escrow(pb::CredentialScope::WorkProfile).await;
    world
        .admin
        .assign_policy(
            &old.device_id,
            pb::CredentialScope::WorkProfile,
            pin_policy(6),
        )
        .await;
    let pending = world
        .admin
        .remote_lock(&old.device_id, UNSPECIFIED)
        .await
        .unwrap();
    assert_eq!(state(&pending), pb::ActionState::Pending);

    // An ordinary token never gives out a known device's identity: it makes a new device.
    let another = world.admin.enrollment_token(1, "").await;
    let fresh = RawDevice::enroll(&world.address, &another, pb::Ownership::Byod, "phone").await;
    assert_ne!(fresh.device_id, old.device_id);

    // The admin re-enrolls the device: its open session ends and its key stops working.
    let mut session = old.open().await;
    let _ = session.next_command().await;
    let request = world.admin.request(pb::ReEnrollDeviceRequest {
        device_id: old.device_id.clone(),
        ttl_seconds: 0,
    });
    let reenroll = world
        .admin
        .client
        .re_enroll_device(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reenroll.device_id, old.device_id);
    let ended = session.ended().await.unwrap_err();
    assert_eq!(
        ended.code(),
        tonic::Code::Unauthenticated,
        "{}",
        ended.message()
    );
    let refused = old
        .open_with(&old.key, vec![old.hello()])
        .await
        .expect("the challenge comes")
        .ended()
        .await
        .expect_err("the old key is revoked");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);

    // The token is bound to the device: another ownership is refused without using it up.
    let mut gateway = RawDevice::gateway(&world.address).await;
    let wrong = gateway
        .enroll(pb::EnrollRequest {
            enrollment_token: reenroll.enrollment_token.clone(),
            ownership: pb::Ownership::Cosu as i32,
            display_name: "phone".into(),
            device_public_key: vec![9; 32],
        })
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), tonic::Code::InvalidArgument);
    assert!(wrong.message().contains("ownership"), "{}", wrong.message());

    let again = RawDevice::enroll(
        &world.address,
        &reenroll.enrollment_token,
        pb::Ownership::Byod,
        "phone",
    )
    .await;
    assert_eq!(again.device_id, old.device_id, "the same device, back");
    assert_ne!(again.key, old.key);
    // The old install's key opens nothing on the re-enrolled device.
    let refused = old
        .open_with(&old.key, vec![old.hello()])
        .await
        .expect("the challenge comes")
        .ended()
        .await
        .expect_err("the old key was replaced");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let device = world.admin.wait_device(&again.device_id, |_| true).await;
    assert_eq!(device.group, "field", "it keeps its group");
    assert!(device.work_profile_policy.is_some(), "and its policies");
    assert!(
        device.escrowed_token_scopes.is_empty(),
        "the old install's escrowed tokens are gone"
    );
    // Its pending command is delivered to the re-enrolled device.
    let mut session = again.open().await;
    let (command, _) = session.next_command().await;
    assert_eq!(command.command_id, pending.action_id);
    session.close().await;

    // Single use.
    let used = gateway
        .enroll(pb::EnrollRequest {
            enrollment_token: reenroll.enrollment_token,
            ownership: pb::Ownership::Byod as i32,
            display_name: "phone".into(),
            device_public_key: vec![9; 32],
        })
        .await
        .unwrap_err();
    assert_eq!(used.code(), tonic::Code::PermissionDenied);

    let audit = world.admin.audit("ReEnrollDevice").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].device_id, old.device_id);
}

#[tokio::test]
async fn a_newer_session_with_a_valid_proof_takes_over_ending_the_old_one_and_is_audited() {
    let mut world = World::start(&[]).await;
    let token = world.admin.enrollment_token(1, "").await;
    let device = RawDevice::enroll(&world.address, &token, pb::Ownership::Cosu, "kiosk").await;
    let first = device.open().await;
    world
        .admin
        .wait_device(&device.device_id, |d| d.online)
        .await;
    assert!(
        world
            .admin
            .audit("device.session_takeover")
            .await
            .is_empty(),
        "a first session is no takeover"
    );

    let mut second = device.open().await;
    let ended = first.ended().await.unwrap_err();
    assert_eq!(ended.code(), tonic::Code::Aborted, "{}", ended.message());
    assert!(ended.message().contains("replaced"), "{}", ended.message());
    let audit = world.admin.audit("device.session_takeover").await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0].device_id, device.device_id);
    assert_eq!(audit[0].result, "ok");

    // The newer session is the device's session now: it gets the device's commands.
    world
        .admin
        .assign_policy(&device.device_id, DEVICE, pin_policy(6))
        .await;
    let action = world
        .admin
        .remote_lock(&device.device_id, UNSPECIFIED)
        .await
        .unwrap();
    let (command, _) = second.next_command().await;
    assert_eq!(command.command_id, action.action_id);
    second.close().await;
}

#[tokio::test]
async fn a_stolen_device_row_opens_no_session() {
    let mut world = World::start(&[]).await;
    let token = world.admin.enrollment_token(1, "").await;
    let device = RawDevice::enroll(&world.address, &token, pb::Ownership::Cosu, "kiosk").await;

    // Everything the control plane stores about the device, read from its database file.
    let row = world.device_row(&device.device_id).await;
    assert!(
        row.values().any(|value| value.len() == 32),
        "the row holds the public key: {:?}",
        row.keys().collect::<Vec<_>>()
    );
    // Each stored value tried as the key's seed, and each as a bearer credential (which no
    // longer opens anything).
    for (column, value) in &row {
        let mut seed = [0u8; 32];
        let len = value.len().min(32);
        seed[..len].copy_from_slice(&value[..len]);
        let refused = device
            .open_with(&seed, vec![device.hello()])
            .await
            .expect("the challenge comes")
            .ended()
            .await
            .expect_err(column);
        assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{column}");
        // An empty column (such as a maker profile not reported yet) is in every message.
        assert!(
            value.is_empty() || !refused.message().contains(&hex(value)),
            "{column}: the refusal echoes stored data: {}",
            refused.message()
        );
        let mut bearer = tonic::Request::new(tokio_stream::iter(vec![device.hello()]));
        let credential = format!("Bearer {}", hex(value));
        bearer
            .metadata_mut()
            .insert("authorization", credential.parse().unwrap());
        let call = device.client.clone().session(bearer).await;
        let outcome = match call {
            Err(status) => status,
            Ok(response) => {
                let mut stream = response.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(_)) => continue,
                        Ok(None) => panic!("{column}: a bearer session ended cleanly"),
                        Err(status) => break status,
                    }
                }
            }
        };
        assert_eq!(outcome.code(), tonic::Code::Unauthenticated, "{column}");
    }
    let seen = world.admin.wait_device(&device.device_id, |_| true).await;
    assert!(!seen.online, "no stolen row brought the device online");
    assert_eq!(seen.last_seen_ms, seen.enrolled_at_ms, "nothing recorded");
    // The device's own key still opens its session.
    device.open().await.close().await;
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn re_enrollment_needs_enrollment_and_device_update_rights_in_the_devices_group() {
    let mut world = World::start(&[]).await;
    let token = world.admin.enrollment_token(1, "").await;
    let device = RawDevice::enroll(&world.address, &token, pb::Ownership::Cosu, "kiosk").await;
    let mut helpdesk = world.admin.principal("hank", &["Help Desk Operator"]).await;
    let request = helpdesk.request(pb::ReEnrollDeviceRequest {
        device_id: device.device_id.clone(),
        ttl_seconds: 0,
    });
    let denied = helpdesk.client.re_enroll_device(request).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    assert!(
        denied.message().contains("Enrollment.Create"),
        "{}",
        denied.message()
    );
    // Nothing was revoked.
    let session = device.open().await;
    session.close().await;
}

/// After ReEnrollDevice the agent's device recovers by itself, without a restart: its session
/// ends UNAUTHENTICATED, it stops calling and shows that it needs re-enrollment; handed the
/// single-use token (the harness's ReEnroll, here through `droidfleet agent re-enroll`, as a
/// person would type it into the management app) it enrolls again with the same id, sets and
/// escrows new reset tokens, and reconnects; once its user unlocks, a reset works again.
#[tokio::test]
async fn a_re_enrolled_device_recovers_without_a_restart() {
    const PIN: &str = "2580";
    let mut world = World::start(&[("kiosk", Ownership::Cosu)]).await;
    let id = world.device_id("kiosk").await;
    world.set_passcode("kiosk", DEVICE, "", PIN).await;
    world.admin.wait_escrowed(&id, DEVICE).await;
    world.admin.assign_policy(&id, DEVICE, pin_policy(6)).await;

    let request = world.admin.request(pb::ReEnrollDeviceRequest {
        device_id: id.clone(),
        ttl_seconds: 0,
    });
    let token = world
        .admin
        .client
        .re_enroll_device(request)
        .await
        .unwrap()
        .into_inner()
        .enrollment_token;
    let waiting = world
        .wait_screen("kiosk", |s| s.re_enrollment_required && !s.connected)
        .await;
    assert!(
        waiting
            .notifications
            .iter()
            .any(|n| n.id == "re-enrollment-required"),
        "{:?}",
        waiting.notifications
    );
    let empty = world
        .harness
        .re_enroll(pb::ReEnrollRequest {
            name: "kiosk".into(),
            enrollment_token: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(empty.code(), tonic::Code::InvalidArgument);

    let handed = tokio::process::Command::new(env!("CARGO_BIN_EXE_droidfleet"))
        .args(["agent", "re-enroll", "--harness", &world.harness_address])
        .args(["--device", "kiosk"])
        .env("DROIDFLEET_REENROLLMENT_TOKEN", &token)
        .output()
        .await
        .unwrap();
    assert!(
        handed.status.success(),
        "{}",
        String::from_utf8_lossy(&handed.stderr)
    );
    assert!(!String::from_utf8_lossy(&handed.stdout).contains(&token));
    let back = world
        .wait_screen("kiosk", |s| s.connected && !s.re_enrollment_required)
        .await;
    assert_eq!(back.device_id, id, "the same device, back");
    assert!(back.notifications.is_empty(), "{:?}", back.notifications);
    // New tokens (the control plane dropped the old ones at the re-enrollment), pending over
    // the passcode until the user unlocks.
    let renewed = world
        .wait_screen("kiosk", |s| {
            World::store(s, DEVICE).token_state == pb::TokenState::Pending as i32
        })
        .await;
    assert!(renewed.connected);
    world.admin.wait_escrowed(&id, DEVICE).await;
    world.lock("kiosk", DEVICE).await;
    assert!(world.enter("kiosk", DEVICE, PIN).await);
    world
        .admin
        .wait_device(&id, |d| {
            d.stores
                .iter()
                .any(|s| s.token_state == pb::TokenState::Active as i32)
        })
        .await;
    let action = world.admin.reset(&id, DEVICE).await.unwrap();
    let done = world.admin.wait_final(&action.action_id).await;
    assert_eq!(
        done.state,
        pb::ActionState::Done as i32,
        "reason: {}",
        done.reason
    );
}
