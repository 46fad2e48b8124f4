//! The measured phase second by second: resets whose cycle ended, resets in flight, the p50 and
//! p99 of requested → applied, and this process's RSS, for report.json's `time_series` and the
//! report page's charts.
//!
//! Memory is bounded whatever the run's length: one latency histogram is recycled from second
//! to second (its memory is fixed by its bounds, not by its samples), and each closed second
//! adds one value to each of six arrays (about 60 bytes: 1,800 points for a 30-minute soak is
//! about 100 KiB).
//!
//! [`Series`] is plain arithmetic over times it is given (from the phase's start), so a test
//! drives it with its own clock; [`Recorder`] feeds it from the runtime's clock and `/proc`.

use super::measure::{self, latency_histogram, record_ms};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;

/// The series as report.json holds it: value `i` of every array is for the second that began
/// `second[i]` seconds after the measured phase began (the last may be a partial second, cut
/// short by the phase's end).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub(super) struct TimeSeries {
    /// Seconds since the measured phase began, one per closed second, in order.
    pub second: Vec<u64>,
    /// Resets whose cycle ended in that second (a final state, and for a reset ending done the
    /// user's entry recorded, or a failure of the load test's own calls).
    pub finished: Vec<u32>,
    /// Resets issued and not yet ended, at the end of that second.
    pub in_flight: Vec<u32>,
    /// Median requested → applied (ms) of the resets that ended done in that second (devices
    /// kept online, as in the report's latency table); `null` when none did.
    pub p50_ms: Vec<Option<f64>>,
    /// The 99th percentile of the same; `null` when none did.
    pub p99_ms: Vec<Option<f64>>,
    /// This process's resident set size at the end of that second (`/proc/self/status`
    /// VmRSS); `null` where /proc cannot be read.
    pub rss_kib: Vec<Option<u64>>,
}

/// The open second and the closed ones before it.
pub(super) struct Series {
    /// Index of the open second (seconds since the phase began).
    open: u64,
    /// Requested → applied of the resets ended in the open second, in microseconds; emptied
    /// (not reallocated) when the second closes.
    latencies: Histogram<u64>,
    /// Resets ended in the open second.
    finished: u32,
    /// Resets issued and not yet ended, now.
    in_flight: u32,
    closed: TimeSeries,
}

impl Series {
    pub(super) fn new() -> Series {
        Series {
            open: 0,
            latencies: latency_histogram(),
            finished: 0,
            in_flight: 0,
            closed: TimeSeries::default(),
        }
    }

    /// A reset was issued.
    pub(super) fn issued(&mut self) {
        self.in_flight = self.in_flight.saturating_add(1);
    }

    /// A reset's cycle ended, with its requested → applied latency when it counts in the
    /// latency figures. It counts in the open second: only [`Series::close_until`] moves time.
    pub(super) fn finished(&mut self, latency_ms: Option<f64>) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.finished = self.finished.saturating_add(1);
        if let Some(ms) = latency_ms {
            record_ms(&mut self.latencies, ms);
        }
    }

    /// Closes every second that ended by `at` (time since the phase began), each with `rss_kib`
    /// (what the caller read at `at`). A second with nothing in it still gets its point, so a
    /// stall shows as zeros rather than a gap.
    pub(super) fn close_until(&mut self, at: Duration, rss_kib: Option<u64>) {
        while Duration::from_secs(self.open + 1) <= at {
            self.close(rss_kib);
        }
    }

    /// Closes the open second, however far into it `at` is, and returns the whole series.
    pub(super) fn finish(mut self, at: Duration, rss_kib: Option<u64>) -> TimeSeries {
        self.close_until(at, rss_kib);
        if Duration::from_secs(self.open) < at || self.finished > 0 {
            self.close(rss_kib);
        }
        self.closed
    }

    fn close(&mut self, rss_kib: Option<u64>) {
        let quantile = |q: f64| {
            (!self.latencies.is_empty())
                .then(|| self.latencies.value_at_quantile(q) as f64 / 1000.0)
        };
        let closed = &mut self.closed;
        closed.second.push(self.open);
        closed.finished.push(self.finished);
        closed.in_flight.push(self.in_flight);
        closed.p50_ms.push(quantile(0.50));
        closed.p99_ms.push(quantile(0.99));
        closed.rss_kib.push(rss_kib);
        self.latencies.reset();
        self.finished = 0;
        self.open += 1;
    }
}

/// A [`Series`] fed from the runtime's clock: the per-reset tasks report through it, and a
/// task closes each second as it ends, with this process's RSS read from `/proc`.
#[derive(Clone)]
pub(super) struct Recorder {
    series: Arc<Mutex<Series>>,
    started: Instant,
}

impl Recorder {
    /// Starts the series now, and the task that closes each second; the task ends when the
    /// recorder is finished.
    pub(super) fn start() -> (Recorder, tokio::task::JoinHandle<()>) {
        let recorder = Recorder {
            series: Arc::new(Mutex::new(Series::new())),
            started: Instant::now(),
        };
        let ticking = recorder.clone();
        let ticker = tokio::spawn(async move {
            // Bounded: aborted by `finish`, which every run reaches.
            for second in 1u64.. {
                tokio::time::sleep_until(ticking.started + Duration::from_secs(second)).await;
                let rss = own_rss_kib();
                ticking.lock().close_until(ticking.started.elapsed(), rss);
            }
        });
        (recorder, ticker)
    }

    /// When the series began: second 0 starts here.
    pub(super) fn started(&self) -> Instant {
        self.started
    }

    fn lock(&self) -> MutexGuard<'_, Series> {
        self.series.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn issued(&self) {
        self.lock().issued();
    }

    pub(super) fn finished(&self, latency_ms: Option<f64>) {
        self.lock().finished(latency_ms);
    }

    /// Stops the ticker and returns the series, its last second closed now.
    pub(super) fn finish(self, ticker: tokio::task::JoinHandle<()>) -> TimeSeries {
        ticker.abort();
        let at = self.started.elapsed();
        let rss = own_rss_kib();
        let series = std::mem::replace(&mut *self.lock(), Series::new());
        series.finish(at, rss)
    }
}

fn own_rss_kib() -> Option<u64> {
    measure::sample(None).map(|s| s.rss_kib)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(seconds: f64) -> Duration {
        Duration::from_secs_f64(seconds)
    }

    #[test]
    fn each_second_gets_its_own_counts_and_percentiles() {
        let mut series = Series::new();
        // Second 0: three issued, two end (10 ms and 30 ms).
        for _ in 0..3 {
            series.issued();
        }
        series.finished(Some(10.0));
        series.finished(Some(30.0));
        series.close_until(s(0.999), Some(100));
        series.close_until(s(1.0), Some(100));
        // Second 1: the third ends without a latency (a failure); one more is issued.
        series.finished(None);
        series.issued();
        series.close_until(s(2.5), Some(120));
        // Seconds 2 and 3 are quiet; the phase ends at 3.4 s with one still in flight.
        series.close_until(s(3.0), Some(130));
        let closed = series.finish(s(3.4), Some(140));

        assert_eq!(closed.second, [0, 1, 2, 3]);
        assert_eq!(closed.finished, [2, 1, 0, 0]);
        assert_eq!(closed.in_flight, [1, 1, 1, 1]);
        let p50 = closed.p50_ms[0].expect("second 0 has latencies");
        let p99 = closed.p99_ms[0].expect("second 0 has latencies");
        assert!((p50 - 10.0).abs() < 0.01, "{p50}");
        assert!((p99 - 30.0).abs() < 0.03, "{p99}");
        // The histogram was emptied when its second closed: later seconds have no latency.
        assert_eq!(closed.p50_ms[1..], [None, None, None]);
        assert_eq!(closed.p99_ms[1..], [None, None, None]);
        assert_eq!(closed.rss_kib, [Some(100), Some(120), Some(130), Some(140)]);
    }

    #[test]
    fn a_late_tick_closes_every_second_it_missed() {
        let mut series = Series::new();
        series.issued();
        series.finished(Some(5.0));
        series.close_until(s(3.2), None);
        let closed = series.finish(s(3.2), None);
        // The event counts in the second that was open; the missed seconds are zeros, and the
        // partial fourth second is closed at the end.
        assert_eq!(closed.second, [0, 1, 2, 3]);
        assert_eq!(closed.finished, [1, 0, 0, 0]);
        assert_eq!(closed.in_flight, [0, 0, 0, 0]);
        assert!(closed.p50_ms[0].is_some() && closed.p50_ms[1].is_none());
    }

    #[test]
    fn a_phase_ending_on_a_second_boundary_adds_no_empty_point() {
        let mut series = Series::new();
        series.close_until(s(2.0), Some(1));
        let closed = series.finish(s(2.0), Some(1));
        assert_eq!(closed.second, [0, 1]);
    }

    #[test]
    fn memory_grows_by_one_point_per_second_whatever_the_resets() {
        let mut series = Series::new();
        let histogram_buckets = series.latencies.distinct_values();
        for second in 1..=1800u32 {
            for i in 0..50 {
                series.issued();
                series.finished(Some(f64::from(i * second % 5000)));
            }
            series.close_until(Duration::from_secs(u64::from(second)), Some(1));
        }
        assert_eq!(series.latencies.distinct_values(), histogram_buckets);
        let closed = series.finish(Duration::from_secs(1800), Some(1));
        assert_eq!(closed.second.len(), 1800);
        assert!(closed.finished.iter().all(|n| *n == 50));
        assert!(closed.in_flight.iter().all(|n| *n == 0));
    }
}
