//! `droidfleet flow`: the shipped flows pass; every assertion kind fails when it must, and the
//! report names the step, the expected and the observed value; a bad flow file is refused with
//! its file, line and column before anything runs; flows run against a running control plane and
//! agent (and `advance` is refused there); the HTML report renders in a real browser; a session
//! played by hand is recorded as a flow that passes.

use crate::support::{Browser, Deployment};
use droidfleet_proto::v1 as pb;
use fantoccini::Locator;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn droidfleet_flow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_droidfleet"))
        .arg("flow")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("DROIDFLEET_TOKEN_FILE")
        .env_remove("RUST_LOG")
        .output()
        .expect("run droidfleet flow")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn shipped_flows() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("flows");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// Acceptance: every shipped flow passes from a clean checkout, `droidfleet flow run flows/`.
#[test]
fn the_shipped_flows_pass() {
    let reports = tempfile::tempdir().unwrap();
    let output = droidfleet_flow(&[
        "run",
        "flows/",
        "--report-dir",
        reports.path().to_str().unwrap(),
    ]);
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        text(&output.stderr)
    );
    let count = shipped_flows().len();
    assert!(count >= 13, "the seed's journeys are all shipped: {count}");
    assert!(
        stdout.contains(&format!("flows: {count} passed, 0 failed")),
        "{stdout}"
    );
    // Each step's line names its place in its file and its timing.
    assert!(
        stdout.contains("reset_passcode carol as Read Only Operator expecting permission_denied  (flows/read-only-operator-refused.yaml:12:5)"),
        "{stdout}"
    );
    let junit = std::fs::read_to_string(reports.path().join("junit.xml")).unwrap();
    assert!(junit.contains("<testsuite name=\"Throttled after five wrong entries\""));
    assert!(!junit.contains("<failure"), "{junit}");
    assert_eq!(junit.matches("<testsuite ").count(), count);
    let html = std::fs::read_to_string(reports.path().join("report.html")).unwrap();
    // Self-contained: nothing to fetch, nothing to run.
    for fetch in ["src=", "<link", "<script", "url(", "@import"] {
        assert!(!html.contains(fetch), "the report holds {fetch:?}");
    }
}

/// `--tag` runs only flows with one of the tags, `--exclude-tag` leaves flows out, and `--env`
/// replaces a flow's `env` value (here the work password, so the flow's last entry is refused).
#[test]
fn tags_select_flows_and_env_values_are_replaced() {
    let reports = tempfile::tempdir().unwrap();
    let report_dir = reports.path().to_str().unwrap();
    let output = droidfleet_flow(&[
        "run",
        "flows/",
        "--tag",
        "cosu",
        "--tag",
        "aosp",
        "--exclude-tag",
        "time",
        "--quiet",
        "--report-dir",
        report_dir,
    ]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    for name in [
        "COSU device reset",
        "AOSP device reset",
        "Work-profile reset not supported on COSU",
    ] {
        assert!(
            stdout.contains(&format!("PASSED {name}:")),
            "{name}: {stdout}"
        );
    }
    assert!(stdout.contains("flows: 3 passed, 0 failed"), "{stdout}");

    let dir = tempfile::tempdir().unwrap();
    let flow = dir.path().join("env.yaml");
    std::fs::write(
        &flow,
        "env:\n  PIN: \"2580\"\ndevices: [{name: k, type: cosu}]\nsteps:\n  - set_passcode: {device: k, scope: device, passcode: \"2580\"}\n  - lock: {device: k, scope: device}\n  - enter_passcode: {device: k, scope: device, passcode: \"${PIN}\", expect: unlocked}\n",
    )
    .unwrap();
    let flow = flow.to_str().unwrap();
    let output = droidfleet_flow(&["run", flow, "--quiet", "--report-dir", report_dir]);
    assert!(output.status.success(), "{}", text(&output.stdout));
    let output = droidfleet_flow(&[
        "run",
        flow,
        "--env",
        "PIN=9999",
        "--quiet",
        "--report-dir",
        report_dir,
    ]);
    let stdout = text(&output.stdout);
    assert!(!output.status.success());
    assert!(
        stdout.contains("observed: refused: wrong passcode"),
        "{stdout}"
    );
    let output = droidfleet_flow(&[
        "run",
        "flows/",
        "--tag",
        "no-such-tag",
        "--report-dir",
        report_dir,
    ]);
    assert!(!output.status.success());
    assert!(text(&output.stderr).contains("no flow has the tags asked for"));
}

/// One flow per assertion kind (and per kind of expectation an action step carries), each set up
/// so that its last step must fail: (file, the failing step's number and line, expected,
/// observed).
const FAILING: &[(&str, &str, usize, usize, &str, &str)] = &[
    (
        "a-notification.yaml",
        "  - assert_notification: {device: x, title: Enter your new work passcode, timeout: 300ms}\n",
        1,
        5,
        "a notification titled \"Enter your new work passcode\"",
        "no notification (the shade is empty)",
    ),
    (
        "b-no-notification.yaml",
        "  - set_passcode: {device: x, scope: device, passcode: \"1470\"}\n  - set_passcode: {device: x, scope: work_profile, current: \"1470\", passcode: \"abcd1234\"}\n  - assign_policy: {device: x, scope: work_profile, type: alphanumeric, min_length: 8}\n  - reset_passcode: x\n  - assert_action: {action: reset, state: done}\n  - assert_no_notification: {device: x, title: Enter your new work passcode, timeout: 300ms}\n",
        6,
        10,
        "no notification titled \"Enter your new work passcode\"",
        "notifications: \"Enter your new work passcode\"",
    ),
    (
        "c-locked.yaml",
        "  - assert_locked: {device: x, scope: device, timeout: 300ms}\n",
        1,
        5,
        "the device lock screen is locked",
        "unlocked",
    ),
    (
        "d-unlocked.yaml",
        "  - set_passcode: {device: x, scope: device, passcode: \"1470\"}\n  - lock: {device: x, scope: device}\n  - assert_unlocked: {device: x, scope: device, timeout: 300ms}\n",
        3,
        7,
        "the device lock screen is unlocked",
        "locked",
    ),
    (
        "e-token.yaml",
        "  - assert_token: {device: x, scope: work_profile, state: pending, timeout: 300ms}\n",
        1,
        5,
        "the work profile token is pending",
        "the work profile token is active",
    ),
    (
        "f-throttled.yaml",
        "  - assert_throttled: {device: x, scope: device, retry_in: 30s, timeout: 300ms}\n",
        1,
        5,
        "the device lock screen refuses entries for 30s more (within 2s)",
        "not throttled (0 failed attempts)",
    ),
    (
        "g-not-throttled.yaml",
        "  - set_passcode: {device: x, scope: device, passcode: \"1470\"}\n  - lock: {device: x, scope: device}\n  - enter_passcode: {device: x, scope: device, passcode: \"0000\", times: 5, expect: refused}\n  - assert_not_throttled: {device: x, scope: device, timeout: 300ms}\n",
        4,
        8,
        "the device lock screen takes entries",
        "throttled: the next entry is accepted in 30s",
    ),
    (
        "h-action.yaml",
        "  - reset_passcode: x\n  - assert_action: {action: reset, state: done, timeout: 2s}\n",
        2,
        6,
        "the action ends done",
        "failed with error code no_passcode_policy",
    ),
    (
        "i-user-data.yaml",
        "  - write_data: {device: x, scope: work_profile, key: notes, value: \"kept\"}\n  - assert_user_data: {device: x, scope: work_profile, key: notes, equals: \"lost\", timeout: 300ms}\n",
        2,
        6,
        "\"notes\" in the work profile reads back as the 4 bytes written",
        "\"notes\" holds 4 other bytes",
    ),
    (
        "j-audit.yaml",
        "  - assert_audit: {operation: ResetPasscode, result: PERMISSION_DENIED}\n",
        1,
        5,
        "an audit entry for ResetPasscode with result PERMISSION_DENIED",
        "no ResetPasscode entry",
    ),
    (
        "k-entry.yaml",
        "  - set_passcode: {device: x, scope: device, passcode: \"1470\"}\n  - lock: {device: x, scope: device}\n  - enter_passcode: {device: x, scope: device, passcode: \"0000\", expect: unlocked}\n",
        3,
        7,
        "the passcode unlocks the store",
        "refused: wrong passcode (1 failed attempt)",
    ),
    (
        "l-refusal.yaml",
        "  - reset_passcode: {device: x, as: Help Desk Operator, expect_error: permission_denied}\n",
        1,
        5,
        "refused with permission_denied",
        "the control plane accepted the call",
    ),
    (
        "m-wait-action.yaml",
        "  - assign_policy: {device: x, scope: work_profile, type: alphanumeric, min_length: 8}\n  - go_offline: x\n  - reset_passcode: x\n  - wait_action: {action: reset, state: done, timeout: 300ms}\n",
        4,
        8,
        "the action reaches done",
        "after 300ms: pending",
    ),
];

/// Acceptance: flows can fail. Each assertion kind meets a situation where it must fail, and the
/// report (console, JUnit, HTML) names the step, the expected and the observed value.
#[test]
fn every_assertion_kind_fails_when_it_must_and_the_report_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path().join("failing");
    std::fs::create_dir(&flows).unwrap();
    for (file, steps, ..) in FAILING {
        let flow = format!("devices:\n  - name: x\n    type: byod\nsteps:\n{steps}");
        std::fs::write(flows.join(file), flow).unwrap();
    }
    let reports = dir.path().join("reports");
    let output = droidfleet_flow(&[
        "run",
        flows.to_str().unwrap(),
        "--quiet",
        "--report-dir",
        reports.to_str().unwrap(),
    ]);
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("flows: 0 passed, {} failed", FAILING.len())),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!(
            "{} of {} flows failed",
            FAILING.len(),
            FAILING.len()
        )),
        "{stderr}"
    );
    let junit = std::fs::read_to_string(reports.join("junit.xml")).unwrap();
    let html = std::fs::read_to_string(reports.join("report.html")).unwrap();
    for (file, _, step, line, expected, observed) in FAILING {
        let path = flows.join(file);
        let place = format!("{}:{line}:5", path.display());
        // The console: the failed step's line, then what was expected and what was seen.
        let console = stdout
            .split_once(&format!("({place})"))
            .unwrap_or_else(|| panic!("{file}: no failed step at {place} in:\n{stdout}"))
            .1;
        let mut lines = console.lines().skip(1);
        let expected_line = lines.next().unwrap_or_default();
        let observed_line = lines.next().unwrap_or_default();
        assert!(
            expected_line.trim() == format!("expected: {expected}"),
            "{file}: {expected_line:?}"
        );
        assert!(
            observed_line.trim().starts_with("observed: ") && observed_line.contains(observed),
            "{file}: {observed_line:?}"
        );
        // JUnit: the failure message names the step, its place, the expected and the observed.
        let message = format!(
            "step {step} at {place}: expected {}; observed ",
            xml(expected)
        );
        let junit_observed = after(&junit, &message, "\"");
        assert!(
            junit_observed.contains(&xml(observed)),
            "{file}: {message}\n{junit}"
        );
        // HTML: the failed step's card says the same.
        let card = format!(
            "<dt>expected</dt><dd>{}</dd><dt>observed</dt><dd>",
            xml(expected)
        );
        assert!(
            after(&html, &card, "</dd>").contains(&xml(observed)),
            "{file}: {card}"
        );
    }
}

/// What follows `start` in `text`, up to `end`; empty when `start` is not there.
fn after<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    text.split_once(start)
        .map(|(_, rest)| rest.split_once(end).map_or(rest, |(part, _)| part))
        .unwrap_or_default()
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// Acceptance: a bad flow file (unknown step, wrong type, missing device, bad variable) gets an
/// error with file, line and column, and nothing runs, not even the good flows beside it.
#[test]
fn a_bad_flow_file_is_refused_at_its_place_and_nothing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("suite");
    std::fs::create_dir(&suite).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("flows/reset-byod.yaml"),
        suite.join("a-good.yaml"),
    )
    .unwrap();
    let bad = "\
devices:
  - name: alice
    type: byod
steps:
  - tapOn: alice
  - set_passcode: {device: alice, scope: device, passcode: 2580}
  - reboot: bob
  - enter_passcode: {device: alice, scope: work_profile, passcode: \"${revealed.work_profile}\"}
";
    std::fs::write(suite.join("b-bad.yaml"), bad).unwrap();
    let reports = dir.path().join("reports");
    let output = droidfleet_flow(&[
        "run",
        suite.to_str().unwrap(),
        "--report-dir",
        reports.to_str().unwrap(),
    ]);
    let stderr = text(&output.stderr);
    let stdout = text(&output.stdout);
    assert!(!output.status.success());
    let file = suite.join("b-bad.yaml").display().to_string();
    for (line, col, words) in [
        (5, 5, "unknown step `tapOn`"),
        (6, 60, "`passcode` must be text, found the number 2580"),
        (7, 13, "no device \"bob\" in this flow's `devices`"),
        (8, 69, "unknown variable ${revealed.work_profile}"),
    ] {
        let place = format!("{file}:{line}:{col}: {words}");
        assert!(stderr.contains(&place), "{place}\n{stderr}");
    }
    assert!(
        stderr.contains("4 problems in the flow files, nothing ran"),
        "{stderr}"
    );
    assert!(stdout.is_empty(), "nothing ran: {stdout}");
    assert!(!reports.exists(), "no report is written");

    // `flow check` says the same without running anything.
    let output = droidfleet_flow(&["check", suite.to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(text(&output.stderr).contains(&format!("{file}:5:5: unknown step `tapOn`")));
    let output = droidfleet_flow(&["check", "flows/"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
}

/// Against a running control plane and agent (child processes): time steps are refused before
/// anything runs, with their place; a flow without them runs, its roles made as principals
/// with the given admin token and deleted afterwards.
#[tokio::test]
async fn flows_run_against_a_running_control_plane_and_agent() {
    let deployment = Deployment::new();
    let _control_plane = deployment.control_plane();
    let mut admin = deployment.admin().await;
    let enrollment = admin.enrollment_token(1, "").await;
    let agent = deployment.agent(&enrollment, &["byod:carol".to_string()]);
    let harness = format!("http://{}", agent.address);
    let token_file = deployment.path("cp").join("bootstrap-admin.token");
    let address = deployment.address();
    let external = |flow: &str| {
        droidfleet_flow(&[
            "run",
            flow,
            "--control-plane",
            &address,
            "--token-file",
            token_file.to_str().unwrap(),
            "--harness",
            &harness,
            "--report-dir",
            deployment.path("reports").to_str().unwrap(),
        ])
    };

    let output = external("flows/passcode-visible-seven-days.yaml");
    let stderr = text(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("flows/passcode-visible-seven-days.yaml:14:5: `advance` moves the clocks"),
        "{stderr}"
    );
    assert!(text(&output.stdout).is_empty());

    let output = external("flows/read-only-operator-refused.yaml");
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    assert!(stdout.contains("flows: 1 passed, 0 failed"), "{stdout}");
    let request = admin.request(pb::ListPrincipalsRequest::default());
    let principals = admin
        .client
        .list_principals(request)
        .await
        .unwrap()
        .into_inner()
        .principals;
    assert!(
        principals.iter().all(|p| !p.name.starts_with("flow-")),
        "the principals the flow made are deleted: {principals:?}"
    );

    // A flow naming a device the agent does not host stops at the device's place.
    let output = external("flows/reset-cosu.yaml");
    assert!(!output.status.success());
    assert!(
        text(&output.stdout)
            .contains("flows/reset-cosu.yaml:6:5: the agent hosts no device \"kiosk\""),
        "{}",
        text(&output.stdout)
    );
}

/// Acceptance: the HTML report renders in a real headless Chromium, with each step's phone drawn
/// (its screen, the stores, the notification) next to the admin's view, and a failed step shown
/// with what was expected and observed. The screenshot is kept in the target directory.
#[tokio::test]
async fn the_html_report_draws_each_steps_phone_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("suite");
    std::fs::create_dir(&suite).unwrap();
    for file in ["reset-byod.yaml", "reboot-pending-token.yaml"] {
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("flows")
                .join(file),
            suite.join(file),
        )
        .unwrap();
    }
    std::fs::write(
        suite.join("wrong-title.yaml"),
        "name: A title that is not shown\ndevices: [{name: x, type: byod}]\nsteps:\n  - assert_notification: {device: x, title: Your phone is on fire, timeout: 200ms}\n",
    )
    .unwrap();
    let reports = dir.path().join("reports");
    let output = droidfleet_flow(&[
        "run",
        suite.to_str().unwrap(),
        "--quiet",
        "--report-dir",
        reports.to_str().unwrap(),
    ]);
    assert!(text(&output.stdout).contains("flows: 2 passed, 1 failed"));
    let page = reports.join("report.html");

    let browser = Browser::start().await;
    let client = &browser.client;
    client
        .goto(&format!("file://{}", page.display()))
        .await
        .unwrap();
    let title = client.title().await.unwrap();
    assert_eq!(title, "droidfleet flows: 2 passed, 1 failed");
    // Every phone is laid out and drawn: its box has a size, and its display, its stores and
    // its padlock have rendered geometry inside it.
    let phones = client
        .execute(
            "return Array.from(document.querySelectorAll('svg.phone')).map(p => { \
               const r = p.getBoundingClientRect(); \
               const drawn = sel => Array.from(p.querySelectorAll(sel)).filter(e => { \
                 const b = e.getBBox(); return b.width > 0 && b.height > 0; }).length; \
               return [r.width, r.height, drawn('rect.display'), drawn('g.store'), \
                       drawn('g.padlock'), drawn('g.notification'), p.dataset.device]; })",
            vec![],
        )
        .await
        .unwrap();
    let phones = phones.as_array().unwrap();
    let steps = 15 + 17 + 1;
    assert_eq!(phones.len(), steps, "one phone per step run");
    for phone in phones {
        let p = phone.as_array().unwrap();
        assert!(
            p[0].as_f64().unwrap() > 150.0 && p[1].as_f64().unwrap() > 300.0,
            "{p:?}"
        );
        assert_eq!(p[2].as_f64(), Some(1.0), "the display is drawn: {p:?}");
        assert_eq!(p[4].as_f64(), Some(1.0), "the padlock is drawn: {p:?}");
        let stores = if p[6] == "x" || p[6] == "alice" || p[6] == "frank" {
            2.0
        } else {
            1.0
        };
        assert_eq!(p[3].as_f64(), Some(stores), "each store is drawn: {p:?}");
    }
    let notifications: f64 = phones
        .iter()
        .map(|p| p.as_array().unwrap()[5].as_f64().unwrap())
        .sum();
    assert!(
        notifications >= 5.0,
        "the shade's notifications are drawn: {notifications}"
    );
    // The notification the user saw, as text in the picture.
    let title = client
        .execute(
            "return Array.from(document.querySelector('text.notification-title') \
               .querySelectorAll('tspan')).map(t => t.textContent).join(' ')",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(title, "Enter your new work passcode");
    // The admin's view of the action and the failed step's card.
    let admin = client
        .find_all(Locator::Css("table.admin-view"))
        .await
        .unwrap();
    assert!(!admin.is_empty());
    let failure = client
        .find(Locator::Css("article.step.failed dl.failure"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        failure.contains("a notification titled \"Your phone is on fire\"")
            && failure.contains("no notification (the shade is empty)"),
        "{failure}"
    );
    // A picture of the report as a person sees it, from the row of the first step whose phone
    // is locked (the reboot: the shade still asks for the new work passcode).
    client
        .execute(
            "document.querySelector('g.padlock.closed').closest('article').scrollIntoView(); \
             window.scrollBy(0, -12);",
            vec![],
        )
        .await
        .unwrap();
    let png = client.screenshot().await.unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("flow-report.png");
    std::fs::write(&shot, &png).unwrap();
    println!("screenshot: {}", shot.display());
    browser.close().await;
}

/// `droidfleet flow record`: a session played by hand on stdin is written as a flow that keeps
/// what happened (the refusal, each entry's outcome, the final state, what the phone showed),
/// with the passcode the admin was shown as a variable; the recorded flow then runs and passes.
#[tokio::test]
async fn a_session_played_by_hand_is_recorded_as_a_flow_that_passes() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("recorded.yaml");
    let mut recorder = tokio::process::Command::new(env!("CARGO_BIN_EXE_droidfleet"))
        .args(["flow", "record"])
        .arg(&output)
        .args(["--device", "byod:alice", "--tag", "recorded"])
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = recorder.stdin.take().unwrap();
    let mut stdout = tokio::io::BufReader::new(recorder.stdout.take().unwrap()).lines();
    let session = "\
device alice set-passcode --scope device 4826
device alice set-passcode --scope work-profile --current 4826 alice7391
device alice write-data --scope work-profile notes \"alice's notes\"
admin assign-policy alice --scope work-profile --type alphanumeric --min-length 8
admin reset-passcode alice --as \"Read Only Operator\"
admin reset-passcode alice --as \"Help Desk Operator\" --wait
admin reveal-passcode --as \"Help Desk Operator\"
";
    stdin.write_all(session.as_bytes()).await.unwrap();
    let passcode = tokio::time::timeout(crate::support::DEADLINE, async {
        while let Some(line) = stdout.next_line().await.unwrap() {
            if let Some(passcode) = line.trim().strip_prefix("the admin reads out: ") {
                return passcode.to_string();
            }
        }
        panic!("the recorder ended before revealing the passcode")
    })
    .await
    .expect("the recorder reveals the passcode");
    let rest = format!(
        "check alice
device alice enter-passcode --scope work-profile alice7391
device alice enter-passcode --scope work-profile {passcode}
device alice fly
admin watch --until-entered
check alice
quit
"
    );
    stdin.write_all(rest.as_bytes()).await.unwrap();
    let mut printed = String::new();
    while let Some(line) = stdout.next_line().await.unwrap() {
        printed.push_str(&line);
        printed.push('\n');
    }
    let status = tokio::time::timeout(crate::support::DEADLINE, recorder.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{printed}");
    assert!(
        printed.contains("error: unexpected argument 'fly' found"),
        "a bad line is explained and skipped: {printed}"
    );

    let flow = std::fs::read_to_string(&output).unwrap();
    for kept in [
        "tags: [recorded]",
        "  - {name: alice, type: byod}",
        "  - reset_passcode: {device: alice, as: Read Only Operator, expect_error: permission_denied}",
        "  - assert_action: {action: reset, state: done}",
        "  - reveal_passcode: {action: reset, as: Help Desk Operator}",
        "  - assert_notification: {device: alice, title: \"Enter your new work passcode\"}",
        "  - assert_locked: {device: alice, scope: work_profile}",
        "  - enter_passcode: {device: alice, scope: work_profile, passcode: \"alice7391\", expect: refused}",
        "  - enter_passcode: {device: alice, scope: work_profile, passcode: \"${revealed.work_profile}\", expect: unlocked}",
        "  - assert_action: {action: reset, state: done, user_entered: true}",
        "  - assert_no_notification: {device: alice}",
        "  - assert_token: {device: alice, scope: work_profile, state: active}",
    ] {
        assert!(flow.contains(kept), "{kept:?} in:\n{flow}");
    }
    assert!(
        !flow.contains(&passcode),
        "the revealed passcode is kept as a variable: {flow}"
    );
    assert!(!flow.contains("fly"));

    let reports = dir.path().join("reports");
    let run = droidfleet_flow(&[
        "run",
        output.to_str().unwrap(),
        "--report-dir",
        reports.to_str().unwrap(),
    ]);
    assert!(
        run.status.success(),
        "{}\n{}",
        text(&run.stdout),
        text(&run.stderr)
    );

    // An existing flow is never overwritten without --force.
    let again = droidfleet_flow(&["record", output.to_str().unwrap(), "--device", "byod:alice"]);
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("exists: give another file, or --force"));
    assert_eq!(std::fs::read_to_string(&output).unwrap(), flow);
}
