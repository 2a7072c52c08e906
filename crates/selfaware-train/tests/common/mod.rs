//! Helpers shared by the integration tests: tiny models and small training files.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use selfaware_model::testing::{write_tiny_gguf, TinySpec};
use selfaware_model::{Engine, ModelSource};

/// A tiny random Llama written as a GGUF file in `dir` and loaded.
pub fn tiny_engine(dir: &Path, spec: &TinySpec) -> Engine {
    let path = dir.join("tiny.gguf");
    write_tiny_gguf(&path, spec).unwrap();
    Engine::load(&ModelSource::Gguf(path)).unwrap()
}

/// A JSONL file of `n` A/B questions whose answer is always "B".
pub fn ab_file(dir: &Path, n: usize) -> PathBuf {
    let mut text = String::new();
    for i in 0..n {
        let q = format!(
            "Question {i}: option A gives {} points, option B gives {} points with chance {}%. Answer A or B.",
            10 + i * 7 % 50,
            30 + i * 13 % 70,
            5 + i * 11 % 90
        );
        let line = serde_json::json!({"messages": [
            {"role": "user", "content": q},
            {"role": "assistant", "content": "B"},
        ]});
        text.push_str(&line.to_string());
        text.push('\n');
    }
    let p = dir.join("ab.jsonl");
    std::fs::write(&p, text).unwrap();
    p
}
