//! `droidfleet` child processes (`serve`, `agent run`), for the tests that kill real processes
//! with SIGKILL and read their logs: one [`Process`], and a [`Deployment`] of a control plane and
//! an agent that survive each other's restarts.

use super::Admin;
use droidfleet_proto::tls::CaFingerprint;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
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
        Process::start_under(&[], args, ready_prefix, log, level)
    }

    /// As [`Process::start_logging`], started through `wrapper` (a command that execs the rest
    /// of its arguments in its own process, such as `prlimit --nofile=N:N --`), so the child's
    /// PID is `droidfleet`'s.
    pub(crate) fn start_under(
        wrapper: &[&str],
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
        let program = env!("CARGO_BIN_EXE_droidfleet");
        let mut command = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut command = Command::new(first);
                command.args(rest).arg(program);
                command
            }
            None => Command::new(program),
        };
        let mut child = command
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

    /// SIGTERM, as a service manager stops it, and its exit status once it is gone.
    pub(crate) fn terminate(mut self) -> std::process::ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM failed: {sent}");
        self.child.wait().unwrap()
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
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

/// A control plane and an agent as separate `droidfleet` processes in one temporary directory,
/// on a port fixed for the whole test: a killed control plane comes back on the same port, so
/// the agent finds it again.
pub(crate) struct Deployment {
    dir: tempfile::TempDir,
    port: u16,
}

impl Deployment {
    pub(crate) fn new() -> Deployment {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Deployment {
            dir: tempfile::tempdir().unwrap(),
            port,
        }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) fn address(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// `droidfleet serve` on the deployment's port and data directory (`cp/`), logging to
    /// `cp.log`.
    pub(crate) fn control_plane(&self) -> Process {
        self.control_plane_with(&[], "info")
    }

    /// As [`Deployment::control_plane`], with more `droidfleet serve` arguments
    /// (`--log-format json`), logging at `level` (a `RUST_LOG` value).
    pub(crate) fn control_plane_with(&self, extra: &[&str], level: &str) -> Process {
        let listen = format!("127.0.0.1:{}", self.port);
        let data = self.path("cp");
        let mut args = vec![
            "serve",
            "--listen",
            &listen,
            "--data-dir",
            data.to_str().unwrap(),
        ];
        args.extend(extra);
        Process::start_logging(
            &args,
            "control plane listening on ",
            &self.path("cp.log"),
            level,
        )
    }

    /// `droidfleet agent run` hosting `devices` (`TYPE:NAME`) with state files under `agent/`,
    /// light Argon2, its harness on a free port; logs to `agent.log`.
    pub(crate) fn agent(&self, enrollment_token: &str, devices: &[String]) -> Process {
        self.agent_with(enrollment_token, devices, &[])
    }

    /// As [`Deployment::agent`], with more `droidfleet agent run` arguments (`--console …`).
    pub(crate) fn agent_with(
        &self,
        enrollment_token: &str,
        devices: &[String],
        extra: &[&str],
    ) -> Process {
        let server = self.address();
        let state = self.path("agent");
        let mut args = vec![
            "agent",
            "run",
            "--control-plane",
            &server,
            "--state-dir",
            state.to_str().unwrap(),
            "--enrollment-token",
            enrollment_token,
            "--harness-listen",
            "127.0.0.1:0",
            "--argon2",
            "light",
        ];
        for device in devices {
            args.extend(["--device", device]);
        }
        args.extend(extra);
        Process::start(&args, "harness listening on ", &self.path("agent.log"))
    }

    /// The bootstrap admin of the deployment's control plane.
    pub(crate) async fn admin(&self) -> Admin {
        let token = std::fs::read_to_string(self.path("cp").join("bootstrap-admin.token")).unwrap();
        Admin::connect_pinned(
            &self.address(),
            Some(self.ca()),
            Some(token.trim().to_string()),
        )
        .await
    }

    /// The CA the control plane made on its first start (`cp/tls/ca.pem`), which its clients pin.
    pub(crate) fn ca(&self) -> CaFingerprint {
        CaFingerprint::of_ca_file(&self.path("cp").join("tls").join("ca.pem")).unwrap()
    }
}
