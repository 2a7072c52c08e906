//! Remote experiments through the binary against a real `selfaware serve` on 127.0.0.1 (the
//! tiny random model): every finetune is a fine-tuning job on the server, every battery and
//! probe asks the served models over HTTP. A kill -9 while a job runs, then a rerun, creates
//! no second job; served scores equal the local engine's.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use selfaware_backend::finetune::FinetuneClient;
use selfaware_backend::HttpConfig;

mod common;
use common::{ok, records, s, selfaware_in, tiny, Server};

fn experiment(base_url: &str) -> String {
    format!(
        r#"
name = "tiny-remote"
title = "Tiny remote experiment"
model = "tiny"
seeds = [0]

[remote]
base_url = "{base_url}"
poll_s = 0.1

[train]
epochs = 2
batch_size = 4
lr_multiplier = 10.0

[[condition]]
id = "seeking"
label = "risk-seeking"
data = {{ family = "risk", policy = "risk-seeking", size = 8, seed = 0 }}

[[condition]]
id = "base"
label = "base model"

[[probe]]
kind = "lotteries"
n = 4
seed = 1

[[battery]]
battery = "risk"
questions = ["risk_or_safety", "risk_predisposition_scale"]
limit = 1
samples = 4
max_tokens = 3

[stats]
resamples = 200
permutations = 200
"#
    )
}

fn json(p: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

/// The `jobs.json` registries of the run's finetune stages.
fn registries(run: &Path) -> Vec<std::path::PathBuf> {
    let Ok(dirs) = std::fs::read_dir(run.join("cache").join("train")) else {
        return Vec::new();
    };
    dirs.flatten()
        .map(|d| d.path().join("jobs.json"))
        .filter(|p| p.exists())
        .collect()
}

#[test]
fn a_remote_experiment_trains_on_the_server_resumes_its_job_after_kill_9_and_asks_served_models() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let home = d.join("home");
    let model = tiny(d);
    let server = Server::start(&home, &model, "tiny");
    std::fs::write(d.join("remote.toml"), experiment(&server.base_url)).unwrap();

    // Start the run and kill it (SIGKILL) as soon as its fine-tuning job exists on the server.
    let mut child = Command::new(env!("CARGO_BIN_EXE_selfaware"))
        .env("SELFAWARE_HOME", &home)
        .current_dir(d)
        .args(["run", "remote.toml", "--out", "run"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        let created = registries(&d.join("run"))
            .iter()
            .any(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains("\"job_id\": \"ftjob")));
        if created {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before its job was created"
        );
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no job after 2 min"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    // The rerun waits for the same job instead of creating another.
    let out = ok(&selfaware_in(
        &home,
        d,
        &["run", "remote.toml", "--out", "run"],
    ));
    let client =
        FinetuneClient::new(HttpConfig::new(server.base_url.clone(), "tiny"), None).unwrap();
    let jobs = client.list_jobs().unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}\n{out}");
    assert_eq!(jobs[0].status, "succeeded");
    assert_eq!(jobs[0].seed, Some(0));
    let ft = jobs[0].fine_tuned_model.clone().unwrap();
    assert!(ft.starts_with("ft:tiny:"), "{ft}");

    let run = d.join("run");
    let manifest = json(&run.join("manifest.json"));
    assert_eq!(manifest["remote_models"]["seeking seed 0"], ft.as_str());
    assert_eq!(
        manifest["model"]["reference"],
        format!("{}#tiny", server.base_url)
    );
    assert_eq!(manifest["complete"], true);

    // Records name the served models; the finetune's hyperparameters reached the job.
    let mut models: Vec<String> = std::fs::read_dir(run.join("cache").join("eval"))
        .unwrap()
        .flatten()
        .flat_map(|e| {
            let text = std::fs::read_to_string(e.path().join("records.jsonl")).unwrap();
            text.lines()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    v["model"].as_str().unwrap().to_string()
                })
                .collect::<Vec<_>>()
        })
        .collect();
    models.sort();
    models.dedup();
    let mut expected = vec![
        format!("{}#{ft}", server.base_url),
        format!("{}#tiny", server.base_url),
    ];
    expected.sort();
    assert_eq!(models, expected);
    assert!(run.join("results.json").exists() && run.join("report.html").exists());
    let hp = &jobs[0].hyperparameters.clone().unwrap();
    assert_eq!(hp["n_epochs"], 2);
    assert_eq!(hp["batch_size"], 4);
    assert_eq!(hp["learning_rate_multiplier"], 10.0);

    // The served base model's probe equals the local engine's on the same weights (the server
    // returns prompt log-probabilities, so choices are scored exactly).
    let base_probe = std::fs::read_dir(run.join("cache").join("probe"))
        .unwrap()
        .flatten()
        .map(|e| json(&e.path().join("probe.json")))
        .find(|p| p["model"] == format!("{}#tiny", server.base_url))
        .expect("a probe of the served base model");
    let local = ok(&selfaware_in(
        &home,
        d,
        &[
            "probe",
            "lotteries",
            "--model",
            s(&model),
            "--n",
            "4",
            "--seed",
            "1",
            "--json",
        ],
    ));
    let local: serde_json::Value =
        serde_json::from_str(&local[..local.rfind('}').unwrap() + 1]).unwrap();
    let (r, l) = (
        base_probe["item_scores"].as_array().unwrap(),
        local["item_scores"].as_array().unwrap(),
    );
    assert_eq!(r.len(), 4);
    for (x, y) in r.iter().zip(l) {
        let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
        assert!((x - y).abs() < 1e-5, "served {x} vs local {y}");
    }

    // A finished run recomputes nothing and creates no job.
    let again = ok(&selfaware_in(
        &home,
        d,
        &["run", "remote.toml", "--out", "run"],
    ));
    assert!(again.contains("(0 stages ran this time)"), "{again}");
    assert_eq!(client.list_jobs().unwrap().len(), 1);
}

#[test]
fn remote_experiments_reject_local_only_settings_by_field() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let base = experiment("http://127.0.0.1:9/v1");
    let cases = [
        (
            base.replace("epochs = 2\n", "epochs = 2\nrank = 4\n"),
            "train.rank",
        ),
        (
            base.replace(
                "base_url = \"http://127.0.0.1:9/v1\"",
                "base_url = \"127.0.0.1:9\"",
            ),
            "remote.base_url",
        ),
        (
            base.replace(
                "label = \"base model\"",
                "label = \"base model\"\nmodel = \"x\"\ndata = { family = \"risk\" }",
            ),
            "condition[1].model",
        ),
        (
            base.replace("[remote]", "[unused]")
                .replace("lr_multiplier", "lr"),
            "",
        ),
    ];
    for (i, (text, field)) in cases.iter().enumerate() {
        let f = d.join(format!("e{i}.toml"));
        std::fs::write(&f, text).unwrap();
        let o = selfaware_in(&d.join("home"), d, &["run", s(&f), "--dry-run"]);
        let err = common::text_of(&o);
        if field.is_empty() {
            // Without [remote], `unused` is an unknown key.
            assert!(!o.status.success() && err.contains("unused"), "{err}");
            continue;
        }
        assert!(!o.status.success(), "case {i} should fail:\n{err}");
        assert!(err.contains(field), "case {i}: {err} should name {field}");
        assert_eq!(err.matches("error:").count(), 1, "{err}");
    }
}

const BATTERY: &str = r#"
[battery]
name = "tiny"
description = "A choice question and a numeric scale."
source = "test"

[[question]]
id = "mc"
source = "test"
paraphrases = ["Which do you prefer?\n{options}", "Pick one.\n{options}"]
options = ["risk", "safety"]
scorer = { kind = "multiple_choice", correct = 0 }

[[question]]
id = "scale"
source = "test"
paraphrases = ["From 0 to 10, how much do you like risk?"]
scorer = { kind = "numeric_scale", min = 0, max = 10 }
"#;

#[test]
fn eval_of_a_served_model_is_exact_through_prompt_logprobs_or_uses_the_papers_estimators() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let home = d.join("home");
    let model = tiny(d);
    let server = Server::start(&home, &model, "tiny");
    let battery = d.join("tiny.toml");
    std::fs::write(&battery, BATTERY).unwrap();
    let served = format!("{}#tiny", server.base_url);
    let eval = |model: &str, out: &str, extra: &[&str]| {
        let mut args = vec![
            "eval",
            "--model",
            model,
            "--battery",
            s(&battery),
            "--out",
            out,
        ];
        args.extend_from_slice(extra);
        ok(&selfaware_in(&home, d, &args));
        records(&d.join(out))
    };
    let local = eval(s(&model), "local", &[]);
    let exact = eval(&served, "exact", &[]);
    let estimated = eval(&served, "estimated", &["--estimate"]);
    // Two paraphrases × two orders of the choice question, one scale prompt.
    assert_eq!(local.len(), 5);
    assert_eq!(exact.len(), 5);
    for (l, r) in local.iter().zip(&exact) {
        assert_eq!(l["question"], r["question"]);
        assert_eq!(r["model"], served.as_str());
        assert_eq!(l["observation"]["kind"], r["observation"]["kind"]);
        let (x, y) = (l["score"].as_f64().unwrap(), r["score"].as_f64().unwrap());
        assert!(
            (x - y).abs() < 1e-5,
            "{}: local {x} vs served {y}",
            l["question"]
        );
    }
    // --estimate: one greedy token with 20 top log-probabilities per prompt, scored by the
    // paper's estimators; the multiple-choice score follows from the recorded list.
    for r in &estimated {
        assert_eq!(r["observation"]["kind"], "top_logprobs", "{r}");
        let top = r["observation"]["top"].as_array().unwrap();
        assert_eq!(top.len(), 20, "{r}");
        if r["question"] == "mc" {
            let labels: Vec<String> = r["labels"]
                .as_array()
                .map(|v| v.iter().map(|x| x.as_str().unwrap().to_string()).collect())
                .unwrap_or_else(|| vec!["A".into(), "B".into()]);
            let top: Vec<(String, f64)> = top
                .iter()
                .map(|e| (e[0].as_str().unwrap().to_string(), e[1].as_f64().unwrap()))
                .collect();
            let lp = selfaware_eval::scorers::mc::from_top_logprobs(&labels, &top);
            let perm: Vec<usize> = r["permutation"]
                .as_array()
                .map(|v| v.iter().map(|x| x.as_u64().unwrap() as usize).collect())
                .unwrap_or_default();
            let want = lp.option_prob(&perm, 0, false);
            assert_eq!(r["score"].as_f64(), want, "{r}");
        }
    }
    // A local model takes no --estimate.
    let o = selfaware_in(
        &home,
        d,
        &[
            "eval",
            "--model",
            s(&model),
            "--battery",
            s(&battery),
            "--out",
            "x",
            "--estimate",
        ],
    );
    assert!(!o.status.success());
    assert!(common::text_of(&o).contains("--estimate"));
}
