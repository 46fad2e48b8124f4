//! `droidfleet loadtest` as a user runs it: the real binary, small fleets with every injected
//! fault, user churn, reboots and message delays and duplicates, a fixed seed. Checks the report's arithmetic,
//! that failures are only the injected ones, that the HTML page is self-contained, that the seed
//! alone decides each device's fate, that a spawned control plane is measured as its own process
//! and ended, that --connect-only stops after connecting, that each bad option is refused
//! naming the problem, and that report.html renders in a real browser.

use crate::support::Browser;
use fantoccini::Locator;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

const DEVICES: usize = 20;
/// Every kind of message fault, often enough that 20 devices meet them: what a broken session
/// loses, the protocol recovers (redelivered commands, re-sent escrows and entries), so every
/// device still ends as its injected failure predicts.
const FAULTS: &str = "delay=0.05:20ms,duplicate=0.05,drop=0.02,disconnect=0.02";

fn droidfleet_loadtest(report_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_droidfleet"))
        .arg("loadtest")
        .arg("--report-dir")
        .arg(report_dir)
        .args(args)
        .env_remove("DROIDFLEET_TOKEN_FILE")
        .env_remove("RUST_LOG")
        .output()
        .expect("run droidfleet loadtest")
}

/// A small fleet with every injected failure, churn, reboots and message faults, and cheap
/// baselines.
fn loadtest(report_dir: &Path, extra: &[&str]) -> Output {
    let devices = DEVICES.to_string();
    let mut args = vec![
        "--devices",
        &devices,
        "--seed",
        "7",
        "--no-policy-share",
        "0.2",
        "--pending-token-share",
        "0.2",
        "--typo-probability",
        "0.3",
        "--user-delay-ms",
        "20",
        "--offline-share",
        "0.3",
        "--offline-ms",
        "30",
        "--reboot-share",
        "0.3",
        "--faults",
        FAULTS,
        "--echo-calls",
        "300",
        "--argon2-hashes",
        "40",
        "--deadline",
        "60",
    ];
    args.extend_from_slice(extra);
    droidfleet_loadtest(report_dir, &args)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

fn read_report(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("report.json")).expect("report.json"))
        .expect("report.json parses")
}

/// Each device's decisions as the report lists them.
fn decisions(report: &Value) -> Vec<String> {
    report["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            [
                "name",
                "ownership",
                "fault",
                "user_delay_ms",
                "typo",
                "offline_ms",
                "reboot",
            ]
            .map(|key| d[key].to_string())
            .join(",")
        })
        .collect()
}

fn processes(report: &Value) -> &Vec<Value> {
    report["resources"]["processes"].as_array().unwrap()
}

#[test]
fn a_small_fleet_with_faults_churn_and_reboots_ends_as_injected_and_the_seed_fixes_the_decisions() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    // Independent processes, run side by side to keep the test short: the first with the
    // embedded control plane and the baselines, the second with a spawned control plane and a
    // rate.
    let outputs: Vec<Output> = std::thread::scope(|scope| {
        let embedded = scope.spawn(|| loadtest(dirs[0].path(), &[]));
        let spawned = scope.spawn(|| {
            loadtest(
                dirs[1].path(),
                &[
                    "--control-plane",
                    "spawn",
                    "--no-baselines",
                    "--rate",
                    "100",
                ],
            )
        });
        vec![embedded.join().unwrap(), spawned.join().unwrap()]
    });
    outputs.iter().for_each(assert_success);
    let stdout = text(&outputs[0].stdout);
    for heading in [
        "Headline",
        "requested → applied",
        "Outcomes",
        "Latency",
        "requested_to_applied",
        "online_to_applied",
        "echo baseline",
        "Argon2 bound",
        "Resources per process",
        "argon2: light",
    ] {
        assert!(stdout.contains(heading), "{heading} missing in:\n{stdout}");
    }

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
    // Churn, reboots and message faults still end each reset as its injected fault predicts:
    // done and entered, or the fault's failure.
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
                let runs = 2
                    + u64::from(d["typo"] == true)
                    + u64::from(d["reboot"] == true && d["scope"] == "work_profile");
                assert_eq!(d["argon2_runs"], runs, "{d:#}");
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
        if d["offline_ms"].is_u64() {
            assert!(
                d["online_again_at_ms"].as_u64().unwrap() > 0,
                "an offline device comes back: {d:#}"
            );
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
    let behaviour = &report["behaviour"];
    let offline = devices.iter().filter(|d| d["offline_ms"].is_u64()).count();
    let reboots = devices.iter().filter(|d| d["reboot"] == true).count();
    assert!(offline > 0 && reboots > 0, "seed 7 churns and reboots some");
    assert_eq!(behaviour["offline"], offline);
    assert_eq!(behaviour["reboots"], reboots);
    assert_eq!(behaviour["faults"], FAULTS);
    let injected: u64 = behaviour["faults_injected"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert!(injected > 0, "faults were injected: {behaviour:#}");
    for row in report["outcomes"].as_array().unwrap() {
        let code = row["error_code"].as_str().unwrap();
        assert!(
            ["-", "no_passcode_policy", "token_not_active"].contains(&code),
            "only injected failures: {row}"
        );
    }

    let latency = report["latency_ms"].as_array().unwrap();
    assert_eq!(latency.len(), 6);
    let done = devices.iter().filter(|d| d["state"] == "done").count() as u64;
    let done_online = devices
        .iter()
        .filter(|d| d["state"] == "done" && d["offline_ms"].is_null())
        .count() as u64;
    assert_eq!(latency[2]["phase"], "requested_to_applied");
    assert_eq!(
        latency[2]["count"], done_online,
        "offline devices are left out"
    );
    assert_eq!(latency[3]["phase"], "online_to_applied");
    assert_eq!(latency[3]["count"], done - done_online);
    assert!(latency[2]["p50"].as_f64().unwrap() <= latency[2]["max"].as_f64().unwrap());
    assert!(report["throughput"]["finished_per_s"].as_f64().unwrap() > 0.0);
    assert!(report["scheduler_lag_ms"]["count"].as_u64().unwrap() > 0);

    // The baselines: three rounds each, and ratios that follow from the figures.
    let baselines = &report["baselines"];
    assert_eq!(baselines["echo"]["calls_per_round"], 300);
    assert_eq!(
        baselines["echo"]["rounds_calls_per_s"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(baselines["argon2"]["hashes_per_round"], 40);
    let echo = baselines["echo"]["calls_per_s"].as_f64().unwrap();
    let bound = baselines["argon2_bound_resets_per_s"].as_f64().unwrap();
    assert!(echo > 0.0 && bound > 0.0, "{baselines:#}");
    let finished = report["throughput"]["finished_per_s"].as_f64().unwrap();
    let ratio = baselines["ratio_to_echo"].as_f64().unwrap();
    assert!((ratio - finished / echo).abs() < 1e-9, "{baselines:#}");
    let runs = baselines["argon2_runs_per_done_reset"].as_f64().unwrap();
    assert!((2.0..=4.0).contains(&runs), "{baselines:#}");

    // The embedded mode is one process.
    let own = processes(&report);
    assert_eq!(own.len(), 1);
    assert_eq!(own[0]["role"], "control plane + agent + load generator");
    assert!(own[0]["peak_rss_kib"].as_u64().unwrap() > 0);

    let html = std::fs::read_to_string(dirs[0].path().join("report.html")).unwrap();
    assert!(
        html.matches("<svg").count() >= 10,
        "six histograms, throughput and three over time"
    );
    assert!(html.contains("Baselines") && html.contains("Resources per process"));
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

    // The spawned control plane: measured as its own process, and ended after the run.
    let spawned = read_report(dirs[1].path());
    assert_eq!(spawned["completed"], true);
    assert_eq!(spawned["unexpected"], 0, "{:#}", spawned["devices"]);
    assert_eq!(spawned["control_plane"]["mode"], "spawned");
    assert!(spawned["baselines"].is_null(), "--no-baselines");
    assert!(!text(&outputs[1].stdout).contains("echo baseline"));
    let both = processes(&spawned);
    assert_eq!(both.len(), 2, "{both:#?}");
    assert_eq!(both[0]["role"], "control plane");
    assert_eq!(both[1]["role"], "agent + load generator");
    assert_ne!(both[0]["pid"], both[1]["pid"]);
    for process in both {
        assert!(process["peak_rss_kib"].as_u64().unwrap() > 0, "{process:#}");
        assert!(process["cpu_s"].as_f64().unwrap() >= 0.0, "{process:#}");
        assert!(process["memory_per_device_kib"].is_number(), "{process:#}");
    }
    let pid = both[0]["pid"].as_u64().unwrap();
    assert_eq!(spawned["control_plane"]["pid"], pid.to_string());
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the spawned control plane {pid} was ended and reaped"
    );
    // With a rate, in-flight does not throttle, and the rate shapes the issuing.
    let issue = &spawned["issue"];
    assert_eq!(issue["target_per_s"], 100.0);
    assert!(issue["in_flight_limit"].is_null(), "{issue:#}");
    assert_eq!(issue["issued"], DEVICES);
    let issued = issue["issued_per_s"].as_f64().unwrap();
    assert!((25.0..=200.0).contains(&issued), "{issue:#}");

    // The seed alone decides: the same decisions whatever the control plane or the rate.
    assert_eq!(report["decision_digest"], spawned["decision_digest"]);
    assert_eq!(decisions(&report), decisions(&spawned));
}

#[test]
fn connect_only_connects_the_fleet_measures_each_side_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let output = droidfleet_loadtest(
        dir.path(),
        &[
            "--devices",
            "30",
            "--connect-only",
            "--control-plane",
            "spawn",
            "--connections",
            "3",
            "--ramp-up-ms",
            "100",
            "--deadline",
            "60",
        ],
    );
    assert_success(&output);
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("connect-only: 30 devices enrolled and connected"),
        "{stdout}"
    );
    assert!(!stdout.contains("Outcomes"), "no resets: {stdout}");
    let report = read_report(dir.path());
    assert_eq!(report["completed"], true);
    assert_eq!(report["config"]["mode"], "connect_only");
    assert_eq!(report["config"]["connections"], 3);
    assert_eq!(report["config"]["ramp_up_ms"], 100);
    assert!(report["baselines"].is_null());
    assert_eq!(report["outcome_total"], 0);
    assert!(report["devices"].as_array().unwrap().is_empty());
    assert!(report["durations"]["connect_s"].as_f64().unwrap() > 0.0);
    let both = processes(&report);
    assert_eq!(both.len(), 2);
    for process in both {
        let before = process["rss_before_connect_kib"].as_u64().unwrap();
        let after = process["rss_after_connect_kib"].as_u64().unwrap();
        let per_device = process["memory_per_device_kib"].as_f64().unwrap();
        assert!(
            (per_device - after.saturating_sub(before) as f64 / 30.0).abs() < 1e-9,
            "{process:#}"
        );
    }
}

/// A fleet with more resets in flight than a person's admin may watch at once (the server's
/// default `--max-watches-per-principal` is 64): the spawned control plane is started with room
/// for one watch per device, so every reset is followed to its end.
#[test]
fn more_resets_in_flight_than_the_default_watch_limit_are_all_followed() {
    let dir = tempfile::tempdir().unwrap();
    let output = droidfleet_loadtest(
        dir.path(),
        &[
            "--devices",
            "100",
            "--seed",
            "5",
            "--control-plane",
            "spawn",
            "--no-baselines",
            "--deadline",
            "120",
        ],
    );
    assert_success(&output);
    let report = read_report(dir.path());
    assert_eq!(report["completed"], true);
    assert_eq!(report["outcome_total"], 100);
    assert_eq!(report["unexpected"], 0, "{:#}", report["behaviour"]);
}

/// A fleet of mixed Android versions and makers ends every device as its fault, version and
/// profile predict: on `short-keyguard`, whose lock screen stops at 6 characters, a healthy
/// work-profile device's reset to a generated 8-character password fails with a policy
/// violation, while its device-level resets (6 digits) are done. The outcome table counts by
/// API level and profile, and the seed alone fixes every device's build. The second run is a
/// short soak (`--duration`) of the same fleet: every device reset again and again, each reset
/// still ending as predicted, and the time series counting every one of them.
#[test]
fn a_mixed_fleet_ends_as_its_versions_and_profiles_predict() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let args = [
        "--devices",
        "36",
        "--seed",
        "11",
        "--mix",
        "cosu=1,cope=1,byod=1",
        "--android",
        "26=1,29=1,30=1,31=1,34=1,35=1",
        "--profile",
        "aosp=2,short-keyguard=1,sticky-work-notification=1",
        "--no-policy-share",
        "0.1",
        "--pending-token-share",
        "0.1",
        "--user-delay-ms",
        "10",
        "--no-baselines",
        "--deadline",
        "60",
    ];
    let soak: Vec<&str> = args
        .iter()
        .copied()
        .chain(["--rate", "40", "--duration", "3s"])
        .collect();
    let outputs: Vec<Output> = std::thread::scope(|scope| {
        let once = scope.spawn(|| droidfleet_loadtest(dirs[0].path(), &args));
        let soaked = scope.spawn(|| droidfleet_loadtest(dirs[1].path(), &soak));
        vec![once.join().unwrap(), soaked.join().unwrap()]
    });
    outputs.iter().for_each(assert_success);
    let stdout = text(&outputs[0].stdout);
    assert!(
        stdout.contains("android") && stdout.contains("API 26"),
        "{stdout}"
    );
    assert!(stdout.contains("not as predicted"), "{stdout}");

    let reports = [read_report(dirs[0].path()), read_report(dirs[1].path())];
    let report = &reports[0];
    assert_eq!(report["unexpected"], 0, "{:#}", report["devices"]);
    let builds = |report: &Value| -> Vec<String> {
        report["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| format!("{} {} {}", d["name"], d["api_level"], d["profile"]))
            .collect()
    };
    assert_eq!(
        builds(&reports[0]),
        builds(&reports[1]),
        "the seed fixes the builds"
    );
    let devices = report["devices"].as_array().unwrap();
    let levels: std::collections::BTreeSet<u64> = devices
        .iter()
        .map(|d| d["api_level"].as_u64().unwrap())
        .collect();
    assert_eq!(
        levels.len(),
        6,
        "seed 11 gives every listed level: {levels:?}"
    );
    let mut capped_work = 0;
    for d in devices {
        assert_eq!(d["state"], d["predicted"]["state"], "{d:#}");
        let short = d["profile"] == "short-keyguard";
        if d["fault"] == "none" && short && d["scope"] == "work_profile" {
            capped_work += 1;
            assert_eq!(d["state"], "failed", "{d:#}");
            assert_eq!(d["error_code"], "passcode_policy_violation", "{d:#}");
        } else if d["fault"] == "none" {
            assert_eq!(d["state"], "done", "{d:#}");
            assert!(d["user_entered_at_ms"].as_u64().unwrap() > 0, "{d:#}");
        }
    }
    assert!(
        capped_work > 0,
        "seed 11 puts healthy work devices on short-keyguard"
    );
    let rows = report["outcomes"].as_array().unwrap();
    assert!(
        rows.iter()
            .all(|r| r["api_level"].is_u64() && r["profile"].is_string())
    );
    let counted: u64 = rows.iter().map(|r| r["count"].as_u64().unwrap()).sum();
    assert_eq!(counted, 36);
    assert_time_series(report, 36, 36);

    // The soak: 40 resets/s for 3 s is 120 resets over 36 devices, each one counted.
    let soaked = &reports[1];
    assert_eq!(soaked["config"]["mode"], "soak");
    assert_eq!(soaked["config"]["duration_s"], 3.0);
    assert_eq!(soaked["completed"], true);
    assert_eq!(soaked["issue"]["issued"], 120, "{:#}", soaked["issue"]);
    assert_eq!(soaked["outcome_total"], 120);
    let counted: u64 = soaked["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["count"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, 120);
    assert_eq!(soaked["unexpected"], 0, "{:#}", soaked["outcomes"]);
    // Devices were reset more than once: more resets ended done than in one reset per device.
    assert!(
        soaked["throughput"]["done"].as_u64().unwrap()
            > report["throughput"]["done"].as_u64().unwrap(),
        "{:#}",
        soaked["throughput"]
    );
    assert_eq!(soaked["devices"].as_array().unwrap().len(), 36);
    let seconds = assert_time_series(soaked, 120, 36);
    assert!(seconds >= 3, "a 3 s soak has at least 3 points: {seconds}");
}

/// The report's time series: one point per second in order, arrays of one length, every
/// measured reset ended in some second, never more in flight than devices (a device has one
/// reset at a time) and none at the end, and sensible percentiles and RSS. Returns the number
/// of points.
fn assert_time_series(report: &Value, resets: u64, devices: u64) -> usize {
    let series = &report["time_series"];
    let array = |key: &str| {
        series[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key}: {series:#}"))
    };
    let seconds: Vec<u64> = array("second")
        .iter()
        .map(|s| s.as_u64().unwrap())
        .collect();
    assert!(!seconds.is_empty(), "{series:#}");
    assert_eq!(seconds, (0..seconds.len() as u64).collect::<Vec<_>>());
    for key in ["finished", "in_flight", "p50_ms", "p99_ms", "rss_kib"] {
        assert_eq!(array(key).len(), seconds.len(), "{key}: {series:#}");
    }
    let finished: u64 = array("finished").iter().map(|n| n.as_u64().unwrap()).sum();
    assert_eq!(finished, resets, "{series:#}");
    assert_eq!(array("in_flight").last().unwrap(), 0, "{series:#}");
    assert!(
        array("in_flight")
            .iter()
            .all(|n| n.as_u64().unwrap() <= devices),
        "{series:#}"
    );
    let mut with_latency = 0;
    for (p50, p99) in array("p50_ms").iter().zip(array("p99_ms")) {
        assert_eq!(p50.is_null(), p99.is_null(), "{series:#}");
        if let (Some(p50), Some(p99)) = (p50.as_f64(), p99.as_f64()) {
            assert!(0.0 <= p50 && p50 <= p99, "{series:#}");
            with_latency += 1;
        }
    }
    assert!(with_latency > 0, "some second has latencies: {series:#}");
    let load_generator = processes(report)
        .iter()
        .find(|p| p["role"].as_str().unwrap().ends_with("load generator"))
        .unwrap();
    let peak = load_generator["peak_rss_kib"].as_u64().unwrap();
    for rss in array("rss_kib") {
        let rss = rss.as_u64().unwrap();
        assert!(rss > 0 && rss <= peak, "RSS {rss} KiB, peak {peak} KiB");
    }
    seconds.len()
}

#[test]
fn each_bad_option_is_refused_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "not-a-real-token").unwrap();
    let token = token.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--mix", "cosu=1,phone=2"], "unknown enrollment type"),
        (
            &["--android", "25=1,34=1"],
            "--android part \"25=1\": Android API level 25 is not simulated",
        ),
        (
            &["--profile", "aosp=1,pixel=1"],
            "--profile part \"pixel=1\": unknown maker profile",
        ),
        (&["--control-plane", "nowhere"], "give embedded, spawn"),
        (
            &["--control-plane-pid", "123"],
            "--control-plane-pid 123: only with --control-plane URL",
        ),
        (
            &[
                "--control-plane",
                "http://127.0.0.1:1",
                "--token-file",
                token,
                "--control-plane-pid",
                "4000000000",
            ],
            "--control-plane-pid 4000000000: no such process",
        ),
        (&["--connections", "0"], "--connections 0: give 1 to 10000"),
        (
            &["--ramp-up-ms", "60000", "--deadline", "60"],
            "--ramp-up-ms 60000 is not below --deadline 60 s",
        ),
        (
            &["--offline-share", "1.5"],
            "--offline-share 1.5: give a number from 0 to 1",
        ),
        (
            &["--reboot-share=-0.1"],
            "--reboot-share -0.1: give a number from 0 to 1",
        ),
        (
            &["--offline-ms", "0"],
            "--offline-ms 0 with --offline-share 0.05",
        ),
        (
            &["--faults", "drop=2"],
            "probability 2 is not between 0 and 1",
        ),
        (&["--faults", "dorp=0.1"], "unknown fault \"dorp\""),
        (
            &["--connect-only", "--rate", "10"],
            "'--connect-only' cannot be used with '--rate",
        ),
        (&["--concurrency", "0"], "--concurrency 0: give at least 1"),
        (&["--echo-calls", "0"], "--echo-calls 0: give at least 1"),
        (
            &["--argon2-hashes", "0"],
            "--argon2-hashes 0: give at least 1",
        ),
        (
            &["--duration", "10s"],
            "--duration 10s: needs a --rate above 0",
        ),
        (
            &["--duration", "2m", "--rate", "5"],
            "--duration 2m is not below --deadline 120 s",
        ),
        (
            &["--duration", "0s", "--rate", "5"],
            "--duration 0s: give a positive length",
        ),
        (
            &["--duration", "soon", "--rate", "5"],
            "invalid value 'soon' for '--duration",
        ),
        (
            &["--connect-only", "--duration", "10s"],
            "'--connect-only' cannot be used with '--duration",
        ),
    ];
    for (args, expected) in cases {
        let report_dir = dir.path().join("report");
        let output = droidfleet_loadtest(&report_dir, args);
        let stderr = text(&output.stderr);
        assert!(!output.status.success(), "{args:?} should fail");
        assert!(
            stderr.contains(expected),
            "{args:?}: expected {expected:?} in:\n{stderr}"
        );
        assert!(
            !report_dir.join("report.json").exists(),
            "{args:?} wrote no report"
        );
    }
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

#[tokio::test(flavor = "multi_thread")]
async fn the_html_report_renders_in_a_real_browser_with_its_charts_drawn() {
    let dir = tempfile::tempdir().unwrap();
    let report_dir = dir.path().to_path_buf();
    let output = tokio::task::spawn_blocking(move || loadtest(&report_dir, &["--no-baselines"]))
        .await
        .unwrap();
    assert_success(&output);
    let page = dir.path().join("report.html");
    let browser = Browser::start().await;
    browser
        .client
        .goto(&format!("file://{}", page.display()))
        .await
        .unwrap();
    let headings = browser.client.find_all(Locator::Css("h2")).await.unwrap();
    let mut titles = Vec::new();
    for heading in headings {
        titles.push(heading.text().await.unwrap());
    }
    for expected in [
        "Outcomes",
        "Throughput",
        "Over time",
        "Resources per process",
    ] {
        assert!(
            titles.iter().any(|t| t.starts_with(expected)),
            "{expected} is shown: {titles:?}"
        );
    }
    // Laid out and drawn: every chart has a size on the page and shapes inside it.
    let charts = browser
        .client
        .execute(
            "return Array.from(document.querySelectorAll('svg')).map(s => { \
               const r = s.getBoundingClientRect(); \
               return [r.width, r.height, s.querySelectorAll('rect,path,polyline,line').length]; })",
            vec![],
        )
        .await
        .unwrap();
    let charts = charts.as_array().unwrap();
    assert!(
        charts.len() >= 10,
        "six histograms, throughput and three over time: {charts:?}"
    );
    for chart in charts {
        let [width, height, shapes] = [0, 1, 2].map(|i| chart[i].as_f64().unwrap());
        assert!(
            width > 100.0 && height > 100.0,
            "a chart with a size: {chart:?}"
        );
        assert!(shapes > 3.0, "a chart with shapes drawn: {chart:?}");
    }
    let png = browser.client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    browser.close().await;
}
