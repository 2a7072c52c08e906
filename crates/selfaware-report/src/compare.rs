//! Comparing two runs' results: every (metric, condition) cell side by side, what only one
//! run has, and how their provenance differs. Used by `selfaware compare RUN_A RUN_B`.

use crate::csv::MetricKind;
use crate::format::{self, format_mean_ci, MISSING};
use crate::results::{Cell, Metric, Results};

/// One side's value of a cell.
#[derive(Debug, Clone, PartialEq)]
pub struct CellValue {
    /// Mean over seeds.
    pub mean: Option<f64>,
    /// Lower end of the 95% interval.
    pub ci_low: Option<f64>,
    /// Upper end of the 95% interval.
    pub ci_high: Option<f64>,
}

impl CellValue {
    fn of(cell: &Cell) -> Self {
        CellValue {
            mean: cell.mean,
            ci_low: cell.ci_low,
            ci_high: cell.ci_high,
        }
    }

    /// The interval, or the mean as a zero-width interval when there is none.
    fn span(&self) -> Option<(f64, f64)> {
        match (self.mean, self.ci_low, self.ci_high) {
            (_, Some(lo), Some(hi)) => Some((lo.min(hi), lo.max(hi))),
            (Some(m), _, _) => Some((m, m)),
            _ => None,
        }
    }
}

/// One (metric, condition) cell in run A and run B.
#[derive(Debug, Clone, PartialEq)]
pub struct CellDiff {
    /// Probe or question.
    pub kind: MetricKind,
    /// Metric id.
    pub metric: String,
    /// Metric label (from A when A has it, else from B).
    pub label: String,
    /// Condition id.
    pub condition: String,
    /// The metric's range (for formatting).
    pub range: (f64, f64),
    /// Run A's value; `None` when A has no such cell.
    pub a: Option<CellValue>,
    /// Run B's value; `None` when B has no such cell.
    pub b: Option<CellValue>,
    /// `b.mean - a.mean`, when both means exist.
    pub difference: Option<f64>,
    /// Whether the two 95% intervals overlap (a side without an interval counts as the point
    /// at its mean); `None` when either mean is missing.
    pub intervals_overlap: Option<bool>,
}

/// A provenance entry whose value differs between the runs (or exists in only one).
#[derive(Debug, Clone, PartialEq)]
pub struct ProvenanceDiff {
    /// Provenance label.
    pub label: String,
    /// Run A's value.
    pub a: Option<String>,
    /// Run B's value.
    pub b: Option<String>,
}

/// The comparison of two runs' results. Differences are B − A.
#[derive(Debug, Clone, PartialEq)]
pub struct RunComparison {
    /// Run A's experiment name.
    pub experiment_a: String,
    /// Run B's experiment name.
    pub experiment_b: String,
    /// Every (metric, condition) present in either run: A's order first, then B's additions.
    pub cells: Vec<CellDiff>,
    /// Metric ids only run A has.
    pub metrics_only_in_a: Vec<String>,
    /// Metric ids only run B has.
    pub metrics_only_in_b: Vec<String>,
    /// Condition ids only run A has.
    pub conditions_only_in_a: Vec<String>,
    /// Condition ids only run B has.
    pub conditions_only_in_b: Vec<String>,
    /// Provenance entries that differ, A's order first.
    pub provenance: Vec<ProvenanceDiff>,
}

impl RunComparison {
    /// Cells whose means differ by more than `tolerance` (in absolute value), or that exist
    /// (or have a mean) on one side only.
    pub fn changed_cells(&self, tolerance: f64) -> impl Iterator<Item = &CellDiff> {
        self.cells.iter().filter(move |c| match c.difference {
            Some(d) => d.abs() > tolerance,
            None => {
                c.a.as_ref().and_then(|v| v.mean).is_some()
                    != c.b.as_ref().and_then(|v| v.mean).is_some()
                    || c.a.is_some() != c.b.is_some()
            }
        })
    }
}

fn metrics(r: &Results) -> impl Iterator<Item = (MetricKind, &Metric)> {
    r.probes
        .iter()
        .map(|m| (MetricKind::Probe, m))
        .chain(r.questions.iter().map(|m| (MetricKind::Question, m)))
}

fn find<'a>(r: &'a Results, kind: MetricKind, id: &str) -> Option<&'a Metric> {
    let list = match kind {
        MetricKind::Probe => &r.probes,
        MetricKind::Question => &r.questions,
    };
    list.iter().find(|m| m.id == id)
}

fn push_unique(v: &mut Vec<String>, s: &str) {
    if !v.iter().any(|x| x == s) {
        v.push(s.to_string());
    }
}

/// Compares two runs cell by cell (metric id × condition id); differences are B − A.
pub fn compare(a: &Results, b: &Results) -> RunComparison {
    let mut keys: Vec<(MetricKind, String)> = Vec::new();
    for (kind, m) in metrics(a).chain(metrics(b)) {
        if !keys.iter().any(|(k, id)| *k == kind && *id == m.id) {
            keys.push((kind, m.id.clone()));
        }
    }
    let mut cells = Vec::new();
    let (mut only_a, mut only_b) = (Vec::new(), Vec::new());
    for (kind, id) in &keys {
        let (ma, mb) = (find(a, *kind, id), find(b, *kind, id));
        match (ma, mb) {
            (Some(_), None) => push_unique(&mut only_a, id),
            (None, Some(_)) => push_unique(&mut only_b, id),
            _ => {}
        }
        let Some(meta) = ma.or(mb) else { continue };
        let mut conditions: Vec<String> = Vec::new();
        for m in ma.into_iter().chain(mb) {
            for c in &m.cells {
                push_unique(&mut conditions, &c.condition);
            }
        }
        for cond in conditions {
            let ca = ma.and_then(|m| m.cells.iter().find(|c| c.condition == cond));
            let cb = mb.and_then(|m| m.cells.iter().find(|c| c.condition == cond));
            let (va, vb) = (ca.map(CellValue::of), cb.map(CellValue::of));
            let difference = match (
                va.as_ref().and_then(|v| v.mean),
                vb.as_ref().and_then(|v| v.mean),
            ) {
                (Some(x), Some(y)) => Some(y - x),
                _ => None,
            };
            let intervals_overlap = match (
                va.as_ref().and_then(CellValue::span),
                vb.as_ref().and_then(CellValue::span),
            ) {
                (Some((l1, h1)), Some((l2, h2))) if difference.is_some() => {
                    Some(l1 <= h2 && l2 <= h1)
                }
                _ => None,
            };
            cells.push(CellDiff {
                kind: *kind,
                metric: id.clone(),
                label: meta.label.clone(),
                condition: cond,
                range: meta.range,
                a: va,
                b: vb,
                difference,
                intervals_overlap,
            });
        }
    }
    let ids = |r: &Results| {
        r.conditions
            .iter()
            .map(|c| c.id.clone())
            .collect::<Vec<_>>()
    };
    let (ca, cb) = (ids(a), ids(b));
    let mut provenance = Vec::new();
    let mut labels: Vec<String> = Vec::new();
    for (k, _) in a.provenance.iter().chain(&b.provenance) {
        push_unique(&mut labels, k);
    }
    for label in labels {
        let get = |r: &Results| {
            r.provenance
                .iter()
                .find(|(k, _)| *k == label)
                .map(|(_, v)| v.clone())
        };
        let (pa, pb) = (get(a), get(b));
        if pa != pb {
            provenance.push(ProvenanceDiff {
                label,
                a: pa,
                b: pb,
            });
        }
    }
    RunComparison {
        experiment_a: a.experiment.clone(),
        experiment_b: b.experiment.clone(),
        cells,
        metrics_only_in_a: only_a,
        metrics_only_in_b: only_b,
        conditions_only_in_a: ca.iter().filter(|c| !cb.contains(c)).cloned().collect(),
        conditions_only_in_b: cb.iter().filter(|c| !ca.contains(c)).cloned().collect(),
        provenance,
    }
}

fn width(s: &str) -> usize {
    s.chars().count()
}

/// Renders a comparison as an aligned plain-text table for a terminal: one line per cell
/// (metric, condition, A, B, B − A, whether the intervals overlap), then what only one run
/// has and the provenance differences.
pub fn render_comparison_text(c: &RunComparison) -> String {
    let mut out = format!("A: {}\nB: {}\n\n", c.experiment_a, c.experiment_b);
    let header = ["metric", "condition", "A", "B", "B − A", "overlap"];
    let mut rows: Vec<[String; 6]> = vec![header.map(String::from)];
    for d in &c.cells {
        let side = |v: &Option<CellValue>| match v {
            Some(v) => format_mean_ci(v.mean, v.ci_low, v.ci_high, d.range),
            None => "absent".to_string(),
        };
        let diff = match d.difference {
            Some(x) => {
                let s = format::fixed(x, format::decimals_for_range(d.range) + 1);
                if x > 0.0 && !s.chars().all(|ch| ch == '0' || ch == '.') {
                    format!("+{s}")
                } else {
                    s
                }
            }
            None => MISSING.to_string(),
        };
        let overlap = match d.intervals_overlap {
            Some(true) => "yes",
            Some(false) => "NO",
            None => MISSING,
        };
        rows.push([
            d.metric.clone(),
            d.condition.clone(),
            side(&d.a),
            side(&d.b),
            diff,
            overlap.to_string(),
        ]);
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(width(cell));
        }
    }
    for (i, row) in rows.iter().enumerate() {
        let mut line = String::new();
        for (j, cell) in row.iter().enumerate() {
            let pad = " ".repeat(widths[j] - width(cell));
            if j > 0 {
                line.push_str("  ");
            }
            // Numbers right-aligned, text left-aligned; header follows its column.
            if (2..=4).contains(&j) {
                line.push_str(&pad);
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&pad);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
        if i == 0 {
            let total: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
            out.push_str(&"-".repeat(total));
            out.push('\n');
        }
    }
    let lists = [
        ("Metrics only in A", &c.metrics_only_in_a),
        ("Metrics only in B", &c.metrics_only_in_b),
        ("Conditions only in A", &c.conditions_only_in_a),
        ("Conditions only in B", &c.conditions_only_in_b),
    ];
    for (title, list) in lists {
        if !list.is_empty() {
            out.push_str(&format!("\n{title}: {}\n", list.join(", ")));
        }
    }
    if !c.provenance.is_empty() {
        out.push_str("\nProvenance differences:\n");
        let lw = c
            .provenance
            .iter()
            .map(|p| width(&p.label))
            .max()
            .unwrap_or(0);
        for p in &c.provenance {
            let a = p.a.as_deref().unwrap_or("absent");
            let b = p.b.as_deref().unwrap_or("absent");
            out.push_str(&format!(
                "  {}{}  A: {a}\n  {}  B: {b}\n",
                p.label,
                " ".repeat(lw - width(&p.label)),
                " ".repeat(lw)
            ));
        }
    }
    out
}
