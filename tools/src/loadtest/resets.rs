//! The measured phase: one reset per device at the target rate, or with `--duration` resets at
//! that rate for that long, each followed to its end (the device's churn, the admin's reset and
//! RevealPasscode, a reboot, the user's entries) and recorded for the report.
//!
//! Each reset is watched (WatchAction) only once the device has answered it, learned from the
//! agent (`answers.rs`), or once the user's entry has left the device, so each watch is short:
//! watches held from the request on would pile up by the thousand behind a backlog, each
//! holding memory and a stream on the control plane.

use super::drive::Shared;
use super::error::LoadtestError;
use super::model;
use super::progress;
use super::report::{self, DeviceRecord, Tally};
use super::series::{Recorder, TimeSeries};
use crate::admin::format::{error_name, state_name};
use crate::admin::{AdminError, Client};
use crate::causes::with_causes;
use droidfleet_agent::device::{EntryOutcome, Passcode, Scope};
use droidfleet_proto::v1 as pb;
use std::collections::VecDeque;
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

/// How the measured phase issues its resets.
pub(super) struct Schedule {
    /// Resets per second; 0 issues them all at once.
    pub rate: f64,
    /// Devices in flight at once; `None` for no limit.
    pub limit: Option<usize>,
    /// With `--duration`: keep issuing at `rate` for this long, each device again once its
    /// previous reset ended; `None`: one reset per device.
    pub period: Option<Duration>,
}

/// What the measured phase gives back.
pub(super) struct Phase {
    /// Each device's last reset.
    pub records: Vec<DeviceRecord>,
    /// Every reset's figures.
    pub tally: Tally,
    pub time_series: TimeSeries,
    /// Every reset ended before the deadline.
    pub completed: bool,
    pub max_issue_lag_ms: f64,
}

/// The measured phase: one reset per device, or with a period resets for that long, at the
/// schedule's rate (0: all at once) with at most its limit in flight, each followed to its end.
///
/// The next device is the one idle longest: every device starts in a queue in plan order and,
/// in a soak, rejoins its back once its reset ended (and, for a reset ending done, its user's
/// entry was recorded). So each device is reset about as often as any other and rests as long
/// as the rate allows between its resets, and no device has two resets at once. When every
/// device is busy, the next reset waits for one to end, and that wait counts in the issue lag.
pub(super) async fn reset_all(
    shared: &Arc<Shared>,
    schedule: Schedule,
    unescrowed: &[usize],
    deadline: Instant,
) -> Phase {
    let fresh = |index: usize| {
        let mut record = DeviceRecord::new(&shared.plans[index], shared.device_ids[index].clone());
        if unescrowed.contains(&index) {
            record.problem = Some(report::UNESCROWED.into());
        }
        record
    };
    let devices = shared.plans.len();
    let records: Vec<DeviceRecord> = (0..devices).map(fresh).collect();
    let records = Arc::new(Mutex::new(records));
    if let Some(wall) = &shared.wall {
        wall.attach_records(records.clone());
    }
    let mut counted = Counted {
        open: vec![schedule.period.is_none(); devices],
        tally: Tally::new(),
    };
    // Resets the phase is planned to issue: every device once, or the rate over the period.
    let planned = match schedule.period {
        Some(period) => (schedule.rate * period.as_secs_f64()).ceil() as usize,
        None => devices,
    };
    let bars = progress::group();
    let progress = progress::Progress::new(&bars, "resets", "finished", planned);
    // The entries expected: every reset predicted to end done has a user who types the passcode.
    let expected_entries = shared
        .plans
        .iter()
        .filter(|plan| plan.prediction().error_code.is_none())
        .count();
    let entries = progress::Progress::new(
        &bars,
        "user entries",
        "recorded",
        expected_entries * planned / devices.max(1),
    );
    let mut max_issue_lag = Duration::ZERO;
    let (series, ticker) = Recorder::start();

    let all = async {
        let permits = schedule.limit.map(|n| Arc::new(Semaphore::new(n)));
        let phase_start = series.started();
        let mut idle: VecDeque<usize> = (0..devices).collect();
        let mut tasks = JoinSet::new();
        // A device's reset has ended: count it, and in a soak put the device back in line.
        let ended = |index: usize, counted: &mut Counted, idle: &mut VecDeque<usize>| {
            counted.ended(index, &records);
            if schedule.period.is_some() {
                idle.push_back(index);
            }
        };
        // Bounded: without a period the queue empties after every device's reset; with one,
        // the schedule passes the period's end (a soak always has a rate).
        for issue in 0usize.. {
            let due = (schedule.rate > 0.0)
                .then(|| phase_start + Duration::from_secs_f64(issue as f64 / schedule.rate));
            if let (Some(period), Some(due)) = (schedule.period, due)
                && due >= phase_start + period
            {
                break;
            }
            if let Some(due) = due {
                // The schedule is fixed from the phase start: a late tick is made up at once,
                // so the mean rate holds, and the lateness is reported.
                tokio::time::sleep_until(due).await;
            }
            let index = loop {
                if let Some(index) = idle.pop_front() {
                    break Some(index);
                }
                if schedule.period.is_none() {
                    break None;
                }
                match tasks.join_next().await {
                    Some(Ok(index)) => ended(index, &mut counted, &mut idle),
                    Some(Err(_)) => {}
                    None => break None,
                }
            };
            let Some(index) = index else { break };
            if let Some(due) = due {
                max_issue_lag = max_issue_lag.max(Instant::now().saturating_duration_since(due));
            }
            let permit = match &permits {
                Some(permits) => match permits.clone().acquire_owned().await {
                    Ok(permit) => Some(permit),
                    Err(_) => break,
                },
                None => None,
            };
            if schedule.period.is_some() {
                records.lock().expect("records lock")[index] = fresh(index);
                counted.open[index] = true;
            }
            series.issued();
            let (s, records, progress) = (shared.clone(), records.clone(), progress.clone());
            let (entries, series) = (entries.clone(), series.clone());
            tasks.spawn(async move {
                let _permit = permit;
                let outcome = reset_one(&s, index, &records, &entries).await;
                let mut all = records.lock().expect("records lock");
                let record = &mut all[index];
                if let Err(problem) = outcome {
                    record.problem = Some(with_causes(&problem));
                }
                progress.advance(record.as_expected());
                series.finished(report::headline_ms(record).map(|ms| ms as f64));
                index
            });
            while let Some(joined) = tasks.try_join_next() {
                if let Ok(index) = joined {
                    ended(index, &mut counted, &mut idle);
                }
            }
        }
        while let Some(joined) = tasks.join_next().await {
            if let Ok(index) = joined {
                ended(index, &mut counted, &mut idle);
            }
        }
    };
    // On the deadline the unfinished tasks are dropped with `all` (a JoinSet aborts its tasks),
    // and their records keep the last state seen.
    let completed = tokio::time::timeout_at(deadline, all).await.is_ok();
    let time_series = series.finish(ticker);
    progress.finish();
    entries.finish();
    let mut records = records.lock().expect("records lock").clone();
    let Counted { open, mut tally } = counted;
    for (record, _) in records.iter_mut().zip(open).filter(|(_, open)| *open) {
        let unfinished = !report::is_final(&record.state)
            || (record.state == "done" && record.user_entered_at_ms == 0);
        if !completed && record.problem.is_none() && unfinished {
            record.problem = Some("not finished before the deadline".into());
        }
        tally.add(record);
    }
    Phase {
        records,
        tally,
        time_series,
        completed,
        max_issue_lag_ms: max_issue_lag.as_secs_f64() * 1000.0,
    }
}

/// The resets counted so far, and which devices' records are still to be.
struct Counted {
    /// A device's record is open from its reset's issue until it is counted; without a period
    /// every device's is open from the start, so a device the deadline left unissued is counted
    /// (as `not_issued`).
    open: Vec<bool>,
    tally: Tally,
}

impl Counted {
    fn ended(&mut self, index: usize, records: &Mutex<Vec<DeviceRecord>>) {
        self.open[index] = false;
        self.tally
            .add(&records.lock().expect("records lock")[index]);
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
