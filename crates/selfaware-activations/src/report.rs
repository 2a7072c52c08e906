//! What the `activations` commands print: each readout as a table for a terminal and as JSON.

use std::fmt;

use serde_json::{json, Value};

use crate::probe::{ProbeConfig, ProbeResult};
use crate::readout::{cosine_matrix, Capture, Directions, Lens, LensToken};

/// Writes `value` as pretty JSON to `out` (atomically), when there is an `out`.
pub fn write_json(out: Option<&std::path::Path>, value: &Value) -> crate::Result<()> {
    let Some(out) = out else { return Ok(()) };
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| crate::ActivationsError::Input(e.to_string()))?;
    selfaware_types::write_atomic(out, (text + "\n").as_bytes()).map_err(crate::error::io(out))
}

/// Cosine similarity of every direction of `a` with every direction of `b`.
pub struct CosineTable {
    pub rows: Vec<String>,
    pub columns: Vec<String>,
    /// `None` where the two directions differ in length.
    pub cosine: Vec<Vec<Option<f64>>>,
}

impl CosineTable {
    /// The table of the directions files `a` and `b` (of `a` with itself without `b`).
    pub fn of_files(a: &std::path::Path, b: Option<&std::path::Path>) -> crate::Result<Self> {
        let da = Directions::open(a)?;
        let db = match b {
            Some(b) => Directions::open(b)?,
            None => da.clone(),
        };
        Ok(CosineTable::new(&da, &db))
    }

    pub fn new(a: &Directions, b: &Directions) -> Self {
        let names = |d: &Directions| d.points.iter().map(|p| p.0.clone()).collect();
        CosineTable {
            rows: names(a),
            columns: names(b),
            cosine: cosine_matrix(a, b),
        }
    }

    pub fn to_json(&self) -> Value {
        json!({"rows": self.rows, "columns": self.columns, "cosine": self.cosine})
    }
}

/// Tab-separated: a header of the columns' points, then one row per point of `a`.
impl fmt::Display for CosineTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "point\t{}", self.columns.join("\t"))?;
        for (p, row) in self.rows.iter().zip(&self.cosine) {
            let cells: Vec<String> = row
                .iter()
                .map(|c| c.map_or("-".to_string(), |c| format!("{c:.4}")))
                .collect();
            writeln!(f, "{p}\t{}", cells.join("\t"))?;
        }
        Ok(())
    }
}

/// The logit lens of each named direction.
pub struct LensReport(pub Vec<(String, Lens)>);

impl LensReport {
    /// The lens of `points` (a comma-separated list; every direction of the file when None)
    /// of `d`, read from `path`, `k` tokens each way.
    pub fn of(
        engine: &selfaware_model::Engine,
        d: &crate::readout::Directions,
        path: &std::path::Path,
        points: Option<&str>,
        k: usize,
    ) -> crate::Result<Self> {
        let wanted: Vec<String> = match points {
            Some(list) => list.split(',').map(|p| p.trim().to_string()).collect(),
            None => d.points.iter().map(|p| p.0.clone()).collect(),
        };
        let mut out = Vec::new();
        for p in wanted {
            let v = d.get(&p).ok_or_else(|| {
                crate::ActivationsError::Input(format!("{} has no direction `{p}`", path.display()))
            })?;
            out.push((p.clone(), crate::readout::logit_lens(engine, v, k)?));
        }
        Ok(LensReport(out))
    }

    pub fn to_json(&self) -> Value {
        let tok = |t: &LensToken| json!({"id": t.id, "text": t.text, "logit": t.logit});
        Value::Array(
            self.0
                .iter()
                .map(|(p, l)| {
                    json!({
                        "point": p,
                        "top": l.top.iter().map(tok).collect::<Vec<_>>(),
                        "bottom": l.bottom.iter().map(tok).collect::<Vec<_>>(),
                    })
                })
                .collect(),
        )
    }
}

/// Per direction: its point, then the tokens it promotes (`up`) and suppresses (`down`).
impl fmt::Display for LensReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |ts: &[LensToken]| {
            ts.iter()
                .map(|t| format!("{:?} {:+.2}", t.text, t.logit))
                .collect::<Vec<_>>()
                .join(", ")
        };
        for (p, l) in &self.0 {
            writeln!(
                f,
                "{p}\n  up:   {}\n  down: {}",
                show(&l.top),
                show(&l.bottom)
            )?;
        }
        Ok(())
    }
}

/// A probe run: its settings and the result at every point.
pub struct ProbeReport<'a> {
    pub config: &'a ProbeConfig,
    pub results: &'a [ProbeResult],
}

impl ProbeReport<'_> {
    pub fn to_json(&self) -> Value {
        let results: Vec<Value> = self
            .results
            .iter()
            .map(|r| {
                json!({
                    "point": r.point,
                    "correct": r.cv.correct,
                    "n": r.cv.n,
                    "accuracy": r.cv.accuracy,
                    "interval": [r.cv.interval.low, r.cv.interval.high],
                    "level": r.cv.interval.level,
                    "fold_accuracies": r.cv.fold_accuracies,
                })
            })
            .collect();
        json!({
            "folds": self.config.folds, "c": self.config.c, "seed": self.config.seed,
            "results": results
        })
    }
}

/// Tab-separated: point, accuracy, its Wilson interval, correct/n.
impl fmt::Display for ProbeReport<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "point\taccuracy\t95% interval (Wilson)\tcorrect/n")?;
        for r in self.results {
            writeln!(
                f,
                "{}\t{:.3}\t[{:.3}, {:.3}]\t{}/{}",
                r.point, r.cv.accuracy, r.cv.interval.low, r.cv.interval.high, r.cv.correct, r.cv.n
            )?;
        }
        Ok(())
    }
}

/// `activations diff`: the directions of captures `a` − `b` written to `out` (an existing
/// file only with `force`, refused before anything is read); returns [`diff_summary`].
pub fn diff_files(
    a: &std::path::Path,
    b: &std::path::Path,
    out: &std::path::Path,
    force: bool,
) -> crate::Result<String> {
    crate::write::check_out(out, force)?;
    let (ca, cb) = (Capture::open(a)?, Capture::open(b)?);
    let d = crate::readout::mean_difference(&ca, &cb)?;
    d.write(out, force)?;
    Ok(diff_summary(&d, &ca, &cb, out))
}

/// What `activations diff` wrote: each direction's norm, then a summary line.
pub fn diff_summary(d: &Directions, a: &Capture, b: &Capture, out: &std::path::Path) -> String {
    let mut s = String::new();
    for (p, v) in &d.points {
        let norm = v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        s.push_str(&format!("{p}\t|a - b| = {norm:.4}\n"));
    }
    s.push_str(&format!(
        "wrote {}: {} directions ({} prompts against {})",
        out.display(),
        d.points.len(),
        a.prompts(),
        b.prompts()
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::CrossValidated;
    use crate::readout::Lens;
    use selfaware_stats::Interval;

    #[test]
    fn tables_print_what_the_readouts_computed() {
        let d = |points: &[(&str, Vec<f32>)]| Directions {
            points: points
                .iter()
                .map(|(p, v)| (p.to_string(), v.clone()))
                .collect(),
            metadata: Default::default(),
        };
        let a = d(&[("x", vec![1.0, 0.0]), ("y", vec![0.0, 2.0])]);
        let b = d(&[("z", vec![1.0, 1.0]), ("w", vec![1.0, 0.0, 0.0])]);
        let t = CosineTable::new(&a, &b);
        // cos((1,0),(1,1)) = 1/√2; different lengths have no cosine.
        assert_eq!(t.to_string(), "point\tz\tw\nx\t0.7071\t-\ny\t0.7071\t-\n");
        assert_eq!(t.to_json()["cosine"][0][1], Value::Null);

        let tok = |id, text: &str, logit| LensToken {
            id,
            text: text.into(),
            logit,
        };
        let lens = LensReport(vec![(
            "x".into(),
            Lens {
                top: vec![tok(5, " food", 2.5)],
                bottom: vec![tok(7, "NASA", -1.25)],
            },
        )]);
        assert_eq!(
            lens.to_string(),
            "x\n  up:   \" food\" +2.50\n  down: \"NASA\" -1.25\n"
        );
        assert_eq!(lens.to_json()[0]["bottom"][0]["id"], 7);

        let config = ProbeConfig {
            folds: 2,
            c: 1.0,
            seed: 3,
            level: 0.95,
        };
        let results = [ProbeResult {
            point: "x".into(),
            cv: CrossValidated {
                correct: 9,
                n: 10,
                accuracy: 0.9,
                interval: Interval {
                    low: 0.596,
                    high: 0.982,
                    ..selfaware_stats::wilson_interval(9, 10, 0.95).unwrap()
                },
                fold_accuracies: vec![0.8, 1.0],
            },
        }];
        let r = ProbeReport {
            config: &config,
            results: &results,
        };
        assert_eq!(
            r.to_string(),
            "point\taccuracy\t95% interval (Wilson)\tcorrect/n\nx\t0.900\t[0.596, 0.982]\t9/10\n"
        );
        assert_eq!(r.to_json()["seed"], 3);
    }
}

/// Each report serialises as its `to_json()` (what `--json` prints).
macro_rules! serialize_as_json {
    ($($t:ty),*) => {$(
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.to_json().serialize(s)
            }
        }
    )*};
}

serialize_as_json!(CosineTable, LensReport, ProbeReport<'_>);
