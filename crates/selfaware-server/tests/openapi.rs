//! The wire against OpenAI's published API description (`openapi.yaml`, read from beside the
//! repository, never copied into it): a recording proxy on 127.0.0.1 stands between selfaware's
//! clients (`HttpBackend`, `FinetuneClient`, plain `reqwest`) and selfaware's server, and checks
//! every JSON request the clients send and every successful response the server returns (each
//! SSE chunk of a stream too) against the operation's schema in the description.
//!
//! The description is OpenAPI 3.1, whose schemas are JSON Schema 2020-12 with `$ref`s into
//! `#/components/schemas`; a few older OpenAPI 3.0 spellings it still uses (`nullable: true`,
//! boolean `exclusiveMinimum`) are rewritten into 2020-12 before the schemas are compiled.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use selfaware_backend::finetune::{FinetuneClient, Hyperparameters, JobRegistry, JobSpec};
use selfaware_backend::{Backend, CompletionRequest, HttpBackend, HttpConfig};
use selfaware_types::Conversation;
use serde_json::{json, Value};

/// OpenAI's API description, with the operations' schemas compiled on first use.
struct Description {
    paths: serde_json::Map<String, Value>,
    components: Value,
    compiled: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

/// `nullable: true` and boolean `exclusiveMinimum`/`exclusiveMaximum` (OpenAPI 3.0) as JSON
/// Schema 2020-12 says them.
fn to_2020_12(v: &mut Value) {
    match v {
        Value::Array(items) => items.iter_mut().for_each(to_2020_12),
        Value::Object(m) => {
            m.values_mut().for_each(to_2020_12);
            for (flag, bound) in [
                ("exclusiveMinimum", "minimum"),
                ("exclusiveMaximum", "maximum"),
            ] {
                if let Some(Value::Bool(on)) = m.get(flag).cloned() {
                    m.remove(flag);
                    if on {
                        if let Some(b) = m.remove(bound) {
                            m.insert(flag.into(), b);
                        }
                    }
                }
            }
            if m.remove("nullable") == Some(Value::Bool(true)) {
                match m.get("type").cloned() {
                    Some(Value::String(t)) => {
                        m.insert("type".into(), json!([t, "null"]));
                        if let Some(Value::Array(e)) = m.get_mut("enum") {
                            e.push(Value::Null);
                        }
                    }
                    _ => {
                        let inner = Value::Object(std::mem::take(m));
                        m.insert("anyOf".into(), json!([inner, {"type": "null"}]));
                    }
                }
            }
        }
        _ => {}
    }
}

/// The YAML document as JSON. Written out because serde_json's own `Value` refuses integers
/// beyond 64 bits, and the description has some (`seed`'s bounds, ±9223372036854776000, a
/// float printed as an integer): those become floats, as a JSON parser would read them.
struct Json(Value);

impl<'de> serde::Deserialize<'de> for Json {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor).map(Json)
    }
}

struct JsonVisitor;

impl<'de> serde::de::Visitor<'de> for JsonVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a YAML value that JSON can hold")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_i128<E>(self, v: i128) -> Result<Value, E> {
        Ok(json!(v as f64))
    }
    fn visit_u128<E>(self, v: u128) -> Result<Value, E> {
        Ok(json!(v as f64))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(json!(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.into()))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Json(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some((k, Json(v))) = map.next_entry::<String, Json>()? {
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

impl Description {
    fn load(path: &Path) -> Description {
        let text = std::fs::read_to_string(path).unwrap();
        let Json(doc) = serde_yaml_ng::from_str(&text).unwrap();
        let mut components = doc["components"].clone();
        to_2020_12(&mut components);
        let paths = doc["paths"].as_object().unwrap().clone();
        Description {
            paths,
            components,
            compiled: Mutex::new(HashMap::new()),
        }
    }

    /// The operation serving `method path` (`/v1/...`, query removed) and its path template.
    fn operation(&self, method: &Method, path: &str) -> Option<(String, &Value)> {
        let path = path.strip_prefix("/v1").unwrap_or(path);
        let segs: Vec<&str> = path.split('/').collect();
        self.paths.iter().find_map(|(template, item)| {
            let t: Vec<&str> = template.split('/').collect();
            let fits = t.len() == segs.len()
                && t.iter()
                    .zip(&segs)
                    .all(|(a, b)| a == b || (a.starts_with('{') && a.ends_with('}')));
            let op = item.get(method.as_str().to_ascii_lowercase())?;
            fits.then(|| (format!("{} {template}", method.as_str()), op))
        })
    }

    /// Errors of `instance` against `schema` (an operation's schema object).
    fn check(&self, schema: &Value, instance: &Value) -> Vec<String> {
        let key = schema.to_string();
        let validator = {
            let mut c = self.compiled.lock().unwrap();
            c.entry(key)
                .or_insert_with(|| {
                    let mut s = schema.clone();
                    to_2020_12(&mut s);
                    let mut root = serde_json::Map::new();
                    root.insert(
                        "$schema".into(),
                        json!("https://json-schema.org/draft/2020-12/schema"),
                    );
                    root.insert("allOf".into(), json!([s]));
                    root.insert("components".into(), self.components.clone());
                    Arc::new(
                        jsonschema::draft202012::new(&Value::Object(root))
                            .unwrap_or_else(|e| panic!("schema {schema} does not compile: {e}")),
                    )
                })
                .clone()
        };
        validator
            .iter_errors(instance)
            .map(|e| format!("{} at `{}`", e, e.instance_path()))
            .collect()
    }
}

/// What the proxy saw: schema violations, and which (operation, part) it validated.
#[derive(Default)]
struct Record {
    violations: Vec<String>,
    checked: BTreeSet<String>,
}

struct Proxy {
    upstream: String,
    spec: Description,
    record: Mutex<Record>,
    client: reqwest::Client,
}

impl Proxy {
    fn validate(&self, what: String, schema: Option<&Value>, instance: &Value) {
        let mut r = self.record.lock().unwrap();
        let Some(schema) = schema else {
            r.violations
                .push(format!("{what}: the description has no schema for it"));
            return;
        };
        for e in self.spec.check(schema, instance) {
            r.violations.push(format!("{what}: {e}\n  in {instance}"));
        }
        r.checked.insert(what);
    }

    async fn handle(
        self: Arc<Self>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let path = uri.path().to_string();
        let Some((name, op)) = self.spec.operation(&method, &path) else {
            self.record
                .lock()
                .unwrap()
                .violations
                .push(format!("{method} {path}: not an operation of the API"));
            return StatusCode::NOT_FOUND.into_response();
        };
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if content_type.starts_with("application/json") {
            let instance: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let schema = op.pointer("/requestBody/content/application~1json/schema");
            self.validate(format!("{name} request"), schema, &instance);
        }
        let url = format!(
            "{}{}",
            self.upstream,
            uri.path_and_query().map(|p| p.as_str()).unwrap_or("")
        );
        let mut rb = self.client.request(method.clone(), url).body(body.to_vec());
        if !content_type.is_empty() {
            rb = rb.header("content-type", content_type);
        }
        let resp = rb.send().await.unwrap();
        let status = resp.status();
        let rct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let bytes = resp.bytes().await.unwrap();
        if status == StatusCode::OK {
            let responses = &op["responses"]["200"]["content"];
            if rct.starts_with("text/event-stream") {
                let schema = responses.pointer("/text~1event-stream/schema");
                let text = String::from_utf8_lossy(&bytes);
                for data in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
                    if data != "[DONE]" {
                        let chunk: Value = serde_json::from_str(data).unwrap();
                        self.validate(format!("{name} stream chunk"), schema, &chunk);
                    }
                }
            } else if rct.starts_with("application/json") {
                let instance: Value = serde_json::from_slice(&bytes).unwrap();
                let schema = responses.pointer("/application~1json/schema");
                self.validate(format!("{name} response"), schema, &instance);
            }
        }
        let mut out = (status, bytes).into_response();
        if let Ok(v) = rct.parse() {
            out.headers_mut().insert("content-type", v);
        }
        out
    }
}

/// Starts the proxy in front of `upstream` (`http://ADDR`); returns it and its base URL.
fn start_proxy(upstream: String, spec: Description) -> (Arc<Proxy>, String) {
    let proxy = Arc::new(Proxy {
        upstream,
        spec,
        record: Mutex::new(Record::default()),
        client: reqwest::Client::new(),
    });
    let p = proxy.clone();
    let app = Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            p.clone().handle(method, uri, headers, body)
        },
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });
    (proxy, format!("http://{addr}/v1"))
}

fn ab_file(dir: &Path) -> std::path::PathBuf {
    let mut text = String::new();
    for i in 0..4 {
        let line = json!({"messages": [
            {"role": "user", "content": format!("Question {i}: A or B?")},
            {"role": "assistant", "content": "B"},
        ]});
        text.push_str(&line.to_string());
        text.push('\n');
    }
    let p = dir.join("ab.jsonl");
    std::fs::write(&p, text).unwrap();
    p
}

/// The OpenAI-compatible calls selfaware makes and serves, each through the validating proxy.
#[test]
fn requests_and_responses_follow_openais_schema() {
    let Some(path) = selfaware_testing::openai_schema() else {
        return;
    };
    let served = common::serve();
    let upstream = format!("http://{}", served.server.addr());
    let (proxy, base) = start_proxy(upstream, Description::load(&path));

    // Chat completions through the client: samples with log-probabilities, a stop string, and
    // the probe of prompt log-probabilities (vLLM's extension, which selfaware's server has).
    let mut cfg = HttpConfig::new(&base, common::MODEL);
    cfg.max_retries = 0;
    let chat = HttpBackend::new(cfg, None).unwrap();
    let mut req = CompletionRequest::new(Conversation::user(Some("Be brief."), "Hi"));
    req.n = 2;
    req.max_tokens = 6;
    req.seed = 3;
    req.logprobs = true;
    req.top_logprobs = 2;
    req.stop = vec!["\n".into()];
    let out = chat.complete(&req).unwrap();
    assert_eq!(out.choices.len(), 2);
    assert!(chat.has_prompt_logprobs().unwrap());
    let scores = chat
        .score_options(
            &Conversation::user(None, "A or B?"),
            &["A".into(), "B".into()],
        )
        .unwrap();
    assert_eq!(scores.candidates.len(), 2);

    // Streams (token by token for n = 1, batched for n = 2) and the model list, with reqwest.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let http = reqwest::Client::new();
    for (n, logprobs) in [(1, true), (2, false)] {
        let body = json!({"model": common::MODEL, "messages": [{"role": "user", "content": "Hi"}],
            "stream": true, "stream_options": {"include_usage": true}, "n": n,
            "max_tokens": 5, "seed": 1, "logprobs": logprobs});
        let text = rt.block_on(async {
            let r = http
                .post(format!("{base}/chat/completions"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.text().await.unwrap()
        });
        assert!(text.contains("data: [DONE]"), "{text}");
    }
    let models: Value = rt.block_on(async {
        let r = http.get(format!("{base}/models")).send().await.unwrap();
        r.json().await.unwrap()
    });
    assert_eq!(models["data"][0]["id"], common::MODEL);

    // The file list while it is empty: its `first_id` and `last_id` are still strings.
    let files: Value = rt.block_on(async {
        let r = http.get(format!("{base}/files")).send().await.unwrap();
        r.json().await.unwrap()
    });
    assert_eq!(files["data"], json!([]));
    assert_eq!(
        (&files["first_id"], &files["last_id"]),
        (&json!(""), &json!(""))
    );

    // Files and a fine-tuning job through the finetuning client: upload, create (after
    // looking for the job among the listed ones), poll with events, then list the files.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = HttpConfig::new(&base, common::MODEL);
    cfg.max_retries = 0;
    let ft = FinetuneClient::new(cfg, None).unwrap();
    let spec = JobSpec {
        base_model: common::MODEL.into(),
        hyperparameters: Hyperparameters {
            n_epochs: 1,
            batch_size: 2,
            learning_rate_multiplier: 1.0,
        },
        seed: 5,
        suffix: Some("wire".into()),
    };
    let mut registry = JobRegistry::open(&dir.path().join("jobs.json")).unwrap();
    let entry = ft
        .ensure_job(&mut registry, &ab_file(dir.path()), &spec)
        .unwrap();
    let job_id = entry.job_id.unwrap();
    let done = ft
        .wait(
            &job_id,
            Duration::from_millis(50),
            Duration::from_secs(300),
            &mut |_| {},
        )
        .unwrap();
    assert_eq!(done.status, "succeeded", "{done:?}");
    assert!(!ft.list_jobs().unwrap().is_empty());
    let files: Value = rt.block_on(async {
        let r = http.get(format!("{base}/files")).send().await.unwrap();
        r.json().await.unwrap()
    });
    assert_eq!(files["first_id"], files["data"][0]["id"]);

    let record = proxy.record.lock().unwrap();
    let want = [
        "POST /chat/completions request",
        "POST /chat/completions response",
        "POST /chat/completions stream chunk",
        "GET /models response",
        "POST /files response",
        "GET /files response",
        "POST /fine_tuning/jobs request",
        "POST /fine_tuning/jobs response",
        "GET /fine_tuning/jobs response",
        "GET /fine_tuning/jobs/{fine_tuning_job_id} response",
        "GET /fine_tuning/jobs/{fine_tuning_job_id}/events response",
    ];
    let missing: Vec<_> = want
        .iter()
        .filter(|w| !record.checked.contains(**w))
        .collect();
    assert!(
        missing.is_empty(),
        "not validated: {missing:?}; validated: {:?}",
        record.checked
    );
    assert!(
        record.violations.is_empty(),
        "{} violations of OpenAI's schema:\n{}",
        record.violations.len(),
        record.violations.join("\n")
    );
}

/// The validator itself catches what the server fixed: a response without `refusal`, and a file
/// list without `first_id` or with null ids (so the test above can fail).
#[test]
fn the_schemas_reject_what_the_server_used_to_send() {
    let Some(path) = selfaware_testing::openai_schema() else {
        return;
    };
    let spec = Description::load(&path);
    let (_, chat) = spec
        .operation(&Method::POST, "/v1/chat/completions")
        .unwrap();
    let schema = chat
        .pointer("/responses/200/content/application~1json/schema")
        .unwrap();
    let mut old = json!({"id": "x", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi", "refusal": null},
        "logprobs": null, "finish_reason": "stop"}]});
    assert_eq!(spec.check(schema, &old), Vec::<String>::new());
    old["choices"][0]["message"]
        .as_object_mut()
        .unwrap()
        .remove("refusal");
    old["choices"][0]["logprobs"] = json!({"content": []});
    let errors = spec.check(schema, &old);
    assert!(errors.iter().any(|e| e.contains("refusal")), "{errors:?}");
    let (_, files) = spec.operation(&Method::GET, "/v1/files").unwrap();
    let schema = files
        .pointer("/responses/200/content/application~1json/schema")
        .unwrap();
    let errors = spec.check(
        schema,
        &json!({"object": "list", "data": [], "has_more": false}),
    );
    assert!(errors.iter().any(|e| e.contains("first_id")), "{errors:?}");
    // Null ids for an empty list are refused too (the description types them as strings);
    // empty strings pass.
    let errors = spec.check(
        schema,
        &json!({"object": "list", "data": [], "first_id": null, "last_id": null,
            "has_more": false}),
    );
    assert!(errors.iter().any(|e| e.contains("/first_id")), "{errors:?}");
    let errors = spec.check(
        schema,
        &json!({"object": "list", "data": [], "first_id": "", "last_id": "", "has_more": false}),
    );
    assert_eq!(errors, Vec::<String>::new());
}
