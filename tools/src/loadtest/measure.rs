//! What the load test measures: latency percentiles, the memory and CPU of this process and of
//! a control plane running as its own process (read from `/proc`, so Linux only; elsewhere those
//! figures are absent), and the scheduler lag that tells whether the load generator itself was
//! the bottleneck.

use super::control_plane::ControlPlane;
use serde::Serialize;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Count and nearest-rank percentiles of a set of samples, in milliseconds.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub(super) struct Percentiles {
    pub count: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    pub(super) fn of(samples: &[f64]) -> Percentiles {
        let mut sorted: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        // Nearest rank: the smallest sample with at least p of the samples at or below it.
        let rank = |p: f64| -> f64 {
            if sorted.is_empty() {
                return 0.0;
            }
            let k = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            sorted[k - 1]
        };
        Percentiles {
            count: sorted.len(),
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: sorted.last().copied().unwrap_or(0.0),
        }
    }
}

/// The process's memory and CPU at one moment.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub(super) struct ProcessSample {
    pub rss_kib: u64,
    /// Peak resident set size so far (VmHWM).
    pub peak_rss_kib: u64,
    /// User plus system CPU time, in clock ticks.
    pub cpu_ticks: u64,
}

/// Reads `/proc/<pid>/status` and `/proc/<pid>/stat` (`None`: this process); `None` where they
/// do not exist or the process has gone.
pub(super) fn sample(pid: Option<u32>) -> Option<ProcessSample> {
    let dir = match pid {
        Some(pid) => format!("/proc/{pid}"),
        None => "/proc/self".to_string(),
    };
    let status = std::fs::read_to_string(format!("{dir}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line[name.len()..].split_whitespace().next()?.parse().ok()
    };
    let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses; the fields after the last ')'
    // start at field 3 (state), so utime and stime (fields 14 and 15) are the 12th and 13th.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(ProcessSample {
        rss_kib: field("VmRSS:")?,
        peak_rss_kib: field("VmHWM:")?,
        cpu_ticks: utime + stime,
    })
}

/// This process and the control plane's (when it has its own) at one moment.
#[derive(Clone, Copy, Debug)]
pub(super) struct Snapshot {
    pub at: Instant,
    /// This process; `None` where /proc cannot be read.
    pub own: Option<ProcessSample>,
    /// The control plane's process; `None` when it is this one or unknown.
    pub control_plane: Option<ProcessSample>,
}

impl Snapshot {
    pub(super) fn take(control_plane: &ControlPlane) -> Snapshot {
        Snapshot {
            at: Instant::now(),
            own: sample(None),
            control_plane: control_plane.sample(),
        }
    }

    /// This process only.
    pub(super) fn take_own() -> Snapshot {
        Snapshot {
            at: Instant::now(),
            own: sample(None),
            control_plane: None,
        }
    }
}

/// Clock ticks per second (`CLK_TCK`) for the CPU times in `/proc`, and where the figure came
/// from. The binary forbids `unsafe`, so it cannot call `sysconf`; it asks `getconf` and
/// otherwise assumes 100, which is what Linux reports to user space on every common
/// architecture.
pub(super) fn clock_ticks_per_second() -> (u64, &'static str) {
    let asked = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|t| *t > 0);
    match asked {
        Some(ticks) => (ticks, "getconf CLK_TCK"),
        None => (100, "assumed 100 Hz (getconf unavailable)"),
    }
}

/// How often the lag probe wakes up.
pub(super) const LAG_TICK: Duration = Duration::from_millis(10);
/// Above this p99 lag the report warns that the load generator saturated.
pub(super) const LAG_WARN_MS: f64 = 50.0;

/// A task that asks to wake every [`LAG_TICK`] and records how late each wake-up is. When the
/// runtime's workers are busy (Argon2 on the blocking pool aside, every simulated device, the
/// embedded control plane and the admin clients share them), wake-ups come late; large lag
/// means the measured latencies include the generator's own queueing.
pub(super) struct LagProbe {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Vec<f64>>,
}

impl LagProbe {
    pub(super) fn start() -> LagProbe {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut lags_ms = Vec::new();
            let mut due = Instant::now() + LAG_TICK;
            // Bounded: stops when told, and the load test always tells it.
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => {}
                    _ = stopped.changed() => break,
                }
                let now = Instant::now();
                lags_ms.push(now.saturating_duration_since(due).as_secs_f64() * 1000.0);
                due = now + LAG_TICK;
            }
            lags_ms
        });
        LagProbe { stop, task }
    }

    /// Stops the probe and returns every lag it saw, in milliseconds.
    pub(super) async fn finish(self) -> Vec<f64> {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&samples);
        assert_eq!(
            (p.count, p.p50, p.p90, p.p99, p.max),
            (100, 50.0, 90.0, 99.0, 100.0)
        );
        assert_eq!(Percentiles::of(&[]).count, 0);
        assert_eq!(Percentiles::of(&[7.0]).p99, 7.0);
    }

    #[test]
    fn reads_this_process_by_self_and_by_pid() {
        if let Some(s) = sample(None) {
            assert!(s.rss_kib > 0 && s.peak_rss_kib >= s.rss_kib);
            let by_pid = sample(Some(std::process::id())).expect("this process by its pid");
            assert!(by_pid.rss_kib > 0 && by_pid.cpu_ticks >= s.cpu_ticks);
        }
    }
}
