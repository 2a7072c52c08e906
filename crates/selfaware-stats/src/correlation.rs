//! Pearson correlation with its p-value and Fisher-z interval, and the least-squares line.

use statrs::distribution::{ContinuousCDF, Normal};

use crate::check;
use crate::descriptive::raw_mean;
use crate::error::{Result, StatsError};
use crate::interval::{Interval, IntervalMethod};

/// Result of [`pearson`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pearson {
    /// The correlation coefficient, in `[-1, 1]`.
    pub r: f64,
    /// Two-sided p-value of `r ≠ 0` under bivariate normality (as `scipy.stats.pearsonr`).
    pub p_value: f64,
    /// Number of pairs.
    pub n: usize,
}

impl Pearson {
    /// The Fisher-z interval of this correlation; see [`fisher_z_interval`].
    ///
    /// Errors: as [`fisher_z_interval`].
    pub fn fisher_interval(&self, level: f64) -> Result<Interval> {
        fisher_z_interval(self.r, self.n, level)
    }
}

/// Pearson's correlation coefficient of paired samples, with scipy's two-sided p-value.
///
/// Definition: with centred values `x̃ᵢ = xᵢ − x̄`, `ỹᵢ = yᵢ − ȳ`,
/// `r = Σ x̃ᵢỹᵢ / sqrt(Σ x̃ᵢ² · Σ ỹᵢ²)`, clipped to `[-1, 1]`. The p-value is
/// `scipy.stats.pearsonr`'s: under H₀ the law of `r` is Beta(n/2 − 1, n/2 − 1) on `[-1, 1]`,
/// so `p = 2·P(R ≥ |r|) = 2·I_{(1−|r|)/2}(n/2 − 1, n/2 − 1)` (regularized incomplete beta),
/// the same as the t-test with `t = r·sqrt((n−2)/(1−r²))` on `n − 2` degrees of freedom.
///
/// Errors: [`StatsError::LengthMismatch`], fewer than 3 pairs ([`StatsError::Empty`] /
/// [`StatsError::TooFew`]: with 2 pairs `r = ±1` always), [`StatsError::NonFinite`],
/// [`StatsError::ZeroVariance`] when `x` or `y` is constant.
pub fn pearson(x: &[f64], y: &[f64]) -> Result<Pearson> {
    const WHAT: &str = "pearson";
    check::same_length(WHAT, x, y)?;
    check::finite_at_least("pearson(x)", x, 3)?;
    check::finite_at_least("pearson(y)", y, 3)?;
    let moments = Moments::of(WHAT, x, y, "the correlation")?;
    let r = (moments.sxy / (moments.sxx * moments.syy).sqrt()).clamp(-1.0, 1.0);
    let n = x.len();
    let ab = n as f64 / 2.0 - 1.0;
    let p_value = (2.0 * statrs::function::beta::beta_reg(ab, ab, (1.0 - r.abs()) / 2.0)).min(1.0);
    Ok(Pearson { r, p_value, n })
}

/// Fisher-z confidence interval of a correlation `r` from `n` pairs (the paper's Figure 4
/// and `scipy.stats.pearsonr(...).confidence_interval()`):
/// `z = atanh r`, `se = 1/sqrt(n − 3)`, `c = Φ⁻¹((1 + level)/2)` (1.959964 for 0.95),
/// interval `[tanh(z − c·se), tanh(z + c·se)]`; the estimate is `r`. `|r| = 1` gives the
/// point `[r, r]`.
///
/// Errors: `n < 4` ([`StatsError::TooFew`]: `se` is infinite at `n = 3`),
/// [`StatsError::OutOfRange`] for `r` outside `[-1, 1]` or a level outside `(0, 1)`.
pub fn fisher_z_interval(r: f64, n: usize, level: f64) -> Result<Interval> {
    const WHAT: &str = "fisher_z_interval";
    if n < 4 {
        return Err(StatsError::TooFew {
            what: WHAT,
            needed: 4,
            got: n,
        });
    }
    if !(-1.0..=1.0).contains(&r) {
        return Err(StatsError::OutOfRange {
            what: WHAT,
            field: "r",
            value: r,
            expected: "a correlation in [-1, 1]",
        });
    }
    check::level(WHAT, level)?;
    let c = standard_normal_quantile(0.5 + level / 2.0);
    let z = r.atanh();
    let se = 1.0 / ((n - 3) as f64).sqrt();
    Ok(Interval {
        estimate: r,
        low: (z - c * se).tanh(),
        high: (z + c * se).tanh(),
        level,
        resamples: None,
        seed: None,
        method: IntervalMethod::FisherZ,
    })
}

/// An ordinary-least-squares line `y ≈ intercept + slope·x`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OlsLine {
    /// `Σ x̃ᵢỹᵢ / Σ x̃ᵢ²` (centred values).
    pub slope: f64,
    /// `ȳ − slope·x̄`.
    pub intercept: f64,
    /// Number of pairs.
    pub n: usize,
}

impl OlsLine {
    /// `intercept + slope·x`.
    pub fn predict(&self, x: f64) -> f64 {
        self.intercept + self.slope * x
    }
}

/// Least-squares line of `y` on `x` (as `scipy.stats.linregress` or `numpy.polyfit(x, y, 1)`),
/// used for the per-cluster fits of the paper's Figure 4.
///
/// Errors: [`StatsError::LengthMismatch`], fewer than 2 pairs ([`StatsError::Empty`] /
/// [`StatsError::TooFew`]), [`StatsError::NonFinite`], [`StatsError::ZeroVariance`] when `x`
/// is constant.
pub fn ols_line(x: &[f64], y: &[f64]) -> Result<OlsLine> {
    const WHAT: &str = "ols_line";
    check::same_length(WHAT, x, y)?;
    check::finite_at_least("ols_line(x)", x, 2)?;
    check::finite_at_least("ols_line(y)", y, 2)?;
    let (mx, my) = (raw_mean(x), raw_mean(y));
    let sxx: f64 = x.iter().map(|v| (v - mx) * (v - mx)).sum();
    if sxx == 0.0 {
        return Err(StatsError::ZeroVariance {
            what: WHAT,
            field: "x",
            quantity: "the slope",
        });
    }
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let slope = sxy / sxx;
    Ok(OlsLine {
        slope,
        intercept: my - slope * mx,
        n: x.len(),
    })
}

/// Upper quantile of the standard normal, `Φ⁻¹(p)`, `0 < p < 1`.
pub(crate) fn standard_normal_quantile(p: f64) -> f64 {
    Normal::standard().inverse_cdf(p)
}

/// Centred sums of squares and cross-products.
struct Moments {
    sxx: f64,
    syy: f64,
    sxy: f64,
}

impl Moments {
    fn of(what: &'static str, x: &[f64], y: &[f64], quantity: &'static str) -> Result<Self> {
        let (mx, my) = (raw_mean(x), raw_mean(y));
        let (mut sxx, mut syy, mut sxy) = (0.0, 0.0, 0.0);
        for (a, b) in x.iter().zip(y) {
            let (da, db) = (a - mx, b - my);
            sxx += da * da;
            syy += db * db;
            sxy += da * db;
        }
        for (field, s) in [("x", sxx), ("y", syy)] {
            if s == 0.0 {
                return Err(StatsError::ZeroVariance {
                    what,
                    field,
                    quantity,
                });
            }
        }
        Ok(Self { sxx, syy, sxy })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_correlation() {
        let p = pearson(&[1.0, 2.0, 3.0, 4.0], &[2.0, 4.0, 6.0, 8.0]).unwrap();
        assert_eq!(p.r, 1.0);
        assert_eq!(p.p_value, 0.0);
        let ci = p.fisher_interval(0.95).unwrap();
        assert_eq!((ci.low, ci.high), (1.0, 1.0));
    }

    #[test]
    fn uncorrelated_has_p_one() {
        // x̃ = (−1, 0, 1), ỹ = (1, −2, 1): Σ x̃ỹ = 0.
        let p = pearson(&[1.0, 2.0, 3.0], &[1.0, -2.0, 1.0]).unwrap();
        assert_eq!(p.r, 0.0);
        assert!((p.p_value - 1.0).abs() < 1e-15, "{}", p.p_value);
    }

    #[test]
    fn bad_input_is_named() {
        assert_eq!(
            pearson(&[1.0, 2.0, 3.0], &[1.0, 2.0]),
            Err(StatsError::LengthMismatch {
                what: "pearson",
                x: 3,
                y: 2
            })
        );
        let err = pearson(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "pearson: x has zero variance, so the correlation is undefined"
        );
        assert!(matches!(
            fisher_z_interval(0.5, 3, 0.95),
            Err(StatsError::TooFew { needed: 4, .. })
        ));
        assert!(matches!(
            fisher_z_interval(1.5, 10, 0.95),
            Err(StatsError::OutOfRange { field: "r", .. })
        ));
        assert!(matches!(
            ols_line(&[2.0, 2.0], &[1.0, 3.0]),
            Err(StatsError::ZeroVariance { field: "x", .. })
        ));
    }

    #[test]
    fn ols_exact_line() {
        let line = ols_line(&[0.0, 1.0, 2.0, 3.0], &[1.0, 3.0, 5.0, 7.0]).unwrap();
        assert_eq!((line.slope, line.intercept), (2.0, 1.0));
        assert_eq!(line.predict(10.0), 21.0);
    }

    #[test]
    fn normal_quantile_known_value() {
        // scipy.special.ndtri(0.975)
        let c = standard_normal_quantile(0.975);
        assert!((c - 1.959_963_984_540_054).abs() < 1e-14, "{c}");
    }
}
