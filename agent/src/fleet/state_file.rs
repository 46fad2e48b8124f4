//! Each device's JSON state file: loaded when the fleet starts, rewritten atomically (and synced)
//! after every change, so a restarted agent finds its devices as they were. The files hold
//! [`PersistedDevice`], which keeps no passcode and no token.

use super::spec::{DeviceSpec, FleetError};
use crate::device::{Device, KdfParams, PersistedDevice};
use droidfleet_proto::tls::CaFingerprint;
use ring::rand::SystemRandom;
use std::path::{Path, PathBuf};

/// Creates the state directory, so the first change of every device can write its file; only
/// the agent's own user may look into it (0700).
pub(super) fn create_dir(dir: &Path) -> Result<(), FleetError> {
    std::fs::create_dir_all(dir)
        .and_then(|()| private_dir(dir))
        .map_err(|source| FleetError::StateFile {
            name: String::new(),
            path: dir.to_path_buf(),
            source,
        })
}

#[cfg(unix)]
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

#[cfg(not(unix))]
fn private_dir(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

/// The file in the state directory holding the fingerprint of the control plane's CA the devices
/// pinned when they enrolled, so a restarted agent without a token pins it again.
const PINNED_CA_FILE: &str = "control-plane-ca.fingerprint";

/// The CA fingerprint the devices in `dir` pinned, if they did.
pub(super) fn pinned_ca(dir: &Path) -> Result<Option<(CaFingerprint, PathBuf)>, FleetError> {
    let path = dir.join(PINNED_CA_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => match text.trim().parse() {
            Ok(ca) => Ok(Some((ca, path))),
            Err(error) => Err(FleetError::CorruptState {
                name: String::new(),
                path,
                problem: format!("{error}"),
            }),
        },
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(FleetError::StateFile {
            name: String::new(),
            path,
            source,
        }),
    }
}

/// Records the CA fingerprint the devices in `dir` pin from now on (0600, like every state file).
pub(super) fn save_pinned_ca(dir: &Path, ca: CaFingerprint) -> Result<(), FleetError> {
    let path = dir.join(PINNED_CA_FILE);
    write_atomically(&path, format!("{ca}\n").as_bytes()).map_err(|source| FleetError::StateFile {
        name: String::new(),
        path,
        source,
    })
}

/// Whether a state file that does not parse is one written before devices had key pairs: its
/// enrollment holds a bearer credential and no key.
fn enrolled_with_a_credential(bytes: &[u8]) -> bool {
    let Ok(file) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return false;
    };
    let enrollment = &file["enrollment"];
    enrollment.get("credential").is_some() && enrollment.get("key").is_none()
}

/// The device `spec` as its state file in `dir` left it, or a factory-fresh one when it has no
/// file yet. A file that does not parse, or holds another enrollment type, is
/// [`FleetError::CorruptState`], and one enrolled before devices had key pairs
/// [`FleetError::EnrolledWithoutKey`]: the device is not silently replaced (the fleet quarantines
/// it).
pub(super) fn load(
    dir: &Path,
    spec: &DeviceSpec,
    kdf: KdfParams,
    rng: &SystemRandom,
) -> Result<Device, FleetError> {
    let path = path(dir, &spec.name);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let corrupt = |problem: String| FleetError::CorruptState {
                name: spec.name.clone(),
                path: path.clone(),
                problem,
            };
            let persisted: PersistedDevice = serde_json::from_slice(&bytes).map_err(|e| {
                if enrolled_with_a_credential(&bytes) {
                    FleetError::EnrolledWithoutKey {
                        name: spec.name.clone(),
                        path: path.clone(),
                    }
                } else {
                    corrupt(e.to_string())
                }
            })?;
            let device =
                Device::from_persisted(persisted, kdf).map_err(|e| corrupt(e.to_string()))?;
            if device.ownership() != spec.ownership {
                return Err(corrupt(format!(
                    "it holds a {} device, but the command line says {}",
                    device.ownership().as_str(),
                    spec.ownership.as_str()
                )));
            }
            // A restart cannot change the Android a phone runs.
            if device.build() != spec.build {
                return Err(corrupt(format!(
                    "it holds a device on {}, but the command line says {}",
                    device.build(),
                    spec.build
                )));
            }
            Ok(device)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Device::new(
            spec.name.clone(),
            spec.ownership,
            spec.build,
            kdf,
            rng,
        )),
        Err(source) => Err(FleetError::StateFile {
            name: spec.name.clone(),
            path,
            source,
        }),
    }
}

/// Replaces device `name`'s state file in `dir` with `state`, on a blocking thread (the write
/// ends with two syncs).
pub(super) async fn save(
    dir: &Path,
    name: &str,
    state: &PersistedDevice,
) -> Result<(), FleetError> {
    let path = path(dir, name);
    let bytes = serde_json::to_vec(state).map_err(|e| FleetError::CorruptState {
        name: name.to_string(),
        path: path.clone(),
        problem: e.to_string(),
    })?;
    let written = path.clone();
    tokio::task::spawn_blocking(move || write_atomically(&written, &bytes))
        .await
        .map_err(|_| FleetError::Worker)?
        .map_err(|source| FleetError::StateFile {
            name: name.to_string(),
            path,
            source,
        })
}

fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.json"))
}

/// Replaces `path` with `bytes` (0600) so that a crash leaves either the old or the new file.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
