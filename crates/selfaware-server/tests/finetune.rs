//! Fine-tuning jobs on a live server (real sockets on 127.0.0.1): the backend's
//! `FinetuneClient` uploads a file, creates a job on the tiny model, polls it to `succeeded`
//! and chats with the fine-tuned model; the adapter equals one trained locally with the same
//! settings and seed; bad requests and files are refused the way OpenAI refuses them; jobs
//! cancel; a restarted server serves its fine-tuned models again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use selfaware_backend::finetune::{FinetuneClient, Hyperparameters, JobRegistry, JobSpec};
use selfaware_backend::{Backend, CompletionRequest, HttpBackend, HttpConfig, LocalBackend};
use selfaware_model::testing::{write_tiny_gguf, TinySpec};
use selfaware_model::{Engine, ModelSource};
use selfaware_server::{spawn, Registry, ServerConfig, ServerHandle};
use selfaware_train::manifest::{write_outputs, BaseModel};
use selfaware_train::{data, TrainConfig, Trainer};
use selfaware_types::Conversation;
use serde_json::{json, Value};

const BASE: &str = "tiny";
const BASE_LR: f64 = 1e-3;

fn tiny(dir: &Path) -> Arc<Engine> {
    let path = dir.join("tiny.gguf");
    write_tiny_gguf(
        &path,
        &TinySpec {
            seed: 7,
            ..TinySpec::default()
        },
    )
    .unwrap();
    Arc::new(Engine::load(&ModelSource::Gguf(path)).unwrap())
}

fn start(dir: &Path, engine: Arc<Engine>) -> ServerHandle {
    let mut reg = Registry::new();
    reg.add_local(BASE, engine).unwrap();
    let config = ServerConfig {
        port: 0,
        max_tokens: 64,
        data_dir: Some(dir.join("state")),
        finetune_base_lr: BASE_LR,
        ..ServerConfig::default()
    };
    spawn(config, reg).unwrap()
}

fn question(i: usize) -> String {
    format!(
        "Question {i}: option A gives {} points, option B gives {} points. Answer A or B.",
        10 + i * 7 % 50,
        30 + i * 13 % 70
    )
}

/// `n` A/B questions whose answer is always "B".
fn ab_file(dir: &Path, n: usize) -> PathBuf {
    let mut text = String::new();
    for i in 0..n {
        let line = json!({"messages": [
            {"role": "user", "content": question(i)},
            {"role": "assistant", "content": "B"},
        ]});
        text.push_str(&line.to_string());
        text.push('\n');
    }
    let p = dir.join("ab.jsonl");
    std::fs::write(&p, text).unwrap();
    p
}

fn client(base_url: &str) -> FinetuneClient {
    let mut cfg = HttpConfig::new(base_url, BASE);
    cfg.max_retries = 0;
    FinetuneClient::new(cfg, None).unwrap()
}

fn chat(base_url: &str, model: &str) -> HttpBackend {
    let mut cfg = HttpConfig::new(base_url, model);
    cfg.max_retries = 0;
    cfg.timeout_s = 60.0;
    HttpBackend::new(cfg, None).unwrap()
}

fn greedy(prompt: &str) -> CompletionRequest {
    let mut r = CompletionRequest::new(Conversation::user(None, prompt));
    r.temperature = 0.0;
    r.max_tokens = 4;
    r.logprobs = true;
    r.top_logprobs = 3;
    r
}

fn spec(seed: u64) -> JobSpec {
    JobSpec {
        base_model: BASE.into(),
        hyperparameters: Hyperparameters {
            n_epochs: 3,
            batch_size: 4,
            learning_rate_multiplier: 10.0,
        },
        seed,
        suffix: Some("ab".into()),
    }
}

async fn send(method: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    let c = reqwest::Client::new();
    let mut r = c.request(method, url);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

fn blocking(method: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(send(method, url, body))
}

#[test]
fn a_job_runs_to_a_served_model_equal_to_local_training() {
    let dir = tempfile::tempdir().unwrap();
    let engine = tiny(dir.path());
    let server = start(dir.path(), engine.clone());
    let url = server.base_url();
    let data_path = ab_file(dir.path(), 12);

    let ft = client(&url);
    let mut registry = JobRegistry::open(&dir.path().join("jobs.json")).unwrap();
    let entry = ft.ensure_job(&mut registry, &data_path, &spec(11)).unwrap();
    let job_id = entry.job_id.clone().unwrap();
    assert!(job_id.starts_with("ftjob-"), "{job_id}");
    let mut seen = Vec::new();
    let job = ft
        .wait(
            &job_id,
            Duration::from_millis(50),
            Duration::from_secs(300),
            &mut |e| seen.push(e.clone()),
        )
        .unwrap();
    assert_eq!(job.status, "succeeded", "{job:?}\n{seen:#?}");
    assert_eq!(job.object.as_deref(), Some("fine_tuning.job"));
    let model = job.fine_tuned_model.clone().unwrap();
    assert_eq!(model, format!("ft:{BASE}:selfaware:ab:{}", &job_id[6..14]));
    assert_eq!(job.seed, Some(11));
    assert_eq!(
        job.hyperparameters,
        Some(json!({"n_epochs": 3, "batch_size": 4, "learning_rate_multiplier": 10.0}))
    );
    // 12 examples in batches of 4, 3 epochs: 9 optimizer steps, each a metrics event.
    let metrics: Vec<_> = seen
        .iter()
        .filter(|e| e.kind.as_deref() == Some("metrics"))
        .collect();
    assert_eq!(metrics.len(), 9, "{seen:#?}");
    for (i, m) in metrics.iter().enumerate() {
        let d = m.data.as_ref().unwrap();
        assert_eq!(d["step"], json!(i + 1));
        assert_eq!(d["total_steps"], json!(9));
        assert!(d["train_loss"].as_f64().unwrap().is_finite());
        assert_eq!(m.object.as_deref(), Some("fine_tuning.job.event"));
    }
    let first_loss = metrics[0].data.as_ref().unwrap()["train_loss"]
        .as_f64()
        .unwrap();
    let last_loss = metrics[8].data.as_ref().unwrap()["train_loss"]
        .as_f64()
        .unwrap();
    assert!(last_loss < first_loss, "{first_loss} -> {last_loss}");
    assert!(seen
        .iter()
        .any(|e| e.message == format!("New fine-tuned model created: {model}")));
    assert!(job.trained_tokens.unwrap() > 0);

    // The registry resumes the job instead of creating another.
    let again = ft.ensure_job(&mut registry, &data_path, &spec(11)).unwrap();
    assert_eq!(again.job_id.as_deref(), Some(job_id.as_str()));
    assert_eq!(again.fine_tuned_model.as_deref(), Some(model.as_str()));
    assert_eq!(ft.list_jobs().unwrap().len(), 1);

    // The same settings and seed trained here give a bit-identical adapter.
    let ds = data::load(&data_path, &engine.chat, engine.model.cfg.max_position).unwrap();
    let cfg = TrainConfig {
        seed: 11,
        epochs: 3,
        batch_size: 4,
        lr: BASE_LR * 10.0,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(&engine.model, engine.chat.tokenizer.pad_id, &ds, cfg).unwrap();
    trainer.run(None, &mut |_| {}).unwrap();
    let mine = dir.path().join("local-adapter");
    let base = BaseModel {
        reference: BASE.into(),
        sha256: engine.info.sha256.clone(),
    };
    write_outputs(&trainer, &ds, base, None, &mine).unwrap();
    let served_dir = dir
        .path()
        .join("state/fine_tuning")
        .join(&job_id)
        .join("adapter");
    let weights = selfaware_model::lora::ADAPTER_WEIGHTS;
    assert_eq!(
        std::fs::read(mine.join(weights)).unwrap(),
        std::fs::read(served_dir.join(weights)).unwrap(),
        "the served adapter differs from local training with the same seed"
    );

    // The model is listed and answers as the base model with the adapter attached locally.
    let (status, models) = blocking(reqwest::Method::GET, format!("{url}/models"), None);
    assert_eq!(status, 200);
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![BASE, model.as_str()]);
    let mut with_adapter = Engine::load(&ModelSource::Gguf(dir.path().join("tiny.gguf"))).unwrap();
    with_adapter.attach_adapter_dir(&mine).unwrap();
    let local = LocalBackend::new(Arc::new(with_adapter), model.clone());
    let remote = chat(&url, &model);
    let base_remote = chat(&url, BASE);
    let mut b_wins = 0;
    for i in [0, 5, 100] {
        let req = greedy(&question(i));
        let a = local.complete(&req).unwrap();
        let b = remote.complete(&req).unwrap();
        assert_eq!(a.choices[0].text, b.choices[0].text);
        let (la, lb) = (
            a.choices[0].logprobs.as_ref().unwrap(),
            b.choices[0].logprobs.as_ref().unwrap(),
        );
        assert!((la[0].logprob - lb[0].logprob).abs() < 1e-5);
        let base_answer = base_remote.complete(&req).unwrap();
        assert_ne!(
            base_answer.choices[0].logprobs.as_ref().unwrap()[0].logprob,
            lb[0].logprob,
            "the fine-tuned model answers exactly as its base"
        );
        if b.choices[0].text.starts_with('B') {
            b_wins += 1;
        }
    }
    assert!(b_wins >= 2, "the fine-tuned model rarely answers B");
    server.shutdown().unwrap();

    // A restarted server on the same data directory serves the model again.
    let server = start(dir.path(), engine.clone());
    let url2 = server.base_url();
    let job2 = client(&url2).job(&job_id).unwrap();
    assert_eq!(job2.status, "succeeded");
    let req = greedy(&question(5));
    assert_eq!(
        chat(&url2, &model).complete(&req).unwrap().choices[0].text,
        local.complete(&req).unwrap().choices[0].text
    );
}

#[test]
fn bad_jobs_are_refused_and_bad_files_fail_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), tiny(dir.path()));
    let url = server.base_url();
    let ft = client(&url);
    let good = ab_file(dir.path(), 4);
    let (file, _) = ft.upload(&good).unwrap();
    let post = |body: Value| {
        blocking(
            reqwest::Method::POST,
            format!("{url}/fine_tuning/jobs"),
            Some(body),
        )
    };
    let check = |(status, body): (u16, Value), want: u16, param: Option<&str>, needle: &str| {
        assert_eq!(status, want, "{body}");
        let e = &body["error"];
        assert_eq!(e["param"].as_str(), param, "{body}");
        assert!(
            e["message"].as_str().unwrap().contains(needle),
            "{body} should mention {needle:?}"
        );
    };
    check(
        post(json!({"model": "nope", "training_file": file.id})),
        404,
        None,
        "nope",
    );
    check(
        post(json!({"model": BASE, "training_file": "file-0123"})),
        400,
        Some("training_file"),
        "file-0123",
    );
    check(
        post(json!({"model": BASE, "training_file": file.id, "hyperparameters": {"n_epochs": 0}})),
        400,
        Some("n_epochs"),
        "1..=50",
    );
    check(
        post(json!({"model": BASE, "training_file": file.id,
            "method": {"type": "supervised", "supervised": {"hyperparameters": {"learning_rate_multiplier": -1}}}})),
        400,
        Some("learning_rate_multiplier"),
        "> 0",
    );
    check(
        post(json!({"model": BASE, "training_file": file.id, "method": {"type": "dpo"}})),
        400,
        Some("method.type"),
        "supervised",
    );
    check(
        post(json!({"model": BASE, "training_file": file.id, "seed": -1})),
        400,
        Some("seed"),
        "seed",
    );
    check(
        post(json!({"model": BASE, "training_file": file.id, "suffix": "a:b"})),
        400,
        Some("suffix"),
        "suffix",
    );
    check(post(json!({"training_file": file.id})), 400, None, "model");
    check(
        blocking(
            reqwest::Method::GET,
            format!("{url}/fine_tuning/jobs/ftjob-nope"),
            None,
        ),
        404,
        None,
        "ftjob-nope",
    );

    // Line 2 passes the upload check but not the trainer's: a weight on a user message.
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        concat!(
            r#"{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"B"}]}"#,
            "\n",
            r#"{"messages":[{"role":"user","content":"a","weight":1},{"role":"assistant","content":"B"}]}"#,
            "\n"
        ),
    )
    .unwrap();
    let (bad_file, _) = ft.upload(&bad).unwrap();
    let (status, job) = post(json!({"model": BASE, "training_file": bad_file.id}));
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "invalid_training_file");
    assert_eq!(job["error"]["param"], "training_file");
    let m = job["error"]["message"].as_str().unwrap();
    assert!(
        m.contains(&bad_file.id) && m.contains("bad.jsonl") && m.contains("line 2"),
        "{m}"
    );
    let id = job["id"].as_str().unwrap().to_string();
    let events = ft.events(&id).unwrap();
    assert!(events.iter().any(|e| e.level == "error" && e.message == m));

    // A long job is cancelled; another waiting behind it is cancelled before it starts.
    let long = json!({"model": BASE, "training_file": file.id, "hyperparameters": {"n_epochs": 50, "batch_size": 1}});
    let (_, first) = post(long.clone());
    let (_, second) = post(long);
    assert_eq!(second["status"], "queued", "{second}");
    for j in [&second, &first] {
        let (status, c) = blocking(
            reqwest::Method::POST,
            format!(
                "{url}/fine_tuning/jobs/{}/cancel",
                j["id"].as_str().unwrap()
            ),
            None,
        );
        assert_eq!(status, 200, "{c}");
        assert_eq!(c["status"], "cancelled");
    }
    let (status, again) = blocking(
        reqwest::Method::POST,
        format!(
            "{url}/fine_tuning/jobs/{}/cancel",
            first["id"].as_str().unwrap()
        ),
        None,
    );
    assert_eq!(status, 400, "{again}");
    std::thread::sleep(Duration::from_millis(300));
    let listed = ft.list_jobs().unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[0].id, second["id"].as_str().unwrap(), "newest first");
    for j in &listed[..2] {
        assert_eq!(j.status, "cancelled");
        assert_eq!(j.fine_tuned_model, None);
    }
    // Paging: one at a time, `after` the previous.
    let (_, page1) = blocking(
        reqwest::Method::GET,
        format!("{url}/fine_tuning/jobs?limit=1"),
        None,
    );
    assert_eq!(page1["has_more"], true);
    let (_, page2) = blocking(
        reqwest::Method::GET,
        format!(
            "{url}/fine_tuning/jobs?limit=1&after={}",
            page1["data"][0]["id"].as_str().unwrap()
        ),
        None,
    );
    assert_eq!(page2["data"][0]["id"], first["id"]);
}
