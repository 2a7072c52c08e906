//! Many prompts' exact candidate scores, asked several at a time: the same numbers, in item
//! order, as one at a time; an error names its item.

use selfaware_ask::ask::score_options_many;
use selfaware_backend::{Backend, MockBackend, MockScript};
use selfaware_types::Conversation;

fn mock() -> MockBackend {
    MockBackend::with_fn("mock", |c| {
        let user = c.messages.last().map_or("", |m| m.content.as_str());
        // Prompt k answers "A" with probability k / 10.
        let k: f64 = user.trim_start_matches('q').parse().unwrap_or(0.0);
        let mut s = MockScript::new(&[("A", k / 10.0), ("B", 1.0 - k / 10.0)]);
        s.exact_scoring = true;
        s
    })
}

#[test]
fn scores_asked_together_equal_scores_asked_alone_in_order() {
    let b = mock();
    let items: Vec<(Conversation, Vec<String>)> = (0..7)
        .map(|k| {
            (
                Conversation::user(None, &format!("q{k}")),
                vec!["A".to_string(), "B".to_string()],
            )
        })
        .collect();
    for concurrency in [None, Some(1), Some(3)] {
        let many = score_options_many(&b, &items, concurrency, 2).unwrap();
        assert_eq!(many.len(), 7);
        for (k, ((conv, opts), got)) in items.iter().zip(&many).enumerate() {
            let alone = b.score_options(conv, opts).unwrap();
            assert_eq!(
                serde_json::to_string(got).unwrap(),
                serde_json::to_string(&alone).unwrap()
            );
            assert!((got.candidates[0].logprob.exp() - k as f64 / 10.0).abs() < 1e-9);
        }
    }
    let err = score_options_many(&b, &items, Some(0), 2)
        .unwrap_err()
        .to_string();
    assert!(err.contains("concurrency"), "{err}");
    // A backend that cannot score prompt 4 exactly.
    let bad = MockBackend::with_fn("mock", |c| {
        let user = c.messages.last().map_or("", |m| m.content.as_str());
        let mut s = MockScript::new(&[("A", 0.5), ("B", 0.5)]);
        s.exact_scoring = user != "q4";
        s
    });
    let err = score_options_many(&bad, &items, Some(2), 2)
        .unwrap_err()
        .to_string();
    assert!(err.contains("item 4"), "{err}");
}
