//! The control plane a load test runs against: embedded in this process (the default), started
//! as a child `droidfleet serve` process so each side's memory and CPU can be told apart, or an
//! external one reached by URL (optionally sampled by its PID).

use super::measure::{self, ProcessSample};
use anyhow::{Context, anyhow, bail};
use droidfleet_control_plane::clock::SystemClock;
use droidfleet_control_plane::service::Config;
use std::fmt;
use std::path::Path;
use std::process::Stdio;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;
use tokio::sync::watch;
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
                 (http://HOST:PORT)"
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
    pub admin_token: String,
    /// The control plane's own process when it is not this one (spawned, or external with
    /// `--control-plane-pid`): its resources are sampled from `/proc/<pid>`.
    pub pid: Option<u32>,
    running: Running,
}

enum Running {
    Embedded {
        stop: watch::Sender<bool>,
        server: tokio::task::JoinHandle<()>,
    },
    /// Killed on drop too, so an early error never leaves it behind.
    Child(tokio::process::Child),
    External,
}

impl ControlPlane {
    pub(super) fn mode(&self) -> &'static str {
        match self.running {
            Running::Embedded { .. } => "embedded",
            Running::Child(_) => "spawned",
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
            Running::Embedded { stop, server } => {
                let _ = stop.send(true);
                let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
            }
            Running::Child(mut child) => {
                if let Err(error) = child.kill().await {
                    tracing::warn!(pid = ?self.pid, %error, "cannot end the spawned control plane");
                }
            }
            Running::External => {}
        }
    }
}

/// Starts or reaches the control plane. `dir` holds a started one's data; `log` receives a
/// spawned one's stderr.
pub(super) async fn start(
    target: &Target,
    token_file: Option<&Path>,
    pid: Option<u32>,
    dir: &Path,
    log: &Path,
) -> anyhow::Result<ControlPlane> {
    match target {
        Target::External(address) => {
            let path = token_file.context(
                "--control-plane URL needs an admin's token: give --token-file (or DROIDFLEET_TOKEN_FILE)",
            )?;
            let admin_token = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the admin token file {}", path.display()))?
                .trim()
                .to_string();
            if let Some(pid) = pid {
                measure::sample(Some(pid)).with_context(|| {
                    format!("--control-plane-pid {pid}: no such process (cannot read /proc/{pid})")
                })?;
            }
            Ok(ControlPlane {
                address: address.clone(),
                admin_token,
                pid,
                running: Running::External,
            })
        }
        Target::Embedded => embedded(dir).await,
        Target::Spawn => spawn(dir, log).await,
    }
}

async fn embedded(dir: &Path) -> anyhow::Result<ControlPlane> {
    let opened = droidfleet_control_plane::server::open(
        Config::new(dir.join("control-plane")),
        Arc::new(SystemClock),
    )
    .await
    .context("cannot open the embedded control plane")?;
    let token_path = opened
        .bootstrap_token_path
        .clone()
        .context("a fresh data directory has a bootstrap admin")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = format!("http://{}", listener.local_addr()?);
    let (stop, mut stopped) = watch::channel(false);
    let server = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        if let Err(error) =
            droidfleet_control_plane::server::serve(opened.control_plane, listener, shutdown).await
        {
            tracing::error!(%error, "the embedded control plane stopped");
        }
    });
    Ok(ControlPlane {
        address,
        admin_token: std::fs::read_to_string(&token_path)?.trim().to_string(),
        pid: None,
        running: Running::Embedded { stop, server },
    })
}

/// `droidfleet serve` (this very binary) on a fresh data directory and a port the kernel picks;
/// ready once it prints the address it listens on.
async fn spawn(dir: &Path, log: &Path) -> anyhow::Result<ControlPlane> {
    let program = std::env::current_exe()
        .context("cannot find this program's path to start `droidfleet serve`")?;
    let data_dir = dir.join("control-plane");
    let stderr = std::fs::File::create(log)
        .with_context(|| format!("cannot create the control plane's log {}", log.display()))?;
    let mut child = tokio::process::Command::new(&program)
        .arg("serve")
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["--listen", "127.0.0.1:0"])
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
        .with_context(|| format!("cannot start {} serve", program.display()))?;
    let pid = child
        .id()
        .context("the spawned control plane exited at once")?;
    let stdout = child
        .stdout
        .take()
        .context("the spawned control plane has no stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let ready = tokio::time::timeout_at(Instant::now() + READY_TIMEOUT, async {
        while let Some(line) = lines.next_line().await? {
            if let Some(address) = line.strip_prefix(READY_LINE) {
                return Ok(address.trim().to_string());
            }
        }
        Err(anyhow!("it exited before listening"))
    })
    .await
    .unwrap_or_else(|_| Err(anyhow!("it did not listen within {READY_TIMEOUT:?}")));
    let address = match ready {
        Ok(address) => address,
        Err(problem) => {
            let _ = child.kill().await;
            bail!(
                "the spawned control plane (pid {pid}) failed: {problem}; its log is {}",
                log.display()
            );
        }
    };
    // Drained to the end, so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let token_path = data_dir.join("bootstrap-admin.token");
    let admin_token = std::fs::read_to_string(&token_path)
        .with_context(|| format!("cannot read {}", token_path.display()))?
        .trim()
        .to_string();
    tracing::info!(pid, %address, "spawned control plane listening");
    Ok(ControlPlane {
        address: format!("http://{address}"),
        admin_token,
        pid: Some(pid),
        running: Running::Child(child),
    })
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
            e.contains("embedded, spawn") && e.contains("http://"),
            "{e}"
        );
    }
}
