//! Paging of every list RPC over real gRPC: each list walked a page at a time returns each item
//! exactly once in its order while items are inserted (and principals deleted) between pages;
//! sizes over the maximum are clamped; a negative size, a malformed token, a token of another
//! list or of other filters answer INVALID_ARGUMENT naming the field without echoing the token;
//! the CLI follows pages; the agent's harness pages its devices.

use crate::support::{Admin, Embedded, RawDevice, World};
use droidfleet_agent::device::Ownership;
use droidfleet_proto::v1 as pb;
use std::collections::HashSet;
use tonic::Code;

/// More pages than any walk below takes: a walk that needs more never ends, and fails.
const MAX_PAGES: usize = 50;

async fn device_page(
    admin: &mut Admin,
    group: &str,
    page_size: i32,
    page_token: &str,
) -> Result<pb::ListDevicesResponse, tonic::Status> {
    let request = admin.request(pb::ListDevicesRequest {
        group: group.to_string(),
        page_size,
        page_token: page_token.to_string(),
    });
    Ok(admin.client.list_devices(request).await?.into_inner())
}

async fn enroll(server: &Embedded, token: &str, name: &str) -> String {
    RawDevice::enroll(&server.address, token, pb::Ownership::Byod, name)
        .await
        .device_id
}

/// Asserts no item came twice and returns the items as a set.
fn once_each(seen: &[String]) -> HashSet<String> {
    let set: HashSet<String> = seen.iter().cloned().collect();
    assert_eq!(set.len(), seen.len(), "an item came twice: {seen:?}");
    set
}

#[tokio::test]
async fn each_list_returns_every_item_once_while_items_are_inserted_between_pages() {
    let server = Embedded::start().await;
    let mut admin = server.admin().await;
    let token = admin.enrollment_token(100, "").await;
    let mut originals = Vec::new();
    for i in 0..25 {
        originals.push(enroll(&server, &token, &format!("phone-{i:02}")).await);
    }

    // Devices, 10 a page, in enrollment order; two devices enroll after each page.
    let (mut seen, mut order, mut page_token, mut pages) =
        (Vec::new(), Vec::new(), String::new(), 0);
    for _ in 0..MAX_PAGES {
        let page = device_page(&mut admin, "", 10, &page_token).await.unwrap();
        pages += 1;
        assert!(page.devices.len() <= 10);
        for device in &page.devices {
            seen.push(device.device_id.clone());
            order.push((device.enrolled_at_ms, device.device_id.clone()));
        }
        page_token = page.next_page_token;
        if page_token.is_empty() {
            break;
        }
        for n in 0..2 {
            enroll(&server, &token, &format!("late-{pages}-{n}")).await;
        }
    }
    assert!(page_token.is_empty(), "the walk ended on a last page");
    assert!(
        pages >= 3,
        "25 devices and more take at least three pages of 10"
    );
    let seen = once_each(&seen);
    assert!(
        originals.iter().all(|id| seen.contains(id)),
        "every device enrolled before the walk"
    );
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "one walk through the enrollment order");

    // Actions of one device, 5 a page, newest first; a new action starts after each page (it is
    // newer than every page's position, so the walk does not see it).
    let device = &originals[0];
    let mut created = Vec::new();
    for _ in 0..12 {
        // Without a passcode policy a reset ends failed at once: an action row all the same.
        let action = admin
            .reset(device, pb::CredentialScope::Unspecified)
            .await
            .unwrap();
        created.push(action.action_id);
    }
    let (mut walked, mut page_token) = (Vec::new(), String::new());
    for _ in 0..MAX_PAGES {
        let request = admin.request(pb::ListActionsRequest {
            device_id: device.clone(),
            page_size: 5,
            page_token: page_token.clone(),
        });
        let page = admin
            .client
            .list_actions(request)
            .await
            .unwrap()
            .into_inner();
        assert!(page.actions.len() <= 5);
        walked.extend(page.actions.iter().map(|a| a.action_id.clone()));
        page_token = page.next_page_token;
        if page_token.is_empty() {
            break;
        }
        admin
            .reset(device, pb::CredentialScope::Unspecified)
            .await
            .unwrap();
    }
    created.reverse();
    assert_eq!(
        walked, created,
        "the twelve actions, newest first, each once"
    );

    // The audit log, filtered to ListDevices, 2 a page: listing devices between pages appends
    // newer events, which the walk does not see.
    for _ in 0..3 {
        device_page(&mut admin, "", 1, "").await.unwrap();
    }
    let every = audit_page(&mut admin, 0, "").await.unwrap().events;
    let (mut walked, mut page_token) = (Vec::new(), String::new());
    for _ in 0..MAX_PAGES {
        let page = audit_page(&mut admin, 2, &page_token).await.unwrap();
        assert!(page.events.len() <= 2);
        walked.extend(page.events.iter().map(|e| e.id));
        page_token = page.next_page_token;
        if page_token.is_empty() {
            break;
        }
        device_page(&mut admin, "", 1, "").await.unwrap();
    }
    let expected: Vec<u64> = every.iter().map(|e| e.id).collect();
    assert!(
        expected.len() >= 6,
        "the walk's pages and three more: {expected:?}"
    );
    assert_eq!(walked, expected, "the same events, newest first, each once");

    // Principals, 3 a page, in creation order: one is created and an already listed one deleted
    // between pages.
    for i in 0..7 {
        admin
            .principal(&format!("ops-{i}"), &["Read Only Operator"])
            .await;
    }
    let before: Vec<String> = principal_page(&mut admin, 0, "")
        .await
        .unwrap()
        .principals
        .into_iter()
        .map(|p| p.name)
        .collect();
    let (mut walked, mut page_token, mut added) = (Vec::new(), String::new(), 0);
    for _ in 0..MAX_PAGES {
        let page = principal_page(&mut admin, 3, &page_token).await.unwrap();
        assert!(page.principals.len() <= 3);
        walked.extend(page.principals.iter().map(|p| p.name.clone()));
        page_token = page.next_page_token;
        if page_token.is_empty() {
            break;
        }
        added += 1;
        admin
            .principal(&format!("late-{added}"), &["Read Only Operator"])
            .await;
        let deleted = walked.iter().rev().find(|n| n.starts_with("ops-")).cloned();
        if let Some(name) = deleted {
            let request = admin.request(pb::DeletePrincipalRequest { name });
            admin.client.delete_principal(request).await.unwrap();
        }
    }
    once_each(&walked);
    assert_eq!(
        walked[..before.len()],
        before[..],
        "every principal listed before the walk, in creation order, then the new ones"
    );

    // Roles, 2 a page, with a custom role created between pages.
    let before = role_names(&mut admin, 0, "").await.0;
    let (mut walked, mut page_token, mut added) = (Vec::new(), String::new(), 0);
    for _ in 0..MAX_PAGES {
        let (names, next) = role_names(&mut admin, 2, &page_token).await;
        assert!(names.len() <= 2);
        walked.extend(names);
        page_token = next;
        if page_token.is_empty() {
            break;
        }
        added += 1;
        let request = admin.request(pb::Role {
            name: format!("Custom {added}"),
            permissions: vec!["ManagedDevices.Read".into()],
            built_in: false,
        });
        admin.client.create_role(request).await.unwrap();
    }
    once_each(&walked);
    assert!(before.len() >= 4, "{before:?}");
    assert_eq!(walked[..before.len()], before[..]);
    assert_eq!(walked.len(), before.len() + added, "the new roles follow");
    server.stop().await;
}

async fn audit_page(
    admin: &mut Admin,
    page_size: i32,
    page_token: &str,
) -> Result<pb::ListAuditEventsResponse, tonic::Status> {
    let request = admin.request(pb::ListAuditEventsRequest {
        operation: "ListDevices".into(),
        page_size,
        page_token: page_token.to_string(),
        ..Default::default()
    });
    Ok(admin.client.list_audit_events(request).await?.into_inner())
}

async fn principal_page(
    admin: &mut Admin,
    page_size: i32,
    page_token: &str,
) -> Result<pb::ListPrincipalsResponse, tonic::Status> {
    let request = admin.request(pb::ListPrincipalsRequest {
        page_size,
        page_token: page_token.to_string(),
    });
    Ok(admin.client.list_principals(request).await?.into_inner())
}

async fn role_names(admin: &mut Admin, page_size: i32, page_token: &str) -> (Vec<String>, String) {
    let request = admin.request(pb::ListRolesRequest {
        page_size,
        page_token: page_token.to_string(),
    });
    let page = admin.client.list_roles(request).await.unwrap().into_inner();
    (
        page.roles.into_iter().map(|r| r.name).collect(),
        page.next_page_token,
    )
}

fn assert_invalid(result: Result<impl std::fmt::Debug, tonic::Status>, field: &str, text: &str) {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains(field), "{status:?}");
    assert!(status.message().contains(text), "{status:?}");
}

#[tokio::test]
async fn sizes_are_clamped_and_bad_sizes_and_foreign_tokens_are_refused() {
    let server = Embedded::start().await;
    let mut admin = server.admin().await;
    let north = admin.enrollment_token(3, "north").await;
    for i in 0..3 {
        RawDevice::enroll(
            &server.address,
            &north,
            pb::Ownership::Cosu,
            &format!("kiosk-{i}"),
        )
        .await;
    }

    // Over the maximum is clamped, not refused.
    let all = device_page(&mut admin, "", i32::MAX, "").await.unwrap();
    assert_eq!(all.devices.len(), 3);
    assert!(all.next_page_token.is_empty());
    let roles = role_names(&mut admin, i32::MAX, "").await;
    assert!(roles.1.is_empty(), "every role on one clamped page");

    assert_invalid(
        device_page(&mut admin, "", -1, "").await,
        "page_size",
        "negative",
    );
    assert_invalid(
        principal_page(&mut admin, -5, "").await,
        "page_size",
        "negative",
    );
    assert_invalid(
        audit_page(&mut admin, -1, "").await,
        "page_size",
        "negative",
    );

    let page = device_page(&mut admin, "north", 1, "").await.unwrap();
    let token = page.next_page_token;
    assert!(!token.is_empty());
    // The same token with its own filter goes on; with another group's, or in another list,
    // it is refused, and the message never repeats it.
    assert_eq!(
        device_page(&mut admin, "north", 1, &token)
            .await
            .unwrap()
            .devices
            .len(),
        1
    );
    let other_filter = device_page(&mut admin, "south", 1, &token).await;
    assert!(
        !other_filter
            .as_ref()
            .unwrap_err()
            .message()
            .contains(&token)
    );
    assert_invalid(other_filter, "page_token", "other filters");
    assert_invalid(
        principal_page(&mut admin, 1, &token).await,
        "page_token",
        "a page token of ListDevices, not of ListPrincipals",
    );
    let search = admin.request(pb::SearchDevicesRequest {
        page_size: 1,
        page_token: token.clone(),
        ..Default::default()
    });
    assert_invalid(
        admin.client.search_devices(search).await,
        "page_token",
        "not of SearchDevices",
    );
    let secret = server.admin_token().to_string();
    let garbage = device_page(&mut admin, "", 1, &secret).await;
    assert!(!garbage.as_ref().unwrap_err().message().contains(&secret));
    assert_invalid(garbage, "page_token", "not a page token of ListDevices");

    // SearchDevices' tokens are bound to its filters too; its page size is clamped the same way.
    let search = |admin: &Admin, page_size: i32, page_token: &str, search: &str| {
        admin.request(pb::SearchDevicesRequest {
            page_size,
            page_token: page_token.to_string(),
            search: search.to_string(),
            ..Default::default()
        })
    };
    let first = admin
        .client
        .search_devices(search(&admin, 1, "", "kiosk"))
        .await
        .unwrap()
        .into_inner();
    let next = search(&admin, 1, &first.next_page_token, "kiosk");
    assert_eq!(
        admin
            .client
            .search_devices(next)
            .await
            .unwrap()
            .into_inner()
            .devices
            .len(),
        1
    );
    let other = search(&admin, 1, &first.next_page_token, "phone");
    assert_invalid(
        admin.client.search_devices(other).await,
        "page_token",
        "other filters",
    );
    let clamped = search(&admin, 1_000_000, "", "");
    assert_eq!(
        admin
            .client
            .search_devices(clamped)
            .await
            .unwrap()
            .into_inner()
            .devices
            .len(),
        3
    );
    let negative = search(&admin, -1, "", "");
    assert_invalid(
        admin.client.search_devices(negative).await,
        "page_size",
        "negative",
    );
    server.stop().await;
}

#[tokio::test]
async fn the_cli_follows_pages_and_prints_every_device_once() {
    let server = Embedded::start().await;
    let mut admin = server.admin().await;
    let token = admin.enrollment_token(12, "").await;
    let mut enrolled = Vec::new();
    for i in 0..12 {
        enrolled.push(enroll(&server, &token, &format!("tablet-{i:02}")).await);
    }
    // A child process awaited, not waited for: the server answers it on this test's runtime.
    let cli = async |args: &[&str]| {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_droidfleet"))
            .args(["admin", "--server", &server.address, "--page-size", "5"])
            .args(args)
            .env("DROIDFLEET_TOKEN", server.admin_token())
            .env_remove("DROIDFLEET_TOKEN_FILE")
            .output()
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let listing = cli(&["devices"]).await;
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 12, "{listing}");
    for id in &enrolled {
        assert_eq!(
            lines
                .iter()
                .filter(|line| line.contains(id.as_str()))
                .count(),
            1,
            "{id} once in {listing}"
        );
    }
    let listings = audit_page(&mut admin, 0, "").await.unwrap().events;
    assert_eq!(listings.len(), 3, "12 devices in pages of 5: {listings:?}");

    let json: serde_json::Value =
        serde_json::from_str(&cli(&["--output", "json", "devices"]).await).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 12);
    server.stop().await;
}

#[tokio::test]
async fn the_harness_pages_its_devices_in_name_order() {
    let mut world = World::start(&[
        ("d-phone", Ownership::Byod),
        ("a-phone", Ownership::Byod),
        ("c-kiosk", Ownership::Cosu),
        ("b-kiosk", Ownership::Cosu),
        ("e-tablet", Ownership::Cobo),
    ])
    .await;
    let (mut names, mut page_token) = (Vec::new(), String::new());
    for _ in 0..MAX_PAGES {
        let page = world
            .harness
            .list_devices(pb::HarnessListDevicesRequest {
                page_size: 2,
                page_token: page_token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.devices.len() <= 2);
        names.extend(page.devices.into_iter().map(|d| d.name));
        page_token = page.next_page_token;
        if page_token.is_empty() {
            break;
        }
    }
    assert_eq!(
        names,
        ["a-phone", "b-kiosk", "c-kiosk", "d-phone", "e-tablet"]
    );
    for (page_size, page_token, field) in [(-1, "", "page_size"), (2, "%%", "page_token")] {
        let status = world
            .harness
            .list_devices(pb::HarnessListDevicesRequest {
                page_size,
                page_token: page_token.to_string(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(field), "{status:?}");
    }
}
