//! A `droidfleet` child process (`serve`, `agent run`), for the tests that kill real processes
//! with SIGKILL and read their logs.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A `droidfleet` child process, killed with SIGKILL when dropped; its stderr goes to a log file.
pub(crate) struct Process {
    child: Child,
    /// What it printed after the ready prefix (its address).
    pub(crate) address: String,
    /// The lines it printed before the ready line (other addresses, first-start notes).
    pub(crate) earlier: Vec<String>,
}

impl Process {
    /// Starts `droidfleet args…` (with `RUST_LOG=info`, its stderr appended to `log`) and waits
    /// for the stdout line starting with `ready_prefix`.
    pub(crate) fn start(args: &[&str], ready_prefix: &str, log: &Path) -> Process {
        Process::start_logging(args, ready_prefix, log, "info")
    }

    /// As [`Process::start`], logging at `level` (a `RUST_LOG` value).
    pub(crate) fn start_logging(
        args: &[&str],
        ready_prefix: &str,
        log: &Path,
        level: &str,
    ) -> Process {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_droidfleet"))
            .args(args)
            .env("RUST_LOG", level)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut earlier = Vec::new();
        let address = loop {
            let line = lines
                .next()
                .unwrap_or_else(|| {
                    panic!("droidfleet {args:?} exited before printing {ready_prefix:?}")
                })
                .unwrap();
            if let Some(address) = line.strip_prefix(ready_prefix) {
                break address.trim().to_string();
            }
            earlier.push(line);
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Process {
            child,
            address,
            earlier,
        }
    }

    /// SIGKILL, and wait until it is gone.
    pub(crate) fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
