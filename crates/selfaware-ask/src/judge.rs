//! The LLM judge of `judged_word` and `language` questions: any OpenAI-compatible server (or
//! any [`Backend`]), asked greedily, one user message per answer, as in the paper.

use std::sync::Arc;

use selfaware_backend::{Backend, CompletionRequest, HttpBackend, HttpConfig};
use selfaware_eval::records::RatingReadout;
use selfaware_eval::spec::JudgeSpec;
use selfaware_eval::spec::NumericMode;
use selfaware_types::Conversation;

use crate::ask::{self, Numbers};
use crate::error::{AskError, Result};
use crate::eval::JudgeSettings;

/// The judge of a run.
pub struct Judge {
    backend: Arc<dyn Backend>,
    pub settings: JudgeSettings,
}

impl Judge {
    /// Connects to the judge a spec names, reading its API key through `lookup`.
    pub fn open(spec: &JudgeSpec, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Judge> {
        if spec.max_tokens == 0 {
            return Err(AskError::input("judge max_tokens", "expected at least 1"));
        }
        let mut cfg = HttpConfig::new(spec.url.clone(), spec.model.clone());
        cfg.api_key_env = spec.key_env.clone();
        let key = cfg.api_key_from(lookup)?;
        let backend = Arc::new(HttpBackend::new(cfg, key)?);
        Ok(Judge::new(backend, spec))
    }

    /// A judge over any backend (tests use a scripted one).
    pub fn new(backend: Arc<dyn Backend>, spec: &JudgeSpec) -> Judge {
        Judge {
            backend,
            settings: JudgeSettings {
                url: spec.url.clone(),
                model: spec.model.clone(),
                key_env: spec.key_env.clone(),
                max_tokens: spec.max_tokens,
                temperature: 0.0,
            },
        }
    }

    /// The judge's reply to each prompt (one user message each, greedy), in order.
    pub fn ask(&self, prompts: &[String]) -> Result<Vec<String>> {
        let reqs: Vec<CompletionRequest> = prompts
            .iter()
            .map(|p| {
                let mut r = CompletionRequest::new(Conversation::user(None, p));
                r.temperature = self.settings.temperature;
                r.max_tokens = self.settings.max_tokens;
                r
            })
            .collect();
        let judge_error = |message: String| AskError::Judge {
            model: self.settings.model.clone(),
            message,
        };
        self.backend
            .complete_many(&reqs)
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let c = r.map_err(|e| {
                    judge_error(format!("at {}: request {}: {e}", self.settings.url, i + 1))
                })?;
                c.choices
                    .into_iter()
                    .next()
                    .map(|c| c.text)
                    .ok_or_else(|| judge_error("returned no choice".into()))
            })
            .collect()
    }

    /// The judge's rating readout of each prompt (one user message each): the exact
    /// distribution over answers that start with a number 0..=100 where the judge gives exact scores (a local model,
    /// a server with prompt log-probabilities), else its first token's top log-probabilities
    /// ([`selfaware_eval::scorers::ratings`] reads both).
    pub fn rate(&self, prompts: &[String]) -> Result<Vec<RatingReadout>> {
        prompts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let conv = Conversation::user(None, p);
                let r = ask::numbers(&*self.backend, &conv, 0, 100, NumericMode::StartsWith)
                    .map_err(|e| AskError::Judge {
                        model: self.settings.model.clone(),
                        message: format!("at {}: rating {}: {e}", self.settings.url, i + 1),
                    })?;
                Ok(match r {
                    Numbers::Exact(probs) => RatingReadout::Exact { probs },
                    Numbers::TopLogprobs(top) => RatingReadout::TopLogprobs { top },
                })
            })
            .collect()
    }
}
