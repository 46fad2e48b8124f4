//! What the load test measures: latency percentiles (on `hdrhistogram`), the memory and CPU of this process and of
//! a control plane running as its own process (read from `/proc`, so Linux only; elsewhere those
//! figures are absent), and the scheduler lag that tells whether the load generator itself was
//! the bottleneck.

use super::control_plane::ControlPlane;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// The highest latency a histogram holds, in microseconds (an hour); a longer one is recorded as
/// an hour. With [`SIGNIFICANT_DIGITS`] this fixes each histogram's memory (tens of KiB) whatever
/// the run's length or the number of samples.
const HIGHEST_US: u64 = 3_600_000_000;
/// Every figure to 3 significant digits: a value is reported within 0.1 % of what was recorded.
pub(super) const SIGNIFICANT_DIGITS: u8 = 3;

/// A latency histogram in microseconds (the unit of the HDR log next to report.json).
pub(super) fn latency_histogram() -> Histogram<u64> {
    // The bounds are constants hdrhistogram accepts (1 ≤ low, high ≥ 2·low, 3 digits).
    Histogram::new_with_bounds(1, HIGHEST_US, SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid")
}

/// Records `ms` milliseconds in a [`latency_histogram`].
pub(super) fn record_ms(histogram: &mut Histogram<u64>, ms: f64) {
    if ms.is_finite() && ms >= 0.0 {
        histogram.saturating_record((ms * 1000.0).round() as u64);
    }
}

/// Count and percentiles (HdrHistogram's: the smallest recorded value with at least p of the
/// samples at or below it, to 3 significant digits), in milliseconds.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub(super) struct Percentiles {
    pub count: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// Of a [`latency_histogram`].
    pub(super) fn of(histogram: &Histogram<u64>) -> Percentiles {
        if histogram.is_empty() {
            return Percentiles::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            count: usize::try_from(histogram.len()).unwrap_or(usize::MAX),
            p50: ms(histogram.value_at_quantile(0.50)),
            p90: ms(histogram.value_at_quantile(0.90)),
            p99: ms(histogram.value_at_quantile(0.99)),
            max: ms(histogram.max()),
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
/// do not exist or the process has gone. Kept rather than the `procfs` crate: the load test
/// needs three numbers from two files, which this reads in twenty lines with no dependency.
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
    task: tokio::task::JoinHandle<Histogram<u64>>,
}

impl LagProbe {
    pub(super) fn start() -> LagProbe {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut lags = latency_histogram();
            let mut due = Instant::now() + LAG_TICK;
            // Bounded: stops when told, and the load test always tells it.
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => {}
                    _ = stopped.changed() => break,
                }
                let now = Instant::now();
                record_ms(
                    &mut lags,
                    now.saturating_duration_since(due).as_secs_f64() * 1000.0,
                );
                due = now + LAG_TICK;
            }
            lags
        });
        LagProbe { stop, task }
    }

    /// Stops the probe and returns the lags it saw.
    pub(super) async fn finish(self) -> Histogram<u64> {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_else(|_| latency_histogram())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(samples_ms: &[f64]) -> Percentiles {
        let mut histogram = latency_histogram();
        for &ms in samples_ms {
            record_ms(&mut histogram, ms);
        }
        Percentiles::of(&histogram)
    }

    /// Within 0.1 % (3 significant digits) of `expected`.
    fn close(actual: f64, expected: f64) -> bool {
        (actual - expected).abs() <= expected * 0.001
    }

    #[test]
    fn percentiles_to_three_significant_digits() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = of(&samples);
        assert_eq!(p.count, 100);
        for (actual, expected) in [(p.p50, 50.0), (p.p90, 90.0), (p.p99, 99.0), (p.max, 100.0)] {
            assert!(close(actual, expected), "{actual} for {expected}");
        }
        assert_eq!(of(&[]), Percentiles::default());
        assert!(close(of(&[7.0]).p99, 7.0));
        // Sub-millisecond values keep their digits; a value past an hour is held as an hour.
        assert!(close(of(&[0.123]).p50, 0.123));
        assert!(close(of(&[1e9]).max, 3_600_000.0));
    }

    #[test]
    fn a_histogram_does_not_grow_with_its_samples() {
        let mut histogram = latency_histogram();
        let empty = histogram.distinct_values();
        for i in 0..1_000_000u32 {
            record_ms(&mut histogram, f64::from(i % 60_000));
        }
        assert_eq!(histogram.distinct_values(), empty);
        assert_eq!(histogram.len(), 1_000_000);
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
