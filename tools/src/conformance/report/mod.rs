//! A run's report: each case's verdict, duration and requirements, and on failure the redacted
//! messages exchanged just before it. Written as a console summary, JUnit XML (`junit.xml`, which
//! CI systems show natively), JSON (`report.json`) and a self-contained HTML page
//! (`report.html`).

mod html;
mod junit;

use super::ConformanceError;
use super::catalogue::{CaseInfo, Suite};
use super::transcript::Line;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// How a case ended.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    Passed,
    /// The implementation did something the requirement forbids, or not what it demands.
    Failed {
        message: String,
    },
    /// The capability statement does not declare what the case needs, or the implementation
    /// is not in a state the case can start from; never counted as passed.
    NotApplicable {
        reason: String,
    },
}

/// One case in a report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CaseReport {
    #[serde(flatten)]
    pub info: CaseInfo,
    #[serde(flatten)]
    pub verdict: Verdict,
    pub duration_ms: u64,
    /// The last messages exchanged, for a failed case only (empty otherwise).
    pub transcript: Vec<Line>,
}

/// A whole run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    pub suite: Suite,
    /// The implementation under test, as its capability statement names it.
    pub implementation: String,
    /// Where the kit found it (the control plane's URL, or the address it listened on).
    pub target: String,
    /// When the run started, in milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    pub duration_ms: u64,
    pub cases: Vec<CaseReport>,
}

/// The counts of a report's verdicts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub passed: usize,
    pub failed: usize,
    pub not_applicable: usize,
}

impl Report {
    pub fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        for case in &self.cases {
            match case.verdict {
                Verdict::Passed => counts.passed += 1,
                Verdict::Failed { .. } => counts.failed += 1,
                Verdict::NotApplicable { .. } => counts.not_applicable += 1,
            }
        }
        counts
    }

    /// The verdict of case `id`, if the run took it.
    pub fn verdict(&self, id: &str) -> Option<&Verdict> {
        self.cases
            .iter()
            .find(|c| c.info.id == id)
            .map(|c| &c.verdict)
    }

    /// The console summary: a line per case, the failures' messages, then the counts.
    pub fn console(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "droidfleet conformance: {} suite against {} ({})",
            self.suite.as_str(),
            self.implementation,
            self.target
        );
        for case in &self.cases {
            let (word, detail) = match &case.verdict {
                Verdict::Passed => ("PASS", None),
                Verdict::Failed { message } => ("FAIL", Some(message)),
                Verdict::NotApplicable { reason } => ("N/A ", Some(reason)),
            };
            let _ = writeln!(
                out,
                "  {word}  {:<34} {:>7}  {}",
                case.info.id,
                seconds(case.duration_ms),
                case.info.title
            );
            if let Some(detail) = detail {
                let _ = writeln!(out, "        {:<34} {detail}", "");
            }
        }
        let counts = self.counts();
        let _ = writeln!(
            out,
            "conformance: {} passed, {} failed, {} not applicable in {}",
            counts.passed,
            counts.failed,
            counts.not_applicable,
            seconds(self.duration_ms)
        );
        out
    }

    /// Writes `junit.xml`, `report.json` and `report.html` into `dir` (created if needed) and
    /// returns their paths.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, ConformanceError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source: std::io::Error| ConformanceError::Report { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let json = serde_json::to_string_pretty(self).map_err(|e| ConformanceError::Report {
            path: dir.join("report.json"),
            source: std::io::Error::other(e),
        })?;
        let files = [
            ("junit.xml", junit::render(self)),
            ("report.json", json),
            ("report.html", html::render(self)),
        ];
        let mut written = Vec::new();
        for (name, content) in files {
            let path = dir.join(name);
            std::fs::write(&path, content).map_err(io(&path))?;
            written.push(path);
        }
        Ok(written)
    }
}

/// `1.234s`.
pub(crate) fn seconds(ms: u64) -> String {
    format!("{}.{:03}s", ms / 1000, ms % 1000)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::conformance::catalogue::Need;

    /// A report with one case of each verdict, whose transcript holds markup.
    pub(crate) fn sample() -> Report {
        let info = |id: &'static str| CaseInfo {
            id,
            title: "A title with <markup> & \"quotes\"",
            requirements: &["DEV-CMD-2"],
            tags: &["commands"],
            needs: &[Need::Harness],
            quick: true,
        };
        Report {
            suite: Suite::Device,
            implementation: "sample <device>".into(),
            target: "127.0.0.1:7400".into(),
            started_at_ms: 1_700_000_000_000,
            duration_ms: 1234,
            cases: vec![
                CaseReport {
                    info: info("dev.a"),
                    verdict: Verdict::Passed,
                    duration_ms: 12,
                    transcript: vec![],
                },
                CaseReport {
                    info: info("dev.b"),
                    verdict: Verdict::Failed {
                        message: "acknowledged a forged command <x>".into(),
                    },
                    duration_ms: 345,
                    transcript: vec![Line {
                        at_ms: 3,
                        who: "device → kit".into(),
                        text: "CommandAck command_id=\"<id>\"".into(),
                    }],
                },
                CaseReport {
                    info: info("dev.c"),
                    verdict: Verdict::NotApplicable {
                        reason: "no harness declared".into(),
                    },
                    duration_ms: 0,
                    transcript: vec![],
                },
            ],
        }
    }

    #[test]
    fn the_console_lists_each_case_and_counts_them() {
        let text = sample().console();
        assert!(text.contains("PASS  dev.a"), "{text}");
        assert!(text.contains("FAIL  dev.b"), "{text}");
        assert!(text.contains("acknowledged a forged command"), "{text}");
        assert!(text.contains("N/A   dev.c"), "{text}");
        assert!(
            text.contains("conformance: 1 passed, 1 failed, 1 not applicable in 1.234s"),
            "{text}"
        );
    }

    #[test]
    fn the_files_are_written_and_the_json_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let written = sample().write(dir.path()).unwrap();
        assert_eq!(written.len(), 3);
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap())
                .unwrap();
        assert_eq!(json["suite"], "device");
        assert_eq!(json["cases"][1]["verdict"], "failed");
        assert_eq!(
            json["cases"][1]["message"],
            "acknowledged a forged command <x>"
        );
        assert_eq!(json["cases"][1]["id"], "dev.b");
        assert_eq!(json["cases"][1]["requirements"][0], "DEV-CMD-2");
        assert_eq!(json["cases"][2]["verdict"], "not_applicable");
    }
}
