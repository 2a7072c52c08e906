//! "Inside the model": per-layer probe accuracy with Wilson intervals, direction norms and
//! cosines across layers, the layer chosen for steering and why, cosines between a trained
//! steering vector and the difference-in-means directions, the trained vector's behaviour and
//! self-report beside the LoRA finetune's, and the concept-injection results — all read from
//! `results.json` (the run's collector fills [`Inside`] from the stages' result files).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::format::{escape, escape_markdown as esc, fixed, format_mean_ci, markdown_code as code};
use crate::results::{Metric, Results};

macro_rules! w {
    ($out:expr, $($arg:tt)*) => {{
        let _ = write!($out, $($arg)*);
    }};
}

/// What the run saw inside the models.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inside {
    /// Per-layer probes, each with the direction chosen from it.
    pub picks: Vec<LayerPick>,
    /// Cosines between vectors at the points both hold.
    pub cosines: Vec<CosineRow>,
    /// Conditions shown side by side (ids): each trained steering vector, the LoRA finetunes of
    /// the same data, and the baselines.
    pub compare: Vec<String>,
    /// Concept-injection runs.
    pub injections: Vec<Injection>,
    /// What the section does and does not show, one sentence each.
    pub notes: Vec<String>,
}

/// A layer probe and the direction picked by it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerPick {
    /// The section id in the experiment.
    pub id: String,
    /// What the probe tells apart.
    pub probe_label: String,
    /// What the directions are.
    pub directions_label: String,
    /// How the point was chosen, fixed before the run.
    pub criterion: String,
    /// The chosen point.
    pub chosen: String,
    /// Why it was chosen, with the numbers.
    pub reason: String,
    /// Every probed point, in order.
    pub rows: Vec<LayerRow>,
}

/// One point of a layer probe and its direction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerRow {
    /// The hook point.
    pub point: String,
    /// Cross-validated accuracy.
    pub accuracy: f64,
    /// Wilson 95% interval of the accuracy.
    pub low: f64,
    /// Upper end of the interval.
    pub high: f64,
    /// Held-out predictions that were right.
    pub correct: usize,
    /// Held-out predictions (values the interval is over).
    pub n: usize,
    /// L2 norm of the direction.
    pub norm: f64,
    /// Cosine with the chosen point's direction.
    pub cosine_chosen: f64,
    /// Cosine with the next point's direction.
    pub cosine_next: Option<f64>,
}

/// The cosine of two vectors at the points both hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CosineRow {
    /// The section id in the experiment.
    pub id: String,
    /// What the two vectors are.
    pub label: String,
    /// (point, cosine) for every point both files hold.
    pub points: Vec<(String, f64)>,
}

/// A concept-injection run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Injection {
    /// The section id in the experiment.
    pub id: String,
    /// The condition whose model was asked.
    pub condition: String,
    /// The hook point.
    pub point: String,
    /// Chance of P(own word): 1 / (controls + 1).
    pub chance: f64,
    /// Every metric at every strength.
    pub metrics: Vec<InjectionMetric>,
}

/// One injection metric at one strength.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InjectionMetric {
    /// The injection strength (0: no injection).
    pub alpha: f64,
    /// `p_yes`, `detection_gain`, `p_own`, `identification_gain`, `top1`.
    pub metric: String,
    /// What was measured, in words.
    pub measurement: String,
    /// The mean.
    pub value: f64,
    /// Lower end of the 95% interval, when there is one.
    pub low: Option<f64>,
    /// Upper end of the interval.
    pub high: Option<f64>,
    /// Held-out predictions (values the interval is over).
    pub n: usize,
    /// Why there is no interval, when there is none.
    pub note: Option<String>,
}

/// `0.62 [0.55, 0.70]`, or the value and why there is no interval.
fn value_ci(m: &InjectionMetric) -> String {
    match (m.low, m.high) {
        (Some(l), Some(h)) => format!("{} [{}, {}]", fixed(m.value, 3), fixed(l, 3), fixed(h, 3)),
        _ => format!(
            "{} (no interval: {})",
            fixed(m.value, 3),
            m.note.as_deref().unwrap_or("none computed")
        ),
    }
}

/// A cosine row in words: one point's cosine, or the range over layers and the values.
fn cosine_text(c: &CosineRow) -> (String, String) {
    match c.points.as_slice() {
        [] => ("-".into(), "no point in common".into()),
        [(p, v)] => (p.clone(), fixed(*v, 3)),
        many => {
            let lo = many.iter().map(|x| x.1).fold(f64::INFINITY, f64::min);
            let hi = many.iter().map(|x| x.1).fold(f64::NEG_INFINITY, f64::max);
            let all: Vec<String> = many.iter().map(|x| fixed(x.1, 2)).collect();
            (
                format!("{} points", many.len()),
                format!(
                    "{} to {} (in point order: {})",
                    fixed(lo, 3),
                    fixed(hi, 3),
                    all.join(", ")
                ),
            )
        }
    }
}

/// The compared conditions' cells of every probe and question: (metric label, cells).
fn compare_rows<'a>(r: &'a Results, ids: &[String]) -> Vec<(&'a Metric, Vec<String>)> {
    r.probes
        .iter()
        .chain(&r.questions)
        .map(|m| {
            let cells = ids
                .iter()
                .map(|id| match m.cells.iter().find(|c| &c.condition == id) {
                    Some(c) => {
                        let v = format_mean_ci(c.mean, c.ci_low, c.ci_high, m.range);
                        if c.ci_low.is_none() && c.mean.is_some() {
                            format!("{v} ({})", c.interval_method)
                        } else {
                            v
                        }
                    }
                    None => "not measured".into(),
                })
                .collect();
            (m, cells)
        })
        .collect()
}

fn label_of<'a>(r: &'a Results, id: &'a str) -> &'a str {
    r.conditions
        .iter()
        .find(|c| c.id == id)
        .map_or(id, |c| c.label.as_str())
}

/// The section in Markdown (nothing without [`Results::inside`]).
pub(crate) fn markdown_section(out: &mut String, r: &Results) {
    let Some(ins) = &r.inside else { return };
    out.push_str("\n## Inside the model\n\n");
    for n in &ins.notes {
        w!(out, "- {}\n", esc(n));
    }
    for p in &ins.picks {
        w!(
            out,
            "\n### Probe per layer: {}\n\nDirections: {}. Chosen: {} — {}. Criterion: {}.\n\n",
            esc(&p.probe_label),
            esc(&p.directions_label),
            code(&p.chosen),
            esc(&p.reason),
            esc(&p.criterion)
        );
        out.push_str("| point | accuracy [95% Wilson] | correct/n | direction norm | cos(chosen) | cos(next) |\n|---|---:|---:|---:|---:|---:|\n");
        for row in &p.rows {
            w!(
                out,
                "| {}{} | {} [{}, {}] | {}/{} | {} | {} | {} |\n",
                code(&row.point),
                if row.point == p.chosen {
                    " (chosen)"
                } else {
                    ""
                },
                fixed(row.accuracy, 3),
                fixed(row.low, 3),
                fixed(row.high, 3),
                row.correct,
                row.n,
                fixed(row.norm, 3),
                fixed(row.cosine_chosen, 3),
                row.cosine_next.map_or("-".into(), |c| fixed(c, 3))
            );
        }
    }
    if !ins.cosines.is_empty() {
        out.push_str(
            "\n### Cosines between directions\n\n| vectors | point | cosine |\n|---|---|---|\n",
        );
        for c in &ins.cosines {
            let (p, v) = cosine_text(c);
            let p = match c.points.len() {
                1 => code(&p),
                _ => esc(&p),
            };
            w!(out, "| {} | {} | {} |\n", esc(&c.label), p, esc(&v));
        }
    }
    if !ins.compare.is_empty() {
        out.push_str("\n### The trained steering vector beside the LoRA finetune\n\nMean over seeds [95% interval]; behaviour probes first, then self-report.\n\n");
        let labels: Vec<String> = ins.compare.iter().map(|id| esc(label_of(r, id))).collect();
        w!(
            out,
            "| metric | {} |\n|---|{}\n",
            labels.join(" | "),
            "---:|".repeat(labels.len())
        );
        for (m, cells) in compare_rows(r, &ins.compare) {
            let cells: Vec<String> = cells.iter().map(|c| esc(c)).collect();
            w!(out, "| {} | {} |\n", esc(&m.label), cells.join(" | "));
        }
    }
    for j in &ins.injections {
        w!(
            out,
            "\n### Concept injection on {} at {}\n\nChance of P(own word): {}. α = 0 is the trials without injection (its P(yes) is the false-positive rate). 95% bootstrap intervals over concepts.\n\n| α | metric | value [95% interval] | n | what |\n|---:|---|---:|---:|---|\n",
            esc(label_of(r, &j.condition)),
            code(&j.point),
            fixed(j.chance, 3)
        );
        for m in &j.metrics {
            w!(
                out,
                "| {} | {} | {} | {} | {} |\n",
                m.alpha,
                code(&m.metric),
                esc(&value_ci(m)),
                m.n,
                esc(&m.measurement)
            );
        }
    }
}

/// The section in HTML (nothing without [`Results::inside`]).
pub(crate) fn html_section(out: &mut String, r: &Results) {
    let Some(ins) = &r.inside else { return };
    out.push_str("<section id=\"inside\">\n<h2>Inside the model</h2>\n<ul>\n");
    for n in &ins.notes {
        w!(out, "<li>{}</li>\n", escape(n));
    }
    out.push_str("</ul>\n");
    for p in &ins.picks {
        w!(
            out,
            "<h3>Probe per layer: {}</h3>\n<p>Directions: {}. Chosen: <code>{}</code> — {}. Criterion: {}.</p>\n",
            escape(&p.probe_label),
            escape(&p.directions_label),
            escape(&p.chosen),
            escape(&p.reason),
            escape(&p.criterion)
        );
        out.push_str("<table>\n<tr><th>point</th><th>accuracy [95% Wilson]</th><th>correct/n</th><th>direction norm</th><th>cos(chosen)</th><th>cos(next)</th></tr>\n");
        for row in &p.rows {
            w!(
                out,
                "<tr{}><td><code>{}</code></td><td>{} [{}, {}]</td><td>{}/{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                if row.point == p.chosen { " class=\"chosen\"" } else { "" },
                escape(&row.point),
                fixed(row.accuracy, 3),
                fixed(row.low, 3),
                fixed(row.high, 3),
                row.correct,
                row.n,
                fixed(row.norm, 3),
                fixed(row.cosine_chosen, 3),
                row.cosine_next.map_or("-".into(), |c| fixed(c, 3))
            );
        }
        out.push_str("</table>\n");
    }
    if !ins.cosines.is_empty() {
        out.push_str("<h3>Cosines between directions</h3>\n<table>\n<tr><th>vectors</th><th>point</th><th>cosine</th></tr>\n");
        for c in &ins.cosines {
            let (p, v) = cosine_text(c);
            w!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                escape(&c.label),
                escape(&p),
                escape(&v)
            );
        }
        out.push_str("</table>\n");
    }
    if !ins.compare.is_empty() {
        out.push_str("<h3>The trained steering vector beside the LoRA finetune</h3>\n<p>Mean over seeds [95% interval]; behaviour probes first, then self-report.</p>\n<table>\n<tr><th>metric</th>");
        for id in &ins.compare {
            w!(out, "<th>{}</th>", escape(label_of(r, id)));
        }
        out.push_str("</tr>\n");
        for (m, cells) in compare_rows(r, &ins.compare) {
            w!(out, "<tr><td>{}</td>", escape(&m.label));
            for c in cells {
                w!(out, "<td>{}</td>", escape(&c));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</table>\n");
    }
    for j in &ins.injections {
        w!(
            out,
            "<h3>Concept injection on {} at <code>{}</code></h3>\n<p>Chance of P(own word): {}. α = 0 is the trials without injection (its P(yes) is the false-positive rate). 95% bootstrap intervals over concepts.</p>\n<table>\n<tr><th>α</th><th>metric</th><th>value [95% interval]</th><th>n</th><th>what</th></tr>\n",
            escape(label_of(r, &j.condition)),
            escape(&j.point),
            fixed(j.chance, 3)
        );
        for m in &j.metrics {
            w!(
                out,
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                m.alpha,
                escape(&m.metric),
                escape(&value_ci(m)),
                m.n,
                escape(&m.measurement)
            );
        }
        out.push_str("</table>\n");
    }
    out.push_str("</section>\n");
}
