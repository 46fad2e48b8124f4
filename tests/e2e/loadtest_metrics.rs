//! Both `/metrics` endpoints during a real load test, read with a Prometheus text parser
//! (`prometheus-parse`, not our own code): a `droidfleet serve --metrics-listen` process and a
//! `droidfleet loadtest --metrics-listen` against it. While the resets run, every documented
//! histogram is there; once the report is written, the histograms' counts are the report's (the
//! agent's Argon2id runs too, inferred from the devices' plans), and the HDR log next to
//! report.json holds the report's latency figures.

use crate::support::http::Server;
use crate::support::{DEADLINE, Process};
use base64::Engine;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use prometheus_parse::{Sample, Scrape, Value};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;

const DEVICES: usize = 40;

/// The body of `GET url` (`http://HOST:PORT/metrics`), parsed.
async fn scrape(url: &str) -> Scrape {
    let address = url
        .strip_prefix("http://")
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("not a metrics URL: {url}"));
    let server = Server {
        authority: address.to_string(),
        tls: None,
    };
    let answer = server.get("/metrics", "").await;
    assert_eq!(answer.status, 200, "{url}");
    Scrape::parse(answer.body.lines().map(|line| Ok(line.to_string()))).unwrap()
}

/// The observation count of each series of histogram `family` (its `+Inf` bucket), by label set
/// rendered as `name=value,…` in name order.
fn histogram_counts(scrape: &Scrape, family: &str) -> Vec<(String, f64)> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == family)
        .map(|s: &Sample| {
            let Value::Histogram(buckets) = &s.value else {
                panic!("{family} is not a histogram: {:?}", s.value);
            };
            let count = buckets
                .iter()
                .find(|b| b.less_than.is_infinite())
                .unwrap_or_else(|| panic!("{family} has no +Inf bucket"))
                .count;
            let mut labels: Vec<String> =
                s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            labels.sort();
            (labels.join(","), count)
        })
        .collect()
}

fn histogram_count(scrape: &Scrape, family: &str, labels: &str) -> f64 {
    histogram_counts(scrape, family)
        .into_iter()
        .find(|(l, _)| l == labels)
        .unwrap_or_else(|| panic!("{family}{{{labels}}} is not exposed"))
        .1
}

fn untyped(scrape: &Scrape, name: &str) -> f64 {
    let sample = scrape
        .samples
        .iter()
        .find(|s| s.metric == name)
        .unwrap_or_else(|| panic!("{name} is not exposed"));
    match sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
        ref other => panic!("{name}: {other:?}"),
    }
}

/// Every histogram the README documents for the control plane and the agent, with the label
/// sets a reset always produces.
fn assert_documented_histograms(control_plane: &Scrape, agent: &Scrape) {
    for phase in ["delivered", "applied", "user_entered"] {
        histogram_count(
            control_plane,
            "droidfleet_action_phase_seconds",
            &format!("kind=reset_passcode,phase={phase}"),
        );
    }
    assert!(
        !histogram_counts(control_plane, "droidfleet_admin_call_duration_seconds").is_empty(),
        "droidfleet_admin_call_duration_seconds is not exposed"
    );
    histogram_count(control_plane, "droidfleet_session_duration_seconds", "");
    for outcome in ["success", "failure", "ignored"] {
        histogram_count(
            agent,
            "droidfleet_agent_command_duration_seconds",
            &format!("outcome={outcome}"),
        );
    }
    histogram_count(agent, "droidfleet_agent_argon2_seconds", "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_endpoints_parse_during_a_load_test_and_count_what_the_report_counts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cp");
    let control_plane = Process::start(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        "control plane listening on ",
        &dir.path().join("cp.log"),
    );
    let cp_metrics = control_plane
        .earlier
        .iter()
        .find_map(|line| line.strip_prefix("metrics on "))
        .expect("serve prints its metrics address")
        .to_string();
    let report_dir = dir.path().join("report");
    let devices = DEVICES.to_string();
    let mut loadtest = Command::new(env!("CARGO_BIN_EXE_droidfleet"))
        .arg("loadtest")
        .args([
            "--control-plane",
            &format!("https://{}", control_plane.address),
        ])
        // The CA to pin is found next to the token file (the data folder's tls/ca.pem).
        .arg("--token-file")
        .arg(data.join("bootstrap-admin.token"))
        .arg("--report-dir")
        .arg(&report_dir)
        .args(["--devices", &devices, "--seed", "11", "--rate", "20"])
        .args([
            "--no-baselines",
            "--metrics-listen",
            "127.0.0.1:0",
            "--wait",
        ])
        .env_remove("DROIDFLEET_TOKEN_FILE")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Its stdout (addresses, the report's path) and stderr (the phases) as they come.
    let (lines_tx, lines) = mpsc::channel::<String>();
    for reader in [
        Box::new(loadtest.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(loadtest.stderr.take().unwrap()),
    ] {
        let lines_tx = lines_tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { return };
                if lines_tx.send(line).is_err() {
                    return;
                }
            }
        });
    }
    drop(lines_tx);
    let wait_for = |prefix: &str| -> String {
        loop {
            let line = lines
                .recv_timeout(DEADLINE * 2)
                .unwrap_or_else(|_| panic!("the load test printed no line starting {prefix:?}"));
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.trim().to_string();
            }
        }
    };
    let agent_metrics = wait_for("agent metrics on ");

    // During the resets: both endpoints answer, parse, and hold every documented histogram.
    wait_for("resetting ");
    let during_cp = scrape(&cp_metrics).await;
    let during_agent = scrape(&agent_metrics).await;
    assert_documented_histograms(&during_cp, &during_agent);

    // After the report (the agent's endpoint stays up with --wait): the counts are the report's.
    wait_for("report: ");
    wait_for("the agent metrics stay on ");
    let report: Json =
        serde_json::from_slice(&std::fs::read(report_dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["completed"], true);
    let records = report["devices"].as_array().unwrap();
    assert_eq!(records.len(), DEVICES);
    let setup_resets = report["setup_resets"].as_u64().unwrap() as f64;
    let count = |keep: &dyn Fn(&Json) -> bool| records.iter().filter(|r| keep(r)).count() as f64;
    let done = count(&|r| r["state"] == "done");
    let delivered = count(&|r| r["delivered_at_ms"].as_u64().unwrap() > 0);
    let entered = count(&|r| r["user_entered_at_ms"].as_u64().unwrap() > 0);
    assert!(done > 0.0 && entered > 0.0, "the run reset devices");

    let cp = scrape(&cp_metrics).await;
    let agent = scrape(&agent_metrics).await;
    assert_documented_histograms(&cp, &agent);
    assert_eq!(untyped(&cp, "droidfleet_metrics_missed_events_total"), 0.0);
    let phase = |phase: &str| {
        histogram_count(
            &cp,
            "droidfleet_action_phase_seconds",
            &format!("kind=reset_passcode,phase={phase}"),
        )
    };
    // The setup resets of the pending-token devices are delivered and applied, never entered.
    assert_eq!(phase("delivered"), delivered + setup_resets);
    assert_eq!(phase("applied"), done + setup_resets);
    assert_eq!(phase("user_entered"), entered);
    assert_eq!(
        histogram_count(
            &cp,
            "droidfleet_admin_call_duration_seconds",
            "operation=ResetPasscode"
        ),
        DEVICES as f64 + setup_resets,
        "one ResetPasscode call per device, plus the setup resets"
    );
    // Each delivered command was handled once by its device, with a result or a refusal.
    let handled: f64 = histogram_counts(&agent, "droidfleet_agent_command_duration_seconds")
        .iter()
        .map(|(_, count)| count)
        .sum();
    assert_eq!(handled, delivered + setup_resets);
    // Every Argon2id run of the devices, inferred from the report: each user's own passcode set
    // at the start (a work profile's password too, after the device's PIN is confirmed: two
    // runs), each setup reset's new wrap, and the runs of each done reset (its wrap and the
    // user's entries, which the report derives from the device's plan). A refused reset stops
    // before the wrap.
    let work_profiles = count(&|r| r["scope"] == "work_profile");
    let done_runs: f64 = records
        .iter()
        .filter(|r| r["state"] == "done")
        .map(|r| r["argon2_runs"].as_f64().unwrap())
        .sum();
    assert_eq!(
        histogram_count(&agent, "droidfleet_agent_argon2_seconds", ""),
        DEVICES as f64 + 2.0 * work_profiles + setup_resets + done_runs
    );
    // The report's headline latency counts the done resets of devices kept online.
    let headline = report["latency_ms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["phase"] == "requested_to_applied")
        .unwrap();
    let online_done = count(&|r| r["state"] == "done" && r["offline_ms"].is_null());
    assert_eq!(headline["count"].as_f64().unwrap(), online_done);

    // The HDR log next to report.json, read with HdrHistogram's own reader: one interval per
    // phase of the report (and the scheduler lag), each holding the phase's samples.
    let log = std::fs::read(report_dir.join("latency.hlog")).unwrap();
    let mut deserializer = Deserializer::new();
    let mut logged = BTreeMap::new();
    for entry in IntervalLogIterator::new(&log) {
        let LogEntry::Interval(interval) = entry.unwrap() else {
            continue;
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(interval.encoded_histogram())
            .unwrap();
        let histogram: Histogram<u64> = deserializer.deserialize(&mut bytes.as_slice()).unwrap();
        logged.insert(interval.tag().unwrap().as_str().to_string(), histogram);
    }
    assert!(logged.contains_key("scheduler_lag"));
    for phase in report["latency_ms"].as_array().unwrap() {
        let name = phase["phase"].as_str().unwrap();
        let histogram = &logged[name];
        assert_eq!(histogram.len(), phase["count"].as_u64().unwrap(), "{name}");
        if !histogram.is_empty() {
            let p99_ms = histogram.value_at_quantile(0.99) as f64 / 1000.0;
            assert_eq!(p99_ms, phase["p99"].as_f64().unwrap(), "{name}");
        }
    }

    // Ctrl-C ends the waiting load test, successfully.
    let interrupted = Command::new("kill")
        .args(["-INT", &loadtest.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let status = tokio::task::spawn_blocking(move || loadtest.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
}
