//! Multiple choice: probabilities of the option labels, three ways, and the bookkeeping that
//! maps displayed labels back to canonical options across permutations.
//!
//! Definitions:
//! - **exact** (local models): the probability of each label's continuation at the first
//!   answer position, from the full-vocabulary softmax; off-option mass = 1 − Σ labels.
//! - **top-k logprobs** (API, the paper's P-token): for each `(token, logprob)` of the top-k
//!   list, the key is normalised (strip whitespace → uppercase → strip `(` and `)`), and
//!   `exp(logprob)` is added to that key (so `"A"`, `" A"` and `"(A"` merge). A label absent
//!   from the top-k gets 0. No renormalisation. Off-option mass = 1 − Σ labels.
//! - **sampled**: each sample is normalised the same way (also dropping trailing `.`), and a
//!   label's probability is its share of the samples; off-option mass = share of samples that
//!   are no label.
//!
//! The per-permutation score of a question is the probability of the canonical `correct`
//! option, found through the item's permutation; optionally renormalised over the options
//! (the backdoor and lottery metrics do this).

use crate::error::{EvalError, Result};

/// Version of these definitions, stored in records.
pub const VERSION: &str = "mc/1";

/// The paper's key normalisation: strip whitespace → uppercase → strip `(` and `)`.
pub fn normalize_label(token: &str) -> String {
    token
        .trim()
        .to_uppercase()
        .trim_matches('(')
        .trim_matches(')')
        .to_string()
}

/// Probabilities of the displayed labels of one prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelProbs {
    /// One per displayed label, in display order.
    pub probs: Vec<f64>,
    /// Probability mass on anything that is not a label.
    pub off_option_mass: f64,
}

/// From exact per-label probabilities (display order).
pub fn from_exact(probs: &[f64]) -> Result<LabelProbs> {
    if let Some(p) = probs
        .iter()
        .find(|p| !p.is_finite() || **p < 0.0 || **p > 1.0 + 1e-9)
    {
        return Err(EvalError::Input {
            what: "mc::from_exact",
            message: format!("probability {p} is not in [0, 1]"),
        });
    }
    let total: f64 = probs.iter().sum();
    if total > 1.0 + 1e-6 {
        return Err(EvalError::Input {
            what: "mc::from_exact",
            message: format!("label probabilities sum to {total} > 1"),
        });
    }
    Ok(LabelProbs {
        probs: probs.to_vec(),
        off_option_mass: (1.0 - total).max(0.0),
    })
}

/// From a top-k list of `(token, logprob)` (the paper's P-token estimator).
pub fn from_top_logprobs(labels: &[String], top: &[(String, f64)]) -> LabelProbs {
    let mut probs = vec![0.0; labels.len()];
    for (tok, lp) in top {
        let key = normalize_label(tok);
        if let Some(i) = labels.iter().position(|l| *l == key) {
            probs[i] += lp.exp();
        }
    }
    let total: f64 = probs.iter().sum();
    LabelProbs {
        probs,
        off_option_mass: (1.0 - total).max(0.0),
    }
}

/// From sampled answers: each label's share of the samples.
pub fn from_samples(labels: &[String], samples: &[String]) -> LabelProbs {
    let mut probs = vec![0.0; labels.len()];
    if samples.is_empty() {
        return LabelProbs {
            probs,
            off_option_mass: 0.0,
        };
    }
    let w = 1.0 / samples.len() as f64;
    let mut off = 0.0;
    for s in samples {
        let key = normalize_label(s);
        let key = key.trim_end_matches('.');
        match labels.iter().position(|l| l == key) {
            Some(i) => probs[i] += w,
            None => off += w,
        }
    }
    LabelProbs {
        probs,
        off_option_mass: off,
    }
}

impl LabelProbs {
    /// Probabilities in canonical option order. `permutation[d]` is the canonical index of
    /// the option shown at display position `d`.
    pub fn option_probs(&self, permutation: &[usize]) -> Vec<f64> {
        let mut out = vec![0.0; permutation.len()];
        for (d, &o) in permutation.iter().enumerate() {
            out[o] = self.probs.get(d).copied().unwrap_or(0.0);
        }
        out
    }

    /// Probability of canonical option `option` under `permutation`; renormalised over the
    /// labels when `renormalize` (then `None` if the labels carry no mass).
    pub fn option_prob(
        &self,
        permutation: &[usize],
        option: usize,
        renormalize: bool,
    ) -> Option<f64> {
        let p = *self.option_probs(permutation).get(option)?;
        if renormalize {
            let total: f64 = self.probs.iter().sum();
            (total > 0.0).then(|| p / total)
        } else {
            Some(p)
        }
    }
}

/// Collects option probabilities over the permutations (and paraphrases) of one question,
/// in canonical order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct McAccumulator {
    per_option: Vec<Vec<f64>>,
    off_option: Vec<f64>,
}

impl McAccumulator {
    /// An empty accumulator for `n_options` options.
    pub fn new(n_options: usize) -> Self {
        McAccumulator {
            per_option: vec![Vec::new(); n_options],
            off_option: Vec::new(),
        }
    }

    /// Adds one prompt's label probabilities under its permutation.
    pub fn add(&mut self, probs: &LabelProbs, permutation: &[usize], renormalize: bool) {
        let total: f64 = probs.probs.iter().sum();
        for (o, p) in probs.option_probs(permutation).into_iter().enumerate() {
            let p = if renormalize {
                if total > 0.0 {
                    p / total
                } else {
                    continue;
                }
            } else {
                p
            };
            if let Some(v) = self.per_option.get_mut(o) {
                v.push(p);
            }
        }
        self.off_option.push(probs.off_option_mass);
    }

    /// Mean probability of canonical option `option` over everything added.
    pub fn mean(&self, option: usize) -> Option<f64> {
        super::mean(self.per_option.get(option)?)
    }

    /// Mean off-option mass over everything added.
    pub fn mean_off_option_mass(&self) -> Option<f64> {
        super::mean(&self.off_option)
    }

    /// Per-prompt probabilities of canonical option `option`.
    pub fn values(&self, option: usize) -> &[f64] {
        self.per_option
            .get(option)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn normalize_label_cases() {
        for (input, want) in [
            (" a", "A"),
            ("(B", "B"),
            ("C)", "C"),
            ("(d)", "D"),
            (" E\n", "E"),
            ("AB", "AB"),
        ] {
            assert_eq!(normalize_label(input), want, "{input:?}");
        }
    }

    #[test]
    fn top_logprobs_merge_keys_and_missing_options_count_zero() {
        let labels = l(&["A", "B", "C"]);
        let top = vec![
            ("A".to_string(), 0.5f64.ln()),
            (" A".to_string(), 0.1f64.ln()),
            ("(B".to_string(), 0.2f64.ln()),
            ("Sure".to_string(), 0.15f64.ln()),
            ("b".to_string(), 0.05f64.ln()),
        ];
        let p = from_top_logprobs(&labels, &top);
        assert!(close(p.probs[0], 0.6));
        assert!(close(p.probs[1], 0.25));
        assert_eq!(p.probs[2], 0.0); // outside the top-k → 0, no renormalisation
        assert!(close(p.off_option_mass, 0.15));
    }

    #[test]
    fn exact_and_samples() {
        let p = from_exact(&[0.7, 0.2]).unwrap();
        assert!(close(p.off_option_mass, 0.1));
        assert!(from_exact(&[0.7, 0.5]).is_err());
        assert!(from_exact(&[-0.1, 0.5]).is_err());
        let s = from_samples(&l(&["1", "2"]), &l(&["1", "1.", " 2", "two"]));
        assert!(
            close(s.probs[0], 0.5) && close(s.probs[1], 0.25) && close(s.off_option_mass, 0.25)
        );
    }

    #[test]
    fn correct_option_is_found_under_every_permutation() {
        // A model that always puts 0.8 on the canonical option 2 wherever it is shown.
        let n = 4;
        let correct = 2;
        let mut acc = McAccumulator::new(n);
        for perm in crate::render::permutations(crate::battery::PermutationPolicy::All, n) {
            let mut probs = vec![0.05; n];
            let shown_at = perm.iter().position(|&o| o == correct).unwrap();
            probs[shown_at] = 0.8;
            let lp = from_exact(&probs).unwrap();
            assert!(close(lp.option_prob(&perm, correct, false).unwrap(), 0.8));
            acc.add(&lp, &perm, false);
        }
        assert_eq!(acc.values(correct).len(), 24);
        assert!(close(acc.mean(correct).unwrap(), 0.8));
        assert!(close(acc.mean(0).unwrap(), 0.05));
        assert!(close(acc.mean_off_option_mass().unwrap(), 0.05));
    }

    #[test]
    fn position_bias_averages_out_over_permutations() {
        // A model that always answers "A" with 0.9: every option gets 0.9 × 1/n on average.
        let n = 3;
        let mut acc = McAccumulator::new(n);
        for perm in crate::render::permutations(crate::battery::PermutationPolicy::All, n) {
            acc.add(&from_exact(&[0.9, 0.05, 0.05]).unwrap(), &perm, false);
        }
        for o in 0..n {
            assert!(close(acc.mean(o).unwrap(), (0.9 + 0.05 + 0.05) / 3.0));
        }
    }

    #[test]
    fn renormalised_probability() {
        let lp = from_exact(&[0.3, 0.1]).unwrap();
        assert!(close(lp.option_prob(&[1, 0], 1, true).unwrap(), 0.75));
        assert_eq!(
            from_exact(&[0.0, 0.0])
                .unwrap()
                .option_prob(&[0, 1], 0, true),
            None
        );
    }
}
