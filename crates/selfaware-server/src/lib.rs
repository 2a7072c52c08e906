//! An OpenAI-compatible HTTP server over any [`Backend`]s (the local engine, its adapters,
//! remote backends): `GET /v1/models`, `POST /v1/chat/completions` (plain and SSE),
//! `/v1/files`, and `/v1/fine_tuning/jobs` backed by the local LoRA trainer ([`finetune`]).
//!
//! Requests never run on the async runtime: each model has a worker thread ([`batch`]) that
//! takes every request waiting in its queue and merges requests with the same prompt and
//! sampling settings into one batched call. On a local engine, requests without a seed are
//! also decoded together across different prompts ([`multi`]), and `stream: true` answers
//! are sent token by token as they are generated ([`stream`]). Request bodies, `n` and
//! `max_tokens` are capped, a request whose headers or body stop arriving is cut off
//! ([`ServerConfig::request_read_timeout_ms`]); errors use OpenAI's error JSON.
//!
//! Fine-tuning runs one job at a time on a background thread; a finished job's adapter is
//! saved under the data directory and served as the model `ft:BASE:selfaware:SUFFIX:SHORTID`
//! (and again after a restart with the same data directory).
//!
//! Start it in-process with [`spawn`] (tests: port 0, the bound address is returned) or await
//! [`serve`] (the CLI's `selfaware serve`).

pub mod batch;
mod error;
mod files;
pub mod finetune;
pub mod multi;
mod routes;
pub mod stream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use selfaware_backend::{Backend, LocalBackend};
use selfaware_model::Engine;
use serde::{Deserialize, Serialize};

pub use error::{ApiError, ServerError};
pub use routes::{check_chat_request, parse_chat_request, ChatRequest, BATCH_ROWS_HEADER};

/// Server settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default = "defaults::host")]
    pub host: String,
    /// 0 picks a free port (see [`ServerHandle::addr`]).
    #[serde(default = "defaults::port")]
    pub port: u16,
    /// Largest JSON request body, in bytes.
    #[serde(default = "defaults::max_body_bytes")]
    pub max_body_bytes: usize,
    /// Largest file upload, in bytes.
    #[serde(default = "defaults::max_upload_bytes")]
    pub max_upload_bytes: usize,
    /// Largest `n` per request.
    #[serde(default = "defaults::max_n")]
    pub max_n: usize,
    /// Largest `max_tokens` per request.
    #[serde(default = "defaults::max_tokens")]
    pub max_tokens: usize,
    /// `max_tokens` when a request gives none.
    #[serde(default = "defaults::default_max_tokens")]
    pub default_max_tokens: usize,
    /// Requests waiting per model before new ones get 503.
    #[serde(default = "defaults::queue_capacity")]
    pub queue_capacity: usize,
    /// Where uploaded files and fine-tuning jobs (with their adapters) are kept; without it
    /// `/v1/files` and `/v1/fine_tuning/jobs` answer 501.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// Learning rate of a fine-tuning job with `learning_rate_multiplier` 1 (the job's rate is
    /// this times its multiplier). The default, 1e-4, is `selfaware train`'s default `--lr`.
    #[serde(default = "defaults::finetune_base_lr")]
    pub finetune_base_lr: f64,
    /// Seeds the seeds given to requests that bring none.
    #[serde(default)]
    pub seed: u64,
    /// While several clients are active, how long a worker keeps collecting requests into a
    /// batch after the first one (milliseconds). A lone client never waits.
    #[serde(default = "defaults::batch_window_ms")]
    pub batch_window_ms: u64,
    /// Threads of the async runtime started by [`spawn`].
    #[serde(default = "defaults::io_threads")]
    pub io_threads: usize,
    /// How long a client may take to send a request's headers, and may then pause between
    /// pieces of its body (milliseconds). A request that stalls longer is cut off (408, or the
    /// connection closed), so half-sent requests cannot hold connections open.
    #[serde(default = "defaults::request_read_timeout_ms")]
    pub request_read_timeout_ms: u64,
}

impl ServerConfig {
    /// [`ServerConfig::request_read_timeout_ms`] as a duration.
    pub fn request_read_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.request_read_timeout_ms)
    }
}

mod defaults {
    pub fn host() -> String {
        "127.0.0.1".into()
    }
    pub fn port() -> u16 {
        8000
    }
    pub fn max_body_bytes() -> usize {
        1 << 20
    }
    pub fn max_upload_bytes() -> usize {
        64 << 20
    }
    pub fn max_n() -> usize {
        128
    }
    pub fn max_tokens() -> usize {
        4096
    }
    pub fn default_max_tokens() -> usize {
        512
    }
    pub fn queue_capacity() -> usize {
        4096
    }
    pub fn batch_window_ms() -> u64 {
        5
    }
    pub fn io_threads() -> usize {
        2
    }
    pub fn finetune_base_lr() -> f64 {
        1e-4
    }
    pub fn request_read_timeout_ms() -> u64 {
        30_000
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: defaults::host(),
            port: defaults::port(),
            max_body_bytes: defaults::max_body_bytes(),
            max_upload_bytes: defaults::max_upload_bytes(),
            max_n: defaults::max_n(),
            max_tokens: defaults::max_tokens(),
            default_max_tokens: defaults::default_max_tokens(),
            queue_capacity: defaults::queue_capacity(),
            data_dir: None,
            finetune_base_lr: defaults::finetune_base_lr(),
            seed: 0,
            batch_window_ms: defaults::batch_window_ms(),
            io_threads: defaults::io_threads(),
            request_read_timeout_ms: defaults::request_read_timeout_ms(),
        }
    }
}

/// The served models: id → backend, in listing order. Models added with
/// [`Registry::add_local`] are local engines: they can be fine-tuned through
/// `/v1/fine_tuning/jobs` and stream token by token.
#[derive(Clone, Default)]
pub struct Registry {
    models: Vec<RegisteredModel>,
}

/// One served model.
#[derive(Clone)]
pub struct RegisteredModel {
    pub id: String,
    /// The model (a local one's engine is `backend.engine()`).
    pub backend: Arc<dyn Backend>,
    /// Whether fine-tuning jobs may name this model as their base.
    pub trainable: bool,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    fn push(&mut self, m: RegisteredModel) -> Result<(), ServerError> {
        if self.models.iter().any(|x| x.id == m.id) {
            return Err(ServerError::Config(format!(
                "model id `{}` is registered twice",
                m.id
            )));
        }
        self.models.push(m);
        Ok(())
    }

    /// Adds a model served by any backend; an id already present is an error.
    pub fn add(
        &mut self,
        id: impl Into<String>,
        backend: Arc<dyn Backend>,
    ) -> Result<(), ServerError> {
        self.push(RegisteredModel {
            id: id.into(),
            backend,
            trainable: false,
        })
    }

    /// Adds a local base model: served, fine-tunable, streamed token by token.
    pub fn add_local(
        &mut self,
        id: impl Into<String>,
        engine: Arc<Engine>,
    ) -> Result<(), ServerError> {
        let id = id.into();
        self.push(RegisteredModel {
            backend: Arc::new(LocalBackend::new(engine.clone(), id.clone())),
            id,
            trainable: true,
        })
    }

    /// Adds the PEFT adapter in `dir` on top of `base` as the model `id` (the base weights are
    /// shared, not copied).
    pub fn add_adapter(
        &mut self,
        id: impl Into<String>,
        base: &Engine,
        dir: &std::path::Path,
    ) -> Result<(), ServerError> {
        let id = id.into();
        let engine = Arc::new(finetune::engine_with_adapter(base, dir)?);
        self.push(RegisteredModel {
            backend: Arc::new(LocalBackend::new(engine.clone(), id.clone())),
            id,
            trainable: false,
        })
    }

    /// A registry of one backend under its own model id.
    pub fn single(backend: Arc<dyn Backend>) -> Self {
        Registry {
            models: vec![RegisteredModel {
                id: backend.model_id().to_string(),
                backend,
                trainable: false,
            }],
        }
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.models.iter().map(|m| m.id.as_str())
    }

    pub fn models(&self) -> &[RegisteredModel] {
        &self.models
    }
}

/// A server running on its own thread and runtime.
pub struct ServerHandle {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), ServerError>>>,
}

impl ServerHandle {
    /// The bound address (with the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Stops accepting connections, finishes in-flight requests and joins the thread.
    pub fn shutdown(mut self) -> Result<(), ServerError> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<(), ServerError> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| ServerError::Runtime("the server thread panicked".into()))?,
            None => Ok(()),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}

fn bind(config: &ServerConfig) -> Result<std::net::TcpListener, ServerError> {
    let addr = format!("{}:{}", config.host, config.port);
    let listener = std::net::TcpListener::bind(&addr).map_err(|source| ServerError::Bind {
        addr: addr.clone(),
        source,
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| ServerError::Bind { addr, source })?;
    Ok(listener)
}

/// Binds `config.host:config.port` and serves on a new thread with its own runtime.
pub fn spawn(config: ServerConfig, registry: Registry) -> Result<ServerHandle, ServerError> {
    let listener = bind(&config)?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: format!("{}:{}", config.host, config.port),
        source,
    })?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.io_threads.max(1))
        .thread_name("selfaware-server")
        .enable_all()
        .build()
        .map_err(|e| ServerError::Runtime(format!("cannot start the runtime: {e}")))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("selfaware-server".into())
        .spawn(move || {
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).map_err(|source| {
                    ServerError::Bind {
                        addr: addr.to_string(),
                        source,
                    }
                })?;
                serve_on(listener, config, registry, async {
                    let _ = stopped.await;
                })
                .await
            })
        })
        .map_err(|e| ServerError::Runtime(format!("cannot start the server thread: {e}")))?;
    Ok(ServerHandle {
        addr,
        stop: Some(stop),
        thread: Some(thread),
    })
}

/// Binds `config.host:config.port` and serves until the process ends.
pub async fn serve(config: ServerConfig, registry: Registry) -> Result<(), ServerError> {
    let listener = bind(&config)?;
    let listener =
        tokio::net::TcpListener::from_std(listener).map_err(|source| ServerError::Bind {
            addr: format!("{}:{}", config.host, config.port),
            source,
        })?;
    serve_on(listener, config, registry, std::future::pending()).await
}

/// Serves on a bound listener until `shutdown` completes, then stops accepting and waits for
/// the open connections to finish their requests.
///
/// Each connection speaks HTTP/1.1 with a timeout on reading request headers and, through the
/// router, on each pause in a request body ([`ServerConfig::request_read_timeout_ms`]).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    config: ServerConfig,
    registry: Registry,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let read_timeout = config.request_read_timeout();
    let app = routes::router(config, registry)?;
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors and the like: wait a moment, then accept again.
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(read_timeout)
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // A connection's failure (a client that hung up or timed out) is its own affair.
            let _ = conn.await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
