//! The page frame, the embedded stylesheet and script, and the words and dates pages show. The
//! console uses them, and so does the load test's fleet wall, so both look and behave alike.
//!
//! Pages are `maud` templates: every value inserted is HTML-escaped unless it is explicitly
//! `PreEscaped` (only other templates' output is). The script is the only one a page loads; it
//! has no inline parts, so the content security policy can forbid inline script outright.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use maud::{DOCTYPE, Markup, html};

/// The stylesheet every page links, embedded in the binary.
pub const STYLESHEET: &str = include_str!("../assets/console.css");
/// The script every page loads: live panels (server-sent events) and nothing else.
pub const SCRIPT: &str = include_str!("../assets/console.js");
pub const STYLESHEET_PATH: &str = "/assets/console.css";
pub const SCRIPT_PATH: &str = "/assets/console.js";

/// The routes of the embedded assets, to merge into a router.
pub fn asset_routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            STYLESHEET_PATH,
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
                    STYLESHEET,
                )
            }),
        )
        .route(
            SCRIPT_PATH,
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    SCRIPT,
                )
                    .into_response()
            }),
        )
}

/// A whole page: `bar` is the top bar's content after the product name, `main` the page itself.
pub fn page(title: &str, bar: Markup, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · droidfleet" }
                link rel="stylesheet" href=(STYLESHEET_PATH);
                script src=(SCRIPT_PATH) defer {}
            }
            body {
                header.bar {
                    a.brand href="/" { "droidfleet" }
                    (bar)
                }
                main { (main) }
            }
        }
    }
}

/// A state as a coloured badge; `state` is one of the action states' names, or any word the
/// stylesheet knows (`online`, `offline`).
pub fn badge(state: &str) -> Markup {
    html! { span class={ "badge " (state) } { (state.replace('_', " ")) } }
}

/// Milliseconds since the Unix epoch as a UTC date and time, `2025-08-27 14:05:09 UTC`.
pub fn utc(ms: u64) -> String {
    let seconds = ms / 1000;
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The time of day of `ms`, `14:05:09 UTC`, for events whose date the page already shows.
pub fn time_of_day(ms: u64) -> String {
    let rest = ms / 1000 % 86_400;
    format!(
        "{:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

/// How far `at` is from `now`, in the largest whole unit: `3 min ago`, `in 6 days`.
pub fn relative(now: u64, at: u64) -> String {
    let (distance, future) = if at >= now {
        (at - now, true)
    } else {
        (now - at, false)
    };
    let seconds = distance / 1000;
    let amount = match seconds {
        0 => return "just now".to_string(),
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min", s / 60),
        s if s < 86_400 => format!("{} h", s / 3600),
        s => {
            let days = s / 86_400;
            format!("{days} day{}", if days == 1 { "" } else { "s" })
        }
    };
    if future {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_756_303_509_000), "2025-08-27 14:05:09 UTC");
        assert_eq!(utc(4_107_542_399_999), "2100-02-28 23:59:59 UTC");
        assert_eq!(time_of_day(1_756_303_509_000), "14:05:09 UTC");
    }

    #[test]
    fn relative_times_use_the_largest_whole_unit() {
        let now = 1_000_000_000;
        assert_eq!(relative(now, now), "just now");
        assert_eq!(relative(now, now - 42_000), "42 s ago");
        assert_eq!(relative(now, now + 7 * 86_400_000), "in 7 days");
        assert_eq!(relative(now, now + 86_400_000), "in 1 day");
        assert_eq!(relative(now, now - 2 * 3_600_000), "2 h ago");
    }

    #[test]
    fn inserted_values_are_escaped() {
        let page = page(
            "<script>alert(1)</script>",
            html! {},
            html! { p { ("\"><img src=x onerror=alert(1)>") } },
        )
        .into_string();
        assert!(!page.contains("<script>alert(1)"));
        assert!(!page.contains("<img src=x"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    }
}
