//! The wall's pages: the wall itself (counts, charts, the grid of screens) and one device's page,
//! each with a live panel the console's script redraws on every sample. Charts are inline SVG
//! drawn here (presentation attributes only, so the content security policy needs no inline
//! style).

use super::{Sample, Served, Snapshot, Tile, Wall};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use droidfleet_agent::device::{Scope, TokenState};
use droidfleet_agent::fleet::Screen;
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
            @for tile in &snapshot.tiles { (screen_tile(tile)) }
        }
    }
}

/// One series of a chart: its name, colour, and value per sample.
type Series = (&'static str, &'static str, fn(&Sample) -> Option<f64>);

/// A line chart of `series` over the samples' times, with its largest value on the axis.
fn chart(history: &[Sample], series: &[Series], unit: &str) -> Markup {
    const W: f64 = 560.0;
    const H: f64 = 180.0;
    const LEFT: f64 = 48.0;
    const BOTTOM: f64 = 22.0;
    let values = |pick: fn(&Sample) -> Option<f64>| -> Vec<(f64, f64)> {
        history
            .iter()
            .filter_map(|s| Some((s.at_s, pick(s)?)))
            .collect()
    };
    let top = series
        .iter()
        .flat_map(|(_, _, pick)| values(*pick))
        .map(|(_, v)| v)
        .fold(0.0_f64, f64::max)
        .max(1.0);
    let first = history.first().map(|s| s.at_s).unwrap_or(0.0);
    let last = history
        .last()
        .map(|s| s.at_s)
        .unwrap_or(1.0)
        .max(first + 1.0);
    let x = |t: f64| LEFT + (t - first) / (last - first) * (W - LEFT - 8.0);
    let y = |v: f64| 8.0 + (1.0 - v / top) * (H - BOTTOM - 8.0);
    let points = |pick: fn(&Sample) -> Option<f64>| -> String {
        values(pick)
            .iter()
            .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    html! {
        svg viewBox={ "0 0 " (W) " " (H) } role="img" {
            line x1=(LEFT) y1=(y(0.0)) x2=(W - 8.0) y2=(y(0.0)) stroke="#c4ccd5" {}
            line x1=(LEFT) y1="8" x2=(LEFT) y2=(y(0.0)) stroke="#c4ccd5" {}
            text x=(LEFT - 6.0) y="16" text-anchor="end" font-size="11" fill="#5b6570" { (format!("{top:.0}")) }
            text x=(LEFT - 6.0) y=(y(0.0)) text-anchor="end" font-size="11" fill="#5b6570" { "0" }
            text x=(W - 8.0) y=(H - 4.0) text-anchor="end" font-size="11" fill="#5b6570" { (format!("{last:.0} s")) }
            text x=(LEFT) y=(H - 4.0) font-size="11" fill="#5b6570" { (format!("{first:.0} s")) }
            @for (i, (name, colour, pick)) in series.iter().enumerate() {
                polyline points=(points(*pick)) fill="none" stroke=(colour) stroke-width="2" {}
                text x=(LEFT + 8.0 + 70.0 * i as f64) y="20" font-size="12" fill=(colour) { (name) " (" (unit) ")" }
            }
        }
    }
}

fn lock_words(screen: &Screen, scope: Scope) -> Option<(&'static str, &'static str)> {
    let store = screen.stores.iter().find(|s| s.scope == scope)?;
    Some(if store.wiped {
        ("wiped", "locked")
    } else if store.locked {
        ("locked", "locked")
    } else {
        ("unlocked", "unlocked")
    })
}

fn scope_words(scope: Scope) -> &'static str {
    match scope {
        Scope::Device => "Device",
        Scope::WorkProfile => "Work profile",
    }
}

/// A phone's lock screen, small: name, online state, each store's lock, its notifications.
fn screen_tile(tile: &Tile) -> Markup {
    let screen = &tile.screen;
    html! {
        a.screen.offline[!screen.connected] href={ "/devices/" (screen.name) } data-device=(screen.name) {
            div.name { (screen.name) " · " (screen.ownership.as_str().to_uppercase()) }
            (badge(&tile.state))
            @for scope in [Scope::Device, Scope::WorkProfile] {
                @if let Some((words, class)) = lock_words(screen, scope) {
                    div class={ "lock " (class) } { (scope_words(scope)) ": " (words) }
                }
            }
            @for note in &screen.notifications {
                div.note { (note.title) }
            }
            @if !screen.connected { div.lock { "offline" } }
        }
    }
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
        let body = html! {
            section.card.refusal {
                h1 { "Not found" }
                p { "This run hosts no device named " code { (name) } "." }
                p { a href="/" { "Back to the wall" } }
            }
        };
        return Err((
            StatusCode::NOT_FOUND,
            layout::page("Not found", bar(&snapshot), body),
        ));
    }
    let main = html! {
        p.crumbs { a href="/" { "Fleet wall" } " › " (name) }
        h1 #device-name { (name) }
        section #device data-live={ "/devices/" (name) "/live" } {
            (device_live(&served.wall, &name))
        }
    };
    Ok(layout::page(&name, bar(&snapshot), main))
}

fn token_words(state: TokenState) -> &'static str {
    match state {
        TokenState::None => "none",
        TokenState::Pending => "pending",
        TokenState::Active => "active",
    }
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
            section.card #device-screen {
                h2 { "Screen " (badge(if screen.connected { "online" } else { "offline" })) }
                table {
                    thead { tr { th { "Store" } th { "Lock" } th { "Passcode" } th { "Reset token" } th { "Failed entries" } } }
                    tbody {
                        @for store in &screen.stores {
                            tr {
                                th { (scope_words(store.scope)) }
                                td { (lock_words(screen, store.scope).map(|(w, _)| w).unwrap_or("")) }
                                td { (if store.has_passcode { "set" } else { "none" }) }
                                td { (token_words(store.token_state)) }
                                td { (store.failed_attempts) }
                            }
                        }
                    }
                }
                @for note in &screen.notifications {
                    p.note-full { strong { (note.title) } " " (note.text) }
                }
                @if let Some(id) = &screen.device_id {
                    p.muted { "Control-plane id " code { (id) } }
                }
            }
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
