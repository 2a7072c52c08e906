//! The HTTP client against tiny axum servers written here: retries, Retry-After, bounded
//! failures, timeouts, rate and concurrency limits, the response cache, and the API key never
//! leaking.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use selfaware_backend::{
    ApiKey, Backend, BackendError, CompletionRequest, HttpBackend, HttpConfig,
};
use selfaware_types::Conversation;
use serde_json::json;

const KEY: &str = "sk-test-SECRET-0123456789abcdef";

/// Runs `app` on 127.0.0.1 (port 0) on its own thread; returns the base URL.
fn start(app: Router) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });
    format!("http://{addr}/v1")
}

fn ok_body(n: usize) -> serde_json::Value {
    let choices: Vec<_> = (0..n)
        .map(|i| {
            json!({"index": i, "message": {"role": "assistant", "content": format!("answer {i}")},
            "logprobs": {"content": [{"token": "answer", "logprob": -0.5, "bytes": [97],
                "top_logprobs": [{"token": "answer", "logprob": -0.5, "bytes": null}]}]},
            "finish_reason": "stop"})
        })
        .collect();
    json!({"id": "x", "object": "chat.completion", "created": 1, "model": "m", "choices": choices,
        "usage": {"prompt_tokens": 3, "completion_tokens": n, "total_tokens": 3 + n}})
}

fn cfg(base: &str) -> HttpConfig {
    let mut c = HttpConfig::new(base, "m");
    c.initial_backoff_ms = 10;
    c.max_backoff_ms = 40;
    c.max_retries = 3;
    c.timeout_s = 5.0;
    c.api_key_env = Some("SELFAWARE_TEST_KEY".into());
    c
}

fn req() -> CompletionRequest {
    let mut r = CompletionRequest::new(Conversation::user(None, "Hi"));
    r.n = 2;
    r.logprobs = true;
    r.top_logprobs = 1;
    r
}

/// A wait between attempts that returns at once and records the delay the client asked for.
fn recorded_waits() -> (selfaware_backend::Wait, Arc<Mutex<Vec<Duration>>>) {
    let waits = Arc::new(Mutex::new(Vec::new()));
    let w = waits.clone();
    let wait: selfaware_backend::Wait = Arc::new(move |d| {
        w.lock().unwrap().push(d);
        Box::pin(std::future::ready(()))
    });
    (wait, waits)
}

#[test]
fn retries_after_429_respecting_retry_after() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move || {
            let h = h.clone();
            async move {
                if h.fetch_add(1, Ordering::SeqCst) == 0 {
                    let mut headers = HeaderMap::new();
                    headers.insert("retry-after", "1".parse().unwrap());
                    (StatusCode::TOO_MANY_REQUESTS, headers, "slow down").into_response()
                } else {
                    axum::Json(ok_body(2)).into_response()
                }
            }
        }),
    );
    let (wait, waits) = recorded_waits();
    let b = HttpBackend::with_wait(cfg(&start(app)), Some(ApiKey::new(KEY)), wait).unwrap();
    let out = b.complete(&req()).unwrap();
    // The server's one second replaces the client's own backoff (10 to 40 ms here).
    assert_eq!(*waits.lock().unwrap(), [Duration::from_secs(1)]);
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    assert_eq!(out.choices.len(), 2);
    assert_eq!(out.choices[1].text, "answer 1");
    assert_eq!(out.prompt_tokens, Some(3));
    let lp = out.choices[0].logprobs.as_ref().unwrap();
    assert_eq!(lp[0].top_logprobs[0].logprob, -0.5);
}

#[test]
fn server_errors_are_retried_a_bounded_number_of_times() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move || {
            h.fetch_add(1, Ordering::SeqCst);
            async { (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({"error": {"message": "boom", "type": "server_error", "param": null, "code": null}}))) }
        }),
    );
    let b = HttpBackend::new(cfg(&start(app)), None).unwrap();
    let e = b.complete(&req()).unwrap_err();
    assert!(
        matches!(e, BackendError::RetriesExhausted { attempts: 4, .. }),
        "{e}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("after 4 attempts") && msg.contains("HTTP 500: boom"),
        "{msg}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 4);
}

#[test]
fn client_errors_are_not_retried() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move || {
            h.fetch_add(1, Ordering::SeqCst);
            async { (StatusCode::BAD_REQUEST, axum::Json(json!({"error": {"message": "n is too big", "type": "invalid_request_error", "param": "n", "code": null}}))) }
        }),
    );
    let b = HttpBackend::new(cfg(&start(app)), None).unwrap();
    let e = b.complete(&req()).unwrap_err();
    assert!(matches!(e, BackendError::Http { status: 400, .. }), "{e}");
    assert!(e.to_string().contains("n is too big"));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[test]
fn timeouts_are_retried_then_reported() {
    // The server would answer after a minute; a client that did not enforce its 0.2 s timeout
    // would get that answer and the error assertion below would fail (no clock is read here).
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move || {
            h.fetch_add(1, Ordering::SeqCst);
            async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                axum::Json(ok_body(2))
            }
        }),
    );
    let mut c = cfg(&start(app));
    c.timeout_s = 0.2;
    c.max_retries = 1;
    let (wait, waits) = recorded_waits();
    let b = HttpBackend::with_wait(c, None, wait).unwrap();
    let e = b.complete(&req()).unwrap_err().to_string();
    assert!(
        e.contains("after 2 attempts") && e.contains("timed out"),
        "{e}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    assert_eq!(
        waits.lock().unwrap().len(),
        1,
        "one wait between the two attempts"
    );
}

#[test]
fn api_key_is_sent_but_never_leaks() {
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let s = seen.clone();
    // A server that echoes the key in its error, as some do.
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move |headers: HeaderMap| {
            let auth = headers.get("authorization").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
            s.lock().unwrap().push(auth.clone());
            async move {
                let code = if auth.ends_with("wrong") { StatusCode::UNAUTHORIZED } else { StatusCode::SERVICE_UNAVAILABLE };
                (code, axum::Json(json!({"error": {"message": format!("Incorrect API key provided: {auth}"), "type": "auth", "param": null, "code": "invalid_api_key"}})))
            }
        }),
    );
    let base = start(app);
    let c = cfg(&base);
    let b = HttpBackend::new(c.clone(), Some(ApiKey::new(KEY))).unwrap();
    let e = b.complete(&req()).unwrap_err();
    assert!(seen
        .lock()
        .unwrap()
        .iter()
        .all(|a| a == &format!("Bearer {KEY}")));
    let texts = [
        format!("{e}"),
        format!("{e:?}"),
        format!("{b:?}"),
        format!("{c:?}"),
        format!("{:?}", ApiKey::new(KEY)),
    ];
    for t in &texts {
        assert!(!t.contains(KEY) && !t.contains("SECRET"), "leaked: {t}");
    }
    assert!(
        texts[0].contains("Incorrect API key provided: Bearer <redacted>"),
        "{}",
        texts[0]
    );
    // A non-retryable 401 is redacted too.
    let wrong = format!("{KEY}-wrong");
    let b = HttpBackend::new(c, Some(ApiKey::new(wrong.clone()))).unwrap();
    let e = b.complete(&req()).unwrap_err();
    assert!(matches!(e, BackendError::Http { status: 401, .. }));
    assert!(!format!("{e} {e:?}").contains("SECRET"), "{e}");
}

#[test]
fn cache_answers_repeated_requests_without_the_key_on_disk() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move || {
            h.fetch_add(1, Ordering::SeqCst);
            async { axum::Json(ok_body(2)) }
        }),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(&start(app));
    c.cache_dir = Some(dir.path().to_path_buf());
    let b = HttpBackend::new(c.clone(), Some(ApiKey::new(KEY))).unwrap();
    let first = b.complete(&req()).unwrap();
    let second = b.complete(&req()).unwrap();
    assert_eq!(first, second);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    let mut other = req();
    other.seed = 1;
    b.complete(&other).unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    // A different key shares the cache: keys are not part of cache keys.
    let b2 = HttpBackend::new(c, Some(ApiKey::new("sk-other"))).unwrap();
    b2.complete(&req()).unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    let mut files = 0;
    for sub in std::fs::read_dir(dir.path()).unwrap() {
        for f in std::fs::read_dir(sub.unwrap().path()).unwrap() {
            let p = f.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            assert!(name.len() == 64 + 5 && name.ends_with(".json"), "{name}");
            assert!(!std::fs::read_to_string(&p).unwrap().contains(KEY));
            files += 1;
        }
    }
    assert_eq!(files, 2);
}

#[test]
fn concurrency_and_rate_limits_hold() {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (f, p) = (in_flight.clone(), peak.clone());
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move || {
            let (f, p) = (f.clone(), p.clone());
            async move {
                let now = f.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                f.fetch_sub(1, Ordering::SeqCst);
                axum::Json(ok_body(2))
            }
        }),
    );
    let base = start(app);
    let mut c = cfg(&base);
    c.max_concurrency = 2;
    let b = HttpBackend::new(c, None).unwrap();
    let reqs: Vec<_> = (0..8)
        .map(|i| {
            let mut r = req();
            r.seed = i;
            r
        })
        .collect();
    let out = b.complete_many(&reqs);
    assert!(out.iter().all(|r| r.is_ok()));
    assert_eq!(peak.load(Ordering::SeqCst), 2);
    // 6 requests per minute: the limiter asks to wait about 10, 20 and 30 s before the second,
    // third and fourth request (recorded, not slept through).
    let mut c = cfg(&base);
    c.requests_per_minute = Some(6.0);
    c.max_concurrency = 8;
    let (wait, waits) = recorded_waits();
    let b = HttpBackend::with_wait(c, None, wait).unwrap();
    let out = b.complete_many(&reqs[..4]);
    assert!(out.iter().all(|r| r.is_ok()));
    let mut w = waits.lock().unwrap().clone();
    w.sort();
    assert_eq!(w.len(), 3, "{w:?}");
    for (i, d) in w.iter().enumerate() {
        let slot = Duration::from_secs(10 * (i as u64 + 1));
        // The delay is the slot minus the time already spent since the first request.
        assert!(*d <= slot && *d > slot - Duration::from_secs(5), "{w:?}");
    }
}

#[test]
fn exact_scoring_is_detected_and_unsupported_over_plain_chat_apis() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    // A plain server: ignores `prompt_logprobs` and answers without them.
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move || {
            h.fetch_add(1, Ordering::SeqCst);
            async { axum::Json(ok_body(1)) }
        }),
    );
    let b = HttpBackend::new(cfg(&start(app)), None).unwrap();
    assert!(!b.capabilities().exact_scoring);
    assert!(!b.capabilities().exact_scoring);
    let e = b
        .score_options(&Conversation::user(None, "Hi"), &["A".into()])
        .unwrap_err();
    assert!(matches!(e, BackendError::Unsupported { .. }));
    assert!(e.to_string().contains("estimator"));
    assert_eq!(hits.load(Ordering::SeqCst), 1, "detection runs once");
    let e = b
        .score_range(&Conversation::user(None, "Hi"), 0, 9)
        .unwrap_err();
    assert!(matches!(e, BackendError::Unsupported { .. }));
    // Configured off: no request at all.
    let mut c = cfg("http://127.0.0.1:9/v1");
    c.prompt_logprobs = Some(false);
    let b = HttpBackend::new(c, None).unwrap();
    assert!(!b.capabilities().exact_scoring);
}

/// A server that records every request body and answers each with `answer(hit number)`.
fn recording(
    answer: impl Fn(usize) -> axum::response::Response + Clone + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move |axum::Json(body): axum::Json<serde_json::Value>| {
            let (s, answer) = (s.clone(), answer.clone());
            async move {
                let n = {
                    let mut s = s.lock().unwrap();
                    s.push(body);
                    s.len() - 1
                };
                answer(n)
            }
        }),
    );
    (start(app), seen)
}

fn error(status: StatusCode, message: &str) -> axum::response::Response {
    let body = json!({"error": {"message": message, "type": "invalid_request_error",
        "param": null, "code": null}});
    (status, axum::Json(body)).into_response()
}

#[test]
fn model_families_are_told_by_name() {
    use selfaware_backend::ModelFamily::{Chat, Reasoning};
    for (name, family) in [
        ("o1", Reasoning),
        ("o3-mini", Reasoning),
        ("o4-mini-2025-04-16", Reasoning),
        ("gpt-5", Reasoning),
        ("gpt-5-mini", Reasoning),
        ("ft:o4-mini-2025-04-16:acme:risky:abc123", Reasoning),
        ("gpt-5-chat-latest", Chat),
        ("gpt-4o", Chat),
        ("gpt-4.1-mini", Chat),
        ("ft:gpt-4o-2024-08-06:acme::x", Chat),
        ("omni-moderation-latest", Chat),
        ("tiny", Chat),
    ] {
        assert_eq!(selfaware_backend::ModelFamily::of(name), family, "{name}");
    }
}

/// Reasoning models take `max_completion_tokens` and refuse `temperature`, `top_p` and
/// `logprobs`: none of those is sent, so they can serve as judges (temperature 0 asked).
#[test]
fn reasoning_models_get_max_completion_tokens_and_no_sampling_settings() {
    let (base, seen) = recording(|_| axum::Json(ok_body(1)).into_response());
    let mut judge_req = CompletionRequest::new(Conversation::user(None, "Grade this"));
    judge_req.temperature = 0.0;
    judge_req.max_tokens = 7;
    for (model, reasoning) in [("o3-mini", true), ("gpt-5", true), ("gpt-4o", false)] {
        let mut c = cfg(&base);
        c.model = model.into();
        let b = HttpBackend::new(c, None).unwrap();
        assert_eq!(b.complete(&judge_req).unwrap().choices[0].text, "answer 0");
        let body = seen.lock().unwrap().pop().unwrap();
        let o = body.as_object().unwrap();
        assert_eq!(o["model"], model);
        if reasoning {
            assert_eq!(o["max_completion_tokens"], 7, "{body}");
            for refused in [
                "max_tokens",
                "temperature",
                "top_p",
                "logprobs",
                "top_logprobs",
            ] {
                assert!(
                    !o.contains_key(refused),
                    "{model}: {refused} sent in {body}"
                );
            }
        } else {
            assert_eq!(o["max_tokens"], 7, "{body}");
            assert_eq!(o["temperature"], 0.0, "{body}");
            assert!(!o.contains_key("max_completion_tokens"), "{body}");
        }
    }
    // Log-probabilities cannot come from a reasoning model: an error, nothing sent.
    let mut c = cfg(&base);
    c.model = "o3".into();
    let b = HttpBackend::new(c, None).unwrap();
    let e = b.complete(&req()).unwrap_err();
    assert!(matches!(e, BackendError::Unsupported { .. }), "{e}");
    assert!(seen.lock().unwrap().is_empty());
    // Nor is their support of prompt log-probabilities probed.
    assert!(!b.has_prompt_logprobs().unwrap());
    assert!(seen.lock().unwrap().is_empty());
}

/// Only the server's own answer about `prompt_logprobs` switches to the estimators; a failed
/// probe (bad key, rate limit, server error) is an error, and is asked again later.
#[test]
fn the_prompt_logprobs_probe_changes_method_only_on_the_servers_word() {
    // The parameter refused by name (OpenAI's answer): estimators.
    let (base, seen) = recording(|_| {
        error(
            StatusCode::BAD_REQUEST,
            "Unrecognized request argument supplied: prompt_logprobs",
        )
    });
    let b = HttpBackend::new(cfg(&base), None).unwrap();
    assert!(!b.has_prompt_logprobs().unwrap());
    assert!(!b.capabilities().exact_scoring);
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert_eq!(seen.lock().unwrap()[0]["prompt_logprobs"], 0);

    // A bad key: the error, not a change of method.
    let (base, _) = recording(|_| error(StatusCode::UNAUTHORIZED, "Incorrect API key provided"));
    let b = HttpBackend::new(cfg(&base), None).unwrap();
    let e = b.has_prompt_logprobs().unwrap_err();
    assert!(matches!(e, BackendError::Http { status: 401, .. }), "{e}");
    let e = b
        .score_options(&Conversation::user(None, "Hi"), &["A".into()])
        .unwrap_err();
    assert!(matches!(e, BackendError::Http { status: 401, .. }), "{e}");
    // Undecided, the capabilities lead to the exact path, which reports the failure.
    assert!(b.capabilities().exact_scoring);

    // A 400 about something else is no answer either.
    let (base, _) = recording(|_| error(StatusCode::BAD_REQUEST, "model `m` does not exist"));
    let b = HttpBackend::new(cfg(&base), None).unwrap();
    assert!(b.has_prompt_logprobs().is_err());

    // Rate limited, then server errors past the retries, then the answer: the failures are
    // errors (after retries), and the probe is asked again until the server answers.
    let prompt_body = json!({"id": "x", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "x"},
            "logprobs": null, "finish_reason": "length"}],
        "prompt_logprobs": [null, {"7": {"logprob": -1.5, "decoded_token": "Hi"}}]});
    let (base, seen) = recording(move |n| match n {
        0..=3 => error(StatusCode::TOO_MANY_REQUESTS, "slow down"),
        4..=7 => error(StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
        _ => axum::Json(prompt_body.clone()).into_response(),
    });
    let b = HttpBackend::new(cfg(&base), None).unwrap();
    let e = b.has_prompt_logprobs().unwrap_err();
    assert!(
        matches!(e, BackendError::RetriesExhausted { attempts: 4, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("429"), "{e}");
    let e = b.has_prompt_logprobs().unwrap_err();
    assert!(e.to_string().contains("503"), "{e}");
    assert!(b.has_prompt_logprobs().unwrap());
    assert!(b.capabilities().exact_scoring);
    assert_eq!(
        seen.lock().unwrap().len(),
        9,
        "decided once, then remembered"
    );
}
