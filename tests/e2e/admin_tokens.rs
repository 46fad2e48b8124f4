//! Admin credential lifecycle over real gRPC and real processes: a token expires, a rotation
//! issues a new one and ends the old (at once or after a grace period), a revocation ends every
//! token of a principal at once and the watches it holds open; each refusal says which end the
//! token met and never shows it; every change is audited; a principal may rotate or revoke only
//! its own tokens unless it manages roles; and a control plane whose every role-managing token
//! ended writes a new bootstrap token on its next start.

use crate::support::{Admin, Deployment, RawDevice, World, pin_policy};
use droidfleet_control_plane::clock::Clock;
use droidfleet_proto::v1 as pb;
use pb::CredentialScope::{Device as DEVICE, Unspecified as UNSPECIFIED};
use std::time::Duration;
use tokio_stream::StreamExt;

const HOUR_MS: u64 = 3_600_000;

/// Asserts a call was refused UNAUTHENTICATED with a message naming `end`, and not the token.
fn assert_refused<T: std::fmt::Debug>(result: Result<T, tonic::Status>, end: &str, token: &str) {
    let status = result.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains(end), "{}", status.message());
    assert!(!status.message().contains(token), "{}", status.message());
}

async fn caller(admin: &mut Admin) -> Result<pb::Caller, tonic::Status> {
    let request = admin.request(pb::GetCallerRequest::default());
    admin
        .client
        .get_caller(request)
        .await
        .map(|r| r.into_inner())
}

async fn rotate(
    admin: &mut Admin,
    name: &str,
    grace_seconds: u64,
) -> Result<pb::RotatePrincipalTokenResponse, tonic::Status> {
    let request = admin.request(pb::RotatePrincipalTokenRequest {
        name: name.into(),
        token_ttl_seconds: 0,
        grace_seconds,
    });
    admin
        .client
        .rotate_principal_token(request)
        .await
        .map(|r| r.into_inner())
}

async fn revoke(admin: &mut Admin, name: &str) -> Result<u32, tonic::Status> {
    let request = admin.request(pb::RevokePrincipalTokensRequest { name: name.into() });
    admin
        .client
        .revoke_principal_tokens(request)
        .await
        .map(|r| r.into_inner().revoked)
}

fn acting_as(admin: &Admin, token: &str) -> Admin {
    Admin {
        client: admin.client.clone(),
        token: Some(token.to_string()),
    }
}

#[tokio::test]
async fn a_token_expires_is_rotated_with_a_grace_period_and_is_revoked() {
    let mut world = World::start(&[]).await;
    let request = world.admin.request(pb::CreatePrincipalRequest {
        name: "ops".into(),
        roles: vec!["Help Desk Operator".into()],
        token_ttl_seconds: 3_600,
        ..Default::default()
    });
    let created = world
        .admin
        .client
        .create_principal(request)
        .await
        .unwrap()
        .into_inner();
    let now = world.clock.now();
    assert_eq!(created.token_expires_at_ms, now + HOUR_MS);
    let first = created.bearer_token;
    let mut ops = acting_as(&world.admin, &first);
    assert_eq!(caller(&mut ops).await.unwrap().name, "ops");

    // Expiry, by the injected clock.
    world.clock.advance(HOUR_MS);
    assert_refused(caller(&mut ops).await, "expired", &first);

    // An admin rotates it; the new token works at once.
    let rotated = rotate(&mut world.admin, "ops", 0).await.unwrap();
    let second = rotated.bearer_token;
    assert_ne!(second, first);
    let ops_listed = rotated.principal.unwrap();
    assert_eq!(
        ops_listed.token_expires_at_ms,
        world.clock.now() + 90 * 24 * HOUR_MS,
        "the server's default time-to-live"
    );
    let mut ops = acting_as(&world.admin, &second);
    caller(&mut ops).await.unwrap();
    assert_refused(
        caller(&mut acting_as(&world.admin, &first)).await,
        "expired",
        &first,
    );

    // A principal rotates its own token with a minute's grace: both work for that minute.
    let third = rotate(&mut ops, "ops", 60).await.unwrap().bearer_token;
    caller(&mut acting_as(&world.admin, &third)).await.unwrap();
    caller(&mut ops).await.unwrap();
    world.clock.advance(60_000);
    assert_refused(caller(&mut ops).await, "rotation", &second);
    let mut ops = acting_as(&world.admin, &third);
    caller(&mut ops).await.unwrap();

    // Without Roles.Manage, another principal's token is out of reach.
    for refused in [
        rotate(&mut ops, "admin", 0).await.map(|_| ()),
        revoke(&mut ops, "admin").await.map(|_| ()),
    ] {
        assert_eq!(refused.unwrap_err().code(), tonic::Code::PermissionDenied);
    }

    // Revocation ends it at once.
    assert_eq!(revoke(&mut world.admin, "ops").await.unwrap(), 1);
    assert_refused(caller(&mut ops).await, "revoked", &third);
    let request = world.admin.request(pb::ListPrincipalsRequest::default());
    let listed = world
        .admin
        .client
        .list_principals(request)
        .await
        .unwrap()
        .into_inner()
        .principals;
    let ops_listed = listed.iter().find(|p| p.name == "ops").unwrap();
    assert_eq!(ops_listed.token_revoked_at_ms, world.clock.now());

    // Every change is audited, with who did it, and no token in it.
    let rotations = world.admin.audit("RotatePrincipalToken").await;
    let rotated_by: Vec<(&str, &str)> = rotations
        .iter()
        .map(|e| (e.principal.as_str(), e.result.as_str()))
        .collect();
    assert_eq!(
        rotated_by.iter().filter(|(_, r)| *r == "ok").count(),
        2,
        "{rotated_by:?}"
    );
    assert!(rotated_by.contains(&("ops", "ok")) && rotated_by.contains(&("admin", "ok")));
    assert!(rotated_by.contains(&("ops", "PERMISSION_DENIED")));
    let revocations = world.admin.audit("RevokePrincipalTokens").await;
    assert!(
        revocations
            .iter()
            .any(|e| e.principal == "admin" && e.result == "ok" && e.detail.contains("ops"))
    );
    for event in rotations.iter().chain(&revocations) {
        for token in [&first, &second, &third] {
            assert!(!event.detail.contains(token.as_str()));
        }
    }
}

#[tokio::test]
async fn revoking_a_token_ends_the_watches_it_holds_open() {
    let mut world = World::start(&[]).await;
    let token = world.admin.enrollment_token(1, "").await;
    let device = RawDevice::enroll(&world.address, &token, pb::Ownership::Cosu, "w-1").await;
    world
        .admin
        .assign_policy(&device.device_id, DEVICE, pin_policy(6))
        .await;
    let action = world
        .admin
        .remote_lock(&device.device_id, UNSPECIFIED)
        .await
        .unwrap();
    let mut watcher = world
        .admin
        .principal("watcher", &["Help Desk Operator"])
        .await;
    let bystander = world
        .admin
        .principal("bystander", &["Help Desk Operator"])
        .await;

    let request = watcher.request(pb::GetDeviceRequest {
        device_id: device.device_id.clone(),
    });
    let mut device_stream = watcher
        .client
        .watch_device(request)
        .await
        .unwrap()
        .into_inner();
    let request = watcher.request(pb::WatchDevicesRequest {
        device_ids: vec![device.device_id.clone()],
    });
    let mut devices_stream = watcher
        .client
        .watch_devices(request)
        .await
        .unwrap()
        .into_inner();
    let request = watcher.request(pb::GetActionRequest {
        action_id: action.action_id.clone(),
        ..Default::default()
    });
    let mut action_stream = watcher
        .client
        .watch_action(request)
        .await
        .unwrap()
        .into_inner();
    let request = bystander.request(pb::GetActionRequest {
        action_id: action.action_id.clone(),
        ..Default::default()
    });
    let mut bystander_stream = bystander
        .client
        .clone()
        .watch_action(request)
        .await
        .unwrap()
        .into_inner();
    // Each stream starts with the current state.
    for first in [
        device_stream.next().await.map(|m| m.map(|_| ())),
        devices_stream.next().await.map(|m| m.map(|_| ())),
        action_stream.next().await.map(|m| m.map(|_| ())),
        bystander_stream.next().await.map(|m| m.map(|_| ())),
    ] {
        first.unwrap().unwrap();
    }

    assert_eq!(revoke(&mut world.admin, "watcher").await.unwrap(), 1);
    let watcher_token = watcher.token.clone().unwrap();
    for (name, next) in [
        (
            "WatchDevice",
            device_stream.next().await.map(|m| m.map(|_| ())),
        ),
        (
            "WatchDevices",
            devices_stream.next().await.map(|m| m.map(|_| ())),
        ),
        (
            "WatchAction",
            action_stream.next().await.map(|m| m.map(|_| ())),
        ),
    ] {
        let status = next.unwrap().unwrap_err();
        assert_eq!(
            status.code(),
            tonic::Code::Unauthenticated,
            "{name}: {status:?}"
        );
        assert!(status.message().contains("revoked"), "{name}: {status:?}");
        assert!(!status.message().contains(&watcher_token));
    }
    assert!(device_stream.next().await.is_none(), "the stream ended");

    // Another principal's watch is untouched: it still sees the action change.
    world.admin.cancel(&action.action_id).await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), bystander_stream.next())
        .await
        .expect("the bystander's watch still follows the action")
        .unwrap()
        .unwrap();
    assert_eq!(next.state, pb::ActionState::Canceled as i32);
}

#[tokio::test]
async fn the_cli_rotates_and_revokes_and_a_restart_recovers_a_locked_out_control_plane() {
    let deployment = Deployment::new();
    let control_plane = deployment.control_plane();
    let mut admin = deployment.admin().await;
    let bootstrap = admin.token.clone().unwrap();
    let ca = deployment.path("cp").join("tls").join("ca.pem");
    let cli = |token: &str, args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_droidfleet"))
            .args(["admin", "--server", &deployment.address()])
            .arg("--ca-file")
            .arg(&ca)
            .args(args)
            .env("DROIDFLEET_TOKEN", token)
            .env_remove("DROIDFLEET_TOKEN_FILE")
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };

    let (ok, ops_token, err) = cli(
        &bootstrap,
        &[
            "create-principal",
            "ops",
            "--role",
            "Read Only Operator",
            "--token-ttl",
            "2h",
        ],
    );
    assert!(ok, "{err}");
    let ops_token = ops_token.trim().to_string();
    assert!(err.contains("expires"), "{err}");
    let (ok, listing, err) = cli(&bootstrap, &["principals"]);
    assert!(ok, "{err}");
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("ops: ") && l.contains("(token expires ")),
        "{listing}"
    );

    let (ok, rotated, err) = cli(&bootstrap, &["rotate-token", "ops", "--grace", "1h"]);
    assert!(ok, "{err}");
    let new_ops_token = rotated.trim().to_string();
    assert!(err.contains("old token(s) stop working"), "{err}");
    for token in [&ops_token, &new_ops_token] {
        let (ok, _, err) = cli(token, &["devices"]);
        assert!(ok, "inside the grace period both work: {err}");
    }
    let (ok, out, err) = cli(&bootstrap, &["--output", "json", "revoke-tokens", "ops"]);
    assert!(ok, "{err}");
    let out: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(out["revoked"], 2);
    let (ok, _, err) = cli(&new_ops_token, &["devices"]);
    assert!(!ok);
    assert!(err.contains("revoked"), "{err}");
    assert!(!err.contains(&new_ops_token), "{err}");

    // The only role-managing principal revokes its own token: nobody can manage roles until the
    // control plane starts again and writes a new bootstrap token.
    assert_eq!(revoke(&mut admin, "admin").await.unwrap(), 1);
    assert_refused(caller(&mut admin).await, "revoked", &bootstrap);
    control_plane.terminate();
    let _control_plane = deployment.control_plane();
    let mut admin = deployment.admin().await;
    let recovered = admin.token.clone().unwrap();
    assert_ne!(recovered, bootstrap);
    assert_eq!(caller(&mut admin).await.unwrap().name, "admin");
    assert_refused(
        caller(&mut acting_as(&admin, &bootstrap)).await,
        "revoked",
        &bootstrap,
    );
    let log = std::fs::read_to_string(deployment.path("cp.log")).unwrap();
    assert_eq!(
        log.matches("a new bootstrap token was written").count(),
        2,
        "on the first start and on the recovering one: {log}"
    );
    assert!(!log.contains(&recovered) && !log.contains(&bootstrap));
}
