//! The wall's pages: the wall itself (counts, charts, the grid of screens) and one device's page,
//! each with a live panel the console's script redraws on every sample. Charts and screens are
//! drawn the way both fleet walls draw them (`crate::wall`).

use super::{Sample, Served, Snapshot, Tile, Wall};
use crate::wall::{Timed, chart, screen_card, screen_tile};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use droidfleet_console::layout::{self, badge};
use maud::{Markup, html};

/// The states in the order a reset passes them, as the counts show them.
const STATES: [&str; 8] = [
    "not_issued",
    "pending",
    "active",
    "done",
    "failed",
    "not_supported",
    "expired",
    "canceled",
];

/// The top bar: what this page is of (the live panel says where the run stands).
fn bar(snapshot: &Snapshot) -> Markup {
    html! {
        div.stats {
            a href="/" { "Fleet wall" }
            span { "load test of " (snapshot.devices) " simulated devices" }
        }
    }
}

pub(super) async fn wall(State(served): State<Served>) -> Markup {
    let snapshot = served.wall.latest.borrow().clone();
    let main = html! {
        section #wall data-live="/live" { (live(&snapshot)) }
    };
    layout::page("Fleet wall", bar(&snapshot), main)
}

/// The live part of the wall.
pub(super) fn live(snapshot: &Snapshot) -> Markup {
    let count = |state: &str| snapshot.states.get(state).copied().unwrap_or(0);
    html! {
        h1 data-phase=(snapshot.phase.as_str()) {
            "Fleet wall " span.muted { "· " (snapshot.phase.as_str()) ", " (format!("{:.0} s", snapshot.elapsed_s)) }
        }
        div.counts #counts {
            div.count { span.number #count-connected { (snapshot.connected) } "connected of " (snapshot.devices) }
            @for state in STATES {
                @if count(state) > 0 || matches!(state, "pending" | "active" | "done" | "failed") {
                    div.count {
                        span.number id={ "count-" (state) } { (count(state)) }
                        (badge(state))
                    }
                }
            }
            div.count { span.number #count-entered { (snapshot.entered) } "entered by the user" }
            div.count { span.number #count-unexpected { (snapshot.unexpected) } "not as expected" }
        }
        div.charts {
            section.card {
                h2 { "Throughput" span.muted { "resets finished per second" } }
                (chart(&snapshot.history, &[("finished", "#0b5cad", |s: &Sample| Some(s.finished as f64))], "/s"))
            }
            section.card {
                h2 { "Latency" span.muted { "requested → applied, ms" } }
                (chart(&snapshot.history, &[
                    ("p50", "#1d7a3e", |s: &Sample| s.p50_ms),
                    ("p99", "#b3261e", |s: &Sample| s.p99_ms),
                ], "ms"))
            }
        }
        h2 { "Screens " span.muted { (snapshot.tiles.len()) " devices spread over the fleet" } }
        div.screens #screens {
            @for tile in &snapshot.tiles { (tile_markup(tile)) }
        }
    }
}

impl Timed for Sample {
    fn at_s(&self) -> f64 {
        self.at_s
    }
}

/// A phone's lock screen, small, with its reset's state.
fn tile_markup(tile: &Tile) -> Markup {
    screen_tile(&tile.screen, &tile.state)
}

pub(super) async fn device(
    State(served): State<Served>,
    Path(name): Path<String>,
) -> Result<Markup, (StatusCode, Markup)> {
    let snapshot = served.wall.latest.borrow().clone();
    let known = served
        .wall
        .names
        .get()
        .is_some_and(|(_, index)| index.contains_key(&name));
    if !known {
        return Err(crate::wall::unknown_device(
            "This run",
            &name,
            bar(&snapshot),
        ));
    }
    let live = device_live(&served.wall, &name);
    Ok(crate::wall::device_page(&name, bar(&snapshot), live))
}

/// The live part of a device's page: its screen in full and its reset as the run recorded it.
pub(super) fn device_live(wall: &Wall, name: &str) -> Markup {
    let index = wall
        .names
        .get()
        .and_then(|(_, index)| index.get(name).copied());
    let screen = index.and_then(|i| wall.screen(i));
    let record = index.and_then(|i| wall.record(i));
    html! {
        @if let Some(screen) = &screen {
            (screen_card(screen))
        }
        section.card #device-reset {
            h2 { "Reset" }
            @if let Some(record) = &record {
                dl {
                    dt { "State" } dd #reset-state { (badge(&record.state)) }
                    dt { "Enrollment type" } dd { (record.ownership.to_uppercase()) ", resets the " (record.scope.replace('_', " ")) }
                    dt { "Android" } dd { "API level " (record.api_level) ", " (record.profile) " profile" }
                    dt { "Expected" } dd {
                        "ends " (record.predicted.state.replace('_', " "))
                        @if let Some(code) = record.predicted.error_code { ", " (code) }
                    }
                    @if let Some(code) = &record.error_code { dt { "Error code" } dd { (code) } }
                    @if let Some(problem) = &record.problem { dt { "Problem" } dd { (problem) } }
                    dt { "Offline before the reset" } dd { (record.offline_ms.map(|ms| format!("{ms} ms")).unwrap_or_else(|| "no".into())) }
                    dt { "Reboot after it" } dd { (if record.reboot { "yes" } else { "no" }) }
                    dt { "User" } dd { "types after " (record.user_delay_ms) " ms" (if record.typo { ", with a typo first" } else { "" }) }
                    @if record.created_at_ms > 0 { dt { "Requested" } dd { (layout::utc(record.created_at_ms)) } }
                    @if record.completed_at_ms > 0 { dt { "Applied" } dd { (layout::utc(record.completed_at_ms)) " (" (record.completed_at_ms.saturating_sub(record.created_at_ms)) " ms after the request)" } }
                    @if record.user_entered_at_ms > 0 { dt { "Entered by the user" } dd { (layout::utc(record.user_entered_at_ms)) } }
                }
            } @else {
                p.muted { "The measured resets have not started yet." }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Phase;
    use super::*;

    #[test]
    fn a_chart_draws_each_series_within_its_box() {
        let history: Vec<Sample> = (0..5)
            .map(|i| Sample {
                at_s: f64::from(i),
                finished: i as usize * 10,
                p50_ms: (i > 0).then_some(20.0),
                p99_ms: None,
            })
            .collect();
        let svg = chart(
            &history,
            &[
                ("finished", "#000", |s: &Sample| Some(s.finished as f64)),
                ("p50", "#111", |s: &Sample| s.p50_ms),
            ],
            "/s",
        )
        .into_string();
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(
            svg.contains(">40<"),
            "the largest value labels the axis: {svg}"
        );
        assert!(!svg.contains("style="), "no inline style: {svg}");
        assert!(!svg.contains("NaN"));
    }

    #[test]
    fn phases_read_as_words() {
        assert_eq!(Phase::Resetting.as_str(), "resetting");
    }
}
