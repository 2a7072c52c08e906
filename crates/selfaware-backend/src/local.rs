use std::ops::ControlFlow;
use std::sync::Arc;

use selfaware_model::sample;
use selfaware_model::{Engine, Generated, ModelError, OptionScores, RangeScores, SampleConfig};
use selfaware_types::Conversation;

use crate::token_bytes::bytes_of_vocab_entry;
use crate::{
    Backend, Capabilities, Completion, CompletionRequest, Completions, FinishReason, PromptToken,
    Result, TokenLogprob, TopLogprob,
};

/// The local candle engine as a [`Backend`]: exact scoring, seeded batched sampling.
pub struct LocalBackend {
    engine: Arc<Engine>,
    id: String,
    max_n: usize,
}

impl std::fmt::Debug for LocalBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalBackend")
            .field("id", &self.id)
            .field("model", &self.engine.info.path)
            .finish()
    }
}

/// Largest `n` one local request may ask for unless configured otherwise.
pub const DEFAULT_LOCAL_MAX_N: usize = 128;

/// Requests that [`LocalBackend`]'s `complete_many` decodes together at most.
pub const REQUESTS_PER_DECODE: usize = 40;
/// Answers (rows of each step's forward) that `complete_many` decodes together at most, unless
/// one request alone asks for more.
pub const ANSWERS_PER_DECODE: usize = 128;

impl LocalBackend {
    /// Serves `engine` under the model id `id`.
    pub fn new(engine: Arc<Engine>, id: impl Into<String>) -> Self {
        LocalBackend {
            engine,
            id: id.into(),
            max_n: DEFAULT_LOCAL_MAX_N,
        }
    }

    /// Changes the largest `n` accepted per request.
    pub fn with_max_n(mut self, max_n: usize) -> Self {
        self.max_n = max_n;
        self
    }

    /// The engine behind this backend.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// `req` checked and turned into what the engine decodes.
    fn prepare(&self, req: &CompletionRequest) -> Result<sample::Request> {
        req.validate(&self.capabilities())?;
        let r = decode_request(&self.engine, req)?;
        sample::check_request(&self.engine.model, &r)?;
        Ok(r)
    }

    /// Decodes `batch` (index into `reqs`, prepared request) together into `out`; if that
    /// fails, each request alone, so that each gets its own error.
    fn decode_together(
        &self,
        reqs: &[CompletionRequest],
        batch: &[(usize, sample::Request)],
        out: &mut [Option<Result<Completions>>],
    ) {
        let requests: Vec<sample::Request> = batch.iter().map(|(_, r)| r.clone()).collect();
        match self
            .engine
            .decode(&requests, &mut |_| ControlFlow::Continue(()))
        {
            Ok(generated) => {
                for ((i, r), g) in batch.iter().zip(&generated) {
                    out[*i] = Some(Ok(completions(&self.engine, &reqs[*i], r, g)));
                }
            }
            Err(_) => {
                for (i, _) in batch {
                    out[*i] = Some(self.complete(&reqs[*i]));
                }
            }
        }
    }
}

/// The engine's answers to `r` (made from `req`) as [`Completions`].
fn completions(
    engine: &Engine,
    req: &CompletionRequest,
    r: &sample::Request,
    generated: &[Generated],
) -> Completions {
    Completions {
        prompt_tokens: Some(r.prompt.len()),
        completion_tokens: Some(generated.iter().map(|g| g.sample.tokens.len()).sum()),
        choices: generated
            .iter()
            .map(|g| completion(engine, g, req.logprobs))
            .collect(),
    }
}

/// `id` with its `tag` part (`+adapter:HASH`, `+steer:HASH`) replaced by one naming `sha`'s
/// first 12 digits, or removed when `sha` is None.
pub(crate) fn with_tag(id: &str, tag: &str, sha: Option<&str>) -> String {
    let mut out = match id.find(tag) {
        Some(i) => {
            let rest = &id[i + tag.len()..];
            let end = rest.find('+').map_or(id.len(), |j| i + tag.len() + j);
            format!("{}{}", &id[..i], &id[end..])
        }
        None => id.to_string(),
    };
    if let Some(sha) = sha {
        out += &format!("{tag}{}", &sha[..sha.len().min(12)]);
    }
    out
}

/// The identity of a model's steering: the sha256 of its records (files' hashes, points and
/// multipliers) as JSON; None when it is not steered.
pub fn steering_sha256(records: &[selfaware_types::SteerRecord]) -> Option<String> {
    if records.is_empty() {
        return None;
    }
    let json = serde_json::to_vec(records).expect("steer records serialize");
    Some(selfaware_types::sha256_hex(&json))
}

/// What the engine decodes for `req`: its conversation's prompt, its sampling settings (the
/// alternatives per token only when it asks for logprobs) and its stop strings.
pub fn decode_request(engine: &Engine, req: &CompletionRequest) -> Result<sample::Request> {
    let prompt = engine
        .chat
        .prompt(&req.conversation)
        .map_err(ModelError::from)?;
    Ok(sample::Request {
        prompt: prompt.ids,
        cfg: SampleConfig {
            n: req.n,
            temperature: req.temperature,
            top_p: req.top_p,
            max_tokens: req.max_tokens,
            seed: req.seed,
            top_logprobs: if req.logprobs { req.top_logprobs } else { 0 },
        },
        stop: req.stop.clone(),
        stream_text: false,
    })
}

/// A token's text and bytes as OpenAI's API reports them: the bytes a byte-level vocabulary
/// entry stands for (the text shows an incomplete UTF-8 character as U+FFFD), otherwise the
/// token decoded alone.
///
/// The entry is the raw one (`Ġt`, `Ã`), not the token decoded: decoding turns a byte that
/// starts a character into U+FFFD, whose bytes are not the token's. An entry is taken as
/// byte-level only when its bytes decode to the token's text, so the ASCII spelling of a
/// SentencePiece byte token (`<0x0A>`) is not mistaken for its bytes.
pub fn token_text_bytes(engine: &Engine, id: u32) -> (String, Option<Vec<u8>>) {
    let tok = &engine.chat.tokenizer;
    let text = tok.token_text(id);
    let raw = tok
        .id_to_token(id)
        .and_then(|entry| bytes_of_vocab_entry(&entry))
        .filter(|bytes| String::from_utf8_lossy(bytes) == text);
    match raw {
        Some(bytes) => (text, Some(bytes)),
        None => {
            let bytes = text.as_bytes().to_vec();
            (text, Some(bytes))
        }
    }
}

/// A generated token (ids) as the API reports it: text, bytes, log-probability and the most
/// likely alternatives.
pub fn token_logprob(engine: &Engine, t: &selfaware_model::TokenLogprob) -> TokenLogprob {
    let (token, bytes) = token_text_bytes(engine, t.id);
    TokenLogprob {
        token,
        bytes,
        logprob: f64::from(t.logprob),
        top_logprobs: t
            .top
            .iter()
            .map(|&(id, lp)| {
                let (token, bytes) = token_text_bytes(engine, id);
                TopLogprob {
                    token,
                    bytes,
                    logprob: f64::from(lp),
                }
            })
            .collect(),
    }
}

/// A sampled answer of the engine as a [`Completion`], with its tokens' log-probabilities when
/// `logprobs`.
pub fn completion(engine: &Engine, g: &Generated, logprobs: bool) -> Completion {
    Completion {
        text: g.text.clone(),
        finish_reason: g.sample.finish_reason.into(),
        tokens: Some(g.sample.tokens.len()),
        logprobs: logprobs.then(|| {
            g.sample
                .tokens
                .iter()
                .map(|t| token_logprob(engine, t))
                .collect()
        }),
    }
}

impl From<selfaware_model::FinishReason> for FinishReason {
    fn from(r: selfaware_model::FinishReason) -> Self {
        match r {
            selfaware_model::FinishReason::Stop => FinishReason::Stop,
            selfaware_model::FinishReason::Length => FinishReason::Length,
        }
    }
}

impl Backend for LocalBackend {
    fn model_id(&self) -> &str {
        &self.id
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            exact_scoring: true,
            max_top_logprobs: 20,
            max_n: self.max_n,
            deterministic_seed: true,
        }
    }

    fn score_options(&self, conv: &Conversation, options: &[String]) -> Result<OptionScores> {
        Ok(self.engine.score_options(conv, options)?)
    }

    fn first_token_logprobs(
        &self,
        conv: &Conversation,
        options: &[String],
    ) -> Result<Vec<(u32, f64)>> {
        Ok(self.engine.first_token_logprobs(conv, options)?)
    }

    fn first_token_logprobs_many(
        &self,
        convs: &[Conversation],
        options: &[String],
        on_done: &mut dyn FnMut(usize),
    ) -> Result<Vec<Vec<(u32, f64)>>> {
        Ok(self
            .engine
            .first_token_logprobs_many(convs, options, on_done)?)
    }

    fn next_token_distributions_many(
        &self,
        convs: &[Conversation],
        on_done: &mut dyn FnMut(usize),
    ) -> Result<Vec<Vec<(u32, f64)>>> {
        Ok(self
            .engine
            .next_token_logprobs_many(convs, on_done)?
            .into_iter()
            .map(|lp| {
                lp.into_iter()
                    .enumerate()
                    .map(|(id, l)| (id as u32, f64::from(l)))
                    .collect()
            })
            .collect())
    }

    fn model_sha256(&self) -> Option<String> {
        Some(self.engine.info.sha256.clone())
    }

    fn location(&self) -> String {
        self.engine.info.path.clone()
    }

    fn with_adapter(&self, dir: &std::path::Path) -> Result<Arc<dyn Backend>> {
        let engine = self.engine.with_adapter_dir(dir)?;
        let sha = crate::adapter_sha256(dir)?;
        let id = with_tag(&self.id, "+adapter:", Some(&sha));
        Ok(Arc::new(
            LocalBackend::new(Arc::new(engine), id).with_max_n(self.max_n),
        ))
    }

    fn steering(&self) -> Vec<selfaware_types::SteerRecord> {
        self.engine.steering().to_vec()
    }

    fn with_steering(&self, specs: &[selfaware_model::SteerSpec]) -> Result<Arc<dyn Backend>> {
        let steering = selfaware_model::Steering::load(specs, &self.engine.model.cfg)?;
        let engine = self.engine.with_steering(steering)?;
        let id = with_tag(
            &self.id,
            "+steer:",
            steering_sha256(engine.steering()).as_deref(),
        );
        Ok(Arc::new(
            LocalBackend::new(Arc::new(engine), id).with_max_n(self.max_n),
        ))
    }

    fn engine(&self) -> Option<&Arc<Engine>> {
        Some(&self.engine)
    }

    fn score_range(&self, conv: &Conversation, lo: i64, hi: i64) -> Result<RangeScores> {
        Ok(self.engine.score_range(conv, lo, hi)?)
    }

    fn prompt_logprobs(
        &self,
        conv: &Conversation,
        add_generation_prompt: bool,
    ) -> Result<Vec<PromptToken>> {
        let chat = &self.engine.chat;
        let text = chat
            .render(&conv.messages, add_generation_prompt)
            .map_err(ModelError::from)?;
        let ids = chat.tokenizer.encode(&text).map_err(ModelError::from)?;
        let lps = self.engine.sequence_logprobs(std::slice::from_ref(&ids))?;
        let lps = lps.into_iter().next().unwrap_or_default();
        Ok(ids
            .iter()
            .enumerate()
            .map(|(i, &id)| PromptToken {
                id,
                token: chat.tokenizer.decode(&[id], false).unwrap_or_default(),
                logprob: i
                    .checked_sub(1)
                    .and_then(|j| lps.get(j))
                    .map(|&l| f64::from(l)),
            })
            .collect())
    }

    fn complete(&self, req: &CompletionRequest) -> Result<Completions> {
        let r = self.prepare(req)?;
        let generated = self.engine.sample_ids(&r.prompt, &r.cfg, &r.stop)?;
        Ok(completions(&self.engine, req, &r, &generated))
    }

    /// Decodes the requests together, up to [`REQUESTS_PER_DECODE`] requests and
    /// [`ANSWERS_PER_DECODE`] answers at a time ([`Engine::decode`]: the prompts prefilled as
    /// one padded batch, then every answer one row of each step's forward), instead of one
    /// after another. Each answer draws from its own seeded stream, so it is the one
    /// [`Backend::complete`] gives for its request alone, up to rounding in the batched sums. A
    /// request that is invalid gets its error alone.
    fn complete_many(&self, reqs: &[CompletionRequest]) -> Vec<Result<Completions>> {
        let mut out: Vec<Option<Result<Completions>>> = (0..reqs.len()).map(|_| None).collect();
        let mut batch: Vec<(usize, sample::Request)> = Vec::new();
        let mut answers = 0;
        for (i, req) in reqs.iter().enumerate() {
            match self.prepare(req) {
                Err(e) => out[i] = Some(Err(e)),
                Ok(r) => {
                    if !batch.is_empty()
                        && (batch.len() == REQUESTS_PER_DECODE
                            || answers + r.cfg.n > ANSWERS_PER_DECODE)
                    {
                        self.decode_together(reqs, &batch, &mut out);
                        batch.clear();
                        answers = 0;
                    }
                    answers += r.cfg.n;
                    batch.push((i, r));
                }
            }
        }
        if !batch.is_empty() {
            self.decode_together(reqs, &batch, &mut out);
        }
        out.into_iter()
            .map(|o| o.expect("every request is answered or refused"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_requests_decoded_together_equal_each_alone() {
        let engine = Arc::new(crate::testing::tiny_engine(3).unwrap());
        let b = LocalBackend::new(engine, "tiny").with_max_n(4);
        let req =
            |system: Option<&str>, user: &str, n: usize, temperature: f64| CompletionRequest {
                conversation: Conversation::user(system, user),
                n,
                temperature,
                top_p: 1.0,
                max_tokens: 9,
                seed: 11,
                stop: Vec::new(),
                logprobs: true,
                top_logprobs: 2,
            };
        let mut reqs: Vec<CompletionRequest> = (0..REQUESTS_PER_DECODE + 5)
            .map(|i| {
                let system = (i % 3 == 0).then_some("Answer briefly.");
                req(
                    system,
                    &format!("What was the prompt? {}", "x".repeat(i % 7)),
                    1,
                    0.0,
                )
            })
            .collect();
        reqs.insert(4, req(None, "Tell me a story.", 3, 1.0));
        // Refused alone: n above the backend's limit.
        reqs.insert(9, req(None, "Too many.", 5, 1.0));
        let many = b.complete_many(&reqs);
        assert_eq!(many.len(), reqs.len());
        for (r, m) in reqs.iter().zip(&many) {
            match (b.complete(r), m) {
                (Ok(one), Ok(m)) => {
                    assert_eq!(one.prompt_tokens, m.prompt_tokens);
                    assert_eq!(one.choices.len(), m.choices.len());
                    for (x, y) in one.choices.iter().zip(&m.choices) {
                        assert_eq!(x.text, y.text);
                        let (lx, ly) = (x.logprobs.as_ref().unwrap(), y.logprobs.as_ref().unwrap());
                        // The texts are the same; the reported log-probabilities differ by
                        // the rounding of the left-padded prefill and batched steps (measured
                        // up to 1.5e-5 nats here; the engine's own bound in tests/decode.rs).
                        for (tx, ty) in lx.iter().zip(ly) {
                            assert_eq!(tx.token, ty.token);
                            let d = (tx.logprob - ty.logprob).abs();
                            assert!(d < 1e-4, "{} vs {}", tx.logprob, ty.logprob);
                        }
                    }
                }
                (Err(one), Err(m)) => assert_eq!(one.to_string(), m.to_string()),
                (one, m) => panic!("alone {one:?}, together {m:?}"),
            }
        }
        assert!(many[9].is_err());
    }

    #[test]
    fn the_full_next_token_distribution_sums_to_one_and_agrees_with_first_token_scores() {
        let engine = Arc::new(crate::testing::tiny_engine(7).unwrap());
        let b = LocalBackend::new(engine, "tiny");
        let convs = vec![
            Conversation::user(None, "Pick A or B."),
            Conversation::user(Some("Be brief."), "Hello there, pick one."),
        ];
        let mut done = 0;
        let dists = b
            .next_token_distributions_many(&convs, &mut |k| done += k)
            .unwrap();
        assert_eq!(done, 2);
        let opts = vec!["A".to_string(), "B".to_string()];
        for (conv, d) in convs.iter().zip(&dists) {
            assert!(d.windows(2).all(|w| w[0].0 < w[1].0));
            let total: f64 = d.iter().map(|(_, l)| l.exp()).sum();
            assert!((total - 1.0).abs() < 1e-4, "{total}");
            for (id, lp) in b.first_token_logprobs(conv, &opts).unwrap() {
                let full = d[id as usize];
                assert_eq!(full.0, id);
                assert!((full.1 - lp).abs() < 1e-4, "{} vs {lp}", full.1);
            }
        }
    }
}
