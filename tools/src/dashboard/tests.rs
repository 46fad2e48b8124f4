//! The renderer without a Prometheus: a recorded `query_range` answer read into series, the
//! shipped dashboard read and laid out on the grid, legends and units written, the time range's
//! forms, and the SVG drawn from them.

use super::draw::{self, Line, Rect};
use super::grafana::{Dashboard, GridPos, Unit, legend};
use super::prometheus::parse_answer;
use super::*;
use std::collections::BTreeMap;

/// Prometheus 2.42's answer to the p99 of each reset phase over five seconds of the README's
/// run, as it came (the phases with no reset yet are NaN).
const ANSWER: &str = include_str!("testdata/query_range.json");
const DASHBOARD: &str = include_str!("../../../deploy/grafana/droidfleet.json");

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn a_range_answer_is_read_into_series_with_gaps() {
    let series = parse_answer(200, ANSWER.as_bytes()).unwrap();
    let phases: Vec<&str> = series.iter().map(|s| s.labels["phase"].as_str()).collect();
    assert_eq!(phases, ["applied", "delivered", "user_entered"]);
    assert_eq!(series[0].labels, labels(&[("phase", "applied")]));
    assert!(series.iter().all(|s| s.points.len() == 5));
    assert_eq!(series[0].points[1], (1_795_963_060.0, 0.994375));
    assert_eq!(series[1].points[0], (1_795_963_059.0, 2.4587499999999998));
    // NaN (a quantile over no samples yet) is a gap.
    assert!(series[0].points[0].1.is_nan());
    assert!(series[2].points[..3].iter().all(|(_, v)| v.is_nan()));
    assert_eq!(series[2].points[3], (1_795_963_062.0, 0.98));
    let infinite = br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"+Inf"],[2,"-Inf"],[3,"1e-3"]]}]}}"#;
    let points = &parse_answer(200, infinite).unwrap()[0].points;
    assert!(points[0].1.is_nan() && points[1].1.is_nan());
    assert_eq!(points[2], (3.0, 0.001));
}

#[test]
fn prometheus_errors_and_other_answers_are_named() {
    let error = br#"{"status":"error","errorType":"bad_data","error":"1:6: parse error: unexpected \")\""}"#;
    assert_eq!(
        parse_answer(400, error).unwrap_err(),
        "Prometheus answered bad_data: 1:6: parse error: unexpected \")\""
    );
    let not_found = parse_answer(404, b"404 page not found").unwrap_err();
    assert!(
        not_found.starts_with("HTTP 404, not a Prometheus API answer"),
        "{not_found}"
    );
    assert!(not_found.ends_with(": 404 page not found"), "{not_found}");
    let instant = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
    assert_eq!(
        parse_answer(200, instant).unwrap_err(),
        "Prometheus answered a vector, not the matrix a range query gives"
    );
    let bad_value = br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"x"]]}]}}"#;
    assert_eq!(
        parse_answer(200, bad_value).unwrap_err(),
        "\"x\" at 1 is not a number"
    );
}

#[test]
fn the_shipped_dashboard_is_read_with_its_units_and_targets() {
    let dashboard = Dashboard::parse(DASHBOARD).unwrap();
    assert_eq!(dashboard.title, "droidfleet");
    assert_eq!(dashboard.panels.len(), 12);
    let first = &dashboard.panels[0];
    assert_eq!(first.title, "Reset: request to applied (p50, p99)");
    assert_eq!(
        first.grid,
        GridPos {
            x: 0,
            y: 0,
            w: 12,
            h: 8
        }
    );
    assert_eq!(first.unit, Unit::Seconds);
    assert_eq!(first.targets.len(), 2);
    assert_eq!(first.targets[1].legend, "p99");
    let argon2 = dashboard
        .panels
        .iter()
        .find(|p| p.title.starts_with("Agent: Argon2id time"))
        .expect("the Argon2 panel");
    assert!(
        argon2.targets[0]
            .expr
            .contains("droidfleet_agent_argon2_seconds_bucket")
    );
    assert_eq!(dashboard.rows(), 48);
}

#[test]
fn panels_are_laid_out_on_the_grid_without_overlapping() {
    let dashboard = Dashboard::parse(DASHBOARD).unwrap();
    let width = 1600;
    let rects: Vec<Rect> = dashboard
        .panels
        .iter()
        .map(|p| draw::panel_rect(p.grid, width))
        .collect();
    // The first panel: 10 px margin, 4 px of the gap, below the 52 px header; half the width.
    assert_eq!(
        rects[0],
        Rect {
            x: 14,
            y: 66,
            w: 782,
            h: 232
        }
    );
    // Its neighbour on the right starts where the first ends, past the gap.
    assert_eq!(rects[1].x, rects[0].x + rects[0].w + 8);
    assert_eq!(rects[1].y, rects[0].y);
    let height = draw::height(&dashboard);
    assert_eq!(height, 10 + 52 + 48 * 30 + 10);
    for (i, a) in rects.iter().enumerate() {
        assert!(a.x + a.w <= width - 10 && a.y + a.h <= height - 10, "{a:?}");
        for b in &rects[i + 1..] {
            let apart =
                a.x + a.w <= b.x || b.x + b.w <= a.x || a.y + a.h <= b.y || b.y + b.h <= a.y;
            assert!(apart, "{a:?} overlaps {b:?}");
        }
    }
}

#[test]
fn what_the_renderer_cannot_draw_is_refused_with_the_panel_named() {
    let panel = |kind: &str, unit: &str, x: u32| {
        format!(
            r#"{{"title":"t","panels":[{{"title":"Latency","type":"{kind}","gridPos":{{"x":{x},"y":0,"w":12,"h":8}},"fieldConfig":{{"defaults":{{"unit":"{unit}"}}}},"targets":[{{"expr":"up"}}]}}]}}"#
        )
    };
    assert!(Dashboard::parse(&panel("timeseries", "s", 12)).is_ok());
    assert_eq!(
        Dashboard::parse(&panel("stat", "s", 0)).unwrap_err(),
        "panel 1 (\"Latency\"): type \"stat\" is not drawn by this renderer (timeseries only)"
    );
    assert_eq!(
        Dashboard::parse(&panel("timeseries", "bytes", 0)).unwrap_err(),
        "panel 1 (\"Latency\"): unit \"bytes\" is not one this renderer writes (s, ops, short)"
    );
    assert_eq!(
        Dashboard::parse(&panel("timeseries", "s", 13)).unwrap_err(),
        "panel 1 (\"Latency\"): gridPos x=13 w=12 h=8 is not within the grid's 24 columns"
    );
    let short = panel("timeseries", "s", 0).replace("\"h\":8", "\"h\":3");
    assert_eq!(
        Dashboard::parse(&short).unwrap_err(),
        "panel 1 (\"Latency\"): gridPos h=3 is too short to draw a time series (4 rows at least)"
    );
    let no_grid = r#"{"panels":[{"type":"timeseries","targets":[{"expr":"up"}]}]}"#;
    let problem = Dashboard::parse(no_grid).unwrap_err();
    assert!(problem.contains("missing field `gridPos`"), "{problem}");
    assert_eq!(
        Dashboard::parse(r#"{"panels":[]}"#).unwrap_err(),
        "it has no panels"
    );
}

#[test]
fn legends_follow_grafanas_format() {
    let series = labels(&[("state", "done"), ("phase", "applied")]);
    assert_eq!(legend("{{phase}}", &series, "x"), "applied");
    assert_eq!(legend("p99 {{ phase }}", &series, "x"), "p99 applied");
    // A label the series lacks is empty, as in Grafana.
    assert_eq!(legend("{{state}} {{error_code}}", &series, "x"), "done");
    assert_eq!(
        legend("", &series, "x"),
        "{phase=\"applied\", state=\"done\"}"
    );
    assert_eq!(legend("", &BTreeMap::new(), "sum(up)"), "sum(up)");
    assert_eq!(legend("open {{phase", &series, "x"), "open {{phase");
}

#[test]
fn units_are_written_as_the_axis_shows_them() {
    assert_eq!(Unit::Seconds.format(0.0), "0 s");
    assert_eq!(Unit::Seconds.format(0.00025), "250 µs");
    assert_eq!(Unit::Seconds.format(0.0123), "12.3 ms");
    assert_eq!(Unit::Seconds.format(0.5), "500 ms");
    assert_eq!(Unit::Seconds.format(1.5), "1.5 s");
    assert_eq!(Unit::Seconds.format(120.0), "2 min");
    assert_eq!(Unit::Seconds.format(5400.0), "1.5 h");
    assert_eq!(Unit::PerSecond.format(1500.0), "1.5k/s");
    assert_eq!(Unit::PerSecond.format(0.25), "0.25/s");
    assert_eq!(Unit::Short.format(2_000_000.0), "2M");
    assert_eq!(Unit::Short.format(12.0), "12");
    assert_eq!(draw::clock(1_764_424_800.0 + 3_723.0), "15:02:03");
}

#[test]
fn time_ranges_take_grafanas_relative_forms_and_absolute_times() {
    let now = UNIX_EPOCH + Duration::from_secs(1_764_424_800);
    let range = TimeRange::parse("now-30m", "now", None, now).unwrap();
    assert_eq!(
        range,
        TimeRange {
            start: 1_764_423_000.0,
            end: 1_764_424_800.0,
            step: 3.0
        }
    );
    let range = TimeRange::parse(
        "2025-11-29T13:55:00Z",
        "1764424800",
        Some(Duration::from_secs(1)),
        now,
    )
    .unwrap();
    assert_eq!(
        (range.start, range.end, range.step),
        (1_764_424_500.0, 1_764_424_800.0, 1.0)
    );
    // A short range still has a point a second at least.
    assert_eq!(
        TimeRange::parse("now-1m", "now", None, now).unwrap().step,
        1.0
    );

    let problem = |from: &str, to: &str, step: Option<u64>| {
        TimeRange::parse(from, to, step.map(Duration::from_secs), now)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        problem("yesterday", "now", None),
        "--from: yesterday is not a time: give RFC 3339 (2026-11-29T14:00:00Z), Unix seconds, now or now-DURATION (now-30m)"
    );
    assert!(
        problem("now-3 fortnights", "now", None)
            .starts_with("--from: now-3 fortnights: the duration after now- is not one")
    );
    assert_eq!(
        problem("now", "now-5m", None),
        "--to: now-5m is not after --from now"
    );
    assert_eq!(
        problem("now-5m", "now", Some(0)),
        "--step: a step must be longer than zero"
    );
    assert_eq!(
        problem("now-1d", "now", Some(1)),
        "--step: 86400 points per series; Prometheus answers at most 11000: give a longer step"
    );
}

fn line(name: &str) -> Line {
    Line {
        name: name.into(),
        points: Vec::new(),
    }
}

#[test]
fn legends_wrap_and_count_what_does_not_fit() {
    let few = [line("p50"), line("p99")];
    let layout = draw::legend_layout(&few, 400);
    assert_eq!(layout.rows, 1);
    assert_eq!(layout.items.len(), 2);
    assert_eq!(
        (layout.items[1].row, layout.items[1].x),
        (0, 10 + 20 + 20 + 16)
    );

    let many: Vec<Line> = (0..40)
        .map(|i| line(&format!("ResetPasscode result {i}")))
        .collect();
    let layout = draw::legend_layout(&many, 400);
    assert_eq!(layout.rows, 3);
    let last = layout.items.last().unwrap();
    assert_eq!(last.series, None);
    let shown = layout.items.len() - 1;
    assert_eq!(last.text, format!("+{} more", many.len() - shown));
    assert!(layout.items.iter().all(|item| item.x + 20 <= 400));
}

#[test]
fn the_picture_holds_every_panel_its_series_and_their_axis() {
    let dashboard = Dashboard::parse(DASHBOARD).unwrap();
    let range = TimeRange {
        start: 1_795_963_059.0,
        end: 1_795_963_063.0,
        step: 1.0,
    };
    let answer = parse_answer(200, ANSWER.as_bytes()).unwrap();
    // The recorded answer in the second panel (p99 by phase); every other panel empty but one.
    let mut panels: Vec<Vec<Line>> = vec![Vec::new(); dashboard.panels.len()];
    panels[1] = answer
        .iter()
        .map(|series| Line {
            name: legend("{{phase}}", &series.labels, "expr"),
            points: series.points.clone(),
        })
        .collect();
    panels[6] = vec![Line {
        name: "control plane".into(),
        points: vec![(1_795_963_061.0, 1000.0)],
    }];
    let svg = draw::svg(&dashboard, &panels, &range, 1600).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
    assert!(svg.contains("width=\"1600\" height=\"1512\""));
    // plotters writes each text on a line of its own.
    let text = |words: &str| svg.contains(&format!(">\n{words}\n</text>"));
    for panel in &dashboard.panels {
        assert!(text(&panel.title), "no title {}", panel.title);
    }
    for name in ["applied", "delivered", "user_entered", "control plane"] {
        assert!(text(name), "no legend {name}");
    }
    assert_eq!(svg.matches(">\nNo data\n</text>").count(), 10);
    // Each phase is one line (2 px wide, the axes are 1) after its NaN gap; the single point of
    // "control plane" is a dot.
    assert_eq!(svg.matches("stroke-width=\"2\" points=").count(), 3);
    assert_eq!(svg.matches("<circle").count(), 1);
    // The seconds axis in milliseconds and seconds, the time axis in UTC.
    assert!(text("500 ms"), "no ms axis label");
    assert!(text("1 s"), "no s axis label");
    assert!(text("14:37:41"));
    assert!(svg.contains("2026-11-29T14:37:39Z to 2026-11-29T14:37:43Z (UTC)"));
    assert!(svg.contains("not Grafana"));
}
