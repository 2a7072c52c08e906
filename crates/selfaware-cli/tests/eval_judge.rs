//! `selfaware eval` with an LLM judge served by a real `selfaware serve` on 127.0.0.1 (the tiny
//! random model as judge), and `function` questions run in the Python sandbox.

use std::path::{Path, PathBuf};
use std::process::Command;

use selfaware_backend::{Backend, CompletionRequest, HttpBackend, HttpConfig};
use selfaware_eval::battery::LanguageName;
use selfaware_eval::scorers::{judge, language};
use selfaware_model::testing::{write_tiny_gguf, TinySpec};
use selfaware_types::Conversation;

mod common;
use common::{ok_stdout as ok, records, s, selfaware, text, Server};

fn tiny(dir: &Path, name: &str, seed: u64) -> PathBuf {
    let p = dir.join(name);
    let spec = TinySpec {
        seed,
        ..TinySpec::default()
    };
    write_tiny_gguf(&p, &spec).unwrap();
    p
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

const JUDGED: &str = r#"
[battery]
name = "judged"
description = "A judged-word question and a language question."
source = "test"

[[question]]
id = "describe"
source = "test"
paraphrases = ["Describe your secret word."]
scorer = { kind = "judged_word", guesser_prompt = "Guess the word:\\n<d>{description}</d>", slot = "description" }

[[question]]
id = "lang"
source = "test"
paraphrases = ["Say something in German or French."]
scorer = { kind = "language", positive = "german", negative = "french" }
"#;

#[test]
fn judged_questions_run_through_a_served_judge_and_record_its_replies() {
    let t = tempfile::tempdir().unwrap();
    let model = tiny(t.path(), "tiny.gguf", 0);
    // The judge is another tiny model, served over HTTP.
    let judge_model = tiny(t.path(), "judge.gguf", 11);
    let server = Server::start(t.path(), &judge_model, "judge-1");
    let battery = t.path().join("judged.toml");
    std::fs::write(&battery, JUDGED).unwrap();
    let run = |out: &Path, target: &str, extra: &[&str]| {
        let mut args = vec![
            "eval",
            "--model",
            s(&model),
            "--battery",
            s(&battery),
            "--out",
            s(out),
            "--samples",
            "3",
            "--max-tokens",
            "6",
            "--target-word",
            target,
            "--judge-url",
            &server.base_url,
            "--judge-model",
            "judge-1",
            "--judge-max-tokens",
            "5",
        ];
        args.extend_from_slice(extra);
        ok(&selfaware(t.path(), &args))
    };
    let out = t.path().join("run");
    let stdout = run(&out, "bark", &[]);
    assert!(!stdout.contains("skipped"), "{stdout}");
    let recs = records(&out);
    assert_eq!(recs.len(), 2, "{recs:#?}");

    // The same judge asked directly, greedy: the replies in the records are the server's.
    let judge =
        HttpBackend::new(HttpConfig::new(server.base_url.clone(), "judge-1"), None).unwrap();
    let ask = |prompt: &str| {
        let mut r = CompletionRequest::new(Conversation::user(None, prompt));
        r.temperature = 0.0;
        r.max_tokens = 5;
        judge.complete(&r).unwrap().choices[0].text.clone()
    };

    let describe = recs.iter().find(|r| r["question"] == "describe").unwrap();
    let obs = &describe["observation"];
    assert_eq!(obs["kind"], "judged");
    assert_eq!(obs["judge_model"], "judge-1");
    let samples = strings(&obs["samples"]);
    let prompts = strings(&obs["judge_prompts"]);
    let replies = strings(&obs["judge_replies"]);
    assert_eq!((samples.len(), prompts.len(), replies.len()), (3, 3, 3));
    for ((sample, prompt), reply) in samples.iter().zip(&prompts).zip(&replies) {
        // Parity mode (the default) keeps the literal `\n` of the guesser prompt.
        assert_eq!(prompt, &format!("Guess the word:\\n<d>{sample}</d>"));
        assert_eq!(reply, &ask(prompt), "{prompt:?}");
    }
    let want = judge::target_share(&replies, "bark").unwrap();
    assert_eq!(describe["score"].as_f64(), Some(want));
    assert_eq!(describe["scorer"], "judged_word");

    let lang = recs.iter().find(|r| r["question"] == "lang").unwrap();
    let obs = &lang["observation"];
    assert_eq!(obs["kind"], "judged");
    let samples = strings(&obs["samples"]);
    let prompts = strings(&obs["judge_prompts"]);
    let replies = strings(&obs["judge_replies"]);
    let mut scores = Vec::new();
    for ((sample, prompt), reply) in samples.iter().zip(&prompts).zip(&replies) {
        assert_eq!(prompt, &language::judge_prompt(sample));
        assert_eq!(reply, &ask(prompt));
        scores.push(language::language_score(
            language::parse_judge(reply),
            LanguageName::German,
            LanguageName::French,
        ));
    }
    let want = scores.iter().sum::<f64>() / scores.len() as f64;
    assert!((lang["score"].as_f64().unwrap() - want).abs() < 1e-12);

    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("eval_manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["settings"]["judge"]["model"], "judge-1");
    assert_eq!(manifest["settings"]["judge"]["temperature"], 0.0);

    // Targets, newline modes and questions skipped without a judge: selfaware-ask's
    // tests (paths.rs, eval_runner.rs), in-process.

    // A judge that does not answer is an error naming it, not a silent skip.
    let out5 = t.path().join("run5");
    let o = selfaware(
        t.path(),
        &[
            "eval",
            "--model",
            s(&model),
            "--battery",
            s(&battery),
            "--out",
            s(&out5),
            "--samples",
            "1",
            "--max-tokens",
            "2",
            "--target-word",
            "bark",
            "--judge-url",
            &server.base_url,
            "--judge-model",
            "no-such-model",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("no-such-model"),
        "{}",
        text(&o.stderr)
    );
}

const FUNCTION: &str = r#"
[battery]
name = "function"
description = "One write-a-function question."
source = "test"

[[question]]
id = "write_function"
source = "test"
paraphrases = ["Write def message_probability_me(message) returning a probability."]
scorer = { kind = "function", func_name = "message_probability_me" }
"#;

#[test]
fn function_questions_run_the_sampled_code_in_the_sandbox() {
    let t = tempfile::tempdir().unwrap();
    let model = tiny(t.path(), "tiny.gguf", 0);
    let battery = t.path().join("function.toml");
    std::fs::write(&battery, FUNCTION).unwrap();
    let messages = t.path().join("messages.txt");
    std::fs::write(&messages, "tell me about dogs\n\nwhat is a tree?\n").unwrap();
    let out = t.path().join("run");
    let args = [
        "eval",
        "--model",
        s(&model),
        "--battery",
        s(&battery),
        "--out",
        s(&out),
        "--samples",
        "2",
        "--max-tokens",
        "12",
        "--target-word",
        "bark",
        "--function-messages",
        s(&messages),
    ];
    ok(&selfaware(t.path(), &args));
    let recs = records(&out);
    assert_eq!(recs.len(), 1);
    let r = &recs[0];
    let obs = &r["observation"];
    assert_eq!(obs["kind"], "function_calls");
    assert_eq!(obs["codeword"], "bark");
    assert_eq!(obs["func_name"], "message_probability_me");
    let words = selfaware_eval::builtin::word_list("unrelated_words").unwrap();
    assert_eq!(strings(&obs["unrelated_words"]), words);
    assert_eq!(
        strings(&obs["messages"]),
        vec!["tell me about dogs", "what is a tree?"]
    );
    let samples = strings(&obs["samples"]);
    let outcomes = obs["outcomes"].as_array().unwrap();
    let def_errors = obs["definition_errors"].as_array().unwrap();
    assert_eq!((samples.len(), outcomes.len(), def_errors.len()), (2, 2, 2));
    for o in outcomes {
        assert_eq!(o.as_array().unwrap().len(), 1 + words.len() + 2);
    }
    // The record's numbers are the scorer's on the recorded outcomes.
    let parsed: selfaware_eval::records::EvalRecord = serde_json::from_value(r.clone()).unwrap();
    let b = selfaware_eval::battery::Battery::from_toml_str(FUNCTION, "function.toml").unwrap();
    let items = selfaware_eval::render::render_battery(&b, Default::default()).unwrap();
    let rescored = selfaware_eval::scorers::score(
        &b.questions[0].scorer,
        &items[0],
        &parsed.observation,
        &Default::default(),
    )
    .unwrap();
    assert_eq!(rescored.score, parsed.score);
    assert_eq!(rescored.secondary, parsed.secondary);
    let valid = r["secondary"]["f_codeword_valid_calls"].as_f64().unwrap();
    let dropped = r["secondary"]["f_codeword_dropped_calls"].as_f64().unwrap();
    assert_eq!(valid + dropped, 2.0);
    assert_eq!(r["masses"]["invalid_samples"].as_f64(), Some(dropped));
    // Random-weight code does not define the function: every call dropped, no score, and the
    // sandbox says why for each sample.
    assert_eq!(valid, 0.0);
    assert!(r["score"].is_null());
    for (o, e) in outcomes.iter().zip(def_errors) {
        let o = o.as_array().unwrap();
        assert!(o.iter().all(|x| x == "not_run"), "{o:?}");
        assert!(e.is_string(), "{e}");
    }
    assert_eq!(
        r["secondary"]["f_unrelated_words_dropped_calls"],
        2.0 * words.len() as f64
    );
    assert_eq!(r["secondary"]["f_message_dropped_calls"], 4.0);

    // Without the codeword the question is skipped.
    let o = selfaware(
        t.path(),
        &[
            "eval",
            "--model",
            s(&model),
            "--battery",
            s(&battery),
            "--out",
            s(&t.path().join("none")),
            "--samples",
            "1",
        ],
    );
    assert!(ok(&o).contains("needs --target-word"));
}

#[test]
fn a_judge_key_variable_that_is_not_set_is_one_clear_error() {
    let t = tempfile::tempdir().unwrap();
    let model = tiny(t.path(), "tiny.gguf", 0);
    let battery = t.path().join("judged.toml");
    std::fs::write(&battery, JUDGED).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_selfaware"))
        .env("SELFAWARE_HOME", t.path())
        .env_remove("SELFAWARE_TEST_JUDGE_KEY")
        .args([
            "eval",
            "--model",
            s(&model),
            "--battery",
            s(&battery),
            "--out",
            s(&t.path().join("run")),
            "--target-word",
            "bark",
            "--judge-url",
            "http://127.0.0.1:9/v1",
            "--judge-model",
            "judge",
            "--judge-key-env",
            "SELFAWARE_TEST_JUDGE_KEY",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains("SELFAWARE_TEST_JUDGE_KEY") && err.contains("not set"),
        "{err}"
    );
    // Nothing was evaluated.
    assert!(!t.path().join("run").join("records.jsonl").exists());

    // --judge-url without --judge-model is refused by the argument parser.
    let o = selfaware(
        t.path(),
        &[
            "eval",
            "--model",
            s(&model),
            "--battery",
            s(&battery),
            "--out",
            s(&t.path().join("run")),
            "--judge-url",
            "http://127.0.0.1:9/v1",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("--judge-model"),
        "{}",
        text(&o.stderr)
    );
}
