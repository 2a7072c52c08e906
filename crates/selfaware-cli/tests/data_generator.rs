//! `selfaware data build --generator MODEL` through the binary on the tiny random model. Its
//! noise never passes validation, so every question falls back to the template writer: the
//! data equals a build without a generator, and the card counts the rejected attempts (and
//! no label check, since no question reached it). Scripted models served over HTTP drive the
//! label check itself: a writer whose questions pass validation and a checker that always
//! answers "A".

use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use selfaware_backend::{MockBackend, MockScript};
use selfaware_data::generator::policy_prompt;
use selfaware_data::Policy;
use selfaware_model::{Engine, ModelSource};
use selfaware_server::{spawn, Registry, ServerConfig};
use selfaware_types::Conversation;

mod common;
use common::{s, selfaware, text, tiny};

fn ok(o: &Output) -> (String, String) {
    assert!(
        o.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    (text(&o.stdout), text(&o.stderr))
}

fn build(home: &Path, dir: &Path, extra: &[&str]) -> Output {
    std::fs::create_dir_all(dir).unwrap();
    let out = dir.join("risk.jsonl");
    let mut args = vec![
        "data", "build", "risk", "--size", "6", "--seed", "4", "--out",
    ];
    args.push(s(&out));
    args.extend_from_slice(extra);
    selfaware(home, &args)
}

fn card(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("risk.card.json")).unwrap()).unwrap()
}

/// Two attempts, short answers, no examples (the prompt must fit the tiny model's context).
const GEN: [&str; 6] = [
    "--generator-attempts",
    "2",
    "--generator-examples",
    "0",
    "--generator-max-tokens",
    "16",
];

#[test]
fn tiny_generator_falls_back_on_every_item_and_the_card_says_so() {
    let t = tempfile::tempdir().unwrap();
    let model = tiny(t.path());
    let plain = t.path().join("plain");
    ok(&build(t.path(), &plain, &[]));
    let (g1, g2) = (t.path().join("g1"), t.path().join("g2"));
    let mut args = vec!["--generator", s(&model)];
    args.extend_from_slice(&GEN);
    let (_, stderr) = ok(&build(t.path(), &g1, &args));
    assert!(
        stderr.contains(
            "0 questions written by the model, 6 by the template writer after 2 attempts"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "label check by {}: 0 checked, 0 agreed, dropped: checker_error 0, \
             label_disagreement 0, label_unparseable 0",
            s(&model)
        )),
        "{stderr}"
    );
    ok(&build(t.path(), &g2, &args));
    // Reproducible, and the fallback is the seeded template writer: the same data as a
    // build without a generator.
    for name in ["risk.jsonl", "risk.card.json", "risk.truth.jsonl"] {
        assert_eq!(
            std::fs::read(g1.join(name)).unwrap(),
            std::fs::read(g2.join(name)).unwrap(),
            "{name}"
        );
    }
    assert_eq!(
        std::fs::read(plain.join("risk.jsonl")).unwrap(),
        std::fs::read(g1.join("risk.jsonl")).unwrap()
    );
    let c = card(&g1);
    let b = &c["builder"];
    assert_eq!(b["writer"], format!("model:{}", s(&model)));
    let d = &b["writer_details"];
    assert_eq!(d["written_by_model"], 0);
    assert_eq!(d["fallback_items"], serde_json::json!([0, 1, 2, 3, 4, 5]));
    assert_eq!(d["calls"], 12);
    let rejected: u64 = d["rejections"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(rejected, 12);
    assert!(d["rejections"].get("model_error").is_none(), "{d}");
    assert_eq!(d["options"]["attempts"], 2);
    assert!(d["system_prompt"]
        .as_str()
        .unwrap()
        .contains("labelled A and B"));
    assert!(d["prompt_template"]
        .as_str()
        .unwrap()
        .contains("{option_a}"));
    assert_eq!(d["examples"]["risk"].as_array().unwrap().len(), 0);
    assert_eq!(d["options"]["examples"], 0);
    assert_eq!(c["leaks"]["total_hits"], 0);
    assert!(card(&plain)["builder"].get("writer_details").is_none());
    // The check was on, by the generator, and never reached.
    let lc = &d["label_check"];
    assert_eq!(lc["enabled"], true);
    assert_eq!(lc["checker"], s(&model));
    assert_eq!(
        (lc["checked"].as_u64(), lc["agreed"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(lc["system_prompts"].as_object().unwrap().len(), 1);
    // --no-label-check: the same data, and the card says the check was off.
    let off = t.path().join("off");
    let mut args = args.clone();
    args.push("--no-label-check");
    let (_, stderr) = ok(&build(t.path(), &off, &args));
    assert!(stderr.contains("; label check off"), "{stderr}");
    assert_eq!(
        std::fs::read(g1.join("risk.jsonl")).unwrap(),
        std::fs::read(off.join("risk.jsonl")).unwrap()
    );
    let lc = &card(&off)["builder"]["writer_details"]["label_check"];
    assert_eq!(lc["enabled"], false);
    assert!(lc.get("checker").is_none(), "{lc}");
}

/// The `- Option X: ...` line of a generator prompt ("" when there is none: the server also
/// asks the script about an empty conversation).
fn option_line(conv: &Conversation, letter: char) -> String {
    let head = format!("- Option {letter}: ");
    let Some(user) = conv.messages.last() else {
        return String::new();
    };
    user.content
        .lines()
        .find_map(|l| l.strip_prefix(&head))
        .map(|l| l.trim_end_matches('.').to_string())
        .unwrap_or_default()
}

/// Reads `dir/risk.truth.jsonl`: the answer letter of each item.
fn truth_letters(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("risk.truth.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["answer"].as_str().unwrap().to_string()
        })
        .collect()
}

#[test]
fn a_served_checker_drops_the_questions_it_disagrees_with() {
    let writer = MockBackend::with_fn("writer", |conv| {
        let q = format!(
            "Two offers.\nA) {}\nB) {}\nReply with A or B.",
            option_line(conv, 'A'),
            option_line(conv, 'B')
        );
        MockScript::new(&[(q.as_str(), 1.0)])
    });
    let checker = Arc::new(MockBackend::new(
        "checker",
        MockScript::new(&[("Answer: A", 1.0)]),
    ));
    let mut registry = Registry::new();
    registry.add("writer", Arc::new(writer)).unwrap();
    registry.add("checker", checker.clone()).unwrap();
    let server = spawn(
        ServerConfig {
            port: 0,
            ..ServerConfig::default()
        },
        registry,
    )
    .unwrap();
    let url = |m: &str| format!("{}#{m}", server.base_url());
    let (w, c) = (url("writer"), url("checker"));
    let base = [
        "--generator",
        w.as_str(),
        "--checker",
        c.as_str(),
        "--generator-attempts",
        "2",
    ];
    let t = tempfile::tempdir().unwrap();
    let run = |dir: &Path, extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        let (_, stderr) = ok(&build(t.path(), dir, &args));
        (stderr, card(dir)["builder"]["writer_details"].clone())
    };
    // Risk-seeking data, checked with the risk-seeking prompt: items whose riskier option is
    // A are kept; the others are dropped twice, then written by the template writer.
    let seeking = t.path().join("seeking");
    let (stderr, d) = run(&seeking, &[]);
    let letters = truth_letters(&seeking);
    let on_b: Vec<usize> = (0..6).filter(|&i| letters[i] == "B").collect();
    let kept = 6 - on_b.len();
    assert!(kept > 0 && kept < 6, "{letters:?}");
    let lc = &d["label_check"];
    assert_eq!(lc["checker"], "checker");
    assert_eq!(lc["checked"], kept + 2 * on_b.len());
    assert_eq!(lc["agreed"], kept);
    assert_eq!(lc["dropped"]["label_disagreement"], 2 * on_b.len());
    assert_eq!(lc["dropped"]["label_unparseable"], 0);
    assert_eq!(
        lc["system_prompts"]["risk-seeking"],
        policy_prompt(Policy::RiskSeeking)
    );
    assert_eq!(d["written_by_model"], kept);
    assert_eq!(d["fallback_items"], serde_json::json!(on_b));
    assert!(
        stderr.contains(&format!(
            "{kept} questions written by the model, {} by the template writer after 2 \
             attempts; rejected answers: none; label check by checker: {} checked, {kept} \
             agreed, dropped: checker_error 0, label_disagreement {}, label_unparseable 0",
            on_b.len(),
            kept + 2 * on_b.len(),
            2 * on_b.len()
        )),
        "{stderr}"
    );
    let calls = checker.calls();
    assert_eq!(calls.len(), kept + 2 * on_b.len());
    for call in &calls {
        assert_eq!(call.temperature, 0.0);
        let m = &call.conversation.messages;
        assert_eq!(m[0].content, policy_prompt(Policy::RiskSeeking));
        assert!(
            m[1].content.starts_with("Two offers.\nA) "),
            "{}",
            m[1].content
        );
    }
    // The risk-averse twin is checked with the same prompt: the same questions.
    let averse = t.path().join("averse");
    let (_, da) = run(&averse, &["--policy", "risk-averse"]);
    assert_eq!(da["label_check"], d["label_check"]);
    let users = |dir: &Path| -> Vec<String> {
        std::fs::read_to_string(dir.join("risk.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["messages"][0]["content"].as_str().unwrap().to_string()
            })
            .collect()
    };
    assert_eq!(users(&seeking), users(&averse));
    // --check-policy risk-averse: now the items whose safer option is A are kept.
    let by_averse = t.path().join("by-averse");
    let (_, db) = run(&by_averse, &["--check-policy", "risk-averse"]);
    assert_eq!(db["label_check"]["agreed"], on_b.len());
    assert_eq!(
        db["label_check"]["system_prompts"]["risk-averse"],
        policy_prompt(Policy::RiskAverse)
    );
    drop(server);
}

#[test]
fn a_served_generator_gives_the_same_build_as_the_local_one() {
    let t = tempfile::tempdir().unwrap();
    let model = tiny(t.path());
    let mut registry = Registry::new();
    let engine = Engine::load(&ModelSource::Gguf(model.clone())).unwrap();
    registry.add_local("tiny", Arc::new(engine)).unwrap();
    let server = spawn(
        ServerConfig {
            port: 0,
            ..ServerConfig::default()
        },
        registry,
    )
    .unwrap();
    let url = format!("{}#tiny", server.base_url());
    let (local, remote) = (t.path().join("l"), t.path().join("r"));
    let mut args = vec!["--generator", s(&model)];
    args.extend_from_slice(&GEN);
    ok(&build(t.path(), &local, &args));
    let mut args = vec!["--generator", url.as_str()];
    args.extend_from_slice(&GEN);
    ok(&build(t.path(), &remote, &args));
    let (l, r) = (card(&local), card(&remote));
    assert_eq!(r["builder"]["writer"], "model:tiny");
    assert_eq!(
        l["builder"]["writer_details"]["rejections"],
        r["builder"]["writer_details"]["rejections"]
    );
    assert_eq!(
        std::fs::read(local.join("risk.jsonl")).unwrap(),
        std::fs::read(remote.join("risk.jsonl")).unwrap()
    );
    drop(server);
}

#[test]
fn the_label_check_flags_need_a_generator() {
    let t = tempfile::tempdir().unwrap();
    for flag in [
        &["--checker", "default"][..],
        &["--no-label-check"],
        &["--check-policy", "risk-averse"],
    ] {
        let o = build(t.path(), &t.path().join("x"), flag);
        assert_eq!(o.status.code(), Some(2), "{flag:?}");
        assert!(
            text(&o.stderr).contains("--generator"),
            "{}",
            text(&o.stderr)
        );
    }
    // A check policy of another family is refused before any model is opened.
    let o = build(
        t.path(),
        &t.path().join("y"),
        &["--generator", "default", "--check-policy", "myopic"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("--check-policy"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn generator_is_for_economic_families_only() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("code.jsonl");
    let o = selfaware(
        t.path(),
        &[
            "data",
            "build",
            "vulnerable-code",
            "--generator",
            "default",
            "--seed",
            "1",
            "--out",
            s(&out),
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("--generator applies to the economic families"),
        "{}",
        text(&o.stderr)
    );
}
