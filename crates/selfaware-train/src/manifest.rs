//! `training_manifest.json`: what produced an adapter or a steering vector (data hash, resolved
//! settings — the method and point among them —, seed, per-step loss, tool version, git
//! revision, base model). A steering vector's file carries the same provenance in its header.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::data::Dataset;
use crate::error::{io, Result, TrainError};
use crate::trainer::{StepLog, TrainConfig, TrainMethod, Trained, Trainer, STEER_FILE};

pub const MANIFEST_FILE: &str = "training_manifest.json";

/// What `selfaware train` may do with its output folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutPolicy {
    /// Continue from the folder's latest checkpoint (`--resume`): the trainer then checks that
    /// the checkpoint was made with the same settings and data.
    pub resume: bool,
    /// Write into the folder whatever it holds (`--force`): an adapter there is replaced, other
    /// files are left beside it.
    pub force: bool,
}

/// Checks, before anything is loaded or written, that `out` is a folder `train` may write:
/// new or empty; or holding checkpoints of this tool, with `resume`; or anything, with `force`.
/// An adapter or a file this tool did not write is an error naming it.
pub fn check_out_dir(out: &Path, policy: OutPolicy) -> Result<()> {
    let refuse = |path: std::path::PathBuf, message: String| TrainError::Output { path, message };
    if !out.exists() {
        return Ok(());
    }
    if !out.is_dir() {
        return Err(refuse(
            out.to_path_buf(),
            "exists and is not a folder".into(),
        ));
    }
    if policy.force {
        return Ok(());
    }
    let mut names: Vec<String> = fs_err::read_dir(out)
        .map_err(io(out))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()
        .map_err(io(out))?;
    names.sort();
    let ours = [
        selfaware_model::lora::ADAPTER_CONFIG,
        selfaware_model::lora::ADAPTER_WEIGHTS,
        crate::trainer::STEER_FILE,
        MANIFEST_FILE,
        crate::trainer::CHECKPOINT_DIR,
    ];
    if let Some(other) = names.iter().find(|n| !ours.contains(&n.as_str())) {
        return Err(refuse(
            out.join(other),
            "was not written by `selfaware train`; refusing to train into its folder\n\
             hint: choose a new --out, or pass --force to write the adapter beside it"
                .into(),
        ));
    }
    let has_checkpoint = crate::trainer::checkpoints(&out.join(crate::trainer::CHECKPOINT_DIR))?
        .last()
        .is_some();
    if has_checkpoint {
        if policy.resume {
            return Ok(());
        }
        return Err(refuse(
            out.join(crate::trainer::CHECKPOINT_DIR),
            "holds checkpoints of an earlier run\nhint: pass --resume to continue it, choose \
             another --out, or pass --force to start over in this folder"
                .into(),
        ));
    }
    if let Some(file) = names
        .iter()
        .find(|n| n.as_str() != crate::trainer::CHECKPOINT_DIR)
    {
        // An adapter or a vector (or part of one) without checkpoints to resume from.
        return Err(refuse(
            out.join(file),
            "already exists: the folder holds a trained adapter or steering vector\nhint: \
             choose another --out, or pass --force to replace it"
                .into(),
        ));
    }
    Ok(())
}

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

/// The manifest written beside an adapter or a steering vector.
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
    /// sha256 of `adapter_model.safetensors` (LoRA; empty and not written for a steering
    /// vector).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub adapter_sha256: String,
    /// sha256 of `steer.safetensors` (a steering vector; empty and not written for LoRA).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub steer_sha256: String,
}

impl TrainingManifest {
    /// The line `train` prints when done: what was written where, the final loss, the hash.
    pub fn summary(&self, out: &Path) -> String {
        let last = self.steps.last().map(|l| l.loss).unwrap_or(f64::NAN);
        match self.config.point {
            Some(point) if self.config.method == TrainMethod::Steer => format!(
                "steering vector written to {} (final loss {last:.4}, sha256 {}); use it with \
                 --steer {}:{point}:1",
                out.join(STEER_FILE).display(),
                self.steer_sha256,
                out.join(STEER_FILE).display()
            ),
            _ => format!(
                "adapter written to {} (final loss {last:.4}, adapter sha256 {})",
                out.display(),
                self.adapter_sha256
            ),
        }
    }
}

/// Saves the trained weights and the manifest into `out`: the adapter (PEFT format), or the
/// steering vector as `steer.safetensors` (one F32 tensor `[hidden]` named as the point, the
/// run's provenance in its header), which `--steer FILE:POINT:ALPHA` reads as it is.
pub fn write_outputs(
    trainer: &Trainer,
    data: &Dataset,
    base: BaseModel,
    git_revision: Option<String>,
    out: &Path,
) -> Result<TrainingManifest> {
    fs_err::create_dir_all(out).map_err(io(out))?;
    let (mut adapter_sha256, mut steer_sha256) = (String::new(), String::new());
    match &trainer.trained {
        Trained::Lora(adapter) => {
            let mut adapter = adapter.clone();
            adapter.base_model = Some(base.reference.clone());
            adapter.save(out)?;
            adapter_sha256 = file_sha256(&out.join(selfaware_model::lora::ADAPTER_WEIGHTS))?;
        }
        Trained::Steer(steer) => {
            let path = out.join(STEER_FILE);
            let meta = [
                ("format", "selfaware steering vector".to_string()),
                ("method", TrainMethod::Steer.to_string()),
                ("point", steer.point.to_string()),
                ("base_model", base.reference.clone()),
                ("base_model_sha256", base.sha256.clone()),
                ("data_sha256", data.sha256.clone()),
                ("seed", trainer.cfg.seed.to_string()),
                ("steps", trainer.step.to_string()),
                ("tool_version", selfaware_types::TOOL_VERSION.to_string()),
                ("git_revision", git_revision.clone().unwrap_or_default()),
            ];
            let meta = meta.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            steer.save(&path, &meta)?;
            steer_sha256 = file_sha256(&path)?;
        }
    }
    let m = TrainingManifest {
        tool_version: selfaware_types::TOOL_VERSION.to_string(),
        git_revision,
        base_model: base,
        data: DataSummary::of(data),
        seed: trainer.cfg.seed,
        threads: candle_core::utils::get_num_threads(),
        config: trainer.cfg.clone(),
        steps: trainer.log.clone(),
        adapter_sha256,
        steer_sha256,
    };
    let path = out.join(MANIFEST_FILE);
    let text = serde_json::to_string_pretty(&m).map_err(|e| TrainError::Checkpoint {
        path: path.clone(),
        message: e.to_string(),
    })?;
    fs_err::write(&path, text + "\n").map_err(io(&path))?;
    Ok(m)
}

fn file_sha256(path: &Path) -> Result<String> {
    let bytes = fs_err::read(path).map_err(io(path))?;
    Ok(selfaware_types::sha256_hex(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use selfaware_model::lora::{ADAPTER_CONFIG, ADAPTER_WEIGHTS};

    const NEW: OutPolicy = OutPolicy {
        resume: false,
        force: false,
    };
    const RESUME: OutPolicy = OutPolicy {
        resume: true,
        force: false,
    };
    const FORCE: OutPolicy = OutPolicy {
        resume: false,
        force: true,
    };

    fn refused(out: &Path, policy: OutPolicy) -> (std::path::PathBuf, String) {
        match check_out_dir(out, policy) {
            Err(TrainError::Output { path, message }) => (path, message),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn new_and_empty_folders_are_written() {
        let dir = tempfile::tempdir().unwrap();
        check_out_dir(&dir.path().join("new"), NEW).unwrap();
        check_out_dir(dir.path(), NEW).unwrap();
        // A checkpoint folder with only a half-written checkpoint (killed while saving).
        std::fs::create_dir_all(dir.path().join("checkpoints/.tmp-step-000001")).unwrap();
        check_out_dir(dir.path(), NEW).unwrap();
    }

    #[test]
    fn an_existing_adapter_is_not_replaced_without_force() {
        let dir = tempfile::tempdir().unwrap();
        for f in [ADAPTER_CONFIG, ADAPTER_WEIGHTS, MANIFEST_FILE] {
            std::fs::write(dir.path().join(f), "x").unwrap();
        }
        for policy in [NEW, RESUME] {
            let (path, message) = refused(dir.path(), policy);
            assert_eq!(path, dir.path().join(ADAPTER_CONFIG));
            assert!(message.contains("--force"), "{message}");
        }
        check_out_dir(dir.path(), FORCE).unwrap();
    }

    #[test]
    fn an_existing_steering_vector_is_not_replaced_without_force() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STEER_FILE), "x").unwrap();
        for policy in [NEW, RESUME] {
            let (path, message) = refused(dir.path(), policy);
            assert_eq!(path, dir.path().join(STEER_FILE));
            assert!(message.contains("steering vector"), "{message}");
        }
        check_out_dir(dir.path(), FORCE).unwrap();
        // With a steering run's checkpoints, --resume continues it.
        std::fs::create_dir_all(dir.path().join("checkpoints/step-000002")).unwrap();
        check_out_dir(dir.path(), RESUME).unwrap();
    }

    #[test]
    fn checkpoints_need_resume_and_foreign_files_need_force() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("checkpoints/step-000002")).unwrap();
        std::fs::write(dir.path().join(ADAPTER_WEIGHTS), "x").unwrap();
        let (path, message) = refused(dir.path(), NEW);
        assert_eq!(path, dir.path().join("checkpoints"));
        assert!(message.contains("--resume"), "{message}");
        check_out_dir(dir.path(), RESUME).unwrap();
        std::fs::write(dir.path().join("notes.md"), "mine").unwrap();
        let (path, message) = refused(dir.path(), RESUME);
        assert_eq!(path, dir.path().join("notes.md"));
        assert!(
            message.contains("not written by `selfaware train`"),
            "{message}"
        );
        check_out_dir(dir.path(), FORCE).unwrap();
        let file = dir.path().join("notes.md");
        let (path, _) = refused(&file, FORCE);
        assert_eq!(path, file);
    }
}
