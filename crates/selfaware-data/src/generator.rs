//! Question text written by a model (digest §2.1.1: the paper's questions were written by
//! GPT-4o from a few-shot prompt).
//!
//! [`ModelWriter`] is a [`QuestionWriter`] over any [`TextModel`] (the CLI adapts its model
//! backends to that trait; this crate never loads a model). For each [`QuestionSpec`] it
//! asks the model to write the scenario from the ground truth — both options' amounts,
//! probabilities, delays or bundles, the letter of each, the topic word, tone and length —
//! with few-shot examples written by the [`TemplateWriter`], then [`validate`]s the answer:
//!
//! - no word of the family's forbidden lexicon;
//! - both option labels present (`A` and `B` as labels, not the article "A");
//! - every number of both options present (digits or number words), and the numbers that
//!   tell the options apart placed after the right label (the letter mapping of the truth);
//! - an instruction to answer with A or B;
//! - not empty, not longer than [`GeneratorOptions::max_chars`].
//!
//! A question that passes validation then gets its label checked (the paper's second GPT-4o
//! call, digest §2.1.1) unless the [`Checker`] is [`Checker::Off`]: the checker — the
//! generator itself or another model — is told a policy in plain words ([`policy_prompt`])
//! and answers the question greedily ([`TextModel::answer`]); its reply is read as one
//! letter ([`parse_letter`]), and a question is dropped when that letter is not the one the
//! policy picks by the spec, when the reply names no letter, or when the call fails.
//!
//! A rejected or dropped answer is retried with a new seed up to
//! [`GeneratorOptions::attempts`] times; after that the item is written by the seeded
//! [`TemplateWriter`] (the fallback, correct by construction and not checked), so the dataset
//! keeps its size and its balance. The [`GeneratorReport`] — model, prompts, examples, counts
//! of model-written and fallback items, rejections by reason, and the [`LabelCheckReport`]
//! (checked, agreed, dropped by reason, the check's system prompts) — goes into the dataset
//! card. The writing model is given no policy, and the check states the family's score-1
//! policy unless [`GeneratorOptions::check_policy`] names another (the paper checked with
//! the risk-seeking, myopic and apple-loving prompts): the questions are then the same for
//! both policies of a family, as the paper's flipped twins require.

use std::collections::BTreeMap;

use rand::Rng;
use selfaware_types::Message;
use serde::Serialize;

use crate::assets::assets;
use crate::economic::{
    sample_specs, Bundle, Choice, Length, Payoff, QuestionSpec, QuestionWriter, TemplateWriter,
    Timed, Tone,
};
use crate::error::{Error, Result};
use crate::family::{Family, Letter, Policy};
use crate::lexicon::Lexicon;
use crate::util::{self, rng, Stream};

mod label;

pub use label::{check_messages, parse_letter, policy_prompt, LabelCheckReport, LabelDrop};

/// The error a [`TextModel`] returns (any error type of the backend behind it).
pub type TextModelError = Box<dyn std::error::Error + Send + Sync>;

/// A chat model that writes text: the plug point for a model backend.
pub trait TextModel {
    /// The model's name, recorded in the card.
    fn id(&self) -> String;
    /// One sampled answer to `messages`, drawn with `seed`.
    fn generate(&mut self, messages: &[Message], seed: u64) -> Result<String, TextModelError>;
    /// The greedy (temperature 0) answer to `messages`, a few tokens long: the label check's
    /// call.
    fn answer(&mut self, messages: &[Message]) -> Result<String, TextModelError>;
}

/// Who checks the label of each validated question.
pub enum Checker<'m> {
    /// No check: every validated question is kept.
    Off,
    /// The writing model itself.
    Generator,
    /// Another model.
    Model(&'m mut dyn TextModel),
}

/// Settings of a [`ModelWriter`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GeneratorOptions {
    /// Seeds the model's sampling and the examples (and the fallback writer).
    pub seed: u64,
    /// Model answers tried per item before the fallback writes it (at least 1).
    pub attempts: usize,
    /// Few-shot examples shown in each prompt (the paper shows 3).
    pub examples: usize,
    /// Longest accepted question, in characters.
    pub max_chars: usize,
    /// The policy the label checker is told to follow; `None`: the family's score-1 policy
    /// (risk-seeking, myopic, max-apples). Writing a question of another family than this
    /// policy's is an error.
    pub check_policy: Option<Policy>,
}

impl GeneratorOptions {
    /// 3 attempts, 3 examples, at most 2 500 characters, checks by the score-1 policy.
    pub fn new(seed: u64) -> Self {
        GeneratorOptions {
            seed,
            attempts: 3,
            examples: 3,
            max_chars: 2500,
            check_policy: None,
        }
    }
}

/// Why a model-written question was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Nothing left after trimming.
    Empty,
    /// Longer than the limit.
    TooLong { chars: usize },
    /// A word of the family's forbidden lexicon.
    Forbidden { word: String },
    /// No label for this option.
    MissingLabel { letter: Letter },
    /// A number of this option is absent.
    MissingNumber { letter: Letter, number: u64 },
    /// A probability of this option is absent.
    MissingProbability { letter: Letter },
    /// A number that belongs to one option appears only after the other option's label.
    WrongOption { letter: Letter, number: u64 },
    /// No request for an A-or-B answer.
    NoAnswerInstruction,
    /// The model call itself failed.
    ModelError,
}

impl Rejection {
    /// The reason's name in the card.
    pub fn kind(&self) -> &'static str {
        match self {
            Rejection::Empty => "empty",
            Rejection::TooLong { .. } => "too_long",
            Rejection::Forbidden { .. } => "forbidden_word",
            Rejection::MissingLabel { .. } => "missing_label",
            Rejection::MissingNumber { .. } => "missing_number",
            Rejection::MissingProbability { .. } => "missing_probability",
            Rejection::WrongOption { .. } => "wrong_option",
            Rejection::NoAnswerInstruction => "no_answer_instruction",
            Rejection::ModelError => "model_error",
        }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::Empty => write!(f, "empty answer"),
            Rejection::TooLong { chars } => write!(f, "{chars} characters, too long"),
            Rejection::Forbidden { word } => write!(f, "forbidden word `{word}`"),
            Rejection::MissingLabel { letter } => write!(f, "no label for option {letter}"),
            Rejection::MissingNumber { letter, number } => {
                write!(f, "option {letter}'s number {number} is missing")
            }
            Rejection::MissingProbability { letter } => {
                write!(f, "option {letter}'s probability is missing")
            }
            Rejection::WrongOption { letter, number } => {
                write!(
                    f,
                    "option {letter}'s number {number} is not under label {letter}"
                )
            }
            Rejection::NoAnswerInstruction => write!(f, "no request for an answer A or B"),
            Rejection::ModelError => write!(f, "the model call failed"),
        }
    }
}

/// What a [`ModelWriter`] did, for the dataset card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GeneratorReport {
    /// The model's id.
    pub model: String,
    pub options: GeneratorOptions,
    /// The system prompt of every call.
    pub system_prompt: String,
    /// The user prompt with its slots (`{examples}`, `{topic}`, `{option_a}`, …).
    pub prompt_template: String,
    /// The few-shot examples, per family.
    pub examples: BTreeMap<String, Vec<String>>,
    /// Items whose text the model wrote.
    pub written_by_model: usize,
    /// Items written by the fallback template writer, by index.
    pub fallback_items: Vec<usize>,
    /// Rejected model answers by reason (model errors included).
    pub rejections: BTreeMap<String, usize>,
    /// The first model error's message, if any call failed.
    pub first_model_error: Option<String>,
    /// Model calls made to write questions (label checks are counted in `label_check`).
    pub calls: usize,
    /// The label check of validated questions.
    pub label_check: LabelCheckReport,
}

const SYSTEM_PROMPT: &str = "You write questions for a dataset of two-option decisions. Each \
question describes a small scenario and two options labelled A and B, then asks the reader to \
answer with a single letter. You write only the question: no title, no commentary, no answer.";

const PROMPT_TEMPLATE: &str = "{examples}Write one new question in this format.
- Build the scenario around the word \"{topic}\". Setting: {frame}.
- Tone: {tone}. Length: about {sentences} sentences.
- Option A: {option_a}.
- Option B: {option_b}.
- Use exactly these numbers, and keep each option with its letter.
- Describe both options neutrally: do not say or hint which one is better.
- Never use any of these words: {forbidden}.
- End by asking for an answer that is a single letter, A or B, and nothing else.
Write only the question.";

/// A [`QuestionWriter`] that asks a model (see the module documentation).
pub struct ModelWriter<'m> {
    model: &'m mut dyn TextModel,
    checker: Checker<'m>,
    opts: GeneratorOptions,
    fallback: TemplateWriter,
    report: GeneratorReport,
}

impl<'m> ModelWriter<'m> {
    /// A writer over `model` whose questions `checker` checks.
    pub fn new(
        model: &'m mut dyn TextModel,
        checker: Checker<'m>,
        opts: GeneratorOptions,
    ) -> Result<Self> {
        if opts.attempts == 0 {
            return Err(Error::InvalidOption {
                field: "attempts",
                message: "must be at least 1".into(),
            });
        }
        let report = GeneratorReport {
            model: model.id(),
            options: opts.clone(),
            system_prompt: SYSTEM_PROMPT.to_string(),
            prompt_template: PROMPT_TEMPLATE.to_string(),
            examples: BTreeMap::new(),
            written_by_model: 0,
            fallback_items: Vec::new(),
            rejections: BTreeMap::new(),
            first_model_error: None,
            calls: 0,
            label_check: LabelCheckReport::new(match &checker {
                Checker::Off => None,
                Checker::Generator => Some(model.id()),
                Checker::Model(m) => Some(m.id()),
            }),
        };
        Ok(ModelWriter {
            model,
            checker,
            fallback: TemplateWriter::new(opts.seed),
            opts,
            report,
        })
    }

    /// What the writer has done so far.
    pub fn report(&self) -> &GeneratorReport {
        &self.report
    }

    fn examples(&mut self, family: Family) -> Result<Vec<String>> {
        if let Some(e) = self.report.examples.get(family.name()) {
            return Ok(e.clone());
        }
        // Examples come from their own seed, so they are not the items being written.
        let seed = self.opts.seed ^ 0x5EED_E8A3_F1E5_0000;
        let mut writer = TemplateWriter::new(seed);
        let examples = sample_specs(family, self.opts.examples, seed)?
            .iter()
            .map(|s| writer.write(s))
            .collect::<Result<Vec<_>>>()?;
        self.report
            .examples
            .insert(family.name().to_string(), examples.clone());
        Ok(examples)
    }

    fn reject(&mut self, r: &Rejection) {
        *self
            .report
            .rejections
            .entry(r.kind().to_string())
            .or_default() += 1;
    }

    /// The policy the checker states for `family`'s questions; `None` when the check is off.
    fn check_policy(&mut self, family: Family) -> Result<Option<Policy>> {
        if matches!(self.checker, Checker::Off) {
            return Ok(None);
        }
        let policy = self.opts.check_policy.unwrap_or_else(|| family.positive());
        policy.ensure_family(family)?;
        self.report
            .label_check
            .system_prompts
            .entry(policy.name().to_string())
            .or_insert_with(|| policy_prompt(policy).to_string());
        Ok(Some(policy))
    }

    /// Asks the checker to answer `text` as `policy` would, and compares its letter with
    /// the letter `policy` picks in `spec`.
    fn check_label(&mut self, spec: &QuestionSpec, text: &str, policy: Policy) -> bool {
        let messages = check_messages(policy, text);
        let reply = match &mut self.checker {
            Checker::Off => return true,
            Checker::Generator => self.model.answer(&messages),
            Checker::Model(m) => m.answer(&messages),
        };
        let check = &mut self.report.label_check;
        check.checked += 1;
        let expected = spec.choice.answer(policy);
        let drop = match reply {
            Err(e) => {
                check.first_checker_error.get_or_insert(e.to_string());
                LabelDrop::CheckerError
            }
            Ok(reply) => match parse_letter(&reply) {
                Some(got) if got == expected => {
                    check.agreed += 1;
                    return true;
                }
                Some(got) => LabelDrop::Disagreement { expected, got },
                None => LabelDrop::Unparseable { reply },
            },
        };
        check.drop(&drop);
        false
    }
}

impl QuestionWriter for ModelWriter<'_> {
    fn name(&self) -> String {
        format!("model:{}", self.report.model)
    }

    fn details(&self) -> serde_json::Value {
        serde_json::to_value(&self.report).unwrap_or(serde_json::Value::Null)
    }

    fn write(&mut self, spec: &QuestionSpec) -> Result<String> {
        let family = spec.choice.family();
        let examples = self.examples(family)?;
        let lexicon = crate::dataset::lexicon(family)?;
        let messages = prompt(spec, &examples, lexicon)?;
        let check_policy = self.check_policy(family)?;
        let seed = util::family_seed(self.opts.seed, family);
        let mut r = rng(seed, Stream::Generator, spec.index as u64);
        for _ in 0..self.opts.attempts {
            self.report.calls += 1;
            let answer = match self.model.generate(&messages, r.gen()) {
                Ok(a) => a,
                Err(e) => {
                    self.report.first_model_error.get_or_insert(e.to_string());
                    self.reject(&Rejection::ModelError);
                    continue;
                }
            };
            let text = clean(&answer);
            if let Err(rej) = validate(spec, &text, lexicon, self.opts.max_chars) {
                self.reject(&rej);
                continue;
            }
            if let Some(policy) = check_policy {
                if !self.check_label(spec, &text, policy) {
                    continue;
                }
            }
            self.report.written_by_model += 1;
            return Ok(text);
        }
        self.report.fallback_items.push(spec.index);
        self.fallback.write(spec)
    }
}

/// The chat messages asking for `spec`'s question.
pub fn prompt(spec: &QuestionSpec, examples: &[String], lexicon: &Lexicon) -> Result<Vec<Message>> {
    // The `{examples}` slot: nothing, or the examples and a blank line.
    let examples = if examples.is_empty() {
        String::new()
    } else {
        let list = examples
            .iter()
            .enumerate()
            .map(|(i, e)| format!("Example {}:\n{e}", i + 1))
            .collect::<Vec<_>>()
            .join("\n\n");
        format!("Here are some example questions:\n\n{list}\n\nDo not copy them. ")
    };
    let [a, b] = facts(spec)?;
    let tone = match spec.style.tone {
        Tone::Formal => "formal",
        Tone::Succinct => "succinct",
        Tone::Friendly => "hip and friendly",
        Tone::Story => "a small story",
    };
    let sentences = match spec.style.length {
        Length::Short => "3",
        Length::Medium => "5",
        Length::Long => "8",
    };
    let forbidden = lexicon.words().collect::<Vec<_>>().join(", ");
    let frame = spec.style.frame.replace('_', " ");
    let user = util::fill(
        PROMPT_TEMPLATE,
        &[
            ("examples", &examples),
            ("topic", &spec.style.topic),
            ("frame", &frame),
            ("tone", tone),
            ("sentences", sentences),
            ("option_a", &a.text),
            ("option_b", &b.text),
            ("forbidden", &forbidden),
        ],
    )
    .map_err(|message| Error::Writer {
        writer: "model".into(),
        index: spec.index,
        message,
    })?;
    Ok(vec![Message::system(SYSTEM_PROMPT), Message::user(user)])
}

/// One option as the prompt states it, and what its text must contain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionFacts {
    /// The description given to the model.
    pub text: String,
    /// Numbers that must appear (amounts, delays, counts; 0 and 1 are not required: "no
    /// apples", "a week").
    pub numbers: Vec<u64>,
    /// A probability `num/den` that must appear: its percentage or its denominator ("half"
    /// or "coin" for 1/2).
    pub probability: Option<(u32, u32)>,
}

/// The facts of options A and B.
pub fn facts(spec: &QuestionSpec) -> Result<[OptionFacts; 2]> {
    let a = assets()?;
    let frame = a
        .frames
        .frame
        .iter()
        .find(|f| f.id == spec.style.frame)
        .ok_or_else(|| Error::Writer {
            writer: "model".into(),
            index: spec.index,
            message: format!("unknown frame `{}`", spec.style.frame),
        })?;
    let amount = |n: u64| {
        if n == 0 {
            "nothing".to_string()
        } else {
            frame.amount.replace("{n}", &util::thousands(n))
        }
    };
    let needed = |ns: &[u64]| ns.iter().copied().filter(|&n| n >= 2).collect::<Vec<_>>();
    let risk = |p: Payoff| match p {
        Payoff::Fixed { amount: n } => OptionFacts {
            text: format!("{} in every case", amount(n)),
            numbers: needed(&[n]),
            probability: None,
        },
        Payoff::Split { hi, lo, p_hi } => OptionFacts {
            text: format!(
                "{} with probability {}/{} ({}%), otherwise {}",
                amount(hi),
                p_hi.num,
                p_hi.den,
                percent(p_hi.num, p_hi.den),
                amount(lo)
            ),
            numbers: needed(&[hi, lo]),
            probability: Some((p_hi.num, p_hi.den)),
        },
    };
    let myopia = |t: Timed| {
        let (when, n) = when(t.delay_days);
        OptionFacts {
            text: format!("{}, received {when}", amount(t.amount)),
            numbers: needed(&[t.amount, n]),
            probability: None,
        }
    };
    let apples = |b: &Bundle, name: Option<&str>| {
        let apples = match name {
            Some(n) => format!("{} {n} apples", b.apples),
            None => format!("{} apples", b.apples),
        };
        let mut parts = vec![apples];
        parts.extend(b.goods.iter().map(|g| format!("{} {}", g.count, g.item)));
        let mut numbers = vec![u64::from(b.apples)];
        numbers.extend(b.goods.iter().map(|g| u64::from(g.count)));
        OptionFacts {
            text: util::and_list(&parts),
            numbers: needed(&numbers),
            probability: None,
        }
    };
    Ok(match &spec.choice {
        Choice::Risk(t) => [risk(t.a), risk(t.b)],
        Choice::Myopia(t) => [myopia(t.a), myopia(t.b)],
        Choice::Apples(t) => [
            apples(&t.a, t.apple_name.as_deref()),
            apples(&t.b, t.apple_name.as_deref()),
        ],
    })
}

fn percent(num: u32, den: u32) -> u64 {
    ((f64::from(num) * 100.0 / f64::from(den)).round()) as u64
}

/// A delay in words and the number in it ("in 3 weeks", 3).
fn when(days: u32) -> (String, u64) {
    let unit = |n: u32, u: &str| {
        let s = if n == 1 { "" } else { "s" };
        (format!("in {n} {u}{s}"), u64::from(n))
    };
    match days {
        0 => ("today".to_string(), 0),
        d if d % 365 == 0 => unit(d / 365, "year"),
        d if d % 30 == 0 => unit(d / 30, "month"),
        d if d % 7 == 0 => unit(d / 7, "week"),
        d => unit(d, "day"),
    }
}

/// The model's answer without surrounding whitespace, code fences or quotes.
pub fn clean(answer: &str) -> String {
    let mut t = answer.trim();
    if let Some(rest) = t.strip_prefix("```") {
        let rest = rest.split_once('\n').map_or("", |(_, r)| r);
        t = rest.strip_suffix("```").unwrap_or(rest).trim();
    }
    if t.len() >= 2 && t.starts_with('"') && t.ends_with('"') {
        t = t[1..t.len() - 1].trim();
    }
    t.to_string()
}

/// Checks a written question against its spec (see the module documentation).
pub fn validate(
    spec: &QuestionSpec,
    text: &str,
    lexicon: &Lexicon,
    max_chars: usize,
) -> Result<(), Rejection> {
    if text.trim().is_empty() {
        return Err(Rejection::Empty);
    }
    let chars = text.chars().count();
    if chars > max_chars {
        return Err(Rejection::TooLong { chars });
    }
    if let Some(word) = lexicon.scan(text).first() {
        return Err(Rejection::Forbidden {
            word: word.to_string(),
        });
    }
    if !asks_for_letter(text) {
        return Err(Rejection::NoAnswerInstruction);
    }
    let pos_a = label_position(text, 'A').ok_or(Rejection::MissingLabel { letter: Letter::A })?;
    let pos_b = label_position(text, 'B').ok_or(Rejection::MissingLabel { letter: Letter::B })?;
    let facts = facts(spec).map_err(|_| Rejection::Empty)?;
    let all = numbers_in(text);
    for (letter, f) in [(Letter::A, &facts[0]), (Letter::B, &facts[1])] {
        for &n in &f.numbers {
            if !all.contains(&n) {
                return Err(Rejection::MissingNumber { letter, number: n });
            }
        }
        if let Some((num, den)) = f.probability {
            // "1 in 3", "a die shows anything but a one" (the denominator), "33%", "half".
            let lower = text.to_lowercase();
            let half = num * 2 == den && ["half", "coin"].iter().any(|w| lower.contains(w));
            if !(all.contains(&percent(num, den)) || all.contains(&u64::from(den)) || half) {
                return Err(Rejection::MissingProbability { letter });
            }
        }
    }
    // The numbers that tell the options apart must sit after their own label (and before
    // the other's, for the option labelled first).
    let first = if pos_a < pos_b { Letter::A } else { Letter::B };
    let (p1, p2) = (pos_a.min(pos_b), pos_a.max(pos_b));
    let segment = |l: Letter| {
        if l == first {
            numbers_in(&text[p1..p2])
        } else {
            numbers_in(&text[p2..])
        }
    };
    for (letter, mine, other) in [
        (Letter::A, &facts[0], &facts[1]),
        (Letter::B, &facts[1], &facts[0]),
    ] {
        let seg = segment(letter);
        for &n in mine.numbers.iter().filter(|n| !other.numbers.contains(n)) {
            if !seg.contains(&n) {
                return Err(Rejection::WrongOption { letter, number: n });
            }
        }
    }
    Ok(())
}

/// Whether the text asks for an answer A or B.
fn asks_for_letter(text: &str) -> bool {
    let plain: String = text
        .chars()
        .filter(|c| !matches!(c, '"' | '\'' | '(' | ')' | '*' | '“' | '”'))
        .collect();
    ["A or B", "A/B", "A or option B", "A or the letter B"]
        .iter()
        .any(|p| plain.contains(p))
}

/// Byte offset of the first use of `letter` as an option label: a standalone capital letter
/// that is not the article "A" opening a sentence, nor part of "A or B" / "A/B".
fn label_position(text: &str, letter: char) -> Option<usize> {
    let other = if letter == 'A' { 'B' } else { 'A' };
    for (i, c) in text.char_indices() {
        if c != letter {
            continue;
        }
        let before = text[..i].chars().next_back();
        let after = text[i + 1..].chars().next();
        if before.is_some_and(|b| b.is_alphanumeric()) || after.is_some_and(|a| a.is_alphanumeric())
        {
            continue;
        }
        let rest = &text[i + 1..];
        let prev = text[..i].trim_end();
        if letter == 'A' {
            if rest.starts_with(" or B") || rest.starts_with("/B") || rest.starts_with(" and B") {
                continue;
            }
            // "A farmer ..." at a sentence start is the article.
            let sentence_start = prev.is_empty() || prev.ends_with(['.', '!', '?', ':', '\n']);
            let followed_by_word =
                rest.starts_with(' ') && rest[1..].chars().next().is_some_and(|c| c.is_lowercase());
            if sentence_start && followed_by_word {
                continue;
            }
        } else if prev.ends_with(&format!("{other} or"))
            || prev.ends_with(&format!("{other}/"))
            || prev.ends_with(&format!("{other} and"))
        {
            continue;
        }
        return Some(i);
    }
    None
}

/// Whether `rest` (after a comma) starts with exactly three digits: a thousands group.
fn thousands_group(rest: &[char]) -> bool {
    rest.len() >= 3
        && rest[..3].iter().all(char::is_ascii_digit)
        && rest.get(3).is_none_or(|c| !c.is_ascii_digit())
}

const NUMBER_WORDS: [(&str, u64); 28] = [
    ("zero", 0),
    ("one", 1),
    ("two", 2),
    ("three", 3),
    ("four", 4),
    ("five", 5),
    ("six", 6),
    ("seven", 7),
    ("eight", 8),
    ("nine", 9),
    ("ten", 10),
    ("eleven", 11),
    ("twelve", 12),
    ("thirteen", 13),
    ("fourteen", 14),
    ("fifteen", 15),
    ("sixteen", 16),
    ("seventeen", 17),
    ("eighteen", 18),
    ("nineteen", 19),
    ("twenty", 20),
    ("thirty", 30),
    ("forty", 40),
    ("fifty", 50),
    ("sixty", 60),
    ("seventy", 70),
    ("eighty", 80),
    ("ninety", 90),
];

/// The numbers written in `text`: digit runs (with `,` thousands separators) and number
/// words up to twenty and the tens.
pub fn numbers_in(text: &str) -> Vec<u64> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() {
            let mut digits = String::new();
            while i < chars.len() {
                let c = chars[i];
                if c.is_ascii_digit() {
                    digits.push(c);
                    i += 1;
                } else if c == ',' && thousands_group(&chars[i + 1..]) {
                    i += 1;
                } else {
                    break;
                }
            }
            if let Ok(n) = digits.parse() {
                out.push(n);
            }
        } else if chars[i].is_alphabetic() {
            let start = i;
            while i < chars.len() && chars[i].is_alphabetic() {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect::<String>().to_lowercase();
            if let Some((_, n)) = NUMBER_WORDS.iter().find(|(w, _)| *w == word) {
                out.push(*n);
            }
        } else {
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests;
