//! Helpers shared by the CLI integration tests: run the built binary, check its exit status.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

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

/// The records an `eval --out DIR` wrote, parsed.
pub fn records(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("records.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Writes the default tiny random model to `dir/tiny.gguf`.
pub fn tiny(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("tiny.gguf");
    selfaware_model::testing::write_tiny_gguf(&p, &selfaware_model::testing::TinySpec::default())
        .unwrap();
    p
}

/// `selfaware serve` on a free port; killed when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT/v1`.
    pub base_url: String,
}

impl Server {
    /// Starts `selfaware serve --model MODEL --model-id ID --port 0` with `SELFAWARE_HOME=home`.
    pub fn start(home: &Path, model: &Path, id: &str) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_selfaware"))
            .env("SELFAWARE_HOME", home)
            .args([
                "serve",
                "--model",
                s(model),
                "--model-id",
                id,
                "--port",
                "0",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = Vec::new();
        let base_url = loop {
            let Some(Ok(line)) = lines.next() else {
                let _ = child.kill();
                panic!(
                    "selfaware serve exited before serving:\n{}",
                    seen.join("\n")
                );
            };
            // "serving `ID` at http://HOST:PORT/v1 …": keep the address, add the API prefix.
            if let Some(rest) = line.split_once(" at http://").map(|(_, r)| r) {
                let authority = rest.split(['/', ' ']).next().unwrap_or("");
                if !authority.is_empty() {
                    break format!("http://{authority}/v1");
                }
            }
            seen.push(line);
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server { child, base_url }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
