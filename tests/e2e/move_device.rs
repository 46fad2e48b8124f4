//! Moving an enrolled device to another group (MoveDevice), through the admin API and the CLI:
//! who may move it, who sees it afterwards, what it keeps, and the audit.

use crate::support::{RawDevice, World, pin_policy};
use droidfleet_proto::v1 as pb;

#[tokio::test]
async fn a_device_moves_to_another_group_and_its_visibility_follows() {
    let mut world = World::start(&[]).await;
    let token = world.admin.enrollment_token(1, "north").await;
    let device = RawDevice::enroll(&world.address, &token, pb::Ownership::Cosu, "kiosk").await;
    let id = device.device_id.clone();
    world
        .admin
        .assign_policy(&id, pb::CredentialScope::Device, pin_policy(6))
        .await;
    let mut north = world
        .admin
        .principal_in_group("nora", &["Help Desk Operator"], "north")
        .await;
    let mut south = world
        .admin
        .principal_in_group("sam", &["Help Desk Operator"], "south")
        .await;
    let mut reader = world
        .admin
        .principal_in_group("rita", &["Read Only Operator"], "north")
        .await;
    assert_eq!(north.devices().await.unwrap().len(), 1);
    assert!(south.devices().await.unwrap().is_empty());

    // Moving needs ManagedDevices.Update where it is and where it goes.
    let move_to = |admin: &mut crate::support::Admin, group: &str| {
        admin.request(pb::MoveDeviceRequest {
            device_id: id.clone(),
            group: group.to_string(),
        })
    };
    let request = move_to(&mut reader, "south");
    let denied = reader.client.move_device(request).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    assert!(
        denied.message().contains("ManagedDevices.Update"),
        "{}",
        denied.message()
    );
    let request = move_to(&mut north, "south");
    let denied = north.client.move_device(request).await.unwrap_err();
    assert_eq!(
        denied.code(),
        tonic::Code::PermissionDenied,
        "nora cannot manage devices in south"
    );
    let request = move_to(&mut south, "south");
    let invisible = south.client.move_device(request).await.unwrap_err();
    assert_eq!(
        invisible.code(),
        tonic::Code::NotFound,
        "sam cannot see it yet"
    );
    let request = move_to(&mut world.admin, "no such group!");
    let bad = world.admin.client.move_device(request).await.unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().contains("group"), "{}", bad.message());
    let request = world.admin.request(pb::MoveDeviceRequest {
        device_id: "dev_unknown".into(),
        group: "south".into(),
    });
    let unknown = world.admin.client.move_device(request).await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    assert_eq!(
        world.admin.wait_device(&id, |_| true).await.group,
        "north",
        "nothing moved"
    );

    // The CLI, as the bootstrap admin (every group).
    let (ok, out, err) = world.cli(&["move-device", &id, "--group", "south"]).await;
    assert!(ok, "{err}");
    assert!(out.contains(&id) && out.contains("south"), "{out}");
    let moved = world.admin.wait_device(&id, |d| d.group == "south").await;
    assert!(moved.device_policy.is_some(), "its policy stays");
    assert!(north.devices().await.unwrap().is_empty());
    assert_eq!(south.devices().await.unwrap()[0].device_id, id);
    let request = south.request(pb::GetDeviceRequest {
        device_id: id.clone(),
    });
    south.client.get_device(request).await.unwrap();
    let request = north.request(pb::GetDeviceRequest {
        device_id: id.clone(),
    });
    let gone = north.client.get_device(request).await.unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);

    // Sam may now reset it; its session is untouched by the move.
    let session = device.open().await;
    let action = south.reset(&id, pb::CredentialScope::Device).await.unwrap();
    assert_eq!(action.device_id, id);
    session.close().await;

    // Moving it where it is changes nothing and is still audited.
    let (ok, _, err) = world.cli(&["move-device", &id, "--group", "south"]).await;
    assert!(ok, "{err}");
    let audit = world.admin.audit("MoveDevice").await;
    let ok: Vec<&pb::AuditEvent> = audit.iter().filter(|e| e.result == "ok").collect();
    assert_eq!(ok.len(), 2, "{audit:#?}");
    assert!(
        ok.iter()
            .any(|e| e.detail == "moved from group north to group south"),
        "{audit:#?}"
    );
    assert_eq!(audit.len(), 7, "refusals are audited too: {audit:#?}");
}
