//! `manifest.json`: what a run folder holds and what made it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::experiment::Experiment;
use crate::plan::ModelIdentity;

/// The machine a run ran on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    pub hostname: String,
    pub os: String,
    pub arch: String,
    pub cores: usize,
}

impl Machine {
    /// This machine.
    pub fn current() -> Machine {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".to_string());
        Machine {
            hostname,
            os: std::env::consts::OS.to_string(),
            arch: std::env::consts::ARCH.to_string(),
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        }
    }
}

/// The run manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunManifest {
    pub tool_version: String,
    pub git_revision: Option<String>,
    pub machine: Machine,
    /// Stages at once (`--jobs`) and the threads they shared (`--threads`), of the latest
    /// invocation.
    pub jobs: usize,
    pub threads: usize,
    pub model: ModelIdentity,
    /// Dataset name (`condition` or `condition (decorrelated)`) → sha256 of the training file.
    pub datasets: BTreeMap<String, String>,
    /// `condition seed N` → sha256 of `adapter_model.safetensors` (remote finetunes: of the
    /// `selfaware finetune` result file).
    pub adapters: BTreeMap<String, String>,
    /// Remote experiments: `condition seed N` → the finetuned model's name on the server.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub remote_models: BTreeMap<String, String>,
    pub seeds: Vec<u64>,
    /// Where the experiment came from: `preset:NAME` or a file path.
    pub experiment_source: String,
    /// The experiment, fully resolved.
    pub experiment: Experiment,
    /// Stage name → wall seconds of the run that computed it (absent while unfinished).
    pub stage_wall_s: BTreeMap<String, f64>,
    /// True once every stage finished and the report was written.
    pub complete: bool,
}
