//! Paired comparisons: two measurements of the same units (two models asked the same prompts,
//! scored on the same probe items). Pairing removes the between-unit variance that an
//! unpaired comparison of the same numbers would carry.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::check;
use crate::compare::{PermutationConfig, PermutationTest};
use crate::error::Result;
use crate::interval::{bootstrap_mean_ci, BootstrapConfig, Interval};

/// The result of [`compare_paired`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairedComparison {
    /// Mean of `a[i] − b[i]` with the percentile-bootstrap interval of that mean.
    pub difference: Interval,
    /// Two-sided sign-flip permutation test of the mean difference.
    pub sign_flip: PermutationTest,
}

/// Two-sided sign-flip permutation test of `mean(diffs) ≠ 0`, as scipy's
/// `permutation_test(..., permutation_type="samples")` on paired samples: under the null each
/// difference's sign is exchangeable. The p-value is `2 · min(P(T ≤ t), P(T ≥ t))`, capped at
/// 1, counting the observed arrangement. Exact (all `2ⁿ` sign vectors) when `2ⁿ ≤
/// cfg.resamples`; otherwise `cfg.resamples` random sign vectors drawn with a `ChaCha8Rng`
/// seeded by `cfg.seed`, and the observed statistic added to both tails.
///
/// Errors: no differences, non-finite values, zero resamples.
pub fn sign_flip_test(diffs: &[f64], cfg: &PermutationConfig) -> Result<PermutationTest> {
    check::finite_at_least("sign_flip_test(diffs)", diffs, 1)?;
    check::resamples("sign_flip_test", cfg.resamples)?;
    let d = check::sorted(diffs);
    let n = d.len();
    let mean_of = |signs: &dyn Fn(usize) -> bool| -> f64 {
        d.iter()
            .enumerate()
            .map(|(i, x)| if signs(i) { -x } else { *x })
            .sum::<f64>()
            / n as f64
    };
    let statistic = mean_of(&|_| false);
    let gamma = (100.0 * f64::EPSILON * statistic).abs().max(1e-14);
    let (mut less, mut greater) = (0usize, 0usize);
    let mut tally = |t: f64| {
        less += usize::from(t <= statistic + gamma);
        greater += usize::from(t >= statistic - gamma);
    };
    let exact = n < usize::BITS as usize && (1usize << n) <= cfg.resamples;
    let (permutations, adjustment) = if exact {
        for mask in 0..(1usize << n) {
            tally(mean_of(&|i| mask >> i & 1 == 1));
        }
        (1usize << n, 0)
    } else {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let mut flips = vec![false; n];
        for _ in 0..cfg.resamples {
            for f in flips.iter_mut() {
                *f = rng.gen::<bool>();
            }
            tally(mean_of(&|i| flips[i]));
        }
        (cfg.resamples, 1)
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

/// Paired comparison of `a` and `b` (same length, unit `i` measured in both): the bootstrap
/// interval of the mean difference and a sign-flip test with `cfg.resamples` permutations.
///
/// Errors: different lengths, fewer than 2 pairs, non-finite values.
pub fn compare_paired(a: &[f64], b: &[f64], cfg: &BootstrapConfig) -> Result<PairedComparison> {
    check::same_length("compare_paired", a, b)?;
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let difference = bootstrap_mean_ci(&d, cfg)?;
    let sign_flip = sign_flip_test(
        &d,
        &PermutationConfig {
            resamples: cfg.resamples,
            seed: cfg.seed,
        },
    )?;
    Ok(PairedComparison {
        difference,
        sign_flip,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const X: [f64; 10] = [0.61, 0.72, 0.55, 0.80, 0.43, 0.66, 0.70, 0.58, 0.49, 0.75];
    const Y: [f64; 10] = [0.50, 0.69, 0.57, 0.62, 0.40, 0.52, 0.71, 0.45, 0.47, 0.60];

    /// scipy 1.x: `permutation_test((X, Y), mean(a - b), permutation_type="samples",
    /// n_resamples=inf)` → statistic 0.076, p 0.015625; `bootstrap((X - Y,), mean,
    /// method="percentile", n_resamples=10000, random_state=0)` → [0.033, 0.120] (our RNG
    /// differs from numpy's, so the interval is compared loosely).
    #[test]
    fn matches_scipy_on_a_paired_sample() {
        let c = compare_paired(&X, &Y, &BootstrapConfig::default()).unwrap();
        assert!(c.sign_flip.exact);
        assert_eq!(c.sign_flip.permutations, 1024);
        assert!((c.sign_flip.statistic - 0.076).abs() < 1e-12);
        assert!(
            (c.sign_flip.p_value - 0.015625).abs() < 1e-12,
            "{:?}",
            c.sign_flip
        );
        assert!(
            (c.difference.low - 0.033).abs() < 0.01,
            "{:?}",
            c.difference
        );
        assert!(
            (c.difference.high - 0.120).abs() < 0.01,
            "{:?}",
            c.difference
        );
    }

    #[test]
    fn sampled_test_approaches_the_exact_one_and_is_seeded() {
        let d: Vec<f64> = X.iter().zip(&Y).map(|(x, y)| x - y).collect();
        let cfg = PermutationConfig {
            resamples: 200_000,
            seed: 3,
        };
        // 2^10 > 1000: sampled.
        let small = PermutationConfig {
            resamples: 1000,
            seed: 3,
        };
        let exact = sign_flip_test(&d, &cfg).unwrap();
        let sampled = sign_flip_test(&d, &small).unwrap();
        assert!(exact.exact && !sampled.exact);
        assert!(
            (sampled.p_value - exact.p_value).abs() < 0.02,
            "{sampled:?}"
        );
        assert_eq!(sampled, sign_flip_test(&d, &small).unwrap());
    }

    #[test]
    fn symmetric_and_null_cases() {
        let d = [0.1, -0.1, 0.2, -0.2];
        let t = sign_flip_test(&d, &PermutationConfig::default()).unwrap();
        assert_eq!(t.p_value, 1.0);
        let all_same = [0.3; 4];
        // Only the all-positive arrangement reaches the observed mean: p = 2 · 1/16.
        let t = sign_flip_test(&all_same, &PermutationConfig::default()).unwrap();
        assert!((t.p_value - 0.125).abs() < 1e-12, "{t:?}");
        assert!(compare_paired(&[1.0, 2.0], &[1.0], &BootstrapConfig::default()).is_err());
    }
}
