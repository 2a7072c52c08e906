//! The HTTP backend drives the server over real sockets; answers must equal the local backend's.

mod common;

use std::sync::Arc;

use common::{engine, local, serve, MODEL};
use selfaware_backend::{Backend, CompletionRequest, HttpBackend, HttpConfig};
use selfaware_types::Conversation;

fn http(base_url: String) -> HttpBackend {
    let mut cfg = HttpConfig::new(base_url, MODEL);
    cfg.max_concurrency = 64;
    cfg.max_retries = 0;
    cfg.timeout_s = 60.0;
    HttpBackend::new(cfg, None).unwrap()
}

fn request(prompt: &str, n: usize, seed: u64) -> CompletionRequest {
    let mut r = CompletionRequest::new(Conversation::user(None, prompt));
    r.n = n;
    r.seed = seed;
    r.max_tokens = 10;
    r.logprobs = true;
    r.top_logprobs = 5;
    r
}

fn assert_same(a: &selfaware_backend::Completions, b: &selfaware_backend::Completions) {
    assert_eq!(a.choices.len(), b.choices.len());
    assert_eq!(a.prompt_tokens, b.prompt_tokens);
    for (x, y) in a.choices.iter().zip(&b.choices) {
        assert_eq!(x.text, y.text);
        assert_eq!(x.finish_reason, y.finish_reason);
        let (lx, ly) = (x.logprobs.as_ref().unwrap(), y.logprobs.as_ref().unwrap());
        assert_eq!(lx.len(), ly.len());
        for (tx, ty) in lx.iter().zip(ly) {
            assert_eq!(tx.token, ty.token);
            assert_eq!(tx.bytes, ty.bytes);
            assert!((tx.logprob - ty.logprob).abs() < 1e-5);
            assert_eq!(tx.top_logprobs.len(), ty.top_logprobs.len());
            for (ax, ay) in tx.top_logprobs.iter().zip(&ty.top_logprobs) {
                assert_eq!(ax.token, ay.token);
                assert!(
                    (ax.logprob - ay.logprob).abs() < 1e-5,
                    "{} vs {}",
                    ax.logprob,
                    ay.logprob
                );
            }
        }
    }
}

#[test]
fn http_backend_gives_the_local_engines_samples_and_logprobs() {
    let served = serve();
    let remote = http(served.server.base_url());
    let local = local();
    for (prompt, n, seed, temp) in [
        ("Hello there", 3, 42, 1.0),
        ("What is 2+2?", 1, 0, 0.0),
        ("the the", 2, 9, 0.7),
    ] {
        let mut req = request(prompt, n, seed);
        req.temperature = temp;
        let a = local.complete(&req).unwrap();
        let b = remote.complete(&req).unwrap();
        assert_same(&a, &b);
        assert!(b.choices.iter().any(|c| !c.text.is_empty()));
    }
    // The first generated token's alternatives are the engine's exact next-token distribution.
    let conv = Conversation::user(None, "Hello there");
    let pre = engine().prefill(&conv).unwrap();
    let mut ranked: Vec<(usize, f32)> = pre.next.iter().copied().enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let b = remote.complete(&request("Hello there", 1, 5)).unwrap();
    let top = &b.choices[0].logprobs.as_ref().unwrap()[0].top_logprobs;
    assert_eq!(top.len(), 5);
    for (t, (id, lp)) in top.iter().zip(&ranked) {
        assert!((t.logprob - f64::from(*lp)).abs() < 1e-5, "{t:?} vs {lp}");
        let text = engine()
            .chat
            .tokenizer
            .decode(&[*id as u32], false)
            .unwrap();
        assert_eq!(String::from_utf8_lossy(t.bytes.as_ref().unwrap()), text);
    }
    // Stop strings cut the text as locally.
    let mut req = request("Hello there", 4, 3);
    req.max_tokens = 30;
    let free = local.complete(&req).unwrap();
    let stop: String = free.choices[0].text.chars().skip(2).take(1).collect();
    req.stop = vec![stop.clone()];
    let a = local.complete(&req).unwrap();
    let b = remote.complete(&req).unwrap();
    assert_same(&a, &b);
    assert!(!b.choices[0].text.contains(&stop));
}

#[test]
fn http_backend_scores_options_like_the_local_engine() {
    let served = serve();
    let remote = http(served.server.base_url());
    let local = local();
    assert!(
        remote.capabilities().exact_scoring,
        "prompt_logprobs detected"
    );
    let conv = Conversation::new(vec![
        selfaware_types::Message::system("Answer with one letter."),
        selfaware_types::Message::user("A or B?"),
    ]);
    let options: Vec<String> = ["A", "B", "the", "Hello world", "42", "A"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let a = local.score_options(&conv, &options).unwrap();
    let b = remote.score_options(&conv, &options).unwrap();
    assert_eq!(a.prompt_tokens, b.prompt_tokens);
    for (x, y) in a.candidates.iter().zip(&b.candidates) {
        assert_eq!(x.text, y.text);
        assert_eq!(x.token_ids, y.token_ids);
        // Tree-attention scoring and a whole-sequence forward round differently in f32.
        assert!(
            (x.first_token_logprob - y.first_token_logprob).abs() < 5e-5,
            "{x:?} {y:?}"
        );
        assert!((x.logprob - y.logprob).abs() < 5e-5, "{x:?} {y:?}");
    }
    assert!((a.off_candidate_first_token_mass - b.off_candidate_first_token_mass).abs() < 1e-5);
    let worst = a
        .candidates
        .iter()
        .zip(&b.candidates)
        .map(|(x, y)| (x.logprob - y.logprob).abs())
        .fold(0.0, f64::max);
    eprintln!("largest |local - http| option logprob difference: {worst:e}");
}

#[test]
fn sixty_four_concurrent_clients_get_their_own_answers() {
    let served = serve();
    let remote = Arc::new(http(served.server.base_url()));
    let local = local();
    let reqs: Vec<CompletionRequest> = (0..64)
        .map(|i| {
            request(
                ["Hi", "Name a colour", "Count to three", "Hi"][i % 4],
                1 + i % 3,
                (i / 8) as u64,
            )
        })
        .collect();
    let expected: Vec<_> = reqs.iter().map(|r| local.complete(r).unwrap()).collect();
    let handles: Vec<_> = reqs
        .into_iter()
        .map(|r| {
            let remote = remote.clone();
            std::thread::spawn(move || remote.complete(&r))
        })
        .collect();
    for (h, want) in handles.into_iter().zip(&expected) {
        let got = h.join().unwrap().unwrap();
        assert_same(want, &got);
    }
    // complete_many runs them concurrently too, results in order.
    let reqs: Vec<CompletionRequest> = (0..16).map(|i| request("Hi", 1, i)).collect();
    let many = remote.complete_many(&reqs);
    for (r, got) in reqs.iter().zip(many) {
        assert_same(&local.complete(r).unwrap(), &got.unwrap());
    }
}

#[test]
fn unseeded_requests_are_sampled_and_counted() {
    let served = serve();
    let client = reqwest_blocking(&served.server.base_url());
    let body = serde_json::json!({"model": MODEL, "messages": [{"role": "user", "content": "Hi"}],
        "n": 3, "max_tokens": 5});
    let v = client(body);
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"].as_array().unwrap().len(), 3);
    assert!(v["choices"][0]["logprobs"].is_null());
    let usage = &v["usage"];
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
    );
    assert!(usage["completion_tokens"].as_u64().unwrap() >= 3);
}

/// A JSON POST helper on a private runtime.
fn reqwest_blocking(base: &str) -> impl Fn(serde_json::Value) -> serde_json::Value {
    let url = format!("{base}/chat/completions");
    move |body| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let r = reqwest::Client::new()
                .post(&url)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{}", r.status());
            r.json().await.unwrap()
        })
    }
}

/// The bytes of an answer's tokens, from their log-probability records.
fn answer_bytes(c: &selfaware_backend::Completion) -> Vec<u8> {
    c.logprobs
        .as_ref()
        .unwrap()
        .iter()
        .flat_map(|t| t.bytes.clone().unwrap())
        .collect()
}

/// Where the bytes end inside a character: the start of a trailing proper prefix of a
/// multi-byte UTF-8 character (a lead byte and fewer continuation bytes than it announces).
fn cut_character(bytes: &[u8]) -> Option<usize> {
    (bytes.len().saturating_sub(3)..bytes.len()).find(|&k| {
        matches!(std::str::from_utf8(&bytes[k..]),
            Err(e) if e.valid_up_to() == 0 && e.error_len().is_none())
    })
}

#[test]
fn cut_characters_are_found_in_bytes() {
    for (bytes, want) in [
        (&b"ab"[..], None),
        (&[b'a', 0xC3][..], Some(1)),
        (&[b'a', 0xE2, 0x82][..], Some(1)),
        (&[0xF0, 0x9F, 0x98][..], Some(0)),
        (&[b'a', 0xC3, 0xA9][..], None), // é, complete
        (&[b'a', 0xB7][..], None),       // a stray continuation byte: invalid, not cut
        (&[0xB7, 0xC7][..], Some(1)),
    ] {
        assert_eq!(cut_character(bytes), want, "{bytes:?}");
    }
}

/// When `max_tokens` ends an answer inside a multi-byte character, the character's bytes are
/// held back (as the OpenAI API does): the text is that of the bytes before the cut character,
/// with no U+FFFD standing for it. The tiny model's byte-level vocabulary cuts characters
/// often; the seeds make which answers do so fixed, and the count makes sure some did.
#[test]
fn a_character_cut_by_max_tokens_is_held_back() {
    let served = serve();
    let remote = http(served.server.base_url());
    let mut cut = 0;
    for seed in 0..8 {
        let mut r = request("Say something in French", 16, seed);
        r.max_tokens = 3;
        r.top_logprobs = 0;
        let out = remote.complete(&r).unwrap();
        for c in &out.choices {
            // Special tokens are not part of the text (the tiny model draws them mid-answer).
            let special = |t: &selfaware_backend::TokenLogprob| {
                t.token.starts_with("<|") && t.token.ends_with("|>")
            };
            if c.logprobs.as_ref().unwrap().iter().any(special) {
                continue;
            }
            // FIXME: the engine trims every trailing U+FFFD, so one standing for invalid bytes
            // at the end (the tiny model draws stray continuation bytes) is dropped too; only
            // a cut character's should go.
            let bytes = answer_bytes(c);
            let Some(k) = cut_character(&bytes) else {
                let all = String::from_utf8_lossy(&bytes);
                assert_eq!(c.text, all.trim_end_matches('\u{FFFD}'), "seed {seed}");
                continue;
            };
            cut += 1;
            let kept = String::from_utf8_lossy(&bytes[..k]);
            assert_eq!(
                c.text,
                kept.trim_end_matches('\u{FFFD}'),
                "seed {seed}: bytes {bytes:?}"
            );
            assert!(!c.text.ends_with('\u{FFFD}'), "{:?}", c.text);
        }
    }
    assert!(
        cut > 0,
        "no answer ended inside a character: the test checked nothing"
    );
}
