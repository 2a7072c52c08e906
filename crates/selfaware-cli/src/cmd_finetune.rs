//! `selfaware finetune`: a finetuning job on an OpenAI-compatible server (the OpenAI API, a
//! `selfaware serve`), from upload to the finished model. Resumable: every step is recorded in
//! a job registry before the next one starts, so a rerun after an interruption finds its job
//! again instead of creating a second one.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;

use selfaware_backend::finetune::{FinetuneClient, Hyperparameters, JobRun, JobSpec};
use selfaware_backend::HttpConfig;

use crate::settings::Settings;

#[derive(Args)]
pub struct FinetuneArgs {
    /// Base URL of the server, with its version prefix (e.g. `http://127.0.0.1:8000/v1`).
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// The base model, as the server names it.
    #[arg(long, value_name = "NAME")]
    pub model: String,
    /// Training data: chat JSONL (validated before upload).
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    /// The job's seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Epochs (`n_epochs`).
    #[arg(long, default_value_t = 3)]
    pub epochs: u32,
    /// Batch size.
    #[arg(long, default_value_t = 1)]
    pub batch_size: u32,
    /// Learning-rate multiplier.
    #[arg(long, default_value_t = 1.0)]
    pub lr_multiplier: f64,
    /// Appended to the finetuned model's name.
    #[arg(long)]
    pub suffix: Option<String>,
    /// The environment variable that holds the server's API key (none sent without it).
    #[arg(long, value_name = "VAR")]
    pub api_key_env: Option<String>,
    /// Job registry (JSON). Default: `finetune-jobs.json` in the tool's home.
    #[arg(long, value_name = "FILE")]
    pub registry: Option<PathBuf>,
    /// Write the finished job (server, job id, finetuned model) here as JSON; `eval` and
    /// `probe` take it as `--model-from FILE`.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Seconds between status polls.
    #[arg(long, default_value_t = 10.0)]
    pub poll_s: f64,
    /// Give up waiting after this many seconds (the job keeps running on the server; a rerun
    /// waits for it again).
    #[arg(long, default_value_t = 86_400.0)]
    pub timeout_s: f64,
}

pub fn finetune(s: &Settings, a: FinetuneArgs) -> Result<()> {
    for (flag, v) in [("--poll-s", a.poll_s), ("--timeout-s", a.timeout_s)] {
        if !(v > 0.0 && v.is_finite()) {
            bail!("{flag} must be a positive number of seconds, got {v}");
        }
    }
    let spec = JobSpec {
        base_model: a.model.clone(),
        hyperparameters: Hyperparameters {
            n_epochs: a.epochs,
            batch_size: a.batch_size,
            learning_rate_multiplier: a.lr_multiplier,
        },
        seed: a.seed,
        suffix: a.suffix.clone(),
    };
    // The API's limits (epochs, batch size, learning-rate multiplier, seed, suffix), before
    // anything else.
    spec.check()?;
    let mut cfg = HttpConfig::new(a.url.trim_end_matches('/'), a.model.clone());
    cfg.api_key_env = a.api_key_env.clone();
    let key = cfg.api_key_from(|n| std::env::var(n).ok())?;
    let client = FinetuneClient::new(cfg, key)?;
    let registry_path = a
        .registry
        .clone()
        .unwrap_or_else(|| s.home.join("finetune-jobs.json"));

    let job = JobRun {
        data: &a.data,
        spec,
        registry: &registry_path,
        api_key_env: a.api_key_env.clone(),
        poll: Duration::from_secs_f64(a.poll_s),
        timeout: Duration::from_secs_f64(a.timeout_s),
    };
    let result = client.run_job(&job, &mut |line| eprintln!("selfaware: {line}"))?;
    let model = result.fine_tuned_model.clone();
    if let Some(out) = &a.out {
        let text = serde_json::to_string_pretty(&result)? + "\n";
        selfaware_run::exec::write_atomic(out, text.as_bytes())?;
    }
    println!("{model}");
    Ok(())
}
