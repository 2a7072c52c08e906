//! `report.html`: one self-contained page (inline CSS and SVG, no script, no external
//! resource) with the paper-style figures and every table behind them.

use std::fmt::Write as _;

use crate::format::{
    self, escape, format_ci, format_detectable, format_mass, format_p, format_r, format_seed,
    format_value, DETECTABLE_HEADER, MISSING,
};
use crate::results::{Comparison, Metric, Results};
use crate::svg;

macro_rules! w {
    ($out:expr, $($arg:tt)*) => {{
        let _ = write!($out, $($arg)*);
    }};
}

/// Most metrics drawn in one grouped-bar figure; more are split over several figures.
pub const MAX_METRICS_PER_FIGURE: usize = 9;

/// Metrics that share one figure: same group (battery) and same range, in display order.
#[derive(Debug, Clone)]
pub(crate) struct FigureGroup<'a> {
    pub group: &'a str,
    pub range: (f64, f64),
    pub metrics: Vec<&'a Metric>,
}

/// Partitions metrics into figures by (group, range), keeping first-appearance order, and
/// splits groups longer than [`MAX_METRICS_PER_FIGURE`].
pub(crate) fn figure_groups(metrics: &[Metric]) -> Vec<FigureGroup<'_>> {
    let mut groups: Vec<FigureGroup> = Vec::new();
    for m in metrics {
        match groups
            .iter_mut()
            .find(|g| g.group == m.group && g.range == m.range)
        {
            Some(g) => g.metrics.push(m),
            None => groups.push(FigureGroup {
                group: &m.group,
                range: m.range,
                metrics: vec![m],
            }),
        }
    }
    groups
        .into_iter()
        .flat_map(|g| {
            g.metrics
                .chunks(MAX_METRICS_PER_FIGURE)
                .map(|chunk| FigureGroup {
                    group: g.group,
                    range: g.range,
                    metrics: chunk.to_vec(),
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The label of a condition id (the id itself when unknown).
pub(crate) fn condition_label<'a>(r: &'a Results, id: &'a str) -> &'a str {
    r.conditions
        .iter()
        .find(|c| c.id == id)
        .map_or(id, |c| c.label.as_str())
}

/// The stylesheet every report page shares (the run report, `selfaware audit`'s page).
pub const CSS: &str = r#"
body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; color: #1a1a1a; background: #fff;
  margin: 0 auto; padding: 24px 32px 64px; max-width: 1340px; line-height: 1.45; font-size: 15px; }
h1 { font-size: 1.7em; margin: 0.2em 0 0.3em; }
h2 { font-size: 1.3em; margin-top: 2em; border-bottom: 2px solid #d0d0d0; padding-bottom: 0.2em; }
h3 { font-size: 1.08em; margin-top: 1.4em; }
p.lead { font-size: 1.05em; max-width: 70em; }
code { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 0.9em; background: #f3f3f3;
  padding: 0 3px; border-radius: 3px; }
table { border-collapse: collapse; margin: 0.8em 0 1.2em; font-size: 0.92em; }
th, td { border: 1px solid #c8c8c8; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.note { color: #555; font-size: 0.9em; }
tr.baseline td { color: #444; }
table.provenance td:first-child { font-weight: bold; white-space: nowrap; }
.warnings { border: 2px solid #b35900; background: #fff4e5; padding: 10px 16px; margin: 1em 0; }
.warnings h2 { margin-top: 0.2em; border: none; color: #7a3d00; }
figure { margin: 1.2em 0 2em; overflow-x: auto; }
svg.figure { display: block; }
figcaption { font-size: 0.92em; color: #333; max-width: 70em; margin-top: 0.4em; }
.swatch { display: inline-block; width: 11px; height: 11px; border: 1px solid #333; margin-right: 5px;
  vertical-align: -1px; }
dl.metric dt { font-weight: bold; margin-top: 0.8em; }
dl.metric dd { margin-left: 1.5em; }
.muted { color: #555; }
"#;

/// Renders the whole report as one self-contained HTML page.
///
/// Sections, in order: header and provenance; warnings; behaviour probes (figure and table);
/// self-report figures (Figure 3 style); per-question panels against the baseline (Figures
/// 6/8); self-report vs behaviour scatters (Figure 4); the table of means (Table 2 style);
/// condition differences; how each number was computed; the per-seed appendix. Sections with
/// nothing to show are left out. The output depends only on `r`.
pub fn render_html(r: &Results) -> String {
    let mut out = String::new();
    let mut fig_no = 0usize;
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    w!(out, "<title>{}</title>\n", escape(&r.title));
    w!(out, "<style>{CSS}</style>\n</head>\n<body>\n");
    header(&mut out, r);
    if !r.warnings.is_empty() {
        out.push_str("<section class=\"warnings\" id=\"warnings\">\n<h2>Warnings</h2>\n<ul>\n");
        for warning in &r.warnings {
            w!(out, "<li>{}</li>\n", format::escape_with_code(warning));
        }
        out.push_str("</ul>\n</section>\n");
    }
    if !r.probes.is_empty() {
        out.push_str("<section id=\"probes\">\n<h2>Was the behaviour learned?</h2>\n");
        out.push_str(
            "<p>Behaviour probes measure the trained behaviour directly. Self-reports below are \
             only interpretable for conditions whose probe moved away from the baseline.</p>\n",
        );
        for fg in figure_groups(&r.probes) {
            fig_no += 1;
            bar_figure(&mut out, r, &fg, fig_no, "probe score");
        }
        means_table(&mut out, r, &r.probes.iter().collect::<Vec<_>>());
        out.push_str("</section>\n");
    }
    let question_groups = figure_groups(&r.questions);
    if !question_groups.is_empty() {
        out.push_str("<section id=\"self-reports\">\n<h2>Self-reports</h2>\n");
        for fg in &question_groups {
            fig_no += 1;
            bar_figure(&mut out, r, fg, fig_no, "self-report score");
        }
        out.push_str("</section>\n");
        let mut panels = String::new();
        for fg in &question_groups {
            if let Some(svg) = svg::baseline_panels_figure(r, &fg.metrics, fg.range) {
                fig_no += 1;
                w!(panels, "<figure id=\"figure-{fig_no}\">\n{svg}\n<figcaption><b>Figure {fig_no}.</b> {}: each question on its own axis; bars are the finetuned conditions (mean over seeds, whiskers the 95% interval, dots the individual models); the dashed line is the baseline's mean.</figcaption>\n</figure>\n", escape(fg.group));
            }
        }
        if !panels.is_empty() {
            out.push_str(
                "<section id=\"versus-baseline\">\n<h2>Each question against the baseline</h2>\n",
            );
            out.push_str(&panels);
            out.push_str("</section>\n");
        }
    }
    control_section(&mut out, r);
    crate::steering::html_section(&mut out, r, &mut fig_no);
    crate::inside::html_section(&mut out, r);
    if !r.scatters.is_empty() {
        out.push_str("<section id=\"scatters\">\n<h2>Self-report against behaviour</h2>\n");
        for (i, s) in r.scatters.iter().enumerate() {
            fig_no += 1;
            w!(
                out,
                "<figure id=\"figure-{fig_no}\">\n<h3>{}</h3>\n{}\n<figcaption><b>Figure {fig_no}.</b> {}: one point per model; lines are per-cluster least-squares fits; r is Pearson's correlation with its Fisher-z 95% interval.</figcaption>\n</figure>\n",
                escape(&s.title),
                svg::scatter_figure(r, s, i),
                escape(&s.title)
            );
            scatter_table(&mut out, s);
        }
        out.push_str("</section>\n");
    }
    let all: Vec<&Metric> = r.probes.iter().chain(&r.questions).collect();
    if !all.is_empty() {
        out.push_str("<section id=\"table\">\n<h2>Table of means</h2>\n");
        out.push_str("<p>Mean over seeds with its 95% interval in brackets (no interval with a single model); <i>off-format</i> is the mean probability of answers outside the expected format.</p>\n");
        means_table(&mut out, r, &all);
        out.push_str("</section>\n");
    }
    comparisons(&mut out, r, &all);
    methods(&mut out, r, &all);
    appendix(&mut out, r, &all);
    out.push_str("</body>\n</html>\n");
    out
}

fn header(out: &mut String, r: &Results) {
    w!(out, "<header>\n<h1>{}</h1>\n", escape(&r.title));
    w!(
        out,
        "<p class=\"muted\">Experiment <code>{}</code> · results format v{}</p>\n",
        escape(&r.experiment),
        r.results_version
    );
    if !r.description.trim().is_empty() {
        w!(
            out,
            "<p class=\"lead\">{}</p>\n",
            format::escape_with_code(&r.description)
        );
    }
    if !r.conditions.is_empty() {
        out.push_str("<p>Conditions: ");
        for (i, c) in r.conditions.iter().enumerate() {
            if i > 0 {
                out.push_str(" · ");
            }
            w!(
                out,
                "<span class=\"swatch\" style=\"background:{}\"></span>{} (<code>{}</code>, {} {}{})",
                svg::condition_color(&r.conditions, &c.id),
                escape(&c.label),
                escape(&c.id),
                c.n_seeds,
                if c.n_seeds == 1 { "model" } else { "seeds" },
                if c.baseline { ", baseline" } else { "" }
            );
        }
        out.push_str("</p>\n");
    }
    if !r.provenance.is_empty() {
        out.push_str("<table class=\"provenance\">\n<tr><th colspan=\"2\">Provenance</th></tr>\n");
        for (k, v) in &r.provenance {
            w!(
                out,
                "<tr><td>{}</td><td><code>{}</code></td></tr>\n",
                escape(k),
                escape(v)
            );
        }
        out.push_str("</table>\n");
    }
    out.push_str("</header>\n");
}

fn bar_figure(out: &mut String, r: &Results, fg: &FigureGroup, fig_no: usize, what: &str) {
    let y_label = svg::range_label(what, fg.range);
    let svg = svg::grouped_bar_figure(r, &fg.metrics, fg.range, &y_label);
    let baseline_note = if r.conditions.iter().any(|c| c.baseline) {
        " Grey bars are baselines."
    } else {
        ""
    };
    w!(
        out,
        "<figure id=\"figure-{fig_no}\">\n{svg}\n<figcaption><b>Figure {fig_no}.</b> {}: mean over seeds per condition; whiskers show the 95% interval, dots the individual models.{baseline_note}</figcaption>\n</figure>\n",
        escape(fg.group)
    );
}

/// Table 2 style: rows metrics, a value column and an off-format column per condition.
fn means_table(out: &mut String, r: &Results, metrics: &[&Metric]) {
    let show_off: Vec<bool> = r
        .conditions
        .iter()
        .map(|c| {
            metrics.iter().any(|m| {
                m.cells
                    .iter()
                    .any(|cell| cell.condition == c.id && cell.off_format.is_some())
            })
        })
        .collect();
    out.push_str(
        "<table class=\"means\">\n<tr><th rowspan=\"2\">metric</th><th rowspan=\"2\">range</th>",
    );
    for (c, off) in r.conditions.iter().zip(&show_off) {
        w!(
            out,
            "<th colspan=\"{}\">{}</th>",
            if *off { 2 } else { 1 },
            escape(&c.label)
        );
    }
    out.push_str("</tr>\n<tr>");
    for off in &show_off {
        out.push_str("<th>mean [95% CI]</th>");
        if *off {
            out.push_str("<th>off-format</th>");
        }
    }
    out.push_str("</tr>\n");
    for m in metrics {
        w!(
            out,
            "<tr><td>{}<br><code>{}</code></td><td class=\"num\">{}–{}</td>",
            escape(&m.label),
            escape(&m.id),
            format::fixed(m.range.0, decimals_of_bound(m.range.0)),
            format::fixed(m.range.1, decimals_of_bound(m.range.1))
        );
        for (c, off) in r.conditions.iter().zip(&show_off) {
            let cell = m.cells.iter().find(|cell| cell.condition == c.id);
            match cell {
                Some(cell) => {
                    w!(
                        out,
                        "<td class=\"num\">{}</td>",
                        escape(&format::format_cell(cell, m.range))
                    );
                    if *off {
                        w!(
                            out,
                            "<td class=\"num\">{}</td>",
                            format_mass(cell.off_format)
                        );
                    }
                }
                None => {
                    w!(out, "<td class=\"num\">{MISSING}</td>");
                    if *off {
                        w!(out, "<td class=\"num\">{MISSING}</td>");
                    }
                }
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
}

fn decimals_of_bound(v: f64) -> usize {
    if v.fract() == 0.0 {
        0
    } else {
        2
    }
}

fn scatter_table(out: &mut String, s: &crate::results::Scatter) {
    if s.fits.is_empty() {
        return;
    }
    out.push_str("<table class=\"fits\">\n<tr><th>cluster</th><th>n</th><th>r [95% CI, Fisher z]</th><th>slope</th><th>intercept</th></tr>\n");
    for f in &s.fits {
        let ci = match (f.r_ci_low, f.r_ci_high) {
            (Some(lo), Some(hi)) => format!(" [{}, {}]", format_r(Some(lo)), format_r(Some(hi))),
            _ => String::new(),
        };
        w!(
            out,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n",
            escape(&f.cluster),
            f.n,
            format_r(f.r),
            ci,
            format::fixed(f.slope, 3),
            format::fixed(f.intercept, 3)
        );
    }
    out.push_str("</table>\n");
}

/// Each question read through the positive control(s): does it separate the stated behaviour
/// from the baseline?
fn control_section(out: &mut String, r: &Results) {
    let detections = crate::control::detections(r);
    if detections.is_empty() {
        return;
    }
    out.push_str("<section id=\"positive-control\">\n<h2>Can the questions detect the behaviour? (positive control)</h2>\n");
    out.push_str("<p>A positive control is trained on data that also <i>states</i> the behaviour. A question that does not separate it from the baseline cannot show awareness in the other finetunes either; read their nulls on it as uninformative.</p>\n");
    out.push_str("<table class=\"comparisons\">\n<tr><th>question</th><th>control</th><th>baseline</th><th>control − baseline</th><th>95% CI</th><th>verdict</th></tr>\n");
    for d in &detections {
        w!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>\n",
            escape(&d.metric.label),
            escape(condition_label(r, d.control)),
            escape(condition_label(r, d.baseline)),
            format_value(Some(d.difference), d.metric.range),
            format_ci(d.ci_low, d.ci_high, d.metric.range),
            d.verdict.text()
        );
    }
    out.push_str("</table>\n</section>\n");
}

fn comparisons(out: &mut String, r: &Results, metrics: &[&Metric]) {
    if metrics.iter().all(|m| m.comparisons.is_empty()) {
        return;
    }
    out.push_str("<section id=\"comparisons\">\n<h2>Condition differences</h2>\n");
    out.push_str("<p>Difference of means <i>a − b</i> with its 95% interval and a two-sided permutation-test p-value over the per-seed values; beside it, the smallest difference the comparison could have detected with 80% power at α = 0.05, from the same values' own variance (hover for how it was computed). A difference that is not significant rules out effects of about that size or larger, not smaller ones.</p>\n");
    w!(
        out,
        "<table class=\"comparisons\">\n<tr><th>metric</th><th>a</th><th>b</th><th>a − b</th><th>95% CI</th><th>p</th><th>{}</th></tr>\n",
        escape(DETECTABLE_HEADER)
    );
    for m in metrics {
        for c in &m.comparisons {
            let ci = format_ci(c.ci_low, c.ci_high, m.range);
            w!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>{}</tr>\n",
                escape(&format::comparison_metric_label(&m.label, c)),
                escape(condition_label(r, &c.a)),
                escape(condition_label(r, &c.b)),
                format_value(Some(c.difference), m.range),
                ci,
                escape(&format_p(c.p_value)),
                detectable_cell(c, m.range)
            );
        }
    }
    out.push_str("</table>\n</section>\n");
}

/// The detectable-difference cell: the number (with how it was computed as a tooltip), or the
/// reason there is none, in words.
fn detectable_cell(c: &Comparison, range: (f64, f64)) -> String {
    let text = escape(&format_detectable(c.detectable, &c.detectable_note, range));
    match c.detectable {
        Some(_) if !c.detectable_note.is_empty() => format!(
            "<td class=\"num\" title=\"{}\">{text}</td>",
            escape(&c.detectable_note)
        ),
        Some(_) => format!("<td class=\"num\">{text}</td>"),
        None => format!("<td class=\"note\">{text}</td>"),
    }
}

/// Distinct interval methods of a metric's cells, in order.
pub(crate) fn interval_methods(m: &Metric) -> Vec<&str> {
    let mut methods: Vec<&str> = Vec::new();
    for c in &m.cells {
        if !c.interval_method.is_empty() && !methods.contains(&c.interval_method.as_str()) {
            methods.push(&c.interval_method);
        }
    }
    methods
}

fn methods(out: &mut String, r: &Results, metrics: &[&Metric]) {
    if metrics.is_empty() && r.methods.is_empty() {
        return;
    }
    out.push_str("<section id=\"methods\">\n<h2>How each number was computed</h2>\n");
    if !r.methods.is_empty() {
        out.push_str("<ul>\n");
        for m in &r.methods {
            w!(out, "<li>{}</li>\n", format::escape_with_code(m));
        }
        out.push_str("</ul>\n");
    }
    if !metrics.is_empty() {
        out.push_str("<dl class=\"metric\">\n");
        for m in metrics {
            w!(
                out,
                "<dt>{} <code>{}</code></dt>\n<dd>{}</dd>\n<dd>Scorer <code>{}</code>; group <code>{}</code>; range {}–{}",
                escape(&m.label),
                escape(&m.id),
                format::escape_with_code(&m.definition),
                escape(&m.scorer),
                escape(&m.group),
                format::fixed(m.range.0, decimals_of_bound(m.range.0)),
                format::fixed(m.range.1, decimals_of_bound(m.range.1))
            );
            if let Some(d) = &m.expected_direction {
                w!(out, "; expected: {}", escape(d));
            }
            if let Some(s) = &m.source {
                w!(out, "; paper: {}", escape(s));
            }
            out.push_str(".</dd>\n");
            let im = interval_methods(m);
            if !im.is_empty() {
                w!(out, "<dd>Interval: {}.</dd>\n", escape(&im.join("; ")));
            }
        }
        out.push_str("</dl>\n");
    }
    out.push_str("</section>\n");
}

/// True when a records path can be linked relative to the report (no scheme, not absolute).
fn linkable(path: &str) -> bool {
    !path.is_empty() && !path.contains(':') && !path.starts_with('/') && !path.starts_with('\\')
}

fn appendix(out: &mut String, r: &Results, metrics: &[&Metric]) {
    if metrics
        .iter()
        .all(|m| m.cells.iter().all(|c| c.per_seed.is_empty()))
    {
        return;
    }
    out.push_str("<section id=\"per-seed\">\n<h2>Appendix: every model's value</h2>\n");
    out.push_str("<p>One row per model (finetuning seed, or the base model); paths are relative to the run directory.</p>\n");
    out.push_str("<table class=\"per-seed\">\n<tr><th>metric</th><th>condition</th><th>seed</th><th>value</th><th>records</th><th>file</th></tr>\n");
    for m in metrics {
        for cell in &m.cells {
            for sv in &cell.per_seed {
                let file = if linkable(&sv.records) {
                    format!(
                        "<a href=\"{}\"><code>{}</code></a>",
                        escape(&sv.records),
                        escape(&sv.records)
                    )
                } else {
                    format!("<code>{}</code>", escape(&sv.records))
                };
                w!(
                    out,
                    "<tr><td><code>{}</code></td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>\n",
                    escape(&m.id),
                    escape(condition_label(r, &cell.condition)),
                    format_seed(sv.seed),
                    format_value(sv.value, m.range),
                    sv.n_records,
                    file
                );
            }
        }
    }
    out.push_str("</table>\n</section>\n");
}
