//! Acceptance of the admin rules over real gRPC: roles, authentication, unknown devices, the
//! audit of each, and the seven-day reveal window with the passcode purged from the file.

use crate::support::{Admin, World, pin_policy};
use droidfleet_agent::device::Ownership;
use droidfleet_control_plane::clock::DAY;
use droidfleet_proto::v1 as pb;
use pb::CredentialScope::Device as DEVICE;
use std::time::Duration;

#[tokio::test]
async fn roles_credentials_and_unknown_devices_are_refused_and_audited() {
    let mut world = World::start(&[("kiosk", Ownership::Cosu)]).await;
    let id = world.device_id("kiosk").await;

    let mut reader = world.admin.principal("rita", &["Read Only Operator"]).await;
    let denied = reader
        .reset(&id, pb::CredentialScope::Unspecified)
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    assert!(
        denied.message().contains("RemoteTasks.ResetPasscode"),
        "{}",
        denied.message()
    );

    let mut anonymous = Admin::connect(&world.address, None).await;
    let missing = anonymous
        .reset(&id, pb::CredentialScope::Unspecified)
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::Unauthenticated);
    let mut forged = Admin::connect(&world.address, Some("dfa_not-a-real-token".into())).await;
    let wrong = forged
        .reset(&id, pb::CredentialScope::Unspecified)
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), tonic::Code::Unauthenticated);

    let mut helpdesk = world.admin.principal("hank", &["Help Desk Operator"]).await;
    let unknown = helpdesk
        .reset("dev_does_not_exist", pb::CredentialScope::Unspecified)
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    let mut school = world
        .admin
        .principal("sara", &["School Administrator"])
        .await;
    let allowed = school
        .reset(&id, pb::CredentialScope::Unspecified)
        .await
        .unwrap();
    assert_eq!(allowed.requested_by, "sara");

    let events = world.admin.audit("ResetPasscode").await;
    let find = |principal: &str, result: &str| {
        events
            .iter()
            .any(|e| e.principal == principal && e.result == result)
    };
    assert!(find("rita", "PERMISSION_DENIED"), "{events:#?}");
    assert!(find("hank", "NOT_FOUND"), "{events:#?}");
    assert!(find("sara", "ok"), "{events:#?}");
    // Calls without a valid token cost no audit row (and no fsync): anyone could send them.
    assert_eq!(
        events
            .iter()
            .filter(|e| e.result == "UNAUTHENTICATED")
            .count(),
        0,
        "{events:#?}"
    );
    let denied_event = events.iter().find(|e| e.principal == "rita").unwrap();
    assert_eq!(denied_event.device_id, id, "the audit names the device");
}

#[tokio::test]
async fn a_custom_role_needs_the_reset_permission_and_device_visibility() {
    let mut world = World::start(&[("kiosk", Ownership::Cosu)]).await;
    let id = world.device_id("kiosk").await;
    for (role, permissions) in [
        (
            "Resetters",
            vec![
                "RemoteTasks.ResetPasscode",
                "ManagedDevices.Read",
                "ManagedDevices.Update",
            ],
        ),
        ("Blind resetters", vec!["RemoteTasks.ResetPasscode"]),
    ] {
        let request = world.admin.request(pb::Role {
            name: role.into(),
            permissions: permissions.into_iter().map(String::from).collect(),
            built_in: false,
        });
        world.admin.client.create_role(request).await.unwrap();
    }
    let mut full = world.admin.principal("carol", &["Resetters"]).await;
    assert!(
        full.reset(&id, pb::CredentialScope::Unspecified)
            .await
            .is_ok()
    );
    let mut blind = world.admin.principal("bob", &["Blind resetters"]).await;
    let denied = blind
        .reset(&id, pb::CredentialScope::Unspecified)
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    assert!(
        denied.message().contains("ManagedDevices.Read"),
        "{}",
        denied.message()
    );
}

/// Every file SQLite may keep the database's bytes in.
fn database_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for name in [
        "droidfleet.db",
        "droidfleet.db-wal",
        "droidfleet.db-journal",
    ] {
        if let Ok(content) = std::fs::read(dir.join(name)) {
            bytes.extend(content);
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn the_passcode_is_revealed_for_seven_days_then_purged_from_the_file() {
    let mut world = World::start_with(&[("kiosk", Ownership::Cosu)], |config| {
        config.purge_interval = Duration::from_millis(20);
    })
    .await;
    let id = world.device_id("kiosk").await;
    world.set_passcode("kiosk", DEVICE, "", "2580").await;
    world.admin.wait_escrowed(&id, DEVICE).await;
    world.admin.assign_policy(&id, DEVICE, pin_policy(8)).await;
    let action = world.admin.reset(&id, DEVICE).await.unwrap();
    assert_eq!(
        world.admin.wait_final(&action.action_id).await.state,
        pb::ActionState::Done as i32
    );
    let passcode = world.admin.reveal(&action.action_id).await.unwrap();
    assert_eq!(passcode.len(), 8);

    // What the database holds for it: sealed, never the plain passcode.
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        world.data_dir.path().join("droidfleet.db").display()
    ))
    .await
    .unwrap();
    let (sealed,): (Vec<u8>,) =
        sqlx::query_as("SELECT sealed FROM action_passcodes WHERE action_id = ?")
            .bind(&action.action_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    pool.close().await;
    assert!(!contains(
        &database_bytes(world.data_dir.path()),
        passcode.as_bytes()
    ));

    world.clock.advance(6 * DAY);
    assert_eq!(
        world.admin.reveal(&action.action_id).await.unwrap(),
        passcode,
        "still visible on day 6"
    );

    world.clock.advance(2 * DAY);
    let gone = world.admin.reveal(&action.action_id).await.unwrap_err();
    assert_eq!(
        gone.code(),
        tonic::Code::FailedPrecondition,
        "not visible on day 8"
    );
    assert!(!gone.message().contains(&passcode));

    // Wait for two purge runs that started after the clock moved.
    let mut runs = world.control_plane.purge_runs();
    let seen = *runs.borrow_and_update();
    tokio::time::timeout(crate::support::DEADLINE, runs.wait_for(|n| *n >= seen + 2))
        .await
        .unwrap()
        .unwrap();
    let bytes = database_bytes(world.data_dir.path());
    assert!(
        !contains(&bytes, &sealed),
        "the sealed passcode's bytes are gone from the database"
    );
    assert!(!contains(&bytes, passcode.as_bytes()));
    assert_eq!(
        world
            .admin
            .action(&action.action_id)
            .await
            .passcode_visible_until_ms,
        0
    );

    let reveals = world.admin.audit("RevealPasscode").await;
    assert_eq!(
        reveals.iter().filter(|e| e.result == "ok").count(),
        2,
        "each reveal is audited"
    );
    assert_eq!(
        reveals
            .iter()
            .filter(|e| e.result == "FAILED_PRECONDITION")
            .count(),
        1
    );
    for event in world.admin.audit("").await {
        assert!(
            !event.detail.contains(&passcode),
            "no passcode in the audit: {event:?}"
        );
    }
}
