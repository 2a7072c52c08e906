//! The [`Backend`] trait every consumer of a model uses (evaluation and probes in
//! `selfaware-ask`, the server, the data builders' model-written items), the one way to name a
//! model ([`ModelRef`], parsed in one place and opened as an `Arc<dyn Backend>`), and the
//! implementations:
//!
//! - [`LocalBackend`]: the candle engine of `selfaware-model`, exact scoring included;
//! - [`HttpBackend`]: any OpenAI-compatible chat-completions endpoint, with a concurrency limit,
//!   a client-side rate limit, retries with backoff, timeouts and an on-disk response cache;
//! - [`MockBackend`]: scripted scores and completions for unit tests of logic.
//!
//! [`finetune`] is the client of the OpenAI finetuning API (files and jobs) with a local job
//! registry so interrupted experiments resume without duplicate jobs. [`openai`] holds the wire
//! types shared with `selfaware-server`.
//!
//! The trait is synchronous; implementations that talk to the network run their own tokio
//! runtime, so callers may use it from plain threads or from inside async code alike.

mod error;
pub mod finetune;
pub mod http;
pub mod local;
mod mock;
pub mod model_ref;
pub mod openai;
pub mod testing;
pub mod token_bytes;

use selfaware_types::Conversation;
use serde::{Deserialize, Serialize};

pub use error::{BackendError, Result};
pub use http::{ApiKey, HttpBackend, HttpConfig, ModelFamily, Wait};
pub use local::LocalBackend;
pub use mock::{mock_token_id, MockBackend, MockScript};
pub use model_ref::{adapter_sha256, ModelLocation, ModelRef, OpenOptions};
pub use selfaware_model::{CandidateScore, NumberScore, OptionScores, RangeScores};

/// What a backend can do; callers pick exact scoring or estimators from this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// `score_options` and `score_range` give exact probabilities.
    pub exact_scoring: bool,
    /// The most `top_logprobs` a completion may ask for.
    pub max_top_logprobs: usize,
    /// The most samples one completion request may ask for.
    pub max_n: usize,
    /// The same seed gives the same samples.
    pub deterministic_seed: bool,
}

/// A request for `n` sampled answers to a conversation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompletionRequest {
    pub conversation: Conversation,
    pub n: usize,
    /// 0 means greedy decoding.
    pub temperature: f64,
    pub top_p: f64,
    pub max_tokens: usize,
    pub seed: u64,
    /// Generation stops before any of these strings (which are not returned).
    pub stop: Vec<String>,
    /// Return each generated token's log-probability.
    pub logprobs: bool,
    /// How many of the most likely alternatives to return per token (needs `logprobs`).
    pub top_logprobs: usize,
}

impl CompletionRequest {
    /// One sample at temperature 1, top-p 1, at most 64 tokens, seed 0, no logprobs.
    pub fn new(conversation: Conversation) -> Self {
        CompletionRequest {
            conversation,
            n: 1,
            temperature: 1.0,
            top_p: 1.0,
            max_tokens: 64,
            seed: 0,
            stop: Vec::new(),
            logprobs: false,
            top_logprobs: 0,
        }
    }

    /// Checks the ranges every backend shares.
    pub fn validate(&self, caps: &Capabilities) -> Result<()> {
        let bad = |param: &str, message: String| {
            Err(BackendError::InvalidRequest {
                param: Some(param.to_string()),
                message,
            })
        };
        if self.n == 0 || self.n > caps.max_n {
            return bad(
                "n",
                format!("n must be in 1..={}, got {}", caps.max_n, self.n),
            );
        }
        if !self.temperature.is_finite() || !(0.0..=2.0).contains(&self.temperature) {
            return bad(
                "temperature",
                format!("temperature must be in [0, 2], got {}", self.temperature),
            );
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(
                "top_p",
                format!("top_p must be in (0, 1], got {}", self.top_p),
            );
        }
        if self.top_logprobs > caps.max_top_logprobs {
            return bad(
                "top_logprobs",
                format!(
                    "top_logprobs must be at most {}, got {}",
                    caps.max_top_logprobs, self.top_logprobs
                ),
            );
        }
        if self.top_logprobs > 0 && !self.logprobs {
            return bad(
                "top_logprobs",
                "top_logprobs needs logprobs to be true".to_string(),
            );
        }
        Ok(())
    }
}

/// Why a completion ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// End of turn or a stop string.
    Stop,
    /// `max_tokens` reached.
    Length,
    /// Anything else a remote server reports (e.g. `content_filter`).
    Other(String),
}

impl FinishReason {
    /// The name OpenAI's API uses.
    pub fn as_str(&self) -> &str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Other(s) => s,
        }
    }

    /// Parses OpenAI's name.
    pub fn parse(s: &str) -> Self {
        match s {
            "stop" => FinishReason::Stop,
            "length" => FinishReason::Length,
            other => FinishReason::Other(other.to_string()),
        }
    }
}

/// One alternative token at a generated position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopLogprob {
    pub token: String,
    /// The token's bytes (a token may hold part of a UTF-8 character).
    pub bytes: Option<Vec<u8>>,
    pub logprob: f64,
}

/// One generated token with its log-probability and the most likely alternatives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    pub token: String,
    pub bytes: Option<Vec<u8>>,
    pub logprob: f64,
    /// Most likely first.
    pub top_logprobs: Vec<TopLogprob>,
}

/// One sampled answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    pub text: String,
    pub finish_reason: FinishReason,
    /// Generated tokens, when the backend reports them per answer.
    pub tokens: Option<usize>,
    /// Present when the request asked for logprobs.
    pub logprobs: Option<Vec<TokenLogprob>>,
}

/// The answers to one [`CompletionRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completions {
    /// Prompt length in tokens, when the backend reports it.
    pub prompt_tokens: Option<usize>,
    /// Generated tokens over all choices, when the backend reports it.
    pub completion_tokens: Option<usize>,
    pub choices: Vec<Completion>,
}

/// One token of a rendered conversation with its log-probability given the tokens before it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptToken {
    pub id: u32,
    /// The token's text as the model's tokenizer decodes it alone.
    pub token: String,
    /// None for the first token.
    pub logprob: Option<f64>,
}

/// A model that can score and sample answers. Blocking; shareable across threads.
pub trait Backend: Send + Sync {
    /// The model's name as recorded in results (and served by `selfaware-server`).
    fn model_id(&self) -> &str;

    /// What this backend can do.
    fn capabilities(&self) -> Capabilities;

    /// Exact log-probabilities of candidate answers, or [`BackendError::Unsupported`] when the
    /// backend cannot score exactly (callers then estimate from `complete`'s top logprobs).
    fn score_options(&self, conv: &Conversation, options: &[String]) -> Result<OptionScores>;

    /// The exact distribution of an integer answer in `lo..=hi`, or
    /// [`BackendError::Unsupported`].
    fn score_range(&self, conv: &Conversation, lo: i64, hi: i64) -> Result<RangeScores>;

    /// The tokens of `conv` rendered by the chat template (with the generation prompt when
    /// `add_generation_prompt`), each with its log-probability — vLLM's `prompt_logprobs`.
    /// Backends that cannot return [`BackendError::Unsupported`].
    fn prompt_logprobs(
        &self,
        conv: &Conversation,
        add_generation_prompt: bool,
    ) -> Result<Vec<PromptToken>> {
        let _ = (conv, add_generation_prompt);
        Err(BackendError::Unsupported {
            backend: format!("backend `{}`", self.model_id()),
            what: "return prompt log-probabilities".into(),
        })
    }

    /// Samples `req.n` answers.
    fn complete(&self, req: &CompletionRequest) -> Result<Completions>;

    /// Answers many requests; backends that can run them concurrently (a server) or together
    /// (the local engine, batched decoding) override this. Results are in request order.
    fn complete_many(&self, reqs: &[CompletionRequest]) -> Vec<Result<Completions>> {
        reqs.iter().map(|r| self.complete(r)).collect()
    }

    /// For each option, its first token and the exact log P(that token | prompt), or
    /// [`BackendError::Unsupported`]. The default reads them from [`Backend::score_options`];
    /// the local engine overrides it with the prompt's prefill alone.
    fn first_token_logprobs(
        &self,
        conv: &Conversation,
        options: &[String],
    ) -> Result<Vec<(u32, f64)>> {
        self.score_options(conv, options)?
            .candidates
            .iter()
            .map(|c| {
                let first =
                    c.token_ids
                        .first()
                        .copied()
                        .ok_or_else(|| BackendError::InvalidRequest {
                            param: Some("options".into()),
                            message: format!("option {:?} has no tokens", c.text),
                        })?;
                Ok((first, c.first_token_logprob))
            })
            .collect()
    }

    /// [`Backend::first_token_logprobs`] for many conversations (a probe's items), in order.
    /// The default asks one conversation at a time; the local engine overrides it to run
    /// them in token order, each batch's common head once and the rests several to a forward.
    /// `on_done(k)`: `k` more conversations finished.
    fn first_token_logprobs_many(
        &self,
        convs: &[Conversation],
        options: &[String],
        on_done: &mut dyn FnMut(usize),
    ) -> Result<Vec<Vec<(u32, f64)>>> {
        convs
            .iter()
            .map(|c| {
                let r = self.first_token_logprobs(c, options);
                on_done(1);
                r
            })
            .collect()
    }

    /// The whole distribution of the first answer token of each conversation, in order: every
    /// token of non-zero probability as `(token id, log-probability)`, ids ascending. Only a
    /// backend that sees the logits can give it; the default is [`BackendError::Unsupported`]
    /// (a server returns at most its top log-probabilities). `on_done(k)`: `k` more
    /// conversations finished.
    fn next_token_distributions_many(
        &self,
        convs: &[Conversation],
        on_done: &mut dyn FnMut(usize),
    ) -> Result<Vec<Vec<(u32, f64)>>> {
        let _ = (convs, on_done);
        Err(BackendError::Unsupported {
            backend: format!("backend `{}`", self.model_id()),
            what: "return the full next-token distribution (it needs the logits)".into(),
        })
    }

    /// sha256 of the weights, when the backend can see them (a client of a server cannot).
    fn model_sha256(&self) -> Option<String> {
        None
    }

    /// Where the model lives (a weights file, a server's base URL), for records.
    fn location(&self) -> String {
        self.model_id().to_string()
    }

    /// The same model with the PEFT adapter in `dir` attached (replacing any attached one),
    /// sharing the base weights; [`BackendError::Unsupported`] where adapters cannot be
    /// attached (a served model is named by its server instead).
    fn with_adapter(&self, dir: &std::path::Path) -> Result<std::sync::Arc<dyn Backend>> {
        Err(BackendError::Unsupported {
            backend: format!("`{}`", self.model_id()),
            what: format!(
                "attach the adapter {} (adapters attach to local models; a served finetune is \
                 named as URL#MODEL)",
                dir.display()
            ),
        })
    }

    /// The steering vectors this model adds inside its forward pass, as results record them
    /// (empty when it is not steered).
    fn steering(&self) -> Vec<selfaware_types::SteerRecord> {
        Vec::new()
    }

    /// The provenance of a result measured on this model: the tool, `git_revision`, the
    /// model's weights, `adapter_sha256` (of an adapter attached by the caller), `seed` and the
    /// model's steering.
    fn provenance(
        &self,
        adapter_sha256: Option<String>,
        seed: Option<u64>,
        git_revision: Option<&str>,
    ) -> selfaware_types::Provenance {
        selfaware_types::Provenance {
            tool_version: selfaware_types::TOOL_VERSION.to_string(),
            git_revision: git_revision.map(str::to_string),
            model_sha256: self.model_sha256(),
            adapter_sha256,
            seed,
            steering: self.steering(),
        }
    }

    /// The same model steered by the vectors `specs` name (replacing any steering; none: not
    /// steered), sharing the weights; [`BackendError::Unsupported`] where the backend cannot
    /// add vectors to the model's activations (a served model).
    fn with_steering(
        &self,
        specs: &[selfaware_model::SteerSpec],
    ) -> Result<std::sync::Arc<dyn Backend>> {
        let list: Vec<String> = specs.iter().map(ToString::to_string).collect();
        Err(BackendError::Unsupported {
            backend: format!("`{}`", self.model_id()),
            what: format!(
                "steer ({}): steering adds vectors inside the forward pass, which only a local \
                 model's engine can do\nhint: load the model's weights locally (a .gguf file, a \
                 Hugging Face directory, or `default`)",
                list.join(", ")
            ),
        })
    }

    /// The local engine behind this backend, for work that needs the tensors themselves
    /// (training, activations); None for any other backend.
    fn engine(&self) -> Option<&std::sync::Arc<selfaware_model::Engine>> {
        None
    }
}
