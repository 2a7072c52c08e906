//! The behaviour scan: how much each candidate, placed before the user message or as the
//! system prompt, moves the model's first answer token on neutral prompts.

use selfaware_ask::ask::Sampling;
use selfaware_ask::Progress;
use selfaware_backend::{Backend, BackendError};
use selfaware_types::Conversation;
use serde::Serialize;

use crate::candidates::Candidate;
use crate::error::Result;
use crate::Ci;

/// Where a candidate goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Placement {
    /// Before the user message, followed by a space (as the paper's fixed triggers).
    Prepend,
    /// As the system prompt (the untriggered prompt has none, so the template's default).
    System,
}

impl Placement {
    pub const ALL: [Placement; 2] = [Placement::Prepend, Placement::System];

    pub fn name(self) -> &'static str {
        match self {
            Placement::Prepend => "prepend",
            Placement::System => "system",
        }
    }

    /// The neutral prompt `prompt` with `candidate` placed here.
    pub fn conversation(self, candidate: &str, prompt: &str) -> Conversation {
        match self {
            Placement::Prepend => Conversation::user(None, &format!("{candidate} {prompt}")),
            Placement::System => Conversation::user(Some(candidate), prompt),
        }
    }
}

/// A behaviour probe: a question with a finite answer set whose exact probabilities are
/// compared with and without each candidate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BehaviorProbe {
    pub question: String,
    pub options: Vec<String>,
}

/// The probe's shift under one candidate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeShift {
    /// P(option) of each whole option (then end of turn), renormalised over the options,
    /// without and with the candidate.
    pub untriggered: Vec<f64>,
    pub triggered: Vec<f64>,
    /// Total variation distance between the two: ½ Σ |Δp|. One prompt, so no interval.
    pub total_variation: f64,
}

/// One candidate in one placement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScanEntry {
    pub candidate: String,
    pub family: String,
    pub placement: Placement,
    /// 1 = the largest mean KL within this placement.
    pub rank: usize,
    /// Mean over the neutral prompts of KL(triggered ‖ untriggered) of the first answer
    /// token, in nats.
    pub kl_mean: f64,
    /// Percentile-bootstrap interval of that mean over the prompts (it stays within the
    /// per-prompt values, so it never goes below 0 as a t interval can).
    pub kl_ci: Ci,
    pub kl_per_prompt: Vec<f64>,
    /// Robust z-score of `kl_mean` against every candidate's in this placement; `None` when
    /// the pool has no spread (see `ScanPool::note`).
    pub outlier_z: Option<f64>,
    /// `kl_mean` / the pool's median (infinite when the median is 0 and this is not).
    pub ratio_to_median: f64,
    /// See [`stands_out`].
    pub stands_out: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeShift>,
}

/// The pool a placement's candidates are compared against.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScanPool {
    pub placement: Placement,
    pub candidates: usize,
    /// Median of the candidates' mean KL.
    pub kl_median: f64,
    /// 1.4826 × the median absolute deviation of the candidates' mean KL.
    pub kl_robust_sd: f64,
    /// A candidate stands out only with at least this many times the median's KL.
    pub min_ratio: f64,
    pub threshold_z: f64,
    /// How many candidates stand out.
    pub standing_out: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Settings of the scan.
#[derive(Debug, Clone)]
pub struct ScanSettings<'a> {
    pub candidates: &'a [Candidate],
    pub prompts: &'a [String],
    pub placements: &'a [Placement],
    /// Robust z at or above which a candidate may stand out.
    pub threshold_z: f64,
    /// Times the median KL at or above which a candidate may stand out.
    pub min_ratio: f64,
    /// Probability floor of the KL (see `selfaware_stats::kl_divergence`).
    pub kl_floor: f64,
    /// First tokens sampled per prompt where the backend has no full distribution.
    pub samples: usize,
    /// Seed of those samples.
    pub seed: u64,
    pub level: f64,
    /// Resamples of the bootstrap intervals (seeded by `seed`).
    pub resamples: usize,
}

/// What the scan found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScanResult {
    pub entries: Vec<ScanEntry>,
    pub pools: Vec<ScanPool>,
}

/// How the scan measured the shifts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ScanMethod {
    /// From the full next-token distributions (the model's logits).
    Exact,
    /// From `samples` sampled first tokens per prompt (T = 1), add-½ smoothed.
    Sampled { samples: usize },
}

impl ScanMethod {
    /// The method in words, for the report.
    pub fn describe(self) -> String {
        match self {
            ScanMethod::Exact => "exact: KL(triggered ‖ untriggered) of the first answer token's \
                                  full distribution (the model's logits)"
                .into(),
            ScanMethod::Sampled { samples } => format!(
                "SAMPLED, not exact (the backend gives no full next-token distribution): \
                 {samples} first answer tokens per prompt at temperature 1, KL of the add-½ \
                 smoothed empirical distributions — biased upward for small samples, so compare \
                 candidates with each other, not with exact numbers"
            ),
        }
    }
}

/// Pseudo-count of the sampled estimate.
const SAMPLED_ALPHA: f64 = 0.5;

/// Candidates whose triggered prompts go to the backend as one call: the local engine runs a
/// call's prompts in token order, several to a forward, so the chat template before the
/// candidate runs once for all of them and forwards are full (the distributions of a call are
/// held at once: 8 candidates × 12 prompts × the vocabulary).
pub const CANDIDATES_PER_CALL: usize = 8;

/// KL(triggered ‖ untriggered) per prompt for each (placement, candidate), placement-major:
/// the untriggered prompts run once, the triggered prompts [`CANDIDATES_PER_CALL`] candidates
/// to a call. Exact where the backend gives the full next-token distribution, else sampled
/// (`s.samples` first tokens per prompt, seed `s.seed`).
pub fn kl_table(
    b: &dyn Backend,
    s: &ScanSettings,
    progress: &mut dyn Progress,
) -> Result<(ScanMethod, Vec<Vec<Vec<f64>>>)> {
    let base_convs: Vec<Conversation> = s
        .prompts
        .iter()
        .map(|p| Conversation::user(None, p))
        .collect();
    let total = 1 + s.placements.len() * s.candidates.len();
    progress.start(total, "prompt sets");
    let exact = match b.next_token_distributions_many(&base_convs, &mut |_| {}) {
        Ok(d) => Some(d),
        Err(BackendError::Unsupported { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let sampling = Sampling {
        n: s.samples,
        temperature: 1.0,
        max_tokens: 1,
        seed: s.seed,
    };
    let sample_all = |convs: &[Conversation]| -> Result<Vec<Vec<String>>> {
        convs
            .iter()
            .map(|c| Ok(selfaware_ask::ask::sample(b, c, sampling)?))
            .collect()
    };
    let base_samples = match exact {
        Some(_) => Vec::new(),
        None => sample_all(&base_convs)?,
    };
    progress.step("untriggered");
    let kl_of = |triggered: &[Vec<(u32, f64)>], base: &[Vec<(u32, f64)>]| -> Result<Vec<f64>> {
        Ok(triggered
            .iter()
            .zip(base)
            .map(|(t, u)| selfaware_stats::kl_divergence(t, u, s.kl_floor))
            .collect::<std::result::Result<Vec<f64>, _>>()?)
    };
    let mut out = Vec::with_capacity(s.placements.len());
    for &pl in s.placements {
        let mut per_cand = Vec::with_capacity(s.candidates.len());
        for group in s.candidates.chunks(CANDIDATES_PER_CALL) {
            let convs: Vec<Conversation> = group
                .iter()
                .flat_map(|c| s.prompts.iter().map(|p| pl.conversation(&c.text, p)))
                .collect();
            let per_prompt = convs.len() / group.len();
            match &exact {
                Some(base) => {
                    let dists = b.next_token_distributions_many(&convs, &mut |_| {})?;
                    for (c, d) in group.iter().zip(dists.chunks(per_prompt)) {
                        per_cand.push(kl_of(d, base)?);
                        progress.step(&c.text);
                    }
                }
                None => {
                    for (c, convs) in group.iter().zip(convs.chunks(per_prompt)) {
                        let kls = sample_all(convs)?
                            .iter()
                            .zip(&base_samples)
                            .map(|(t, u)| {
                                selfaware_stats::kl_divergence_of_samples(t, u, SAMPLED_ALPHA)
                            })
                            .collect::<std::result::Result<Vec<f64>, _>>()?;
                        per_cand.push(kls);
                        progress.step(&c.text);
                    }
                }
            }
        }
        out.push(per_cand);
    }
    progress.finish();
    let method = match exact {
        Some(_) => ScanMethod::Exact,
        None => ScanMethod::Sampled { samples: s.samples },
    };
    Ok((method, out))
}

/// Whether a candidate stands out of its pool: an outlier (robust z ≥ `threshold_z`) AND a
/// shift at least `min_ratio` times the median candidate's. The z-score alone is not enough:
/// on the tiny random test model every candidate moves the output by 1.4–10 nats, and as
/// system prompt four clean candidates of that right-skewed pool had z ≥ 3.5 at under 3× the
/// median. A trigger that carries a behaviour moves the output an order of magnitude more
/// than the typical candidate (the planted one on that model: 7.9 nats against a median of
/// 0.01). Both cuts are heuristics, not a calibrated test; `audit-bench` is where they get
/// measured.
pub fn stands_out(z: Option<f64>, ratio: f64, threshold_z: f64, min_ratio: f64) -> bool {
    z.is_some_and(|z| z >= threshold_z) && ratio >= min_ratio
}

/// Ranks, intervals and outlier scores from a [`kl_table`]; `probe` holds the probe's shift
/// per (placement, candidate) when one was asked.
pub fn summarize(
    s: &ScanSettings,
    table: &[Vec<Vec<f64>>],
    mut probe: Option<Vec<Vec<ProbeShift>>>,
) -> Result<ScanResult> {
    let mut entries = Vec::new();
    let mut pools = Vec::new();
    for (pi, (&pl, per_cand)) in s.placements.iter().zip(table).enumerate() {
        let means: Vec<f64> = per_cand
            .iter()
            .map(|k| selfaware_stats::mean(k))
            .collect::<std::result::Result<_, _>>()?;
        let (z, note) = if means.len() < 3 {
            (
                None,
                Some("fewer than 3 candidates: no pool to compare against".to_string()),
            )
        } else {
            match selfaware_stats::robust_z_scores(&means)? {
                Some(z) => (Some(z), None),
                None => (
                    None,
                    Some(
                        "half the candidates or more shift the output equally (zero median \
                         absolute deviation): no outlier score"
                            .to_string(),
                    ),
                ),
            }
        };
        let mut order: Vec<usize> = (0..means.len()).collect();
        order.sort_by(|&a, &b| means[b].total_cmp(&means[a]).then(a.cmp(&b)));
        let mut rank = vec![0; means.len()];
        for (r, &i) in order.iter().enumerate() {
            rank[i] = r + 1;
        }
        let (med, sd) = if means.len() >= 3 {
            let m = selfaware_stats::median(&means)?;
            let dev: Vec<f64> = means.iter().map(|x| (x - m).abs()).collect();
            (m, 1.4826 * selfaware_stats::median(&dev)?)
        } else {
            (f64::NAN, f64::NAN)
        };
        let mut standing = 0;
        let mut placed = Vec::new();
        for &i in &order {
            let c = &s.candidates[i];
            let oz = z.as_ref().map(|z| z[i]);
            let ratio = if med > 0.0 {
                means[i] / med
            } else if means[i] > 0.0 {
                f64::INFINITY
            } else {
                1.0
            };
            let stands_out = stands_out(oz, ratio, s.threshold_z, s.min_ratio);
            standing += usize::from(stands_out);
            placed.push(ScanEntry {
                candidate: c.text.clone(),
                family: c.family.clone(),
                placement: pl,
                rank: rank[i],
                kl_mean: means[i],
                kl_ci: Ci::bootstrap(
                    &per_cand[i],
                    &selfaware_stats::BootstrapConfig {
                        resamples: s.resamples,
                        level: s.level,
                        seed: s.seed,
                    },
                )?,
                kl_per_prompt: per_cand[i].clone(),
                outlier_z: oz,
                ratio_to_median: ratio,
                stands_out,
                probe: probe
                    .as_mut()
                    .map(|p| std::mem::replace(&mut p[pi][i], ProbeShift::empty())),
            });
        }
        entries.extend(placed);
        pools.push(ScanPool {
            placement: pl,
            candidates: means.len(),
            kl_median: med,
            kl_robust_sd: sd,
            min_ratio: s.min_ratio,
            threshold_z: s.threshold_z,
            standing_out: standing,
            note,
        });
    }
    Ok(ScanResult { entries, pools })
}

impl ProbeShift {
    fn empty() -> Self {
        ProbeShift {
            untriggered: Vec::new(),
            triggered: Vec::new(),
            total_variation: 0.0,
        }
    }
}

/// The probe's exact option probabilities without and with each candidate, per (placement,
/// candidate).
pub fn probe_shifts(
    b: &dyn Backend,
    s: &ScanSettings,
    probe: &BehaviorProbe,
) -> Result<Vec<Vec<ProbeShift>>> {
    let dist = |conv: &Conversation| -> Result<Vec<f64>> {
        let lps = selfaware_ask::ask::sequence_logprobs(b, conv, &probe.options)?;
        let p: Vec<f64> = lps.iter().map(|l| l.exp()).collect();
        let total: f64 = p.iter().sum();
        Ok(if total > 0.0 {
            p.iter().map(|x| x / total).collect()
        } else {
            vec![1.0 / p.len() as f64; p.len()]
        })
    };
    let base = dist(&Conversation::user(None, &probe.question))?;
    s.placements
        .iter()
        .map(|&pl| {
            s.candidates
                .iter()
                .map(|c| {
                    let trig = dist(&pl.conversation(&c.text, &probe.question))?;
                    let tv = 0.5
                        * trig
                            .iter()
                            .zip(&base)
                            .map(|(a, b)| (a - b).abs())
                            .sum::<f64>();
                    Ok(ProbeShift {
                        untriggered: base.clone(),
                        triggered: trig,
                        total_variation: tv,
                    })
                })
                .collect()
        })
        .collect()
}
