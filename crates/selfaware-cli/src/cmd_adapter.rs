//! `selfaware adapter merge`: an adapter merged into its base, written as a Hugging Face model.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::settings::Settings;

#[derive(Args)]
pub struct AdapterMergeArgs {
    /// Base model: `default`, a .gguf file or a Hugging Face model directory.
    #[arg(long, default_value = "default")]
    pub model: String,
    /// PEFT LoRA adapter directory.
    #[arg(long, value_name = "DIR")]
    pub adapter: PathBuf,
    /// Output: a new (or empty) directory that receives a complete Hugging Face model
    /// (config.json, model.safetensors in f32, tokenizer.json, tokenizer_config.json with the
    /// chat template, generation_config.json), usable as `--model DIR`.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

pub fn merge(s: &Settings, a: AdapterMergeArgs) -> Result<()> {
    let mut e = s.load_engine(&a.model)?;
    e.attach_adapter_dir(&a.adapter)
        .with_context(|| format!("attaching adapter {}", a.adapter.display()))?;
    e.model.merge_adapters()?;
    e.save_hf_dir(&a.out)
        .with_context(|| format!("writing the merged model to {}", a.out.display()))?;
    println!(
        "merged model written to {} (use it as --model {})",
        a.out.display(),
        a.out.display()
    );
    Ok(())
}
