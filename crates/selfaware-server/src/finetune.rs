//! `/v1/fine_tuning/jobs`: supervised LoRA fine-tuning of a served local model by the local
//! trainer (`selfaware-train`), with OpenAI's request and response shapes.
//!
//! A job's life:
//! 1. `POST /v1/fine_tuning/jobs` checks the request (model, uploaded `fine-tune` file,
//!    hyperparameters, seed, suffix: 400/404 on a bad one), then validates and encodes the
//!    training file with the trainer's own validator (`selfaware_train::data::load`). A file
//!    that does not validate gives a job that is already `failed`, with
//!    `error.code = "invalid_training_file"` and a message naming the line, as OpenAI reports
//!    file problems found after the job is created. A valid one is `queued`.
//! 2. One background thread trains the queued jobs one at a time (`running`), logging a
//!    `metrics` event per optimizer step (`train_loss`, `learning_rate`, `grad_norm`, ...).
//! 3. The adapter (PEFT format) and its `training_manifest.json` are written to
//!    `DATA_DIR/fine_tuning/JOB_ID/adapter/`; the adapter is attached to a copy of the base
//!    model that shares its weights and served as `ft:BASE:selfaware:SUFFIX:SHORTID`
//!    (`SHORTID` is 8 hex digits of the job id; SUFFIX is empty when none was given). Only
//!    then does the job become `succeeded` with `fine_tuned_model` set, so a client that sees
//!    the status can use the model at once.
//!
//! Settings: `n_epochs` (auto = 3), `batch_size` (auto = 8), learning rate
//! [`crate::ServerConfig::finetune_base_lr`] (default 1e-4) × `learning_rate_multiplier`
//! (auto = 1); the other training settings are `selfaware_train::TrainConfig::default()`
//! (LoRA rank 8, alpha 16 on every projection, linear decay, gradient clipping at 1). The seed
//! (given, or derived from the server seed and the job id) seeds the adapter's initialisation
//! and the batch order, so the same seed, file and settings give the same adapter.
//!
//! Jobs and their events are kept as `job.json` and `events.jsonl` beside the adapter. After a
//! restart with the same data directory, succeeded jobs are served again (when their base
//! model is), and jobs that were queued or running are marked `failed`.
//! `POST /v1/fine_tuning/jobs/{id}/cancel` cancels a job that has not finished (a running job
//! stops after its current step).

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use selfaware_backend::openai::List;
use selfaware_backend::LocalBackend;
use selfaware_model::Engine;
use selfaware_train::manifest::{write_outputs, BaseModel};
use selfaware_train::{data, Dataset, TrainConfig, TrainError, Trainer};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::routes::{body_error, now, unknown_model, AppState, ModelSet};
use crate::{ApiError, Registry, ServerConfig, ServerError};

/// Epochs when a job asks for `auto`.
pub const AUTO_EPOCHS: u64 = 3;
/// Examples per batch when a job asks for `auto`.
pub const AUTO_BATCH_SIZE: u64 = 8;
/// The organisation part of fine-tuned model ids.
pub const ORGANIZATION: &str = "selfaware";

/// The base model with the PEFT adapter in `dir` attached, as a new engine that shares the
/// base weights ([`Engine::with_adapter_dir`]).
pub fn engine_with_adapter(base: &Engine, dir: &FsPath) -> Result<Engine, ServerError> {
    base.with_adapter_dir(dir)
        .map_err(|source| ServerError::Adapter {
            path: dir.to_path_buf(),
            source,
        })
}

/// A job's status, as OpenAI names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    ValidatingFiles,
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    /// Whether the job can no longer change.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled
        )
    }

    fn name(self) -> &'static str {
        match self {
            JobStatus::ValidatingFiles => "validating_files",
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }
}

/// The resolved supervised hyperparameters of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hyperparameters {
    pub n_epochs: u64,
    pub batch_size: u64,
    pub learning_rate_multiplier: f64,
}

/// Why a job failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobError {
    pub code: String,
    pub message: String,
    pub param: Option<String>,
}

/// `method` of a job: always supervised here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Method {
    #[serde(rename = "type")]
    pub kind: String,
    pub supervised: Supervised,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Supervised {
    pub hyperparameters: Hyperparameters,
}

/// OpenAI's `FineTuningJob` object, every required field included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobObject {
    pub id: String,
    pub object: String,
    pub model: String,
    pub created_at: u64,
    pub finished_at: Option<u64>,
    pub fine_tuned_model: Option<String>,
    pub organization_id: String,
    pub result_files: Vec<String>,
    pub status: JobStatus,
    pub validation_file: Option<String>,
    pub training_file: String,
    pub hyperparameters: Hyperparameters,
    pub trained_tokens: Option<u64>,
    pub error: Option<JobError>,
    pub seed: u64,
    pub estimated_finish: Option<u64>,
    pub integrations: Vec<Value>,
    pub method: Method,
    pub metadata: Option<serde_json::Map<String, Value>>,
    pub user_provided_suffix: Option<String>,
}

/// OpenAI's `FineTuningJobEvent` object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobEvent {
    pub object: String,
    pub id: String,
    pub created_at: u64,
    /// `info`, `warn` or `error`.
    pub level: String,
    pub message: String,
    /// `message` or `metrics`.
    #[serde(rename = "type")]
    pub kind: String,
    pub data: Value,
}

struct Entry {
    job: JobObject,
    events: Vec<JobEvent>,
    cancel: Arc<AtomicBool>,
}

/// What the training thread and the handlers share.
struct Shared {
    dir: PathBuf,
    jobs: Mutex<Vec<Entry>>,
    /// Base models that jobs may fine-tune, by served id.
    bases: HashMap<String, Arc<Engine>>,
    models: Arc<ModelSet>,
    base_lr: f64,
    seed: u64,
    counter: AtomicU64,
}

/// A validated job waiting for the training thread.
struct Queued {
    id: String,
    data: Dataset,
}

/// The fine-tuning state of a running server.
pub(crate) struct JobsHandle {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Queued>,
}

fn io_err(path: &FsPath) -> impl FnOnce(std::io::Error) -> ServerError + '_ {
    move |source| ServerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Shared {
    fn job_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    fn save_job(&self, job: &JobObject) -> std::io::Result<()> {
        let dir = self.job_dir(&job.id);
        std::fs::create_dir_all(&dir)?;
        let text = serde_json::to_vec_pretty(job).map_err(std::io::Error::other)?;
        selfaware_types::write_atomic(&dir.join("job.json"), &text)
    }

    fn append_event(&self, job: &str, e: &JobEvent) -> std::io::Result<()> {
        use std::io::Write;
        let dir = self.job_dir(job);
        std::fs::create_dir_all(&dir)?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("events.jsonl"))?;
        let line = serde_json::to_string(e).map_err(std::io::Error::other)?;
        writeln!(f, "{line}")
    }

    /// Runs `f` on the job `id` and saves it; `events` are appended to its log.
    fn update(
        &self,
        id: &str,
        f: impl FnOnce(&mut JobObject) -> Vec<(&'static str, &'static str, String, Value)>,
    ) -> Result<JobObject, ApiError> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let entry = jobs
            .iter_mut()
            .find(|e| e.job.id == id)
            .ok_or_else(|| no_job(id))?;
        let new_events = f(&mut entry.job);
        for (level, kind, message, data) in new_events {
            let e = JobEvent {
                object: "fine_tuning.job.event".into(),
                id: event_id(id, entry.events.len()),
                created_at: now(),
                level: level.into(),
                message,
                kind: kind.into(),
                data,
            };
            self.append_event(id, &e)
                .map_err(|e| ApiError::internal(format!("cannot log an event of {id}: {e}")))?;
            entry.events.push(e);
        }
        self.save_job(&entry.job)
            .map_err(|e| ApiError::internal(format!("cannot save job {id}: {e}")))?;
        Ok(entry.job.clone())
    }

    fn get(&self, id: &str) -> Result<JobObject, ApiError> {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.iter()
            .find(|e| e.job.id == id)
            .map(|e| e.job.clone())
            .ok_or_else(|| no_job(id))
    }
}

fn event_id(job: &str, index: usize) -> String {
    let h = Sha256::digest(format!("{job}/{index}").as_bytes());
    format!("ftevent-{}", &hex::encode(h)[..24])
}

fn no_job(id: &str) -> ApiError {
    ApiError::not_found(
        format!("No fine-tuning job `{id}` (see GET /v1/fine_tuning/jobs)"),
        "fine_tuning_job_not_found",
    )
}

fn msg(text: impl Into<String>) -> (&'static str, &'static str, String, Value) {
    ("info", "message", text.into(), json!({}))
}

/// Loads the jobs kept under `dir`, serves the models of succeeded ones, and starts the
/// training thread.
pub(crate) fn start(
    dir: &FsPath,
    config: &ServerConfig,
    registry: &Registry,
    models: Arc<ModelSet>,
) -> Result<JobsHandle, ServerError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let bases: HashMap<String, Arc<Engine>> = registry
        .models()
        .iter()
        .filter(|m| m.trainable)
        .filter_map(|m| m.backend.engine().cloned().map(|e| (m.id.clone(), e)))
        .collect();
    let shared = Arc::new(Shared {
        dir: dir.to_path_buf(),
        jobs: Mutex::new(Vec::new()),
        bases,
        models,
        base_lr: config.finetune_base_lr,
        seed: config.seed,
        counter: AtomicU64::new(0),
    });
    restore(&shared)?;
    let (tx, rx) = mpsc::channel::<Queued>();
    let worker = shared.clone();
    std::thread::Builder::new()
        .name("fine-tuning".into())
        .spawn(move || {
            while let Ok(q) = rx.recv() {
                let id = q.id.clone();
                let r =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_job(&worker, q)))
                        .unwrap_or_else(|p| {
                            let what = p
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                                .unwrap_or_default();
                            Err(format!("the trainer panicked: {what}"))
                        });
                if let Err(message) = r {
                    let _ = worker.update(&id, |job| {
                        if job.status.is_terminal() {
                            return Vec::new();
                        }
                        job.status = JobStatus::Failed;
                        job.finished_at = Some(now());
                        job.error = Some(JobError {
                            code: "training_failed".into(),
                            message: message.clone(),
                            param: None,
                        });
                        vec![("error", "message", message, json!({}))]
                    });
                }
            }
        })
        .map_err(|e| ServerError::Runtime(format!("cannot start the fine-tuning thread: {e}")))?;
    Ok(JobsHandle { shared, tx })
}

/// Reads `dir/*/job.json` and `events.jsonl`.
fn restore(shared: &Shared) -> Result<(), ServerError> {
    let dir = &shared.dir;
    let mut loaded = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let p = entry.map_err(io_err(dir))?.path();
        let jp = p.join("job.json");
        if !jp.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&jp).map_err(io_err(&jp))?;
        let job: JobObject = serde_json::from_str(&text)
            .map_err(|e| ServerError::Config(format!("{}: not a job record: {e}", jp.display())))?;
        let ep = p.join("events.jsonl");
        let mut events = Vec::new();
        if ep.is_file() {
            let text = std::fs::read_to_string(&ep).map_err(io_err(&ep))?;
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                events.push(serde_json::from_str(line).map_err(|e| {
                    ServerError::Config(format!("{}:{}: not a job event: {e}", ep.display(), i + 1))
                })?);
            }
        }
        loaded.push(Entry {
            job,
            events,
            cancel: Arc::new(AtomicBool::new(false)),
        });
    }
    loaded.sort_by(|a, b| (a.job.created_at, &a.job.id).cmp(&(b.job.created_at, &b.job.id)));
    let ids: Vec<(String, JobStatus)> = loaded
        .iter()
        .map(|e| (e.job.id.clone(), e.job.status))
        .collect();
    *shared.jobs.lock().unwrap_or_else(|p| p.into_inner()) = loaded;
    for (id, status) in ids {
        if !status.is_terminal() {
            let message = format!(
                "the server stopped while the job was {}; create the job again",
                status.name()
            );
            shared
                .update(&id, |job| {
                    job.status = JobStatus::Failed;
                    job.finished_at = Some(now());
                    job.error = Some(JobError {
                        code: "server_restarted".into(),
                        message: message.clone(),
                        param: None,
                    });
                    vec![("error", "message", message, json!({}))]
                })
                .map_err(|e| ServerError::Runtime(e.message))?;
            continue;
        }
        let job = shared
            .get(&id)
            .map_err(|e| ServerError::Runtime(e.message))?;
        if let (JobStatus::Succeeded, Some(ft)) = (job.status, &job.fine_tuned_model) {
            if let Some(base) = shared.bases.get(&job.model) {
                serve_adapter(shared, base, ft, &shared.job_dir(&id).join("adapter"))?;
            }
        }
    }
    Ok(())
}

fn serve_adapter(
    shared: &Shared,
    base: &Engine,
    id: &str,
    dir: &FsPath,
) -> Result<(), ServerError> {
    let engine = Arc::new(engine_with_adapter(base, dir)?);
    let backend = Arc::new(LocalBackend::new(engine.clone(), id));
    shared.models.add(id, backend, Some(engine))
}

/// Trains one queued job to the end; Err is the failure message.
fn run_job(shared: &Shared, q: Queued) -> Result<(), String> {
    let job = shared.get(&q.id).map_err(|e| e.message)?;
    if job.status != JobStatus::Queued {
        return Ok(()); // cancelled while it waited
    }
    let cancel = {
        let jobs = shared.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.iter()
            .find(|e| e.job.id == q.id)
            .map(|e| e.cancel.clone())
            .ok_or_else(|| format!("job {} disappeared", q.id))?
    };
    let base = shared
        .bases
        .get(&job.model)
        .ok_or_else(|| format!("the base model `{}` is not served", job.model))?;
    let h = &job.hyperparameters;
    let cfg = TrainConfig {
        seed: job.seed,
        epochs: h.n_epochs as usize,
        batch_size: h.batch_size as usize,
        lr: shared.base_lr * h.learning_rate_multiplier,
        ..TrainConfig::default()
    };
    let still_queued = shared
        .update(&q.id, |j| {
            if j.status != JobStatus::Queued {
                return Vec::new();
            }
            j.status = JobStatus::Running;
            vec![msg("Fine-tuning job started")]
        })
        .map_err(|e| e.message)?;
    if still_queued.status != JobStatus::Running {
        return Ok(());
    }
    let mut trainer = Trainer::new(&base.model, base.chat.tokenizer.pad_id, &q.data, cfg)
        .map_err(|e| e.to_string())?;
    let total = trainer.total_steps();
    let mut tokens = 0u64;
    while !trainer.is_done() {
        if cancel.load(Ordering::SeqCst) {
            return Ok(());
        }
        let log = trainer.train_step().map_err(|e| e.to_string())?;
        tokens += log.tokens as u64;
        shared
            .update(&q.id, |_| {
                vec![(
                    "info",
                    "metrics",
                    format!("Step {}/{total}: training loss={:.4}", log.step, log.loss),
                    json!({
                        "step": log.step,
                        "total_steps": total,
                        "epoch": log.epoch + 1,
                        "train_loss": log.loss,
                        "learning_rate": log.lr,
                        "grad_norm": log.grad_norm,
                        "tokens": log.tokens,
                        "trained_tokens": log.trained_tokens,
                        "seconds": log.seconds,
                    }),
                )]
            })
            .map_err(|e| e.message)?;
    }
    let out = shared.job_dir(&q.id).join("adapter");
    let manifest = write_outputs(
        &trainer,
        &q.data,
        BaseModel {
            reference: job.model.clone(),
            sha256: base.info.sha256.clone(),
        },
        None,
        &out,
    )
    .map_err(|e| e.to_string())?;
    if cancel.load(Ordering::SeqCst) {
        return Ok(());
    }
    let short = job.id.trim_start_matches("ftjob-");
    let ft = format!(
        "ft:{}:{ORGANIZATION}:{}:{}",
        job.model,
        job.user_provided_suffix.as_deref().unwrap_or(""),
        &short[..short.len().min(8)]
    );
    serve_adapter(shared, base, &ft, &out).map_err(|e| format!("{e}: {}", source_chain(&e)))?;
    shared
        .update(&q.id, |j| {
            j.status = JobStatus::Succeeded;
            j.finished_at = Some(now());
            j.fine_tuned_model = Some(ft.clone());
            j.trained_tokens = Some(tokens);
            vec![
                (
                    "info",
                    "message",
                    format!(
                        "Adapter written to {} (sha256 {})",
                        out.display(),
                        manifest.adapter_sha256
                    ),
                    json!({"adapter_sha256": manifest.adapter_sha256}),
                ),
                msg(format!("New fine-tuned model created: {ft}")),
                msg("The job has successfully completed"),
            ]
        })
        .map_err(|e| e.message)?;
    Ok(())
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push(s.to_string());
        cur = s.source();
    }
    out.join(": ")
}

// ---- requests ----

/// `auto` or a value.
fn auto_or<T>(
    v: &Option<Value>,
    param: &str,
    ok: impl Fn(&Value) -> Option<T>,
    expected: &str,
) -> Result<Option<T>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s == "auto" => Ok(None),
        Some(x) => ok(x).map(Some).ok_or_else(|| {
            ApiError::invalid(
                Some(param),
                format!("{param} must be \"auto\" or {expected}, got {x}"),
            )
        }),
    }
}

#[derive(Debug, Default, Deserialize)]
struct HyperIn {
    #[serde(default)]
    n_epochs: Option<Value>,
    #[serde(default)]
    batch_size: Option<Value>,
    #[serde(default)]
    learning_rate_multiplier: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct SupervisedIn {
    #[serde(default)]
    hyperparameters: Option<HyperIn>,
}

#[derive(Debug, Deserialize)]
struct MethodIn {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    supervised: Option<SupervisedIn>,
}

#[derive(Debug, Deserialize)]
struct CreateJob {
    model: String,
    training_file: String,
    #[serde(default)]
    hyperparameters: Option<HyperIn>,
    #[serde(default)]
    suffix: Option<String>,
    #[serde(default)]
    validation_file: Option<String>,
    #[serde(default)]
    integrations: Option<Vec<Value>>,
    #[serde(default)]
    seed: Option<i64>,
    #[serde(default)]
    method: Option<MethodIn>,
    #[serde(default)]
    metadata: Option<serde_json::Map<String, Value>>,
}

fn resolve_hyper(h: &HyperIn) -> Result<(Hyperparameters, bool), ApiError> {
    let n_epochs = auto_or(
        &h.n_epochs,
        "n_epochs",
        |v| v.as_u64().filter(|n| (1..=50).contains(n)),
        "an integer in 1..=50",
    )?;
    let batch_size = auto_or(
        &h.batch_size,
        "batch_size",
        |v| v.as_u64().filter(|n| (1..=256).contains(n)),
        "an integer in 1..=256",
    )?;
    let lrm = auto_or(
        &h.learning_rate_multiplier,
        "learning_rate_multiplier",
        |v| v.as_f64().filter(|x| *x > 0.0 && x.is_finite()),
        "a number > 0",
    )?;
    Ok((
        Hyperparameters {
            n_epochs: n_epochs.unwrap_or(AUTO_EPOCHS),
            batch_size: batch_size.unwrap_or(AUTO_BATCH_SIZE),
            learning_rate_multiplier: lrm.unwrap_or(1.0),
        },
        batch_size.is_none(),
    ))
}

fn jobs_of(s: &AppState) -> Result<&JobsHandle, ApiError> {
    s.jobs.as_ref().ok_or_else(|| {
        ApiError::internal(
            "this server was started without a data directory, so it runs no fine-tuning jobs",
        )
        .with_status(StatusCode::NOT_IMPLEMENTED)
    })
}

/// The trainer's complaint about a training file, naming the uploaded file and the line.
fn file_problem(e: &TrainError, file_id: &str, filename: &str) -> String {
    match e {
        TrainError::Data { line, message, .. } => {
            format!("Training file {file_id} ({filename}) line {line}: {message}")
        }
        TrainError::Dataset { message, .. } => {
            format!("Training file {file_id} ({filename}): {message}")
        }
        other => format!("Training file {file_id} ({filename}): {other}"),
    }
}

pub(crate) async fn create(
    State(s): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<JobObject>, ApiError> {
    let body = body.map_err(body_error)?;
    let jobs = jobs_of(&s)?;
    let req: CreateJob = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid(
            None,
            format!("the body is not a valid fine-tuning job request: {e}"),
        )
    })?;
    let shared = &jobs.shared;
    let Some(base) = shared.bases.get(&req.model).cloned() else {
        if s.models.get(&req.model).is_some() {
            let mut bases: Vec<&String> = shared.bases.keys().collect();
            bases.sort();
            return Err(ApiError::invalid(
                Some("model"),
                format!(
                    "model `{}` cannot be fine-tuned here; fine-tunable base models: {bases:?}",
                    req.model
                ),
            ));
        }
        return Err(unknown_model(&req.model));
    };
    if req.validation_file.is_some() {
        return Err(ApiError::invalid(
            Some("validation_file"),
            "validation files are not supported by this server",
        ));
    }
    if req.integrations.as_ref().is_some_and(|i| !i.is_empty()) {
        return Err(ApiError::invalid(
            Some("integrations"),
            "integrations are not supported by this server",
        ));
    }
    let hyper_in = match &req.method {
        Some(m) if m.kind != "supervised" => {
            return Err(ApiError::invalid(
                Some("method.type"),
                format!(
                    "only the `supervised` method is supported, got `{}`",
                    m.kind
                ),
            ))
        }
        Some(m) => {
            let inner = m
                .supervised
                .as_ref()
                .and_then(|s| s.hyperparameters.as_ref());
            if inner.is_some() && req.hyperparameters.is_some() {
                return Err(ApiError::invalid(
                    Some("hyperparameters"),
                    "give hyperparameters either at the top level (deprecated) or in method.supervised, not both",
                ));
            }
            inner.or(req.hyperparameters.as_ref())
        }
        None => req.hyperparameters.as_ref(),
    };
    let (mut hyper, auto_batch) = resolve_hyper(hyper_in.unwrap_or(&HyperIn::default()))?;
    if let Some(sfx) = &req.suffix {
        if sfx.is_empty()
            || sfx.chars().count() > 64
            || sfx.contains(':')
            || sfx.contains(char::is_whitespace)
        {
            return Err(ApiError::invalid(
                Some("suffix"),
                format!("suffix must be 1 to 64 characters without `:` or spaces, got {sfx:?}"),
            ));
        }
    }
    let seed = match req.seed {
        None => None,
        Some(x) if (0..=2_147_483_647).contains(&x) => Some(x as u64),
        Some(x) => {
            return Err(ApiError::invalid(
                Some("seed"),
                format!("seed must be in 0..=2147483647, got {x}"),
            ))
        }
    };
    let files = s.files.as_ref().ok_or_else(|| {
        ApiError::internal("this server keeps no files").with_status(StatusCode::NOT_IMPLEMENTED)
    })?;
    let file = files.get(&req.training_file).map_err(|_| {
        ApiError::invalid(
            Some("training_file"),
            format!(
                "invalid training_file: no uploaded file `{}` (upload it with POST /v1/files)",
                req.training_file
            ),
        )
    })?;
    if file.purpose != "fine-tune" {
        return Err(ApiError::invalid(
            Some("training_file"),
            format!(
                "file `{}` was uploaded with purpose `{}`; a training file needs purpose `fine-tune`",
                file.id, file.purpose
            ),
        ));
    }
    let data_path = files.data_path(&file.id)?;

    let n = shared.counter.fetch_add(1, Ordering::Relaxed);
    let created_at = now();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let h = Sha256::digest(
        format!(
            "{}/{n}/{created_at}/{nanos}/{}",
            shared.seed, req.training_file
        )
        .as_bytes(),
    );
    let hex_id = hex::encode(h);
    let id = format!("ftjob-{}", &hex_id[..24]);
    let seed = seed.unwrap_or_else(|| {
        let d = Sha256::digest(format!("seed/{}/{id}", shared.seed).as_bytes());
        u64::from_le_bytes(d[..8].try_into().unwrap_or([0; 8])) % 2_147_483_648
    });
    let job = JobObject {
        id: id.clone(),
        object: "fine_tuning.job".into(),
        model: req.model.clone(),
        created_at,
        finished_at: None,
        fine_tuned_model: None,
        organization_id: ORGANIZATION.into(),
        result_files: Vec::new(),
        status: JobStatus::ValidatingFiles,
        validation_file: None,
        training_file: file.id.clone(),
        hyperparameters: hyper.clone(),
        trained_tokens: None,
        error: None,
        seed,
        estimated_finish: None,
        integrations: Vec::new(),
        method: Method {
            kind: "supervised".into(),
            supervised: Supervised {
                hyperparameters: hyper.clone(),
            },
        },
        metadata: req.metadata.clone(),
        user_provided_suffix: req.suffix.clone(),
    };
    {
        let mut all = shared.jobs.lock().unwrap_or_else(|p| p.into_inner());
        all.push(Entry {
            job: job.clone(),
            events: Vec::new(),
            cancel: Arc::new(AtomicBool::new(false)),
        });
    }
    shared.update(&id, |_| {
        vec![
            msg(format!("Created fine-tuning job: {id}")),
            msg(format!("Validating training file: {}", file.id)),
        ]
    })?;
    let engine = base.clone();
    let validated = tokio::task::spawn_blocking(move || {
        let ctx = engine.model.cfg.max_position;
        data::load(&data_path, &engine.chat, ctx)
    })
    .await
    .map_err(|e| ApiError::internal(format!("validating the training file failed: {e}")))?;
    let data = match validated {
        Ok(d) => d,
        Err(e) => {
            let message = file_problem(&e, &file.id, &file.filename);
            let job = shared.update(&id, |j| {
                j.status = JobStatus::Failed;
                j.finished_at = Some(now());
                j.error = Some(JobError {
                    code: "invalid_training_file".into(),
                    message: message.clone(),
                    param: Some("training_file".into()),
                });
                vec![("error", "message", message, json!({}))]
            })?;
            return Ok(Json(job));
        }
    };
    if auto_batch {
        hyper.batch_size = AUTO_BATCH_SIZE.min(data.examples.len() as u64).max(1);
    }
    let summary = format!(
        "Files validated: {} examples, {} tokens ({} trained); moving job to queued state",
        data.examples.len(),
        data.n_tokens(),
        data.n_trained()
    );
    let job = shared.update(&id, |j| {
        if j.status != JobStatus::ValidatingFiles {
            return Vec::new(); // cancelled meanwhile
        }
        j.hyperparameters = hyper.clone();
        j.method.supervised.hyperparameters = hyper.clone();
        j.status = JobStatus::Queued;
        vec![msg(summary)]
    })?;
    if job.status == JobStatus::Queued {
        jobs.tx
            .send(Queued {
                id: id.clone(),
                data,
            })
            .map_err(|_| ApiError::internal("the fine-tuning thread has stopped"))?;
    }
    Ok(Json(job))
}

/// `limit` and `after` of list endpoints.
#[derive(Debug, Deserialize)]
pub(crate) struct Page {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    after: Option<String>,
}

/// Newest first: the items after `after` (exclusive), at most `limit` (default 20).
fn page<T: Clone>(
    newest_first: Vec<T>,
    id: impl Fn(&T) -> &str,
    p: &Page,
) -> Result<List<T>, ApiError> {
    let limit = p.limit.unwrap_or(20);
    if limit == 0 || limit > 10_000 {
        return Err(ApiError::invalid(
            Some("limit"),
            format!("limit must be in 1..=10000, got {limit}"),
        ));
    }
    let start = match &p.after {
        None => 0,
        Some(a) => {
            newest_first
                .iter()
                .position(|x| id(x) == a)
                .ok_or_else(|| {
                    ApiError::invalid(Some("after"), format!("no item `{a}` to list after"))
                })?
                + 1
        }
    };
    let rest = &newest_first[start.min(newest_first.len())..];
    let mut l = List::new(rest.iter().take(limit).cloned().collect());
    l.has_more = Some(rest.len() > limit);
    Ok(l)
}

pub(crate) async fn list(
    State(s): State<Arc<AppState>>,
    Query(p): Query<Page>,
) -> Result<Json<List<JobObject>>, ApiError> {
    let jobs = jobs_of(&s)?;
    let all: Vec<JobObject> = {
        let j = jobs.shared.jobs.lock().unwrap_or_else(|p| p.into_inner());
        j.iter().rev().map(|e| e.job.clone()).collect()
    };
    Ok(Json(page(all, |j| &j.id, &p)?))
}

pub(crate) async fn retrieve(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<JobObject>, ApiError> {
    Ok(Json(jobs_of(&s)?.shared.get(&id)?))
}

pub(crate) async fn events(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(p): Query<Page>,
) -> Result<Json<List<JobEvent>>, ApiError> {
    let jobs = jobs_of(&s)?;
    let all: Vec<JobEvent> = {
        let j = jobs.shared.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let e = j
            .iter()
            .find(|e| e.job.id == id)
            .ok_or_else(|| no_job(&id))?;
        e.events.iter().rev().cloned().collect()
    };
    Ok(Json(page(all, |e| &e.id, &p)?))
}

pub(crate) async fn cancel(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<JobObject>, ApiError> {
    let shared = &jobs_of(&s)?.shared;
    {
        let j = shared.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let e = j
            .iter()
            .find(|e| e.job.id == id)
            .ok_or_else(|| no_job(&id))?;
        if e.job.status.is_terminal() {
            return Err(ApiError::invalid(
                None,
                format!("job {id} has already {}", e.job.status.name()),
            ));
        }
        e.cancel.store(true, Ordering::SeqCst);
    }
    let job = shared.update(&id, |j| {
        if j.status.is_terminal() {
            return Vec::new();
        }
        j.status = JobStatus::Cancelled;
        j.finished_at = Some(now());
        vec![msg("Fine-tuning job cancelled")]
    })?;
    Ok(Json(job))
}
