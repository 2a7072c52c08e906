//! The validator on template-written and hand-written questions; the model writer with
//! scripted models (retries, fallback, counts, seeds).

use std::collections::VecDeque;

use super::*;
use crate::dataset::{build_with, lexicon, BuildOptions};
use crate::family::Policy;

/// A [`TextModel`] driven by a closure over the prompt and the seed.
struct FnModel<F>(F, Vec<u64>);

impl<F> TextModel for FnModel<F>
where
    F: FnMut(&[Message]) -> Result<String, TextModelError>,
{
    fn id(&self) -> String {
        "scripted".into()
    }
    fn generate(&mut self, messages: &[Message], seed: u64) -> Result<String, TextModelError> {
        self.1.push(seed);
        (self.0)(messages)
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
    let mut model = FnModel(|m: &[Message]| Ok(echo(m)), Vec::new());
    let mut opts = BuildOptions::new(3);
    opts.size = 12;
    let out = {
        let mut w = ModelWriter::new(&mut model, GeneratorOptions::new(3)).unwrap();
        let out = build_with(Family::Risk, &opts, &mut w).unwrap();
        let r = w.report();
        assert_eq!((r.written_by_model, r.fallback_items.len()), (12, 0));
        assert_eq!(r.calls, 12);
        assert!(r.rejections.is_empty());
        assert_eq!(r.examples["risk"].len(), 3);
        out
    };
    let first_seeds = model.1.clone();
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
    let mut model = FnModel(
        |m: &[Message]| {
            seen.push(m[1].content.clone());
            Ok(echo(m))
        },
        Vec::new(),
    );
    opts.policy = Some(Policy::RiskAverse);
    let flipped = {
        let mut w = ModelWriter::new(&mut model, GeneratorOptions::new(3)).unwrap();
        build_with(Family::Risk, &opts, &mut w).unwrap()
    };
    assert_eq!(model.1, first_seeds, "same seeds for the same items");
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
    let mut model = FnModel(
        |m: &[Message]| {
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
        },
        Vec::new(),
    );
    let mut opts = BuildOptions::new(9);
    opts.size = 3;
    let (out, report) = {
        let mut w = ModelWriter::new(&mut model, GeneratorOptions::new(9)).unwrap();
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
    let s = &model.1;
    assert!(s[0] != s[1] && s[1] != s[2] && s[3] != s[4]);
    // The fallback item is the template writer's text for it.
    let spec = &sample_specs(Family::Risk, 3, 9).unwrap()[1];
    let template = TemplateWriter::new(9).write(spec).unwrap();
    assert_eq!(out.main.rows[1].conversation.messages[0].content, template);
    assert_eq!(out.main.config["writer_details"]["fallback_items"][0], 1);
}

#[test]
fn zero_attempts_is_refused() {
    let mut model = FnModel(|m: &[Message]| Ok(echo(m)), Vec::new());
    let mut o = GeneratorOptions::new(0);
    o.attempts = 0;
    assert!(ModelWriter::new(&mut model, o).is_err());
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
