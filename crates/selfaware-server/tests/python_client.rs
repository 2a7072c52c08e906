//! Runs `tests/openai_client.py` (the official `openai` Python package) against a live server.
//!
//! The interpreter is `$SELFAWARE_PYTHON`, else the workspace's `.venv/bin/python`, else
//! `python3`. When none can import `openai` the test says it skipped and passes, unless CI=true,
//! where that fails (`scripts/test.sh` makes a Python with the package).

mod common;

use std::path::PathBuf;
use std::process::Command;

use selfaware_testing::Tier;

fn python() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let candidates = [
        std::env::var_os("SELFAWARE_PYTHON").map(PathBuf::from),
        Some(root.join(".venv/bin/python")),
        Some(PathBuf::from("python3")),
    ];
    candidates.into_iter().flatten().find(|p| {
        Command::new(p)
            .args(["-c", "import openai"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    })
}

#[test]
fn openai_python_client() {
    let Some(py) = selfaware_testing::require_or_skip(Tier::OpenaiPython, python()) else {
        return;
    };
    let served = common::serve();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/openai_client.py");
    let out = Command::new(py)
        .arg(script)
        .arg(served.server.base_url())
        .arg(common::MODEL)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("\"ok\": true"), "{stdout}");
}
