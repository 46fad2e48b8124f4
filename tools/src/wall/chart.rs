//! A line chart as inline SVG, drawn with presentation attributes only so the content security
//! policy needs no inline style.

use maud::{Markup, html};

/// A sample that has a time on the chart's axis.
pub(crate) trait Timed {
    /// Seconds since the wall started.
    fn at_s(&self) -> f64;
}

/// One series of a chart: its name, colour, and value per sample.
type Series<S> = (&'static str, &'static str, fn(&S) -> Option<f64>);

/// A line chart of `series` over the samples' times, with its largest value on the axis.
pub(crate) fn chart<S: Timed>(history: &[S], series: &[Series<S>], unit: &str) -> Markup {
    const W: f64 = 560.0;
    const H: f64 = 180.0;
    const LEFT: f64 = 48.0;
    const BOTTOM: f64 = 22.0;
    let values = |pick: fn(&S) -> Option<f64>| -> Vec<(f64, f64)> {
        history
            .iter()
            .filter_map(|s| Some((s.at_s(), pick(s)?)))
            .collect()
    };
    let top = series
        .iter()
        .flat_map(|(_, _, pick)| values(*pick))
        .map(|(_, v)| v)
        .fold(0.0_f64, f64::max)
        .max(1.0);
    let first = history.first().map(Timed::at_s).unwrap_or(0.0);
    let last = history
        .last()
        .map(Timed::at_s)
        .unwrap_or(1.0)
        .max(first + 1.0);
    let x = |t: f64| LEFT + (t - first) / (last - first) * (W - LEFT - 8.0);
    let y = |v: f64| 8.0 + (1.0 - v / top) * (H - BOTTOM - 8.0);
    let points = |pick: fn(&S) -> Option<f64>| -> String {
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
