//! RBAC scoped to device groups, over real gRPC: a device joins the group of its enrollment
//! token; a role assignment holds for every group or for one; an admin scoped to one group sees
//! and acts on that group's devices only, and a device of another group answers NOT_FOUND exactly
//! like a device that does not exist. Roles, assignments and principals are managed through the
//! admin API and the CLI.

use crate::support::{Admin, RawDevice, World, pin_policy};
use droidfleet_proto::v1 as pb;
use pb::CredentialScope::{Device as DEVICE, Unspecified as UNSPECIFIED};

struct Fleet {
    north: RawDevice,
    south: RawDevice,
    north_action: pb::Action,
    south_action: pb::Action,
}

/// Two devices in groups "north" and "south", each with a policy and a pending remote lock.
async fn two_groups(world: &mut World) -> Fleet {
    let north_token = world.admin.enrollment_token(1, "north").await;
    let south_token = world.admin.enrollment_token(1, "south").await;
    let north = RawDevice::enroll(&world.address, &north_token, pb::Ownership::Cosu, "n-1").await;
    let south = RawDevice::enroll(&world.address, &south_token, pb::Ownership::Cosu, "s-1").await;
    let mut actions = Vec::new();
    for device in [&north, &south] {
        world
            .admin
            .assign_policy(&device.device_id, DEVICE, pin_policy(6))
            .await;
        actions.push(
            world
                .admin
                .remote_lock(&device.device_id, UNSPECIFIED)
                .await
                .unwrap(),
        );
    }
    let south_action = actions.pop().unwrap();
    let north_action = actions.pop().unwrap();
    Fleet {
        north,
        south,
        north_action,
        south_action,
    }
}

fn assert_not_found(result: Result<impl std::fmt::Debug, tonic::Status>, id: &str) {
    let status = result.unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound, "{}", status.message());
    assert!(status.message().contains(id), "{}", status.message());
}

#[tokio::test]
async fn an_admin_scoped_to_a_group_sees_and_acts_on_that_group_only() {
    let mut world = World::start(&[]).await;
    let fleet = two_groups(&mut world).await;
    let devices = world.admin.devices().await.unwrap();
    assert_eq!(devices.len(), 2, "the tenant admin sees every group");
    let group_of = |id: &str| {
        devices
            .iter()
            .find(|d| d.device_id == id)
            .unwrap()
            .group
            .clone()
    };
    assert_eq!(group_of(&fleet.north.device_id), "north");
    assert_eq!(group_of(&fleet.south.device_id), "south");

    let mut nora = world
        .admin
        .principal_in_group("nora", &["Help Desk Operator"], "north")
        .await;
    let visible = nora.devices().await.unwrap();
    assert_eq!(
        visible
            .iter()
            .map(|d| d.device_id.as_str())
            .collect::<Vec<_>>(),
        [fleet.north.device_id.as_str()]
    );
    let request = nora.request(pb::ListDevicesRequest {
        group: "south".into(),
        ..Default::default()
    });
    assert!(
        nora.client
            .list_devices(request)
            .await
            .unwrap()
            .into_inner()
            .devices
            .is_empty()
    );

    // Her own group: everything Help Desk Operator allows.
    let lock = nora
        .remote_lock(&fleet.north.device_id, UNSPECIFIED)
        .await
        .unwrap();
    assert_eq!(lock.requested_by, "nora");
    nora.cancel(&lock.action_id).await.unwrap();
    let history = nora.actions(&fleet.north.device_id).await.unwrap();
    assert_eq!(history.len(), 2);

    // The other group's device, and its action, do not exist for her; an unknown id answers the
    // same, so she cannot tell which is which.
    let south = fleet.south.device_id.as_str();
    let south_action = fleet.south_action.action_id.as_str();
    let get = |admin: &mut Admin, id: &str| {
        let request = admin.request(pb::GetDeviceRequest {
            device_id: id.to_string(),
        });
        let mut client = admin.client.clone();
        async move { client.get_device(request).await.map(|r| r.into_inner()) }
    };
    let hidden = get(&mut nora, south).await.unwrap_err();
    let unknown = get(&mut nora, "dev_unknown").await.unwrap_err();
    assert_eq!(hidden.code(), unknown.code());
    assert_eq!(
        hidden.message().replace(south, "ID"),
        unknown.message().replace("dev_unknown", "ID"),
        "existence does not leak through the message"
    );
    assert_not_found(get(&mut nora, south).await, south);
    assert_not_found(nora.reset(south, UNSPECIFIED).await, south);
    assert_not_found(nora.remote_lock(south, UNSPECIFIED).await, south);
    assert_not_found(nora.actions(south).await, south);
    let request = nora.request(pb::GetDeviceRequest {
        device_id: south.to_string(),
    });
    assert_not_found(nora.client.watch_device(request).await.map(|_| ()), south);
    let request = nora.request(pb::GetActionRequest {
        action_id: south_action.to_string(),
        ..Default::default()
    });
    assert_not_found(
        nora.client
            .get_action(request)
            .await
            .map(|r| r.into_inner()),
        south_action,
    );
    let request = nora.request(pb::GetActionRequest {
        action_id: south_action.to_string(),
        ..Default::default()
    });
    assert_not_found(
        nora.client.watch_action(request).await.map(|_| ()),
        south_action,
    );
    assert_not_found(nora.cancel(south_action).await, south_action);
    assert_not_found(nora.reveal(south_action).await, south_action);
    let request = nora.request(pb::ListActionsRequest::default());
    let all = nora
        .client
        .list_actions(request)
        .await
        .unwrap()
        .into_inner();
    assert!(
        all.actions
            .iter()
            .all(|a| a.device_id == fleet.north.device_id),
        "ListActions without a device lists her group's actions only"
    );
    assert!(
        all.actions
            .iter()
            .any(|a| a.action_id == fleet.north_action.action_id)
    );
    // Nothing happened to the hidden device.
    let south_now = world.admin.action(south_action).await;
    assert_eq!(south_now.state, pb::ActionState::Pending as i32);

    // Audit.Read is tenant-wide: a role scoped to a group does not grant it.
    let request = nora.request(pb::ListAuditEventsRequest::default());
    let denied = nora.client.list_audit_events(request).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    assert!(denied.message().contains("Audit.Read"));
    let events = world.admin.audit("GetDevice").await;
    assert!(
        events
            .iter()
            .any(|e| e.principal == "nora" && e.result == "NOT_FOUND" && e.device_id == south),
        "the tenant's audit still shows what she tried: {events:#?}"
    );
}

#[tokio::test]
async fn enrollment_tokens_and_grants_follow_the_group() {
    let mut world = World::start(&[]).await;
    let mut sam = world
        .admin
        .principal_in_group("sam", &["School Administrator"], "north")
        .await;
    let token = |group: &str| pb::CreateEnrollmentTokenRequest {
        max_uses: 1,
        ttl_seconds: 60,
        group: group.into(),
    };
    let request = sam.request(token("north"));
    let created = sam
        .client
        .create_enrollment_token(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.group, "north");
    for group in ["south", ""] {
        let request = sam.request(token(group));
        let denied = sam
            .client
            .create_enrollment_token(request)
            .await
            .unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{group:?}");
    }
    let device = RawDevice::enroll(
        &world.address,
        &created.enrollment_token,
        pb::Ownership::Cosu,
        "n",
    )
    .await;
    assert_eq!(sam.devices().await.unwrap()[0].device_id, device.device_id);

    // A role for every group plus one for a group add up; taking the group one away takes its
    // permissions away at once.
    let request = world.admin.request(pb::Role {
        name: "Lockers".into(),
        permissions: vec!["RemoteTasks.RemoteLock".into()],
        built_in: false,
    });
    world.admin.client.create_role(request).await.unwrap();
    let mut lee = world.admin.principal("lee", &["Read Only Operator"]).await;
    world
        .admin
        .assign_policy(&device.device_id, DEVICE, pin_policy(6))
        .await;
    let denied = lee
        .remote_lock(&device.device_id, UNSPECIFIED)
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let assign = |role: &str, group: &str| pb::RoleAssignmentRequest {
        principal: "lee".into(),
        role: role.into(),
        group: group.into(),
    };
    let request = world.admin.request(assign("Lockers", "south"));
    world.admin.client.assign_role(request).await.unwrap();
    let denied = lee
        .remote_lock(&device.device_id, UNSPECIFIED)
        .await
        .unwrap_err();
    assert_eq!(
        denied.code(),
        tonic::Code::PermissionDenied,
        "visible (read for every group), but the lock right is for another group"
    );
    let request = world.admin.request(assign("Lockers", "north"));
    let principal = world
        .admin
        .client
        .assign_role(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(principal.assignments.len(), 3);
    assert!(
        principal
            .assignments
            .iter()
            .any(|a| a.role == "Lockers" && a.group == "north")
    );
    lee.remote_lock(&device.device_id, UNSPECIFIED)
        .await
        .unwrap();
    let request = world.admin.request(assign("Lockers", "north"));
    world.admin.client.unassign_role(request).await.unwrap();
    let denied = lee
        .remote_lock(&device.device_id, UNSPECIFIED)
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
}

#[tokio::test]
async fn roles_and_principals_are_managed_through_the_api_without_locking_anyone_out() {
    let mut world = World::start(&[]).await;
    let role = |name: &str, permissions: &[&str]| pb::Role {
        name: name.into(),
        permissions: permissions.iter().map(|p| p.to_string()).collect(),
        built_in: false,
    };
    let request = world.admin.request(role("Auditors", &["Audit.Read"]));
    world.admin.client.create_role(request).await.unwrap();
    let request = world
        .admin
        .request(role("Auditors", &["Audit.Read", "ManagedDevices.Read"]));
    let updated = world
        .admin
        .client
        .update_role(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.permissions.len(), 2);
    let request = world
        .admin
        .request(role("Help Desk Operator", &["Audit.Read"]));
    let built_in = world.admin.client.update_role(request).await.unwrap_err();
    assert_eq!(built_in.code(), tonic::Code::FailedPrecondition);

    let mut ada = world.admin.principal("ada", &["Auditors"]).await;
    assert!(ada.devices().await.is_ok());
    let request = world.admin.request(pb::DeleteRoleRequest {
        name: "Auditors".into(),
    });
    let in_use = world.admin.client.delete_role(request).await.unwrap_err();
    assert_eq!(in_use.code(), tonic::Code::FailedPrecondition);

    let request = world
        .admin
        .request(pb::DeletePrincipalRequest { name: "ada".into() });
    world.admin.client.delete_principal(request).await.unwrap();
    let gone = ada.devices().await.unwrap_err();
    assert_eq!(
        gone.code(),
        tonic::Code::Unauthenticated,
        "her token died with her"
    );
    let request = world.admin.request(pb::DeleteRoleRequest {
        name: "Auditors".into(),
    });
    world.admin.client.delete_role(request).await.unwrap();

    // The bootstrap admin is the only one who can manage roles: it cannot lose that.
    let request = world.admin.request(pb::RoleAssignmentRequest {
        principal: "admin".into(),
        role: "Administrator".into(),
        group: String::new(),
    });
    let lockout = world.admin.client.unassign_role(request).await.unwrap_err();
    assert_eq!(lockout.code(), tonic::Code::FailedPrecondition);
    assert!(
        lockout.message().contains("Roles.Manage"),
        "{}",
        lockout.message()
    );
    let request = world.admin.request(pb::DeletePrincipalRequest {
        name: "admin".into(),
    });
    let itself = world
        .admin
        .client
        .delete_principal(request)
        .await
        .unwrap_err();
    assert_eq!(itself.code(), tonic::Code::FailedPrecondition);

    let request = world.admin.request(pb::ListPrincipalsRequest::default());
    let principals = world
        .admin
        .client
        .list_principals(request)
        .await
        .unwrap()
        .into_inner()
        .principals;
    assert_eq!(
        principals
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        ["admin"]
    );
    for operation in [
        "CreateRole",
        "UpdateRole",
        "DeleteRole",
        "DeletePrincipal",
        "UnassignRole",
    ] {
        assert!(
            !world.admin.audit(operation).await.is_empty(),
            "{operation} is audited"
        );
    }
}

/// Runs `droidfleet admin --output json …` as the bootstrap admin.
async fn cli(world: &World, args: &[&str]) -> serde_json::Value {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_droidfleet"))
        .args(["admin", "--server", &world.address, "--output", "json"])
        .args(args)
        .env("DROIDFLEET_TOKEN", world.admin.token.as_deref().unwrap())
        .env_remove("DROIDFLEET_TOKEN_FILE")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "droidfleet admin {args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout).unwrap()
}

#[tokio::test]
async fn the_cli_manages_groups_roles_assignments_and_principals() {
    let mut world = World::start(&[]).await;
    let token = cli(
        &world,
        &["create-enrollment-token", "--uses", "1", "--group", "east"],
    )
    .await;
    assert_eq!(token["group"], "east");
    let device = RawDevice::enroll(
        &world.address,
        token["enrollment_token"].as_str().unwrap(),
        pb::Ownership::Cosu,
        "e-1",
    )
    .await;
    cli(
        &world,
        &[
            "create-role",
            "Viewers",
            "--permission",
            "ManagedDevices.Read",
        ],
    )
    .await;
    let role = cli(
        &world,
        &[
            "update-role",
            "Viewers",
            "--permission",
            "ManagedDevices.Read",
            "--permission",
            "Audit.Read",
        ],
    )
    .await;
    assert_eq!(role["permissions"].as_array().unwrap().len(), 2);
    let created = cli(
        &world,
        &[
            "create-principal",
            "vic",
            "--role",
            "Viewers",
            "--group",
            "west",
        ],
    )
    .await;
    let mut vic = Admin::connect(
        &world.address,
        Some(created["bearer_token"].as_str().unwrap().to_string()),
    )
    .await;
    assert!(
        vic.devices().await.unwrap().is_empty(),
        "west has no devices"
    );
    let principal = cli(
        &world,
        &["assign-role", "vic", "Viewers", "--group", "east"],
    )
    .await;
    assert_eq!(principal["assignments"].as_array().unwrap().len(), 2);
    assert_eq!(vic.devices().await.unwrap()[0].device_id, device.device_id);
    let devices = cli(&world, &["devices", "--group", "east"]).await;
    assert_eq!(devices[0]["group"], "east");
    cli(
        &world,
        &["unassign-role", "vic", "Viewers", "--group", "east"],
    )
    .await;
    assert!(vic.devices().await.unwrap().is_empty());
    let principals = cli(&world, &["principals"]).await;
    let vic_entry = principals
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "vic")
        .unwrap();
    assert_eq!(vic_entry["assignments"][0]["group"], "west");
    cli(&world, &["delete-principal", "vic"]).await;
    cli(&world, &["delete-role", "Viewers"]).await;
    let roles = cli(&world, &["roles"]).await;
    assert!(
        roles
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["name"] != "Viewers")
    );
    let request = world.admin.request(pb::ListPrincipalsRequest::default());
    let left = world
        .admin
        .client
        .list_principals(request)
        .await
        .unwrap()
        .into_inner()
        .principals;
    assert_eq!(left.len(), 1);
}
