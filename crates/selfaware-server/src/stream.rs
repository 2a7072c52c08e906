//! Token-by-token generation for `stream: true` on a local engine.
//!
//! [`generate`] decodes one answer with the model's decoder (`selfaware_model::sample::decode`)
//! and sends each token as soon as the model has produced it: the same prefill, steps, seeded
//! ChaCha8 stream and token choices as `stream: false`, so the streamed answer is bit for bit
//! the one the unstreamed request returns for the same seed. Unseeded streams are decoded with
//! other requests instead ([`crate::multi`]); [`message`] turns the decoder's events into
//! messages for both.
//!
//! Text is sent only once it is final (the decoder holds back a token that ends inside a UTF-8
//! character, or text that could be the start of a stop string, until the next tokens settle
//! it), so the concatenated deltas equal the non-streamed text exactly.

use std::ops::ControlFlow;

use selfaware_backend::local::{decode_request, token_logprob};
use selfaware_backend::{BackendError, CompletionRequest, FinishReason, TokenLogprob};
use selfaware_model::sample::Event;
use selfaware_model::Engine;
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

/// The message a streamed answer sends for a decoder event about it (None for
/// [`Event::Started`], which the caller turns into [`StreamMsg::Started`]).
pub(crate) fn message(engine: &Engine, event: &Event<'_>, logprobs: bool) -> Option<StreamMsg> {
    match event {
        Event::Started { .. } => None,
        Event::Token { token, text, .. } => Some(StreamMsg::Token {
            text: text.to_string(),
            logprob: logprobs.then(|| token_logprob(engine, token)),
        }),
        Event::Finished { answer, rest, .. } => Some(StreamMsg::Finished {
            text: rest.to_string(),
            reason: answer.sample.finish_reason.into(),
            tokens: answer.sample.tokens.len(),
        }),
    }
}

/// Generates one answer to `req` (its `n` is ignored), sending each token to `tx` as it is
/// made. Stops early when the receiver is gone (the client hung up).
pub fn generate(
    engine: &Engine,
    req: &CompletionRequest,
    tx: &UnboundedSender<StreamMsg>,
) -> Result<(), ApiError> {
    let mut r = decode_request(engine, req)?;
    r.cfg.n = 1;
    r.stream_text = true;
    let prompt_tokens = r.prompt.len();
    engine
        .decode(std::slice::from_ref(&r), &mut |event| {
            let msg = match &event {
                Event::Started { samples } => Some(StreamMsg::Started {
                    prompt_tokens,
                    rows: *samples,
                }),
                e => message(engine, e, req.logprobs),
            };
            match msg.map(|m| tx.send(m)) {
                Some(Err(_)) => ControlFlow::Break(()),
                _ => ControlFlow::Continue(()),
            }
        })
        .map_err(|e| ApiError::from(BackendError::Model(e)))?;
    Ok(())
}
