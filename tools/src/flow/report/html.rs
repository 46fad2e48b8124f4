//! The HTML report: one self-contained page (inline CSS and SVG, no script, nothing fetched) that
//! shows each flow step by step, each step with the phone screens of its devices right after it
//! and the admin's view of the action at that moment, so a person sees the journey the way the
//! user and the admin saw it.

use super::super::check::scope_from_pb;
use super::console::millis;
use super::junit::escape;
use super::{FlowReport, StepReport, StepStatus, phone};
use crate::admin::format::{error_name, kind_name, state_name, time};
use droidfleet_proto::v1 as pb;
use std::fmt::Write as _;

const STYLE: &str = r#"
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 0; background: #f4f6fa; color: #16202f; }
header { background: #16202f; color: #fff; padding: 16px 28px; }
header h1 { margin: 0 0 4px; font-size: 22px; }
header p { margin: 0; color: #b8c4dd; }
main { padding: 8px 28px 40px; }
nav ul { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: 8px; }
nav a { display: inline-block; padding: 3px 10px; border-radius: 12px; text-decoration: none; color: #fff; font-size: 13px; }
a.passed { background: #1e8e3e; } a.failed { background: #b3261e; }
section.flow { background: #fff; border-radius: 10px; margin: 16px 0; padding: 4px 18px 18px; box-shadow: 0 1px 3px rgba(0,0,0,.12); }
section.flow h2 { font-size: 18px; margin: 12px 0 2px; }
section.flow h2 small { font-weight: normal; color: #4a5870; font-size: 13px; }
.badge { display: inline-block; border-radius: 4px; padding: 0 6px; font-size: 12px; font-weight: 700; color: #fff; vertical-align: middle; }
.badge.passed { background: #1e8e3e; } .badge.failed { background: #b3261e; } .badge.skipped { background: #8a94a6; }
.tags { color: #4a5870; margin: 0 0 8px; }
.setup-error { color: #b3261e; font-weight: 600; }
.steps { display: grid; grid-template-columns: repeat(auto-fill, minmax(232px, 1fr)); gap: 12px; }
article.step { border: 1px solid #dfe5ee; border-radius: 10px; padding: 8px 10px; display: flex; flex-direction: column; gap: 6px; }
article.step.failed { border: 2px solid #b3261e; background: #fff8f7; }
article.step.skipped { color: #8a94a6; background: #f7f8fa; }
article.step.wide { grid-column: span 2; }
.step-head { display: flex; gap: 6px; align-items: baseline; flex-wrap: wrap; font-size: 12px; }
.step-head .num { font-weight: 700; }
.step-head .where, .step-head .time { color: #4a5870; }
.step code { font-size: 12px; background: #eef2f8; padding: 1px 5px; border-radius: 4px; overflow-wrap: anywhere; }
.detail { margin: 0; color: #2c3a50; font-size: 12.5px; overflow-wrap: anywhere; }
dl.failure { margin: 0; padding: 6px 8px; background: #fdecea; border-left: 4px solid #b3261e; font-size: 12.5px; }
dl.failure dt { font-weight: 700; } dl.failure dd { margin: 0 0 4px; }
.phones { display: flex; gap: 10px; justify-content: center; }
figure { margin: 0; text-align: center; }
figcaption { font-size: 11.5px; color: #4a5870; }
table.admin-view { border-collapse: collapse; font-size: 11.5px; width: 100%; background: #f5f7fb; border-radius: 6px; }
table.admin-view caption { text-align: left; font-weight: 700; font-size: 12px; padding: 2px 0; }
table.admin-view th { width: 1%; text-align: left; color: #4a5870; font-weight: 600; padding: 1px 8px 1px 4px; vertical-align: top; white-space: nowrap; }
table.admin-view td { padding: 1px 4px 1px 0; overflow-wrap: anywhere; }
.state { font-weight: 700; }
.state.done { color: #1e8e3e; } .state.failed, .state.expired, .state.not_supported, .state.canceled { color: #b3261e; } .state.pending, .state.active { color: #d08a00; }
"#;

pub(crate) fn render(reports: &[FlowReport], generated_at_ms: u64) -> String {
    let passed = reports.iter().filter(|r| r.passed()).count();
    let failed = reports.len() - passed;
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>droidfleet flows: {passed} passed, {failed} failed</title><style>{STYLE}</style></head><body>"
    );
    let _ = write!(
        html,
        "<header><h1>droidfleet flow report</h1><p class=\"summary\">{passed} passed, {failed} failed · {} flows · generated {}</p></header><main>",
        reports.len(),
        escape(&time(generated_at_ms))
    );
    html.push_str("<nav><ul>");
    for (i, report) in reports.iter().enumerate() {
        let class = if report.passed() { "passed" } else { "failed" };
        let _ = write!(
            html,
            "<li><a class=\"{class}\" href=\"#flow-{}\">{}</a></li>",
            i + 1,
            escape(&report.name)
        );
    }
    html.push_str("</ul></nav>");
    for (i, report) in reports.iter().enumerate() {
        flow_section(&mut html, i + 1, report);
    }
    html.push_str("</main></body></html>\n");
    html
}

fn flow_section(html: &mut String, number: usize, report: &FlowReport) {
    let class = if report.passed() { "passed" } else { "failed" };
    let _ = write!(
        html,
        "<section class=\"flow {class}\" id=\"flow-{number}\"><h2><span class=\"badge {class}\">{}</span> {} <small>{} · {}</small></h2>",
        if report.passed() { "PASSED" } else { "FAILED" },
        escape(&report.name),
        escape(&report.path.display().to_string()),
        millis(report.duration)
    );
    if !report.tags.is_empty() {
        let _ = write!(
            html,
            "<p class=\"tags\">tags: {}</p>",
            escape(&report.tags.join(", "))
        );
    }
    if let Some(error) = &report.setup_error {
        let _ = write!(
            html,
            "<p class=\"setup-error\">The flow could not start: {}</p>",
            escape(error)
        );
    }
    html.push_str("<div class=\"steps\">");
    for step in &report.steps {
        step_article(html, number, step);
    }
    html.push_str("</div></section>");
}

fn step_article(html: &mut String, flow_number: usize, step: &StepReport) {
    let class = match step.status {
        StepStatus::Passed => "passed",
        StepStatus::Failed => "failed",
        StepStatus::Skipped => "skipped",
    };
    let _ = write!(
        html,
        "<article class=\"step {class}{wide}\" id=\"flow-{flow_number}-step-{}\"><div class=\"step-head\"><span class=\"badge {class}\">{}</span><span class=\"num\">step {}</span><span class=\"where\">line {}:{}</span>",
        step.number,
        match step.status {
            StepStatus::Passed => "ok",
            StepStatus::Failed => "FAIL",
            StepStatus::Skipped => "skipped",
        },
        step.number,
        step.pos.line,
        step.pos.col,
        wide = if step.screens.len() > 1 { " wide" } else { "" }
    );
    if step.status != StepStatus::Skipped {
        let _ = write!(
            html,
            "<span class=\"time\">{}</span>",
            millis(step.duration)
        );
    }
    html.push_str("</div>");
    let label = format!("<code>{}</code>", escape(&step.label));
    if step.status == StepStatus::Skipped {
        let _ = write!(html, "{label}</article>");
        return;
    }
    html.push_str("<div class=\"phones\">");
    for screen in &step.screens {
        let _ = write!(
            html,
            "<figure>{}<figcaption>{} ({})</figcaption></figure>",
            phone::render(screen, step.now_ms),
            escape(&screen.name),
            crate::admin::format::ownership_name(screen.ownership),
        );
    }
    html.push_str("</div>");
    html.push_str(&label);
    if let Some(failure) = &step.failure {
        let _ = write!(
            html,
            "<dl class=\"failure\"><dt>expected</dt><dd>{}</dd><dt>observed</dt><dd>{}</dd></dl>",
            escape(&failure.expected),
            escape(&failure.observed)
        );
    } else if !step.detail.is_empty() {
        let _ = write!(html, "<p class=\"detail\">{}</p>", escape(&step.detail));
    }
    if let Some(action) = &step.action {
        admin_view(html, action);
    }
    html.push_str("</article>");
}

fn admin_view(html: &mut String, action: &pb::Action) {
    let state = state_name(action.state);
    let _ = write!(
        html,
        "<table class=\"admin-view\" title=\"{id}\"><caption>Admin console: {}</caption>",
        escape(&short_id(&action.action_id)),
        id = escape(&action.action_id)
    );
    let mut row = |name: &str, value: String| {
        let _ = write!(html, "<tr><th>{name}</th><td>{value}</td></tr>");
    };
    row(
        "what",
        format!(
            "{} of the {}",
            escape(kind_name(action.kind)),
            escape(
                scope_from_pb(action.scope)
                    .map(|s| s.as_str())
                    .unwrap_or("-")
            )
        ),
    );
    row(
        "state",
        format!("<span class=\"state {state}\">{state}</span>"),
    );
    if action.error_code != 0 {
        row("error code", escape(&error_name(action.error_code)));
    }
    if !action.reason.is_empty() {
        row("reason", escape(&action.reason));
    }
    row("requested by", escape(&action.requested_by));
    for (name, ms) in [
        ("requested", action.created_at_ms),
        ("delivered", action.delivered_at_ms),
        ("completed", action.completed_at_ms),
        ("user entered", action.user_entered_at_ms),
        ("shown until", action.passcode_visible_until_ms),
    ] {
        row(name, escape(&time(ms).replace('T', " ").replace('Z', "")));
    }
    html.push_str("</table>");
}

/// The end of an action id, enough to tell a flow's actions apart in a narrow card.
fn short_id(id: &str) -> String {
    let tail: Vec<char> = id.chars().rev().take(8).collect();
    format!("action …{}", tail.into_iter().rev().collect::<String>())
}
