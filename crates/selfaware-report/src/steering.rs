//! Steered conditions against their multiplier: for each group of conditions that one steered
//! experiment condition became (one per α), every behaviour probe and self-report question
//! drawn as mean ± interval against α (a small panel per metric, with the unsteered
//! baselines as dashed lines), and the same numbers as a table.

use std::fmt::Write as _;

use crate::format::{
    escape, escape_markdown as esc, fixed, format_mean_ci, markdown_code as code, MISSING,
};
use crate::results::{Cell, Condition, Metric, Results};
use crate::svg::{
    condition_color, normalize_range, svg_open, y_axis, y_position, Area, AXIS, TEXT,
};

macro_rules! w {
    ($out:expr, $($arg:tt)*) => {{
        let _ = write!($out, $($arg)*);
    }};
}

/// One steered group: its conditions by increasing α.
pub(crate) struct SteerGroup<'a> {
    pub label: &'a str,
    pub vector: &'a str,
    pub point: &'a str,
    pub members: Vec<(f64, &'a Condition)>,
}

/// The steered groups of a run, in condition order; a group needs two multipliers to be drawn.
pub(crate) fn groups(r: &Results) -> Vec<SteerGroup<'_>> {
    let mut out: Vec<(&str, SteerGroup)> = Vec::new();
    for c in &r.conditions {
        let Some(st) = &c.steer else { continue };
        match out.iter_mut().find(|(g, _)| *g == st.group) {
            Some((_, g)) => g.members.push((st.alpha, c)),
            None => out.push((
                &st.group,
                SteerGroup {
                    label: &st.group_label,
                    vector: &st.vector,
                    point: &st.point,
                    members: vec![(st.alpha, c)],
                },
            )),
        }
    }
    out.into_iter()
        .map(|(_, mut g)| {
            g.members.sort_by(|a, b| a.0.total_cmp(&b.0));
            g
        })
        .filter(|g| g.members.len() >= 2)
        .collect()
}

fn cell<'a>(m: &'a Metric, id: &str) -> Option<&'a Cell> {
    m.cells.iter().find(|c| c.condition == id)
}

const PANEL_W: f64 = 250.0;
const PANEL_H: f64 = 150.0;
const COLS: usize = 3;
const LEFT: f64 = 44.0;
const TITLE_H: f64 = 34.0;
const BOTTOM: f64 = 34.0;

/// x of `alpha` in a panel of width `w`: linear between the group's smallest and largest α.
pub fn alpha_x(alpha: f64, lo: f64, hi: f64, w: f64) -> f64 {
    if hi > lo {
        (alpha - lo) / (hi - lo) * w
    } else {
        w / 2.0
    }
}

/// The group's figure: one panel per metric (probes, then questions), mean over seeds against
/// α with the 95% interval as whiskers and the means joined; dashed lines are the unsteered
/// baselines' means.
pub(crate) fn figure(r: &Results, g: &SteerGroup<'_>, metrics: &[&Metric]) -> String {
    let n = metrics.len();
    let rows = n.div_ceil(COLS).max(1);
    let cell_w = LEFT + PANEL_W + 24.0;
    let cell_h = TITLE_H + PANEL_H + BOTTOM;
    let (width, height) = (cell_w * COLS.min(n).max(1) as f64, cell_h * rows as f64);
    let (lo, hi) = (
        g.members.first().map_or(0.0, |m| m.0),
        g.members.last().map_or(0.0, |m| m.0),
    );
    let color = g
        .members
        .first()
        .map_or("#0072B2", |(_, c)| condition_color(&r.conditions, &c.id));
    let mut out = String::new();
    svg_open(
        &mut out,
        width,
        height,
        &format!("{} against the steering multiplier", g.label),
    );
    for (k, m) in metrics.iter().enumerate() {
        let (ox, oy) = (
            (k % COLS) as f64 * cell_w + LEFT,
            (k / COLS) as f64 * cell_h + TITLE_H,
        );
        let range = normalize_range(m.range);
        let label: String = m.label.chars().take(40).collect();
        w!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle" fill="{TEXT}">{}</text>"#,
            ox + PANEL_W / 2.0,
            oy - 12.0,
            escape(&label)
        );
        let area = Area {
            x: ox,
            y: oy,
            w: PANEL_W,
            h: PANEL_H,
        };
        y_axis(&mut out, area, range, 4, None);
        w!(
            out,
            r#"<line x1="{ox:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{AXIS}"/>"#,
            oy + PANEL_H,
            ox + PANEL_W,
            oy + PANEL_H
        );
        for (alpha, _) in &g.members {
            let x = ox + alpha_x(*alpha, lo, hi, PANEL_W);
            w!(
                out,
                r#"<text x="{x:.1}" y="{:.1}" font-size="10" text-anchor="middle" fill="{TEXT}">{alpha}</text>"#,
                oy + PANEL_H + 14.0
            );
        }
        w!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle" fill="{TEXT}">α</text>"#,
            ox + PANEL_W / 2.0,
            oy + PANEL_H + 28.0
        );
        // Unsteered baselines.
        for c in r
            .conditions
            .iter()
            .filter(|c| c.baseline && c.steer.is_none())
        {
            if let Some(v) = cell(m, &c.id)
                .and_then(|c| c.mean)
                .filter(|v| v.is_finite())
            {
                let y = oy + y_position(v, range, PANEL_H);
                w!(
                    out,
                    r##"<line x1="{ox:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#7A7A7A" stroke-dasharray="5 3"><title>{}: {}</title></line>"##,
                    ox + PANEL_W,
                    escape(&c.label),
                    fixed(v, 3)
                );
            }
        }
        let mut path = String::new();
        for (alpha, c) in &g.members {
            let Some(cl) = cell(m, &c.id) else { continue };
            let Some(v) = cl.mean.filter(|v| v.is_finite()) else {
                continue;
            };
            let x = ox + alpha_x(*alpha, lo, hi, PANEL_W);
            let y = oy + y_position(v, range, PANEL_H);
            if let (Some(l), Some(h)) = (cl.ci_low, cl.ci_high) {
                w!(
                    out,
                    r#"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="{color}" stroke-width="1.5"/>"#,
                    oy + y_position(l, range, PANEL_H),
                    oy + y_position(h, range, PANEL_H)
                );
            }
            w!(
                out,
                r#"<circle cx="{x:.1}" cy="{y:.1}" r="3.5" fill="{color}"><title>α = {alpha}: {}</title></circle>"#,
                escape(&format_mean_ci(cl.mean, cl.ci_low, cl.ci_high, m.range))
            );
            w!(
                path,
                "{}{x:.1},{y:.1}",
                if path.is_empty() { "M" } else { " L" }
            );
        }
        if !path.is_empty() {
            w!(
                out,
                r#"<path d="{path}" fill="none" stroke="{color}" stroke-width="1.5"/>"#
            );
        }
    }
    out.push_str("</svg>");
    out
}

/// The group's numbers: one row per metric, one column per α (mean [95% interval]).
pub(crate) fn table_rows(
    g: &SteerGroup<'_>,
    metrics: &[&Metric],
) -> (Vec<String>, Vec<Vec<String>>) {
    let header = g.members.iter().map(|(a, _)| format!("α = {a}")).collect();
    let rows = metrics
        .iter()
        .map(|m| {
            let mut row = vec![m.label.clone()];
            row.extend(g.members.iter().map(|(_, c)| match cell(m, &c.id) {
                Some(cl) => format_mean_ci(cl.mean, cl.ci_low, cl.ci_high, m.range),
                None => MISSING.to_string(),
            }));
            row
        })
        .collect();
    (header, rows)
}

/// The report's steering section (HTML), numbering its figures from `fig_no`.
pub(crate) fn html_section(out: &mut String, r: &Results, fig_no: &mut usize) {
    let gs = groups(r);
    if gs.is_empty() {
        return;
    }
    let metrics: Vec<&Metric> = r.probes.iter().chain(&r.questions).collect();
    out.push_str("<section id=\"steering\">\n<h2>Against the steering multiplier</h2>\n");
    for g in &gs {
        *fig_no += 1;
        w!(
            out,
            "<figure id=\"figure-{}\">\n{}\n<figcaption><b>Figure {}.</b> {}: <code>{}</code> at <code>{}</code>, times α; each panel is a probe or question, dots the mean over seeds with the 95% interval as whiskers (none with one seed), dashed lines the unsteered baselines.</figcaption>\n</figure>\n",
            fig_no,
            figure(r, g, &metrics),
            fig_no,
            escape(g.label),
            escape(g.vector),
            escape(g.point)
        );
        let (header, rows) = table_rows(g, &metrics);
        out.push_str("<table class=\"means\">\n<tr><th>metric</th>");
        for h in header {
            w!(out, "<th>{}</th>", escape(&h));
        }
        out.push_str("</tr>\n");
        for row in rows {
            out.push_str("<tr>");
            for (i, v) in row.iter().enumerate() {
                let class = if i == 0 { "" } else { " class=\"num\"" };
                w!(out, "<td{class}>{}</td>", escape(v));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</table>\n");
    }
    out.push_str("</section>\n");
}

/// The steering section in Markdown.
pub(crate) fn markdown_section(out: &mut String, r: &Results) {
    let gs = groups(r);
    if gs.is_empty() {
        return;
    }
    let metrics: Vec<&Metric> = r.probes.iter().chain(&r.questions).collect();
    out.push_str("\n## Against the steering multiplier\n");
    for g in &gs {
        w!(
            out,
            "\n{}: {} at {}, times α (mean over seeds [95% interval]).\n\n",
            esc(g.label),
            code(g.vector),
            code(g.point)
        );
        let (header, rows) = table_rows(g, &metrics);
        w!(out, "| metric | {} |\n", header.join(" | "));
        w!(out, "|---|{}\n", "---:|".repeat(header.len()));
        for row in rows {
            let cells: Vec<String> = row.iter().map(|c| esc(c)).collect();
            w!(out, "| {} |\n", cells.join(" | "));
        }
    }
}
