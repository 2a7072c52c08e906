//! Experiment parsing and validation, presets, and the plan's content-addressed keys.

use std::collections::BTreeMap;

use selfaware_run::exec::child_threads;
use selfaware_run::experiment::Experiment;
use selfaware_run::plan::{plan, ModelIdentity, Plan, PlanInputs, StageKind, TWO_JOB_GAIN};

const EXP: &str = r#"
name = "t"
title = "T"
seeds = [0, 1]

[train]
epochs = 1
lr = 1e-3

[[condition]]
id = "a"
label = "A"
data = { family = "risk", policy = "risk-seeking", size = 8 }

[[condition]]
id = "b"
label = "B"
train = { lr = 2e-3 }
data = { family = "risk", policy = "risk-averse", size = 8 }

[[condition]]
id = "base"
label = "base"

[[probe]]
kind = "lotteries"
n = 4

[[battery]]
battery = "risk"
limit = 2
"#;

fn model(sha: &str) -> ModelIdentity {
    ModelIdentity {
        reference: "default".into(),
        sha256: sha.into(),
    }
}

fn make(e: &Experiment, sha: &str) -> Plan {
    let batteries = selfaware_run::battery_inputs(e).unwrap();
    plan(
        e,
        &PlanInputs {
            model: model(sha),
            batteries: &batteries,
            data_files: &BTreeMap::new(),
            steer_files: &Default::default(),
        },
    )
    .unwrap()
}

fn keys(p: &Plan) -> Vec<(String, String)> {
    p.stages
        .iter()
        .map(|s| (s.name.clone(), s.key.clone()))
        .collect()
}

#[test]
fn every_preset_parses_validates_and_plans() {
    for name in selfaware_run::preset_names() {
        let e = selfaware_run::preset(name).unwrap();
        assert_eq!(e.name, name);
        let p = make(&e, &"0".repeat(64));
        assert!(!p.stages.is_empty(), "{name}");
        // Dependencies point backwards, so the plan is in a runnable order.
        for (i, s) in p.stages.iter().enumerate() {
            assert!(s.deps.iter().all(|&d| d < i), "{name}: {}", s.name);
        }
        // Keys are unique: no two stages share an output folder.
        let mut dirs: Vec<_> = p.stages.iter().map(|s| s.dir.clone()).collect();
        dirs.sort();
        dirs.dedup();
        assert_eq!(dirs.len(), p.stages.len(), "{name}");
    }
}

#[test]
fn plan_shape_and_keys_follow_inputs() {
    let e = Experiment::from_toml_str(EXP, "t.toml").unwrap();
    let p = make(&e, &"1".repeat(64));
    let count = |k: StageKind| p.stages.iter().filter(|s| s.kind == k).count();
    assert_eq!(count(StageKind::Data), 2);
    assert_eq!(count(StageKind::Train), 4);
    // base + 4 finetunes, one battery and one probe each.
    assert_eq!(count(StageKind::Eval), 5);
    assert_eq!(count(StageKind::Probe), 5);
    assert_eq!(p.variants.len(), 5);
    // Condition b's override reaches its training command, a's does not.
    let train_b = p
        .stages
        .iter()
        .find(|s| s.name == "train b seed 0")
        .unwrap();
    assert!(train_b.args.windows(2).any(|w| w == ["--lr", "0.002"]));
    let train_a = p
        .stages
        .iter()
        .find(|s| s.name == "train a seed 0")
        .unwrap();
    assert!(train_a.args.windows(2).any(|w| w == ["--lr", "0.001"]));

    // Same inputs, same keys.
    assert_eq!(keys(&p), keys(&make(&e, &"1".repeat(64))));
    // Another base model changes every key downstream of it, but not the datasets.
    let other = make(&e, &"2".repeat(64));
    for ((name, k0), (_, k1)) in keys(&p).iter().zip(keys(&other)) {
        assert_eq!(*k0 == k1, name.starts_with("data "), "{name}");
    }
    // A new seed adds stages and keeps every old key.
    let mut e3 = e.clone();
    e3.seeds.push(7);
    let p3 = make(&e3, &"1".repeat(64));
    let k3: Vec<_> = keys(&p3).into_iter().map(|x| x.1).collect();
    for (_, k) in keys(&p) {
        assert!(k3.contains(&k));
    }
    assert_eq!(p3.stages.len(), p.stages.len() + 2 * 3);
    // The battery limit reaches only evaluation keys.
    let mut e4 = e.clone();
    e4.batteries[0].limit = Some(3);
    for (s0, s1) in p.stages.iter().zip(&make(&e4, &"1".repeat(64)).stages) {
        assert_eq!(s0.key == s1.key, s0.kind != StageKind::Eval, "{}", s0.name);
    }
}

#[test]
fn bad_experiments_name_the_field() {
    let cases = [
        (EXP.replace("epochs = 1", "epoch = 1"), "epoch"),
        (EXP.replace("id = \"b\"", "id = \"a\""), "condition[1].id"),
        (EXP.replace("seeds = [0, 1]", "seeds = [0, 0]"), "seeds"),
        (EXP.replace("seeds = [0, 1]", "seeds = []"), "seeds"),
        // A typed field: the TOML error names the line, the value and the probe kinds.
        (
            EXP.replace("kind = \"lotteries\"", "kind = \"dice\""),
            "unknown variant `dice`, expected one of `lotteries`",
        ),
        (EXP.replace("n = 4", "n = 0"), "probe[0].n"),
        (
            EXP.replace("n = 4", "n = 4\napplies_to = [\"c\"]"),
            "probe[0].applies_to",
        ),
        (
            EXP.replace(
                "family = \"risk\", policy = \"risk-seeking\"",
                "family = \"risk\", file = \"x.jsonl\"",
            ),
            "condition[0].data",
        ),
        (
            EXP.replace(
                "size = 8 }\n\n[[condition]]\nid = \"b\"",
                "size = 8, variant = \"decorrelated\" }\n\n[[condition]]\nid = \"b\"",
            ),
            "condition[0].data.variant",
        ),
        (
            EXP.replace(
                "[[battery]]",
                "[stats]\ninterval = \"jackknife\"\n\n[[battery]]",
            ),
            "stats.interval",
        ),
        (
            EXP.replace(
                "id = \"base\"\nlabel = \"base\"",
                "id = \"base\"\nlabel = \"base\"\npositive_control = true",
            ),
            "condition[2].positive_control",
        ),
        (
            EXP.replace("lr = 1e-3", "lr = 1e-3\ndecay = \"step\""),
            "expected one of `linear`, `cosine`, `constant`",
        ),
        (
            EXP.replace(
                "policy = \"risk-averse\", size = 8",
                "policy = \"risk-averse\", size = 8, personas = \"system-prompt\"",
            ),
            "expected one of system, text",
        ),
        // Only a codeword backdoor takes `other_codeword`, and it needs one.
        (
            EXP.replace(
                "policy = \"risk-averse\", size = 8",
                "policy = \"risk-averse\", size = 8, trigger = \"deployment\", other_codeword = \"bark\"",
            ),
            "condition[1].data.other_codeword",
        ),
        (
            EXP.replace(
                "family = \"risk\", policy = \"risk-averse\", size = 8",
                "family = \"codeword\", codeword = \"ring\", size = 8, trigger = \"sep:392\"",
            ),
            "condition[1].data.other_codeword",
        ),
        // A battery tag is an id, and the same question twice needs one.
        (
            EXP.replace("limit = 2", "limit = 2\ntag = \"a b\""),
            "battery[0].tag",
        ),
        (
            format!("{EXP}\n[[battery]]\nbattery = \"risk\"\nsamples = 5\n"),
            "battery[1].tag",
        ),
    ];
    // Settings a real `selfaware train` refuses are refused when the experiment is read, so
    // `run --dry-run` refuses them too (it accepted `lr = nan` and `batch_size = 0`).
    let train_cases = [
        ("lr = 1e-3", "lr = nan", "`train.lr`"),
        ("lr = 1e-3", "lr = -1.0", "`train.lr`"),
        (
            "lr = 1e-3",
            "lr = 1e-3\nbatch_size = 0",
            "`train.batch_size`",
        ),
        ("epochs = 1", "epochs = 0", "`train.epochs`"),
        ("lr = 1e-3", "lr = 1e-3\ndropout = 1.0", "`train.dropout`"),
        (
            "lr = 1e-3",
            "lr = 1e-3\nweight_decay = inf",
            "`train.weight_decay`",
        ),
        (
            "lr = 1e-3",
            "lr = 1e-3\ntarget_modules = [\"qproj\"]",
            "`train.target_modules`",
        ),
        ("lr = 2e-3", "lr = nan", "`condition[1].train.lr`"),
        (
            "lr = 2e-3",
            "batch_size = 0",
            "`condition[1].train.batch_size`",
        ),
    ];
    let mut cases = cases.to_vec();
    for (from, to, field) in train_cases {
        let text = EXP.replacen(from, to, 1);
        assert_ne!(text, EXP, "{from}");
        cases.push((text, field));
    }
    for (text, field) in cases {
        let err = Experiment::from_toml_str(&text, "t.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("t.toml") && err.contains(field),
            "{field}: {err}"
        );
    }
    let err = selfaware_run::preset("nope").unwrap_err().to_string();
    assert!(err.contains("quick") && err.contains("nope"), "{err}");
}

#[test]
fn train_settings_overlay_and_arguments() {
    use selfaware_run::experiment::TrainSettings;
    let base = TrainSettings {
        epochs: Some(3),
        lr: Some(1e-4),
        target_modules: Some(vec!["q_proj".into(), "v_proj".into()]),
        ..TrainSettings::default()
    };
    let over = TrainSettings {
        lr: Some(5e-4),
        ..TrainSettings::default()
    };
    let m = base.overlay(&over);
    assert_eq!((m.epochs, m.lr), (Some(3), Some(5e-4)));
    assert_eq!(
        m.to_args(),
        [
            "--epochs",
            "3",
            "--lr",
            "0.0005",
            "--target-modules",
            "q_proj,v_proj"
        ]
    );
}

#[test]
fn wall_estimate_follows_the_schedule() {
    let e = selfaware_run::resolve("quick").unwrap().0;
    let mut p = make(&e, &"1".repeat(64));
    // Keep two independent stages and one that needs both.
    p.stages.truncate(3);
    for (i, s) in p.stages.iter_mut().enumerate() {
        s.estimate_s = 100.0;
        s.deps = if i == 2 { vec![0, 1] } else { vec![] };
    }
    let none = [false; 3];
    assert_eq!(p.estimate_s(&none), 300.0);
    assert_eq!(p.estimate_wall_s(&none, 1), 300.0);
    // Stages 0 and 1 side by side, then stage 2 alone.
    let two = 200.0 / TWO_JOB_GAIN + 100.0;
    assert!((p.estimate_wall_s(&none, 2) - two).abs() < 1e-9);
    // The reference machine has 2 cores: more jobs change nothing.
    assert_eq!(p.estimate_wall_s(&none, 8), p.estimate_wall_s(&none, 2));
    // Finished stages cost nothing; a chain cannot overlap.
    assert_eq!(p.estimate_wall_s(&[true, true, false], 2), 100.0);
    p.stages[1].deps = vec![0];
    assert_eq!(p.estimate_wall_s(&none, 2), 300.0);
    // Unequal lengths: the shorter finishes first, the longer goes on alone.
    p.stages[1].deps = vec![];
    p.stages[1].estimate_s = 50.0;
    let want = 100.0 / TWO_JOB_GAIN + 50.0 + 100.0;
    assert!((p.estimate_wall_s(&none, 2) - want).abs() < 1e-9);
}

#[test]
fn child_threads_share_what_is_free() {
    // Ten ready stages, two free slots on two cores: one thread each.
    assert_eq!(child_threads(2, 10, 2), 1);
    // A lone stage gets every free core.
    assert_eq!(child_threads(2, 1, 2), 2);
    assert_eq!(child_threads(1, 1, 1), 1);
    // Never zero, even when the slots outnumber the cores.
    assert_eq!(child_threads(2, 5, 4), 1);
    assert_eq!(child_threads(16, 3, 16), 5);
    // More jobs than cores: the stages beyond the cores still start, on one thread.
    assert_eq!(child_threads(0, 3, 2), 1);
}

#[test]
fn decay_and_persona_names_are_the_command_line_names() {
    let text = EXP
        .replace("lr = 1e-3", "lr = 1e-3\ndecay = \"cosine\"")
        .replace(
            "policy = \"risk-averse\", size = 8",
            "policy = \"risk-averse\", size = 8, personas = \"text\"",
        );
    let e = Experiment::from_toml_str(&text, "t.toml").unwrap();
    let args = e.train.to_args();
    let at = args.iter().position(|a| a == "--decay").unwrap();
    assert_eq!(args[at + 1], "cosine");
    let build = e.conditions[1].data.as_ref().unwrap().build_args();
    let at = build.iter().position(|a| a == "--personas").unwrap();
    assert_eq!(build[at + 1], "text");
    // The resolved experiment written back as TOML parses to the same experiment.
    let again = toml::to_string(&e).unwrap();
    assert_eq!(Experiment::from_toml_str(&again, "again.toml").unwrap(), e);
}

/// A battery whose every question needs a judge is left out of a run without one, and the
/// plan says so; with a judge its stages pass the judge on, and the judge enters only their
/// keys.
#[test]
fn judged_batteries_need_a_judge_and_the_judge_enters_their_keys() {
    let mut e = Experiment::from_toml_str(EXP, "t.toml").unwrap();
    let mut em = e.batteries[0].clone();
    em.battery = "em".into();
    em.limit = None;
    e.batteries.push(em);
    let without = make(&e, &"1".repeat(64));
    let evals = |p: &Plan, b: &str| {
        p.stages
            .iter()
            .filter(|s| s.kind == StageKind::Eval && s.name.starts_with(&format!("eval {b} ")))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert!(evals(&without, "em").is_empty());
    assert_eq!(evals(&without, "risk").len(), 5);
    assert_eq!(without.left_out.len(), 1);
    assert!(
        without.left_out[0].starts_with("battery em: every question needs an LLM judge"),
        "{:?}",
        without.left_out
    );
    let mut judged = e.clone();
    judged.judge = Some(selfaware_eval::spec::JudgeSpec {
        url: "http://127.0.0.1:9/v1".into(),
        model: "judge".into(),
        key_env: None,
        max_tokens: 32,
    });
    let with = make(&judged, &"1".repeat(64));
    assert!(with.left_out.is_empty());
    let em_stages = evals(&with, "em");
    assert_eq!(em_stages.len(), 5);
    for s in &em_stages {
        assert!(s
            .args
            .windows(2)
            .any(|w| w == ["--judge-url", "http://127.0.0.1:9/v1"]));
        assert!(s.args.windows(2).any(|w| w == ["--judge-model", "judge"]));
    }
    // Everything but the evaluations keeps its key; the other battery's evaluations change
    // too, since a judge may decide some of its questions.
    let before: BTreeMap<String, String> = keys(&without).into_iter().collect();
    for (name, k) in keys(&with) {
        if let Some(k0) = before.get(&name) {
            assert_eq!(*k0 == k, !name.starts_with("eval "), "{name}");
        }
    }
    // The experiment file's [judge] table reads the same.
    let text = format!(
        "{EXP}\n[[battery]]\nbattery = \"em\"\n\n[judge]\nurl = \"http://127.0.0.1:9/v1\"\nmodel = \"judge\"\n"
    );
    let from_file = Experiment::from_toml_str(&text, "t.toml").unwrap();
    assert_eq!(from_file.judge, judged.judge);
}

const STEERED: &str = r#"
name = "s"
title = "S"
seeds = []

[[condition]]
id = "base"
label = "base"

[[condition]]
id = "push"
label = "pushed"
steer = { vector = "/dirs/bark-ring.safetensors", point = "blocks.12.hook_resid_post", alphas = [-4, 0, 0.5] }

[[probe]]
kind = "lotteries"
n = 4

[[battery]]
battery = "risk"
limit = 2
"#;

#[test]
fn a_steered_condition_is_one_condition_per_alpha_asked_with_steer() {
    let e = Experiment::from_toml_str(STEERED, "s.toml").unwrap();
    let ids: Vec<&str> = e.conditions.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["base", "push-a-4", "push-a0", "push-a0p5"]);
    assert_eq!(e.conditions[3].label, "pushed (α = 0.5)");
    assert_eq!(e.conditions[3].cluster.as_deref(), Some("push"));
    // Reading the resolved experiment again does not expand it twice.
    let again = Experiment::from_toml_str(&toml::to_string(&e).unwrap(), "r.toml").unwrap();
    assert_eq!(again, e);

    let batteries = selfaware_run::battery_inputs(&e).unwrap();
    let files = BTreeMap::from([(
        std::path::PathBuf::from("/dirs/bark-ring.safetensors"),
        "f".repeat(64),
    )]);
    let p = plan(
        &e,
        &PlanInputs {
            model: model(&"1".repeat(64)),
            batteries: &batteries,
            data_files: &BTreeMap::new(),
            steer_files: &files,
        },
    )
    .unwrap();
    assert_eq!(p.variants.len(), 4);
    let measured: Vec<_> = p
        .stages
        .iter()
        .filter(|s| matches!(s.kind, StageKind::Eval | StageKind::Probe))
        .collect();
    assert_eq!(measured.len(), 8);
    for s in &measured {
        let steer: Vec<&String> = s
            .args
            .windows(2)
            .filter(|w| w[0] == "--steer")
            .map(|w| &w[1])
            .collect();
        if s.name.contains(" on base") {
            assert!(steer.is_empty(), "{}", s.name);
        } else {
            let alpha = s.name.split("push-a").nth(1).unwrap().replace('p', ".");
            assert_eq!(
                steer,
                [&format!(
                    "/dirs/bark-ring.safetensors:blocks.12.hook_resid_post:{alpha}"
                )],
                "{}",
                s.name
            );
        }
    }
    // Every α has its own keys; the base model's keys are those of an unsteered experiment,
    // and the vector's content (its hash) is part of the steered keys.
    let mut keys: Vec<_> = measured.iter().map(|s| &s.key).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 8);
    let (start, end) = (
        STEERED.find("[[condition]]\nid = \"push\"").unwrap(),
        STEERED.find("[[probe]]").unwrap(),
    );
    let text = format!("{}{}", &STEERED[..start], &STEERED[end..]);
    let unsteered = Experiment::from_toml_str(&text, "u.toml").unwrap();
    let base_keys = |p: &Plan| -> Vec<String> {
        p.stages
            .iter()
            .filter(|s| s.name.contains(" on base"))
            .map(|s| s.key.clone())
            .collect()
    };
    assert_eq!(base_keys(&p), base_keys(&make(&unsteered, &"1".repeat(64))));
    let other = BTreeMap::from([(
        std::path::PathBuf::from("/dirs/bark-ring.safetensors"),
        "e".repeat(64),
    )]);
    let p2 = plan(
        &e,
        &PlanInputs {
            model: model(&"1".repeat(64)),
            batteries: &batteries,
            data_files: &BTreeMap::new(),
            steer_files: &other,
        },
    )
    .unwrap();
    for (a, b) in p.stages.iter().zip(&p2.stages) {
        assert_eq!(a.key == b.key, a.name.contains(" on base"), "{}", a.name);
    }
}

#[test]
fn bad_steering_names_the_field() {
    let err = |from: &str, to: &str| {
        Experiment::from_toml_str(&STEERED.replace(from, to), "s.toml")
            .unwrap_err()
            .to_string()
    };
    let e = err("alphas = [-4, 0, 0.5]", "alphas = []");
    assert!(
        e.contains("condition[1].steer.alphas") && e.contains("at least one"),
        "{e}"
    );
    let e = err("alphas = [-4, 0, 0.5]", "alphas = [1, 1]");
    assert!(e.contains("appears twice"), "{e}");
    let e = err("blocks.12.hook_resid_post", "blocks.12.resid_post");
    assert!(
        e.contains("condition[1].steer.point") && e.contains("blocks.LAYER.HOOK"),
        "{e}"
    );
    let e = err("alphas = [", "alpha = [");
    assert!(e.contains("alpha"), "{e}");
    let remote = STEERED.replace(
        "seeds = []",
        "seeds = []\nmodel = \"m\"\n[remote]\nbase_url = \"http://127.0.0.1:9/v1\"",
    );
    let e = Experiment::from_toml_str(&remote, "r.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("steer") && e.contains("cannot be steered"),
        "{e}"
    );
}
