//! Power: the smallest difference a comparison could have detected, so that a null result says
//! how large an effect it rules out.
//!
//! # Definition
//!
//! For a two-sided test at level `α` and a target power `1 − β`, the minimum detectable
//! difference (MDD) is
//!
//! ```text
//! MDD = (t_{1−α/2, ν} + t_{1−β, ν}) · SE
//! ```
//!
//! with `SE` the standard error of the observed difference and `t_{p, ν}` Student's t quantile
//! with `ν` degrees of freedom (the usual normal-approximation formula `(z_{1−α/2} + z_{1−β})·SE`
//! with t quantiles in place of normal ones, which matters at the few seeds a finetuning study
//! has). The variance is the run's own: the sample variances of the values the comparison
//! uses. One formula per comparison kind:
//!
//! * **independent samples** ([`detectable_difference`]) — Welch:
//!   `SE = √(s_a²/n_a + s_b²/n_b)`, `ν` by Welch–Satterthwaite
//!   `(s_a²/n_a + s_b²/n_b)² / ((s_a²/n_a)²/(n_a−1) + (s_b²/n_b)²/(n_b−1))`;
//! * **paired** ([`detectable_difference_paired`]) — the differences `d = a − b`:
//!   `SE = s_d/√n`, `ν = n − 1`;
//! * **grouped** ([`detectable_difference_groups`]: finetuning seeds or models, each holding
//!   paraphrases) — each group is first reduced to its mean and the group means are compared
//!   as independent samples (Welch). The unit of replication is the model: paraphrases of one
//!   model share its finetuning run, so they are not independent replications of the
//!   condition, and their spread enters only through the spread of the group means. This is
//!   the same weighting as [`crate::hierarchical_bootstrap_ci`] (each group counts once).
//!
//! # Accuracy
//!
//! The formula is an approximation to the power of the t-test. Checked by seeded simulation
//! ([`simulate_power`], this module's tests): at the MDD the simulated power of the Welch test
//! is 0.75 at 4 vs 4 values, 0.78 at 5 vs 5, 0.79–0.80 from 10 per side and for unequal
//! sizes and spreads; of the paired t-test 0.79 from 5 pairs. It falls short at 3 vs 3
//! (0.69): there the Welch test's own degrees of freedom, estimated from each data set, are
//! often below the design's, so the MDD understates what is needed.
//!
//! # Permutation tests
//!
//! The reports test differences with permutation ([`crate::permutation_test`]) and sign-flip
//! ([`crate::sign_flip_test`]) tests, whose p-values cannot go below a floor set by the sample
//! sizes: `2 / C(n_a + n_b, n_a)` (all relabelings enumerated) or `2 / (B + 1)` (B random
//! ones), and `2 / 2ⁿ` or `2 / (B + 1)` for sign flips. When that floor is above `α`, no
//! difference, however large, can reach significance: with [`PowerConfig::permutations`] set,
//! the functions here then return [`StatsError::TestCannotReject`] instead of a number.
//! Otherwise the t-based MDD is reported for the permutation test too; at the sizes where the
//! floor allows rejection their power is close (checked by simulation in this module's tests
//! and [`simulate_power`]).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use statrs::distribution::{ContinuousCDF, StudentsT};

use crate::check;
use crate::compare::{permutation_test, PermutationConfig};
use crate::descriptive::raw_mean;
use crate::error::{Result, StatsError};
use crate::interval::student_t_quantile;
use crate::paired::sign_flip_test;

/// Settings of a minimum-detectable-difference computation. `Default`: α = 0.05 (two-sided),
/// power 0.8, no permutation floor check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerConfig {
    /// Two-sided significance level, strictly between 0 and 1.
    pub alpha: f64,
    /// Target power `1 − β`, strictly between 0 and 1.
    pub power: f64,
    /// The permutation budget of the test the comparison reports (as given to
    /// [`crate::permutation_test`] / [`crate::sign_flip_test`]). When set, a test whose
    /// smallest attainable p-value is above `alpha` is reported as
    /// [`StatsError::TestCannotReject`]; `None` checks nothing (a t-test has no floor).
    pub permutations: Option<usize>,
}

impl Default for PowerConfig {
    fn default() -> Self {
        Self {
            alpha: 0.05,
            power: 0.8,
            permutations: None,
        }
    }
}

/// Which formula gave a [`DetectableDifference`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PowerMethod {
    /// Two independent samples, Welch standard error and Welch–Satterthwaite df.
    Welch,
    /// Paired samples: standard error of the mean difference, `n − 1` df.
    Paired,
    /// Groups reduced to their means, then [`PowerMethod::Welch`] on the group means.
    GroupMeansWelch,
}

impl PowerMethod {
    /// A short name for reports, e.g. `"Welch t"`.
    pub fn name(self) -> &'static str {
        match self {
            PowerMethod::Welch => "Welch t",
            PowerMethod::Paired => "paired t",
            PowerMethod::GroupMeansWelch => "Welch t on group means",
        }
    }
}

/// The smallest difference a comparison could have detected, and what it was computed from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectableDifference {
    /// The minimum detectable difference `(t_{1−α/2, ν} + t_{power, ν}) · SE` (≥ 0, in the
    /// units of the compared values).
    pub difference: f64,
    /// Standard error of the difference.
    pub standard_error: f64,
    /// Degrees of freedom `ν` (Welch–Satterthwaite for independent samples, so not an
    /// integer in general).
    pub df: f64,
    /// Two-sided significance level used.
    pub alpha: f64,
    /// Power used.
    pub power: f64,
    /// Units on the first side (pairs, for a paired comparison).
    pub n_a: usize,
    /// Units on the second side (equal to `n_a` for a paired comparison).
    pub n_b: usize,
    /// Which formula.
    pub method: PowerMethod,
}

/// A design in summary form: sizes and standard deviations, for [`detectable_difference_for`]
/// and [`simulate_power`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PowerDesign {
    /// Two independent samples.
    Independent {
        /// Size of sample a.
        n_a: usize,
        /// Standard deviation of sample a.
        sd_a: f64,
        /// Size of sample b.
        n_b: usize,
        /// Standard deviation of sample b.
        sd_b: f64,
    },
    /// `n` pairs whose differences have standard deviation `sd`.
    Paired {
        /// Number of pairs.
        n: usize,
        /// Standard deviation of the differences.
        sd: f64,
    },
}

/// Minimum detectable difference of `mean(a) − mean(b)` for two independent samples (Welch;
/// see the [module documentation](self)).
///
/// Errors: fewer than 2 values on either side ([`StatsError::Empty`] / [`StatsError::TooFew`]
/// naming `a` or `b`), [`StatsError::NonFinite`], [`StatsError::ZeroVariance`] when both
/// samples are constant (the standard error is 0, so no detectable difference can be stated),
/// [`StatsError::OutOfRange`] for α or power outside `(0, 1)`, and
/// [`StatsError::TestCannotReject`] as [`PowerConfig::permutations`] says.
pub fn detectable_difference(
    a: &[f64],
    b: &[f64],
    cfg: &PowerConfig,
) -> Result<DetectableDifference> {
    const WHAT: &str = "detectable_difference";
    check::finite_at_least("detectable_difference(a)", a, 2)?;
    check::finite_at_least("detectable_difference(b)", b, 2)?;
    welch(WHAT, a, b, cfg, PowerMethod::Welch)
}

/// Minimum detectable mean difference of paired samples: unit `i` measured as `a[i]` and
/// `b[i]`; the formula runs on the differences `a[i] − b[i]` (see the
/// [module documentation](self)).
///
/// Errors: different lengths ([`StatsError::LengthMismatch`]), fewer than 2 pairs,
/// [`StatsError::NonFinite`], [`StatsError::ZeroVariance`] when every difference is the same,
/// [`StatsError::OutOfRange`] for α or power, and [`StatsError::TestCannotReject`] (sign-flip
/// floor) as [`PowerConfig::permutations`] says.
pub fn detectable_difference_paired(
    a: &[f64],
    b: &[f64],
    cfg: &PowerConfig,
) -> Result<DetectableDifference> {
    const WHAT: &str = "detectable_difference_paired";
    check::same_length(WHAT, a, b)?;
    check::finite_at_least("detectable_difference_paired(a)", a, 2)?;
    check::finite_at_least("detectable_difference_paired(b)", b, 2)?;
    validate(WHAT, cfg)?;
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let n = d.len();
    if let Some(budget) = cfg.permutations {
        check_floor(WHAT, "sign-flip test", sign_flip_smallest_p(n, budget), cfg)?;
    }
    if is_constant(&d) {
        return Err(StatsError::ZeroVariance {
            what: WHAT,
            field: "the differences a − b",
            quantity: "the detectable difference",
        });
    }
    let se = (sample_variance(&d) / n as f64).sqrt();
    finish(WHAT, se, (n - 1) as f64, n, n, cfg, PowerMethod::Paired)
}

/// Minimum detectable difference between two conditions whose values come in groups (one
/// group per finetuning seed or model, holding its paraphrases or items): each group is
/// reduced to its mean, and the group means are compared with [`detectable_difference`]'s
/// Welch formula. The model is the unit of replication (see the [module documentation](self)).
///
/// Errors: fewer than 2 groups on either side, an empty group
/// ([`StatsError::EmptyGroup`]), a non-finite value ([`StatsError::NonFiniteInGroup`]), and
/// otherwise as [`detectable_difference`] on the group means.
pub fn detectable_difference_groups(
    a: &[Vec<f64>],
    b: &[Vec<f64>],
    cfg: &PowerConfig,
) -> Result<DetectableDifference> {
    const WHAT: &str = "detectable_difference_groups";
    let ma = group_means("detectable_difference_groups(a)", a)?;
    let mb = group_means("detectable_difference_groups(b)", b)?;
    welch(WHAT, &ma, &mb, cfg, PowerMethod::GroupMeansWelch)
}

/// Minimum detectable difference of a design given in summary form (sizes and standard
/// deviations), with the same formulas as [`detectable_difference`] and
/// [`detectable_difference_paired`]. Useful to plan a run, and what [`simulate_power`] checks.
///
/// Errors: a size below 2, a negative or non-finite standard deviation
/// ([`StatsError::OutOfRange`]), all standard deviations zero ([`StatsError::ZeroVariance`]),
/// α or power outside `(0, 1)`, [`StatsError::TestCannotReject`].
pub fn detectable_difference_for(
    design: &PowerDesign,
    cfg: &PowerConfig,
) -> Result<DetectableDifference> {
    const WHAT: &str = "detectable_difference_for";
    validate(WHAT, cfg)?;
    match *design {
        PowerDesign::Independent {
            n_a,
            sd_a,
            n_b,
            sd_b,
        } => {
            size(WHAT, "n_a", n_a)?;
            size(WHAT, "n_b", n_b)?;
            spread(WHAT, "sd_a", sd_a)?;
            spread(WHAT, "sd_b", sd_b)?;
            welch_from(
                WHAT,
                (n_a, sd_a * sd_a),
                (n_b, sd_b * sd_b),
                cfg,
                PowerMethod::Welch,
            )
        }
        PowerDesign::Paired { n, sd } => {
            size(WHAT, "n", n)?;
            spread(WHAT, "sd", sd)?;
            if let Some(budget) = cfg.permutations {
                check_floor(WHAT, "sign-flip test", sign_flip_smallest_p(n, budget), cfg)?;
            }
            if sd == 0.0 {
                return Err(StatsError::ZeroVariance {
                    what: WHAT,
                    field: "sd",
                    quantity: "the detectable difference",
                });
            }
            let se = sd / (n as f64).sqrt();
            finish(WHAT, se, (n - 1) as f64, n, n, cfg, PowerMethod::Paired)
        }
    }
}

/// The smallest two-sided p-value [`crate::permutation_test`] can return for samples of
/// sizes `n_a` and `n_b` with a budget of `permutations` relabelings: `2 / C(n_a + n_b, n_a)`
/// when it enumerates them all, `2 / (B + 1)` when it draws `B` at random; capped at 1.
/// Ties in the data only raise it.
pub fn permutation_smallest_p(n_a: usize, n_b: usize, permutations: usize) -> f64 {
    let p = match crate::compare::binomial_capped(n_a + n_b, n_a, permutations) {
        Some(all) => 2.0 / all as f64,
        None => 2.0 / (permutations as f64 + 1.0),
    };
    p.min(1.0)
}

/// The smallest two-sided p-value [`crate::sign_flip_test`] can return for `n` differences
/// with a budget of `permutations` sign vectors: `2 / 2ⁿ` when it enumerates them all,
/// `2 / (B + 1)` otherwise; capped at 1.
pub fn sign_flip_smallest_p(n: usize, permutations: usize) -> f64 {
    let exact = n < usize::BITS as usize && (1usize << n) <= permutations;
    let p = if exact {
        2.0 / (1usize << n) as f64
    } else {
        2.0 / (permutations as f64 + 1.0)
    };
    p.min(1.0)
}

/// The test [`simulate_power`] runs on each simulated data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerTest {
    /// Welch's t-test (independent) or the one-sample t-test of the differences (paired),
    /// two-sided.
    T,
    /// The report's own tests: [`crate::permutation_test`] (independent) or
    /// [`crate::sign_flip_test`] (paired) with this many permutations.
    Permutation {
        /// Permutation budget per simulated data set.
        resamples: usize,
    },
}

/// Settings of [`simulate_power`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimulationConfig {
    /// Number of simulated data sets.
    pub replicates: usize,
    /// Seed of the `ChaCha8Rng` that draws the data (and the permutation seeds).
    pub seed: u64,
    /// The test applied to each data set.
    pub test: PowerTest,
}

impl Default for SimulationConfig {
    fn default() -> Self {
        Self {
            replicates: 4000,
            seed: 0,
            test: PowerTest::T,
        }
    }
}

/// Empirical power, by simulation: draws `sim.replicates` data sets from the design with
/// normal values (independent: `a ~ N(difference, sd_a)`, `b ~ N(0, sd_b)`; paired:
/// differences `~ N(difference, sd)`), runs `sim.test` on each, and returns the share with a
/// two-sided p-value `≤ cfg.alpha`. Seeded: the same arguments give the same number. Normal
/// draws use the Box–Muller transform on the `ChaCha8Rng` stream.
///
/// Called with `difference` = [`detectable_difference_for`]'s result, the share should be
/// close to `cfg.power`; that is the check this crate's tests make. `cfg.power` and
/// `cfg.permutations` are not used here.
///
/// Errors: a size below 2, a negative or non-finite standard deviation or difference, zero
/// replicates or a zero permutation budget ([`StatsError::OutOfRange`]), α outside `(0, 1)`.
pub fn simulate_power(
    design: &PowerDesign,
    difference: f64,
    cfg: &PowerConfig,
    sim: &SimulationConfig,
) -> Result<f64> {
    const WHAT: &str = "simulate_power";
    probability(WHAT, "alpha", cfg.alpha)?;
    if !difference.is_finite() {
        return Err(StatsError::OutOfRange {
            what: WHAT,
            field: "difference",
            value: difference,
            expected: "a finite number",
        });
    }
    check::resamples(WHAT, sim.replicates)?;
    if let PowerTest::Permutation { resamples } = sim.test {
        check::resamples(WHAT, resamples)?;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(sim.seed);
    let mut rejected = 0usize;
    match *design {
        PowerDesign::Independent {
            n_a,
            sd_a,
            n_b,
            sd_b,
        } => {
            size(WHAT, "n_a", n_a)?;
            size(WHAT, "n_b", n_b)?;
            spread(WHAT, "sd_a", sd_a)?;
            spread(WHAT, "sd_b", sd_b)?;
            let (mut a, mut b) = (vec![0.0; n_a], vec![0.0; n_b]);
            for _ in 0..sim.replicates {
                a.iter_mut()
                    .for_each(|x| *x = difference + sd_a * standard_normal(&mut rng));
                b.iter_mut()
                    .for_each(|x| *x = sd_b * standard_normal(&mut rng));
                let p = match sim.test {
                    PowerTest::T => welch_t_p(&a, &b),
                    PowerTest::Permutation { resamples } => {
                        let seed = rng.gen::<u64>();
                        permutation_test(&a, &b, &PermutationConfig { resamples, seed })?.p_value
                    }
                };
                rejected += usize::from(p <= cfg.alpha);
            }
        }
        PowerDesign::Paired { n, sd } => {
            size(WHAT, "n", n)?;
            spread(WHAT, "sd", sd)?;
            let mut d = vec![0.0; n];
            for _ in 0..sim.replicates {
                d.iter_mut()
                    .for_each(|x| *x = difference + sd * standard_normal(&mut rng));
                let p = match sim.test {
                    PowerTest::T => one_sample_t_p(&d),
                    PowerTest::Permutation { resamples } => {
                        let seed = rng.gen::<u64>();
                        sign_flip_test(&d, &PermutationConfig { resamples, seed })?.p_value
                    }
                };
                rejected += usize::from(p <= cfg.alpha);
            }
        }
    }
    Ok(rejected as f64 / sim.replicates as f64)
}

/// Welch MDD from two validated samples (at least 2 finite values each).
fn welch(
    what: &'static str,
    a: &[f64],
    b: &[f64],
    cfg: &PowerConfig,
    method: PowerMethod,
) -> Result<DetectableDifference> {
    validate(what, cfg)?;
    let (a, b) = (check::sorted(a), check::sorted(b));
    if is_constant(&a) && is_constant(&b) {
        return Err(StatsError::ZeroVariance {
            what,
            field: "both samples",
            quantity: "the detectable difference",
        });
    }
    welch_from(
        what,
        (a.len(), sample_variance(&a)),
        (b.len(), sample_variance(&b)),
        cfg,
        method,
    )
}

/// Welch MDD from sizes (≥ 2) and sample variances.
fn welch_from(
    what: &'static str,
    (n_a, var_a): (usize, f64),
    (n_b, var_b): (usize, f64),
    cfg: &PowerConfig,
    method: PowerMethod,
) -> Result<DetectableDifference> {
    if let Some(budget) = cfg.permutations {
        let floor = permutation_smallest_p(n_a, n_b, budget);
        check_floor(what, "permutation test", floor, cfg)?;
    }
    let (ua, ub) = (var_a / n_a as f64, var_b / n_b as f64);
    if ua + ub == 0.0 {
        return Err(StatsError::ZeroVariance {
            what,
            field: "both samples",
            quantity: "the detectable difference",
        });
    }
    let df = (ua + ub).powi(2) / (ua * ua / (n_a - 1) as f64 + ub * ub / (n_b - 1) as f64);
    finish(what, (ua + ub).sqrt(), df, n_a, n_b, cfg, method)
}

/// `(t_{1−α/2, df} + t_{power, df}) · se`.
fn finish(
    what: &'static str,
    se: f64,
    df: f64,
    n_a: usize,
    n_b: usize,
    cfg: &PowerConfig,
    method: PowerMethod,
) -> Result<DetectableDifference> {
    let critical = student_t_quantile(what, df, 1.0 - cfg.alpha / 2.0)?;
    // The quantile routine takes upper quantiles; t is symmetric, so t_p = −t_{1−p}.
    let power_quantile = if cfg.power >= 0.5 {
        student_t_quantile(what, df, cfg.power)?
    } else {
        -student_t_quantile(what, df, 1.0 - cfg.power)?
    };
    Ok(DetectableDifference {
        difference: (critical + power_quantile) * se,
        standard_error: se,
        df,
        alpha: cfg.alpha,
        power: cfg.power,
        n_a,
        n_b,
        method,
    })
}

fn check_floor(
    what: &'static str,
    test: &'static str,
    smallest_p: f64,
    cfg: &PowerConfig,
) -> Result<()> {
    if smallest_p > cfg.alpha {
        Err(StatsError::TestCannotReject {
            what,
            test,
            smallest_p,
            alpha: cfg.alpha,
        })
    } else {
        Ok(())
    }
}

fn validate(what: &'static str, cfg: &PowerConfig) -> Result<()> {
    probability(what, "alpha", cfg.alpha)?;
    probability(what, "power", cfg.power)?;
    if cfg.permutations == Some(0) {
        check::resamples(what, 0)?;
    }
    Ok(())
}

fn probability(what: &'static str, field: &'static str, value: f64) -> Result<()> {
    if value > 0.0 && value < 1.0 {
        Ok(())
    } else {
        Err(StatsError::OutOfRange {
            what,
            field,
            value,
            expected: "a number strictly between 0 and 1",
        })
    }
}

fn size(what: &'static str, field: &'static str, n: usize) -> Result<()> {
    if n >= 2 {
        Ok(())
    } else {
        Err(StatsError::OutOfRange {
            what,
            field,
            value: n as f64,
            expected: "at least 2",
        })
    }
}

fn spread(what: &'static str, field: &'static str, sd: f64) -> Result<()> {
    if sd.is_finite() && sd >= 0.0 {
        Ok(())
    } else {
        Err(StatsError::OutOfRange {
            what,
            field,
            value: sd,
            expected: "a finite number ≥ 0",
        })
    }
}

fn group_means(what: &'static str, groups: &[Vec<f64>]) -> Result<Vec<f64>> {
    if groups.is_empty() {
        return Err(StatsError::Empty { what, needed: 2 });
    }
    if groups.len() < 2 {
        return Err(StatsError::TooFew {
            what,
            needed: 2,
            got: groups.len(),
        });
    }
    let mut means = Vec::with_capacity(groups.len());
    for (group, values) in groups.iter().enumerate() {
        if values.is_empty() {
            return Err(StatsError::EmptyGroup { what, group });
        }
        if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(StatsError::NonFiniteInGroup {
                what,
                group,
                index,
                value,
            });
        }
        means.push(raw_mean(&check::sorted(values)));
    }
    Ok(means)
}

/// Whether every value equals the first (a computed variance of such data can be a rounding
/// residue instead of 0).
fn is_constant(values: &[f64]) -> bool {
    values.iter().all(|&v| v == values[0])
}

/// `Σ (xᵢ − x̄)² / (n − 1)`; `values` must hold at least 2 values.
fn sample_variance(values: &[f64]) -> f64 {
    let m = raw_mean(values);
    values.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (values.len() - 1) as f64
}

/// One standard normal draw (Box–Muller; the second variate is discarded for simplicity).
fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    // u1 in (0, 1]: 1 − [0, 1) avoids ln(0).
    let u1 = 1.0 - rng.gen::<f64>();
    let u2 = rng.gen::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Two-sided p-value of Welch's t-test; 1 when both samples are constant and equal, 0 when
/// constant and different.
fn welch_t_p(a: &[f64], b: &[f64]) -> f64 {
    let (ua, ub) = (
        sample_variance(a) / a.len() as f64,
        sample_variance(b) / b.len() as f64,
    );
    let diff = raw_mean(a) - raw_mean(b);
    let se2 = ua + ub;
    if se2 == 0.0 {
        return if diff == 0.0 { 1.0 } else { 0.0 };
    }
    let df = se2 * se2 / (ua * ua / (a.len() - 1) as f64 + ub * ub / (b.len() - 1) as f64);
    two_sided_t_p(diff / se2.sqrt(), df)
}

/// Two-sided p-value of the one-sample t-test of mean 0.
fn one_sample_t_p(d: &[f64]) -> f64 {
    let n = d.len() as f64;
    let se2 = sample_variance(d) / n;
    let m = raw_mean(d);
    if se2 == 0.0 {
        return if m == 0.0 { 1.0 } else { 0.0 };
    }
    two_sided_t_p(m / se2.sqrt(), n - 1.0)
}

fn two_sided_t_p(t: f64, df: f64) -> f64 {
    match StudentsT::new(0.0, 1.0, df) {
        Ok(dist) => (2.0 * dist.sf(t.abs())).min(1.0),
        Err(_) => 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: f64, want: f64, tol: f64) {
        assert!((got - want).abs() <= tol, "got {got}, want {want} ± {tol}");
    }

    /// n = 10 per group, sd = 1, α = 0.05, power 0.8, by hand from printed t tables:
    /// SE = √(1/10 + 1/10) = 0.447214; Welch df = 0.2² / (2 · 0.1²/9) = 18;
    /// t_{0.975, 18} = 2.101, t_{0.80, 18} = 0.862 (three-decimal table values);
    /// MDD = (2.101 + 0.862) · 0.447214 = 2.963 · 0.447214 = 1.32510.
    /// The table's rounding (±0.0005 per quantile) allows ±0.00045 in the MDD.
    #[test]
    fn welch_by_hand_n10_sd1() {
        let design = PowerDesign::Independent {
            n_a: 10,
            sd_a: 1.0,
            n_b: 10,
            sd_b: 1.0,
        };
        let d = detectable_difference_for(&design, &PowerConfig::default()).unwrap();
        close(d.standard_error, 0.447_214, 1e-6);
        close(d.df, 18.0, 1e-9);
        close(d.difference, 1.325_10, 0.000_5);
        assert_eq!(d.method, PowerMethod::Welch);
        assert_eq!((d.n_a, d.n_b, d.alpha, d.power), (10, 10, 0.05, 0.8));
    }

    /// Paired, 10 differences with sd 1: SE = 1/√10 = 0.316228, df = 9;
    /// t_{0.975, 9} = 2.262, t_{0.80, 9} = 0.883 (table);
    /// MDD = 3.145 · 0.316228 = 0.994537 (±0.0003 from table rounding).
    #[test]
    fn paired_by_hand_n10_sd1() {
        let d = detectable_difference_for(
            &PowerDesign::Paired { n: 10, sd: 1.0 },
            &PowerConfig::default(),
        )
        .unwrap();
        close(d.df, 9.0, 0.0);
        close(d.difference, 0.994_537, 0.000_4);
    }

    /// Unequal variances, from data: a = {1, 2, 3, 4} (s² = 5/3), b = {0, 0, 2, 2, 4, 4}
    /// (mean 2, s² = (4+4+0+0+4+4)/5 = 16/5).
    /// u_a = 5/12 = 0.416667, u_b = 16/30 = 0.533333, SE = √0.95 = 0.974679;
    /// df = 0.95² / (0.416667²/3 + 0.533333²/5) = 0.9025 / (0.057870 + 0.056889) = 7.8643.
    /// With α = 0.05, power 0.9 at df ≈ 7.86: t_{0.975} ≈ 2.3131, t_{0.90} ≈ 1.3992
    /// (interpolated in 1/df between the df 8 and df 7 table rows, weight 0.121 on df 7:
    /// 2.306/2.365 and 1.397/1.415), so MDD ≈ 3.7123 · 0.974679 = 3.6183 (±0.01 for the
    /// interpolation).
    #[test]
    fn welch_from_data_unequal_variances() {
        let cfg = PowerConfig {
            power: 0.9,
            ..PowerConfig::default()
        };
        let d = detectable_difference(&[4.0, 1.0, 3.0, 2.0], &[0.0, 0.0, 2.0, 2.0, 4.0, 4.0], &cfg)
            .unwrap();
        close(d.standard_error, 0.974_679, 1e-6);
        close(d.df, 7.8643, 1e-3);
        close(d.difference, 3.6183, 0.01);
    }

    /// Groups reduce to their means: {0, 2}, {3}, {5, 7} → 1, 3, 6 and {1, 1}, {2} → 1, 2.
    #[test]
    fn groups_use_group_means() {
        let cfg = PowerConfig::default();
        let g = detectable_difference_groups(
            &[vec![2.0, 0.0], vec![3.0], vec![5.0, 7.0]],
            &[vec![1.0, 1.0], vec![2.0]],
            &cfg,
        )
        .unwrap();
        let flat = detectable_difference(&[1.0, 3.0, 6.0], &[1.0, 2.0], &cfg).unwrap();
        assert_eq!(g.method, PowerMethod::GroupMeansWelch);
        assert_eq!(g.difference, flat.difference);
        assert_eq!((g.n_a, g.n_b), (3, 2));
    }

    #[test]
    fn large_samples_approach_the_normal_formula() {
        // (z_{0.975} + z_{0.80}) = 1.959964 + 0.841621 = 2.801585; SE = √(2/100 000).
        let design = PowerDesign::Independent {
            n_a: 100_000,
            sd_a: 1.0,
            n_b: 100_000,
            sd_b: 1.0,
        };
        let d = detectable_difference_for(&design, &PowerConfig::default()).unwrap();
        close(d.difference, 2.801_585 * (2.0f64 / 100_000.0).sqrt(), 1e-5);
    }

    #[test]
    fn cannot_compute_is_an_error_not_a_nan() {
        let cfg = PowerConfig::default();
        assert!(matches!(
            detectable_difference(&[1.0], &[1.0, 2.0], &cfg),
            Err(StatsError::TooFew {
                what: "detectable_difference(a)",
                got: 1,
                ..
            })
        ));
        let err = detectable_difference(&[0.5, 0.5], &[0.7, 0.7, 0.7], &cfg).unwrap_err();
        assert_eq!(
            err.to_string(),
            "detectable_difference: both samples has zero variance, so the detectable \
             difference is undefined"
        );
        assert!(matches!(
            detectable_difference_paired(&[1.0, 2.0], &[0.0, 1.0], &cfg),
            Err(StatsError::ZeroVariance { .. })
        ));
        assert!(matches!(
            detectable_difference_paired(&[1.0, 2.0], &[0.0], &cfg),
            Err(StatsError::LengthMismatch { .. })
        ));
        assert!(matches!(
            detectable_difference_groups(&[vec![1.0], vec![2.0]], &[vec![1.0]], &cfg),
            Err(StatsError::TooFew { got: 1, .. })
        ));
        assert!(matches!(
            detectable_difference(&[1.0, 2.0], &[1.0, 3.0], &PowerConfig { alpha: 0.0, ..cfg }),
            Err(StatsError::OutOfRange { field: "alpha", .. })
        ));
        // One constant side is fine: the other carries the variance (df = its n − 1).
        let d = detectable_difference(&[0.5, 0.5, 0.5], &[1.0, 2.0, 3.0], &cfg).unwrap();
        close(d.df, 2.0, 1e-12);
    }

    #[test]
    fn permutation_floors() {
        // C(6, 3) = 20 relabelings: smallest p = 2/20.
        assert_eq!(permutation_smallest_p(3, 3, 10_000), 0.1);
        // C(8, 4) = 70: 2/70.
        assert_eq!(permutation_smallest_p(4, 4, 10_000), 2.0 / 70.0);
        // Over budget: 2 / (B + 1).
        assert_eq!(permutation_smallest_p(10, 10, 999), 0.002);
        assert_eq!(permutation_smallest_p(1, 1, 10), 1.0);
        assert_eq!(sign_flip_smallest_p(5, 10_000), 0.0625);
        assert_eq!(sign_flip_smallest_p(6, 10_000), 0.03125);
        assert_eq!(sign_flip_smallest_p(20, 999), 0.002);

        let cfg = PowerConfig {
            permutations: Some(10_000),
            ..PowerConfig::default()
        };
        let err = detectable_difference(&[0.1, 0.2, 0.4], &[0.5, 0.6, 0.9], &cfg).unwrap_err();
        assert_eq!(
            err,
            StatsError::TestCannotReject {
                what: "detectable_difference",
                test: "permutation test",
                smallest_p: 0.1,
                alpha: 0.05
            }
        );
        assert!(detectable_difference(&[0.1, 0.2, 0.4, 0.3], &[0.5, 0.6, 0.9, 0.2], &cfg).is_ok());
        assert!(matches!(
            detectable_difference_paired(&[1.0; 5], &[0.0, 0.2, 0.1, 0.3, 0.5], &cfg),
            Err(StatsError::TestCannotReject {
                test: "sign-flip test",
                ..
            })
        ));
    }

    fn at_mdd(design: PowerDesign, sim: SimulationConfig) -> f64 {
        let cfg = PowerConfig::default();
        let mdd = detectable_difference_for(&design, &cfg).unwrap().difference;
        simulate_power(&design, mdd, &cfg, &sim).unwrap()
    }

    /// The check of issue #16: simulated power at the computed MDD is 0.8 within 10%
    /// (0.72–0.88), for several sizes and spreads, seeded so the figures are fixed.
    #[test]
    fn simulated_power_at_the_mdd_is_eighty_percent() {
        let sim = SimulationConfig {
            replicates: 4000,
            seed: 16,
            test: PowerTest::T,
        };
        let designs = [
            PowerDesign::Independent {
                n_a: 4,
                sd_a: 1.0,
                n_b: 4,
                sd_b: 1.0,
            },
            PowerDesign::Independent {
                n_a: 5,
                sd_a: 0.1,
                n_b: 5,
                sd_b: 0.1,
            },
            PowerDesign::Independent {
                n_a: 10,
                sd_a: 1.0,
                n_b: 10,
                sd_b: 1.0,
            },
            PowerDesign::Independent {
                n_a: 4,
                sd_a: 0.05,
                n_b: 12,
                sd_b: 0.2,
            },
            PowerDesign::Independent {
                n_a: 30,
                sd_a: 2.0,
                n_b: 20,
                sd_b: 1.0,
            },
            PowerDesign::Paired { n: 5, sd: 0.3 },
            PowerDesign::Paired { n: 20, sd: 1.0 },
        ];
        for design in designs {
            let power = at_mdd(design, sim);
            eprintln!("{design:?}: simulated power {power}");
            assert!((0.72..=0.88).contains(&power), "{design:?}: {power}");
        }
    }

    /// The report's own tests (permutation, sign flip) at sizes where they can reject.
    #[test]
    fn simulated_permutation_power_at_the_mdd() {
        let sim = SimulationConfig {
            replicates: 600,
            seed: 16,
            test: PowerTest::Permutation { resamples: 199 },
        };
        for design in [
            PowerDesign::Independent {
                n_a: 8,
                sd_a: 1.0,
                n_b: 8,
                sd_b: 1.0,
            },
            PowerDesign::Paired { n: 12, sd: 0.5 },
        ] {
            let power = at_mdd(design, sim);
            eprintln!("{design:?}: simulated power {power}");
            assert!((0.72..=0.88).contains(&power), "{design:?}: {power}");
        }
    }

    /// Where the formula falls short: with 3 values per side the Welch test's own degrees of
    /// freedom (estimated from each data set, between 2 and 4) are often below the design's 4,
    /// so the simulated power at the MDD is about 0.69, not 0.8 (20 000 replicates: 0.6875).
    /// The report's permutation test cannot reject at all at 3 vs 3 (smallest p = 0.1), and
    /// says so instead of giving a number.
    #[test]
    fn three_per_side_falls_short_of_the_target() {
        let design = PowerDesign::Independent {
            n_a: 3,
            sd_a: 1.0,
            n_b: 3,
            sd_b: 1.0,
        };
        let sim = SimulationConfig {
            replicates: 4000,
            seed: 16,
            test: PowerTest::T,
        };
        let power = at_mdd(design, sim);
        assert!((0.65..0.72).contains(&power), "{power}");
    }

    #[test]
    fn simulation_is_seeded_and_sees_no_effect_at_zero() {
        let design = PowerDesign::Independent {
            n_a: 6,
            sd_a: 1.0,
            n_b: 6,
            sd_b: 1.0,
        };
        let sim = SimulationConfig {
            replicates: 2000,
            seed: 5,
            test: PowerTest::T,
        };
        let cfg = PowerConfig::default();
        let once = simulate_power(&design, 0.3, &cfg, &sim).unwrap();
        assert_eq!(once, simulate_power(&design, 0.3, &cfg, &sim).unwrap());
        // At difference 0 the rejection rate is the type I error, α = 0.05 (±0.015, about
        // three binomial standard errors at 2000 replicates).
        let null = simulate_power(&design, 0.0, &cfg, &sim).unwrap();
        close(null, 0.05, 0.015);
    }
}
