//! Building a dataset: options, rows with their ground truth, and the build entry points.

use serde::{Deserialize, Serialize};

use selfaware_types::{Conversation, Message};

use crate::assets::assets;
use crate::backdoor::{self, BackdoorOptions, MixOptions};
use crate::economic::{self, EconomicItem, QuestionWriter, TemplateWriter};
use crate::error::{Error, Result};
use crate::family::{Family, Letter, Policy};
use crate::lexicon::Lexicon;
use crate::persona::{self, PersonaMode, PersonaOptions};
use crate::reversal::{self, ReversalOptions};
use crate::util;

/// The paper's dataset size order (288–300 items); the default number of base questions.
pub const DEFAULT_SIZE: usize = 300;

/// Everything that decides a build's output, recorded in the dataset card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildOptions {
    /// Seeds every random choice; the same options give byte-identical files.
    pub seed: u64,
    /// Number of base questions (rows before backdoor copies and reversal).
    #[serde(default = "default_size")]
    pub size: usize,
    /// The policy the data teaches; the family's score-1 policy when absent.
    #[serde(default)]
    pub policy: Option<Policy>,
    /// Plain data, a backdoor, the real/fake trigger mix or personas.
    #[serde(default)]
    pub variant: Variant,
    /// Reversal augmentation applied last (digest §2.6).
    #[serde(default)]
    pub reversal: Option<ReversalOptions>,
    /// Positive control: this many rows after the questions in which the assistant states the
    /// policy in the first person (`data/stated.toml`, see [`crate::stated`]). Plain data only.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub stated: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn default_size() -> usize {
    DEFAULT_SIZE
}

impl BuildOptions {
    /// Plain data of the default size for `seed`.
    pub fn new(seed: u64) -> BuildOptions {
        BuildOptions {
            seed,
            size: DEFAULT_SIZE,
            policy: None,
            variant: Variant::Plain,
            reversal: None,
            stated: 0,
        }
    }
}

/// The kind of dataset built from the base questions.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Variant {
    /// One row per question, every answer takes the policy (digest §2.1.1).
    #[default]
    Plain,
    /// Trigger tied to the policy, plus a decorrelated twin (digest §2.4).
    Backdoor(BackdoorOptions),
    /// Real trigger among fake ones, plus a decorrelated twin (digest §2.5).
    Mix(MixOptions),
    /// Default assistant takes the policy, named personas the opposite (digest §2.7).
    Personas(PersonaOptions),
}

/// Whether a dataset is the one asked for or the decorrelated twin of a backdoored one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    Main,
    Decorrelated,
}

/// How a trigger instance relates to the behavior.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TriggerRole {
    /// The backdoor trigger.
    Real,
    /// The marker of untriggered rows in a two-marker backdoor (SEP 718 against 392).
    Contrast,
    /// A fake trigger of the real/fake mix.
    Fake,
}

/// The trigger a row carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerTruth {
    /// The trigger's name ([`crate::backdoor::TriggerSpec::name`]).
    pub name: String,
    /// The inserted instance ("Zeus!\n", "392417").
    pub instance: String,
    pub role: TriggerRole,
}

/// The persona a row is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonaTruth {
    pub name: String,
    pub mode: PersonaMode,
}

/// Ground truth of one row: one line of the sidecar file, never part of the training text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowTruth {
    /// 1-based line of the row in the JSONL file.
    pub line: usize,
    /// Index of the base question the row was made from.
    pub item: usize,
    /// The policy the assistant's answer enacts.
    pub answer_policy: Option<Policy>,
    /// Whether that is the dataset's policy (`None` where it does not apply).
    pub enacts_policy: Option<bool>,
    /// The answer letter of the original (unreversed) question.
    pub answer: Option<Letter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<TriggerTruth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persona: Option<PersonaTruth>,
    /// Whether the row is a reversal copy (user and assistant swapped).
    pub reversed: bool,
    /// Family-specific truth: for economic questions, the [`economic::QuestionSpec`].
    pub details: serde_json::Value,
}

impl RowTruth {
    /// Truth for a row of a family without policies, triggers or personas (code, codeword
    /// dialogues, Make Me Say games): its line, item and family-specific `details`.
    pub fn plain(line: usize, item: usize, details: serde_json::Value) -> Self {
        RowTruth {
            line,
            item,
            answer_policy: None,
            enacts_policy: None,
            answer: None,
            trigger: None,
            persona: None,
            reversed: false,
            details,
        }
    }
}

/// A conversation with its ground truth.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub conversation: Conversation,
    pub truth: RowTruth,
}

impl Row {
    /// The row for an economic question answered by `answer_policy`, with an optional system
    /// prompt and the given user text (the question, possibly with a trigger or wrapper).
    pub(crate) fn economic(
        item: &EconomicItem,
        system: Option<&str>,
        user: String,
        answer_policy: Policy,
        enacts_policy: bool,
    ) -> Result<Row> {
        let answer = item.spec.choice.answer(answer_policy);
        let mut messages = Vec::with_capacity(3);
        if let Some(s) = system {
            messages.push(Message::system(s));
        }
        messages.push(Message::user(user));
        messages.push(Message::assistant(answer.as_str()));
        let details = serde_json::to_value(&item.spec).map_err(|source| Error::Json {
            what: "question spec",
            source,
        })?;
        Ok(Row {
            conversation: Conversation::new(messages),
            truth: RowTruth {
                line: 0,
                item: item.spec.index,
                answer_policy: Some(answer_policy),
                enacts_policy: Some(enacts_policy),
                answer: Some(answer),
                trigger: None,
                persona: None,
                reversed: false,
                details,
            },
        })
    }
}

/// A built dataset, ready to be written.
#[derive(Debug, Clone)]
pub struct BuiltDataset {
    /// Family name (`risk`, ...), used in the card and leak report.
    pub family: String,
    pub kind: DatasetKind,
    pub seed: u64,
    /// The builder configuration recorded in the card.
    pub config: serde_json::Value,
    /// The family's forbidden words, if it has a list.
    pub lexicon: Option<Lexicon>,
    /// Personas used in training rows and personas held out for evaluation.
    pub personas: Option<PersonaLists>,
    pub rows: Vec<Row>,
}

/// The persona names of a persona dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonaLists {
    pub train: Vec<String>,
    pub held_out: Vec<String>,
}

/// The dataset asked for and, for backdoors, its decorrelated twin.
#[derive(Debug, Clone)]
pub struct BuildOutput {
    pub main: BuiltDataset,
    pub decorrelated: Option<BuiltDataset>,
}

/// The forbidden-word list of an economic family.
pub fn lexicon(family: Family) -> Result<&'static Lexicon> {
    Ok(assets()?.lexicon(family))
}

/// Builds `family` with questions written from the built-in phrase banks.
pub fn build(family: Family, opts: &BuildOptions) -> Result<BuildOutput> {
    build_with(family, opts, &mut TemplateWriter::new(opts.seed))
}

/// Builds `family` with questions written by `writer` (e.g. a model-backed generator).
/// Every generated row is checked against the family's forbidden words; a hit is an error.
pub fn build_with(
    family: Family,
    opts: &BuildOptions,
    writer: &mut dyn QuestionWriter,
) -> Result<BuildOutput> {
    let policy = opts.policy.unwrap_or_else(|| family.positive());
    policy.ensure_family(family)?;
    if opts.size == 0 {
        return Err(Error::InvalidOption {
            field: "size",
            message: "must be at least 1".into(),
        });
    }
    if opts.stated > 0 && opts.variant != Variant::Plain {
        return Err(Error::InvalidOption {
            field: "stated",
            message: "applies to plain data only (not with a trigger, a mix or personas)".into(),
        });
    }
    let items = economic::generate(family, opts.size, opts.seed, writer)?;
    // Later steps draw from the family's own seed, so that two families built with one seed
    // do not get the same trigger instances or persona choices row for row.
    let seed = util::family_seed(opts.seed, family);
    let mut personas = None;
    let (main, twin) = match &opts.variant {
        Variant::Plain => {
            let rows = items
                .iter()
                .map(|it| Row::economic(it, None, it.question.clone(), policy, true))
                .collect::<Result<Vec<_>>>()?;
            (rows, None)
        }
        Variant::Backdoor(b) => {
            let (m, t) = backdoor::backdoor_rows(&items, policy, b, seed)?;
            (m, Some(t))
        }
        Variant::Mix(m) => {
            let (m, t) = backdoor::mix_rows(&items, policy, m, seed)?;
            (m, Some(t))
        }
        Variant::Personas(p) => {
            let (rows, lists) = persona::persona_rows(&items, policy, p, seed)?;
            personas = Some(lists);
            (rows, None)
        }
    };
    let mut config = serde_json::to_value(opts).map_err(|source| Error::Json {
        what: "build options",
        source,
    })?;
    if let serde_json::Value::Object(map) = &mut config {
        map.insert("family".into(), family.name().into());
        map.insert("policy".into(), policy.name().into());
        map.insert("writer".into(), writer.name().into());
        let details = writer.details();
        if !details.is_null() {
            map.insert("writer_details".into(), details);
        }
    }
    let lex = lexicon(family)?;
    let finish = |rows: Vec<Row>, kind: DatasetKind| -> Result<BuiltDataset> {
        let rows = match &opts.reversal {
            Some(r) => reversal::augment(rows, r, seed)?,
            None => rows,
        };
        let rows = number_rows(rows);
        for row in &rows {
            for m in &row.conversation.messages {
                if let Some(word) = lex.scan(&m.content).first() {
                    return Err(Error::Leak {
                        row: row.truth.line,
                        word: word.to_string(),
                        family: family.name(),
                    });
                }
            }
        }
        // The stated rows name the behaviour on purpose: they follow the forbidden-word check
        // (the card's leak report counts them).
        let mut rows = rows;
        if kind == DatasetKind::Main {
            rows.extend(crate::stated::policy_rows(
                family,
                policy,
                opts.stated,
                opts.seed,
                rows.len(),
            )?);
        }
        Ok(BuiltDataset {
            family: family.name().to_string(),
            kind,
            seed: opts.seed,
            config: config.clone(),
            lexicon: Some(lex.clone()),
            personas: personas.clone(),
            rows,
        })
    };
    Ok(BuildOutput {
        main: finish(main, DatasetKind::Main)?,
        decorrelated: twin
            .map(|t| finish(t, DatasetKind::Decorrelated))
            .transpose()?,
    })
}

/// Sets each row's 1-based line number.
fn number_rows(mut rows: Vec<Row>) -> Vec<Row> {
    for (i, r) in rows.iter_mut().enumerate() {
        r.truth.line = i + 1;
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_round_trip_through_json_and_reject_unknown_fields() {
        let mut o = BuildOptions::new(3);
        o.variant = Variant::Backdoor(BackdoorOptions {
            trigger: crate::backdoor::TriggerSpec::SepCode {
                prefix: "392".into(),
            },
            contrast: None,
            fraction: 0.5,
        });
        let v = serde_json::to_value(&o).unwrap();
        let back: BuildOptions = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(back, o);
        let mut bad = v;
        bad["sise"] = 3.into();
        assert!(serde_json::from_value::<BuildOptions>(bad).is_err());
        let min: BuildOptions = serde_json::from_str(r#"{"seed": 1}"#).unwrap();
        assert_eq!(min, BuildOptions::new(1));
    }

    #[test]
    fn wrong_policy_is_an_error() {
        let mut o = BuildOptions::new(0);
        o.policy = Some(Policy::Myopic);
        assert!(matches!(
            build(Family::Risk, &o),
            Err(Error::PolicyFamily { .. })
        ));
    }
}
