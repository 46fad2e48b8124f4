//! What a fleet is given to host and how: the devices ([`DeviceSpec`]), the fleet's settings
//! ([`FleetConfig`]), how its first connections spread out ([`RampUp`]), and [`FleetError`],
//! whose every variant names the device or the setting at fault.

use crate::clock::Clock;
use crate::device::{ApiLevel, Build, DeviceError, KdfParams, Ownership, Profile};
use crate::faults::FaultConfig;
use std::path::PathBuf;
use std::sync::Arc;

/// Why a fleet could not load, host or change a device.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("no device named {0:?} in this agent")]
    UnknownDevice(String),
    #[error("device {name:?}: {source}")]
    Device {
        name: String,
        #[source]
        source: DeviceError,
    },
    #[error("device {name:?}: cannot read or write its state file {path}: {source}")]
    StateFile {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("device {name:?}: its state file {path} is corrupt: {problem}")]
    CorruptState {
        name: String,
        path: PathBuf,
        problem: String,
    },
    #[error(
        "device {name:?}: its state file {path} is from before devices proved possession of a \
         key pair (it holds a bearer credential, which control planes no longer accept): \
         re-enroll the device: move the file away and start the agent with an enrollment token \
         (the control plane then knows it as a new device)"
    )]
    EnrolledWithoutKey { name: String, path: PathBuf },
    #[error("invalid control plane address {0:?}: {1}")]
    Address(String, String),
    #[error(
        "{0} uses TLS, and no CA to pin is known: give an enrollment token from that control \
         plane (it carries the CA's fingerprint), or use the state directory the devices \
         enrolled with"
    )]
    NoPinnedCa(String),
    #[error(
        "the enrollment token is for another control plane: it pins CA {token}, while these \
         devices enrolled with CA {pinned} (from {path})"
    )]
    OtherCa {
        token: String,
        pinned: String,
        path: PathBuf,
    },
    #[error("the enrollment token: {0}")]
    Token(#[source] droidfleet_proto::tls::TlsError),
    #[error("device {0:?} is not enrolled and no enrollment token was given (--enrollment-token)")]
    NoEnrollmentToken(String),
    #[error("invalid device name {0:?}: use 1 to 64 letters, digits, '-' or '_'")]
    BadName(String),
    #[error("the device model's worker thread failed")]
    Worker,
}

/// One device the agent should host.
#[derive(Clone, Debug)]
pub struct DeviceSpec {
    pub name: String,
    pub ownership: Ownership,
    /// The Android it runs: API level and maker profile.
    pub build: Build,
}

impl std::str::FromStr for DeviceSpec {
    type Err = String;

    /// `cosu:kiosk-1`, `byod:alice-phone:31` or `cope:tablet-7:30:short-keyguard`: the type, the
    /// name, then optionally the API level (default the newest) and the maker profile (default
    /// aosp).
    fn from_str(text: &str) -> Result<DeviceSpec, String> {
        let mut parts = text.split(':');
        let (Some(ownership), Some(name)) = (parts.next(), parts.next()) else {
            return Err(format!(
                "{text:?}: expected TYPE:NAME[:API_LEVEL[:PROFILE]], e.g. byod:alice-phone:34"
            ));
        };
        let ownership = Ownership::parse(ownership).ok_or_else(|| {
            format!("{text:?}: unknown enrollment type {ownership:?}; use cosu, cobo, cope, byod or aosp")
        })?;
        check_name(name).map_err(|e| e.to_string())?;
        let api_level = match parts.next() {
            Some(level) => level
                .parse::<ApiLevel>()
                .map_err(|e| format!("{text:?}: {e}"))?,
            None => ApiLevel::DEFAULT,
        };
        let profile = match parts.next() {
            Some(profile) => profile
                .parse::<Profile>()
                .map_err(|e| format!("{text:?}: {e}"))?,
            None => Profile::default(),
        };
        if parts.next().is_some() {
            return Err(format!(
                "{text:?}: expected TYPE:NAME[:API_LEVEL[:PROFILE]], e.g. byod:alice-phone:34"
            ));
        }
        Ok(DeviceSpec {
            name: name.to_string(),
            ownership,
            build: Build { api_level, profile },
        })
    }
}

/// A device name doubles as its state file's name, so it is kept to a safe alphabet.
pub(super) fn check_name(name: &str) -> Result<(), FleetError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(FleetError::BadName(name.to_string()))
    }
}

/// What a fleet hosts and how it reaches its control plane.
#[derive(Clone)]
pub struct FleetConfig {
    /// The control plane's gateway, e.g. `http://127.0.0.1:7300`.
    pub control_plane: String,
    /// One JSON state file per device lives here, rewritten (and synced) on every change, so a
    /// restarted agent finds its devices as they were. `None` keeps the devices in memory only:
    /// what a load test of tens of thousands of devices wants, since a file per device and a
    /// sync per change would measure the disk rather than the control plane.
    pub state_dir: Option<PathBuf>,
    /// Needed only for devices not enrolled yet.
    pub enrollment_token: Option<String>,
    pub kdf: KdfParams,
    pub devices: Vec<DeviceSpec>,
    pub clock: Arc<dyn Clock>,
    /// HTTP/2 connections the devices share: device `i` (in name order) uses connection
    /// `i % connections`. Many streams on one connection hit h2's flow-control limits; one
    /// connection per device costs a file descriptor and an ephemeral port each, which stops a
    /// fleet near 20,000 devices on a machine allowing 20,000 open files per process and about
    /// 28,000 ephemeral ports per source address. 0 is taken as 1.
    pub connections: usize,
    /// Message-level faults injected on every session (none by default).
    pub faults: FaultConfig,
}

/// How [`Fleet::run_ramped`](super::Fleet::run_ramped) spreads the devices' first connections over time.
#[derive(Clone, Copy, Debug, Default)]
pub struct RampUp {
    /// Each device waits a delay drawn from `[0, window_ms)` before its first connection, so a
    /// large fleet does not hit the control plane (and its accept queue) all at once.
    pub window_ms: u64,
    /// Seeds the delays: the same seed gives each device the same delay.
    pub seed: u64,
}
