//! A second implementation in another language: the Python example device
//! (`examples/python-device/`, written from the .proto files and PROTOCOL.md alone) passes the
//! kit's device suite for everything its capability statement declares. Its virtual
//! environment comes from `examples/python-device/setup.sh`, which CI runs before the tests.

use crate::support::conformance::{device_suite, kit_listener};
use droidfleet_tools::conformance::{Capabilities, Selection, Verdict};
use std::path::PathBuf;

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/python-device")
}

#[tokio::test]
async fn the_python_device_passes_every_case_it_declares() {
    let dir = example();
    let python = dir.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run examples/python-device/setup.sh first (.ci/run does) to create the \
         Python device's virtual environment from requirements.txt",
        python.display()
    );
    let capabilities = Capabilities::from_file(&dir.join("capabilities.json")).unwrap();
    let (listener, gateway) = kit_listener().await;
    let state = tempfile::tempdir().unwrap();
    let token = "python-device-token";
    let mut device = tokio::process::Command::new(&python)
        .arg(dir.join("device.py"))
        .args(["--gateway", &gateway, "--enrollment-token", token])
        .arg("--state-dir")
        .arg(state.path())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let report = device_suite(listener, token, capabilities, Selection::default()).await;
    device.kill().await.unwrap();
    for case in &report.cases {
        match &case.verdict {
            Verdict::Passed => {}
            // The example leaves out the harness (no simulated user) and cancel requests
            // (it only refuses them): its capability statement says so.
            Verdict::NotApplicable { reason } => assert!(
                case.info
                    .needs
                    .iter()
                    .any(|n| matches!(n.as_str(), "harness" | "cancel")),
                "{} was not applicable although the device declares what it needs: {reason}",
                case.info.id
            ),
            Verdict::Failed { message } => panic!("{} failed: {message}", case.info.id),
        }
    }
    assert!(
        report.verdict("dev.lock") == Some(&Verdict::Passed),
        "the declared remote lock was not tested"
    );
    assert!(report.counts().passed >= 15, "{}", report.console());
}
