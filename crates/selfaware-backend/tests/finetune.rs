//! The finetuning client against a fake OpenAI files/jobs API written here: uploads, job
//! creation, polling with events, and resuming from the registry without duplicate jobs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Multipart, Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use selfaware_backend::finetune::{FinetuneClient, Hyperparameters, JobRegistry, JobSpec};
use selfaware_backend::{ApiKey, HttpConfig};
use serde_json::{json, Value};

#[derive(Default)]
struct Fake {
    uploads: AtomicUsize,
    creates: AtomicUsize,
    jobs: Mutex<Vec<(Value, usize)>>, // job, polls so far
    last_create: Mutex<Option<Value>>,
}

async fn upload(State(f): State<Arc<Fake>>, mut form: Multipart) -> Json<Value> {
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
    let n = f.creates.fetch_add(1, Ordering::SeqCst);
    *f.last_create.lock().unwrap() = Some(body.clone());
    let job = json!({"id": format!("ftjob-{n}"), "object": "fine_tuning.job", "model": body["model"],
        "status": "queued", "created_at": 10, "finished_at": null, "fine_tuned_model": null,
        "training_file": body["training_file"], "seed": body["seed"], "error": null});
    f.jobs.lock().unwrap().insert(0, (job.clone(), 0));
    Json(job)
}

async fn list(State(f): State<Arc<Fake>>) -> Json<Value> {
    let data: Vec<Value> = f
        .jobs
        .lock()
        .unwrap()
        .iter()
        .map(|(j, _)| j.clone())
        .collect();
    Json(json!({"object": "list", "data": data, "has_more": false}))
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

async fn events(State(f): State<Arc<Fake>>, Path(id): Path<String>) -> Json<Value> {
    let jobs = f.jobs.lock().unwrap();
    let polls = jobs.iter().find(|(j, _)| j["id"] == id.as_str()).unwrap().1;
    let data: Vec<Value> = (0..=polls.min(3))
        .rev()
        .map(|k| {
            json!({"object": "fine_tuning.job.event", "id": format!("ev-{k}"), "created_at": 10 + k,
            "level": "info", "message": format!("step {k}"), "type": "message", "data": {}})
        })
        .collect();
    Json(json!({"object": "list", "data": data, "has_more": false}))
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
