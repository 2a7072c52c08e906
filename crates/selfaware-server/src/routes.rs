//! Routes and handlers.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use selfaware_backend::openai::{
    self, ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse, ChoiceLogprobs,
    ChunkChoice, Delta, List, ModelObject, Usage,
};
use selfaware_backend::{
    Backend, Capabilities, Completion, CompletionRequest, Completions, FinishReason,
};

use selfaware_model::Engine;

use crate::batch::{Job, Queue, Reply, WorkerSettings};
use crate::files::FileStore;
use crate::stream::StreamMsg;
use crate::{ApiError, Registry, ServerConfig, ServerError};

pub(crate) struct AppState {
    pub config: ServerConfig,
    pub models: Arc<ModelSet>,
    pub files: Option<FileStore>,
    pub jobs: Option<crate::finetune::JobsHandle>,
    pub counter: AtomicU64,
}

/// One served model: its batching queue, capabilities and backend.
pub(crate) struct Slot {
    pub queue: Queue,
    pub caps: Capabilities,
    pub backend: Arc<dyn Backend>,
    /// The local engine, when there is one (streaming decodes on it token by token).
    pub engine: Option<Arc<Engine>>,
}

#[derive(Default)]
struct Models {
    list: Vec<ModelObject>,
    slots: HashMap<String, Arc<Slot>>,
}

/// The served models; fine-tuning jobs add theirs while the server runs.
pub(crate) struct ModelSet {
    models: RwLock<Models>,
    capacity: usize,
    seed: u64,
    window: Duration,
}

impl ModelSet {
    pub fn new(config: &ServerConfig) -> Self {
        ModelSet {
            models: RwLock::new(Models::default()),
            capacity: config.queue_capacity,
            seed: config.seed,
            window: Duration::from_millis(config.batch_window_ms),
        }
    }

    /// Starts the model's worker and serves it under `id`.
    pub fn add(
        &self,
        id: &str,
        backend: Arc<dyn Backend>,
        engine: Option<Arc<Engine>>,
    ) -> Result<(), ServerError> {
        let mut m = self.models.write().unwrap_or_else(|p| p.into_inner());
        if m.slots.contains_key(id) {
            return Err(ServerError::Config(format!(
                "model id `{id}` is registered twice"
            )));
        }
        let settings = WorkerSettings {
            capacity: self.capacity,
            seed: self.seed.wrapping_add(m.list.len() as u64),
            window: self.window,
        };
        let queue = Queue::start(id, backend.clone(), engine.clone(), settings)
            .map_err(|e| ServerError::Runtime(format!("cannot start the worker of `{id}`: {e}")))?;
        m.slots.insert(
            id.to_string(),
            Arc::new(Slot {
                queue,
                caps: backend.capabilities(),
                backend,
                engine,
            }),
        );
        m.list.push(ModelObject {
            id: id.to_string(),
            object: "model".into(),
            created: now(),
            owned_by: "selfaware".into(),
        });
        Ok(())
    }

    pub fn get(&self, id: &str) -> Option<Arc<Slot>> {
        let m = self.models.read().unwrap_or_else(|p| p.into_inner());
        m.slots.get(id).cloned()
    }

    pub fn list(&self) -> Vec<ModelObject> {
        let m = self.models.read().unwrap_or_else(|p| p.into_inner());
        m.list.clone()
    }
}

/// Response header: the number of sequences decoded in the batch that made the answer.
pub const BATCH_ROWS_HEADER: &str = "x-selfaware-batch-rows";

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(crate) fn router(config: ServerConfig, registry: Registry) -> Result<Router, ServerError> {
    let models = Arc::new(ModelSet::new(&config));
    for m in registry.models() {
        models.add(&m.id, m.backend.clone(), m.backend.engine().cloned())?;
    }
    let files = match &config.data_dir {
        Some(d) => Some(FileStore::open(&d.join("files"))?),
        None => None,
    };
    let jobs = match &config.data_dir {
        Some(d) => Some(crate::finetune::start(
            &d.join("fine_tuning"),
            &config,
            &registry,
            models.clone(),
        )?),
        None => None,
    };
    if config.request_read_timeout_ms == 0 {
        return Err(ServerError::Config(
            "request_read_timeout_ms must be at least 1".into(),
        ));
    }
    let read_timeout = config.request_read_timeout();
    let body_limit = config.max_body_bytes;
    let upload_limit = config.max_upload_bytes;
    let state = Arc::new(AppState {
        config,
        models,
        files,
        jobs,
        counter: AtomicU64::new(0),
    });
    let files_routes = Router::new()
        .route(
            "/v1/files",
            post(crate::files::upload).get(crate::files::list),
        )
        .route(
            "/v1/files/{id}",
            get(crate::files::retrieve).delete(crate::files::delete),
        )
        .route("/v1/files/{id}/content", get(crate::files::content))
        .layer(DefaultBodyLimit::max(upload_limit));
    let api = Router::new()
        .route("/v1/models", get(list_models))
        .route("/v1/models/{id}", get(get_model))
        .route("/v1/chat/completions", post(chat_completions))
        .route(
            "/v1/fine_tuning/jobs",
            post(crate::finetune::create).get(crate::finetune::list),
        )
        .route("/v1/fine_tuning/jobs/{id}", get(crate::finetune::retrieve))
        .route(
            "/v1/fine_tuning/jobs/{id}/events",
            get(crate::finetune::events),
        )
        .route(
            "/v1/fine_tuning/jobs/{id}/cancel",
            post(crate::finetune::cancel),
        )
        .layer(DefaultBodyLimit::max(body_limit));
    Ok(api
        .merge(files_routes)
        .fallback(|| async {
            ApiError::not_found(
                "no such endpoint (served: /v1/models, /v1/chat/completions, /v1/files, /v1/fine_tuning/jobs)",
                "unknown_url",
            )
        })
        .method_not_allowed_fallback(|| async {
            ApiError::invalid(None, "method not allowed on this endpoint")
                .with_status(StatusCode::METHOD_NOT_ALLOWED)
        })
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            read_timeout,
        ))
        .with_state(state))
}

/// Whether a body read failed because the client paused longer than the read timeout.
pub(crate) fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// 408 with error JSON: the request body stopped arriving.
pub(crate) fn too_slow() -> ApiError {
    ApiError::invalid(
        None,
        "the request body stopped arriving (the server's read timeout passed)",
    )
    .with_status(StatusCode::REQUEST_TIMEOUT)
}

async fn list_models(State(s): State<Arc<AppState>>) -> Json<List<ModelObject>> {
    Json(List::new(s.models.list()))
}

async fn get_model(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<ModelObject>, ApiError> {
    s.models
        .list()
        .into_iter()
        .find(|m| m.id == id)
        .map(Json)
        .ok_or_else(|| unknown_model(&id))
}

pub(crate) fn unknown_model(id: &str) -> ApiError {
    ApiError::not_found(
        format!("The model `{id}` does not exist (see GET /v1/models)"),
        "model_not_found",
    )
}

/// Maps a body rejection (413 when too large) to error JSON.
pub(crate) fn body_error(r: BytesRejection) -> ApiError {
    if timed_out(&r) {
        return too_slow();
    }
    let status = r.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::invalid(None, "request body is too large").with_status(status)
    } else {
        ApiError::invalid(None, format!("cannot read the request body: {r}")).with_status(status)
    }
}

/// A checked chat completion request: what to queue and how to answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub model: String,
    pub req: CompletionRequest,
    /// The request brought its own seed.
    pub seeded: bool,
    pub stream: bool,
    pub include_usage: bool,
    /// vLLM's `prompt_logprobs` was asked for.
    pub prompt_logprobs: bool,
    /// False: score a closed conversation (prompt logprobs only, nothing generated).
    pub add_generation_prompt: bool,
}

fn prepare(s: &AppState, body: &[u8]) -> Result<(ChatRequest, Arc<Slot>), ApiError> {
    let w = parse_chat_request(body)?;
    let slot = s
        .models
        .get(&w.model)
        .ok_or_else(|| unknown_model(&w.model))?;
    let p = check_chat_request(w, &s.config, &slot.caps)?;
    Ok((p, slot))
}

/// Reads a `POST /v1/chat/completions` body (OpenAI's wire format); an error is a 400.
pub fn parse_chat_request(body: &[u8]) -> Result<ChatCompletionRequest, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid(
            None,
            format!("the body is not a valid chat completion request: {e}"),
        )
    })
}

/// Checks a chat completion request against the server's limits (`cfg`) and the model's
/// capabilities (`caps`), and turns it into the request the model's worker runs.
pub fn check_chat_request(
    w: ChatCompletionRequest,
    cfg: &ServerConfig,
    caps: &Capabilities,
) -> Result<ChatRequest, ApiError> {
    let prompt_logprobs = match w.prompt_logprobs {
        None => false,
        Some(0) => true,
        Some(k) => {
            return Err(ApiError::invalid(
                Some("prompt_logprobs"),
                format!(
                    "only prompt_logprobs=0 (the prompt tokens themselves) is supported, got {k}"
                ),
            ))
        }
    };
    if w.continue_final_message == Some(true) {
        return Err(ApiError::invalid(
            Some("continue_final_message"),
            "continue_final_message=true is not supported",
        ));
    }
    let add_generation_prompt = w.add_generation_prompt.unwrap_or(true);
    if !add_generation_prompt && !prompt_logprobs {
        return Err(ApiError::invalid(
            Some("add_generation_prompt"),
            "add_generation_prompt=false needs prompt_logprobs=0: nothing is generated after a closed assistant turn",
        ));
    }
    if prompt_logprobs && w.stream == Some(true) {
        return Err(ApiError::invalid(
            Some("prompt_logprobs"),
            "prompt_logprobs cannot be streamed",
        ));
    }
    let n = w.n.unwrap_or(1);
    let max_n = cfg.max_n.min(caps.max_n);
    if n == 0 || n > max_n as u64 {
        return Err(ApiError::invalid(
            Some("n"),
            format!("n must be between 1 and {max_n}, got {n}"),
        ));
    }
    let max_tokens = w
        .max_completion_tokens
        .or(w.max_tokens)
        .unwrap_or(cfg.default_max_tokens.min(cfg.max_tokens) as u64);
    if max_tokens > cfg.max_tokens as u64 {
        return Err(ApiError::invalid(
            Some("max_tokens"),
            format!(
                "max_tokens must be at most {}, got {max_tokens}",
                cfg.max_tokens
            ),
        ));
    }
    let stop = w.stop.clone().map(|s| s.into_vec()).unwrap_or_default();
    if stop.len() > 4 {
        return Err(ApiError::invalid(
            Some("stop"),
            format!("at most 4 stop strings, got {}", stop.len()),
        ));
    }
    let logprobs = w.logprobs.unwrap_or(false);
    let conversation = openai::to_conversation(&w.messages)?;
    let req = CompletionRequest {
        conversation,
        n: n as usize,
        temperature: w.temperature.unwrap_or(1.0),
        top_p: w.top_p.unwrap_or(1.0),
        max_tokens: max_tokens as usize,
        seed: w.seed.unwrap_or(0) as u64,
        stop,
        logprobs,
        top_logprobs: w.top_logprobs.unwrap_or(0) as usize,
    };
    req.validate(&Capabilities {
        max_n,
        ..caps.clone()
    })?;
    Ok(ChatRequest {
        model: w.model,
        req,
        seeded: w.seed.is_some(),
        stream: w.stream.unwrap_or(false),
        include_usage: w
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
        prompt_logprobs,
        add_generation_prompt,
    })
}

async fn chat_completions(
    State(s): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(body_error)?;
    let (p, slot) = prepare(&s, &body)?;
    let prompt = if p.prompt_logprobs {
        let (backend, conv, add) = (
            slot.backend.clone(),
            p.req.conversation.clone(),
            p.add_generation_prompt,
        );
        let tokens = tokio::task::spawn_blocking(move || backend.prompt_logprobs(&conv, add))
            .await
            .map_err(|e| ApiError::internal(format!("prompt scoring failed: {e}")))??;
        Some(tokens)
    } else {
        None
    };
    if p.stream && p.req.n == 1 && prompt.is_none() {
        if let Some(engine) = &slot.engine {
            return stream_tokens(&s, p, &slot, engine.clone()).await;
        }
    }
    let mut batch_rows = 0;
    let out = if p.add_generation_prompt {
        let (reply, answer) = tokio::sync::oneshot::channel();
        slot.queue.submit(Job {
            req: p.req.clone(),
            seeded: p.seeded,
            reply: Reply::Whole(reply),
        })?;
        let (out, rows) = answer
            .await
            .map_err(|_| ApiError::internal("the model worker dropped the request"))?;
        batch_rows = rows;
        out?
    } else {
        // A closed conversation is only scored: each choice is empty.
        Completions {
            prompt_tokens: prompt.as_ref().map(Vec::len),
            completion_tokens: Some(0),
            choices: (0..p.req.n)
                .map(|_| Completion {
                    text: String::new(),
                    finish_reason: FinishReason::Length,
                    tokens: Some(0),
                    logprobs: p.req.logprobs.then(Vec::new),
                })
                .collect(),
        }
    };
    let id = format!(
        "chatcmpl-{:016x}",
        s.counter.fetch_add(1, Ordering::Relaxed)
    );
    let created = now();
    let usage = usage(&out);
    if !p.stream {
        let json = Json(ChatCompletionResponse {
            id,
            object: "chat.completion".into(),
            created,
            model: p.model,
            choices: out
                .choices
                .iter()
                .enumerate()
                .map(|(i, c)| openai::choice(i, c))
                .collect(),
            usage: Some(usage),
            system_fingerprint: Some("selfaware".into()),
            prompt_logprobs: prompt.as_deref().map(openai::wire_prompt_logprobs),
        });
        // How many sequences the model decoded together for this answer (diagnostics).
        return Ok(([(BATCH_ROWS_HEADER, batch_rows.to_string())], json).into_response());
    }
    let chunk = |choices: Vec<ChunkChoice>, usage: Option<Usage>| ChatCompletionChunk {
        id: id.clone(),
        object: "chat.completion.chunk".into(),
        created,
        model: p.model.clone(),
        choices,
        usage,
    };
    let mut events = Vec::new();
    for (i, c) in out.choices.iter().enumerate() {
        let index = i as u64;
        events.push(chunk(
            vec![ChunkChoice {
                index,
                delta: Delta {
                    role: Some("assistant".into()),
                    content: Some(String::new()),
                },
                logprobs: None,
                finish_reason: None,
            }],
            None,
        ));
        events.push(chunk(
            vec![ChunkChoice {
                index,
                delta: Delta {
                    role: None,
                    content: Some(c.text.clone()),
                },
                logprobs: c
                    .logprobs
                    .as_ref()
                    .map(|l| ChoiceLogprobs::of_content(openai::wire_logprobs(l))),
                finish_reason: None,
            }],
            None,
        ));
        events.push(chunk(
            vec![ChunkChoice {
                index,
                delta: Delta::default(),
                logprobs: None,
                finish_reason: Some(c.finish_reason.as_str().to_string()),
            }],
            None,
        ));
    }
    if p.include_usage {
        events.push(chunk(Vec::new(), Some(usage)));
    }
    let mut sse: Vec<Result<Event, Infallible>> = events
        .iter()
        .map(|e| Ok(Event::default().data(serde_json::to_string(e).unwrap_or_default())))
        .collect();
    sse.push(Ok(Event::default().data("[DONE]")));
    Ok(Sse::new(futures_util::stream::iter(sse)).into_response())
}

fn sse_data<T: serde::Serialize>(v: &T) -> Result<Event, Infallible> {
    Ok(Event::default().data(serde_json::to_string(v).unwrap_or_default()))
}

/// `stream: true` with `n = 1` on a local engine: one chunk per generated token, sent as the
/// worker makes it. Errors before the first token get their HTTP status; later ones end the
/// stream with an error event.
async fn stream_tokens(
    s: &AppState,
    p: ChatRequest,
    slot: &Slot,
    engine: Arc<Engine>,
) -> Result<Response, ApiError> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    slot.queue.submit(Job {
        req: p.req.clone(),
        seeded: p.seeded,
        reply: Reply::Stream { engine, tx },
    })?;
    let (prompt_tokens, batch_rows) = match rx.recv().await {
        Some(StreamMsg::Started {
            prompt_tokens,
            rows,
        }) => (prompt_tokens, rows),
        Some(StreamMsg::Failed(e)) => return Err(e),
        _ => return Err(ApiError::internal("the model worker dropped the request")),
    };
    let id = format!(
        "chatcmpl-{:016x}",
        s.counter.fetch_add(1, Ordering::Relaxed)
    );
    let created = now();
    let model = p.model.clone();
    let chunk = move |delta: Delta,
                      logprobs: Option<ChoiceLogprobs>,
                      finish: Option<String>,
                      usage: Option<Usage>| ChatCompletionChunk {
        id: id.clone(),
        object: "chat.completion.chunk".into(),
        created,
        model: model.clone(),
        choices: if usage.is_some() {
            Vec::new()
        } else {
            vec![ChunkChoice {
                index: 0,
                delta,
                logprobs,
                finish_reason: finish,
            }]
        },
        usage,
    };
    let first = chunk(
        Delta {
            role: Some("assistant".into()),
            content: Some(String::new()),
        },
        None,
        None,
        None,
    );
    let include_usage = p.include_usage;
    // State: the receiver, and the events still to send after the generation ended.
    let tail: Vec<Result<Event, Infallible>> = Vec::new();
    let events =
        futures_util::stream::unfold((rx, tail, false), move |(mut rx, mut tail, mut ended)| {
            let chunk = chunk.clone();
            async move {
                loop {
                    if let Some(e) = tail.pop() {
                        return Some((e, (rx, tail, ended)));
                    }
                    if ended {
                        return None;
                    }
                    match rx.recv().await {
                        Some(StreamMsg::Token { text, logprob }) => {
                            let c = chunk(
                                Delta {
                                    role: None,
                                    content: Some(text),
                                },
                                logprob.map(|l| {
                                    ChoiceLogprobs::of_content(openai::wire_logprobs(&[l]))
                                }),
                                None,
                                None,
                            );
                            return Some((sse_data(&c), (rx, tail, ended)));
                        }
                        Some(StreamMsg::Finished {
                            text,
                            reason,
                            tokens,
                        }) => {
                            ended = true;
                            // `tail` is popped from the back: push in reverse order.
                            tail.push(Ok(Event::default().data("[DONE]")));
                            if include_usage {
                                let u = Usage {
                                    prompt_tokens: prompt_tokens as u64,
                                    completion_tokens: tokens as u64,
                                    total_tokens: (prompt_tokens + tokens) as u64,
                                };
                                tail.push(sse_data(&chunk(Delta::default(), None, None, Some(u))));
                            }
                            tail.push(sse_data(&chunk(
                                Delta::default(),
                                None,
                                Some(reason.as_str().to_string()),
                                None,
                            )));
                            if !text.is_empty() {
                                tail.push(sse_data(&chunk(
                                    Delta {
                                        role: None,
                                        content: Some(text),
                                    },
                                    None,
                                    None,
                                    None,
                                )));
                            }
                        }
                        Some(StreamMsg::Failed(e)) => {
                            ended = true;
                            tail.push(Ok(Event::default().data("[DONE]")));
                            tail.push(sse_data(&e.body()));
                        }
                        Some(StreamMsg::Started { .. }) => {}
                        None => {
                            ended = true;
                            let e = ApiError::internal("the model worker stopped mid-answer");
                            tail.push(sse_data(&e.body()));
                        }
                    }
                }
            }
        });
    let head = futures_util::stream::iter(vec![sse_data(&first)]);
    Ok((
        [(BATCH_ROWS_HEADER, batch_rows.to_string())],
        Sse::new(futures_util::StreamExt::chain(head, events)),
    )
        .into_response())
}

fn usage(out: &Completions) -> Usage {
    let prompt = out.prompt_tokens.unwrap_or(0) as u64;
    let completion = out.completion_tokens.unwrap_or(0) as u64;
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps() -> Capabilities {
        Capabilities {
            exact_scoring: true,
            max_top_logprobs: 20,
            max_n: 8,
            deterministic_seed: true,
        }
    }

    /// The param a body is refused for, or the checked request.
    fn check(body: &str) -> Result<ChatRequest, Option<String>> {
        parse_chat_request(body.as_bytes())
            .and_then(|w| check_chat_request(w, &ServerConfig::default(), &caps()))
            .map_err(|e| {
                assert_eq!(e.status, StatusCode::BAD_REQUEST, "{}", e.message);
                e.param
            })
    }

    #[test]
    fn chat_requests_are_parsed_and_checked_without_a_model() {
        let p = check(
            r#"{"model":"m","messages":[{"role":"user","content":"Hi"}],"n":3,"seed":5,
                "max_tokens":7,"stop":"x","logprobs":true,"top_logprobs":2}"#,
        )
        .unwrap();
        assert_eq!((p.model.as_str(), p.req.n, p.req.seed), ("m", 3, 5));
        assert_eq!((p.req.max_tokens, p.req.top_logprobs), (7, 2));
        assert_eq!(p.req.stop, vec!["x".to_string()]);
        assert!(p.seeded && !p.stream && p.add_generation_prompt);
        let msgs = r#""messages":[{"role":"user","content":"Hi"}]"#;
        for (extra, param) in [
            (r#""n":9"#, Some("n")),
            (r#""n":0"#, Some("n")),
            (r#""max_tokens":4097"#, Some("max_tokens")),
            (r#""stop":["a","b","c","d","e"]"#, Some("stop")),
            (r#""temperature":2.5"#, Some("temperature")),
            (r#""top_logprobs":3"#, Some("top_logprobs")),
            (r#""prompt_logprobs":1"#, Some("prompt_logprobs")),
            (
                r#""add_generation_prompt":false"#,
                Some("add_generation_prompt"),
            ),
            (
                r#""continue_final_message":true"#,
                Some("continue_final_message"),
            ),
            (r#""n":"two""#, None),
        ] {
            let body = format!(r#"{{"model":"m",{msgs},{extra}}}"#);
            assert_eq!(check(&body).unwrap_err().as_deref(), param, "{body}");
        }
        assert_eq!(
            check(r#"{"model":"m","messages":[]}"#)
                .unwrap_err()
                .as_deref(),
            Some("messages")
        );
    }
}
