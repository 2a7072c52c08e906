"""Write goldens.json: reference numbers from numpy and scipy for selfaware-stats' tests.

Run from the repository root (`.venv` is git-ignored; any venv with numpy and scipy works,
the versions used are recorded under "generator" in the output):

    python3 -m venv .venv
    .venv/bin/pip install numpy scipy
    .venv/bin/python crates/selfaware-stats/tests/golden/make_goldens.py

The script is deterministic: rerunning it with the same numpy/scipy rewrites the same file.

The output is committed; `tests/golden.rs` reads it. Deterministic quantities (means,
quantiles, t and Fisher-z intervals, Pearson r and p, exact permutation p-values, OLS lines)
must match to ~1e-9. Bootstrap intervals come from `scipy.stats.bootstrap(...,
method='percentile', n_resamples=10000, random_state=0)` exactly as the paper's `plot.py`
calls it; since our RNG is not numpy's they can only match up to Monte-Carlo error, so for
each one we also record `mc_sd_low` / `mc_sd_high`: the standard deviation of the endpoint
over scipy runs with random_state = 1..20, which the Rust test uses to size its tolerance.
"""

import json
import math
import os
import warnings

import numpy as np
import scipy
from scipy import stats

HERE = os.path.dirname(os.path.abspath(__file__))
QS = [0.0, 0.025, 0.1, 0.25, 0.333, 0.5, 0.6, 0.75, 0.9, 0.975, 1.0]
LEVELS = [0.8, 0.9, 0.95, 0.99]
RESAMPLES = 10_000
MC_SEEDS = range(1, 21)

warnings.simplefilter("ignore", DeprecationWarning)


def f(x):
    return float(x)


def floats(xs):
    return [float(x) for x in xs]


def mean_stat(x, axis=-1):
    return np.mean(x, axis=axis)


def diff_stat(x, y, axis=-1):
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def scipy_bootstrap(data, statistic, seed, level=0.95):
    res = stats.bootstrap(
        data,
        statistic,
        method="percentile",
        n_resamples=RESAMPLES,
        confidence_level=level,
        random_state=seed,
        vectorized=True,
    )
    return f(res.confidence_interval.low), f(res.confidence_interval.high)


def bootstrap_golden(data, statistic):
    low, high = scipy_bootstrap(data, statistic, 0)
    lows, highs = zip(*(scipy_bootstrap(data, statistic, s) for s in MC_SEEDS))
    return {
        "level": 0.95,
        "resamples": RESAMPLES,
        "low": low,
        "high": high,
        "mc_sd_low": f(np.std(lows, ddof=1)),
        "mc_sd_high": f(np.std(highs, ddof=1)),
    }


def dataset(name, values):
    x = np.asarray(values, dtype=float)
    n = len(x)
    t_intervals = []
    for level in LEVELS:
        lo, hi = stats.t.interval(level, n - 1, loc=np.mean(x), scale=stats.sem(x))
        t_intervals.append({"level": level, "low": f(lo), "high": f(hi)})
    half = 1.96 * np.std(x) / math.sqrt(n)
    return {
        "name": name,
        "values": floats(x),
        "mean": f(np.mean(x)),
        "std_sample": f(np.std(x, ddof=1)),
        "std_population": f(np.std(x)),
        "median": f(np.median(x)),
        "quantiles": [{"q": q, "value": f(np.quantile(x, q))} for q in QS],
        "t_intervals": t_intervals,
        "paper_normal_interval": {"low": f(np.mean(x) - half), "high": f(np.mean(x) + half)},
        "bootstrap": bootstrap_golden((x,), mean_stat),
    }


def fisher_formula(r, n, level):
    z = math.atanh(r)
    se = 1 / math.sqrt(n - 3)
    c = stats.norm.ppf((1 + level) / 2)
    return math.tanh(z - c * se), math.tanh(z + c * se)


def correlation(name, x, y):
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    res = stats.pearsonr(x, y)
    r, n = f(res.statistic), len(x)
    fisher = []
    for level in LEVELS:
        lo, hi = fisher_formula(r, n, level)
        ci = res.confidence_interval(confidence_level=level)
        assert abs(ci.low - lo) < 1e-12 and abs(ci.high - hi) < 1e-12, (name, level)
        fisher.append({"level": level, "low": lo, "high": hi})
    line = stats.linregress(x, y)
    return {
        "name": name,
        "x": floats(x),
        "y": floats(y),
        "r": r,
        "p_value": f(res.pvalue),
        "fisher": fisher,
        "slope": f(line.slope),
        "intercept": f(line.intercept),
    }


def permutation(name, a, b, n_resamples=9999):
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    n_max = math.comb(len(a) + len(b), len(a))

    def run(seed):
        return stats.permutation_test(
            (a, b),
            diff_stat,
            permutation_type="independent",
            alternative="two-sided",
            n_resamples=n_resamples,
            vectorized=True,
            random_state=seed,
        )

    res = run(0)
    out = {
        "name": name,
        "a": floats(a),
        "b": floats(b),
        "resamples": n_resamples,
        "exact": n_max <= n_resamples,
        "relabelings": n_max,
        "statistic": f(res.statistic),
        "p_value": f(res.pvalue),
    }
    if not out["exact"]:
        out["mc_sd_p_value"] = f(np.std([run(s).pvalue for s in MC_SEEDS], ddof=1))
    return out


def difference(name, a, b):
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    out = {"name": name, "a": floats(a), "b": floats(b), "estimate": f(np.mean(a) - np.mean(b))}
    out.update(bootstrap_golden((a, b), diff_stat))
    return out


def hierarchical_reference(groups, seed):
    """Two-level percentile bootstrap in numpy: groups, then values within each drawn group."""
    rng = np.random.RandomState(seed)
    g = len(groups)
    stats_b = np.empty(RESAMPLES)
    for i in range(RESAMPLES):
        picks = rng.randint(0, g, g)
        stats_b[i] = np.mean([np.mean(groups[k][rng.randint(0, len(groups[k]), len(groups[k]))]) for k in picks])
    return f(np.quantile(stats_b, 0.025)), f(np.quantile(stats_b, 0.975))


def hierarchical(name, groups):
    groups = [np.asarray(g, dtype=float) for g in groups]
    low, high = hierarchical_reference(groups, 0)
    lows, highs = zip(*(hierarchical_reference(groups, s) for s in MC_SEEDS))
    return {
        "name": name,
        "groups": [floats(g) for g in groups],
        "estimate": f(np.mean([np.mean(g) for g in groups])),
        "level": 0.95,
        "resamples": RESAMPLES,
        "low": low,
        "high": high,
        "mc_sd_low": f(np.std(lows, ddof=1)),
        "mc_sd_high": f(np.std(highs, ddof=1)),
    }


def main():
    gen = np.random.RandomState(20250127)
    seeds5 = [0.62, 0.71, 0.58, 0.80, 0.67]
    clusters21 = np.round(gen.normal(35.0, 15.0, 21), 3)
    probs10 = np.round(gen.beta(2.0, 5.0, 10), 4)

    datasets = [
        dataset("seeds5", seeds5),
        dataset("clusters21", clusters21),
        dataset("ties11", [1, 2, 2, 3, 3, 3, 4, 4, 4, 4, 5]),
        dataset("negative8", [-3.5, -1.25, 0.0, 2.75, -0.5, -8.0, 1.5, -2.25]),
        dataset("pair2", [0.0, 1.0]),
        dataset("skewed6", [0.01, 0.02, 0.02, 0.03, 0.05, 0.9]),
        dataset("probabilities10", probs10),
    ]

    fx = np.round(gen.uniform(0.0, 70.0, 21), 2)
    fy = np.round(0.004 * fx + gen.normal(0.0, 0.12, 21), 4)
    wx = np.round(gen.normal(0.0, 1.0, 12), 3)
    wy = np.round(gen.normal(0.0, 1.0, 12), 3)
    correlations = [
        correlation("figure4_like21", fx, fy),
        correlation("n5", [1, 2, 3, 4, 5], [2.1, 3.9, 6.2, 7.8, 11.0]),
        correlation("ties_negative10", [1, 1, 2, 2, 3, 3, 4, 4, 5, 5], [9, 8, 8, 7, 7, 5, 4, 4, 2, 3]),
        correlation("weak12", wx, wy),
        correlation("n4", [0.5, -1.0, 2.0, 3.5], [1.0, 0.2, 0.4, 2.0]),
        correlation("strong30", np.arange(30.0), np.arange(30.0) * 0.5 + np.round(gen.normal(0, 0.3, 30), 3)),
    ]

    permutations = [
        permutation("seeds5v5", seeds5, [0.41, 0.55, 0.38, 0.60, 0.47]),
        permutation("unequal4v6", [1.3, 2.9, 0.4, 2.2], [0.7, -0.2, 1.1, 0.05, 0.9, -1.4]),
        permutation("ties6v6", [3, 4, 4, 5, 6, 6], [2, 3, 3, 4, 4, 5]),
        permutation("tiny3v2", [1.5, 2.5, 0.25], [0.75, 0.5]),
        permutation("overlap7v7", np.round(gen.normal(0.1, 1, 7), 3), np.round(gen.normal(0, 1, 7), 3)),
        permutation("identical3v3", [1, 2, 3], [3, 2, 1]),
        permutation("negative8v5", [-3.5, -1.25, 0.0, 2.75, -0.5, -8.0, 1.5, -2.25], [-6.0, -4.5, -7.25, -1.0, -5.5]),
        permutation("budget_equals_relabelings", [1.0, 2.5, 4.0], [0.5, 3.0, 3.5], n_resamples=20),
    ]
    mc_a, mc_b = np.round(gen.normal(0.4, 1, 10), 3), np.round(gen.normal(0, 1, 10), 3)
    permutations.append(permutation("montecarlo10v10", mc_a, mc_b))
    # The same data with a budget above C(20, 10) = 184 756: scipy enumerates them all.
    permutations.append(permutation("exact10v10_large_budget", mc_a, mc_b, n_resamples=200_000))

    differences = [
        difference("seeds5v5", seeds5, [0.41, 0.55, 0.38, 0.60, 0.47]),
        difference("clusters21v15", clusters21, np.round(gen.normal(30.0, 10.0, 15), 3)),
    ]

    hier = [
        hierarchical(
            "seeds5_paraphrases",
            [np.round(gen.normal(mu, 0.1, m), 4) for mu, m in [(0.6, 10), (0.7, 10), (0.55, 8), (0.8, 10), (0.65, 9)]],
        ),
        hierarchical("unequal_sizes", [[1.0, 1.0, 1.0, 1.0], [10.0], [4.0, 6.0], [2.0, 3.0, 2.5]]),
    ]

    # Paper, Figure 4 (digest §3 table): Pearson r within each cluster, n = 21, 95% Fisher-z CI.
    published = []
    for name, r, low, high in [("figure4_risk_seeking", 0.453, 0.026, 0.740), ("figure4_risk_averse", 0.672, 0.339, 0.856)]:
        lo, hi = fisher_formula(r, 21, 0.95)
        published.append(
            {"name": name, "r": r, "n": 21, "level": 0.95, "published_low": low, "published_high": high, "low": lo, "high": hi}
        )

    out = {
        "generator": {"script": "make_goldens.py", "numpy": np.__version__, "scipy": scipy.__version__},
        "datasets": datasets,
        "correlations": correlations,
        "permutations": permutations,
        "differences": differences,
        "hierarchical": hier,
        "published_fisher": published,
    }
    with open(os.path.join(HERE, "goldens.json"), "w") as fh:
        json.dump(out, fh, indent=1)
        fh.write("\n")


if __name__ == "__main__":
    main()
