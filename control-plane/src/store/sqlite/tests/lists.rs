//! The admin lists a page at a time: keyset pages that return each row once across rows
//! inserted and deleted between pages, and query plans that walk an index in list order instead
//! of sorting.

use super::super::device_search::PageSql;
use super::super::lists::{action_list_sql, audit_list_sql, device_list_sql};
use super::*;
use crate::store::{ActionKey, AuditKey, DeviceKey, PageQuery, RowKey};
use sqlx::Row;

fn audit_event(at: Millis, principal: &str, operation: &str) -> AuditEvent {
    AuditEvent {
        id: 0,
        at,
        principal: principal.into(),
        operation: operation.into(),
        device_id: None,
        action_id: None,
        result: "ok".into(),
        detail: String::new(),
    }
}

async fn plan(store: &SqliteStore, page: PageSql) -> String {
    let rows = page
        .statement("EXPLAIN QUERY PLAN ")
        .fetch_all(&store.pool)
        .await
        .unwrap();
    rows.iter()
        .map(|row| row.try_get::<String, _>("detail").unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_walks(what: &str, plan: &str, index: &str) {
    assert!(plan.contains(index), "{what} should walk {index}:\n{plan}");
    assert!(
        !plan.contains("TEMP B-TREE"),
        "{what} sorts instead of walking an index:\n{plan}"
    );
}

/// Each page reads its rows in list order through an index and stops at its limit: no step
/// sorts the table (a sort would read every row before returning the first).
#[tokio::test]
async fn pages_walk_an_index_instead_of_sorting() {
    let f = fixture().await;
    let north: BTreeSet<String> = ["north".to_string()].into();
    let device_after = PageQuery {
        after: Some(DeviceKey {
            enrolled_at: T0,
            id: "dev_5".into(),
        }),
        limit: 100,
    };
    for query in [PageQuery::first(100), device_after] {
        let every = plan(&f.store, device_list_sql(None, &query).unwrap()).await;
        assert_walks("every device", &every, "devices_enrolled");
        let group = plan(&f.store, device_list_sql(Some(&north), &query).unwrap()).await;
        assert_walks("one group's devices", &group, "devices_group_enrolled");
    }
    let action_after = PageQuery {
        after: Some(ActionKey {
            created_at: T0,
            row: 7,
        }),
        limit: 100,
    };
    for query in [PageQuery::first(100), action_after] {
        let every = plan(&f.store, action_list_sql(None, None, &query).unwrap()).await;
        assert_walks("every action", &every, "actions_created");
        let device = plan(
            &f.store,
            action_list_sql(Some("dev_1"), None, &query).unwrap(),
        )
        .await;
        assert_walks("one device's actions", &device, "actions_device_created");
    }
    let audit_after = PageQuery {
        after: Some(AuditKey { at: T0, id: 9 }),
        limit: 100,
    };
    for query in [PageQuery::first(100), audit_after] {
        let every = plan(&f.store, audit_list_sql(&AuditFilter::default(), &query)).await;
        assert_walks("the whole log", &every, "audit_at");
        let by_device = AuditFilter {
            device_id: Some("dev_1".into()),
            ..AuditFilter::default()
        };
        let device = plan(&f.store, audit_list_sql(&by_device, &query)).await;
        assert_walks("one device's events", &device, "audit_device_at");
    }
}

/// Pages of three over devices, actions, the audit log, roles and principals: each row listed
/// before the walk comes once, in list order, though rows are inserted (and principals deleted)
/// between pages.
#[tokio::test]
async fn pages_return_each_row_once_across_inserts_and_deletes() {
    let f = fixture().await;
    let s = &f.store;
    for i in 0..7 {
        enroll(s, &format!("dev_{i}"), i).await;
    }
    let mut seen = Vec::new();
    let mut query = PageQuery::first(3);
    for round in 0..10u8 {
        let page = s.list_devices(None, &query).await.unwrap();
        assert!(page.items.len() <= 3);
        seen.extend(page.items.iter().map(|d| d.id.clone()));
        let Some(next) = page.next else { break };
        // Enrolled at the same millisecond as every other: after the walk's position only when
        // its id sorts after, which `z` makes sure of.
        enroll(s, &format!("dev_z{round}"), 100 + round).await;
        query.after = Some(next);
    }
    assert_eq!(
        seen[..7],
        [
            "dev_0", "dev_1", "dev_2", "dev_3", "dev_4", "dev_5", "dev_6"
        ]
    );
    assert_eq!(&seen[7..], ["dev_z0", "dev_z1"], "{seen:?}");

    for i in 0..8 {
        let mut action = new_action(&format!("act_{i}"), "dev_0", ActionState::Failed);
        action.created_at = T0 + i;
        s.create_action(action).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut query = PageQuery::first(3);
    for round in 0..10 {
        let page = s.list_actions(Some("dev_0"), None, &query).await.unwrap();
        seen.extend(page.items.iter().map(|a| a.id.clone()));
        let Some(next) = page.next else { break };
        let mut newer = new_action(&format!("act_new{round}"), "dev_0", ActionState::Failed);
        newer.created_at = T0 + 100;
        s.create_action(newer).await.unwrap();
        query.after = Some(next);
    }
    let newest_first: Vec<String> = (0..8).rev().map(|i| format!("act_{i}")).collect();
    assert_eq!(
        seen, newest_first,
        "newer actions land before the walk's position"
    );

    for i in 0..5 {
        s.append_audit(audit_event(T0 + i, "admin", "ListDevices"))
            .await
            .unwrap();
    }
    let before: Vec<u64> = s
        .list_audit(&AuditFilter::default(), &PageQuery::first(100))
        .await
        .unwrap()
        .items
        .iter()
        .map(|e| e.id)
        .collect();
    let mut seen = Vec::new();
    let mut query: PageQuery<AuditKey> = PageQuery::first(2);
    for round in 0..10 {
        let page = s.list_audit(&AuditFilter::default(), &query).await.unwrap();
        seen.extend(page.items.iter().map(|e| e.id));
        let Some(next) = page.next else { break };
        s.append_audit(audit_event(T0 + 50 + round, "admin", "ListRoles"))
            .await
            .unwrap();
        query.after = Some(next);
    }
    assert_eq!(seen, before);

    let built_in = s.list_roles(&PageQuery::first(100)).await.unwrap().items;
    let mut seen = Vec::new();
    let mut query: PageQuery<RowKey> = PageQuery::first(3);
    for round in 0..20 {
        let page = s.list_roles(&query).await.unwrap();
        seen.extend(page.items.iter().map(|r| r.name.clone()));
        let Some(next) = page.next else { break };
        let role = Role {
            name: format!("Custom {round}"),
            permissions: vec![Permission::ManagedDevicesRead],
            built_in: false,
        };
        s.create_role(&role).await.unwrap();
        query.after = Some(next);
    }
    let names: Vec<String> = built_in.iter().map(|r| r.name.clone()).collect();
    assert_eq!(seen[..names.len()], names[..]);
    assert!(seen[names.len()..].iter().all(|n| n.starts_with("Custom")));

    // Someone must keep managing roles, or no principal may be deleted.
    s.create_principal(
        "admin",
        admin_token(9, T0),
        &[everywhere(rbac::ADMINISTRATOR)],
    )
    .await
    .unwrap();
    for i in 0..7u8 {
        s.create_principal(
            &format!("ops-{i}"),
            admin_token(10 + i, T0),
            &[everywhere("Read Only Operator")],
        )
        .await
        .unwrap();
    }
    let mut seen = Vec::new();
    let mut query: PageQuery<RowKey> = PageQuery::first(3);
    for _ in 0..10 {
        let page = s.list_principals(&query).await.unwrap();
        for principal in page.items.iter().filter(|p| p.name != "admin") {
            assert_eq!(principal.assignments, [everywhere("Read Only Operator")]);
            assert!(principal.token.is_some(), "{principal:?}");
        }
        seen.extend(page.items.iter().map(|p| p.name.clone()));
        let Some(next) = page.next else { break };
        // Deleting a principal already listed shifts nothing.
        s.delete_principal(seen.last().unwrap()).await.unwrap();
        query.after = Some(next);
    }
    let expected: Vec<String> = std::iter::once("admin".to_string())
        .chain((0..7).map(|i| format!("ops-{i}")))
        .collect();
    assert_eq!(seen, expected);
}
