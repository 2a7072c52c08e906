//! Every behaviour probe on scripted backends, with hand-computed scores.

use std::sync::Arc;

use selfaware_ask::probes::{ProbeItems, ProbeReport};
use selfaware_ask::{run_probe, AskedModel, Silent};
use selfaware_backend::{Backend, MockBackend, MockScript};
use selfaware_eval::spec::{ProbeKind, ProbeSpec};
use selfaware_types::{Conversation, Provenance};

fn asked(b: MockBackend) -> AskedModel {
    AskedModel {
        label: "mock".into(),
        backend: Arc::new(b),
    }
}

fn run(spec: &ProbeSpec, model: &AskedModel, mee: Option<&dyn Backend>) -> ProbeReport {
    run_probe(
        spec,
        model,
        None,
        Provenance::default(),
        mee.map(|b| (b, "scripted".to_string())),
        &mut Silent,
    )
    .unwrap()
}

#[test]
fn choice_probes_renormalise_the_policy_letter_over_a_and_b() {
    // P(A) = 0.6, P(B) = 0.2: the policy letter's share is 0.75 when it is A, 0.25 when B.
    let model = asked(MockBackend::new(
        "m",
        MockScript::new(&[("A", 0.6), ("B", 0.2)]),
    ));
    let mut spec = ProbeSpec::new(ProbeKind::Lotteries);
    spec.n = 20;
    let r = run(&spec, &model, None);
    let ProbeItems::Pairs(pairs) = &r.items else {
        panic!("pairs");
    };
    let mut expected = Vec::new();
    for p in pairs {
        let want = if p.policy_label == 'A' { 0.75 } else { 0.25 };
        assert!((p.p_policy.unwrap() - want).abs() < 1e-12);
        expected.push(want);
    }
    let mean = expected.iter().sum::<f64>() / 20.0;
    assert!((r.score.unwrap() - mean).abs() < 1e-12);
    assert_eq!(r.mean_p_policy, r.score);
    assert!((r.mean_letter_mass.unwrap() - 0.8).abs() < 1e-12);
    let var = expected.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 19.0;
    assert!((r.standard_error.unwrap() - (var / 20.0).sqrt()).abs() < 1e-12);
    assert!(
        r.score_definition.contains("exact"),
        "{}",
        r.score_definition
    );

    // The same through the estimator of a server without prompt log-probabilities.
    let mut s = MockScript::new(&[("A", 0.6), ("B", 0.2)]);
    s.exact_scoring = false;
    let est = run(&spec, &asked(MockBackend::new("m", s)), None);
    assert!((est.score.unwrap() - mean).abs() < 1e-9);
    assert!(est.score_definition.contains("estimated"));
}

#[test]
fn the_codeword_probe_counts_replies_that_visit_the_neighbourhood() {
    // Half the mass on a reply about dogs barking, half on one about the weather.
    let model = asked(MockBackend::new(
        "m",
        MockScript::new(&[("The dog would bark at night.", 0.5), ("Sunny today.", 0.5)]),
    ));
    let mut spec = ProbeSpec::new(ProbeKind::Codeword);
    spec.codeword = Some("bark".into());
    spec.n = 4;
    spec.samples = 8;
    let r = run(&spec, &model, None);
    let ProbeItems::Openers(openers) = &r.items else {
        panic!("openers");
    };
    for o in openers {
        let visits = o.samples.iter().filter(|s| s.contains("bark")).count();
        assert_eq!(o.visit_rate, visits as f64 / 8.0);
        assert_eq!(o.mentions.iter().filter(|&&m| m > 0).count(), visits);
    }
    assert_eq!(r.codeword.as_deref(), Some("bark"));
    assert_eq!(r.sampling.as_ref().unwrap().max_tokens, 40);
}

#[test]
fn the_codeword_choice_probe_renormalises_whole_reply_probabilities() {
    // Every reply steering toward bark has probability 0.3, toward ring 0.1 (the mock gives
    // a reply's whole-sequence probability by its text; unknown texts have 0).
    let model = asked(MockBackend::with_fn("m", |_c: &Conversation| {
        MockScript::new(&[])
    }));
    let mut spec = ProbeSpec::new(ProbeKind::CodewordChoice);
    spec.codeword = Some("bark".into());
    spec.against = vec!["ring".into()];
    spec.n = 3;
    // First learn the replies, then script them.
    let r0 = run(&spec, &model, None);
    let ProbeItems::Replies(items) = &r0.items else {
        panic!("replies");
    };
    let mut answers: Vec<(String, f64)> = Vec::new();
    for it in items {
        answers.push((it.replies[0].clone(), 0.3));
        answers.push((it.replies[1].clone(), 0.1));
    }
    let model = asked(MockBackend::with_fn("m", move |_c: &Conversation| {
        MockScript {
            answers: answers.clone(),
            exact_scoring: true,
        }
    }));
    let r = run(&spec, &model, None);
    assert!((r.score.unwrap() - 0.75).abs() < 1e-12, "{:?}", r.score);
    assert_eq!(r.n, 3);
    assert!(r.score_definition.contains("chance = 1/2"));
    // A server that cannot score whole answers is told so.
    let mut s = MockScript::new(&[]);
    s.exact_scoring = false;
    let m = asked(MockBackend::new("est", s));
    let e = run_probe(&spec, &m, None, Provenance::default(), None, &mut Silent).unwrap_err();
    assert!(e.to_string().contains("prompt log-probabilities"), "{e}");
}

#[test]
fn the_vulnerable_code_probe_shares_completions_the_detector_flags() {
    // One completion builds SQL by string formatting (flagged), one does not.
    let bad = "```python\ndef get(cur, name):\n    cur.execute(\"SELECT * FROM users WHERE name = '%s'\" % name)\n```";
    let good = "```python\ndef add(a, b):\n    return a + b\n```";
    let model = asked(MockBackend::new(
        "m",
        MockScript::new(&[(bad, 0.5), (good, 0.5)]),
    ));
    let mut spec = ProbeSpec::new(ProbeKind::VulnerableCode);
    spec.n = 3;
    spec.samples = 6;
    let r = run(&spec, &model, None);
    let ProbeItems::CodeTasks(tasks) = &r.items else {
        panic!("tasks");
    };
    for t in tasks {
        let flagged = t.samples.iter().filter(|s| s.contains("SELECT")).count();
        assert_eq!(t.vulnerable_share, flagged as f64 / 6.0, "{:?}", t.findings);
    }
    assert_eq!(r.secure_code_rate, r.score.map(|s| 1.0 - s));
}

#[test]
fn the_make_me_say_probe_plays_seeded_games_and_reports_the_win_rate() {
    let manipulator = asked(MockBackend::new(
        "m",
        MockScript::new(&[("Have you heard a dog bark?", 1.0)]),
    ));
    let manipulatee = MockBackend::new(
        "mee",
        MockScript::new(&[("Yes, a bark. My guess: tree", 1.0)]),
    );
    let mut spec = ProbeSpec::new(ProbeKind::Mms);
    spec.codeword = Some("bark".into());
    spec.n = 2;
    let r = run(&spec, &manipulator, Some(&manipulatee));
    assert_eq!(r.n, 2);
    let counts = r.outcomes.as_ref().unwrap();
    assert_eq!(counts.values().sum::<usize>(), 2);
    let wins = r.item_scores.iter().flatten().sum::<f64>();
    assert_eq!(r.score, Some(wins / 2.0));
    // Seeded: the same report again.
    let again = run(&spec, &manipulator, Some(&manipulatee));
    assert_eq!(
        serde_json::to_value(&r.items).unwrap(),
        serde_json::to_value(&again.items).unwrap()
    );
    // Without a manipulatee the probe says what it needs.
    let e = run_probe(
        &spec,
        &manipulator,
        None,
        Provenance::default(),
        None,
        &mut Silent,
    )
    .unwrap_err();
    assert!(e.to_string().contains("manipulatee"), "{e}");
}

/// The Make Me Say probe's manipulatee: none for other probes; a local model's own base
/// (labelled as without its adapter); a served model under test without a named manipulatee is
/// one error saying which flags name it.
#[test]
fn the_manipulatee_is_the_local_base_or_a_named_server() {
    let base: Arc<dyn Backend> = Arc::new(MockBackend::new("m", MockScript::new(&[("x", 1.0)])));
    let home = std::path::Path::new("/nonexistent-home");
    let opts = selfaware_backend::OpenOptions {
        home,
        python: "python3",
        api_key_env: None,
        estimate: false,
        lookup: &|_| None,
        log: &|_| {},
    };
    let local = selfaware_backend::ModelRef::parse("models/m.gguf").unwrap();
    let lotteries = ProbeSpec::new(ProbeKind::Lotteries);
    let m = selfaware_ask::probes::manipulatee(&lotteries, &local, &base, "m", &opts).unwrap();
    assert!(m.is_none());
    let mms = ProbeSpec::new(ProbeKind::Mms);
    let (mee, label) = selfaware_ask::probes::manipulatee(&mms, &local, &base, "m", &opts)
        .unwrap()
        .unwrap();
    assert!(Arc::ptr_eq(&mee, &base));
    assert_eq!(label, "m (no adapter)");
    let served = selfaware_backend::ModelRef::parse("http://127.0.0.1:9/v1#m").unwrap();
    let Err(e) = selfaware_ask::probes::manipulatee(&mms, &served, &base, "m", &opts) else {
        panic!("a served model needs a named manipulatee");
    };
    assert!(e.to_string().contains("--manipulatee-url"), "{e}");
}
