//! Token-by-token generation for `stream: true` on a local engine.
//!
//! [`generate`] decodes one answer and sends each token as soon as the model has produced it.
//! It takes the same steps as `selfaware_model::sample::sample` with `n = 1` (prefill, then one
//! batch-of-one forward per token, the same seeded ChaCha8 stream and the same token choice),
//! so the streamed answer is bit for bit the one `stream: false` returns for the same seed.
//!
//! Text is sent only once it is final: a token that ends inside a UTF-8 character, or text
//! that could be the start of a stop string, is held back until the next tokens settle it. The
//! concatenated deltas therefore equal the non-streamed text exactly.

use candle_core::IndexOp;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use selfaware_backend::token_bytes::bytes_of_vocab_entry;
use selfaware_backend::{BackendError, CompletionRequest, FinishReason, TokenLogprob, TopLogprob};
use selfaware_model::llama::{build_mask, u32_matrix, Step};
use selfaware_model::sample::choose;
use selfaware_model::score::prefill;
use selfaware_model::{Engine, ModelError};
use tokio::sync::mpsc::UnboundedSender;

use crate::ApiError;

/// What the generating thread tells the HTTP response.
#[derive(Debug)]
pub enum StreamMsg {
    /// Generation starts, in a batch of `rows` sequences.
    Started { prompt_tokens: usize, rows: usize },
    /// One generated token: the text it makes final (possibly empty) and its log-probability
    /// when asked for.
    Token {
        text: String,
        logprob: Option<TokenLogprob>,
    },
    /// The answer is complete: the text still held back, why it ended, and its length in
    /// tokens.
    Finished {
        text: String,
        reason: FinishReason,
        tokens: usize,
    },
    /// Generation failed (before `Started`: the request's fault or ours, as the status says).
    Failed(ApiError),
}

/// The `k` most likely tokens, most likely first, ties to the lower id (as the sampler
/// reports them).
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

/// A token's text and bytes, as `LocalBackend` reports them.
pub(crate) fn token_text(engine: &Engine, id: u32) -> (String, Option<Vec<u8>>) {
    let tok = &engine.chat.tokenizer;
    let entry = tok.token_text(id);
    match bytes_of_vocab_entry(&entry) {
        Some(bytes) => (String::from_utf8_lossy(&bytes).into_owned(), Some(bytes)),
        None => {
            let text = tok.decode(&[id], false).unwrap_or(entry);
            let bytes = text.as_bytes().to_vec();
            (text, Some(bytes))
        }
    }
}

fn cut_at_stop(text: &mut String, stop: &[String]) {
    for st in stop {
        if let Some(p) = text.find(st.as_str()).filter(|_| !st.is_empty()) {
            text.truncate(p);
        }
    }
}

/// How much of `text` is final: without a trailing incomplete character and without a
/// trailing piece that a stop string could still start with.
fn settled(text: &str, stop: &[String]) -> usize {
    let mut end = text.trim_end_matches('\u{FFFD}').len();
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

/// A generated token as the backend reports it (text, bytes, alternatives).
pub(crate) fn backend_logprob(engine: &Engine, t: &selfaware_model::TokenLogprob) -> TokenLogprob {
    let (token, bytes) = token_text(engine, t.id);
    TokenLogprob {
        token,
        bytes,
        logprob: f64::from(t.logprob),
        top_logprobs: t
            .top
            .iter()
            .map(|&(id, lp)| {
                let (token, bytes) = token_text(engine, id);
                TopLogprob {
                    token,
                    bytes,
                    logprob: f64::from(lp),
                }
            })
            .collect(),
    }
}

/// The text of one streamed answer: the tokens kept so far and the text already sent.
pub(crate) struct Answer<'a> {
    engine: &'a Engine,
    stop: &'a [String],
    logprobs: bool,
    ids: Vec<u32>,
    sent: String,
}

impl<'a> Answer<'a> {
    pub fn new(engine: &'a Engine, stop: &'a [String], logprobs: bool) -> Self {
        Answer {
            engine,
            stop,
            logprobs,
            ids: Vec::new(),
            sent: String::new(),
        }
    }

    /// The message for a token the answer keeps (after the stop-string check): the text it
    /// makes final, and its log-probability when asked for.
    pub fn token(&mut self, t: &selfaware_model::TokenLogprob) -> StreamMsg {
        self.ids.push(t.id);
        let text = self
            .engine
            .chat
            .tokenizer
            .decode(&self.ids, true)
            .unwrap_or_default();
        let end = settled(&text, self.stop);
        let delta = match text[..end].strip_prefix(self.sent.as_str()) {
            Some(d) => d.to_string(),
            None => String::new(),
        };
        if !delta.is_empty() {
            self.sent = text[..end].to_string();
        }
        StreamMsg::Token {
            text: delta,
            logprob: self.logprobs.then(|| backend_logprob(self.engine, t)),
        }
    }

    /// The last message, given the answer's final text (stop strings already cut).
    pub fn finish(&self, text: &str, reason: FinishReason, tokens: usize) -> StreamMsg {
        StreamMsg::Finished {
            text: text
                .strip_prefix(self.sent.as_str())
                .unwrap_or_default()
                .to_string(),
            reason,
            tokens,
        }
    }
}

fn model_err(e: ModelError) -> ApiError {
    ApiError::from(BackendError::Model(e))
}

/// Generates one answer to `req` (its `n` is ignored), sending each token to `tx` as it is
/// made. Returns early when the receiver is gone (the client hung up).
pub fn generate(
    engine: &Engine,
    req: &CompletionRequest,
    tx: &UnboundedSender<StreamMsg>,
) -> Result<(), ApiError> {
    let tok = &engine.chat.tokenizer;
    let model = &engine.model;
    let prompt = engine
        .chat
        .prompt(&req.conversation)
        .map_err(|e| model_err(e.into()))?;
    let max = model.rope.max_positions();
    if prompt.ids.len() + req.max_tokens > max {
        return Err(model_err(ModelError::Input(format!(
            "sequence of {} tokens exceeds the model's context of {max} tokens",
            prompt.ids.len() + req.max_tokens
        ))));
    }
    let pre = prefill(model, &prompt.ids).map_err(model_err)?;
    if tx
        .send(StreamMsg::Started {
            prompt_tokens: pre.len,
            rows: 1,
        })
        .is_err()
    {
        return Ok(());
    }
    let stop = &req.stop;
    let stop_hit = |text: &str| {
        stop.iter()
            .any(|s| !s.is_empty() && text.contains(s.as_str()))
    };
    let mut rng = ChaCha8Rng::seed_from_u64(req.seed);
    rng.set_stream(0);
    let top_n = if req.logprobs { req.top_logprobs } else { 0 };
    let mut ids: Vec<u32> = Vec::new();
    let mut dist = pre.next;
    // The prompt's keys and values as a shared prefix, as the sampler keeps them.
    let mut cache = pre.cache.share().map_err(model_err)?;
    let mut answer = Answer::new(engine, stop, req.logprobs);
    let mut reason = FinishReason::Length;
    for step in 0..req.max_tokens {
        let id = choose(&dist, req.temperature, req.top_p, &mut rng);
        if tok.is_stop(id) {
            reason = FinishReason::Stop;
            break;
        }
        ids.push(id);
        let text = tok.decode(&ids, true).map_err(|e| model_err(e.into()))?;
        if stop_hit(&text) {
            // As the sampler: keep the longest prefix of tokens whose text has no stop string.
            let keep = (0..ids.len())
                .rev()
                .find(|&k| {
                    let t = tok.decode(&ids[..k], true).unwrap_or_default();
                    !stop_hit(&t)
                })
                .unwrap_or(0);
            ids.truncate(keep);
            reason = FinishReason::Stop;
            break;
        }
        let t = selfaware_model::TokenLogprob {
            id,
            logprob: dist[id as usize],
            top: top_k(&dist, top_n),
        };
        if tx.send(answer.token(&t)).is_err() {
            return Ok(());
        }
        if step + 1 == req.max_tokens {
            break;
        }
        cache = cache.select(&[0]).map_err(model_err)?;
        let tokens = u32_matrix(&[vec![id]]).map_err(model_err)?;
        let positions = u32_matrix(&[vec![(pre.len + step) as u32]]).map_err(model_err)?;
        let mask = build_mask(1, 1, cache.len() + 1, |_, _, _| true).map_err(model_err)?;
        let hidden = model
            .forward(
                &Step {
                    tokens: &tokens,
                    positions: &positions,
                    mask: &mask,
                },
                Some(&mut cache),
            )
            .map_err(model_err)?;
        let lp = model
            .log_softmax(&hidden.i((.., 0)).map_err(|e| model_err(e.into()))?)
            .map_err(model_err)?;
        dist = lp
            .to_vec2::<f32>()
            .map_err(|e| model_err(e.into()))?
            .into_iter()
            .next()
            .unwrap_or_default();
    }
    let mut text = tok.decode(&ids, true).map_err(|e| model_err(e.into()))?;
    cut_at_stop(&mut text, stop);
    let _ = tx.send(answer.finish(&text, reason, ids.len()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
