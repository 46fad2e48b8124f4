//! `SqliteStore`'s roles, principals and role assignments (never leaving nobody able to manage
//! roles), and the audit log's filters.

use super::*;

#[tokio::test]
async fn roles_and_principals() {
    let f = fixture().await;
    let s = &f.store;
    let custom = Role {
        name: "Reset Only".into(),
        permissions: vec![
            Permission::RemoteTasksResetPasscode,
            Permission::ManagedDevicesRead,
            Permission::ManagedDevicesUpdate,
        ],
        built_in: false,
    };
    s.create_role(&custom).await.unwrap();
    assert!(matches!(
        s.create_role(&custom).await,
        Err(StoreError::AlreadyExists { kind: "role", .. })
    ));
    let roles = s.list_roles(&PageQuery::first(1000)).await.unwrap().items;
    assert_eq!(roles.len(), 5);
    assert_eq!(roles.last(), Some(&custom));

    let alice = s
        .create_principal(
            "alice",
            admin_token(1, T0),
            &[
                everywhere(rbac::HELP_DESK_OPERATOR),
                in_group("Reset Only", "north"),
                in_group("Reset Only", "north"),
                everywhere("Reset Only"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        alice.assignments,
        [
            everywhere(rbac::HELP_DESK_OPERATOR),
            in_group("Reset Only", "north"),
            everywhere("Reset Only")
        ]
    );
    assert_eq!(alice.role_names(), [rbac::HELP_DESK_OPERATOR, "Reset Only"]);
    s.create_principal("bob", admin_token(2, T0 + 1), &[])
        .await
        .unwrap();
    assert!(matches!(
        s.create_principal("alice", admin_token(3, T0), &[]).await,
        Err(StoreError::AlreadyExists {
            kind: "principal",
            ..
        })
    ));
    match s.create_principal("carol", admin_token(1, T0), &[]).await {
        Err(StoreError::AlreadyExists { name, .. }) => assert!(name.is_empty()),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        s.create_principal("dave", admin_token(4, T0), &[everywhere("Nope")])
            .await,
        Err(StoreError::NotFound { kind: "role", name }) if name == "Nope"
    ));
    // Nothing of a refused principal is left behind.
    assert!(s.principal_by_token(hash(4)).await.unwrap().is_none());

    let principals = s
        .list_principals(&PageQuery::first(1000))
        .await
        .unwrap()
        .items;
    assert_eq!(principals.len(), 2);
    assert_eq!(principals[0], alice);
    assert_eq!(principals[1].name, "bob");
    assert!(principals[1].assignments.is_empty());

    let authenticated = s.principal_by_token(hash(1)).await.unwrap().unwrap();
    assert_eq!(authenticated.name, "alice");
    let help_desk = rbac::built_in_roles()
        .into_iter()
        .find(|r| r.name == rbac::HELP_DESK_OPERATOR)
        .unwrap();
    assert_eq!(
        authenticated.grants,
        rbac::Grants(vec![
            rbac::Grant {
                role: help_desk,
                group: None
            },
            rbac::Grant {
                role: custom.clone(),
                group: Some("north".into())
            },
            rbac::Grant {
                role: custom,
                group: None
            },
        ])
    );
    assert!(
        authenticated
            .grants
            .authorize_device("south", &rbac::RESET_PASSCODE)
            .is_ok()
    );
    assert!(s.principal_by_token(hash(9)).await.unwrap().is_none());
}

#[tokio::test]
async fn assignments_change_and_nobody_can_lock_roles_management_out() {
    let f = fixture().await;
    let s = &f.store;
    s.create_principal(
        "root",
        admin_token(1, T0),
        &[everywhere(rbac::ADMINISTRATOR)],
    )
    .await
    .unwrap();
    s.create_principal("nora", admin_token(2, T0), &[])
        .await
        .unwrap();
    let nora = s
        .assign_role("nora", &in_group(rbac::HELP_DESK_OPERATOR, "north"))
        .await
        .unwrap();
    assert_eq!(
        nora.assignments,
        [in_group(rbac::HELP_DESK_OPERATOR, "north")]
    );
    // Assigning again changes nothing; the same role for another group is another assignment.
    s.assign_role("nora", &in_group(rbac::HELP_DESK_OPERATOR, "north"))
        .await
        .unwrap();
    let nora = s
        .assign_role("nora", &everywhere(rbac::HELP_DESK_OPERATOR))
        .await
        .unwrap();
    assert_eq!(nora.assignments.len(), 2);
    assert!(matches!(
        s.assign_role("ghost", &everywhere(rbac::ADMINISTRATOR))
            .await,
        Err(StoreError::NotFound {
            kind: "principal",
            ..
        })
    ));
    assert!(matches!(
        s.assign_role("nora", &everywhere("Nope")).await,
        Err(StoreError::NotFound { kind: "role", .. })
    ));
    let nora = s
        .unassign_role("nora", &everywhere(rbac::HELP_DESK_OPERATOR))
        .await
        .unwrap();
    assert_eq!(
        nora.assignments,
        [in_group(rbac::HELP_DESK_OPERATOR, "north")]
    );
    assert!(matches!(
        s.unassign_role("nora", &everywhere(rbac::HELP_DESK_OPERATOR))
            .await,
        Err(StoreError::NotFound {
            kind: "role assignment",
            ..
        })
    ));

    // The last holder of Roles.Manage for every group cannot lose it, by any route.
    assert!(matches!(
        s.unassign_role("root", &everywhere(rbac::ADMINISTRATOR))
            .await,
        Err(StoreError::WouldLockOut)
    ));
    assert!(matches!(
        s.delete_principal("root").await,
        Err(StoreError::WouldLockOut)
    ));
    assert!(s.principal_by_token(hash(1)).await.unwrap().is_some());
    let managers = Role {
        name: "Managers".into(),
        permissions: vec![Permission::RolesManage],
        built_in: false,
    };
    s.create_role(&managers).await.unwrap();
    s.assign_role("nora", &everywhere("Managers"))
        .await
        .unwrap();
    // A group-scoped Roles.Manage does not count.
    s.create_principal("gina", admin_token(3, T0), &[in_group("Managers", "north")])
        .await
        .unwrap();
    s.delete_principal("root").await.unwrap();
    assert!(s.principal_by_token(hash(1)).await.unwrap().is_none());
    let demoted = Role {
        permissions: vec![Permission::AuditRead],
        ..managers.clone()
    };
    assert!(matches!(
        s.update_role(&demoted).await,
        Err(StoreError::WouldLockOut)
    ));
    assert!(matches!(
        s.delete_role("Managers").await,
        Err(StoreError::RoleInUse(_))
    ));
    assert!(matches!(
        s.update_role(&rbac::built_in_roles()[0]).await,
        Err(StoreError::BuiltInRole(_))
    ));
    assert!(matches!(
        s.delete_role(rbac::READ_ONLY_OPERATOR).await,
        Err(StoreError::BuiltInRole(_))
    ));
    let audit_only = Role {
        name: "Audit only".into(),
        permissions: vec![Permission::AuditRead],
        built_in: false,
    };
    s.create_role(&audit_only).await.unwrap();
    let updated = Role {
        permissions: vec![Permission::AuditRead, Permission::ManagedDevicesRead],
        ..audit_only
    };
    s.update_role(&updated).await.unwrap();
    assert!(
        s.list_roles(&PageQuery::first(1000))
            .await
            .unwrap()
            .items
            .contains(&updated)
    );
    s.delete_role("Audit only").await.unwrap();
    assert!(matches!(
        s.delete_role("Audit only").await,
        Err(StoreError::NotFound { kind: "role", .. })
    ));
}

#[tokio::test]
async fn audit_events_are_filtered_newest_first() {
    let f = fixture().await;
    let s = &f.store;
    let event = |at: Millis, principal: &str, operation: &str, device: Option<&str>| AuditEvent {
        id: 0,
        at,
        principal: principal.into(),
        operation: operation.into(),
        device_id: device.map(str::to_string),
        action_id: device.map(|d| format!("act_{d}_{at}")),
        result: "ok".into(),
        detail: format!("event at {at}"),
    };
    s.append_audit(event(T0, "alice", "ResetPasscode", Some("dev_a")))
        .await
        .unwrap();
    s.append_audit(event(T0 + 1, "bob", "RevealPasscode", Some("dev_a")))
        .await
        .unwrap();
    s.append_audit(event(T0 + 2, "alice", "ListDevices", None))
        .await
        .unwrap();
    s.append_audit(event(T0 + 3, "alice", "ResetPasscode", Some("dev_b")))
        .await
        .unwrap();

    let ats = |filter: AuditFilter| {
        let s = s.clone();
        async move {
            s.list_audit(&filter, &PageQuery::first(1000))
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|e| e.at - T0)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(ats(AuditFilter::default()).await, [3, 2, 1, 0]);
    let by_device = AuditFilter {
        device_id: Some("dev_a".into()),
        ..AuditFilter::default()
    };
    assert_eq!(ats(by_device).await, [1, 0]);
    let by_principal = AuditFilter {
        principal: Some("alice".into()),
        ..AuditFilter::default()
    };
    assert_eq!(ats(by_principal).await, [3, 2, 0]);
    let by_operation = AuditFilter {
        operation: Some("ResetPasscode".into()),
        principal: Some("alice".into()),
        ..AuditFilter::default()
    };
    assert_eq!(ats(by_operation).await, [3, 0]);
    let window = AuditFilter {
        since: Some(T0 + 1),
        until: Some(T0 + 2),
        ..AuditFilter::default()
    };
    assert_eq!(ats(window).await, [2, 1]);
    let limited = s
        .list_audit(&AuditFilter::default(), &PageQuery::first(2))
        .await
        .unwrap();
    let limited: Vec<Millis> = limited.items.iter().map(|e| e.at - T0).collect();
    assert_eq!(limited, [3, 2]);

    let events = s
        .list_audit(&AuditFilter::default(), &PageQuery::first(1000))
        .await
        .unwrap()
        .items;
    let oldest = events.last().unwrap();
    assert_eq!(oldest.principal, "alice");
    assert_eq!(oldest.operation, "ResetPasscode");
    assert_eq!(oldest.device_id.as_deref(), Some("dev_a"));
    assert_eq!(
        oldest.action_id.as_deref(),
        Some(&*format!("act_dev_a_{T0}"))
    );
    assert_eq!(oldest.result, "ok");
    assert_eq!(oldest.detail, format!("event at {T0}"));
    assert!(events.windows(2).all(|w| w[0].id > w[1].id));
    assert_eq!(events[1].device_id, None);
}

#[tokio::test]
async fn admin_tokens_rotate_with_a_grace_period_revoke_and_are_recovered() {
    let f = fixture().await;
    let s = &f.store;
    // First start: nobody can manage roles, so the bootstrap principal is made.
    assert!(
        s.recover_admin("admin", rbac::ADMINISTRATOR, admin_token(1, T0))
            .await
            .unwrap()
    );
    assert!(
        !s.recover_admin("admin", rbac::ADMINISTRATOR, admin_token(2, T0 + 1))
            .await
            .unwrap(),
        "a valid token can manage roles: nothing to recover"
    );
    assert!(s.principal_by_token(hash(2)).await.unwrap().is_none());

    s.create_principal(
        "ops",
        admin_token(3, T0),
        &[everywhere(rbac::HELP_DESK_OPERATOR)],
    )
    .await
    .unwrap();
    let grace_end = T0 + 10 + 60_000;
    let after = s
        .rotate_admin_token("ops", admin_token(4, T0 + 10), grace_end)
        .await
        .unwrap();
    let new = after.token.unwrap();
    assert_eq!((new.issued_at, new.expires_at), (T0 + 10, T0 + 10 + DAY));
    let old = s.principal_by_token(hash(3)).await.unwrap().unwrap().token;
    assert_eq!((old.rotated_at, old.expires_at), (Some(T0 + 10), grace_end));
    assert_eq!(
        old.ended(grace_end - 1),
        None,
        "still inside its grace period"
    );
    assert_eq!(old.ended(grace_end), Some(AdminTokenEnd::Rotated));

    assert_eq!(s.revoke_admin_tokens("ops", T0 + 20).await.unwrap(), 2);
    for tag in [3, 4] {
        let token = s
            .principal_by_token(hash(tag))
            .await
            .unwrap()
            .unwrap()
            .token;
        assert_eq!(token.ended(T0 + 20), Some(AdminTokenEnd::Revoked));
    }
    assert_eq!(s.revoke_admin_tokens("ops", T0 + 21).await.unwrap(), 0);
    let listed = s
        .list_principals(&PageQuery::first(1000))
        .await
        .unwrap()
        .items;
    assert_eq!(listed[1].token.unwrap().revoked_at, Some(T0 + 20));
    assert!(matches!(
        s.revoke_admin_tokens("nobody", T0).await,
        Err(StoreError::NotFound {
            kind: "principal",
            ..
        })
    ));
    assert!(matches!(
        s.rotate_admin_token("nobody", admin_token(9, T0), T0).await,
        Err(StoreError::NotFound {
            kind: "principal",
            ..
        })
    ));

    // The bootstrap token expired: nobody can manage roles, so the next start recovers.
    let token_1 = s.principal_by_token(hash(1)).await.unwrap().unwrap().token;
    assert_eq!(token_1.ended(T0 + DAY), Some(AdminTokenEnd::Expired));
    assert!(
        s.recover_admin("admin", rbac::ADMINISTRATOR, admin_token(5, T0 + DAY))
            .await
            .unwrap()
    );
    let admin = s.principal_by_token(hash(5)).await.unwrap().unwrap();
    assert_eq!(admin.name, "admin");
    assert_eq!(admin.grants.authorize_anywhere(&Permission::ALL), Ok(()));
    assert_eq!(
        s.list_principals(&PageQuery::first(1000))
            .await
            .unwrap()
            .items[0]
            .token
            .unwrap()
            .issued_at,
        T0 + DAY,
        "a listing shows the newest token"
    );
}

#[tokio::test]
async fn audit_rows_are_pruned_oldest_first_by_age_and_by_count() {
    let f = fixture().await;
    let s = &f.store;
    let event = |at: Millis| AuditEvent {
        id: 0,
        at,
        principal: "alice".into(),
        operation: "GetDevice".into(),
        device_id: None,
        action_id: None,
        result: "ok".into(),
        detail: String::new(),
    };
    for at in T0..T0 + 20 {
        s.append_audit(event(at)).await.unwrap();
    }
    let kept = || async {
        let mut times: Vec<Millis> = s
            .list_audit(&AuditFilter::default(), &PageQuery::first(1_000))
            .await
            .unwrap()
            .items
            .iter()
            .map(|e| e.at)
            .collect();
        times.sort_unstable();
        times
    };

    // Nothing is old enough and the count is under the limit: nothing goes.
    assert_eq!(s.prune_audit(T0, 100, 3).await.unwrap(), 0);
    assert_eq!(kept().await.len(), 20);

    // By age, in turns of 3: the rows recorded before T0 + 7 go, the rest stay.
    assert_eq!(s.prune_audit(T0 + 7, 100, 3).await.unwrap(), 7);
    assert_eq!(kept().await, (T0 + 7..T0 + 20).collect::<Vec<_>>());

    // By count: only the newest 5 stay.
    assert_eq!(s.prune_audit(T0, 5, 3).await.unwrap(), 8);
    assert_eq!(kept().await, (T0 + 15..T0 + 20).collect::<Vec<_>>());

    // New rows after pruning are appended and kept as usual.
    s.append_audit(event(T0 + 20)).await.unwrap();
    assert_eq!(s.prune_audit(T0, 6, 3).await.unwrap(), 0);
    assert_eq!(kept().await, (T0 + 15..T0 + 21).collect::<Vec<_>>());
}
