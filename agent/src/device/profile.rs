//! Maker profiles: how one maker's build of Android departs from AOSP in the reset flow, kept as
//! data (`profiles/*.json`, embedded at build time) rather than as code paths through the model.
//!
//! A profile file is one JSON object:
//!
//! ```json
//! {
//!   "name": "short-keyguard",
//!   "summary": "One sentence: what a user of this device meets.",
//!   "quirks": {
//!     "max_passcode_length": { "value": 6, "synthetic": "why this variation is worth testing" }
//!   }
//! }
//! ```
//!
//! Each quirk carries its `value` and exactly one of `source` (an `https://` address of a public
//! page that documents the behaviour) or `synthetic` (why a made-up variation is worth testing);
//! a quirk with neither, or both, does not load. The quirks a profile may set:
//! * `max_passcode_length` (a number from 4 to 16): the lock screen refuses longer passcodes,
//!   for the user and for a reset alike (`TOO_LONG`), below Android's own 16.
//! * `work_notification_until_app_opened` (`true`): the management app's "enter your new work
//!   passcode" notification stays after the entry until the user opens a work app; the control
//!   plane still learns of the entry at once.
//!
//! A profile left out of `quirks` behaves as AOSP does.

use std::fmt;
use std::sync::OnceLock;

use serde::Deserialize;

use super::policy::{MAX_PASSCODE_LENGTH, MIN_PASSCODE_LENGTH};

/// The shipped profile files, in the order `--profile` lists them.
const PROFILE_FILES: [(&str, &str); 3] = [
    ("aosp.json", include_str!("profiles/aosp.json")),
    (
        "short-keyguard.json",
        include_str!("profiles/short-keyguard.json"),
    ),
    (
        "sticky-work-notification.json",
        include_str!("profiles/sticky-work-notification.json"),
    ),
];

/// One maker's departures from AOSP.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MakerProfile {
    name: String,
    summary: String,
    quirks: Quirks,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Quirks {
    #[serde(default)]
    max_passcode_length: Option<Quirk<u32>>,
    #[serde(default)]
    work_notification_until_app_opened: Option<Quirk<bool>>,
}

/// A quirk's value and where it comes from.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Quirk<T> {
    value: T,
    /// A public page that documents the behaviour.
    #[serde(default)]
    source: Option<String>,
    /// Why a made-up variation is worth testing, when no public source exists.
    #[serde(default)]
    synthetic: Option<String>,
}

/// Where a quirk comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provenance<'a> {
    /// Documented by this public page.
    Cited(&'a str),
    /// Made up for testing, for this reason.
    Synthetic(&'a str),
}

impl<T> Quirk<T> {
    fn provenance(&self) -> Result<Provenance<'_>, String> {
        match (&self.source, &self.synthetic) {
            (Some(url), None) if url.starts_with("https://") => Ok(Provenance::Cited(url)),
            (Some(url), None) => Err(format!("source {url:?} is not an https:// address")),
            (None, Some(why)) if !why.trim().is_empty() => Ok(Provenance::Synthetic(why)),
            (None, Some(_)) => Err("synthetic must say why the variation is worth testing".into()),
            (None, None) => Err("give a source or mark it synthetic".into()),
            (Some(_), Some(_)) => Err("give a source or mark it synthetic, not both".into()),
        }
    }
}

impl MakerProfile {
    fn parse(file: &str, text: &str) -> Result<MakerProfile, String> {
        let profile: MakerProfile =
            serde_json::from_str(text).map_err(|e| format!("{file}: {e}"))?;
        let named_ok = !profile.name.is_empty()
            && profile
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !named_ok {
            return Err(format!(
                "{file}: name {:?} must be lower-case letters, digits and '-'",
                profile.name
            ));
        }
        for (quirk, provenance) in profile.quirk_provenances() {
            provenance.map_err(|e| format!("{file}: quirk {quirk}: {e}"))?;
        }
        if let Some(cap) = &profile.quirks.max_passcode_length
            && !(MIN_PASSCODE_LENGTH..=MAX_PASSCODE_LENGTH).contains(&cap.value)
        {
            return Err(format!(
                "{file}: quirk max_passcode_length: {} is not from {MIN_PASSCODE_LENGTH} to \
                 {MAX_PASSCODE_LENGTH}",
                cap.value
            ));
        }
        Ok(profile)
    }

    fn quirk_provenances(&self) -> Vec<(&'static str, Result<Provenance<'_>, String>)> {
        let quirks = &self.quirks;
        let mut found = Vec::new();
        if let Some(q) = &quirks.max_passcode_length {
            found.push(("max_passcode_length", q.provenance()));
        }
        if let Some(q) = &quirks.work_notification_until_app_opened {
            found.push(("work_notification_until_app_opened", q.provenance()));
        }
        found
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn summary(&self) -> &str {
        &self.summary
    }

    /// The longest passcode the lock screen takes: Android's 16, or the maker's lower cap.
    pub fn max_passcode_length(&self) -> u32 {
        self.quirks
            .max_passcode_length
            .as_ref()
            .map_or(MAX_PASSCODE_LENGTH, |q| q.value.min(MAX_PASSCODE_LENGTH))
    }

    /// The work notification stays after the entry until the user opens a work app.
    pub fn keeps_work_notification_until_app_opened(&self) -> bool {
        self.quirks
            .work_notification_until_app_opened
            .as_ref()
            .is_some_and(|q| q.value)
    }

    /// Each quirk the profile sets, with where it comes from (every one loaded has one).
    pub fn quirks(&self) -> Vec<(&'static str, Provenance<'_>)> {
        self.quirk_provenances()
            .into_iter()
            .filter_map(|(name, provenance)| Some((name, provenance.ok()?)))
            .collect()
    }
}

fn shipped() -> &'static [MakerProfile] {
    static PROFILES: OnceLock<Vec<MakerProfile>> = OnceLock::new();
    PROFILES.get_or_init(|| {
        PROFILE_FILES
            .iter()
            .map(|(file, text)| MakerProfile::parse(file, text))
            .collect::<Result<_, _>>()
            // The files are embedded at build time; `every_shipped_profile_loads` proves they do.
            .expect("the shipped maker profiles load")
    })
}

/// A shipped maker profile, by reference: cheap to copy into every device of a large fleet.
#[derive(Clone, Copy)]
pub struct Profile(&'static MakerProfile);

impl Profile {
    /// Every shipped profile, the AOSP reference first.
    pub fn all() -> impl Iterator<Item = Profile> {
        shipped().iter().map(Profile)
    }

    /// The shipped profile of that name.
    pub fn named(name: &str) -> Option<Profile> {
        Profile::all().find(|p| p.0.name == name)
    }

    pub fn name(self) -> &'static str {
        &self.0.name
    }

    pub fn maker(self) -> &'static MakerProfile {
        self.0
    }
}

/// AOSP, the reference profile.
impl Default for Profile {
    fn default() -> Profile {
        Profile(&shipped()[0])
    }
}

impl PartialEq for Profile {
    fn eq(&self, other: &Profile) -> bool {
        self.0.name == other.0.name
    }
}

impl Eq for Profile {}

impl std::hash::Hash for Profile {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.name.hash(state);
    }
}

impl fmt::Debug for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Profile({})", self.0.name)
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.name)
    }
}

impl std::str::FromStr for Profile {
    type Err = String;

    fn from_str(text: &str) -> Result<Profile, String> {
        Profile::named(text.trim()).ok_or_else(|| {
            let names: Vec<&str> = Profile::all().map(Profile::name).collect();
            format!("unknown maker profile {text:?}; use {}", names.join(", "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_profile_loads_and_every_quirk_has_a_provenance() {
        let names: Vec<&str> = Profile::all().map(Profile::name).collect();
        assert_eq!(
            names,
            ["aosp", "short-keyguard", "sticky-work-notification"]
        );
        assert_eq!(Profile::default().name(), "aosp");
        assert!(Profile::default().maker().quirks().is_empty());
        for profile in Profile::all().skip(1) {
            let quirks = profile.maker().quirks();
            assert!(!quirks.is_empty(), "{profile} departs from AOSP somewhere");
            assert!(!profile.maker().summary().is_empty());
        }
        let short: Profile = "short-keyguard".parse().unwrap();
        assert_eq!(short.maker().max_passcode_length(), 6);
        assert!(!short.maker().keeps_work_notification_until_app_opened());
        let sticky: Profile = "sticky-work-notification".parse().unwrap();
        assert!(sticky.maker().keeps_work_notification_until_app_opened());
        assert_eq!(sticky.maker().max_passcode_length(), 16);
        let e = "pixel".parse::<Profile>().unwrap_err();
        assert!(
            e.contains("unknown maker profile") && e.contains("short-keyguard"),
            "{e}"
        );
    }

    #[test]
    fn a_profile_without_provenance_or_with_a_bad_value_does_not_load() {
        let with =
            |quirk: &str| format!(r#"{{"name": "x", "summary": "s", "quirks": {{ {quirk} }} }}"#);
        let e = MakerProfile::parse("x.json", &with(r#""max_passcode_length": {"value": 8}"#))
            .unwrap_err();
        assert!(
            e.contains("max_passcode_length") && e.contains("synthetic"),
            "{e}"
        );
        let both =
            r#""max_passcode_length": {"value": 8, "source": "https://a", "synthetic": "b"}"#;
        assert!(
            MakerProfile::parse("x.json", &with(both))
                .unwrap_err()
                .contains("not both")
        );
        let http = r#""max_passcode_length": {"value": 8, "source": "http://a"}"#;
        assert!(
            MakerProfile::parse("x.json", &with(http))
                .unwrap_err()
                .contains("https://")
        );
        let big = r#""max_passcode_length": {"value": 40, "synthetic": "why"}"#;
        assert!(
            MakerProfile::parse("x.json", &with(big))
                .unwrap_err()
                .contains("4 to 16")
        );
        let unknown = r#""fast_unlock": {"value": true, "synthetic": "why"}"#;
        assert!(
            MakerProfile::parse("x.json", &with(unknown))
                .unwrap_err()
                .contains("fast_unlock")
        );
        let cited = r#""max_passcode_length": {"value": 8, "source": "https://example.org/doc"}"#;
        let profile = MakerProfile::parse("x.json", &with(cited)).unwrap();
        assert_eq!(
            profile.quirks(),
            vec![(
                "max_passcode_length",
                Provenance::Cited("https://example.org/doc")
            )]
        );
        let e = MakerProfile::parse("x.json", r#"{"name": "X Y", "summary": "s", "quirks": {}}"#)
            .unwrap_err();
        assert!(e.contains("lower-case"), "{e}");
    }
}
