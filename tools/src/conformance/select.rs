//! Which cases a run takes: `--case` (ids or patterns with `*`), `--tag`, `--skip` (ids, tags or
//! patterns) and `--quick`, over the suite's catalogue.

use super::ConformanceError;
use super::catalogue::CaseInfo;

/// What the command line selected.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Ids or `*` patterns; empty takes every case.
    pub cases: Vec<String>,
    /// A case needs one of these tags; empty takes every case.
    pub tags: Vec<String>,
    /// Ids, tags or `*` patterns to leave out.
    pub skip: Vec<String>,
    /// Only the quick cases.
    pub quick: bool,
}

impl Selection {
    /// Whether the selection takes `case`.
    pub fn takes(&self, case: &CaseInfo) -> bool {
        let named = self.cases.is_empty() || self.cases.iter().any(|p| matches(p, case.id));
        let tagged = self.tags.is_empty() || self.tags.iter().any(|t| case.tags.contains(&&**t));
        let skipped = self
            .skip
            .iter()
            .any(|p| matches(p, case.id) || case.tags.contains(&&**p));
        named && tagged && !skipped && (!self.quick || case.quick)
    }

    /// The cases of `catalogue` the selection takes, in catalogue order; an error names a
    /// `--case` pattern that matches no case (a typo would otherwise run nothing and pass).
    pub fn apply(&self, catalogue: &[CaseInfo]) -> Result<Vec<CaseInfo>, ConformanceError> {
        for pattern in &self.cases {
            if !catalogue.iter().any(|case| matches(pattern, case.id)) {
                return Err(ConformanceError::NoSuchCase(pattern.clone()));
            }
        }
        for tag in &self.tags {
            if !catalogue
                .iter()
                .any(|case| case.tags.contains(&tag.as_str()))
            {
                return Err(ConformanceError::NoSuchTag(tag.clone()));
            }
        }
        let taken: Vec<CaseInfo> = catalogue
            .iter()
            .filter(|c| self.takes(c))
            .copied()
            .collect();
        if taken.is_empty() {
            return Err(ConformanceError::NothingSelected);
        }
        Ok(taken)
    }
}

/// `*` matches any run of characters; everything else matches itself.
fn matches(pattern: &str, text: &str) -> bool {
    let Some((first, rest)) = pattern.split_once('*') else {
        return pattern == text;
    };
    let Some(mut remaining) = text.strip_prefix(first) else {
        return false;
    };
    let mut pieces: Vec<&str> = rest.split('*').collect();
    let last = pieces.pop().unwrap_or("");
    for piece in pieces {
        match remaining.find(piece) {
            Some(at) => remaining = &remaining[at + piece.len()..],
            None => return false,
        }
    }
    remaining.len() >= last.len() && remaining.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(id: &'static str, tags: &'static [&'static str], quick: bool) -> CaseInfo {
        CaseInfo {
            id,
            title: "",
            requirements: &[],
            tags,
            needs: &[],
            quick,
        }
    }

    #[test]
    fn patterns_match_with_stars() {
        assert!(matches("dev.command.*", "dev.command.forged"));
        assert!(matches("*forged", "dev.command.forged"));
        assert!(matches("dev.*.forged", "dev.command.forged"));
        assert!(!matches("dev.*.expired", "dev.command.forged"));
        assert!(matches("dev.enroll", "dev.enroll"));
        assert!(!matches("dev.enroll", "dev.enrolled"));
        assert!(matches("*", "anything"));
        assert!(!matches("a*a", "a"));
    }

    #[test]
    fn case_tag_skip_and_quick_combine() {
        let catalogue = [
            case("dev.a", &["session"], true),
            case("dev.b", &["commands"], false),
            case("dev.c", &["commands", "slow"], true),
        ];
        let ids = |s: &Selection| -> Vec<&str> {
            s.apply(&catalogue).unwrap().iter().map(|c| c.id).collect()
        };
        assert_eq!(ids(&Selection::default()), ["dev.a", "dev.b", "dev.c"]);
        let tagged = Selection {
            tags: vec!["commands".into()],
            skip: vec!["slow".into()],
            ..Selection::default()
        };
        assert_eq!(ids(&tagged), ["dev.b"]);
        let quick = Selection {
            quick: true,
            skip: vec!["dev.a".into()],
            ..Selection::default()
        };
        assert_eq!(ids(&quick), ["dev.c"]);
        let typo = Selection {
            cases: vec!["dev.zzz".into()],
            ..Selection::default()
        };
        assert!(matches!(
            typo.apply(&catalogue),
            Err(ConformanceError::NoSuchCase(p)) if p == "dev.zzz"
        ));
    }
}
