//! The load test's seeded behaviour model: the enrollment-type mix, and for each device the
//! decisions the run makes about it (fault injected, how long its user takes to notice the
//! reset, whether the user first mistypes, the passcodes the user chooses, whether the device
//! goes offline around its reset and for how long, whether it reboots before its user answers,
//! which Android API level and maker profile it runs), the policy its reset runs under, and
//! the outcome all of that predicts.
//!
//! Every decision comes from a random stream derived only from `(seed, device index)`, so the
//! same seed gives the same decisions whatever the timing, the concurrency or the device count
//! of other devices. The generator and `--mix` are the agent's (`droidfleet_agent::seeded`), so
//! a seed means the same thing to the load test and to `droidfleet-agent run`.

use droidfleet_agent::device::{Build, Ownership, Passcode, Scope};
use droidfleet_agent::seeded::{AndroidMix, Mix, ProfileMix, SplitMix64};
use droidfleet_control_plane::model::{Complexity, PasscodePolicy, PasscodeType};
use droidfleet_control_plane::passcode_gen;
use serde::Serialize;

/// What the run does to a device so that the control plane's failure paths carry load too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Fault {
    None,
    /// No passcode policy is assigned: the reset ends failed / no_passcode_policy.
    NoPolicy,
    /// The escrowed token is pending when the reset arrives: failed / token_not_active (unless
    /// the device's version refuses the store first; see [`DevicePlan::prediction`]).
    PendingToken,
}

/// The knobs the decisions depend on.
#[derive(Clone, Debug)]
pub(super) struct Behaviour {
    pub seed: u64,
    pub user_delay_mean_ms: u64,
    pub typo_probability: f64,
    pub no_policy_share: f64,
    pub pending_token_share: f64,
    /// Share of devices that go offline just before their reset is issued.
    pub offline_share: f64,
    /// Mean time such a device stays offline (exponential, capped like the user delay).
    pub offline_mean_ms: u64,
    /// Share of devices that reboot after their reset is applied, before their user answers.
    pub reboot_share: f64,
    /// The Android API levels of the fleet (`--android`).
    pub android: AndroidMix,
    /// The maker profiles of the fleet (`--profile`).
    pub profiles: ProfileMix,
}

impl Behaviour {
    pub(super) fn check(&self) -> Result<(), String> {
        for (name, value) in [
            ("--typo-probability", self.typo_probability),
            ("--no-policy-share", self.no_policy_share),
            ("--pending-token-share", self.pending_token_share),
            ("--offline-share", self.offline_share),
            ("--reboot-share", self.reboot_share),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(format!("{name} {value}: give a number from 0 to 1"));
            }
        }
        if self.no_policy_share + self.pending_token_share > 1.0 {
            return Err(format!(
                "--no-policy-share {} plus --pending-token-share {} exceed 1: a device gets at most one fault",
                self.no_policy_share, self.pending_token_share
            ));
        }
        if self.offline_share > 0.0 && self.offline_mean_ms == 0 {
            return Err(format!(
                "--offline-ms 0 with --offline-share {}: give the mean time offline, at least 1 ms",
                self.offline_share
            ));
        }
        Ok(())
    }
}

/// Everything decided about one device before the run starts.
pub(super) struct DevicePlan {
    pub name: String,
    pub ownership: Ownership,
    pub fault: Fault,
    /// How long after the reset completes the user notices and starts typing.
    pub user_delay_ms: u64,
    /// The user first types a wrong passcode.
    pub typo: bool,
    /// The user's own device PIN, and work-profile password for work-profile types. Secrets of
    /// the simulated user: never printed or written to the report.
    pub device_pin: Passcode,
    pub work_password: Option<Passcode>,
    /// The device goes offline just before its reset is issued and comes back after this long.
    pub offline_ms: Option<u64>,
    /// The device reboots after its reset is applied, before its user enters the new passcode.
    pub reboot: bool,
    /// The Android it runs: API level and maker profile.
    pub build: Build,
}

/// How a measured reset should end, from the device's fault, Android version and maker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(super) struct Prediction {
    pub state: &'static str,
    pub error_code: Option<&'static str>,
}

impl DevicePlan {
    /// The store a reset targets for this enrollment type (the support matrix).
    pub(super) fn target_scope(&self) -> Scope {
        if self.ownership.has_work_profile() {
            Scope::WorkProfile
        } else {
            Scope::Device
        }
    }

    /// The passcode policy the run assigns to the target store (unless the device's fault is
    /// having none): a 6-digit PIN for a lock screen, an 8-character letters-and-digits password
    /// for a work profile, what MDM policies commonly ask.
    pub(super) fn policy(&self) -> PasscodePolicy {
        let (passcode_type, min_length) = match self.target_scope() {
            Scope::Device => (PasscodeType::Pin, 6),
            Scope::WorkProfile => (PasscodeType::Alphanumeric, 8),
        };
        PasscodePolicy {
            passcode_type,
            min_length,
            complexity: Complexity::Unspecified,
            min_letters: 0,
            min_upper_case: 0,
            min_lower_case: 0,
            min_digits: 0,
            min_symbols: 0,
            min_non_letters: 0,
            max_failed_attempts_before_wipe: 0,
        }
    }

    /// Whether the passcode the control plane generates for [`DevicePlan::policy`] is longer than
    /// the device's lock screen takes (a maker profile's lower cap).
    fn generated_passcode_too_long(&self) -> bool {
        let generated = passcode_gen::length_for(&self.policy()).unwrap_or(u32::MAX);
        generated > self.build.profile.maker().max_passcode_length()
    }

    /// How the measured reset should end, checked in the order the control plane and the device
    /// check: no policy (control plane), the device's version refusing the store, a pending
    /// token, then a generated passcode the lock screen cannot take. The version refuses only a
    /// company-owned device's device store from API level 30, which the support matrix never
    /// targets, but it is asked all the same so the prediction follows the device model's rules.
    pub(super) fn prediction(&self) -> Prediction {
        let failed = |code| Prediction {
            state: "failed",
            error_code: Some(code),
        };
        if self.fault == Fault::NoPolicy {
            return failed("no_passcode_policy");
        }
        let device_scope = self.target_scope() == Scope::Device;
        if self
            .build
            .api_level
            .reset_refusal(self.ownership, device_scope)
            .is_some()
        {
            return Prediction {
                state: "not_supported",
                error_code: Some("api_level"),
            };
        }
        if self.fault == Fault::PendingToken {
            return failed("token_not_active");
        }
        if self.generated_passcode_too_long() {
            return failed("passcode_policy_violation");
        }
        Prediction {
            state: "done",
            error_code: None,
        }
    }

    /// The passcode the pending-token setup reset sets: `None` lets the control plane generate
    /// one; on a lock screen too short for that, the user's own current passcode, which the
    /// user chose to fit it. The setup reset must succeed, since its rotated token is what the
    /// device then holds pending.
    pub(super) fn setup_passcode(&self) -> Option<Passcode> {
        if !self.generated_passcode_too_long() {
            return None;
        }
        match self.target_scope() {
            Scope::Device => Some(self.device_pin.clone()),
            Scope::WorkProfile => self.work_password.clone(),
        }
    }

    /// Argon2id runs on the device for its measured reset if it ends done (read from
    /// `agent/src/device`): the reset wraps the secret under the new passcode (one run), the
    /// user's entry of it (one run), a typo's wrong entry (one run), and after a reboot of a
    /// work-profile device the user's unlock of the device with their own PIN, which Android asks
    /// for before the work challenge (one run). Token wraps, policy checks and the reboot itself
    /// use HKDF and AES only.
    pub(super) fn argon2_runs_if_done(&self) -> u32 {
        2 + u32::from(self.typo) + u32::from(self.reboot && self.ownership.has_work_profile())
    }
}

/// An exponential delay has a long tail; cap it so one unlucky user cannot hold the run up to
/// its deadline.
const DELAY_CAP_FACTOR: f64 = 10.0;

pub(super) fn plan(mix: &Mix, devices: usize, behaviour: &Behaviour) -> Vec<DevicePlan> {
    mix.assign(devices)
        .into_iter()
        .enumerate()
        .map(|(index, ownership)| {
            let mut rng = SplitMix64::for_index(behaviour.seed, index);
            // The draw order is part of the model: change it and old seeds mean other fleets.
            let fault_draw = rng.unit();
            let delay_draw = rng.unit();
            let typo_draw = rng.unit();
            let fault = if fault_draw < behaviour.no_policy_share {
                Fault::NoPolicy
            } else if fault_draw < behaviour.no_policy_share + behaviour.pending_token_share {
                Fault::PendingToken
            } else {
                Fault::None
            };
            let mean = behaviour.user_delay_mean_ms as f64;
            // Users notice a notification after a memoryless wait: exponential with this mean.
            let user_delay_ms = exponential(mean, delay_draw);
            // The user's own PIN is 4 digits (allowed before any policy); the work password is
            // 10 letters and digits with at least one of each.
            let device_pin = Passcode::new(rng.string_from(b"0123456789", 4));
            let work_password = ownership.has_work_profile().then(|| {
                let letters = rng.string_from(b"abcdefghijkmnpqrstuvwxyz", 6);
                let digits = rng.string_from(b"23456789", 4);
                Passcode::new(format!("{letters}{digits}"))
            });
            // Drawn after everything older, always all three, so adding churn and reboots kept
            // the earlier decisions of a seed, and each decision is independent of the others.
            let offline_draw = rng.unit();
            let offline_length_draw = rng.unit();
            let reboot_draw = rng.unit();
            // The Android the device runs, drawn after everything older for the same reason.
            let build = Build {
                api_level: behaviour.android.pick(&mut rng),
                profile: behaviour.profiles.pick(&mut rng),
            };
            // A user fits the work password to what the lock screen takes: at most its length,
            // still with letters and two digits.
            let max_length = build.profile.maker().max_passcode_length() as usize;
            let work_password = work_password.map(|password| {
                let text = password.expose();
                if text.len() <= max_length {
                    return password;
                }
                // A profile's cap is at least 4: two letters and two digits at the least.
                Passcode::new(format!("{}{}", &text[..max_length - 2], &text[6..8]))
            });
            let offline_ms = (offline_draw < behaviour.offline_share).then(|| {
                // At least 1 ms: a device that goes offline is offline for some time.
                (exponential(behaviour.offline_mean_ms as f64, offline_length_draw).round() as u64)
                    .max(1)
            });
            DevicePlan {
                name: format!("{}-{index}", ownership.as_str()),
                ownership,
                fault,
                user_delay_ms: user_delay_ms.round() as u64,
                typo: typo_draw < behaviour.typo_probability,
                device_pin,
                work_password,
                offline_ms,
                reboot: reboot_draw < behaviour.reboot_share,
                build,
            }
        })
        .collect()
}

/// A memoryless wait with this mean (what a user's reaction or a phone's time without signal
/// looks like), from a uniform draw in [0, 1), capped at [`DELAY_CAP_FACTOR`] times the mean.
fn exponential(mean: f64, draw: f64) -> f64 {
    (-mean * (1.0 - draw).ln()).min(mean * DELAY_CAP_FACTOR)
}

/// A passcode one keystroke away from `passcode`: what a user types by mistake. Keeps the kind
/// of character, so a PIN stays digits.
pub(super) fn typo_of(passcode: &Passcode) -> Passcode {
    let mut chars: Vec<char> = passcode.expose().chars().collect();
    if let Some(last) = chars.last_mut() {
        *last = match *last {
            '0'..='8' => ((*last as u8) + 1) as char,
            '9' => '0',
            'z' | 'Z' => 'a',
            c if c.is_ascii_alphabetic() => ((c as u8) + 1) as char,
            _ => 'x',
        };
    }
    Passcode::new(chars.into_iter().collect::<String>())
}

/// A SHA-256 over every device's decisions (not its passcodes): two runs with the same digest
/// made the same per-device decisions.
pub(super) fn decision_digest(plans: &[DevicePlan]) -> String {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for p in plans {
        context.update(
            format!(
                "{},{},{:?},{},{},{},{},{}\n",
                p.name,
                p.ownership.as_str(),
                p.fault,
                p.user_delay_ms,
                p.typo,
                p.offline_ms.unwrap_or(0),
                p.reboot,
                p.build
            )
            .as_bytes(),
        );
    }
    context
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn behaviour(seed: u64) -> Behaviour {
        Behaviour {
            seed,
            user_delay_mean_ms: 100,
            typo_probability: 0.3,
            no_policy_share: 0.2,
            pending_token_share: 0.2,
            offline_share: 0.3,
            offline_mean_ms: 50,
            reboot_share: 0.3,
            android: AndroidMix::default(),
            profiles: ProfileMix::default(),
        }
    }

    #[test]
    fn same_seed_same_decisions_other_seed_other_decisions() {
        let mix: Mix = "cosu=1,cobo=1,cope=1,byod=1,aosp=1".parse().unwrap();
        let a = plan(&mix, 50, &behaviour(7));
        let b = plan(&mix, 50, &behaviour(7));
        let c = plan(&mix, 50, &behaviour(8));
        assert_eq!(decision_digest(&a), decision_digest(&b));
        assert_ne!(decision_digest(&a), decision_digest(&c));
        // A device's decisions do not depend on how many devices follow it.
        let short = plan(&mix, 10, &behaviour(7));
        assert_eq!(decision_digest(&short), decision_digest(&a[..10]));
        assert!(a.iter().any(|p| p.fault == Fault::NoPolicy));
        assert!(a.iter().any(|p| p.fault == Fault::PendingToken));
        assert!(a.iter().any(|p| p.offline_ms.is_some()));
        assert!(a.iter().any(|p| p.offline_ms.is_none()));
        assert!(a.iter().any(|p| p.reboot) && a.iter().any(|p| !p.reboot));
        assert!(
            a.iter()
                .filter_map(|p| p.offline_ms)
                .all(|ms| (1..=500).contains(&ms)),
            "offline times are capped at ten times the mean"
        );
    }

    #[test]
    fn churn_and_reboots_leave_the_older_decisions_of_a_seed_alone() {
        let mix: Mix = "cosu=1,cobo=1,cope=1,byod=1,aosp=1".parse().unwrap();
        let calm = Behaviour {
            offline_share: 0.0,
            reboot_share: 0.0,
            ..behaviour(7)
        };
        let churned = plan(&mix, 50, &behaviour(7));
        let still = plan(&mix, 50, &calm);
        for (a, b) in churned.iter().zip(&still) {
            assert_eq!(
                (&a.name, a.fault, a.user_delay_ms, a.typo),
                (&b.name, b.fault, b.user_delay_ms, b.typo)
            );
            assert_eq!(a.device_pin.expose(), b.device_pin.expose());
            assert!(b.offline_ms.is_none() && !b.reboot);
        }
        // The churn and reboot decisions are part of the digest.
        assert_ne!(decision_digest(&churned), decision_digest(&still));
    }

    #[test]
    fn argon2_runs_follow_the_device_model() {
        let mix: Mix = "cosu=1,byod=1".parse().unwrap();
        let plans = plan(&mix, 40, &behaviour(3));
        for p in &plans {
            let expected =
                2 + u32::from(p.typo) + u32::from(p.reboot && p.ownership == Ownership::Byod);
            assert_eq!(p.argon2_runs_if_done(), expected, "{}", p.name);
        }
    }

    #[test]
    fn a_zero_offline_mean_is_refused_only_when_devices_go_offline() {
        let bad = Behaviour {
            offline_mean_ms: 0,
            ..behaviour(1)
        };
        let e = bad.check().unwrap_err();
        assert!(e.contains("--offline-ms 0"), "{e}");
        let fine = Behaviour {
            offline_share: 0.0,
            ..bad
        };
        assert!(fine.check().is_ok());
        let e = Behaviour {
            reboot_share: 1.5,
            ..behaviour(1)
        }
        .check()
        .unwrap_err();
        assert!(e.contains("--reboot-share 1.5"), "{e}");
    }

    #[test]
    fn builds_are_drawn_last_and_predict_each_outcome() {
        let mix: Mix = "cosu=1,cope=1,byod=1".parse().unwrap();
        let mixed = Behaviour {
            android: "26=1,30=1,35=1".parse().unwrap(),
            profiles: "aosp=1,short-keyguard=1".parse().unwrap(),
            ..behaviour(5)
        };
        let plain = plan(&mix, 60, &behaviour(5));
        let plans = plan(&mix, 60, &mixed);
        for (a, b) in plans.iter().zip(&plain) {
            assert_eq!(
                (
                    &a.name,
                    a.fault,
                    a.user_delay_ms,
                    a.typo,
                    a.offline_ms,
                    a.reboot
                ),
                (
                    &b.name,
                    b.fault,
                    b.user_delay_ms,
                    b.typo,
                    b.offline_ms,
                    b.reboot
                ),
                "a build is drawn after every older decision"
            );
            assert_eq!(a.device_pin.expose(), b.device_pin.expose());
        }
        assert!(plans.iter().any(|p| p.build.api_level.get() == 26));
        assert!(
            plans
                .iter()
                .any(|p| p.build.profile.name() == "short-keyguard")
        );
        for p in &plans {
            let short = p.build.profile.name() == "short-keyguard";
            let expected = match (p.fault, short, p.target_scope()) {
                (Fault::NoPolicy, _, _) => ("failed", Some("no_passcode_policy")),
                (Fault::PendingToken, _, _) => ("failed", Some("token_not_active")),
                // A generated work password is 8 characters; a short keyguard takes 6.
                (Fault::None, true, Scope::WorkProfile) => {
                    ("failed", Some("passcode_policy_violation"))
                }
                (Fault::None, _, _) => ("done", None),
            };
            let prediction = p.prediction();
            assert_eq!(
                (prediction.state, prediction.error_code),
                expected,
                "{}",
                p.name
            );
            // The user's own work password fits the lock screen.
            if let Some(work) = &p.work_password {
                let max = p.build.profile.maker().max_passcode_length() as usize;
                assert!(work.expose().len() <= max, "{}", p.name);
                assert!(work.expose().bytes().any(|b| b.is_ascii_digit()));
                assert!(work.expose().bytes().any(|b| b.is_ascii_alphabetic()));
            }
            // A pending-token device's setup reset must succeed: on a short keyguard the admin
            // sets the user's own (fitting) passcode instead of a generated one.
            assert_eq!(
                p.setup_passcode().is_some(),
                short && p.target_scope() == Scope::WorkProfile,
                "{}",
                p.name
            );
        }
    }

    #[test]
    fn a_typo_differs_and_keeps_the_kind() {
        for text in ["1234", "1239", "abcdef12", "abc9z"] {
            let typo = typo_of(&Passcode::new(text));
            assert_ne!(typo.expose(), text);
            assert_eq!(typo.expose().len(), text.len());
        }
        assert!(
            typo_of(&Passcode::new("0009"))
                .expose()
                .chars()
                .all(|c| c.is_ascii_digit())
        );
    }
}
