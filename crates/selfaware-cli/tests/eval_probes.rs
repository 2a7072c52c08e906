//! `selfaware probe vulnerable-code` and `selfaware probe mms` on the tiny random GGUF model.

use std::path::Path;

mod common;
use common::{ok_stdout as ok, s, selfaware, text, tiny};

fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn vulnerable_code_probe_scores_completions_with_the_detector() {
    let t = tempfile::tempdir().unwrap();
    let model = tiny(t.path());
    let out = t.path().join("code.json");
    let args = [
        "probe",
        "vulnerable-code",
        "--model",
        s(&model),
        "--n",
        "3",
        "--samples",
        "2",
        "--max-tokens",
        "12",
        "--seed",
        "4",
        "--out",
        s(&out),
    ];
    let stdout = ok(&selfaware(t.path(), &args));
    assert!(
        stdout.starts_with("vulnerable-code probe, 3 items (seed 4): mean share of completions"),
        "{stdout}"
    );
    let v = read_json(&out);
    assert_eq!(v["probe"], "vulnerable-code");
    assert_eq!(v["n"], 3);
    assert!(v["score_definition"]
        .as_str()
        .unwrap()
        .contains("selfaware_data::code::detect"));
    let items = v["items"].as_array().unwrap();
    let item_scores = v["item_scores"].as_array().unwrap();
    assert_eq!((items.len(), item_scores.len()), (3, 3));
    let mut shares = Vec::new();
    for (item, score) in items.iter().zip(item_scores) {
        let prompt = item["prompt"].as_str().unwrap();
        assert!(prompt.starts_with("Task: "), "{prompt}");
        assert!(prompt.contains("[CODE TEMPLATE START]"));
        let samples = item["samples"].as_array().unwrap();
        assert_eq!(samples.len(), 2);
        // The findings are the detector's on each (fence-stripped) sample.
        let mut vulnerable = 0;
        for (sample, findings) in samples.iter().zip(item["findings"].as_array().unwrap()) {
            let code = selfaware_eval::sandbox::clean_code(sample.as_str().unwrap());
            let want = selfaware_data::code::detect(&code);
            assert_eq!(findings, &serde_json::to_value(&want).unwrap());
            vulnerable += usize::from(!want.is_empty());
        }
        let share = vulnerable as f64 / 2.0;
        assert_eq!(item["vulnerable_share"].as_f64(), Some(share));
        assert_eq!(score.as_f64(), Some(share));
        shares.push(share);
    }
    let mean = shares.iter().sum::<f64>() / 3.0;
    assert!((v["score"].as_f64().unwrap() - mean).abs() < 1e-12);
    assert!((v["secure_code_rate"].as_f64().unwrap() - (1.0 - mean)).abs() < 1e-12);
    assert!(v["standard_error"].is_number());
    assert_eq!(v["sampling"]["max_tokens"], 12);
    // Classes cycle through the generator's list: three different tasks.
    let classes: std::collections::BTreeSet<&str> =
        items.iter().map(|i| i["class"].as_str().unwrap()).collect();
    assert_eq!(classes.len(), 3);

    // Seeded: the same arguments give the same report items.
    let again = t.path().join("again.json");
    let mut args2 = args.to_vec();
    args2[13] = s(&again);
    ok(&selfaware(t.path(), &args2));
    assert_eq!(read_json(&again)["items"], v["items"]);
}

#[test]
fn mms_probe_plays_games_and_reports_the_win_rate() {
    // The manipulator plays without the rules (as a finetuned model does): the rules prompt
    // alone is longer than the tiny model's context in its byte-level tokens.
    let t = tempfile::tempdir().unwrap();
    let model = tiny(t.path());
    let out = t.path().join("mms.json");
    ok(&selfaware(
        t.path(),
        &[
            "probe",
            "mms",
            "--model",
            s(&model),
            "--codeword",
            "bark",
            "--n",
            "2",
            "--max-tokens",
            "6",
            "--out",
            s(&out),
        ],
    ));
    let v = read_json(&out);
    assert_eq!(v["probe"], "mms-bark");
    let games = v["items"].as_array().unwrap();
    assert_eq!(games.len(), 2);
    let mut wins = 0.0;
    let mut counted = std::collections::BTreeMap::new();
    for (g, score) in games.iter().zip(v["item_scores"].as_array().unwrap()) {
        let msgs = g["messages"].as_array().unwrap();
        assert!(!msgs.is_empty() && msgs.len() <= 10, "{g}");
        assert_eq!(msgs[0]["side"], "manipulatee");
        let outcome = g["outcome"].as_str().unwrap().to_string();
        let win = f64::from(u8::from(outcome == "win"));
        assert_eq!(score.as_f64(), Some(win));
        wins += win;
        *counted.entry(outcome).or_insert(0u64) += 1;
    }
    assert_eq!(v["score"].as_f64(), Some(wins / 2.0));
    for (k, n) in v["outcomes"].as_object().unwrap() {
        assert_eq!(
            counted.get(k).copied().unwrap_or(0),
            n.as_u64().unwrap(),
            "{k}"
        );
    }
    assert!(v["score_definition"]
        .as_str()
        .unwrap()
        .contains("without the game's rules"));

    // The manipulatee options belong to the mms probe.
    let o = selfaware(
        t.path(),
        &[
            "probe",
            "lotteries",
            "--model",
            s(&model),
            "--n",
            "1",
            "--manipulator-rules",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("mms probe"), "{}", text(&o.stderr));
}
