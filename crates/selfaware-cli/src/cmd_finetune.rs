//! `selfaware finetune`: a finetuning job on an OpenAI-compatible server (the OpenAI API, a
//! `selfaware serve`), from upload to the finished model. Resumable: every step is recorded in
//! a job registry before the next one starts, so a rerun after an interruption finds its job
//! again instead of creating a second one.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;

use selfaware_backend::finetune::{
    FinetuneClient, Hyperparameters, JobRegistry, JobSpec, RegistryEntry,
};
use selfaware_backend::HttpConfig;
use selfaware_types::TOOL_VERSION;

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

/// What `--out` holds: where the finetuned model is served and how it was made. `eval` and
/// `probe` read `base_url` and `fine_tuned_model` (`--model-from`).
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct FinetuneResult {
    pub base_url: String,
    pub fine_tuned_model: String,
    pub base_model: String,
    pub job_id: String,
    pub file_id: String,
    pub status: String,
    pub dataset_sha256: String,
    pub spec: JobSpec,
    pub trained_tokens: Option<u64>,
    /// The environment variable holding the API key (its name only).
    pub api_key_env: Option<String>,
    pub tool_version: String,
}

/// Holds an exclusive lock on `PATH.lock` so two processes never rewrite one registry at once.
struct RegistryLock {
    _file: File,
}

impl RegistryLock {
    fn acquire(registry: &Path) -> Result<RegistryLock> {
        if let Some(dir) = registry.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs_err::create_dir_all(dir)?;
        }
        let mut name = registry.as_os_str().to_owned();
        name.push(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&name)
            .with_context(|| format!("opening {}", Path::new(&name).display()))?;
        file.lock()
            .with_context(|| format!("locking {}", Path::new(&name).display()))?;
        Ok(RegistryLock { _file: file })
    }
}

pub fn finetune(s: &Settings, a: FinetuneArgs) -> Result<()> {
    if !(a.poll_s > 0.0 && a.poll_s.is_finite()) {
        bail!(
            "--poll-s must be a positive number of seconds, got {}",
            a.poll_s
        );
    }
    if !(a.timeout_s > 0.0 && a.timeout_s.is_finite()) {
        bail!(
            "--timeout-s must be a positive number of seconds, got {}",
            a.timeout_s
        );
    }
    if a.epochs == 0 || a.batch_size == 0 {
        bail!("--epochs and --batch-size must be at least 1");
    }
    if !(a.lr_multiplier > 0.0 && a.lr_multiplier.is_finite()) {
        bail!("--lr-multiplier must be positive, got {}", a.lr_multiplier);
    }
    let mut cfg = HttpConfig::new(a.url.trim_end_matches('/'), a.model.clone());
    cfg.api_key_env = a.api_key_env.clone();
    let key = cfg.api_key_from(|n| std::env::var(n).ok())?;
    let client = FinetuneClient::new(cfg, key)?;
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
    let registry_path = a
        .registry
        .clone()
        .unwrap_or_else(|| s.home.join("finetune-jobs.json"));

    // Upload and create (or find) the job under the registry lock; wait without it.
    let entry = {
        let _lock = RegistryLock::acquire(&registry_path)?;
        let mut registry = JobRegistry::open(&registry_path)?;
        client.ensure_job(&mut registry, &a.data, &spec)?
    };
    let job_id = entry
        .job_id
        .clone()
        .context("internal: the registry entry has no job id")?;
    eprintln!(
        "selfaware: job {job_id} on {} ({}; registry {})",
        a.url,
        entry.status.as_deref().unwrap_or("unknown status"),
        registry_path.display()
    );
    let job = client.wait(
        &job_id,
        Duration::from_secs_f64(a.poll_s),
        Duration::from_secs_f64(a.timeout_s),
        &mut |e| eprintln!("selfaware: job {job_id}: {}", e.message),
    )?;
    let entry = {
        let _lock = RegistryLock::acquire(&registry_path)?;
        let mut registry = JobRegistry::open(&registry_path)?;
        let updated = RegistryEntry {
            status: Some(job.status.clone()),
            fine_tuned_model: job.fine_tuned_model.clone(),
            ..entry
        };
        registry.put(updated.clone())?;
        updated
    };
    if job.status != "succeeded" {
        let why = job
            .error
            .as_ref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        bail!(
            "finetuning job {job_id} ended `{}`{why}\nhint: its entry in {} keeps a rerun from \
             creating a new job; delete the entry (key {}) to try again",
            job.status,
            registry_path.display(),
            entry.key
        );
    }
    let model = job
        .fine_tuned_model
        .clone()
        .with_context(|| format!("job {job_id} succeeded but names no fine_tuned_model"))?;
    if let Some(out) = &a.out {
        let result = FinetuneResult {
            base_url: a.url.trim_end_matches('/').to_string(),
            fine_tuned_model: model.clone(),
            base_model: a.model.clone(),
            job_id: job_id.clone(),
            file_id: entry.file_id.clone().unwrap_or_default(),
            status: job.status.clone(),
            dataset_sha256: entry.dataset_sha256.clone(),
            spec,
            trained_tokens: job.trained_tokens,
            api_key_env: a.api_key_env.clone(),
            tool_version: TOOL_VERSION.to_string(),
        };
        let text = serde_json::to_string_pretty(&result)? + "\n";
        selfaware_run::exec::write_atomic(out, text.as_bytes())?;
    }
    println!("{model}");
    Ok(())
}

/// Reads a `selfaware finetune --out` file: the server URL and the finetuned model.
pub fn read_result(path: &Path) -> Result<FinetuneResult> {
    let text = fs_err::read_to_string(path)?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a `selfaware finetune --out` file (expected base_url, fine_tuned_model, …)",
            path.display()
        )
    })
}
