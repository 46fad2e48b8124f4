//! The picture: the dashboard's grid in pixels (24 columns over the width, 30 pixels a row, as
//! Grafana lays it out) and each panel drawn there with plotters' SVG backend: its title, a line
//! per series over the time range, the axis in the panel's unit, and the legend underneath.
//! Colours are Grafana's dark theme and classic palette, so the picture reads as the dashboard.

use super::TimeRange;
use super::grafana::{Dashboard, GRID_COLUMNS, GridPos, Panel};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

pub(super) const MIN_WIDTH: u32 = 480;
pub(super) const MAX_WIDTH: u32 = 8000;
/// Pixels per grid row, as in Grafana.
const ROW: u32 = 30;
/// Space around the picture, and between panels.
const MARGIN: u32 = 10;
const GAP: u32 = 8;
/// The picture's title and time range above the grid.
const HEADER: u32 = 52;
const TITLE: u32 = 26;
const LEGEND_ROW: u32 = 18;
const MAX_LEGEND_ROWS: u32 = 3;

const PAGE: RGBColor = RGBColor(0x11, 0x12, 0x17);
const PANEL: RGBColor = RGBColor(0x18, 0x1b, 0x1f);
const BORDER: RGBColor = RGBColor(0x2a, 0x2d, 0x33);
const GRID: RGBColor = RGBColor(0x2c, 0x32, 0x35);
const TEXT: RGBColor = RGBColor(0xcc, 0xcc, 0xdc);
const MUTED: RGBColor = RGBColor(0x8e, 0x8e, 0x9e);
/// Grafana's classic palette, in its order.
const PALETTE: [RGBColor; 10] = [
    RGBColor(0x7e, 0xb2, 0x6d),
    RGBColor(0xea, 0xb8, 0x39),
    RGBColor(0x6e, 0xd0, 0xe0),
    RGBColor(0xef, 0x84, 0x3c),
    RGBColor(0xe2, 0x4d, 0x42),
    RGBColor(0x1f, 0x78, 0xc1),
    RGBColor(0xba, 0x43, 0xa9),
    RGBColor(0x70, 0x5d, 0xa0),
    RGBColor(0x50, 0x86, 0x42),
    RGBColor(0xcc, 0xa3, 0x00),
];

/// One series as drawn: its legend name and its points (Unix seconds, value; NaN is a gap).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Line {
    pub(super) name: String,
    pub(super) points: Vec<(f64, f64)>,
}

/// A rectangle of the picture, in pixels from its top left corner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Rect {
    pub(super) x: u32,
    pub(super) y: u32,
    pub(super) w: u32,
    pub(super) h: u32,
}

/// Where the panel at `grid` sits in a picture `width` pixels wide.
pub(super) fn panel_rect(grid: GridPos, width: u32) -> Rect {
    let column = f64::from(width - 2 * MARGIN) / f64::from(GRID_COLUMNS);
    let left = MARGIN + (f64::from(grid.x) * column).round() as u32;
    let right = MARGIN + (f64::from(grid.x + grid.w) * column).round() as u32;
    let top = MARGIN + HEADER + grid.y * ROW;
    Rect {
        x: left + GAP / 2,
        y: top + GAP / 2,
        w: right - left - GAP,
        h: grid.h * ROW - GAP,
    }
}

/// The picture's height for `dashboard`: its header and grid rows, with the margins.
pub(super) fn height(dashboard: &Dashboard) -> u32 {
    2 * MARGIN + HEADER + dashboard.rows() * ROW
}

/// The SVG of `dashboard` with `panels[i]` the series of its panel `i`, over `range`.
pub(super) fn svg(
    dashboard: &Dashboard,
    panels: &[Vec<Line>],
    range: &TimeRange,
    width: u32,
) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (width, height(dashboard))).into_drawing_area();
        root.fill(&PAGE).map_err(drawing)?;
        header(&root, dashboard, range)?;
        for (panel, lines) in dashboard.panels.iter().zip(panels) {
            let rect = panel_rect(panel.grid, width);
            let area = root.clone().shrink((rect.x, rect.y), (rect.w, rect.h));
            draw_panel(&area, panel, lines, range, rect)?;
        }
        root.present().map_err(drawing)?;
    }
    Ok(svg)
}

fn drawing(error: impl std::fmt::Display) -> String {
    error.to_string()
}

fn font(size: u32, colour: RGBColor) -> TextStyle<'static> {
    ("sans-serif", size).into_font().color(&colour)
}

fn header(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    dashboard: &Dashboard,
    range: &TimeRange,
) -> Result<(), String> {
    let x = (MARGIN + GAP / 2) as i32;
    root.draw(&Text::new(
        dashboard.title.clone(),
        (x, MARGIN as i32),
        font(22, TEXT),
    ))
    .map_err(drawing)?;
    let caption = format!(
        "{} to {} (UTC), a point every {} s; drawn from Prometheus by droidfleet dashboard render, not Grafana",
        timestamp(range.start),
        timestamp(range.end),
        range.step
    );
    root.draw(&Text::new(
        caption,
        (x, (MARGIN + 30) as i32),
        font(13, MUTED),
    ))
    .map_err(drawing)
}

fn draw_panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    panel: &Panel,
    lines: &[Line],
    range: &TimeRange,
    rect: Rect,
) -> Result<(), String> {
    area.fill(&PANEL).map_err(drawing)?;
    area.draw(&Rectangle::new(
        [(0, 0), (rect.w as i32 - 1, rect.h as i32 - 1)],
        BORDER.stroke_width(1),
    ))
    .map_err(drawing)?;
    area.draw(&Text::new(panel.title.clone(), (10, 7), font(14, TEXT)))
        .map_err(drawing)?;

    let legend = legend_layout(lines, rect.w);
    let legend_height = legend.rows * LEGEND_ROW + 6;
    let (chart_area, legend_area) = area
        .margin(TITLE, 0, 0, 0)
        .split_vertically(rect.h - TITLE - legend_height);

    let values = lines
        .iter()
        .flat_map(|line| &line.points)
        .map(|(_, value)| *value)
        .filter(|value| value.is_finite());
    let (low, high) = values.fold((0.0_f64, f64::NEG_INFINITY), |(low, high), v| {
        (low.min(v), high.max(v))
    });
    let high = if high > low { high * 1.1 } else { low + 1.0 };
    let mut chart = ChartBuilder::on(&chart_area)
        .margin_left(6)
        .margin_right(14)
        .margin_top(4)
        .x_label_area_size(22)
        .y_label_area_size(66)
        .build_cartesian_2d(range.start..range.end, low..high)
        .map_err(drawing)?;
    let unit = panel.unit;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .bold_line_style(GRID)
        .light_line_style(TRANSPARENT)
        .axis_style(BORDER)
        .x_labels(6)
        .y_labels(5)
        .label_style(font(11, MUTED))
        .x_label_formatter(&|at| clock(*at))
        .y_label_formatter(&|value| unit.format(*value))
        .draw()
        .map_err(drawing)?;
    let no_data = lines
        .iter()
        .all(|line| line.points.iter().all(|(_, value)| !value.is_finite()));
    if no_data {
        let (w, h) = chart_area.dim_in_pixel();
        chart_area
            .draw(&Text::new(
                "No data",
                (w as i32 / 2, h as i32 / 2),
                font(14, MUTED).pos(Pos::new(HPos::Center, VPos::Center)),
            ))
            .map_err(drawing)?;
    }
    for (index, line) in lines.iter().enumerate() {
        let colour = PALETTE[index % PALETTE.len()];
        for run in line
            .points
            .split(|(_, value)| !value.is_finite())
            .filter(|run| !run.is_empty())
        {
            if let [point] = run {
                chart
                    .draw_series(std::iter::once(Circle::new(*point, 2, colour.filled())))
                    .map_err(drawing)?;
            } else {
                chart
                    .draw_series(LineSeries::new(run.iter().copied(), colour.stroke_width(2)))
                    .map_err(drawing)?;
            }
        }
    }

    for item in &legend.items {
        let y = (item.row * LEGEND_ROW + 4) as i32;
        let x = item.x as i32;
        if let Some(series) = item.series {
            let colour = PALETTE[series % PALETTE.len()];
            legend_area
                .draw(&Rectangle::new(
                    [(x, y + 6), (x + 14, y + 9)],
                    colour.filled(),
                ))
                .map_err(drawing)?;
        }
        legend_area
            .draw(&Text::new(item.text.clone(), (x + 20, y), font(12, TEXT)))
            .map_err(drawing)?;
    }
    Ok(())
}

/// One legend entry: the series whose colour it shows (none for the count of entries left
/// out), its text and where it goes.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct LegendItem {
    pub(super) series: Option<usize>,
    pub(super) text: String,
    pub(super) row: u32,
    pub(super) x: u32,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) struct Legend {
    pub(super) items: Vec<LegendItem>,
    pub(super) rows: u32,
}

/// Left edge of the legend's rows in a panel.
const LEGEND_LEFT: u32 = 10;

/// Pixels an entry takes: the swatch, its text (sans-serif at 12 pixels averages about 6.5 per
/// character) and the space before the next.
fn entry_width(text: &str) -> u32 {
    20 + (text.chars().count() as u32 * 13).div_ceil(2) + 16
}

/// The legend under a panel `width` pixels wide: entries left to right, wrapping onto at most
/// three rows; when some do not fit, the last entries make room for their count ("+4 more").
pub(super) fn legend_layout(lines: &[Line], width: u32) -> Legend {
    let mut items: Vec<LegendItem> = Vec::new();
    let (mut row, mut x) = (0, LEGEND_LEFT);
    for (index, line) in lines.iter().enumerate() {
        let wide = entry_width(&line.name);
        if x > LEGEND_LEFT && x + wide > width {
            row += 1;
            x = LEGEND_LEFT;
        }
        if row == MAX_LEGEND_ROWS {
            break;
        }
        items.push(LegendItem {
            series: Some(index),
            text: line.name.clone(),
            row,
            x,
        });
        x += wide;
    }
    while items.len() < lines.len() {
        let more = format!("+{} more", lines.len() - items.len());
        let (row, x) = items.last().map_or((0, LEGEND_LEFT), |last| {
            (last.row, last.x + entry_width(&last.text))
        });
        if items.is_empty() || x + entry_width(&more) <= width {
            items.push(LegendItem {
                series: None,
                text: more,
                row,
                x,
            });
            break;
        }
        items.pop();
    }
    let rows = items.last().map_or(1, |item| item.row + 1);
    Legend { items, rows }
}

/// `HH:MM:SS` of a Unix time, in UTC.
pub(super) fn clock(at: f64) -> String {
    let seconds = (at.round() as i64).rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

fn timestamp(at: f64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(at.max(0.0));
    humantime::format_rfc3339_seconds(time).to_string()
}
