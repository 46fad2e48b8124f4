//! Progress on stderr: a redrawn bar when stderr is a terminal, otherwise a plain line every
//! tenth of the way (so CI logs and pipes stay readable).

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::watch;

pub(super) struct Progress {
    label: &'static str,
    total: usize,
    done: AtomicUsize,
    failed: AtomicUsize,
    terminal: bool,
}

impl Progress {
    pub(super) fn new(label: &'static str, total: usize) -> Arc<Progress> {
        Arc::new(Progress {
            label,
            total,
            done: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            terminal: std::io::stderr().is_terminal(),
        })
    }

    /// One more item finished; `ok` false counts it as not as expected too.
    pub(super) fn advance(&self, ok: bool) {
        if !ok {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        if !self.terminal {
            let step = self.total.div_ceil(10).max(1);
            if done.is_multiple_of(step) || done == self.total {
                eprintln!("{}", self.line(done));
            }
        }
    }

    fn line(&self, done: usize) -> String {
        format!(
            "{}: {done}/{} finished, {} not as expected",
            self.label,
            self.total,
            self.failed.load(Ordering::Relaxed)
        )
    }

    /// On a terminal, redraws the bar every 100 ms until `stop` turns true, then ends the line.
    pub(super) fn spawn_bar(
        self: &Arc<Self>,
        mut stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let progress = self.clone();
        tokio::spawn(async move {
            if !progress.terminal {
                return;
            }
            let mut ticks = tokio::time::interval(Duration::from_millis(100));
            loop {
                let finished = tokio::select! {
                    _ = ticks.tick() => false,
                    _ = stop.wait_for(|s| *s) => true,
                };
                let done = progress.done.load(Ordering::Relaxed);
                let width = 30;
                let filled = (done * width).checked_div(progress.total).unwrap_or(width);
                let mut err = std::io::stderr().lock();
                let _ = write!(
                    err,
                    "\r[{}{}] {}",
                    "#".repeat(filled),
                    "-".repeat(width - filled.min(width)),
                    progress.line(done)
                );
                let _ = err.flush();
                if finished {
                    let _ = writeln!(err);
                    return;
                }
            }
        })
    }
}
