//! The load test's report: what happened to every device, and the figures derived from it, as
//! a table for a person (stdout), `report.json` for a program, and `report.html`, one
//! self-contained page whose charts are inline SVG drawn by `plotters` (viewable offline: no
//! script, no font, no network reference).
//!
//! Nothing here ever holds a passcode or a token: the records carry decisions, states, error
//! codes and timestamps only.

use super::baseline::{Argon2Baseline, EchoBaseline};
use super::measure::{LAG_WARN_MS, Percentiles};
use super::model::{DevicePlan, Fault};
use plotters::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

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

    /// Reached a final state the injected fault predicts: done for a healthy device, failed with
    /// the fault's code for a faulty one.
    pub(super) fn as_expected(&self) -> bool {
        match self.fault.expected_error() {
            None => self.fully_done(),
            Some(code) => self.state == "failed" && self.error_code.as_deref() == Some(code),
        }
    }
}

#[derive(Debug, Serialize)]
pub(super) struct OutcomeRow {
    pub ownership: String,
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

/// The baselines and where the run stands against them.
#[derive(Debug, Serialize)]
pub(super) struct Baselines {
    pub echo: EchoBaseline,
    pub argon2: Argon2Baseline,
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
}

#[derive(Debug, Serialize)]
pub(super) struct Report {
    pub tool: String,
    /// Every device's reset reached its end before the deadline (with --connect-only: every
    /// device connected).
    pub completed: bool,
    pub control_plane: BTreeMap<&'static str, String>,
    pub config: BTreeMap<&'static str, serde_json::Value>,
    pub argon2: Argon2Info,
    pub durations: Durations,
    pub behaviour: Behaviour,
    pub issue: Issue,
    pub outcomes: Vec<OutcomeRow>,
    pub outcome_total: usize,
    /// Devices whose reset did not end as their injected fault (or its absence) predicts.
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
    /// Every device's decisions and timestamps; empty with --connect-only.
    pub devices: Vec<DeviceRecord>,
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

fn phase_samples(devices: &[DeviceRecord]) -> Vec<(&'static str, &'static str, Vec<f64>)> {
    PHASES
        .iter()
        .map(|(name, description, measure)| {
            let samples = devices
                .iter()
                .filter(|d| d.state == "done" && d.delivered_at_ms > 0 && d.completed_at_ms > 0)
                .filter_map(measure)
                .map(|ms| ms as f64)
                .collect();
            (*name, *description, samples)
        })
        .collect()
}

pub(super) fn latencies(devices: &[DeviceRecord]) -> Vec<PhaseLatency> {
    phase_samples(devices)
        .into_iter()
        .map(|(phase, description, samples)| PhaseLatency {
            phase,
            description,
            stats: Percentiles::of(&samples),
        })
        .collect()
}

/// Resets whose control plane recorded the delivery after the device's own completion time:
/// `delivered_at` is when the control plane processed the acknowledgement, `completed_at` is the
/// device's clock when it finished, so a queue on the control plane shows up here.
pub(super) fn delivered_after_completed(devices: &[DeviceRecord]) -> usize {
    devices
        .iter()
        .filter(|d| d.completed_at_ms > 0 && d.delivered_at_ms > d.completed_at_ms)
        .count()
}

pub(super) fn outcomes(devices: &[DeviceRecord]) -> Vec<OutcomeRow> {
    let mut counts: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    for d in devices {
        let code = match (&d.error_code, &d.problem) {
            (Some(code), _) => code.clone(),
            (None, Some(_)) if d.state != "done" => "load_test_error".into(),
            (None, Some(_)) => "user_entry_not_recorded".into(),
            (None, None) => "-".into(),
        };
        *counts
            .entry((d.ownership.to_uppercase(), d.state.clone(), code))
            .or_default() += 1;
    }
    counts
        .into_iter()
        .map(|((ownership, state, error_code), count)| OutcomeRow {
            ownership,
            state,
            error_code,
            count,
        })
        .collect()
}

pub(super) fn throughput(devices: &[DeviceRecord]) -> Throughput {
    let start = devices
        .iter()
        .filter(|d| d.created_at_ms > 0)
        .map(|d| d.created_at_ms)
        .min();
    let finished: Vec<u64> = devices
        .iter()
        .filter(|d| d.completed_at_ms > 0 || (d.created_at_ms > 0 && is_final(&d.state)))
        .map(|d| d.completed_at_ms.max(d.created_at_ms))
        .collect();
    let done = devices.iter().filter(|d| d.state == "done").count();
    let (window_s, interval_ms, per_interval) = match (start, finished.iter().max()) {
        (Some(start), Some(end)) => {
            let interval_ms = if end - start < 10_000 { 100 } else { 1000 };
            let mut per_interval = vec![0u32; ((end - start) / interval_ms + 1) as usize];
            for at in &finished {
                per_interval[((at - start) / interval_ms) as usize] += 1;
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
        finished: finished.len(),
        done,
        window_s,
        finished_per_s: rate(finished.len()),
        done_per_s: rate(done),
        interval_ms,
        per_interval,
    }
}

pub(super) fn behaviour(
    devices: &[DeviceRecord],
    faults: String,
    faults_injected: BTreeMap<String, u64>,
) -> Behaviour {
    Behaviour {
        offline: devices.iter().filter(|d| d.offline_ms.is_some()).count(),
        reboots: devices.iter().filter(|d| d.reboot).count(),
        typos: devices.iter().filter(|d| d.typo).count(),
        faults,
        faults_injected,
    }
}

/// Events per second over the span of `times` (milliseconds): (count − 1) intervals over the
/// span, so a steady rate r gives r whatever the count; 0 with fewer than two events.
fn rate_of(times: impl Iterator<Item = u64>) -> f64 {
    let times: Vec<u64> = times.filter(|t| *t > 0).collect();
    match (times.iter().min(), times.iter().max()) {
        (Some(first), Some(last)) if times.len() > 1 => {
            (times.len() - 1) as f64 / ((last - first).max(1) as f64 / 1000.0)
        }
        _ => 0.0,
    }
}

pub(super) fn issue(
    devices: &[DeviceRecord],
    target_per_s: f64,
    in_flight_limit: Option<usize>,
    max_schedule_lag_ms: f64,
) -> Issue {
    Issue {
        target_per_s,
        in_flight_limit,
        issued: devices.iter().filter(|d| d.requested_at_ms > 0).count(),
        issued_per_s: rate_of(devices.iter().map(|d| d.requested_at_ms)),
        accepted_per_s: rate_of(devices.iter().map(|d| d.created_at_ms)),
        max_schedule_lag_ms,
    }
}

pub(super) fn is_final(state: &str) -> bool {
    matches!(
        state,
        "done" | "failed" | "canceled" | "not_supported" | "expired"
    )
}

fn kib(value: Option<u64>) -> String {
    value.map_or("n/a".into(), |v| format!("{:.1} MiB", v as f64 / 1024.0))
}

fn opt(value: Option<f64>, decimals: usize, unit: &str) -> String {
    value.map_or("n/a".into(), |v| format!("{v:.decimals$}{unit}"))
}

impl Report {
    fn connect_only(&self) -> bool {
        self.config["mode"] == "connect_only"
    }

    fn control_plane_line(&self) -> String {
        let pid = self
            .control_plane
            .get("pid")
            .map(|p| format!(", pid {p}"))
            .unwrap_or_default();
        format!(
            "{} ({}{pid})",
            self.control_plane["mode"], self.control_plane["address"]
        )
    }

    fn rate_text(&self) -> String {
        let limit = match self.issue.in_flight_limit {
            Some(n) => format!("at most {n} in flight"),
            None => "no in-flight limit".into(),
        };
        if self.issue.target_per_s > 0.0 {
            format!("{} resets/s, {limit}", self.issue.target_per_s)
        } else {
            format!("all at once, {limit}")
        }
    }

    fn behaviour_text(&self) -> String {
        let b = &self.behaviour;
        let injected: Vec<String> = b
            .faults_injected
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(kind, n)| format!("{n} {kind}"))
            .collect();
        format!(
            "offline before their reset: {} (mean {} ms); rebooted before their user's entry: {}; \
             typos: {}; faults: {}{}",
            b.offline,
            self.config["offline_ms"],
            b.reboots,
            b.typos,
            b.faults,
            if injected.is_empty() {
                String::new()
            } else {
                format!(" (injected: {})", injected.join(", "))
            }
        )
    }

    /// The figures a reader looks for first, as (label, text) rows.
    fn headline(&self) -> Vec<(&'static str, String)> {
        let mut rows = Vec::new();
        let applied = self.latency_ms[HEADLINE_PHASE].stats;
        rows.push((
            "requested → applied",
            format!(
                "p50 {:.0} ms, p99 {:.0} ms ({} resets ended done on devices kept online)",
                applied.p50, applied.p99, applied.count
            ),
        ));
        let t = &self.throughput;
        rows.push((
            "throughput",
            format!(
                "{:.1} resets/s reached a final state ({:.1}/s done) over {:.2} s",
                t.finished_per_s, t.done_per_s, t.window_s
            ),
        ));
        let i = &self.issue;
        let lag = if i.target_per_s > 0.0 {
            format!("; worst schedule lag {:.0} ms", i.max_schedule_lag_ms)
        } else {
            String::new()
        };
        rows.push((
            "issued",
            format!(
                "{:.1}/s sent by the load generator ({}); {:.1}/s accepted by the control plane{lag}",
                i.issued_per_s,
                self.rate_text(),
                i.accepted_per_s,
            ),
        ));
        if let Some(b) = &self.baselines {
            rows.push((
                "echo baseline",
                format!(
                    "{:.0} calls/s ({} connections, {} in flight); resets/s ÷ echo = {:.4}",
                    b.echo.calls_per_s, b.echo.connections, b.echo.concurrency, b.ratio_to_echo
                ),
            ));
            rows.push((
                "Argon2 bound",
                format!(
                    "{:.0} hashes/s on {} threads ÷ {:.2} runs per done reset = {:.0} resets/s; \
                     done/s ÷ bound = {:.4}",
                    b.argon2.hashes_per_s,
                    b.argon2.threads,
                    b.argon2_runs_per_done_reset,
                    b.argon2_bound_resets_per_s,
                    b.ratio_to_argon2_bound
                ),
            ));
        }
        rows
    }

    /// One row per process: role, pid, peak RSS, CPU s, CPU/s, RSS before → after connect,
    /// memory per device.
    fn resource_rows(&self) -> Vec<[String; 7]> {
        self.resources
            .processes
            .iter()
            .map(|p| {
                [
                    p.role.clone(),
                    p.pid.to_string(),
                    kib(p.peak_rss_kib),
                    opt(p.cpu_s, 2, " s"),
                    opt(p.cpu_utilisation, 2, ""),
                    format!(
                        "{} → {}",
                        kib(p.rss_before_connect_kib),
                        kib(p.rss_after_connect_kib)
                    ),
                    opt(p.memory_per_device_kib, 2, " KiB"),
                ]
            })
            .collect()
    }

    /// The human table printed on stdout.
    pub(super) fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "\n{}", self.tool);
        let _ = writeln!(
            out,
            "control plane: {}   argon2: {} ({} KiB, t={}, p={})",
            self.control_plane_line(),
            self.argon2.preset,
            self.argon2.memory_kib,
            self.argon2.iterations,
            self.argon2.parallelism
        );
        let _ = writeln!(
            out,
            "devices: {}   seed: {}   mix: {}   connections: {}   ramp-up: {} ms   decision digest: {}",
            self.config["devices"],
            self.config["seed"],
            self.config["mix"].as_str().unwrap_or_default(),
            self.config["connections"],
            self.config["ramp_up_ms"],
            &self.decision_digest[..16]
        );
        if self.connect_only() {
            let _ = writeln!(
                out,
                "connect-only: {} devices enrolled and connected in {:.1} s (total {:.1} s); {}",
                self.config["devices"],
                self.durations.connect_s,
                self.durations.total_s,
                if self.completed {
                    "completed"
                } else {
                    "INCOMPLETE"
                }
            );
        } else {
            let _ = writeln!(out, "rate: {}", self.rate_text());
            let _ = writeln!(out, "behaviour: {}", self.behaviour_text());
            let _ = writeln!(
                out,
                "setup {:.1} s (connect {:.1} s), reset phase {:.1} s, total {:.1} s; {}",
                self.durations.setup_s,
                self.durations.connect_s,
                self.durations.reset_phase_s,
                self.durations.total_s,
                if self.completed {
                    "completed"
                } else {
                    "INCOMPLETE (deadline)"
                }
            );

            let _ = writeln!(out, "\nHeadline");
            for (label, text) in self.headline() {
                let _ = writeln!(out, "  {label:<22} {text}");
            }

            let _ = writeln!(out, "\nOutcomes");
            let _ = writeln!(
                out,
                "  {:<6} {:<14} {:<26} {:>7}",
                "type", "state", "error code", "devices"
            );
            for row in &self.outcomes {
                let _ = writeln!(
                    out,
                    "  {:<6} {:<14} {:<26} {:>7}",
                    row.ownership, row.state, row.error_code, row.count
                );
            }
            let _ = writeln!(
                out,
                "  total {}; not as the injected faults predict: {}; setup resets (not counted): {}",
                self.outcome_total, self.unexpected, self.setup_resets
            );

            let _ = writeln!(out, "\nLatency of resets that ended done (ms)");
            let _ = writeln!(
                out,
                "  {:<26} {:>7} {:>9} {:>9} {:>9} {:>9}",
                "phase", "count", "p50", "p90", "p99", "max"
            );
            for phase in &self.latency_ms {
                let s = phase.stats;
                let _ = writeln!(
                    out,
                    "  {:<26} {:>7} {:>9.0} {:>9.0} {:>9.0} {:>9.0}",
                    phase.phase, s.count, s.p50, s.p90, s.p99, s.max
                );
            }
        }

        let _ = writeln!(out, "\nResources per process");
        let _ = writeln!(
            out,
            "  {:<40} {:>8} {:>10} {:>9} {:>6} {:>25} {:>12}",
            "process", "pid", "peak RSS", "CPU", "CPU/s", "RSS before → after conn.", "per device"
        );
        for [role, pid, peak, cpu, util, rss, per_device] in self.resource_rows() {
            let _ = writeln!(
                out,
                "  {role:<40} {pid:>8} {peak:>10} {cpu:>9} {util:>6} {rss:>25} {per_device:>12}"
            );
        }
        let l = &self.scheduler_lag_ms;
        let _ = writeln!(
            out,
            "  scheduler lag of this process ({} ms ticks): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            l.tick_ms, l.stats.p50, l.stats.p99, l.stats.max
        );
        for warning in &self.warnings {
            let _ = writeln!(out, "\nWARNING: {warning}");
        }
        out
    }

    /// The self-contained HTML page.
    pub(super) fn html(&self) -> String {
        let mut page = String::new();
        let _ = write!(
            page,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>droidfleet load test</title><style>\
             body{{font-family:sans-serif;margin:2em;max-width:1100px}}\
             table{{border-collapse:collapse;margin:1em 0}}\
             td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}\
             td:first-child,th:first-child{{text-align:left}}\
             .warn{{background:#fee;border:1px solid #c00;padding:.5em}}\
             </style></head><body>\n<h1>droidfleet load test</h1>\n<p>{}</p>\n",
            escape(&self.tool)
        );
        let _ = writeln!(
            page,
            "<p>Control plane: {}. Argon2 preset: <b>{}</b> ({} KiB, t={}, p={}). \
             Devices: {}, seed {}, mix {}, {} connection(s), ramp-up {} ms. \
             Decision digest <code>{}</code>. {}</p>",
            escape(&self.control_plane_line()),
            escape(&self.argon2.preset),
            self.argon2.memory_kib,
            self.argon2.iterations,
            self.argon2.parallelism,
            self.config["devices"],
            self.config["seed"],
            escape(self.config["mix"].as_str().unwrap_or_default()),
            self.config["connections"],
            self.config["ramp_up_ms"],
            escape(&self.decision_digest),
            match (self.connect_only(), self.completed) {
                (true, true) => format!(
                    "Connect-only: every device enrolled and connected in {:.1} s.",
                    self.durations.connect_s
                ),
                (true, false) => "<b>Not every device connected.</b>".to_string(),
                (false, true) => "The run completed.".to_string(),
                (false, false) =>
                    "<b>The run hit its deadline before every reset ended.</b>".to_string(),
            }
        );
        for warning in &self.warnings {
            let _ = writeln!(page, "<p class=\"warn\">{}</p>", escape(warning));
        }

        if !self.connect_only() {
            let _ = writeln!(
                page,
                "<p>Rate: {}. Behaviour: {}.</p>",
                escape(&self.rate_text()),
                escape(&self.behaviour_text())
            );
            page.push_str("<h2>Headline</h2>\n<table>\n");
            for (label, text) in self.headline() {
                let _ = writeln!(
                    page,
                    "<tr><td>{}</td><td style=\"text-align:left\">{}</td></tr>",
                    escape(label),
                    escape(&text)
                );
            }
            page.push_str("</table>\n");

            page.push_str(
                "<h2>Outcomes</h2>\n<table><tr><th>type</th><th>state</th><th>error code</th>\
                 <th>devices</th></tr>\n",
            );
            for row in &self.outcomes {
                let _ = writeln!(
                    page,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(&row.ownership),
                    escape(&row.state),
                    escape(&row.error_code),
                    row.count
                );
            }
            let _ = writeln!(
                page,
                "</table><p>Total {}; not as the injected faults predict: {}.</p>",
                self.outcome_total, self.unexpected
            );

            page.push_str(
                "<h2>Latency of resets that ended done (ms)</h2>\n<table><tr><th>phase</th>\
                 <th>count</th><th>p50</th><th>p90</th><th>p99</th><th>max</th></tr>\n",
            );
            for phase in &self.latency_ms {
                let s = phase.stats;
                let _ = writeln!(
                    page,
                    "<tr><td>{}</td><td>{}</td><td>{:.0}</td><td>{:.0}</td><td>{:.0}</td>\
                     <td>{:.0}</td></tr>",
                    escape(phase.description),
                    s.count,
                    s.p50,
                    s.p90,
                    s.p99,
                    s.max
                );
            }
            page.push_str("</table>\n");
            for (_, description, samples) in phase_samples(&self.devices) {
                page.push_str(&histogram_svg(description, &samples));
                page.push('\n');
            }

            let t = &self.throughput;
            let _ = writeln!(
                page,
                "<h2>Throughput</h2><p>{:.1} resets/s reached a final state ({:.1}/s done) over \
                 {:.2} s.</p>",
                t.finished_per_s, t.done_per_s, t.window_s
            );
            page.push_str(&throughput_svg(t.interval_ms, &t.per_interval));

            if let Some(b) = &self.baselines {
                let _ = writeln!(
                    page,
                    "<h2>Baselines (same run, median of three rounds)</h2><table>\
                     <tr><th>baseline</th><th>rounds</th><th>median</th><th>ratio of the run</th></tr>\
                     <tr><td>tonic unary echo, {} connections, {} in flight, {} calls per round</td>\
                     <td>{}</td><td>{:.0} calls/s</td><td>resets/s ÷ echo = {:.4}</td></tr>\
                     <tr><td>Argon2 on {} threads, {} hashes per round; bound = hashes/s ÷ {:.2} \
                     runs per done reset = {:.0} resets/s</td><td>{}</td><td>{:.0} hashes/s</td>\
                     <td>done/s ÷ bound = {:.4}</td></tr></table>",
                    b.echo.connections,
                    b.echo.concurrency,
                    b.echo.calls_per_round,
                    rounds(&b.echo.rounds_calls_per_s),
                    b.echo.calls_per_s,
                    b.ratio_to_echo,
                    b.argon2.threads,
                    b.argon2.hashes_per_round,
                    b.argon2_runs_per_done_reset,
                    b.argon2_bound_resets_per_s,
                    rounds(&b.argon2.rounds_hashes_per_s),
                    b.argon2.hashes_per_s,
                    b.ratio_to_argon2_bound
                );
            }
        }

        page.push_str(
            "<h2>Resources per process</h2><table><tr><th>process</th><th>pid</th>\
             <th>peak RSS</th><th>CPU</th><th>CPU-s per s</th><th>RSS before → after connect</th>\
             <th>memory per connected device</th></tr>\n",
        );
        for row in self.resource_rows() {
            page.push_str("<tr>");
            for cell in row {
                let _ = write!(page, "<td>{}</td>", escape(&cell));
            }
            page.push_str("</tr>\n");
        }
        let l = &self.scheduler_lag_ms;
        let _ = writeln!(
            page,
            "</table><p>Scheduler lag of this process p50 / p99 / max: {:.1} / {:.1} / {:.1} ms.</p>",
            l.stats.p50, l.stats.p99, l.stats.max
        );
        if !self.notes.is_empty() {
            page.push_str("<h2>Notes</h2><ul>\n");
            for note in &self.notes {
                let _ = writeln!(page, "<li>{}</li>", escape(note));
            }
            page.push_str("</ul>\n");
        }
        page.push_str("</body></html>\n");
        page
    }
}

fn rounds(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.0}"))
        .collect::<Vec<_>>()
        .join(" / ")
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

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const CHART: (u32, u32) = (900, 300);

/// A histogram of `samples` (ms) in at most 40 bins of whole milliseconds.
fn histogram_svg(title: &str, samples: &[f64]) -> String {
    let mut svg = String::new();
    let max = samples.iter().copied().fold(0.0, f64::max);
    let width = (max / 40.0).ceil().max(1.0);
    let bins = ((max / width).floor() as usize) + 1;
    let mut counts = vec![0u32; bins];
    for s in samples {
        counts[((s / width).floor() as usize).min(bins - 1)] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(0).max(1);
    let drawn = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
        let root = SVGBackend::with_string(&mut svg, CHART).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("{title}, n={}", samples.len()), ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..(bins as f64 * width), 0u32..top + top / 10 + 1)?;
        chart
            .configure_mesh()
            .x_desc("milliseconds")
            .y_desc("resets")
            .disable_x_mesh()
            .draw()?;
        chart.draw_series(counts.iter().enumerate().map(|(i, c)| {
            let x = i as f64 * width;
            Rectangle::new([(x, 0), (x + width, *c)], BLUE.mix(0.7).filled())
        }))?;
        root.present()?;
        Ok(())
    })();
    if drawn.is_err() {
        return format!("<p>(no chart for {})</p>", escape(title));
    }
    svg
}

/// The rate of actions reaching a final state over the reset phase, in resets per second.
fn throughput_svg(interval_ms: u64, per_interval: &[u32]) -> String {
    let mut svg = String::new();
    let scale = 1000.0 / interval_ms as f64;
    let rates: Vec<(f64, f64)> = per_interval
        .iter()
        .enumerate()
        .map(|(i, c)| {
            (
                (i as u64 * interval_ms) as f64 / 1000.0,
                f64::from(*c) * scale,
            )
        })
        .collect();
    let top = rates.iter().map(|(_, r)| *r).fold(1.0, f64::max);
    let span = (per_interval.len().max(1) as u64 * interval_ms) as f64 / 1000.0;
    let step = interval_ms as f64 / 1000.0;
    let drawn = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
        let root = SVGBackend::with_string(&mut svg, CHART).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("resets reaching a final state per second ({interval_ms} ms intervals)"),
                ("sans-serif", 16),
            )
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..span, 0.0..top * 1.1)?;
        chart
            .configure_mesh()
            .x_desc("seconds since the first reset")
            .y_desc("resets/s")
            .draw()?;
        chart.draw_series(
            rates.iter().map(|(x, r)| {
                Rectangle::new([(*x, 0.0), (*x + step, *r)], GREEN.mix(0.6).filled())
            }),
        )?;
        chart.draw_series(LineSeries::new(
            rates.iter().map(|(x, r)| (*x + step / 2.0, *r)),
            &BLACK,
        ))?;
        root.present()?;
        Ok(())
    })();
    if drawn.is_err() {
        return "<p>(no throughput chart)</p>".into();
    }
    svg
}
