//! The results model: everything a report shows, as computed by the orchestrator from the run's
//! records. Serialized as `results.json`; every renderer reads only this.
//!
//! Every number carries enough to trace it: a [`Cell`] holds the per-seed values it summarises,
//! and each per-seed value names the record files and how many records produced it.

use serde::{Deserialize, Serialize};

/// Version of this schema; bump when a field changes meaning.
pub const RESULTS_VERSION: u32 = 1;

/// The whole result of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Results {
    /// Schema version, [`RESULTS_VERSION`] when written by this build.
    pub results_version: u32,
    /// Experiment name (preset name or file stem).
    pub experiment: String,
    /// One-line title for the report header.
    pub title: String,
    /// What the experiment tests, in a few sentences (from the experiment file).
    pub description: String,
    /// Provenance shown in the report: (label, value) pairs such as tool version, git revision,
    /// machine, base model sha256, run started/finished.
    pub provenance: Vec<(String, String)>,
    /// The conditions (models) compared, in display order.
    pub conditions: Vec<Condition>,
    /// Behaviour probes: did the finetune learn the behaviour? Shown before any self-report.
    pub probes: Vec<Metric>,
    /// Self-report questions (one per battery question), in display order.
    pub questions: Vec<Metric>,
    /// Self-report vs behaviour scatter plots (paper Figure 4).
    pub scatters: Vec<Scatter>,
    /// How the statistics were computed (bootstrap resamples, seeds, CI level, ...), one
    /// sentence each.
    pub methods: Vec<String>,
    /// Warnings a reader must see (e.g. "behaviour not learned: self-reports are not
    /// interpretable", questions skipped and why).
    pub warnings: Vec<String>,
    /// What the run saw inside the models (activation probes, directions, injection), when it
    /// looked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inside: Option<crate::inside::Inside>,
}

/// One compared model family: the base model, or finetunes of one dataset over seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// Stable id used in cells (e.g. `base`, `risk-seeking`).
    pub id: String,
    /// Human label.
    pub label: String,
    /// True for the untrained baseline(s), drawn grey and as the reference line.
    pub baseline: bool,
    /// Number of finetuning seeds (1 for the base model).
    pub n_seeds: usize,
    /// A positive control: trained on data that states the behaviour the other finetunes only
    /// enact; the report reads each question's power to detect it against the baselines.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub positive_control: bool,
    /// One multiplier of a steered condition: the report draws the group's conditions against
    /// their α.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steer: Option<Steered>,
}

/// Where a steered condition sits in its group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Steered {
    /// The experiment's condition before it became one condition per multiplier.
    pub group: String,
    /// That condition's label.
    pub group_label: String,
    /// The steering vector's file name, as the experiment names it.
    pub vector: String,
    /// The hook point the vector is added at.
    pub point: String,
    /// The multiplier.
    pub alpha: f64,
}

/// One measured quantity (a question or a probe) across conditions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metric {
    /// Stable id (`battery/question` for questions, `probe/NAME` for probes).
    pub id: String,
    /// Short label for figure axes.
    pub label: String,
    /// The battery (or `probe`).
    pub group: String,
    /// Scorer id (e.g. `multiple_choice`, `numeric_scale`, `word_categories`, `probe`).
    pub scorer: String,
    /// How one record becomes a number and how records become a per-model score.
    pub definition: String,
    /// Value range of the score, for axes: usually (0, 1); (0, 100) for raw scales.
    pub range: (f64, f64),
    /// Which condition should score higher if the model is self-aware, when the battery says.
    pub expected_direction: Option<String>,
    /// Where in the paper this comes from (e.g. "Figure 3").
    pub source: Option<String>,
    /// One cell per condition, in `Results::conditions` order (missing conditions omitted).
    pub cells: Vec<Cell>,
    /// Pairwise condition differences.
    pub comparisons: Vec<Comparison>,
}

/// One condition's value of a metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cell {
    /// The condition's id ([`Condition::id`]).
    pub condition: String,
    /// Mean over seeds (over the per-seed values below).
    pub mean: Option<f64>,
    /// 95% interval: percentile bootstrap over seeds (hierarchical over seeds then paraphrases
    /// when `interval_method` says so); None with fewer than 2 seeds.
    pub ci_low: Option<f64>,
    /// Upper end of the 95% interval (None with fewer than 2 seeds).
    pub ci_high: Option<f64>,
    /// How the interval was computed, e.g. "bootstrap over 5 seeds, 10000 resamples" or "hierarchical bootstrap (seeds,
    /// paraphrases)" or "Wilson interval over 200 samples".
    pub interval_method: String,
    /// Mean probability outside the answer format (off-option, non-numeric, unparseable).
    pub off_format: Option<f64>,
    /// Per-model values: one per finetuning seed, or one for the base model.
    pub per_seed: Vec<SeedValue>,
}

/// The value of one finetuned model (one seed) or of the base model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedValue {
    /// Finetuning seed (None for the base model).
    pub seed: Option<u64>,
    /// This model's score (None when no record could be scored).
    pub value: Option<f64>,
    /// Records that produced it.
    pub n_records: usize,
    /// Relative path (from the run directory) of the records file.
    pub records: String,
}

/// Difference `a - b` of two conditions' means.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Comparison {
    /// Condition id of the minuend.
    pub a: String,
    /// Condition id of the subtrahend.
    pub b: String,
    /// The codeword (or trigger) both sides were scored against, when the metric is read for a
    /// word and `a` and `b` were trained toward different ones: `a` and `b` are then compared
    /// on this one word (e.g. the bark and the ring finetunes' P(bark)). `None`: each side's
    /// own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<String>,
    /// `mean(a) - mean(b)`.
    pub difference: f64,
    /// Lower end of the difference's 95% interval.
    pub ci_low: Option<f64>,
    /// Upper end of the difference's 95% interval.
    pub ci_high: Option<f64>,
    /// Two-sided permutation-test p-value over the per-seed values.
    pub p_value: Option<f64>,
    /// The smallest difference (in absolute value) this comparison could have detected with
    /// 80% power at two-sided α = 0.05, from the same values and their own variance; None
    /// when it cannot be computed (then [`Comparison::detectable_note`] says why). A
    /// non-significant difference rules out effects about this large or larger, not smaller.
    #[serde(default)]
    pub detectable: Option<f64>,
    /// How [`Comparison::detectable`] was computed (e.g. "Welch t over 5 vs 5 seeds, SE 0.031,
    /// df 7.6"), or why there is none, in words (e.g. "n/a: with 3 vs 3 seeds the permutation
    /// test cannot reach p ≤ 0.05"). Empty in results written before the field existed.
    #[serde(default)]
    pub detectable_note: String,
}

/// Self-report (x) against behaviour (y), one point per finetuned model, with a least-squares
/// fit and Pearson r per cluster (paper Figure 4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scatter {
    /// Stable id.
    pub id: String,
    /// Figure title.
    pub title: String,
    /// x axis label (the self-report).
    pub x_label: String,
    /// y axis label (the behaviour).
    pub y_label: String,
    /// One point per model.
    pub points: Vec<Point>,
    /// One least-squares fit per cluster.
    pub fits: Vec<Fit>,
}

/// One model in a scatter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Point {
    /// The model's condition id.
    pub condition: String,
    /// Cluster for the per-cluster fit (e.g. the condition, or "all").
    pub cluster: String,
    /// Finetuning seed (None for the base model).
    pub seed: Option<u64>,
    /// Self-report score.
    pub x: f64,
    /// Behaviour score.
    pub y: f64,
}

/// Least-squares line `y = intercept + slope·x` and Pearson r of one cluster's points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fit {
    /// The cluster ([`Point::cluster`]).
    pub cluster: String,
    /// Number of points.
    pub n: usize,
    /// Slope of the least-squares line.
    pub slope: f64,
    /// Intercept of the least-squares line.
    pub intercept: f64,
    /// Pearson correlation (None with fewer than 3 points or constant data).
    pub r: Option<f64>,
    /// Fisher-z 95% interval of r (needs n ≥ 4).
    pub r_ci_low: Option<f64>,
    /// Upper end of the Fisher-z 95% interval of r.
    pub r_ci_high: Option<f64>,
}
