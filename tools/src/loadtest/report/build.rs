//! Assembling the report from what the run measured: per-process resources, the baselines'
//! ratios, warnings, notes, and the figures derived from the device records.

use super::Measured;
use super::{
    Argon2Info, Baselines, Durations, Lag, ProcessResources, Report, Resources, RestartDurations,
    UNESCROWED, lag_warning,
};
use crate::loadtest::args::LoadtestArgs;
use crate::loadtest::ceiling;
use crate::loadtest::drive::Run;
use crate::loadtest::measure::{self, LAG_TICK, Percentiles, ProcessSample, Snapshot};
use hdrhistogram::Histogram;
use serde_json::json;
use std::collections::BTreeMap;
use tokio::time::Instant;

/// The run's fixed facts, for the report.
pub(in crate::loadtest) struct Setting {
    /// The control plane: "embedded", "spawned" or "external".
    pub mode: &'static str,
    pub address: String,
    /// The control plane's own process, when it has one that was sampled.
    pub control_plane_pid: Option<u32>,
    /// The decision digest of the plans.
    pub digest: String,
    /// Clock ticks per second of /proc's CPU times, and where the figure came from.
    pub ticks: (u64, &'static str),
    pub total_s: f64,
}

/// Figures for one process between two snapshots of it.
fn process_resources(
    role: &str,
    pid: u32,
    start: (Instant, Option<ProcessSample>),
    end: (Instant, Option<ProcessSample>),
    connect: (Option<ProcessSample>, Option<ProcessSample>),
    devices: usize,
    ticks: u64,
) -> ProcessResources {
    let wall_s = end.0.saturating_duration_since(start.0).as_secs_f64();
    let cpu_s = match (start.1, end.1) {
        (Some(a), Some(b)) => Some(b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64 / ticks as f64),
        _ => None,
    };
    let (before, after) = (connect.0.map(|s| s.rss_kib), connect.1.map(|s| s.rss_kib));
    ProcessResources {
        role: role.to_string(),
        pid,
        peak_rss_kib: end.1.map(|e| e.peak_rss_kib),
        cpu_s,
        wall_s,
        cpu_utilisation: cpu_s.map(|c| c / wall_s.max(0.001)),
        rss_before_connect_kib: before,
        rss_after_connect_kib: after,
        memory_per_device_kib: match (before, after) {
            (Some(b), Some(a)) => Some(a.saturating_sub(b) as f64 / devices.max(1) as f64),
            _ => None,
        },
    }
}

/// The injected-fault counters from the agent's Prometheus text, by kind.
fn faults_injected(metrics: &str) -> BTreeMap<String, u64> {
    const PREFIX: &str = "droidfleet_agent_faults_injected_total{kind=\"";
    metrics
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(PREFIX)?;
            let (kind, value) = rest.split_once("\"}")?;
            Some((kind.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// The report of a run: `snapshots` are this process and the control plane's at the start and
/// the end, `lags` the scheduler lag probe's histogram, `baselines` what the baselines measured.
pub(in crate::loadtest) fn build(
    args: &LoadtestArgs,
    setting: Setting,
    run: Run,
    lags: Histogram<u64>,
    [own_start, control_plane_start, own_end, control_plane_end]: [Snapshot; 4],
    baselines: Option<Measured>,
) -> Report {
    let embedded = setting.mode == "embedded";
    let (ticks, ticks_source) = setting.ticks;
    let lag = Percentiles::of(&lags);
    let mut warnings: Vec<String> = lag_warning(&lag).into_iter().collect();
    let unexpected = run.tally.unexpected();
    if unexpected > 0 {
        warnings.push(format!(
            "{unexpected} reset(s) did not end as their injected fault (or its absence) predicts; \
             see `problem` and `state` per device in report.json"
        ));
    }
    if !run.completed {
        warnings.push("the run reached its deadline before every reset ended".into());
    }
    if run.unescrowed > 0 {
        warnings.push(format!(
            "{} device(s): {UNESCROWED} (with --faults most likely lost with a broken session: \
             the agent sends an active token's escrow once, and again on a new session only \
             while the token is pending), so their resets cannot succeed; see `problem` per \
             device in report.json",
            run.unescrowed
        ));
    }

    let mut processes = vec![process_resources(
        if embedded {
            "control plane + agent + load generator"
        } else {
            "agent + load generator"
        },
        std::process::id(),
        (own_start.at, own_start.own),
        (own_end.at, own_end.own),
        (run.before_connect.own, run.after_connect.own),
        args.devices,
        ticks,
    )];
    // The kernel's VmHWM is only brought up to date when memory is unmapped, so a second's
    // RSS in the time series can be above the VmHWM read at the end: the peak is the higher.
    let series_peak = run.time_series.rss_kib.iter().flatten().copied().max();
    processes[0].peak_rss_kib = processes[0].peak_rss_kib.max(series_peak);
    // After a restart the process that ends the run started then.
    let control_plane_start = run
        .restart
        .as_ref()
        .map_or(control_plane_start, |r| r.started);
    if let Some(pid) = setting.control_plane_pid {
        processes.insert(
            0,
            process_resources(
                "control plane",
                pid,
                (control_plane_start.at, control_plane_start.control_plane),
                (control_plane_end.at, control_plane_end.control_plane),
                (
                    run.before_connect.control_plane,
                    run.after_connect.control_plane,
                ),
                args.devices,
                ticks,
            ),
        );
    }

    let throughput = run.tally.throughput();
    let latency_ms = run.tally.latencies();
    let kdf = args.argon2.params();
    let baselines = baselines.map(|measured| {
        let Measured {
            echo,
            stream_echo,
            argon2,
            units,
        } = measured;
        let runs_per_reset = run.tally.argon2_runs_per_done_reset();
        let bound = if runs_per_reset > 0.0 {
            argon2.hashes_per_s / runs_per_reset
        } else {
            0.0
        };
        let ratio = |x: f64, of: f64| if of > 0.0 { x / of } else { 0.0 };
        let ceiling = ceiling::ceiling(
            &echo,
            &stream_echo,
            &units,
            argon2.hashes_per_s,
            runs_per_reset,
            throughput.finished_per_s,
        );
        Baselines {
            ratio_to_echo: ratio(throughput.finished_per_s, echo.calls_per_s),
            ratio_to_argon2_bound: ratio(throughput.done_per_s, bound),
            echo,
            stream_echo,
            argon2,
            units,
            ceiling,
            argon2_runs_per_done_reset: runs_per_reset,
            argon2_bound_resets_per_s: bound,
        }
    });

    let mut notes = vec![
        match setting.mode {
            "embedded" => "One process hosts both sides (the embedded control plane and the agent \
                 with its devices) plus the load generator: its peak RSS, CPU time and memory per \
                 device cover all of them."
                .to_string(),
            "spawned" => "The control plane ran as a child process (`droidfleet serve` on a \
                 temporary data directory; its stderr is control-plane.log next to this report), \
                 ended by its PID after the run: each process has its own figures."
                .to_string(),
            _ if setting.control_plane_pid.is_some() => "The control plane runs elsewhere and \
                 was sampled by its PID (--control-plane-pid): each process has its own figures."
                .to_string(),
            _ => "The control plane runs elsewhere: the figures are this process's only (the \
                 agent with its devices, and the load generator)."
                .to_string(),
        },
        "Memory per connected device = (RSS once every device is enrolled and connected − RSS \
         just before the fleet was loaded) / devices, per process."
            .to_string(),
        format!(
            "CPU time is utime + stime from /proc/<pid>/stat in ticks of {ticks} Hz \
             ({ticks_source}), from the process's first sample (this process: its start; the \
             control plane: once it listened) to the end; utilisation is CPU-seconds per \
             wall-clock second over the same span (2.0 = two cores busy). Baselines run after \
             the last sample and are in no resource figure."
        ),
    ];
    if let Some(restart) = &run.restart {
        notes.push(format!(
            "Restart: once every device was connected the control plane was killed with SIGKILL; \
             {:.1} s later every device had seen its session end; the new process (same data \
             directory and address) listened {:.1} s after it was started, having loaded its \
             hot state from the store; every device was connected again {:.1} s after that. \
             The control plane's peak RSS and CPU time are the new process's, from when it \
             listened; its memory per device is the first process's.",
            restart.disconnect_s, restart.start_s, restart.reconnect_s
        ));
    }
    if !args.connect_only {
        notes.push(format!(
            "Latencies come from the timestamps the control plane records (milliseconds; \
             created_at and delivered_at are its clock, completed_at and user_entered_at the \
             device's as reported) of resets that ended done, except applied → revealed and \
             back online → applied, which use this process's clock (the same machine unless the \
             control plane is external). Requested → delivered / applied leave out the devices \
             taken offline before their reset (their wait is the simulated user's, not the \
             system's); back online → applied measures those. Applied → user entered includes \
             the admin's RevealPasscode, a reboot where one was decided, and the seeded user \
             delay (exponential, mean {} ms, capped at ten times the mean).",
            args.user_delay_ms
        ));
        notes.push(
            "Throughput: measured resets reaching a final state, from the first reset's \
             creation to the last final state. Issue rate: ResetPasscode calls sent per second by \
             this process (first to last send); accepted: the same by the control plane's \
             created_at."
                .to_string(),
        );
        notes.push(match args.duration {
            Some(period) => format!(
                "Soak (--duration {}): resets were issued at --rate for the whole period, each \
                 to the device idle longest (the front of a queue a device rejoins once its \
                 reset ended and, for a reset ending done, its user's entry was recorded), so \
                 every device is reset about as often as the others and has the longest rest \
                 between its resets; when every device was busy the next reset waited for one \
                 (see the issue lag). Every figure counts every reset; `devices` holds each \
                 device's last reset (not_issued if the period ended before its turn).",
                humantime::format_duration(period)
            ),
            None => "One reset per device.".to_string(),
        });
        notes.push(
            "Time series (time_series in report.json, one value per second of the measured \
             phase, `second` counting from its start): resets whose cycle ended in that second, \
             resets in flight at its end, the p50 and p99 of requested → applied of the resets \
             ending done in it (one HdrHistogram emptied each second; null when none did), and \
             this process's RSS at its end. About 60 bytes per second whatever the rate."
                .to_string(),
        );
        notes.push(
            "Admin calls per reset: ResetPasscode; WatchAction once the device has answered, \
             until the final state; RevealPasscode; WatchAction (until_user_entered) once the \
             user's entry has left the device, until the control plane records it. No reset is \
             watched from its request on: thousands of watches held open through a backlog \
             would each cost the control plane memory and a wake-up per change of their \
             action. When a device has answered, the load generator learns from the agent in \
             its own process (one subscriber to the fleet's screen changes)."
                .to_string(),
        );
    }
    if baselines.is_some() {
        notes.push(
            "Baselines, measured after the run on the same machine, median of three rounds. \
             Echo: a bare tonic unary call to an in-process server on loopback over TLS (as the \
             control plane serves), over as many HTTP/2 connections and with as many calls in \
             flight as the load generator's admin clients. Streaming echo: one long-lived \
             bidirectional stream per device (at most 10,000) over as many HTTP/2 connections \
             as the devices share, over TLS, each stream sending a message and awaiting its echo \
             in turn; counted in messages one way, as a device Session's messages travel. Argon2: the agent's passcode KDF with this run's parameters on every core \
             at once. Argon2 bound = hashes/s ÷ Argon2id runs per reset that ended done (from \
             this run's decisions: the reset wraps the new passcode, the user enters it, a typo \
             adds a wrong entry, a rebooted work-profile device adds the user's device PIN)."
                .to_string(),
        );
        notes.push(
            "Ratios. resets/s ÷ echo calls/s (resets reaching a final state per second): the \
             share of a bare RPC round trip's rate the whole reset flow reaches; its inverse is \
             how many bare round trips of work a reset costs (several admin calls, the session's \
             messages, durable writes, crypto). done resets/s ÷ Argon2 bound: how close the run \
             came to the rate at which the devices' passcode hashing alone would saturate every \
             core; near 1 means Argon2 is the bottleneck, far below 1 means messaging, storage \
             or the load generator is."
                .to_string(),
        );
        notes.push(
            "Protocol ceiling: the units of work one reset needs (admin unary calls, session \
             messages one way, Ed25519 signs and verifies, AES-256-GCM seals and opens, Argon2id \
             runs, SQLite rows in batched commits), counted from the code as the least the path \
             of a done reset performs, split into what the protocol needs and what this load \
             test and agent add (RevealPasscode, two WatchActions and their audit rows, a second \
             verify, typos and reboots); each unit's cost is 1 / its rate measured bare in this \
             run, on every core where it can use them, and the costs add because the units share \
             the cores. Ceiling = 1 / the sum: no implementation of this flow could pass it on \
             this machine; the run's resets/s as a fraction of it is how much of the machine \
             went to anything else (dispatch, copies, tasks, allocation, bookkeeping)."
                .to_string(),
        );
    }
    let late_acks = run.tally.delivered_after_completed();
    if late_acks > 0 {
        notes.push(format!(
            "{late_acks} reset(s) have delivered_at after completed_at: delivered_at is when the \
             control plane processed the device's acknowledgement, completed_at is the device's \
             own time of completion, so the control plane handled the acknowledgement after the \
             device had already applied the reset (its report queue); delivered → applied counts \
             them as 0 ms."
        ));
    }
    if run.setup_resets > 0 {
        notes.push(format!(
            "Pending-token fault: the agent has no call that leaves an escrowed token pending \
             (an active token survives a reboot), so {} device(s) first got a setup reset (its \
             rotated token stays pending; their users never enter the new passcode), then a \
             reboot (the management app escrows a fresh, pending token). Setup resets are in \
             no figure.",
            run.setup_resets
        ));
    }
    let config = BTreeMap::from([
        (
            "mode",
            json!(match (args.connect_only, args.duration) {
                (true, _) => "connect_only",
                (false, Some(_)) => "soak",
                (false, None) => "full",
            }),
        ),
        ("duration_s", json!(args.duration.map(|d| d.as_secs_f64()))),
        ("devices", json!(args.devices)),
        ("mix", json!(args.mix.to_string())),
        ("android", json!(args.android.to_string())),
        ("profile", json!(args.profile.to_string())),
        ("seed", json!(args.seed)),
        ("rate", json!(args.rate)),
        ("user_delay_ms", json!(args.user_delay_ms)),
        ("typo_probability", json!(args.typo_probability)),
        ("no_policy_share", json!(args.no_policy_share)),
        ("pending_token_share", json!(args.pending_token_share)),
        ("offline_share", json!(args.offline_share)),
        ("offline_ms", json!(args.offline_ms)),
        ("reboot_share", json!(args.reboot_share)),
        ("faults", json!(args.faults.to_string())),
        ("concurrency", json!(args.in_flight_limit())),
        ("connections", json!(args.connections)),
        ("ramp_up_ms", json!(args.ramp_up_ms)),
        ("deadline_s", json!(args.deadline)),
    ]);
    let mut control_plane = BTreeMap::from([
        ("mode", setting.mode.to_string()),
        ("address", setting.address),
    ]);
    if let Some(pid) = setting.control_plane_pid {
        control_plane.insert("pid", pid.to_string());
    }
    Report {
        tool: format!("droidfleet loadtest {}", env!("CARGO_PKG_VERSION")),
        completed: run.completed,
        control_plane,
        config,
        argon2: Argon2Info {
            preset: args.preset_name(),
            memory_kib: kdf.memory_kib,
            iterations: kdf.iterations,
            parallelism: kdf.parallelism,
        },
        durations: Durations {
            setup_s: run.setup_s,
            connect_s: run.connect_s,
            reset_phase_s: run.reset_phase_s,
            total_s: setting.total_s,
            restart: run.restart.as_ref().map(|r| RestartDurations {
                disconnect_s: r.disconnect_s,
                start_s: r.start_s,
                reconnect_s: r.reconnect_s,
            }),
        },
        behaviour: run
            .tally
            .behaviour(args.faults.to_string(), faults_injected(&run.agent_metrics)),
        issue: run
            .tally
            .issue(args.rate, args.in_flight_limit(), run.max_issue_lag_ms),
        outcomes: run.tally.outcomes(),
        outcome_total: run.tally.resets(),
        unexpected,
        setup_resets: run.setup_resets,
        latency_ms,
        throughput,
        baselines,
        resources: Resources {
            clock_ticks_per_s: ticks,
            clock_ticks_source: ticks_source,
            processes,
        },
        scheduler_lag_ms: Lag {
            tick_ms: LAG_TICK.as_millis() as u64,
            stats: lag,
            saturated: lag.p99 > measure::LAG_WARN_MS,
            histogram: lags,
        },
        warnings,
        notes,
        decision_digest: setting.digest,
        time_series: run.time_series,
        devices: run.devices,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_counts_come_from_the_agent_metrics() {
        let text = "# HELP x\n\
                    droidfleet_agent_faults_injected_total{kind=\"delay\"} 7\n\
                    droidfleet_agent_faults_injected_total{kind=\"drop\"} 0\n\
                    droidfleet_agent_reports_sent_total 99\n";
        let counts = faults_injected(text);
        assert_eq!(counts.len(), 2);
        assert_eq!(counts["delay"], 7);
        assert_eq!(counts["drop"], 0);
    }
}
