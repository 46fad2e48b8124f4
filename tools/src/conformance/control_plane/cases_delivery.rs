//! Control-plane cases about delivery: redelivery after a dropped session, order, time-to-live,
//! cancellation, a slow reader, and the whole flow with our simulated devices.

use super::super::catalogue::{CaseInfo, Need};
use super::super::runner::{Case, CaseResult, Outcome, ensure, fail, within};
use super::cases_session::case;
use super::raw::{RawDevice, RawSession, Synced, WAIT};
use super::{CpCtx, admin_failed, policy, state_name};
use droidfleet_agent::device::{Ownership, Passcode, Scope};
use droidfleet_agent::fleet::{DeviceSpec, Fleet, FleetConfig};
use droidfleet_proto::v1 as pb;
use std::sync::Arc;
use std::time::Duration;

const TOKEN: [u8; 32] = [11; 32];

pub(super) static CASES: &[Case<CpCtx>] = &[
    Case {
        info: CaseInfo {
            id: "cp.delivery.redeliver",
            title: "A command without a result is sent again, byte for byte, after a dropped session",
            requirements: &["CP-DELIVERY-1", "CP-DELIVERY-2"],
            tags: &["delivery"],
            needs: &[],
            quick: false,
        },
        run: case!(redeliver),
    },
    Case {
        info: CaseInfo {
            id: "cp.delivery.order",
            title: "Queued commands arrive in sequence order, again after a reconnect, and new ones at once",
            requirements: &["CP-DELIVERY-1"],
            tags: &["delivery"],
            needs: &[],
            quick: false,
        },
        run: case!(order),
    },
    Case {
        info: CaseInfo {
            id: "cp.delivery.ttl",
            title: "A command past its time-to-live is never sent, not even again, and ends expired",
            requirements: &["CP-DELIVERY-3"],
            tags: &["delivery", "slow"],
            needs: &[],
            quick: false,
        },
        run: case!(ttl),
    },
    Case {
        info: CaseInfo {
            id: "cp.delivery.cancel",
            title: "A canceled command is never sent",
            requirements: &["CP-DELIVERY-4"],
            tags: &["delivery"],
            needs: &[Need::Cancel],
            quick: false,
        },
        run: case!(cancel),
    },
    Case {
        info: CaseInfo {
            id: "cp.delivery.cancel_request",
            title: "A cancel of a sent command is a signed request the device's answer decides",
            requirements: &["CP-CANCEL-1", "CP-CANCEL-2"],
            tags: &["delivery", "cancel"],
            needs: &[Need::Cancel],
            quick: false,
        },
        run: case!(cancel_request),
    },
    Case {
        info: CaseInfo {
            id: "cp.delivery.slow_reader",
            title: "A device that stops reading loses nothing and delays no other device",
            requirements: &["CP-DELIVERY-5"],
            tags: &["delivery"],
            needs: &[],
            quick: false,
        },
        run: case!(slow_reader),
    },
    Case {
        info: CaseInfo {
            id: "cp.flow.simulated",
            title: "Our simulated devices of each enrollment type complete a reset, user entry included",
            requirements: &["CP-CMD-4", "CP-RESULT-1", "CP-USER-1"],
            tags: &["flow", "simulated"],
            needs: &[],
            quick: true,
        },
        run: case!(simulated),
    },
];

/// Syncs `session`, failing unless it stays open.
async fn synced(ctx: &CpCtx, session: &mut RawSession, device: &RawDevice) -> CaseResult {
    match session.sync(device, &ctx.admin).await? {
        Synced::Open => Ok(()),
        Synced::Ended(status) => Err(fail(format!(
            "the control plane ended a well-behaved session: {status:?}"
        ))),
    }
}

/// Checks that nothing but policies came on `session` before a new reset created now: the next
/// command is that reset.
async fn nothing_else_sent(
    ctx: &CpCtx,
    session: &mut RawSession,
    device: &RawDevice,
    not: &str,
) -> CaseResult {
    synced(ctx, session, device).await?;
    let marker = ctx.reset(device, 0).await?;
    let (_, next, _) = session.next_command("a reset created as a marker").await?;
    ensure!(
        next.command_id == marker.action_id,
        "the control plane sent {:?}, {not}",
        next.command_id
    );
    Ok(())
}

async fn redeliver(ctx: &mut CpCtx) -> CaseResult {
    let device = ctx.ready(pb::Ownership::Cosu, &TOKEN).await?;
    let action = ctx.reset(&device, 0).await?;
    let mut session = device.open().await?;
    let (_, first, first_signed) = session.next_command("the queued reset").await?;
    session.ack(&first.command_id).await;
    synced(ctx, &mut session, &device).await?;
    // The connection drops mid-command: acknowledged, no result.
    session.drop_connection();
    let mut session = device.open().await?;
    let (_, again, again_signed) = session.next_command("the redelivered reset").await?;
    ensure!(
        again.command_id == action.action_id,
        "after a dropped session the first command is {:?}, not the unanswered reset \
         (CP-DELIVERY-1)",
        again.command_id
    );
    ensure!(
        again_signed.body == first_signed.body && again_signed.signature == first_signed.signature,
        "the redelivered command is not byte for byte the first one (CP-DELIVERY-2)"
    );
    session.ack(&again.command_id).await;
    session.result(&again.command_id, None).await;
    synced(ctx, &mut session, &device).await?;
    let done = ctx.action(&action.action_id).await?;
    ensure!(
        done.state == pb::ActionState::Done as i32,
        "the redelivered reset did not end done: {}",
        state_name(done.state)
    );
    session.close().await;
    Ok(())
}

async fn order(ctx: &mut CpCtx) -> CaseResult {
    let device = ctx.ready(pb::Ownership::Cosu, &TOKEN).await?;
    let mut queued = Vec::new();
    for _ in 0..3 {
        queued.push(ctx.reset(&device, 0).await?.action_id);
    }
    for round in ["first", "second"] {
        let mut session = device.open().await?;
        let mut last = 0;
        for action in &queued {
            let (_, body, _) = session
                .next_command(&format!("the queued resets ({round} session)"))
                .await?;
            ensure!(
                &body.command_id == action && body.sequence > last,
                "on the {round} session {:?} (sequence {}) came where {action:?} was due, after \
                 sequence {last} (CP-DELIVERY-1)",
                body.command_id,
                body.sequence
            );
            last = body.sequence;
        }
        if round == "second" {
            let live = ctx.reset(&device, 0).await?;
            let (_, body, _) = session
                .next_command("a reset created while connected")
                .await?;
            ensure!(
                body.command_id == live.action_id,
                "a reset created while connected was not sent next: got {:?}",
                body.command_id
            );
        }
        session.drop_connection();
    }
    Ok(())
}

/// Waits until the wall clock is past `not_after_ms` (by 50 ms), bounded.
async fn past(not_after_ms: u64) -> Result<(), Outcome> {
    let now = super::super::device::now_ms();
    let wait = Duration::from_millis(not_after_ms.saturating_sub(now) + 50);
    ensure!(
        wait < Duration::from_secs(10),
        "the action's not_after_ms is {} s away",
        wait.as_secs()
    );
    tokio::time::sleep(wait).await;
    Ok(())
}

async fn ttl(ctx: &mut CpCtx) -> CaseResult {
    let device = ctx.ready(pb::Ownership::Cosu, &TOKEN).await?;
    // Delivered and acknowledged, then the session drops before the result.
    let acked = ctx.reset(&device, 1).await?;
    let mut session = device.open().await?;
    let (_, body, _) = session.next_command("the queued reset").await?;
    ensure!(
        body.command_id == acked.action_id,
        "expected the queued reset, got {:?}",
        body.command_id
    );
    session.ack(&body.command_id).await;
    synced(ctx, &mut session, &device).await?;
    session.drop_connection();
    // Queued while the device is offline, never delivered.
    let unsent = ctx.reset(&device, 1).await?;
    past(acked.not_after_ms.max(unsent.not_after_ms)).await?;
    let mut session = device.open().await?;
    nothing_else_sent(
        ctx,
        &mut session,
        &device,
        "a command whose time-to-live had passed (CP-DELIVERY-3)",
    )
    .await?;
    for action in [&acked, &unsent] {
        let state = ctx.action(&action.action_id).await?;
        ensure!(
            state.state == pb::ActionState::Expired as i32,
            "an action whose time-to-live passed without a result is {} (CP-DELIVERY-3)",
            state_name(state.state)
        );
    }
    session.close().await;
    Ok(())
}

async fn cancel(ctx: &mut CpCtx) -> CaseResult {
    let device = ctx.ready(pb::Ownership::Cosu, &TOKEN).await?;
    let action = ctx.reset(&device, 0).await?;
    let canceled = ctx
        .admin
        .cancel_action(&action.action_id)
        .await
        .map_err(admin_failed)?;
    ensure!(
        canceled.state == pb::ActionState::Canceled as i32,
        "canceling a pending action left it {}",
        state_name(canceled.state)
    );
    let mut session = device.open().await?;
    nothing_else_sent(
        ctx,
        &mut session,
        &device,
        "a canceled command (CP-DELIVERY-4)",
    )
    .await?;
    session.close().await;
    Ok(())
}

async fn cancel_request(ctx: &mut CpCtx) -> CaseResult {
    let device = ctx.ready(pb::Ownership::Cosu, &TOKEN).await?;
    let mut session = device.open().await?;
    synced(ctx, &mut session, &device).await?;
    let action = ctx.reset(&device, 0).await?;
    let (_, sent, _) = session.next_command("the reset to cancel").await?;
    // The device got the reset and has not answered: the admin's cancel is only a request.
    let requested = ctx
        .admin
        .cancel_action(&action.action_id)
        .await
        .map_err(admin_failed)?;
    ensure!(
        requested.cancel_requested_at_ms > 0 && requested.state != pb::ActionState::Canceled as i32,
        "canceling a sent command without the device's answer left it {} with \
         cancel_requested_at_ms {} (CP-CANCEL-1)",
        state_name(requested.state),
        requested.cancel_requested_at_ms
    );
    ensure!(
        ctx.admin.reveal_passcode(&action.action_id).await.is_ok(),
        "the passcode of a command with a cancel requested is no longer revealable: the device \
         may hold it (CP-CANCEL-1)"
    );
    let (_, cancel, _) = session.next_command("the signed cancel").await?;
    let cancel_id = format!("{}.cancel", action.action_id);
    ensure!(
        matches!(
            &cancel.kind,
            Some(pb::command_body::Kind::Cancel(named)) if named.command_id == action.action_id
        ) && cancel.command_id == cancel_id
            && cancel.sequence > sent.sequence
            && cancel.not_after_ms == sent.not_after_ms,
        "after the request the session carried {:?} ({:?}, sequence {} after {}) instead of a \
         cancel {cancel_id:?} naming the reset, with a higher sequence and its not_after_ms \
         (CP-CANCEL-1)",
        cancel.command_id,
        cancel.kind,
        cancel.sequence,
        sent.sequence
    );
    // The device never ran it and accepts.
    session.ack(&cancel_id).await;
    session.result(&cancel_id, None).await;
    let last = within(
        WAIT,
        "the action to end",
        ctx.admin.watch_action(&action.action_id, false, |_| {}),
    )
    .await?
    .map_err(admin_failed)?;
    ensure!(
        last.state == pb::ActionState::Canceled as i32,
        "an accepted cancel left the action {} (CP-CANCEL-2)",
        state_name(last.state)
    );
    ensure!(
        ctx.admin.reveal_passcode(&action.action_id).await.is_err(),
        "the passcode of a command the device canceled is still revealable (CP-CANCEL-2)"
    );
    session.close().await;
    Ok(())
}

async fn slow_reader(ctx: &mut CpCtx) -> CaseResult {
    const QUEUED: usize = 30;
    let slow = ctx.ready(pb::Ownership::Cosu, &TOKEN).await?;
    let other = ctx.ready(pb::Ownership::Cosu, &TOKEN).await?;
    let mut slow_session = slow.open().await?;
    let mut other_session = other.open().await?;
    synced(ctx, &mut other_session, &other).await?;
    // The slow device reads nothing while its commands pile up.
    let mut queued = Vec::new();
    for _ in 0..QUEUED {
        queued.push(ctx.reset(&slow, 0).await?.action_id);
    }
    let for_other = ctx.reset(&other, 0).await?;
    let (_, body, _) = other_session
        .next_command("the other device's reset while one device is not reading")
        .await?;
    ensure!(
        body.command_id == for_other.action_id,
        "the other device got {:?}",
        body.command_id
    );
    for action in &queued {
        let (_, body, _) = slow_session
            .next_command("the slow reader's queued resets")
            .await?;
        ensure!(
            &body.command_id == action,
            "the slow reader got {:?} where {action:?} was due: a command was lost or reordered \
             (CP-DELIVERY-5)",
            body.command_id
        );
    }
    slow_session.close().await;
    other_session.close().await;
    Ok(())
}

/// The agent's store for a protobuf scope.
fn scope_of(scope: pb::CredentialScope) -> Scope {
    match scope {
        pb::CredentialScope::WorkProfile => Scope::WorkProfile,
        _ => Scope::Device,
    }
}

async fn simulated(ctx: &mut CpCtx) -> CaseResult {
    let kinds: Vec<(String, Ownership)> = ctx
        .capabilities
        .enrollment_types()
        .into_iter()
        .filter_map(|kind| Some((kind.to_string(), Ownership::parse(kind)?)))
        .collect();
    let token = ctx
        .admin
        .create_enrollment_token(pb::CreateEnrollmentTokenRequest {
            max_uses: u32::try_from(kinds.len()).unwrap_or(5),
            ttl_seconds: 600,
            ..Default::default()
        })
        .await
        .map_err(admin_failed)?
        .enrollment_token;
    let run = ctx.run;
    let fleet = Fleet::load(FleetConfig {
        control_plane: ctx.gateway.clone(),
        state_dir: None,
        enrollment_token: Some(token),
        kdf: droidfleet_agent::device::KdfParams::LIGHT,
        devices: kinds
            .iter()
            .map(|(kind, ownership)| DeviceSpec {
                name: format!("conformance-{run}-{kind}"),
                ownership: *ownership,
                // The newest Android with AOSP behaviour: nothing version-specific to refuse.
                build: droidfleet_agent::device::Build::default(),
            })
            .collect(),
        clock: Arc::new(droidfleet_agent::clock::SystemClock),
        connections: 1,
        faults: Default::default(),
    })
    .await
    .map_err(|e| fail(format!("cannot host the simulated devices: {e}")))?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(fleet.clone().run(stopped));
    let outcome = play(ctx, &fleet, run, &kinds).await;
    let _ = stop.send(true);
    let _ = running.await;
    outcome
}

async fn play(
    ctx: &mut CpCtx,
    fleet: &Arc<Fleet>,
    run: u64,
    kinds: &[(String, Ownership)],
) -> CaseResult {
    for (kind, ownership) in kinds {
        let name = format!("conformance-{run}-{kind}");
        ctx.transcript
            .record("kit", format!("simulated {kind} device {name}"));
        let device_id = within(WAIT, format!("{name} to enroll and connect"), async {
            let mut changes = fleet.screen_changes();
            loop {
                if let Ok(screen) = fleet.screen(&name)
                    && let (Some(id), true) = (screen.device_id, screen.connected)
                {
                    return id;
                }
                let _ = changes.recv().await;
            }
        })
        .await?;
        let scope = if ownership.has_work_profile() {
            pb::CredentialScope::WorkProfile
        } else {
            pb::CredentialScope::Device
        };
        let escrowed = ctx.admin.wait_device(&device_id, |d| {
            d.escrowed_token_scopes.contains(&(scope as i32))
        });
        within(WAIT, format!("{name}'s escrowed token"), escrowed)
            .await?
            .map_err(admin_failed)?;
        ctx.admin
            .assign_passcode_policy(pb::AssignPasscodePolicyRequest {
                device_id: device_id.clone(),
                scope: scope as i32,
                policy: Some(policy(scope)),
            })
            .await
            .map_err(admin_failed)?;
        // The policy must have reached the device before the reset, as it would on a phone.
        let wanted = policy(scope);
        within(WAIT, format!("{name} to apply its policy"), async {
            let mut changes = fleet.screen_changes();
            loop {
                let applied = fleet
                    .screen(&name)
                    .ok()
                    .and_then(|s| s.policies.get(&scope_of(scope)).cloned());
                if applied.is_some_and(|p| p.min_length == wanted.min_length) {
                    return;
                }
                let _ = changes.recv().await;
            }
        })
        .await?;
        let action = ctx
            .admin
            .reset_passcode(pb::ResetPasscodeRequest {
                device_id: device_id.clone(),
                ..Default::default()
            })
            .await
            .map_err(admin_failed)?;
        let done = within(
            WAIT,
            format!("{name}'s reset to finish"),
            ctx.admin.watch_action(&action.action_id, false, |_| {}),
        )
        .await?
        .map_err(admin_failed)?;
        ensure!(
            done.state == pb::ActionState::Done as i32 && done.completed_at_ms > 0,
            "{kind}: the reset of a simulated device ended {} {} (CP-RESULT-1)",
            state_name(done.state),
            super::super::transcript::error_code(done.error_code)
        );
        let revealed = ctx
            .admin
            .reveal_passcode(&action.action_id)
            .await
            .map_err(admin_failed)?;
        ctx.transcript.secret(&revealed.passcode);
        let entered = fleet
            .enter_passcode(&name, scope_of(scope), Passcode::new(revealed.passcode))
            .await
            .map_err(|e| fail(format!("{kind}: the user could not type the passcode: {e}")))?;
        ensure!(
            matches!(entered, droidfleet_agent::device::EntryOutcome::Unlocked),
            "{kind}: the control plane's passcode did not unlock the device (CP-CMD-4)"
        );
        let seen = within(
            WAIT,
            format!("{name}'s entry to be recorded"),
            ctx.admin.watch_action(&action.action_id, true, |_| {}),
        )
        .await?
        .map_err(admin_failed)?;
        ensure!(
            seen.user_entered_at_ms > 0,
            "{kind}: the user's entry was not recorded (CP-USER-1)"
        );
    }
    Ok(())
}
