//! `stream: true` on a local engine sends one chunk per generated token as it is generated:
//! the chunks add up to the plain answer (text, logprobs, finish reason, usage), stop strings
//! are never leaked, and the first token reaches the client long before the last is made.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use selfaware_model::testing::{write_tiny_gguf, TinySpec};
use selfaware_model::{Engine, ModelSource};
use selfaware_server::{spawn, Registry, ServerConfig};
use serde_json::{json, Value};

use common::{serve, MODEL};

async fn plain(url: &str, body: &Value) -> Value {
    let r = reqwest::Client::new()
        .post(url)
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.json().await.unwrap()
}

/// The `data:` payloads of an SSE response, each with the time it arrived.
async fn sse(url: &str, body: &Value) -> (Instant, Vec<(Instant, String)>) {
    let sent = Instant::now();
    let mut r = reqwest::Client::new()
        .post(url)
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{:?}", r.text().await);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut buf = String::new();
    let mut out = Vec::new();
    while let Some(bytes) = r.chunk().await.unwrap() {
        let now = Instant::now();
        buf.push_str(std::str::from_utf8(&bytes).unwrap());
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            for line in event.lines() {
                if let Some(d) = line.strip_prefix("data: ") {
                    out.push((now, d.to_string()));
                }
            }
        }
    }
    (sent, out)
}

/// Checks a streamed answer against the plain one; returns the number of token chunks.
fn check_stream(events: &[(Instant, String)], plain: &Value, logprobs: bool) -> usize {
    let datas: Vec<&str> = events.iter().map(|(_, d)| d.as_str()).collect();
    assert_eq!(*datas.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = datas[..datas.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let first = &chunks[0]["choices"][0];
    assert_eq!(first["delta"]["role"], "assistant");
    assert_eq!(first["delta"]["content"], "");
    let want = &plain["choices"][0];
    let mut text = String::new();
    let mut tokens = Vec::new();
    let mut token_chunks = 0;
    let mut finish = None;
    let mut usage = None;
    for c in &chunks[1..] {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], chunks[0]["id"]);
        if !c["usage"].is_null() {
            usage = Some(c["usage"].clone());
            assert_eq!(c["choices"], json!([]));
            continue;
        }
        let ch = &c["choices"][0];
        assert!(finish.is_none(), "a chunk after the finish reason: {c}");
        if let Some(r) = ch["finish_reason"].as_str() {
            finish = Some(r.to_string());
            continue;
        }
        text.push_str(ch["delta"]["content"].as_str().unwrap());
        if ch["logprobs"].is_object() {
            let content = ch["logprobs"]["content"].as_array().unwrap();
            assert_eq!(content.len(), 1, "one token per chunk: {c}");
            tokens.push(content[0].clone());
            token_chunks += 1;
        } else {
            assert!(!logprobs || ch["delta"]["content"] != "", "{c}");
        }
    }
    assert_eq!(text, want["message"]["content"].as_str().unwrap());
    assert_eq!(finish.as_deref(), want["finish_reason"].as_str());
    assert_eq!(usage.as_ref(), Some(&plain["usage"]));
    if logprobs {
        let want_tokens = want["logprobs"]["content"].as_array().unwrap();
        assert_eq!(tokens.len(), want_tokens.len());
        for (a, b) in tokens.iter().zip(want_tokens) {
            assert_eq!(a["token"], b["token"]);
            assert_eq!(a["bytes"], b["bytes"]);
            assert_eq!(
                a["logprob"], b["logprob"],
                "streamed logprobs are bit-identical"
            );
            assert_eq!(a["top_logprobs"], b["top_logprobs"]);
        }
    }
    token_chunks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_chunks_are_the_plain_answer_token_by_token() {
    let served = serve();
    let url = format!("{}/chat/completions", served.server.base_url());
    for (prompt, seed, temperature) in [("Hi", 11, 1.0), ("Tell me a story", 3, 0.0), ("x", 5, 0.7)]
    {
        let body = json!({"model": MODEL, "messages": [{"role": "user", "content": prompt}],
            "max_tokens": 24, "seed": seed, "temperature": temperature,
            "logprobs": true, "top_logprobs": 3});
        let want = plain(&url, &body).await;
        let mut s = body.clone();
        s["stream"] = json!(true);
        s["stream_options"] = json!({"include_usage": true});
        let (_, events) = sse(&url, &s).await;
        let n = check_stream(&events, &want, true);
        assert_eq!(
            n as u64,
            want["usage"]["completion_tokens"].as_u64().unwrap(),
            "one chunk per generated token"
        );

        // A stop string taken from inside the answer: the streamed text stops before it too,
        // and never shows a piece of it.
        let full = want["choices"][0]["message"]["content"].as_str().unwrap();
        let chars: Vec<char> = full.chars().collect();
        if chars.len() >= 6 {
            let stop: String = chars[3..5].iter().collect();
            let mut b = body.clone();
            b["stop"] = json!([stop]);
            let want = plain(&url, &b).await;
            assert_eq!(want["choices"][0]["finish_reason"], "stop");
            let mut s = b.clone();
            s["stream"] = json!(true);
            s["stream_options"] = json!({"include_usage": true});
            let mut b2 = s.clone();
            b2["logprobs"] = json!(false);
            b2.as_object_mut().unwrap().remove("top_logprobs");
            let (_, events) = sse(&url, &b2).await;
            let mut want_plain = want.clone();
            want_plain["choices"][0]["logprobs"] = Value::Null;
            check_stream(&events, &want_plain, false);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_token_arrives_while_the_rest_is_generated() {
    // A wider random model than the shared one, so 64 tokens take long enough to measure.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wide.gguf");
    let spec = TinySpec {
        layers: 8,
        hidden: 384,
        heads: 6,
        kv_heads: 2,
        ffn: 1536,
        seed: 3,
        ..TinySpec::default()
    };
    write_tiny_gguf(&path, &spec).unwrap();
    let engine = Arc::new(Engine::load(&ModelSource::Gguf(path)).unwrap());
    let mut reg = Registry::new();
    reg.add_local("wide", engine).unwrap();
    let server = spawn(
        ServerConfig {
            port: 0,
            max_tokens: 64,
            ..ServerConfig::default()
        },
        reg,
    )
    .unwrap();
    let url = format!("{}/chat/completions", server.base_url());
    let body = json!({"model": "wide", "messages": [{"role": "user", "content": "Count"}],
        "max_tokens": 64, "temperature": 0, "stream": true,
        "stream_options": {"include_usage": true}});
    let (sent, events) = sse(&url, &body).await;
    let plain_body = json!({"model": "wide", "messages": [{"role": "user", "content": "Count"}],
        "max_tokens": 64, "temperature": 0});
    let want = plain(&url, &plain_body).await;
    check_stream(&events, &want, false);
    assert_eq!(
        want["choices"][0]["finish_reason"], "length",
        "pick a prompt the model does not end early"
    );
    // events: role chunk, 64 token chunks, finish, usage, [DONE].
    let first_token = events[1].0 - sent;
    let done = events.last().unwrap().0 - sent;
    assert!(
        done > Duration::from_millis(20),
        "generation too fast to measure ({done:?})"
    );
    assert!(
        first_token.as_secs_f64() < 0.5 * done.as_secs_f64(),
        "the first token came at {first_token:?} of {done:?}: the answer was not streamed as made"
    );
    // Arrivals are spread over the generation, not bunched at the end.
    let mid = events[33].0 - sent;
    assert!(mid < done, "{mid:?} vs {done:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_cannot_start_is_a_plain_http_error() {
    let served = serve();
    let url = format!("{}/chat/completions", served.server.base_url());
    let body = json!({"model": MODEL, "stream": true,
        "messages": [{"role": "user", "content": "ab ".repeat(6000)}]});
    let r = reqwest::Client::new()
        .post(&url)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_unseeded_streams_are_decoded_together() {
    let served = serve();
    let url = format!("{}/chat/completions", served.server.base_url());
    let prompts = [
        "Hi",
        "Name a colour",
        "Tell me a story",
        "x",
        "Why is the sky blue?",
        "ok then",
    ];
    let mut tasks = Vec::new();
    for (i, p) in prompts.iter().enumerate() {
        // No seed and greedy: the answer is fixed, and unseeded streams join batches.
        let body = json!({"model": MODEL, "messages": [{"role": "user", "content": p}],
            "max_tokens": 12 + i, "temperature": 0, "logprobs": true, "top_logprobs": 2,
            "stop": if i == 2 { json!(["e"]) } else { json!(null) }});
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = body.clone();
            s["stream"] = json!(true);
            s["stream_options"] = json!({"include_usage": true});
            let r = reqwest::Client::new()
                .post(&url)
                .json(&s)
                .send()
                .await
                .unwrap();
            let rows: usize = r.headers()[selfaware_server::BATCH_ROWS_HEADER]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            let text = r.text().await.unwrap();
            (body, text, rows)
        }));
    }
    let mut most = 0;
    for t in tasks {
        let (body, text, rows) = t.await.unwrap();
        most = most.max(rows);
        let now = Instant::now();
        let events: Vec<(Instant, String)> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|d| (now, d.to_string()))
            .collect();
        // The plain answer, asked alone afterwards (greedy: the same tokens; batched logprobs
        // differ from lone ones by float rounding only).
        let want = plain(&url, &body).await;
        let datas: Vec<Value> = events[..events.len() - 1]
            .iter()
            .map(|(_, d)| serde_json::from_str(d).unwrap())
            .collect();
        let mut got = String::new();
        let mut lps = Vec::new();
        let mut finish = None;
        for c in &datas[1..] {
            if let Some(ch) = c["choices"].as_array().and_then(|a| a.first()) {
                if let Some(t) = ch["delta"]["content"].as_str() {
                    got.push_str(t);
                }
                if let Some(l) = ch["logprobs"]["content"].as_array() {
                    assert_eq!(l.len(), 1);
                    lps.push(l[0]["logprob"].as_f64().unwrap());
                }
                if let Some(r) = ch["finish_reason"].as_str() {
                    finish = Some(r.to_string());
                }
            }
        }
        let w = &want["choices"][0];
        assert_eq!(got, w["message"]["content"].as_str().unwrap(), "{body}");
        assert_eq!(finish.as_deref(), w["finish_reason"].as_str());
        let wl: Vec<f64> = w["logprobs"]["content"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["logprob"].as_f64().unwrap())
            .collect();
        if w["finish_reason"] != "stop" || body["stop"].is_null() {
            assert_eq!(lps.len(), wl.len());
        }
        for (a, b) in lps.iter().zip(&wl) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }
    eprintln!("largest streamed batch: {most} sequences");
    assert!(most > 1, "concurrent streams were never decoded together");
}
