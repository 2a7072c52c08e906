//! `selfaware score`: exact probabilities of candidate answers or of a numeric range, from a
//! local model or a server with prompt log-probabilities.

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use selfaware_types::Conversation;

use crate::model_args::{open_one, OneModelArgs};
use crate::settings::Settings;

#[derive(Args)]
pub struct ScoreArgs {
    /// `default`, a .gguf file, a Hugging Face model directory, `URL#MODEL` on an
    /// OpenAI-compatible server, or a `selfaware finetune --out` result file.
    pub model: String,
    #[command(flatten)]
    pub with: OneModelArgs,
    /// The user's message.
    #[arg(long)]
    pub user: String,
    /// System prompt. Without it the model's chat template decides.
    #[arg(long)]
    pub system: Option<String>,
    /// Comma-separated candidate answers, e.g. "A,B".
    #[arg(long, conflicts_with = "range", required_unless_present = "range")]
    pub options: Option<String>,
    /// An integer range LO..HI (inclusive), e.g. 0..100.
    #[arg(long)]
    pub range: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn score(s: &Settings, a: ScoreArgs) -> Result<()> {
    let range = a
        .range
        .as_deref()
        .map(|r| selfaware_model::score::parse_range(r).map_err(|e| anyhow!("--range {e}")))
        .transpose()?;
    let options: Option<Vec<String>> = a
        .options
        .as_deref()
        .map(|o| o.split(',').map(|x| x.to_string()).collect());
    if let Some(opts) = &options {
        if opts.iter().any(|o| o.is_empty()) {
            bail!(
                "--options {:?}: empty candidate (expected comma-separated answers like \"A,B\")",
                a.options.unwrap_or_default()
            );
        }
    }
    let e = open_one(s, &a.model, &a.with)?;
    let conv = Conversation::user(a.system.as_deref(), &a.user);
    if let Some((lo, hi)) = range {
        let r = e.score_range(&conv, lo, hi).with_context(|| {
            format!(
                "scoring {lo}..{hi} exactly\nhint: exact ranges need a local model (a server \
                 scores whole answers: --options with the numbers)"
            )
        })?;
        crate::progress::emit(a.json, &r)?;
    } else if let Some(opts) = options {
        let r = e.score_options(&conv, &opts).context(
            "scoring candidates exactly\nhint: exact scores need a local model or a server that \
             returns prompt log-probabilities (vLLM, `selfaware serve`)",
        )?;
        crate::progress::emit(a.json, &r)?;
    }
    Ok(())
}
