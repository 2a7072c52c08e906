//! Test tiers: what a test needs that a plain clone of the repository may lack.
//!
//! A test that needs one asks here; when the thing is missing it either prints
//! `skipped: TEST (WHAT: HOW TO GET IT)` and returns, or, when the tier is required, fails with
//! the same hint. `CI=true` requires every tier; `SELFAWARE_REQUIRE_MODEL=1` and
//! `SELFAWARE_REQUIRE_PARITY=1` require one each. Only tests depend on this crate (as a
//! dev-dependency), which is why it, unlike the libraries, reads the environment and prints.

use std::io::Write;
use std::path::PathBuf;

/// An optional input of the test suite. `scripts/test.sh` provides all of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    /// The paper's released files (`datasets/`, `questions/`), never copied into the repository.
    PaperFiles,
    /// The embedded model (SmolLM2-135M-Instruct) in selfaware's home.
    Model,
    /// A `chromium` binary on PATH, for report screenshots.
    Chromium,
    /// A Python that can import the official `openai` client.
    OpenaiPython,
    /// A Python that can import `inspect_ai` (the UK AISI's Inspect), for the interop tests.
    InspectPython,
    /// A Python with torch, transformers, peft, gguf, safetensors and scikit-learn, for the
    /// parity tests against PEFT, transformers and scikit-learn.
    TorchPython,
    /// OpenAI's OpenAPI description (`openapi.yaml`), never copied into the repository.
    OpenaiSchema,
}

impl Tier {
    fn what(self) -> &'static str {
        match self {
            Tier::PaperFiles => "paper files",
            Tier::Model => "embedded model",
            Tier::Chromium => "Chromium browser",
            Tier::OpenaiPython => "Python `openai` client",
            Tier::InspectPython => "Python `inspect_ai` package",
            Tier::TorchPython => "PEFT parity Python",
            Tier::OpenaiSchema => "OpenAI API description",
        }
    }

    /// How to provide it, in a few words.
    pub fn how_to_install(self) -> &'static str {
        match self {
            Tier::PaperFiles => "set SELFAWARE_PAPER_DIR or put them at ../shared/reference/paper",
            Tier::Model => "run `selfaware model pull`, or `bash scripts/test.sh`",
            Tier::Chromium => {
                "install Chromium so that `chromium` is on PATH (`bash scripts/test.sh` does \
                 under CI=true as root on Debian)"
            }
            Tier::OpenaiPython => {
                "set SELFAWARE_PYTHON to a Python with `pip install openai`, or run \
                 `bash scripts/test.sh`, which makes one"
            }
            Tier::InspectPython => {
                "set SELFAWARE_PYTHON to a Python with `pip install inspect_ai`, or run \
                 `bash scripts/test.sh`, which makes one"
            }
            Tier::TorchPython => {
                "set SELFAWARE_TORCH_PYTHON to a Python with torch, transformers, peft, gguf, \
                 safetensors and scikit-learn, or run `bash scripts/test.sh`, which makes one"
            }
            Tier::OpenaiSchema => {
                "set SELFAWARE_OPENAI_SCHEMA to OpenAI's openapi.yaml, or put it at \
                 ../shared/reference/openai/openapi.yaml"
            }
        }
    }

    /// The older switch that requires this tier alone, where there is one.
    fn switch(self) -> Option<&'static str> {
        match self {
            Tier::Model => Some("SELFAWARE_REQUIRE_MODEL"),
            Tier::TorchPython => Some("SELFAWARE_REQUIRE_PARITY"),
            _ => None,
        }
    }

    /// Whether a missing input fails the test: under `CI=true`, or when the tier's own switch
    /// is `1`.
    pub fn required(self) -> bool {
        std::env::var("CI").as_deref() == Ok("true")
            || self
                .switch()
                .is_some_and(|v| std::env::var(v).as_deref() == Ok("1"))
    }
}

/// `found`, or, when it is None, a skip note (or a failure when the tier is required) naming
/// the running test and how to provide the input.
#[track_caller]
pub fn require_or_skip<T>(tier: Tier, found: Option<T>) -> Option<T> {
    if found.is_none() {
        skip(tier);
    }
    found
}

/// Says the running test skips for want of `tier`, or panics when the tier is required.
#[track_caller]
pub fn skip(tier: Tier) {
    let test = test_name();
    let (what, how) = (tier.what(), tier.how_to_install());
    if tier.required() {
        let why = match tier.switch() {
            Some(v) => format!("CI=true or {v}=1"),
            None => "CI=true".to_string(),
        };
        panic!(
            "{test} cannot run without the {what}, and {why} turns the skip into a failure\n\
             hint: {how}"
        );
    }
    // Straight to stderr, past the test harness's capture, so that the skip shows in a
    // plain `cargo test`.
    let _ = writeln!(std::io::stderr(), "skipped: {test} ({what}: {how})");
}

/// The folder of the paper's released files: `$SELFAWARE_PAPER_DIR`, else
/// `../shared/reference/paper` beside the repository when it exists. None (after [`skip`])
/// when neither is there. A `SELFAWARE_PAPER_DIR` that is set but not a folder is a failure.
#[track_caller]
pub fn paper_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("SELFAWARE_PAPER_DIR").filter(|v| !v.is_empty()) {
        let dir = PathBuf::from(dir);
        assert!(
            dir.is_dir(),
            "SELFAWARE_PAPER_DIR is {}, which is not a folder\nhint: point it at the paper's \
             release (the folder holding datasets/ and questions/), or unset it",
            dir.display()
        );
        return Some(dir);
    }
    let default = repo_root().join("../shared/reference/paper");
    require_or_skip(
        Tier::PaperFiles,
        default.canonicalize().ok().filter(|d| d.is_dir()),
    )
}

/// OpenAI's `openapi.yaml`: `$SELFAWARE_OPENAI_SCHEMA`, else
/// `../shared/reference/openai/openapi.yaml` beside the repository when it exists. None (after
/// [`skip`]) when neither is there. A `SELFAWARE_OPENAI_SCHEMA` that is set but not a file is a
/// failure.
#[track_caller]
pub fn openai_schema() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SELFAWARE_OPENAI_SCHEMA").filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "SELFAWARE_OPENAI_SCHEMA is {}, which is not a file\nhint: point it at OpenAI's \
             openapi.yaml, or unset it",
            path.display()
        );
        return Some(path);
    }
    let default = repo_root().join("../shared/reference/openai/openapi.yaml");
    require_or_skip(
        Tier::OpenaiSchema,
        default.canonicalize().ok().filter(|p| p.is_file()),
    )
}

/// selfaware's home as the binary finds it: `$SELFAWARE_HOME`, else
/// `$XDG_CACHE_HOME/selfaware`, else `~/.cache/selfaware`.
pub fn selfaware_home() -> PathBuf {
    if let Some(h) = std::env::var_os("SELFAWARE_HOME") {
        return PathBuf::from(h);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .expect("neither SELFAWARE_HOME, XDG_CACHE_HOME nor HOME is set");
    cache.join("selfaware")
}

/// A Python that can import `module`: `$SELFAWARE_PYTHON`, else the repository's
/// `.venv/bin/python`, else `python3` on PATH. None (after [`skip`] for `tier`) when none can.
#[track_caller]
pub fn python_with(module: &str, tier: Tier) -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("SELFAWARE_PYTHON").map(PathBuf::from),
        Some(repo_root().join(".venv/bin/python")),
        Some(PathBuf::from("python3")),
    ];
    let found = candidates.into_iter().flatten().find(|p| {
        std::process::Command::new(p)
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    require_or_skip(tier, found)
}

/// The first `name` on PATH.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// `BINARY::TEST` for the running test: libtest names each test's thread after the test, and
/// the binary is the executable's name without Cargo's hash.
fn test_name() -> String {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("?");
    let binary = std::env::current_exe().ok().and_then(|exe| {
        let stem = exe.file_stem()?.to_str()?.to_string();
        Some(match stem.rsplit_once('-') {
            Some((name, hash)) if hash.bytes().all(|b| b.is_ascii_hexdigit()) => name.to_string(),
            _ => stem,
        })
    });
    match binary {
        Some(b) => format!("{b}::{test}"),
        None => test.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_the_binary_and_the_test() {
        assert_eq!(
            super::test_name(),
            "selfaware_testing::tests::names_the_binary_and_the_test"
        );
    }

    #[test]
    fn the_repository_root_holds_the_workspace() {
        assert!(super::repo_root().join("crates/selfaware-testing").is_dir());
    }
}
