//! Descriptive statistics: mean, standard deviations, quantiles.
//!
//! These routines work on the values in the order given (no internal sort except inside the
//! quantile routines, which need one); results therefore match numpy to rounding.

use crate::check;
use crate::error::{Result, StatsError};

/// Arithmetic mean `Σ xᵢ / n`, summed left to right.
///
/// Errors: [`StatsError::Empty`] for no values, [`StatsError::NonFinite`] for NaN/∞.
pub fn mean(values: &[f64]) -> Result<f64> {
    check::finite_at_least("mean(values)", values, 1)?;
    Ok(raw_mean(values))
}

/// Sample standard deviation with Bessel's correction (numpy `std(ddof=1)`):
/// `sqrt(Σ (xᵢ − x̄)² / (n − 1))`, computed in two passes.
///
/// Errors: [`StatsError::Empty`] / [`StatsError::TooFew`] for fewer than 2 values (numpy
/// would return NaN for one value), [`StatsError::NonFinite`].
pub fn std_sample(values: &[f64]) -> Result<f64> {
    check::finite_at_least("std_sample(values)", values, 2)?;
    Ok((sum_sq_dev(values) / (values.len() - 1) as f64).sqrt())
}

/// Population standard deviation (numpy `std(ddof=0)`, the default):
/// `sqrt(Σ (xᵢ − x̄)² / n)`, computed in two passes. One value gives 0.
///
/// Errors: [`StatsError::Empty`], [`StatsError::NonFinite`].
pub fn std_population(values: &[f64]) -> Result<f64> {
    check::finite_at_least("std_population(values)", values, 1)?;
    Ok((sum_sq_dev(values) / values.len() as f64).sqrt())
}

/// The `q`-quantile, `0 ≤ q ≤ 1`, with numpy's default `method="linear"` (Hyndman & Fan
/// type 7): sort ascending to `x₀ ≤ … ≤ xₙ₋₁`, let `h = (n − 1)·q`, `j = ⌊h⌋`, `g = h − j`;
/// the quantile is `xⱼ + g·(xⱼ₊₁ − xⱼ)` (and `xₙ₋₁` when `j = n − 1`). The interpolation is
/// evaluated exactly as numpy's `_lerp` does, so results agree with `numpy.quantile` to the
/// last bit in ordinary cases.
///
/// Errors: [`StatsError::Empty`], [`StatsError::NonFinite`], [`StatsError::OutOfRange`] for
/// `q` outside `[0, 1]` or NaN.
pub fn quantile(values: &[f64], q: f64) -> Result<f64> {
    Ok(quantiles(values, &[q])?[0])
}

/// Several quantiles of the same values (one sort); see [`quantile`] for the definition.
/// The result has one entry per element of `qs`, in the same order.
///
/// Errors: as [`quantile`]; an empty `qs` gives an empty vector.
pub fn quantiles(values: &[f64], qs: &[f64]) -> Result<Vec<f64>> {
    const WHAT: &str = "quantile(values, q)";
    check::finite_at_least(WHAT, values, 1)?;
    if let Some(&q) = qs.iter().find(|q| !(0.0..=1.0).contains(*q)) {
        return Err(StatsError::OutOfRange {
            what: WHAT,
            field: "q",
            value: q,
            expected: "a number in [0, 1]",
        });
    }
    let sorted = check::sorted(values);
    Ok(qs.iter().map(|&q| quantile_sorted(&sorted, q)).collect())
}

/// The median: [`quantile`] at `q = 0.5` (the mean of the two middle values for even `n`).
///
/// Errors: [`StatsError::Empty`], [`StatsError::NonFinite`].
pub fn median(values: &[f64]) -> Result<f64> {
    check::finite_at_least("median(values)", values, 1)?;
    Ok(quantile_sorted(&check::sorted(values), 0.5))
}

/// Mean without checks; `values` must be non-empty.
pub(crate) fn raw_mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// `Σ (xᵢ − x̄)²` without checks; `values` must be non-empty.
fn sum_sq_dev(values: &[f64]) -> f64 {
    let m = raw_mean(values);
    values.iter().map(|v| (v - m) * (v - m)).sum()
}

/// numpy's linear quantile on an ascending, non-empty slice, `0 ≤ q ≤ 1`.
pub(crate) fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    let h = (n - 1) as f64 * q;
    if h >= (n - 1) as f64 {
        return sorted[n - 1];
    }
    let j = h.floor();
    let g = h - j;
    // `h < n - 1`, so `j + 1 <= n - 1` is a valid index.
    let (a, b) = (sorted[j as usize], sorted[j as usize + 1]);
    // numpy `_lerp`: a + (b−a)·g, or b − (b−a)·(1−g) when g ≥ 0.5 (keeps monotonicity).
    let diff = b - a;
    if g >= 0.5 {
        b - diff * (1.0 - g)
    } else {
        a + diff * g
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(values: &[f64], q: f64, expect: f64) {
        let got = quantile(values, q).unwrap();
        assert_eq!(got, expect, "quantile({values:?}, {q})");
    }

    #[test]
    fn quantile_cases() {
        check(&[3.0], 0.0, 3.0);
        check(&[3.0], 0.7, 3.0);
        check(&[1.0, 2.0], 0.5, 1.5);
        check(&[4.0, 1.0, 3.0, 2.0], 0.0, 1.0);
        check(&[4.0, 1.0, 3.0, 2.0], 1.0, 4.0);
        check(&[4.0, 1.0, 3.0, 2.0], 0.5, 2.5);
        check(&[4.0, 1.0, 3.0, 2.0], 0.25, 1.75);
        check(&[0.0, 10.0], 0.1, 1.0);
        check(&[-5.0, 5.0, 5.0], 0.75, 5.0);
    }

    #[test]
    fn descriptive_cases() {
        assert_eq!(mean(&[1.0, 2.0, 6.0]).unwrap(), 3.0);
        assert_eq!(std_population(&[1.0, 3.0]).unwrap(), 1.0);
        assert_eq!(std_population(&[7.0]).unwrap(), 0.0);
        assert_eq!(std_sample(&[1.0, 3.0]).unwrap(), 2f64.sqrt());
        assert_eq!(median(&[5.0, 1.0, 3.0]).unwrap(), 3.0);
        assert_eq!(median(&[5.0, 1.0, 3.0, 2.0]).unwrap(), 2.5);
    }

    #[test]
    fn bad_input_is_named() {
        assert_eq!(
            mean(&[]),
            Err(StatsError::Empty {
                what: "mean(values)",
                needed: 1
            })
        );
        assert_eq!(
            std_sample(&[1.0]),
            Err(StatsError::TooFew {
                what: "std_sample(values)",
                needed: 2,
                got: 1
            })
        );
        let err = mean(&[1.0, f64::NAN]).unwrap_err();
        assert!(
            matches!(err, StatsError::NonFinite { index: 1, .. }),
            "{err}"
        );
        let err = quantile(&[1.0], 1.5).unwrap_err();
        assert_eq!(
            err.to_string(),
            "quantile(values, q): q is 1.5, expected a number in [0, 1]"
        );
        assert!(quantile(&[1.0], f64::NAN).is_err());
    }
}
