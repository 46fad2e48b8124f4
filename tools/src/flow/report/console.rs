//! The console report: a line per step as it ends, with its timing and where it is written, the
//! expected and observed values under a failed step, and a summary line per flow and per run.

use super::super::model::Flow;
use super::{FlowReport, StepReport, StepStatus};
use std::time::Duration;

/// Prints to stdout as the run goes; `quiet` keeps only the failures and the summaries.
pub(crate) struct Console {
    pub(crate) quiet: bool,
}

impl Console {
    pub(crate) fn flow_start(&self, flow: &Flow) {
        if !self.quiet {
            let tags = if flow.tags.is_empty() {
                String::new()
            } else {
                format!("  [{}]", flow.tags.join(", "))
            };
            println!("{} ({}){tags}", flow.name, flow.path.display());
        }
    }

    pub(crate) fn step(&self, flow: &Flow, step: &StepReport) {
        if self.quiet && step.status != StepStatus::Failed {
            return;
        }
        println!("{}", step_line(flow, step));
        if let Some(failure) = &step.failure {
            println!("        expected: {}", failure.expected);
            println!("        observed: {}", failure.observed);
        } else if !step.detail.is_empty() && !self.quiet {
            println!("        {}", step.detail);
        }
    }

    pub(crate) fn flow_end(&self, report: &FlowReport) {
        if let Some(error) = &report.setup_error {
            println!(
                "  ERROR {}: the flow could not start: {error}",
                report.path.display()
            );
        }
        let passed = report
            .steps
            .iter()
            .filter(|s| s.status == StepStatus::Passed)
            .count();
        println!(
            "  {} {}: {passed}/{} steps passed in {}\n",
            if report.passed() { "PASSED" } else { "FAILED" },
            report.name,
            report.steps.len(),
            seconds(report.duration)
        );
    }
}

pub(crate) fn step_line(flow: &Flow, step: &StepReport) -> String {
    let status = match step.status {
        StepStatus::Passed => "ok  ",
        StepStatus::Failed => "FAIL",
        StepStatus::Skipped => "skip",
    };
    format!(
        "  {status} {:>3} {}  ({}:{}:{})  {}",
        step.number,
        step.label,
        flow.path.display(),
        step.pos.line,
        step.pos.col,
        if step.status == StepStatus::Skipped {
            "-".to_string()
        } else {
            millis(step.duration)
        }
    )
}

/// The run's closing line: the count that CI reads.
pub(crate) fn summary(reports: &[FlowReport]) -> String {
    let passed = reports.iter().filter(|r| r.passed()).count();
    format!("flows: {passed} passed, {} failed", reports.len() - passed)
}

pub(crate) fn millis(duration: Duration) -> String {
    if duration < Duration::from_secs(1) {
        format!("{} ms", duration.as_millis())
    } else {
        seconds(duration)
    }
}

pub(crate) fn seconds(duration: Duration) -> String {
    format!("{:.1} s", duration.as_secs_f64())
}
