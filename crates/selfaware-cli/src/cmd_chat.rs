//! `selfaware chat`: one question to any model (local, or served as `URL#MODEL`), one answer.

use anyhow::{Context, Result};
use clap::Args;
use selfaware_backend::CompletionRequest;
use selfaware_types::Conversation;

use crate::model_args::{open_one, OneModelArgs};
use crate::settings::Settings;

#[derive(Args)]
pub struct ChatArgs {
    /// `default`, a .gguf file, a Hugging Face model directory, `URL#MODEL` on an
    /// OpenAI-compatible server, or a `selfaware finetune --out` result file.
    pub model: String,
    #[command(flatten)]
    pub with: OneModelArgs,
    /// The user's message.
    pub message: String,
    /// System prompt. Without it the model's chat template decides (SmolLM inserts its own).
    #[arg(long)]
    pub system: Option<String>,
    /// Sampling temperature; 0 decodes greedily.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
}

pub fn chat(s: &Settings, a: ChatArgs) -> Result<()> {
    let b = open_one(s, &a.model, &a.with)?;
    let mut req = CompletionRequest::new(Conversation::user(a.system.as_deref(), &a.message));
    req.temperature = a.temperature;
    req.top_p = a.top_p;
    req.max_tokens = a.max_tokens;
    req.seed = a.seed;
    let out = b.complete(&req)?;
    let first = out
        .choices
        .first()
        .with_context(|| format!("`{}` returned no answer", b.model_id()))?;
    println!("{}", first.text);
    Ok(())
}
