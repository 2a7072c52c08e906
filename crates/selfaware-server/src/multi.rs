//! Different prompts decoded together: one left-padded batched prefill, then one forward per
//! step for every sequence still generating.
//!
//! Each [`Row`] is one sample: its prompt, its sampling settings and its random stream
//! (`seed`, `stream`), as `selfaware_model::sample::sample` draws sample `stream` of a request
//! with that seed. The token choices, stop handling and texts follow `Engine::sample_ids`; the
//! numbers differ from decoding each prompt alone only by float rounding (about 1e-6), since
//! padded rows change the shapes of the matrix products.
//!
//! Padding: prompts are right-aligned in a `[B, T]` batch. A real query attends to the real
//! keys of its row up to itself; a padding query attends only to itself (so its values stay
//! finite) and no real query ever attends to it. Rotary positions count from each row's first
//! real token, so a row's positions equal those of its prompt decoded alone.

use candle_core::IndexOp;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use selfaware_backend::Completion;
use selfaware_model::llama::{build_mask, u32_matrix, Step};
use selfaware_model::sample::choose;
use selfaware_model::{Engine, FinishReason, ModelError, Result, TokenLogprob};

/// One sequence to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub prompt: Vec<u32>,
    pub temperature: f64,
    pub top_p: f64,
    pub max_tokens: usize,
    pub seed: u64,
    /// The ChaCha8 stream of the seed this row draws from (a request's sample index).
    pub stream: u64,
    pub top_logprobs: usize,
    pub stop: Vec<String>,
}

/// One generated sequence.
#[derive(Debug, Clone)]
pub struct Generated {
    pub text: String,
    pub tokens: Vec<TokenLogprob>,
    pub finish_reason: FinishReason,
}

/// A generated row as the backend's [`Completion`], as `LocalBackend` reports it.
pub fn completion(engine: &Engine, g: &Generated, logprobs: bool) -> Completion {
    Completion {
        text: g.text.clone(),
        finish_reason: match g.finish_reason {
            FinishReason::Stop => selfaware_backend::FinishReason::Stop,
            FinishReason::Length => selfaware_backend::FinishReason::Length,
        },
        tokens: Some(g.tokens.len()),
        logprobs: logprobs.then(|| {
            g.tokens
                .iter()
                .map(|t| crate::stream::backend_logprob(engine, t))
                .collect()
        }),
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

fn has_stop(text: &str, stop: &[String]) -> bool {
    stop.iter()
        .any(|s| !s.is_empty() && text.contains(s.as_str()))
}

/// Generates every row; results are in row order.
pub fn generate(engine: &Engine, rows: &[Row]) -> Result<Vec<Generated>> {
    generate_with(engine, rows, &mut |_, _| {})
}

/// As [`generate`], calling `on_token(row, token)` for each token as soon as the row keeps it
/// (a token that completes a stop string is never reported).
pub fn generate_with(
    engine: &Engine,
    rows: &[Row],
    on_token: &mut dyn FnMut(usize, &TokenLogprob),
) -> Result<Vec<Generated>> {
    let model = &engine.model;
    let tok = &engine.chat.tokenizer;
    let mut out: Vec<Generated> = rows
        .iter()
        .map(|_| Generated {
            text: String::new(),
            tokens: Vec::new(),
            finish_reason: FinishReason::Length,
        })
        .collect();
    if rows.is_empty() {
        return Ok(out);
    }
    let max_pos = model.rope.max_positions();
    for r in rows {
        if r.prompt.is_empty() {
            return Err(ModelError::Input(
                "cannot generate from an empty prompt".into(),
            ));
        }
        if r.prompt.len() + r.max_tokens > max_pos {
            return Err(ModelError::Input(format!(
                "sequence of {} tokens exceeds the model's context of {max_pos} tokens",
                r.prompt.len() + r.max_tokens
            )));
        }
    }
    let b = rows.len();
    let t = rows.iter().map(|r| r.prompt.len()).max().unwrap_or(0);
    let pad: Vec<usize> = rows.iter().map(|r| t - r.prompt.len()).collect();
    let pad_id = tok.pad_id;
    let tokens: Vec<Vec<u32>> = rows
        .iter()
        .zip(&pad)
        .map(|(r, &p)| {
            let mut v = vec![pad_id; p];
            v.extend_from_slice(&r.prompt);
            v
        })
        .collect();
    let positions: Vec<Vec<u32>> = pad
        .iter()
        .map(|&p| (0..t).map(|i| i.saturating_sub(p) as u32).collect())
        .collect();
    // [B, 1, T, T]: real queries see their row's real keys up to themselves; padding queries
    // see only themselves.
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
    let mut dists: Vec<Vec<f32>> = model.log_softmax(&hidden.i((.., t - 1))?)?.to_vec2()?;
    let mut rngs: Vec<ChaCha8Rng> = rows
        .iter()
        .map(|r| {
            let mut g = ChaCha8Rng::seed_from_u64(r.seed);
            g.set_stream(r.stream);
            g
        })
        .collect();
    // `active[j]` is the row in batch position j; `dists[j]` its next-token distribution.
    let mut active: Vec<usize> = (0..b).collect();
    let mut ids: Vec<Vec<u32>> = vec![Vec::new(); b];
    let mut step = 0;
    loop {
        let mut keep: Vec<u32> = Vec::new();
        let mut next: Vec<u32> = Vec::new();
        for (j, &r) in active.iter().enumerate() {
            let row = &rows[r];
            if row.max_tokens == 0 {
                continue;
            }
            let lp = &dists[j];
            let id = choose(lp, row.temperature, row.top_p, &mut rngs[r]);
            if tok.is_stop(id) {
                out[r].finish_reason = FinishReason::Stop;
                continue;
            }
            out[r].tokens.push(TokenLogprob {
                id,
                logprob: lp[id as usize],
                top: top_k(lp, row.top_logprobs),
            });
            ids[r].push(id);
            if !row.stop.is_empty() {
                let text = tok.decode(&ids[r], true)?;
                if has_stop(&text, &row.stop) {
                    // Keep the longest prefix of tokens whose text has no stop string.
                    let n = (0..ids[r].len())
                        .rev()
                        .find(|&k| {
                            let t = tok.decode(&ids[r][..k], true).unwrap_or_default();
                            !has_stop(&t, &row.stop)
                        })
                        .unwrap_or(0);
                    ids[r].truncate(n);
                    out[r].tokens.truncate(n);
                    out[r].finish_reason = FinishReason::Stop;
                    continue;
                }
            }
            if let Some(t) = out[r].tokens.last() {
                on_token(r, t);
            }
            if step + 1 == row.max_tokens {
                continue;
            }
            keep.push(j as u32);
            next.push(id);
        }
        if keep.is_empty() {
            break;
        }
        let rows_now: Vec<usize> = keep.iter().map(|&j| active[j as usize]).collect();
        cache = cache.select(&keep)?;
        let n = rows_now.len();
        let tk = cache.len() + 1;
        let tokens = u32_matrix(&next.iter().map(|&t| vec![t]).collect::<Vec<_>>())?;
        let positions = u32_matrix(
            &rows_now
                .iter()
                .map(|&r| vec![(rows[r].prompt.len() + step) as u32])
                .collect::<Vec<_>>(),
        )?;
        let mask = build_mask(n, 1, tk, |bi, _, k| k >= pad[rows_now[bi]])?;
        let hidden = model.forward(
            &Step {
                tokens: &tokens,
                positions: &positions,
                mask: &mask,
            },
            Some(&mut cache),
        )?;
        dists = model.log_softmax(&hidden.i((.., 0))?)?.to_vec2()?;
        active = rows_now;
        step += 1;
    }
    for (r, g) in out.iter_mut().enumerate() {
        let mut text = tok.decode(&ids[r], true)?;
        for st in &rows[r].stop {
            if let Some(p) = text.find(st.as_str()).filter(|_| !st.is_empty()) {
                text.truncate(p);
            }
        }
        g.text = text;
    }
    Ok(out)
}
