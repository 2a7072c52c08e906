//! Malformed requests get clean 4xx answers with OpenAI's error JSON; streaming and files work.

mod common;

use common::{serve, MODEL};
use serde_json::{json, Value};

async fn post_raw(url: &str, body: Vec<u8>) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}")),
    )
}

fn check_error(got: (u16, Value), status: u16, kind: &str, param: Option<&str>, needle: &str) {
    let (s, v) = got;
    assert_eq!(s, status, "{v}");
    let e = &v["error"];
    assert_eq!(e["type"], kind, "{v}");
    assert!(e["message"].as_str().unwrap().contains(needle), "{v}");
    assert!(e.get("code").is_some() && e.get("param").is_some(), "{v}");
    if let Some(p) = param {
        assert_eq!(e["param"], p, "{v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_openai_errors() {
    let served = serve();
    let base = served.server.base_url();
    let url = format!("{base}/chat/completions");
    let ok = |extra: Value| {
        let mut b = json!({"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        serde_json::to_vec(&b).unwrap()
    };
    let inv = "invalid_request_error";
    check_error(
        post_raw(&url, b"{not json".to_vec()).await,
        400,
        inv,
        None,
        "not a valid chat completion request",
    );
    check_error(
        post_raw(&url, ok(json!({"model": "gpt-9"}))).await,
        404,
        inv,
        None,
        "gpt-9",
    );
    check_error(
        post_raw(&url, ok(json!({"n": 10000}))).await,
        400,
        inv,
        Some("n"),
        "between 1 and 16",
    );
    check_error(
        post_raw(&url, ok(json!({"n": 0}))).await,
        400,
        inv,
        Some("n"),
        "n must be",
    );
    check_error(
        post_raw(&url, ok(json!({"max_tokens": 100000}))).await,
        400,
        inv,
        Some("max_tokens"),
        "at most 64",
    );
    check_error(
        post_raw(&url, ok(json!({"top_logprobs": 50, "logprobs": true}))).await,
        400,
        inv,
        Some("top_logprobs"),
        "at most 20",
    );
    check_error(
        post_raw(&url, ok(json!({"temperature": -1}))).await,
        400,
        inv,
        Some("temperature"),
        "temperature",
    );
    check_error(
        post_raw(&url, ok(json!({"messages": []}))).await,
        400,
        inv,
        Some("messages"),
        "empty",
    );
    check_error(
        post_raw(&url, ok(json!({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}))).await,
        400, inv, Some("messages"), "assistant",
    );
    check_error(
        post_raw(&url, ok(json!({"prompt_logprobs": 5}))).await,
        400,
        inv,
        Some("prompt_logprobs"),
        "only prompt_logprobs=0",
    );
    check_error(
        post_raw(&url, ok(json!({"add_generation_prompt": false}))).await,
        400,
        inv,
        Some("add_generation_prompt"),
        "needs prompt_logprobs",
    );
    check_error(
        post_raw(&url, ok(json!({"continue_final_message": true}))).await,
        400,
        inv,
        Some("continue_final_message"),
        "not supported",
    );
    let huge = ok(json!({"messages": [{"role": "user", "content": "x".repeat(200_000)}]}));
    check_error(post_raw(&url, huge).await, 413, inv, None, "too large");
    // A prompt longer than the model's context is the client's error too.
    let long = ok(json!({"messages": [{"role": "user", "content": "ab ".repeat(6000)}]}));
    let (s, _) = post_raw(&url, long).await;
    assert!(s == 400 || s == 413, "{s}");
    let r = reqwest::get(format!("{base}/nothing")).await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "unknown_url");
    let r = reqwest::get(format!("{base}/models/gpt-9")).await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = reqwest::get(format!("{base}/chat/completions"))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].is_string());
    // The server still answers after all that.
    let (s, v) = post_raw(&url, ok(json!({}))).await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_matches_the_plain_answer() {
    let served = serve();
    let url = format!("{}/chat/completions", served.server.base_url());
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8,
        "seed": 11, "n": 2, "logprobs": true, "top_logprobs": 2});
    let plain: Value = reqwest::Client::new()
        .post(&url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    sbody["stream_options"] = json!({"include_usage": true});
    let r = reqwest::Client::new()
        .post(&url)
        .json(&sbody)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let text = r.text().await.unwrap();
    let datas: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(*datas.last().unwrap(), "[DONE]");
    let mut texts = [String::new(), String::new()];
    let mut finished = 0;
    let mut usage = None;
    for d in &datas[..datas.len() - 1] {
        let c: Value = serde_json::from_str(d).unwrap();
        assert_eq!(c["object"], "chat.completion.chunk");
        for ch in c["choices"].as_array().unwrap() {
            let i = ch["index"].as_u64().unwrap() as usize;
            if let Some(t) = ch["delta"]["content"].as_str() {
                texts[i].push_str(t);
            }
            if ch["finish_reason"].is_string() {
                finished += 1;
            }
        }
        if !c["usage"].is_null() {
            usage = Some(c["usage"].clone());
        }
    }
    assert_eq!(finished, 2);
    for i in 0..2 {
        assert_eq!(
            texts[i],
            plain["choices"][i]["message"]["content"].as_str().unwrap()
        );
    }
    assert_eq!(usage.unwrap(), plain["usage"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_validated_stored_and_listed() {
    let served = serve();
    let base = served.server.base_url();
    let client = reqwest::Client::new();
    let upload = |content: String, purpose: &str| {
        let form = reqwest::multipart::Form::new()
            .text("purpose", purpose.to_string())
            .part(
                "file",
                reqwest::multipart::Part::bytes(content.into_bytes()).file_name("train.jsonl"),
            );
        client.post(format!("{base}/files")).multipart(form).send()
    };
    let good = r#"{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}"#;
    let r = upload(format!("{good}\n{good}\n"), "fine-tune")
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let f: Value = r.json().await.unwrap();
    let id = f["id"].as_str().unwrap().to_string();
    assert_eq!(f["object"], "file");
    assert_eq!(f["purpose"], "fine-tune");
    assert_eq!(f["filename"], "train.jsonl");
    let list: Value = client
        .get(format!("{base}/files"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"][0]["id"], id.as_str());
    let content = client
        .get(format!("{base}/files/{id}/content"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(content, format!("{good}\n{good}\n"));
    // Bad lines are refused with the line named.
    let r = upload(
        format!("{good}\n{{\"messages\": [{{\"role\": \"user\", \"content\": \"a\"}}]}}\n"),
        "fine-tune",
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("line 2"),
        "{v}"
    );
    let r = upload(good.to_string(), "nonsense").await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r = upload("x".repeat(300 * 1024), "batch").await.unwrap();
    assert_eq!(r.status().as_u16(), 413);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].is_string());
    let r = client
        .get(format!("{base}/files/file-0000"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = client
        .get(format!("{base}/files/..%2Fsecret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = client
        .delete(format!("{base}/files/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = client
        .get(format!("{base}/files/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_are_listed() {
    let served = serve();
    let base = served.server.base_url();
    let v: Value = reqwest::get(format!("{base}/models"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["id"], MODEL);
    assert_eq!(v["data"][0]["object"], "model");
    let v: Value = reqwest::get(format!("{base}/models/{MODEL}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["id"], MODEL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_model_answers_500_and_keeps_serving() {
    use selfaware_backend::{MockBackend, MockScript};
    let mock = MockBackend::with_fn("mock", |c| {
        if c.messages.first().is_some_and(|m| m.content == "boom") {
            panic!("scripted failure");
        }
        MockScript::new(&[("A", 1.0)])
    });
    let config = selfaware_server::ServerConfig {
        port: 0,
        ..Default::default()
    };
    let server = selfaware_server::spawn(
        config,
        selfaware_server::Registry::single(std::sync::Arc::new(mock)),
    )
    .unwrap();
    let url = format!("{}/chat/completions", server.base_url());
    let body = |text: &str| {
        serde_json::to_vec(
            &json!({"model": "mock", "messages": [{"role": "user", "content": text}]}),
        )
        .unwrap()
    };
    let (s, v) = post_raw(&url, body("boom")).await;
    assert_eq!(s, 500, "{v}");
    assert_eq!(v["error"]["type"], "server_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("scripted failure"),
        "{v}"
    );
    let (s, v) = post_raw(&url, body("fine")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], "A");
}
