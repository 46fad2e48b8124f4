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
