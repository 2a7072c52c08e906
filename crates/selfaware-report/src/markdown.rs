//! `report.md`: the report's tables in GitHub-flavoured Markdown (no figures).

use std::fmt::Write as _;

use crate::format::{
    escape_markdown as esc, escape_markdown_with_code as esc_code, fixed, format_cell, format_ci,
    format_detectable, format_mass, format_p, format_r, format_seed, format_value,
    markdown_code as code, DETECTABLE_HEADER, MISSING,
};
use crate::html::{condition_label, interval_methods};
use crate::results::{Cell, Metric, Results};

macro_rules! w {
    ($out:expr, $($arg:tt)*) => {{
        let _ = write!($out, $($arg)*);
    }};
}

/// Renders the report's content as Markdown tables, in the same order as the HTML report:
/// header and provenance, warnings, probes, the table of means, scatter fits, condition
/// differences, how each number was computed, and the per-seed appendix.
pub fn render_markdown(r: &Results) -> String {
    let mut out = String::new();
    w!(out, "# {}\n\n", esc(&r.title));
    w!(
        out,
        "Experiment `{}` · results format v{}\n\n",
        r.experiment.replace('`', "'"),
        r.results_version
    );
    if !r.description.trim().is_empty() {
        w!(out, "{}\n\n", esc_code(&r.description));
    }
    if !r.conditions.is_empty() {
        out.push_str("| condition | id | models | baseline |\n|---|---|---:|---|\n");
        for c in &r.conditions {
            w!(
                out,
                "| {} | {} | {} | {} |\n",
                esc(&c.label),
                code(&c.id),
                c.n_seeds,
                if c.baseline { "yes" } else { "no" }
            );
        }
        out.push('\n');
    }
    if !r.provenance.is_empty() {
        out.push_str("| provenance | value |\n|---|---|\n");
        for (k, v) in &r.provenance {
            w!(out, "| {} | {} |\n", esc(k), code(v));
        }
        out.push('\n');
    }
    if !r.warnings.is_empty() {
        out.push_str("## Warnings\n\n");
        for warning in &r.warnings {
            w!(out, "- {}\n", esc_code(warning));
        }
        out.push('\n');
    }
    if !r.probes.is_empty() {
        out.push_str("## Was the behaviour learned?\n\n");
        means_table(&mut out, r, &r.probes.iter().collect::<Vec<_>>());
    }
    if !r.questions.is_empty() {
        out.push_str("## Self-reports\n\n");
        means_table(&mut out, r, &r.questions.iter().collect::<Vec<_>>());
    }
    let detections = crate::control::detections(r);
    if !detections.is_empty() {
        out.push_str("## Can the questions detect the behaviour? (positive control)\n\n");
        out.push_str(
            "A positive control is trained on data that also *states* the behaviour. A question \
             that does not separate it from the baseline cannot show awareness in the other \
             finetunes either; read their nulls on it as uninformative.\n\n",
        );
        out.push_str("| question | control | baseline | control − baseline | 95% CI | verdict |\n|---|---|---|---:|---:|---|\n");
        for d in &detections {
            w!(
                out,
                "| {} | {} | {} | {} | {} | {} |\n",
                esc(&d.metric.label),
                esc(condition_label(r, d.control)),
                esc(condition_label(r, d.baseline)),
                format_value(Some(d.difference), d.metric.range),
                format_ci(d.ci_low, d.ci_high, d.metric.range),
                d.verdict.text()
            );
        }
        out.push('\n');
    }
    crate::steering::markdown_section(&mut out, r);
    crate::inside::markdown_section(&mut out, r);
    if r.scatters.iter().any(|s| !s.fits.is_empty()) {
        out.push_str("## Self-report against behaviour\n\n");
        for s in &r.scatters {
            w!(
                out,
                "**{}** ({} against {}, {} points)\n\n",
                esc(&s.title),
                esc(&s.y_label),
                esc(&s.x_label),
                s.points.len()
            );
            out.push_str("| cluster | n | r [95% CI, Fisher z] | slope | intercept |\n|---|---:|---:|---:|---:|\n");
            for f in &s.fits {
                let ci = match (f.r_ci_low, f.r_ci_high) {
                    (Some(lo), Some(hi)) => {
                        format!(" [{}, {}]", format_r(Some(lo)), format_r(Some(hi)))
                    }
                    _ => String::new(),
                };
                w!(
                    out,
                    "| {} | {} | {}{} | {} | {} |\n",
                    esc(&f.cluster),
                    f.n,
                    format_r(f.r),
                    ci,
                    fixed(f.slope, 3),
                    fixed(f.intercept, 3)
                );
            }
            out.push('\n');
        }
    }
    let all: Vec<&Metric> = r.probes.iter().chain(&r.questions).collect();
    if all.iter().any(|m| !m.comparisons.is_empty()) {
        out.push_str("## Condition differences\n\n");
        w!(
            out,
            "| metric | a | b | a − b | 95% CI | p | {DETECTABLE_HEADER} |\n|---|---|---|---:|---:|---:|---:|\n"
        );
        for m in &all {
            for c in &m.comparisons {
                let ci = format_ci(c.ci_low, c.ci_high, m.range);
                w!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} |\n",
                    esc(&crate::format::comparison_metric_label(&m.label, c)),
                    esc(condition_label(r, &c.a)),
                    esc(condition_label(r, &c.b)),
                    format_value(Some(c.difference), m.range),
                    ci,
                    esc(&format_p(c.p_value)),
                    esc_code(&format_detectable(
                        c.detectable,
                        &c.detectable_note,
                        m.range
                    ))
                );
            }
        }
        out.push('\n');
    }
    if !all.is_empty() || !r.methods.is_empty() {
        out.push_str("## How each number was computed\n\n");
        for m in &r.methods {
            w!(out, "- {}\n", esc_code(m));
        }
        if !r.methods.is_empty() {
            out.push('\n');
        }
        for m in &all {
            w!(
                out,
                "- **{}** ({}): {} Scorer {}; group {}; range {}–{}",
                esc(&m.label),
                code(&m.id),
                esc_code(&m.definition),
                code(&m.scorer),
                code(&m.group),
                fixed(m.range.0, if m.range.0.fract() == 0.0 { 0 } else { 2 }),
                fixed(m.range.1, if m.range.1.fract() == 0.0 { 0 } else { 2 })
            );
            if let Some(d) = &m.expected_direction {
                w!(out, "; expected: {}", esc(d));
            }
            if let Some(s) = &m.source {
                w!(out, "; paper: {}", esc(s));
            }
            let im = interval_methods(m);
            if !im.is_empty() {
                w!(out, "; interval: {}", esc(&im.join("; ")));
            }
            out.push_str(".\n");
        }
        out.push('\n');
    }
    if all
        .iter()
        .any(|m| m.cells.iter().any(|c| !c.per_seed.is_empty()))
    {
        out.push_str("## Appendix: every model's value\n\n");
        out.push_str("| metric | condition | seed | value | records | file |\n|---|---|---:|---:|---:|---|\n");
        for m in &all {
            for cell in &m.cells {
                for sv in &cell.per_seed {
                    w!(
                        out,
                        "| {} | {} | {} | {} | {} | {} |\n",
                        code(&m.id),
                        esc(condition_label(r, &cell.condition)),
                        format_seed(sv.seed),
                        format_value(sv.value, m.range),
                        sv.n_records,
                        code(&sv.records)
                    );
                }
            }
        }
    }
    out
}

/// Table 2 style: rows metrics, a mean column and an off-format column per condition.
fn means_table(out: &mut String, r: &Results, metrics: &[&Metric]) {
    out.push_str("| metric |");
    for c in &r.conditions {
        w!(out, " {} | {} off-format |", esc(&c.label), esc(&c.label));
    }
    out.push_str("\n|---|");
    for _ in &r.conditions {
        out.push_str("---:|---:|");
    }
    out.push('\n');
    for m in metrics {
        w!(out, "| {} {} |", esc(&m.label), code(&m.id));
        for c in &r.conditions {
            match m.cells.iter().find(|cell| cell.condition == c.id) {
                Some(cell) => w!(
                    out,
                    " {} | {} |",
                    format_cell(cell, m.range),
                    format_mass(cell.off_format)
                ),
                None => w!(out, " {MISSING} | {MISSING} |"),
            }
        }
        out.push('\n');
    }
    out.push('\n');
}

/// The headline numbers for a terminal: one row per probe, then per question, one column
/// per condition (mean [95% CI]), then the warnings.
pub fn render_summary_text(r: &Results) -> String {
    let mut out = String::new();
    let fmt = |c: &Cell| match (c.mean, c.ci_low, c.ci_high) {
        (Some(m), Some(l), Some(h)) => format!("{m:.3} [{l:.3}, {h:.3}]"),
        (Some(m), _, _) => format!("{m:.3} (no interval)"),
        _ => "—".to_string(),
    };
    let width = r
        .probes
        .iter()
        .chain(&r.questions)
        .map(|m| m.id.len())
        .max()
        .unwrap_or(10)
        .max(10);
    let _ = write!(out, "\n{:<width$}", "metric");
    for c in &r.conditions {
        let _ = write!(out, "  {:>24}", c.id);
    }
    out.push('\n');
    for m in r.probes.iter().chain(&r.questions) {
        let _ = write!(out, "{:<width$}", m.id);
        for c in &r.conditions {
            let cell = m.cells.iter().find(|x| x.condition == c.id);
            let _ = write!(out, "  {:>24}", cell.map(fmt).unwrap_or_else(|| "—".into()));
        }
        out.push('\n');
    }
    for w in &r.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    out
}
