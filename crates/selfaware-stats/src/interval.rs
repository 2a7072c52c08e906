//! Confidence intervals for a mean: percentile bootstrap (the paper's main method), the
//! paper's normal approximation with the population standard deviation, and Student's t.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use statrs::distribution::{ContinuousCDF, StudentsT};

use crate::check;
use crate::descriptive::{quantile_sorted, raw_mean, std_population, std_sample};
use crate::error::{Result, StatsError};

/// A point estimate with a two-sided confidence interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// The statistic on the original data (a mean, a difference of means, a correlation).
    pub estimate: f64,
    /// Lower end.
    pub low: f64,
    /// Upper end.
    pub high: f64,
    /// Confidence level, e.g. 0.95.
    pub level: f64,
    /// Number of bootstrap resamples; `None` for analytic intervals.
    pub resamples: Option<usize>,
    /// Seed of the resampling RNG; `None` for analytic intervals.
    pub seed: Option<u64>,
    /// How the interval was computed.
    pub method: IntervalMethod,
}

impl Interval {
    /// `high − low`.
    pub fn width(&self) -> f64 {
        self.high - self.low
    }

    /// Whether `low ≤ x ≤ high`.
    pub fn contains(&self, x: f64) -> bool {
        self.low <= x && x <= self.high
    }
}

/// How an [`Interval`] was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IntervalMethod {
    /// Percentile bootstrap over the observations ([`bootstrap_mean_ci`],
    /// [`crate::bootstrap_difference_ci`]).
    PercentileBootstrap,
    /// Two-level percentile bootstrap: groups, then values within groups
    /// ([`crate::hierarchical_bootstrap_ci`]).
    HierarchicalPercentileBootstrap,
    /// `mean ± 1.96·std_pop/√n` ([`paper_normal_interval`]).
    NormalPopulationStd,
    /// `mean ± t·s/√n` with Student's t quantile ([`t_interval`]).
    StudentT,
    /// Fisher z-transform interval of a Pearson correlation ([`crate::fisher_z_interval`]).
    FisherZ,
    /// Wilson score interval of a binomial proportion ([`wilson_interval`]).
    Wilson,
}

/// Settings of a bootstrap. `Default` is the paper's: 10 000 resamples, level 0.95, seed 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BootstrapConfig {
    /// Number of resamples `B` (at least 1).
    pub resamples: usize,
    /// Confidence level, strictly between 0 and 1.
    pub level: f64,
    /// Seed of the `ChaCha8Rng` that draws the resamples.
    pub seed: u64,
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        Self {
            resamples: 10_000,
            level: 0.95,
            seed: 0,
        }
    }
}

/// The bootstrap distribution of the mean, in the order drawn: `cfg.resamples` means, each of
/// `n` values drawn uniformly with replacement from `values`.
///
/// The values are sorted (ascending) before drawing, so the result depends only on the
/// multiset of values, the seed and the resample count — not on the input order.
/// `cfg.level` is validated but not used.
///
/// Errors: as [`bootstrap_mean_ci`].
pub fn bootstrap_means(values: &[f64], cfg: &BootstrapConfig) -> Result<Vec<f64>> {
    const WHAT: &str = "bootstrap_mean_ci(values)";
    validate_bootstrap(WHAT, values, cfg)?;
    let sorted = check::sorted(values);
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    Ok((0..cfg.resamples)
        .map(|_| resample_mean(&sorted, &mut rng))
        .collect())
}

/// Percentile bootstrap confidence interval of the mean (what the paper's `plot.py` gets from
/// `scipy.stats.bootstrap(..., method='percentile', n_resamples=10000, random_state=0)`).
///
/// Definition: draw `B = cfg.resamples` resamples of size `n` with replacement, take each
/// resample's mean `m*₁ … m*_B`, and with `α = (1 − level)/2` report
/// `[quantile(m*, α), quantile(m*, 1 − α)]` using [`crate::quantile`]'s linear rule (as
/// scipy does). The estimate is the mean of `values`. Values are sorted first (see
/// [`bootstrap_means`]), so the same multiset and seed give a bit-identical result. The
/// numbers differ from scipy's only by Monte-Carlo error, since the RNGs differ.
///
/// Errors: fewer than 2 values ([`StatsError::Empty`] for none, [`StatsError::TooFew`] for
/// one: a single observation has no spread to resample, and scipy refuses it too),
/// [`StatsError::NonFinite`], [`StatsError::OutOfRange`] for a level outside `(0, 1)` or
/// zero resamples.
pub fn bootstrap_mean_ci(values: &[f64], cfg: &BootstrapConfig) -> Result<Interval> {
    let means = bootstrap_means(values, cfg)?;
    let estimate = raw_mean(&check::sorted(values));
    Ok(percentile_interval(
        estimate,
        means,
        cfg,
        IntervalMethod::PercentileBootstrap,
    ))
}

/// The paper's normal-approximation interval (its final risk/myopia/apples plot script):
/// `mean ± 1.96 · std_pop / √n`, with the population standard deviation (`ddof = 0`) and the
/// literal constant 1.96; the level is reported as 0.95.
///
/// Values are sorted before summing, so the result depends only on the multiset.
///
/// Errors: fewer than 2 values ([`StatsError::Empty`] / [`StatsError::TooFew`]: with one value
/// the formula gives a zero-width interval, which would misstate the uncertainty),
/// [`StatsError::NonFinite`].
pub fn paper_normal_interval(values: &[f64]) -> Result<Interval> {
    check::finite_at_least("paper_normal_interval(values)", values, 2)?;
    let sorted = check::sorted(values);
    let estimate = raw_mean(&sorted);
    let half = 1.96 * std_population(&sorted)? / (sorted.len() as f64).sqrt();
    Ok(Interval {
        estimate,
        low: estimate - half,
        high: estimate + half,
        level: 0.95,
        resamples: None,
        seed: None,
        method: IntervalMethod::NormalPopulationStd,
    })
}

/// Student-t interval of the mean, as `scipy.stats.t.interval(level, df=n−1, loc=mean,
/// scale=sem)`: `mean ± t_{(1+level)/2, n−1} · s / √n` with `s` the sample standard deviation
/// (`ddof = 1`).
///
/// Values are sorted before summing, so the result depends only on the multiset. Constant
/// data give the zero-width interval `[mean, mean]` (scipy returns NaN there).
///
/// Errors: fewer than 2 values ([`StatsError::Empty`] / [`StatsError::TooFew`]: t with 0
/// degrees of freedom is undefined), [`StatsError::NonFinite`], [`StatsError::OutOfRange`]
/// for a level outside `(0, 1)`.
pub fn t_interval(values: &[f64], level: f64) -> Result<Interval> {
    const WHAT: &str = "t_interval(values)";
    check::finite_at_least(WHAT, values, 2)?;
    check::level(WHAT, level)?;
    let sorted = check::sorted(values);
    let n = sorted.len() as f64;
    let estimate = raw_mean(&sorted);
    let sem = std_sample(&sorted)? / n.sqrt();
    let t = student_t_quantile(WHAT, n - 1.0, 0.5 + level / 2.0)?;
    Ok(Interval {
        estimate,
        low: estimate - t * sem,
        high: estimate + t * sem,
        level,
        resamples: None,
        seed: None,
        method: IntervalMethod::StudentT,
    })
}

/// Upper quantile `p ≥ 0.5` of Student's t with `df` degrees of freedom. statrs' inverse
/// (via the inverse regularized incomplete beta) is polished with Newton steps on its
/// accurate CDF, so the quantile is good to ~1e-14 relative.
pub(crate) fn student_t_quantile(what: &'static str, df: f64, p: f64) -> Result<f64> {
    let dist = StudentsT::new(0.0, 1.0, df).map_err(|_| StatsError::OutOfRange {
        what,
        field: "degrees of freedom",
        value: df,
        expected: "a positive number",
    })?;
    let mut t = dist.inverse_cdf(p);
    for _ in 0..3 {
        let pdf = statrs::distribution::Continuous::pdf(&dist, t);
        if pdf.is_nan() || pdf <= 0.0 {
            break;
        }
        // Tail probabilities, not CDFs, so the step keeps full relative precision.
        let step = (dist.sf(t) - (1.0 - p)) / pdf;
        t += step;
    }
    Ok(t)
}

/// Shared checks of the bootstrap entry points.
pub(crate) fn validate_bootstrap(
    what: &'static str,
    values: &[f64],
    cfg: &BootstrapConfig,
) -> Result<()> {
    check::finite_at_least(what, values, 2)?;
    check::level(what, cfg.level)?;
    check::resamples(what, cfg.resamples)
}

/// Mean of one resample of `sorted` (size `n`, uniform with replacement).
pub(crate) fn resample_mean(sorted: &[f64], rng: &mut ChaCha8Rng) -> f64 {
    let n = sorted.len();
    let sum: f64 = (0..n).map(|_| sorted[rng.gen_range(0..n)]).sum();
    sum / n as f64
}

/// `[quantile(α), quantile(1 − α)]` of a bootstrap distribution, `α = (1 − level)/2`.
pub(crate) fn percentile_interval(
    estimate: f64,
    mut distribution: Vec<f64>,
    cfg: &BootstrapConfig,
    method: IntervalMethod,
) -> Interval {
    distribution.sort_by(f64::total_cmp);
    let alpha = (1.0 - cfg.level) / 2.0;
    Interval {
        estimate,
        low: quantile_sorted(&distribution, alpha),
        high: quantile_sorted(&distribution, 1.0 - alpha),
        level: cfg.level,
        resamples: Some(cfg.resamples),
        seed: Some(cfg.seed),
        method,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_data_give_a_point() {
        let cfg = BootstrapConfig {
            resamples: 50,
            ..BootstrapConfig::default()
        };
        let ci = bootstrap_mean_ci(&[2.5; 4], &cfg).unwrap();
        assert_eq!((ci.low, ci.estimate, ci.high), (2.5, 2.5, 2.5));
        let ci = t_interval(&[2.5; 4], 0.95).unwrap();
        assert_eq!((ci.low, ci.high), (2.5, 2.5));
    }

    #[test]
    fn n_below_two_is_an_error() {
        let cfg = BootstrapConfig::default();
        assert!(matches!(
            bootstrap_mean_ci(&[], &cfg),
            Err(StatsError::Empty { needed: 2, .. })
        ));
        assert!(matches!(
            bootstrap_mean_ci(&[1.0], &cfg),
            Err(StatsError::TooFew {
                needed: 2,
                got: 1,
                ..
            })
        ));
        assert!(matches!(
            t_interval(&[1.0], 0.95),
            Err(StatsError::TooFew { .. })
        ));
        assert!(matches!(
            paper_normal_interval(&[1.0]),
            Err(StatsError::TooFew { .. })
        ));
    }

    #[test]
    fn bad_settings_are_named() {
        let err = bootstrap_mean_ci(
            &[1.0, 2.0],
            &BootstrapConfig {
                level: 1.0,
                ..BootstrapConfig::default()
            },
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "bootstrap_mean_ci(values): level is 1, expected a number strictly between 0 and 1"
        );
        let err = bootstrap_mean_ci(
            &[1.0, 2.0],
            &BootstrapConfig {
                resamples: 0,
                ..BootstrapConfig::default()
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("resamples is 0"), "{err}");
    }

    #[test]
    fn t_quantile_known_values() {
        // scipy.stats.t.ppf(0.975, 4) and (0.975, 20).
        let t4 = student_t_quantile("test", 4.0, 0.975).unwrap();
        assert!((t4 - 2.776_445_105_197_793_4).abs() < 1e-12, "{t4}");
        let t20 = student_t_quantile("test", 20.0, 0.975).unwrap();
        assert!((t20 - 2.085_963_447_265_864).abs() < 1e-12, "{t20}");
    }

    #[test]
    fn paper_normal_interval_formula() {
        // Values 1, 2, 3: mean 2, std_pop = sqrt(2/3).
        let ci = paper_normal_interval(&[3.0, 1.0, 2.0]).unwrap();
        let half = 1.96 * (2.0f64 / 3.0).sqrt() / 3f64.sqrt();
        assert!((ci.low - (2.0 - half)).abs() < 1e-15);
        assert!((ci.high - (2.0 + half)).abs() < 1e-15);
        assert_eq!(ci.method, IntervalMethod::NormalPopulationStd);
    }
}

/// Wilson score interval of a binomial proportion, `k` successes in `n` trials
/// (statsmodels' `proportion_confint(k, n, alpha=1-level, method="wilson")`):
/// `(p̂ + z²/2n ± z·√(p̂(1−p̂)/n + z²/4n²)) / (1 + z²/n)` with `z = Φ⁻¹((1+level)/2)`.
///
/// Errors: `n = 0` ([`StatsError::Empty`]), `k > n` or a level outside `(0, 1)`
/// ([`StatsError::OutOfRange`]).
pub fn wilson_interval(k: u64, n: u64, level: f64) -> Result<Interval> {
    const WHAT: &str = "wilson_interval";
    check::level(WHAT, level)?;
    if n == 0 {
        return Err(StatsError::Empty {
            what: WHAT,
            needed: 1,
        });
    }
    if k > n {
        return Err(StatsError::OutOfRange {
            what: WHAT,
            field: "successes",
            value: k as f64,
            expected: "at most the number of trials",
        });
    }
    let (kf, nf) = (k as f64, n as f64);
    let p = kf / nf;
    let z = crate::correlation::standard_normal_quantile(0.5 + level / 2.0);
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * nf)) / (1.0 + z2 / nf);
    let half = z * (p * (1.0 - p) / nf + z2 / (4.0 * nf * nf)).sqrt() / (1.0 + z2 / nf);
    Ok(Interval {
        estimate: p,
        low: (centre - half).max(0.0),
        high: (centre + half).min(1.0),
        level,
        resamples: None,
        seed: None,
        method: IntervalMethod::Wilson,
    })
}

#[cfg(test)]
mod wilson_tests {
    use super::*;

    /// Goldens computed outside this crate, with Python's standard library (no scipy or
    /// statsmodels on the machine this was written on):
    ///
    /// ```python
    /// from statistics import NormalDist; import math
    /// z = NormalDist().inv_cdf(0.975)
    /// p = k / n; c = (p + z*z/(2*n)) / (1 + z*z/n)
    /// h = z * math.sqrt(p*(1-p)/n + z*z/(4*n*n)) / (1 + z*z/n)
    /// print(max(0, c - h), min(1, c + h))
    /// ```
    #[test]
    fn wilson_matches_an_outside_computation() {
        for (k, n, lo, hi) in [
            (
                7u64,
                10u64,
                0.396_778_147_461_145_37,
                0.892_208_732_593_698_9,
            ),
            (0, 20, 0.0, 0.161_125_158_052_819_3),
            (50, 50, 0.928_652_400_866_641_4, 1.0),
            (17, 34, 0.340_693_256_456_825, 0.659_306_743_543_175),
        ] {
            let i = wilson_interval(k, n, 0.95).unwrap();
            assert!((i.low - lo).abs() < 1e-9, "{k}/{n}: {} vs {lo}", i.low);
            assert!((i.high - hi).abs() < 1e-9, "{k}/{n}: {} vs {hi}", i.high);
        }
        assert!(wilson_interval(1, 0, 0.95).is_err());
        assert!(wilson_interval(3, 2, 0.95).is_err());
    }
}
