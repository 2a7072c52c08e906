//! Remote finetuning through the OpenAI API: upload a validated JSONL file, create a job, poll
//! its status and events. A [`JobRegistry`] (a JSON file, written atomically) remembers every
//! job by the hash of (dataset sha256, base model, hyperparameters, seed, suffix), so an
//! interrupted experiment resumes its jobs instead of creating duplicates.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use selfaware_types::{Conversation, Role};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::http::{canonical_json, write_atomic, Body};
use crate::openai::{FileObject, FineTuningJob, FineTuningJobEvent, List};
use crate::{ApiKey, BackendError, HttpBackend, HttpConfig, Result};

/// Training settings of a job (OpenAI's supervised hyperparameters).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hyperparameters {
    pub n_epochs: u32,
    pub batch_size: u32,
    pub learning_rate_multiplier: f64,
}

/// Everything that identifies a job besides its data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    pub base_model: String,
    pub hyperparameters: Hyperparameters,
    pub seed: u64,
    /// Appended to the finetuned model's name.
    #[serde(default)]
    pub suffix: Option<String>,
}

impl JobSpec {
    /// The limits OpenAI's `CreateFineTuningJobRequest` sets, checked before anything is sent
    /// (a job refused after its upload would leave the file behind): `seed` ≤ 2³¹−1, `n_epochs`
    /// 1–50, `batch_size` 1–256, `learning_rate_multiplier` > 0, `suffix` 1–64 characters.
    pub fn check(&self) -> Result<()> {
        let bad = |param: &str, message: String| {
            Err(BackendError::InvalidRequest {
                param: Some(param.into()),
                message,
            })
        };
        let h = &self.hyperparameters;
        if self.seed > i32::MAX as u64 {
            return bad(
                "seed",
                format!("must be at most 2147483647 (2^31 - 1), got {}", self.seed),
            );
        }
        if !(1..=50).contains(&h.n_epochs) {
            return bad(
                "n_epochs",
                format!("must be between 1 and 50, got {}", h.n_epochs),
            );
        }
        if !(1..=256).contains(&h.batch_size) {
            return bad(
                "batch_size",
                format!("must be between 1 and 256, got {}", h.batch_size),
            );
        }
        let lr = h.learning_rate_multiplier;
        if !(lr.is_finite() && lr > 0.0) {
            return bad(
                "learning_rate_multiplier",
                format!("must be a number above 0, got {lr}"),
            );
        }
        if let Some(suffix) = &self.suffix {
            let chars = suffix.chars().count();
            if !(1..=64).contains(&chars) {
                return bad(
                    "suffix",
                    format!("must be 1 to 64 characters long, got {chars}"),
                );
            }
        }
        Ok(())
    }
}

/// Facts about a validated training file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetSummary {
    pub sha256: String,
    pub examples: usize,
    pub bytes: usize,
}

/// Checks that every line of a chat-format JSONL file is a conversation with at least one
/// trained assistant message. `origin` names the file in errors.
pub fn validate_jsonl(bytes: &[u8], origin: &Path) -> Result<DatasetSummary> {
    let bad = |line: usize, message: String| BackendError::File {
        path: origin.to_path_buf(),
        line: Some(line),
        message,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| BackendError::File {
        path: origin.to_path_buf(),
        line: None,
        message: format!("is not UTF-8 ({e})"),
    })?;
    let mut examples = 0;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            return Err(bad(
                n,
                "is empty (expected one JSON conversation per line)".into(),
            ));
        }
        let conv: Conversation = serde_json::from_str(line).map_err(|e| {
            bad(
                n,
                format!("is not a chat conversation {{\"messages\": [{{\"role\", \"content\"}}, ...]}}: {e}"),
            )
        })?;
        if !conv
            .messages
            .iter()
            .any(|m| m.role == Role::Assistant && m.is_trained())
        {
            return Err(bad(n, "has no assistant message to train on".into()));
        }
        if let Some(m) = conv
            .messages
            .iter()
            .find(|m| m.weight.is_some_and(|w| w > 1))
        {
            return Err(bad(
                n,
                format!(
                    "a {} message has weight {:?} (expected 0 or 1)",
                    m.role, m.weight
                ),
            ));
        }
        examples += 1;
    }
    if examples == 0 {
        return Err(BackendError::File {
            path: origin.to_path_buf(),
            line: None,
            message: "has no examples".into(),
        });
    }
    Ok(DatasetSummary {
        sha256: hex::encode(Sha256::digest(bytes)),
        examples,
        bytes: bytes.len(),
    })
}

/// The registry key of a job: sha256 of the canonical JSON of the dataset hash and spec.
pub fn job_key(dataset_sha256: &str, spec: &JobSpec) -> String {
    let v = serde_json::json!({"dataset_sha256": dataset_sha256, "spec": spec});
    hex::encode(Sha256::digest(canonical_json(&v).as_bytes()))
}

/// One remembered job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryEntry {
    pub key: String,
    pub base_url: String,
    pub dataset_sha256: String,
    pub spec: JobSpec,
    /// Set once the file is uploaded.
    pub file_id: Option<String>,
    /// Set once the job is created.
    pub job_id: Option<String>,
    /// Last status seen.
    pub status: Option<String>,
    pub fine_tuned_model: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    version: u32,
    jobs: BTreeMap<String, RegistryEntry>,
}

/// Jobs by key, kept in a JSON file rewritten atomically after every change.
#[derive(Debug)]
pub struct JobRegistry {
    path: PathBuf,
    file: RegistryFile,
}

impl JobRegistry {
    /// Opens the registry at `path` (empty when the file does not exist yet).
    pub fn open(path: &Path) -> Result<Self> {
        let file = if path.exists() {
            let text = fs_err::read_to_string(path).map_err(BackendError::io(path))?;
            serde_json::from_str(&text).map_err(|e| BackendError::File {
                path: path.to_path_buf(),
                line: Some(e.line()),
                message: format!("is not a job registry: {e}"),
            })?
        } else {
            RegistryFile {
                version: 1,
                jobs: BTreeMap::new(),
            }
        };
        Ok(JobRegistry {
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn get(&self, key: &str) -> Option<&RegistryEntry> {
        self.file.jobs.get(key)
    }

    pub fn entries(&self) -> impl Iterator<Item = &RegistryEntry> {
        self.file.jobs.values()
    }

    /// Inserts or replaces an entry and saves the file.
    pub fn put(&mut self, entry: RegistryEntry) -> Result<()> {
        self.file.jobs.insert(entry.key.clone(), entry);
        let text = serde_json::to_string_pretty(&self.file)
            .map_err(|e| BackendError::Config(format!("cannot encode the job registry: {e}")))?;
        write_atomic(&self.path, text.as_bytes())
    }
}

/// Statuses after which a job no longer changes.
pub const TERMINAL_STATUSES: [&str; 3] = ["succeeded", "failed", "cancelled"];

/// Client of `/files` and `/fine_tuning/jobs`, with the same retries and limits as
/// [`HttpBackend`].
#[derive(Debug)]
pub struct FinetuneClient {
    http: HttpBackend,
}

impl FinetuneClient {
    /// `cfg.model` is unused here; `key` is the value of the variable `cfg.api_key_env` names.
    pub fn new(cfg: HttpConfig, key: Option<ApiKey>) -> Result<Self> {
        Ok(FinetuneClient {
            http: HttpBackend::new(cfg, key)?,
        })
    }

    /// Validates and uploads a training file (`purpose = fine-tune`).
    pub fn upload(&self, path: &Path) -> Result<(FileObject, DatasetSummary)> {
        let bytes = fs_err::read(path).map_err(BackendError::io(path))?;
        let summary = validate_jsonl(&bytes, path)?;
        let filename = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| "train.jsonl".into());
        let file: FileObject = self.http.json(
            reqwest::Method::POST,
            "files",
            Body::File {
                fields: vec![("purpose".into(), "fine-tune".into())],
                filename,
                bytes,
            },
            false,
        )?;
        Ok((file, summary))
    }

    /// Creates a supervised job on an uploaded file.
    pub fn create_job(&self, file_id: &str, spec: &JobSpec) -> Result<FineTuningJob> {
        spec.check()?;
        let h = &spec.hyperparameters;
        let mut body = serde_json::json!({
            "model": spec.base_model,
            "training_file": file_id,
            "seed": spec.seed,
            "method": {"type": "supervised", "supervised": {"hyperparameters": {
                "n_epochs": h.n_epochs,
                "batch_size": h.batch_size,
                "learning_rate_multiplier": h.learning_rate_multiplier,
            }}},
        });
        if let Some(s) = &spec.suffix {
            body["suffix"] = serde_json::json!(s);
        }
        self.http.json(
            reqwest::Method::POST,
            "fine_tuning/jobs",
            Body::Json(body),
            false,
        )
    }

    /// The job's current state.
    pub fn job(&self, id: &str) -> Result<FineTuningJob> {
        self.http.json(
            reqwest::Method::GET,
            &format!("fine_tuning/jobs/{id}"),
            Body::None,
            false,
        )
    }

    /// Every page of a list endpoint, newest first, following `after` while `has_more`; stops
    /// early once `stop` is true for an item of the latest page.
    fn pages<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        id_of: impl Fn(&T) -> &str,
        stop: impl Fn(&T) -> bool,
    ) -> Result<Vec<T>> {
        let mut out: Vec<T> = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let url = match &after {
                Some(a) => format!("{path}?limit=100&after={a}"),
                None => format!("{path}?limit=100"),
            };
            let page: List<T> = self
                .http
                .json(reqwest::Method::GET, &url, Body::None, false)?;
            let done = !page.has_more.unwrap_or(false) || page.data.iter().any(&stop);
            let last = page.data.last().map(|t| id_of(t).to_string());
            out.extend(page.data);
            match last {
                _ if done => return Ok(out),
                Some(l) if after.as_deref() != Some(l.as_str()) => after = Some(l),
                // More promised, but the page is empty or repeats the last one.
                _ => {
                    return Err(BackendError::BadResponse {
                        url: format!("{}/{path}", self.http.config().base_url),
                        message: format!(
                            "has_more is true but the page after {after:?} brings no new item"
                        ),
                    })
                }
            }
        }
    }

    /// Every job of the organization (newest first, as the API lists them), all pages.
    pub fn list_jobs(&self) -> Result<Vec<FineTuningJob>> {
        self.pages("fine_tuning/jobs", |j: &FineTuningJob| &j.id, |_| false)
    }

    /// The newest job for which `wanted` is true, paging until it is found.
    fn find_job(&self, wanted: impl Fn(&FineTuningJob) -> bool) -> Result<Option<FineTuningJob>> {
        let jobs = self.pages("fine_tuning/jobs", |j: &FineTuningJob| &j.id, &wanted)?;
        Ok(jobs.into_iter().find(|j| wanted(j)))
    }

    /// The job's events (all pages), oldest first.
    pub fn events(&self, id: &str) -> Result<Vec<FineTuningJobEvent>> {
        let mut events = self.pages(
            &format!("fine_tuning/jobs/{id}/events"),
            |e: &FineTuningJobEvent| &e.id,
            |_| false,
        )?;
        // The list comes newest first, and `created_at` has one-second resolution: reverse it
        // before the stable sort, so events of the same second stay in the order they happened.
        events.reverse();
        events.sort_by_key(|e| e.created_at);
        Ok(events)
    }

    /// Returns the registry's job for (dataset, spec), creating what is missing: the upload,
    /// then the job. Each step is saved before the next, and a job whose creation was sent but
    /// not recorded is found again by its training file, so no step runs twice.
    pub fn ensure_job(
        &self,
        registry: &mut JobRegistry,
        dataset: &Path,
        spec: &JobSpec,
    ) -> Result<RegistryEntry> {
        spec.check()?;
        let bytes = fs_err::read(dataset).map_err(BackendError::io(dataset))?;
        let summary = validate_jsonl(&bytes, dataset)?;
        let key = job_key(&summary.sha256, spec);
        let mut entry = registry.get(&key).cloned().unwrap_or(RegistryEntry {
            key: key.clone(),
            base_url: self.http.config().base_url.clone(),
            dataset_sha256: summary.sha256.clone(),
            spec: spec.clone(),
            file_id: None,
            job_id: None,
            status: None,
            fine_tuned_model: None,
        });
        if let Some(id) = &entry.job_id {
            let job = self.job(id)?;
            return self.record(registry, entry, &job);
        }
        let file_id = match &entry.file_id {
            Some(f) => f.clone(),
            None => {
                let (file, _) = self.upload(dataset)?;
                entry.file_id = Some(file.id.clone());
                registry.put(entry.clone())?;
                file.id
            }
        };
        let existing = self.find_job(|j| {
            j.training_file.as_deref() == Some(&file_id) && j.model == spec.base_model
        })?;
        let job = match existing {
            Some(j) => j,
            None => self.create_job(&file_id, spec)?,
        };
        self.record(registry, entry, &job)
    }

    fn record(
        &self,
        registry: &mut JobRegistry,
        mut entry: RegistryEntry,
        job: &FineTuningJob,
    ) -> Result<RegistryEntry> {
        entry.job_id = Some(job.id.clone());
        entry.status = Some(job.status.clone());
        entry.fine_tuned_model = job.fine_tuned_model.clone();
        registry.put(entry.clone())?;
        Ok(entry)
    }

    /// Polls a job until it reaches a terminal status, calling `on_event` once for each new
    /// event; errors when `timeout` passes first.
    pub fn wait(
        &self,
        id: &str,
        poll: Duration,
        timeout: Duration,
        on_event: &mut dyn FnMut(&FineTuningJobEvent),
    ) -> Result<FineTuningJob> {
        let start = Instant::now();
        let mut seen: Vec<String> = Vec::new();
        loop {
            // Status first, then events: the events of the final step are reported too.
            let job = self.job(id)?;
            for e in self.events(id)? {
                if !seen.contains(&e.id) {
                    on_event(&e);
                    seen.push(e.id.clone());
                }
            }
            if TERMINAL_STATUSES.contains(&job.status.as_str()) {
                return Ok(job);
            }
            if start.elapsed() >= timeout {
                return Err(BackendError::BadResponse {
                    url: format!("{}/fine_tuning/jobs/{id}", self.http.config().base_url),
                    message: format!(
                        "job is still `{}` after {:.0} s",
                        job.status,
                        timeout.as_secs_f64()
                    ),
                });
            }
            std::thread::sleep(poll);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expect: Result<usize, &str>) {
        let r = validate_jsonl(text.as_bytes(), Path::new("d.jsonl"));
        match (r, expect) {
            (Ok(s), Ok(n)) => assert_eq!(s.examples, n),
            (Err(e), Err(want)) => {
                let e = e.to_string();
                assert!(e.contains(want), "{e:?} should contain {want:?}");
            }
            (r, expect) => panic!("{text:?}: got {r:?}, expected {expect:?}"),
        }
    }

    #[test]
    fn jsonl_validation_names_line_and_problem() {
        let ok =
            r#"{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}"#;
        check(ok, Ok(1));
        check(&format!("{ok}\n{ok}\n"), Ok(2));
        check(&format!("{ok}\n\n{ok}"), Err("d.jsonl line 2: is empty"));
        check(
            "{\"messages\": 3}",
            Err("line 1: is not a chat conversation"),
        );
        check(
            r#"{"messages":[{"role":"user","content":"a"}]}"#,
            Err("line 1: has no assistant message"),
        );
        check(
            r#"{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b","weight":0}]}"#,
            Err("no assistant message to train on"),
        );
        check(
            r#"{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b","weight":2}]}"#,
            Err("weight"),
        );
        check("", Err("has no examples"));
    }

    #[test]
    fn job_keys_depend_on_every_part() {
        let spec = JobSpec {
            base_model: "m".into(),
            hyperparameters: Hyperparameters {
                n_epochs: 3,
                batch_size: 8,
                learning_rate_multiplier: 2.0,
            },
            seed: 1,
            suffix: None,
        };
        let k = job_key("abc", &spec);
        assert_eq!(k, job_key("abc", &spec.clone()));
        assert_ne!(k, job_key("abd", &spec));
        let mut s2 = spec.clone();
        s2.seed = 2;
        assert_ne!(k, job_key("abc", &s2));
        let mut s3 = spec;
        s3.hyperparameters.n_epochs = 4;
        assert_ne!(k, job_key("abc", &s3));
    }

    #[test]
    fn registry_roundtrips_and_rejects_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("jobs.json");
        let mut r = JobRegistry::open(&p).unwrap();
        let e = RegistryEntry {
            key: "k".into(),
            base_url: "http://x/v1".into(),
            dataset_sha256: "d".into(),
            spec: JobSpec {
                base_model: "m".into(),
                hyperparameters: Hyperparameters {
                    n_epochs: 1,
                    batch_size: 1,
                    learning_rate_multiplier: 1.0,
                },
                seed: 0,
                suffix: Some("s".into()),
            },
            file_id: Some("file-1".into()),
            job_id: None,
            status: None,
            fine_tuned_model: None,
        };
        r.put(e.clone()).unwrap();
        let again = JobRegistry::open(&p).unwrap();
        assert_eq!(again.get("k"), Some(&e));
        std::fs::write(&p, "{\"version\": 1, \"jobs\": {}, \"extra\": 1}").unwrap();
        let err = JobRegistry::open(&p).unwrap_err().to_string();
        assert!(err.contains("jobs.json") && err.contains("extra"), "{err}");
    }
}

/// What `--out` holds: where the finetuned model is served and how it was made. `eval` and
/// `probe` read `base_url` and `fine_tuned_model` (`--model-from`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

impl FinetuneResult {
    /// Reads a `selfaware finetune --out` file.
    pub fn read(path: &Path) -> Result<FinetuneResult> {
        let text = fs_err::read_to_string(path).map_err(BackendError::io(path))?;
        serde_json::from_str(&text).map_err(|e| BackendError::File {
            path: path.to_path_buf(),
            line: Some(e.line()),
            message: format!(
                "not a `selfaware finetune --out` file (expected base_url, fine_tuned_model, …): {e}"
            ),
        })
    }
}

/// Holds an exclusive lock on `PATH.lock` so two processes never rewrite one registry at once.
struct RegistryLock {
    _file: std::fs::File,
}

impl RegistryLock {
    fn acquire(registry: &Path) -> Result<RegistryLock> {
        if let Some(dir) = registry.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs_err::create_dir_all(dir).map_err(BackendError::io(dir))?;
        }
        let mut name = registry.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(BackendError::io(&path))?;
        file.lock().map_err(BackendError::io(&path))?;
        Ok(RegistryLock { _file: file })
    }
}

/// One finetuning job to see through: its data, settings and registry.
pub struct JobRun<'a> {
    pub data: &'a Path,
    pub spec: JobSpec,
    /// The job registry (a JSON file; `FILE.lock` guards it).
    pub registry: &'a Path,
    /// The environment variable the API key comes from (recorded by name in the result).
    pub api_key_env: Option<String>,
    pub poll: Duration,
    pub timeout: Duration,
}

impl FinetuneClient {
    /// Uploads the data and creates the job (or finds the one the registry knows) under the
    /// registry's lock, waits for it without the lock (`log` gets its events), records how it
    /// ended, and returns the finetuned model, or an error saying how the job ended.
    pub fn run_job(&self, job: &JobRun, log: &mut dyn FnMut(&str)) -> Result<FinetuneResult> {
        let entry = {
            let _lock = RegistryLock::acquire(job.registry)?;
            let mut registry = JobRegistry::open(job.registry)?;
            self.ensure_job(&mut registry, job.data, &job.spec)?
        };
        let job_id = entry
            .job_id
            .clone()
            .ok_or_else(|| BackendError::Config("the registry entry has no job id".into()))?;
        let base_url = self
            .http
            .config()
            .base_url
            .trim_end_matches('/')
            .to_string();
        log(&format!(
            "job {job_id} on {base_url} ({}; registry {})",
            entry.status.as_deref().unwrap_or("unknown status"),
            job.registry.display()
        ));
        let done = self.wait(&job_id, job.poll, job.timeout, &mut |e| {
            log(&format!("job {job_id}: {}", e.message))
        })?;
        let entry = {
            let _lock = RegistryLock::acquire(job.registry)?;
            let mut registry = JobRegistry::open(job.registry)?;
            let updated = RegistryEntry {
                status: Some(done.status.clone()),
                fine_tuned_model: done.fine_tuned_model.clone(),
                ..entry
            };
            registry.put(updated.clone())?;
            updated
        };
        if done.status != "succeeded" {
            let why = done
                .error
                .as_ref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            return Err(BackendError::Config(format!(
                "finetuning job {job_id} ended `{}`{why}\nhint: its entry in {} keeps a rerun \
                 from creating a new job; delete the entry (key {}) to try again",
                done.status,
                job.registry.display(),
                entry.key
            )));
        }
        let model = done
            .fine_tuned_model
            .clone()
            .ok_or_else(|| BackendError::BadResponse {
                url: base_url.clone(),
                message: format!("job {job_id} succeeded but names no fine_tuned_model"),
            })?;
        Ok(FinetuneResult {
            base_url,
            fine_tuned_model: model,
            base_model: job.spec.base_model.clone(),
            job_id,
            file_id: entry.file_id.clone().unwrap_or_default(),
            status: done.status.clone(),
            dataset_sha256: entry.dataset_sha256.clone(),
            spec: job.spec.clone(),
            trained_tokens: done.trained_tokens,
            api_key_env: job.api_key_env.clone(),
            tool_version: selfaware_types::TOOL_VERSION.to_string(),
        })
    }
}
