//! The report as one self-contained HTML page whose charts are inline SVG drawn by `plotters`
//! (viewable offline: no script, no font, no network reference).

use super::Report;
use crate::loadtest::series::TimeSeries;
use hdrhistogram::Histogram;
use plotters::prelude::*;
use std::fmt::Write as _;

impl Report {
    /// The self-contained HTML page.
    pub(in crate::loadtest) fn html(&self) -> String {
        let mut page = String::new();
        let _ = write!(
            page,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>droidfleet load test</title><style>\
             body{{font-family:sans-serif;margin:2em;max-width:1100px}}\
             table{{border-collapse:collapse;margin:1em 0}}\
             td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}\
             td:first-child,th:first-child{{text-align:left}}\
             .warn{{background:#fee;border:1px solid #c00;padding:.5em}}\
             </style></head><body>\n<h1>droidfleet load test</h1>\n<p>{}</p>\n",
            escape(&self.tool)
        );
        let _ = writeln!(
            page,
            "<p>Control plane: {}. Argon2 preset: <b>{}</b> ({} KiB, t={}, p={}). \
             Devices: {}, seed {}, mix {}, {} connection(s), ramp-up {} ms. \
             Decision digest <code>{}</code>. {}</p>",
            escape(&self.control_plane_line()),
            escape(&self.argon2.preset),
            self.argon2.memory_kib,
            self.argon2.iterations,
            self.argon2.parallelism,
            self.config["devices"],
            self.config["seed"],
            escape(self.config["mix"].as_str().unwrap_or_default()),
            self.config["connections"],
            self.config["ramp_up_ms"],
            escape(&self.decision_digest),
            match (self.connect_only(), self.completed) {
                (true, true) => format!(
                    "Connect-only: every device enrolled and connected in {:.1} s.",
                    self.durations.connect_s
                ),
                (true, false) => "<b>Not every device connected.</b>".to_string(),
                (false, true) => "The run completed.".to_string(),
                (false, false) =>
                    "<b>The run hit its deadline before every reset ended.</b>".to_string(),
            }
        );
        for warning in &self.warnings {
            let _ = writeln!(page, "<p class=\"warn\">{}</p>", escape(warning));
        }

        if !self.connect_only() {
            let _ = writeln!(
                page,
                "<p>Rate: {}. Behaviour: {}.</p>",
                escape(&self.rate_text()),
                escape(&self.behaviour_text())
            );
            page.push_str("<h2>Headline</h2>\n<table>\n");
            for (label, text) in self.headline() {
                let _ = writeln!(
                    page,
                    "<tr><td>{}</td><td style=\"text-align:left\">{}</td></tr>",
                    escape(label),
                    escape(&text)
                );
            }
            page.push_str("</table>\n");

            page.push_str(
                "<h2>Outcomes</h2>\n<table><tr><th>type</th><th>android</th><th>profile</th>\
                 <th>state</th><th>error code</th><th>devices</th></tr>\n",
            );
            for row in &self.outcomes {
                let _ = writeln!(
                    page,
                    "<tr><td>{}</td><td>API {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(&row.ownership),
                    row.api_level,
                    escape(&row.profile),
                    escape(&row.state),
                    escape(&row.error_code),
                    row.count
                );
            }
            let _ = writeln!(
                page,
                "</table><p>Total {}; not as predicted (fault, Android version, maker profile): \
                 {}.</p>",
                self.outcome_total, self.unexpected
            );

            page.push_str(
                "<h2>Latency of resets that ended done (ms)</h2>\n<table><tr><th>phase</th>\
                 <th>count</th><th>p50</th><th>p90</th><th>p99</th><th>max</th></tr>\n",
            );
            for phase in &self.latency_ms {
                let s = phase.stats;
                let _ = writeln!(
                    page,
                    "<tr><td>{}</td><td>{}</td><td>{:.0}</td><td>{:.0}</td><td>{:.0}</td>\
                     <td>{:.0}</td></tr>",
                    escape(phase.description),
                    s.count,
                    s.p50,
                    s.p90,
                    s.p99,
                    s.max
                );
            }
            page.push_str("</table>\n");
            for phase in &self.latency_ms {
                page.push_str(&histogram_svg(phase.description, &phase.histogram));
                page.push('\n');
            }

            let t = &self.throughput;
            let _ = writeln!(
                page,
                "<h2>Throughput</h2><p>{:.1} resets/s reached a final state ({:.1}/s done) over \
                 {:.2} s.</p>",
                t.finished_per_s, t.done_per_s, t.window_s
            );
            page.push_str(&throughput_svg(t.interval_ms, &t.per_interval));
            page.push_str(
                "<h2>Over time</h2><p>Each second of the measured phase: resets ended and in \
                 flight, requested → applied of the resets that ended done in it, and this \
                 process's RSS (time_series in report.json).</p>\n",
            );
            page.push_str(&time_series_svgs(&self.time_series));

            if let Some(b) = &self.baselines {
                let _ = writeln!(
                    page,
                    "<h2>Baselines (same run, median of three rounds)</h2><table>\
                     <tr><th>baseline</th><th>rounds</th><th>median</th><th>ratio of the run</th></tr>\
                     <tr><td>tonic unary echo, {} connections, {} in flight, {} calls per round</td>\
                     <td>{}</td><td>{:.0} calls/s</td><td>resets/s ÷ echo = {:.4}</td></tr>\
                     <tr><td>Argon2 on {} threads, {} hashes per round; bound = hashes/s ÷ {:.2} \
                     runs per done reset = {:.0} resets/s</td><td>{}</td><td>{:.0} hashes/s</td>\
                     <td>done/s ÷ bound = {:.4}</td></tr></table>",
                    b.echo.connections,
                    b.echo.concurrency,
                    b.echo.calls_per_round,
                    rounds(&b.echo.rounds_calls_per_s),
                    b.echo.calls_per_s,
                    b.ratio_to_echo,
                    b.argon2.threads,
                    b.argon2.hashes_per_round,
                    b.argon2_runs_per_done_reset,
                    b.argon2_bound_resets_per_s,
                    rounds(&b.argon2.rounds_hashes_per_s),
                    b.argon2.hashes_per_s,
                    b.ratio_to_argon2_bound
                );
                let _ = writeln!(
                    page,
                    "<p>Streaming echo: {:.0} messages/s one way ({} streams over {} connections; \
                     rounds {}).</p>",
                    b.stream_echo.messages_per_s,
                    b.stream_echo.streams,
                    b.stream_echo.connections,
                    rounds(&b.stream_echo.rounds_messages_per_s)
                );
                let c = &b.ceiling;
                let _ = writeln!(
                    page,
                    "<h2>Protocol ceiling</h2><p>{:.0} resets/s ({:.0} µs of the machine per \
                     reset; the protocol's units alone: {:.0} resets/s); resets/s ÷ ceiling = \
                     {:.4}.</p><table><tr><th>unit</th><th>measured by</th><th>cost</th>\
                     <th>protocol per reset</th><th>added per reset</th><th>what was counted</th></tr>",
                    c.resets_per_s, c.us_per_reset, c.protocol_resets_per_s, c.ratio
                );
                for unit in &c.units {
                    let _ = writeln!(
                        page,
                        "<tr><td>{}</td><td>{}</td><td>{:.2} µs</td><td>{}</td><td>{:.2}</td>\
                         <td>{}</td></tr>",
                        escape(unit.unit),
                        escape(unit.measured_by),
                        unit.cost_us,
                        unit.protocol_per_reset,
                        unit.added_per_reset,
                        escape(unit.counted)
                    );
                }
                page.push_str("</table>\n");
            }
        }

        page.push_str(
            "<h2>Resources per process</h2><table><tr><th>process</th><th>pid</th>\
             <th>peak RSS</th><th>CPU</th><th>CPU-s per s</th><th>RSS before → after connect</th>\
             <th>memory per connected device</th></tr>\n",
        );
        for row in self.resource_rows() {
            page.push_str("<tr>");
            for cell in row {
                let _ = write!(page, "<td>{}</td>", escape(&cell));
            }
            page.push_str("</tr>\n");
        }
        let l = &self.scheduler_lag_ms;
        let _ = writeln!(
            page,
            "</table><p>Scheduler lag of this process p50 / p99 / max: {:.1} / {:.1} / {:.1} ms.</p>",
            l.stats.p50, l.stats.p99, l.stats.max
        );
        if !self.notes.is_empty() {
            page.push_str("<h2>Notes</h2><ul>\n");
            for note in &self.notes {
                let _ = writeln!(page, "<li>{}</li>", escape(note));
            }
            page.push_str("</ul>\n");
        }
        page.push_str("</body></html>\n");
        page
    }
}

fn rounds(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.0}"))
        .collect::<Vec<_>>()
        .join(" / ")
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const CHART: (u32, u32) = (900, 300);

/// A histogram of `samples` (ms) in at most 40 bins of whole milliseconds.
/// A latency histogram (microseconds) drawn in about 40 bins of whole milliseconds.
fn histogram_svg(title: &str, histogram: &Histogram<u64>) -> String {
    let mut svg = String::new();
    let ms = |us: u64| us as f64 / 1000.0;
    let max = if histogram.is_empty() {
        0.0
    } else {
        ms(histogram.max())
    };
    let width = (max / 40.0).ceil().max(1.0);
    let bins = ((max / width).floor() as usize) + 1;
    let mut counts = vec![0u64; bins];
    for value in histogram.iter_recorded() {
        let at = ms(value.value_iterated_to());
        counts[((at / width).floor() as usize).min(bins - 1)] += value.count_at_value();
    }
    let top = counts.iter().copied().max().unwrap_or(0).max(1);
    let drawn = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
        let root = SVGBackend::with_string(&mut svg, CHART).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{title}, n={}", histogram.len()),
                ("sans-serif", 16),
            )
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..(bins as f64 * width), 0u64..top + top / 10 + 1)?;
        chart
            .configure_mesh()
            .x_desc("milliseconds")
            .y_desc("resets")
            .disable_x_mesh()
            .draw()?;
        chart.draw_series(counts.iter().enumerate().map(|(i, c)| {
            let x = i as f64 * width;
            Rectangle::new([(x, 0), (x + width, *c)], BLUE.mix(0.7).filled())
        }))?;
        root.present()?;
        Ok(())
    })();
    if drawn.is_err() {
        return format!("<p>(no chart for {})</p>", escape(title));
    }
    svg
}

/// The rate of actions reaching a final state over the reset phase, in resets per second.
fn throughput_svg(interval_ms: u64, per_interval: &[u32]) -> String {
    let mut svg = String::new();
    let scale = 1000.0 / interval_ms as f64;
    let rates: Vec<(f64, f64)> = per_interval
        .iter()
        .enumerate()
        .map(|(i, c)| {
            (
                (i as u64 * interval_ms) as f64 / 1000.0,
                f64::from(*c) * scale,
            )
        })
        .collect();
    let top = rates.iter().map(|(_, r)| *r).fold(1.0, f64::max);
    let span = (per_interval.len().max(1) as u64 * interval_ms) as f64 / 1000.0;
    let step = interval_ms as f64 / 1000.0;
    let drawn = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
        let root = SVGBackend::with_string(&mut svg, CHART).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("resets reaching a final state per second ({interval_ms} ms intervals)"),
                ("sans-serif", 16),
            )
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..span, 0.0..top * 1.1)?;
        chart
            .configure_mesh()
            .x_desc("seconds since the first reset")
            .y_desc("resets/s")
            .draw()?;
        chart.draw_series(
            rates.iter().map(|(x, r)| {
                Rectangle::new([(*x, 0.0), (*x + step, *r)], GREEN.mix(0.6).filled())
            }),
        )?;
        chart.draw_series(LineSeries::new(
            rates.iter().map(|(x, r)| (*x + step / 2.0, *r)),
            &BLACK,
        ))?;
        root.present()?;
        Ok(())
    })();
    if drawn.is_err() {
        return "<p>(no throughput chart)</p>".into();
    }
    svg
}

/// One line of a time-series chart: its legend, colour and points (second, value).
type Line<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);

/// The time series as three charts: resets ended per second and in flight; p50 and p99 of
/// requested → applied; this process's RSS.
fn time_series_svgs(series: &TimeSeries) -> String {
    let points = |values: Vec<Option<f64>>| -> Vec<(f64, f64)> {
        series
            .second
            .iter()
            .zip(values)
            .filter_map(|(second, value)| Some((*second as f64, value?)))
            .collect()
    };
    let counts = |values: &[u32]| points(values.iter().map(|v| Some(f64::from(*v))).collect());
    [
        time_series_svg(
            "resets ended per second, and in flight",
            "resets",
            &[
                ("ended per second", GREEN, counts(&series.finished)),
                ("in flight", BLUE, counts(&series.in_flight)),
            ],
        ),
        time_series_svg(
            "requested → applied of the resets ending done each second",
            "milliseconds",
            &[
                ("p50", BLUE, points(series.p50_ms.clone())),
                ("p99", RED, points(series.p99_ms.clone())),
            ],
        ),
        time_series_svg(
            "this process's resident set size",
            "MiB",
            &[(
                "RSS",
                BLACK,
                points(
                    series
                        .rss_kib
                        .iter()
                        .map(|kib| kib.map(|kib| kib as f64 / 1024.0))
                        .collect(),
                ),
            )],
        ),
    ]
    .join("\n")
}

fn time_series_svg(title: &str, unit: &str, lines: &[Line<'_>]) -> String {
    let mut svg = String::new();
    let all = || lines.iter().flat_map(|(_, _, points)| points.iter());
    let span = all().map(|(x, _)| *x + 1.0).fold(1.0, f64::max);
    let top = all().map(|(_, y)| *y).fold(0.0, f64::max).max(1.0);
    let drawn = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
        let root = SVGBackend::with_string(&mut svg, CHART).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..span, 0.0..top * 1.1)?;
        chart
            .configure_mesh()
            .x_desc("seconds since the measured phase began")
            .y_desc(unit)
            .draw()?;
        for (legend, colour, points) in lines {
            let colour = *colour;
            chart
                .draw_series(LineSeries::new(points.iter().copied(), colour))?
                .label(*legend)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    })();
    if drawn.is_err() {
        return format!("<p>(no chart for {})</p>", escape(title));
    }
    svg
}
