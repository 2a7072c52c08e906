//! Linear probes: a seeded, stratified k-fold cross-validated L2 logistic regression per hook
//! point, telling two captures' prompts apart, with accuracy and a Wilson interval.
//!
//! The model is scikit-learn's `LogisticRegression(C=c)`: minimise
//! `½‖w‖² + C Σᵢ log(1 + exp(−yᵢ (w·xᵢ + b)))`, `yᵢ ∈ {−1, +1}`, the intercept unpenalised.
//! Features are standardised with the training fold's mean and standard deviation (the
//! residual stream's few huge dimensions would otherwise dominate the penalty and the
//! conditioning), and the fit is accelerated gradient descent (Nesterov, step `1/L` from the
//! objective's Lipschitz bound) run to a gradient below `tol`.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use selfaware_stats::Interval;

use crate::error::{ActivationsError, Result};
use crate::readout::{shared_points, Capture};

/// Settings of [`probe`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeConfig {
    /// Folds of the cross-validation (at least 2).
    pub folds: usize,
    /// Inverse regularisation strength (scikit-learn's `C`).
    pub c: f64,
    /// Seed of the fold assignment.
    pub seed: u64,
    /// Level of the accuracy's Wilson interval.
    pub level: f64,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            folds: 5,
            c: 1.0,
            seed: 0,
            level: 0.95,
        }
    }
}

/// A fitted logistic regression: `P(y = 1 | x) = σ(w·x + b)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Logistic {
    pub w: Vec<f64>,
    pub b: f64,
    /// Iterations the fit took.
    pub iterations: usize,
}

impl Logistic {
    pub fn score(&self, x: &[f64]) -> f64 {
        self.b + self.w.iter().zip(x).map(|(w, x)| w * x).sum::<f64>()
    }
}

/// Most iterations of the fit.
const MAX_ITER: usize = 20_000;

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// Fits `½‖w‖² + C Σ log(1 + exp(−yᵢ(w·xᵢ + b)))` (`y` true for the positive class) on the
/// features as given, to a gradient (max abs) below `tol`.
pub fn fit_logistic(x: &[Vec<f64>], y: &[bool], c: f64, tol: f64) -> Result<Logistic> {
    let n = x.len();
    let d = x.first().map_or(0, Vec::len);
    if n == 0 || y.len() != n || x.iter().any(|r| r.len() != d) || c <= 0.0 {
        return Err(ActivationsError::Input(format!(
            "logistic regression needs rows of equal width, one label each and C > 0 (got {n} \
             rows, {} labels, C = {c})",
            y.len()
        )));
    }
    let s: Vec<f64> = y.iter().map(|&t| if t { 1.0 } else { -1.0 }).collect();
    // Lipschitz constant of the gradient: 1 (penalty) + C/4 · σ_max([X 1])², σ_max² from a
    // few power iterations on [X 1]ᵀ[X 1] (raised by a tenth: the iteration approaches it
    // from below), capped by the Frobenius norm², which bounds it from above.
    let frob: f64 = x
        .iter()
        .map(|r| 1.0 + r.iter().map(|v| v * v).sum::<f64>())
        .sum();
    let sigma2 = (largest_eigenvalue(x) * 1.1).min(frob);
    let step = 1.0 / (1.0 + c * sigma2 / 4.0);
    let grad = |w: &[f64], b: f64| -> (Vec<f64>, f64) {
        let mut g = w.to_vec();
        let mut gb = 0.0;
        for (r, &si) in x.iter().zip(&s) {
            let z = b + w.iter().zip(r).map(|(w, v)| w * v).sum::<f64>();
            // d/dz log(1 + exp(−s z)) = −s σ(−s z)
            let coef = -c * si * sigmoid(-si * z);
            for (gj, v) in g.iter_mut().zip(r) {
                *gj += coef * v;
            }
            gb += coef;
        }
        (g, gb)
    };
    let (mut w, mut b) = (vec![0.0; d], 0.0);
    let (mut yw, mut yb) = (w.clone(), b);
    let mut t = 1.0f64;
    for it in 0..MAX_ITER {
        let (g, gb) = grad(&yw, yb);
        let gmax = g.iter().fold(gb.abs(), |m, v| m.max(v.abs()));
        if gmax < tol {
            return Ok(Logistic {
                w: yw,
                b: yb,
                iterations: it,
            });
        }
        let nw: Vec<f64> = yw.iter().zip(&g).map(|(v, g)| v - step * g).collect();
        let nb = yb - step * gb;
        let nt = (1.0 + (1.0 + 4.0 * t * t).sqrt()) / 2.0;
        let mom = (t - 1.0) / nt;
        yw = nw.iter().zip(&w).map(|(a, p)| a + mom * (a - p)).collect();
        yb = nb + mom * (nb - b);
        w = nw;
        b = nb;
        t = nt;
    }
    Ok(Logistic {
        w,
        b,
        iterations: MAX_ITER,
    })
}

/// The largest eigenvalue of `[X 1]ᵀ[X 1]` by 50 power iterations from the all-ones vector.
fn largest_eigenvalue(x: &[Vec<f64>]) -> f64 {
    let d = x.first().map_or(0, Vec::len) + 1;
    let mut v = vec![1.0 / (d as f64).sqrt(); d];
    let mut lambda = 0.0;
    for _ in 0..50 {
        // u = [X 1] v, then v' = [X 1]ᵀ u.
        let mut next = vec![0.0; d];
        for r in x {
            let u = v[d - 1] + r.iter().zip(&v).map(|(a, b)| a * b).sum::<f64>();
            for (n, a) in next.iter_mut().zip(r) {
                *n += u * a;
            }
            next[d - 1] += u;
        }
        let norm = next.iter().map(|a| a * a).sum::<f64>().sqrt();
        if norm == 0.0 {
            return 0.0;
        }
        lambda = norm;
        v = next.into_iter().map(|a| a / norm).collect();
    }
    lambda
}

/// Per feature: mean and standard deviation (population; 1 where it is 0) of `rows`.
pub fn standardiser(rows: &[&Vec<f64>]) -> (Vec<f64>, Vec<f64>) {
    let d = rows.first().map_or(0, |r| r.len());
    let n = rows.len().max(1) as f64;
    let mut mean = vec![0.0; d];
    for r in rows {
        for (m, v) in mean.iter_mut().zip(r.iter()) {
            *m += v / n;
        }
    }
    let mut sd = vec![0.0; d];
    for r in rows {
        for ((s, v), m) in sd.iter_mut().zip(r.iter()).zip(&mean) {
            *s += (v - m) * (v - m) / n;
        }
    }
    let sd = sd
        .into_iter()
        .map(|v| if v > 0.0 { v.sqrt() } else { 1.0 })
        .collect();
    (mean, sd)
}

/// Stratified fold of every example: each class's examples shuffled by `seed` and dealt to
/// the folds in turn.
pub fn fold_assignment(y: &[bool], folds: usize, seed: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut fold = vec![0; y.len()];
    let mut next = 0;
    for class in [true, false] {
        let mut idx: Vec<usize> = (0..y.len()).filter(|&i| y[i] == class).collect();
        idx.shuffle(&mut rng);
        for i in idx {
            fold[i] = next % folds;
            next += 1;
        }
    }
    fold
}

/// Cross-validated accuracy of a probe on `(x, y)`.
#[derive(Debug, Clone, PartialEq)]
pub struct CrossValidated {
    pub correct: usize,
    pub n: usize,
    pub accuracy: f64,
    pub interval: Interval,
    pub fold_accuracies: Vec<f64>,
}

/// Stratified k-fold cross-validation of [`fit_logistic`] on standardised features.
pub fn cross_validate(x: &[Vec<f64>], y: &[bool], cfg: &ProbeConfig) -> Result<CrossValidated> {
    let (pos, neg) = (
        y.iter().filter(|&&t| t).count(),
        y.iter().filter(|&&t| !t).count(),
    );
    if cfg.folds < 2 || pos < cfg.folds || neg < cfg.folds {
        return Err(ActivationsError::Input(format!(
            "{}-fold cross-validation needs at least {} examples of each class (got {pos} and \
             {neg})\nhint: capture more prompts, or lower --folds",
            cfg.folds, cfg.folds
        )));
    }
    let fold = fold_assignment(y, cfg.folds, cfg.seed);
    let (mut correct, mut fold_acc) = (0usize, Vec::with_capacity(cfg.folds));
    for k in 0..cfg.folds {
        let train: Vec<usize> = (0..x.len()).filter(|&i| fold[i] != k).collect();
        let test: Vec<usize> = (0..x.len()).filter(|&i| fold[i] == k).collect();
        let (mean, sd) = standardiser(&train.iter().map(|&i| &x[i]).collect::<Vec<_>>());
        let z = |r: &[f64]| -> Vec<f64> {
            r.iter()
                .zip(&mean)
                .zip(&sd)
                .map(|((v, m), s)| (v - m) / s)
                .collect()
        };
        let xs: Vec<Vec<f64>> = train.iter().map(|&i| z(&x[i])).collect();
        let ys: Vec<bool> = train.iter().map(|&i| y[i]).collect();
        let fit = fit_logistic(&xs, &ys, cfg.c, 1e-6)?;
        let right = test
            .iter()
            .filter(|&&i| (fit.score(&z(&x[i])) > 0.0) == y[i])
            .count();
        correct += right;
        fold_acc.push(right as f64 / test.len() as f64);
    }
    let n = x.len();
    let interval = selfaware_stats::wilson_interval(correct as u64, n as u64, cfg.level)
        .map_err(|e| ActivationsError::Input(e.to_string()))?;
    Ok(CrossValidated {
        correct,
        n,
        accuracy: correct as f64 / n as f64,
        interval,
        fold_accuracies: fold_acc,
    })
}

/// A probe's result at one hook point.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeResult {
    pub point: String,
    pub cv: CrossValidated,
}

/// Probes telling `a`'s prompts (positive) from `b`'s at every point both hold: one example per
/// prompt (its row for `last`, the mean of its rows otherwise).
pub fn probe(a: &Capture, b: &Capture, cfg: &ProbeConfig) -> Result<Vec<ProbeResult>> {
    let mut out = Vec::new();
    for p in shared_points(a, b)? {
        let (xa, xb) = (a.per_prompt(&p)?, b.per_prompt(&p)?);
        let y: Vec<bool> = std::iter::repeat_n(true, xa.len())
            .chain(std::iter::repeat_n(false, xb.len()))
            .collect();
        let x: Vec<Vec<f64>> = xa.into_iter().chain(xb).collect();
        let cv = cross_validate(&x, &y, cfg)
            .map_err(|e| ActivationsError::Input(format!("probe at `{p}`: {e}")))?;
        out.push(ProbeResult { point: p, cv });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two points x = ±1 labelled 1 and 0: by symmetry b = 0, and the gradient
    /// w − 2C σ(−w) = 0 gives w = 2C/(1 + e^w). For C = 1 the root, by bisection in Python
    /// (`w = 2 / (1 + math.exp(w))`), is 0.6748316143423994.
    #[test]
    fn the_fit_reaches_a_hand_derived_optimum() {
        let x = vec![vec![1.0], vec![-1.0]];
        let fit = fit_logistic(&x, &[true, false], 1.0, 1e-12).unwrap();
        assert!(
            (fit.w[0] - 0.674_831_614_342_399_4).abs() < 1e-9,
            "{:?}",
            fit
        );
        assert!(fit.b.abs() < 1e-9);
        // C = 3: w = 6/(1 + e^w), root 1.2925396021028526 (the same bisection).
        let fit = fit_logistic(&x, &[true, false], 3.0, 1e-12).unwrap();
        assert!(
            (fit.w[0] - 1.292_539_602_102_852_6).abs() < 1e-9,
            "{:?}",
            fit
        );
    }

    #[test]
    fn folds_are_stratified_seeded_and_balanced() {
        let y: Vec<bool> = (0..20).map(|i| i < 10).collect();
        let f = fold_assignment(&y, 5, 1);
        assert_eq!(f, fold_assignment(&y, 5, 1));
        assert_ne!(f, fold_assignment(&y, 5, 2));
        for k in 0..5 {
            let pos = (0..10).filter(|&i| f[i] == k).count();
            let neg = (10..20).filter(|&i| f[i] == k).count();
            assert_eq!((pos, neg), (2, 2), "fold {k}");
        }
    }

    #[test]
    fn separable_classes_are_told_apart_and_shuffled_labels_are_not() {
        // Class by the sign of feature 0; feature 1 is noise. 20 + 20 examples.
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..40 {
            let noise = ((i * 37 % 11) as f64 - 5.0) / 5.0;
            let pos = i % 2 == 0;
            x.push(vec![
                if pos {
                    1.0 + noise.abs()
                } else {
                    -1.0 - noise.abs()
                },
                noise,
            ]);
            y.push(pos);
        }
        let cfg = ProbeConfig::default();
        let cv = cross_validate(&x, &y, &cfg).unwrap();
        assert_eq!((cv.correct, cv.n), (40, 40));
        // Wilson 95% for 40/40 (Python, as in selfaware-stats): 0.9123783988027133, 1.
        assert!(
            (cv.interval.low - 0.912_378_398_802_713_3).abs() < 1e-9,
            "{:?}",
            cv.interval
        );
        // Labels unrelated to the features: near chance.
        let y2: Vec<bool> = (0..40).map(|i| (i / 2) % 2 == 0).collect();
        let x2: Vec<Vec<f64>> = (0..40).map(|i| vec![((i * 7919) % 13) as f64]).collect();
        let cv = cross_validate(&x2, &y2, &cfg).unwrap();
        assert!(cv.accuracy < 0.8, "{cv:?}");
        let e = cross_validate(&x[..6], &y[..6], &cfg)
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least 5 examples of each class"), "{e}");
    }
}
