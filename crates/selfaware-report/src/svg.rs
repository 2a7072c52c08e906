//! Hand-written inline SVG figures: grouped bars with interval whiskers and per-seed dots
//! (paper Figure 3), per-question small multiples against a baseline line (Figures 6 and 8),
//! and self-report vs behaviour scatters with per-cluster fits (Figure 4).
//!
//! Geometry is computed by small pure functions ([`bar_geometry`], [`nice_ticks`]) so tests can
//! check it without parsing SVG. Coordinates are written with one decimal, so the same input
//! gives byte-identical output.

use std::fmt::Write as _;

use crate::format::{self, escape, fixed, format_mean_ci, format_r, MISSING};
use crate::results::{Cell, Condition, Metric, Results, Scatter};

/// Appends formatted text to a `String` (writing to a `String` cannot fail).
macro_rules! w {
    ($out:expr, $($arg:tt)*) => {{
        let _ = write!($out, $($arg)*);
    }};
}

/// Height in pixels of the plot area of grouped-bar figures (the probe and self-report
/// figures).
pub const BAR_PLOT_HEIGHT: f64 = 280.0;

/// Widest grouped-bar figure, in pixels; more groups make narrower bars.
pub const MAX_FIGURE_WIDTH: f64 = 1270.0;

/// Fill colours of non-baseline conditions, in condition order (Okabe–Ito based, each with at
/// least 3:1 contrast against white; bars also get a dark outline).
pub const PALETTE: [&str; 8] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#8C6D1F", "#5E4FA2", "#B2182B", "#2C7F8E",
];

/// Fill colours of baseline conditions, in order of appearance among baselines.
pub const BASELINE_GREYS: [&str; 3] = ["#7A7A7A", "#A3A3A3", "#555555"];

pub(crate) const TEXT: &str = "#1A1A1A";
pub(crate) const GRID: &str = "#E3E3E3";
pub(crate) const AXIS: &str = "#333333";
const FONT: &str = "DejaVu Sans, Helvetica, Arial, sans-serif";
/// Average glyph width of the 11–12 px labels, for wrapping and legend layout.
const CHAR_W: f64 = 6.4;

/// The fill colour of a condition: baselines grey, the others from [`PALETTE`] by their index
/// among non-baseline conditions. An id not in `conditions` gets a dark grey.
pub fn condition_color(conditions: &[Condition], id: &str) -> &'static str {
    let mut base_i = 0;
    let mut other_i = 0;
    for c in conditions {
        if c.id == id {
            return if c.baseline {
                BASELINE_GREYS[base_i % BASELINE_GREYS.len()]
            } else {
                PALETTE[other_i % PALETTE.len()]
            };
        }
        if c.baseline {
            base_i += 1;
        } else {
            other_i += 1;
        }
    }
    "#444444"
}

/// A usable axis range: ends swapped if reversed; a non-finite or empty range becomes
/// `(0, 1)` or `(lo, lo + 1)`.
pub fn normalize_range(range: (f64, f64)) -> (f64, f64) {
    let (a, b) = range;
    if !a.is_finite() || !b.is_finite() {
        return (0.0, 1.0);
    }
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    if hi - lo <= f64::EPSILON * lo.abs().max(1.0) {
        (lo, lo + 1.0)
    } else {
        (lo, hi)
    }
}

/// Where a bar sits inside a plot area of height `plot_height` (y grows downwards, 0 = top of
/// the plot area).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BarGeometry {
    /// y of the bar's upper edge, from the top of the plot area.
    pub top: f64,
    /// Bar height in pixels.
    pub height: f64,
    /// True when the value lies outside the range and the bar was cut at the range's end.
    pub clamped: bool,
}

/// The y coordinate (from the top of a plot of height `plot_height`) of `value` on an axis
/// spanning `range`; values outside the range are clamped to its ends.
pub fn y_position(value: f64, range: (f64, f64), plot_height: f64) -> f64 {
    let (lo, hi) = normalize_range(range);
    let v = value.clamp(lo, hi);
    plot_height * (hi - v) / (hi - lo)
}

/// The geometry of a bar of `value` on an axis spanning `range`: bars grow from 0 when 0 is
/// inside the range, else from the range's end nearest 0, so the pixel height is
/// proportional to the value on a range starting at 0.
pub fn bar_geometry(value: f64, range: (f64, f64), plot_height: f64) -> BarGeometry {
    let (lo, hi) = normalize_range(range);
    let anchor = 0.0f64.clamp(lo, hi);
    let y_anchor = y_position(anchor, (lo, hi), plot_height);
    let y_value = y_position(value, (lo, hi), plot_height);
    BarGeometry {
        top: y_anchor.min(y_value),
        height: (y_anchor - y_value).abs(),
        clamped: value < lo || value > hi,
    }
}

/// Evenly spaced "nice" tick values (steps of 1, 2, 2.5 or 5 × 10^k) covering `range`, about
/// `target` of them, and the decimals needed to print them.
pub fn nice_ticks(range: (f64, f64), target: usize) -> (Vec<f64>, usize) {
    let (lo, hi) = normalize_range(range);
    let raw = (hi - lo) / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw * 0.999)
        .unwrap_or(10.0 * mag);
    let decimals = (0..=9)
        .find(|d| {
            let scaled = step * 10f64.powi(*d);
            (scaled - scaled.round()).abs() < 1e-6 * scaled.abs().max(1.0)
        })
        .unwrap_or(9) as usize;
    let first = (lo / step - 1e-9).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    let ticks = (first..=last).map(|k| k as f64 * step).collect();
    (ticks, decimals)
}

/// One bar of a bar plot.
#[derive(Debug, Clone)]
pub(crate) struct Bar {
    pub color: &'static str,
    pub mean: Option<f64>,
    pub ci: Option<(f64, f64)>,
    pub seeds: Vec<f64>,
    /// Hover text: condition, value, interval, seeds.
    pub tooltip: String,
}

/// A labelled group of bars (one question or probe).
#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub label: String,
    pub bars: Vec<Bar>,
}

/// A dashed horizontal reference line (a baseline's mean).
#[derive(Debug, Clone)]
pub(crate) struct RefLine {
    pub value: f64,
    pub color: &'static str,
    /// Hover text.
    pub label: String,
    /// The value as printed next to the line.
    pub value_text: String,
    /// `stroke-dasharray` of the line.
    pub dash: &'static str,
}

/// A legend entry.
#[derive(Debug, Clone)]
pub(crate) struct LegendItem {
    pub color: &'static str,
    pub label: String,
    pub kind: LegendKind,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum LegendKind {
    Bar,
    /// A dashed line with this `stroke-dasharray`.
    Dashed(&'static str),
}

/// The bars of one metric, one per condition that has a cell (in condition order).
pub(crate) fn bars_for(r: &Results, m: &Metric, include_baselines: bool) -> Vec<Bar> {
    r.conditions
        .iter()
        .filter(|c| include_baselines || !c.baseline)
        .filter_map(|c| {
            let cell = m.cells.iter().find(|cell| cell.condition == c.id)?;
            Some(bar_for(r, m, c, cell))
        })
        .collect()
}

fn finite(v: Option<f64>) -> Option<f64> {
    v.filter(|x| x.is_finite())
}

fn bar_for(r: &Results, m: &Metric, c: &Condition, cell: &Cell) -> Bar {
    let mean = finite(cell.mean);
    let ci = match (finite(cell.ci_low), finite(cell.ci_high)) {
        (Some(lo), Some(hi)) => Some((lo, hi)),
        _ => None,
    };
    let seeds: Vec<f64> = cell
        .per_seed
        .iter()
        .filter_map(|s| finite(s.value))
        .collect();
    let tooltip = format!(
        "{}: {} ({} value{})",
        c.label,
        format_mean_ci(mean, cell.ci_low, cell.ci_high, m.range),
        cell.per_seed.len(),
        if cell.per_seed.len() == 1 { "" } else { "s" }
    );
    Bar {
        color: condition_color(&r.conditions, &c.id),
        mean,
        ci,
        seeds,
        tooltip,
    }
}

/// Legend entries for the conditions that appear in `metrics`.
pub(crate) fn condition_legend(
    r: &Results,
    metrics: &[&Metric],
    include_baselines: bool,
) -> Vec<LegendItem> {
    r.conditions
        .iter()
        .filter(|c| include_baselines || !c.baseline)
        .filter(|c| {
            metrics
                .iter()
                .any(|m| m.cells.iter().any(|cell| cell.condition == c.id))
        })
        .map(|c| LegendItem {
            color: condition_color(&r.conditions, &c.id),
            label: if c.n_seeds > 1 {
                format!("{} ({} seeds)", c.label, c.n_seeds)
            } else {
                c.label.clone()
            },
            kind: LegendKind::Bar,
        })
        .collect()
}

fn text_width(s: &str) -> f64 {
    s.chars().count() as f64 * CHAR_W
}

/// Lays out legend items left to right, wrapping at `max_width`; returns the height used.
fn legend(out: &mut String, x: f64, y: f64, max_width: f64, items: &[LegendItem]) -> f64 {
    if items.is_empty() {
        return 0.0;
    }
    let row_h = 18.0;
    let (mut cx, mut cy) = (x, y);
    for item in items {
        let w = 18.0 + text_width(&item.label) + 18.0;
        if cx > x && cx + w > x + max_width {
            cx = x;
            cy += row_h;
        }
        match item.kind {
            LegendKind::Bar => w!(
                out,
                r#"<rect x="{:.1}" y="{:.1}" width="12" height="12" fill="{}" stroke="{AXIS}" stroke-width="0.8"/>"#,
                cx,
                cy,
                item.color
            ),
            LegendKind::Dashed(dash) => w!(
                out,
                r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{}" stroke-width="2" stroke-dasharray="{dash}"/>"#,
                cx,
                cy + 6.0,
                cx + 14.0,
                cy + 6.0,
                item.color
            ),
        }
        w!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="12" fill="{TEXT}">{}</text>"#,
            cx + 18.0,
            cy + 10.5,
            escape(&item.label)
        );
        cx += w;
    }
    cy + row_h - y
}

/// Legend height without drawing it (same layout as [`legend`]).
fn legend_height(max_width: f64, items: &[LegendItem]) -> f64 {
    let mut scratch = String::new();
    legend(&mut scratch, 0.0, 0.0, max_width, items)
}

pub(crate) fn svg_open(out: &mut String, width: f64, height: f64, label: &str) {
    w!(
        out,
        r#"<svg class="figure" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" role="img" aria-label="{}" font-family="{FONT}">"#,
        escape(label)
    );
    w!(
        out,
        r##"<rect x="0" y="0" width="{width:.0}" height="{height:.0}" fill="#FFFFFF"/>"##
    );
}

/// A rectangle in SVG coordinates (a plot area).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Area {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

/// Draws y gridlines, ticks and tick labels for a plot area; `label` (rotated) left of it.
pub(crate) fn y_axis(
    out: &mut String,
    area: Area,
    range: (f64, f64),
    n_ticks: usize,
    label: Option<&str>,
) {
    let Area { x, y, w, h } = area;
    let (ticks, decimals) = nice_ticks(range, n_ticks);
    for t in ticks {
        let ty = y + y_position(t, range, h);
        w!(
            out,
            r#"<line x1="{x:.1}" y1="{ty:.1}" x2="{:.1}" y2="{ty:.1}" stroke="{GRID}" stroke-width="1"/>"#,
            x + w
        );
        w!(
            out,
            r#"<line x1="{:.1}" y1="{ty:.1}" x2="{x:.1}" y2="{ty:.1}" stroke="{AXIS}" stroke-width="1"/>"#,
            x - 4.0
        );
        w!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end" fill="{TEXT}">{}</text>"#,
            x - 6.0,
            ty + 3.5,
            fixed(t, decimals)
        );
    }
    w!(
        out,
        r#"<line x1="{x:.1}" y1="{y:.1}" x2="{x:.1}" y2="{:.1}" stroke="{AXIS}" stroke-width="1"/>"#,
        y + h
    );
    if let Some(label) = label {
        let cx = x - 44.0;
        let cy = y + h / 2.0;
        w!(
            out,
            r#"<text x="{cx:.1}" y="{cy:.1}" font-size="12" text-anchor="middle" fill="{TEXT}" transform="rotate(-90 {cx:.1} {cy:.1})">{}</text>"#,
            escape(label)
        );
    }
}

/// Multi-line text centred at `cx`, first baseline at `y`.
fn text_lines(out: &mut String, cx: f64, y: f64, lines: &[String], size: f64, bold: bool) {
    if lines.is_empty() {
        return;
    }
    let weight = if bold { r#" font-weight="bold""# } else { "" };
    w!(
        out,
        r#"<text x="{cx:.1}" y="{y:.1}" font-size="{size:.0}" text-anchor="middle" fill="{TEXT}"{weight}>"#
    );
    for (i, line) in lines.iter().enumerate() {
        let dy = if i == 0 { 0.0 } else { size + 2.0 };
        w!(
            out,
            r#"<tspan x="{cx:.1}" dy="{dy:.1}">{}</tspan>"#,
            escape(line)
        );
    }
    out.push_str("</text>");
}

/// One plot area of grouped bars with optional dashed reference lines.
struct Panel<'a> {
    x: f64,
    y: f64,
    width: f64,
    height: f64,
    range: (f64, f64),
    y_label: Option<&'a str>,
    n_ticks: usize,
    groups: &'a [Group],
    ref_lines: &'a [RefLine],
    bar_width: f64,
    /// Wrap width (characters) and line limit of the group labels under the axis; 0 lines
    /// hides them.
    label_chars: usize,
    label_lines: usize,
}

fn draw_panel(out: &mut String, p: &Panel) {
    let range = normalize_range(p.range);
    y_axis(
        out,
        Area {
            x: p.x,
            y: p.y,
            w: p.width,
            h: p.height,
        },
        range,
        p.n_ticks,
        p.y_label,
    );
    let y_anchor = p.y + y_position(0.0f64.clamp(range.0, range.1), range, p.height);
    let slot = p.width / p.groups.len().max(1) as f64;
    for (gi, g) in p.groups.iter().enumerate() {
        let slot_x = p.x + slot * gi as f64;
        let n = g.bars.len().max(1) as f64;
        let bw = p.bar_width.min((slot - 16.0) / n).max(3.0);
        let start = slot_x + (slot - bw * n) / 2.0;
        for (bi, bar) in g.bars.iter().enumerate() {
            let bx = start + bw * bi as f64;
            draw_bar(out, p, range, bx, bw, bar);
        }
        if p.label_lines > 0 {
            let lines = format::wrap(&g.label, p.label_chars, p.label_lines);
            w!(out, "<g><title>{}</title>", escape(&g.label));
            text_lines(
                out,
                slot_x + slot / 2.0,
                p.y + p.height + 16.0,
                &lines,
                11.0,
                false,
            );
            out.push_str("</g>");
        }
    }
    // x axis at the bars' anchor, drawn last so it sits on top of the bars.
    w!(
        out,
        r#"<line x1="{:.1}" y1="{y_anchor:.1}" x2="{:.1}" y2="{y_anchor:.1}" stroke="{AXIS}" stroke-width="1"/>"#,
        p.x,
        p.x + p.width
    );
    for line in p.ref_lines {
        if !line.value.is_finite() {
            continue;
        }
        let ly = p.y + y_position(line.value, range, p.height);
        w!(
            out,
            r#"<g><title>{}</title><line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{}" stroke-width="2" stroke-dasharray="{}"/></g>"#,
            escape(&line.label),
            p.x,
            p.x + p.width,
            line.color,
            line.dash
        );
        w!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end" fill="{TEXT}">{}</text>"#,
            p.x + p.width - 2.0,
            ly - 4.0,
            escape(&line.value_text)
        );
    }
}

fn draw_bar(out: &mut String, p: &Panel, range: (f64, f64), bx: f64, bw: f64, bar: &Bar) {
    w!(out, "<g><title>{}</title>", escape(&bar.tooltip));
    let cx = bx + bw / 2.0;
    match bar.mean {
        Some(mean) => {
            let g = bar_geometry(mean, range, p.height);
            w!(
                out,
                r#"<rect x="{bx:.1}" y="{:.1}" width="{bw:.1}" height="{:.1}" fill="{}" stroke="{AXIS}" stroke-width="0.8"/>"#,
                p.y + g.top,
                g.height,
                bar.color
            );
            if g.clamped {
                // Cut bar: show the true value at the cut end.
                let above = mean > range.1;
                let ty = if above {
                    p.y - 4.0
                } else {
                    p.y + p.height - 4.0
                };
                w!(
                    out,
                    r#"<text x="{cx:.1}" y="{ty:.1}" font-size="10" font-weight="bold" text-anchor="middle" fill="{TEXT}">{}{}</text>"#,
                    if above { "▲" } else { "▼" },
                    fixed(mean, format::decimals_for_range(range))
                );
            }
        }
        None => {
            w!(
                out,
                r#"<text x="{cx:.1}" y="{:.1}" font-size="11" text-anchor="middle" fill="{TEXT}">{MISSING}</text>"#,
                p.y + p.height - 4.0
            );
        }
    }
    if let Some((lo, hi)) = bar.ci {
        let y1 = p.y + y_position(lo, range, p.height);
        let y2 = p.y + y_position(hi, range, p.height);
        let cap = (bw * 0.3).min(6.0);
        w!(
            out,
            r#"<path d="M{cx:.1} {y1:.1}V{y2:.1}M{:.1} {y1:.1}H{:.1}M{:.1} {y2:.1}H{:.1}" stroke="{TEXT}" stroke-width="1.4" fill="none"/>"#,
            cx - cap,
            cx + cap,
            cx - cap,
            cx + cap
        );
    }
    let n = bar.seeds.len();
    for (i, v) in bar.seeds.iter().enumerate() {
        let dx = if n > 1 {
            bx + bw * 0.2 + bw * 0.6 * i as f64 / (n - 1) as f64
        } else {
            cx
        };
        let dy = p.y + y_position(*v, range, p.height);
        w!(
            out,
            r##"<circle cx="{dx:.1}" cy="{dy:.1}" r="2.6" fill="#FFFFFF" stroke="{TEXT}" stroke-width="1"/>"##
        );
    }
    out.push_str("</g>");
}

/// Axis label of a metric range, e.g. `score (0–1)`.
pub(crate) fn range_label(prefix: &str, range: (f64, f64)) -> String {
    let (lo, hi) = normalize_range(range);
    let d = if lo.fract() == 0.0 && hi.fract() == 0.0 {
        0
    } else {
        2
    };
    format!("{prefix} ({}–{})", fixed(lo, d), fixed(hi, d))
}

/// Figure 3 style: x = metrics, one bar per condition in each group, interval whiskers,
/// per-seed dots, baselines grey. All `metrics` share one y axis (`range`).
pub(crate) fn grouped_bar_figure(
    r: &Results,
    metrics: &[&Metric],
    range: (f64, f64),
    y_label: &str,
) -> String {
    let groups: Vec<Group> = metrics
        .iter()
        .map(|m| Group {
            label: m.label.clone(),
            bars: bars_for(r, m, true),
        })
        .collect();
    let n_bars = groups
        .iter()
        .map(|g| g.bars.len())
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let bar_width = if n_bars <= 4.0 {
        26.0
    } else {
        (120.0 / n_bars).max(8.0)
    };
    let left = 76.0;
    let right = 24.0;
    // Wide enough for the bars and their labels, narrow enough to fit a page.
    let slot = (n_bars * bar_width + 40.0)
        .max(150.0)
        .min((MAX_FIGURE_WIDTH - left - right) / groups.len().max(1) as f64);
    let plot_w = (slot * groups.len().max(1) as f64).max(480.0);
    let width = left + plot_w + right;
    let legend_items = condition_legend(r, metrics, true);
    let legend_h = legend_height(width - 32.0, &legend_items);
    let top = 16.0 + legend_h + 20.0;
    let plot_h = BAR_PLOT_HEIGHT;
    let label_chars = ((plot_w / groups.len().max(1) as f64 - 10.0) / CHAR_W).floor() as usize;
    let label_lines = 5;
    let max_lines = groups
        .iter()
        .map(|g| format::wrap(&g.label, label_chars, label_lines).len())
        .max()
        .unwrap_or(1);
    let height = top + plot_h + 22.0 + 13.0 * max_lines as f64 + 12.0;
    let mut out = String::new();
    svg_open(&mut out, width, height, y_label);
    legend(&mut out, 16.0, 14.0, width - 32.0, &legend_items);
    draw_panel(
        &mut out,
        &Panel {
            x: left,
            y: top,
            width: plot_w,
            height: plot_h,
            range,
            y_label: Some(y_label),
            n_ticks: 5,
            groups: &groups,
            ref_lines: &[],
            bar_width,
            label_chars,
            label_lines,
        },
    );
    out.push_str("</svg>");
    out
}

/// Dash patterns of baseline reference lines, by index among baselines, so two baselines
/// differ by more than their shade of grey.
pub const BASELINE_DASHES: [&str; 3] = ["6 4", "2 3", "10 3 2 3"];

fn baseline_dash(baselines: &[&Condition], id: &str) -> &'static str {
    let i = baselines.iter().position(|b| b.id == id).unwrap_or(0);
    BASELINE_DASHES[i % BASELINE_DASHES.len()]
}

/// Figures 6/8 style small multiples: one panel per metric with the non-baseline conditions
/// as bars and each baseline's mean as a dashed line. `None` when there is no baseline
/// condition or no non-baseline bar to draw.
pub(crate) fn baseline_panels_figure(
    r: &Results,
    metrics: &[&Metric],
    range: (f64, f64),
) -> Option<String> {
    let baselines: Vec<&Condition> = r.conditions.iter().filter(|c| c.baseline).collect();
    if baselines.is_empty() {
        return None;
    }
    let panels: Vec<(&Metric, Vec<Bar>, Vec<RefLine>)> = metrics
        .iter()
        .map(|m| {
            let refs = baselines
                .iter()
                .filter_map(|b| {
                    let cell = m.cells.iter().find(|c| c.condition == b.id)?;
                    let value = finite(cell.mean)?;
                    let value_text = format::format_value(Some(value), m.range);
                    Some(RefLine {
                        value,
                        color: condition_color(&r.conditions, &b.id),
                        label: format!("{}: {value_text}", b.label),
                        value_text,
                        dash: baseline_dash(&baselines, &b.id),
                    })
                })
                .collect();
            (*m, bars_for(r, m, false), refs)
        })
        .filter(|(_, bars, _)| !bars.is_empty())
        .collect();
    if panels.is_empty() {
        return None;
    }
    let per_row = 4usize.min(panels.len());
    let rows = panels.len().div_ceil(per_row);
    let (panel_w, plot_h, left, gap) = (200.0, 170.0, 56.0, 28.0);
    let title_lines = 3;
    // Title lines, then room for a clamped bar's value label above the plot.
    let title_h = 14.0 * title_lines as f64 + 16.0;
    let cell_w = left + panel_w + gap;
    let cell_h = title_h + plot_h + 30.0;
    let width = 16.0 + cell_w * per_row as f64;
    let mut legend_items = condition_legend(r, metrics, false);
    legend_items.extend(baselines.iter().map(|b| LegendItem {
        color: condition_color(&r.conditions, &b.id),
        label: format!("{} (mean)", b.label),
        kind: LegendKind::Dashed(baseline_dash(&baselines, &b.id)),
    }));
    let legend_h = legend_height(width - 32.0, &legend_items);
    let top = 14.0 + legend_h + 10.0;
    let height = top + cell_h * rows as f64;
    let mut out = String::new();
    svg_open(
        &mut out,
        width,
        height,
        "per-question bars against the baseline",
    );
    legend(&mut out, 16.0 + left, 14.0, width - 32.0, &legend_items);
    for (i, (m, bars, refs)) in panels.iter().enumerate() {
        let (col, row) = (i % per_row, i / per_row);
        let x0 = 16.0 + cell_w * col as f64 + left;
        let y0 = top + cell_h * row as f64;
        let lines = format::wrap(&m.label, (panel_w / (CHAR_W + 0.4)) as usize, title_lines);
        w!(out, "<g><title>{}</title>", escape(&m.label));
        text_lines(&mut out, x0 + panel_w / 2.0, y0 + 12.0, &lines, 12.0, true);
        out.push_str("</g>");
        let groups = [Group {
            label: String::new(),
            bars: bars.clone(),
        }];
        draw_panel(
            &mut out,
            &Panel {
                x: x0,
                y: y0 + title_h,
                width: panel_w,
                height: plot_h,
                range,
                y_label: if col == 0 { Some("score") } else { None },
                n_ticks: 4,
                groups: &groups,
                ref_lines: refs,
                bar_width: 30.0,
                label_chars: 0,
                label_lines: 0,
            },
        );
    }
    out.push_str("</svg>");
    Some(out)
}

/// The clusters of a scatter in display order: fits first, then any cluster only seen in
/// points.
pub(crate) fn scatter_clusters(s: &Scatter) -> Vec<String> {
    let mut clusters: Vec<String> = Vec::new();
    for c in s
        .fits
        .iter()
        .map(|f| &f.cluster)
        .chain(s.points.iter().map(|p| &p.cluster))
    {
        if !clusters.contains(c) {
            clusters.push(c.clone());
        }
    }
    clusters
}

fn cluster_color(r: &Results, clusters: &[String], cluster: &str) -> &'static str {
    if r.conditions.iter().any(|c| c.id == cluster) {
        return condition_color(&r.conditions, cluster);
    }
    let i = clusters.iter().position(|c| c == cluster).unwrap_or(0);
    PALETTE[i % PALETTE.len()]
}

/// Axis range for scatter data: `[0, 1]` when every value lies in it, else the data range
/// extended to nice ticks.
fn data_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if lo >= 0.0 && hi <= 1.0 {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-9);
    let (ticks, _) = nice_ticks((lo - pad, hi + pad), 5);
    let step = if ticks.len() >= 2 {
        ticks[1] - ticks[0]
    } else {
        1.0
    };
    ((lo / step).floor() * step, (hi / step).ceil() * step)
}

/// Figure 4 style: self-report (x) against behaviour (y), points coloured by cluster, one
/// least-squares line per cluster over its points' x span, legend with r and its interval.
pub(crate) fn scatter_figure(r: &Results, s: &Scatter, index: usize) -> String {
    let clip = format!("scatter-clip-{index}");
    let clusters = scatter_clusters(s);
    let x_range = normalize_range(data_range(s.points.iter().map(|p| p.x)));
    let y_range = normalize_range(data_range(s.points.iter().map(|p| p.y)));
    let (left, top, plot_w, plot_h) = (76.0, 20.0, 460.0, 340.0);
    let legend_x = left + plot_w + 30.0;
    let legend_w = 360.0;
    let width = legend_x + legend_w;
    let height = top + plot_h + 60.0;
    let mut out = String::new();
    svg_open(&mut out, width, height, &s.title);
    y_axis(
        &mut out,
        Area {
            x: left,
            y: top,
            w: plot_w,
            h: plot_h,
        },
        y_range,
        5,
        Some(&s.y_label),
    );
    // x axis: vertical gridlines, ticks, labels.
    let (xt, xd) = nice_ticks(x_range, 5);
    let x_of = |v: f64| left + plot_w - y_position(v, x_range, plot_w);
    for t in xt {
        let tx = x_of(t);
        w!(
            out,
            r#"<line x1="{tx:.1}" y1="{top:.1}" x2="{tx:.1}" y2="{:.1}" stroke="{GRID}" stroke-width="1"/>"#,
            top + plot_h
        );
        w!(
            out,
            r#"<line x1="{tx:.1}" y1="{:.1}" x2="{tx:.1}" y2="{:.1}" stroke="{AXIS}" stroke-width="1"/>"#,
            top + plot_h,
            top + plot_h + 4.0
        );
        w!(
            out,
            r#"<text x="{tx:.1}" y="{:.1}" font-size="11" text-anchor="middle" fill="{TEXT}">{}</text>"#,
            top + plot_h + 17.0,
            fixed(t, xd)
        );
    }
    w!(
        out,
        r#"<line x1="{left:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{AXIS}" stroke-width="1"/>"#,
        top + plot_h,
        left + plot_w,
        top + plot_h
    );
    w!(
        out,
        r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle" fill="{TEXT}">{}</text>"#,
        left + plot_w / 2.0,
        top + plot_h + 40.0,
        escape(&s.x_label)
    );
    // Fit lines under the points.
    w!(
        out,
        r#"<defs><clipPath id="{clip}"><rect x="{left:.1}" y="{top:.1}" width="{plot_w:.1}" height="{plot_h:.1}"/></clipPath></defs>"#
    );
    for fit in &s.fits {
        let xs: Vec<f64> = s
            .points
            .iter()
            .filter(|p| p.cluster == fit.cluster && p.x.is_finite())
            .map(|p| p.x)
            .collect();
        let (x1, x2) = match (
            xs.iter().cloned().reduce(f64::min),
            xs.iter().cloned().reduce(f64::max),
        ) {
            (Some(a), Some(b)) => (a, b),
            _ => x_range,
        };
        if !(fit.slope.is_finite() && fit.intercept.is_finite()) {
            continue;
        }
        let (y1, y2) = (
            fit.intercept + fit.slope * x1,
            fit.intercept + fit.slope * x2,
        );
        let ty = |v: f64| {
            let (lo, hi) = y_range;
            top + plot_h * (hi - v) / (hi - lo)
        };
        w!(
            out,
            r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{}" stroke-width="2" clip-path="url(#{clip})"/>"#,
            x_of(x1),
            ty(y1),
            x_of(x2),
            ty(y2),
            cluster_color(r, &clusters, &fit.cluster),
        );
    }
    for p in &s.points {
        if !(p.x.is_finite() && p.y.is_finite()) {
            continue;
        }
        let label = r
            .conditions
            .iter()
            .find(|c| c.id == p.condition)
            .map_or(p.condition.as_str(), |c| c.label.as_str());
        w!(
            out,
            r#"<circle cx="{:.1}" cy="{:.1}" r="4.5" fill="{}" fill-opacity="0.85" stroke="{AXIS}" stroke-width="0.8"><title>{} seed {}: x = {}, y = {}</title></circle>"#,
            x_of(p.x),
            top + y_position(p.y, y_range, plot_h),
            cluster_color(r, &clusters, &p.cluster),
            escape(label),
            format::format_seed(p.seed),
            fixed(p.x, 3),
            fixed(p.y, 3)
        );
    }
    // Legend: one block per cluster.
    let mut ly = top + 6.0;
    for c in &clusters {
        let color = cluster_color(r, &clusters, c);
        let label = r
            .conditions
            .iter()
            .find(|cond| cond.id == *c)
            .map_or(c.as_str(), |cond| cond.label.as_str());
        w!(
            out,
            r#"<circle cx="{:.1}" cy="{:.1}" r="5" fill="{color}" stroke="{AXIS}" stroke-width="0.8"/>"#,
            legend_x + 6.0,
            ly + 2.0
        );
        w!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="12" font-weight="bold" fill="{TEXT}">{}</text>"#,
            legend_x + 18.0,
            ly + 6.0,
            escape(label)
        );
        ly += 17.0;
        if let Some(fit) = s.fits.iter().find(|f| f.cluster == *c) {
            let ci = match (fit.r_ci_low, fit.r_ci_high) {
                (Some(lo), Some(hi)) => {
                    format!(" [{}, {}]", format_r(Some(lo)), format_r(Some(hi)))
                }
                _ => String::new(),
            };
            let line1 = format!("r = {}{ci}, n = {}", format_r(fit.r), fit.n);
            let line2 = format!(
                "y = {} + {}·x",
                fixed(fit.intercept, 3),
                fixed(fit.slope, 3)
            );
            for line in [line1, line2] {
                w!(
                    out,
                    r#"<text x="{:.1}" y="{:.1}" font-size="12" fill="{TEXT}">{}</text>"#,
                    legend_x + 18.0,
                    ly + 6.0,
                    escape(&line)
                );
                ly += 16.0;
            }
        } else {
            w!(
                out,
                r#"<text x="{:.1}" y="{:.1}" font-size="12" fill="{TEXT}">no fit</text>"#,
                legend_x + 18.0,
                ly + 6.0
            );
            ly += 16.0;
        }
        ly += 8.0;
    }
    if !clusters.is_empty() {
        w!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="11" fill="{TEXT}">r interval: Fisher z, 95%</text>"#,
            legend_x,
            ly + 6.0
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_cover_common_ranges() {
        let check = |range: (f64, f64), target: usize, expect: &[f64], dec: usize| {
            let (t, d) = nice_ticks(range, target);
            assert_eq!(t.len(), expect.len(), "{range:?}: {t:?}");
            for (a, b) in t.iter().zip(expect) {
                assert!((a - b).abs() < 1e-9, "{range:?}: {t:?}");
            }
            assert_eq!(d, dec, "{range:?}");
        };
        check((0.0, 1.0), 5, &[0.0, 0.2, 0.4, 0.6, 0.8, 1.0], 1);
        check((0.0, 100.0), 5, &[0.0, 20.0, 40.0, 60.0, 80.0, 100.0], 0);
        check((0.0, 1.0), 4, &[0.0, 0.25, 0.5, 0.75, 1.0], 2);
        check((-1.0, 1.0), 4, &[-1.0, -0.5, 0.0, 0.5, 1.0], 1);
    }

    #[test]
    fn bars_grow_from_zero() {
        let g = bar_geometry(0.25, (0.0, 1.0), 200.0);
        assert_eq!((g.top, g.height, g.clamped), (150.0, 50.0, false));
        let g = bar_geometry(-0.5, (-1.0, 1.0), 200.0);
        assert_eq!((g.top, g.height), (100.0, 50.0));
        let g = bar_geometry(1.5, (0.0, 1.0), 200.0);
        assert_eq!((g.top, g.height, g.clamped), (0.0, 200.0, true));
        let g = bar_geometry(60.0, (50.0, 100.0), 100.0);
        assert_eq!((g.top, g.height), (80.0, 20.0));
    }

    #[test]
    fn degenerate_ranges_are_usable() {
        assert_eq!(normalize_range((1.0, 0.0)), (0.0, 1.0));
        assert_eq!(normalize_range((3.0, 3.0)), (3.0, 4.0));
        assert_eq!(normalize_range((f64::NAN, 1.0)), (0.0, 1.0));
    }
}
