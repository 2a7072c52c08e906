//! The model flags every asking command shares.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use selfaware_ask::AskedModel;
use std::sync::Arc;

use selfaware_backend::{Backend, ModelRef};
use selfaware_model::SteerArg;

use crate::settings::Settings;

/// `--model` / `--model-from` / `--api-key-env` / `--estimate`.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// `default`, a .gguf file, a Hugging Face model directory, a model on an
    /// OpenAI-compatible server as `URL#MODEL` (e.g. `http://127.0.0.1:8000/v1#base`), or a
    /// `selfaware finetune --out FILE.json` result.
    #[arg(long, required_unless_present = "model_from")]
    pub model: Option<String>,
    /// The model a `selfaware finetune --out FILE` job made (its server and model name).
    #[arg(long, value_name = "FILE", conflicts_with = "model")]
    pub model_from: Option<PathBuf>,
    /// The environment variable that holds the server's API key (served models only).
    #[arg(long, value_name = "VAR")]
    pub api_key_env: Option<String>,
    /// Served models: estimate choice and number probabilities from the top log-probabilities
    /// of the first answer token (the paper's estimators, all the OpenAI API allows) even
    /// when the server could score exactly.
    #[arg(long)]
    pub estimate: bool,
    #[command(flatten)]
    pub steer: SteerArgs,
}

/// `--steer FILE:POINT:ALPHA`, repeatable.
#[derive(Args, Debug, Clone, Default)]
pub struct SteerArgs {
    /// Steer a local model: add ALPHA times the tensor named POINT ([d] or [1, d]) of the
    /// safetensors FILE at the hook point POINT (e.g. blocks.12.hook_resid_post), at every
    /// position. Repeatable; vectors add up. `selfaware activations diff` writes such files.
    /// FILE:ALPHA when FILE holds one tensor: its name is the point.
    #[arg(long, value_name = "FILE:POINT:ALPHA", value_parser = crate::cmd_eval::parse_with::<SteerArg>)]
    pub steer: Vec<SteerArg>,
}

impl ModelArgs {
    /// The reference the flags name.
    pub fn model_ref(&self) -> Result<ModelRef> {
        Ok(match (&self.model, &self.model_from) {
            (Some(_), Some(_)) => bail!("--model and --model-from name the model twice"),
            (None, None) => bail!("expected --model MODEL or --model-from FILE"),
            (Some(m), None) => ModelRef::parse(m)?,
            (None, Some(f)) => ModelRef::finetune_result(f),
        })
    }

    /// Opens the model (without adapter) and names it as records do.
    pub fn open(&self, s: &Settings) -> Result<(ModelRef, AskedModel)> {
        let r = self
            .model_ref()?
            .with_steering(&SteerArg::resolve_all(&self.steer.steer)?);
        let backend = s.open(&r, self.api_key_env.as_deref(), self.estimate)?;
        let label = r.label()?;
        Ok((r, AskedModel { label, backend }))
    }
}

/// The flags `chat` and `score` take after their model.
#[derive(Args, Debug, Clone)]
pub struct OneModelArgs {
    /// A PEFT LoRA adapter directory to attach to the model (local models).
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<PathBuf>,
    /// The environment variable that holds the server's API key (served models only).
    #[arg(long, value_name = "VAR")]
    pub api_key_env: Option<String>,
    #[command(flatten)]
    pub steer: SteerArgs,
}

/// Opens `model` (with the adapter and steering `a` name) for one question.
pub fn open_one(s: &Settings, model: &str, a: &OneModelArgs) -> Result<Arc<dyn Backend>> {
    let r = ModelRef::parse(model)?
        .with_adapter(a.adapter.as_deref())?
        .with_steering(&SteerArg::resolve_all(&a.steer.steer)?);
    s.open(&r, a.api_key_env.as_deref(), false)
}

/// The LLM judge of judged questions (`eval`, and `run` for its batteries).
#[derive(Args, Debug, Clone)]
pub struct JudgeArgs {
    /// An LLM judge: the base URL of any OpenAI-compatible server (e.g.
    /// `http://127.0.0.1:8000/v1`, a `selfaware serve`). With it, `judged_word` questions run
    /// (each sampled answer is put into the question's guesser prompt and sent to the judge
    /// at temperature 0), `judged_ratings` questions (`em`) get 0–100 ratings, and `language`
    /// questions are decided by the judge instead of the offline identifier. Judge prompts and
    /// replies are stored in the records. For `run`: replaces the experiment's `[judge]`;
    /// without any, batteries whose every question needs a judge are left out.
    #[arg(long, value_name = "URL", requires = "judge_model")]
    pub judge_url: Option<String>,
    /// The judge's model name, as its server knows it.
    #[arg(long, value_name = "NAME", requires = "judge_url")]
    pub judge_model: Option<String>,
    /// The environment variable that holds the judge's API key (none sent without it).
    #[arg(long, value_name = "VAR", requires = "judge_url")]
    pub judge_key_env: Option<String>,
    /// Longest judge reply in tokens.
    #[arg(long, value_name = "N", default_value_t = selfaware_eval::spec::DEFAULT_JUDGE_MAX_TOKENS)]
    pub judge_max_tokens: usize,
}

impl JudgeArgs {
    /// The judge the flags name, if any.
    pub fn spec(&self) -> Option<selfaware_eval::spec::JudgeSpec> {
        Some(selfaware_eval::spec::JudgeSpec {
            url: self.judge_url.clone()?,
            model: self.judge_model.clone()?,
            key_env: self.judge_key_env.clone(),
            max_tokens: self.judge_max_tokens,
        })
    }
}
