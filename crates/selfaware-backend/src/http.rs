//! [`HttpBackend`]: any OpenAI-compatible chat-completions endpoint.
//!
//! Every request goes through one path ([`HttpBackend::send`]): the response cache (optional), a
//! concurrency limit, a client-side rate limit, a per-request timeout, and retries with
//! exponential backoff and jitter on 408/409/429/5xx, timeouts and connection errors, honouring
//! `Retry-After` / `retry-after-ms`. The API key is only ever placed in the `Authorization`
//! header: it is redacted from Debug output and from every error message, and it is not part of
//! cache keys.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use selfaware_model::{OptionScores, RangeScores};
use selfaware_types::Conversation;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::openai::{self, ChatCompletionRequest, ChatCompletionResponse, ErrorResponse, Stop};
use crate::{
    Backend, BackendError, Capabilities, Completion, CompletionRequest, Completions, FinishReason,
    Result,
};

/// Settings of an [`HttpBackend`] (a `[backend]` table in experiment configs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Base URL including the version prefix, e.g. `http://127.0.0.1:8000/v1`.
    pub base_url: String,
    /// Model name sent with each request.
    pub model: String,
    /// NAME of the environment variable holding the API key. The binary reads it and passes the
    /// value to [`HttpBackend::new`]; this library never reads the environment.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Requests in flight at once.
    #[serde(default = "defaults::max_concurrency")]
    pub max_concurrency: usize,
    /// Client-side rate limit (requests started per minute); none when absent.
    #[serde(default)]
    pub requests_per_minute: Option<f64>,
    /// Retries after the first attempt.
    #[serde(default = "defaults::max_retries")]
    pub max_retries: u32,
    /// First backoff delay; doubles each retry up to `max_backoff_ms`.
    #[serde(default = "defaults::initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    #[serde(default = "defaults::max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// Per-attempt timeout.
    #[serde(default = "defaults::timeout_s")]
    pub timeout_s: f64,
    /// Directory of cached responses, keyed by the sha256 of the canonical request JSON.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// The most `top_logprobs` the server allows (OpenAI: 20).
    #[serde(default = "defaults::max_top_logprobs")]
    pub max_top_logprobs: usize,
    /// The most samples per request the server allows (OpenAI: 128).
    #[serde(default = "defaults::max_n")]
    pub max_n: usize,
    /// Seed of the backoff jitter.
    #[serde(default)]
    pub jitter_seed: u64,
    /// Whether the server returns vLLM's `prompt_logprobs` (then options are scored exactly):
    /// true, false, or absent to detect it with one request on first use.
    #[serde(default)]
    pub prompt_logprobs: Option<bool>,
}

mod defaults {
    pub fn max_concurrency() -> usize {
        8
    }
    pub fn max_retries() -> u32 {
        6
    }
    pub fn initial_backoff_ms() -> u64 {
        500
    }
    pub fn max_backoff_ms() -> u64 {
        60_000
    }
    pub fn timeout_s() -> f64 {
        120.0
    }
    pub fn max_top_logprobs() -> usize {
        20
    }
    pub fn max_n() -> usize {
        128
    }
}

impl HttpConfig {
    /// Defaults for everything but the URL and model.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        HttpConfig {
            base_url: base_url.into(),
            model: model.into(),
            api_key_env: None,
            max_concurrency: defaults::max_concurrency(),
            requests_per_minute: None,
            max_retries: defaults::max_retries(),
            initial_backoff_ms: defaults::initial_backoff_ms(),
            max_backoff_ms: defaults::max_backoff_ms(),
            timeout_s: defaults::timeout_s(),
            cache_dir: None,
            max_top_logprobs: defaults::max_top_logprobs(),
            max_n: defaults::max_n(),
            jitter_seed: 0,
            prompt_logprobs: None,
        }
    }

    /// The API key named by `api_key_env`, looked up with `lookup` (the binary passes
    /// `|name| std::env::var(name).ok()`; this library never reads the environment). None when
    /// no variable is named; an error when it is named but unset or empty.
    pub fn api_key_from(&self, lookup: impl Fn(&str) -> Option<String>) -> Result<Option<ApiKey>> {
        let Some(name) = &self.api_key_env else {
            return Ok(None);
        };
        match lookup(name) {
            Some(v) if !v.trim().is_empty() => Ok(Some(ApiKey(v.trim().to_string()))),
            _ => Err(BackendError::Config(format!(
                "the environment variable `{name}` (named by the backend's api_key_env) is not set\nhint: export {name}=..."
            ))),
        }
    }

    fn check(&self) -> Result<()> {
        let bad = |m: String| Err(BackendError::Config(m));
        if !(self.base_url.starts_with("http://") || self.base_url.starts_with("https://")) {
            return bad(format!(
                "backend base_url `{}` must start with http:// or https://",
                self.base_url
            ));
        }
        if self.max_concurrency == 0 {
            return bad("backend max_concurrency must be at least 1".into());
        }
        if let Some(r) = self.requests_per_minute {
            if !(r.is_finite() && r > 0.0) {
                return bad(format!("backend requests_per_minute must be > 0, got {r}"));
            }
        }
        if !(self.timeout_s.is_finite() && self.timeout_s > 0.0) {
            return bad(format!(
                "backend timeout_s must be > 0, got {}",
                self.timeout_s
            ));
        }
        Ok(())
    }
}

/// An API key. Its Debug output is redacted; the value is only read to build the header.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(value: impl Into<String>) -> Self {
        ApiKey(value.into())
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Exponential backoff with "equal jitter": half the capped exponential delay plus a random
/// half, `unit` being a uniform draw in `[0, 1)`.
pub fn backoff_delay(attempt: u32, initial: Duration, max: Duration, unit: f64) -> Duration {
    let exp = initial
        .saturating_mul(2u32.saturating_pow(attempt.min(30)))
        .min(max);
    exp.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0))
}

/// The delay a server asks for: `retry-after-ms` (milliseconds) or `Retry-After` (seconds; the
/// HTTP-date form is not supported and ignored).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let get = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok();
    let d = get("retry-after-ms")
        .map(|ms| ms / 1000.0)
        .or_else(|| get("retry-after"))?;
    (d.is_finite() && d >= 0.0).then(|| Duration::from_secs_f64(d.min(600.0)))
}

/// Spaces request starts `interval` apart (a leaky bucket without burst).
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    next: Option<Instant>,
}

impl RateLimiter {
    pub fn per_minute(rpm: f64) -> Self {
        RateLimiter {
            interval: Duration::from_secs_f64(60.0 / rpm),
            next: None,
        }
    }

    /// Reserves the next start slot at or after `now`.
    pub fn reserve(&mut self, now: Instant) -> Instant {
        let slot = match self.next {
            Some(n) if n > now => n,
            _ => now,
        };
        self.next = Some(slot + self.interval);
        slot
    }
}

/// JSON with object keys sorted at every level, serialized compactly.
pub fn canonical_json(v: &Value) -> String {
    fn sort(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let mut out = serde_json::Map::new();
                for k in keys {
                    out.insert(k.clone(), sort(&m[k]));
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    sort(v).to_string()
}

/// The cache key of a request: sha256 of the canonical JSON of the URL and body.
pub fn cache_key(url: &str, body: &Value) -> String {
    let canon = canonical_json(&serde_json::json!({"url": url, "body": body}));
    hex::encode(Sha256::digest(canon.as_bytes()))
}

/// How a model takes its sampling settings, told by its name (a fine-tuned model, `ft:BASE:…`,
/// by its base's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFamily {
    /// Chat models: `max_tokens`, `temperature`, `top_p` and `logprobs` as asked.
    Chat,
    /// OpenAI's reasoning models (o-series, gpt-5 except its `-chat` models): the length limit
    /// is `max_completion_tokens`, and `temperature`, `top_p` and `logprobs` are refused, so
    /// they are not sent (the model samples at its fixed setting).
    Reasoning,
}

impl ModelFamily {
    pub fn of(model: &str) -> Self {
        let name = model.strip_prefix("ft:").unwrap_or(model);
        let base = name.split(':').next().unwrap_or(name).to_ascii_lowercase();
        let o_series = base
            .strip_prefix('o')
            .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()));
        let gpt5 = base.starts_with("gpt-5") && !base.starts_with("gpt-5-chat");
        if o_series || gpt5 {
            ModelFamily::Reasoning
        } else {
            ModelFamily::Chat
        }
    }
}

/// Whether an error answer says the server does not take the prompt log-probability fields
/// (OpenAI: 400 "Unrecognized request argument supplied: prompt_logprobs"). Anything else —
/// a bad key, a rate limit, a server error — is not an answer to the question.
fn refuses_prompt_logprobs(e: &BackendError) -> bool {
    match e {
        BackendError::Http {
            status: 400 | 422,
            message,
            ..
        } => ["prompt_logprobs", "add_generation_prompt"]
            .iter()
            .any(|f| message.contains(f)),
        _ => false,
    }
}

/// A prompt token from `prompt_logprobs`: id, decoded text, log-probability.
type WireToken = (u32, String, f64);

/// How a request body is built on each attempt.
pub(crate) enum Body {
    None,
    Json(Value),
    /// A multipart upload: text fields and one file part.
    File {
        fields: Vec<(String, String)>,
        filename: String,
        bytes: Vec<u8>,
    },
}

struct Inner {
    cfg: HttpConfig,
    key: Option<ApiKey>,
    client: reqwest::Client,
    slots: Semaphore,
    limiter: Option<Mutex<RateLimiter>>,
    jitter: Mutex<ChaCha8Rng>,
    wait: Wait,
}

/// How the client waits: given a delay (the backoff between attempts of a request, what the
/// server asked for with `Retry-After`, or the time to the rate limit's next free slot), a
/// future that completes when the request may go on. [`HttpBackend::with_wait`] replaces the
/// default, a tokio sleep.
pub type Wait =
    Arc<dyn Fn(Duration) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// An OpenAI-compatible endpoint as a [`Backend`].
pub struct HttpBackend {
    inner: Arc<Inner>,
    rt: Option<tokio::runtime::Runtime>,
    /// Whether the server returns prompt logprobs, once known.
    prompt_logprobs: std::sync::OnceLock<bool>,
}

impl std::fmt::Debug for HttpBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpBackend")
            .field("config", &self.inner.cfg)
            .field("api_key", &self.inner.key)
            .finish()
    }
}

impl Drop for HttpBackend {
    fn drop(&mut self) {
        // Safe to call from inside another runtime, unlike dropping the runtime.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl HttpBackend {
    /// A backend for `cfg`; `key` is the value of the variable `cfg.api_key_env` names.
    pub fn new(cfg: HttpConfig, key: Option<ApiKey>) -> Result<Self> {
        Self::with_wait(cfg, key, Arc::new(|d| Box::pin(sleep(d))))
    }

    /// [`HttpBackend::new`] doing all its waiting (retries, rate limit) through `wait` (see
    /// [`Wait`]): tests record the delays asked for instead of sleeping through them.
    pub fn with_wait(cfg: HttpConfig, key: Option<ApiKey>, wait: Wait) -> Result<Self> {
        cfg.check()?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs_f64(cfg.timeout_s))
            .build()
            .map_err(|e| BackendError::Config(format!("cannot build the HTTP client: {e}")))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("selfaware-http")
            .enable_all()
            .build()
            .map_err(|e| BackendError::Config(format!("cannot start the HTTP runtime: {e}")))?;
        let limiter = cfg
            .requests_per_minute
            .map(|r| Mutex::new(RateLimiter::per_minute(r)));
        let jitter = Mutex::new(ChaCha8Rng::seed_from_u64(cfg.jitter_seed));
        Ok(HttpBackend {
            inner: Arc::new(Inner {
                slots: Semaphore::new(cfg.max_concurrency),
                cfg,
                key,
                client,
                limiter,
                jitter,
                wait,
            }),
            rt: Some(rt),
            prompt_logprobs: std::sync::OnceLock::new(),
        })
    }

    /// The settings this backend runs with.
    pub fn config(&self) -> &HttpConfig {
        &self.inner.cfg
    }

    /// Runs a future on this backend's runtime and waits for it, from any thread (including
    /// threads of another tokio runtime).
    fn block<T: Send + 'static>(&self, fut: impl Future<Output = T> + Send + 'static) -> Result<T> {
        let rt = self
            .rt
            .as_ref()
            .ok_or_else(|| BackendError::Config("the HTTP runtime has stopped".into()))?;
        let (tx, rx) = std::sync::mpsc::channel();
        rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv()
            .map_err(|_| BackendError::Config("the HTTP runtime stopped mid-request".into()))
    }

    /// Sends one request through cache, limits and retries; returns the response body.
    pub(crate) fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Body,
        use_cache: bool,
    ) -> Result<Vec<u8>> {
        let inner = self.inner.clone();
        let path = path.to_string();
        self.block(async move { inner.send(method, &path, body, use_cache).await })?
    }

    /// Sends a JSON request and parses the JSON answer.
    pub(crate) fn json<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Body,
        use_cache: bool,
    ) -> Result<T> {
        let bytes = self.send(method, path, body, use_cache)?;
        self.inner.parse(path, &bytes)
    }

    fn family(&self) -> ModelFamily {
        ModelFamily::of(&self.inner.cfg.model)
    }

    /// The request as this model's family takes it (see [`ModelFamily`]).
    fn wire_request(&self, req: &CompletionRequest) -> Result<ChatCompletionRequest> {
        let chat = self.family() == ModelFamily::Chat;
        if !chat && req.logprobs {
            return Err(BackendError::Unsupported {
                backend: format!("the model `{}`", self.inner.cfg.model),
                what: "return log-probabilities (reasoning models refuse `logprobs`)".into(),
            });
        }
        let limit = req.max_tokens as u64;
        Ok(ChatCompletionRequest {
            model: self.inner.cfg.model.clone(),
            messages: openai::from_conversation(&req.conversation),
            n: (req.n != 1).then_some(req.n as u64),
            temperature: chat.then_some(req.temperature),
            top_p: chat.then_some(req.top_p),
            max_tokens: chat.then_some(limit),
            max_completion_tokens: (!chat).then_some(limit),
            seed: Some(req.seed as i64),
            stop: (!req.stop.is_empty()).then(|| Stop::Many(req.stop.clone())),
            logprobs: req.logprobs.then_some(true),
            top_logprobs: (req.logprobs && req.top_logprobs > 0).then_some(req.top_logprobs as u64),
            ..Default::default()
        })
    }

    fn unsupported(&self, what: &str) -> BackendError {
        BackendError::Unsupported {
            backend: format!("the OpenAI-compatible endpoint {}", self.inner.cfg.base_url),
            what: format!(
                "{what} (it returns no prompt log-probabilities); use the top-logprobs estimator"
            ),
        }
    }

    /// Request limits, without detecting exact scoring (no network).
    fn limits(&self) -> Capabilities {
        Capabilities {
            exact_scoring: false,
            max_top_logprobs: self.inner.cfg.max_top_logprobs,
            max_n: self.inner.cfg.max_n,
            deterministic_seed: false,
        }
    }

    /// Whether options can be scored exactly through `prompt_logprobs`: configured, or detected
    /// once with a one-token request. Only the server's own answer decides: prompt
    /// log-probabilities returned (yes), a success without them or a 400/422 naming the field
    /// (no). Any other failure of the probe (401, 429 or 5xx after the retries, a connection
    /// error) is returned as the error it is and decides nothing. Reasoning models are never
    /// probed: OpenAI's do not return prompt log-probabilities.
    pub fn has_prompt_logprobs(&self) -> Result<bool> {
        if let Some(b) = self.inner.cfg.prompt_logprobs {
            return Ok(b);
        }
        if self.family() == ModelFamily::Reasoning {
            return Ok(false);
        }
        if let Some(&b) = self.prompt_logprobs.get() {
            return Ok(b);
        }
        let known = match self.prompt_tokens(&Conversation::user(None, "Hi"), true) {
            Ok(tokens) => tokens.is_some(),
            Err(e) if refuses_prompt_logprobs(&e) => false,
            Err(e) => return Err(e),
        };
        Ok(*self.prompt_logprobs.get_or_init(|| known))
    }

    /// The prompt tokens of `conv` as rendered by the server, with their log-probabilities
    /// (`None` for the first token, whose id the API does not give), or None when the server
    /// returns no prompt logprobs.
    fn prompt_tokens(
        &self,
        conv: &Conversation,
        add_generation_prompt: bool,
    ) -> Result<Option<Vec<Option<WireToken>>>> {
        let wire = ChatCompletionRequest {
            model: self.inner.cfg.model.clone(),
            messages: openai::from_conversation(conv),
            max_tokens: Some(1),
            temperature: Some(0.0),
            seed: Some(0),
            prompt_logprobs: Some(0),
            add_generation_prompt: Some(add_generation_prompt),
            ..Default::default()
        };
        let body = serde_json::to_value(wire)
            .map_err(|e| BackendError::Config(format!("cannot encode the request: {e}")))?;
        let resp: ChatCompletionResponse = self.json(
            reqwest::Method::POST,
            "chat/completions",
            Body::Json(body),
            true,
        )?;
        let url = self.inner.url("chat/completions");
        let Some(list) = resp.prompt_logprobs else {
            return Ok(None);
        };
        list.into_iter()
            .enumerate()
            .map(|(i, entry)| match entry {
                None if i == 0 => Ok(None),
                Some(map) if map.len() == 1 => {
                    let (id, e) = map.into_iter().next().ok_or_else(|| {
                        BackendError::BadResponse {
                            url: url.clone(),
                            message: format!("prompt_logprobs[{i}] is empty"),
                        }
                    })?;
                    let id: u32 = id.parse().map_err(|_| BackendError::BadResponse {
                        url: url.clone(),
                        message: format!("prompt_logprobs[{i}] has token id {id:?}"),
                    })?;
                    Ok(Some((id, e.decoded_token.unwrap_or_default(), e.logprob)))
                }
                _ => Err(BackendError::BadResponse {
                    url: url.clone(),
                    message: format!(
                        "prompt_logprobs[{i}] is not one token's entry (asked for prompt_logprobs=0)"
                    ),
                }),
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// Scores options from the prompt logprobs of `conv + assistant(option)`: the answer's
    /// tokens and the end-of-turn token after them, found after the generation prompt's tokens.
    fn score_options_remote(
        &self,
        conv: &Conversation,
        options: &[String],
    ) -> Result<OptionScores> {
        let url = self.inner.url("chat/completions");
        let bad = |message: String| BackendError::BadResponse {
            url: url.clone(),
            message,
        };
        let base = self
            .prompt_tokens(conv, true)?
            .ok_or_else(|| self.unsupported("score options exactly"))?;
        let p = base.len();
        let mut candidates = Vec::with_capacity(options.len());
        let mut firsts: Vec<(u32, f64)> = Vec::new();
        for opt in options {
            let mut full_conv = conv.clone();
            full_conv.push(selfaware_types::Message::assistant(opt.clone()));
            let full = self
                .prompt_tokens(&full_conv, false)?
                .ok_or_else(|| self.unsupported("score options exactly"))?;
            let id_at = |v: &[Option<WireToken>], i: usize| v[i].as_ref().map(|t| t.0);
            if full.len() <= p || (1..p).any(|i| id_at(&base, i) != id_at(&full, i)) {
                return Err(bad(format!(
                    "the prompt's tokens are not a prefix of the tokens of prompt + answer {opt:?}"
                )));
            }
            let mut text = String::new();
            let mut ids = Vec::new();
            let mut total = 0.0;
            let mut k = p;
            while text.len() < opt.len() && k < full.len() {
                let (id, t, lp) = full[k].clone().ok_or_else(|| bad("a null entry".into()))?;
                text.push_str(&t);
                ids.push(id);
                total += lp;
                k += 1;
            }
            if text != *opt || ids.is_empty() {
                return Err(bad(format!(
                    "answer {opt:?} is not a whole number of tokens in context (they spell {text:?})"
                )));
            }
            let eot = full
                .get(k)
                .and_then(|t| t.as_ref())
                .ok_or_else(|| bad(format!("no end-of-turn token after answer {opt:?}")))?;
            let first = full[p].as_ref().map(|t| t.2).unwrap_or(f64::NEG_INFINITY);
            if !firsts.iter().any(|f| f.0 == ids[0]) {
                firsts.push((ids[0], first));
            }
            candidates.push(selfaware_model::CandidateScore {
                text: opt.clone(),
                token_ids: ids,
                first_token_logprob: first,
                logprob: total + eot.2,
            });
        }
        let inside: f64 = firsts.iter().map(|f| f.1.exp()).sum();
        Ok(OptionScores {
            prompt_tokens: p,
            candidates,
            off_candidate_first_token_mass: (1.0 - inside).max(0.0),
            steering: Vec::new(),
        })
    }
}

impl Inner {
    fn url(&self, path: &str) -> String {
        format!(
            "{}/{}",
            self.cfg.base_url.trim_end_matches('/'),
            path.trim_start_matches('/')
        )
    }

    /// Removes the API key from a message (servers sometimes echo it).
    fn redact(&self, s: String) -> String {
        match &self.key {
            Some(k) if !k.0.is_empty() => s.replace(&k.0, "<redacted>"),
            _ => s,
        }
    }

    fn parse<T: serde::de::DeserializeOwned>(&self, path: &str, bytes: &[u8]) -> Result<T> {
        serde_json::from_slice(bytes).map_err(|e| BackendError::BadResponse {
            url: self.url(path),
            message: self.redact(format!(
                "{e}; the body starts with {:?}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            )),
        })
    }

    fn cache_path(&self, key: &str) -> Option<PathBuf> {
        let dir = self.cfg.cache_dir.as_ref()?;
        Some(dir.join(&key[..2]).join(format!("{key}.json")))
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Body,
        use_cache: bool,
    ) -> Result<Vec<u8>> {
        let url = self.url(path);
        let cache = match (&body, use_cache) {
            (Body::Json(v), true) => self.cache_path(&cache_key(&url, v)),
            _ => None,
        };
        if let Some(p) = &cache {
            if let Ok(bytes) = fs_err::read(p) {
                if serde_json::from_slice::<Value>(&bytes).is_ok() {
                    return Ok(bytes);
                }
            }
        }
        let bytes = self.with_retries(&method, &url, &body).await?;
        if let Some(p) = &cache {
            write_atomic(p, &bytes)?;
        }
        Ok(bytes)
    }

    fn build(
        &self,
        method: &reqwest::Method,
        url: &str,
        body: &Body,
    ) -> Result<reqwest::RequestBuilder> {
        let mut rb = self.client.request(method.clone(), url);
        if let Some(k) = &self.key {
            rb = rb.bearer_auth(&k.0);
        }
        Ok(match body {
            Body::None => rb,
            Body::Json(v) => rb.json(v),
            Body::File {
                fields,
                filename,
                bytes,
            } => {
                let mut form = reqwest::multipart::Form::new();
                for (k, v) in fields {
                    form = form.text(k.clone(), v.clone());
                }
                let part = reqwest::multipart::Part::bytes(bytes.clone())
                    .file_name(filename.clone())
                    .mime_str("application/jsonl")
                    .map_err(|e| BackendError::Config(format!("bad upload part: {e}")))?;
                rb.multipart(form.part("file", part))
            }
        })
    }

    async fn with_retries(
        &self,
        method: &reqwest::Method,
        url: &str,
        body: &Body,
    ) -> Result<Vec<u8>> {
        let attempts = self.cfg.max_retries + 1;
        let mut last = String::new();
        for attempt in 0..attempts {
            match self.attempt(method, url, body).await {
                Attempt::Done(bytes) => return Ok(bytes),
                Attempt::Fatal(e) => return Err(e),
                Attempt::Retry { message, wait } => {
                    last = message;
                    if attempt + 1 < attempts {
                        // A delay the server names replaces the backoff.
                        (self.wait)(self.delay(attempt, wait)).await;
                    }
                }
            }
        }
        Err(BackendError::RetriesExhausted {
            url: url.to_string(),
            attempts,
            last: self.redact(last),
        })
    }

    fn delay(&self, retry: u32, asked: Option<Duration>) -> Duration {
        if let Some(a) = asked {
            return a;
        }
        let unit = self
            .jitter
            .lock()
            .map(|mut r| r.gen::<f64>())
            .unwrap_or(0.5);
        backoff_delay(
            retry,
            Duration::from_millis(self.cfg.initial_backoff_ms),
            Duration::from_millis(self.cfg.max_backoff_ms),
            unit,
        )
    }

    async fn attempt(&self, method: &reqwest::Method, url: &str, body: &Body) -> Attempt {
        let rb = match self.build(method, url, body) {
            Ok(rb) => rb,
            Err(e) => return Attempt::Fatal(e),
        };
        if let Some(l) = &self.limiter {
            let now = Instant::now();
            let slot = l.lock().map(|mut l| l.reserve(now)).unwrap_or(now);
            let d = slot.saturating_duration_since(now);
            if !d.is_zero() {
                (self.wait)(d).await;
            }
        }
        let Ok(_permit) = self.slots.acquire().await else {
            return Attempt::Fatal(BackendError::Config(
                "the request limiter was closed".into(),
            ));
        };
        let resp = match rb.send().await {
            Ok(r) => r,
            Err(e) => {
                let kind = if e.is_timeout() {
                    "timed out"
                } else {
                    "failed"
                };
                return Attempt::Retry {
                    message: self.redact(format!("request {kind}: {e}")),
                    wait: None,
                };
            }
        };
        let status = resp.status();
        let wait = retry_after(resp.headers());
        let bytes = match resp.bytes().await {
            Ok(b) => b.to_vec(),
            Err(e) => {
                return Attempt::Retry {
                    message: self.redact(format!("reading the response failed: {e}")),
                    wait: None,
                }
            }
        };
        if status.is_success() {
            return Attempt::Done(bytes);
        }
        let message = self.redact(error_message(&bytes));
        let code = status.as_u16();
        if matches!(code, 408 | 409 | 429) || status.is_server_error() {
            Attempt::Retry {
                message: format!("HTTP {code}: {message}"),
                wait,
            }
        } else {
            Attempt::Fatal(BackendError::Http {
                url: url.to_string(),
                status: code,
                message,
            })
        }
    }
}

enum Attempt {
    Done(Vec<u8>),
    Retry {
        message: String,
        wait: Option<Duration>,
    },
    Fatal(BackendError),
}

async fn sleep(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

/// The message of an OpenAI error body, or the start of any other body.
fn error_message(bytes: &[u8]) -> String {
    match serde_json::from_slice::<ErrorResponse>(bytes) {
        Ok(e) => e.error.message,
        Err(_) => {
            let s = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
            if s.is_empty() {
                "(empty body)".into()
            } else {
                s
            }
        }
    }
}

pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    selfaware_types::write_atomic(path, bytes).map_err(BackendError::io(path))
}

fn to_completions(resp: ChatCompletionResponse, url: &str, n: usize) -> Result<Completions> {
    let mut choices = resp.choices;
    choices.sort_by_key(|c| c.index);
    if choices.len() != n {
        return Err(BackendError::BadResponse {
            url: url.to_string(),
            message: format!("asked for {n} choices, got {}", choices.len()),
        });
    }
    Ok(Completions {
        prompt_tokens: resp.usage.as_ref().map(|u| u.prompt_tokens as usize),
        completion_tokens: resp.usage.as_ref().map(|u| u.completion_tokens as usize),
        choices: choices
            .into_iter()
            .map(|c| Completion {
                text: c.message.content.unwrap_or_default(),
                finish_reason: FinishReason::parse(c.finish_reason.as_deref().unwrap_or("stop")),
                tokens: None,
                logprobs: c
                    .logprobs
                    .and_then(|l| l.content)
                    .map(|l| openai::from_wire_logprobs(&l)),
            })
            .collect(),
    })
}

impl Backend for HttpBackend {
    fn model_id(&self) -> &str {
        &self.inner.cfg.model
    }

    /// When the probe of prompt log-probabilities fails (see [`HttpBackend::has_prompt_logprobs`])
    /// the method stays undecided and this says exact: the exact path asks again and returns
    /// the failure, instead of the answers silently switching to the estimators.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            exact_scoring: self.has_prompt_logprobs().unwrap_or(true),
            ..self.limits()
        }
    }

    fn score_options(&self, conv: &Conversation, options: &[String]) -> Result<OptionScores> {
        if !self.has_prompt_logprobs()? {
            return Err(self.unsupported("score options exactly"));
        }
        self.score_options_remote(conv, options)
    }

    /// Unsupported: the "starts with n" probabilities need whole next-token distributions, which
    /// prompt logprobs do not give. (Exact "is exactly n" scores: `score_options` over the
    /// numbers.)
    fn location(&self) -> String {
        self.inner.cfg.base_url.clone()
    }

    fn score_range(&self, _conv: &Conversation, _lo: i64, _hi: i64) -> Result<RangeScores> {
        Err(self.unsupported("score a numeric range exactly"))
    }

    fn complete(&self, req: &CompletionRequest) -> Result<Completions> {
        req.validate(&self.limits())?;
        let body = serde_json::to_value(self.wire_request(req)?)
            .map_err(|e| BackendError::Config(format!("cannot encode the request: {e}")))?;
        let resp: ChatCompletionResponse = self.json(
            reqwest::Method::POST,
            "chat/completions",
            Body::Json(body),
            true,
        )?;
        to_completions(resp, &self.inner.url("chat/completions"), req.n)
    }

    fn complete_many(&self, reqs: &[CompletionRequest]) -> Vec<Result<Completions>> {
        let caps = self.limits();
        let url = self.inner.url("chat/completions");
        let mut waiting = Vec::with_capacity(reqs.len());
        for r in reqs {
            let (tx, rx) = std::sync::mpsc::channel();
            let prepared = r.validate(&caps).and_then(|_| {
                serde_json::to_value(self.wire_request(r)?)
                    .map_err(|e| BackendError::Config(format!("cannot encode the request: {e}")))
            });
            match (prepared, &self.rt) {
                (Ok(body), Some(rt)) => {
                    let inner = self.inner.clone();
                    rt.spawn(async move {
                        let out = inner
                            .send(
                                reqwest::Method::POST,
                                "chat/completions",
                                Body::Json(body),
                                true,
                            )
                            .await;
                        let _ = tx.send(out);
                    });
                }
                (Err(e), _) => {
                    let _ = tx.send(Err(e));
                }
                (Ok(_), None) => {
                    let _ = tx.send(Err(BackendError::Config(
                        "the HTTP runtime has stopped".into(),
                    )));
                }
            }
            waiting.push((rx, r.n));
        }
        waiting
            .into_iter()
            .map(|(rx, n)| {
                let bytes = rx.recv().map_err(|_| {
                    BackendError::Config("the HTTP runtime stopped mid-request".into())
                })??;
                let resp: ChatCompletionResponse = self.inner.parse("chat/completions", &bytes)?;
                to_completions(resp, &url, n)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_is_capped_and_jittered() {
        let i = Duration::from_millis(100);
        let m = Duration::from_millis(1000);
        assert_eq!(backoff_delay(0, i, m, 1.0), Duration::from_millis(100));
        assert_eq!(backoff_delay(0, i, m, 0.0), Duration::from_millis(50));
        assert_eq!(backoff_delay(2, i, m, 1.0), Duration::from_millis(400));
        assert_eq!(backoff_delay(10, i, m, 1.0), m);
        assert_eq!(backoff_delay(u32::MAX, i, m, 0.0), m / 2);
    }

    #[test]
    fn retry_after_headers() {
        use reqwest::header::{HeaderMap, HeaderValue};
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", HeaderValue::from_static("150"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(150)));
        let mut h = HeaderMap::new();
        h.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn rate_limiter_spaces_starts() {
        let mut l = RateLimiter::per_minute(600.0); // one per 100 ms
        let t0 = Instant::now();
        let slots: Vec<Instant> = (0..4).map(|_| l.reserve(t0)).collect();
        for (k, s) in slots.iter().enumerate() {
            assert_eq!(*s - t0, Duration::from_millis(100 * k as u64));
        }
        // After an idle gap, the next start is immediate.
        let later = t0 + Duration::from_secs(5);
        assert_eq!(l.reserve(later), later);
    }

    #[test]
    fn cache_keys_ignore_key_order_and_differ_by_content() {
        let a = serde_json::json!({"model": "m", "n": 1, "x": {"b": 1, "a": 2}});
        let b = serde_json::json!({"x": {"a": 2, "b": 1}, "n": 1, "model": "m"});
        let c = serde_json::json!({"model": "m", "n": 2, "x": {"b": 1, "a": 2}});
        assert_eq!(cache_key("u", &a), cache_key("u", &b));
        assert_ne!(cache_key("u", &a), cache_key("u", &c));
        assert_ne!(cache_key("u", &a), cache_key("v", &a));
        assert_eq!(
            canonical_json(&b),
            r#"{"model":"m","n":1,"x":{"a":2,"b":1}}"#
        );
    }

    #[test]
    fn api_keys_come_from_the_named_variable_only() {
        let mut c = HttpConfig::new("http://x/v1", "m");
        assert!(c.api_key_from(|_| Some("k".into())).unwrap().is_none());
        c.api_key_env = Some("MY_KEY".into());
        let k = c
            .api_key_from(|n| (n == "MY_KEY").then(|| "sk-abc\n".to_string()))
            .unwrap()
            .unwrap();
        assert_eq!(k.0, "sk-abc");
        let e = c.api_key_from(|_| None).unwrap_err().to_string();
        assert!(e.contains("`MY_KEY`") && e.contains("not set"), "{e}");
        assert!(c.api_key_from(|_| Some("  ".into())).is_err());
    }

    #[test]
    fn config_rejects_unknown_fields_and_bad_values() {
        let e = toml::from_str::<HttpConfig>(
            "base_url = \"http://x/v1\"\nmodel = \"m\"\nretries = 3\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("retries"), "{e}");
        let mut c = HttpConfig::new("ftp://x", "m");
        assert!(HttpBackend::new(c.clone(), None)
            .unwrap_err()
            .to_string()
            .contains("http://"));
        c.base_url = "http://x/v1".into();
        c.max_concurrency = 0;
        assert!(HttpBackend::new(c, None).is_err());
    }
}
