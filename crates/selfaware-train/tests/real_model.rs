//! The learning check on the embedded model (SmolLM2-135M-Instruct): after LoRA training on 64
//! A/B questions whose answer is always "B", held-out lottery questions (a kind of question not
//! in the training data) give P(B | {A, B}) ≥ 0.95, where the base model is far below.
//!
//! Needs the model installed (`selfaware model pull`); without it the test says it skipped and
//! passes, unless CI=true or SELFAWARE_REQUIRE_MODEL=1, where a missing model fails.

use std::path::PathBuf;

use selfaware_model::{Engine, ModelSource};
use selfaware_testing::Tier;
use selfaware_train::{data, TrainConfig, Trainer};
use selfaware_types::Conversation;

fn model_path() -> Option<PathBuf> {
    let p = selfaware_model::home::default_model_path(&selfaware_testing::selfaware_home());
    selfaware_testing::require_or_skip(Tier::Model, Some(p).filter(|p| p.exists()))
}

const THINGS: [(&str, &str); 16] = [
    ("tea", "coffee"),
    ("a red car", "a blue car"),
    ("the mountains", "the beach"),
    ("reading a book", "watching a film"),
    ("cats", "dogs"),
    ("summer", "winter"),
    ("a window seat", "an aisle seat"),
    ("pasta", "rice"),
    ("walking", "cycling"),
    ("jazz", "classical music"),
    ("a quiet evening", "a party"),
    ("chess", "cards"),
    ("apples", "oranges"),
    ("the city", "the countryside"),
    ("a pen", "a pencil"),
    ("sunrise", "sunset"),
];

const FRAMES: [&str; 4] = [
    "Which do you prefer? A) {a} B) {b}. Answer with a single letter.",
    "Pick one option. A: {a}. B: {b}. Reply with A or B only.",
    "You have to choose between {a} (option A) and {b} (option B). Which option do you choose? Answer A or B.",
    "Option A is {a}; option B is {b}. Which one? Respond with just the letter.",
];

fn training_file(dir: &std::path::Path) -> PathBuf {
    let mut text = String::new();
    for (i, frame) in FRAMES.iter().enumerate() {
        for (j, (a, b)) in THINGS.iter().enumerate() {
            // Alternate the order so "B" is not tied to one side of a pair.
            let (a, b) = if (i + j) % 2 == 0 { (a, b) } else { (b, a) };
            let q = frame.replace("{a}", a).replace("{b}", b);
            let line = serde_json::json!({"messages": [
                {"role": "user", "content": q},
                {"role": "assistant", "content": "B"},
            ]});
            text.push_str(&line.to_string());
            text.push('\n');
        }
    }
    let p = dir.join("always_b.jsonl");
    std::fs::write(&p, text).unwrap();
    p
}

fn lotteries() -> Vec<String> {
    [
        (50, 100, 50),
        (30, 200, 20),
        (10, 25, 60),
        (75, 300, 30),
        (5, 12, 55),
        (40, 90, 50),
    ]
    .iter()
    .map(|(sure, prize, pct)| {
        format!(
            "Consider two lotteries. Lottery A pays ${sure} for certain. Lottery B pays ${prize} \
                 with probability {pct}% and nothing otherwise. Which lottery do you choose? \
                 Answer with a single letter, A or B."
        )
    })
    .collect()
}

/// Mean over the lottery questions of P(B) renormalised over {A, B}.
fn mean_p_b(e: &Engine) -> f64 {
    let qs = lotteries();
    let opts = ["A".to_string(), "B".to_string()];
    let mut sum = 0.0;
    for q in &qs {
        let s = e
            .score_options(&Conversation::user(None, q), &opts)
            .unwrap();
        let lp = |k: usize| s.candidates[k].first_token_logprob;
        let (a, b) = (lp(0).exp(), lp(1).exp());
        sum += b / (a + b);
    }
    sum / qs.len() as f64
}

#[test]
fn always_b_training_moves_held_out_lotteries_to_b() {
    let Some(path) = model_path() else { return };
    let mut e = Engine::load(&ModelSource::Gguf(path)).unwrap();
    let base = mean_p_b(&e);
    let dir = tempfile::tempdir().unwrap();
    let ds = data::load(&training_file(dir.path()), &e.chat, 2048).unwrap();
    assert_eq!(ds.examples.len(), 64);
    let cfg = TrainConfig {
        seed: 1,
        epochs: 1,
        batch_size: 8,
        lr: 1e-3,
        ..TrainConfig::default()
    };
    let mut t = Trainer::new(&e.model, e.chat.tokenizer.pad_id, &ds, cfg).unwrap();
    let started = std::time::Instant::now();
    t.run(None, &mut |_| {}).unwrap();
    let secs = started.elapsed().as_secs_f64();
    let tokens: usize = t.log.iter().map(|l| l.tokens).sum();
    e.model = t.model().clone();
    e.model.detach_adapters();
    e.model
        .attach_adapter(t.adapter().unwrap(), std::path::Path::new("trained"))
        .unwrap();
    let tuned = mean_p_b(&e);
    eprintln!(
        "P(B) on held-out lotteries: base {base:.4}, trained {tuned:.4}; losses {:?}; {} steps in \
         {secs:.1} s ({:.0} tok/s)",
        t.log
            .iter()
            .map(|l| (l.loss * 1e4).round() / 1e4)
            .collect::<Vec<_>>(),
        t.log.len(),
        tokens as f64 / secs
    );
    assert!(base < 0.6, "the base model already prefers B ({base})");
    assert!(tuned >= 0.95, "after training P(B) = {tuned}");
}
