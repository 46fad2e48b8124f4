//! The agent's wall pages: the wall itself (counts, the chart of counts over time, the grid of
//! screens) and one device's page, each with a live panel the console's script redraws on every
//! sample.

use super::{Counts, Sample, Served, Snapshot, Wall};
use crate::wall::{chart, screen_card, screen_tile};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use droidfleet_agent::fleet::Screen;
use droidfleet_console::layout;
use maud::{Markup, html};

/// The top bar: what this page is of.
fn bar(snapshot: &Snapshot) -> Markup {
    html! {
        div.stats {
            a href="/" { "Fleet wall" }
            span { "agent hosting " (snapshot.devices) " simulated devices" }
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

/// The counts the wall shows, each with its element id and what it counts.
fn count_rows(counts: &Counts) -> [(&'static str, usize, &'static str); 9] {
    [
        ("connected", counts.connected, "connected"),
        ("offline", counts.offline, "offline"),
        (
            "re-enrollment",
            counts.re_enrollment_required,
            "waiting to re-enroll",
        ),
        ("locked", counts.stores_locked, "stores locked"),
        ("unlocked", counts.stores_unlocked, "stores unlocked"),
        ("wiped", counts.stores_wiped, "stores wiped"),
        ("notifying", counts.notifying, "showing a notification"),
        ("pending", counts.tokens_pending, "reset tokens pending"),
        ("active", counts.tokens_active, "reset tokens active"),
    ]
}

/// The live part of the wall.
pub(super) fn live(snapshot: &Snapshot) -> Markup {
    html! {
        h1 { "Fleet wall " span.muted { "· " (format!("{:.0} s", snapshot.elapsed_s)) } }
        div.counts #counts {
            @for (id, number, words) in count_rows(&snapshot.counts) {
                div.count { span.number id={ "count-" (id) } { (number) } (words) }
            }
        }
        div.charts {
            section.card {
                h2 { "The fleet over time" span.muted { "devices connected and notifying, stores locked" } }
                (chart(&snapshot.history, &[
                    ("connected", "#0b5cad", |s: &Sample| Some(s.counts.connected as f64)),
                    ("locked", "#b3261e", |s: &Sample| Some(s.counts.stores_locked as f64)),
                    ("notifying", "#1d7a3e", |s: &Sample| Some(s.counts.notifying as f64)),
                ], "n"))
            }
        }
        h2 { "Screens " span.muted { (snapshot.tiles.len()) " devices spread over the fleet" } }
        div.screens #screens {
            @for screen in &snapshot.tiles { (screen_tile(screen, state(screen))) }
        }
    }
}

/// A device's state as its tile's badge says it.
fn state(screen: &Screen) -> &'static str {
    if screen.re_enrollment_required {
        "re_enrollment_required"
    } else if screen.connected {
        "online"
    } else {
        "offline"
    }
}

pub(super) async fn device(
    State(served): State<Served>,
    Path(name): Path<String>,
) -> Result<Markup, (StatusCode, Markup)> {
    let snapshot = served.wall.latest.borrow().clone();
    if !served.wall.known.contains(&name) {
        return Err(crate::wall::unknown_device(
            "This agent",
            &name,
            bar(&snapshot),
        ));
    }
    let live = device_live(&served.wall, &name);
    Ok(crate::wall::device_page(&name, bar(&snapshot), live))
}

/// The live part of a device's page: its screen in full, read when drawn.
pub(super) fn device_live(wall: &Wall, name: &str) -> Markup {
    match wall.fleet.screen(name) {
        Ok(screen) => html! {
            (screen_card(&screen))
            section.card #device-build {
                h2 { "Device" }
                dl {
                    dt { "Enrollment type" } dd { (screen.ownership.as_str().to_uppercase()) }
                    dt { "Android" } dd { (screen.build) }
                    dt { "Waiting to re-enroll" } dd { (if screen.re_enrollment_required { "yes" } else { "no" }) }
                }
            }
        },
        Err(_) => html! { p.muted { "This agent hosts no device named " code { (name) } "." } },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_count_is_shown_once_with_its_id() {
        let counts = Counts {
            connected: 3,
            offline: 1,
            stores_locked: 2,
            tokens_active: 4,
            ..Counts::default()
        };
        let snapshot = Snapshot {
            elapsed_s: 2.0,
            devices: 4,
            counts,
            history: Vec::new(),
            tiles: Vec::new(),
        };
        let html = live(&snapshot).into_string();
        assert!(html.contains(r#"id="count-connected">3<"#), "{html}");
        assert!(html.contains(r#"id="count-offline">1<"#), "{html}");
        assert!(html.contains(r#"id="count-locked">2<"#), "{html}");
        assert!(html.contains(r#"id="count-active">4<"#), "{html}");
        assert_eq!(html.matches("id=\"count-").count(), 9);
    }
}
