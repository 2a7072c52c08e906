//! Comparing two conditions (e.g. risk-seeking vs risk-averse finetunes): the difference of
//! means with a bootstrap interval, and a two-sided permutation test.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::check;
use crate::descriptive::raw_mean;
use crate::error::Result;
use crate::interval::{
    percentile_interval, resample_mean, validate_bootstrap, BootstrapConfig, Interval,
    IntervalMethod,
};

/// The bootstrap distribution of `mean(a) − mean(b)`, in the order drawn: each of the
/// `cfg.resamples` entries draws `|a|` values with replacement from `a`, then `|b|` from `b`
/// (independently, from one RNG stream), and subtracts their means. Both inputs are sorted
/// first, so the result depends only on the two multisets, the seed and the resample count.
/// `cfg.level` is validated but not used.
///
/// Errors: as [`bootstrap_difference_ci`].
pub fn bootstrap_differences(a: &[f64], b: &[f64], cfg: &BootstrapConfig) -> Result<Vec<f64>> {
    validate_bootstrap("bootstrap_difference_ci(a)", a, cfg)?;
    validate_bootstrap("bootstrap_difference_ci(b)", b, cfg)?;
    let (a, b) = (check::sorted(a), check::sorted(b));
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    Ok((0..cfg.resamples)
        .map(|_| {
            let ma = resample_mean(&a, &mut rng);
            ma - resample_mean(&b, &mut rng)
        })
        .collect())
}

/// Percentile bootstrap interval of `mean(a) − mean(b)`, resampling each condition
/// independently (scipy `bootstrap((a, b), ..., paired=False, method='percentile')`).
///
/// The interval is `[quantile(α), quantile(1 − α)]` of [`bootstrap_differences`],
/// `α = (1 − level)/2`, with [`crate::quantile`]'s linear rule; the estimate is
/// `mean(a) − mean(b)`. Inputs are sorted first, so the same multisets and seed give a
/// bit-identical result.
///
/// Errors: fewer than 2 values in either condition ([`crate::StatsError::Empty`] /
/// [`crate::StatsError::TooFew`], naming `a` or `b`), [`crate::StatsError::NonFinite`],
/// [`crate::StatsError::OutOfRange`] for the level or zero resamples.
pub fn bootstrap_difference_ci(a: &[f64], b: &[f64], cfg: &BootstrapConfig) -> Result<Interval> {
    let distribution = bootstrap_differences(a, b, cfg)?;
    let (a, b) = (check::sorted(a), check::sorted(b));
    Ok(percentile_interval(
        raw_mean(&a) - raw_mean(&b),
        distribution,
        cfg,
        IntervalMethod::PercentileBootstrap,
    ))
}

/// Settings of a permutation test. `Default`: 9 999 permutations (scipy's default), seed 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PermutationConfig {
    /// Budget of relabelings. When the number of distinct relabelings `C(|a|+|b|, |a|)` is at
    /// most this, all of them are enumerated (exact test); otherwise this many random ones
    /// are drawn.
    pub resamples: usize,
    /// Seed of the `ChaCha8Rng` for the Monte-Carlo case (unused when exact).
    pub seed: u64,
}

impl Default for PermutationConfig {
    fn default() -> Self {
        Self {
            resamples: 9_999,
            seed: 0,
        }
    }
}

/// Result of [`permutation_test`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PermutationTest {
    /// Observed statistic `mean(a) − mean(b)`.
    pub statistic: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// Whether every relabeling was enumerated.
    pub exact: bool,
    /// Size of the null distribution: all `C(|a|+|b|, |a|)` relabelings when exact, else
    /// the number of random permutations drawn.
    pub permutations: usize,
}

/// Two-sided permutation test of `mean(a) − mean(b)`, with the semantics of
/// `scipy.stats.permutation_test((a, b), statistic, permutation_type='independent',
/// alternative='two-sided', n_resamples=cfg.resamples)`.
///
/// Definition: pool the values; the null distribution `T` holds the statistic of every way
/// to relabel `|a|` pooled values as `a` and the rest as `b` — all `N = C(|a|+|b|, |a|)` of
/// them (the observed labeling included) when `N ≤ cfg.resamples`, otherwise
/// `B = cfg.resamples` uniformly random permutations. With `t` the observed statistic and
/// the tie tolerance `γ = 100·ε·|t|` (`ε` = f64 machine epsilon, as scipy):
///
/// * exact: `p_less = #{T ≤ t + γ} / N`, `p_greater = #{T ≥ t − γ} / N`;
/// * Monte Carlo: `p_less = (#{T ≤ t + γ} + 1) / (B + 1)`, likewise `p_greater`;
/// * `p = min(1, 2·min(p_less, p_greater))`.
///
/// In the exact case the p-value equals scipy's. Inputs are sorted first (`a` then `b`
/// pooled), so the Monte-Carlo result depends only on the two multisets and the seed.
///
/// Errors: an empty condition ([`crate::StatsError::Empty`], naming `a` or `b`),
/// [`crate::StatsError::NonFinite`], [`crate::StatsError::OutOfRange`] for zero resamples.
pub fn permutation_test(a: &[f64], b: &[f64], cfg: &PermutationConfig) -> Result<PermutationTest> {
    check::finite_at_least("permutation_test(a)", a, 1)?;
    check::finite_at_least("permutation_test(b)", b, 1)?;
    check::resamples("permutation_test", cfg.resamples)?;
    let (na, n) = (a.len(), a.len() + b.len());
    let mut pooled = check::sorted(a);
    pooled.extend(check::sorted(b));
    let statistic = raw_mean(&pooled[..na]) - raw_mean(&pooled[na..]);
    let gamma = (100.0 * f64::EPSILON * statistic).abs();
    let mut less = 0usize;
    let mut greater = 0usize;
    let mut tally = |t: f64| {
        less += usize::from(t <= statistic + gamma);
        greater += usize::from(t >= statistic - gamma);
    };

    let relabelings = binomial_capped(n, na, cfg.resamples);
    let (exact, permutations, adjustment) = match relabelings {
        Some(total) => {
            for_each_split(&pooled, na, |x, y| tally(raw_mean(x) - raw_mean(y)));
            (true, total, 0)
        }
        None => {
            let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
            let mut work = pooled.clone();
            for _ in 0..cfg.resamples {
                work.copy_from_slice(&pooled);
                work.shuffle(&mut rng);
                tally(raw_mean(&work[..na]) - raw_mean(&work[na..]));
            }
            (false, cfg.resamples, 1)
        }
    };
    let denominator = (permutations + adjustment) as f64;
    let p_less = (less + adjustment) as f64 / denominator;
    let p_greater = (greater + adjustment) as f64 / denominator;
    Ok(PermutationTest {
        statistic,
        p_value: (2.0 * p_less.min(p_greater)).clamp(0.0, 1.0),
        exact,
        permutations,
    })
}

/// A condition difference with both its bootstrap interval and its permutation p-value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    /// `mean(a) − mean(b)` with its percentile bootstrap interval.
    pub difference: Interval,
    /// Two-sided permutation test of the same difference.
    pub permutation: PermutationTest,
}

/// [`bootstrap_difference_ci`] and [`permutation_test`] together; the permutation test uses
/// `cfg.resamples` as its budget and `cfg.seed` as its seed.
///
/// Errors: as [`bootstrap_difference_ci`].
pub fn compare_conditions(a: &[f64], b: &[f64], cfg: &BootstrapConfig) -> Result<Comparison> {
    let difference = bootstrap_difference_ci(a, b, cfg)?;
    let permutation = permutation_test(
        a,
        b,
        &PermutationConfig {
            resamples: cfg.resamples,
            seed: cfg.seed,
        },
    )?;
    Ok(Comparison {
        difference,
        permutation,
    })
}

/// `C(n, k)` when it is at most `cap`, else `None` (never overflows).
pub(crate) fn binomial_capped(n: usize, k: usize, cap: usize) -> Option<usize> {
    let k = k.min(n - k);
    let mut c: u128 = 1;
    for i in 0..k {
        // c · (n − i) / (i + 1) is exact: c = C(n, i) here, and C(n, i)·(n−i) = C(n, i+1)·(i+1).
        c = c * (n - i) as u128 / (i + 1) as u128;
        if c > cap as u128 {
            return None;
        }
    }
    // C(n, i) grows with i up to k ≤ n/2, so the running value bounds the final one.
    usize::try_from(c).ok().filter(|&c| c <= cap)
}

/// Calls `f(x, y)` for every split of `pooled` into `k` chosen values `x` (in index order)
/// and the rest `y` (in index order), choosing index sets in lexicographic order.
fn for_each_split(pooled: &[f64], k: usize, mut f: impl FnMut(&[f64], &[f64])) {
    let n = pooled.len();
    let mut idx: Vec<usize> = (0..k).collect();
    let mut x = Vec::with_capacity(k);
    let mut y = Vec::with_capacity(n - k);
    loop {
        x.clear();
        y.clear();
        let mut next = 0;
        for (i, &v) in pooled.iter().enumerate() {
            if next < k && idx[next] == i {
                x.push(v);
                next += 1;
            } else {
                y.push(v);
            }
        }
        f(&x, &y);
        // Advance to the next k-combination of 0..n.
        let Some(pos) = (0..k).rev().find(|&i| idx[i] < n - k + i) else {
            return;
        };
        idx[pos] += 1;
        for j in pos + 1..k {
            idx[j] = idx[j - 1] + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StatsError;

    #[test]
    fn binomial_cases() {
        assert_eq!(binomial_capped(10, 5, 1000), Some(252));
        assert_eq!(binomial_capped(10, 5, 252), Some(252));
        assert_eq!(binomial_capped(10, 5, 251), None);
        assert_eq!(binomial_capped(3, 0, 5), Some(1));
        assert_eq!(binomial_capped(3, 3, 5), Some(1));
        assert_eq!(binomial_capped(200, 100, usize::MAX), None);
    }

    #[test]
    fn splits_are_all_distinct_and_counted() {
        let pooled = [1.0, 2.0, 4.0, 8.0, 16.0];
        let mut sums = Vec::new();
        for_each_split(&pooled, 2, |x, y| {
            assert_eq!(x.len(), 2);
            assert_eq!(y.len(), 3);
            sums.push(x.iter().sum::<f64>());
        });
        assert_eq!(sums.len(), 10);
        sums.sort_by(f64::total_cmp);
        sums.dedup();
        assert_eq!(sums.len(), 10, "powers of two make every pair sum distinct");
    }

    #[test]
    fn exact_small_case_by_hand() {
        // a = {3, 4}, b = {1, 2}: t = 2. Of the 6 splits, only {3,4} vs {1,2} has T ≥ 2 and
        // only {1,2} vs {3,4} has T ≤ −2; p_greater = 1/6, p_less = 6/6 → p = 2/6.
        let r = permutation_test(&[4.0, 3.0], &[1.0, 2.0], &PermutationConfig::default()).unwrap();
        assert!(r.exact);
        assert_eq!(r.permutations, 6);
        assert_eq!(r.statistic, 2.0);
        assert_eq!(r.p_value, 2.0 / 6.0);
    }

    #[test]
    fn identical_conditions_give_p_one() {
        let r = permutation_test(
            &[1.0, 2.0, 3.0],
            &[3.0, 2.0, 1.0],
            &PermutationConfig::default(),
        )
        .unwrap();
        assert_eq!(r.statistic, 0.0);
        assert_eq!(r.p_value, 1.0);
    }

    #[test]
    fn monte_carlo_when_over_budget() {
        let a: Vec<f64> = (0..12).map(|i| i as f64).collect();
        let b: Vec<f64> = (0..12).map(|i| i as f64 + 30.0).collect();
        let cfg = PermutationConfig {
            resamples: 999,
            seed: 3,
        };
        let r = permutation_test(&a, &b, &cfg).unwrap();
        assert!(!r.exact);
        assert_eq!(r.permutations, 999);
        // Completely separated groups: no random relabeling is as extreme, so p = 2/(B+1).
        assert_eq!(r.p_value, 2.0 / 1000.0);
    }

    #[test]
    fn empty_condition_is_named() {
        assert_eq!(
            permutation_test(&[1.0], &[], &PermutationConfig::default()),
            Err(StatsError::Empty {
                what: "permutation_test(b)",
                needed: 1
            })
        );
        assert!(matches!(
            bootstrap_difference_ci(&[1.0], &[1.0, 2.0], &BootstrapConfig::default()),
            Err(StatsError::TooFew {
                what: "bootstrap_difference_ci(a)",
                ..
            })
        ));
    }
}
