//! The self-contained HTML report: one page, inline CSS, no script and nothing fetched, listing
//! each case with its verdict, duration and requirements, and for a failed case the messages
//! exchanged just before it.

use super::junit::escape;
use super::{Report, Verdict, seconds};
use std::fmt::Write as _;

pub(super) fn render(report: &Report) -> String {
    let counts = report.counts();
    let mut out = String::new();
    let title = format!(
        "droidfleet conformance: {} suite, {}",
        report.suite.as_str(),
        report.implementation
    );
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{}</title><style>{STYLE}</style></head><body>\n",
        escape(&title)
    );
    let _ = writeln!(out, "<h1>{}</h1>", escape(&title));
    let _ = writeln!(
        out,
        "<p class=\"summary\">Target <code>{}</code>. \
         <span class=\"passed\">{} passed</span>, <span class=\"failed\">{} failed</span>, \
         <span class=\"na\">{} not applicable</span> in {}.</p>",
        escape(&report.target),
        counts.passed,
        counts.failed,
        counts.not_applicable,
        seconds(report.duration_ms)
    );
    let _ = writeln!(
        out,
        "<table><thead><tr><th>verdict</th><th>case</th><th>title</th><th>requirements</th>\
         <th>duration</th></tr></thead><tbody>"
    );
    for case in &report.cases {
        let (class, word) = match &case.verdict {
            Verdict::Passed => ("passed", "passed"),
            Verdict::Failed { .. } => ("failed", "failed"),
            Verdict::NotApplicable { .. } => ("na", "not applicable"),
        };
        let _ = writeln!(
            out,
            "<tr class=\"{class}\" id=\"{id}\"><td class=\"verdict\">{word}</td>\
             <td><code>{id}</code></td><td>{title}</td><td>{reqs}</td><td>{dur}</td></tr>",
            id = escape(case.info.id),
            title = escape(case.info.title),
            reqs = escape(&case.info.requirements.join(", ")),
            dur = seconds(case.duration_ms),
        );
        let detail = match &case.verdict {
            Verdict::Passed => None,
            Verdict::Failed { message } => Some(message),
            Verdict::NotApplicable { reason } => Some(reason),
        };
        if let Some(detail) = detail {
            let _ = write!(
                out,
                "<tr class=\"{class} detail\"><td></td><td colspan=\"4\"><p>{}</p>",
                escape(detail)
            );
            if !case.transcript.is_empty() {
                let _ = writeln!(
                    out,
                    "<details open><summary>The last {} messages before the failure \
                     (secrets redacted)</summary><pre>",
                    case.transcript.len()
                );
                for line in &case.transcript {
                    let _ = writeln!(
                        out,
                        "{:>6} ms  {:<14} {}",
                        line.at_ms,
                        escape(&line.who),
                        escape(&line.text)
                    );
                }
                let _ = write!(out, "</pre></details>");
            }
            let _ = writeln!(out, "</td></tr>");
        }
    }
    let _ = writeln!(out, "</tbody></table>\n</body></html>");
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3em .6em;\
border-bottom:1px solid #ddd;vertical-align:top}code,pre{font-family:ui-monospace,monospace}\
pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:.85em}\
tr.passed td.verdict,.passed{color:#137333}tr.failed td.verdict,.failed{color:#b3261e;\
font-weight:bold}tr.na td.verdict,.na{color:#666}tr.detail td{border-bottom:1px solid #ddd}";

#[cfg(test)]
mod tests {
    use super::super::tests::sample;
    use super::*;

    #[test]
    fn the_page_is_self_contained_and_shows_the_failure_exchange_escaped() {
        let page = render(&sample());
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(!page.contains("<script") && !page.contains("src=") && !page.contains("href="));
        assert!(page.contains("1 passed</span>"), "{page}");
        assert!(
            page.contains("acknowledged a forged command &lt;x&gt;"),
            "{page}"
        );
        assert!(
            page.contains("CommandAck command_id=&quot;&lt;id&gt;&quot;"),
            "{page}"
        );
        assert!(page.contains("no harness declared"), "{page}");
        assert!(!page.contains("<markup>"), "{page}");
    }
}
