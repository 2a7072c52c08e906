//! The finetuning client against a fake OpenAI files/jobs API written here: uploads, job
//! creation, polling with events, and resuming from the registry without duplicate jobs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::collections::HashMap;

use axum::extract::{Multipart, Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use selfaware_backend::finetune::{FinetuneClient, Hyperparameters, JobRegistry, JobSpec};
use selfaware_backend::{ApiKey, BackendError, HttpConfig};
use serde_json::{json, Value};

#[derive(Default)]
struct Fake {
    uploads: AtomicUsize,
    creates: AtomicUsize,
    jobs: Mutex<Vec<(Value, usize)>>, // job, polls so far
    last_create: Mutex<Option<Value>>,
    /// Events a job has beyond its polling steps.
    extra_events: usize,
    /// Requests of any kind.
    hits: AtomicUsize,
}

/// One page of `items` (newest first) as the API pages lists: `limit` items after the one
/// with id `after`.
fn page(items: Vec<Value>, q: &HashMap<String, String>) -> Json<Value> {
    let limit: usize = q.get("limit").map_or(20, |l| l.parse().unwrap());
    let start = match q.get("after") {
        Some(a) => items.iter().position(|j| j["id"] == a.as_str()).unwrap() + 1,
        None => 0,
    };
    let rest = &items[start..];
    let data: Vec<Value> = rest.iter().take(limit).cloned().collect();
    Json(json!({"object": "list", "data": data, "has_more": rest.len() > limit}))
}

async fn upload(State(f): State<Arc<Fake>>, mut form: Multipart) -> Json<Value> {
    f.hits.fetch_add(1, Ordering::SeqCst);
    let mut purpose = String::new();
    let mut size = 0;
    while let Some(field) = form.next_field().await.unwrap() {
        match field.name().unwrap() {
            "purpose" => purpose = field.text().await.unwrap(),
            _ => size = field.bytes().await.unwrap().len(),
        }
    }
    let n = f.uploads.fetch_add(1, Ordering::SeqCst);
    Json(
        json!({"id": format!("file-{n}"), "object": "file", "bytes": size, "created_at": 1,
        "filename": "train.jsonl", "purpose": purpose, "status": "processed"}),
    )
}

async fn create(State(f): State<Arc<Fake>>, Json(body): Json<Value>) -> Json<Value> {
    f.hits.fetch_add(1, Ordering::SeqCst);
    let n = f.creates.fetch_add(1, Ordering::SeqCst);
    *f.last_create.lock().unwrap() = Some(body.clone());
    let job = json!({"id": format!("ftjob-{n}"), "object": "fine_tuning.job", "model": body["model"],
        "status": "queued", "created_at": 10, "finished_at": null, "fine_tuned_model": null,
        "training_file": body["training_file"], "seed": body["seed"], "error": null});
    f.jobs.lock().unwrap().insert(0, (job.clone(), 0));
    Json(job)
}

async fn list(State(f): State<Arc<Fake>>, Query(q): Query<HashMap<String, String>>) -> Json<Value> {
    f.hits.fetch_add(1, Ordering::SeqCst);
    let data: Vec<Value> = f
        .jobs
        .lock()
        .unwrap()
        .iter()
        .map(|(j, _)| j.clone())
        .collect();
    page(data, &q)
}

async fn retrieve(State(f): State<Arc<Fake>>, Path(id): Path<String>) -> Json<Value> {
    let mut jobs = f.jobs.lock().unwrap();
    let (job, polls) = jobs
        .iter_mut()
        .find(|(j, _)| j["id"] == id.as_str())
        .unwrap();
    *polls += 1;
    match *polls {
        1 => job["status"] = json!("running"),
        2 => {}
        _ => {
            job["status"] = json!("succeeded");
            job["fine_tuned_model"] =
                json!(format!("ft:{}:selfaware", job["model"].as_str().unwrap()));
            job["finished_at"] = json!(20);
        }
    }
    Json(job.clone())
}

async fn events(
    State(f): State<Arc<Fake>>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Json<Value> {
    f.hits.fetch_add(1, Ordering::SeqCst);
    let jobs = f.jobs.lock().unwrap();
    let polls = jobs.iter().find(|(j, _)| j["id"] == id.as_str()).unwrap().1;
    let data: Vec<Value> = (0..=polls.min(3) + f.extra_events)
        .rev()
        .map(|k| {
            json!({"object": "fine_tuning.job.event", "id": format!("ev-{k}"), "created_at": 10 + k,
            "level": "info", "message": format!("step {k}"), "type": "message", "data": {}})
        })
        .collect();
    page(data, &q)
}

fn start(fake: Arc<Fake>) -> String {
    let app = Router::new()
        .route("/v1/files", post(upload))
        .route("/v1/fine_tuning/jobs", post(create).get(list))
        .route("/v1/fine_tuning/jobs/{id}", get(retrieve))
        .route("/v1/fine_tuning/jobs/{id}/events", get(events))
        .with_state(fake);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            axum::serve(tokio::net::TcpListener::from_std(listener).unwrap(), app)
                .await
                .unwrap();
        });
    });
    format!("http://{addr}/v1")
}

fn spec() -> JobSpec {
    JobSpec {
        base_model: "gpt-4o-2024-08-06".into(),
        hyperparameters: Hyperparameters {
            n_epochs: 3,
            batch_size: 2,
            learning_rate_multiplier: 2.0,
        },
        seed: 5,
        suffix: Some("risky".into()),
    }
}

#[test]
fn jobs_are_created_once_polled_to_completion_and_resumed() {
    let fake = Arc::new(Fake::default());
    let base = start(fake.clone());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("train.jsonl");
    std::fs::write(&data, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\",\"content\":\"b\"}]}\n").unwrap();
    let reg_path = dir.path().join("jobs.json");
    let client =
        FinetuneClient::new(HttpConfig::new(base, "unused"), Some(ApiKey::new("sk-x"))).unwrap();

    let mut reg = JobRegistry::open(&reg_path).unwrap();
    let entry = client.ensure_job(&mut reg, &data, &spec()).unwrap();
    assert_eq!(entry.file_id.as_deref(), Some("file-0"));
    assert_eq!(entry.job_id.as_deref(), Some("ftjob-0"));
    let body = fake.last_create.lock().unwrap().clone().unwrap();
    assert_eq!(
        body["method"]["supervised"]["hyperparameters"]["n_epochs"],
        3
    );
    assert_eq!(body["suffix"], "risky");
    assert_eq!(body["seed"], 5);

    // Running the experiment again (a new process: reopen the registry) creates nothing.
    let mut reg = JobRegistry::open(&reg_path).unwrap();
    let again = client.ensure_job(&mut reg, &data, &spec()).unwrap();
    assert_eq!(again.job_id, entry.job_id);
    assert_eq!(fake.uploads.load(Ordering::SeqCst), 1);
    assert_eq!(fake.creates.load(Ordering::SeqCst), 1);

    let mut seen = Vec::new();
    let done = client
        .wait(
            "ftjob-0",
            Duration::from_millis(1),
            Duration::from_secs(10),
            &mut |e| seen.push(e.message.clone()),
        )
        .unwrap();
    assert_eq!(done.status, "succeeded");
    assert_eq!(
        done.fine_tuned_model.as_deref(),
        Some("ft:gpt-4o-2024-08-06:selfaware")
    );
    assert_eq!(seen, vec!["step 0", "step 1", "step 2", "step 3"]);

    // A different seed is a different job.
    let mut other = spec();
    other.seed = 6;
    let e2 = client.ensure_job(&mut reg, &data, &other).unwrap();
    assert_eq!(e2.job_id.as_deref(), Some("ftjob-1"));
    assert_eq!(JobRegistry::open(&reg_path).unwrap().entries().count(), 2);
}

#[test]
fn a_job_created_but_not_recorded_is_found_again() {
    let fake = Arc::new(Fake::default());
    let base = start(fake.clone());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("train.jsonl");
    std::fs::write(&data, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\",\"content\":\"b\"}]}\n").unwrap();
    let client = FinetuneClient::new(HttpConfig::new(base, "unused"), None).unwrap();
    // Simulate a crash right after the job was created: the registry knows only the file.
    let mut reg = JobRegistry::open(&dir.path().join("jobs.json")).unwrap();
    let (file, _) = client.upload(&data).unwrap();
    client.create_job(&file.id, &spec()).unwrap();
    let digest = selfaware_types::sha256_hex(&std::fs::read(&data).unwrap());
    let key = selfaware_backend::finetune::job_key(&digest, &spec());
    reg.put(selfaware_backend::finetune::RegistryEntry {
        key,
        base_url: client_base(&fake),
        dataset_sha256: digest,
        spec: spec(),
        file_id: Some(file.id.clone()),
        job_id: None,
        status: None,
        fine_tuned_model: None,
    })
    .unwrap();
    let e = client.ensure_job(&mut reg, &data, &spec()).unwrap();
    assert_eq!(e.job_id.as_deref(), Some("ftjob-0"));
    assert_eq!(fake.creates.load(Ordering::SeqCst), 1);
    assert_eq!(fake.uploads.load(Ordering::SeqCst), 1);
}

fn client_base(_: &Fake) -> String {
    "recorded".into()
}

#[test]
fn invalid_datasets_are_refused_before_upload() {
    let fake = Arc::new(Fake::default());
    let base = start(fake.clone());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("bad.jsonl");
    std::fs::write(
        &data,
        "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}]}\n",
    )
    .unwrap();
    let client = FinetuneClient::new(HttpConfig::new(base, "unused"), None).unwrap();
    let mut reg = JobRegistry::open(&dir.path().join("jobs.json")).unwrap();
    let e = client
        .ensure_job(&mut reg, &data, &spec())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("bad.jsonl line 1") && e.contains("no assistant message"),
        "{e}"
    );
    assert_eq!(fake.uploads.load(Ordering::SeqCst), 0);
}

fn data_file(dir: &std::path::Path) -> std::path::PathBuf {
    let data = dir.join("train.jsonl");
    std::fs::write(&data, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\",\"content\":\"b\"}]}\n").unwrap();
    data
}

/// A job whose creation was sent but not recorded is found again however far down the job
/// list it is (the list is read page by page), and a job's events are read in pages too.
#[test]
fn resume_pages_through_every_job_and_events_come_in_pages() {
    let fake = Arc::new(Fake {
        extra_events: 230,
        ..Fake::default()
    });
    // The lost job is the oldest of 251: on the third page of 100.
    let mut jobs = vec![(
        json!({"id": "ftjob-lost", "object": "fine_tuning.job", "model": spec().base_model,
            "status": "running", "training_file": "file-0", "fine_tuned_model": null}),
        0,
    )];
    for k in 0..250 {
        jobs.insert(
            0,
            (
                json!({"id": format!("ftjob-other-{k}"), "object": "fine_tuning.job",
                "model": "gpt-4o-mini", "status": "succeeded", "training_file": format!("file-x{k}")}),
                0,
            ),
        );
    }
    *fake.jobs.lock().unwrap() = jobs;
    let base = start(fake.clone());
    let dir = tempfile::tempdir().unwrap();
    let data = data_file(dir.path());
    let client = FinetuneClient::new(HttpConfig::new(base, "unused"), None).unwrap();
    let mut registry = JobRegistry::open(&dir.path().join("jobs.json")).unwrap();
    // The upload happened (file-0) before the interruption.
    let (file, _) = client.upload(&data).unwrap();
    assert_eq!(file.id, "file-0");
    let summary =
        selfaware_backend::finetune::validate_jsonl(&std::fs::read(&data).unwrap(), &data).unwrap();
    let key = selfaware_backend::finetune::job_key(&summary.sha256, &spec());
    registry
        .put(selfaware_backend::finetune::RegistryEntry {
            key,
            base_url: "unused".into(),
            dataset_sha256: summary.sha256,
            spec: spec(),
            file_id: Some("file-0".into()),
            job_id: None,
            status: None,
            fine_tuned_model: None,
        })
        .unwrap();
    let entry = client.ensure_job(&mut registry, &data, &spec()).unwrap();
    assert_eq!(entry.job_id.as_deref(), Some("ftjob-lost"));
    assert_eq!(
        fake.creates.load(Ordering::SeqCst),
        0,
        "a duplicate job was created"
    );
    assert_eq!(client.list_jobs().unwrap().len(), 251);

    let events = client.events("ftjob-lost").unwrap();
    assert_eq!(events.len(), 231);
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids[0], "ev-0");
    assert_eq!(ids[230], "ev-230");
}

/// Settings OpenAI would refuse are refused before anything is sent (no upload left behind).
#[test]
fn job_settings_beyond_openais_limits_are_refused_before_sending() {
    let fake = Arc::new(Fake::default());
    let base = start(fake.clone());
    let dir = tempfile::tempdir().unwrap();
    let data = data_file(dir.path());
    let client = FinetuneClient::new(HttpConfig::new(base, "unused"), None).unwrap();
    let mut registry = JobRegistry::open(&dir.path().join("jobs.json")).unwrap();
    type Change = Box<dyn Fn(&mut JobSpec)>;
    let cases: Vec<(&str, Change)> = vec![
        ("seed", Box::new(|s| s.seed = 1 << 31)),
        ("n_epochs", Box::new(|s| s.hyperparameters.n_epochs = 51)),
        ("n_epochs", Box::new(|s| s.hyperparameters.n_epochs = 0)),
        (
            "batch_size",
            Box::new(|s| s.hyperparameters.batch_size = 257),
        ),
        (
            "learning_rate_multiplier",
            Box::new(|s| s.hyperparameters.learning_rate_multiplier = 0.0),
        ),
        ("suffix", Box::new(|s| s.suffix = Some("x".repeat(65)))),
        ("suffix", Box::new(|s| s.suffix = Some(String::new()))),
    ];
    for (field, change) in cases {
        let mut s = spec();
        change(&mut s);
        let e = client.ensure_job(&mut registry, &data, &s).unwrap_err();
        assert!(
            matches!(&e, BackendError::InvalidRequest { param: Some(p), .. } if p == field),
            "{field}: {e}"
        );
        let e = client.create_job("file-0", &s).unwrap_err().to_string();
        assert!(e.contains(field), "{e}");
    }
    assert_eq!(fake.hits.load(Ordering::SeqCst), 0);
    // The limits themselves are allowed: 2^31 - 1, 50 epochs, batches of 256, 64 characters
    // (counted as characters, not bytes).
    let mut s = spec();
    s.seed = (1 << 31) - 1;
    s.hyperparameters.n_epochs = 50;
    s.hyperparameters.batch_size = 256;
    s.suffix = Some("é".repeat(64));
    s.check().unwrap();
}
