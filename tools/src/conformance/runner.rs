//! Running a suite's selected cases one after another: each with a time bound, its transcript
//! restarted, its verdict and duration recorded, and "not applicable" where the capability
//! statement lacks what it needs.

use super::catalogue::{CaseInfo, Need};
use super::report::{CaseReport, Verdict};
use super::transcript::{SHOWN_ON_FAILURE, Transcript};
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

/// Why a case did not pass.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The implementation broke a requirement; the message says how.
    Fail(String),
    /// The case cannot run against this implementation (a capability it does not declare, a
    /// state it cannot be brought to).
    NotApplicable(String),
}

pub(crate) type CaseResult = Result<(), Outcome>;
pub(crate) type CaseFuture<'a> = Pin<Box<dyn Future<Output = CaseResult> + Send + 'a>>;

/// A case: its catalogue entry and the code that runs it against the suite's context `C`.
pub(crate) struct Case<C> {
    pub(crate) info: CaseInfo,
    pub(crate) run: for<'a> fn(&'a mut C) -> CaseFuture<'a>,
}

/// What the runner needs from a suite's context.
pub(crate) trait SuiteContext {
    fn transcript(&self) -> &Transcript;
    /// Why `need` is not met, if it is not.
    fn unmet(&self, need: Need) -> Option<String>;
}

/// Fails the case with a message unless `condition` holds.
macro_rules! ensure {
    ($condition:expr, $($message:tt)+) => {
        if !$condition {
            return Err($crate::conformance::runner::Outcome::Fail(format!($($message)+)));
        }
    };
}
pub(crate) use ensure;

/// A failure with `message`.
pub(crate) fn fail(message: impl Into<String>) -> Outcome {
    Outcome::Fail(message.into())
}

/// The longest any one case may take before it fails as timed out.
pub(crate) const CASE_TIMEOUT: Duration = Duration::from_secs(90);

/// Runs `selected` (in catalogue order) from `cases` against `context`; `each` sees every case's
/// report as it ends.
pub(crate) async fn run_cases<'c, C: SuiteContext + 'c>(
    context: &mut C,
    cases: impl IntoIterator<Item = &'c Case<C>>,
    selected: &[CaseInfo],
    mut each: impl FnMut(&CaseReport),
) -> Vec<CaseReport> {
    let mut reports = Vec::new();
    for case in cases
        .into_iter()
        .filter(|c| selected.iter().any(|s| s.id == c.info.id))
    {
        context.transcript().restart();
        let started = Instant::now();
        let unmet: Vec<String> = case
            .info
            .needs
            .iter()
            .filter_map(|need| context.unmet(*need))
            .collect();
        let verdict = if !unmet.is_empty() {
            Verdict::NotApplicable {
                reason: unmet.join("; "),
            }
        } else {
            match tokio::time::timeout(CASE_TIMEOUT, (case.run)(context)).await {
                Ok(Ok(())) => Verdict::Passed,
                Ok(Err(Outcome::Fail(message))) => Verdict::Failed { message },
                Ok(Err(Outcome::NotApplicable(reason))) => Verdict::NotApplicable { reason },
                Err(_) => Verdict::Failed {
                    message: format!("did not finish within {} s", CASE_TIMEOUT.as_secs()),
                },
            }
        };
        let transcript = if matches!(verdict, Verdict::Failed { .. }) {
            context.transcript().tail(SHOWN_ON_FAILURE)
        } else {
            Vec::new()
        };
        let report = CaseReport {
            info: case.info,
            verdict,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            transcript,
        };
        each(&report);
        reports.push(report);
    }
    reports
}

/// Waits for `future` at most `within`, failing the case with "timed out waiting for `what`".
pub(crate) async fn within<T>(
    within: Duration,
    what: impl std::fmt::Display,
    future: impl Future<Output = T>,
) -> Result<T, Outcome> {
    tokio::time::timeout(within, future).await.map_err(|_| {
        fail(format!(
            "timed out after {} s waiting for {what}",
            within.as_secs()
        ))
    })
}
