//! The control plane a load test runs against: embedded in this process (the default), started
//! as a child `droidfleet serve` process so each side's memory and CPU can be told apart, or an
//! external one reached by URL (optionally sampled by its PID).

use super::error::LoadtestError;
use super::measure::{self, ProcessSample};
use crate::admin::Token;
use crate::embedded::EmbeddedControlPlane;
use droidfleet_control_plane::clock::SystemClock;
use droidfleet_proto::tls::{CA_CERT_FILE, CaFingerprint};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;
use tokio::time::Instant;

/// What `--control-plane` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Target {
    /// In this process, on a temporary database and a loopback port.
    Embedded,
    /// `droidfleet serve` as a child process, on a temporary data directory and a loopback port.
    Spawn,
    /// Already running at this address (its gateway and admin API).
    External(String),
}

impl FromStr for Target {
    type Err = String;

    fn from_str(text: &str) -> Result<Target, String> {
        match text.trim() {
            "embedded" => Ok(Target::Embedded),
            "spawn" => Ok(Target::Spawn),
            url if url.starts_with("http://") || url.starts_with("https://") => {
                Ok(Target::External(url.to_string()))
            }
            other => Err(format!(
                "{other:?}: give embedded, spawn, or the URL of a running control plane \
                 (https://HOST:PORT)"
            )),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Embedded => f.write_str("embedded"),
            Target::Spawn => f.write_str("spawn"),
            Target::External(url) => f.write_str(url),
        }
    }
}

/// How long a spawned `droidfleet serve` may take to open its database and listen.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// What `droidfleet serve` prints on stdout once it accepts connections.
const READY_LINE: &str = "control plane listening on ";

/// A control plane the run can reach, and how to stop it if the run started it.
pub(super) struct ControlPlane {
    pub address: String,
    /// The CA its certificate chains to (none for a plaintext `http://` one).
    pub ca: Option<CaFingerprint>,
    pub admin_token: Token,
    /// The control plane's own process when it is not this one (spawned, or external with
    /// `--control-plane-pid`): its resources are sampled from `/proc/<pid>`.
    pub pid: Option<u32>,
    running: Running,
}

enum Running {
    Embedded(EmbeddedControlPlane),
    /// Killed on drop too, so an early error never leaves it behind.
    Child {
        child: tokio::process::Child,
        /// Its data directory, to start it again on.
        data_dir: PathBuf,
        /// Where its stderr goes.
        log: PathBuf,
        /// Its `--max-watches-per-principal`, given again when it is started again.
        watches: usize,
    },
    External,
}

impl ControlPlane {
    pub(super) fn mode(&self) -> &'static str {
        match self.running {
            Running::Embedded(_) => "embedded",
            Running::Child { .. } => "spawned",
            Running::External => "external",
        }
    }

    /// The control plane's process now, when it runs in a process of its own that is known.
    pub(super) fn sample(&self) -> Option<ProcessSample> {
        measure::sample(Some(self.pid?))
    }

    /// Stops what the run started: the embedded server, or the child process by its PID
    /// (killed, then waited for, so it leaves no zombie).
    pub(super) async fn stop(self) {
        match self.running {
            Running::Embedded(embedded) => embedded.stop().await,
            Running::Child { mut child, .. } => {
                if let Err(error) = child.kill().await {
                    tracing::warn!(pid = ?self.pid, %error, "cannot end the spawned control plane");
                }
            }
            Running::External => {}
        }
    }
}

impl ControlPlane {
    /// Kills a spawned control plane with SIGKILL, by its PID, and waits for it to be gone.
    pub(super) async fn kill(&mut self) -> Result<(), LoadtestError> {
        let Running::Child { child, .. } = &mut self.running else {
            return Err(LoadtestError::NotRestartable);
        };
        // tokio's kill is SIGKILL on Unix: the process gets no chance to finish anything.
        child.kill().await.map_err(LoadtestError::Restart)
    }

    /// Starts a killed spawned control plane again, on the same data directory and address;
    /// returns once it listens.
    pub(super) async fn start_again(&mut self) -> Result<(), LoadtestError> {
        let Running::Child {
            child,
            data_dir,
            log,
            watches,
        } = &mut self.running
        else {
            return Err(LoadtestError::NotRestartable);
        };
        let listen = self
            .address
            .strip_prefix("https://")
            .unwrap_or(&self.address)
            .to_string();
        let (restarted, pid, _) = spawn_on(data_dir, log, &listen, *watches).await?;
        *child = restarted;
        self.pid = Some(pid);
        Ok(())
    }
}

/// The watch streams the run's one admin principal may hold open on a control plane the run
/// starts: one WatchAction per device with a reset in flight, plus the WatchDevices streams that
/// follow the fleet. The server's default (`--max-watches-per-principal`, 64) is sized for a
/// person's admin, not for a load generator that follows every reset; a control plane given
/// with `--control-plane URL` needs it raised by whoever runs it.
pub(super) fn watches_needed(devices: usize) -> usize {
    devices.saturating_add(64)
}

/// Starts or reaches the control plane. `dir` holds a started one's data; `log` receives a
/// spawned one's stderr; `watches` is what a started one allows the run's principal
/// ([`watches_needed`]).
pub(super) async fn start(
    target: &Target,
    token_file: Option<&Path>,
    ca_file: Option<&Path>,
    pid: Option<u32>,
    dir: &Path,
    log: &Path,
    watches: usize,
) -> Result<ControlPlane, LoadtestError> {
    match target {
        Target::External(address) => {
            let path = token_file.ok_or_else(|| {
                LoadtestError::InvalidOption(
                    "--control-plane URL needs an admin's token: give --token-file (or \
                     DROIDFLEET_TOKEN_FILE)"
                        .into(),
                )
            })?;
            let admin_token = Token::from_file(path)?;
            let ca = crate::admin::trusted_ca(address, ca_file, Some(path))?;
            if let Some(pid) = pid {
                measure::sample(Some(pid)).ok_or_else(|| {
                    LoadtestError::InvalidOption(format!(
                        "--control-plane-pid {pid}: no such process (cannot read /proc/{pid})"
                    ))
                })?;
            }
            Ok(ControlPlane {
                address: address.clone(),
                ca,
                admin_token,
                pid,
                running: Running::External,
            })
        }
        Target::Embedded => embedded(dir, watches).await,
        Target::Spawn => spawn(dir, log, watches).await,
    }
}

/// Where a spawned control plane listens: a port the kernel picks on loopback.
const LOOPBACK_ANY_PORT: &str = "127.0.0.1:0";

async fn embedded(dir: &Path, watches: usize) -> Result<ControlPlane, LoadtestError> {
    let embedded = EmbeddedControlPlane::start_with(
        &dir.join("control-plane"),
        Arc::new(SystemClock),
        |config| config.limits.max_watches_per_principal = watches,
    )
    .await?;
    Ok(ControlPlane {
        address: embedded.address.clone(),
        ca: Some(embedded.ca),
        admin_token: embedded.admin_token.clone(),
        pid: None,
        running: Running::Embedded(embedded),
    })
}

/// `droidfleet serve` (this very binary) on a fresh data directory and a port the kernel picks;
/// ready once it prints the address it listens on.
async fn spawn(dir: &Path, log: &Path, watches: usize) -> Result<ControlPlane, LoadtestError> {
    let data_dir = dir.join("control-plane");
    let (child, pid, address) = spawn_on(&data_dir, log, LOOPBACK_ANY_PORT, watches).await?;
    let admin_token = Token::from_file(&data_dir.join("bootstrap-admin.token"))?;
    let ca = CaFingerprint::of_ca_file(&data_dir.join("tls").join(CA_CERT_FILE))
        .map_err(crate::admin::AdminError::from)?;
    tracing::info!(pid, %address, "spawned control plane listening");
    Ok(ControlPlane {
        address: format!("https://{address}"),
        ca: Some(ca),
        admin_token,
        pid: Some(pid),
        running: Running::Child {
            child,
            data_dir,
            log: log.to_path_buf(),
            watches,
        },
    })
}

/// `droidfleet serve --data-dir DATA_DIR --listen LISTEN --max-watches-per-principal WATCHES`,
/// its stderr appended to `log`; returns the child, its PID and the address it listens on, once
/// it listens.
async fn spawn_on(
    data_dir: &Path,
    log: &Path,
    listen: &str,
    watches: usize,
) -> Result<(tokio::process::Child, u32, String), LoadtestError> {
    let program = std::env::current_exe().map_err(LoadtestError::ProgramPath)?;
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|source| LoadtestError::File {
            action: "open the control plane's log",
            path: log.to_path_buf(),
            source,
        })?;
    let mut child = tokio::process::Command::new(&program)
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen", listen])
        .arg("--max-watches-per-principal")
        .arg(watches.to_string())
        // Its per-session info lines would cost it CPU and fill the log; warnings stay.
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| LoadtestError::Spawn {
            program: program.clone(),
            source,
        })?;
    let pid = child.id().ok_or(LoadtestError::SpawnedExited)?;
    let stdout = child.stdout.take().ok_or(LoadtestError::SpawnedNoStdout)?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let ready = tokio::time::timeout_at(Instant::now() + READY_TIMEOUT, async {
        while let Some(line) = lines.next_line().await.map_err(|e| e.to_string())? {
            if let Some(address) = line.strip_prefix(READY_LINE) {
                return Ok(address.trim().to_string());
            }
        }
        Err("it exited before listening".to_string())
    })
    .await
    .unwrap_or_else(|_| Err(format!("it did not listen within {READY_TIMEOUT:?}")));
    let address = match ready {
        Ok(address) => address,
        Err(problem) => {
            let _ = child.kill().await;
            return Err(LoadtestError::SpawnedNotReady {
                pid,
                problem,
                log: log.to_path_buf(),
            });
        }
    };
    // Drained to the end, so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, pid, address))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_errors_name_the_choices() {
        assert_eq!("embedded".parse::<Target>(), Ok(Target::Embedded));
        assert_eq!("spawn".parse::<Target>(), Ok(Target::Spawn));
        assert_eq!(
            "http://127.0.0.1:7300".parse::<Target>(),
            Ok(Target::External("http://127.0.0.1:7300".into()))
        );
        let e = "127.0.0.1:7300".parse::<Target>().unwrap_err();
        assert!(
            e.contains("embedded, spawn") && e.contains("https://"),
            "{e}"
        );
    }
}
