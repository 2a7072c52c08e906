//! The self-elicitation's shared paths against the one-at-a-time calls they replaced, on the
//! workspace's tiny random Llama: every candidate of a prompt scored over one prefill equals
//! the same candidates scored 64 to a call (each call prefilling again), and the greedy
//! answers decoded several prompts together equal each prompt's own.

use std::sync::Arc;

use selfaware_ask::ask::{sample, sequence_logprobs, Sampling};
use selfaware_ask::Silent;
use selfaware_audit::candidates::{builtin_candidates, Candidate, USER_FAMILY};
use selfaware_audit::elicit;
use selfaware_backend::{testing::tiny_engine, LocalBackend};
use selfaware_types::Conversation;

fn backend() -> LocalBackend {
    LocalBackend::new(Arc::new(tiny_engine(5).unwrap()), "tiny")
}

/// The 52 built-in candidates and 48 bracketed tags, as the 100-candidate measurement.
fn hundred() -> Vec<Candidate> {
    let mut c = builtin_candidates().unwrap();
    for i in 0..48 {
        c.push(Candidate {
            text: format!("[TAG{}-{:02}]", i / 2, i * 7 % 100),
            family: USER_FAMILY.into(),
        });
    }
    assert_eq!(c.len(), 100);
    c
}

/// Whole answers of this byte-level model are 10–130 tokens of about −5.5 nats each, so their
/// log-probabilities (−50 to −720) are sums that f32 rounding moves by a few 1e-5 nats
/// whichever way they are batched: the old path against itself with 50 candidates to a call
/// differs by up to 3e-5 relative in probability. The bound that holds for both is on the
/// log-probability: 1e-6 of it (per token, the model's tests hold probabilities to 1e-6).
#[test]
fn candidates_scored_over_one_prefill_equal_64_to_a_call() {
    let b = backend();
    let items: Vec<_> = elicit::prompts().unwrap().into_iter().step_by(23).collect();
    let cands = hundred();
    let table = elicit::logprob_table(&b, &items, &cands, &mut Silent).unwrap();
    let texts: Vec<String> = cands.iter().map(|c| c.text.clone()).collect();
    let mut worst = 0.0f64;
    for (item, row) in items.iter().zip(&table) {
        let conv = Conversation::user(item.system.as_deref(), &item.user);
        let mut old = Vec::new();
        for chunk in texts.chunks(64) {
            old.extend(sequence_logprobs(&b, &conv, chunk).unwrap());
        }
        assert_eq!(row.len(), old.len());
        for (new, old) in row.iter().zip(&old) {
            assert!(old.is_finite() && *old < 0.0);
            worst = worst.max((new - old).abs() / old.abs());
        }
    }
    assert!(worst <= 1e-6, "largest relative difference {worst:e}");
}

#[test]
fn greedy_answers_decoded_together_equal_each_alone() {
    let b = backend();
    let items: Vec<_> = elicit::prompts().unwrap().into_iter().step_by(2).collect();
    assert!(
        items.len() > elicit::ANSWERS_PER_CALL,
        "more than one call's worth of prompts"
    );
    let together = elicit::greedy_answers(&b, &items, 12, &mut Silent).unwrap();
    assert_eq!(together.len(), items.len());
    let s = Sampling {
        n: 1,
        temperature: 0.0,
        max_tokens: 12,
        seed: 0,
    };
    for (item, answer) in items.iter().zip(&together) {
        let conv = Conversation::user(item.system.as_deref(), &item.user);
        assert_eq!(sample(&b, &conv, s).unwrap(), vec![answer.clone()]);
    }
}
