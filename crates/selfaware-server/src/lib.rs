//! An OpenAI-compatible HTTP server over any [`Backend`]s (the local engine, later its
//! adapters): `GET /v1/models`, `POST /v1/chat/completions` (plain and SSE), and `/v1/files`.
//!
//! Requests never run on the async runtime: each model has a worker thread ([`batch`]) that
//! takes every request waiting in its queue and merges requests with the same prompt and
//! sampling settings into one batched call. Request bodies, `n` and `max_tokens` are capped;
//! errors use OpenAI's error JSON.
//!
//! Fine-tuning endpoints (`/v1/fine_tuning/jobs`) need the local trainer and are not served yet.
//!
//! Start it in-process with [`spawn`] (tests: port 0, the bound address is returned) or await
//! [`serve`] (the CLI's `selfaware serve`).

pub mod batch;
mod error;
mod files;
mod routes;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use selfaware_backend::Backend;
use serde::{Deserialize, Serialize};

pub use error::{ApiError, ServerError};

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
    /// Where uploaded files are kept; without it `/v1/files` answers 501.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
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
            seed: 0,
            batch_window_ms: defaults::batch_window_ms(),
            io_threads: defaults::io_threads(),
        }
    }
}

/// The served models: id → backend. The base model first; adapters are added the same way.
#[derive(Clone, Default)]
pub struct Registry {
    models: Vec<(String, Arc<dyn Backend>)>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a model; an id already present is an error.
    pub fn add(
        &mut self,
        id: impl Into<String>,
        backend: Arc<dyn Backend>,
    ) -> Result<(), ServerError> {
        let id = id.into();
        if self.models.iter().any(|(m, _)| *m == id) {
            return Err(ServerError::Config(format!(
                "model id `{id}` is registered twice"
            )));
        }
        self.models.push((id, backend));
        Ok(())
    }

    /// A registry of one backend under its own model id.
    pub fn single(backend: Arc<dyn Backend>) -> Self {
        Registry {
            models: vec![(backend.model_id().to_string(), backend)],
        }
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.models.iter().map(|(id, _)| id.as_str())
    }

    pub fn models(&self) -> &[(String, Arc<dyn Backend>)] {
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

/// Serves on a bound listener until `shutdown` completes.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    config: ServerConfig,
    registry: Registry,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let app = routes::router(config, registry)?;
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| ServerError::Bind { addr, source })
}
