//! `selfaware serve`: an OpenAI-compatible HTTP server over the local engine.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use clap::Args;
use selfaware_backend::LocalBackend;
use selfaware_server::{Registry, ServerConfig};

use crate::settings::Settings;

#[derive(Args)]
pub struct ServeArgs {
    /// `default`, a .gguf file or a Hugging Face model directory.
    #[arg(long, default_value = "default")]
    pub model: String,
    /// The model id clients use (default: the reference as given).
    #[arg(long)]
    pub model_id: Option<String>,
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Where uploaded files are kept (default: HOME/server).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Largest `n` per request.
    #[arg(long, default_value_t = 128)]
    pub max_n: usize,
    /// Largest `max_tokens` per request.
    #[arg(long, default_value_t = 2048)]
    pub max_tokens: usize,
}

pub fn serve(s: &Settings, a: ServeArgs) -> Result<()> {
    let engine = s.load_engine(&a.model)?;
    let id = a.model_id.unwrap_or_else(|| a.model.clone());
    let backend = LocalBackend::new(Arc::new(engine), id.clone());
    let config = ServerConfig {
        host: a.host,
        port: a.port,
        max_n: a.max_n,
        max_tokens: a.max_tokens,
        data_dir: Some(a.data_dir.unwrap_or_else(|| s.home.join("server"))),
        ..ServerConfig::default()
    };
    let handle = selfaware_server::spawn(config, Registry::single(Arc::new(backend)))?;
    eprintln!(
        "selfaware: serving `{id}` at {}/v1 (Ctrl-C stops)",
        handle.base_url()
    );
    loop {
        std::thread::park();
    }
}
