//! Divergence between two discrete distributions and outlier scores against a pool.

use crate::check;
use crate::descriptive::median;
use crate::error::{Result, StatsError};

/// `KL(P ‖ Q) = Σ_i p_i (ln p_i − ln q_i)` in nats, for distributions given as
/// `(outcome id, ln probability)` pairs, ids strictly ascending. Outcomes absent from a list
/// have probability 0; an outcome with `p_i > 0` and `q_i = 0` (absent or `ln q = −∞`) takes
/// `ln q_i = ln(floor)` instead of making the divergence infinite: `floor` (e.g. 1e-12) is
/// the smallest probability either side is taken to resolve, and bounds the divergence by
/// `−ln(floor)`. Terms with `p_i = 0` contribute 0.
///
/// Errors: ids not strictly ascending, a NaN log-probability, `floor` outside `(0, 1)`.
pub fn kl_divergence(p: &[(u32, f64)], q: &[(u32, f64)], floor: f64) -> Result<f64> {
    const WHAT: &str = "kl_divergence(p, q)";
    if !(floor > 0.0 && floor < 1.0) {
        return Err(StatsError::OutOfRange {
            what: WHAT,
            field: "floor",
            value: floor,
            expected: "a floor probability strictly between 0 and 1",
        });
    }
    for (name, d) in [("p", p), ("q", q)] {
        if let Some(i) = d.windows(2).position(|w| w[0].0 >= w[1].0) {
            return Err(StatsError::OutOfRange {
                what: WHAT,
                field: if name == "p" { "p" } else { "q" },
                value: f64::from(d[i + 1].0),
                expected: if name == "p" {
                    "outcome ids of p strictly ascending"
                } else {
                    "outcome ids of q strictly ascending"
                },
            });
        }
        if let Some(i) = d.iter().position(|(_, l)| l.is_nan()) {
            return Err(StatsError::NonFinite {
                what: WHAT,
                index: i,
                value: f64::NAN,
            });
        }
    }
    let ln_floor = floor.ln();
    let mut kl = 0.0;
    let mut j = 0;
    for &(id, lp) in p {
        if lp == f64::NEG_INFINITY {
            continue;
        }
        while j < q.len() && q[j].0 < id {
            j += 1;
        }
        let lq = match q.get(j) {
            Some(&(qid, lq)) if qid == id => lq.max(ln_floor),
            _ => ln_floor,
        };
        kl += lp.exp() * (lp - lq);
    }
    // Rounding can leave a tiny negative sum for (nearly) equal distributions.
    Ok(kl.max(0.0))
}

/// `KL(P̂ ‖ Q̂)` of two samples' empirical distributions, each smoothed by adding `alpha` to
/// every outcome seen in either sample and to one bucket for everything unseen:
/// `p̂_i = (count_i + α) / (n + α·(k + 1))` over the `k` outcomes seen. A plug-in estimate,
/// biased (upward for small samples of different distributions); two samples of the same
/// outcomes in the same counts give exactly 0. `p` and `q` list each sampled value once per
/// draw.
///
/// Errors: an empty sample, `alpha` not positive.
pub fn kl_divergence_of_samples<T: Ord>(p: &[T], q: &[T], alpha: f64) -> Result<f64> {
    const WHAT: &str = "kl_divergence_of_samples(p, q)";
    if p.is_empty() || q.is_empty() {
        return Err(StatsError::Empty {
            what: WHAT,
            needed: 1,
        });
    }
    if !(alpha > 0.0 && alpha.is_finite()) {
        return Err(StatsError::OutOfRange {
            what: WHAT,
            field: "alpha",
            value: alpha,
            expected: "a positive pseudo-count",
        });
    }
    let mut counts: std::collections::BTreeMap<&T, (f64, f64)> = Default::default();
    for x in p {
        counts.entry(x).or_default().0 += 1.0;
    }
    for x in q {
        counts.entry(x).or_default().1 += 1.0;
    }
    let k = counts.len() as f64;
    let zp = p.len() as f64 + alpha * (k + 1.0);
    let zq = q.len() as f64 + alpha * (k + 1.0);
    let term = |cp: f64, cq: f64| {
        let (pi, qi) = ((cp + alpha) / zp, (cq + alpha) / zq);
        pi * (pi / qi).ln()
    };
    let kl = counts.values().map(|&(cp, cq)| term(cp, cq)).sum::<f64>() + term(0.0, 0.0);
    Ok(kl.max(0.0))
}

/// Robust z-scores of `values` against their own pool: `(x − median) / (1.4826 · MAD)`, the
/// median absolute deviation scaled to estimate a normal standard deviation (Iglewicz and
/// Hoaglin's modified z-score uses 0.6745 · (x − median) / MAD, the same number). One extreme
/// value moves neither the median nor the MAD much, so it stands out instead of inflating
/// the scale it is measured against. `None` when the MAD is 0 (half the values or more are
/// equal): no scale to measure against.
///
/// Errors: fewer than 3 values, non-finite values.
pub fn robust_z_scores(values: &[f64]) -> Result<Option<Vec<f64>>> {
    const WHAT: &str = "robust_z_scores(values)";
    check::finite_at_least(WHAT, values, 3)?;
    let m = median(values)?;
    let dev: Vec<f64> = values.iter().map(|x| (x - m).abs()).collect();
    let mad = median(&dev)?;
    if mad == 0.0 {
        return Ok(None);
    }
    let scale = 1.4826 * mad;
    Ok(Some(values.iter().map(|x| (x - m) / scale).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kl_by_hand() {
        // P = (0.5, 0.5), Q = (0.25, 0.75): 0.5 ln 2 + 0.5 ln(2/3) = 0.143841036...
        let p = [(1, 0.5f64.ln()), (2, 0.5f64.ln())];
        let q = [(1, 0.25f64.ln()), (2, 0.75f64.ln())];
        let kl = kl_divergence(&p, &q, 1e-12).unwrap();
        assert!((kl - 0.143_841_036_225_890_1).abs() < 1e-12, "{kl}");
        assert_eq!(kl_divergence(&p, &p, 1e-12).unwrap(), 0.0);
        // Outcome 3 missing from Q: ln q = ln 1e-6. P = (0.5 on 1, 0.5 on 3), Q = (1 on 1).
        let p = [(1, 0.5f64.ln()), (3, 0.5f64.ln())];
        let q = [(1, 0.0)];
        let kl = kl_divergence(&p, &q, 1e-6).unwrap();
        let expect = 0.5 * (0.5f64.ln() - 0.0) + 0.5 * (0.5f64.ln() - 1e-6f64.ln());
        assert!((kl - expect).abs() < 1e-12, "{kl} vs {expect}");
        // An outcome only Q has costs nothing directly.
        let p = [(1, 0.0)];
        let q = [(1, 0.9f64.ln()), (2, 0.1f64.ln())];
        assert!((kl_divergence(&p, &q, 1e-12).unwrap() - (1.0 / 0.9f64).ln()).abs() < 1e-12);
        assert!(kl_divergence(&[(2, 0.0), (1, 0.0)], &q, 1e-12).is_err());
        assert!(kl_divergence(&p, &q, 0.0).is_err());
    }

    #[test]
    fn kl_of_samples_by_hand() {
        // P̂ = 3 × "y", Q̂ = 3 × "x", α = 0.5: outcomes {x, y} + unseen, denominators 4.5;
        // p = (0.5, 3.5, 0.5) / 4.5, q = (3.5, 0.5, 0.5) / 4.5:
        // KL = (0.5 ln(1/7) + 3.5 ln 7 + 0) / 4.5 = 3 ln 7 / 4.5.
        let kl = kl_divergence_of_samples(&["y"; 3], &["x"; 3], 0.5).unwrap();
        assert!((kl - 3.0 * 7f64.ln() / 4.5).abs() < 1e-12, "{kl}");
        assert_eq!(
            kl_divergence_of_samples(&["a", "b", "a"], &["b", "a", "a"], 0.5).unwrap(),
            0.0
        );
        assert!(kl_divergence_of_samples::<&str>(&[], &["x"], 0.5).is_err());
        assert!(kl_divergence_of_samples(&["x"], &["x"], 0.0).is_err());
    }

    #[test]
    fn robust_z_by_hand() {
        // median 3, |dev| = 2 1 0 1 7 → MAD 1; scale 1.4826.
        let z = robust_z_scores(&[1.0, 2.0, 3.0, 4.0, 10.0])
            .unwrap()
            .unwrap();
        assert!((z[4] - 7.0 / 1.4826).abs() < 1e-12);
        assert!((z[0] + 2.0 / 1.4826).abs() < 1e-12);
        assert_eq!(robust_z_scores(&[1.0, 1.0, 1.0, 5.0]).unwrap(), None);
        assert!(robust_z_scores(&[1.0, 2.0]).is_err());
    }
}
