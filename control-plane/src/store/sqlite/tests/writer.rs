//! The group-commit writer: many callers' writes share commits, each stays atomic (a refused
//! write leaves nothing, and takes nothing of the others with it), the observer hears every
//! commit in order before its callers are answered, and the session state reads back what the
//! writes left.

use super::*;
use crate::store::{Change, CommitObserver};
use std::sync::{Arc, Mutex};

/// Records each commit's changes as the writer reports them.
#[derive(Default)]
struct Recorder {
    commits: Mutex<Vec<Vec<Change>>>,
}

impl CommitObserver for Recorder {
    fn committed(&self, changes: Vec<Change>) {
        self.commits.lock().unwrap().push(changes);
    }
}

impl Recorder {
    fn commits(&self) -> Vec<Vec<Change>> {
        self.commits.lock().unwrap().clone()
    }

    fn statuses_of(&self, device_id: &str) -> usize {
        self.commits()
            .iter()
            .flatten()
            .filter(|c| matches!(c, Change::Status { device_id: d, .. } if d == device_id))
            .count()
    }
}

#[tokio::test]
async fn many_callers_share_commits_and_each_write_stays_atomic() {
    let f = fixture().await;
    let s = &f.store;
    let devices = 64;
    for i in 0..devices {
        enroll(s, &format!("dev_{i}"), i as u8 + 1).await;
    }
    s.create_principal(
        "root",
        admin_token(200, T0),
        &[everywhere(rbac::ADMINISTRATOR)],
    )
    .await
    .unwrap();
    // An action that ended at once: it takes no sequence number, only its id.
    let mut taken = new_action("taken", "dev_0", ActionState::Failed);
    taken.error_code = Some(ErrorCode::NoPasscodePolicy);
    s.create_action(taken).await.unwrap();
    let recorder = Arc::new(Recorder::default());
    s.observe(recorder.clone());

    // At once: a status report per device, an action per device, and writes that are refused:
    // an unknown device, a taken action id, and an atomic write refused after its first change
    // (deleting the only principal would leave nobody managing roles).
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..devices {
        let s = s.clone();
        tasks.spawn(async move {
            let id = format!("dev_{i}");
            s.update_device_status(&id, &[status(Scope::Device)], T0 + i as Millis)
                .await
                .map(|_| "status")
        });
        let s = f.store.clone();
        tasks.spawn(async move {
            s.create_action(new_action(
                &format!("act_{i}"),
                &format!("dev_{i}"),
                ActionState::Pending,
            ))
            .await
            .map(|_| "action")
        });
    }
    for refused in 0..3 {
        let s = s.clone();
        tasks.spawn(async move {
            let outcome = match refused {
                0 => s
                    .update_device_status("nope", &[], T0)
                    .await
                    .map(|_| "unknown device"),
                1 => s
                    .create_action(new_action("taken", "dev_1", ActionState::Pending))
                    .await
                    .map(|_| "taken id"),
                _ => s.delete_principal("root").await.map(|_| "lockout"),
            };
            match outcome {
                Ok(what) => Err(StoreError::Corrupt(format!("{what} was accepted"))),
                Err(StoreError::NotFound { .. })
                | Err(StoreError::AlreadyExists { .. })
                | Err(StoreError::WouldLockOut) => Ok("refused"),
                Err(other) => Err(other),
            }
        });
    }
    let mut answered = 0;
    while let Some(outcome) = tasks.join_next().await {
        outcome.unwrap().unwrap();
        answered += 1;
    }
    assert_eq!(answered, 2 * devices + 3);

    // Every accepted write is stored, each action with its own sequence number 1 (one per
    // device), and the refused ones left nothing: no sequence number taken by the duplicate id,
    // the principal still there.
    for i in 0..devices {
        let device = s.get_device(&format!("dev_{i}")).await.unwrap().unwrap();
        assert_eq!(device.stores, vec![status(Scope::Device)]);
        let action = s.get_action(&format!("act_{i}")).await.unwrap().unwrap();
        assert_eq!(action.device_id, format!("dev_{i}"));
        assert_eq!(action.sequence, Some(1));
    }
    assert_eq!(
        s.open_commands("dev_1").await.unwrap().len(),
        1,
        "the refused duplicate id took no sequence number"
    );
    assert_eq!(
        s.list_principals(&PageQuery::first(1000))
            .await
            .unwrap()
            .items
            .len(),
        1
    );

    // Fewer commits than writes: they were grouped. (The observer hears only commits with a
    // change; every accepted write here has one.)
    let commits = recorder.commits();
    let changes: usize = commits.iter().map(Vec::len).sum();
    assert_eq!(changes, 2 * devices);
    assert!(
        commits.len() < changes,
        "{} commits for {changes} writes: nothing was grouped",
        commits.len()
    );
}

#[tokio::test]
async fn the_observer_hears_each_commit_in_order_before_its_caller_is_answered() {
    let f = fixture().await;
    let s = &f.store;
    let device = enroll(s, "dev_a", 1).await;
    let recorder = Arc::new(Recorder::default());
    s.observe(recorder.clone());

    for n in 1..=5u64 {
        let mut stores = vec![status(Scope::Device)];
        stores[0].failed_attempts = n as u32;
        s.update_device_status(&device.id, &stores, T0 + n)
            .await
            .unwrap();
        // Answered, so already told.
        assert_eq!(recorder.statuses_of(&device.id), n as usize);
    }
    let attempts: Vec<u32> = recorder
        .commits()
        .into_iter()
        .flatten()
        .filter_map(|c| match c {
            Change::Status { stores, .. } => Some(stores[0].failed_attempts),
            _ => None,
        })
        .collect();
    assert_eq!(attempts, [1, 2, 3, 4, 5]);

    // A refused write tells the observer nothing.
    let before = recorder.commits().len();
    assert!(s.update_device_status("nope", &[], T0).await.is_err());
    assert_eq!(recorder.commits().len(), before);
}

#[tokio::test]
async fn session_state_holds_devices_credentials_tokens_and_open_commands() {
    let f = fixture().await;
    let s = &f.store;
    enroll(s, "dev_a", 1).await;
    enroll(s, "dev_b", 2).await;
    let sealed = random_bytes(60);
    s.put_escrow_token("dev_a", Scope::WorkProfile, &sealed)
        .await
        .unwrap();
    let mut reset = new_action("a1", "dev_a", ActionState::Pending);
    reset.sealed_passcode = Some((random_bytes(40), T0 + DAY));
    s.create_action(reset.clone()).await.unwrap();
    s.create_action(new_action("a2", "dev_a", ActionState::Pending))
        .await
        .unwrap();
    let mut refused = new_action("a3", "dev_a", ActionState::Failed);
    refused.error_code = Some(ErrorCode::NoPasscodePolicy);
    s.create_action(refused).await.unwrap();
    s.transition_action(
        "a2",
        &[ActionState::Pending],
        ActionState::Active,
        ActionUpdate::default(),
        T0 + 1,
    )
    .await
    .unwrap()
    .unwrap();

    let state = s.session_state().await.unwrap();
    assert_eq!(state.len(), 2);
    let a = state.iter().find(|d| d.device.id == "dev_a").unwrap();
    assert_eq!(a.public_key, Some(hash(1)));
    assert_eq!(a.device, s.get_device("dev_a").await.unwrap().unwrap());
    assert_eq!(a.escrow_tokens, vec![(Scope::WorkProfile, sealed)]);
    let open: Vec<(&str, ActionState)> = a
        .open_commands
        .iter()
        .map(|c| (c.action.id.as_str(), c.action.state))
        .collect();
    assert_eq!(
        open,
        [("a1", ActionState::Pending), ("a2", ActionState::Active)],
        "open commands only, by sequence"
    );
    assert_eq!(
        a.open_commands[0].sealed_passcode,
        reset.sealed_passcode.map(|(sealed, _)| sealed)
    );
    assert_eq!(a.open_commands[1].sealed_passcode, None);
    let b = state.iter().find(|d| d.device.id == "dev_b").unwrap();
    assert_eq!(b.public_key, Some(hash(2)));
    assert!(b.escrow_tokens.is_empty() && b.open_commands.is_empty());
}
