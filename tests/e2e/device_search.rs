//! The admin API's calls for consoles, over real gRPC: SearchDevices (pages in name order both
//! ways, filters, each device's newest action, what a group-scoped principal sees) and GetCaller
//! (what a principal holds anywhere and for one device).

use crate::support::{Admin, Embedded, RawDevice};
use droidfleet_proto::v1 as pb;
use tonic::Code;

/// Seven devices: five in group north (three BYOD, two COSU), two in south.
async fn fleet(admin: &mut Admin, address: &str) -> Vec<RawDevice> {
    let north = admin.enrollment_token(5, "north").await;
    let south = admin.enrollment_token(2, "south").await;
    let mut devices = Vec::new();
    for (token, ownership, name) in [
        (&north, pb::Ownership::Byod, "north-byod-c"),
        (&north, pb::Ownership::Byod, "north-byod-a"),
        (&north, pb::Ownership::Cosu, "north-kiosk-b"),
        (&north, pb::Ownership::Byod, "north-byod-b"),
        (&north, pb::Ownership::Cosu, "north-kiosk-a"),
        (&south, pb::Ownership::Byod, "south-byod-a"),
        (&south, pb::Ownership::Cosu, "south-kiosk-a"),
    ] {
        devices.push(RawDevice::enroll(address, token, ownership, name).await);
    }
    devices
}

async fn search(
    admin: &mut Admin,
    request: pb::SearchDevicesRequest,
) -> Result<pb::SearchDevicesResponse, tonic::Status> {
    let request = admin.request(request);
    Ok(admin.client.search_devices(request).await?.into_inner())
}

fn names(page: &pb::SearchDevicesResponse) -> Vec<String> {
    page.devices
        .iter()
        .map(|d| d.device.as_ref().unwrap().display_name.clone())
        .collect()
}

async fn caller(admin: &mut Admin, device_id: &str) -> Result<pb::Caller, tonic::Status> {
    let request = admin.request(pb::GetCallerRequest {
        device_id: device_id.to_string(),
    });
    Ok(admin.client.get_caller(request).await?.into_inner())
}

#[tokio::test]
async fn pages_go_forwards_and_back_in_name_order() {
    let server = Embedded::start().await;
    let mut admin = server.admin().await;
    fleet(&mut admin, &server.address).await;
    let page_size = 3;
    let mut pages = Vec::new();
    let mut token = String::new();
    for _ in 0..10 {
        let page = search(
            &mut admin,
            pb::SearchDevicesRequest {
                page_size,
                page_token: token.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        token = page.next_page_token.clone();
        pages.push(page);
        if token.is_empty() {
            break;
        }
    }
    let seen: Vec<String> = pages.iter().flat_map(names).collect();
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "one walk through the name order");
    assert_eq!(seen.len(), 7);
    assert_eq!(pages.len(), 3);
    assert!(pages[0].previous_page_token.is_empty(), "the first page");
    assert!(pages[2].next_page_token.is_empty(), "the last page");

    // Back from the last page: the same pages again.
    let back = search(
        &mut admin,
        pb::SearchDevicesRequest {
            page_size,
            page_token: pages[2].previous_page_token.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(names(&back), names(&pages[1]));
    let first = search(
        &mut admin,
        pb::SearchDevicesRequest {
            page_size,
            page_token: back.previous_page_token.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(names(&first), names(&pages[0]));
    assert!(first.previous_page_token.is_empty());
    assert_eq!(first.next_page_token, pages[0].next_page_token);
    server.stop().await;
}

#[tokio::test]
async fn filters_and_the_newest_action_come_from_the_control_plane() {
    let server = Embedded::start().await;
    let mut admin = server.admin().await;
    let devices = fleet(&mut admin, &server.address).await;
    let byod = pb::SearchDevicesRequest {
        ownership: pb::Ownership::Byod as i32,
        group: "north".into(),
        ..Default::default()
    };
    assert_eq!(
        names(&search(&mut admin, byod).await.unwrap()),
        ["north-byod-a", "north-byod-b", "north-byod-c"]
    );
    let kiosks = pb::SearchDevicesRequest {
        search: "KIOSK-A".into(),
        ..Default::default()
    };
    assert_eq!(
        names(&search(&mut admin, kiosks).await.unwrap()),
        ["north-kiosk-a", "south-kiosk-a"]
    );

    // A reset of a device without a passcode policy ends failed at once: it is now that
    // device's newest action, and the only device whose newest action failed.
    let target = &devices[1];
    let failed = admin
        .reset(&target.device_id, pb::CredentialScope::Unspecified)
        .await
        .unwrap();
    assert_eq!(failed.state, pb::ActionState::Failed as i32);
    let page = search(
        &mut admin,
        pb::SearchDevicesRequest {
            latest_action_state: pb::ActionState::Failed as i32,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(names(&page), ["north-byod-a"]);
    let latest = page.devices[0].latest_action.as_ref().unwrap();
    assert_eq!(latest.action_id, failed.action_id);
    assert_eq!(latest.error_code, pb::ErrorCode::NoPasscodePolicy as i32);
    let everyone = search(&mut admin, pb::SearchDevicesRequest::default())
        .await
        .unwrap();
    assert_eq!(
        everyone
            .devices
            .iter()
            .filter(|d| d.latest_action.is_some())
            .count(),
        1
    );
    server.stop().await;
}

#[tokio::test]
async fn a_group_scoped_principal_searches_and_holds_only_its_group() {
    let server = Embedded::start().await;
    let mut admin = server.admin().await;
    let devices = fleet(&mut admin, &server.address).await;
    let mut nora = admin
        .principal_in_group("nora", &["Help Desk Operator"], "north")
        .await;
    let page = search(&mut nora, pb::SearchDevicesRequest::default())
        .await
        .unwrap();
    assert_eq!(names(&page).len(), 5);
    assert!(names(&page).iter().all(|n| n.starts_with("north-")));
    let south = pb::SearchDevicesRequest {
        group: "south".into(),
        ..Default::default()
    };
    assert!(
        search(&mut nora, south).await.unwrap().devices.is_empty(),
        "another group's devices are not there to find"
    );

    let north_device = &devices[0].device_id;
    let south_device = &devices[5].device_id;
    let access = caller(&mut nora, north_device).await.unwrap();
    assert_eq!(access.name, "nora");
    assert_eq!(
        access.assignments,
        [pb::RoleAssignment {
            role: "Help Desk Operator".into(),
            group: "north".into(),
        }]
    );
    for held in ["RemoteTasks.ResetPasscode", "ManagedDevices.Update"] {
        assert!(
            access.device_permissions.iter().any(|p| p == held),
            "{held}"
        );
    }
    assert!(
        !access.permissions.iter().any(|p| p == "Audit.Read"),
        "a group-scoped assignment grants no tenant-wide permission"
    );
    let invisible = caller(&mut nora, south_device).await.unwrap_err();
    assert_eq!(invisible.code(), Code::NotFound);

    let everything = caller(&mut admin, "").await.unwrap();
    assert_eq!(everything.name, "admin");
    assert!(everything.permissions.iter().any(|p| p == "Roles.Manage"));
    assert!(everything.device_permissions.is_empty(), "no device asked");

    // Both calls are admin calls like any other: audited, and refused without a token.
    let audited = admin.audit("GetCaller").await;
    assert!(
        audited
            .iter()
            .any(|e| e.principal == "nora" && e.result == "NOT_FOUND")
    );
    assert!(admin.audit("SearchDevices").await.len() >= 2);
    let mut anonymous = Admin {
        token: None,
        ..admin.clone()
    };
    let refused = search(&mut anonymous, pb::SearchDevicesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    server.stop().await;
}
