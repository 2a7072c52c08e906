//! Property tests: intervals contain their estimate, widen with the level, ignore input
//! order, and depend on the seed exactly as documented.

use proptest::prelude::*;
use selfaware_stats::*;

/// Resamples per property case: enough to exercise the code, small enough for many cases.
const RESAMPLES: usize = 300;

fn cfg(level: f64, seed: u64) -> BootstrapConfig {
    BootstrapConfig {
        resamples: RESAMPLES,
        level,
        seed,
    }
}

fn values(min_len: usize, max_len: usize) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(-1000.0..1000.0f64, min_len..=max_len)
}

/// Values with at least two distinct entries (so resamples can differ).
fn varied(min_len: usize, max_len: usize) -> impl Strategy<Value = Vec<f64>> {
    values(min_len, max_len).prop_filter("needs two distinct values", |v| {
        v.iter().any(|&x| x != v[0])
    })
}

fn groups() -> impl Strategy<Value = Vec<Vec<f64>>> {
    prop::collection::vec(values(1, 6), 2..=6)
}

/// Rounding slack for comparing an estimate with resample statistics summed in another
/// order.
fn slack(values: &[f64]) -> f64 {
    1e-9 * (1.0 + values.iter().fold(0.0f64, |m, v| m.max(v.abs())))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn bootstrap_interval_contains_estimate(v in values(2, 30), level in 0.5..0.99f64, seed: u64) {
        let ci = bootstrap_mean_ci(&v, &cfg(level, seed)).unwrap();
        let s = slack(&v);
        prop_assert!(ci.low - s <= ci.estimate && ci.estimate <= ci.high + s, "{ci:?}");
        prop_assert!(ci.low <= ci.high);
    }

    #[test]
    fn hierarchical_interval_contains_estimate(g in groups(), level in 0.5..0.99f64, seed: u64) {
        let ci = hierarchical_bootstrap_ci(&g, &cfg(level, seed)).unwrap();
        let s = slack(&g.concat());
        prop_assert!(ci.low - s <= ci.estimate && ci.estimate <= ci.high + s, "{ci:?}");
    }

    #[test]
    fn difference_interval_contains_estimate(a in values(2, 12), b in values(2, 12), level in 0.5..0.99f64, seed: u64) {
        let ci = bootstrap_difference_ci(&a, &b, &cfg(level, seed)).unwrap();
        let s = slack(&a) + slack(&b);
        prop_assert!(ci.low - s <= ci.estimate && ci.estimate <= ci.high + s, "{ci:?}");
    }

    #[test]
    fn analytic_intervals_contain_estimate(v in values(2, 30), level in 0.01..0.999f64) {
        let t = t_interval(&v, level).unwrap();
        prop_assert!(t.low <= t.estimate && t.estimate <= t.high, "{t:?}");
        let n = paper_normal_interval(&v).unwrap();
        prop_assert!(n.low <= n.estimate && n.estimate <= n.high, "{n:?}");
    }

    #[test]
    fn fisher_interval_contains_r(r in -1.0..=1.0f64, n in 4usize..500, level in 0.01..0.999f64) {
        let ci = fisher_z_interval(r, n, level).unwrap();
        prop_assert!(ci.low <= r && r <= ci.high, "{ci:?}");
        prop_assert!(-1.0 <= ci.low && ci.high <= 1.0);
    }

    #[test]
    fn bootstrap_widens_with_level(v in values(2, 30), l1 in 0.05..0.98f64, dl in 0.001..0.5f64, seed: u64) {
        let l2 = (l1 + dl).min(0.999);
        let narrow = bootstrap_mean_ci(&v, &cfg(l1, seed)).unwrap();
        let wide = bootstrap_mean_ci(&v, &cfg(l2, seed)).unwrap();
        let s = 1e-12 * (1.0 + narrow.width().abs());
        prop_assert!(wide.low <= narrow.low + s && wide.high + s >= narrow.high, "{narrow:?} {wide:?}");
        let narrow = hierarchical_bootstrap_ci(&[v.clone(), v.iter().map(|x| x / 2.0).collect()], &cfg(l1, seed)).unwrap();
        let wide = hierarchical_bootstrap_ci(&[v.clone(), v.iter().map(|x| x / 2.0).collect()], &cfg(l2, seed)).unwrap();
        prop_assert!(wide.low <= narrow.low + s && wide.high + s >= narrow.high, "{narrow:?} {wide:?}");
    }

    #[test]
    fn analytic_intervals_widen_with_level(v in varied(2, 30), l1 in 0.05..0.98f64, dl in 0.001..0.5f64, r in -0.999..0.999f64, n in 4usize..200) {
        let l2 = (l1 + dl).min(0.999);
        let (a, b) = (t_interval(&v, l1).unwrap(), t_interval(&v, l2).unwrap());
        prop_assert!(b.low < a.low && b.high > a.high, "{a:?} {b:?}");
        let (a, b) = (fisher_z_interval(r, n, l1).unwrap(), fisher_z_interval(r, n, l2).unwrap());
        prop_assert!(b.low <= a.low && b.high >= a.high, "{a:?} {b:?}");
    }

    #[test]
    fn results_ignore_input_order(
        (v, shuffled) in values(2, 25).prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle())),
        (b, b_shuffled) in values(2, 25).prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle())),
        seed: u64,
    ) {
        let c = cfg(0.95, seed);
        prop_assert_eq!(bootstrap_mean_ci(&v, &c).unwrap(), bootstrap_mean_ci(&shuffled, &c).unwrap());
        prop_assert_eq!(t_interval(&v, 0.9).unwrap(), t_interval(&shuffled, 0.9).unwrap());
        prop_assert_eq!(paper_normal_interval(&v).unwrap(), paper_normal_interval(&shuffled).unwrap());
        prop_assert_eq!(
            bootstrap_difference_ci(&v, &b, &c).unwrap(),
            bootstrap_difference_ci(&shuffled, &b_shuffled, &c).unwrap()
        );
        // Budget below C(|a|+|b|, |a|) for most sizes here, so this covers the Monte-Carlo path.
        let p = PermutationConfig { resamples: 50, seed };
        prop_assert_eq!(
            permutation_test(&v, &b, &p).unwrap(),
            permutation_test(&shuffled, &b_shuffled, &p).unwrap()
        );
    }

    #[test]
    fn hierarchical_ignores_group_and_value_order(
        (g, shuffled) in groups().prop_flat_map(|g| {
            let inner: Vec<_> = g.iter().cloned().map(|v| Just(v).prop_shuffle()).collect();
            (Just(g), inner.prop_shuffle())
        }),
        seed: u64,
    ) {
        let c = cfg(0.9, seed);
        prop_assert_eq!(
            hierarchical_bootstrap_ci(&g, &c).unwrap(),
            hierarchical_bootstrap_ci(&shuffled, &c).unwrap()
        );
    }

    #[test]
    fn same_seed_same_result(v in values(2, 20), g in groups(), seed: u64) {
        let c = cfg(0.95, seed);
        prop_assert_eq!(bootstrap_means(&v, &c).unwrap(), bootstrap_means(&v, &c).unwrap());
        prop_assert_eq!(
            hierarchical_bootstrap_means(&g, &c).unwrap(),
            hierarchical_bootstrap_means(&g, &c).unwrap()
        );
        prop_assert_eq!(bootstrap_differences(&v, &v, &c).unwrap(), bootstrap_differences(&v, &v, &c).unwrap());
    }

    #[test]
    fn different_seed_different_resamples(v in varied(2, 20), seed in 0..u64::MAX) {
        // With two distinct values, 300 resample means agree across two independent streams
        // with probability below 0.625^300.
        let a = bootstrap_means(&v, &cfg(0.95, seed)).unwrap();
        let b = bootstrap_means(&v, &cfg(0.95, seed + 1)).unwrap();
        prop_assert_ne!(a, b);
        let g = vec![v.clone(), v.clone()];
        let a = hierarchical_bootstrap_means(&g, &cfg(0.95, seed)).unwrap();
        let b = hierarchical_bootstrap_means(&g, &cfg(0.95, seed + 1)).unwrap();
        prop_assert_ne!(a, b);
        let a = bootstrap_differences(&v, &v, &cfg(0.95, seed)).unwrap();
        let b = bootstrap_differences(&v, &v, &cfg(0.95, seed + 1)).unwrap();
        prop_assert_ne!(a, b);
    }

    #[test]
    fn exact_permutation_p_is_symmetric_and_valid(a in values(1, 6), b in values(1, 6)) {
        let c = PermutationConfig::default();
        let ab = permutation_test(&a, &b, &c).unwrap();
        let ba = permutation_test(&b, &a, &c).unwrap();
        prop_assert!(ab.exact && ba.exact);
        prop_assert!(ab.p_value > 0.0 && ab.p_value <= 1.0);
        prop_assert_eq!(ab.p_value, ba.p_value);
        // The observed labeling is in the null set, so p ≥ 2/N unless clipped to 1.
        prop_assert!(ab.p_value >= (2.0 / ab.permutations as f64).min(1.0) - 1e-15);
    }

    #[test]
    fn quantiles_are_monotone_and_bounded(v in values(1, 30), q1 in 0.0..=1.0f64, q2 in 0.0..=1.0f64) {
        let (lo, hi) = if q1 <= q2 { (q1, q2) } else { (q2, q1) };
        let (a, b) = (quantile(&v, lo).unwrap(), quantile(&v, hi).unwrap());
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        prop_assert!(min <= a && a <= b && b <= max, "{a} {b}");
        prop_assert_eq!(quantile(&v, 0.0).unwrap(), min);
        prop_assert_eq!(quantile(&v, 1.0).unwrap(), max);
    }

    #[test]
    fn pearson_is_bounded_and_scale_free(
        xy in prop::collection::vec((-100.0..100.0f64, -100.0..100.0f64), 3..40),
        scale in 0.01..100.0f64,
        shift in -50.0..50.0f64,
    ) {
        let (x, y): (Vec<f64>, Vec<f64>) = xy.into_iter().unzip();
        prop_assume!(std_population(&x).unwrap() > 1e-6 && std_population(&y).unwrap() > 1e-6);
        let p = pearson(&x, &y).unwrap();
        prop_assert!((-1.0..=1.0).contains(&p.r));
        prop_assert!((0.0..=1.0).contains(&p.p_value));
        let x2: Vec<f64> = x.iter().map(|v| v * scale + shift).collect();
        let q = pearson(&x2, &y).unwrap();
        prop_assert!((p.r - q.r).abs() < 1e-9, "{} {}", p.r, q.r);
        let neg: Vec<f64> = y.iter().map(|v| -v).collect();
        prop_assert!((pearson(&x, &neg).unwrap().r + p.r).abs() < 1e-12);
    }
}
