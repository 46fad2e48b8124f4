//! The report as text for a person: the table printed on stdout, and the lines and rows the
//! HTML page shows too.

use super::{HEADLINE_PHASE, Report};
use std::fmt::Write as _;

fn kib(value: Option<u64>) -> String {
    value.map_or("n/a".into(), |v| format!("{:.1} MiB", v as f64 / 1024.0))
}

fn opt(value: Option<f64>, decimals: usize, unit: &str) -> String {
    value.map_or("n/a".into(), |v| format!("{v:.decimals$}{unit}"))
}

impl Report {
    pub(super) fn connect_only(&self) -> bool {
        self.config["mode"] == "connect_only"
    }

    pub(super) fn control_plane_line(&self) -> String {
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

    pub(super) fn rate_text(&self) -> String {
        let limit = match self.issue.in_flight_limit {
            Some(n) => format!("at most {n} in flight"),
            None => "no in-flight limit".into(),
        };
        let period = match self.config["duration_s"].as_f64() {
            Some(seconds) => format!(" for {seconds} s (soak)"),
            None => String::new(),
        };
        if self.issue.target_per_s > 0.0 {
            format!("{} resets/s{period}, {limit}", self.issue.target_per_s)
        } else {
            format!("all at once, {limit}")
        }
    }

    pub(super) fn behaviour_text(&self) -> String {
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
    pub(super) fn headline(&self) -> Vec<(&'static str, String)> {
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
        let rss = &self.time_series.rss_kib;
        if let (Some(Some(first)), Some(Some(last))) = (rss.first(), rss.last()) {
            rows.push((
                "load generator RSS",
                format!(
                    "{} in the measured phase's first second, {} in its last ({} seconds; \
                     time_series in report.json)",
                    kib(Some(*first)),
                    kib(Some(*last)),
                    rss.len()
                ),
            ));
        }
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
            rows.push((
                "streaming echo",
                format!(
                    "{:.0} messages/s one way ({} streams over {} connections)",
                    b.stream_echo.messages_per_s, b.stream_echo.streams, b.stream_echo.connections
                ),
            ));
            let c = &b.ceiling;
            rows.push((
                "protocol ceiling",
                format!(
                    "{:.0} resets/s ({:.0} µs of the machine per reset; the protocol's units \
                     alone: {:.0} resets/s); resets/s ÷ ceiling = {:.4}",
                    c.resets_per_s, c.us_per_reset, c.protocol_resets_per_s, c.ratio
                ),
            ));
            for unit in &c.units {
                rows.push((
                    unit.unit,
                    format!(
                        "({} + {:.2}) per reset × {:.2} µs = {:.1} µs",
                        unit.protocol_per_reset,
                        unit.added_per_reset,
                        unit.cost_us,
                        (unit.protocol_per_reset + unit.added_per_reset) * unit.cost_us
                    ),
                ));
            }
        }
        rows
    }

    /// One row per process: role, pid, peak RSS, CPU s, CPU/s, RSS before → after connect,
    /// memory per device.
    pub(super) fn resource_rows(&self) -> Vec<[String; 7]> {
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
    pub(in crate::loadtest) fn table(&self) -> String {
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
            "devices: {}   seed: {}   mix: {}   android: {}   profiles: {}   connections: {}   \
             ramp-up: {} ms   decision digest: {}",
            self.config["devices"],
            self.config["seed"],
            self.config["mix"].as_str().unwrap_or_default(),
            self.config["android"].as_str().unwrap_or_default(),
            self.config["profile"].as_str().unwrap_or_default(),
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
            if let Some(restart) = &self.durations.restart {
                let _ = writeln!(
                    out,
                    "restart: control plane killed (SIGKILL); every session ended after {:.1} s; \
                     the new process listened after {:.1} s; every device reconnected {:.1} s \
                     later",
                    restart.disconnect_s, restart.start_s, restart.reconnect_s
                );
            }
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
                "  {:<6} {:<7} {:<24} {:<14} {:<26} {:>7}",
                "type", "android", "profile", "state", "error code", "devices"
            );
            for row in &self.outcomes {
                let _ = writeln!(
                    out,
                    "  {:<6} {:<7} {:<24} {:<14} {:<26} {:>7}",
                    row.ownership,
                    format!("API {}", row.api_level),
                    row.profile,
                    row.state,
                    row.error_code,
                    row.count
                );
            }
            let _ = writeln!(
                out,
                "  total {}; not as predicted (fault, Android version, maker profile): {}; \
                 setup resets (not counted): {}",
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
}
