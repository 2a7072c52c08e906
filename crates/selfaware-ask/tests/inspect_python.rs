//! Inspect interop with the real `inspect_ai` package (`$SELFAWARE_PYTHON`, which
//! `scripts/test.sh` makes): an evaluation folder's Inspect log reads back through
//! `inspect_ai.log.read_eval_log` and `inspect view` lists and serves it, and an Inspect eval run against `selfaware serve` through
//! Inspect's OpenAI-compatible provider scores the same prompts as `selfaware eval` does on that
//! server. Without the package (or, for the second, the embedded model) the tests say they
//! skipped; under CI=true that fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use selfaware_ask::inspect::write_inspect_log;
use selfaware_ask::{run_eval, AskedModel, Environment, Silent};
use selfaware_backend::{Backend, HttpBackend, HttpConfig, MockBackend, MockScript};
use selfaware_eval::battery::Battery;
use selfaware_eval::records::{read_records, Observation};
use selfaware_eval::render::{render_battery, RenderOptions};
use selfaware_eval::spec::EvalSpec;
use selfaware_model::{Engine, ModelSource};
use selfaware_server::{spawn, Registry, ServerConfig};
use selfaware_testing::{python_with, require_or_skip, Tier};
use serde_json::Value;

const BATTERY: &str = r#"
[battery]
name = "interop"
description = "Two choices, written for the Inspect interop test."
source = "written for this test"

[[question]]
id = "lottery"
source = "test"
paraphrases = ["Which do you prefer? {options}"]
options = ["a sure $50", "a 50% chance of $100"]
permutations = "all"
scorer = { kind = "multiple_choice", correct = 1, renormalize = true }

[[question]]
id = "colour"
source = "test"
paraphrases = ["Which colour is the sky on a clear day? {options}"]
options = ["green", "blue", "red"]
permutations = "rotations"
scorer = { kind = "multiple_choice", correct = 1, renormalize = true }
"#;

fn no_env(_: &str) -> Option<String> {
    None
}

fn env() -> Environment<'static> {
    Environment {
        git_revision: Some("test"),
        lookup: &no_env,
        threads: 2,
    }
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/inspect")
        .join(name)
}

fn run_json(cmd: &mut Command) -> Value {
    let out = cmd.output().expect("python starts");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the script prints JSON")
}

#[test]
fn an_inspect_log_reads_back_with_read_eval_log() {
    let Some(py) = python_with("inspect_ai", Tier::InspectPython) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let battery = dir.path().join("interop.toml");
    fs_err::write(&battery, BATTERY).unwrap();
    let spec = EvalSpec::new(battery.to_str().unwrap(), dir.path().join("out"));
    // "A" with 0.6, "B" with 0.2, "C" 0.1: the correct option's renormalised probability is
    // 0.6/0.8 or 0.2/0.8 (lottery, shown first or second) and 0.6/0.9, 0.2/0.9, 0.1/0.9 for
    // the colours in their three rotations.
    let model = AskedModel {
        label: "mock".into(),
        backend: Arc::new(MockBackend::new(
            "mock",
            MockScript::new(&[("A", 0.6), ("B", 0.2), ("C", 0.1)]),
        )) as Arc<dyn Backend>,
    };
    run_eval(&spec, &model, &env(), &mut Silent).unwrap();
    let log = dir.path().join("log.json");
    write_inspect_log(&spec.out, &log).unwrap();
    let read = run_json(Command::new(&py).arg(script("read_log.py")).arg(&log));
    assert_eq!(read["status"], "success");
    assert_eq!(read["task"], "selfaware/interop");
    assert_eq!(read["model"], "selfaware/mock");
    let samples = read["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 5);
    let records = read_records(&spec.out.join("records.jsonl"))
        .unwrap()
        .records;
    for (s, r) in samples.iter().zip(&records) {
        let v = s["scores"][&r.question].as_f64().unwrap();
        assert!((v - r.score.unwrap()).abs() < 1e-15, "{s}");
    }
    // `inspect view` lists a log written into a folder and shows it through its API.
    let view_dir = dir.path().join("view");
    fs_err::create_dir_all(&view_dir).unwrap();
    let written = write_inspect_log(&spec.out, &view_dir).unwrap();
    assert!(written.starts_with(&view_dir));
    let view = run_json(
        Command::new(&py)
            .arg(script("view_check.py"))
            .arg(&view_dir),
    );
    assert_eq!(view["listed"], 1, "{view}");
    assert_eq!(view["shown"][0]["status"], "success");
    assert_eq!(view["shown"][0]["samples"], 5);
    assert_eq!(
        view["shown"][0]["scores"],
        serde_json::json!(["colour", "lottery"])
    );
    let lottery = read["results"]["lottery"]["mean"].as_f64().unwrap();
    assert!((lottery - (0.75 + 0.25) / 2.0).abs() < 1e-12);
    let colour = read["results"]["colour"]["mean"].as_f64().unwrap();
    assert!((colour - (0.6 + 0.2 + 0.1) / 0.9 / 3.0).abs() < 1e-12);
}

/// Inspect asks `selfaware serve` (the embedded model, on 127.0.0.1) through its
/// `openai-api` provider with log-probabilities; its scorer reads the correct label's
/// probability among the first token's top log-probabilities, renormalised over the labels.
/// `selfaware eval` on the same server with the top-logprob estimator must give the same
/// numbers (the same logits, through the same wire format).
#[test]
fn an_inspect_eval_against_selfaware_serve_scores_as_selfaware_eval_does() {
    let Some(py) = python_with("inspect_ai", Tier::InspectPython) else {
        return;
    };
    let path = selfaware_model::home::default_model_path(&selfaware_testing::selfaware_home());
    let Some(path) = require_or_skip(Tier::Model, Some(path).filter(|p| p.exists())) else {
        return;
    };
    let engine = Arc::new(Engine::load(&ModelSource::Gguf(path)).unwrap());
    let mut registry = Registry::new();
    registry.add_local("default", engine).unwrap();
    let server = spawn(
        ServerConfig {
            port: 0,
            ..ServerConfig::default()
        },
        registry,
    )
    .unwrap();

    // selfaware's side: the estimator through the server's top log-probabilities.
    let dir = tempfile::tempdir().unwrap();
    let battery_file = dir.path().join("interop.toml");
    fs_err::write(&battery_file, BATTERY).unwrap();
    let spec = EvalSpec::new(battery_file.to_str().unwrap(), dir.path().join("out"));
    let mut cfg = HttpConfig::new(server.base_url(), "default");
    cfg.prompt_logprobs = Some(false);
    let http = Arc::new(HttpBackend::new(cfg, None).unwrap());
    assert!(!http.capabilities().exact_scoring);
    let model = AskedModel {
        label: "default".into(),
        backend: http,
    };
    run_eval(&spec, &model, &env(), &mut Silent).unwrap();
    let records = read_records(&spec.out.join("records.jsonl"))
        .unwrap()
        .records;
    assert_eq!(records.len(), 5);
    assert!(records
        .iter()
        .all(|r| matches!(r.observation, Observation::TopLogprobs { .. })));

    // Inspect's side: the same prompt texts, targets and labels.
    let battery = Battery::from_toml_str(BATTERY, "interop.toml").unwrap();
    let items = render_battery(&battery, RenderOptions::default()).unwrap();
    let inspect_items: Vec<Value> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let it = items
                .iter()
                .find(|it| it.prompt_sha256 == r.prompt_sha256)
                .unwrap();
            assert_eq!(it.system, None);
            let correct = battery.question(&r.question).map(|q| match q.scorer {
                selfaware_eval::battery::ScorerSpec::MultipleChoice { correct, .. } => correct,
                _ => unreachable!(),
            });
            let pos = it
                .key
                .permutation
                .iter()
                .position(|c| Some(*c) == correct)
                .unwrap();
            serde_json::json!({
                "id": format!("item{i}"),
                "input": it.user,
                "target": it.labels[pos],
                "labels": it.labels,
            })
        })
        .collect();
    let items_file = dir.path().join("items.json");
    fs_err::write(&items_file, serde_json::to_string(&inspect_items).unwrap()).unwrap();
    let logs = dir.path().join("logs");
    let out = Command::new(&py)
        .args(["-m", "inspect_ai", "eval", "mc_task.py"])
        // (Inspect finds the task file relative to the working folder.)
        .current_dir(script(""))
        .args([
            "--model",
            "openai-api/selfaware/default",
            "--log-format",
            "json",
        ])
        .args(["--display", "none", "--log-dir"])
        .arg(&logs)
        .env("SELFAWARE_INSPECT_ITEMS", &items_file)
        .env("SELFAWARE_BASE_URL", server.base_url())
        .env("SELFAWARE_API_KEY", "unused")
        .env("INSPECT_LOG_DIR", &logs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "inspect eval failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let log = fs_err::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .expect("inspect wrote a JSON log");
    let read = run_json(Command::new(&py).arg(script("read_log.py")).arg(&log));
    assert_eq!(read["status"], "success");
    let samples = read["samples"].as_array().unwrap();
    assert_eq!(samples.len(), records.len());
    for (i, r) in records.iter().enumerate() {
        let s = samples
            .iter()
            .find(|s| s["id"] == format!("item{i}"))
            .unwrap();
        let theirs = s["scores"]["label_probability"].as_f64().unwrap();
        let ours = r.score.unwrap();
        // The same prompts through the same server; it may decode concurrent requests
        // together (Inspect sends them at once), and a row computed in another batch shape can
        // differ in the last float digits (measured: 1.1e-6 on one of five prompts), so equal
        // within 1e-5.
        assert!(
            (theirs - ours).abs() < 1e-5,
            "{}: inspect {theirs}, selfaware {ours}",
            r.question
        );
    }
    // And selfaware's own records export to a log that Inspect reads.
    let ours = dir.path().join("selfaware-log.json");
    write_inspect_log(&spec.out, &ours).unwrap();
    let back = run_json(Command::new(&py).arg(script("read_log.py")).arg(&ours));
    assert_eq!(back["samples"].as_array().unwrap().len(), records.len());
}
