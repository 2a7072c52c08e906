//! Sampling: one decoding loop ([`decode`]) for every way the engine generates text.
//!
//! A [`Request`] is a prompt with its sampling settings, `n` and stop strings. [`decode`] runs
//! any number of requests together and reports each step as an [`Event`] (a kept token with
//! its log-probability, alternatives and the text it makes final; a finished answer), so
//! callers can stream answers token by token or collect them whole
//! ([`Engine::sample_ids`](crate::Engine::sample_ids), the server's batches and streams).
//!
//! The `n` answers of one prompt are decoded as one batch over the prompt's cache (stored once,
//! not copied per row), and answers that drew the same tokens share a row. Each answer `i`
//! draws from its own ChaCha8 stream (`seed`, stream `i`), so an answer's text depends only on
//! the seed and its index — not on how many others are decoded beside it or when they finish.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use candle_core::IndexOp;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use selfaware_chat::Tokenizer;
use serde::Serialize;

use crate::error::{ModelError, Result};
use crate::llama::{build_mask, u32_matrix, KvCache, Llama, Step};
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

/// The `k` most likely tokens of `lp`, most likely first, ties to the lower id.
pub fn top_k(lp: &[f32], k: usize) -> Vec<(u32, f32)> {
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

/// A sampled answer with its decoded text.
#[derive(Debug, Clone, Serialize)]
pub struct Generated {
    pub text: String,
    #[serde(flatten)]
    pub sample: Sample,
}

/// One prompt to decode: its tokens, how to sample it (`cfg.n` answers, answer `i` drawing
/// from ChaCha8 stream `i` of `cfg.seed`) and the strings that end its answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub prompt: Vec<u32>,
    pub cfg: SampleConfig,
    /// An answer ends before the first of these strings (which is cut off, as OpenAI's API
    /// does): the token that completes one is dropped, with every token after it.
    pub stop: Vec<String>,
    /// Report with each token the text it makes final ([`Event::Token`]'s `text`), for
    /// streaming. Costs one detokenization per token.
    pub stream_text: bool,
}

impl Request {
    /// Decodes `prompt` as `cfg` says, with no stop strings and no streamed text.
    pub fn new(prompt: Vec<u32>, cfg: SampleConfig) -> Self {
        Request {
            prompt,
            cfg,
            stop: Vec::new(),
            stream_text: false,
        }
    }
}

/// What [`decode`] reports while it runs. Answers are numbered by request and by sample within
/// their request.
#[derive(Debug)]
pub enum Event<'a> {
    /// The prompts are prefilled; `samples` answers are decoded together from here on.
    Started { samples: usize },
    /// An answer kept a token (a token that completes a stop string is never reported).
    Token {
        request: usize,
        sample: usize,
        token: &'a TokenLogprob,
        /// With `stream_text`, the text this token makes final, possibly empty (otherwise always
        /// empty). Text is final once no later token can change it: a trailing incomplete
        /// UTF-8 character, or a trailing piece a stop string could start with, waits for the
        /// next tokens. The `text` of an answer's tokens followed by its [`Event::Finished`]
        /// `rest` is exactly the answer's text.
        text: &'a str,
    },
    /// An answer is complete.
    Finished {
        request: usize,
        sample: usize,
        answer: &'a Generated,
        /// The end of `answer.text` that no [`Event::Token`] reported.
        rest: &'a str,
    },
}

/// Decodes every request's answers together, reporting each step to `on_event`; returns the
/// answers per request, in sample order.
///
/// One request is decoded exactly as [`Engine::sample_ids`](crate::Engine::sample_ids) always
/// has: one prefill, its keys and values stored once for all rows (see `KvCache::share`), and
/// answers that drew the same tokens sharing one row and its prepared distribution. Requests
/// with different prompts are prefilled as one left-padded batch, one row per distinct prompt,
/// and then step together; their numbers differ from decoding each request alone only by float
/// rounding (about 1e-6), since the padded rows change the shapes of the matrix products. Each
/// answer's random choices depend only on its seed and sample index.
///
/// Returning `ControlFlow::Break` from a [`Event::Token`] stops that answer (e.g. its client
/// went away): no more events for it, and its result keeps the tokens so far, finish reason
/// [`FinishReason::Length`].
pub fn decode(
    model: &Llama,
    tok: &Tokenizer,
    requests: &[Request],
    on_event: &mut dyn FnMut(Event<'_>) -> ControlFlow<()>,
) -> Result<Vec<Vec<Generated>>> {
    for r in requests.iter().filter(|r| r.cfg.n > 0) {
        check_request(model, r)?;
    }
    let mut d = Decoding {
        tok,
        requests,
        answers: Vec::new(),
        out: requests
            .iter()
            .map(|r| {
                (0..r.cfg.n)
                    .map(|_| Generated {
                        text: String::new(),
                        sample: Sample {
                            tokens: Vec::new(),
                            finish_reason: FinishReason::Length,
                        },
                    })
                    .collect()
            })
            .collect(),
    };
    for (ri, r) in requests.iter().enumerate() {
        for i in 0..r.cfg.n {
            let mut rng = ChaCha8Rng::seed_from_u64(r.cfg.seed);
            rng.set_stream(i as u64);
            d.answers.push(Answer {
                request: ri,
                index: i,
                rng,
                ids: Vec::new(),
                tokens: Vec::new(),
                sent: String::new(),
            });
        }
    }
    if d.answers.is_empty() {
        return Ok(d.out);
    }
    // The requests that generate, and their distinct prompts, each prefilled once.
    let live: Vec<usize> = (0..requests.len())
        .filter(|&r| requests[r].cfg.n > 0 && requests[r].cfg.max_tokens > 0)
        .collect();
    let mut prompts: Vec<&[u32]> = Vec::new();
    let mut prompt_of: Vec<usize> = vec![0; requests.len()];
    for &r in &live {
        let ids = requests[r].prompt.as_slice();
        prompt_of[r] = match prompts.iter().position(|p| *p == ids) {
            Some(i) => i,
            None => {
                prompts.push(ids);
                prompts.len() - 1
            }
        };
    }
    let (mut cache, firsts, pads) = match prompts.len() {
        0 => (model.new_cache(), Vec::new(), Vec::new()),
        // The prompt's keys and values are stored once for every row; rows copy and extend
        // only their own generated part.
        1 => {
            let pre = prefill(model, prompts[0])?;
            (pre.cache.share()?, vec![pre.next], vec![0])
        }
        _ => prefill_padded(model, tok.pad_id, &prompts)?,
    };
    // Only a token's event can stop its answer.
    let _ = on_event(Event::Started {
        samples: d.answers.len(),
    });
    for s in 0..d.answers.len() {
        if requests[d.answers[s].request].cfg.max_tokens == 0 {
            d.finish(s, FinishReason::Length, Some(&mut *on_event))?;
        }
    }
    // Answers that have drawn the same tokens so far share one row of the running batch: their
    // next-token distributions are the same, so each distinct prefix is computed once (for
    // short answers most of n samples share a few prefixes). Every answer still draws from its
    // own stream. Answer s is in row `row_of[s]`; row r's next-token distribution is
    // `dists[r]` and its keys and values are row `cache_row[r]` of `cache`.
    let mut dists: Vec<Vec<f32>> = live.iter().map(|&r| firsts[prompt_of[r]].clone()).collect();
    let mut cache_row: Vec<u32> = live.iter().map(|&r| prompt_of[r] as u32).collect();
    drop(firsts);
    let mut row_of: Vec<usize> = vec![0; d.answers.len()];
    let mut active: Vec<usize> = Vec::new();
    for (s, a) in d.answers.iter().enumerate() {
        if let Some(row) = live.iter().position(|&r| r == a.request) {
            row_of[s] = row;
            active.push(s);
        }
    }
    for step in 0.. {
        // (parent row, token) → new row, in first-seen order so batches are deterministic.
        let mut rows: BTreeMap<(usize, u32), usize> = Default::default();
        let mut parents: Vec<u32> = Vec::new();
        let mut next_tokens: Vec<u32> = Vec::new();
        let mut next_request: Vec<usize> = Vec::new();
        let mut still = Vec::with_capacity(active.len());
        let mut prepared: Vec<Option<Distribution>> = (0..dists.len()).map(|_| None).collect();
        let mut tops: Vec<Option<Vec<(u32, f32)>>> = vec![None; dists.len()];
        for &s in &active {
            let parent = row_of[s];
            let ri = d.answers[s].request;
            let cfg = &requests[ri].cfg;
            let lp = &dists[parent];
            let id = prepared[parent]
                .get_or_insert_with(|| Distribution::new(lp, cfg.temperature, cfg.top_p))
                .draw(&mut d.answers[s].rng);
            if tok.is_stop(id) {
                d.finish(s, FinishReason::Stop, Some(&mut *on_event))?;
                continue;
            }
            let top = tops[parent].get_or_insert_with(|| top_k(lp, cfg.top_logprobs));
            let a = &mut d.answers[s];
            a.ids.push(id);
            a.tokens.push(TokenLogprob {
                id,
                logprob: lp[id as usize],
                top: top.clone(),
            });
            let Some(text) = d.settle(s) else {
                d.finish(s, FinishReason::Stop, Some(&mut *on_event))?;
                continue;
            };
            let a = &d.answers[s];
            let flow = on_event(Event::Token {
                request: ri,
                sample: a.index,
                token: a.tokens.last().expect("a token was just pushed"),
                text: &text,
            });
            if flow.is_break() {
                d.finish(s, FinishReason::Length, None)?;
                continue;
            }
            if step + 1 == cfg.max_tokens {
                d.finish(s, FinishReason::Length, Some(&mut *on_event))?;
                continue;
            }
            let row = *rows.entry((parent, id)).or_insert_with(|| {
                parents.push(cache_row[parent]);
                next_tokens.push(id);
                next_request.push(ri);
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
        cache_row = (0..b as u32).collect();
        let row_request = next_request;
        let tokens = u32_matrix(&next_tokens.iter().map(|&t| vec![t]).collect::<Vec<_>>())?;
        let positions = u32_matrix(
            &row_request
                .iter()
                .map(|&r| vec![(requests[r].prompt.len() + step) as u32])
                .collect::<Vec<_>>(),
        )?;
        let tk = cache.len() + 1;
        // A row's padding (left of its prompt in a padded prefill) is never attended to.
        let mask = build_mask(b, 1, tk, |bi, _, k| k >= pads[prompt_of[row_request[bi]]])?;
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
    Ok(d.out)
}

/// The errors [`decode`] would give `r` before decoding anything: sampling settings out of
/// range, an empty prompt, or prompt and answers longer than the model's context.
pub fn check_request(model: &Llama, r: &Request) -> Result<()> {
    let cfg = &r.cfg;
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
    if r.prompt.is_empty() {
        return Err(ModelError::Input(
            "cannot generate from an empty prompt".into(),
        ));
    }
    check_len(model, r.prompt.len() + cfg.max_tokens)
}

/// Different prompts as one left-padded batch: the cache (one row per prompt), each prompt's
/// next-token log-probabilities, and each prompt's padding length.
///
/// Prompts are right-aligned in a `[B, T]` batch. A real query attends to the real keys of its
/// row up to itself; a padding query attends only to itself (so its values stay finite) and no
/// real query ever attends to it. Rotary positions count from each row's first real token, so
/// a row's positions equal those of its prompt run alone.
fn prefill_padded(
    model: &Llama,
    pad_id: u32,
    prompts: &[&[u32]],
) -> Result<(KvCache, Vec<Vec<f32>>, Vec<usize>)> {
    let b = prompts.len();
    let t = prompts.iter().map(|p| p.len()).max().unwrap_or(0);
    let pad: Vec<usize> = prompts.iter().map(|p| t - p.len()).collect();
    let tokens: Vec<Vec<u32>> = prompts
        .iter()
        .zip(&pad)
        .map(|(p, &n)| {
            let mut v = vec![pad_id; n];
            v.extend_from_slice(p);
            v
        })
        .collect();
    let positions: Vec<Vec<u32>> = pad
        .iter()
        .map(|&n| (0..t).map(|i| i.saturating_sub(n) as u32).collect())
        .collect();
    // [B, 1, T, T]
    let mask = build_mask(b, t, t, |bi, q, k| {
        if q < pad[bi] {
            k == q
        } else {
            k >= pad[bi] && k <= q
        }
    })?;
    let mut cache = model.new_cache();
    let hidden = model.forward(
        &Step {
            tokens: &u32_matrix(&tokens)?,
            positions: &u32_matrix(&positions)?,
            mask: &mask,
        },
        Some(&mut cache),
    )?;
    let next = model.log_softmax(&hidden.i((.., t - 1))?)?.to_vec2()?;
    Ok((cache, next, pad))
}

/// One answer being decoded.
struct Answer {
    request: usize,
    /// Its sample index within the request (and its ChaCha8 stream).
    index: usize,
    rng: ChaCha8Rng,
    ids: Vec<u32>,
    tokens: Vec<TokenLogprob>,
    /// The text reported so far (with `stream_text`).
    sent: String,
}

/// [`decode`]'s callback.
type OnEvent<'f> = dyn FnMut(Event<'_>) -> ControlFlow<()> + 'f;

/// The answers of one [`decode`] call and where finished ones go.
struct Decoding<'a> {
    tok: &'a Tokenizer,
    requests: &'a [Request],
    answers: Vec<Answer>,
    out: Vec<Vec<Generated>>,
}

impl Decoding<'_> {
    /// After answer `s` kept a token: None when its text now holds a stop string (the tokens
    /// from the one that completed it are dropped), else the text the token makes final.
    fn settle(&mut self, s: usize) -> Option<String> {
        let a = &mut self.answers[s];
        let req = &self.requests[a.request];
        let stops = req.stop.iter().any(|st| !st.is_empty());
        if !stops && !req.stream_text {
            return Some(String::new());
        }
        let tok = self.tok;
        let text = tok.decode(&a.ids, true).unwrap_or_default();
        if stops && has_stop(&text, &req.stop) {
            // Keep the longest prefix of tokens whose text has no stop string.
            let keep = (0..a.ids.len())
                .rev()
                .find(|&k| {
                    let t = tok.decode(&a.ids[..k], true).unwrap_or_default();
                    !has_stop(&t, &req.stop)
                })
                .unwrap_or(0);
            a.ids.truncate(keep);
            a.tokens.truncate(keep);
            return None;
        }
        if !req.stream_text {
            return Some(String::new());
        }
        let end = settled(&text, &req.stop);
        let delta = text[..end]
            .strip_prefix(a.sent.as_str())
            .unwrap_or_default()
            .to_string();
        if !delta.is_empty() {
            a.sent = text[..end].to_string();
        }
        Some(delta)
    }

    /// Answer `s` is complete: its text is decoded (stop strings cut) and, when `on_event` is
    /// given, reported.
    fn finish(
        &mut self,
        s: usize,
        reason: FinishReason,
        on_event: Option<&mut OnEvent<'_>>,
    ) -> Result<()> {
        let a = &mut self.answers[s];
        let mut text = self.tok.decode(&a.ids, true)?;
        cut_at_stop(&mut text, &self.requests[a.request].stop);
        // A character cut by `max_tokens` (or an end token) decodes to U+FFFD: its bytes are
        // held back, never sent, as the OpenAI API does and as streaming does (`settled`).
        text.truncate(without_partial_char(&text));
        let rest = text
            .strip_prefix(a.sent.as_str())
            .unwrap_or_default()
            .to_string();
        let g = &mut self.out[a.request][a.index];
        g.text = text;
        g.sample = Sample {
            tokens: std::mem::take(&mut a.tokens),
            finish_reason: reason,
        };
        if let Some(on_event) = on_event {
            let _ = on_event(Event::Finished {
                request: a.request,
                sample: a.index,
                answer: g,
                rest: &rest,
            });
        }
        Ok(())
    }
}

fn has_stop(text: &str, stop: &[String]) -> bool {
    stop.iter()
        .any(|s| !s.is_empty() && text.contains(s.as_str()))
}

/// Cuts `text` before the first occurrence of each stop string.
fn cut_at_stop(text: &mut String, stop: &[String]) {
    for st in stop {
        if let Some(p) = text.find(st.as_str()).filter(|_| !st.is_empty()) {
            text.truncate(p);
        }
    }
}

/// The length of `text` without the U+FFFD that an incomplete trailing character decodes to.
fn without_partial_char(text: &str) -> usize {
    text.trim_end_matches('\u{FFFD}').len()
}

/// How much of `text` is final: without a trailing incomplete character and without a
/// trailing piece that a stop string could still start with.
fn settled(text: &str, stop: &[String]) -> usize {
    let mut end = without_partial_char(text);
    for st in stop.iter().filter(|s| !s.is_empty()) {
        // The longest proper prefix of `st` that `text[..end]` ends with.
        for (i, _) in st
            .char_indices()
            .skip(1)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            if text[..end].ends_with(&st[..i]) {
                end -= i;
                break;
            }
        }
    }
    end
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
    fn settled_holds_back_partial_characters_and_stop_prefixes() {
        let stop = vec!["END".to_string(), "\n\n".to_string()];
        let check = |text: &str, want: &str| assert_eq!(&text[..settled(text, &stop)], want);
        check("hello", "hello");
        check("hello E", "hello ");
        check("hello EN", "hello ");
        check("hello EX", "hello EX");
        check("a\n", "a");
        check("caf\u{FFFD}", "caf");
        check("", "");
        assert_eq!(settled("abc", &[]), 3);
    }

    #[test]
    fn top_k_is_most_likely_first_ties_to_the_lower_id() {
        let lp = [-1.0, -0.5, -3.0, -0.5, f32::NEG_INFINITY];
        assert_eq!(top_k(&lp, 0), vec![]);
        assert_eq!(top_k(&lp, 3), vec![(1, -0.5), (3, -0.5), (0, -1.0)]);
        assert_eq!(top_k(&lp, 9).len(), 5);
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
