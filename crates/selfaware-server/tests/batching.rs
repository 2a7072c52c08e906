//! Different prompts decoded together give the answers each prompt gets alone: concurrent
//! unseeded HTTP requests against serial local answers. (The decoder itself, several prompts
//! against each alone, is tested in `selfaware-model`'s `tests/decode.rs`.)

mod common;

use common::{local, serve, MODEL};
use selfaware_backend::{Backend, CompletionRequest};
use selfaware_server::BATCH_ROWS_HEADER;
use selfaware_types::Conversation;
use serde_json::{json, Value};

const PROMPTS: [&str; 8] = [
    "Hi",
    "Name a colour",
    "Count to three, slowly and clearly please",
    "x",
    "What is the capital of France? Answer in one word.",
    "Tell me a story",
    "ok",
    "Why is the sky blue?",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_different_prompts_are_batched_and_answer_as_serial() {
    let served = serve();
    let url = format!("{}/chat/completions", served.server.base_url());
    let local = local();
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for round in 0..2 {
        for (i, p) in PROMPTS.iter().enumerate() {
            // No seed: greedy answers do not depend on one, and unseeded requests are the ones
            // decoded across prompts.
            let body = json!({"model": MODEL, "messages": [{"role": "user", "content": p}],
                "temperature": 0, "max_tokens": 8 + (i + round) % 3, "logprobs": true,
                "top_logprobs": 2});
            let (c, u) = (client.clone(), url.clone());
            tasks.push(tokio::spawn(async move {
                let r = c.post(&u).json(&body).send().await.unwrap();
                assert_eq!(r.status().as_u16(), 200);
                let rows: usize = r.headers()[BATCH_ROWS_HEADER]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                let v: Value = r.json().await.unwrap();
                (body, v, rows)
            }));
        }
    }
    let mut most_rows = 0;
    for t in tasks {
        let (body, got, rows) = t.await.unwrap();
        most_rows = most_rows.max(rows);
        let mut req = CompletionRequest::new(Conversation::user(
            None,
            body["messages"][0]["content"].as_str().unwrap(),
        ));
        req.temperature = 0.0;
        req.max_tokens = body["max_tokens"].as_u64().unwrap() as usize;
        req.logprobs = true;
        req.top_logprobs = 2;
        let want = local.complete(&req).unwrap();
        let (w, g) = (&want.choices[0], &got["choices"][0]);
        assert_eq!(g["message"]["content"].as_str().unwrap(), w.text);
        assert_eq!(
            g["finish_reason"].as_str().unwrap(),
            w.finish_reason.as_str()
        );
        let glp = g["logprobs"]["content"].as_array().unwrap();
        let wlp = w.logprobs.as_ref().unwrap();
        assert_eq!(glp.len(), wlp.len());
        for (a, b) in glp.iter().zip(wlp) {
            assert_eq!(a["token"].as_str().unwrap(), b.token);
            assert!((a["logprob"].as_f64().unwrap() - b.logprob).abs() < 1e-4);
        }
        assert_eq!(
            got["usage"]["prompt_tokens"].as_u64().unwrap() as usize,
            want.prompt_tokens.unwrap()
        );
    }
    eprintln!("largest batch: {most_rows} sequences");
    assert!(
        most_rows > 1,
        "16 concurrent requests were never decoded together"
    );
}
