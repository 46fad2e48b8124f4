//! The conformance kit against our own implementations: our control plane passes the whole
//! control-plane suite, our agent the whole device suite (with its harness, so nothing is "not
//! applicable"), and the CLI lists the catalogue and writes its reports.

use crate::support::Embedded;
use crate::support::conformance::{AgentUnderTest, agent_capabilities, device_suite, kit_listener};
use droidfleet_agent::device::Ownership;
use droidfleet_tools::admin::Token;
use droidfleet_tools::conformance::{
    Capabilities, ControlPlaneSuiteOptions, Report, Selection, Verdict, run_control_plane_suite,
};

/// Fails listing every case that did not pass.
fn all_passed(report: &Report) {
    let not_passed: Vec<String> = report
        .cases
        .iter()
        .filter(|c| c.verdict != Verdict::Passed)
        .map(|c| format!("{}: {:?}", c.info.id, c.verdict))
        .collect();
    assert!(not_passed.is_empty(), "{}", not_passed.join("\n"));
    assert!(!report.cases.is_empty());
}

#[tokio::test]
async fn our_control_plane_passes_the_full_control_plane_suite() {
    let control_plane = Embedded::start().await;
    let options = ControlPlaneSuiteOptions {
        gateway: control_plane.address.clone(),
        admin: control_plane.address.clone(),
        ca: None,
        token: Token::new(control_plane.admin_token()),
        capabilities: Capabilities {
            implementation: Some("droidfleet control plane".into()),
            remote_lock: true,
            cancel: true,
            ..Capabilities::default()
        },
        selection: Selection::default(),
    };
    let report = run_control_plane_suite(options, |_| {}).await.unwrap();
    println!("{}", report.console());
    all_passed(&report);
    assert_eq!(
        report.cases.len(),
        droidfleet_tools::conformance::catalogue::cases(
            droidfleet_tools::conformance::catalogue::Suite::ControlPlane
        )
        .len()
    );
    control_plane.stop().await;
}

async fn agent_passes(ownership: Ownership) {
    let (listener, gateway) = kit_listener().await;
    let token = "agent-under-test-token";
    let agent = AgentUnderTest::start(&gateway, token, ownership).await;
    let report = device_suite(
        listener,
        token,
        agent_capabilities(&agent.harness),
        Selection::default(),
    )
    .await;
    all_passed(&report);
    agent.stop().await;
}

#[tokio::test]
async fn our_agent_passes_the_full_device_suite_as_a_dedicated_device() {
    agent_passes(Ownership::Cosu).await;
}

#[tokio::test]
async fn our_agent_passes_the_full_device_suite_with_a_work_profile() {
    agent_passes(Ownership::Byod).await;
}

/// Runs `droidfleet conformance …` and returns whether it succeeded, and its stdout.
async fn cli(args: &[&str]) -> (bool, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_droidfleet"))
        .arg("conformance")
        .args(args)
        .env_remove("DROIDFLEET_TOKEN")
        .env_remove("DROIDFLEET_TOKEN_FILE")
        .output()
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_cli_runs_quick_mode_and_writes_junit_json_and_html_without_secrets() {
    let control_plane = Embedded::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, control_plane.admin_token()).unwrap();
    let reports = dir.path().join("reports");
    let (ok, stdout, stderr) = cli(&[
        "control-plane",
        "--target",
        &control_plane.address,
        "--token-file",
        token_file.to_str().unwrap(),
        "--quick",
        "--report-dir",
        reports.to_str().unwrap(),
    ])
    .await;
    assert!(ok, "{stdout}\n{stderr}");
    let quick = droidfleet_tools::conformance::catalogue::cases(
        droidfleet_tools::conformance::catalogue::Suite::ControlPlane,
    )
    .iter()
    .filter(|c| c.quick)
    .count();
    assert!(
        stdout.contains(&format!(
            "conformance: {quick} passed, 0 failed, 0 not applicable"
        )),
        "{stdout}"
    );
    let junit = std::fs::read_to_string(reports.join("junit.xml")).unwrap();
    assert_eq!(junit.matches("<testcase ").count(), quick, "{junit}");
    assert!(junit.contains("failures=\"0\""), "{junit}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(reports.join("report.json")).unwrap())
            .unwrap();
    assert_eq!(json["cases"].as_array().unwrap().len(), quick);
    let html = std::fs::read_to_string(reports.join("report.html")).unwrap();
    assert!(html.contains("cp.flow.simulated"), "{html}");
    for file in [&junit, &html, &json.to_string(), &stdout] {
        assert!(!file.contains(control_plane.admin_token()));
    }
    control_plane.stop().await;
}

#[tokio::test]
async fn the_cli_lists_cases_and_requirements_and_names_a_bad_selection() {
    let (ok, listing, _) = cli(&["device", "--list"]).await;
    assert!(ok);
    for case in droidfleet_tools::conformance::catalogue::cases(
        droidfleet_tools::conformance::catalogue::Suite::Device,
    ) {
        assert!(
            listing.contains(case.id),
            "{} missing from\n{listing}",
            case.id
        );
    }
    let (ok, requirements, _) =
        cli(&["control-plane", "--target", "x", "--list", "--requirements"]).await;
    assert!(ok);
    for requirement in droidfleet_tools::conformance::requirements() {
        assert!(
            requirements.contains(&format!("{} ({})", requirement.id, requirement.level)),
            "{} missing from\n{requirements}",
            requirement.id
        );
    }
    assert!(!requirements.contains("NO CASE"), "{requirements}");
    let (ok, _, stderr) = cli(&[
        "device",
        "--case",
        "dev.no-such-case",
        "--wait-seconds",
        "1",
    ])
    .await;
    assert!(!ok);
    assert!(
        stderr.contains("no case matches --case \"dev.no-such-case\""),
        "{stderr}"
    );
}
