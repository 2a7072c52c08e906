//! Helpers shared by the CLI integration tests: run the built binary, check its exit status.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs `selfaware ARGS` with `SELFAWARE_HOME=home` in `cwd`.
pub fn selfaware_in(home: &Path, cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_selfaware"))
        .env("SELFAWARE_HOME", home)
        .current_dir(cwd)
        .args(args)
        .output()
        .unwrap()
}

/// Lossy UTF-8.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// stdout followed by stderr.
pub fn text_of(o: &Output) -> String {
    text(&o.stdout) + &text(&o.stderr)
}

/// Asserts success (printing both streams otherwise) and returns stdout followed by stderr.
pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    text_of(o)
}

/// Runs `selfaware ARGS` with `SELFAWARE_HOME=home` in the current folder.
pub fn selfaware(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_selfaware"))
        .env("SELFAWARE_HOME", home)
        .args(args)
        .output()
        .unwrap()
}

/// Asserts success (printing both streams otherwise) and returns stdout alone.
pub fn ok_stdout(o: &Output) -> String {
    ok(o);
    text(&o.stdout)
}

/// A path as `&str` for argument lists.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Writes the default tiny random model to `dir/tiny.gguf`.
pub fn tiny(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("tiny.gguf");
    selfaware_model::testing::write_tiny_gguf(&p, &selfaware_model::testing::TinySpec::default())
        .unwrap();
    p
}
