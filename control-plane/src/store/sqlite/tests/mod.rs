//! `SqliteStore` against real database files in temporary directories: opening, durability and
//! schema upgrades, enrollment and devices here; actions and passcodes in `actions.rs`; roles,
//! principals and the audit log in `access.rs`; the paged device list in `device_search.rs`; every admin list's keyset pages in `lists.rs`; the
//! group-commit writer, its observer and the session state in `writer.rs`. The fixtures below
//! serve them all.

mod access;
mod actions;
mod device_search;
mod lists;
mod writer;

use super::SqliteStore;
use super::rows::{db_time, permissions_json};
use crate::clock::{DAY, Millis};
use crate::model::{
    Action, ActionKind, ActionState, AdminTokenEnd, AuditEvent, AuditFilter, Complexity, Device,
    ErrorCode, Ownership, PasscodePolicy, PasscodeType, Permission, Role, RoleAssignment, Scope,
    StoreStatus, TokenState,
};
use crate::rbac;
use crate::store::{
    ActionUpdate, NewAction, NewAdminToken, NewDevice, NewEnrollmentToken, PageQuery, Store,
    StoreError,
};
use droidfleet_telemetry::traceparent::TraceParent;
use ring::rand::{SecureRandom, SystemRandom};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const T0: Millis = 1_700_000_000_000;

struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    store: SqliteStore,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data").join("droidfleet.db");
    let store = SqliteStore::open(&path).await.unwrap();
    Fixture {
        _dir: dir,
        path,
        store,
    }
}

/// An admin token with hash `hash(tag)`, issued at `at`, living a day.
fn admin_token(tag: u8, at: Millis) -> NewAdminToken {
    NewAdminToken {
        hash: hash(tag),
        issued_at: at,
        expires_at: at + DAY,
    }
}

fn hash(tag: u8) -> [u8; 32] {
    [tag; 32]
}

fn new_device(id: &str, key: u8) -> NewDevice {
    NewDevice {
        id: id.to_string(),
        display_name: format!("Phone {id}"),
        ownership: Ownership::Byod,
        public_key: hash(key),
        enrolled_at: T0,
    }
}

/// The public key the store binds to the device, as its sessions read it.
async fn key_of(store: &SqliteStore, device_id: &str) -> Option<[u8; 32]> {
    let states = store.session_state().await.unwrap();
    let state = states.into_iter().find(|s| s.device.id == device_id)?;
    state.public_key
}

fn token(hash: [u8; 32], max_uses: u32, expires_at: Millis) -> NewEnrollmentToken {
    NewEnrollmentToken {
        hash,
        max_uses,
        expires_at,
        created_by: "admin".into(),
        group: rbac::DEFAULT_GROUP.into(),
    }
}

/// Enrolls `id` with a fresh single-use token.
async fn enroll(store: &SqliteStore, id: &str, key: u8) -> Device {
    enroll_in(store, id, key, rbac::DEFAULT_GROUP).await
}

async fn enroll_in(store: &SqliteStore, id: &str, key: u8, group: &str) -> Device {
    let hash = crate::crypto::sha256(id.as_bytes());
    let mut new_token = token(hash, 1, T0 + DAY);
    new_token.group = group.into();
    store.create_enrollment_token(new_token).await.unwrap();
    store
        .enroll_device(hash, new_device(id, key))
        .await
        .unwrap()
        .device
}

fn everywhere(role: &str) -> RoleAssignment {
    RoleAssignment {
        role: role.into(),
        group: None,
    }
}

fn in_group(role: &str, group: &str) -> RoleAssignment {
    RoleAssignment {
        role: role.into(),
        group: Some(group.into()),
    }
}

fn new_action(id: &str, device_id: &str, state: ActionState) -> NewAction {
    NewAction {
        id: id.to_string(),
        device_id: device_id.to_string(),
        kind: ActionKind::ResetPasscode,
        scope: Scope::WorkProfile,
        requested_by: "helpdesk".to_string(),
        created_at: T0,
        not_after: T0 + 600_000,
        state,
        error_code: None,
        reason: String::new(),
        sealed_passcode: None,
        traceparent: TraceParent::new_root([id.len() as u8; 24]),
    }
}

fn policy() -> PasscodePolicy {
    PasscodePolicy {
        passcode_type: PasscodeType::Complex,
        min_length: 10,
        complexity: Complexity::High,
        min_letters: 2,
        min_upper_case: 1,
        min_lower_case: 1,
        min_digits: 2,
        min_symbols: 1,
        min_non_letters: 3,
        max_failed_attempts_before_wipe: 10,
    }
}

fn status(scope: Scope) -> StoreStatus {
    StoreStatus {
        scope,
        has_passcode: true,
        locked: false,
        token_state: TokenState::Pending,
        failed_attempts: 3,
        throttled_until: T0 + 30_000,
        wiped: false,
        separate_challenge: true,
        require_entry: false,
        token_fingerprint: Some(*b"\x01\x23\x45\x67\x89\xab\xcd\xef"),
    }
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    SystemRandom::new().fill(&mut bytes).unwrap();
    bytes
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Whether `needle` occurs in the database file or its WAL.
fn on_disk(path: &Path, needle: &[u8]) -> bool {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    [path.to_path_buf(), PathBuf::from(wal)]
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .any(|bytes| contains(&bytes, needle))
}

#[tokio::test]
async fn open_sets_the_durability_and_erasure_pragmas() {
    let f = fixture().await;
    let mut conn = f.store.pool.acquire().await.unwrap();
    let text = |sql: &'static str| sqlx::query_scalar::<_, String>(sql);
    let int = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql);
    assert_eq!(
        text("PRAGMA journal_mode")
            .fetch_one(&mut *conn)
            .await
            .unwrap(),
        "wal"
    );
    // 2 = FULL
    assert_eq!(
        int("PRAGMA synchronous")
            .fetch_one(&mut *conn)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        int("PRAGMA foreign_keys")
            .fetch_one(&mut *conn)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        int("PRAGMA secure_delete")
            .fetch_one(&mut *conn)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        int("PRAGMA busy_timeout")
            .fetch_one(&mut *conn)
            .await
            .unwrap(),
        5000
    );
    assert_eq!(f.store.path(), f.path);
}

#[cfg(unix)]
#[tokio::test]
async fn the_database_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let f = fixture().await;
    enroll(&f.store, "dev_a", 1).await;
    for file in super::database_files(&f.path) {
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", file.display());
    }
    // A database an older version left readable by others is made private when opened.
    f.store.close().await;
    std::fs::set_permissions(&f.path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let reopened = SqliteStore::open(&f.path).await.unwrap();
    let mode = std::fs::metadata(&f.path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    reopened.close().await;
}

#[tokio::test]
async fn built_in_roles_are_installed_once() {
    let f = fixture().await;
    let roles = f
        .store
        .list_roles(&PageQuery::first(1000))
        .await
        .unwrap()
        .items;
    assert_eq!(roles, rbac::built_in_roles());
    f.store.close().await;
    let reopened = SqliteStore::open(&f.path).await.unwrap();
    assert_eq!(
        reopened
            .list_roles(&PageQuery::first(1000))
            .await
            .unwrap()
            .items,
        rbac::built_in_roles()
    );
}

#[tokio::test]
async fn an_enrollment_token_is_single_use_and_expires() {
    let f = fixture().await;
    let s = &f.store;
    s.create_enrollment_token(token(hash(1), 1, T0 + DAY))
        .await
        .unwrap();
    let enrolled = s
        .enroll_device(hash(1), new_device("dev_a", 101))
        .await
        .unwrap();
    assert!(!enrolled.re_enrolled);
    let device = enrolled.device;
    assert_eq!(device.id, "dev_a");
    assert_eq!(device.last_seen, T0);
    assert_eq!(device.group, rbac::DEFAULT_GROUP);
    assert!(matches!(
        s.enroll_device(hash(1), new_device("dev_b", 102)).await,
        Err(StoreError::EnrollmentTokenInvalid)
    ));
    // Unknown token.
    assert!(matches!(
        s.enroll_device(hash(9), new_device("dev_b", 102)).await,
        Err(StoreError::EnrollmentTokenInvalid)
    ));
    // Expired: valid strictly before expires_at.
    s.create_enrollment_token(token(hash(2), 5, T0 + DAY))
        .await
        .unwrap();
    let mut late = new_device("dev_b", 102);
    late.enrolled_at = T0 + DAY;
    assert!(matches!(
        s.enroll_device(hash(2), late).await,
        Err(StoreError::EnrollmentTokenInvalid)
    ));
    // A duplicate token is refused without naming it.
    match s.create_enrollment_token(token(hash(2), 1, T0)).await {
        Err(e @ StoreError::AlreadyExists { .. }) => assert!(!e.to_string().contains("02")),
        other => panic!("{other:?}"),
    }
    // A failed enrollment (duplicate device) does not use the token up.
    assert!(matches!(
        s.enroll_device(hash(2), new_device("dev_a", 103)).await,
        Err(StoreError::AlreadyExists { kind: "device", .. })
    ));
    for (i, id) in ["dev_b", "dev_c", "dev_d", "dev_e", "dev_f"]
        .iter()
        .enumerate()
    {
        let result = s
            .enroll_device(hash(2), new_device(id, 110 + i as u8))
            .await;
        assert_eq!(result.is_ok(), i < 5, "{id}");
    }
    assert!(matches!(
        s.enroll_device(hash(2), new_device("dev_g", 120)).await,
        Err(StoreError::EnrollmentTokenInvalid)
    ));
    assert_eq!(
        s.list_devices(None, &PageQuery::first(1000))
            .await
            .unwrap()
            .items
            .len(),
        6
    );
}

#[tokio::test]
async fn concurrent_enrollments_never_exceed_max_uses() {
    let f = fixture().await;
    f.store
        .create_enrollment_token(token(hash(1), 3, T0 + DAY))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..12u8 {
        let store = f.store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .enroll_device(hash(1), new_device(&format!("dev_{i}"), 100 + i))
                .await
        }));
    }
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::EnrollmentTokenInvalid) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(ok, 3);
    assert_eq!(
        f.store
            .list_devices(None, &PageQuery::first(1000))
            .await
            .unwrap()
            .items
            .len(),
        3
    );
}

#[tokio::test]
async fn devices_status_policies_and_escrow_tokens() {
    let f = fixture().await;
    let s = &f.store;
    enroll(s, "dev_a", 1).await;
    enroll(s, "dev_b", 2).await;

    assert_eq!(key_of(s, "dev_b").await, Some(hash(2)));
    assert!(s.get_device("nope").await.unwrap().is_none());

    let stores = vec![status(Scope::Device), status(Scope::WorkProfile)];
    s.update_device_status("dev_a", &stores, T0 + 5)
        .await
        .unwrap();
    s.set_policy("dev_a", Scope::WorkProfile, Some(&policy()))
        .await
        .unwrap();
    let mut pin = policy();
    pin.passcode_type = PasscodeType::NumericComplex;
    pin.complexity = Complexity::Medium;
    s.set_policy("dev_a", Scope::Device, Some(&pin))
        .await
        .unwrap();
    s.put_escrow_token("dev_a", Scope::WorkProfile, b"sealed-1")
        .await
        .unwrap();
    s.put_escrow_token("dev_a", Scope::Device, b"sealed-d")
        .await
        .unwrap();
    s.put_escrow_token("dev_a", Scope::WorkProfile, b"sealed-2")
        .await
        .unwrap();

    let device = s.get_device("dev_a").await.unwrap().unwrap();
    assert_eq!(device.stores, stores);
    assert_eq!(device.last_seen, T0 + 5);
    assert_eq!(device.ownership, Ownership::Byod);
    assert_eq!(device.display_name, "Phone dev_a");
    assert_eq!(device.work_profile_policy, Some(policy()));
    assert_eq!(device.device_policy, Some(pin));
    // Each change of either policy raises the version a signed policy carries (CP-POLICY-3).
    assert_eq!(device.policy_version, 2);
    assert_eq!(
        device.escrowed_token_scopes,
        vec![Scope::Device, Scope::WorkProfile]
    );
    assert_eq!(
        s.escrow_token("dev_a", Scope::WorkProfile).await.unwrap(),
        Some(b"sealed-2".to_vec())
    );
    assert_eq!(s.escrow_token("dev_b", Scope::Device).await.unwrap(), None);

    s.set_policy("dev_a", Scope::Device, None).await.unwrap();
    let device = s.get_device("dev_a").await.unwrap().unwrap();
    assert_eq!(device.device_policy, None);
    assert!(device.work_profile_policy.is_some());
    assert_eq!(device.policy_version, 3);

    let other = s.get_device("dev_b").await.unwrap().unwrap();
    assert!(other.stores.is_empty() && other.escrowed_token_scopes.is_empty());
    let ids: Vec<String> = s
        .list_devices(None, &PageQuery::first(1000))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids, ["dev_a", "dev_b"]);

    let not_found = |r: Result<(), StoreError>| matches!(r, Err(StoreError::NotFound { kind: "device", name }) if name == "ghost");
    assert!(not_found(s.update_device_status("ghost", &[], T0).await));
    assert!(not_found(s.set_policy("ghost", Scope::Device, None).await));
    assert!(not_found(
        s.put_escrow_token("ghost", Scope::Device, b"x").await
    ));
}

#[tokio::test]
async fn devices_and_actions_are_listed_by_group() {
    let f = fixture().await;
    let s = &f.store;
    enroll_in(s, "dev_n", 1, "north").await;
    enroll_in(s, "dev_s", 2, "south").await;
    enroll(s, "dev_d", 3).await;
    s.create_action(new_action("a_n", "dev_n", ActionState::Pending))
        .await
        .unwrap();
    s.create_action(new_action("a_s", "dev_s", ActionState::Pending))
        .await
        .unwrap();
    let north: BTreeSet<String> = ["north".to_string()].into();
    let ids = |devices: Vec<Device>| devices.into_iter().map(|d| d.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s
            .list_devices(Some(&north), &PageQuery::first(1000))
            .await
            .unwrap()
            .items),
        ["dev_n"]
    );
    assert_eq!(
        s.list_devices(None, &PageQuery::first(1000))
            .await
            .unwrap()
            .items
            .len(),
        3
    );
    assert!(
        s.list_devices(Some(&BTreeSet::new()), &PageQuery::first(1000))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let action_ids = |actions: Vec<Action>| actions.into_iter().map(|a| a.id).collect::<Vec<_>>();
    assert_eq!(
        action_ids(
            s.list_actions(None, Some(&north), &PageQuery::first(1000))
                .await
                .unwrap()
                .items
        ),
        ["a_n"]
    );
    assert!(
        s.list_actions(Some("dev_s"), Some(&north), &PageQuery::first(1000))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(
        action_ids(
            s.list_actions(Some("dev_s"), None, &PageQuery::first(1000))
                .await
                .unwrap()
                .items
        ),
        ["a_s"]
    );
    assert_eq!(
        s.list_actions(None, None, &PageQuery::first(1000))
            .await
            .unwrap()
            .items
            .len(),
        2
    );
}

#[tokio::test]
async fn a_device_records_its_build_and_moves_between_groups() {
    let f = fixture().await;
    let s = &f.store;
    let device = enroll_in(s, "dev_n", 1, "north").await;
    assert_eq!((device.api_level, device.maker_profile.as_str()), (0, ""));
    s.create_action(new_action("a_n", "dev_n", ActionState::Pending))
        .await
        .unwrap();
    s.set_policy("dev_n", Scope::WorkProfile, Some(&policy()))
        .await
        .unwrap();
    s.set_device_build("dev_n", 31, "short-keyguard")
        .await
        .unwrap();
    s.move_device("dev_n", "south").await.unwrap();
    let moved = s.get_device("dev_n").await.unwrap().unwrap();
    assert_eq!(moved.group, "south");
    assert_eq!(
        (moved.api_level, moved.maker_profile.as_str()),
        (31, "short-keyguard")
    );
    assert_eq!(moved.work_profile_policy, Some(policy()), "policies stay");
    let south: BTreeSet<String> = ["south".to_string()].into();
    let north: BTreeSet<String> = ["north".to_string()].into();
    assert_eq!(
        s.list_devices(Some(&south), &PageQuery::first(1000))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert!(
        s.list_devices(Some(&north), &PageQuery::first(1000))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(
        s.list_actions(None, Some(&south), &PageQuery::first(1000))
            .await
            .unwrap()
            .items[0]
            .id,
        "a_n",
        "its actions follow it"
    );
    for error in [
        s.move_device("dev_x", "south").await.unwrap_err(),
        s.set_device_build("dev_x", 30, "aosp").await.unwrap_err(),
    ] {
        assert!(
            matches!(error, StoreError::NotFound { kind: "device", .. }),
            "{error}"
        );
    }
}

#[tokio::test]
async fn re_enrollment_gives_a_known_device_a_new_credential_and_nothing_else() {
    let f = fixture().await;
    let s = &f.store;
    let device = enroll_in(s, "dev_a", 1, "north").await;
    s.put_escrow_token("dev_a", Scope::WorkProfile, b"sealed")
        .await
        .unwrap();
    s.set_policy("dev_a", Scope::WorkProfile, Some(&policy()))
        .await
        .unwrap();
    s.create_action(new_action("a1", "dev_a", ActionState::Pending))
        .await
        .unwrap();

    s.reenroll_device("dev_a", token(hash(60), 9, T0 + DAY))
        .await
        .unwrap();
    assert_eq!(
        key_of(s, "dev_a").await,
        None,
        "the old key is revoked at once"
    );
    // A newer re-enrollment token replaces the older one.
    s.reenroll_device("dev_a", token(hash(61), 9, T0 + DAY))
        .await
        .unwrap();
    assert!(matches!(
        s.enroll_device(hash(60), new_device("dev_new", 70)).await,
        Err(StoreError::EnrollmentTokenInvalid)
    ));
    let mut cosu = new_device("dev_new", 70);
    cosu.ownership = Ownership::Cosu;
    assert!(matches!(
        s.enroll_device(hash(61), cosu).await,
        Err(StoreError::EnrollmentOwnership {
            expected: Ownership::Byod
        })
    ));
    let enrolled = s
        .enroll_device(hash(61), new_device("dev_new", 70))
        .await
        .unwrap();
    assert!(enrolled.re_enrolled);
    assert_eq!(enrolled.device.id, "dev_a");
    assert_eq!(enrolled.device.group, "north");
    assert_eq!(enrolled.device.work_profile_policy, Some(policy()));
    assert!(enrolled.device.escrowed_token_scopes.is_empty());
    assert_eq!(enrolled.device.enrolled_at, device.enrolled_at);
    assert_eq!(
        key_of(s, "dev_a").await,
        Some(hash(70)),
        "the new key is bound"
    );
    assert!(s.get_device("dev_new").await.unwrap().is_none());
    assert_eq!(s.open_commands("dev_a").await.unwrap().len(), 1);
    // Single use.
    assert!(matches!(
        s.enroll_device(hash(61), new_device("dev_new", 71)).await,
        Err(StoreError::EnrollmentTokenInvalid)
    ));
    assert!(matches!(
        s.reenroll_device("nope", token(hash(62), 1, T0 + DAY))
            .await,
        Err(StoreError::NotFound { kind: "device", .. })
    ));
}

#[tokio::test]
async fn a_database_of_schema_version_1_keeps_its_devices_and_roles() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("droidfleet.db");
    {
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .foreign_keys(true);
        let pool = SqlitePool::connect_with(options).await.unwrap();
        let mut version_1 = sqlx::migrate!("./migrations");
        version_1.migrations = std::borrow::Cow::Owned(version_1.migrations[..1].to_vec());
        version_1.run(&pool).await.unwrap();
        sqlx::query("INSERT INTO roles (name, permissions_json, built_in) VALUES (?, ?, 1)")
            .bind(rbac::ADMINISTRATOR)
            .bind(permissions_json(&Permission::ALL).unwrap())
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO principals (name, token_hash, created_at) VALUES (?, ?, ?)")
            .bind("admin")
            .bind(&hash(1)[..])
            .bind(db_time(T0))
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO principal_roles (principal, role) VALUES (?, ?)")
            .bind("admin")
            .bind(rbac::ADMINISTRATOR)
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO devices (id, display_name, ownership, credential_hash, enrolled_at,
                                  last_seen)
             VALUES ('dev_old', 'Old phone', 'cosu', ?, ?, ?)",
        )
        .bind(&hash(2)[..])
        .bind(db_time(T0))
        .bind(db_time(T0))
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }
    let store = SqliteStore::open(&path).await.unwrap();
    let admin = store.principal_by_token(hash(1)).await.unwrap().unwrap();
    assert_eq!(admin.grants.0.len(), 1);
    assert_eq!(
        admin.grants.0[0].group, None,
        "held for every group, as before"
    );
    assert_eq!(admin.grants.authorize_anywhere(&Permission::ALL), Ok(()));
    // Its token now expires, 90 days after the migration (the default time-to-live).
    let now = crate::clock::Clock::now(&crate::clock::SystemClock);
    assert_eq!(admin.token.revoked_at, None);
    assert!(
        (now + 89 * DAY..=now + 90 * DAY).contains(&admin.token.expires_at),
        "{:?}",
        admin.token
    );
    let device = store.get_device("dev_old").await.unwrap().unwrap();
    assert_eq!(device.group, rbac::DEFAULT_GROUP);
    assert_eq!(
        (device.api_level, device.maker_profile.as_str()),
        (0, ""),
        "unknown until its next Hello"
    );
    assert_eq!(
        key_of(&store, "dev_old").await,
        None,
        "a device enrolled before keys has none: no session opens until it re-enrolls"
    );
}

#[tokio::test]
async fn data_survives_reopening_the_file() {
    let f = fixture().await;
    let s = &f.store;
    enroll(s, "dev_a", 1).await;
    s.set_policy("dev_a", Scope::WorkProfile, Some(&policy()))
        .await
        .unwrap();
    s.update_device_status("dev_a", &[status(Scope::WorkProfile)], T0 + 9)
        .await
        .unwrap();
    s.put_escrow_token("dev_a", Scope::WorkProfile, b"sealed")
        .await
        .unwrap();
    let mut action = new_action("a1", "dev_a", ActionState::Pending);
    action.sealed_passcode = Some((b"sealed-passcode".to_vec(), T0 + 7 * DAY));
    let created = s.create_action(action).await.unwrap();
    s.create_principal(
        "alice",
        admin_token(7, T0),
        &[in_group(rbac::SCHOOL_ADMINISTRATOR, "north")],
    )
    .await
    .unwrap();
    s.append_audit(AuditEvent {
        id: 0,
        at: T0,
        principal: "alice".into(),
        operation: "ResetPasscode".into(),
        device_id: Some("dev_a".into()),
        action_id: Some("a1".into()),
        result: "ok".into(),
        detail: String::new(),
    })
    .await
    .unwrap();
    let device = s.get_device("dev_a").await.unwrap().unwrap();
    s.close().await;

    let reopened = SqliteStore::open(&f.path).await.unwrap();
    assert_eq!(reopened.get_device("dev_a").await.unwrap(), Some(device));
    assert_eq!(reopened.get_action("a1").await.unwrap(), Some(created));
    assert_eq!(
        reopened.sealed_passcode("a1", T0).await.unwrap().as_deref(),
        Some(&b"sealed-passcode"[..])
    );
    assert_eq!(
        reopened
            .escrow_token("dev_a", Scope::WorkProfile)
            .await
            .unwrap()
            .as_deref(),
        Some(&b"sealed"[..])
    );
    let alice = reopened.principal_by_token(hash(7)).await.unwrap().unwrap();
    assert_eq!(alice.grants.0[0].role.name, rbac::SCHOOL_ADMINISTRATOR);
    assert_eq!(alice.grants.0[0].group.as_deref(), Some("north"));
    assert_eq!(
        reopened
            .list_audit(&AuditFilter::default(), &PageQuery::first(1000))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    // The sequence counter persisted too.
    let next = reopened
        .create_action(new_action("a2", "dev_a", ActionState::Pending))
        .await
        .unwrap();
    assert_eq!(next.sequence, Some(2));
}
