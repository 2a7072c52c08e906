//! Two-level (hierarchical) bootstrap: groups (finetuning seeds, models) each holding values
//! (paraphrases, questions).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::check;
use crate::descriptive::raw_mean;
use crate::error::{Result, StatsError};
use crate::interval::{
    percentile_interval, resample_mean, BootstrapConfig, Interval, IntervalMethod,
};

/// The hierarchical bootstrap distribution, in the order drawn.
///
/// One resample: draw `G` groups uniformly with replacement from the `G` groups; for each
/// drawn group of `mᵢ` values draw `mᵢ` values with replacement from that group and take
/// their mean; the resample's statistic is the unweighted mean of those `G` group means.
///
/// Canonical order: each group's values are sorted ascending and the groups are then sorted
/// lexicographically (by their sorted values, a shorter prefix first), so the result depends
/// only on the multiset of groups (each a multiset of values), the seed and the resample
/// count. `cfg.level` is validated but not used.
///
/// Errors: as [`hierarchical_bootstrap_ci`].
pub fn hierarchical_bootstrap_means(
    groups: &[Vec<f64>],
    cfg: &BootstrapConfig,
) -> Result<Vec<f64>> {
    let groups = canonical_groups(groups, cfg)?;
    let g = groups.len();
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    Ok((0..cfg.resamples)
        .map(|_| {
            let sum: f64 = (0..g)
                .map(|_| resample_mean(&groups[rng.gen_range(0..g)], &mut rng))
                .sum();
            sum / g as f64
        })
        .collect())
}

/// Percentile interval of the hierarchical bootstrap (see [`hierarchical_bootstrap_means`]).
///
/// Estimate: the mean of group means, `(1/G) Σᵢ mean(groupᵢ)` — every group weighs the same
/// whatever its size, as the paper weighs each paraphrase and each model equally. The
/// interval is `[quantile(α), quantile(1 − α)]` of the bootstrap distribution with
/// `α = (1 − level)/2` and [`crate::quantile`]'s linear rule.
///
/// Errors: [`StatsError::Empty`] for no groups, [`StatsError::TooFew`] for one group (the
/// outer level needs at least 2 groups to express between-group spread),
/// [`StatsError::EmptyGroup`], [`StatsError::NonFiniteInGroup`], [`StatsError::OutOfRange`]
/// for a level outside `(0, 1)` or zero resamples. A group may hold a single value.
pub fn hierarchical_bootstrap_ci(groups: &[Vec<f64>], cfg: &BootstrapConfig) -> Result<Interval> {
    let distribution = hierarchical_bootstrap_means(groups, cfg)?;
    let canonical = canonical_groups(groups, cfg)?;
    let group_means: Vec<f64> = canonical.iter().map(|g| raw_mean(g)).collect();
    Ok(percentile_interval(
        raw_mean(&group_means),
        distribution,
        cfg,
        IntervalMethod::HierarchicalPercentileBootstrap,
    ))
}

/// Validates and returns the groups in canonical order (see [`hierarchical_bootstrap_means`]).
fn canonical_groups(groups: &[Vec<f64>], cfg: &BootstrapConfig) -> Result<Vec<Vec<f64>>> {
    const WHAT: &str = "hierarchical_bootstrap_ci(groups)";
    if groups.is_empty() {
        return Err(StatsError::Empty {
            what: WHAT,
            needed: 2,
        });
    }
    if groups.len() < 2 {
        return Err(StatsError::TooFew {
            what: WHAT,
            needed: 2,
            got: groups.len(),
        });
    }
    for (group, values) in groups.iter().enumerate() {
        if values.is_empty() {
            return Err(StatsError::EmptyGroup { what: WHAT, group });
        }
        if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(StatsError::NonFiniteInGroup {
                what: WHAT,
                group,
                index,
                value,
            });
        }
    }
    check::level(WHAT, cfg.level)?;
    check::resamples(WHAT, cfg.resamples)?;
    let mut canonical: Vec<Vec<f64>> = groups.iter().map(|g| check::sorted(g)).collect();
    canonical.sort_by(|a, b| {
        a.iter()
            .zip(b)
            .map(|(x, y)| x.total_cmp(y))
            .find(|o| o.is_ne())
            .unwrap_or_else(|| a.len().cmp(&b.len()))
    });
    Ok(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(resamples: usize) -> BootstrapConfig {
        BootstrapConfig {
            resamples,
            ..BootstrapConfig::default()
        }
    }

    #[test]
    fn estimate_weighs_groups_equally() {
        // Group means 1 and 10: equal weight gives 5.5, pooling would give (1+1+1+10)/4.
        let groups = vec![vec![1.0, 1.0, 1.0], vec![10.0]];
        let ci = hierarchical_bootstrap_ci(&groups, &cfg(200)).unwrap();
        assert_eq!(ci.estimate, 5.5);
        // Every resample mean is one of 1, 5.5, 10 (groups are constant inside).
        let dist = hierarchical_bootstrap_means(&groups, &cfg(200)).unwrap();
        assert!(dist.iter().all(|&m| m == 1.0 || m == 5.5 || m == 10.0));
    }

    #[test]
    fn within_group_spread_matters() {
        // Identical group means, but values spread inside groups: the interval is not a point.
        let groups = vec![vec![0.0, 2.0], vec![2.0, 0.0], vec![1.0, 1.0]];
        let ci = hierarchical_bootstrap_ci(&groups, &cfg(2000)).unwrap();
        assert_eq!(ci.estimate, 1.0);
        assert!(ci.low < 1.0 && ci.high > 1.0, "{ci:?}");
    }

    #[test]
    fn bad_groups_are_named() {
        assert!(matches!(
            hierarchical_bootstrap_ci(&[], &cfg(10)),
            Err(StatsError::Empty { .. })
        ));
        assert!(matches!(
            hierarchical_bootstrap_ci(&[vec![1.0, 2.0]], &cfg(10)),
            Err(StatsError::TooFew { got: 1, .. })
        ));
        assert_eq!(
            hierarchical_bootstrap_ci(&[vec![1.0], vec![]], &cfg(10)),
            Err(StatsError::EmptyGroup {
                what: "hierarchical_bootstrap_ci(groups)",
                group: 1
            })
        );
        let err = hierarchical_bootstrap_ci(&[vec![1.0], vec![2.0, f64::INFINITY]], &cfg(10))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "hierarchical_bootstrap_ci(groups): group 1, value at index 1 is inf, expected a finite number"
        );
    }
}
