//! Writing a flow back as a flow file, one step a line in YAML's flow style: what
//! `droidfleet flow record` saves. What it writes reads back (`parse.rs`) as the same flow.

use super::model::{Entry, Flow, Step, StepKind, Text};
use super::parse::grpc_code_name;
use droidfleet_agent::device::{ApiLevel, Profile};
use std::fmt::Write as _;
use std::time::Duration;

/// The flow file for `flow`, headed by `comment` lines.
pub(crate) fn flow_file(flow: &Flow, comment: &[String]) -> String {
    let mut out = String::new();
    for line in comment {
        let _ = writeln!(out, "# {line}");
    }
    let _ = writeln!(out, "name: {}", scalar(&flow.name));
    if !flow.tags.is_empty() {
        let tags: Vec<String> = flow.tags.iter().map(|t| scalar(t)).collect();
        let _ = writeln!(out, "tags: [{}]", tags.join(", "));
    }
    if !flow.env.is_empty() {
        out.push_str("env:\n");
        for (name, value) in &flow.env {
            let _ = writeln!(out, "  {name}: {}", quoted(value));
        }
    }
    out.push_str("devices:\n");
    for device in &flow.devices {
        let _ = write!(
            out,
            "  - {{name: {}, type: {}",
            scalar(&device.name),
            device.ownership.as_str()
        );
        // Defaults stay implicit, so a recorded flow reads like a written one.
        if device.build.api_level != ApiLevel::DEFAULT {
            let _ = write!(out, ", android: {}", device.build.api_level);
        }
        if device.build.profile != Profile::default() {
            let _ = write!(out, ", profile: {}", device.build.profile);
        }
        out.push_str("}\n");
    }
    out.push_str("steps:\n");
    for step in &flow.steps {
        let _ = writeln!(out, "  - {}", step_line(step));
    }
    out
}

/// One step as `name: {field: value, ...}` (or `name: value` for a step with one field).
pub(crate) fn step_line(step: &Step) -> String {
    let mut fields: Vec<(&str, String)> = Vec::new();
    let mut field = |name: &'static str, value: String| fields.push((name, value));
    match &step.kind {
        StepKind::AssignPolicy {
            device,
            scope,
            policy,
        } => {
            field("device", scalar(device));
            field("scope", scope.as_str().into());
            if let Some(policy) = policy {
                let kind = match droidfleet_proto::v1::PasscodeType::try_from(policy.r#type) {
                    Ok(droidfleet_proto::v1::PasscodeType::NumericComplex) => "numeric_complex",
                    Ok(droidfleet_proto::v1::PasscodeType::Alphanumeric) => "alphanumeric",
                    Ok(droidfleet_proto::v1::PasscodeType::Complex) => "complex",
                    _ => "pin",
                };
                field("type", kind.into());
                field("min_length", policy.min_length.to_string());
                match droidfleet_proto::v1::PasscodeComplexity::try_from(policy.complexity) {
                    Ok(droidfleet_proto::v1::PasscodeComplexity::Low) => {
                        field("complexity", "low".into())
                    }
                    Ok(droidfleet_proto::v1::PasscodeComplexity::Medium) => {
                        field("complexity", "medium".into())
                    }
                    Ok(droidfleet_proto::v1::PasscodeComplexity::High) => {
                        field("complexity", "high".into())
                    }
                    _ => {}
                }
                if policy.max_failed_attempts_before_wipe > 0 {
                    field(
                        "wipe_after",
                        policy.max_failed_attempts_before_wipe.to_string(),
                    );
                }
            }
        }
        StepKind::ResetPasscode {
            device,
            scope,
            passcode,
            ttl_seconds,
            save_as,
        } => {
            field("device", scalar(device));
            if let Some(scope) = scope {
                field("scope", scope.as_str().into());
            }
            if let Some(passcode) = passcode {
                field("passcode", text(passcode));
            }
            if let Some(ttl) = ttl_seconds {
                field("ttl", duration(Duration::from_secs(*ttl)));
            }
            if save_as != "reset" {
                field("save_as", scalar(save_as));
            }
        }
        StepKind::RemoteLock {
            device,
            scope,
            ttl_seconds,
            save_as,
        } => {
            field("device", scalar(device));
            if let Some(scope) = scope {
                field("scope", scope.as_str().into());
            }
            if let Some(ttl) = ttl_seconds {
                field("ttl", duration(Duration::from_secs(*ttl)));
            }
            if save_as != "lock" {
                field("save_as", scalar(save_as));
            }
        }
        StepKind::RevealPasscode { action } | StepKind::Cancel { action } => {
            field("action", scalar(action));
        }
        StepKind::WaitAction { action, state } => {
            field("action", scalar(action));
            field("state", state.clone());
        }
        StepKind::ActionEnded {
            action,
            state,
            error_code,
            user_entered,
        } => {
            field("action", scalar(action));
            field("state", state.clone());
            if let Some(code) = error_code {
                field("error_code", code.clone());
            }
            if let Some(entered) = user_entered {
                field("user_entered", entered.to_string());
            }
        }
        StepKind::SetPasscode {
            device,
            scope,
            current,
            passcode,
        } => {
            field("device", scalar(device));
            field("scope", scope.as_str().into());
            if let Some(current) = current {
                field("current", text(current));
            }
            field("passcode", text(passcode));
        }
        StepKind::EnterPasscode {
            device,
            scope,
            passcode,
            expect,
            times,
        } => {
            field("device", scalar(device));
            field("scope", scope.as_str().into());
            field("passcode", text(passcode));
            match expect {
                Some(Entry::Unlocked) => field("expect", "unlocked".into()),
                Some(Entry::Refused) => field("expect", "refused".into()),
                None => {}
            }
            if *times > 1 {
                field("times", times.to_string());
            }
        }
        StepKind::Lock { device, scope }
        | StepKind::Locked { device, scope, .. }
        | StepKind::Throttled {
            device,
            scope,
            retry_in: None,
            ..
        } => {
            field("device", scalar(device));
            field("scope", scope.as_str().into());
        }
        StepKind::Throttled {
            device,
            scope,
            retry_in: Some(retry_in),
            ..
        } => {
            field("device", scalar(device));
            field("scope", scope.as_str().into());
            field("retry_in", duration(*retry_in));
        }
        StepKind::Reboot { device } | StepKind::SetOnline { device, .. } => {
            field("device", scalar(device));
        }
        StepKind::WriteData {
            device,
            scope,
            key,
            value,
        } => {
            field("device", scalar(device));
            field("scope", scope.as_str().into());
            field("key", quoted(key));
            field("value", text(value));
        }
        StepKind::ReadData {
            device,
            scope,
            key,
            save_as,
        } => {
            field("device", scalar(device));
            field("scope", scope.as_str().into());
            field("key", quoted(key));
            field("save_as", scalar(save_as));
        }
        StepKind::Wait(length) | StepKind::Advance(length) => {
            return format!("{}: {}", step.kind.name(), duration(*length));
        }
        StepKind::Notification { device, title, .. } => {
            field("device", scalar(device));
            if let Some(title) = title {
                field("title", text(title));
            }
        }
        StepKind::Token {
            device,
            scope,
            state,
        } => {
            field("device", scalar(device));
            field("scope", scope.as_str().into());
            field("state", state.name().into());
        }
        StepKind::UserData {
            device,
            scope,
            key,
            equals,
        } => {
            field("device", scalar(device));
            field("scope", scope.as_str().into());
            field("key", quoted(key));
            if let Some(equals) = equals {
                field("equals", text(equals));
            }
        }
        StepKind::Audit {
            operation,
            result,
            by_role,
            device,
        } => {
            field("operation", scalar(operation));
            if let Some(result) = result {
                field("result", scalar(result));
            }
            if let Some(role) = by_role {
                field("by", scalar(role));
            }
            if let Some(device) = device {
                field("device", scalar(device));
            }
        }
    }
    if let Some(timeout) = step.timeout {
        field("timeout", duration(timeout));
    }
    if let Some(role) = &step.role {
        field("as", scalar(role));
    }
    if let Some(code) = step.expect_error {
        field("expect_error", grpc_code_name(code).into());
    }
    let body: Vec<String> = fields
        .iter()
        .map(|(name, value)| format!("{name}: {value}"))
        .collect();
    format!("{}: {{{}}}", step.kind.name(), body.join(", "))
}

fn text(text: &Text) -> String {
    quoted(&text.source)
}

fn duration(length: Duration) -> String {
    humantime::format_duration(length)
        .to_string()
        .replace(' ', "")
}

/// Always double-quoted: passcodes, values and titles keep their digits and spaces exactly.
fn quoted(value: &str) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "\"\"".into())
}

/// Plain when YAML reads it back as the same text, else double-quoted.
fn scalar(value: &str) -> String {
    let plain = value
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '_' | '-' | '.'))
        && !value.ends_with(' ')
        && !matches!(
            value.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n" | "nan" | "inf"
        );
    if plain {
        value.to_string()
    } else {
        quoted(value)
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse::{Context, parse_flow};
    use super::super::run::label;
    use super::*;
    use std::path::Path;

    #[test]
    fn a_written_flow_reads_back_as_the_same_flow() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../flows");
        let context = Context {
            embedded: true,
            ..Default::default()
        };
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(files.len() >= 13);
        for file in files {
            let original =
                parse_flow(&file, &std::fs::read_to_string(&file).unwrap(), &context).unwrap();
            let written = flow_file(&original, &["written back".to_string()]);
            let again = parse_flow(Path::new("again.yaml"), &written, &context)
                .unwrap_or_else(|e| panic!("{}: {e:?}\n{written}", file.display()));
            assert_eq!(again.name, original.name);
            assert_eq!(again.tags, original.tags);
            assert_eq!(again.env, original.env);
            let labels = |flow: &Flow| flow.steps.iter().map(label).collect::<Vec<_>>();
            assert_eq!(labels(&again), labels(&original), "{}", file.display());
            for (a, b) in again.steps.iter().zip(&original.steps) {
                assert_eq!(step_line(a), step_line(b));
            }
        }
    }

    #[test]
    fn scalars_stay_plain_only_when_yaml_reads_them_back_the_same() {
        assert_eq!(scalar("Help Desk Operator"), "Help Desk Operator");
        assert_eq!(scalar("yes"), "\"yes\"");
        assert_eq!(scalar("1234"), "\"1234\"");
        assert_eq!(scalar("a: b"), "\"a: b\"");
        assert_eq!(quoted("say \"hi\""), r#""say \"hi\"""#);
        assert_eq!(duration(Duration::from_secs(6 * 86_400)), "6days");
        assert_eq!(duration(Duration::from_millis(1_500)), "1s500ms");
    }
}
