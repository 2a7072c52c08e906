//! `training_manifest.json`: what produced an adapter (data hash, resolved settings, seed,
//! per-step loss, tool version, git revision, base model).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::data::Dataset;
use crate::error::{io, Result, TrainError};
use crate::trainer::{StepLog, TrainConfig, Trainer};

pub const MANIFEST_FILE: &str = "training_manifest.json";

/// Where the base model came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseModel {
    /// The reference the user gave (`default`, a path).
    pub reference: String,
    pub sha256: String,
}

/// The training data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSummary {
    pub path: String,
    pub sha256: String,
    pub examples: usize,
    pub tokens: usize,
    pub trained_tokens: usize,
}

impl DataSummary {
    pub fn of(d: &Dataset) -> Self {
        DataSummary {
            path: d.path.display().to_string(),
            sha256: d.sha256.clone(),
            examples: d.examples.len(),
            tokens: d.n_tokens(),
            trained_tokens: d.n_trained(),
        }
    }
}

/// The manifest written beside an adapter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingManifest {
    pub tool_version: String,
    pub git_revision: Option<String>,
    pub base_model: BaseModel,
    pub data: DataSummary,
    pub seed: u64,
    /// CPU threads used (results are bit-identical only for the same count).
    pub threads: usize,
    pub config: TrainConfig,
    pub steps: Vec<StepLog>,
    /// sha256 of `adapter_model.safetensors`.
    pub adapter_sha256: String,
}

/// Saves the adapter (PEFT format) and the manifest into `out`.
pub fn write_outputs(
    trainer: &Trainer,
    data: &Dataset,
    base: BaseModel,
    git_revision: Option<String>,
    out: &Path,
) -> Result<TrainingManifest> {
    let mut adapter = trainer.adapter.clone();
    adapter.base_model = Some(base.reference.clone());
    adapter.save(out)?;
    let wpath = out.join(selfaware_model::lora::ADAPTER_WEIGHTS);
    let bytes = fs_err::read(&wpath).map_err(io(&wpath))?;
    let m = TrainingManifest {
        tool_version: selfaware_types::TOOL_VERSION.to_string(),
        git_revision,
        base_model: base,
        data: DataSummary::of(data),
        seed: trainer.cfg.seed,
        threads: candle_core::utils::get_num_threads(),
        config: trainer.cfg.clone(),
        steps: trainer.log.clone(),
        adapter_sha256: selfaware_types::sha256_hex(&bytes),
    };
    let path = out.join(MANIFEST_FILE);
    let text = serde_json::to_string_pretty(&m).map_err(|e| TrainError::Checkpoint {
        path: path.clone(),
        message: e.to_string(),
    })?;
    fs_err::write(&path, text + "\n").map_err(io(&path))?;
    Ok(m)
}
