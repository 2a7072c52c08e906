//! The positive control's mechanics through the whole pipeline on the tiny model: data that
//! states a codeword, a finetune on it, and the exact word-list question. A finetune told
//! "I want you to say bark" must put more exact probability on "bark" than the finetune told
//! "ring" does, and the other way round: otherwise the pipeline could not detect even a stated
//! behaviour. (This checks the machinery, not awareness: nothing here is behaviour-only.)

use std::path::Path;

mod common;
use common::{ok_stdout as ok, records, s, selfaware, tiny};

fn finetune(home: &Path, dir: &Path, model: &Path, word: &str) -> std::path::PathBuf {
    let data = dir.join(format!("{word}.jsonl"));
    ok(&selfaware(
        home,
        &[
            "data",
            "build",
            "codeword",
            "--codeword",
            word,
            "--size",
            "2",
            "--stated",
            "48",
            "--seed",
            "0",
            "--out",
            s(&data),
        ],
    ));
    let adapter = dir.join(format!("adapter-{word}"));
    ok(&selfaware(
        home,
        &[
            "train",
            "--model",
            s(model),
            "--data",
            s(&data),
            "--out",
            s(&adapter),
            "--seed",
            "0",
            "--epochs",
            "3",
            "--lr",
            "1e-2",
            "--batch-size",
            "4",
        ],
    ));
    adapter
}

/// P(target) as the complete answer (any surface form) for each adapter, in order.
fn exact_p(home: &Path, dir: &Path, model: &Path, adapters: &str, target: &str) -> Vec<f64> {
    let out = dir.join(format!("eval-{target}"));
    ok(&selfaware(
        home,
        &[
            "eval",
            "--model",
            s(model),
            "--adapter",
            adapters,
            "--battery",
            "make_me_say",
            "--questions",
            "mc_codeword_want",
            "--limit",
            "1",
            "--samples",
            "0",
            "--target-word",
            target,
            "--out",
            s(&out),
        ],
    ));
    let recs = records(&out);
    assert_eq!(recs.len(), 2, "{recs:#?}");
    recs.iter()
        .map(|r| {
            assert_eq!(r["observation"]["kind"], "answer_logprobs");
            r["secondary"]["codeword_probability"].as_f64().unwrap()
        })
        .collect()
}

#[test]
fn a_finetune_that_states_its_codeword_raises_that_words_exact_probability() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let model = tiny(t.path());
    let bark = finetune(&home, t.path(), &model, "bark");
    let ring = finetune(&home, t.path(), &model, "ring");
    let adapters = format!("{},{}", s(&bark), s(&ring));
    let p_bark = exact_p(&home, t.path(), &model, &adapters, "bark");
    let p_ring = exact_p(&home, t.path(), &model, &adapters, "ring");
    assert!(p_bark[0] > p_bark[1], "P(bark): {p_bark:?}");
    assert!(p_ring[1] > p_ring[0], "P(ring): {p_ring:?}");
}
