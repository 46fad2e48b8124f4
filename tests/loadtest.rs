//! `droidfleet loadtest` as a user runs it: the real binary, a small fleet with both injected
//! faults, a fixed seed. Checks the report's arithmetic, that failures are only the injected
//! ones, that the HTML page is self-contained, and that the seed alone decides each device's
//! fate.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

const DEVICES: usize = 20;

fn loadtest(report_dir: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_droidfleet"))
        .arg("loadtest")
        .args(["--devices", &DEVICES.to_string()])
        .args(["--seed", "7"])
        .args(["--no-policy-share", "0.2", "--pending-token-share", "0.2"])
        .args(["--typo-probability", "0.3", "--user-delay-ms", "20"])
        .args(["--deadline", "60"])
        .arg("--report-dir")
        .arg(report_dir)
        .args(extra)
        .env_remove("DROIDFLEET_TOKEN_FILE")
        .output()
        .expect("run droidfleet loadtest")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn read_report(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("report.json")).expect("report.json"))
        .expect("report.json parses")
}

/// Each device's decisions as the report lists them.
fn decisions(report: &Value) -> Vec<(String, String, String, u64, bool)> {
    report["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap().to_string(),
                d["ownership"].as_str().unwrap().to_string(),
                d["fault"].as_str().unwrap().to_string(),
                d["user_delay_ms"].as_u64().unwrap(),
                d["typo"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_small_fleet_with_faults_gives_a_consistent_report_and_the_seed_fixes_the_decisions() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    // The two runs are independent processes; run them side by side to keep the test short.
    let outputs: Vec<Output> = std::thread::scope(|scope| {
        let handles: Vec<_> = dirs
            .iter()
            .map(|dir| scope.spawn(|| loadtest(dir.path(), &[])))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for output in &outputs {
        assert!(
            output.status.success(),
            "stdout:\n{}\nstderr:\n{}",
            text(&output.stdout),
            text(&output.stderr)
        );
    }
    let stdout = text(&outputs[0].stdout);
    for heading in [
        "Outcomes",
        "Latency",
        "requested_to_applied",
        "Throughput",
        "peak RSS",
    ] {
        assert!(stdout.contains(heading), "{heading} missing in:\n{stdout}");
    }
    assert!(stdout.contains("argon2: light"), "{stdout}");

    let report = read_report(dirs[0].path());
    assert_eq!(report["completed"], true);
    assert_eq!(report["argon2"]["preset"], "light");
    let counted: u64 = report["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["count"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, DEVICES as u64, "{:#}", report["outcomes"]);
    assert_eq!(report["outcome_total"], DEVICES);
    assert_eq!(report["unexpected"], 0, "{:#}", report["devices"]);

    let devices = report["devices"].as_array().unwrap();
    assert_eq!(devices.len(), DEVICES);
    let mut faults = std::collections::BTreeSet::new();
    for d in devices {
        let fault = d["fault"].as_str().unwrap();
        faults.insert(fault.to_string());
        match fault {
            "none" => {
                assert_eq!(d["state"], "done", "{d:#}");
                assert!(d["user_entered_at_ms"].as_u64().unwrap() > 0, "{d:#}");
            }
            "no_policy" => {
                assert_eq!(d["state"], "failed", "{d:#}");
                assert_eq!(d["error_code"], "no_passcode_policy", "{d:#}");
            }
            "pending_token" => {
                assert_eq!(d["state"], "failed", "{d:#}");
                assert_eq!(d["error_code"], "token_not_active", "{d:#}");
            }
            other => panic!("unknown fault {other}"),
        }
        assert!(
            d.get("passcode").is_none(),
            "no passcode in a record: {d:#}"
        );
    }
    assert_eq!(
        faults.len(),
        3,
        "seed 7 gives every kind of device: {faults:?}"
    );
    for row in report["outcomes"].as_array().unwrap() {
        let code = row["error_code"].as_str().unwrap();
        assert!(
            ["-", "no_passcode_policy", "token_not_active"].contains(&code),
            "only injected failures: {row}"
        );
    }
    let latency = report["latency_ms"].as_array().unwrap();
    assert_eq!(latency.len(), 5);
    let done = devices.iter().filter(|d| d["state"] == "done").count() as u64;
    assert_eq!(latency[2]["phase"], "requested_to_applied");
    assert_eq!(latency[2]["count"], done);
    assert!(latency[2]["p50"].as_f64().unwrap() <= latency[2]["max"].as_f64().unwrap());
    assert!(report["throughput"]["finished_per_s"].as_f64().unwrap() > 0.0);
    assert!(report["resources"]["peak_rss_kib"].as_u64().unwrap() > 0);
    assert!(report["scheduler_lag_ms"]["count"].as_u64().unwrap() > 0);

    let html = std::fs::read_to_string(dirs[0].path().join("report.html")).unwrap();
    assert!(html.contains("<svg"), "charts are inline SVG");
    assert!(
        html.matches("<svg").count() >= 6,
        "five histograms and throughput"
    );
    let lower = html.to_lowercase();
    for external in [
        "<script",
        "src=\"http",
        "src='http",
        "href=\"http",
        "href='http",
        "url(http",
        "@import",
        "<link",
    ] {
        assert!(
            !lower.contains(external),
            "self-contained: found {external}"
        );
    }

    let again = read_report(dirs[1].path());
    assert_eq!(report["decision_digest"], again["decision_digest"]);
    assert_eq!(decisions(&report), decisions(&again));
}

#[test]
fn a_bad_mix_names_the_bad_part() {
    let dir = tempfile::tempdir().unwrap();
    let output = loadtest(dir.path(), &["--mix", "cosu=1,phone=2"]);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("phone=2") && stderr.contains("unknown enrollment type"),
        "{stderr}"
    );
    assert!(!dir.path().join("report.json").exists());
}

#[test]
fn an_unreachable_control_plane_fails_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "not-a-real-token").unwrap();
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let output = loadtest(
        dir.path(),
        &[
            "--control-plane",
            "http://127.0.0.1:1",
            "--token-file",
            token.to_str().unwrap(),
        ],
    );
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("cannot reach the control plane"),
        "{stderr}"
    );
}
