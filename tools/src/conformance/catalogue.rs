//! The catalogue: every case of both suites as data (id, one-line title, the `PROTOCOL.md`
//! requirements it checks, tags, what it needs from the implementation under test, whether quick
//! mode runs it), and the listings `--list` and `--list --requirements` print.

use super::requirements::{Requirement, requirements};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Which side of the protocol the implementation under test plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Suite {
    /// The kit plays devices against a control plane under test.
    ControlPlane,
    /// The kit plays the control plane for a device under test.
    Device,
}

impl Suite {
    pub fn as_str(self) -> &'static str {
        match self {
            Suite::ControlPlane => "control-plane",
            Suite::Device => "device",
        }
    }
}

/// Something a case needs from the implementation under test, declared in its capability
/// statement (or, for a device's work profile, by the enrollment type it enrolls with).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Need {
    /// The device serves `DeviceHarness`, so the kit can play its user.
    Harness,
    /// The implementation supports remote lock.
    RemoteLock,
    /// The device has a work profile (COBO, COPE, BYOD).
    WorkProfile,
    /// Cancel: a control plane cancels actions (and sends a signed cancel for a sent one); a
    /// device answers a signed cancel.
    Cancel,
}

impl Need {
    pub fn as_str(self) -> &'static str {
        match self {
            Need::Harness => "harness",
            Need::RemoteLock => "remote_lock",
            Need::WorkProfile => "work_profile",
            Need::Cancel => "cancel",
        }
    }
}

/// One case as the catalogue lists it.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct CaseInfo {
    /// Stable and unique, such as `dev.command.forged`; selects the case (`--case`).
    pub id: &'static str,
    /// What a passing implementation does, in one line.
    pub title: &'static str,
    /// The `PROTOCOL.md` requirement ids the case checks.
    pub requirements: &'static [&'static str],
    /// For `--tag` and `--skip`.
    pub tags: &'static [&'static str],
    /// Without these declared the case is "not applicable".
    pub needs: &'static [Need],
    /// Quick mode (`--quick`) runs only these: a few cases, seconds.
    pub quick: bool,
}

/// Every case of `suite`, in the order a run takes them.
pub fn cases(suite: Suite) -> Vec<CaseInfo> {
    match suite {
        Suite::ControlPlane => super::control_plane::cases().map(|c| c.info).collect(),
        Suite::Device => super::device::cases().map(|c| c.info).collect(),
    }
}

/// Every case of both suites.
pub fn all_cases() -> Vec<(Suite, CaseInfo)> {
    [Suite::ControlPlane, Suite::Device]
        .into_iter()
        .flat_map(|suite| cases(suite).into_iter().map(move |case| (suite, case)))
        .collect()
}

/// Each requirement with the ids of the cases (of either suite) that check it.
pub fn coverage() -> Vec<(Requirement, Vec<&'static str>)> {
    let mut by_requirement: BTreeMap<&str, Vec<&'static str>> = BTreeMap::new();
    for (_, case) in all_cases() {
        for requirement in case.requirements {
            by_requirement.entry(requirement).or_default().push(case.id);
        }
    }
    requirements()
        .into_iter()
        .map(|requirement| {
            let checked_by = by_requirement.remove(requirement.id.as_str());
            (requirement, checked_by.unwrap_or_default())
        })
        .collect()
}

/// `--list`: the suite's cases, one block each.
pub fn list(suite: Suite) -> String {
    let mut out = String::new();
    let cases = cases(suite);
    let _ = writeln!(
        out,
        "{} cases of the {} suite:",
        cases.len(),
        suite.as_str()
    );
    for case in cases {
        let _ = writeln!(
            out,
            "  {:<34} {}{}",
            case.id,
            case.title,
            if case.quick { "  [quick]" } else { "" }
        );
        let needs: Vec<&str> = case.needs.iter().map(|n| n.as_str()).collect();
        let _ = writeln!(
            out,
            "  {:<34} requirements: {}; tags: {}{}",
            "",
            case.requirements.join(", "),
            case.tags.join(", "),
            if needs.is_empty() {
                String::new()
            } else {
                format!("; needs: {}", needs.join(", "))
            }
        );
    }
    out
}

/// `--list --requirements`: every requirement of `PROTOCOL.md` and the cases that check it.
pub fn list_requirements() -> String {
    let mut out = String::new();
    for (requirement, cases) in coverage() {
        let _ = writeln!(
            out,
            "{} ({}) {}",
            requirement.id, requirement.level, requirement.summary
        );
        let _ = writeln!(
            out,
            "    checked by: {}",
            if cases.is_empty() {
                "NO CASE".to_string()
            } else {
                cases.join(", ")
            }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_requirement_is_checked_and_every_case_names_real_requirements() {
        let known: BTreeSet<String> = requirements().into_iter().map(|r| r.id).collect();
        let mut ids = BTreeSet::new();
        for (suite, case) in all_cases() {
            assert!(ids.insert(case.id), "case id {} twice", case.id);
            let prefix = match suite {
                Suite::ControlPlane => "cp.",
                Suite::Device => "dev.",
            };
            assert!(case.id.starts_with(prefix), "{} in {suite:?}", case.id);
            assert!(!case.requirements.is_empty(), "{} checks nothing", case.id);
            for requirement in case.requirements {
                assert!(
                    known.contains(*requirement),
                    "{} names {requirement}, which PROTOCOL.md does not define",
                    case.id
                );
            }
        }
        let unchecked: Vec<String> = coverage()
            .into_iter()
            .filter(|(_, cases)| cases.is_empty())
            .map(|(r, _)| r.id)
            .collect();
        assert!(unchecked.is_empty(), "no case checks {unchecked:?}");
    }

    #[test]
    fn quick_mode_has_a_few_cases_in_each_suite() {
        for suite in [Suite::ControlPlane, Suite::Device] {
            let quick = cases(suite).iter().filter(|c| c.quick).count();
            assert!((3..=8).contains(&quick), "{suite:?}: {quick} quick cases");
        }
    }
}
