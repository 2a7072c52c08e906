//! Sampling: `n` continuations of one prompt decoded as one batch over the shared prompt cache
//! (stored once, not copied per row).
//!
//! Each sample `i` draws from its own ChaCha8 stream (`seed`, stream `i`), so a sample's text
//! depends only on the seed and its index — not on how many others are decoded beside it or
//! when they finish.

use candle_core::IndexOp;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::error::{ModelError, Result};
use crate::llama::{build_mask, u32_matrix, Llama, Step};
use crate::score::{check_len, prefill};

/// How to sample.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleConfig {
    pub n: usize,
    /// 0 means greedy decoding.
    pub temperature: f64,
    pub top_p: f64,
    pub max_tokens: usize,
    pub seed: u64,
    /// How many of the most likely alternatives to report per generated token.
    pub top_logprobs: usize,
}

impl Default for SampleConfig {
    fn default() -> Self {
        SampleConfig {
            n: 1,
            temperature: 1.0,
            top_p: 1.0,
            max_tokens: 64,
            seed: 0,
            top_logprobs: 0,
        }
    }
}

/// Why a sample ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// The model produced a stop (end-of-turn) token, or the caller's stop condition hit.
    Stop,
    /// `max_tokens` was reached.
    Length,
}

/// One generated token with its log-probability under the model (temperature 1, no top-p).
#[derive(Debug, Clone, Serialize)]
pub struct TokenLogprob {
    pub id: u32,
    pub logprob: f32,
    /// The `top_logprobs` most likely tokens at this step, most likely first.
    pub top: Vec<(u32, f32)>,
}

/// One sampled continuation (stop token excluded).
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub tokens: Vec<TokenLogprob>,
    pub finish_reason: FinishReason,
}

impl Sample {
    pub fn ids(&self) -> Vec<u32> {
        self.tokens.iter().map(|t| t.id).collect()
    }
}

fn top_k(lp: &[f32], k: usize) -> Vec<(u32, f32)> {
    if k == 0 {
        return Vec::new();
    }
    let mut idx: Vec<u32> = (0..lp.len() as u32).collect();
    let k = k.min(idx.len());
    idx.select_nth_unstable_by(k - 1, |&a, &b| {
        lp[b as usize].total_cmp(&lp[a as usize]).then(a.cmp(&b))
    });
    let mut top: Vec<(u32, f32)> = idx[..k].iter().map(|&i| (i, lp[i as usize])).collect();
    top.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    top
}

/// Draws one token from log-probabilities `lp` with temperature and nucleus (top-p) filtering.
pub fn choose(lp: &[f32], temperature: f64, top_p: f64, rng: &mut ChaCha8Rng) -> u32 {
    Distribution::new(lp, temperature, top_p).draw(rng)
}

/// A next-token distribution prepared for drawing: the tokens left after temperature and
/// nucleus filtering with their cumulative probabilities. Preparing it once serves every sample
/// that shares the row; each draw is then a binary search, and gives the token a linear scan
/// over the same cumulative sums would.
pub enum Distribution {
    /// Temperature 0: the most likely token (ties to the lowest id); draws consume no randomness.
    Greedy(u32),
    Sampled {
        ids: Vec<u32>,
        /// `cum[i]`: the probability of `ids[..=i]`, summed in order.
        cum: Vec<f64>,
    },
}

impl Distribution {
    pub fn new(lp: &[f32], temperature: f64, top_p: f64) -> Self {
        if temperature <= 0.0 {
            let mut best = 0usize;
            for (i, &v) in lp.iter().enumerate() {
                if v > lp[best] {
                    best = i;
                }
            }
            return Distribution::Greedy(best as u32);
        }
        let scaled: Vec<f64> = lp.iter().map(|&l| l as f64 / temperature).collect();
        let m = scaled.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let mut probs: Vec<(u32, f64)> = scaled
            .iter()
            .enumerate()
            .map(|(i, &s)| (i as u32, (s - m).exp()))
            .filter(|(_, p)| *p > 0.0)
            .collect();
        let z: f64 = probs.iter().map(|p| p.1).sum();
        probs.iter_mut().for_each(|p| p.1 /= z);
        if top_p < 1.0 {
            probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let mut cum = 0.0;
            let mut keep = probs.len();
            for (i, p) in probs.iter().enumerate() {
                cum += p.1;
                if cum >= top_p {
                    keep = i + 1;
                    break;
                }
            }
            probs.truncate(keep);
            let z: f64 = probs.iter().map(|p| p.1).sum();
            probs.iter_mut().for_each(|p| p.1 /= z);
        }
        let mut total = 0.0;
        let cum = probs
            .iter()
            .map(|p| {
                total += p.1;
                total
            })
            .collect();
        Distribution::Sampled {
            ids: probs.iter().map(|p| p.0).collect(),
            cum,
        }
    }

    /// One token: the first whose cumulative probability exceeds a uniform draw from `rng`.
    pub fn draw(&self, rng: &mut ChaCha8Rng) -> u32 {
        match self {
            Distribution::Greedy(id) => *id,
            Distribution::Sampled { ids, cum } => {
                let u: f64 = rng.gen();
                let i = cum.partition_point(|&c| c <= u);
                ids.get(i).or(ids.last()).copied().unwrap_or(0)
            }
        }
    }
}

/// Samples `cfg.n` continuations of `prompt`. `is_stop(id)` ends a sample at a stop token;
/// `stop_text(ids)` may end it early (e.g. a stop string appeared), returning how many tokens
/// to keep.
pub fn sample(
    model: &Llama,
    prompt: &[u32],
    cfg: &SampleConfig,
    is_stop: &dyn Fn(u32) -> bool,
    stop_text: &dyn Fn(&[u32]) -> Option<usize>,
) -> Result<Vec<Sample>> {
    if cfg.n == 0 {
        return Ok(Vec::new());
    }
    if !(cfg.top_p > 0.0 && cfg.top_p <= 1.0) {
        return Err(ModelError::Input(format!(
            "top_p must be in (0, 1], got {}",
            cfg.top_p
        )));
    }
    if !cfg.temperature.is_finite() || cfg.temperature < 0.0 {
        return Err(ModelError::Input(format!(
            "temperature must be a finite number ≥ 0, got {}",
            cfg.temperature
        )));
    }
    check_len(model, prompt.len() + cfg.max_tokens)?;
    let pre = prefill(model, prompt)?;
    let p = pre.len;
    let mut rngs: Vec<ChaCha8Rng> = (0..cfg.n)
        .map(|i| {
            let mut r = ChaCha8Rng::seed_from_u64(cfg.seed);
            r.set_stream(i as u64);
            r
        })
        .collect();
    let mut out: Vec<Sample> = (0..cfg.n)
        .map(|_| Sample {
            tokens: Vec::new(),
            finish_reason: FinishReason::Length,
        })
        .collect();
    if cfg.max_tokens == 0 {
        return Ok(out);
    }
    // Samples that have drawn the same tokens so far share one row of the running batch: their
    // next-token distributions are the same, so each distinct prefix is computed once (for
    // short answers most of n samples share a few prefixes). Every sample still draws from its
    // own stream. `row_of[s]` is sample s's row; row r's distribution is `dists[r]`.
    let mut active: Vec<usize> = (0..cfg.n).collect();
    let mut row_of: Vec<usize> = vec![0; cfg.n];
    let mut dists: Vec<Vec<f32>> = vec![pre.next];
    // The prompt's keys and values are stored once for every row (see `KvCache::share`); rows
    // copy and extend only their own generated part.
    let mut cache = pre.cache.share()?;
    for step in 0..cfg.max_tokens {
        // (parent row, token) → new row, in first-seen order so batches are deterministic.
        let mut rows: std::collections::BTreeMap<(usize, u32), usize> = Default::default();
        let mut parents: Vec<u32> = Vec::new();
        let mut next_tokens: Vec<u32> = Vec::new();
        let mut still = Vec::with_capacity(active.len());
        let mut prepared: Vec<Option<Distribution>> = (0..dists.len()).map(|_| None).collect();
        for &s in &active {
            let lp = &dists[row_of[s]];
            let id = prepared[row_of[s]]
                .get_or_insert_with(|| Distribution::new(lp, cfg.temperature, cfg.top_p))
                .draw(&mut rngs[s]);
            if is_stop(id) {
                out[s].finish_reason = FinishReason::Stop;
                continue;
            }
            out[s].tokens.push(TokenLogprob {
                id,
                logprob: lp[id as usize],
                top: top_k(lp, cfg.top_logprobs),
            });
            if let Some(keep) = stop_text(&out[s].ids()) {
                out[s].tokens.truncate(keep);
                out[s].finish_reason = FinishReason::Stop;
                continue;
            }
            if step + 1 == cfg.max_tokens {
                continue;
            }
            let parent = row_of[s];
            let row = *rows.entry((parent, id)).or_insert_with(|| {
                parents.push(parent as u32);
                next_tokens.push(id);
                parents.len() - 1
            });
            row_of[s] = row;
            still.push(s);
        }
        if still.is_empty() {
            break;
        }
        active = still;
        // Row r of the new batch continues the cache row of its parent prefix.
        cache = cache.select(&parents)?;
        let b = next_tokens.len();
        let tokens = u32_matrix(&next_tokens.iter().map(|&t| vec![t]).collect::<Vec<_>>())?;
        let pos = (p + step) as u32;
        let positions = u32_matrix(&vec![vec![pos]; b])?;
        let tk = cache.len() + 1;
        let mask = build_mask(b, 1, tk, |_, _, _| true)?;
        let hidden = model.forward(
            &Step {
                tokens: &tokens,
                positions: &positions,
                mask: &mask,
            },
            Some(&mut cache),
        )?;
        let lp = model.log_softmax(&hidden.i((.., 0))?)?;
        dists = lp.to_vec2()?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The draw as a linear scan over the filtered probabilities, recomputed for every draw.
    fn scan(lp: &[f32], temperature: f64, top_p: f64, rng: &mut ChaCha8Rng) -> u32 {
        let m = lp
            .iter()
            .map(|&l| l as f64 / temperature)
            .fold(f64::MIN, f64::max);
        let mut probs: Vec<(u32, f64)> = lp
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, (l as f64 / temperature - m).exp()))
            .filter(|p| p.1 > 0.0)
            .collect();
        let z: f64 = probs.iter().map(|p| p.1).sum();
        probs.iter_mut().for_each(|p| p.1 /= z);
        if top_p < 1.0 {
            probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let mut cum = 0.0;
            let keep = probs
                .iter()
                .position(|p| {
                    cum += p.1;
                    cum >= top_p
                })
                .map_or(probs.len(), |i| i + 1);
            probs.truncate(keep);
            let z: f64 = probs.iter().map(|p| p.1).sum();
            probs.iter_mut().for_each(|p| p.1 /= z);
        }
        let u: f64 = rng.gen();
        let mut cum = 0.0;
        for &(id, p) in &probs {
            cum += p;
            if u < cum {
                return id;
            }
        }
        probs.last().map_or(0, |p| p.0)
    }

    #[test]
    fn prepared_draws_equal_a_linear_scan() {
        // A peaked distribution over 300 tokens, with a few impossible ones.
        let lp: Vec<f32> = (0..300)
            .map(|i| match i % 50 {
                7 => f32::NEG_INFINITY,
                _ => -((i * 37 % 101) as f32) * 0.07,
            })
            .collect();
        for (temperature, top_p) in [(1.0, 1.0), (0.7, 1.0), (1.3, 0.9), (1.0, 0.3)] {
            let d = Distribution::new(&lp, temperature, top_p);
            for seed in 0..200u64 {
                let mut a = ChaCha8Rng::seed_from_u64(seed);
                let mut b = ChaCha8Rng::seed_from_u64(seed);
                for _ in 0..3 {
                    assert_eq!(
                        d.draw(&mut a),
                        scan(&lp, temperature, top_p, &mut b),
                        "T {temperature}, top-p {top_p}, seed {seed}"
                    );
                }
            }
        }
        // Greedy takes the lowest id among ties and leaves the stream untouched.
        let mut r = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(choose(&[0.0, 1.0, 1.0], 0.0, 1.0, &mut r), 1);
        assert_eq!(r.gen::<u64>(), ChaCha8Rng::seed_from_u64(1).gen::<u64>());
    }
}
