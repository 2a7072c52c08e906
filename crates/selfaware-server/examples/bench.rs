//! Throughput and latency of the server under 1, 8 and 64 concurrent clients.
//!
//! ```text
//! cargo run -p selfaware-server --example bench -- [--model FILE.gguf] [--max-tokens 16] [--per-client 8] [--prompts same|distinct]
//! ```
//!
//! Without `--model` it serves the tiny random test model. Each client sends a short chat
//! completion (no seed, temperature 1) back to back: the same one for every client (the server
//! merges concurrent identical requests into one batched decode), or with `--prompts distinct`
//! a different prompt per client (the server decodes them together, padded). Prints
//! requests/s, p50/p99 latency per level and the 8-vs-1 throughput ratio.

use std::sync::Arc;
use std::time::{Duration, Instant};

use selfaware_backend::testing::tiny_engine;
use selfaware_model::{Engine, ModelSource};
use selfaware_server::{spawn, Registry, ServerConfig};

struct Args {
    model: Option<std::path::PathBuf>,
    distinct: bool,
    max_tokens: u64,
    per_client: usize,
}

fn args() -> Args {
    let mut a = Args {
        model: None,
        distinct: false,
        max_tokens: 16,
        per_client: 8,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--model" => a.model = Some(v.into()),
            "--max-tokens" => a.max_tokens = v.parse().expect("--max-tokens takes a number"),
            "--per-client" => a.per_client = v.parse().expect("--per-client takes a number"),
            "--prompts" => {
                a.distinct = match v.as_str() {
                    "same" => false,
                    "distinct" => true,
                    _ => panic!("--prompts takes `same` or `distinct`"),
                }
            }
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let a = args();
    let (engine, name) = match &a.model {
        Some(p) => (
            Engine::load(&ModelSource::Gguf(p.clone())).expect("load model"),
            p.display().to_string(),
        ),
        None => (
            tiny_engine(7).expect("tiny model"),
            "tiny random llama (2 layers, width 64)".into(),
        ),
    };
    let engine = Arc::new(engine);
    // The ceiling batching can reach: the engine alone decoding 1 vs 8 samples of one prompt.
    let conv = selfaware_types::Conversation::user(None, "Write a haiku about the sea.");
    let mut alone = Vec::new();
    for n in [1usize, 8] {
        let cfg = selfaware_model::SampleConfig {
            n,
            max_tokens: a.max_tokens as usize,
            ..Default::default()
        };
        engine.sample(&conv, &cfg).expect("sample"); // warm-up
        let t = Instant::now();
        let out = engine.sample(&conv, &cfg).expect("sample");
        let tokens: usize = out.iter().map(|g| g.sample.tokens.len()).sum();
        alone.push((t.elapsed().as_secs_f64(), tokens));
    }
    println!(
        "engine alone: n=1 {:.0} ms ({} tokens), n=8 {:.0} ms ({} tokens): batching ceiling {:.2}x",
        alone[0].0 * 1e3,
        alone[0].1,
        alone[1].0 * 1e3,
        alone[1].1,
        8.0 * alone[0].0 / alone[1].0
    );
    let config = ServerConfig {
        port: 0,
        io_threads: 2,
        ..ServerConfig::default()
    };
    let mut registry = Registry::new();
    registry.add_local("bench", engine).expect("register");
    let server = spawn(config, registry).expect("start server");
    let url = format!("{}/chat/completions", server.base_url());
    let body = serde_json::json!({
        "model": "bench",
        "messages": [{"role": "user", "content": "Write a haiku about the sea."}],
        "max_tokens": a.max_tokens,
        "temperature": 1.0,
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(128)
        .build()
        .unwrap();
    println!(
        "model: {name}; max_tokens {}; {} requests per client; {} prompts",
        a.max_tokens,
        a.per_client,
        if a.distinct { "distinct" } else { "same" }
    );
    println!(
        "{:>8} {:>9} {:>10} {:>10} {:>10} {:>12}",
        "clients", "requests", "req/s", "p50 ms", "p99 ms", "tokens/s"
    );
    let mut rps = Vec::new();
    for clients in [1usize, 8, 64] {
        // Warm up connections and caches.
        rt.block_on(async {
            let r = client.post(&url).json(&body).send().await.unwrap();
            assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        });
        let start = Instant::now();
        let results: Vec<(Vec<Duration>, u64)> = rt.block_on(async {
            let tasks: Vec<_> = (0..clients)
                .map(|c| {
                    let (client, url, mut body) = (client.clone(), url.clone(), body.clone());
                    if a.distinct {
                        body["messages"][0]["content"] =
                            format!("Write haiku number {c} about the sea.").into();
                    }
                    let per = a.per_client;
                    tokio::spawn(async move {
                        let mut lat = Vec::with_capacity(per);
                        let mut tokens = 0;
                        for _ in 0..per {
                            let t = Instant::now();
                            let r = client.post(&url).json(&body).send().await.unwrap();
                            assert!(r.status().is_success(), "HTTP {}", r.status());
                            let v: serde_json::Value = r.json().await.unwrap();
                            tokens += v["usage"]["completion_tokens"].as_u64().unwrap_or(0);
                            lat.push(t.elapsed());
                        }
                        (lat, tokens)
                    })
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        });
        let wall = start.elapsed().as_secs_f64();
        let mut lat: Vec<Duration> = results.iter().flat_map(|r| r.0.clone()).collect();
        let tokens: u64 = results.iter().map(|r| r.1).sum();
        lat.sort();
        let n = lat.len();
        let r = n as f64 / wall;
        rps.push(r);
        println!(
            "{clients:>8} {n:>9} {r:>10.2} {:>10.1} {:>10.1} {:>12.1}",
            percentile(&lat, 0.5).as_secs_f64() * 1e3,
            percentile(&lat, 0.99).as_secs_f64() * 1e3,
            tokens as f64 / wall
        );
    }
    println!("throughput 8 clients / 1 client: {:.2}x", rps[1] / rps[0]);
    println!("throughput 64 clients / 1 client: {:.2}x", rps[2] / rps[0]);
    server.shutdown().expect("shutdown");
}
