//! The load test's report: what happened to every device, and the figures derived from it, as
//! a table for a person (stdout), `report.json` for a program, and `report.html`, one
//! self-contained page whose charts are inline SVG drawn by `plotters` (viewable offline: no
//! script, no font, no network reference).
//!
//! Nothing here ever holds a passcode or a token: the records carry decisions, states, error
//! codes and timestamps only.
//!
//! The latency figures are HdrHistograms (3 significant digits, fixed memory); `latency.hlog`
//! next to report.json is their interval log, for HdrHistogram's own tools.
//!
//! This file holds the report's data and the figures derived from the device records;
//! `build.rs` assembles a report from a run, `table.rs` writes the table (and the lines the page
//! shares), `html.rs` the page.

mod build;
mod html;
mod table;

pub(super) use build::{Setting, build};

use super::baseline::{Argon2Baseline, EchoBaseline, StreamEchoBaseline};
use super::ceiling::{Ceiling, UnitBaselines};
use super::measure::{self, LAG_WARN_MS, Percentiles};
use super::model::{DevicePlan, Fault, Prediction};
use super::series::TimeSeries;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::interval_log::{
    IntervalLogWriterBuilder, IntervalLogWriterError, Tag,
};
use hdrhistogram::serialization::{V2DeflateSerializeError, V2DeflateSerializer};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

/// One device: what was decided for it and what happened to its measured reset.
#[derive(Clone, Debug, Serialize)]
pub(super) struct DeviceRecord {
    pub name: String,
    pub ownership: &'static str,
    pub scope: &'static str,
    pub fault: Fault,
    pub user_delay_ms: u64,
    pub typo: bool,
    /// Decided churn: offline just before the reset was issued, for this long.
    pub offline_ms: Option<u64>,
    /// Decided: rebooted after the reset was applied, before the user's entry.
    pub reboot: bool,
    /// The Android API level the device runs.
    pub api_level: u32,
    /// The maker profile it follows.
    pub profile: &'static str,
    /// How its reset should end, from its fault, version and maker.
    pub predicted: Prediction,
    /// Argon2id runs the device makes for this reset if it ends done (from the decisions).
    pub argon2_runs: u32,
    pub device_id: String,
    pub action_id: Option<String>,
    /// The action's last known state; `not_issued` when the reset was never requested.
    pub state: String,
    pub error_code: Option<String>,
    /// A failure of the load test's own calls (an RPC error, the deadline), not an action state.
    pub problem: Option<String>,
    /// Control-plane timestamps, milliseconds since the epoch; 0 when it did not happen.
    pub created_at_ms: u64,
    pub delivered_at_ms: u64,
    pub completed_at_ms: u64,
    pub user_entered_at_ms: u64,
    /// The load generator's clock when it sent ResetPasscode; 0 when it did not.
    pub requested_at_ms: u64,
    /// The load generator's clock when an offline device was put back online; 0 otherwise.
    pub online_again_at_ms: u64,
    /// The load generator's clock when RevealPasscode answered (the admin has the passcode to
    /// read to the user); 0 when it did not happen.
    pub revealed_at_ms: u64,
}

impl DeviceRecord {
    /// A device before its measured reset.
    pub(super) fn new(plan: &DevicePlan, device_id: String) -> DeviceRecord {
        DeviceRecord {
            name: plan.name.clone(),
            ownership: plan.ownership.as_str(),
            scope: plan.target_scope().as_str(),
            fault: plan.fault,
            user_delay_ms: plan.user_delay_ms,
            typo: plan.typo,
            offline_ms: plan.offline_ms,
            reboot: plan.reboot,
            api_level: plan.build.api_level.get(),
            profile: plan.build.profile.name(),
            predicted: plan.prediction(),
            argon2_runs: plan.argon2_runs_if_done(),
            device_id,
            action_id: None,
            state: "not_issued".into(),
            error_code: None,
            problem: None,
            created_at_ms: 0,
            delivered_at_ms: 0,
            completed_at_ms: 0,
            user_entered_at_ms: 0,
            requested_at_ms: 0,
            online_again_at_ms: 0,
            revealed_at_ms: 0,
        }
    }

    /// The reset ran its full course: applied, and the user's entry recorded.
    pub(super) fn fully_done(&self) -> bool {
        self.state == "done" && self.user_entered_at_ms > 0 && self.problem.is_none()
    }

    /// Reached the final state its fault, Android version and maker predict: done with the
    /// user's entry recorded, or the predicted state with the predicted code.
    pub(super) fn as_expected(&self) -> bool {
        match self.predicted.error_code {
            None => self.fully_done(),
            Some(code) => {
                self.state == self.predicted.state && self.error_code.as_deref() == Some(code)
            }
        }
    }
}

#[derive(Debug, Serialize)]
pub(super) struct OutcomeRow {
    pub ownership: String,
    /// The devices' Android API level.
    pub api_level: u32,
    pub profile: String,
    pub state: String,
    pub error_code: String,
    pub count: usize,
}

#[derive(Debug, Serialize)]
pub(super) struct PhaseLatency {
    pub phase: &'static str,
    pub description: &'static str,
    #[serde(flatten)]
    pub stats: Percentiles,
    /// The samples, in microseconds, for the HDR log.
    #[serde(skip)]
    pub histogram: Histogram<u64>,
}

#[derive(Debug, Serialize)]
pub(super) struct Throughput {
    /// Actions that reached a final state, and those that ended `done`.
    pub finished: usize,
    pub done: usize,
    /// From the first reset's creation to the last final state, control-plane clock.
    pub window_s: f64,
    pub finished_per_s: f64,
    pub done_per_s: f64,
    /// Width of each interval of `per_interval`: 1 s, or 100 ms when the window is under 10 s
    /// (so a short run still draws a curve).
    pub interval_ms: u64,
    /// Actions reaching a final state in each interval of the window.
    pub per_interval: Vec<u32>,
}

/// How the resets were issued.
#[derive(Debug, Serialize)]
pub(super) struct Issue {
    /// `--rate`; 0 for all at once.
    pub target_per_s: f64,
    /// Devices allowed in flight at once; `None` for no limit.
    pub in_flight_limit: Option<usize>,
    /// ResetPasscode calls sent.
    pub issued: usize,
    /// Calls sent per second by the load generator, first to last send.
    pub issued_per_s: f64,
    /// Resets the control plane created per second, by its created_at.
    pub accepted_per_s: f64,
    /// How late the issuing loop fell behind the --rate schedule at worst.
    pub max_schedule_lag_ms: f64,
}

/// The user behaviour and faults the run played, as counts.
#[derive(Debug, Serialize)]
pub(super) struct Behaviour {
    /// Devices taken offline just before their reset.
    pub offline: usize,
    /// Devices rebooted between their reset and their user's entry.
    pub reboots: usize,
    /// Users who first mistyped.
    pub typos: usize,
    /// `--faults` as given.
    pub faults: String,
    /// Session messages the agent hit with each kind of fault (its Prometheus counters).
    pub faults_injected: BTreeMap<String, u64>,
}

/// One process's resources over the run.
#[derive(Debug, Serialize)]
pub(super) struct ProcessResources {
    /// What runs in it: "control plane", "agent + load generator", or all three.
    pub role: String,
    pub pid: u32,
    pub peak_rss_kib: Option<u64>,
    pub cpu_s: Option<f64>,
    /// Wall-clock seconds between the process's first and last sample.
    pub wall_s: f64,
    /// CPU seconds per wall-clock second over `wall_s` (2.0 = two cores busy).
    pub cpu_utilisation: Option<f64>,
    pub rss_before_connect_kib: Option<u64>,
    pub rss_after_connect_kib: Option<u64>,
    pub memory_per_device_kib: Option<f64>,
}

#[derive(Debug, Serialize)]
pub(super) struct Resources {
    pub clock_ticks_per_s: u64,
    pub clock_ticks_source: &'static str,
    /// The control plane first when it has a process of its own.
    pub processes: Vec<ProcessResources>,
}

/// What the baselines measured after the run, before it is set against the run's figures.
pub(super) struct Measured {
    pub echo: EchoBaseline,
    pub stream_echo: StreamEchoBaseline,
    pub argon2: Argon2Baseline,
    pub units: UnitBaselines,
}

/// The baselines and where the run stands against them.
#[derive(Debug, Serialize)]
pub(super) struct Baselines {
    pub echo: EchoBaseline,
    pub stream_echo: StreamEchoBaseline,
    pub argon2: Argon2Baseline,
    /// Ed25519, AES-GCM and SQLite: the ceiling's other units.
    pub units: UnitBaselines,
    /// The protocol ceiling: the work a reset needs, at the units' measured costs.
    pub ceiling: Ceiling,
    /// Mean Argon2id runs per reset that ended done, from this run's decisions.
    pub argon2_runs_per_done_reset: f64,
    /// Argon2 hashes/s ÷ runs per done reset.
    pub argon2_bound_resets_per_s: f64,
    /// Resets reaching a final state per second ÷ echo calls per second.
    pub ratio_to_echo: f64,
    /// Resets ending done per second ÷ the Argon2 bound.
    pub ratio_to_argon2_bound: f64,
}

#[derive(Debug, Serialize)]
pub(super) struct Lag {
    pub tick_ms: u64,
    #[serde(flatten)]
    pub stats: Percentiles,
    pub saturated: bool,
    /// The samples, in microseconds, for the HDR log.
    #[serde(skip)]
    pub histogram: Histogram<u64>,
}

#[derive(Debug, Serialize)]
pub(super) struct Argon2Info {
    pub preset: String,
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

#[derive(Debug, Serialize)]
pub(super) struct Durations {
    pub setup_s: f64,
    pub connect_s: f64,
    pub reset_phase_s: f64,
    pub total_s: f64,
    /// With --restart-control-plane.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart: Option<RestartDurations>,
}

/// The control plane killed with SIGKILL once the fleet was connected, and started again.
#[derive(Debug, Serialize)]
pub(super) struct RestartDurations {
    /// From the kill until every device had seen its session end.
    pub disconnect_s: f64,
    /// From starting the new process until it listened.
    pub start_s: f64,
    /// From the new process listening until every device was connected again.
    pub reconnect_s: f64,
}

#[derive(Debug, Serialize)]
pub(super) struct Report {
    pub tool: String,
    /// Every reset reached its end before the deadline (with --connect-only: every device
    /// connected).
    pub completed: bool,
    pub control_plane: BTreeMap<&'static str, String>,
    pub config: BTreeMap<&'static str, serde_json::Value>,
    pub argon2: Argon2Info,
    pub durations: Durations,
    pub behaviour: Behaviour,
    pub issue: Issue,
    pub outcomes: Vec<OutcomeRow>,
    pub outcome_total: usize,
    /// Resets that did not end as their injected fault (or its absence) predicts.
    pub unexpected: usize,
    /// Resets the run made only to prepare the pending-token fault; not in any figure.
    pub setup_resets: usize,
    pub latency_ms: Vec<PhaseLatency>,
    pub throughput: Throughput,
    /// Absent with --no-baselines and --connect-only.
    pub baselines: Option<Baselines>,
    pub resources: Resources,
    pub scheduler_lag_ms: Lag,
    pub warnings: Vec<String>,
    pub notes: Vec<String>,
    pub decision_digest: String,
    /// The measured phase second by second; empty with --connect-only.
    pub time_series: TimeSeries,
    /// Every device's decisions and timestamps (with --duration, of its last reset); empty with
    /// --connect-only.
    pub devices: Vec<DeviceRecord>,
}

/// The HDR log's file name, next to report.json.
pub(super) const HDR_LOG: &str = "latency.hlog";

/// Why the HDR log could not be written.
pub(super) type HdrLogError = IntervalLogWriterError<V2DeflateSerializeError>;

impl Report {
    /// The latency histograms as an HdrHistogram interval log, the format of the Java
    /// implementation's `HistogramLogWriter` that `HistogramLogProcessor`, HdrHistogram's other
    /// ports and its plotters read: one interval per reset phase and one for the scheduler lag,
    /// each tagged with its name and spanning the run from `started`; values in microseconds
    /// (the max column in milliseconds).
    pub(super) fn hdr_log(&self, started: SystemTime) -> Result<Vec<u8>, HdrLogError> {
        let mut log = Vec::new();
        let mut serializer = V2DeflateSerializer::new();
        let mut writer = IntervalLogWriterBuilder::new()
            .add_comment("droidfleet loadtest latencies, in microseconds, one interval per tag")
            .with_start_time(started)
            .with_base_time(started)
            .with_max_value_divisor(1000.0)
            .begin_log_with(&mut log, &mut serializer)?;
        let span = Duration::from_secs_f64(self.durations.total_s.max(0.0));
        let lag = ("scheduler_lag", &self.scheduler_lag_ms.histogram);
        for (tag, histogram) in self
            .latency_ms
            .iter()
            .map(|p| (p.phase, &p.histogram))
            .chain([lag])
        {
            writer.write_histogram(histogram, Duration::ZERO, span, Tag::new(tag))?;
        }
        drop(writer);
        Ok(log)
    }
}

/// The phases of a reset, and how to measure each from a device's record (`None`: the device
/// is not in that phase's figures). Only resets that ended `done` count, so failures that the
/// control plane refuses at once do not flatter the figures.
type PhaseFn = fn(&DeviceRecord) -> Option<u64>;
const PHASES: [(&str, &str, PhaseFn); 6] = [
    (
        "requested_to_delivered",
        "requested → delivered (delivered_at − created_at; devices kept online)",
        |d| {
            d.offline_ms
                .is_none()
                .then(|| d.delivered_at_ms.checked_sub(d.created_at_ms))
                .flatten()
        },
    ),
    (
        "delivered_to_applied",
        "delivered → applied (completed_at − delivered_at; 0 when the acknowledgement was recorded after the device's completion time)",
        |d| Some(d.completed_at_ms.saturating_sub(d.delivered_at_ms)),
    ),
    (
        "requested_to_applied",
        "requested → applied (completed_at − created_at; devices kept online)",
        |d| {
            d.offline_ms
                .is_none()
                .then(|| d.completed_at_ms.checked_sub(d.created_at_ms))
                .flatten()
        },
    ),
    (
        "online_to_applied",
        "back online → applied (completed_at − when the load generator put an offline device back online: redelivery after a reconnect)",
        |d| {
            (d.online_again_at_ms > 0)
                .then(|| d.completed_at_ms.checked_sub(d.online_again_at_ms))
                .flatten()
        },
    ),
    (
        "applied_to_revealed",
        "applied → passcode revealed to the admin (watch notification, a reboot where decided, RevealPasscode)",
        |d| {
            (d.revealed_at_ms > 0)
                .then(|| d.revealed_at_ms.checked_sub(d.completed_at_ms))
                .flatten()
        },
    ),
    (
        "applied_to_user_entered",
        "applied → user entered (user_entered_at − completed_at; includes the simulated user delay)",
        |d| {
            (d.user_entered_at_ms > 0)
                .then(|| d.user_entered_at_ms.checked_sub(d.completed_at_ms))
                .flatten()
        },
    ),
];

/// Index of requested → applied in [`PHASES`]: the headline latency.
pub(super) const HEADLINE_PHASE: usize = 2;

/// Requested → applied of one reset in milliseconds, as the headline latency counts it: `None`
/// when the reset did not end done or its device was taken offline first.
pub(super) fn headline_ms(record: &DeviceRecord) -> Option<u64> {
    counts_in_latencies(record)
        .then(|| (PHASES[HEADLINE_PHASE].2)(record))
        .flatten()
}

/// Only resets that ended done count in the latencies.
fn counts_in_latencies(d: &DeviceRecord) -> bool {
    d.state == "done" && d.delivered_at_ms > 0 && d.completed_at_ms > 0
}

type OutcomeKey = (String, u32, &'static str, String, String);

/// How many events, and the first and last time of them (ms; 0 is "did not happen").
#[derive(Clone, Copy, Debug, Default)]
struct Span {
    count: usize,
    first: u64,
    last: u64,
}

impl Span {
    fn add(&mut self, at: u64) {
        if at == 0 {
            return;
        }
        self.first = if self.count == 0 {
            at
        } else {
            self.first.min(at)
        };
        self.last = self.last.max(at);
        self.count += 1;
    }

    /// Events per second over the span: (count − 1) intervals over it, so a steady rate r
    /// gives r whatever the count; 0 with fewer than two events.
    fn rate(&self) -> f64 {
        if self.count > 1 {
            (self.count - 1) as f64 / ((self.last - self.first).max(1) as f64 / 1000.0)
        } else {
            0.0
        }
    }
}

/// Width of the buckets in which [`Tally`] counts final states: the finest interval of
/// [`Throughput::per_interval`].
const FINISHED_BUCKET_MS: u64 = 100;

/// The figures of the measured resets, folded in one record at a time, so their memory does not
/// grow with the number of resets (a `--duration` soak resets each device many times): fixed
/// histograms, counts, and final states counted per 100 ms (bounded by the run's length, not by
/// its resets).
pub(super) struct Tally {
    /// One per [`PHASES`], in microseconds.
    phases: Vec<Histogram<u64>>,
    outcomes: BTreeMap<OutcomeKey, usize>,
    resets: usize,
    unexpected: usize,
    offline: usize,
    reboots: usize,
    typos: usize,
    done: usize,
    /// Resets that ran their full course, and the Argon2id runs they were decided to make.
    fully_done: usize,
    fully_done_argon2_runs: u64,
    late_acks: usize,
    requested: Span,
    created: Span,
    /// Resets reaching a final state, by [`FINISHED_BUCKET_MS`] bucket of the time they did.
    finished: BTreeMap<u64, u32>,
    /// When the last of them did (ms), the throughput window's end.
    last_final_ms: u64,
}

impl Tally {
    pub(super) fn new() -> Tally {
        Tally {
            phases: PHASES
                .iter()
                .map(|_| measure::latency_histogram())
                .collect(),
            outcomes: BTreeMap::new(),
            resets: 0,
            unexpected: 0,
            offline: 0,
            reboots: 0,
            typos: 0,
            done: 0,
            fully_done: 0,
            fully_done_argon2_runs: 0,
            late_acks: 0,
            requested: Span::default(),
            created: Span::default(),
            finished: BTreeMap::new(),
            last_final_ms: 0,
        }
    }

    /// Counts one reset as its record ends.
    pub(super) fn add(&mut self, d: &DeviceRecord) {
        self.resets += 1;
        if counts_in_latencies(d) {
            for ((_, _, measure), histogram) in PHASES.iter().zip(&mut self.phases) {
                if let Some(ms) = measure(d) {
                    measure::record_ms(histogram, ms as f64);
                }
            }
        }
        let code = match (&d.error_code, &d.problem) {
            (Some(code), _) => code.clone(),
            (None, Some(_)) if d.state != "done" => "load_test_error".into(),
            (None, Some(_)) => "user_entry_not_recorded".into(),
            (None, None) => "-".into(),
        };
        let key = (
            d.ownership.to_uppercase(),
            d.api_level,
            d.profile,
            d.state.clone(),
            code,
        );
        *self.outcomes.entry(key).or_default() += 1;
        self.unexpected += usize::from(!d.as_expected());
        self.offline += usize::from(d.offline_ms.is_some());
        self.reboots += usize::from(d.reboot);
        self.typos += usize::from(d.typo);
        self.done += usize::from(d.state == "done");
        if d.fully_done() {
            self.fully_done += 1;
            self.fully_done_argon2_runs += u64::from(d.argon2_runs);
        }
        self.late_acks +=
            usize::from(d.completed_at_ms > 0 && d.delivered_at_ms > d.completed_at_ms);
        self.requested.add(d.requested_at_ms);
        self.created.add(d.created_at_ms);
        if d.completed_at_ms > 0 || (d.created_at_ms > 0 && is_final(&d.state)) {
            let at = d.completed_at_ms.max(d.created_at_ms);
            *self.finished.entry(at / FINISHED_BUCKET_MS).or_default() += 1;
            self.last_final_ms = self.last_final_ms.max(at);
        }
    }

    /// Resets counted.
    pub(super) fn resets(&self) -> usize {
        self.resets
    }

    /// Resets that did not end as their injected fault (or its absence) predicts.
    pub(super) fn unexpected(&self) -> usize {
        self.unexpected
    }

    /// Mean Argon2id runs per reset that ran its full course; 0 when none did.
    pub(super) fn argon2_runs_per_done_reset(&self) -> f64 {
        if self.fully_done == 0 {
            0.0
        } else {
            self.fully_done_argon2_runs as f64 / self.fully_done as f64
        }
    }

    /// Resets whose control plane recorded the delivery after the device's own completion
    /// time: `delivered_at` is when the control plane processed the acknowledgement,
    /// `completed_at` is the device's clock when it finished, so a queue on the control plane
    /// shows up here.
    pub(super) fn delivered_after_completed(&self) -> usize {
        self.late_acks
    }

    pub(super) fn latencies(&self) -> Vec<PhaseLatency> {
        PHASES
            .iter()
            .zip(&self.phases)
            .map(|((phase, description, _), histogram)| PhaseLatency {
                phase,
                description,
                stats: Percentiles::of(histogram),
                histogram: histogram.clone(),
            })
            .collect()
    }

    pub(super) fn outcomes(&self) -> Vec<OutcomeRow> {
        self.outcomes
            .iter()
            .map(
                |((ownership, api_level, profile, state, error_code), count)| OutcomeRow {
                    ownership: ownership.clone(),
                    api_level: *api_level,
                    profile: profile.to_string(),
                    state: state.clone(),
                    error_code: error_code.clone(),
                    count: *count,
                },
            )
            .collect()
    }

    pub(super) fn throughput(&self) -> Throughput {
        let finished: usize = self.finished.values().map(|n| *n as usize).sum();
        let end = (finished > 0).then_some(self.last_final_ms);
        let (window_s, interval_ms, per_interval) = match (self.created.count, end) {
            (1.., Some(end)) => {
                let start = self.created.first.min(end);
                let interval_ms = if end - start < 10_000 {
                    FINISHED_BUCKET_MS
                } else {
                    1000
                };
                let mut per_interval = vec![0u32; ((end - start) / interval_ms + 1) as usize];
                for (bucket, count) in &self.finished {
                    let at = (bucket * FINISHED_BUCKET_MS).saturating_sub(start);
                    per_interval[(at / interval_ms) as usize] += count;
                }
                // At least one millisecond, so an instant run does not divide by zero.
                let window_s = ((end - start).max(1)) as f64 / 1000.0;
                (window_s, interval_ms, per_interval)
            }
            _ => (0.0, 1000, Vec::new()),
        };
        let rate = |n: usize| {
            if window_s > 0.0 {
                n as f64 / window_s
            } else {
                0.0
            }
        };
        Throughput {
            finished,
            done: self.done,
            window_s,
            finished_per_s: rate(finished),
            done_per_s: rate(self.done),
            interval_ms,
            per_interval,
        }
    }

    pub(super) fn behaviour(
        &self,
        faults: String,
        faults_injected: BTreeMap<String, u64>,
    ) -> Behaviour {
        Behaviour {
            offline: self.offline,
            reboots: self.reboots,
            typos: self.typos,
            faults,
            faults_injected,
        }
    }

    pub(super) fn issue(
        &self,
        target_per_s: f64,
        in_flight_limit: Option<usize>,
        max_schedule_lag_ms: f64,
    ) -> Issue {
        Issue {
            target_per_s,
            in_flight_limit,
            issued: self.requested.count,
            issued_per_s: self.requested.rate(),
            accepted_per_s: self.created.rate(),
            max_schedule_lag_ms,
        }
    }
}

pub(super) fn is_final(state: &str) -> bool {
    matches!(
        state,
        "done" | "failed" | "canceled" | "not_supported" | "expired"
    )
}

pub(super) fn lag_warning(lag: &Percentiles) -> Option<String> {
    (lag.p99 > LAG_WARN_MS).then(|| {
        format!(
            "the load generator saturated: the scheduler's p99 lag was {:.0} ms (above {LAG_WARN_MS:.0} ms), \
             so the latencies include the generator's own queueing; use fewer devices, a lower \
             --rate or the light Argon2 preset",
            lag.p99
        )
    })
}

/// The problem recorded for a device whose escrowed token never reached the control plane.
pub(super) const UNESCROWED: &str =
    "its escrowed token never reached the control plane during the setup";
