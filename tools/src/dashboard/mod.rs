//! `droidfleet dashboard render`: a Grafana dashboard's panels drawn from Prometheus's answers
//! into one SVG picture, laid out on the dashboard's own grid, for a README or a report where no
//! Grafana runs. It is this renderer over Prometheus, not Grafana: it draws the time-series
//! panels (their PromQL over a time range, titles, units, legends) and nothing else.
//!
//! Layout:
//! - this file: the command's arguments, [`run`] and [`render`], the time range.
//! - `grafana`: the part of the dashboard JSON that is drawn (panels, grid, units, targets).
//! - `prometheus`: `GET /api/v1/query_range` over HTTP and its JSON answer.
//! - `draw`: the grid's pixels and the SVG (plotters).

mod draw;
mod grafana;
mod prometheus;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Prometheus answers at most this many points per series.
const MAX_POINTS: f64 = 11_000.0;
/// The default step makes about this many points per series: finer than a panel's pixels.
const DEFAULT_POINTS: f64 = 600.0;

#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a Grafana dashboard: {problem}")]
    Dashboard { path: PathBuf, problem: String },
    #[error("{flag}: {problem}")]
    Argument { flag: &'static str, problem: String },
    #[error("--prometheus {url}: {problem}")]
    PrometheusUrl { url: String, problem: String },
    #[error("panel \"{panel}\", query {expr}: {problem}")]
    Query {
        panel: String,
        expr: String,
        problem: String,
    },
    #[error("drawing the dashboard: {0}")]
    Draw(String),
    #[error("{path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(clap::Args)]
pub struct DashboardArgs {
    #[command(subcommand)]
    command: DashboardCommand,
}

#[derive(clap::Subcommand)]
enum DashboardCommand {
    /// Draw a Grafana dashboard's time-series panels from Prometheus over a time range, into one
    /// SVG laid out on the dashboard's grid (this renderer, not Grafana).
    Render(RenderArgs),
}

#[derive(clap::Args)]
struct RenderArgs {
    /// Prometheus's HTTP address, e.g. http://127.0.0.1:9090.
    #[arg(long)]
    prometheus: String,
    /// The Grafana dashboard JSON to draw.
    #[arg(long, default_value = "deploy/grafana/droidfleet.json")]
    dashboard: PathBuf,
    /// Start of the time range: RFC 3339 (2026-11-29T14:00:00Z), Unix seconds, or now-DURATION
    /// (now-30m).
    #[arg(long, default_value = "now-30m")]
    from: String,
    /// End of the time range, in the same forms as --from, or now.
    #[arg(long, default_value = "now")]
    to: String,
    /// Time between points (e.g. 5s); by default the range over 600, at least one second.
    #[arg(long)]
    step: Option<humantime::Duration>,
    /// Width of the picture in pixels; its height follows the dashboard's grid.
    #[arg(long, default_value_t = 1600)]
    width: u32,
    /// Where to write the SVG.
    #[arg(long)]
    out: PathBuf,
}

/// What to draw: the dashboard, where Prometheus is, the range and the picture's width.
#[derive(Clone, Debug)]
pub struct RenderOptions {
    pub prometheus: String,
    pub dashboard: PathBuf,
    pub range: TimeRange,
    pub width: u32,
}

/// The range the panels are drawn over, in Unix seconds, and the time between points.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TimeRange {
    pub start: f64,
    pub end: f64,
    pub step: f64,
}

impl TimeRange {
    /// `from` and `to` as the command takes them, read against `now`; `step` by default makes
    /// about 600 points. Refuses an empty range and one Prometheus would refuse (too many points).
    pub fn parse(
        from: &str,
        to: &str,
        step: Option<Duration>,
        now: SystemTime,
    ) -> Result<TimeRange, DashboardError> {
        let start = parse_time(from, now).map_err(|problem| DashboardError::Argument {
            flag: "--from",
            problem,
        })?;
        let end = parse_time(to, now).map_err(|problem| DashboardError::Argument {
            flag: "--to",
            problem,
        })?;
        if end <= start {
            return Err(DashboardError::Argument {
                flag: "--to",
                problem: format!("{to} is not after --from {from}"),
            });
        }
        let step = match step {
            Some(step) if step.is_zero() => {
                return Err(DashboardError::Argument {
                    flag: "--step",
                    problem: "a step must be longer than zero".into(),
                });
            }
            Some(step) => step.as_secs_f64(),
            None => ((end - start) / DEFAULT_POINTS).ceil().max(1.0),
        };
        let points = (end - start) / step;
        if points > MAX_POINTS {
            return Err(DashboardError::Argument {
                flag: "--step",
                problem: format!(
                    "{points:.0} points per series; Prometheus answers at most {MAX_POINTS:.0}: give a longer step"
                ),
            });
        }
        Ok(TimeRange { start, end, step })
    }
}

/// A time as RFC 3339, Unix seconds, `now` or `now-DURATION`, in Unix seconds.
fn parse_time(text: &str, now: SystemTime) -> Result<f64, String> {
    let unix = |time: SystemTime| {
        time.duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .map_err(|_| format!("{text} is before 1970"))
    };
    let text = text.trim();
    if text == "now" {
        return unix(now);
    }
    if let Some(ago) = text.strip_prefix("now-") {
        let ago = humantime::parse_duration(ago)
            .map_err(|e| format!("{text}: the duration after now- is not one ({e})"))?;
        return unix(now.checked_sub(ago).unwrap_or(UNIX_EPOCH));
    }
    if let Ok(seconds) = text.parse::<f64>() {
        return if seconds.is_finite() && seconds >= 0.0 {
            Ok(seconds)
        } else {
            Err(format!("{text} is not a time in Unix seconds"))
        };
    }
    humantime::parse_rfc3339_weak(text)
        .map_err(|_| {
            format!(
                "{text} is not a time: give RFC 3339 (2026-11-29T14:00:00Z), Unix seconds, now or now-DURATION (now-30m)"
            )
        })
        .and_then(unix)
}

/// `droidfleet dashboard render`.
pub async fn run(args: DashboardArgs) -> Result<(), DashboardError> {
    let DashboardCommand::Render(args) = args.command;
    let range = TimeRange::parse(
        &args.from,
        &args.to,
        args.step.map(Into::into),
        SystemTime::now(),
    )?;
    let options = RenderOptions {
        prometheus: args.prometheus,
        dashboard: args.dashboard,
        range,
        width: args.width,
    };
    let rendered = render(&options).await?;
    write(&args.out, &rendered.svg)?;
    println!(
        "dashboard: {} ({} panels, {} series, {} points) from {}",
        args.out.display(),
        rendered.panels,
        rendered.series,
        rendered.points,
        options.prometheus
    );
    Ok(())
}

/// A drawn dashboard and what it holds.
#[derive(Clone, Debug)]
pub struct Rendered {
    pub svg: String,
    pub panels: usize,
    pub series: usize,
    /// Points drawn over all series (a value Prometheus had no answer for is not one).
    pub points: usize,
}

/// Reads the dashboard, asks Prometheus for every panel's targets over the range, and draws them.
pub async fn render(options: &RenderOptions) -> Result<Rendered, DashboardError> {
    if !(draw::MIN_WIDTH..=draw::MAX_WIDTH).contains(&options.width) {
        return Err(DashboardError::Argument {
            flag: "--width",
            problem: format!(
                "{} pixels; give {} to {}",
                options.width,
                draw::MIN_WIDTH,
                draw::MAX_WIDTH
            ),
        });
    }
    let dashboard = read_dashboard(&options.dashboard)?;
    let client = prometheus::Client::new(&options.prometheus)?;
    let mut panels = Vec::with_capacity(dashboard.panels.len());
    for panel in &dashboard.panels {
        let mut lines = Vec::new();
        for target in &panel.targets {
            let series = client
                .query_range(&target.expr, &options.range)
                .await
                .map_err(|problem| DashboardError::Query {
                    panel: panel.title.clone(),
                    expr: target.expr.clone(),
                    problem,
                })?;
            lines.extend(series.into_iter().map(|series| draw::Line {
                name: grafana::legend(&target.legend, &series.labels, &target.expr),
                points: series.points,
            }));
        }
        panels.push(lines);
    }
    let svg = draw::svg(&dashboard, &panels, &options.range, options.width)
        .map_err(DashboardError::Draw)?;
    let lines = panels.iter().flatten();
    Ok(Rendered {
        svg,
        panels: dashboard.panels.len(),
        series: lines.clone().count(),
        points: lines
            .flat_map(|line| &line.points)
            .filter(|(_, value)| value.is_finite())
            .count(),
    })
}

fn read_dashboard(path: &Path) -> Result<grafana::Dashboard, DashboardError> {
    let text = std::fs::read_to_string(path).map_err(|source| DashboardError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    grafana::Dashboard::parse(&text).map_err(|problem| DashboardError::Dashboard {
        path: path.to_path_buf(),
        problem,
    })
}

fn write(path: &Path, svg: &str) -> Result<(), DashboardError> {
    std::fs::write(path, svg).map_err(|source| DashboardError::Write {
        path: path.to_path_buf(),
        source,
    })
}
