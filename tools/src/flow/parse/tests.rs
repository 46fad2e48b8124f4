//! Unit tests of reading and checking flow files: a good flow reads whole, and each kind of
//! problem is reported at its own line and column.

use super::*;
use crate::flow::model::StepKind;
use droidfleet_proto::v1 as pb;
use std::time::Duration;

fn embedded() -> Context {
    Context {
        embedded: true,
        env: BTreeMap::new(),
    }
}

fn problems(text: &str, context: &Context) -> Vec<(usize, usize, String)> {
    parse_flow(Path::new("f.yaml"), text, context)
        .expect_err("the flow has problems")
        .into_iter()
        .map(|e| (e.pos.line, e.pos.col, e.message))
        .collect()
}

/// The one problem in `text`, at its line and column.
fn problem(text: &str) -> (usize, usize, String) {
    let mut found = problems(text, &embedded());
    assert_eq!(found.len(), 1, "{found:?}");
    found.remove(0)
}

const GOOD: &str = r#"name: good
tags: [a, b]
env:
  PIN: "2580"
devices:
  - {name: alice, type: byod}
steps:
  - set_passcode: {device: alice, scope: device, passcode: "${PIN}"}
  - assign_policy: {device: alice, scope: work_profile, type: alphanumeric, min_length: 8}
  - reset_passcode: alice
  - reveal_passcode: reset
  - enter_passcode: {device: alice, scope: work_profile, passcode: "x${revealed.alice.work_profile}y", times: 2}
  - advance: 6d
  - assert_throttled: {device: alice, scope: work_profile, retry_in: 30s, timeout: 2s}
"#;

#[test]
fn a_good_flow_reads_whole() {
    let flow = parse_flow(Path::new("dir/good.yaml"), GOOD, &embedded()).unwrap();
    assert_eq!(flow.name, "good");
    assert_eq!(flow.tags, ["a", "b"]);
    assert_eq!(flow.env["PIN"], "2580");
    assert_eq!(flow.devices[0].name, "alice");
    assert_eq!(flow.devices[0].ownership, Ownership::Byod);
    assert_eq!(flow.steps.len(), 7);
    assert_eq!(flow.steps[0].pos, Pos { line: 8, col: 5 });
    let StepKind::ResetPasscode { save_as, .. } = &flow.steps[2].kind else {
        panic!("{:?}", flow.steps[2].kind)
    };
    assert_eq!(save_as, "reset");
    let StepKind::EnterPasscode {
        passcode, times, ..
    } = &flow.steps[4].kind
    else {
        panic!("{:?}", flow.steps[4].kind)
    };
    assert_eq!(*times, 2);
    let values: BTreeMap<String, String> =
        [("revealed.alice.work_profile".to_string(), "P".to_string())].into();
    assert_eq!(passcode.resolve(&values).unwrap(), "xPy");
    assert_eq!(
        flow.steps[5].kind.name(),
        "advance",
        "advance is allowed in embedded runs"
    );
    assert_eq!(flow.steps[6].timeout, Some(Duration::from_secs(2)));
}

#[test]
fn the_name_defaults_to_the_file_name_and_env_overrides_apply() {
    let text = GOOD.replacen("name: good\n", "", 1);
    let context = Context {
        embedded: true,
        env: [("PIN".to_string(), "1111".to_string())].into(),
    };
    let flow = parse_flow(Path::new("dir/journey.yaml"), &text, &context).unwrap();
    assert_eq!(flow.name, "journey");
    assert_eq!(flow.env["PIN"], "1111");
}

#[test]
fn an_unknown_step_is_named_at_its_place_with_a_suggestion() {
    let text =
        "devices: [{name: a, type: cosu}]\nsteps:\n  - reboot: a\n  - tapOn: a\n  - rebot: a\n";
    let found = problems(text, &embedded());
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!((found[0].0, found[0].1), (4, 5));
    assert!(
        found[0].2.starts_with("unknown step `tapOn`"),
        "{}",
        found[0].2
    );
    assert_eq!((found[1].0, found[1].1), (5, 5));
    assert!(
        found[1].2.contains("did you mean `reboot`?"),
        "{}",
        found[1].2
    );
}

#[test]
fn a_wrong_type_is_named_at_the_value() {
    let (line, col, message) = problem(
        "devices: [{name: a, type: cosu}]\nsteps:\n  - set_passcode: {device: a, scope: device, passcode: 0123}\n",
    );
    assert_eq!((line, col), (3, 56));
    assert!(
        message.contains("`passcode` must be text, found the number 123"),
        "{message}"
    );
    assert!(message.contains("quote it (\"0123\")"), "{message}");

    let (line, col, message) = problem(
        "devices: [{name: a, type: cosu}]\nsteps:\n  - enter_passcode: {device: a, scope: device, passcode: \"1\", times: many}\n",
    );
    assert_eq!((line, col), (3, 70));
    assert!(
        message.contains("`times` must be a whole number"),
        "{message}"
    );

    let (line, col, message) =
        problem("devices: [{name: a, type: cosu}]\nsteps:\n  - advance: 6 days later\n");
    assert_eq!((line, col), (3, 14));
    assert!(message.contains("is not a duration"), "{message}");
}

#[test]
fn a_missing_device_is_named_with_the_devices_there_are() {
    let (line, col, message) =
        problem("devices:\n  - name: alice\n    type: byod\nsteps:\n  - reboot: bob\n");
    assert_eq!((line, col), (5, 13));
    assert_eq!(
        message,
        "no device \"bob\" in this flow's `devices` (it has alice)"
    );
}

#[test]
fn a_bad_variable_is_named_at_its_own_column() {
    let (line, col, message) = problem(
        "devices: [{name: a, type: byod}]\nsteps:\n  - enter_passcode: {device: a, scope: work_profile, passcode: \"ab${revealed.work_profile}\"}\n",
    );
    // The scalar opens at column 64: its quote, then "ab", then the variable.
    assert_eq!((line, col), (3, 67));
    assert!(
        message.starts_with("unknown variable ${revealed.work_profile}"),
        "{message}"
    );
    assert!(
        message.contains("a reveal_passcode step defines"),
        "{message}"
    );

    let (_, _, message) = problem(
        "devices: [{name: a, type: byod}]\nsteps:\n  - set_passcode: {device: a, scope: device, passcode: \"${PIN\"}\n",
    );
    assert!(message.contains("without its closing"), "{message}");
}

#[test]
fn a_variable_is_defined_only_from_the_step_that_defines_it_on() {
    let text = "devices: [{name: a, type: byod}]\nsteps:\n  - reset_passcode: a\n  - enter_passcode: {device: a, scope: work_profile, passcode: \"${revealed.work_profile}\"}\n  - reveal_passcode: reset\n";
    let (line, _, message) = problem(text);
    assert_eq!(line, 4);
    assert!(
        message.contains("${reset.action_id}"),
        "lists what is defined: {message}"
    );

    // A reveal expected to be refused defines nothing.
    let text = "devices: [{name: a, type: byod}]\nsteps:\n  - reset_passcode: a\n  - reveal_passcode: {action: reset, expect_error: permission_denied}\n  - enter_passcode: {device: a, scope: work_profile, passcode: \"${revealed.work_profile}\"}\n";
    assert_eq!(problem(text).0, 5);
}

#[test]
fn an_unknown_action_is_named() {
    let (line, col, message) = problem(
        "devices: [{name: a, type: byod}]\nsteps:\n  - reset_passcode: {device: a, save_as: first}\n  - cancel: second\n",
    );
    assert_eq!((line, col), (4, 13));
    assert!(message.contains("saved so far: first"), "{message}");
}

#[test]
fn advance_is_refused_against_a_running_control_plane_at_its_place() {
    let text = "devices: [{name: a, type: byod}]\nsteps:\n  - reboot: a\n  - advance: 6d\n";
    let found = problems(text, &Context::default());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].0, found[0].1), (4, 5));
    assert!(found[0].2.contains("--control-plane"), "{}", found[0].2);
}

#[test]
fn unknown_fields_stores_and_values_are_named() {
    let (line, col, message) = problem(
        "devices: [{name: k, type: cosu}]\nsteps:\n  - assert_locked: {device: k, scope: work_profile}\n",
    );
    assert_eq!((line, col), (3, 39));
    assert_eq!(message, "device \"k\" is COSU and has no work profile");

    let (line, col, message) =
        problem("devices: [{name: k, type: cosu}]\nsteps:\n  - reboot: {device: k, timeout: 5s}\n");
    assert_eq!((line, col), (3, 25));
    assert!(
        message.starts_with("`reboot` has no field `timeout`"),
        "{message}"
    );

    let found = problems(
        "devices: [{name: k, type: cosu}]\nsteps:\n  - assert_action: {action: x, state: finished}\n",
        &embedded(),
    );
    assert_eq!((found[0].0, found[0].1), (3, 29));
    assert!(
        found[0].2.contains("no earlier reset_passcode"),
        "{}",
        found[0].2
    );
    assert_eq!((found[1].0, found[1].1), (3, 39));
    assert!(
        found[1].2.contains("\"finished\" is not one of `pending`"),
        "{}",
        found[1].2
    );

    let (line, col, message) =
        problem("devices: [{name: k, type: tablet}]\nsteps:\n  - reboot: k\n");
    assert_eq!((line, col), (1, 27));
    assert!(
        message.starts_with("unknown device type \"tablet\""),
        "{message}"
    );

    let (line, _, message) = problem(
        "devices: [{name: k, type: cosu}]\nsteps:\n  - reset_passcode: {device: k, expect_error: forbidden}\n",
    );
    assert_eq!(line, 3);
    assert!(message.contains("`permission_denied`"), "{message}");
}

#[test]
fn a_required_field_left_out_is_named_at_its_step() {
    let (line, col, message) = problem(
        "devices: [{name: k, type: cosu}]\nsteps:\n  - enter_passcode:\n      device: k\n      scope: device\n",
    );
    assert_eq!((line, col), (4, 7));
    assert!(
        message.starts_with("`enter_passcode` needs `passcode`"),
        "{message}"
    );
}

#[test]
fn yaml_errors_and_shapes_are_placed() {
    let (line, col, message) = problem("devices: [{name: a, type: cosu}\nsteps: []\n");
    assert_eq!(line, 2, "{col} {message}");
    assert!(message.starts_with("not valid YAML"), "{message}");

    let (line, col, message) = problem("devices: []\nsteps: []\nsteps: []\n");
    assert_eq!((line, col), (3, 1));
    assert!(message.contains("duplicated key"), "{message}");

    let (_, _, message) = problem("- a\n- b\n");
    assert!(message.starts_with("a flow is a mapping"), "{message}");

    let (line, col, message) =
        problem("devices: [{name: a, type: cosu}]\nsteps:\n  - reboot: a\n    go_online: a\n");
    assert_eq!((line, col), (3, 5));
    assert!(message.contains("found 2 keys"), "{message}");

    let (_, _, message) = problem("");
    assert!(message.starts_with("the file is empty"), "{message}");
}

#[test]
fn every_problem_of_a_file_is_reported_in_order() {
    let text = "devices: [{name: a, type: byod}]\nsteps:\n  - rebooot: a\n  - reboot: b\n  - set_passcode: {device: a, scope: device, passcode: 1234}\n";
    let found = problems(text, &embedded());
    let lines: Vec<usize> = found.iter().map(|f| f.0).collect();
    assert_eq!(lines, [3, 4, 5], "{found:?}");
}

#[test]
fn the_error_codes_are_the_protos() {
    let from_proto: Vec<String> = (1..100)
        .filter_map(|value| pb::ErrorCode::try_from(value).ok())
        .map(|code| {
            code.as_str_name()
                .trim_start_matches("ERROR_CODE_")
                .to_lowercase()
        })
        .collect();
    assert_eq!(from_proto, ERROR_CODE_NAMES);
}

#[test]
fn an_error_names_file_line_and_column() {
    let error = FlowFileError {
        path: PathBuf::from("flows/x.yaml"),
        pos: Pos { line: 3, col: 7 },
        message: "unknown step `tapOn`".into(),
    };
    assert_eq!(error.to_string(), "flows/x.yaml:3:7: unknown step `tapOn`");
}

#[test]
fn repeats_and_real_waits_are_bounded() {
    let (line, col, message) = problem(
        "devices: [{name: a, type: cosu}]\nsteps:\n  - enter_passcode: {device: a, scope: device, passcode: \"1\", times: 1001}\n",
    );
    assert_eq!((line, col), (3, 70));
    assert_eq!(message, "`times` must be from 1 to 1000");
    let (line, col, message) = problem("devices: [{name: a, type: cosu}]\nsteps:\n  - wait: 1h\n");
    assert_eq!((line, col), (3, 11));
    assert!(message.contains("`advance` moves the clocks"), "{message}");
}

#[test]
fn a_device_names_its_android_version_and_maker_profile() {
    let flow = parse_flow(
        Path::new("versions.yaml"),
        "devices:\n  - {name: old, type: byod, android: 29, profile: short-keyguard}\n  - {name: new, type: cosu}\nsteps:\n  - reboot: old\n",
        &embedded(),
    )
    .unwrap();
    assert_eq!(flow.devices[0].build.api_level, ApiLevel::new(29).unwrap());
    assert_eq!(flow.devices[0].build.profile.name(), "short-keyguard");
    assert_eq!(flow.devices[1].build, Build::default());

    let (line, col, message) =
        problem("devices: [{name: a, type: cosu, android: 25}]\nsteps:\n  - reboot: a\n");
    assert_eq!((line, col), (1, 42));
    assert!(message.contains("25"), "{message}");
    let (line, col, message) =
        problem("devices: [{name: a, type: cosu, profile: acme}]\nsteps:\n  - reboot: a\n");
    assert_eq!((line, col), (1, 42));
    assert!(
        message.contains("unknown maker profile \"acme\"") && message.contains("short-keyguard"),
        "{message}"
    );
}
