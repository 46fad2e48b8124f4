//! Progress on stderr, one bar per phase (connecting the fleet, resets, the users' entries): on
//! a terminal an `indicatif` bar with its count, rate and ETA; otherwise a plain line every
//! tenth of the way, so CI logs and pipes stay readable.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How often a bar redraws by itself, so its rate and ETA move while nothing finishes.
const TICK: Duration = Duration::from_millis(200);

/// The bars drawn together (phases that run at the same time), on stderr; draws nothing when
/// stderr is not a terminal.
pub(super) fn group() -> MultiProgress {
    MultiProgress::with_draw_target(ProgressDrawTarget::stderr())
}

/// One phase's progress.
pub(super) struct Progress {
    /// The phase, first on its line: `connect`, `resets`, `user entries`.
    label: &'static str,
    /// What a counted item did: `connected`, `finished`, `recorded`.
    verb: &'static str,
    total: usize,
    done: AtomicUsize,
    /// Items that did not end as expected (shown only when some did not).
    failed: AtomicUsize,
    /// Tenths of the way already printed as plain lines.
    printed: AtomicUsize,
    /// The bar on a terminal; `None` prints the plain lines instead.
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A phase of `total` items, drawn in `group` on a terminal.
    pub(super) fn new(
        group: &MultiProgress,
        label: &'static str,
        verb: &'static str,
        total: usize,
    ) -> Arc<Progress> {
        let bar = std::io::stderr().is_terminal().then(|| {
            let style = ProgressStyle::with_template(
                "{prefix:>12} [{bar:30}] {pos}/{len} {msg} {per_sec} ETA {eta}",
            )
            .expect("a valid template")
            .progress_chars("#>-");
            let bar = ProgressBar::new(total as u64)
                .with_style(style)
                .with_prefix(label)
                .with_message(verb);
            let bar = group.add(bar);
            bar.enable_steady_tick(TICK);
            bar
        });
        Arc::new(Progress {
            label,
            verb,
            total,
            done: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            printed: AtomicUsize::new(0),
            bar,
        })
    }

    /// One more item finished; `ok` false counts it as not as expected too.
    pub(super) fn advance(&self, ok: bool) {
        if !ok {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        self.show(done);
    }

    /// `done` items finished so far (a phase that reads a gauge rather than counting).
    pub(super) fn set(&self, done: usize) {
        self.done.store(done, Ordering::Relaxed);
        self.show(done);
    }

    /// The phase ended (all done, or the deadline came): the bar stays drawn as it stood.
    pub(super) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.abandon();
        }
    }

    fn show(&self, done: usize) {
        let failed = self.failed.load(Ordering::Relaxed);
        match &self.bar {
            Some(bar) => {
                bar.set_position(done as u64);
                if failed > 0 {
                    bar.set_message(format!("{}, {failed} not as expected", self.verb));
                }
            }
            None => {
                // The tenths reached, and one more step for the last item, each printed once.
                let step = self.total.div_ceil(10).max(1);
                let reached = if done >= self.total {
                    usize::MAX
                } else {
                    done / step
                };
                if reached > self.printed.fetch_max(reached, Ordering::Relaxed) {
                    eprintln!("{}", self.line(done, failed));
                }
            }
        }
    }

    fn line(&self, done: usize, failed: usize) -> String {
        let mut line = format!("{}: {done}/{} {}", self.label, self.total, self.verb);
        if failed > 0 {
            line.push_str(&format!(", {failed} not as expected"));
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_name_the_phase_the_count_and_the_failures() {
        let progress = Progress::new(&group(), "resets", "finished", 40);
        assert_eq!(progress.line(4, 0), "resets: 4/40 finished");
        assert_eq!(
            progress.line(40, 3),
            "resets: 40/40 finished, 3 not as expected"
        );
    }

    #[test]
    fn each_tenth_is_printed_once_whatever_the_jumps() {
        let progress = Progress {
            bar: None,
            ..Arc::into_inner(Progress::new(&group(), "connect", "connected", 100)).unwrap()
        };
        progress.set(35);
        assert_eq!(progress.printed.load(Ordering::Relaxed), 3);
        progress.set(36);
        assert_eq!(progress.printed.load(Ordering::Relaxed), 3);
        progress.set(100);
        assert_eq!(progress.printed.load(Ordering::Relaxed), usize::MAX);
    }
}
