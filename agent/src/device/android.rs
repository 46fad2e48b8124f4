//! Android versions in the device model: the API levels 26 (Android 8.0) to 35 (Android 15), and
//! the rules of the reset flow that change between them. Each rule names the public source it
//! follows (Android's developer reference or AOSP); `agent/README.md` lists them with their
//! sources and the tests that prove them.
//!
//! The rules, by the level they start at:
//! * 26: `DevicePolicyManager.setResetPasswordToken` and `resetPasswordWithToken` exist (both
//!   "Added in API level 26"). Below it a management app has no way to reset an existing
//!   passcode with a token, so the model starts here; a control plane meeting an older device
//!   refuses a reset with `API_LEVEL` (the Android Management API's code for it).
//! * 29: the complexity buckets (`DevicePolicyManager.PASSWORD_COMPLEXITY_*`,
//!   `getPasswordComplexity`) are defined, but only for an app asking the user for a new
//!   password; an admin cannot require one yet, so nothing changes for a policy.
//! * 30: a company-owned device with a work profile (COPE) is an organisation-owned managed
//!   profile (`DevicePolicyManager.isOrganizationOwnedDeviceWithManagedProfile`, added in 30):
//!   its management app is the work profile's owner, no longer a device owner beside it (the
//!   older "COMP" mode). Through `getParentProfileInstance` it may lock the device and set the
//!   device's password requirements, but `resetPasswordWithToken` is not among the calls the
//!   parent instance takes: it cannot reset the device passcode.
//! * 31: an admin can require a complexity bucket (`setRequiredPasswordComplexity`, added in
//!   31), and `PasswordMetrics.validatePasswordMetrics` (rewritten for Android 12) holds every
//!   credential, password or PIN, to the bucket's length and, at medium and high, to "no
//!   sequence longer than 3". Before 31 a policy is enforced through password quality alone
//!   (the Android Management API: "Prior to Android 12, quality-based settings are always
//!   selected"). The owner of a personally owned work profile may no longer set quality-based
//!   requirements on the parent (`setPasswordQuality` on the parent instance throws for apps
//!   targeting 31 unless the device is organisation-owned); the Android Management API
//!   translates a device-scope quality into a complexity instead.
//! * 32 to 35: no change to this flow was found; they behave as 31.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Ownership;
use super::policy::{PasscodeComplexity, PasscodePolicy, PasscodeType};

/// An Android API level the model simulates, from [`ApiLevel::MIN`] to [`ApiLevel::MAX`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct ApiLevel(u32);

/// Why a number is not an API level the model simulates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "Android API level {0} is not simulated: give a level from 26 (Android 8.0, the first with \
     escrow-token resets) to 35 (Android 15)"
)]
pub struct UnknownApiLevel(pub u32);

impl ApiLevel {
    /// Android 8.0: the first level with escrow-token resets.
    pub const MIN: ApiLevel = ApiLevel(26);
    /// Android 15, the newest level the model knows.
    pub const MAX: ApiLevel = ApiLevel(35);
    /// What a device is when nothing says otherwise: the newest level.
    pub const DEFAULT: ApiLevel = ApiLevel::MAX;
    /// COPE becomes an organisation-owned managed profile.
    const ORGANISATION_OWNED_PROFILE: u32 = 30;
    /// An admin can require a complexity bucket; the buckets cover passwords' sequences.
    const REQUIRED_COMPLEXITY: u32 = 31;

    pub fn new(level: u32) -> Result<ApiLevel, UnknownApiLevel> {
        if (ApiLevel::MIN.0..=ApiLevel::MAX.0).contains(&level) {
            Ok(ApiLevel(level))
        } else {
            Err(UnknownApiLevel(level))
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }

    /// Every simulated level, oldest first.
    pub fn all() -> impl Iterator<Item = ApiLevel> {
        (ApiLevel::MIN.0..=ApiLevel::MAX.0).map(ApiLevel)
    }

    /// The Android release the level belongs to, as Android names it.
    pub fn release(self) -> &'static str {
        match self.0 {
            26 => "8.0",
            27 => "8.1",
            28 => "9",
            29 => "10",
            30 => "11",
            31 => "12",
            32 => "12L",
            33 => "13",
            34 => "14",
            _ => "15",
        }
    }

    /// An admin's complexity bucket is enforced (31+); before, only the policy's quality is.
    pub fn enforces_required_complexity(self) -> bool {
        self.0 >= ApiLevel::REQUIRED_COMPLEXITY
    }

    /// Whether the management app may reset the store `ownership` and `device_scope` name, or
    /// the reason it cannot on this level. Only COPE's device store depends on the level: from
    /// 30 its management app owns the work profile only.
    pub fn reset_refusal(self, ownership: Ownership, device_scope: bool) -> Option<String> {
        (ownership == Ownership::Cope
            && device_scope
            && self.0 >= ApiLevel::ORGANISATION_OWNED_PROFILE)
            .then(|| {
                format!(
                    "on Android {} (API level {}) a company-owned work profile's management app \
                     owns the work profile only and cannot reset the device passcode (it could \
                     up to API level 29, as the device owner)",
                    self.release(),
                    self.0
                )
            })
    }

    /// The device-scope policy as the management app can apply it. From 31 the owner of a
    /// personally owned work profile may not set quality-based requirements on the device, so,
    /// as the Android Management API does, the quality becomes a complexity bucket (numeric
    /// types medium, password types high) and the quality's own fields are dropped; the wipe
    /// limit stays.
    pub fn device_policy_as_applied(
        self,
        ownership: Ownership,
        policy: &PasscodePolicy,
    ) -> PasscodePolicy {
        if ownership != Ownership::Byod || self.0 < ApiLevel::REQUIRED_COMPLEXITY {
            return policy.clone();
        }
        let translated = match policy.passcode_type {
            PasscodeType::Unspecified => PasscodeComplexity::Unspecified,
            PasscodeType::Pin | PasscodeType::NumericComplex => PasscodeComplexity::Medium,
            PasscodeType::Alphanumeric | PasscodeType::Complex => PasscodeComplexity::High,
        };
        PasscodePolicy {
            complexity: policy.complexity.max(translated),
            max_failed_attempts_before_wipe: policy.max_failed_attempts_before_wipe,
            ..PasscodePolicy::default()
        }
    }
}

impl Default for ApiLevel {
    fn default() -> ApiLevel {
        ApiLevel::DEFAULT
    }
}

impl TryFrom<u32> for ApiLevel {
    type Error = UnknownApiLevel;

    fn try_from(level: u32) -> Result<ApiLevel, UnknownApiLevel> {
        ApiLevel::new(level)
    }
}

impl From<ApiLevel> for u32 {
    fn from(level: ApiLevel) -> u32 {
        level.0
    }
}

impl std::str::FromStr for ApiLevel {
    type Err = String;

    fn from_str(text: &str) -> Result<ApiLevel, String> {
        let level: u32 = text
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not an API level such as 34"))?;
        ApiLevel::new(level).map_err(|e| e.to_string())
    }
}

/// The bare number, as `--android 26=1` writes it.
impl fmt::Display for ApiLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_outside_26_to_35_are_refused_with_the_range() {
        assert_eq!(ApiLevel::new(25), Err(UnknownApiLevel(25)));
        assert_eq!(ApiLevel::new(36), Err(UnknownApiLevel(36)));
        assert!(UnknownApiLevel(25).to_string().contains("from 26"));
        assert_eq!(ApiLevel::all().count(), 10);
        assert_eq!("31".parse::<ApiLevel>().unwrap().release(), "12");
        assert!(
            "android"
                .parse::<ApiLevel>()
                .unwrap_err()
                .contains("not an API level")
        );
        let json = serde_json::to_string(&ApiLevel::new(30).unwrap()).unwrap();
        assert_eq!(json, "30");
        assert!(serde_json::from_str::<ApiLevel>("12").is_err());
    }

    #[test]
    fn required_complexity_starts_at_31() {
        let enforcing: Vec<u32> = ApiLevel::all()
            .filter(|l| l.enforces_required_complexity())
            .map(ApiLevel::get)
            .collect();
        assert_eq!(enforcing, (31..=35).collect::<Vec<_>>());
    }

    #[test]
    fn cope_device_resets_end_at_30() {
        let refused = |level: u32, ownership, device_scope| {
            ApiLevel::new(level)
                .unwrap()
                .reset_refusal(ownership, device_scope)
                .is_some()
        };
        assert!(!refused(29, Ownership::Cope, true), "COMP: a device owner");
        assert!(refused(30, Ownership::Cope, true));
        assert!(!refused(35, Ownership::Cope, false), "the work profile");
        assert!(!refused(35, Ownership::Cosu, true));
    }

    #[test]
    fn personally_owned_device_quality_becomes_complexity_from_31() {
        let pin_six = PasscodePolicy {
            passcode_type: PasscodeType::Pin,
            min_length: 6,
            max_failed_attempts_before_wipe: 9,
            ..PasscodePolicy::default()
        };
        let at = |level| ApiLevel::new(level).unwrap();
        assert_eq!(
            at(30).device_policy_as_applied(Ownership::Byod, &pin_six),
            pin_six
        );
        assert_eq!(
            at(31).device_policy_as_applied(Ownership::Cope, &pin_six),
            pin_six,
            "an organisation-owned device keeps quality"
        );
        let applied = at(31).device_policy_as_applied(Ownership::Byod, &pin_six);
        assert_eq!(applied.passcode_type, PasscodeType::Unspecified);
        assert_eq!(applied.complexity, PasscodeComplexity::Medium);
        assert_eq!(applied.min_length, 0);
        assert_eq!(applied.max_failed_attempts_before_wipe, 9);
        let password = PasscodePolicy {
            passcode_type: PasscodeType::Alphanumeric,
            ..PasscodePolicy::default()
        };
        assert_eq!(
            at(34)
                .device_policy_as_applied(Ownership::Byod, &password)
                .complexity,
            PasscodeComplexity::High
        );
    }
}
