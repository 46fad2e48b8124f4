//! `droidfleet loadtest --console ADDR` in a real headless Chromium: the fleet wall comes up with
//! the run, redraws itself as the run goes (counts, charts, screens with the reset's
//! notification), ends with the same counts as the report, and each screen opens its device.
//!
//! `DROIDFLEET_SCREENSHOTS=docs cargo test --test e2e fleet_wall::` also writes the README's
//! pictures of the wall.

use crate::support::{Browser, DEADLINE};
use fantoccini::Locator;
use serde_json::Value;
use std::io::{BufRead, BufReader, Lines};
use std::process::{ChildStdout, Command, Stdio};

const DEVICES: usize = 40;

/// Reads the child's stdout until a line starts with `prefix`; returns the rest of that line.
async fn line_starting(
    lines: Lines<BufReader<ChildStdout>>,
    prefix: &'static str,
) -> (Lines<BufReader<ChildStdout>>, String) {
    let read = tokio::task::spawn_blocking(move || {
        let mut lines = lines;
        loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("the load test ended before printing {prefix:?}"))
                .unwrap();
            if let Some(rest) = line.strip_prefix(prefix) {
                return (lines, rest.to_string());
            }
        }
    });
    tokio::time::timeout(DEADLINE * 2, read)
        .await
        .expect("the load test prints in time")
        .unwrap()
}

async fn number(browser: &Browser, css: &str) -> u64 {
    browser.text(css).await.trim().parse().unwrap()
}

#[tokio::test]
async fn the_fleet_wall_follows_a_load_test_and_opens_each_device() {
    let report_dir = tempfile::tempdir().unwrap();
    let devices = DEVICES.to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_droidfleet"))
        .arg("loadtest")
        .arg("--report-dir")
        .arg(report_dir.path())
        .args(["--devices", &devices, "--seed", "7", "--rate", "5"])
        // Users take a couple of seconds to type, so screens show their notification a while.
        .args(["--user-delay-ms", "2000", "--no-baselines"])
        .args(["--console", "127.0.0.1:0", "--console-wait"])
        .env_remove("DROIDFLEET_TOKEN_FILE")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (lines, address) = line_starting(lines, "fleet wall on ").await;
    let browser = Browser::start().await;
    browser.client.goto(&address).await.unwrap();

    // While the run goes: the charts grow, and a reset device shows the notification its user
    // must act on. The page tells when, through a MutationObserver on the live panel.
    let seen = browser
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1]; \
             const wall = document.getElementById('wall'); \
             const ready = () => { \
               const line = wall.querySelector('svg polyline'); \
               const points = line ? line.getAttribute('points').split(' ').filter(x => x) : []; \
               return points.length >= 3 && wall.querySelector('#screens .note') !== null; }; \
             if (ready()) { done(true); } else { \
               new MutationObserver((_, observer) => { \
                 if (ready()) { observer.disconnect(); done(true); } \
               }).observe(wall, { childList: true, subtree: true }); }",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(seen, true);
    browser.screenshot("fleet-wall").await;

    // The run ends; the wall, redrawn live all along, ends on the report's figures.
    let (_lines, _) = line_starting(lines, "the fleet wall stays on ").await;
    browser.wait_for("#wall h1[data-phase=finished]").await;
    let updates: u64 = browser
        .client
        .find(Locator::Css("#wall"))
        .await
        .unwrap()
        .attr("data-updates")
        .await
        .unwrap()
        .expect("the live panel was redrawn")
        .parse()
        .unwrap();
    assert!(updates >= 2, "redrawn {updates} time(s)");
    let report: Value =
        serde_json::from_slice(&std::fs::read(report_dir.path().join("report.json")).unwrap())
            .unwrap();
    let records = report["devices"].as_array().unwrap();
    assert_eq!(records.len(), DEVICES);
    let with_state = |state: &str| records.iter().filter(|r| r["state"] == state).count() as u64;
    let entered = records
        .iter()
        .filter(|r| r["user_entered_at_ms"].as_u64().unwrap_or(0) > 0)
        .count() as u64;
    assert_eq!(number(&browser, "#count-done").await, with_state("done"));
    assert_eq!(
        number(&browser, "#count-failed").await,
        with_state("failed")
    );
    assert_eq!(number(&browser, "#count-entered").await, entered);
    assert_eq!(number(&browser, "#count-unexpected").await, 0);
    assert!(with_state("done") > 0);
    let charts = browser
        .client
        .execute(
            "return Array.from(document.querySelectorAll('#wall svg polyline'))\
               .map(p => p.getAttribute('points').split(' ').filter(x => x).length)",
            vec![],
        )
        .await
        .unwrap();
    let points: Vec<u64> = charts
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .collect();
    assert_eq!(points.len(), 3, "throughput, p50 and p99");
    assert!(points[0] >= 2, "throughput has a line: {points:?}");
    // The grid is redrawn on every sample, so its screens are read in one script and the
    // fourth is clicked by name (found again if a redraw made it stale).
    let names = browser
        .client
        .execute(
            "return Array.from(document.querySelectorAll('#screens a.screen'))\
               .map(a => a.dataset.device)",
            vec![],
        )
        .await
        .unwrap();
    let names: Vec<&str> = names
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 24);

    // A screen opens its device.
    let name = names[3].to_string();
    browser
        .click(&format!(r#"#screens a.screen[data-device="{name}"]"#))
        .await;
    browser.wait_for("#device-reset").await;
    assert_eq!(browser.text("#device-name").await, name);
    let record = records.iter().find(|r| r["name"] == name.as_str()).unwrap();
    assert_eq!(
        browser.text("#reset-state").await,
        record["state"].as_str().unwrap().replace('_', " ")
    );
    browser.screenshot("fleet-wall-device").await;
    browser.close().await;

    // Ctrl-C ends the wall and the command, successfully.
    let interrupted = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
}
