//! Pure, seeded statistics for selfaware's experiment reports.
//!
//! No candle, no I/O, no printing: functions take slices and return typed results or a
//! [`StatsError`]. Every resampling routine takes an explicit `u64` seed for a
//! `rand_chacha::ChaCha8Rng`, so a report rebuilt from saved results gives the same numbers.
//!
//! # What is here
//!
//! * **Descriptive** — [`mean`], [`std_sample`] (`ddof = 1`), [`std_population`]
//!   (`ddof = 0`), [`quantile`] / [`quantiles`] / [`median`] with numpy's default linear
//!   interpolation.
//! * **Intervals of a mean** (all return an [`Interval`]):
//!   [`bootstrap_mean_ci`] — the paper's percentile bootstrap (10 000 resamples, 95 %, seed 0
//!   by [`BootstrapConfig::default`]); [`paper_normal_interval`] — `mean ± 1.96·std_pop/√n`
//!   from the paper's final plot script; [`t_interval`] — Student's t, as the paper's heatmap.
//! * **Hierarchical bootstrap** — [`hierarchical_bootstrap_ci`]: resample groups (finetuning
//!   seeds), then values within each drawn group (paraphrases); statistic = mean of group
//!   means, each group weighted equally.
//! * **Two conditions** — [`bootstrap_difference_ci`] (A − B of means, independent
//!   resampling), [`permutation_test`] (two-sided, exact enumeration within the budget, else
//!   Monte Carlo; scipy's `permutation_test(..., permutation_type='independent')`
//!   semantics), and [`compare_conditions`] for both.
//! * **Power** — [`detectable_difference`] (Welch), [`detectable_difference_paired`],
//!   [`detectable_difference_groups`] (group means: the model is the unit of replication):
//!   the smallest difference a comparison could detect at power 0.8 and two-sided α = 0.05 by
//!   default; [`permutation_smallest_p`] / [`sign_flip_smallest_p`], the floor below which a
//!   permutation test cannot go; [`simulate_power`], a seeded simulation to check the figures.
//! * **Divergence and outliers** — [`kl_divergence`] of two discrete distributions (with a
//!   floor probability for outcomes one side lacks) and of two samples
//!   ([`kl_divergence_of_samples`], add-α smoothing), [`robust_z_scores`] (median/MAD) of
//!   values against their own pool.
//! * **Correlation** — [`pearson`] (r and scipy's two-sided p-value), [`fisher_z_interval`]
//!   (the paper's Figure 4 intervals), [`ols_line`] (per-cluster least-squares fit).
//!
//! # Conventions
//!
//! * **n = 0 and n = 1 are errors, not degenerate intervals.** Every interval needs at least
//!   2 values ([`StatsError::Empty`] for none, [`StatsError::TooFew`] for one); a Fisher-z
//!   interval needs 4 pairs, a Pearson p-value 3. A zero-width interval from one model would
//!   read as certainty. Constant data with `n ≥ 2` do give a zero-width interval.
//! * **Order invariance.** Interval and test routines sort their input (a copy) before doing
//!   anything, so the same multiset of values, seed and resample count give a bit-identical
//!   result whatever the input order. Descriptive routines sum in the order given.
//! * **Bootstrap quantiles** use the same linear rule as [`quantile`], as scipy does; the
//!   percentile interval at level `L` is `[q((1−L)/2), q((1+L)/2)]` of the bootstrap
//!   distribution. Our RNG is not numpy's, so bootstrap endpoints agree with scipy only up
//!   to Monte-Carlo error (see `tests/golden.rs`); deterministic quantities agree to rounding.
//! * Inputs must be finite; a NaN or infinity is reported with its index.
//!
//! ```
//! use selfaware_stats::{bootstrap_mean_ci, BootstrapConfig};
//! let scores = [0.62, 0.71, 0.58, 0.80, 0.67]; // one number per finetuning seed
//! let ci = bootstrap_mean_ci(&scores, &BootstrapConfig::default())?;
//! assert!(ci.low < ci.estimate && ci.estimate < ci.high);
//! # Ok::<(), selfaware_stats::StatsError>(())
//! ```

mod check;
mod compare;
mod correlation;
mod descriptive;
mod divergence;
mod error;
mod hierarchical;
mod interval;
mod paired;
mod power;

pub use compare::{
    bootstrap_difference_ci, bootstrap_differences, compare_conditions, permutation_test,
    Comparison, PermutationConfig, PermutationTest,
};
pub use correlation::{fisher_z_interval, ols_line, pearson, OlsLine, Pearson};
pub use descriptive::{mean, median, quantile, quantiles, std_population, std_sample};
pub use divergence::{kl_divergence, kl_divergence_of_samples, robust_z_scores};
pub use error::{Result, StatsError};
pub use hierarchical::{hierarchical_bootstrap_ci, hierarchical_bootstrap_means};
pub use interval::{
    bootstrap_mean_ci, bootstrap_means, paper_normal_interval, t_interval, wilson_interval,
    BootstrapConfig, Interval, IntervalMethod,
};
pub use paired::{compare_paired, sign_flip_test, PairedComparison};
pub use power::{
    detectable_difference, detectable_difference_for, detectable_difference_groups,
    detectable_difference_paired, permutation_smallest_p, sign_flip_smallest_p, simulate_power,
    DetectableDifference, PowerConfig, PowerDesign, PowerMethod, PowerTest, SimulationConfig,
};
