//! JUnit XML, as CI systems read it: one `<testsuite>` per flow file, one `<testcase>` per
//! step, a failed step's `<failure>` naming the expected and the observed value, and steps an
//! earlier failure kept from running as `<skipped>`.

use super::{FlowReport, StepStatus};
use std::fmt::Write as _;

pub(crate) fn render(reports: &[FlowReport]) -> String {
    let tests: usize = reports.iter().map(|r| r.steps.len().max(1)).sum();
    let failures: usize = reports.iter().filter(|r| !r.passed()).count();
    let time: f64 = reports.iter().map(|r| r.duration.as_secs_f64()).sum();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuites name=\"droidfleet flows\" tests=\"{tests}\" failures=\"{failures}\" time=\"{time:.3}\">"
    );
    for report in reports {
        let failed = report
            .steps
            .iter()
            .filter(|s| s.status == StepStatus::Failed)
            .count()
            + usize::from(report.setup_error.is_some());
        let skipped = report
            .steps
            .iter()
            .filter(|s| s.status == StepStatus::Skipped)
            .count();
        let _ = writeln!(
            xml,
            "  <testsuite name=\"{}\" file=\"{}\" tests=\"{}\" failures=\"{failed}\" skipped=\"{skipped}\" time=\"{:.3}\">",
            escape(&report.name),
            escape(&report.path.display().to_string()),
            report.steps.len(),
            report.duration.as_secs_f64()
        );
        if !report.tags.is_empty() {
            let _ = writeln!(
                xml,
                "    <properties><property name=\"tags\" value=\"{}\"/></properties>",
                escape(&report.tags.join(","))
            );
        }
        if let Some(error) = &report.setup_error {
            let _ = writeln!(
                xml,
                "    <testcase name=\"setup\" classname=\"{}\"><error message=\"{}\"/></testcase>",
                escape(&report.name),
                escape(error)
            );
        }
        for step in &report.steps {
            let _ = write!(
                xml,
                "    <testcase name=\"{:03} {}\" classname=\"{}\" file=\"{}\" line=\"{}\" time=\"{:.3}\"",
                step.number,
                escape(&step.label),
                escape(&report.name),
                escape(&report.path.display().to_string()),
                step.pos.line,
                step.duration.as_secs_f64()
            );
            match (&step.status, &step.failure) {
                (StepStatus::Failed, Some(failure)) => {
                    let message = format!(
                        "step {} at {}:{}:{}: expected {}; observed {}",
                        step.number,
                        report.path.display(),
                        step.pos.line,
                        step.pos.col,
                        failure.expected,
                        failure.observed
                    );
                    let _ = writeln!(
                        xml,
                        ">\n      <failure message=\"{}\">expected: {}\nobserved: {}</failure>\n    </testcase>",
                        escape(&message),
                        escape(&failure.expected),
                        escape(&failure.observed)
                    );
                }
                (StepStatus::Skipped, _) => {
                    let _ = writeln!(xml, "><skipped/></testcase>");
                }
                _ => {
                    let _ = writeln!(
                        xml,
                        "><system-out>{}</system-out></testcase>",
                        escape(&step.detail)
                    );
                }
            }
        }
        let _ = writeln!(xml, "  </testsuite>");
    }
    xml.push_str("</testsuites>\n");
    xml
}

/// Text for an XML attribute or element.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 allows no other control characters.
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r') => out.push(' '),
            c => out.push(c),
        }
    }
    out
}
