//! The capability statement of the implementation under test (after Matter's PICS and
//! Bluetooth's ICS): what it supports, so that the kit runs the cases that apply and reports the
//! others "not applicable", never "passed". A small JSON file (`--capabilities`), which flags
//! can extend.

use super::ConformanceError;
use super::catalogue::Need;
use std::path::Path;

/// What the implementation under test declares. Every field is optional; what is not declared
/// is not supported.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// A name for the reports, such as "droidfleet-agent 0.1.0".
    #[serde(default)]
    pub implementation: Option<String>,
    /// Control plane under test: the enrollment types to test (`cosu`, `cobo`, `cope`, `byod`,
    /// `aosp`); empty means all five. Device under test: the types it may enroll as.
    #[serde(default)]
    pub enrollment_types: Vec<String>,
    /// Remote lock (`RemoteLockCommand`) is supported.
    #[serde(default)]
    pub remote_lock: bool,
    /// Control plane under test: an admin can cancel a pending action.
    #[serde(default)]
    pub cancel: bool,
    /// Device under test: where its `DeviceHarness` is served, and the device's name there.
    #[serde(default)]
    pub harness: Option<HarnessCapability>,
}

/// A device's `DeviceHarness`, through which the kit plays its user.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct HarnessCapability {
    /// Such as `http://127.0.0.1:7301`.
    pub address: String,
    /// The device's name in the harness (`HarnessDevice.name`).
    pub device: String,
}

/// The enrollment types the protocol knows, in its order.
pub const ENROLLMENT_TYPES: [&str; 5] = ["cosu", "cobo", "cope", "byod", "aosp"];

impl Capabilities {
    /// Reads a capability statement; the error names the file and what is wrong in it.
    pub fn from_file(path: &Path) -> Result<Capabilities, ConformanceError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConformanceError::Capabilities {
                path: path.to_path_buf(),
                problem: source.to_string(),
            })?;
        let capabilities: Capabilities =
            serde_json::from_str(&text).map_err(|source| ConformanceError::Capabilities {
                path: path.to_path_buf(),
                problem: source.to_string(),
            })?;
        capabilities
            .check()
            .map_err(|problem| ConformanceError::Capabilities {
                path: path.to_path_buf(),
                problem,
            })?;
        Ok(capabilities)
    }

    /// Adds a feature named on the command line (`--feature remote_lock`).
    pub fn declare(&mut self, feature: &str) -> Result<(), ConformanceError> {
        match feature {
            "remote_lock" => self.remote_lock = true,
            "cancel" => self.cancel = true,
            other => return Err(ConformanceError::UnknownFeature(other.to_string())),
        }
        Ok(())
    }

    fn check(&self) -> Result<(), String> {
        for kind in &self.enrollment_types {
            if !ENROLLMENT_TYPES.contains(&kind.as_str()) {
                return Err(format!(
                    "enrollment_types: unknown type {kind:?}; use {}",
                    ENROLLMENT_TYPES.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// The enrollment types to test, all five when none is declared.
    pub fn enrollment_types(&self) -> Vec<&str> {
        if self.enrollment_types.is_empty() {
            ENROLLMENT_TYPES.to_vec()
        } else {
            self.enrollment_types.iter().map(String::as_str).collect()
        }
    }

    /// Whether the statement declares `need` (a work profile is not a capability: the device
    /// suite decides it from the enrollment type).
    pub fn declares(&self, need: Need) -> bool {
        match need {
            Need::Harness => self.harness.is_some(),
            Need::RemoteLock => self.remote_lock,
            Need::Cancel => self.cancel,
            Need::WorkProfile => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_reads_and_an_unknown_field_or_type_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("caps.json");
        std::fs::write(
            &path,
            r#"{"implementation": "py", "enrollment_types": ["cosu"], "remote_lock": true,
                "harness": {"address": "http://127.0.0.1:1", "device": "d"}}"#,
        )
        .unwrap();
        let caps = Capabilities::from_file(&path).unwrap();
        assert!(caps.declares(Need::RemoteLock) && caps.declares(Need::Harness));
        assert!(!caps.declares(Need::Cancel));
        assert_eq!(caps.enrollment_types(), ["cosu"]);

        std::fs::write(&path, r#"{"remote_lok": true}"#).unwrap();
        let error = Capabilities::from_file(&path).unwrap_err().to_string();
        assert!(
            error.contains("remote_lok") && error.contains("caps.json"),
            "{error}"
        );
        std::fs::write(&path, r#"{"enrollment_types": ["kiosk"]}"#).unwrap();
        let error = Capabilities::from_file(&path).unwrap_err().to_string();
        assert!(error.contains("\"kiosk\""), "{error}");
    }
}
