//! The measured phase: one reset per device at the target rate, each followed to its end (the
//! device's churn, the admin's reset and RevealPasscode, a reboot, the user's entries) and
//! recorded for the report.
//!
//! Each reset is watched (WatchAction) only once the device has answered it, learned from the
//! agent (`answers.rs`), or once the user's entry has left the device, so each watch is short:
//! watches held from the request on would pile up by the thousand behind a backlog, each
//! holding memory and a stream on the control plane.

use super::drive::Shared;
use super::error::LoadtestError;
use super::model;
use super::progress;
use super::report::{self, DeviceRecord};
use crate::admin::format::{error_name, state_name};
use crate::admin::{AdminError, Client};
use crate::causes::with_causes;
use droidfleet_agent::device::{EntryOutcome, Passcode, Scope};
use droidfleet_proto::v1 as pb;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// The admin's reset of the store the device's enrollment type supports.
/// Asks for a reset of the device's store; `passcode` is the admin's choice, `None` lets the
/// control plane generate one from the policy.
pub(super) async fn request_reset(
    admin: &Client,
    device_id: &str,
    passcode: Option<Passcode>,
) -> Result<pb::Action, AdminError> {
    admin
        .reset_passcode(pb::ResetPasscodeRequest {
            device_id: device_id.to_string(),
            new_passcode: passcode.map(|p| p.expose().to_string()).unwrap_or_default(),
            ..Default::default()
        })
        .await
}

fn record_action(record: &mut DeviceRecord, action: &pb::Action) {
    record.action_id = Some(action.action_id.clone());
    record.state = state_name(action.state).to_string();
    record.error_code = (action.error_code != 0).then(|| error_name(action.error_code));
    record.created_at_ms = action.created_at_ms;
    record.delivered_at_ms = action.delivered_at_ms;
    record.completed_at_ms = action.completed_at_ms;
    record.user_entered_at_ms = action.user_entered_at_ms;
}

/// What the measured phase gives back.
pub(super) struct Phase {
    pub records: Vec<DeviceRecord>,
    /// Every reset ended before the deadline.
    pub completed: bool,
    pub max_issue_lag_ms: f64,
}

/// The measured phase: one reset per device at `rate` per second (0: all at once), at most
/// `limit` devices in flight (`None`: no limit), each followed to its end.
pub(super) async fn reset_all(
    shared: &Arc<Shared>,
    rate: f64,
    limit: Option<usize>,
    unescrowed: &[usize],
    deadline: Instant,
) -> Phase {
    let mut records: Vec<DeviceRecord> = shared
        .plans
        .iter()
        .zip(&shared.device_ids)
        .map(|(p, id)| DeviceRecord::new(p, id.clone()))
        .collect();
    for &i in unescrowed {
        records[i].problem = Some(report::UNESCROWED.into());
    }
    let records = Arc::new(Mutex::new(records));
    if let Some(wall) = &shared.wall {
        wall.attach_records(records.clone());
    }
    let bars = progress::group();
    let progress = progress::Progress::new(&bars, "resets", "finished", shared.plans.len());
    // The entries expected: every reset predicted to end done has a user who types the passcode.
    let expected_entries = shared
        .plans
        .iter()
        .filter(|plan| plan.prediction().error_code.is_none())
        .count();
    let entries = progress::Progress::new(&bars, "user entries", "recorded", expected_entries);
    let mut max_issue_lag = Duration::ZERO;

    let all = async {
        let permits = limit.map(|n| Arc::new(Semaphore::new(n)));
        let phase_start = Instant::now();
        let mut tasks = JoinSet::new();
        for index in 0..shared.plans.len() {
            if rate > 0.0 {
                // The schedule is fixed from the phase start: a late tick is made up at once,
                // so the mean rate holds, and the lateness is reported.
                let due = phase_start + Duration::from_secs_f64(index as f64 / rate);
                tokio::time::sleep_until(due).await;
                max_issue_lag = max_issue_lag.max(Instant::now().saturating_duration_since(due));
            }
            let permit = match &permits {
                Some(permits) => match permits.clone().acquire_owned().await {
                    Ok(permit) => Some(permit),
                    Err(_) => break,
                },
                None => None,
            };
            let (s, records, progress) = (shared.clone(), records.clone(), progress.clone());
            let entries = entries.clone();
            tasks.spawn(async move {
                let _permit = permit;
                let outcome = reset_one(&s, index, &records, &entries).await;
                let mut all = records.lock().expect("records lock");
                let record = &mut all[index];
                if let Err(problem) = outcome {
                    record.problem = Some(with_causes(&problem));
                }
                progress.advance(record.as_expected());
            });
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
    };
    // On the deadline the unfinished tasks are dropped with `all` (a JoinSet aborts its tasks),
    // and their records keep the last state seen.
    let completed = tokio::time::timeout_at(deadline, all).await.is_ok();
    progress.finish();
    entries.finish();
    let mut records = records.lock().expect("records lock").clone();
    if !completed {
        for record in records.iter_mut().filter(|r| {
            let unfinished =
                !report::is_final(&r.state) || (r.state == "done" && r.user_entered_at_ms == 0);
            r.problem.is_none() && unfinished
        }) {
            record.problem = Some("not finished before the deadline".into());
        }
    }
    Phase {
        records,
        completed,
        max_issue_lag_ms: max_issue_lag.as_secs_f64() * 1000.0,
    }
}

/// One device's measured reset: its churn, the admin's reset, its reboot, and its user.
async fn reset_one(
    s: &Shared,
    index: usize,
    records: &Mutex<Vec<DeviceRecord>>,
    entries: &progress::Progress,
) -> Result<(), LoadtestError> {
    let plan = &s.plans[index];
    let admin = s.admin(index);
    if plan.offline_ms.is_some() {
        // Returns once the session has closed, so the reset below finds the device offline.
        s.fleet.set_online(&plan.name, false).await?;
    }
    let requested_at_ms = s.fleet.now_ms();
    edit(records, index, |r| r.requested_at_ms = requested_at_ms);
    let action = request_reset(admin, &s.device_ids[index], None).await?;
    edit(records, index, |r| record_action(r, &action));
    let back_online = async {
        if let Some(offline_ms) = plan.offline_ms {
            // Simulated behaviour, not synchronisation: the phone has no signal for this long.
            tokio::time::sleep(Duration::from_millis(offline_ms)).await;
            s.fleet.set_online(&plan.name, true).await?;
            let at = s.fleet.now_ms();
            edit(records, index, |r| r.online_again_at_ms = at);
        }
        Ok::<_, LoadtestError>(())
    };
    let answered = async {
        if report::is_final(state_name(action.state)) {
            // Refused at once (no policy): the device never hears of it.
            return Ok::<_, LoadtestError>(action.clone());
        }
        s.answers.answered(&plan.name, &action.action_id).await?;
        let last = admin
            .watch_action(&action.action_id, false, |action| {
                edit(records, index, |r| record_action(r, action))
            })
            .await?;
        Ok(last)
    };
    let (last, back) = tokio::join!(answered, back_online);
    back?;
    if state_name(last?.state) != "done" {
        return Ok(());
    }
    if plan.reboot {
        s.fleet.reboot(&plan.name).await?;
    }

    // The admin reads the new passcode to the user (RevealPasscode); it goes straight into the
    // zeroized type and nowhere else.
    let passcode = {
        let mut revealed = admin.reveal_passcode(&action.action_id).await?;
        droidfleet_agent::device::Passcode::new(std::mem::take(&mut revealed.passcode))
    };
    let revealed_at = s.fleet.now_ms();
    edit(records, index, |r| r.revealed_at_ms = revealed_at);
    // Simulated behaviour, not synchronisation: the user notices the notification later.
    tokio::time::sleep(Duration::from_millis(plan.user_delay_ms)).await;
    let scope = plan.target_scope();
    if plan.reboot && scope == Scope::WorkProfile {
        // After a boot Android asks for the device's credential before the work challenge.
        let unlocked = s
            .fleet
            .enter_passcode(&plan.name, Scope::Device, plan.device_pin.clone())
            .await?;
        if !matches!(unlocked, EntryOutcome::Unlocked) {
            return Err(LoadtestError::OwnPinRefused { outcome: unlocked });
        }
    }
    if plan.typo {
        let typed = s
            .fleet
            .enter_passcode(&plan.name, scope, model::typo_of(&passcode))
            .await?;
        if matches!(typed, EntryOutcome::Unlocked) {
            return Err(LoadtestError::TypoUnlocked { scope });
        }
    }
    let typed = s.fleet.enter_passcode(&plan.name, scope, passcode).await?;
    if !matches!(typed, EntryOutcome::Unlocked) {
        return Err(LoadtestError::NewPasscodeRefused {
            scope,
            outcome: typed,
        });
    }
    // The entry has left the device when enter_passcode returns; the watch ends once the
    // control plane has recorded it.
    let last = admin
        .watch_action(&action.action_id, true, |action| {
            edit(records, index, |r| record_action(r, action))
        })
        .await?;
    if last.user_entered_at_ms == 0 {
        return Err(LoadtestError::EntryNotRecorded);
    }
    entries.advance(true);
    Ok(())
}

/// Changes one device's record.
fn edit(records: &Mutex<Vec<DeviceRecord>>, index: usize, change: impl FnOnce(&mut DeviceRecord)) {
    change(&mut records.lock().expect("records lock")[index]);
}
