//! The Grafana dashboard under `deploy/grafana/` queries only metrics the two processes expose:
//! every metric name in its panels' PromQL is a sample name of a family in the control plane's or
//! the agent's exposition text. And it shows every histogram they expose: a latency the processes
//! measure is one the dashboard draws.

use droidfleet_agent::metrics::AgentMetrics;
use droidfleet_control_plane::metrics::ControlPlaneMetrics;
use serde_json::Value;
use std::collections::BTreeSet;

const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/grafana/droidfleet.json"
);

/// The sample names each family in `text` (OpenMetrics) may carry, from its `# TYPE` line: a
/// counter's samples end in `_total`, a histogram's in `_bucket`, `_sum` and `_count`.
fn sample_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (family, kind) = rest.split_once(' ').expect("a TYPE line names a type");
        match kind {
            "counter" => {
                names.insert(format!("{family}_total"));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{family}{suffix}"));
                }
            }
            "gauge" => {
                names.insert(family.to_string());
            }
            other => panic!("{family}: a metric type the dashboard test does not know: {other}"),
        }
    }
    names
}

/// The metric names in a PromQL expression: identifiers that start with `droidfleet_` (every
/// metric the processes expose does; functions, labels and keywords do not).
fn metric_names(expression: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expression;
    while let Some(start) = rest.find("droidfleet_") {
        let preceded_by_identifier = rest[..start]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if !preceded_by_identifier {
            names.push(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    names
}

/// Both processes' exposition text, every family with a series.
fn exposition() -> String {
    // A labelled family appears in the text once it has a series; the admin calls' have none
    // until the first call, so one is recorded.
    let control_plane = ControlPlaneMetrics::default();
    control_plane.admin_call("ResetPasscode", "ok", std::time::Duration::from_millis(2));
    control_plane.render() + &AgentMetrics::default().render()
}

fn dashboard_panels() -> Vec<Value> {
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(DASHBOARD).expect("the dashboard reads"))
            .expect("the dashboard is JSON");
    dashboard["panels"]
        .as_array()
        .expect("the dashboard has panels")
        .clone()
}

/// Every PromQL expression of `panel`'s targets.
fn expressions(panel: &Value) -> Vec<&str> {
    panel["targets"]
        .as_array()
        .expect("a panel has targets")
        .iter()
        .map(|target| {
            target["expr"]
                .as_str()
                .expect("a target has a PromQL expression")
        })
        .collect()
}

#[test]
fn every_metric_the_dashboard_queries_is_exposed() {
    let exposed = sample_names(&exposition());
    let panels = dashboard_panels();
    assert!(!panels.is_empty());
    let mut queried = 0;
    for panel in &panels {
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        let expressions = expressions(panel);
        assert!(!expressions.is_empty(), "panel {title} queries nothing");
        for expression in expressions {
            let names = metric_names(expression);
            assert!(
                !names.is_empty(),
                "panel {title}: no metric in {expression}"
            );
            for name in names {
                assert!(
                    exposed.contains(&name),
                    "panel {title} queries {name}, which neither process exposes; exposed: {exposed:?}"
                );
                queried += 1;
            }
        }
    }
    assert!(queried >= panels.len());
}

#[test]
fn every_histogram_is_on_the_dashboard() {
    let exposition = exposition();
    let histograms: Vec<&str> = exposition
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" histogram"))
        .collect();
    assert!(
        histograms.contains(&"droidfleet_agent_argon2_seconds"),
        "{histograms:?}"
    );
    let queried: BTreeSet<String> = dashboard_panels()
        .iter()
        .flat_map(|panel| expressions(panel).into_iter().flat_map(metric_names))
        .collect();
    for histogram in histograms {
        assert!(
            ["_bucket", "_count", "_sum"]
                .iter()
                .any(|suffix| queried.contains(&format!("{histogram}{suffix}"))),
            "no panel shows the histogram {histogram}"
        );
    }
}

#[test]
fn metric_names_are_read_from_promql() {
    assert_eq!(
        metric_names(
            "histogram_quantile(0.99, sum by (le) (rate(droidfleet_a_bucket{kind=\"x\"}[1m]))) - my_droidfleet_b + droidfleet_c"
        ),
        ["droidfleet_a_bucket", "droidfleet_c"]
    );
}
