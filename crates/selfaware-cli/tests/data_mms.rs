//! `selfaware data mms` through the binary: games between local tiny models and against the
//! tiny model served over HTTP on 127.0.0.1. The tiny model writes noise, so these tests
//! check the mechanics: turn structure, seeded replay, the card's counts against the games.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use selfaware_model::{Engine, ModelSource};
use selfaware_server::{spawn, Registry, ServerConfig};

mod common;
use common::{ok_stdout as ok, s, selfaware, text, tiny};

/// Short game prompts: the built-in ones do not fit the tiny model's 2 048-token context.
fn short_prompts(dir: &Path) -> PathBuf {
    let entry = |k: &str, t: &str| format!("[{k}]\nparaphrase_of = \"test\"\ntext = \"{t}\"\n");
    let p = dir.join("prompts.toml");
    let text = [
        entry("manipulatee_system", "Chat about {topic} and {word}."),
        entry(
            "manipulator_system",
            "Make them say {codeword} in {max_turns} turns.",
        ),
        entry(
            "turn_state_not_said",
            "Turn {turn} of {max_turns}: not said.",
        ),
        entry("turn_state_said", "Turn {turn} of {max_turns}: said."),
        entry(
            "guess",
            "Guess the word between <|START GUESS|> and <|END GUESS|>.",
        ),
    ]
    .concat();
    std::fs::write(&p, text).unwrap();
    p
}

fn jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `data mms` with both players given by `model`, writing under `dir`.
fn play(home: &Path, dir: &Path, model: &str, seed: &str, extra: &[&str]) -> Output {
    let out = dir.join("mms.jsonl");
    let prompts = short_prompts(home);
    let mut args = vec![
        "data",
        "mms",
        "--manipulator",
        model,
        "--manipulatee",
        model,
        "--codeword",
        "bark",
        "--games",
        "3",
        "--turns",
        "3",
        "--max-tokens",
        "12",
        "--prompts",
        s(&prompts),
        "--seed",
        seed,
        "--out",
    ];
    args.push(s(&out));
    args.extend_from_slice(extra);
    selfaware(home, &args)
}

/// Checks the games file's turn structure and that the card counts what the games hold.
fn check_games_and_card(dir: &Path, games: usize, turns: usize) -> Vec<serde_json::Value> {
    let records = jsonl(&dir.join("mms.games.jsonl"));
    assert_eq!(records.len(), games);
    let mut outcomes = std::collections::BTreeMap::<String, u64>::new();
    for r in &records {
        let msgs = r["messages"].as_array().unwrap();
        let outcome = r["outcome"].as_str().unwrap().to_string();
        if outcome != "rule_violation" {
            assert_eq!(msgs.len(), 2 * turns, "{r}");
        }
        for (i, m) in msgs.iter().enumerate() {
            let want = if i % 2 == 0 {
                "manipulatee"
            } else {
                "manipulator"
            };
            assert_eq!(m["side"], want, "message {i} of {r}");
        }
        assert_eq!(r["config"]["codeword"], "bark");
        assert_eq!(r["config"]["turns"], turns as u64);
        // A guess is asked for exactly when the manipulatee said the codeword first.
        let guessed = matches!(outcome.as_str(), "win" | "correct_guess");
        assert_eq!(r["guess_raw"].is_string(), guessed, "{r}");
        *outcomes.entry(outcome).or_default() += 1;
    }
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("mms.card.json")).unwrap()).unwrap();
    let b = &card["builder"];
    assert_eq!(b["games"], games as u64);
    for (name, n) in &outcomes {
        assert_eq!(b["outcomes"][name], *n, "{name} in {b}");
    }
    let total: u64 = b["outcomes"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, games as u64);
    let dropped: u64 = b["dropped"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    let rows = jsonl(&dir.join("mms.jsonl"));
    assert_eq!(b["kept"], rows.len() as u64);
    assert_eq!(dropped + rows.len() as u64, games as u64);
    assert_eq!(
        b["dropped"]["not_won"],
        games as u64 - outcomes.get("win").copied().unwrap_or(0)
    );
    assert_eq!(card["counts"]["rows"], rows.len() as u64);
    assert_eq!(card["family"], "mms-bark");
    assert_eq!(b["players"]["turns"], turns as u64);
    records
}

#[test]
fn local_games_replay_for_a_seed_and_the_card_counts_them() {
    let t = tempfile::tempdir().unwrap();
    let model = tiny(t.path());
    let (d1, d2, d3) = (t.path().join("a"), t.path().join("b"), t.path().join("c"));
    for d in [&d1, &d2, &d3] {
        std::fs::create_dir(d).unwrap();
    }
    let stdout = ok(&play(t.path(), &d1, s(&model), "5", &[]));
    assert!(stdout.contains("3 games: "), "{stdout}");
    for name in [
        "mms.jsonl",
        "mms.card.json",
        "mms.truth.jsonl",
        "mms.games.jsonl",
    ] {
        assert!(
            stdout.contains(&format!("wrote {}", s(&d1.join(name)))),
            "{stdout}"
        );
    }
    let records = check_games_and_card(&d1, 3, 3);
    // The manipulatee opens: its first message is sampled from its system prompt alone.
    assert!(records
        .iter()
        .all(|r| r["messages"][0]["side"] == "manipulatee"));
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d1.join("mms.card.json")).unwrap()).unwrap();
    assert_eq!(card["builder"]["players"]["manipulator"], s(&model));
    assert_eq!(card["builder"]["players"]["manipulator_rules"], true);
    assert_eq!(
        card["builder"]["players"]["prompts"]["guess"],
        "Guess the word between <|START GUESS|> and <|END GUESS|>."
    );
    // The manipulator saw its rules and a turn state before each message: the games differ
    // from games without them.
    let norules = t.path().join("n");
    std::fs::create_dir(&norules).unwrap();
    ok(&play(t.path(), &norules, s(&model), "5", &["--no-rules"]));
    check_games_and_card(&norules, 3, 3);
    assert_ne!(
        std::fs::read(d1.join("mms.games.jsonl")).unwrap(),
        std::fs::read(norules.join("mms.games.jsonl")).unwrap()
    );

    ok(&play(t.path(), &d2, s(&model), "5", &[]));
    for name in [
        "mms.jsonl",
        "mms.card.json",
        "mms.truth.jsonl",
        "mms.games.jsonl",
    ] {
        assert_eq!(
            std::fs::read(d1.join(name)).unwrap(),
            std::fs::read(d2.join(name)).unwrap(),
            "{name} differs between two runs with seed 5"
        );
    }
    ok(&play(
        t.path(),
        &d3,
        s(&model),
        "6",
        &["--instruction-role", "user"],
    ));
    assert_ne!(
        std::fs::read(d1.join("mms.games.jsonl")).unwrap(),
        std::fs::read(d3.join("mms.games.jsonl")).unwrap()
    );
    check_games_and_card(&d3, 3, 3);

    // Existing outputs are kept unless --force.
    let again = play(t.path(), &d1, s(&model), "5", &[]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stderr).contains("refusing to overwrite"));
    ok(&play(t.path(), &d1, s(&model), "5", &["--force"]));
}

#[test]
fn bad_arguments_are_refused_before_any_game() {
    let t = tempfile::tempdir().unwrap();
    let model = tiny(t.path());
    let d = t.path();
    let o = play(t.path(), d, "http://127.0.0.1:9/v1", "1", &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("#MODEL"), "{}", text(&o.stderr));
    let out = d.join("x.jsonl");
    let o = selfaware(
        t.path(),
        &[
            "data",
            "mms",
            "--manipulator",
            s(&model),
            "--manipulatee",
            s(&model),
            "--codeword",
            "two words",
            "--seed",
            "1",
            "--out",
            s(&out),
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("one word"), "{}", text(&o.stderr));
    assert!(!out.exists());
}

#[test]
fn games_against_a_server_match_the_local_games() {
    let t = tempfile::tempdir().unwrap();
    let model = tiny(t.path());
    let mut registry = Registry::new();
    let engine = Engine::load(&ModelSource::Gguf(model.clone())).unwrap();
    registry.add_local("tiny", Arc::new(engine)).unwrap();
    let config = ServerConfig {
        port: 0,
        ..ServerConfig::default()
    };
    let server = spawn(config, registry).unwrap();
    let url = format!("{}#tiny", server.base_url());
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let (local, remote, mixed) = (t.path().join("l"), t.path().join("r"), t.path().join("m"));
    for d in [&local, &remote, &mixed] {
        std::fs::create_dir(d).unwrap();
    }
    ok(&play(t.path(), &local, s(&model), "9", &[]));
    ok(&play(t.path(), &remote, &url, "9", &[]));
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(remote.join("mms.card.json")).unwrap())
            .unwrap();
    assert_eq!(card["builder"]["players"]["manipulatee"], "tiny");
    check_games_and_card(&remote, 3, 3);
    // Same weights, seeds and sampling settings: the server plays the same games.
    assert_eq!(
        std::fs::read_to_string(local.join("mms.games.jsonl")).unwrap(),
        std::fs::read_to_string(remote.join("mms.games.jsonl")).unwrap()
    );
    // One side local, the other remote.
    let out = mixed.join("mms.jsonl");
    let prompts = short_prompts(t.path());
    ok(&selfaware(
        t.path(),
        &[
            "data",
            "mms",
            "--manipulator",
            s(&model),
            "--manipulatee",
            &url,
            "--codeword",
            "bark",
            "--games",
            "3",
            "--turns",
            "3",
            "--max-tokens",
            "12",
            "--prompts",
            s(&prompts),
            "--seed",
            "9",
            "--out",
            s(&out),
        ],
    ));
    assert_eq!(
        std::fs::read_to_string(local.join("mms.games.jsonl")).unwrap(),
        std::fs::read_to_string(mixed.join("mms.games.jsonl")).unwrap()
    );
    drop(server);
}
