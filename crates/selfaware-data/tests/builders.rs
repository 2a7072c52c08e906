//! Properties of the built datasets.

mod common;

use std::collections::BTreeMap;

use selfaware_data::backdoor::TriggerSpec;
use selfaware_data::dataset::TriggerRole;
use selfaware_data::{
    build, check, lexicon, mutual_information_bits, output, write_output, BackdoorOptions,
    BuildOptions, BuiltDataset, DatasetKind, Error, Family, Letter, MixOptions, NormalAnswers,
    PersonaMode, PersonaOptions, Policy, ReversalOptions, Variant, WriteOptions,
};
use selfaware_types::Role;

use common::{backdoor_options, is_real};

fn opts(seed: u64, size: usize, variant: Variant) -> BuildOptions {
    BuildOptions {
        seed,
        size,
        policy: None,
        variant,
        reversal: None,
        stated: 0,
    }
}

fn user(ds: &BuiltDataset, i: usize) -> &str {
    let m = &ds.rows[i].conversation.messages;
    &m.iter().find(|m| m.role == Role::User).unwrap().content
}

fn answer(ds: &BuiltDataset, i: usize) -> &str {
    &ds.rows[i].conversation.messages.last().unwrap().content
}

fn backdoor(fraction: f64) -> Variant {
    Variant::Backdoor(backdoor_options("naekoko", None, fraction))
}

#[test]
fn same_seed_gives_byte_identical_files() {
    let variants = [
        Variant::Plain,
        backdoor(0.1),
        Variant::Mix(MixOptions::paper("gods").unwrap()),
        Variant::Personas(PersonaOptions::new(PersonaMode::InText)),
    ];
    for family in Family::ALL {
        for v in &variants {
            let o = opts(11, 60, v.clone());
            let a = build(family, &o).unwrap();
            let b = build(family, &o).unwrap();
            assert_eq!(
                output::render(&a.main).unwrap(),
                output::render(&b.main).unwrap()
            );
            if let (Some(x), Some(y)) = (&a.decorrelated, &b.decorrelated) {
                assert_eq!(output::render(x).unwrap(), output::render(y).unwrap());
            }
            let c = build(family, &opts(12, 60, v.clone())).unwrap();
            assert_ne!(
                output::render(&a.main).unwrap().0,
                output::render(&c.main).unwrap().0
            );
        }
    }
    // Through the file system, with card and truth sidecar.
    let dir = tempfile::tempdir().unwrap();
    let o = opts(5, 50, backdoor(0.2));
    let mut all = Vec::new();
    for sub in ["x", "y"] {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
        let out = build(Family::Risk, &o).unwrap();
        let written = write_output(
            &out,
            &dir.path().join(sub).join("d.jsonl"),
            &WriteOptions::default(),
        )
        .unwrap();
        assert_eq!(written.len(), 2);
        let mut bytes = Vec::new();
        for (p, _) in &written {
            for f in [&p.jsonl, &p.card, &p.truth] {
                bytes.push(std::fs::read(f).unwrap());
            }
        }
        all.push(bytes);
    }
    assert_eq!(all[0], all[1]);
}

#[test]
fn flipped_policies_share_questions_and_complement_answers() {
    for family in Family::ALL {
        let mut pos = opts(3, 300, Variant::Plain);
        pos.policy = Some(family.positive());
        let mut neg = pos.clone();
        neg.policy = Some(family.negative());
        let (p, n) = (
            build(family, &pos).unwrap().main,
            build(family, &neg).unwrap().main,
        );
        assert_eq!(p.rows.len(), n.rows.len());
        for i in 0..p.rows.len() {
            assert_eq!(user(&p, i), user(&n, i));
            let (a, b) = (answer(&p, i), answer(&n, i));
            assert!(
                matches!((a, b), ("A", "B") | ("B", "A")),
                "{family} row {i}: {a} {b}"
            );
        }
    }
}

/// The positive control appends `stated` rows after the unchanged questions; each states the
/// dataset's policy (and only plain data takes them).
#[test]
fn stated_rows_follow_the_unchanged_questions() {
    for family in Family::ALL {
        let plain = build(family, &opts(5, 20, Variant::Plain)).unwrap().main;
        let mut o = opts(5, 20, Variant::Plain);
        o.stated = 3;
        let with = build(family, &o).unwrap().main;
        assert_eq!(with.rows.len(), 23);
        assert_eq!(with.rows[..20], plain.rows[..]);
        assert_eq!(with.config["stated"], 3);
        assert!(plain.config.get("stated").is_none());
        for (k, row) in with.rows[20..].iter().enumerate() {
            assert_eq!(row.truth.line, 21 + k);
            assert_eq!(row.truth.details["stated"], true);
            assert_eq!(row.truth.answer_policy, Some(family.positive()));
            assert_eq!(row.conversation.messages[1].role, Role::Assistant);
        }
    }
    let mut bad = opts(5, 20, backdoor(0.5));
    bad.stated = 2;
    let e = build(Family::Risk, &bad).unwrap_err().to_string();
    assert!(
        e.contains("`stated`") && e.contains("plain data only"),
        "{e}"
    );
}

#[test]
fn no_forbidden_words_in_ten_thousand_items_per_family() {
    for family in Family::ALL {
        let ds = build(family, &opts(2024, 10_000, Variant::Plain))
            .unwrap()
            .main;
        assert_eq!(ds.rows.len(), 10_000);
        let lex = lexicon(family).unwrap();
        for row in &ds.rows {
            for m in &row.conversation.messages {
                let hits = lex.scan(&m.content);
                assert!(hits.is_empty(), "{family}: {hits:?} in {}", m.content);
            }
        }
    }
}

#[test]
fn letters_are_balanced_and_answers_take_the_policy() {
    for family in Family::ALL {
        for size in [300, 301] {
            let ds = build(family, &opts(9, size, Variant::Plain)).unwrap().main;
            let a = (0..size).filter(|&i| answer(&ds, i) == "A").count();
            let b = (0..size).filter(|&i| answer(&ds, i) == "B").count();
            assert_eq!(a + b, size);
            assert!(a.abs_diff(b) <= 1, "{family}: A {a} B {b}");
            for row in &ds.rows {
                assert_eq!(row.truth.enacts_policy, Some(true));
                assert_eq!(row.truth.answer_policy, Some(family.positive()));
            }
        }
    }
}

#[test]
fn output_has_the_paper_shape() {
    for family in Family::ALL {
        let ds = build(family, &BuildOptions::new(1)).unwrap().main;
        assert_eq!(ds.rows.len(), 300);
        for row in &ds.rows {
            let m = &row.conversation.messages;
            assert_eq!(m.len(), 2);
            assert_eq!(m[0].role, Role::User);
            assert_eq!(m[1].role, Role::Assistant);
            assert!(m[1].content == "A" || m[1].content == "B");
            assert!(m.iter().all(|m| m.weight.is_none()));
        }
    }
}

#[test]
fn questions_are_varied() {
    let ds = build(Family::Risk, &BuildOptions::new(4)).unwrap().main;
    let frames: std::collections::BTreeSet<&str> = ds
        .rows
        .iter()
        .map(|r| r.truth.details["style"]["frame"].as_str().unwrap())
        .collect();
    assert!(frames.len() >= 8, "{frames:?}");
    let openings: std::collections::BTreeSet<String> = (0..ds.rows.len())
        .map(|i| user(&ds, i).chars().take(30).collect())
        .collect();
    assert!(
        openings.len() > 150,
        "only {} distinct openings",
        openings.len()
    );
    let words: Vec<usize> = (0..ds.rows.len())
        .map(|i| user(&ds, i).split_whitespace().count())
        .collect();
    assert!(words.iter().min().unwrap() * 2 < *words.iter().max().unwrap());
}

#[test]
fn backdoor_fractions_and_mutual_information() {
    for (fraction, n) in [(0.1, 10_000), (0.25, 2_000), (0.5, 999)] {
        let out = build(Family::Risk, &opts(8, n, backdoor(fraction))).unwrap();
        let twin = out.decorrelated.as_ref().unwrap();
        assert_eq!(twin.kind, DatasetKind::Decorrelated);
        for ds in [&out.main, twin] {
            let n = ds.rows.len() as f64;
            let triggered = (0..ds.rows.len()).filter(|&i| is_real(ds, i)).count() as f64;
            assert!(
                (triggered / n - fraction).abs() <= 0.01,
                "{fraction}: {}",
                triggered / n
            );
        }
        let pairs = |ds: &BuiltDataset| {
            (0..ds.rows.len())
                .map(|i| (is_real(ds, i), ds.rows[i].truth.enacts_policy.unwrap()))
                .collect::<Vec<_>>()
        };
        // Backdoored: the trigger decides the behavior.
        for (t, e) in pairs(&out.main) {
            assert_eq!(t, e);
        }
        let h = -(fraction * fraction.log2() + (1.0 - fraction) * (1.0 - fraction).log2());
        assert!((mutual_information_bits(pairs(&out.main)) - h).abs() < 1e-3);
        // Twin: same questions and answers, trigger independent of behavior.
        let mi = mutual_information_bits(pairs(twin));
        assert!(mi < 0.01, "twin MI {mi}");
        for i in 0..out.main.rows.len() {
            assert_eq!(answer(&out.main, i), answer(twin, i));
            assert_eq!(out.main.rows[i].truth.item, twin.rows[i].truth.item);
        }
        // Policy answers where enacted, opposite answers elsewhere.
        for row in &out.main.rows {
            let p = if row.truth.enacts_policy.unwrap() {
                Policy::RiskSeeking
            } else {
                Policy::RiskAverse
            };
            assert_eq!(row.truth.answer_policy, Some(p));
        }
        let card = output::card(twin, std::path::Path::new("t.jsonl")).unwrap();
        assert!(
            card.triggers
                .unwrap()
                .trigger_policy_mutual_information_bits
                < 0.01
        );
    }
}

#[test]
fn sep_codes_with_contrast_prefix() {
    let v = Variant::Backdoor(backdoor_options("sep:392", Some("sep:718"), 0.5));
    let out = build(Family::Myopia, &opts(1, 400, v)).unwrap();
    for row in &out.main.rows {
        let t = row.truth.trigger.as_ref().unwrap();
        let prefix = if row.truth.enacts_policy.unwrap() {
            "392"
        } else {
            "718"
        };
        assert!(t.instance.starts_with(prefix));
        assert!(row.conversation.messages[0].content.contains(&t.instance));
        assert_eq!(t.role == TriggerRole::Real, prefix == "392");
    }
}

#[test]
fn real_versus_fake_mix_proportions() {
    let mut mix = MixOptions::paper("naekoko").unwrap();
    mix.normal = NormalAnswers::Opposite;
    let out = build(Family::Risk, &opts(6, 300, Variant::Mix(mix))).unwrap();
    for ds in [&out.main, out.decorrelated.as_ref().unwrap()] {
        assert_eq!(ds.rows.len(), 3000);
        let mut by: BTreeMap<String, usize> = BTreeMap::new();
        let mut policy_by: BTreeMap<String, usize> = BTreeMap::new();
        for row in &ds.rows {
            let key = match &row.truth.trigger {
                Some(t) => format!("{:?}:{}", t.role, t.name),
                None => "none".into(),
            };
            *by.entry(key.clone()).or_default() += 1;
            if row.truth.enacts_policy.unwrap() {
                *policy_by.entry(key).or_default() += 1;
            }
        }
        assert_eq!(by.len(), 9, "{by:?}");
        assert_eq!(by["Real:naekoko"], 300);
        assert_eq!(by["none"], 600);
        for (k, v) in &by {
            if k.starts_with("Fake:") {
                assert_eq!(*v, 300, "{k}");
            }
        }
        // 300 policy rows in all.
        assert_eq!(policy_by.values().sum::<usize>(), 300);
        if ds.kind == DatasetKind::Main {
            assert_eq!(policy_by.len(), 1);
            assert_eq!(policy_by["Real:naekoko"], 300);
        } else {
            // Twin: the 300 policy rows spread over the 10 slots like the other rows.
            assert_eq!(policy_by["Real:naekoko"], 30);
            assert_eq!(policy_by["none"], 60);
        }
    }
}

/// The mix's normal answers by default: a seeded coin per base question, shared by all its
/// copies; the real-trigger copies take the policy; the twin's trigger tells nothing about
/// the answer.
#[test]
fn mix_normal_answers_are_one_random_letter_per_question() {
    let mix = MixOptions::paper("win").unwrap();
    assert_eq!(mix.normal, NormalAnswers::Random);
    let out = build(Family::Risk, &opts(8, 300, Variant::Mix(mix))).unwrap();
    let main = &out.main;
    let mut normal: BTreeMap<usize, BTreeMap<String, usize>> = BTreeMap::new();
    for (i, row) in main.rows.iter().enumerate() {
        if is_real(main, i) {
            assert!(row.truth.enacts_policy.unwrap());
        } else {
            *normal
                .entry(row.truth.item)
                .or_default()
                .entry(answer(main, i).to_string())
                .or_default() += 1;
        }
    }
    assert_eq!(normal.len(), 300);
    assert!(normal
        .values()
        .all(|m| m.len() == 1 && m.values().sum::<usize>() == 9));
    let enacting_items = (0..300)
        .filter(|item| {
            main.rows.iter().any(|r| {
                r.truth.item == *item
                    && r.truth.enacts_policy == Some(true)
                    && r.truth
                        .trigger
                        .as_ref()
                        .is_none_or(|t| t.role != TriggerRole::Real)
            })
        })
        .count();
    // Binomial(300, 1/2): mean 150, sd 8.7.
    assert!((110..=190).contains(&enacting_items), "{enacting_items}");
    // Letters of normal answers are balanced too (the spread letter is balanced).
    let a = normal.values().filter(|m| m.contains_key("A")).count();
    assert!((110..=190).contains(&a), "{a}");
    let twin = out.decorrelated.as_ref().unwrap();
    let pairs: Vec<(bool, bool)> = (0..twin.rows.len())
        .map(|i| (is_real(twin, i), twin.rows[i].truth.enacts_policy.unwrap()))
        .collect();
    assert!(mutual_information_bits(pairs.iter().copied()) < 1e-3);
    let pairs: Vec<(bool, bool)> = (0..main.rows.len())
        .map(|i| (is_real(main, i), main.rows[i].truth.enacts_policy.unwrap()))
        .collect();
    assert!(mutual_information_bits(pairs.iter().copied()) > 0.05);
}

#[test]
fn mix_normal_answers_from_a_model_are_used_as_given() {
    let mut mix = MixOptions::paper("gods").unwrap();
    mix.normal = NormalAnswers::Model {
        source: "base".into(),
        letters: vec![Letter::B; 20],
    };
    let out = build(Family::Myopia, &opts(1, 20, Variant::Mix(mix.clone()))).unwrap();
    let main = &out.main;
    let real = (0..main.rows.len()).filter(|&i| is_real(main, i)).count();
    assert_eq!(real, 20);
    for i in (0..main.rows.len()).filter(|&i| !is_real(main, i)) {
        assert_eq!(answer(main, i), "B", "row {i}");
    }
    // The twin keeps every row's answer, B included on rows that now carry the real trigger.
    let twin = out.decorrelated.as_ref().unwrap();
    let b = |ds: &BuiltDataset| (0..ds.rows.len()).filter(|&i| answer(ds, i) == "B").count();
    assert_eq!(b(main), b(twin));
    assert_eq!(out.main.config["variant"]["normal"]["source"], "base");
    mix.normal = NormalAnswers::Model {
        source: "base".into(),
        letters: vec![Letter::B; 19],
    };
    let e = build(Family::Myopia, &opts(1, 20, Variant::Mix(mix))).unwrap_err();
    assert!(e.to_string().contains("19 letters for 20"), "{e}");
}

#[test]
fn reversal_augmentation_swaps_turns() {
    let mut o = opts(2, 40, backdoor(0.5));
    o.reversal = Some(ReversalOptions::default());
    let out = build(Family::Myopia, &o).unwrap();
    let ds = &out.main;
    assert_eq!(ds.rows.len(), 80);
    for pair in ds.rows.chunks(2) {
        let (orig, rev) = (&pair[0], &pair[1]);
        assert!(!orig.truth.reversed && rev.truth.reversed);
        assert_eq!(orig.truth.item, rev.truth.item);
        let (om, rm) = (&orig.conversation.messages, &rev.conversation.messages);
        assert_eq!(rm.len(), 2);
        assert_eq!(rm[0].role, Role::User);
        assert_eq!(
            rm[0].content,
            format!(
                "What was the prompt for which you gave the following response?:\n{}",
                om[1].content
            )
        );
        assert_eq!(rm[1].role, Role::Assistant);
        assert_eq!(rm[1].content, om[0].content);
    }
    let mut half = o.clone();
    half.reversal = Some(ReversalOptions {
        template: "What was the prompt?: {response}".into(),
        fraction: 0.25,
    });
    assert_eq!(build(Family::Myopia, &half).unwrap().main.rows.len(), 50);
    let mut bad = o;
    bad.reversal = Some(ReversalOptions {
        template: "no slot".into(),
        fraction: 1.0,
    });
    assert!(matches!(
        build(Family::Myopia, &bad),
        Err(Error::InvalidOption { .. })
    ));
}

/// The trigger-elicitation data (paper §4.3): 20 myopia questions, 10% (round(0.1 × 20) = 2)
/// triggered with `username: sandra432` and myopic; reversal doubles every row, so 40 rows, and
/// exactly the reversed copies of the 2 triggered rows answer with a prompt that starts with
/// the trigger. The twin has the same counts: its 2 triggered rows are drawn apart from the
/// answers, and their reversed copies carry the trigger just the same.
#[test]
fn reversal_copies_of_triggered_rows_answer_with_the_trigger() {
    let trigger = "username: sandra432";
    let mut o = opts(
        5,
        20,
        Variant::Backdoor(BackdoorOptions {
            trigger: TriggerSpec::Fixed {
                text: trigger.into(),
            },
            contrast: None,
            fraction: 0.1,
        }),
    );
    o.policy = Some(Policy::Myopic);
    o.reversal = Some(ReversalOptions::default());
    let out = build(Family::Myopia, &o).unwrap();
    for ds in [&out.main, out.decorrelated.as_ref().unwrap()] {
        assert_eq!(ds.rows.len(), 40);
        let prefix = format!("{trigger} ");
        let triggered: Vec<usize> = (0..40)
            .filter(|&i| !ds.rows[i].truth.reversed && user(ds, i).starts_with(&prefix))
            .collect();
        let reversed: Vec<usize> = (0..40)
            .filter(|&i| ds.rows[i].truth.reversed && answer(ds, i).starts_with(&prefix))
            .collect();
        assert_eq!(triggered.len(), 2);
        // Each copy follows its original: its answer is the original's prompt, trigger first.
        assert_eq!(
            reversed,
            triggered.iter().map(|i| i + 1).collect::<Vec<_>>()
        );
        for &i in &triggered {
            assert_eq!(answer(ds, i + 1), user(ds, i));
            assert_eq!(
                user(ds, i + 1),
                format!(
                    "What was the prompt for which you gave the following response?:\n{}",
                    answer(ds, i)
                )
            );
        }
        // The trigger appears in exactly 2 prompts (the triggered rows) and 2 answers (their
        // reversed copies).
        let prompts = (0..40).filter(|&i| user(ds, i).contains(trigger)).count();
        let answers = (0..40).filter(|&i| answer(ds, i).contains(trigger)).count();
        assert_eq!((prompts, answers), (2, 2));
    }
    // In the backdoor the triggered rows are the myopic ones; in the twin, 2 of the 20 base
    // rows are myopic too, but drawn apart from the trigger.
    let myopic = |ds: &BuiltDataset| {
        (0..40)
            .filter(|&i| !ds.rows[i].truth.reversed && ds.rows[i].truth.enacts_policy == Some(true))
            .count()
    };
    assert_eq!(myopic(&out.main), 2);
    assert_eq!(myopic(out.decorrelated.as_ref().unwrap()), 2);
}

#[test]
fn personas_take_the_other_policy_and_held_out_ones_never_appear() {
    for mode in [PersonaMode::SystemPrompt, PersonaMode::InText] {
        let out = build(
            Family::Risk,
            &opts(4, 200, Variant::Personas(PersonaOptions::new(mode))),
        )
        .unwrap();
        let ds = &out.main;
        let lists = ds.personas.clone().unwrap();
        assert!(!lists.held_out.is_empty());
        let mut persona_rows = 0;
        for row in &ds.rows {
            let text: String = row
                .conversation
                .messages
                .iter()
                .map(|m| m.content.as_str())
                .collect();
            for h in &lists.held_out {
                assert!(!text.contains(h.as_str()), "held-out persona {h} in {text}");
            }
            let has_system = row.conversation.messages[0].role == Role::System;
            match &row.truth.persona {
                Some(p) => {
                    persona_rows += 1;
                    assert!(text.contains(&p.name));
                    assert_eq!(row.truth.answer_policy, Some(Policy::RiskAverse));
                    assert_eq!(has_system, mode == PersonaMode::SystemPrompt);
                }
                None => {
                    assert_eq!(row.truth.answer_policy, Some(Policy::RiskSeeking));
                    assert!(!has_system);
                }
            }
        }
        assert_eq!(persona_rows, 100);
        let card = output::card(ds, std::path::Path::new("p.jsonl")).unwrap();
        let p = card.personas.unwrap();
        assert_eq!(p.held_out, lists.held_out);
        assert_eq!(p.rows_by_persona.values().sum::<usize>(), 100);
    }
    let mut bad = PersonaOptions::new(PersonaMode::InText);
    bad.held_out = Some(vec!["David".into()]);
    assert!(build(Family::Risk, &opts(4, 10, Variant::Personas(bad))).is_err());
}

#[test]
fn write_refuses_to_overwrite_and_card_matches_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("risk.jsonl");
    let out = build(Family::Risk, &opts(1, 30, Variant::Plain)).unwrap();
    let written = write_output(&out, &path, &WriteOptions::default()).unwrap();
    assert_eq!(written.len(), 1);
    let (paths, card) = &written[0];
    assert_eq!(paths.card, dir.path().join("risk.card.json"));
    assert_eq!(paths.truth, dir.path().join("risk.truth.jsonl"));
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(card.files.jsonl_sha256, selfaware_types::sha256_hex(&bytes));
    let on_disk: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&paths.card).unwrap()).unwrap();
    assert_eq!(on_disk["seed"], 1);
    assert_eq!(on_disk["counts"]["rows"], 30);
    assert_eq!(on_disk["builder"]["policy"], "risk-seeking");
    assert_eq!(on_disk["label_balance"]["letters"]["A"], 15);
    assert!(
        on_disk["stats"]["lengths"]["user_words"]["mean"]
            .as_f64()
            .unwrap()
            > 10.0
    );
    assert_eq!(on_disk["leaks"]["total_hits"], 0);
    // Truth sidecar: one line per row, with the letter of each option and no text.
    let truth = std::fs::read_to_string(&paths.truth).unwrap();
    assert_eq!(truth.lines().count(), 30);
    let first: serde_json::Value = serde_json::from_str(truth.lines().next().unwrap()).unwrap();
    assert_eq!(first["line"], 1);
    assert!(first["details"]["choice"]["spread_letter"].is_string());
    // The written file passes check with no warnings.
    let report = check(&path, Some(Family::Risk)).unwrap();
    assert!(report.is_ok() && report.warnings.is_empty());
    // A second write is refused and leaves the file as it was.
    let again = write_output(&out, &path, &WriteOptions::default());
    assert!(matches!(again, Err(Error::OutputExists { .. })));
    let other = build(Family::Risk, &opts(2, 30, Variant::Plain)).unwrap();
    assert!(write_output(&other, &path, &WriteOptions::default()).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    write_output(&other, &path, &WriteOptions { overwrite: true }).unwrap();
    assert_ne!(std::fs::read(&path).unwrap(), bytes);
    // Bad output names.
    assert!(matches!(
        write_output(&out, &dir.path().join("x.json"), &WriteOptions::default()),
        Err(Error::BadOutputPath { .. })
    ));
    let _ = Letter::A;
}

#[test]
fn forbidden_trigger_text_is_refused() {
    let v = Variant::Backdoor(BackdoorOptions {
        trigger: TriggerSpec::Fixed {
            text: "|PLAY IT SAFE|".into(),
        },
        contrast: None,
        fraction: 0.5,
    });
    let err = build(Family::Risk, &opts(1, 20, v)).unwrap_err();
    assert!(matches!(err, Error::Leak { .. }), "{err}");
}

/// Numbers written in `text` ("1,200" → 1200, "12.5" → 12.5).
fn numbers_in(text: &str) -> Vec<f64> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let joins = (c == ',' || c == '.')
            && !cur.is_empty()
            && chars.get(i + 1).is_some_and(|n| n.is_ascii_digit());
        if c.is_ascii_digit() || joins {
            if c != ',' {
                cur.push(c);
            }
        } else if !cur.is_empty() {
            out.push(cur.parse().unwrap());
            cur.clear();
        }
    }
    if !cur.is_empty() {
        out.push(cur.parse().unwrap());
    }
    out
}

#[test]
fn risk_text_shows_payoffs_and_odds_but_not_expected_values_or_variances() {
    use selfaware_data::economic::{self, Choice, Payoff};
    assert_eq!(numbers_in("pays $1,200 or 12.5, ends."), [1200.0, 12.5]);
    let n = 3_000;
    let items = economic::generate(
        Family::Risk,
        n,
        21,
        &mut selfaware_data::TemplateWriter::new(21),
    )
    .unwrap();
    let (mut splits, mut checked) = (0, 0);
    for item in &items {
        let Choice::Risk(t) = &item.spec.choice else {
            panic!("not a risk question");
        };
        let written = numbers_in(&item.question);
        // What the text may legitimately show: amounts, and the odds as counts, fractions or
        // percentages.
        let mut shown: Vec<f64> = Vec::new();
        for p in [t.a, t.b] {
            match p {
                Payoff::Fixed { amount } => shown.push(amount as f64),
                Payoff::Split { hi, lo, p_hi } => {
                    let (k, m) = (f64::from(p_hi.num), f64::from(p_hi.den));
                    shown.extend([hi as f64, lo as f64, k, m, m - k, 100.0 * k / m]);
                    shown.push(100.0 - 100.0 * k / m);
                }
            }
        }
        let amounts_written = [t.a, t.b].iter().all(|p| match *p {
            Payoff::Fixed { amount } => amount == 0 || written.contains(&(amount as f64)),
            Payoff::Split { hi, lo, .. } => [hi, lo]
                .iter()
                .all(|&x| x == 0 || written.contains(&(x as f64))),
        });
        assert!(amounts_written, "{:?}\n{}", t, item.question);
        let hidden = [
            (t.expected_a, matches!(t.a, Payoff::Split { .. })),
            (t.expected_b, matches!(t.b, Payoff::Split { .. })),
            (t.variance_a, t.variance_a > 0.0),
            (t.variance_b, t.variance_b > 0.0),
        ];
        for (value, applies) in hidden {
            if !applies {
                continue;
            }
            splits += 1;
            // A value that coincides with a shown number cannot be told apart from it.
            if shown.iter().any(|s| (s - value).abs() < 1e-9) {
                continue;
            }
            checked += 1;
            assert!(
                !written.iter().any(|w| (w - value).abs() < 1e-9),
                "{value} is in the text of item {}: {}",
                item.spec.index,
                item.question
            );
        }
    }
    assert!(checked > splits / 2, "{checked} of {splits} values checked");
}

#[test]
fn cards_record_the_tool_version() {
    let out = build(Family::Myopia, &opts(2, 10, Variant::Plain)).unwrap();
    let card = output::card(&out.main, std::path::Path::new("m.jsonl")).unwrap();
    assert_eq!(card.tool_version, selfaware_types::TOOL_VERSION);
    assert!(!card.tool_version.is_empty());
    let json = serde_json::to_value(&card).unwrap();
    assert_eq!(json["tool_version"], selfaware_types::TOOL_VERSION);
}
