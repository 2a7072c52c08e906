//! The sections that look inside the models: the `inside` preset's plan, the new stage kinds'
//! keys, `steer = { from = … }` and the trained steering vector condition, and validation.

use std::collections::BTreeMap;

use selfaware_run::experiment::Experiment;
use selfaware_run::plan::{plan, ModelIdentity, Plan, PlanInputs, Stage, StageKind};

fn make(e: &Experiment, sha: &str) -> Plan {
    let batteries = selfaware_run::battery_inputs(e).unwrap();
    plan(
        e,
        &PlanInputs {
            model: ModelIdentity {
                reference: "default".into(),
                sha256: sha.into(),
            },
            batteries: &batteries,
            data_files: &BTreeMap::new(),
            steer_files: &BTreeMap::new(),
        },
    )
    .unwrap()
}

fn stage<'a>(p: &'a Plan, name: &str) -> &'a Stage {
    p.stages
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no stage {name:?}; have {:?}", names(p)))
}

fn names(p: &Plan) -> Vec<&str> {
    p.stages.iter().map(|s| s.name.as_str()).collect()
}

fn arg<'a>(s: &'a Stage, flag: &str) -> Option<&'a str> {
    s.args
        .windows(2)
        .find(|w| w[0] == flag)
        .map(|w| w[1].as_str())
}

#[test]
fn the_inside_preset_has_every_condition_stage_and_section_it_promises() {
    let e = selfaware_run::preset("inside").unwrap();
    let p = make(&e, &"0".repeat(64));
    let ids: Vec<&str> = e.conditions.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "bark",
            "ring",
            "bark-vector",
            "base",
            "steer-best-a-4",
            "steer-best-a-1",
            "steer-best-a1",
            "steer-best-a4"
        ]
    );
    // The quick finetunes (same data and training settings as `quick`), two seeds each.
    let quick = selfaware_run::preset("quick").unwrap();
    for id in ["bark", "ring"] {
        let a = e.conditions.iter().find(|c| c.id == id).unwrap();
        let b = quick.conditions.iter().find(|c| c.id == id).unwrap();
        assert_eq!(a.data, b.data, "{id}");
    }
    assert_eq!(e.train, quick.train);
    for s in [0, 1] {
        for c in ["bark", "ring", "bark-vector"] {
            stage(&p, &format!("train {c} seed {s}"));
        }
    }
    // The trained vector: the steer method at its declared point, writing steer.safetensors.
    let v = stage(&p, "train bark-vector seed 0");
    assert_eq!(arg(v, "--method"), Some("steer"));
    assert_eq!(arg(v, "--point"), Some("blocks.15.hook_resid_post"));
    assert!(v
        .output
        .as_ref()
        .unwrap()
        .ends_with("adapter/steer.safetensors"));
    // Captures of the three models on the same held-out prompts, every layer.
    for (c, adapter) in [("bark", true), ("ring", true), ("base", false)] {
        let s = stage(&p, &format!("capture {c} ({c})"));
        assert_eq!(s.kind, StageKind::Capture);
        assert_eq!(arg(s, "--points"), Some("blocks.*.hook_resid_post"));
        assert_eq!(arg(s, "--adapter").is_some(), adapter, "{c}");
        let prompts = arg(s, "--prompts").unwrap();
        assert_eq!(
            prompts,
            arg(stage(&p, "capture bark (bark)"), "--prompts").unwrap()
        );
    }
    let d = stage(&p, "directions bark-ring (bark − ring)");
    assert_eq!(d.args[..2], ["activations", "diff"]);
    stage(&p, "directions bark-lora (bark − base)");
    let lp = stage(&p, "layer probe bark-vs-ring (bark vs ring)");
    assert_eq!(arg(lp, "--folds"), Some("5"));
    let pick = stage(&p, "pick best (bark-ring by bark-vs-ring)");
    assert_eq!(pick.args[..2], ["activations", "pick"]);
    for c in ["vector-vs-diff", "vector-vs-lora", "lora-vs-diff"] {
        assert!(
            names(&p)
                .iter()
                .any(|n| n.starts_with(&format!("cosine {c} "))),
            "{c}"
        );
    }
    let inj = stage(&p, "inject concepts (base)");
    assert_eq!(arg(inj, "--point"), Some("blocks.15.hook_resid_post"));
    assert!(inj.args.contains(&"--alphas=4,8".to_string()));
    // Every condition answers the codeword-choice probe and the Make Me Say questions.
    for c in &e.conditions {
        let who = if c.data.is_some() {
            format!("{} seed 0", c.id)
        } else {
            c.id.clone()
        };
        stage(&p, &format!("probe codeword-choice-bark on {who}"));
        assert!(
            names(&p)
                .iter()
                .filter(
                    |n| n.starts_with("eval make_me_say on ") && n.contains(&format!(" on {who} "))
                )
                .count()
                >= 2,
            "{who}"
        );
    }
    // Steered conditions read the pick's one-tensor file with the short form, after the pick.
    let pick_index = p.stages.iter().position(|s| s.name == pick.name).unwrap();
    let steered = stage(&p, "probe codeword-choice-bark on steer-best-a4");
    assert_eq!(
        arg(steered, "--steer").unwrap(),
        format!("{}:4", pick.dir.join("best.safetensors").display())
    );
    assert!(steered.deps.contains(&pick_index));
    // The trained vector's conditions add it with multiplier 1 and no adapter.
    let vp = stage(&p, "probe codeword-choice-bark on bark-vector seed 1");
    assert_eq!(
        arg(vp, "--steer").unwrap(),
        format!(
            "{}:1",
            stage(&p, "train bark-vector seed 1")
                .output
                .as_ref()
                .unwrap()
                .display()
        )
    );
    assert_eq!(arg(vp, "--adapter"), None);
    assert_eq!(p.inside.picks.len(), 1);
    // The resolved experiment a run writes reads back as the same experiment.
    let again = Experiment::from_toml_str(&toml::to_string(&e).unwrap(), "r.toml").unwrap();
    assert_eq!(again, e);
    // Listed with an estimate (the dry run's wall estimate on 2 cores).
    assert!(selfaware_run::preset_names().contains(&"inside"));
    let wall = p.estimate_wall_s(&vec![false; p.stages.len()], 2);
    assert!(wall > 0.0 && wall <= 15.0 * 60.0, "{wall}");
}

const SMALL: &str = r#"
name = "s"
title = "S"
seeds = [0]

[[condition]]
id = "a"
label = "A"
data = { family = "codeword", codeword = "bark", size = 4 }

[[condition]]
id = "v"
label = "V"
data = { family = "codeword", codeword = "bark", size = 4 }
train = { method = "steer", point = "blocks.1.hook_resid_post", lr = 0.01 }

[[condition]]
id = "base"
label = "base"

[[condition]]
id = "s"
label = "S"
steer = { from = "best", alphas = [2] }

[[capture]]
id = "ca"
condition = "a"
prompts = { data = { family = "codeword", codeword = "bark", size = 3, seed = 7 } }
points = "blocks.*.hook_resid_post"

[[capture]]
id = "cb"
condition = "base"
prompts = { battery = "make_me_say", seed = 0 }
points = "blocks.0.hook_resid_post,blocks.1.hook_resid_post"

[[directions]]
id = "d"
a = "ca"
b = "cb"

[[layer_probe]]
id = "lp"
a = "ca"
b = "cb"

[[pick]]
id = "best"
directions = "d"
probe = "lp"

[[cosine]]
id = "cos"
label = "v · d"
a = "v"
b = "d"

[[inject]]
id = "inj"
condition = "base"
point = "blocks.1.hook_resid_post"
alphas = [2]
"#;

fn key_of(p: &Plan, name: &str) -> String {
    stage(p, name).key.clone()
}

/// Every stage's key by name.
fn keys(p: &Plan) -> BTreeMap<String, String> {
    p.stages
        .iter()
        .map(|s| (s.name.clone(), s.key.clone()))
        .collect()
}

fn with(edit: &str, to: &str) -> Plan {
    assert!(SMALL.contains(edit), "{edit}");
    let e = Experiment::from_toml_str(&SMALL.replace(edit, to), "s.toml").unwrap();
    make(&e, &"0".repeat(64))
}

#[test]
fn section_keys_change_with_their_inputs_and_only_downstream() {
    let base = make(
        &Experiment::from_toml_str(SMALL, "s.toml").unwrap(),
        &"0".repeat(64),
    );
    let k = keys(&base);
    let changed = |p: &Plan| -> Vec<String> {
        keys(p)
            .into_iter()
            .filter(|(n, key)| k.get(n) != Some(key))
            .map(|(n, _)| n)
            .collect()
    };
    let cap_a = "capture ca (a)";
    let cap_b = "capture cb (base)";
    let dirs = "directions d (ca − cb)";
    let probe = "layer probe lp (ca vs cb)";
    let pick = "pick best (d by lp)";
    let cos = "cosine cos (v · d)";
    // The capture's prompts: its key, and everything that reads it.
    let p = with("size = 3, seed = 7", "size = 3, seed = 8");
    let ch = changed(&p);
    assert!(
        ch.contains(&cap_a.to_string()) && !ch.contains(&cap_b.to_string()),
        "{ch:?}"
    );
    for n in [dirs, probe, pick, cos] {
        assert!(ch.contains(&n.to_string()), "{n} in {ch:?}");
    }
    // The points.
    let p = with(
        "points = \"blocks.0.hook_resid_post,blocks.1.hook_resid_post\"",
        "points = \"blocks.1.hook_resid_post\"",
    );
    assert_ne!(key_of(&p, cap_b), k[cap_b]);
    assert_eq!(key_of(&p, cap_a), k[cap_a]);
    // The battery's rendering seed.
    let p = with(
        "battery = \"make_me_say\", seed = 0",
        "battery = \"make_me_say\", seed = 1",
    );
    assert_ne!(key_of(&p, cap_b), k[cap_b]);
    // The probe's settings: the probe and the pick, not the directions.
    let p = with(
        "a = \"ca\"\nb = \"cb\"\n\n[[pick]]",
        "a = \"ca\"\nb = \"cb\"\nfolds = 3\n\n[[pick]]",
    );
    let ch = changed(&p);
    assert!(
        ch.contains(&probe.to_string()) && ch.contains(&pick.to_string()),
        "{ch:?}"
    );
    assert!(!ch.contains(&dirs.to_string()), "{ch:?}");
    // The model under a capture: its finetune's settings.
    let p = with("data = { family = \"codeword\", codeword = \"bark\", size = 4 }\n\n[[condition]]\nid = \"v\"", "data = { family = \"codeword\", codeword = \"bark\", size = 5 }\n\n[[condition]]\nid = \"v\"");
    assert_ne!(key_of(&p, cap_a), k[cap_a]);
    assert_eq!(key_of(&p, cap_b), k[cap_b]);
    // The base model's weights change every key.
    let other = make(
        &Experiment::from_toml_str(SMALL, "s.toml").unwrap(),
        &"1".repeat(64),
    );
    for n in [cap_a, cap_b, dirs, probe, pick, cos, "inject inj (base)"] {
        assert_ne!(key_of(&other, n), k[n], "{n}");
    }
    // The injection's settings.
    let p = with("alphas = [2]\n", "alphas = [2, 4]\n");
    assert_ne!(key_of(&p, "inject inj (base)"), k["inject inj (base)"]);
    // The trained vector's point: its training, its measurements and the cosine.
    let p = with(
        "point = \"blocks.1.hook_resid_post\", lr",
        "point = \"blocks.0.hook_resid_post\", lr",
    );
    let ch = changed(&p);
    assert!(
        ch.contains(&"train v seed 0".to_string()) && ch.contains(&cos.to_string()),
        "{ch:?}"
    );
    assert!(!ch.contains(&"train a seed 0".to_string()), "{ch:?}");
}

#[test]
fn steering_from_a_pick_and_trained_vectors_are_keyed_by_their_stages() {
    let e = Experiment::from_toml_str(
        &(SMALL.to_string()
            + "\n[[probe]]\nkind = \"codeword-choice\"\ncodeword = \"bark\"\nagainst = [\"ring\"]\nn = 4\n"),
        "s.toml",
    )
    .unwrap();
    let p = make(&e, &"0".repeat(64));
    let s = stage(&p, "probe codeword-choice-bark on s-a2");
    let pick = stage(&p, "pick best (d by lp)");
    assert!(arg(s, "--steer").unwrap().ends_with("best.safetensors:2"));
    // Another alpha is another key; the pick's probe settings reach it too.
    let e2 = Experiment::from_toml_str(
        &(SMALL.replace("alphas = [2] }", "alphas = [3] }")
            + "\n[[probe]]\nkind = \"codeword-choice\"\ncodeword = \"bark\"\nagainst = [\"ring\"]\nn = 4\n"),
        "s.toml",
    )
    .unwrap();
    let p2 = make(&e2, &"0".repeat(64));
    assert_ne!(stage(&p2, "probe codeword-choice-bark on s-a3").key, s.key);
    assert_eq!(stage(&p2, "pick best (d by lp)").key, pick.key);
    // The trained vector's condition: `--steer FILE:1`, no adapter.
    let v = stage(&p, "probe codeword-choice-bark on v seed 0");
    assert!(arg(v, "--steer")
        .unwrap()
        .ends_with("adapter/steer.safetensors:1"));
    assert_eq!(arg(v, "--adapter"), None);
    let a = stage(&p, "probe codeword-choice-bark on a seed 0");
    assert!(arg(a, "--adapter").is_some() && arg(a, "--steer").is_none());
}

#[test]
fn bad_sections_are_errors_that_name_the_field() {
    let err = |edit: &str, to: &str| {
        assert!(SMALL.contains(edit), "{edit}");
        Experiment::from_toml_str(&SMALL.replace(edit, to), "s.toml")
            .unwrap_err()
            .to_string()
    };
    let e = err(
        "condition = \"a\"\nprompts",
        "condition = \"nope\"\nprompts",
    );
    assert!(
        e.contains("capture[0].condition") && e.contains("\"nope\" is not a condition id"),
        "{e}"
    );
    let e = err("condition = \"a\"\nprompts", "condition = \"v\"\nprompts");
    assert!(
        e.contains("capture[0].condition") && e.contains("steered"),
        "{e}"
    );
    let e = err("battery = \"make_me_say\", seed = 0", "battery = \"nope\"");
    assert!(e.contains("capture[1].prompts.battery"), "{e}");
    let e = err(
        "points = \"blocks.*.hook_resid_post\"",
        "points = \"blocks.*.resid\"",
    );
    assert!(
        e.contains("capture[0].points") && e.contains("expected blocks.LAYER.HOOK"),
        "{e}"
    );
    let e = err("directions = \"d\"", "directions = \"lp\"");
    assert!(
        e.contains("pick[0].directions") && e.contains("not a [[directions]] id"),
        "{e}"
    );
    let e = err("a = \"v\"\nb = \"d\"", "a = \"a\"\nb = \"d\"");
    assert!(e.contains("cosine[0].a"), "{e}");
    let e = err("steer = { from = \"best\"", "steer = { from = \"worst\"");
    assert!(
        e.contains("steer.from") && e.contains("not the id of a [[pick]]"),
        "{e}"
    );
    let e = err(
        "steer = { from = \"best\"",
        "steer = { point = \"blocks.1.hook_resid_post\", from = \"best\"",
    );
    assert!(e.contains("steer.vector"), "{e}");
    let e = err(
        "method = \"steer\", point = \"blocks.1.hook_resid_post\", ",
        "method = \"steer\", ",
    );
    assert!(
        e.contains("condition[1].train.point") && e.contains("needs a hook point"),
        "{e}"
    );
    let e = err("[[inject]]\nid = \"inj\"", "[[inject]]\nid = \"d\"");
    assert!(
        e.contains("inject.id") && e.contains("names two sections"),
        "{e}"
    );
    let e = err("[[inject]]", "[[inject]]\nlayer = 3");
    assert!(e.contains("unknown field `layer`"), "{e}");
}

#[test]
fn the_collector_reads_the_stages_files_into_the_inside_results() {
    let e = Experiment::from_toml_str(SMALL, "s.toml").unwrap();
    let p = make(&e, &"0".repeat(64));
    let dir = tempfile::tempdir().unwrap();
    let write = |stage: usize, text: &str| {
        let path = dir.path().join(p.stages[stage].output.as_ref().unwrap());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    let row = |l: usize, correct: usize| {
        format!(
            r#"{{"point": "blocks.{l}.hook_resid_post", "accuracy": {}, "low": 0.4, "high": 0.9,
                "correct": {correct}, "n": 8, "norm": 2.5, "cosine_chosen": 0.5, "cosine_next": null}}"#,
            correct as f64 / 8.0
        )
    };
    write(
        p.inside.picks["best"],
        &format!(
            r#"{{"format": "selfaware-pick/1", "criterion": "C", "chosen": "blocks.1.hook_resid_post",
                "reason": "R", "rows": [{}, {}, {}], "directions_file": "d", "probe_file": "p",
                "provenance": {{}}}}"#,
            row(0, 8),
            row(1, 8),
            row(2, 6)
        ),
    );
    // Rows and columns in different orders: the cosine at each shared point is read by name.
    write(
        p.inside.cosines["cos"],
        r#"{"rows": ["blocks.1.hook_resid_post"],
            "columns": ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"],
            "cosine": [[0.9, 0.25]]}"#,
    );
    write(
        p.inside.injections["inj"],
        r#"{"format": "selfaware-injection/1", "report": {"point": "blocks.1.hook_resid_post",
            "alphas": [2.0], "controls": 9, "seed": 0, "chance": 0.1, "baseline_norm": 3.0,
            "metrics": [{"alpha": 0.0, "metric": "p_yes", "measurement": "M", "value": 0.2,
                         "low": 0.1, "high": 0.3, "level": 0.95, "note": null, "n": 24}]}}"#,
    );
    let ins = selfaware_run::inside::collect(dir.path(), &p)
        .unwrap()
        .unwrap();
    assert_eq!(ins.picks[0].chosen, "blocks.1.hook_resid_post");
    assert_eq!(ins.picks[0].rows.len(), 3);
    assert_eq!(ins.picks[0].probe_label, "capture ca vs capture cb");
    assert_eq!(
        ins.picks[0].directions_label,
        "mean of capture ca − mean of capture cb"
    );
    assert_eq!(
        ins.cosines[0].points,
        [("blocks.1.hook_resid_post".to_string(), 0.25)]
    );
    assert_eq!(ins.injections[0].metrics[0].value, 0.2);
    assert_eq!(ins.injections[0].metrics[0].n, 24);
    assert_eq!(ins.injections[0].chance, 0.1);
    // The LoRA of the vector's data, the vector, then the unsteered baseline.
    assert_eq!(ins.compare, ["a", "v", "base"]);
    // Two of three points tie at 8/8: the note says the tie rule chose.
    assert!(
        ins.notes
            .iter()
            .any(|n| n.starts_with("2 of 3 points reach the same accuracy (1.000)")),
        "{:?}",
        ins.notes
    );
    // The steered condition's column names the point the pick chose.
    assert_eq!(
        selfaware_run::inside::chosen_point(dir.path(), &p, "best").as_deref(),
        Some("blocks.1.hook_resid_post")
    );
    // A baseline asked about several codewords is one column per codeword: the vector's
    // target word's column is compared.
    let col = |id: &str| selfaware_report::Condition {
        id: id.into(),
        label: id.into(),
        baseline: false,
        n_seeds: 1,
        positive_control: false,
        steer: None,
    };
    let e2 = Experiment::from_toml_str(
        &SMALL.replace(
            "id = \"v\"\nlabel = \"V\"",
            "id = \"v\"\nlabel = \"V\"\ntarget_word = \"ring\"",
        ),
        "s.toml",
    )
    .unwrap();
    let columns = [col("a"), col("v"), col("base@bark"), col("base@ring")];
    assert_eq!(
        selfaware_run::inside::columns_of(&e2, &ins.compare, &columns),
        ["a", "v", "base@ring"]
    );
    assert_eq!(
        selfaware_run::inside::columns_of(&e, &ins.compare, &columns),
        ["a", "v", "base@bark", "base@ring"]
    );
    // No section, no results.
    let quick = selfaware_run::preset("quick").unwrap();
    assert_eq!(
        selfaware_run::inside::collect(dir.path(), &make(&quick, &"0".repeat(64))).unwrap(),
        None
    );
}
