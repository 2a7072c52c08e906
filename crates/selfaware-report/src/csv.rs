//! `results.csv`: every number of the report in long format, one row per
//! (kind, metric, condition, seed or `mean`), and one per condition difference
//! (`seed` = `difference`).

use crate::format::format_detectable;
use crate::results::{Metric, Results};

/// Column names of `results.csv`, in order.
pub const CSV_COLUMNS: [&str; 17] = [
    "metric_id",
    "kind",
    "group",
    "scorer",
    "condition",
    "seed",
    "value",
    "ci_low",
    "ci_high",
    "off_format",
    "n_records",
    "records",
    "vs",
    "p_value",
    "detectable",
    "detectable_note",
    "on",
];

/// Whether a metric is a behaviour probe or a self-report question.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MetricKind {
    /// A behaviour probe (`Results::probes`).
    Probe,
    /// A self-report question (`Results::questions`).
    Question,
}

impl MetricKind {
    /// `probe` or `question`, as written in the CSV `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Probe => "probe",
            MetricKind::Question => "question",
        }
    }
}

/// Quotes a field per RFC 4180 when it holds a comma, quote, CR or LF (quotes doubled).
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A number at full precision (shortest text that reads back to the same `f64`); empty for
/// `None` or a non-finite value.
fn num(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v}"),
        _ => String::new(),
    }
}

/// Renders every cell of every probe and question in long format.
///
/// Columns: [`CSV_COLUMNS`]. For each (metric, condition) one row per model with `seed` the
/// finetuning seed (empty for the base model) and empty `ci_low`/`ci_high`/`off_format`, then
/// one row with `seed` = `mean` carrying the mean, its interval, the off-format mass, the total
/// record count and the records files joined by `;`. Then one row per condition difference
/// `a − b` of the metric: `condition` = a, `seed` = `difference`, `value` = the difference,
/// `ci_low`/`ci_high` its interval, `vs` = b, `p_value`, `detectable` (the smallest difference
/// detectable with 80% power at α = 0.05, empty when none) and `detectable_note` (how it was
/// computed, or why there is none), and `on`, the word both sides were scored on when it is
/// not each one's own (see [`crate::Comparison::on`]); these last five columns are empty on
/// cell rows. Numbers
/// are written at full precision, missing values as empty fields. Lines end in CRLF and fields
/// are quoted as RFC 4180 says.
pub fn render_csv(r: &Results) -> String {
    let mut out = String::new();
    push_row(&mut out, CSV_COLUMNS.iter().map(|s| s.to_string()));
    let kinds = r
        .probes
        .iter()
        .map(|m| (MetricKind::Probe, m))
        .chain(r.questions.iter().map(|m| (MetricKind::Question, m)));
    for (kind, m) in kinds {
        metric_rows(&mut out, kind, m);
    }
    out
}

fn metric_rows(out: &mut String, kind: MetricKind, m: &Metric) {
    for cell in &m.cells {
        let common = |seed: String| {
            vec![
                m.id.clone(),
                kind.as_str().to_string(),
                m.group.clone(),
                m.scorer.clone(),
                cell.condition.clone(),
                seed,
            ]
        };
        for sv in &cell.per_seed {
            let mut row = common(sv.seed.map_or(String::new(), |s| s.to_string()));
            row.extend([
                num(sv.value),
                String::new(),
                String::new(),
                String::new(),
                sv.n_records.to_string(),
                sv.records.clone(),
            ]);
            row.extend(std::iter::repeat_n(String::new(), 5));
            push_row(out, row);
        }
        let mut row = common("mean".to_string());
        let n: usize = cell.per_seed.iter().map(|s| s.n_records).sum();
        let files: Vec<&str> = cell.per_seed.iter().map(|s| s.records.as_str()).collect();
        row.extend([
            num(cell.mean),
            num(cell.ci_low),
            num(cell.ci_high),
            num(cell.off_format),
            n.to_string(),
            files.join(";"),
        ]);
        row.extend(std::iter::repeat_n(String::new(), 5));
        push_row(out, row);
    }
    for c in &m.comparisons {
        let note = match c.detectable {
            Some(_) => c.detectable_note.clone(),
            None => format_detectable(None, &c.detectable_note, m.range),
        };
        push_row(
            out,
            [
                m.id.clone(),
                kind.as_str().to_string(),
                m.group.clone(),
                m.scorer.clone(),
                c.a.clone(),
                "difference".to_string(),
                num(Some(c.difference)),
                num(c.ci_low),
                num(c.ci_high),
                String::new(),
                String::new(),
                String::new(),
                c.b.clone(),
                num(c.p_value),
                num(c.detectable),
                note,
                c.on.clone().unwrap_or_default(),
            ],
        );
    }
}

fn push_row(out: &mut String, fields: impl IntoIterator<Item = String>) {
    let mut first = true;
    for f in fields {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(&csv_field(&f));
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(num(Some(0.1)), "0.1");
        assert_eq!(num(None), "");
        assert_eq!(num(Some(f64::NAN)), "");
    }
}
