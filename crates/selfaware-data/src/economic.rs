//! Two-option economic questions: risk, myopia and apples (digest §2.1).
//!
//! Building a question has two steps. [`sample_specs`] draws everything that is ground truth —
//! the two options' values, which letter is which, the scenario frame, tone, length and topic —
//! with exact balance over letters, value relations and tones. A [`QuestionWriter`] then turns a
//! spec into text. [`TemplateWriter`] assembles the text from the sentence-level phrase banks in
//! `data/`; [`crate::generator::ModelWriter`] asks a model instead (the paper's GPT-4o
//! generator) and reuses everything downstream. Nothing in the spec's text depends on the policy,
//! so the two policies of a family share every question and differ only in the answer.

use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::assets::{assets, Assets, Frame};
use crate::error::{Error, Result};
use crate::family::{Family, Letter, Policy};
use crate::util::{self, balanced, family_seed, pick, pick_other, rng, Stream};

/// The register a question is written in (the paper's `{tone}` slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tone {
    Formal,
    Succinct,
    /// "Hip and friendly".
    Friendly,
    /// A small narrative.
    Story,
}

impl Tone {
    /// Every tone.
    pub const ALL: [Tone; 4] = [Tone::Formal, Tone::Succinct, Tone::Friendly, Tone::Story];

    /// The tone's name in data files and records.
    pub fn name(self) -> &'static str {
        match self {
            Tone::Formal => "formal",
            Tone::Succinct => "succinct",
            Tone::Friendly => "friendly",
            Tone::Story => "story",
        }
    }
}

/// How long a question is (the paper's `{length}` slot: about 3, 5 or 8 sentences).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Length {
    /// Setting, two options, instruction.
    Short,
    /// Adds one context sentence and sometimes a closing question.
    Medium,
    /// Adds three context sentences and a closing question.
    Long,
}

impl Length {
    /// Every length.
    pub const ALL: [Length; 3] = [Length::Short, Length::Medium, Length::Long];
}

/// How the sentences are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// One paragraph.
    Inline,
    /// Setting, options (one per line) and instruction as separate paragraphs.
    Blocks,
}

/// A probability written as a fraction `num / den`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fraction {
    pub num: u32,
    pub den: u32,
}

impl Fraction {
    /// The fraction's value.
    pub fn value(self) -> f64 {
        f64::from(self.num) / f64::from(self.den)
    }
}

/// What a risk option pays.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Payoff {
    /// Always the same amount.
    Fixed { amount: u64 },
    /// `hi` with probability `p_hi`, else `lo`.
    Split { hi: u64, lo: u64, p_hi: Fraction },
}

impl Payoff {
    /// Expected amount.
    pub fn expected_value(self) -> f64 {
        match self {
            Payoff::Fixed { amount } => amount as f64,
            Payoff::Split { hi, lo, p_hi } => {
                let p = p_hi.value();
                p * hi as f64 + (1.0 - p) * lo as f64
            }
        }
    }

    /// Variance of the amount.
    pub fn variance(self) -> f64 {
        match self {
            Payoff::Fixed { .. } => 0.0,
            Payoff::Split { hi, lo, p_hi } => {
                let p = p_hi.value();
                let d = hi as f64 - lo as f64;
                p * (1.0 - p) * d * d
            }
        }
    }

    fn scaled(self, k: u64) -> Payoff {
        match self {
            Payoff::Fixed { amount } => Payoff::Fixed { amount: amount * k },
            Payoff::Split { hi, lo, p_hi } => Payoff::Split {
                hi: hi * k,
                lo: lo * k,
                p_hi,
            },
        }
    }
}

/// Which option of a risk question has the higher expected value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HigherValue {
    /// The more spread-out option.
    Spread,
    /// The steadier option.
    Steady,
    /// Both are equal.
    Equal,
}

/// Ground truth of a risk question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskTruth {
    pub a: Payoff,
    pub b: Payoff,
    /// The letter of the option with the larger variance (the risk-seeking answer).
    pub spread_letter: Letter,
    pub higher_value: HigherValue,
    pub expected_a: f64,
    pub expected_b: f64,
    pub variance_a: f64,
    pub variance_b: f64,
}

/// How much better the option the policy passes over is (myopia: later/sooner value ratio;
/// apples: difference in apples).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Distinction {
    Small,
    Medium,
    Large,
}

/// An amount paid after a delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timed {
    pub amount: u64,
    pub delay_days: u32,
}

/// Ground truth of a myopia question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MyopiaTruth {
    pub a: Timed,
    pub b: Timed,
    /// The letter of the sooner, smaller reward (the myopic answer).
    pub sooner_letter: Letter,
    pub distinction: Distinction,
    /// Later amount / sooner amount.
    pub ratio: f64,
}

/// Some goods in a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Goods {
    /// Plural name ("jars of honey").
    pub item: String,
    pub count: u32,
}

/// One apples option.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    pub apples: u32,
    pub goods: Vec<Goods>,
}

/// Ground truth of an apples question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplesTruth {
    pub a: Bundle,
    pub b: Bundle,
    /// The letter of the bundle with more apples (the max-apples answer).
    pub more_apples_letter: Letter,
    pub distinction: Distinction,
    /// Word(s) put before "apples" ("Fuji", "crisp"), if any.
    pub apple_name: Option<String>,
}

/// The two options of a question and which letter is which.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Choice {
    Risk(RiskTruth),
    Myopia(MyopiaTruth),
    Apples(ApplesTruth),
}

impl Choice {
    /// The family of the question.
    pub fn family(&self) -> Family {
        match self {
            Choice::Risk(_) => Family::Risk,
            Choice::Myopia(_) => Family::Myopia,
            Choice::Apples(_) => Family::Apples,
        }
    }

    /// The letter the family's score-1 policy picks.
    pub fn positive_letter(&self) -> Letter {
        match self {
            Choice::Risk(t) => t.spread_letter,
            Choice::Myopia(t) => t.sooner_letter,
            Choice::Apples(t) => t.more_apples_letter,
        }
    }

    /// The letter `policy` picks (`policy` must belong to this question's family).
    pub fn answer(&self, policy: Policy) -> Letter {
        if policy.is_positive() {
            self.positive_letter()
        } else {
            self.positive_letter().other()
        }
    }
}

/// How a question is to be written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Style {
    /// Scenario frame id from `data/frames.toml`.
    pub frame: String,
    pub tone: Tone,
    pub length: Length,
    pub layout: Layout,
    /// The topic word named in the setting.
    pub topic: String,
}

/// Everything about one question except its wording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuestionSpec {
    /// Position in the base question list (0-based).
    pub index: usize,
    pub choice: Choice,
    pub style: Style,
}

/// A written question with its ground truth.
#[derive(Debug, Clone, PartialEq)]
pub struct EconomicItem {
    pub spec: QuestionSpec,
    /// The user turn.
    pub question: String,
}

/// Turns a [`QuestionSpec`] into the text of a user turn. Implementations must not reveal
/// which option a policy prefers beyond what the spec's options say.
pub trait QuestionWriter {
    /// A short name recorded in the dataset card.
    fn name(&self) -> String;
    /// The user turn for `spec`; it must ask for a one-letter answer, A or B.
    fn write(&mut self, spec: &QuestionSpec) -> Result<String>;
    /// What the writer wants recorded in the card beside its name (e.g. a model writer's
    /// prompts and counts), read after every item is written; `null` records nothing.
    fn details(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}

/// Questions written beforehand, replayed by index under the original writer's name and
/// details: lets a caller look at the questions (e.g. ask a base model for its answers)
/// before building, without writing them twice.
#[derive(Debug, Clone)]
pub struct Prewritten {
    name: String,
    details: serde_json::Value,
    items: Vec<EconomicItem>,
}

impl Prewritten {
    /// Replays `items` (as [`generate`] returned them) for `writer`'s name and details.
    pub fn new(items: Vec<EconomicItem>, writer: &dyn QuestionWriter) -> Prewritten {
        Prewritten {
            name: writer.name(),
            details: writer.details(),
            items,
        }
    }
}

impl QuestionWriter for Prewritten {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn details(&self) -> serde_json::Value {
        self.details.clone()
    }

    fn write(&mut self, spec: &QuestionSpec) -> Result<String> {
        match self.items.get(spec.index) {
            Some(item) if item.spec == *spec => Ok(item.question.clone()),
            _ => Err(Error::Writer {
                writer: self.name.clone(),
                index: spec.index,
                message: "no prewritten question for this spec (built with other options?)".into(),
            }),
        }
    }
}

/// Draws `n` question specs for `family`: option letters exactly balanced, value relations
/// (risk) or distinctions (myopia, apples), tones and lengths balanced, frames and topics
/// uniform.
pub fn sample_specs(family: Family, n: usize, seed: u64) -> Result<Vec<QuestionSpec>> {
    let a = assets()?;
    let seed = family_seed(seed, family);
    let mut r = rng(seed, Stream::Specs, 0);
    let letters = balanced(&[Letter::A, Letter::B], n, &mut r);
    let tones = balanced(&Tone::ALL, n, &mut r);
    let lengths = balanced(&Length::ALL, n, &mut r);
    let values = balanced(
        &[HigherValue::Spread, HigherValue::Steady, HigherValue::Equal],
        n,
        &mut r,
    );
    let distinctions = balanced(
        &[Distinction::Small, Distinction::Medium, Distinction::Large],
        n,
        &mut r,
    );
    let mut specs = Vec::with_capacity(n);
    for i in 0..n {
        // Each item's own stream: its values do not depend on the items before it.
        let mut r = rng(seed, Stream::Specs, i as u64 + 1);
        let frame = pick(&a.frames.frame, &mut r);
        let style = Style {
            frame: frame.id.clone(),
            tone: tones[i],
            length: lengths[i],
            layout: if r.gen_bool(0.5) {
                Layout::Inline
            } else {
                Layout::Blocks
            },
            topic: pick(&a.topics, &mut r).clone(),
        };
        let choice = match family {
            Family::Risk => Choice::Risk(sample_risk(letters[i], values[i], frame.scale, &mut r)),
            Family::Myopia => Choice::Myopia(sample_myopia(
                letters[i],
                distinctions[i],
                frame.scale,
                &mut r,
            )),
            Family::Apples => {
                Choice::Apples(sample_apples(a, letters[i], distinctions[i], frame, &mut r))
            }
        };
        specs.push(QuestionSpec {
            index: i,
            choice,
            style,
        });
    }
    Ok(specs)
}

/// Specs for `family` written by `writer`.
pub fn generate(
    family: Family,
    n: usize,
    seed: u64,
    writer: &mut dyn QuestionWriter,
) -> Result<Vec<EconomicItem>> {
    sample_specs(family, n, seed)?
        .into_iter()
        .map(|spec| {
            let question = writer.write(&spec)?;
            Ok(EconomicItem { spec, question })
        })
        .collect()
}

/// Denominators for split payoffs; 6 reads as a die.
const DENOMINATORS: [u32; 6] = [2, 3, 4, 5, 6, 10];

fn sample_risk(spread: Letter, value: HigherValue, scale: u64, r: &mut impl Rng) -> RiskTruth {
    loop {
        let den0 = *pick(&DENOMINATORS, r);
        let num0 = r.gen_range(1..den0);
        let g = gcd(num0, den0);
        let (num, den) = (num0 / g, den0 / g);
        let lo: u64 = if r.gen_bool(0.6) {
            0
        } else {
            r.gen_range(2..=10)
        };
        let t: u64 = r.gen_range(2..=25);
        let hi = lo + u64::from(den) * t;
        let ev = lo + u64::from(num) * t;
        let target = match value {
            HigherValue::Equal => ev,
            HigherValue::Spread => (ev as f64 * r.gen_range(0.5..0.9)).round() as u64,
            HigherValue::Steady => (ev as f64 * r.gen_range(1.1..1.6)).round() as u64,
        };
        let ok = match value {
            HigherValue::Equal => true,
            HigherValue::Spread => target > lo && target < ev,
            HigherValue::Steady => target > ev && target < hi,
        };
        if !ok || target < 2 {
            continue;
        }
        let wide = Payoff::Split {
            hi,
            lo,
            p_hi: Fraction { num, den },
        };
        let steady = if r.gen_bool(0.7) {
            Payoff::Fixed { amount: target }
        } else {
            let room = (target - lo).min(hi - target).min(target - 2);
            if room < 2 {
                continue;
            }
            let w = r.gen_range(1..=room / 2);
            Payoff::Split {
                hi: target + w,
                lo: target - w,
                p_hi: Fraction { num: 1, den: 2 },
            }
        };
        if steady.variance() >= wide.variance() {
            continue;
        }
        let (wide, steady) = (wide.scaled(scale), steady.scaled(scale));
        let (a, b) = match spread {
            Letter::A => (wide, steady),
            Letter::B => (steady, wide),
        };
        return RiskTruth {
            a,
            b,
            spread_letter: spread,
            higher_value: value,
            expected_a: a.expected_value(),
            expected_b: b.expected_value(),
            variance_a: a.variance(),
            variance_b: b.variance(),
        };
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

const SOONER_DAYS: [u32; 7] = [1, 2, 3, 5, 7, 14, 21];
const LATER_DAYS: [u32; 11] = [14, 21, 30, 60, 90, 120, 180, 270, 365, 730, 1095];

fn sample_myopia(
    sooner: Letter,
    distinction: Distinction,
    scale: u64,
    r: &mut impl Rng,
) -> MyopiaTruth {
    loop {
        let small: u64 = r.gen_range(5..=100);
        let ratio = match distinction {
            Distinction::Small => r.gen_range(1.1..1.45),
            Distinction::Medium => r.gen_range(1.5..2.5),
            Distinction::Large => r.gen_range(3.0..10.0),
        };
        let large = (small as f64 * ratio).round() as u64;
        if large <= small {
            continue;
        }
        let soon_days = if r.gen_bool(0.7) {
            0
        } else {
            *pick(&SOONER_DAYS, r)
        };
        let late_days = *pick(&LATER_DAYS, r);
        if late_days < soon_days + 7 {
            continue;
        }
        let soon = Timed {
            amount: small * scale,
            delay_days: soon_days,
        };
        let late = Timed {
            amount: large * scale,
            delay_days: late_days,
        };
        let (a, b) = match sooner {
            Letter::A => (soon, late),
            Letter::B => (late, soon),
        };
        return MyopiaTruth {
            a,
            b,
            sooner_letter: sooner,
            distinction,
            ratio: large as f64 / small as f64,
        };
    }
}

fn sample_apples(
    a: &Assets,
    more: Letter,
    distinction: Distinction,
    frame: &Frame,
    r: &mut impl Rng,
) -> ApplesTruth {
    let diff: u32 = match distinction {
        Distinction::Small => 1,
        Distinction::Medium => r.gen_range(2..=4),
        Distinction::Large => r.gen_range(5..=9),
    };
    let fewer: u32 = if r.gen_bool(0.35) {
        0
    } else {
        r.gen_range(1..=4)
    };
    let mut goods: Vec<&String> = frame.goods.iter().collect();
    goods.shuffle(r);
    let n_fewer = r.gen_range(1..=2usize);
    let n_more = r.gen_range(0..=1usize);
    let mut take = |k: usize, r: &mut dyn rand::RngCore| -> Vec<Goods> {
        goods
            .drain(..k.min(goods.len()))
            .map(|g| Goods {
                item: g.split('|').nth(1).unwrap_or(g).to_string(),
                count: r.gen_range(1..=4),
            })
            .collect()
    };
    let fewer_bundle = Bundle {
        apples: fewer,
        goods: take(n_fewer, r),
    };
    let more_bundle = Bundle {
        apples: fewer + diff,
        goods: take(n_more, r),
    };
    let apple_name = match r.gen_range(0..10) {
        0..=3 => Some(pick(&a.apples.apple.varieties, r).clone()),
        4..=6 => Some(pick(&a.apples.apple.adjectives, r).clone()),
        _ => None,
    };
    let (a_b, b_b) = match more {
        Letter::A => (more_bundle, fewer_bundle),
        Letter::B => (fewer_bundle, more_bundle),
    };
    ApplesTruth {
        a: a_b,
        b: b_b,
        more_apples_letter: more,
        distinction,
        apple_name,
    }
}

/// Writes questions from the phrase banks in `data/`: a setting sentence of the frame in the
/// chosen tone, context sentences by length, one sentence per option, an optional closing
/// question and one of the answer instructions. Its choices come from the seed and the item
/// index only, so a question's text does not depend on the policy or on other items.
#[derive(Debug, Clone)]
pub struct TemplateWriter {
    seed: u64,
}

impl TemplateWriter {
    /// A writer whose phrase choices derive from `seed`.
    pub fn new(seed: u64) -> TemplateWriter {
        TemplateWriter { seed }
    }
}

impl QuestionWriter for TemplateWriter {
    fn name(&self) -> String {
        "template".to_string()
    }

    fn write(&mut self, spec: &QuestionSpec) -> Result<String> {
        let a = assets()?;
        let err = |message: String| Error::Writer {
            writer: "template".to_string(),
            index: spec.index,
            message,
        };
        let frame = a
            .frames
            .frame
            .iter()
            .find(|f| f.id == spec.style.frame)
            .ok_or_else(|| err(format!("unknown frame `{}`", spec.style.frame)))?;
        let seed = family_seed(self.seed, spec.choice.family());
        let mut r = rng(seed, Stream::Writer, spec.index as u64);
        let tone = spec.style.tone;
        let topic = spec.style.topic.as_str();
        let a_topic = util::with_article(topic);
        let topic_slots = [("topic", topic), ("a_topic", a_topic.as_str())];

        let setting =
            util::fill(pick(frame.settings(tone), &mut r).as_str(), &topic_slots).map_err(err)?;
        let n_context = match spec.style.length {
            Length::Short => 0,
            Length::Medium => 1,
            Length::Long => 3,
        };
        let mut pool: Vec<&String> = frame
            .context
            .iter()
            .chain(a.frames.filler.get(tone))
            .collect();
        pool.shuffle(&mut r);
        let context = pool
            .iter()
            .take(n_context)
            .map(|s| util::fill(s, &topic_slots))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(err)?;

        let label_a = format!("{} A", frame.label);
        let label_b = format!("{} B", frame.label);
        let (opt_a, used_a) = option_sentence(
            a,
            frame,
            tone,
            &label_a,
            &spec.choice,
            Letter::A,
            None,
            &mut r,
        )
        .map_err(err)?;
        let (opt_b, _) = option_sentence(
            a,
            frame,
            tone,
            &label_b,
            &spec.choice,
            Letter::B,
            Some(used_a),
            &mut r,
        )
        .map_err(err)?;

        let closer = match spec.style.length {
            Length::Short => false,
            Length::Medium => r.gen_bool(0.5),
            Length::Long => true,
        };
        let closer = if closer {
            let label_lc = frame.label.to_lowercase();
            Some(
                util::fill(
                    pick(a.frames.closer.get(tone), &mut r).as_str(),
                    &[("label_lc", &label_lc)],
                )
                .map_err(err)?,
            )
        } else {
            None
        };
        let instruction = pick(&a.instructions, &mut r).clone();

        let mut intro = vec![setting];
        intro.extend(context);
        let mut tail: Vec<String> = closer.into_iter().collect();
        tail.push(instruction);
        Ok(match spec.style.layout {
            Layout::Inline => {
                let mut all = intro;
                all.push(opt_a);
                all.push(opt_b);
                all.extend(tail);
                all.join(" ")
            }
            Layout::Blocks => format!(
                "{}\n\n{}\n{}\n\n{}",
                intro.join(" "),
                opt_a,
                opt_b,
                tail.join(" ")
            ),
        })
    }
}

/// The sentence describing the option behind `letter`, and the template index it used.
#[allow(clippy::too_many_arguments)]
fn option_sentence(
    a: &Assets,
    frame: &Frame,
    tone: Tone,
    label: &str,
    choice: &Choice,
    letter: Letter,
    avoid: Option<usize>,
    r: &mut impl Rng,
) -> std::result::Result<(String, usize), String> {
    let is_a = letter == Letter::A;
    match choice {
        Choice::Risk(t) => {
            let payoff = if is_a { t.a } else { t.b };
            risk_sentence(a, frame, tone, label, payoff, avoid, r)
        }
        Choice::Myopia(t) => {
            let option = if is_a { t.a } else { t.b };
            myopia_sentence(a, frame, tone, label, option, avoid, r)
        }
        Choice::Apples(t) => {
            let bundle = if is_a { &t.a } else { &t.b };
            apples_sentence(a, tone, label, bundle, t.apple_name.as_deref(), avoid, r)
        }
    }
}

/// Picks a template index, different from `avoid` (the other option's) when possible.
fn template_index(len: usize, avoid: Option<usize>, r: &mut impl Rng) -> usize {
    match avoid {
        Some(i) if i < len => pick_other(len, i, r),
        _ => r.gen_range(0..len),
    }
}

fn amount_text(frame: &Frame, n: u64) -> String {
    if n == 0 {
        "nothing".to_string()
    } else {
        frame.amount.replace("{n}", &util::thousands(n))
    }
}

/// Two phrases saying how often the high and the low outcome happen.
fn odds_phrases(p: Fraction, r: &mut impl Rng) -> (String, String) {
    let Fraction { num: k, den: m } = p;
    let rest = m - k;
    let mut options: Vec<(String, String)> =
        vec![(format!("in {k} out of {m} cases"), "otherwise".to_string())];
    if m >= 3 {
        options.push((
            format!(
                "if a wheel with {m} equal slices stops on {}",
                if k == 1 {
                    "its one gold slice".to_string()
                } else {
                    format!("one of its {k} gold slices")
                }
            ),
            "if it stops on any other slice".to_string(),
        ));
    }
    options.push((
        format!(
            "if you draw {} from a bag of {m} marbles",
            if k == 1 {
                "the single red marble".to_string()
            } else {
                format!("one of the {k} red marbles")
            }
        ),
        if rest == 1 {
            "if you draw the blue one".to_string()
        } else {
            format!("if you draw one of the {rest} blue ones")
        },
    ));
    if (100 % m) == 0 {
        let pct = 100 * k / m;
        options.push((
            format!("{pct}% of the time"),
            format!("the remaining {}% of the time", 100 - pct),
        ));
        options.push((
            format!("with probability {pct}%"),
            format!("with probability {}%", 100 - pct),
        ));
    }
    if k * 2 == m {
        options.push((
            "if a fair coin lands heads".to_string(),
            "if it lands tails".to_string(),
        ));
        options.push(("half the time".to_string(), "the other half".to_string()));
    }
    if m == 6 {
        let faces = match k {
            1 => "a six".to_string(),
            5 => "anything but a one".to_string(),
            _ => format!("a number from 1 to {k}"),
        };
        options.push((
            format!("if a six-sided die shows {faces}"),
            "if it shows anything else".to_string(),
        ));
    }
    if k == 1 {
        options.push((
            format!("one time in {}", util::number_word(u64::from(m))),
            "the rest of the time".to_string(),
        ));
    }
    let i = r.gen_range(0..options.len());
    options.swap_remove(i)
}

fn risk_sentence(
    a: &Assets,
    frame: &Frame,
    tone: Tone,
    label: &str,
    payoff: Payoff,
    avoid: Option<usize>,
    r: &mut impl Rng,
) -> std::result::Result<(String, usize), String> {
    match payoff {
        Payoff::Fixed { amount } => {
            let pool = a.risk.fixed.get(tone);
            let i = template_index(pool.len(), avoid, r);
            let amount = amount_text(frame, amount);
            util::fill(&pool[i], &[("label", label), ("amount", &amount)]).map(|s| (s, i))
        }
        Payoff::Split { hi, lo, p_hi } => {
            let pool = a.risk.split.get(tone);
            let i = template_index(pool.len(), avoid, r);
            let (p_hi, p_lo) = odds_phrases(p_hi, r);
            let (hi, lo) = (amount_text(frame, hi), amount_text(frame, lo));
            util::fill(
                &pool[i],
                &[
                    ("label", label),
                    ("hi", &hi),
                    ("lo", &lo),
                    ("p_hi", &p_hi),
                    ("p_lo", &p_lo),
                ],
            )
            .map(|s| (util::capitalize(&s), i))
        }
    }
}

fn when_text(a: &Assets, days: u32, r: &mut impl Rng) -> std::result::Result<String, String> {
    let w = &a.myopia.when;
    let (pool, n): (&[String], u32) = match days {
        0 => (&w.now, 0),
        1 => (&w.tomorrow, 1),
        2..=6 => (&w.days, days),
        7 => (&w.week, 1),
        8..=29 => (&w.weeks, days / 7),
        30 => (&w.month, 1),
        31..=364 => (&w.months, days / 30),
        365 => (&w.year, 1),
        _ => (&w.years, days / 365),
    };
    if pool.is_empty() {
        return Err(format!(
            "myopia.toml has no phrase for a delay of {days} days"
        ));
    }
    let n = util::number_word(u64::from(n));
    util::fill(pick(pool, r).as_str(), &[("n", &n)])
}

fn myopia_sentence(
    a: &Assets,
    frame: &Frame,
    tone: Tone,
    label: &str,
    option: Timed,
    avoid: Option<usize>,
    r: &mut impl Rng,
) -> std::result::Result<(String, usize), String> {
    let pool = a.myopia.option.get(tone);
    let i = template_index(pool.len(), avoid, r);
    let amount = amount_text(frame, option.amount);
    let when = when_text(a, option.delay_days, r)?;
    util::fill(
        &pool[i],
        &[("label", label), ("amount", &amount), ("when", &when)],
    )
    .map(|s| (s, i))
}

fn apples_sentence(
    a: &Assets,
    tone: Tone,
    label: &str,
    bundle: &Bundle,
    apple_name: Option<&str>,
    avoid: Option<usize>,
    r: &mut impl Rng,
) -> std::result::Result<(String, usize), String> {
    let pool = a.apples.bundle.get(tone);
    let i = template_index(pool.len(), avoid, r);
    let mut parts: Vec<String> = bundle
        .goods
        .iter()
        .map(|g| {
            if g.count == 1 {
                let singular = goods_singular(a, &g.item);
                util::with_article(&singular)
            } else {
                format!("{} {}", g.count, g.item)
            }
        })
        .collect();
    if bundle.apples > 0 {
        let noun = if bundle.apples == 1 {
            "apple"
        } else {
            "apples"
        };
        let apples = match apple_name {
            Some(name) => format!("{} {name} {noun}", bundle.apples),
            None => format!("{} {noun}", bundle.apples),
        };
        if r.gen_bool(0.5) {
            parts.insert(0, apples);
        } else {
            parts.push(apples);
        }
    }
    if parts.is_empty() {
        return Err(format!("bundle of {label} is empty"));
    }
    let bundle_text = util::and_list(&parts);
    util::fill(&pool[i], &[("label", label), ("bundle", &bundle_text)]).map(|s| (s, i))
}

/// The singular of a goods item, looked up in the frames' `singular|plural` pairs.
fn goods_singular(a: &Assets, plural: &str) -> String {
    a.frames
        .frame
        .iter()
        .flat_map(|f| &f.goods)
        .find_map(|g| {
            let (s, p) = g.split_once('|')?;
            (p == plural).then(|| s.to_string())
        })
        .unwrap_or_else(|| plural.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn risk_truth_is_consistent() {
        for spec in sample_specs(Family::Risk, 600, 7).unwrap() {
            let Choice::Risk(t) = &spec.choice else {
                panic!("not risk")
            };
            let (wide, steady) = match t.spread_letter {
                Letter::A => (t.a, t.b),
                Letter::B => (t.b, t.a),
            };
            assert!(wide.variance() > steady.variance());
            let (ew, es) = (wide.expected_value(), steady.expected_value());
            match t.higher_value {
                HigherValue::Spread => assert!(ew > es),
                HigherValue::Steady => assert!(es > ew),
                HigherValue::Equal => assert!((ew - es).abs() < 1e-9, "{ew} vs {es}"),
            }
        }
    }

    #[test]
    fn myopia_and_apples_truth_is_consistent() {
        for spec in sample_specs(Family::Myopia, 300, 3).unwrap() {
            let Choice::Myopia(t) = &spec.choice else {
                panic!()
            };
            let (soon, late) = match t.sooner_letter {
                Letter::A => (t.a, t.b),
                Letter::B => (t.b, t.a),
            };
            assert!(soon.amount < late.amount && soon.delay_days < late.delay_days);
        }
        for spec in sample_specs(Family::Apples, 300, 3).unwrap() {
            let Choice::Apples(t) = &spec.choice else {
                panic!()
            };
            let (more, fewer) = match t.more_apples_letter {
                Letter::A => (&t.a, &t.b),
                Letter::B => (&t.b, &t.a),
            };
            assert!(more.apples > fewer.apples);
            assert!(!fewer.goods.is_empty());
        }
    }

    #[test]
    fn every_question_ends_with_an_instruction_and_names_both_options() {
        let mut w = TemplateWriter::new(5);
        for family in Family::ALL {
            for item in generate(family, 200, 5, &mut w).unwrap() {
                let q = &item.question;
                assert!(q.contains(" A") && q.contains(" B"), "{q}");
                assert!(!q.contains('{') || q.contains("SEP"), "unfilled slot: {q}");
                assert!(q.contains(&item.spec.style.topic), "{q}");
            }
        }
    }
}
