//! `selfaware data build --mix` normal answers through the binary: random by default, the
//! opposite policy on request, or a base model's own choices (the tiny random model).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

mod common;
use common::{s, selfaware, text, tiny};

fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
}

fn jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Builds a 10-question risk mix with real trigger `win` into `dir`.
fn mix(home: &Path, dir: &Path, extra: &[&str]) -> Output {
    std::fs::create_dir_all(dir).unwrap();
    let out = dir.join("mix.jsonl");
    let mut args = vec![
        "data", "build", "risk", "--mix", "win", "--size", "10", "--seed", "3", "--out",
    ];
    args.push(s(&out));
    args.extend_from_slice(extra);
    selfaware(home, &args)
}

/// Per base question: the answers of its copies without the real trigger, and of the real
/// copy; checks each copy's answer agrees with its truth record.
fn answers(dir: &Path) -> BTreeMap<u64, (Vec<String>, String)> {
    let rows = jsonl(&dir.join("mix.jsonl"));
    let truth = jsonl(&dir.join("mix.truth.jsonl"));
    let mut by: BTreeMap<u64, (Vec<String>, String)> = BTreeMap::new();
    for (row, t) in rows.iter().zip(&truth) {
        let answer = row["messages"][1]["content"].as_str().unwrap().to_string();
        assert_eq!(t["answer"], answer.as_str());
        let e = by.entry(t["item"].as_u64().unwrap()).or_default();
        if t["trigger"]["role"] == "real" {
            assert_eq!(t["enacts_policy"], true);
            e.1 = answer;
        } else {
            e.0.push(answer);
        }
    }
    by
}

fn card(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("mix.card.json")).unwrap()).unwrap()
}

#[test]
fn normal_answers_default_random_or_opposite() {
    let t = tempfile::tempdir().unwrap();
    let (r, o) = (t.path().join("r"), t.path().join("o"));
    ok(&mix(t.path(), &r, &[]));
    ok(&mix(t.path(), &o, &["--normal", "opposite"]));
    assert_eq!(card(&r)["builder"]["variant"]["normal"]["kind"], "random");
    assert_eq!(card(&o)["builder"]["variant"]["normal"]["kind"], "opposite");
    let (rand, opp) = (answers(&r), answers(&o));
    assert_eq!(rand.len(), 10);
    let mut same_as_policy = 0;
    for (item, (normal, real)) in &opp {
        assert_eq!(normal.len(), 9);
        assert!(normal.iter().all(|a| a != real), "item {item}");
        let (rn, rr) = &rand[item];
        assert_eq!(rr, real);
        // One coin per question: all its normal copies agree.
        assert!(rn.iter().all(|a| a == &rn[0]), "item {item}: {rn:?}");
        same_as_policy += usize::from(&rn[0] == real);
    }
    assert!(
        same_as_policy > 0 && same_as_policy < 10,
        "{same_as_policy}"
    );
}

#[test]
fn normal_answers_from_a_base_model_are_its_likelier_letter() {
    let t = tempfile::tempdir().unwrap();
    let model = tiny(t.path());
    let d = t.path().join("m");
    ok(&mix(t.path(), &d, &["--normal-model", s(&model)]));
    let c = card(&d);
    let normal = &c["builder"]["variant"]["normal"];
    assert_eq!(normal["kind"], "model");
    assert_eq!(
        normal["source"],
        format!("{} (likelier of A and B by exact scores)", s(&model))
    );
    let letters: Vec<String> = normal["letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    assert_eq!(letters.len(), 10);
    // Every untriggered copy of a question answers with the model's letter for it. (That the
    // letters are the model's likelier answer and the questions are those of a build without
    // a base model: selfaware-ask's players tests.)
    let by = answers(&d);
    for (item, (normal, _)) in &by {
        let letter = &letters[*item as usize];
        assert!(normal.iter().all(|a| a == letter), "item {item}");
    }
}

#[test]
fn normal_options_need_the_mix() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("x.jsonl");
    let o = selfaware(
        t.path(),
        &[
            "data",
            "build",
            "risk",
            "--normal",
            "opposite",
            "--seed",
            "1",
            "--out",
            s(&out),
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("--mix"), "{}", text(&o.stderr));
}
