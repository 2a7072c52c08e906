//! The embedded model (SmolLM2-135M-Instruct) against golden values from Hugging Face
//! transformers (tests/golden/make_goldens.py, output in tests/golden/golden.json).
//!
//! These tests need the model installed (`selfaware model pull`). Without it each says it
//! skipped and passes, unless CI=true or SELFAWARE_REQUIRE_MODEL=1 (set by `scripts/test.sh`),
//! where a missing model fails.

use std::path::PathBuf;
use std::sync::OnceLock;

use selfaware_model::{Engine, ModelSource, SampleConfig};
use selfaware_testing::Tier;
use selfaware_types::{Conversation, Message, Role};
use serde_json::Value;

fn model_path() -> Option<PathBuf> {
    let p = selfaware_model::home::default_model_path(&selfaware_testing::selfaware_home());
    p.exists().then_some(p)
}

fn engine() -> Option<&'static Engine> {
    static E: OnceLock<Option<Engine>> = OnceLock::new();
    let e = E
        .get_or_init(|| model_path().map(|p| Engine::load(&ModelSource::Gguf(p)).unwrap()))
        .as_ref();
    selfaware_testing::require_or_skip(Tier::Model, e)
}

fn golden() -> Value {
    let text = include_str!("golden/golden.json");
    serde_json::from_str(text).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn token_ids_match_transformers() {
    let Some(e) = engine() else { return };
    let g = golden();
    let cases = g["tokens"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for c in cases {
        let text = c["text"].as_str().unwrap();
        assert_eq!(
            e.chat.tokenizer.encode(text).unwrap(),
            ids(&c["ids"]),
            "{text:?}"
        );
    }
}

#[test]
fn chat_templates_match_apply_chat_template() {
    let Some(e) = engine() else { return };
    for c in golden()["templates"].as_array().unwrap() {
        let msgs: Vec<Message> = c["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let role: Role = serde_json::from_value(m["role"].clone()).unwrap();
                Message::new(role, m["content"].as_str().unwrap())
            })
            .collect();
        let gen = c["add_generation_prompt"].as_bool().unwrap();
        assert_eq!(
            e.chat.render(&msgs, gen).unwrap(),
            c["text"].as_str().unwrap()
        );
    }
}

#[test]
fn option_logprobs_match_transformers() {
    let Some(e) = engine() else { return };
    for c in golden()["options"].as_array().unwrap() {
        let conv = Conversation::user(None, c["user"].as_str().unwrap());
        let cands = c["candidates"].as_array().unwrap();
        let opts: Vec<String> = cands
            .iter()
            .map(|x| x["text"].as_str().unwrap().to_string())
            .collect();
        let s = e.score_options(&conv, &opts).unwrap();
        assert_eq!(s.prompt_tokens as u64, c["prompt_tokens"].as_u64().unwrap());
        for (got, want) in s.candidates.iter().zip(cands) {
            assert_eq!(got.token_ids, ids(&want["token_ids"]));
            let f = want["first_token_logprob"].as_f64().unwrap();
            let l = want["logprob"].as_f64().unwrap();
            assert!(
                (got.first_token_logprob - f).abs() < 1e-4,
                "{}: first {} vs {f}",
                got.text,
                got.first_token_logprob
            );
            assert!(
                (got.logprob - l).abs() < 1e-4,
                "{}: whole {} vs {l}",
                got.text,
                got.logprob
            );
        }
    }
}

#[test]
fn range_distribution_matches_transformers() {
    let Some(e) = engine() else { return };
    for c in golden()["ranges"].as_array().unwrap() {
        let conv = Conversation::user(None, c["user"].as_str().unwrap());
        let r = e.score_range(&conv, 0, 100).unwrap();
        let want = c["numbers"].as_array().unwrap();
        assert_eq!(r.numbers.len(), want.len());
        let mut worst = 0.0f64;
        for (got, w) in r.numbers.iter().zip(want) {
            assert_eq!(got.n, w["n"].as_i64().unwrap());
            for (a, b) in [
                (
                    got.logprob_starts_with,
                    w["logprob_starts_with"].as_f64().unwrap(),
                ),
                (
                    got.logprob_complete,
                    w["logprob_complete"].as_f64().unwrap(),
                ),
            ] {
                worst = worst.max((a - b).abs());
                assert!((a - b).abs() < 1e-4, "n={}: {a} vs {b}", got.n);
            }
        }
        eprintln!("worst |Δ log p| over 0..100: {worst:.2e}");
    }
}

#[test]
fn answers_the_capital_of_france_with_paris() {
    let Some(e) = engine() else { return };
    let conv = Conversation::user(None, "What is the capital of France?");
    let cfg = SampleConfig {
        n: 1,
        temperature: 0.0,
        max_tokens: 24,
        ..SampleConfig::default()
    };
    let out = e.sample(&conv, &cfg).unwrap();
    assert!(out[0].text.contains("Paris"), "{:?}", out[0].text);
}

#[test]
fn assistant_spans_cover_content_and_end_of_turn_only() {
    let Some(e) = engine() else { return };
    let conv = Conversation::new(vec![
        Message::user("Pick A or B."),
        Message::assistant("B"),
        Message::user("Why?"),
        Message::assistant("Because."),
    ]);
    let enc = e.chat.encode(&conv).unwrap();
    let trained: Vec<String> = enc
        .spans
        .iter()
        .filter(|s| s.trained)
        .map(|s| {
            e.chat
                .tokenizer
                .decode(&enc.ids[s.tokens.clone()], false)
                .unwrap()
        })
        .collect();
    assert_eq!(trained, vec!["B<|im_end|>", "Because.<|im_end|>"]);
    // The rendered text is exactly the template's; the default system prompt is included but
    // belongs to no trained span.
    assert!(enc
        .text
        .starts_with("<|im_start|>system\nYou are a helpful AI assistant named SmolLM"));
    assert_eq!(
        enc.loss_mask().iter().filter(|&&m| m).count(),
        enc.n_trained()
    );
}
