//! The direction of the point a layer probe separates best, as a steering file.
//!
//! The criterion is fixed before anything is steered: the highest cross-validated accuracy of
//! the probe (`activations probe --out`); among equal accuracies, the tied layer nearest the
//! middle of the probed layers (the lower on equal distance), points without a layer
//! (`ln_final`) last. It never looks at what steering along the direction does.
//!
//! Writes `DIR/best.safetensors` (the chosen direction, one tensor named by its point, so
//! `--steer DIR/best.safetensors:ALPHA` reads it) and `DIR/pick.json` (the criterion, the
//! choice and why, and per point: the probe's accuracy with its interval, the direction's norm,
//! its cosine with the chosen direction and with the next point's).

use std::fmt;
use std::path::{Path, PathBuf};

use selfaware_types::Provenance;
use serde::{Deserialize, Serialize};

use crate::error::{io, ActivationsError, Result};
use crate::readout::{cosine, Directions};

/// The criterion, in words (recorded in every pick).
pub const CRITERION: &str = "highest cross-validated probe accuracy; ties go to the tied layer \
     nearest the middle of the probed layers (the lower on equal distance); fixed before the run, \
     never by the effect of steering";

/// One point of a probe's results file (`activations probe --out`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ProbePoint {
    pub point: String,
    pub correct: usize,
    pub n: usize,
    pub accuracy: f64,
    pub interval: [f64; 2],
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct ProbeFile {
    results: Vec<ProbePoint>,
}

/// The layer of `blocks.L.…`; None for other points.
pub fn layer_of(point: &str) -> Option<usize> {
    point
        .strip_prefix("blocks.")?
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// The index of the chosen point among `points` (by [`CRITERION`]); None when empty.
pub fn choose(points: &[ProbePoint]) -> Option<usize> {
    if points.is_empty() {
        return None;
    }
    let best = points.iter().map(|p| p.accuracy).fold(f64::NAN, f64::max);
    let layers: Vec<usize> = points.iter().filter_map(|p| layer_of(&p.point)).collect();
    let middle = match (layers.iter().min(), layers.iter().max()) {
        (Some(lo), Some(hi)) => (lo + hi) as f64 / 2.0,
        _ => 0.0,
    };
    // (is not a layer, distance from the middle, layer): smallest wins.
    points
        .iter()
        .enumerate()
        .filter(|(_, p)| p.accuracy == best)
        .min_by(|(_, a), (_, b)| {
            let key = |p: &ProbePoint| match layer_of(&p.point) {
                Some(l) => (0, (l as f64 - middle).abs(), l),
                None => (1, 0.0, usize::MAX),
            };
            let (ka, kb) = (key(a), key(b));
            ka.0.cmp(&kb.0)
                .then(ka.1.total_cmp(&kb.1))
                .then(ka.2.cmp(&kb.2))
        })
        .map(|(i, _)| i)
        .or(Some(0))
}

/// One point of a pick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PickRow {
    pub point: String,
    pub accuracy: f64,
    pub low: f64,
    pub high: f64,
    pub correct: usize,
    pub n: usize,
    /// L2 norm of the direction at this point.
    pub norm: f64,
    /// Cosine with the chosen point's direction.
    pub cosine_chosen: f64,
    /// Cosine with the next point's direction (None for the last point).
    pub cosine_next: Option<f64>,
}

/// What a pick chose and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pick {
    pub format: String,
    pub criterion: String,
    pub chosen: String,
    /// Why, in one sentence with the numbers.
    pub reason: String,
    pub rows: Vec<PickRow>,
    pub directions_file: PathBuf,
    pub probe_file: PathBuf,
    pub provenance: Provenance,
}

/// The pick of `directions` by `probe` (both read from files): the rows and the chosen
/// direction.
pub fn pick(
    d: &Directions,
    probe: &[ProbePoint],
    files: (&Path, &Path),
) -> Result<(Pick, Vec<f32>)> {
    let usable: Vec<ProbePoint> = probe
        .iter()
        .filter(|p| d.get(&p.point).is_some())
        .cloned()
        .collect();
    let i = choose(&usable).ok_or_else(|| {
        ActivationsError::Input(format!(
            "{} and {} share no point: nothing to pick",
            files.0.display(),
            files.1.display()
        ))
    })?;
    let chosen = usable[i].clone();
    let v = d.get(&chosen.point).unwrap_or_default().to_vec();
    let norm = |x: &[f32]| {
        x.iter()
            .map(|a| (*a as f64) * (*a as f64))
            .sum::<f64>()
            .sqrt()
    };
    let rows: Vec<PickRow> = usable
        .iter()
        .enumerate()
        .map(|(k, p)| {
            let x = d.get(&p.point).unwrap_or_default();
            PickRow {
                point: p.point.clone(),
                accuracy: p.accuracy,
                low: p.interval[0],
                high: p.interval[1],
                correct: p.correct,
                n: p.n,
                norm: norm(x),
                cosine_chosen: cosine(x, &v),
                cosine_next: usable
                    .get(k + 1)
                    .and_then(|q| d.get(&q.point))
                    .filter(|y| y.len() == x.len())
                    .map(|y| cosine(x, y)),
            }
        })
        .collect();
    let tied = usable
        .iter()
        .filter(|p| p.accuracy == chosen.accuracy)
        .count();
    let reason = format!(
        "{} has the highest cross-validated accuracy, {:.3} ({}/{}){}",
        chosen.point,
        chosen.accuracy,
        chosen.correct,
        chosen.n,
        if tied > 1 {
            format!(
                ", shared by {tied} points; of those it is nearest the middle of the probed layers"
            )
        } else {
            String::new()
        }
    );
    Ok((
        Pick {
            format: "selfaware-pick/1".into(),
            criterion: CRITERION.into(),
            chosen: chosen.point.clone(),
            reason,
            rows,
            directions_file: files.0.to_path_buf(),
            probe_file: files.1.to_path_buf(),
            provenance: Provenance::default(),
        },
        v,
    ))
}

/// Reads a probe's results file (`activations probe --out`).
pub fn read_probe(path: &Path) -> Result<Vec<ProbePoint>> {
    let text = fs_err::read_to_string(path).map_err(io(path))?;
    let f: ProbeFile = serde_json::from_str(&text).map_err(|e| {
        ActivationsError::Input(format!(
            "{}: not a probe results file ({e})\nhint: write one with `selfaware activations probe A B --out FILE`",
            path.display()
        ))
    })?;
    Ok(f.results)
}

/// Picks from the files and writes `out/best.safetensors` and `out/pick.json`.
pub fn run(directions: &Path, probe: &Path, out: &Path, tool: &Provenance) -> Result<Pick> {
    let d = Directions::open(directions)?;
    let points = read_probe(probe)?;
    let (mut p, v) = pick(&d, &points, (directions, probe))?;
    p.provenance = tool.clone();
    fs_err::create_dir_all(out).map_err(io(out))?;
    let mut metadata = d.metadata.clone();
    metadata.insert("method".into(), format!("pick: {CRITERION}"));
    metadata.insert("chosen".into(), p.chosen.clone());
    metadata.insert("directions_file".into(), directions.display().to_string());
    metadata.insert(
        "directions_file_sha256".into(),
        selfaware_model::file_sha256(directions)?,
    );
    Directions {
        points: vec![(p.chosen.clone(), v)],
        metadata,
    }
    .write(&out.join("best.safetensors"), true)?;
    let path = out.join("pick.json");
    let text = serde_json::to_string_pretty(&p)
        .map_err(|e| ActivationsError::Input(e.to_string()))?
        + "\n";
    selfaware_types::write_atomic(&path, text.as_bytes()).map_err(io(&path))?;
    Ok(p)
}

/// The chosen point and why, then per point: accuracy, interval, norm, cosines.
impl fmt::Display for Pick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "chosen: {} ({})", self.chosen, self.reason)?;
        writeln!(
            f,
            "point\taccuracy\t95% interval\tnorm\tcos(chosen)\tcos(next)"
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "{}\t{:.3}\t[{:.3}, {:.3}]\t{:.3}\t{:.3}\t{}",
                r.point,
                r.accuracy,
                r.low,
                r.high,
                r.norm,
                r.cosine_chosen,
                r.cosine_next.map_or("-".into(), |c| format!("{c:.3}"))
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(point: &str, correct: usize, n: usize) -> ProbePoint {
        ProbePoint {
            point: point.into(),
            correct,
            n,
            accuracy: correct as f64 / n as f64,
            interval: [0.0, 1.0],
        }
    }

    #[test]
    fn the_most_accurate_point_wins_and_ties_go_to_the_middle_layer() {
        // Layers 0..=5, middle 2.5: 10/20, 18/20, 20/20, 20/20, 20/20, 16/20. Ties at 2, 3, 4;
        // distances 0.5, 0.5, 1.5: the lower of 2 and 3 wins.
        let ps: Vec<ProbePoint> = [10, 18, 20, 20, 20, 16]
            .iter()
            .enumerate()
            .map(|(l, &c)| pt(&format!("blocks.{l}.hook_resid_post"), c, 20))
            .collect();
        assert_eq!(choose(&ps), Some(2));
        // A single best point wins wherever it is.
        let mut one = ps.clone();
        one[5] = pt("blocks.5.hook_resid_post", 20, 20);
        one[2] = pt("blocks.2.hook_resid_post", 19, 20);
        one[3] = pt("blocks.3.hook_resid_post", 19, 20);
        one[4] = pt("blocks.4.hook_resid_post", 19, 20);
        assert_eq!(choose(&one), Some(5));
        // ln_final loses a tie with a layer.
        let ln = vec![
            pt("ln_final.hook_normalized", 20, 20),
            pt("blocks.7.hook_resid_post", 20, 20),
        ];
        assert_eq!(choose(&ln), Some(1));
        assert_eq!(choose(&[]), None);
    }

    #[test]
    fn rows_carry_norms_and_cosines_and_the_reason_names_the_numbers() {
        let d = Directions {
            points: vec![
                ("blocks.0.hook_resid_post".into(), vec![3.0, 4.0]),
                ("blocks.1.hook_resid_post".into(), vec![0.0, 2.0]),
                ("blocks.2.hook_resid_post".into(), vec![1.0, 0.0]),
            ],
            metadata: Default::default(),
        };
        let ps = vec![
            pt("blocks.0.hook_resid_post", 7, 10),
            pt("blocks.1.hook_resid_post", 9, 10),
            pt("blocks.2.hook_resid_post", 8, 10),
        ];
        let (p, v) = pick(&d, &ps, (Path::new("d"), Path::new("p"))).unwrap();
        assert_eq!(p.chosen, "blocks.1.hook_resid_post");
        assert_eq!(v, vec![0.0, 2.0]);
        assert_eq!(p.rows[0].norm, 5.0);
        // cos((3,4),(0,2)) = 8 / (5·2) = 0.8; cos((0,2),(1,0)) = 0.
        assert!((p.rows[0].cosine_chosen - 0.8).abs() < 1e-12);
        assert!((p.rows[0].cosine_next.unwrap() - 0.8).abs() < 1e-12);
        assert_eq!(p.rows[1].cosine_next, Some(0.0));
        assert_eq!(p.rows[2].cosine_next, None);
        assert_eq!(
            p.reason,
            "blocks.1.hook_resid_post has the highest cross-validated accuracy, 0.900 (9/10)"
        );
    }
}
