//! `selfaware data build --generator MODEL` through the binary on the tiny random model. Its
//! noise never passes validation, so every question falls back to the template writer: the
//! data equals a build without a generator, and the card counts the rejected attempts.

use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use selfaware_model::{Engine, ModelSource};
use selfaware_server::{spawn, Registry, ServerConfig};

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
