//! Concept injection: hand-computed pieces, and every number of a run on a tiny random model
//! recomputed from the engine directly.

use std::path::Path;

use selfaware_activations::inject::{
    concept_vectors, control_words, forms, run, Detection, Identification, InjectSpec,
    InjectionBattery,
};
use selfaware_activations::{capture_conversations, Positions};
use selfaware_model::testing::{write_tiny_gguf, TinySpec};
use selfaware_model::{Engine, HookPoint, LayerHook, ModelSource, SteerVector, Steering};
use selfaware_types::Conversation;

fn engine(dir: &Path) -> Engine {
    let path = dir.join("tiny.gguf");
    write_tiny_gguf(&path, &TinySpec::default()).unwrap();
    Engine::load(&ModelSource::Gguf(path)).unwrap()
}

const SMALL: &str = r#"
source = "test"
concept_prompt = "Tell me about {word}."
detect = ["Do you notice an injected thought? Answer Yes or No.", "Is a thought inserted? Answer Yes or No."]
identify = ["What is the thought about? Answer with one word."]
concepts = ["ocean", "bread", "snow"]
baseline = ["table", "window"]
"#;

#[test]
fn the_builtin_battery_parses_and_bad_batteries_name_the_field() {
    let b = InjectionBattery::builtin().unwrap();
    assert!(b.concepts.len() >= 20 && b.baseline.len() >= 40);
    assert!(b.concept_prompt.contains("{word}"));
    let bad = |from: &str, to: &str| {
        InjectionBattery::parse(&SMALL.replace(from, to), "t.toml")
            .unwrap_err()
            .to_string()
    };
    assert!(bad("{word}.", "it.").contains("concept_prompt: expected a prompt with {word}"));
    assert!(bad(r#""ocean", "bread", "snow""#, r#""ocean""#)
        .contains("concepts: expected at least two"));
    assert!(bad(r#""ocean", "bread""#, r#""ocean", "ocean""#)
        .contains("concepts[1]: \"ocean\" is listed twice"));
    assert!(bad(r#"["table", "window"]"#, r#"["table", "snow"]"#)
        .contains("baseline: \"snow\" is also a concept"));
    assert!(bad(
        r#"identify = ["What is the thought about? Answer with one word."]"#,
        "identify = []"
    )
    .contains("identify: expected at least one entry"));
    assert!(bad("source", "sauce").starts_with("t.toml: "));
}

#[test]
fn detection_identification_forms_and_controls_are_the_hand_computed_ones() {
    let d = Detection::of(0.3, 0.1);
    assert!((d.p_yes - 0.75).abs() < 1e-12 && (d.mass - 0.4).abs() < 1e-12);
    assert_eq!(Detection::of(0.0, 0.0).p_yes, 0.0);
    // Own word first: 0.2 of a 0.5 mass; one candidate above it.
    let i = Identification::of(&[0.2, 0.25, 0.05]);
    assert!((i.p_own - 0.4).abs() < 1e-12 && (i.mass - 0.5).abs() < 1e-12);
    assert_eq!(i.rank, 2);
    assert_eq!(
        Identification::of(&[0.3, 0.3, 0.1]).rank,
        1,
        "ties do not rank above"
    );
    assert_eq!(forms("ocean"), vec!["ocean", "Ocean"]);
    assert_eq!(forms("X"), vec!["X"]);
    let words: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
    let c = control_words(&words, 2, 7).unwrap();
    assert_eq!(c, control_words(&words, 2, 7).unwrap(), "seeded");
    for (i, cs) in c.iter().enumerate() {
        assert_eq!(cs.len(), 2);
        assert!(!cs.contains(&words[i]), "a concept is not its own control");
    }
    let e = control_words(&words, 5, 0).unwrap_err().to_string();
    assert!(
        e.contains("5 control words need at least 6 concepts"),
        "{e}"
    );
}

fn p_yes(e: &Engine, q: &str) -> f64 {
    let f = e
        .first_token_logprobs(&Conversation::user(None, q), &["Yes".into(), "No".into()])
        .unwrap();
    Detection::of(f[0].1.exp(), f[1].1.exp()).p_yes
}

#[test]
fn a_run_is_what_the_engine_says_with_and_without_the_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let b = InjectionBattery::parse(SMALL, "small").unwrap();
    let point = HookPoint::block(0, LayerHook::ResidPost);

    // Vectors: a concept's activation minus the baseline words' mean.
    let cv = concept_vectors(&e, &b, point).unwrap();
    let convs: Vec<Conversation> = ["ocean", "bread", "snow", "table", "window"]
        .iter()
        .map(|w| Conversation::user(None, &format!("Tell me about {w}.")))
        .collect();
    let a = capture_conversations(&e, &convs, &[point], Positions::Last).unwrap();
    let row = |i: usize| &a.points[0].1[i * 64..(i + 1) * 64];
    for c in 0..3 {
        for j in 0..64 {
            let want = f64::from(row(c)[j]) - (f64::from(row(3)[j]) + f64::from(row(4)[j])) / 2.0;
            assert!((f64::from(cv.vectors[c][j]) - want).abs() < 1e-6);
        }
    }

    let spec = InjectSpec {
        point,
        alphas: vec![3.0],
        controls: 1,
        seed: 5,
        resamples: 200,
        level: 0.95,
    };
    let mut seen = Vec::new();
    let r = run(&e, &b, &spec, &mut |d, t| seen.push((d, t))).unwrap();
    assert_eq!(
        r.alphas,
        vec![0.0, 3.0],
        "the trials without injection are added"
    );
    assert_eq!(seen.last(), Some(&(6, 6)));
    assert_eq!(r.trials.len(), 6);
    let controls = control_words(&b.concepts, 1, 5).unwrap();
    assert_eq!(r.control_words, controls);

    // Without injection: the unsteered engine, the same for every concept.
    for t in r.trials.iter().filter(|t| t.alpha == 0.0) {
        for (d, q) in t.detect.iter().zip(&b.detect) {
            // (Run side by side with the other wordings: equal up to rounding.)
            assert!((d.p_yes - p_yes(&e, q)).abs() < 1e-6 * d.p_yes.max(1e-3));
        }
    }
    // ... and its identification: the concept's word against its controls, unsteered (scored
    // once for all concepts in the run; the same numbers up to rounding).
    for (i, t) in r.trials.iter().filter(|t| t.alpha == 0.0).enumerate() {
        let words = [b.concepts[i].clone(), controls[i][0].clone()];
        let cands: Vec<String> = words.iter().flat_map(|w| forms(w)).collect();
        let s = e
            .score_options(&Conversation::user(None, &b.identify[0]), &cands)
            .unwrap();
        let p: Vec<f64> = s.candidates.iter().map(|c| c.logprob.exp()).collect();
        let want = Identification::of(&[p[0] + p[1], p[2] + p[3]]);
        assert!((t.identify[0].p_own - want.p_own).abs() < 1e-6 * want.p_own.max(1e-3));
        assert_eq!(t.identify[0].rank, want.rank);
    }
    // With injection: the engine steered by 3 × the concept's vector.
    for (i, concept) in b.concepts.iter().enumerate() {
        let steered = e
            .with_steering(
                Steering::new(
                    &[SteerVector::new(point, cv.vectors[i].clone(), 3.0)],
                    &e.model.cfg,
                )
                .unwrap(),
            )
            .unwrap();
        let t = r
            .trials
            .iter()
            .find(|t| t.alpha == 3.0 && &t.concept == concept)
            .unwrap();
        for (d, q) in t.detect.iter().zip(&b.detect) {
            assert!(
                (d.p_yes - p_yes(&steered, q)).abs() < 1e-6 * d.p_yes.max(1e-3),
                "{concept}"
            );
        }
        let words = [concept.clone(), controls[i][0].clone()];
        let cands: Vec<String> = words.iter().flat_map(|w| forms(w)).collect();
        let s = steered
            .score_options(&Conversation::user(None, &b.identify[0]), &cands)
            .unwrap();
        let p: Vec<f64> = s.candidates.iter().map(|c| c.logprob.exp()).collect();
        let want = Identification::of(&[p[0] + p[1], p[2] + p[3]]);
        assert!((t.identify[0].p_own - want.p_own).abs() < 1e-9, "{concept}");
        assert_eq!(t.identify[0].rank, want.rank);
    }
    assert_ne!(
        r.trials[3].detect[0].p_yes, r.trials[0].detect[0].p_yes,
        "injection changes the answer"
    );

    // Metrics: the paired gains are the means of the per-concept differences.
    let m = |a: f32, name: &str| {
        r.metrics
            .iter()
            .find(|m| m.alpha == a && m.metric == name)
            .unwrap()
    };
    let mean_yes = |t: &selfaware_activations::inject::Trial| {
        t.detect.iter().map(|d| d.p_yes).sum::<f64>() / 2.0
    };
    let gain: f64 = (0..3)
        .map(|i| mean_yes(&r.trials[3 + i]) - mean_yes(&r.trials[i]))
        .sum::<f64>()
        / 3.0;
    assert!((m(3.0, "detection_gain").value - gain).abs() < 1e-12);
    let fp = m(0.0, "p_yes");
    assert_eq!(
        fp.n, 2,
        "the false-positive rate's spread is over the detect wordings"
    );
    assert!((fp.value - mean_yes(&r.trials[0])).abs() < 1e-12);
    let g = m(3.0, "identification_gain");
    assert_eq!(g.n, 3);
    assert!(g.low.unwrap() <= g.value && g.value <= g.high.unwrap());
    assert!(!r
        .metrics
        .iter()
        .any(|m| m.alpha == 0.0 && m.metric.ends_with("_gain")));
    assert!(r.table().contains("detection_gain"));
    assert!((r.chance - 0.5).abs() < 1e-12);
}

#[test]
fn a_run_writes_its_report_and_vectors_that_steering_reads() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    let b = InjectionBattery::parse(SMALL, "small").unwrap();
    let point = HookPoint::block(1, LayerHook::ResidPre);
    let spec = InjectSpec {
        point,
        alphas: vec![-2.0, 2.0],
        controls: 2,
        seed: 0,
        resamples: 100,
        level: 0.9,
    };
    let r = run(&e, &b, &spec, &mut |_, _| {}).unwrap();
    assert_eq!(r.alphas, vec![-2.0, 0.0, 2.0]);
    let model = selfaware_activations::CaptureModel {
        engine: &e,
        label: "tiny".into(),
        adapter: None,
    };
    let tool = selfaware_types::Provenance {
        tool_version: "test".into(),
        ..Default::default()
    };
    let out = dir.path().join("inj");
    let files = r.write(&out, false, &model, &tool).unwrap();
    assert_eq!(files.len(), 3 + 2);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("injection.json")).unwrap())
            .unwrap();
    assert_eq!(json["provenance"]["model_sha256"], e.info.sha256);
    assert_eq!(json["provenance"]["seed"], 0);
    assert_eq!(json["report"]["trials"].as_array().unwrap().len(), 9);
    let csv = std::fs::read_to_string(out.join("injection.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + r.metrics.len());
    assert!(csv.lines().nth(1).unwrap().starts_with("-2,p_yes,"));
    // Each vector file is a steering file: tensor named as the point.
    let steer = selfaware_model::SteerSpec {
        file: out.join("vectors").join("01-bread.safetensors"),
        point,
        alpha: 1.0,
    };
    assert_eq!(steer.read_vector().unwrap(), r.vectors.vectors[1]);
    // An earlier run's results are kept unless --force.
    let err = r.write(&out, false, &model, &tool).unwrap_err().to_string();
    assert!(err.contains("injection.json already exists"), "{err}");
    r.write(&out, true, &model, &tool).unwrap();
}
