//! The validator on template-written and hand-written questions; the model writer with
//! scripted models (retries, fallback, counts, seeds).

use std::collections::VecDeque;

use super::*;
use crate::dataset::{build_with, lexicon, BuildOptions};
use crate::family::Policy;

type Reply = Result<String, TextModelError>;

/// A [`TextModel`] driven by closures: `write` answers the writing prompts, `check` the
/// label checks. It records the seeds of the writing calls and the check messages.
struct FnModel<F, G> {
    id: &'static str,
    write: F,
    check: G,
    seeds: Vec<u64>,
    checks: Vec<Vec<Message>>,
}

impl<F, G> TextModel for FnModel<F, G>
where
    F: FnMut(&[Message]) -> Reply,
    G: FnMut(&[Message]) -> Reply,
{
    fn id(&self) -> String {
        self.id.into()
    }
    fn generate(&mut self, messages: &[Message], seed: u64) -> Reply {
        self.seeds.push(seed);
        (self.write)(messages)
    }
    fn answer(&mut self, messages: &[Message]) -> Reply {
        self.checks.push(messages.to_vec());
        (self.check)(messages)
    }
}

/// A model that writes with `write` and is never asked to check.
fn scripted(
    write: impl FnMut(&[Message]) -> Reply,
) -> FnModel<impl FnMut(&[Message]) -> Reply, impl FnMut(&[Message]) -> Reply> {
    checking(write, |_: &[Message]| {
        Err("no label check was expected".into())
    })
}

/// A model that writes with `write` and checks with `check`.
fn checking(
    write: impl FnMut(&[Message]) -> Reply,
    check: impl FnMut(&[Message]) -> Reply,
) -> FnModel<impl FnMut(&[Message]) -> Reply, impl FnMut(&[Message]) -> Reply> {
    FnModel {
        id: "scripted",
        write,
        check,
        seeds: Vec::new(),
        checks: Vec::new(),
    }
}

/// The line `- Option X: ...` of the prompt, without the dash and the final period.
fn option_line(messages: &[Message], letter: char) -> String {
    let user = &messages[1].content;
    let head = format!("- Option {letter}: ");
    let line = user.lines().find(|l| l.starts_with(&head)).unwrap();
    line[head.len()..].trim_end_matches('.').to_string()
}

/// What a careful model writes: both options under their labels and the instruction.
fn echo(messages: &[Message]) -> String {
    format!(
        "You are offered two deals.\nOption A: {}.\nOption B: {}.\nAnswer with A or B only.",
        option_line(messages, 'A'),
        option_line(messages, 'B')
    )
}

fn specs(family: Family, n: usize) -> Vec<QuestionSpec> {
    sample_specs(family, n, 11).unwrap()
}

#[test]
fn numbers_in_reads_digits_separators_and_words() {
    let check = |text: &str, want: &[u64]| assert_eq!(numbers_in(text), want, "{text}");
    check("$1,200 or 3 apples", &[1200, 3]);
    check("twenty-one jars, Seven days", &[20, 1, 7]);
    check("1/3 (33%) of 1,20", &[1, 3, 33, 1, 20]);
    check("10,000,000 tokens", &[10_000_000]);
    check("none here", &[]);
}

#[test]
fn labels_skip_the_article_and_the_instruction() {
    let t = "A farmer offers two crates. Crate A has 3 apples. Crate B has 4. Answer A or B.";
    assert_eq!(label_position(t, 'A'), t.find("A has"));
    assert_eq!(label_position(t, 'B'), t.find("B has"));
    let t = "Reply with A or B. A) 3 apples B) 4 apples";
    assert_eq!(label_position(t, 'A'), t.find("A)"));
    assert_eq!(label_position(t, 'B'), t.find("B)"));
    assert_eq!(label_position("A day at the fair. A or B?", 'A'), None);
    assert_eq!(label_position("BANANA B.", 'B'), Some(7));
}

/// The template writer's questions are what a careful writer produces: the validator must
/// accept every one of them (no false rejections on varied phrasings).
#[test]
fn template_questions_pass_validation() {
    for family in [Family::Risk, Family::Myopia, Family::Apples] {
        let mut w = TemplateWriter::new(5);
        let lex = lexicon(family).unwrap();
        for spec in specs(family, 400) {
            let text = w.write(&spec).unwrap();
            if let Err(r) = validate(&spec, &text, lex, 2500) {
                panic!(
                    "{family:?} item {}: {r}\n{text}\n{:?}",
                    spec.index, spec.choice
                );
            }
        }
    }
}

#[test]
fn validation_rejects_each_fault() {
    let spec = specs(Family::Risk, 1).remove(0);
    let lex = lexicon(Family::Risk).unwrap();
    let [a, b] = facts(&spec).unwrap();
    let good = format!(
        "Two offers.\nOption A: {}.\nOption B: {}.\nAnswer with A or B.",
        a.text, b.text
    );
    assert_eq!(validate(&spec, &good, lex, 2500), Ok(()));
    let v = |t: &str| validate(&spec, t, lex, 2500).map_err(|r| r.kind());
    assert_eq!(v("   "), Err("empty"));
    assert_eq!(
        validate(&spec, &good, lex, 20).map_err(|r| r.kind()),
        Err("too_long")
    );
    assert_eq!(v(&format!("{good} Quite a gamble!")), Err("forbidden_word"));
    assert_eq!(
        v(&good.replace("Answer with A or B.", "Which one?")),
        Err("no_answer_instruction")
    );
    assert_eq!(
        v(&good.replace("Option B:", "The other:")),
        Err("missing_label")
    );
    let swapped = format!(
        "Two offers.\nOption A: {}.\nOption B: {}.\nAnswer with A or B.",
        b.text, a.text
    );
    assert_eq!(v(&swapped), Err("wrong_option"));
    let n = *a.numbers.iter().chain(&b.numbers).max().unwrap();
    let dropped = good.replace(&util::thousands(n), "many");
    assert_eq!(v(&dropped), Err("missing_number"));
}

#[test]
fn a_careful_model_writes_every_question_and_both_policies_share_them() {
    let mut model = scripted(|m: &[Message]| Ok(echo(m)));
    let mut opts = BuildOptions::new(3);
    opts.size = 12;
    let out = {
        let mut w = ModelWriter::new(&mut model, Checker::Off, GeneratorOptions::new(3)).unwrap();
        let out = build_with(Family::Risk, &opts, &mut w).unwrap();
        let r = w.report();
        assert_eq!((r.written_by_model, r.fallback_items.len()), (12, 0));
        assert_eq!(r.calls, 12);
        assert!(r.rejections.is_empty());
        assert_eq!(r.examples["risk"].len(), 3);
        out
    };
    let first_seeds = model.seeds.clone();
    assert_eq!(first_seeds.len(), 12);
    let b = &out.main.config;
    assert_eq!(b["writer"], "model:scripted");
    assert_eq!(b["writer_details"]["written_by_model"], 12);
    assert_eq!(b["writer_details"]["system_prompt"], SYSTEM_PROMPT);
    assert!(out.main.rows[0].conversation.messages[0]
        .content
        .starts_with("You are offered two deals."));
    // The prompt holds the examples, the facts and the forbidden words.
    let mut seen = Vec::new();
    let mut model = scripted(|m: &[Message]| {
        seen.push(m[1].content.clone());
        Ok(echo(m))
    });
    opts.policy = Some(Policy::RiskAverse);
    let flipped = {
        let mut w = ModelWriter::new(&mut model, Checker::Off, GeneratorOptions::new(3)).unwrap();
        build_with(Family::Risk, &opts, &mut w).unwrap()
    };
    assert_eq!(model.seeds, first_seeds, "same seeds for the same items");
    drop(model);
    assert!(seen[0].contains("Example 3:") && seen[0].contains("gamble"));
    for (x, y) in out.main.rows.iter().zip(&flipped.main.rows) {
        assert_eq!(
            x.conversation.messages[0].content,
            y.conversation.messages[0].content
        );
        assert_ne!(
            x.conversation.messages[1].content,
            y.conversation.messages[1].content
        );
    }
}

#[test]
fn rejected_answers_are_retried_then_the_template_writes_the_item() {
    // Item by item: (1) a forbidden word, then swapped options, then a good answer;
    // (2) three empty answers → fallback; (3) a model error then a good answer.
    let mut calls = 0usize;
    let mut replies: VecDeque<&str> =
        VecDeque::from(["gamble", "swap", "good", "", "", "", "err", "good"]);
    let mut model = scripted(|m: &[Message]| {
        calls += 1;
        let a = option_line(m, 'A');
        let b = option_line(m, 'B');
        match replies.pop_front().unwrap() {
            "gamble" => Ok(format!("A gamble. {}", echo(m))),
            "swap" => Ok(format!("Option A: {b}.\nOption B: {a}.\nAnswer A or B.")),
            "good" => Ok(echo(m)),
            "err" => Err("connection refused".into()),
            other => Ok(other.to_string()),
        }
    });
    let mut opts = BuildOptions::new(9);
    opts.size = 3;
    let (out, report) = {
        let mut w = ModelWriter::new(&mut model, Checker::Off, GeneratorOptions::new(9)).unwrap();
        let out = build_with(Family::Risk, &opts, &mut w).unwrap();
        (out, w.report().clone())
    };
    assert_eq!(report.written_by_model, 2);
    assert_eq!(report.fallback_items, vec![1]);
    assert_eq!(report.calls, 8);
    let want: BTreeMap<String, usize> = [
        ("forbidden_word", 1),
        ("wrong_option", 1),
        ("empty", 3),
        ("model_error", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(report.rejections, want);
    assert_eq!(
        report.first_model_error.as_deref(),
        Some("connection refused")
    );
    // Three attempts on one item get three different seeds.
    let s = &model.seeds;
    assert!(s[0] != s[1] && s[1] != s[2] && s[3] != s[4]);
    // The fallback item is the template writer's text for it.
    let spec = &sample_specs(Family::Risk, 3, 9).unwrap()[1];
    let template = TemplateWriter::new(9).write(spec).unwrap();
    assert_eq!(out.main.rows[1].conversation.messages[0].content, template);
    assert_eq!(out.main.config["writer_details"]["fallback_items"][0], 1);
}

#[test]
fn zero_attempts_is_refused() {
    let mut model = scripted(|m: &[Message]| Ok(echo(m)));
    let mut o = GeneratorOptions::new(0);
    o.attempts = 0;
    assert!(ModelWriter::new(&mut model, Checker::Off, o).is_err());
}

#[test]
fn clean_strips_fences_and_quotes() {
    assert_eq!(clean("  ```text\nHello A or B\n```  "), "Hello A or B");
    assert_eq!(clean("\"Quoted\""), "Quoted");
    assert_eq!(clean(" plain "), "plain");
}

#[test]
fn prompts_state_the_facts_with_or_without_examples() {
    let spec = specs(Family::Myopia, 1).remove(0);
    let lex = lexicon(Family::Myopia).unwrap();
    let m = prompt(&spec, &[], lex).unwrap();
    assert_eq!(m[0].content, SYSTEM_PROMPT);
    assert!(
        m[1].content.starts_with("Write one new question"),
        "{}",
        m[1].content
    );
    assert!(!m[1].content.contains("Example"));
    let [a, b] = facts(&spec).unwrap();
    assert!(m[1].content.contains(&format!("- Option A: {}.", a.text)));
    assert!(m[1].content.contains(&format!("- Option B: {}.", b.text)));
    assert!(m[1].content.contains("myopic, myopia"));
    assert!(m[1].content.contains(&format!("\"{}\"", spec.style.topic)));
    let m = prompt(&spec, &["First.".into(), "Second.".into()], lex).unwrap();
    assert!(m[1].content.starts_with(
        "Here are some example questions:\n\nExample 1:\nFirst.\n\nExample 2:\nSecond.\n\n"
    ));
    // The facts never name a policy.
    assert!(lex.scan(&a.text).is_empty() && lex.scan(&b.text).is_empty());
}

/// The option lines [`echo`] writes for `family`'s first `n` specs (seed `seed`), each with
/// its spec's choice: a scripted checker finds the letter a policy picks from them.
fn echoed(family: Family, n: usize, seed: u64) -> Vec<(String, Choice)> {
    sample_specs(family, n, seed)
        .unwrap()
        .into_iter()
        .map(|s| {
            let [a, b] = facts(&s).unwrap();
            let lines = format!("Option A: {}.\nOption B: {}.", a.text, b.text);
            (lines, s.choice)
        })
        .collect()
}

/// The letter `policy` picks in `question`, one of the `known` echoed questions.
fn letter_of(known: &[(String, Choice)], question: &str, policy: Policy) -> Letter {
    let (_, choice) = known
        .iter()
        .find(|(lines, _)| question.contains(lines.as_str()))
        .unwrap_or_else(|| panic!("not an echoed question: {question}"));
    choice.answer(policy)
}

fn questions(out: &crate::dataset::BuildOutput) -> Vec<String> {
    out.main
        .rows
        .iter()
        .map(|r| r.conversation.messages[0].content.clone())
        .collect()
}

#[test]
fn an_agreeing_checker_keeps_every_question_and_is_told_the_policy() {
    let known = echoed(Family::Risk, 12, 3);
    let mut n = 0;
    let mut model = checking(
        |m: &[Message]| Ok(echo(m)),
        |m: &[Message]| {
            n += 1;
            let l = letter_of(&known, &m[1].content, Policy::RiskSeeking);
            // The reply forms a model may use.
            Ok(match n % 3 {
                0 => l.to_string(),
                1 => format!("Answer: {l}"),
                _ => format!(" ({}) \n", l.as_str().to_lowercase()),
            })
        },
    );
    let mut opts = BuildOptions::new(3);
    opts.size = 12;
    let (out, r) = {
        let mut w =
            ModelWriter::new(&mut model, Checker::Generator, GeneratorOptions::new(3)).unwrap();
        let out = build_with(Family::Risk, &opts, &mut w).unwrap();
        (out, w.report().clone())
    };
    let c = &r.label_check;
    assert!(c.enabled);
    assert_eq!(c.checker.as_deref(), Some("scripted"));
    assert_eq!((c.checked, c.agreed), (12, 12));
    assert_eq!(c.dropped.len(), 3);
    assert!(c.dropped.values().all(|&n| n == 0), "{:?}", c.dropped);
    assert_eq!(c.system_prompts.len(), 1);
    assert_eq!(
        c.system_prompts["risk-seeking"],
        policy_prompt(Policy::RiskSeeking)
    );
    assert_eq!((r.written_by_model, r.calls), (12, 12));
    // Each check is the policy prompt, then the question exactly as it was kept.
    assert_eq!(model.checks.len(), 12);
    for (check, q) in model.checks.iter().zip(questions(&out)) {
        assert_eq!(check.len(), 2);
        assert_eq!(check[0].role.as_str(), "system");
        assert_eq!(check[0].content, policy_prompt(Policy::RiskSeeking));
        assert_eq!(check[1].content, q);
    }
    let card = &out.main.config["writer_details"]["label_check"];
    assert_eq!(card["checked"], 12);
    assert_eq!(card["agreed"], 12);
    assert_eq!(card["dropped"]["label_disagreement"], 0);
    assert_eq!(
        card["system_prompts"]["risk-seeking"],
        c.system_prompts["risk-seeking"]
    );
}

#[test]
fn disagreeing_unparseable_and_failed_checks_drop_the_answer_then_the_template_writes_it() {
    // Item by item: (0) the checker disagrees, then agrees; (1) three replies without a
    // letter → the template writes the item; (2) the checker call fails, then it agrees.
    let known = echoed(Family::Risk, 3, 9);
    let mut drafts = 0;
    let mut writer = scripted(|m: &[Message]| {
        drafts += 1;
        Ok(format!("Draft {drafts}. {}", echo(m)))
    });
    let mut replies = VecDeque::from(["other", "right", "maybe", "", "A or B", "err", "right"]);
    let mut checker = checking(
        |_: &[Message]| Err("the checker writes nothing".into()),
        |m: &[Message]| {
            let right = letter_of(&known, &m[1].content, Policy::RiskSeeking);
            match replies.pop_front().unwrap() {
                "right" => Ok(right.to_string()),
                "other" => Ok(right.other().to_string()),
                "err" => Err("checker offline".into()),
                reply => Ok(reply.to_string()),
            }
        },
    );
    checker.id = "checker";
    let mut opts = BuildOptions::new(9);
    opts.size = 3;
    let (out, r) = {
        let mut w = ModelWriter::new(
            &mut writer,
            Checker::Model(&mut checker),
            GeneratorOptions::new(9),
        )
        .unwrap();
        let out = build_with(Family::Risk, &opts, &mut w).unwrap();
        (out, w.report().clone())
    };
    assert_eq!((r.calls, r.written_by_model), (7, 2));
    assert_eq!(r.fallback_items, vec![1]);
    assert!(r.rejections.is_empty(), "{:?}", r.rejections);
    let c = &r.label_check;
    assert_eq!(c.checker.as_deref(), Some("checker"));
    assert_eq!((c.checked, c.agreed), (7, 2));
    let want: BTreeMap<String, usize> = [
        ("label_disagreement", 1),
        ("label_unparseable", 3),
        ("checker_error", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(c.dropped, want);
    assert_eq!(c.first_checker_error.as_deref(), Some("checker offline"));
    assert_eq!(c.first_unparseable_reply.as_deref(), Some("maybe"));
    assert!(writer.checks.is_empty(), "the writer was asked to check");
    assert_eq!(checker.seeds.len(), 0, "the checker was asked to write");
    // The kept texts are the drafts the checker agreed with; item 1 is the template's.
    let q = questions(&out);
    assert!(q[0].starts_with("Draft 2. "), "{}", q[0]);
    let spec = &sample_specs(Family::Risk, 3, 9).unwrap()[1];
    assert_eq!(q[1], TemplateWriter::new(9).write(spec).unwrap());
    assert!(q[2].starts_with("Draft 7. "), "{}", q[2]);
}

#[test]
fn the_check_policy_sets_the_prompt_and_the_letter_it_must_match() {
    // A checker that always answers as the risk-averse policy would.
    let known = echoed(Family::Risk, 6, 5);
    let averse = |m: &[Message]| -> Reply {
        Ok(letter_of(&known, &m[1].content, Policy::RiskAverse).to_string())
    };
    let run = |check_policy: Option<Policy>| -> Result<GeneratorReport> {
        let mut model = checking(|m: &[Message]| Ok(echo(m)), averse);
        let mut o = GeneratorOptions::new(5);
        o.attempts = 2;
        o.check_policy = check_policy;
        let mut w = ModelWriter::new(&mut model, Checker::Generator, o)?;
        let mut opts = BuildOptions::new(5);
        opts.size = 6;
        build_with(Family::Risk, &opts, &mut w)?;
        Ok(w.report().clone())
    };
    // By default the check states the risk-seeking policy: every answer disagrees.
    let r = run(None).unwrap();
    assert_eq!((r.label_check.checked, r.label_check.agreed), (12, 0));
    assert_eq!(r.label_check.dropped["label_disagreement"], 12);
    assert_eq!(r.fallback_items, (0..6).collect::<Vec<_>>());
    let r = run(Some(Policy::RiskAverse)).unwrap();
    assert_eq!((r.label_check.checked, r.label_check.agreed), (6, 6));
    assert_eq!(r.written_by_model, 6);
    assert_eq!(
        r.label_check.system_prompts.keys().collect::<Vec<_>>(),
        ["risk-averse"]
    );
    let e = run(Some(Policy::Myopic)).unwrap_err().to_string();
    assert!(e.contains("myopic") && e.contains("risk"), "{e}");
}

#[test]
fn with_the_check_off_nothing_is_asked_and_the_report_says_off() {
    let mut model = scripted(|m: &[Message]| Ok(echo(m)));
    let mut opts = BuildOptions::new(4);
    opts.size = 4;
    let (out, r) = {
        let mut w = ModelWriter::new(&mut model, Checker::Off, GeneratorOptions::new(4)).unwrap();
        let out = build_with(Family::Myopia, &opts, &mut w).unwrap();
        (out, w.report().clone())
    };
    assert!(model.checks.is_empty());
    assert_eq!(r.written_by_model, 4);
    let c = &r.label_check;
    assert!(!c.enabled);
    assert_eq!((c.checker.as_deref(), c.checked, c.agreed), (None, 0, 0));
    assert!(c.dropped.is_empty() && c.system_prompts.is_empty());
    let card = &out.main.config["writer_details"]["label_check"];
    assert_eq!(card["enabled"], false);
    assert!(card.get("checker").is_none());
}

#[test]
fn a_checked_build_is_reproducible_and_both_policies_keep_the_same_questions() {
    let known = echoed(Family::Apples, 9, 21);
    let build = |policy: Policy| {
        let mut drafts = 0;
        let mut seen = 0;
        // Disagrees with every third check.
        let mut model = checking(
            |m: &[Message]| {
                drafts += 1;
                Ok(format!("Draft {drafts}. {}", echo(m)))
            },
            |m: &[Message]| {
                seen += 1;
                let l = letter_of(&known, &m[1].content, Policy::MaxApples);
                Ok(if seen % 3 == 0 { l.other() } else { l }.to_string())
            },
        );
        let mut w =
            ModelWriter::new(&mut model, Checker::Generator, GeneratorOptions::new(21)).unwrap();
        let mut opts = BuildOptions::new(21);
        opts.size = 9;
        opts.policy = Some(policy);
        let out = build_with(Family::Apples, &opts, &mut w).unwrap();
        let report = w.report().clone();
        (out, report)
    };
    let (a1, r1) = build(Policy::MaxApples);
    let (a2, r2) = build(Policy::MaxApples);
    assert_eq!(r1, r2);
    assert_eq!(a1.main.rows, a2.main.rows);
    assert_eq!(a1.main.config, a2.main.config);
    let c = &r1.label_check;
    assert!(c.dropped["label_disagreement"] > 0, "{c:?}");
    assert_eq!(c.checked, c.agreed + c.dropped.values().sum::<usize>());
    // The opposite policy's build is checked with the same (score-1) prompt: same
    // questions, flipped answers.
    let (b, rb) = build(Policy::MinApples);
    assert_eq!(rb.label_check, r1.label_check);
    assert_eq!(questions(&b), questions(&a1));
    for (x, y) in a1.main.rows.iter().zip(&b.main.rows) {
        assert_ne!(
            x.conversation.messages[1].content,
            y.conversation.messages[1].content
        );
    }
}
