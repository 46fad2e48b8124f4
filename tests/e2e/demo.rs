//! `droidfleet demo` runs the whole flow and exits 0, narrating each step.

use std::process::Command;

#[test]
fn the_demo_shows_every_step_and_succeeds() {
    let output = Command::new(env!("CARGO_BIN_EXE_droidfleet"))
        .args(["demo", "--argon2", "light"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for expected in [
        "kiosk-cosu",
        "sales-cobo",
        "field-cope",
        "alice-byod",
        "lab-aosp",
        "before any passcode policy: failed",
        "not_supported",
        "PermissionDenied",
        "token_not_active",
        "the phone shows",
        "the old passcode is refused",
        "the saved note reads back intact",
        "Demo finished",
    ] {
        assert!(
            stdout.contains(expected),
            "demo output lacks {expected:?}:\n{stdout}"
        );
    }
}
