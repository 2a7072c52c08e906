//! `selfaware serve`: an OpenAI-compatible HTTP server over the local engine.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Result};
use clap::Args;
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
    /// Also serve a PEFT LoRA adapter on the model, as model id NAME (repeatable).
    #[arg(long, value_name = "NAME=DIR")]
    pub adapter: Vec<String>,
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Where uploaded files and fine-tuning jobs with their adapters are kept (default:
    /// HOME/server). Fine-tuned models found there are served again.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Learning rate of fine-tuning jobs at learning_rate_multiplier 1.
    #[arg(long, default_value_t = 1e-4)]
    pub finetune_base_lr: f64,
    /// Largest `n` per request.
    #[arg(long, default_value_t = 128)]
    pub max_n: usize,
    /// Largest `max_tokens` per request.
    #[arg(long, default_value_t = 2048)]
    pub max_tokens: usize,
}

pub fn serve(s: &Settings, a: ServeArgs) -> Result<()> {
    let engine = Arc::new(s.load_engine(&a.model)?);
    let id = a.model_id.unwrap_or_else(|| a.model.clone());
    let mut registry = Registry::new();
    registry.add_local(id.clone(), engine.clone())?;
    for spec in &a.adapter {
        let Some((name, dir)) = spec.split_once('=') else {
            bail!("--adapter `{spec}` is not NAME=DIR");
        };
        if name.is_empty() || dir.is_empty() {
            bail!("--adapter `{spec}` is not NAME=DIR");
        }
        registry.add_adapter(name, &engine, std::path::Path::new(dir))?;
    }
    let config = ServerConfig {
        host: a.host,
        port: a.port,
        max_n: a.max_n,
        max_tokens: a.max_tokens,
        data_dir: Some(a.data_dir.unwrap_or_else(|| s.home.join("server"))),
        finetune_base_lr: a.finetune_base_lr,
        ..ServerConfig::default()
    };
    let handle = selfaware_server::spawn(config, registry)?;
    eprintln!(
        "selfaware: serving `{id}` at {} (Ctrl-C stops)",
        handle.base_url()
    );
    loop {
        std::thread::park();
    }
}
