//! `SqliteStore`'s actions: per-device command sequences, compare-and-set transitions, and
//! passcodes sealed for their reveal window, then purged from the files.

use super::*;

#[tokio::test]
async fn sequences_are_allocated_per_device_for_commands_only() {
    let f = fixture().await;
    let s = &f.store;
    enroll(s, "dev_a", 1).await;
    enroll(s, "dev_b", 2).await;
    let a1 = s
        .create_action(new_action("a1", "dev_a", ActionState::Pending))
        .await
        .unwrap();
    let mut refused = new_action("a2", "dev_a", ActionState::Failed);
    refused.error_code = Some(ErrorCode::NoPasscodePolicy);
    refused.reason = "no passcode policy".into();
    let a2 = s.create_action(refused).await.unwrap();
    let a3 = s
        .create_action(new_action("a3", "dev_a", ActionState::Pending))
        .await
        .unwrap();
    let b1 = s
        .create_action(new_action("b1", "dev_b", ActionState::Pending))
        .await
        .unwrap();
    assert_eq!(a1.sequence, Some(1));
    assert_eq!(a2.sequence, None);
    assert_eq!(a2.state, ActionState::Failed);
    assert_eq!(a2.error_code, Some(ErrorCode::NoPasscodePolicy));
    assert_eq!(a2.reason, "no passcode policy");
    assert_eq!(a3.sequence, Some(2));
    assert_eq!(b1.sequence, Some(1));

    assert!(matches!(
        s.create_action(new_action("a1", "dev_a", ActionState::Pending))
            .await,
        Err(StoreError::AlreadyExists { kind: "action", .. })
    ));
    assert!(matches!(
        s.create_action(new_action("x", "ghost", ActionState::Pending))
            .await,
        Err(StoreError::NotFound { kind: "device", .. })
    ));
    assert!(matches!(
        s.create_action(new_action("y", "ghost", ActionState::NotSupported))
            .await,
        Err(StoreError::NotFound { kind: "device", .. })
    ));
    // The refused duplicate did not burn a sequence number.
    let a4 = s
        .create_action(new_action("a4", "dev_a", ActionState::Pending))
        .await
        .unwrap();
    assert_eq!(a4.sequence, Some(3));
}

#[tokio::test]
async fn an_action_keeps_its_traceparent_through_every_read_and_change() {
    let f = fixture().await;
    let s = &f.store;
    enroll(s, "dev_a", 1).await;
    let mut new = new_action("a1", "dev_a", ActionState::Pending);
    new.traceparent =
        TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
    let created = s.create_action(new.clone()).await.unwrap();
    assert_eq!(created.traceparent, Some(new.traceparent));
    assert_eq!(created.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
    let read = s.get_action("a1").await.unwrap().unwrap();
    assert_eq!(read.traceparent, Some(new.traceparent));
    let changed = s
        .transition_action(
            "a1",
            &[ActionState::Pending],
            ActionState::Active,
            ActionUpdate::default(),
            T0 + 1,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(changed.traceparent, Some(new.traceparent));
    let state = s.session_state().await.unwrap();
    let open = &state[0].open_commands[0].action;
    assert_eq!(open.traceparent, Some(new.traceparent));
}

#[tokio::test]
async fn actions_are_listed_and_transitioned_by_compare_and_set() {
    let f = fixture().await;
    let s = &f.store;
    enroll(s, "dev_a", 1).await;
    enroll(s, "dev_b", 2).await;
    for (i, (id, device)) in [("a1", "dev_a"), ("b1", "dev_b"), ("a2", "dev_a")]
        .into_iter()
        .enumerate()
    {
        let mut action = new_action(id, device, ActionState::Pending);
        action.created_at = T0 + i as Millis;
        action.not_after = T0 + 1_000 * (i as Millis + 1);
        s.create_action(action).await.unwrap();
    }
    let ids = |actions: Vec<Action>| actions.into_iter().map(|a| a.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s
            .list_actions(None, None, &PageQuery::first(1000))
            .await
            .unwrap()
            .items),
        ["a2", "b1", "a1"]
    );
    assert_eq!(
        ids(s
            .list_actions(Some("dev_a"), None, &PageQuery::first(1000))
            .await
            .unwrap()
            .items),
        ["a2", "a1"]
    );
    assert_eq!(ids(s.open_commands("dev_a").await.unwrap()), ["a1", "a2"]);
    assert!(s.get_action("nope").await.unwrap().is_none());

    // Delivered: pending → active.
    let active = s
        .transition_action(
            "a1",
            &[ActionState::Pending],
            ActionState::Active,
            ActionUpdate {
                delivered_at: Some(T0 + 10),
                ..ActionUpdate::default()
            },
            T0 + 10,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(active.state, ActionState::Active);
    assert_eq!(active.delivered_at, Some(T0 + 10));
    assert_eq!(active.updated_at, T0 + 10);
    // Cancel from pending only: refused now, and nothing changes.
    let refused = s
        .transition_action(
            "a1",
            &[ActionState::Pending],
            ActionState::Canceled,
            ActionUpdate::default(),
            T0 + 20,
        )
        .await
        .unwrap();
    assert!(refused.is_none());
    assert_eq!(s.get_action("a1").await.unwrap().unwrap(), active);
    // Unknown action: also None.
    assert!(
        s.transition_action(
            "nope",
            &ActionState::ALL,
            ActionState::Done,
            ActionUpdate::default(),
            T0
        )
        .await
        .unwrap()
        .is_none()
    );
    // Failed: fields are set, unset ones keep their value.
    let failed = s
        .transition_action(
            "a1",
            &[ActionState::Pending, ActionState::Active],
            ActionState::Failed,
            ActionUpdate {
                error_code: Some(ErrorCode::TokenNotActive),
                reason: Some("the reset token is not active".into()),
                completed_at: Some(T0 + 30),
                ..ActionUpdate::default()
            },
            T0 + 30,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failed.state, ActionState::Failed);
    assert_eq!(failed.error_code, Some(ErrorCode::TokenNotActive));
    assert_eq!(failed.reason, "the reset token is not active");
    assert_eq!(failed.delivered_at, Some(T0 + 10));
    assert_eq!(failed.completed_at, Some(T0 + 30));
    assert_eq!(ids(s.open_commands("dev_a").await.unwrap()), ["a2"]);

    // Overdue: open actions whose not_after is before now (a1 is final).
    assert_eq!(ids(s.overdue_actions(T0 + 2_001).await.unwrap()), ["b1"]);
    assert_eq!(
        ids(s.overdue_actions(T0 + 3_001).await.unwrap()),
        ["b1", "a2"]
    );
    assert!(s.overdue_actions(T0 + 1_000).await.unwrap().is_empty());

    // The user entered the new passcode of a done reset.
    s.transition_action(
        "a2",
        &[ActionState::Pending, ActionState::Active],
        ActionState::Done,
        ActionUpdate::default(),
        T0 + 40,
    )
    .await
    .unwrap()
    .unwrap();
    let entered = s.set_user_entered("dev_a", "a2", T0 + 50).await.unwrap();
    let done = s.get_action("a2").await.unwrap().unwrap();
    assert_eq!(entered, done);
    assert_eq!(done.state, ActionState::Done);
    assert_eq!(done.user_entered_at, Some(T0 + 50));
    assert!(matches!(
        s.set_user_entered("dev_a", "nope", T0).await,
        Err(StoreError::NotFound { kind: "action", .. })
    ));
    // Another device's action is not found either, and stays as it was.
    assert!(matches!(
        s.set_user_entered("dev_a", "b1", T0).await,
        Err(StoreError::NotFound { kind: "action", .. })
    ));
    assert_eq!(
        s.get_action("b1").await.unwrap().unwrap().user_entered_at,
        None
    );
}

#[tokio::test]
async fn passcodes_are_visible_for_their_window_then_purged_from_the_files() {
    let f = fixture().await;
    let s = &f.store;
    enroll(s, "dev_a", 1).await;
    let sealed = random_bytes(44);
    let kept = random_bytes(44);
    let until = T0 + 7 * DAY;
    let mut action = new_action("a1", "dev_a", ActionState::Pending);
    action.sealed_passcode = Some((sealed.clone(), until));
    let created = s.create_action(action).await.unwrap();
    assert_eq!(created.passcode_visible_until, Some(until));
    let mut later = new_action("a2", "dev_a", ActionState::Pending);
    later.sealed_passcode = Some((kept.clone(), until + DAY));
    s.create_action(later).await.unwrap();

    assert_eq!(
        s.sealed_passcode("a1", T0).await.unwrap(),
        Some(sealed.clone())
    );
    assert_eq!(
        s.sealed_passcode("a1", until - 1).await.unwrap(),
        Some(sealed.clone())
    );
    assert_eq!(s.sealed_passcode("a1", until).await.unwrap(), None);
    assert_eq!(s.sealed_passcode("nope", T0).await.unwrap(), None);
    assert!(
        on_disk(&f.path, &sealed),
        "the test must see the bytes before purging"
    );

    assert_eq!(s.purge_passcodes(until - 1).await.unwrap(), 0);
    assert_eq!(s.purge_passcodes(until).await.unwrap(), 1);
    assert_eq!(s.purge_passcodes(until).await.unwrap(), 0);
    let purged = s.get_action("a1").await.unwrap().unwrap();
    assert_eq!(purged.passcode_visible_until, None);
    assert_eq!(s.sealed_passcode("a1", T0).await.unwrap(), None);
    assert!(
        !on_disk(&f.path, &sealed),
        "purged passcode bytes remain on disk"
    );
    // The other passcode is untouched.
    assert_eq!(
        s.sealed_passcode("a2", until).await.unwrap(),
        Some(kept.clone())
    );
    assert!(on_disk(&f.path, &kept));
}

#[tokio::test]
async fn a_failing_transition_can_purge_the_passcode_at_once() {
    let f = fixture().await;
    let s = &f.store;
    enroll(s, "dev_a", 1).await;
    let sealed = random_bytes(44);
    let mut action = new_action("a1", "dev_a", ActionState::Pending);
    action.sealed_passcode = Some((sealed.clone(), T0 + 7 * DAY));
    s.create_action(action).await.unwrap();
    // A refused transition does not purge.
    let refused = s
        .transition_action(
            "a1",
            &[ActionState::Active],
            ActionState::Failed,
            ActionUpdate {
                purge_passcode: true,
                ..ActionUpdate::default()
            },
            T0 + 1,
        )
        .await
        .unwrap();
    assert!(refused.is_none());
    assert!(s.sealed_passcode("a1", T0 + 1).await.unwrap().is_some());

    let failed = s
        .transition_action(
            "a1",
            &[ActionState::Pending, ActionState::Active],
            ActionState::Failed,
            ActionUpdate {
                error_code: Some(ErrorCode::TokenMismatch),
                purge_passcode: true,
                ..ActionUpdate::default()
            },
            T0 + 2,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failed.passcode_visible_until, None);
    assert!(s.sealed_passcode("a1", T0 + 2).await.unwrap().is_none());
    assert!(!on_disk(&f.path, &sealed));
}

#[tokio::test]
async fn a_sent_command_cannot_be_canceled_and_a_late_success_clears_its_expiry() {
    let f = fixture().await;
    let s = &f.store;
    enroll(s, "dev_a", 1).await;
    s.create_action(new_action("a1", "dev_a", ActionState::Pending))
        .await
        .unwrap();
    let unsent_only = || ActionUpdate {
        only_if_unsent: true,
        ..ActionUpdate::default()
    };
    let sent = s
        .transition_action(
            "a1",
            &[ActionState::Pending],
            ActionState::Pending,
            ActionUpdate {
                sent_at: Some(T0 + 5),
                ..ActionUpdate::default()
            },
            T0 + 5,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sent.sent_at, Some(T0 + 5));
    assert_eq!(
        s.get_action("a1").await.unwrap().unwrap().sent_at,
        Some(T0 + 5)
    );
    // Still pending, but sent: a cancel of an unsent command does not apply.
    let refused = s
        .transition_action(
            "a1",
            &[ActionState::Pending],
            ActionState::Canceled,
            unsent_only(),
            T0 + 6,
        )
        .await
        .unwrap();
    assert!(refused.is_none());
    let expired = s
        .transition_action(
            "a1",
            &[ActionState::Pending],
            ActionState::Expired,
            ActionUpdate {
                error_code: Some(ErrorCode::Expired),
                ..ActionUpdate::default()
            },
            T0 + 7,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(expired.error_code, Some(ErrorCode::Expired));
    let done = s
        .transition_action(
            "a1",
            &[ActionState::Expired],
            ActionState::Done,
            ActionUpdate {
                clear_error_code: true,
                reason: Some("late".into()),
                ..ActionUpdate::default()
            },
            T0 + 8,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.state, ActionState::Done);
    assert_eq!(done.error_code, None);
    assert_eq!(done.sent_at, Some(T0 + 5));

    // A command never sent is canceled by the same update.
    s.create_action(new_action("a2", "dev_a", ActionState::Pending))
        .await
        .unwrap();
    let canceled = s
        .transition_action(
            "a2",
            &[ActionState::Pending],
            ActionState::Canceled,
            unsent_only(),
            T0 + 9,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(canceled.state, ActionState::Canceled);
    assert_eq!(canceled.sent_at, None);
}
