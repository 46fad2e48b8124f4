//! The paged device list: order, keyset pages both ways, each filter, the newest action, and
//! query plans that walk an index instead of sorting the table.

use super::super::device_search::{PageSql, contains_pattern};
use super::*;
use crate::store::{ActionUpdate, DeviceCursor, DeviceQuery, ListedDevice, PageStart, SearchText};
use sqlx::Row;

/// Enrolls a device with the given name, type and group.
async fn enroll_named(
    store: &SqliteStore,
    id: &str,
    name: &str,
    ownership: Ownership,
    group: &str,
) -> Device {
    let token_hash = crate::crypto::sha256(id.as_bytes());
    let mut new_token = token(token_hash, 1, T0 + DAY);
    new_token.group = group.into();
    store.create_enrollment_token(new_token).await.unwrap();
    let mut device = new_device(id, 0);
    device.display_name = name.to_string();
    device.ownership = ownership;
    device.public_key = crate::crypto::sha256(format!("key {id}").as_bytes());
    store
        .enroll_device(token_hash, device)
        .await
        .unwrap()
        .device
}

fn query(limit: u32) -> DeviceQuery {
    DeviceQuery {
        groups: None,
        search: None,
        ownership: None,
        latest_action_state: None,
        start: PageStart::First,
        limit,
    }
}

fn names(page: &[ListedDevice]) -> Vec<&str> {
    page.iter()
        .map(|d| d.device.display_name.as_str())
        .collect()
}

fn cursor(listed: &ListedDevice) -> DeviceCursor {
    DeviceCursor {
        display_name: listed.device.display_name.clone(),
        id: listed.device.id.clone(),
    }
}

/// Six devices: two groups, three types, names out of enrollment order, one name shared.
async fn fleet(store: &SqliteStore) {
    let devices = [
        ("dev_1", "delta", Ownership::Byod, "default"),
        ("dev_2", "alpha", Ownership::Cosu, "default"),
        ("dev_3", "echo 50%_off", Ownership::Byod, "school"),
        ("dev_4", "charlie", Ownership::Cope, "school"),
        ("dev_5", "bravo", Ownership::Byod, "default"),
        ("dev_6", "bravo", Ownership::Cosu, "default"),
    ];
    for (id, name, ownership, group) in devices {
        enroll_named(store, id, name, ownership, group).await;
    }
}

#[tokio::test]
async fn pages_follow_the_name_order_both_ways() {
    let f = fixture().await;
    fleet(&f.store).await;
    let first = f.store.search_devices(&query(2)).await.unwrap();
    assert_eq!(names(&first), ["alpha", "bravo"]);
    assert_eq!(first[1].device.id, "dev_5", "equal names are ordered by id");
    let mut after = query(2);
    after.start = PageStart::After(cursor(&first[1]));
    let second = f.store.search_devices(&after).await.unwrap();
    assert_eq!(names(&second), ["bravo", "charlie"]);
    assert_eq!(second[0].device.id, "dev_6");
    after.start = PageStart::After(cursor(&second[1]));
    let third = f.store.search_devices(&after).await.unwrap();
    assert_eq!(names(&third), ["delta", "echo 50%_off"]);
    after.start = PageStart::After(cursor(&third[1]));
    assert!(f.store.search_devices(&after).await.unwrap().is_empty());

    // Backwards from the third page: the page before it, still in ascending order.
    let mut before = query(2);
    before.start = PageStart::Before(cursor(&third[0]));
    let back = f.store.search_devices(&before).await.unwrap();
    assert_eq!(back, second);
    before.start = PageStart::Before(cursor(&first[0]));
    assert!(f.store.search_devices(&before).await.unwrap().is_empty());
}

#[tokio::test]
async fn each_filter_narrows_the_list() {
    let f = fixture().await;
    fleet(&f.store).await;
    let mut q = query(10);
    q.ownership = Some(Ownership::Byod);
    assert_eq!(
        names(&f.store.search_devices(&q).await.unwrap()),
        ["bravo", "delta", "echo 50%_off"]
    );
    q.groups = Some(["school".to_string()].into());
    assert_eq!(
        names(&f.store.search_devices(&q).await.unwrap()),
        ["echo 50%_off"]
    );
    let mut q = query(10);
    q.groups = Some(["school".to_string(), "default".to_string()].into());
    assert_eq!(f.store.search_devices(&q).await.unwrap().len(), 6);
    q.groups = Some(BTreeSet::new());
    assert!(
        f.store.search_devices(&q).await.unwrap().is_empty(),
        "no visible group, no device"
    );

    // A substring of the name in any ASCII case, wildcards taken literally; or one id.
    let name = |text: &str| Some(SearchText::NameContains(text.into()));
    let mut q = query(10);
    q.search = name("RAV");
    assert_eq!(
        names(&f.store.search_devices(&q).await.unwrap()),
        ["bravo", "bravo"]
    );
    q.search = Some(SearchText::Id("dev_4".into()));
    assert_eq!(
        names(&f.store.search_devices(&q).await.unwrap()),
        ["charlie"]
    );
    q.search = name("dev_");
    assert!(
        f.store.search_devices(&q).await.unwrap().is_empty(),
        "ids are not names"
    );
    q.search = name("50%_");
    assert_eq!(
        names(&f.store.search_devices(&q).await.unwrap()),
        ["echo 50%_off"]
    );
    q.search = name("%");
    assert_eq!(f.store.search_devices(&q).await.unwrap().len(), 1);
    q.search = name("_");
    assert_eq!(
        f.store.search_devices(&q).await.unwrap().len(),
        1,
        "`_` matches itself, not any character"
    );
    assert_eq!(contains_pattern("50%_a\\b"), "%50\\%\\_a\\\\b%");
}

#[tokio::test]
async fn each_device_comes_with_its_newest_action_and_filters_on_its_state() {
    let f = fixture().await;
    fleet(&f.store).await;
    let mut older = new_action("act_old", "dev_1", ActionState::Failed);
    older.error_code = Some(ErrorCode::NoPasscodePolicy);
    f.store.create_action(older).await.unwrap();
    let mut newer = new_action("act_new", "dev_1", ActionState::Pending);
    newer.created_at = T0 + 1;
    newer.sealed_passcode = Some((vec![1, 2, 3], T0 + 7 * DAY));
    f.store.create_action(newer).await.unwrap();
    let mut lone = new_action("act_lone", "dev_4", ActionState::Failed);
    lone.error_code = Some(ErrorCode::NoPasscodePolicy);
    f.store.create_action(lone).await.unwrap();

    let page = f.store.search_devices(&query(10)).await.unwrap();
    let latest = |id: &str| {
        page.iter()
            .find(|d| d.device.id == id)
            .unwrap()
            .latest_action
            .clone()
    };
    let delta = latest("dev_1").expect("delta had actions");
    assert_eq!(delta.id, "act_new");
    assert_eq!(delta.state, ActionState::Pending);
    assert_eq!(delta.passcode_visible_until, Some(T0 + 7 * DAY));
    assert_eq!(latest("dev_4").unwrap().id, "act_lone");
    assert_eq!(latest("dev_2"), None);

    // The filter looks at the newest action only: delta's older failure does not count.
    let mut q = query(10);
    q.latest_action_state = Some(ActionState::Failed);
    assert_eq!(
        names(&f.store.search_devices(&q).await.unwrap()),
        ["charlie"]
    );
    q.latest_action_state = Some(ActionState::Pending);
    assert_eq!(names(&f.store.search_devices(&q).await.unwrap()), ["delta"]);

    // The newest action's state follows its transitions.
    f.store
        .transition_action(
            "act_new",
            &[ActionState::Pending],
            ActionState::Active,
            ActionUpdate::default(),
            T0 + 2,
        )
        .await
        .unwrap()
        .expect("pending becomes active");
    assert!(f.store.search_devices(&q).await.unwrap().is_empty());
    q.latest_action_state = Some(ActionState::Active);
    let page = f.store.search_devices(&q).await.unwrap();
    assert_eq!(names(&page), ["delta"]);
    assert_eq!(
        page[0].latest_action.as_ref().unwrap().state,
        ActionState::Active
    );
}

#[tokio::test]
async fn a_listed_device_carries_the_android_it_reported() {
    let f = fixture().await;
    fleet(&f.store).await;
    f.store
        .set_device_build("dev_2", 31, "samsung")
        .await
        .unwrap();
    let page = f.store.search_devices(&query(1)).await.unwrap();
    assert_eq!(names(&page), ["alpha"]);
    assert_eq!(page[0].device.api_level, 31);
    assert_eq!(page[0].device.maker_profile, "samsung");
}

/// A database that had actions before the device list's columns existed gets each device's
/// newest action filled in by the migration.
#[tokio::test]
async fn the_upgrade_fills_in_each_devices_newest_action() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("droidfleet.db");
    {
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .foreign_keys(true);
        let pool = SqlitePool::connect_with(options).await.unwrap();
        let mut version_3 = sqlx::migrate!("./migrations");
        version_3.migrations = std::borrow::Cow::Owned(version_3.migrations[..3].to_vec());
        version_3.run(&pool).await.unwrap();
        sqlx::query(
            "INSERT INTO devices (id, display_name, ownership, credential_hash, enrolled_at,
                                  last_seen)
             VALUES ('dev_old', 'Old phone', 'byod', ?, ?, ?)",
        )
        .bind(&hash(2)[..])
        .bind(db_time(T0))
        .bind(db_time(T0))
        .execute(&pool)
        .await
        .unwrap();
        for (id, state, at) in [("act_1", "failed", T0), ("act_2", "done", T0 + 5)] {
            sqlx::query(
                "INSERT INTO actions (id, device_id, kind, scope, state, requested_by,
                                      created_at, updated_at, not_after)
                 VALUES (?, 'dev_old', 'reset_passcode', 'work_profile', ?, 'admin', ?, ?, ?)",
            )
            .bind(id)
            .bind(state)
            .bind(db_time(at))
            .bind(db_time(at))
            .bind(db_time(at + DAY))
            .execute(&pool)
            .await
            .unwrap();
        }
        pool.close().await;
    }
    let store = SqliteStore::open(&path).await.unwrap();
    let mut q = query(10);
    q.latest_action_state = Some(ActionState::Done);
    let page = store.search_devices(&q).await.unwrap();
    assert_eq!(names(&page), ["Old phone"]);
    assert_eq!(page[0].latest_action.as_ref().unwrap().id, "act_2");
}

/// The plan SQLite picks for `query`, one line per step.
async fn plan(store: &SqliteStore, query: &DeviceQuery) -> String {
    let rows = PageSql::new(query)
        .unwrap()
        .statement("EXPLAIN QUERY PLAN ")
        .fetch_all(&store.pool)
        .await
        .unwrap();
    rows.iter()
        .map(|row| row.try_get::<String, _>("detail").unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A page reads the devices in order through an index and stops at its limit: no step sorts the
/// table (a sort would read every device before returning the first).
#[tokio::test]
async fn pages_walk_an_index_instead_of_sorting() {
    let f = fixture().await;
    fleet(&f.store).await;
    let after = PageStart::After(DeviceCursor {
        display_name: "bravo".into(),
        id: "dev_5".into(),
    });
    let before = PageStart::Before(DeviceCursor {
        display_name: "delta".into(),
        id: "dev_1".into(),
    });
    let mut cases = Vec::new();
    for start in [PageStart::First, after, before] {
        let mut q = query(51);
        q.start = start.clone();
        cases.push(("every device", q.clone(), "devices_name"));
        q.ownership = Some(Ownership::Byod);
        cases.push(("one type", q.clone(), "devices_ownership_name"));
        let mut q = query(51);
        q.start = start.clone();
        q.groups = Some(["school".to_string()].into());
        cases.push(("one group", q.clone(), "devices_group_name"));
        let mut q = query(51);
        q.start = start.clone();
        q.search = Some(SearchText::NameContains("bra".into()));
        cases.push(("a name search", q, "devices_name"));
        let mut q = query(51);
        q.start = start;
        q.latest_action_state = Some(ActionState::Done);
        cases.push(("a latest-action state", q, "devices_latest_state_name"));
    }
    for (what, q, index) in cases {
        let plan = plan(&f.store, &q).await;
        assert!(
            plan.contains(index),
            "{what} ({:?}) should walk {index}:\n{plan}",
            q.start
        );
        assert!(
            !plan.contains("TEMP B-TREE"),
            "{what} ({:?}) sorts instead of walking an index:\n{plan}",
            q.start
        );
    }
    let mut by_id = query(51);
    by_id.search = Some(SearchText::Id("dev_4".into()));
    let plan = plan(&f.store, &by_id).await;
    assert!(
        plan.contains("(id=?)"),
        "an id is looked up by its key:\n{plan}"
    );
}
