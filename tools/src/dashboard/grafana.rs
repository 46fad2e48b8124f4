//! The part of a Grafana dashboard's JSON the renderer draws: the dashboard's title and each
//! panel's title, grid position, unit and PromQL targets with their legend formats. Anything it
//! cannot draw faithfully (a panel that is not a time series, a unit it does not know, a panel
//! off the grid) is refused with the panel named, rather than drawn wrong.

use serde::Deserialize;
use std::collections::BTreeMap;

/// Grafana's grid is 24 columns wide.
pub(super) const GRID_COLUMNS: u32 = 24;
/// A time series needs this many rows (of 30 pixels) for its title, axis and legend.
const MIN_ROWS: u32 = 4;

#[derive(Clone, Debug, PartialEq)]
pub(super) struct Dashboard {
    pub(super) title: String,
    pub(super) panels: Vec<Panel>,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) struct Panel {
    pub(super) title: String,
    pub(super) grid: GridPos,
    pub(super) unit: Unit,
    pub(super) targets: Vec<Target>,
}

/// A panel's place on the grid: columns from the left (of 24) and rows from the top.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub(super) struct GridPos {
    pub(super) x: u32,
    pub(super) y: u32,
    pub(super) w: u32,
    pub(super) h: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Target {
    pub(super) expr: String,
    /// Grafana's legend format: `{{label}}` stands for the series' value of that label.
    pub(super) legend: String,
}

/// The units of Grafana's `fieldConfig.defaults.unit` that the renderer writes on an axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Unit {
    /// `s`: a duration, written from microseconds to hours.
    Seconds,
    /// `ops`: operations per second.
    PerSecond,
    /// `short` (or none): a plain number, with k and M for thousands and millions.
    Short,
}

impl Unit {
    fn parse(unit: Option<&str>) -> Result<Unit, String> {
        match unit {
            Some("s") => Ok(Unit::Seconds),
            Some("ops") => Ok(Unit::PerSecond),
            Some("short") | None => Ok(Unit::Short),
            Some(other) => Err(format!(
                "unit \"{other}\" is not one this renderer writes (s, ops, short)"
            )),
        }
    }

    /// `value` as the axis writes it, with up to three significant digits.
    pub(super) fn format(self, value: f64) -> String {
        let magnitude = value.abs();
        match self {
            Unit::Seconds if magnitude == 0.0 => "0 s".into(),
            Unit::Seconds if magnitude < 0.001 => format!("{} µs", digits(value * 1e6)),
            Unit::Seconds if magnitude < 1.0 => format!("{} ms", digits(value * 1e3)),
            Unit::Seconds if magnitude < 60.0 => format!("{} s", digits(value)),
            Unit::Seconds if magnitude < 3600.0 => format!("{} min", digits(value / 60.0)),
            Unit::Seconds => format!("{} h", digits(value / 3600.0)),
            Unit::PerSecond => format!("{}/s", short(value)),
            Unit::Short => short(value),
        }
    }
}

fn short(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 1e6 {
        format!("{}M", digits(value / 1e6))
    } else if magnitude >= 1e3 {
        format!("{}k", digits(value / 1e3))
    } else {
        digits(value)
    }
}

/// `value` with up to three significant digits, without trailing zeros.
fn digits(value: f64) -> String {
    let magnitude = value.abs();
    let decimals = if magnitude >= 100.0 || magnitude == 0.0 {
        0
    } else if magnitude >= 10.0 {
        1
    } else if magnitude >= 1.0 {
        2
    } else {
        3
    };
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

#[derive(Deserialize)]
struct RawDashboard {
    #[serde(default)]
    title: String,
    panels: Vec<RawPanel>,
}

#[derive(Deserialize)]
struct RawPanel {
    #[serde(default)]
    title: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(rename = "gridPos")]
    grid_pos: GridPos,
    #[serde(rename = "fieldConfig", default)]
    field_config: RawFieldConfig,
    #[serde(default)]
    targets: Vec<RawTarget>,
}

#[derive(Default, Deserialize)]
struct RawFieldConfig {
    #[serde(default)]
    defaults: RawDefaults,
}

#[derive(Default, Deserialize)]
struct RawDefaults {
    unit: Option<String>,
}

#[derive(Deserialize)]
struct RawTarget {
    expr: String,
    #[serde(rename = "legendFormat", default)]
    legend_format: String,
}

impl Dashboard {
    /// The dashboard in `json`, or what keeps it from being drawn, naming the panel.
    pub(super) fn parse(json: &str) -> Result<Dashboard, String> {
        let raw: RawDashboard = serde_json::from_str(json).map_err(|e| e.to_string())?;
        if raw.panels.is_empty() {
            return Err("it has no panels".into());
        }
        let panels = raw
            .panels
            .into_iter()
            .enumerate()
            .map(|(index, panel)| {
                let name = format!("panel {} (\"{}\")", index + 1, panel.title);
                Panel::from_raw(panel).map_err(|problem| format!("{name}: {problem}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Dashboard {
            title: raw.title,
            panels,
        })
    }

    /// Grid rows from the top to the lowest panel's bottom.
    pub(super) fn rows(&self) -> u32 {
        self.panels
            .iter()
            .map(|panel| panel.grid.y + panel.grid.h)
            .max()
            .unwrap_or(0)
    }
}

impl Panel {
    fn from_raw(raw: RawPanel) -> Result<Panel, String> {
        if raw.kind != "timeseries" {
            return Err(format!(
                "type \"{}\" is not drawn by this renderer (timeseries only)",
                raw.kind
            ));
        }
        let grid = raw.grid_pos;
        if grid.w == 0 || grid.h == 0 || grid.x + grid.w > GRID_COLUMNS {
            return Err(format!(
                "gridPos x={} w={} h={} is not within the grid's {GRID_COLUMNS} columns",
                grid.x, grid.w, grid.h
            ));
        }
        if grid.h < MIN_ROWS {
            return Err(format!(
                "gridPos h={} is too short to draw a time series ({MIN_ROWS} rows at least)",
                grid.h
            ));
        }
        if raw.targets.is_empty() {
            return Err("it has no targets".into());
        }
        Ok(Panel {
            title: raw.title,
            grid,
            unit: Unit::parse(raw.field_config.defaults.unit.as_deref())?,
            targets: raw
                .targets
                .into_iter()
                .map(|t| Target {
                    expr: t.expr,
                    legend: t.legend_format,
                })
                .collect(),
        })
    }
}

/// A series' name in the legend: `format` with each `{{label}}` replaced by the series' value of
/// that label (empty when it has none), or without a format the labels as PromQL writes them
/// (`{phase="applied"}`), or the expression for a series without labels.
pub(super) fn legend(format: &str, labels: &BTreeMap<String, String>, expr: &str) -> String {
    if format.is_empty() {
        if labels.is_empty() {
            return expr.to_string();
        }
        let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        return format!("{{{}}}", pairs.join(", "));
    }
    let mut name = String::new();
    let mut rest = format;
    while let Some(open) = rest.find("{{") {
        name.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            name.push_str(&rest[open..]);
            return name;
        };
        let label = after[..close].trim();
        name.push_str(labels.get(label).map_or("", String::as_str));
        rest = &after[close + 2..];
    }
    name.push_str(rest);
    name.trim().to_string()
}
