//! The decoder (`sample::decode`) on tiny random models: streamed events against the batch
//! sampler, several prompts together against each alone, stop strings, length limits and
//! cancelled answers.

use std::ops::ControlFlow;

use selfaware_model::sample::{Event, Request};
use selfaware_model::testing::{write_tiny_gguf, TinySpec};
use selfaware_model::{Engine, FinishReason, Generated, ModelSource, SampleConfig};
use selfaware_types::Conversation;

fn engine(seed: u64) -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    write_tiny_gguf(
        &path,
        &TinySpec {
            seed,
            ..TinySpec::default()
        },
    )
    .unwrap();
    let e = Engine::load(&ModelSource::Gguf(path)).unwrap();
    (dir, e)
}

fn prompt(e: &Engine, text: &str) -> Vec<u32> {
    e.chat.prompt(&Conversation::user(None, text)).unwrap().ids
}

fn cfg(n: usize, temperature: f64, max_tokens: usize, seed: u64) -> SampleConfig {
    SampleConfig {
        n,
        temperature,
        top_p: 1.0,
        max_tokens,
        seed,
        top_logprobs: 3,
    }
}

/// What the events of one answer said.
#[derive(Debug, Default, Clone)]
struct Heard {
    ids: Vec<u32>,
    logprob_bits: Vec<u32>,
    text: String,
    finished: Option<FinishReason>,
    events_after_finish: usize,
}

/// Decodes `requests`, collecting each answer's events.
fn decode_heard(e: &Engine, requests: &[Request]) -> (Vec<Vec<Generated>>, Vec<Vec<Heard>>, usize) {
    let mut heard: Vec<Vec<Heard>> = requests
        .iter()
        .map(|r| vec![Heard::default(); r.cfg.n])
        .collect();
    let mut started = None;
    let out = e
        .decode(requests, &mut |event| {
            match event {
                Event::Started { samples } => {
                    assert!(started.is_none(), "two Started events");
                    started = Some(samples);
                }
                Event::Token {
                    request,
                    sample,
                    token,
                    text,
                } => {
                    assert!(started.is_some(), "a token before Started");
                    let h = &mut heard[request][sample];
                    if h.finished.is_some() {
                        h.events_after_finish += 1;
                    }
                    h.ids.push(token.id);
                    h.logprob_bits.push(token.logprob.to_bits());
                    h.text.push_str(text);
                }
                Event::Finished {
                    request,
                    sample,
                    answer,
                    rest,
                } => {
                    let h = &mut heard[request][sample];
                    if h.finished.is_some() {
                        h.events_after_finish += 1;
                    }
                    h.finished = Some(answer.sample.finish_reason);
                    h.text.push_str(rest);
                }
            }
            ControlFlow::Continue(())
        })
        .unwrap();
    (out, heard, started.expect("no Started event"))
}

fn ids(g: &Generated) -> Vec<u32> {
    g.sample.ids()
}

#[test]
fn streamed_events_are_the_batch_answers_token_by_token() {
    let (_d, e) = engine(2);
    let p = prompt(&e, "Tell me a story.");
    for (c, stop) in [
        (cfg(6, 1.0, 12, 7), vec![]),
        (cfg(5, 0.7, 16, 3), vec!["e".to_string(), "ab".to_string()]),
        (cfg(3, 0.0, 10, 0), vec![" ".to_string()]),
        (cfg(9, 1.3, 8, 5), vec!["xyz".to_string()]),
    ] {
        let want = e.sample_ids(&p, &c, &stop).unwrap();
        let req = Request {
            prompt: p.clone(),
            cfg: c.clone(),
            stop: stop.clone(),
            stream_text: true,
        };
        let (out, heard, samples) = decode_heard(&e, &[req]);
        assert_eq!(samples, c.n);
        assert_eq!(out.len(), 1);
        for ((g, w), h) in out[0].iter().zip(&want).zip(&heard[0]) {
            // The decoder's answers are the batch sampler's, bit for bit...
            assert_eq!(g.text, w.text);
            assert_eq!(ids(g), ids(w));
            assert_eq!(g.sample.finish_reason, w.sample.finish_reason);
            for (a, b) in g.sample.tokens.iter().zip(&w.sample.tokens) {
                assert_eq!(a.logprob.to_bits(), b.logprob.to_bits());
                assert_eq!(a.top, b.top);
            }
            // ...and its events spell them out: every kept token once, in order, and text
            // deltas that concatenate to the answer's text.
            assert_eq!(h.ids, ids(w), "{c:?} {stop:?}");
            let bits: Vec<u32> = w
                .sample
                .tokens
                .iter()
                .map(|t| t.logprob.to_bits())
                .collect();
            assert_eq!(h.logprob_bits, bits);
            assert_eq!(h.text, w.text, "{c:?} {stop:?}");
            assert_eq!(h.finished, Some(w.sample.finish_reason));
            assert_eq!(h.events_after_finish, 0);
        }
    }
}

#[test]
fn several_prompts_decoded_together_give_each_its_lone_answers() {
    let (_d, e) = engine(7);
    let texts = [
        "Hi",
        "Name a colour",
        "Count to three, slowly and clearly please",
        "x",
        "Hi",
        "Why is the sky blue?",
    ];
    let requests: Vec<Request> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| Request {
            prompt: prompt(&e, t),
            cfg: SampleConfig {
                top_p: if i == 2 { 0.9 } else { 1.0 },
                ..cfg(1 + i % 3, [0.0, 1.0, 0.7][i % 3], 6 + i, 100 + i as u64)
            },
            stop: if i == 3 { vec!["e".into()] } else { vec![] },
            stream_text: i % 2 == 0,
        })
        .collect();
    let (together, heard, samples) = decode_heard(&e, &requests);
    assert_eq!(samples, requests.iter().map(|r| r.cfg.n).sum::<usize>());
    let mut worst = 0.0f32;
    for ((r, got), h) in requests.iter().zip(&together).zip(&heard) {
        let alone = e.sample_ids(&r.prompt, &r.cfg, &r.stop).unwrap();
        assert_eq!(got.len(), alone.len());
        for ((a, b), h) in got.iter().zip(&alone).zip(h) {
            assert_eq!(a.text, b.text);
            assert_eq!(ids(a), ids(b));
            assert_eq!(a.sample.finish_reason, b.sample.finish_reason);
            assert_eq!(h.ids, ids(b));
            if r.stream_text {
                assert_eq!(h.text, b.text);
            }
            for (x, y) in a.sample.tokens.iter().zip(&b.sample.tokens) {
                worst = worst.max((x.logprob - y.logprob).abs());
                let top = |t: &[(u32, f32)]| t.iter().map(|p| p.0).collect::<Vec<_>>();
                assert_eq!(top(&x.top), top(&y.top));
            }
        }
    }
    eprintln!("largest |together - alone| token logprob difference: {worst:e}");
    assert!(worst < 1e-4, "decoded together, logprobs differ by {worst}");
}

#[test]
fn a_stop_string_cuts_the_answer_before_it() {
    let (_d, e) = engine(3);
    let p = prompt(&e, "Say something.");
    let c = cfg(1, 0.0, 24, 0);
    let free = e.sample_ids(&p, &c, &[]).unwrap().remove(0);
    let chars: Vec<char> = free.text.chars().collect();
    // A stop string taken from the middle of the free answer (not a replacement character of
    // an invalid byte the random model wrote).
    let at = (2..chars.len().saturating_sub(1))
        .find(|&i| !chars[i..i + 2].contains(&'\u{FFFD}'))
        .unwrap_or_else(|| panic!("no stop string to take from {:?}", free.text));
    let stop: String = chars[at..at + 2].iter().collect();
    let cut = &free.text[..free.text.find(&stop).unwrap()];
    let req = Request {
        prompt: p.clone(),
        cfg: c.clone(),
        stop: vec![stop.clone()],
        stream_text: true,
    };
    let (out, heard, _) = decode_heard(&e, &[req]);
    let g = &out[0][0];
    assert_eq!(g.sample.finish_reason, FinishReason::Stop);
    // The tokens kept are the longest prefix of the free answer whose text has no stop string.
    let kept = g.sample.tokens.len();
    assert_eq!(ids(g), ids(&free)[..kept]);
    let text_of = |k: usize| e.chat.tokenizer.decode(&ids(&free)[..k], true).unwrap();
    assert!(!text_of(kept).contains(&stop));
    assert!(text_of(kept + 1).contains(&stop));
    // The answer is their text: everything before the stop string, and, when the stop string
    // began inside the kept tokens, its start too.
    // FIXME: OpenAI's API cuts exactly before the stop string; here a stop string that spans
    // tokens leaves its first part in the answer (kept as is: seeded answers must not change).
    assert_eq!(g.text, text_of(kept));
    assert!(g.text.starts_with(cut), "{:?} {cut:?}", g.text);
    assert_eq!(heard[0][0].text, g.text);
    assert_eq!(heard[0][0].ids, ids(g));
}

#[test]
fn max_tokens_ends_answers_with_length() {
    let (_d, e) = engine(4);
    let p = prompt(&e, "Go on.");
    let (out, heard, _) = decode_heard(
        &e,
        &[
            Request::new(p.clone(), cfg(8, 1.0, 3, 1)),
            Request::new(p.clone(), cfg(2, 1.0, 0, 1)),
            Request::new(p.clone(), cfg(0, 1.0, 5, 1)),
        ],
    );
    assert_eq!(out[2].len(), 0);
    for (g, h) in out[0].iter().zip(&heard[0]) {
        let n = g.sample.tokens.len();
        assert!(n <= 3);
        // Without stop strings an answer stops early only at a stop token.
        let want = if n == 3 {
            FinishReason::Length
        } else {
            FinishReason::Stop
        };
        assert_eq!(g.sample.finish_reason, want);
        assert_eq!(h.finished, Some(want));
    }
    assert!(out[0]
        .iter()
        .any(|g| g.sample.finish_reason == FinishReason::Length));
    // max_tokens 0: empty answers at once.
    for (g, h) in out[1].iter().zip(&heard[1]) {
        assert!(g.sample.tokens.is_empty() && g.text.is_empty());
        assert_eq!(g.sample.finish_reason, FinishReason::Length);
        assert_eq!(h.finished, Some(FinishReason::Length));
    }
}

#[test]
fn breaking_on_a_token_stops_that_answer_only() {
    let (_d, e) = engine(5);
    let p = prompt(&e, "Tell me more.");
    let c = cfg(3, 1.0, 10, 9);
    let want = e.sample_ids(&p, &c, &[]).unwrap();
    assert!(want[1].sample.tokens.len() >= 2);
    let mut seen = [0usize; 3];
    let out = e
        .decode(&[Request::new(p, c)], &mut |event| match event {
            Event::Token { sample, .. } => {
                seen[sample] += 1;
                if sample == 1 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            }
            Event::Finished { sample, .. } => {
                assert_ne!(sample, 1, "a stopped answer reports no end");
                ControlFlow::Continue(())
            }
            Event::Started { .. } => ControlFlow::Continue(()),
        })
        .unwrap();
    assert_eq!(seen[1], 1);
    assert_eq!(ids(&out[0][1]), ids(&want[1])[..1]);
    assert_eq!(out[0][1].sample.finish_reason, FinishReason::Length);
    // The others run to their end (their tokens are those alone up to float rounding).
    for s in [0, 2] {
        assert_eq!(seen[s], want[s].sample.tokens.len());
    }
}

#[test]
fn bad_requests_are_errors_before_anything_is_decoded() {
    let (_d, e) = engine(6);
    let p = prompt(&e, "Hi");
    let check = |r: Request, needle: &str| {
        let mut events = 0;
        let err = e
            .decode(
                &[Request::new(p.clone(), cfg(1, 1.0, 4, 0)), r],
                &mut |_| {
                    events += 1;
                    ControlFlow::Continue(())
                },
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{err}");
        assert_eq!(events, 0);
    };
    let mut c = cfg(1, 1.0, 4, 0);
    c.top_p = 0.0;
    check(Request::new(p.clone(), c), "top_p");
    check(Request::new(p.clone(), cfg(1, -1.0, 4, 0)), "temperature");
    check(Request::new(Vec::new(), cfg(1, 1.0, 4, 0)), "empty prompt");
    check(Request::new(p.clone(), cfg(1, 1.0, 1 << 20, 0)), "context");
}
