//! Input validation shared by every routine, and the canonical (sorted) copy that makes
//! resampling results depend only on the multiset of values.

use crate::error::{Result, StatsError};

/// Fails unless `values` holds at least `needed` values, all finite.
pub(crate) fn finite_at_least(what: &'static str, values: &[f64], needed: usize) -> Result<()> {
    if values.is_empty() && needed > 0 {
        return Err(StatsError::Empty { what, needed });
    }
    if values.len() < needed {
        return Err(StatsError::TooFew {
            what,
            needed,
            got: values.len(),
        });
    }
    if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(StatsError::NonFinite { what, index, value });
    }
    Ok(())
}

/// Fails unless `0 < level < 1`.
pub(crate) fn level(what: &'static str, level: f64) -> Result<()> {
    if level > 0.0 && level < 1.0 {
        Ok(())
    } else {
        Err(StatsError::OutOfRange {
            what,
            field: "level",
            value: level,
            expected: "a number strictly between 0 and 1",
        })
    }
}

/// Fails unless `resamples >= 1`.
pub(crate) fn resamples(what: &'static str, resamples: usize) -> Result<()> {
    if resamples == 0 {
        Err(StatsError::OutOfRange {
            what,
            field: "resamples",
            value: 0.0,
            expected: "at least 1",
        })
    } else {
        Ok(())
    }
}

/// Fails unless `x` and `y` have the same length.
pub(crate) fn same_length(what: &'static str, x: &[f64], y: &[f64]) -> Result<()> {
    if x.len() == y.len() {
        Ok(())
    } else {
        Err(StatsError::LengthMismatch {
            what,
            x: x.len(),
            y: y.len(),
        })
    }
}

/// An ascending copy (IEEE total order; inputs are already checked finite).
pub(crate) fn sorted(values: &[f64]) -> Vec<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v
}
