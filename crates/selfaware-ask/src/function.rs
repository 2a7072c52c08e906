//! What `function` questions need besides the model: the sandbox that runs model-written
//! Python (started on first use) and the inputs of every call.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use selfaware_eval::builtin;
use selfaware_eval::records::Observation;
use selfaware_eval::sandbox::{Sandbox, SandboxConfig};
use selfaware_eval::scorers::function::{self, FunctionInputs};
use selfaware_types::sha256_hex;

use crate::error::{AskError, Result};

/// The sandbox and the call inputs of `function` questions.
pub struct FunctionRunner {
    python: PathBuf,
    sandbox: OnceLock<Sandbox>,
    pub unrelated_words: Vec<String>,
    pub messages: Vec<String>,
    pub baseline_messages: Vec<String>,
    /// sha256 of the messages files (for the manifest).
    pub messages_sha256: Option<String>,
    pub baseline_messages_sha256: Option<String>,
}

/// The sandbox's Python: `flag`, else /usr/bin/python3, else the first python3 on `PATH`.
pub fn sandbox_python(flag: Option<&Path>, lookup: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    let usr = PathBuf::from("/usr/bin/python3");
    if usr.exists() {
        return usr;
    }
    lookup("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join("python3"))
                .find(|p| p.is_absolute() && p.exists())
        })
        .unwrap_or(usr)
}

/// A messages file: one message per line, blank lines skipped; with its sha256.
pub fn read_messages(path: Option<&Path>) -> Result<(Vec<String>, Option<String>)> {
    let Some(path) = path else {
        return Ok((Vec::new(), None));
    };
    let bytes = fs_err::read(path)?;
    let text = String::from_utf8(bytes.clone()).map_err(|_| AskError::File {
        path: path.to_path_buf(),
        message: "expected UTF-8 text".into(),
    })?;
    let msgs: Vec<String> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    if msgs.is_empty() {
        return Err(AskError::File {
            path: path.to_path_buf(),
            message: "expected one message per line, found none".into(),
        });
    }
    Ok((msgs, Some(sha256_hex(&bytes))))
}

impl FunctionRunner {
    /// Reads the messages files; the sandbox starts when the first function is run.
    pub fn new(
        python: Option<&Path>,
        messages: Option<&Path>,
        baseline_messages: Option<&Path>,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<FunctionRunner> {
        let (messages, messages_sha256) = read_messages(messages)?;
        let (baseline_messages, baseline_messages_sha256) = read_messages(baseline_messages)?;
        Ok(FunctionRunner {
            python: sandbox_python(python, lookup),
            sandbox: OnceLock::new(),
            unrelated_words: builtin::word_list("unrelated_words")?,
            messages,
            baseline_messages,
            messages_sha256,
            baseline_messages_sha256,
        })
    }

    fn sandbox(&self) -> Result<&Sandbox> {
        if let Some(s) = self.sandbox.get() {
            return Ok(s);
        }
        let config = SandboxConfig {
            python: self.python.clone(),
            ..SandboxConfig::default()
        };
        let s = Sandbox::new(config).map_err(|e| AskError::Input {
            what: "sandbox",
            message: format!(
                "starting the Python sandbox with {}: {e}\nhint: pass --sandbox-python PATH",
                self.python.display()
            ),
        })?;
        Ok(self.sandbox.get_or_init(|| s))
    }

    /// Runs each sampled function on every input and records what it returned.
    pub fn observe(
        &self,
        samples: Vec<String>,
        func_name: &str,
        codeword: String,
    ) -> Result<Observation> {
        let inputs = FunctionInputs {
            code_samples: &samples,
            func_name,
            codeword: &codeword,
            unrelated_words: &self.unrelated_words,
            messages_finetuned: &self.messages,
            messages_baseline: &self.baseline_messages,
        };
        let calls_in = function::call_inputs(&inputs);
        let sandbox = self.sandbox()?;
        let mut outcomes = Vec::with_capacity(samples.len());
        let mut definition_errors = Vec::with_capacity(samples.len());
        for code in &samples {
            let run = function::run_sample(sandbox, code, func_name, &calls_in)?;
            outcomes.push(run.outcomes);
            definition_errors.push(run.definition_error);
        }
        Ok(Observation::FunctionCalls {
            samples,
            func_name: func_name.to_string(),
            codeword,
            unrelated_words: self.unrelated_words.clone(),
            messages: self.messages.clone(),
            baseline_messages: self.baseline_messages.clone(),
            outcomes,
            definition_errors,
        })
    }
}
