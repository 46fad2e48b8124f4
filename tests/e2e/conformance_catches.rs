//! The conformance kit catches real defects: each test gives a control plane or a device one
//! deliberately broken behaviour (test-only peers in `support/broken.rs`, never a mode of the
//! shipped control plane or agent) and expects the named case to fail, while the same case
//! passes against the correct implementations (`conformance.rs`).

use crate::support::Embedded;
use crate::support::broken::{BrokenGateway, BrokenHarness, Bug};
use crate::support::conformance::{AgentUnderTest, agent_capabilities, device_suite, kit_listener};
use droidfleet_agent::device::Ownership;
use droidfleet_tools::admin::Token;
use droidfleet_tools::conformance::{
    Capabilities, ControlPlaneSuiteOptions, Selection, Verdict, run_control_plane_suite,
};

fn select(cases: &[&str]) -> Selection {
    Selection {
        cases: cases.iter().map(|c| c.to_string()).collect(),
        ..Selection::default()
    }
}

/// Runs `cases` of the control-plane suite against our control plane behind a gateway with
/// `bug`, and expects `caught` to fail.
async fn control_plane_with(bug: Bug, cases: &[&str], caught: &str) {
    let control_plane = Embedded::start().await;
    let (gateway, _) = BrokenGateway::start(&control_plane.address, bug).await;
    let options = ControlPlaneSuiteOptions {
        gateway,
        admin: control_plane.address.clone(),
        ca: None,
        token: Token::new(control_plane.admin_token()),
        capabilities: Capabilities {
            remote_lock: true,
            cancel: true,
            ..Capabilities::default()
        },
        selection: select(cases),
    };
    let report = run_control_plane_suite(options, |_| {}).await.unwrap();
    println!("{}", report.console());
    let verdict = report.verdict(caught).expect("the case ran");
    assert!(
        matches!(verdict, Verdict::Failed { .. }),
        "{bug:?} was not caught by {caught}: {verdict:?}"
    );
    control_plane.stop().await;
}

/// Runs `cases` of the device suite against our agent (a `ownership` device) behind a gateway
/// and a harness with `bug`, and expects `caught` to fail.
async fn device_with(bug: Bug, ownership: Ownership, cases: &[&str], caught: &str) {
    let (listener, kit) = kit_listener().await;
    let (gateway, broken) = BrokenGateway::start(&kit, bug).await;
    let token = "broken-device-token";
    let agent = AgentUnderTest::start(&gateway, token, ownership).await;
    let harness = BrokenHarness::start(&agent.harness, &broken).await;
    let report = device_suite(listener, token, agent_capabilities(&harness), select(cases)).await;
    let verdict = report.verdict(caught).expect("the case ran");
    assert!(
        matches!(verdict, Verdict::Failed { .. }),
        "{bug:?} was not caught by {caught}: {verdict:?}"
    );
    agent.stop().await;
}

#[tokio::test]
async fn a_control_plane_that_reorders_commands_fails_delivery_order() {
    control_plane_with(
        Bug::CpReordersCommands,
        &["cp.delivery.order"],
        "cp.delivery.order",
    )
    .await;
}

#[tokio::test]
async fn a_control_plane_that_never_acknowledges_escrows_fails_escrow() {
    control_plane_with(Bug::CpSkipsEscrowAcks, &["cp.escrow"], "cp.escrow").await;
}

#[tokio::test]
async fn a_control_plane_that_loses_a_command_on_reconnect_fails_redeliver() {
    let case = "cp.delivery.redeliver";
    control_plane_with(Bug::CpLosesCommandOnReconnect, &[case], case).await;
}

#[tokio::test]
async fn a_control_plane_that_accepts_another_devices_result_fails_other_device() {
    let case = "cp.report.other_device";
    control_plane_with(Bug::CpAcceptsOtherDevicesReports, &[case], case).await;
}

#[tokio::test]
async fn a_control_plane_that_ignores_time_to_live_fails_ttl() {
    control_plane_with(
        Bug::CpIgnoresTimeToLive,
        &["cp.delivery.ttl"],
        "cp.delivery.ttl",
    )
    .await;
}

#[tokio::test]
async fn a_control_plane_that_accepts_a_result_without_ack_fails_requires_ack() {
    let case = "cp.result.requires_ack";
    control_plane_with(Bug::CpAcceptsResultWithoutAck, &[case], case).await;
}

#[tokio::test]
async fn a_control_plane_that_signs_other_bytes_fails_signed() {
    let case = "cp.command.signed";
    control_plane_with(Bug::CpSignsOtherBytes, &[case], case).await;
}

#[tokio::test]
async fn a_control_plane_without_policies_at_session_start_fails_session_start() {
    let case = "cp.policy.session_start";
    control_plane_with(Bug::CpSkipsPoliciesAtSessionStart, &[case], case).await;
}

#[tokio::test]
async fn a_control_plane_whose_command_overtakes_a_policy_fails_policy_change() {
    let case = "cp.policy.change";
    control_plane_with(Bug::CpCommandOvertakesPolicy, &[case], case).await;
}

#[tokio::test]
async fn a_control_plane_that_accepts_a_hello_without_status_fails_hello_status() {
    let case = "cp.session.hello_status";
    control_plane_with(Bug::CpAcceptsHelloWithoutStatus, &[case], case).await;
}

#[tokio::test]
async fn a_control_plane_that_accepts_an_entry_without_time_fails_user_entry() {
    control_plane_with(
        Bug::CpAcceptsEntryWithoutTime,
        &["cp.user.entry"],
        "cp.user.entry",
    )
    .await;
}

#[tokio::test]
async fn a_device_that_accepts_a_forged_command_fails_forged() {
    let case = "dev.command.forged";
    device_with(Bug::DeviceAcceptsForged, Ownership::Cosu, &[case], case).await;
}

#[tokio::test]
async fn a_device_that_acknowledges_a_forged_command_fails_forged() {
    let case = "dev.command.forged";
    device_with(Bug::DeviceAcksForged, Ownership::Cosu, &[case], case).await;
}

#[tokio::test]
async fn a_device_that_ignores_key_ids_fails_unknown_key() {
    let case = "dev.command.unknown_key";
    device_with(Bug::DeviceIgnoresKeyIds, Ownership::Cosu, &[case], case).await;
}

#[tokio::test]
async fn a_device_that_accepts_a_replayed_command_fails_replayed() {
    let case = "dev.command.replayed";
    device_with(Bug::DeviceAcceptsReplayed, Ownership::Cosu, &[case], case).await;
}

#[tokio::test]
async fn a_device_that_runs_an_expired_command_fails_expired() {
    let case = "dev.command.expired";
    device_with(Bug::DeviceRunsExpired, Ownership::Cosu, &[case], case).await;
}

#[tokio::test]
async fn a_device_that_runs_another_devices_command_fails_other_device() {
    let case = "dev.command.other_device";
    device_with(
        Bug::DeviceAcceptsOtherDevices,
        Ownership::Cosu,
        &[case],
        case,
    )
    .await;
}

#[tokio::test]
async fn a_device_that_verifies_a_reencoding_fails_received_bytes() {
    let case = "dev.command.received_bytes";
    device_with(
        Bug::DeviceVerifiesReencoding,
        Ownership::Cosu,
        &[case],
        case,
    )
    .await;
}

#[tokio::test]
async fn a_device_that_reports_before_persisting_fails_reboot() {
    let cases = ["dev.reset.applies", "dev.persist.reboot"];
    device_with(
        Bug::DeviceForgetsAfterReboot,
        Ownership::Cosu,
        &cases,
        cases[1],
    )
    .await;
}

#[tokio::test]
async fn a_device_that_keeps_the_notification_after_entry_fails_user_entry() {
    let cases = ["dev.reset.applies", "dev.user.entry"];
    device_with(
        Bug::DeviceKeepsNotification,
        Ownership::Byod,
        &cases,
        cases[1],
    )
    .await;
}

#[tokio::test]
async fn a_device_that_accepts_a_passcode_breaking_policy_fails_refusals() {
    let case = "dev.reset.refusals";
    device_with(
        Bug::DeviceAcceptsViolatingPasscode,
        Ownership::Byod,
        &[case],
        case,
    )
    .await;
}

#[tokio::test]
async fn a_device_that_never_acknowledges_fails_redelivery() {
    let case = "dev.command.redelivery";
    device_with(Bug::DeviceSendsNoAck, Ownership::Cosu, &[case], case).await;
}

#[tokio::test]
async fn a_device_that_reports_a_result_before_its_token_fails_applies() {
    let case = "dev.reset.applies";
    device_with(
        Bug::DeviceResultBeforeEscrow,
        Ownership::Cosu,
        &[case],
        case,
    )
    .await;
}

#[tokio::test]
async fn a_device_whose_hello_has_no_status_fails_hello() {
    let case = "dev.session.hello";
    device_with(
        Bug::DeviceHelloWithoutStatus,
        Ownership::Cosu,
        &[case],
        case,
    )
    .await;
}
