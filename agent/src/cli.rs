//! Command-line arguments of `droidfleet-agent run` (also `droidfleet agent run`), and the
//! function that runs an agent from them.

use crate::clock::SystemClock;
use crate::device::KdfParams;
use crate::fleet::{DeviceSpec, Fleet, FleetConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Argon2Preset {
    /// Argon2id with 19 MiB and 2 passes, as a phone would use (slow on purpose).
    Realistic,
    /// Argon2id with 64 KiB and 1 pass, for fleets of thousands of devices.
    Light,
}

impl Argon2Preset {
    pub fn params(self) -> KdfParams {
        match self {
            Argon2Preset::Realistic => KdfParams::REALISTIC,
            Argon2Preset::Light => KdfParams::LIGHT,
        }
    }
}

/// Host simulated Android devices that enroll with a control plane and take its commands.
#[derive(Clone, Debug, clap::Args)]
pub struct RunArgs {
    /// The control plane's address.
    #[arg(
        long,
        default_value = "http://127.0.0.1:7300",
        env = "DROIDFLEET_CONTROL_PLANE"
    )]
    pub control_plane: String,
    /// A device to host, as TYPE:NAME (TYPE is cosu, cobo, cope, byod or aosp). Repeat it for
    /// more devices.
    #[arg(long = "device", value_name = "TYPE:NAME", required = true)]
    pub devices: Vec<DeviceSpec>,
    /// Where each device's state file lives; a restarted agent picks its devices up from here.
    #[arg(long, default_value = "droidfleet-agent-state")]
    pub state_dir: PathBuf,
    /// Enrollment token from `droidfleet admin create-enrollment-token`; needed until every
    /// device has enrolled.
    #[arg(long, env = "DROIDFLEET_ENROLLMENT_TOKEN", hide_env_values = true)]
    pub enrollment_token: Option<String>,
    /// Where the device harness (the test's view of each device's screen) listens.
    #[arg(long, default_value = "127.0.0.1:7301")]
    pub harness_listen: SocketAddr,
    /// Cost of the devices' passcode hashing.
    #[arg(long, value_enum, default_value_t = Argon2Preset::Realistic)]
    pub argon2: Argon2Preset,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Fleet(#[from] crate::fleet::FleetError),
    #[error("cannot listen on {addr} for the harness: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("harness server failed: {0}")]
    Harness(#[from] tonic::transport::Error),
}

/// Runs the agent until `shutdown` resolves.
pub async fn run(
    args: RunArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let fleet = Fleet::load(FleetConfig {
        control_plane: args.control_plane,
        state_dir: args.state_dir,
        enrollment_token: args.enrollment_token,
        kdf: args.argon2.params(),
        devices: args.devices,
        clock: Arc::new(SystemClock),
    })
    .await?;
    let listener = tokio::net::TcpListener::bind(args.harness_listen)
        .await
        .map_err(|source| RunError::Listen {
            addr: args.harness_listen,
            source,
        })?;
    let harness_addr = listener.local_addr().map_err(|source| RunError::Listen {
        addr: args.harness_listen,
        source,
    })?;
    tracing::info!(%harness_addr, devices = fleet.names().count(), "agent running");
    println!("harness listening on {harness_addr}");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let devices = tokio::spawn(fleet.clone().run(stopped.clone()));
    let mut harness_stopped = stopped;
    let harness = crate::harness::serve(fleet, listener, async move {
        let _ = harness_stopped.wait_for(|stop| *stop).await;
    });
    tokio::pin!(harness);
    tokio::select! {
        result = &mut harness => result?,
        _ = shutdown => {}
    }
    let _ = stop.send(true);
    let _ = devices.await;
    Ok(())
}
