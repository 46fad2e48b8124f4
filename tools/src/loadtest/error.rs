//! Why a load test stopped, or why one device's reset did not run its course (kept as the
//! device's `problem` in the report). No variant carries a token or a passcode.

use crate::admin::AdminError;
use crate::embedded::EmbeddedError;
use droidfleet_agent::device::crypto::CryptoError;
use droidfleet_agent::device::{EntryOutcome, Scope};
use droidfleet_agent::fleet::FleetError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LoadtestError {
    /// An option out of range, or at odds with another; the message names the option.
    #[error("{0}")]
    InvalidOption(String),
    #[error("cannot create a temporary directory")]
    TempDir(#[source] std::io::Error),
    /// A file or directory of the run: `action` is what could not be done to `path`.
    #[error("cannot {action} {}", path.display())]
    File {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot serialise the report")]
    ReportJson(#[source] serde_json::Error),
    #[error("cannot write the HDR log of the latencies")]
    HdrLog(#[source] super::report::HdrLogError),
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error(transparent)]
    Fleet(#[from] FleetError),

    // Starting the control plane.
    #[error(transparent)]
    Embedded(#[from] EmbeddedError),
    #[error("the fleet wall (--console): cannot listen on {address}")]
    WallListen {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the metrics endpoint (--metrics-listen): cannot listen on {address}")]
    MetricsListen {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot find this program's path to start `droidfleet serve`")]
    ProgramPath(#[source] std::io::Error),
    #[error("cannot start {} serve", program.display())]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the spawned control plane exited at once")]
    SpawnedExited,
    #[error("the spawned control plane has no stdout")]
    SpawnedNoStdout,
    /// The spawned control plane did not get to listening; `problem` says what happened.
    #[error(
        "the spawned control plane (pid {pid}) failed: {problem}; its log is {}",
        log.display()
    )]
    SpawnedNotReady {
        pid: u32,
        problem: String,
        log: PathBuf,
    },

    #[error("cannot kill the spawned control plane to restart it")]
    Restart(#[source] std::io::Error),
    #[error("only a control plane the run spawned can be killed and restarted")]
    NotRestartable,
    #[error(
        "{connected} of {devices} devices were still connected to the killed control plane at \
         the deadline"
    )]
    DisconnectDeadline { connected: usize, devices: usize },

    // Setting up the fleet.
    #[error("cannot load the fleet")]
    LoadFleet(#[source] FleetError),
    #[error(
        "only {connected} of {devices} devices enrolled and connected before the deadline; give \
         a longer --deadline (or more --connections, or a --ramp-up-ms)"
    )]
    ConnectDeadline { connected: usize, devices: usize },
    #[error("{device} is connected but has no device id")]
    NoDeviceId { device: String },
    /// A setup step over every device failed on one of them.
    #[error("setting up the fleet failed while {step}")]
    Setup {
        step: &'static str,
        #[source]
        source: Box<LoadtestError>,
    },
    #[error("{step}: not finished before the deadline")]
    StepDeadline { step: &'static str },
    #[error("{rpc}: not answered before the deadline")]
    RpcDeadline { rpc: &'static str },
    #[error("{waiting} device(s) had no escrowed token at the control plane before the deadline")]
    EscrowDeadline { waiting: usize },
    #[error("{device}: the setup reset ended {state} [{error_code}]")]
    SetupReset {
        device: String,
        state: &'static str,
        error_code: String,
    },
    #[error("a task of the load test did not finish")]
    Task(#[from] tokio::task::JoinError),

    // One device's measured reset.
    #[error("{device}: the fleet stopped before the device answered")]
    FleetStopped { device: String },
    #[error("the user's own PIN did not unlock the rebooted device: {outcome}")]
    OwnPinRefused { outcome: EntryOutcome },
    #[error("a mistyped passcode unlocked the {scope} store")]
    TypoUnlocked { scope: Scope },
    #[error("the new passcode did not unlock the {scope} store: {outcome}")]
    NewPasscodeRefused { scope: Scope, outcome: EntryOutcome },
    #[error("WatchAction ended before the control plane recorded the user's entry")]
    EntryNotRecorded,

    // The baselines.
    #[error("echo baseline: cannot listen on 127.0.0.1")]
    EchoListen(#[source] std::io::Error),
    #[error("echo baseline: cannot connect to its own server")]
    EchoConnect(#[source] tonic::transport::Error),
    #[error("echo baseline: TLS for the echo server")]
    EchoTls(#[source] droidfleet_proto::tls::TlsError),
    #[error("echo baseline: a call failed")]
    EchoCall(#[source] tonic::Status),
    #[error("Argon2 baseline: a hash failed")]
    Argon2(#[source] CryptoError),
    /// A unit of the protocol ceiling (`ceiling.rs`) could not be measured.
    #[error("protocol ceiling: cannot measure {unit}")]
    Unit { unit: &'static str },
    #[error("protocol ceiling: the SQLite batched insert failed")]
    UnitSqlite(#[source] sqlx::Error),

    /// The report is written, but not every reset ended in time.
    #[error(
        "the run reached its deadline ({deadline_s} s) before every reset ended; the partial \
         report is in {}",
        report_dir.display()
    )]
    DeadlineReached {
        deadline_s: u64,
        report_dir: PathBuf,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::causes::with_causes;

    #[test]
    fn a_setup_failure_names_the_step_the_rpc_and_the_status() {
        let error = LoadtestError::Setup {
            step: "assigning passcode policies",
            source: Box::new(LoadtestError::Admin(AdminError::Rpc {
                rpc: "AssignPasscodePolicy",
                status: tonic::Status::unavailable("the control plane is shutting down"),
            })),
        };
        assert_eq!(
            with_causes(&error),
            "setting up the fleet failed while assigning passcode policies: \
             AssignPasscodePolicy: Unavailable: the control plane is shutting down"
        );
    }
}
