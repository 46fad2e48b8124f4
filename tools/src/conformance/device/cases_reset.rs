//! Device cases about policies, the reset itself (its refusals, its order of reports, the token
//! it rotates), the user's part (played through the harness when the device serves one),
//! persistence, remote lock and reconnecting. They run in this order because each leaves the
//! device where the next one starts: the first reset leaves a pending token, the user's entry
//! activates it again.

use super::super::catalogue::{CaseInfo, Need};
use super::super::runner::{Case, CaseResult, Outcome, ensure, fail};
use super::super::transcript::error_code;
use super::DeviceCtx;
use super::cases_commands::case;
use super::commands::{self, default_policy, good_passcodes, violations};
use droidfleet_proto::v1 as pb;
use std::time::Duration;

pub(super) static CASES: &[Case<DeviceCtx>] = &[
    Case {
        info: CaseInfo {
            id: "dev.policy.applied",
            title: "The harness shows each store's policy as the control plane sent it",
            requirements: &["DEV-POLICY-1"],
            tags: &["policy", "harness"],
            needs: &[Need::Harness],
            quick: false,
        },
        run: case!(policy_applied),
    },
    Case {
        info: CaseInfo {
            id: "dev.policy.user_refused",
            title: "The user cannot set a passcode the store's policy forbids",
            requirements: &["DEV-POLICY-1", "DEV-PASSCODE-1"],
            tags: &["policy", "harness"],
            needs: &[Need::Harness],
            quick: false,
        },
        run: case!(user_refused),
    },
    Case {
        info: CaseInfo {
            id: "dev.reset.refusals",
            title: "A reset with a wrong token or a passcode breaking a rule is refused and changes nothing",
            requirements: &[
                "DEV-RESET-1",
                "DEV-POLICY-1",
                "DEV-PASSCODE-1",
                "DEV-PASSCODE-2",
                "DEV-PASSCODE-3",
                "DEV-PASSCODE-4",
            ],
            tags: &["reset", "policy"],
            needs: &[],
            quick: false,
        },
        run: case!(refusals),
    },
    Case {
        info: CaseInfo {
            id: "dev.reset.applies",
            title: "A reset escrows the rotated token and reports status before its result",
            requirements: &[
                "DEV-RESET-2",
                "DEV-RESET-3",
                "DEV-RESET-4",
                "DEV-STATUS-1",
                "DEV-TOKEN-1",
                "DEV-TOKEN-4",
            ],
            tags: &["reset"],
            needs: &[],
            quick: true,
        },
        run: case!(applies),
    },
    Case {
        info: CaseInfo {
            id: "dev.reset.token_not_active",
            title: "A reset with the pending rotated token is refused token_not_active",
            requirements: &["DEV-TOKEN-3", "DEV-RESET-1"],
            tags: &["reset", "tokens"],
            needs: &[],
            quick: false,
        },
        run: case!(token_not_active),
    },
    Case {
        info: CaseInfo {
            id: "dev.user.entry",
            title: "Entering the new passcode clears require-entry and the notification and activates the token",
            requirements: &["DEV-RESET-4", "DEV-RESET-5", "DEV-TOKEN-2"],
            tags: &["reset", "user", "harness"],
            needs: &[Need::Harness],
            quick: false,
        },
        run: case!(user_entry),
    },
    Case {
        info: CaseInfo {
            id: "dev.user.keeps_data",
            title: "The store's data survives a reset",
            requirements: &["DEV-RESET-2"],
            tags: &["reset", "user", "harness"],
            needs: &[Need::Harness],
            quick: false,
        },
        run: case!(keeps_data),
    },
    Case {
        info: CaseInfo {
            id: "dev.persist.reboot",
            title: "After a reboot a redelivered reset is answered from the record, not run again",
            requirements: &["DEV-PERSIST-1", "DEV-CMD-7"],
            tags: &["reset", "persistence", "harness"],
            needs: &[Need::Harness],
            quick: false,
        },
        run: case!(reboot),
    },
    Case {
        info: CaseInfo {
            id: "dev.lock",
            title: "A remote lock locks a store with a passcode, reported before its result; none refuses",
            requirements: &["DEV-LOCK-1", "DEV-STATUS-1"],
            tags: &["lock"],
            needs: &[Need::RemoteLock],
            quick: false,
        },
        run: case!(lock),
    },
    Case {
        info: CaseInfo {
            id: "dev.session.reconnect",
            title: "After its session ends the device reconnects with growing backoff, without enrolling again",
            requirements: &[
                "DEV-SESSION-3",
                "DEV-ENROLL-1",
                "DEV-SESSION-1",
                "DEV-TOKEN-1",
            ],
            tags: &["session"],
            needs: &[],
            quick: false,
        },
        run: case!(reconnect),
    },
];

/// The reset store's escrowed token, once the token is active: with a harness the kit enters
/// the passcode it knows to activate a pending token; otherwise the case does not apply.
async fn active_token(ctx: &mut DeviceCtx) -> Result<Vec<u8>, Outcome> {
    // Whatever the device reported so far (its escrows, its status) is in once this is answered.
    ctx.barrier().await?;
    let scope = ctx.reset_scope();
    let state = ctx.store(scope).map(|s| s.token_state).unwrap_or_default();
    if state == pb::TokenState::Pending as i32 {
        let known = ctx.passcodes.get(&(scope as i32)).cloned();
        match (ctx.harness.as_mut(), known) {
            (Some(harness), Some(passcode)) => {
                let entered = harness.enter_passcode(scope, &passcode).await?;
                ensure!(
                    entered.unlocked,
                    "the harness refused the passcode the kit set: {}",
                    entered.message
                );
                wait_for_store(ctx, "the token to become ACTIVE", |s| {
                    s.token_state == pb::TokenState::Active as i32
                })
                .await?;
            }
            _ => {
                return Err(Outcome::NotApplicable(
                    "the store's token is pending and the kit cannot play the user to activate \
                     it (no harness, or a passcode the kit did not set)"
                        .into(),
                ));
            }
        }
    }
    let state = ctx.store(scope).map(|s| s.token_state).unwrap_or_default();
    if state != pb::TokenState::Active as i32 {
        return Err(Outcome::NotApplicable(format!(
            "the reset store's token is {:?}, not ACTIVE",
            pb::TokenState::try_from(state).unwrap_or_default()
        )));
    }
    ctx.escrowed(scope).ok_or_else(|| {
        fail("the store reports an active token but the device never escrowed it (DEV-TOKEN-1)")
    })
}

/// Reads the device's messages until the reset store's latest status satisfies `holds`.
async fn wait_for_store(
    ctx: &mut DeviceCtx,
    what: &str,
    holds: impl Fn(&pb::StoreStatus) -> bool,
) -> Result<Vec<pb::DeviceMessage>, Outcome> {
    let scope = ctx.reset_scope();
    let mut seen = Vec::new();
    while !ctx.store(scope).is_some_and(|s| holds(&s)) {
        seen.push(ctx.next_message(what).await?);
    }
    Ok(seen)
}

/// A passcode of the reset store's policy that is not the one the kit last set.
fn fresh_passcode(ctx: &DeviceCtx) -> &'static str {
    let scope = ctx.reset_scope();
    let known = ctx.passcodes.get(&(scope as i32));
    let [first, second] = good_passcodes(scope);
    if known.map(String::as_str) == Some(first) {
        second
    } else {
        first
    }
}

async fn policy_applied(ctx: &mut DeviceCtx) -> CaseResult {
    let scope = ctx.reset_scope();
    let stricter = pb::PasscodePolicy {
        min_length: default_policy(scope).min_length + 2,
        ..default_policy(scope)
    };
    for policy in [stricter, default_policy(scope)] {
        ctx.send_policy(scope, Some(policy)).await?;
        ctx.barrier().await?;
        let harness = ctx.harness.as_mut().ok_or_else(|| fail("no harness"))?;
        let screen = harness.screen().await?;
        let shown = screen
            .policies
            .iter()
            .find(|p| p.scope == scope as i32)
            .and_then(|p| p.policy);
        ensure!(
            shown == Some(policy),
            "after a PolicyUpdate and a later command, the harness shows the {scope:?} store's \
             policy as {shown:?}, not {policy:?} (DEV-POLICY-1)"
        );
    }
    Ok(())
}

async fn user_refused(ctx: &mut DeviceCtx) -> CaseResult {
    let scope = ctx.reset_scope();
    let current = ctx.passcodes.get(&(scope as i32)).cloned();
    let has_passcode = ctx.store(scope).is_some_and(|s| s.has_passcode);
    if has_passcode && current.is_none() {
        return Err(Outcome::NotApplicable(
            "the store has a passcode the kit did not set".into(),
        ));
    }
    // Too short for either default policy.
    let short = "58302";
    let harness = ctx.harness.as_mut().ok_or_else(|| fail("no harness"))?;
    let outcome = harness.set_passcode(scope, current.as_deref(), short).await;
    match outcome {
        Ok(_) => Err(fail(
            "the harness let the user set a 5-character passcode under a policy with a minimum of \
             6 or more (DEV-POLICY-1, DEV-PASSCODE-1)",
        )),
        Err(status) if status.code() == tonic::Code::FailedPrecondition => {
            let screen = harness.screen().await?;
            let store = screen.stores.iter().find(|s| s.scope == scope as i32);
            ensure!(
                store.is_some_and(|s| s.has_passcode == has_passcode),
                "a refused passcode changed whether the store has a passcode"
            );
            Ok(())
        }
        Err(status) => Err(fail(format!(
            "the harness answered a passcode that breaks the policy with {:?} ({}), not \
             FAILED_PRECONDITION",
            status.code(),
            status.message()
        ))),
    }
}

async fn refusals(ctx: &mut DeviceCtx) -> CaseResult {
    let token = active_token(ctx).await?;
    let scope = ctx.reset_scope();
    let stores_before = ctx.view.stores.clone();
    let mut seen = Vec::new();
    let wrong = ctx.reset_command(fresh_passcode(ctx), vec![0x55; 32]);
    let (before, result) = ctx.exchange(&wrong, true).await?;
    seen.extend(before);
    ensure!(
        !result.success && result.error_code == pb::ErrorCode::TokenMismatch as i32,
        "a reset with a token that is not the store's was answered {} instead of \
         TOKEN_MISMATCH (DEV-RESET-1)",
        if result.success {
            "success".into()
        } else {
            error_code(result.error_code)
        }
    );
    for violation in violations() {
        ctx.transcript
            .record("kit", format!("the next reset breaks {}", violation.rule));
        ctx.send_policy(scope, Some(violation.policy)).await?;
        let command = ctx.reset_command(violation.passcode, token.clone());
        let (before, result) = ctx.exchange(&command, true).await?;
        seen.extend(before);
        ensure!(
            !result.success && result.error_code == pb::ErrorCode::PasscodePolicyViolation as i32,
            "a reset breaking {} was answered {} instead of PASSCODE_POLICY_VIOLATION",
            violation.rule,
            if result.success {
                "success: the passcode was set".into()
            } else {
                error_code(result.error_code)
            }
        );
    }
    ctx.send_policy(scope, Some(default_policy(scope))).await?;
    seen.extend(ctx.barrier().await?);
    ensure!(
        !seen
            .iter()
            .any(|m| matches!(m.body, Some(pb::device_message::Body::EscrowToken(_)))),
        "escrowed a new token while refusing resets: a refused reset must change nothing \
         (DEV-RESET-1)"
    );
    ensure!(
        ctx.view.stores == stores_before,
        "the store's status changed while the device refused resets (DEV-RESET-1)"
    );
    Ok(())
}

async fn applies(ctx: &mut DeviceCtx) -> CaseResult {
    let token = active_token(ctx).await?;
    let scope = ctx.reset_scope();
    let passcode = fresh_passcode(ctx);
    let command = ctx.reset_command(passcode, token.clone());
    let (before, result) = ctx.exchange(&command, true).await?;
    ensure!(
        result.success,
        "a reset with the store's active token and a passcode meeting its policy failed: {} \
         ({})",
        error_code(result.error_code),
        result.reason
    );
    ctx.passcodes.insert(scope as i32, passcode.to_string());
    ctx.last_reset = Some((command.clone(), result.clone()));
    let escrow_at = before.iter().position(|m| {
        matches!(&m.body, Some(pb::device_message::Body::EscrowToken(e)) if e.scope == scope as i32)
    });
    let status_at = before.iter().rposition(|m| {
        matches!(&m.body, Some(pb::device_message::Body::Status(s))
            if s.stores.iter().any(|st| st.scope == scope as i32))
    });
    let Some(escrow_at) = escrow_at else {
        return Err(fail(
            "the reset's result came without the rotated token escrowed before it (DEV-RESET-2, \
             DEV-RESET-3)",
        ));
    };
    let Some(status_at) = status_at else {
        return Err(fail(
            "the reset's result came without a DeviceStatus showing the store before it \
             (DEV-RESET-3, DEV-STATUS-1)",
        ));
    };
    ensure!(
        escrow_at < status_at,
        "after the reset the device sent its status before escrowing the rotated token; the \
         order is ack, escrow, status, result (DEV-RESET-3)"
    );
    let Some(pb::device_message::Body::EscrowToken(escrow)) = &before[escrow_at].body else {
        return Err(fail("the kit lost the escrow it found"));
    };
    ensure!(
        escrow.token != token && (32..=1024).contains(&escrow.token.len()),
        "the token escrowed after the reset is the used one, or not 32 to 1024 bytes \
         (DEV-RESET-2)"
    );
    let Some(pb::device_message::Body::Status(status)) = &before[status_at].body else {
        return Err(fail("the kit lost the status it found"));
    };
    let store = status
        .stores
        .iter()
        .find(|s| s.scope == scope as i32)
        .cloned()
        .unwrap_or_default();
    ensure!(
        store.has_passcode && store.require_entry && store.locked,
        "after a reset with REQUIRE_ENTRY the store reports has_passcode={} require_entry={} \
         locked={}; all must be true (DEV-RESET-4)",
        store.has_passcode,
        store.require_entry,
        store.locked
    );
    ensure!(
        store.token_state == pb::TokenState::Pending as i32,
        "after a reset the rotated token is {:?}, not PENDING: the store has a passcode now \
         (DEV-RESET-2, DEV-TOKEN-3)",
        pb::TokenState::try_from(store.token_state).unwrap_or_default()
    );
    // DEV-TOKEN-4 is a SHOULD: a device may leave the fingerprint empty, but one it reports
    // must name the token it just escrowed, or a control plane holds its resets for a token
    // that never comes.
    let fingerprint =
        ring::digest::digest(&ring::digest::SHA256, &escrow.token).as_ref()[..8].to_vec();
    ensure!(
        store.escrow_token_fingerprint.is_empty() || store.escrow_token_fingerprint == fingerprint,
        "after the reset the status names the token {:02x?}, not the one escrowed ({:02x?}, the \
         first 8 bytes of its SHA-256) (DEV-TOKEN-4)",
        store.escrow_token_fingerprint,
        fingerprint
    );
    Ok(())
}

async fn token_not_active(ctx: &mut DeviceCtx) -> CaseResult {
    let scope = ctx.reset_scope();
    let pending = ctx
        .store(scope)
        .is_some_and(|s| s.token_state == pb::TokenState::Pending as i32);
    let Some(token) = ctx.escrowed(scope).filter(|_| pending) else {
        return Err(Outcome::NotApplicable(
            "the store has no pending token (dev.reset.applies leaves one)".into(),
        ));
    };
    let stores_before = ctx.view.stores.clone();
    let command = ctx.reset_command(fresh_passcode(ctx), token);
    let (before, result) = ctx.exchange(&command, true).await?;
    ensure!(
        !result.success && result.error_code == pb::ErrorCode::TokenNotActive as i32,
        "a reset with the pending rotated token was answered {} instead of TOKEN_NOT_ACTIVE \
         (DEV-TOKEN-3)",
        if result.success {
            "success".into()
        } else {
            error_code(result.error_code)
        }
    );
    let after = ctx.barrier().await?;
    ensure!(
        !before
            .iter()
            .chain(&after)
            .any(|m| matches!(m.body, Some(pb::device_message::Body::EscrowToken(_))))
            && ctx.view.stores == stores_before,
        "a reset refused for a pending token changed the device (DEV-RESET-1)"
    );
    Ok(())
}

async fn user_entry(ctx: &mut DeviceCtx) -> CaseResult {
    let scope = ctx.reset_scope();
    let Some((reset, _)) = ctx.last_reset.clone() else {
        return Err(Outcome::NotApplicable(
            "no reset applied in this run (dev.reset.applies makes one)".into(),
        ));
    };
    let Some(passcode) = ctx.passcodes.get(&(scope as i32)).cloned() else {
        return Err(fail("the kit lost the passcode it set"));
    };
    let notification = format!(
        "enter-new-passcode/{}",
        match scope {
            pb::CredentialScope::WorkProfile => "work_profile",
            _ => "device",
        }
    );
    let harness = ctx.harness.as_mut().ok_or_else(|| fail("no harness"))?;
    let screen = harness.screen().await?;
    let store = screen.stores.iter().find(|s| s.scope == scope as i32);
    if !store.is_some_and(|s| s.require_entry) {
        return Err(Outcome::NotApplicable(
            "the last reset's passcode was already entered".into(),
        ));
    }
    if scope == pb::CredentialScope::WorkProfile {
        ensure!(
            screen.notifications.iter().any(|n| n.id == notification),
            "after a work-profile reset the screen shows no {notification:?} notification \
             (DEV-RESET-4)"
        );
    }
    let entered = harness.enter_passcode(scope, &passcode).await?;
    ensure!(
        entered.unlocked,
        "the new passcode did not unlock the store: {}",
        entered.message
    );
    let screen = entered.screen.unwrap_or_default();
    ensure!(
        !screen.notifications.iter().any(|n| n.id == notification),
        "the {notification:?} notification is still shown after the user entered the new \
         passcode (DEV-RESET-5)"
    );
    // The entry's report, and the status that shows the token active and entry no longer asked.
    let mut event = None;
    while event.is_none()
        || !ctx
            .store(scope)
            .is_some_and(|s| s.token_state == pb::TokenState::Active as i32 && !s.require_entry)
    {
        let message = ctx
            .next_message("the UserEvent and the status after the user's entry")
            .await?;
        if let Some(pb::device_message::Body::UserEvent(e)) = message.body {
            event = Some(e);
        }
    }
    let event = event.unwrap_or_default();
    ensure!(
        event.kind == pb::user_event::Kind::NewPasscodeEntered as i32
            && event.command_id == reset.id
            && event.scope == scope as i32,
        "the user's entry was reported as kind {} for command {:?}, store {}; expected \
         NEW_PASSCODE_ENTERED for {:?} (DEV-RESET-5)",
        event.kind,
        event.command_id,
        event.scope,
        reset.id
    );
    ensure!(
        event.at_ms != 0,
        "the user's entry was reported with at_ms 0 (DEV-RESET-5)"
    );
    Ok(())
}

async fn keeps_data(ctx: &mut DeviceCtx) -> CaseResult {
    let token = active_token(ctx).await?;
    let scope = ctx.reset_scope();
    let value = format!("conformance note {}", super::now_ms()).into_bytes();
    let harness = ctx.harness.as_mut().ok_or_else(|| fail("no harness"))?;
    harness
        .write_data(scope, "conformance-note", &value)
        .await?;
    let passcode = fresh_passcode(ctx);
    let command = ctx.reset_command(passcode, token);
    let (_, result) = ctx.exchange(&command, true).await?;
    ensure!(
        result.success,
        "a reset with an active token failed: {} ({})",
        error_code(result.error_code),
        result.reason
    );
    ctx.passcodes.insert(scope as i32, passcode.to_string());
    ctx.last_reset = Some((command, result));
    let harness = ctx.harness.as_mut().ok_or_else(|| fail("no harness"))?;
    let entered = harness.enter_passcode(scope, passcode).await?;
    ensure!(
        entered.unlocked,
        "the new passcode did not unlock the store: {}",
        entered.message
    );
    let read = harness.read_data(scope, "conformance-note").await?;
    ensure!(
        read.as_deref() == Some(value.as_slice()),
        "the data written before the reset reads back as {} after it (DEV-RESET-2)",
        match read {
            None => "nothing".to_string(),
            Some(other) => format!("{} other bytes", other.len()),
        }
    );
    wait_for_store(ctx, "the token to become ACTIVE after the entry", |s| {
        s.token_state == pb::TokenState::Active as i32
    })
    .await?;
    Ok(())
}

async fn reboot(ctx: &mut DeviceCtx) -> CaseResult {
    let Some((reset, recorded)) = ctx.last_reset.clone() else {
        return Err(Outcome::NotApplicable(
            "no reset applied in this run (dev.reset.applies makes one)".into(),
        ));
    };
    let harness = ctx.harness.as_mut().ok_or_else(|| fail("no harness"))?;
    harness.reboot().await?;
    ctx.transcript.record(
        "kit",
        "delivers the last applied reset again after the reboot",
    );
    let (_, again) = ctx.exchange(&reset, true).await?;
    ensure!(
        again == recorded,
        "after a reboot the redelivered reset was answered {} (completed_at_ms {}), not with the \
         recorded result {} (completed_at_ms {}): the device did not persist its answer before \
         reporting it (DEV-PERSIST-1, DEV-CMD-7)",
        if again.success {
            "success".into()
        } else {
            error_code(again.error_code)
        },
        again.completed_at_ms,
        if recorded.success {
            "success".into()
        } else {
            error_code(recorded.error_code)
        },
        recorded.completed_at_ms
    );
    let harness = ctx.harness.as_mut().ok_or_else(|| fail("no harness"))?;
    let screen = harness.screen().await?;
    let applied = screen.applied_commands.get(&reset.id).copied();
    ensure!(
        applied == Some(1),
        "after a reboot and a redelivery the harness shows the reset applied {applied:?} times, \
         not once (DEV-PERSIST-1)"
    );
    Ok(())
}

async fn lock(ctx: &mut DeviceCtx) -> CaseResult {
    let scope = ctx.reset_scope();
    // With a harness and a passcode the kit knows, unlock first so the lock is a change to see.
    let known = ctx.passcodes.get(&(scope as i32)).cloned();
    let locked = ctx.store(scope).is_some_and(|s| s.locked);
    if let (Some(harness), Some(passcode), true) = (ctx.harness.as_mut(), known, locked) {
        let entered = harness.enter_passcode(scope, &passcode).await?;
        ensure!(
            entered.unlocked,
            "the kit's passcode did not unlock: {}",
            entered.message
        );
        wait_for_store(ctx, "the store to report unlocked", |s| !s.locked).await?;
    }
    let was = ctx.store(scope).unwrap_or_default();
    let body = ctx.body(commands::remote_lock(scope));
    let command = ctx.sign(&body);
    let (before, result) = ctx.exchange(&command, true).await?;
    if !was.has_passcode {
        // Nothing a lock could protect: refused, and nothing changes.
        ensure!(
            !result.success && result.error_code == pb::ErrorCode::NoPasscode as i32,
            "a remote lock of the {scope:?} store, which has no passcode, was answered {}, not \
             no_passcode (DEV-LOCK-1)",
            if result.success {
                "success".into()
            } else {
                error_code(result.error_code)
            }
        );
        let now = ctx.store(scope).unwrap_or_default();
        ensure!(
            !now.locked,
            "a refused remote lock left the store without a passcode locked (DEV-LOCK-1)"
        );
        return Ok(());
    }
    ensure!(
        result.success,
        "a remote lock of the {scope:?} store failed: {} ({})",
        error_code(result.error_code),
        result.reason
    );
    if !was.locked {
        let reported = before.iter().any(|m| {
            matches!(&m.body, Some(pb::device_message::Body::Status(s))
                if s.stores.iter().any(|st| st.scope == scope as i32 && st.locked))
        });
        ensure!(
            reported,
            "the store was unlocked with a passcode, yet no DeviceStatus showed it locked before \
             the lock's result (DEV-LOCK-1, DEV-STATUS-1)"
        );
    }
    let now = ctx.store(scope).unwrap_or_default();
    ensure!(
        now.locked || !now.has_passcode,
        "after a remote lock the store with a passcode reports itself unlocked (DEV-LOCK-1)"
    );
    Ok(())
}

async fn reconnect(ctx: &mut DeviceCtx) -> CaseResult {
    const REFUSED: u32 = 3;
    let enrollments = ctx.view.enroll_requests.len();
    ctx.shared.state().refuse_sessions = REFUSED;
    ctx.end_session().await?;
    let ended = ctx
        .view
        .ended_by_kit
        .unwrap_or_else(std::time::Instant::now);
    let mut times = vec![ended];
    for _ in 0..=REFUSED {
        let (at, _) = ctx.next_event_attempt().await?;
        times.push(at);
    }
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let shown: Vec<String> = gaps
        .iter()
        .map(|g| format!("{} ms", g.as_millis()))
        .collect();
    ctx.transcript.record(
        "kit",
        format!("gaps between attempts: {}", shown.join(", ")),
    );
    ensure!(
        gaps.iter().all(|g| *g >= Duration::from_millis(90)),
        "the device retried after {}: it must wait at least 100 ms between attempts \
         (DEV-SESSION-3)",
        shown.join(", ")
    );
    ensure!(
        gaps[2] > gaps[0] && gaps[3] > gaps[1],
        "the waits between failed attempts did not grow ({}): the device must back off \
         (DEV-SESSION-3)",
        shown.join(", ")
    );
    // The accepted session: a Hello first, the tokens escrowed again, and no new enrollment.
    ctx.open_session().await?;
    ctx.barrier().await?;
    ensure!(
        ctx.view.enroll_requests.len() == enrollments,
        "the device enrolled again to reconnect (DEV-ENROLL-1)"
    );
    let session = ctx.session_number().unwrap_or_default();
    let messages = ctx.view.sessions.get(&session).cloned().unwrap_or_default();
    ensure!(
        matches!(
            messages.first().and_then(|m| m.body.as_ref()),
            Some(pb::device_message::Body::Hello(_))
        ),
        "the new session did not open with a Hello (DEV-SESSION-1)"
    );
    let with_token: Vec<i32> = ctx
        .view
        .stores
        .values()
        .filter(|s| s.token_state != pb::TokenState::None as i32)
        .map(|s| s.scope)
        .collect();
    for scope in with_token {
        ensure!(
            messages.iter().any(|m| matches!(&m.body,
                Some(pb::device_message::Body::EscrowToken(e)) if e.scope == scope)),
            "the new session escrowed no token for store {scope}, which has one (DEV-TOKEN-1)"
        );
    }
    Ok(())
}
