//! The model a battery or probe asks: the local engine (exact probabilities, always) or a
//! model on an OpenAI-compatible server — exact too when the server returns prompt
//! log-probabilities (vLLM, `selfaware serve`), else the paper's estimators from the top
//! log-probabilities of the first answer token.

use std::path::Path;

use anyhow::{bail, Context, Result};

use selfaware_backend::{Backend, CompletionRequest, HttpBackend, HttpConfig};
use selfaware_model::{Engine, SampleConfig};
use selfaware_types::Conversation;

use crate::cmd_eval::NumericArg;
use crate::settings::Settings;

/// First-token probabilities of answer labels.
pub enum FirstToken {
    /// Exact probability of each label's first token, in label order.
    Exact(Vec<f64>),
    /// The server's most likely first tokens with their log-probabilities (finite ones only).
    TopLogprobs(Vec<(String, f64)>),
}

/// A distribution over the integers `min..=max`.
pub enum Numbers {
    /// Exact probability of each number, from `min` up.
    Exact(Vec<f64>),
    /// The server's most likely first tokens (the paper's estimator reads numbers among them).
    TopLogprobs(Vec<(String, f64)>),
}

/// A local engine or a served model.
pub enum Subject {
    Local(Box<Engine>),
    Remote(HttpBackend),
}

/// `--model` / `--model-from` / `--api-key-env`, resolved: the model's label in records (the
/// reference as given, or `URL#MODEL`) and how to reach it.
pub struct Opened {
    pub label: String,
    pub subject: Subject,
}

impl Subject {
    /// Opens `--model SPEC` (a local reference or `URL#MODEL`) or `--model-from FILE` (the
    /// output of `selfaware finetune`). Local models attach no adapter here.
    pub fn open(
        s: &Settings,
        model: Option<&str>,
        model_from: Option<&Path>,
        api_key_env: Option<&str>,
        estimate: bool,
    ) -> Result<Opened> {
        let (url, name) = match (model, model_from) {
            (Some(_), Some(_)) => bail!("--model and --model-from name the model twice"),
            (None, None) => bail!("expected --model MODEL or --model-from FILE"),
            (None, Some(f)) => {
                let r = crate::cmd_finetune::read_result(f)?;
                (r.base_url, r.fine_tuned_model)
            }
            (Some(m), None) if m.starts_with("http://") || m.starts_with("https://") => {
                let Some((url, name)) = m.split_once('#') else {
                    bail!(
                        "--model {m:?}: a model on a server is URL#MODEL\nhint: --model '{m}#MODEL'"
                    );
                };
                if name.trim().is_empty() {
                    bail!("--model {m:?}: empty model name after `#`");
                }
                (url.to_string(), name.trim().to_string())
            }
            (Some(m), None) => {
                if api_key_env.is_some() || estimate {
                    bail!("--api-key-env and --estimate go with a model on a server (URL#MODEL)");
                }
                return Ok(Opened {
                    label: m.to_string(),
                    subject: Subject::Local(Box::new(s.load_engine(m)?)),
                });
            }
        };
        let url = url.trim_end_matches('/').to_string();
        let mut cfg = HttpConfig::new(url.clone(), name.clone());
        cfg.api_key_env = api_key_env.map(str::to_string);
        if estimate {
            cfg.prompt_logprobs = Some(false);
        }
        let key = cfg.api_key_from(|n| std::env::var(n).ok())?;
        let backend = HttpBackend::new(cfg, key)
            .with_context(|| format!("setting up the client of {url}"))?;
        Ok(Opened {
            label: format!("{url}#{name}"),
            subject: Subject::Remote(backend),
        })
    }

    /// The engine, when local.
    pub fn engine(&self) -> Option<&Engine> {
        match self {
            Subject::Local(e) => Some(e.as_ref()),
            Subject::Remote(_) => None,
        }
    }

    /// sha256 of the local weights (None for a served model: a client cannot see them).
    pub fn model_sha256(&self) -> Option<String> {
        self.engine().map(|e| e.info.sha256.clone())
    }

    /// Where the model lives: the weights file, or the server's base URL.
    pub fn location(&self) -> String {
        match self {
            Subject::Local(e) => e.info.path.clone(),
            Subject::Remote(b) => b.config().base_url.clone(),
        }
    }

    /// How first-token probabilities and numbers are computed, for reports.
    pub fn method(&self) -> &'static str {
        match self {
            Subject::Local(_) => "exact (local engine)",
            Subject::Remote(b) if b.capabilities().exact_scoring => {
                "exact (the server's prompt log-probabilities)"
            }
            Subject::Remote(_) => "estimated from the server's top log-probabilities",
        }
    }

    /// First-token probabilities of `labels` (which must start with different tokens).
    pub fn label_probs(&self, conv: &Conversation, labels: &[String]) -> Result<FirstToken> {
        let firsts: Vec<(u32, f64)> = match self {
            Subject::Local(e) => e.first_token_logprobs(conv, labels)?,
            Subject::Remote(b) if b.capabilities().exact_scoring => {
                b.score_options(conv, labels)?
                    .candidates
                    .iter()
                    .map(|c| {
                        let first =
                            c.token_ids.first().copied().ok_or_else(|| {
                                anyhow::anyhow!("option {:?} has no tokens", c.text)
                            })?;
                        Ok((first, c.first_token_logprob))
                    })
                    .collect::<Result<_>>()?
            }
            Subject::Remote(b) => return Ok(FirstToken::TopLogprobs(top_first(b, conv)?)),
        };
        exact_first(labels, &firsts)
    }

    /// [`Subject::label_probs`] for many conversations (a probe's items). A local model runs
    /// them side by side ([`selfaware_model::Engine::first_token_logprobs_many`]); a served one
    /// answers them one request at a time. `on_done(k)`: `k` more conversations finished.
    pub fn label_probs_many(
        &self,
        convs: &[Conversation],
        labels: &[String],
        on_done: &mut dyn FnMut(usize),
    ) -> Result<Vec<FirstToken>> {
        let Subject::Local(e) = self else {
            return convs
                .iter()
                .map(|c| {
                    let r = self.label_probs(c, labels);
                    on_done(1);
                    r
                })
                .collect();
        };
        let all = e.first_token_logprobs_many(convs, labels, on_done)?;
        all.iter()
            .map(|firsts| exact_first(labels, firsts))
            .collect()
    }

    /// The distribution of an integer answer in `min..=max`. A served model is exact only for
    /// "the answer is exactly n" (each number scored as a whole answer); otherwise, and for
    /// "starts with n", the top log-probabilities of the first token are returned.
    pub fn numbers(
        &self,
        conv: &Conversation,
        min: u32,
        max: u32,
        numeric: NumericArg,
    ) -> Result<Numbers> {
        match self {
            Subject::Local(e) => {
                let r = e.score_range(conv, i64::from(min), i64::from(max))?;
                Ok(Numbers::Exact(
                    r.numbers
                        .iter()
                        .map(|n| match numeric {
                            NumericArg::Complete => n.logprob_complete.exp(),
                            NumericArg::StartsWith => n.logprob_starts_with.exp(),
                        })
                        .collect(),
                ))
            }
            Subject::Remote(b)
                if b.capabilities().exact_scoring && numeric == NumericArg::Complete =>
            {
                let numbers: Vec<String> = (min..=max).map(|n| n.to_string()).collect();
                let r = b.score_options(conv, &numbers)?;
                Ok(Numbers::Exact(
                    r.candidates.iter().map(|c| c.logprob.exp()).collect(),
                ))
            }
            Subject::Remote(b) => Ok(Numbers::TopLogprobs(top_first(b, conv)?)),
        }
    }

    /// log P(candidate, then end of turn) of each candidate; exact only.
    pub fn sequence_logprobs(&self, conv: &Conversation, cands: &[String]) -> Result<Vec<f64>> {
        let r = match self {
            Subject::Local(e) => e.score_options(conv, cands)?,
            Subject::Remote(b) if b.capabilities().exact_scoring => b.score_options(conv, cands)?,
            Subject::Remote(b) => bail!(
                "`{}` cannot score whole answers: its server returns no prompt log-probabilities \
                 (vLLM and `selfaware serve` do)",
                b.model_id()
            ),
        };
        Ok(r.candidates.iter().map(|c| c.logprob).collect())
    }

    /// `n` sampled answers (top-p 1). A served model gets requests of at most its `max_n`
    /// samples, the k-th with seed `seed + k`.
    pub fn sample(
        &self,
        conv: &Conversation,
        n: usize,
        temperature: f64,
        max_tokens: usize,
        seed: u64,
    ) -> Result<Vec<String>> {
        match self {
            Subject::Local(e) => {
                let cfg = SampleConfig {
                    n,
                    temperature,
                    top_p: 1.0,
                    max_tokens,
                    seed,
                    top_logprobs: 0,
                };
                Ok(e.sample(conv, &cfg)?.into_iter().map(|g| g.text).collect())
            }
            Subject::Remote(b) => {
                let max_n = b.capabilities().max_n.max(1);
                let mut reqs = Vec::new();
                let mut left = n;
                while left > 0 {
                    let k = left.min(max_n);
                    reqs.push(CompletionRequest {
                        conversation: conv.clone(),
                        n: k,
                        temperature,
                        top_p: 1.0,
                        max_tokens,
                        seed: seed.wrapping_add(reqs.len() as u64),
                        stop: Vec::new(),
                        logprobs: false,
                        top_logprobs: 0,
                    });
                    left -= k;
                }
                let mut out = Vec::with_capacity(n);
                for r in b.complete_many(&reqs) {
                    out.extend(r?.choices.into_iter().map(|c| c.text));
                }
                if out.len() != n {
                    bail!(
                        "`{}` returned {} samples, {n} were asked for",
                        b.model_id(),
                        out.len()
                    );
                }
                Ok(out)
            }
        }
    }
}

/// The most likely first answer tokens of a served model (one greedy token with the most
/// top log-probabilities the server allows, at most 20 as in the paper). Entries of
/// probability 0 (logprob −∞, which JSON cannot carry) are dropped.
fn top_first(b: &HttpBackend, conv: &Conversation) -> Result<Vec<(String, f64)>> {
    let k = b.capabilities().max_top_logprobs.clamp(1, 20);
    let req = CompletionRequest {
        conversation: conv.clone(),
        n: 1,
        temperature: 0.0,
        top_p: 1.0,
        max_tokens: 1,
        seed: 0,
        stop: Vec::new(),
        logprobs: true,
        top_logprobs: k,
    };
    let c = b.complete(&req)?;
    let first = c
        .choices
        .first()
        .and_then(|ch| ch.logprobs.as_ref())
        .and_then(|lp| lp.first())
        .with_context(|| {
            format!(
                "`{}` returned no log-probabilities for the first answer token",
                b.model_id()
            )
        })?;
    Ok(first
        .top_logprobs
        .iter()
        .filter(|t| t.logprob.is_finite())
        .map(|t| (t.token.clone(), t.logprob))
        .collect())
}

/// The probabilities of labels from their first tokens' log-probabilities; labels that share a
/// first token cannot be told apart this way.
fn exact_first(labels: &[String], firsts: &[(u32, f64)]) -> Result<FirstToken> {
    let mut seen = std::collections::HashSet::new();
    if !firsts.iter().all(|(first, _)| seen.insert(*first)) {
        bail!(
            "option labels {labels:?} share a first token, so first-token probabilities cannot \
             tell them apart"
        );
    }
    Ok(FirstToken::Exact(
        firsts.iter().map(|(_, lp)| lp.exp()).collect(),
    ))
}
