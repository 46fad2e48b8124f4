//! The JUnit XML report, in the shape CI systems read natively (Jenkins, GitLab, GitHub
//! actions' test reporters): one `<testsuite>` for the run, one `<testcase>` per case, a
//! `<failure>` carrying the transcript, and `<skipped>` for a case that does not apply.

use super::{Report, Verdict};
use std::fmt::Write as _;

pub(super) fn render(report: &Report) -> String {
    let counts = report.counts();
    let suite = format!("droidfleet-conformance.{}", report.suite.as_str());
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"{}\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" time=\"{}\">",
        escape(&suite),
        report.cases.len(),
        counts.failed,
        counts.not_applicable,
        secs(report.duration_ms)
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\" time=\"{}\">",
        escape(&suite),
        report.cases.len(),
        counts.failed,
        counts.not_applicable,
        secs(report.duration_ms)
    );
    let _ = writeln!(out, "    <properties>");
    let _ = writeln!(
        out,
        "      <property name=\"implementation\" value=\"{}\"/>",
        escape(&report.implementation)
    );
    let _ = writeln!(
        out,
        "      <property name=\"target\" value=\"{}\"/>",
        escape(&report.target)
    );
    let _ = writeln!(out, "    </properties>");
    for case in &report.cases {
        let _ = write!(
            out,
            "    <testcase classname=\"{}\" name=\"{}\" time=\"{}\">",
            escape(&suite),
            escape(case.info.id),
            secs(case.duration_ms)
        );
        let requirements = case.info.requirements.join(", ");
        match &case.verdict {
            Verdict::Passed => {}
            Verdict::Failed { message } => {
                let mut body = format!("{}\nrequirements: {requirements}\n", case.info.title);
                for line in &case.transcript {
                    let _ = writeln!(body, "{:>6} ms  {:<14} {}", line.at_ms, line.who, line.text);
                }
                let _ = write!(
                    out,
                    "\n      <failure message=\"{}\" type=\"{}\">{}</failure>\n    ",
                    escape(message),
                    escape(&requirements),
                    escape(&body)
                );
            }
            Verdict::NotApplicable { reason } => {
                let _ = write!(
                    out,
                    "\n      <skipped message=\"not applicable: {}\"/>\n    ",
                    escape(reason)
                );
            }
        }
        let _ = writeln!(out, "</testcase>");
    }
    let _ = writeln!(out, "  </testsuite>");
    let _ = writeln!(out, "</testsuites>");
    out
}

fn secs(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// XML text and attribute escaping; control characters other than tab and newline are not
/// allowed in XML 1.0 and are dropped.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::sample;
    use super::*;

    #[test]
    fn junit_counts_failures_and_skips_and_escapes_markup() {
        let xml = render(&sample());
        assert!(
            xml.contains("tests=\"3\" failures=\"1\" errors=\"0\" skipped=\"1\""),
            "{xml}"
        );
        assert!(xml.contains("name=\"dev.b\" time=\"0.345\""), "{xml}");
        assert!(
            xml.contains("<failure message=\"acknowledged a forged command &lt;x&gt;\""),
            "{xml}"
        );
        assert!(
            xml.contains("CommandAck command_id=&quot;&lt;id&gt;&quot;"),
            "{xml}"
        );
        assert!(xml.contains("<skipped message=\"not applicable: no harness declared\"/>"));
        assert!(
            !xml.contains("<markup>") && !xml.contains("<device>"),
            "{xml}"
        );
        assert_eq!(xml.matches("<testcase ").count(), 3);
        assert_eq!(xml.matches("</testcase>").count(), 3);
    }
}
