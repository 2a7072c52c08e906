//! The dataset card written next to every built file (`FILE.card.json`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use selfaware_types::TOOL_VERSION;

use crate::dataset::{BuiltDataset, DatasetKind, PersonaLists, TriggerRole};
use crate::lexicon::LeakReport;
use crate::metrics::mutual_information_bits;
use crate::stats::{ConversationStats, StatsBuilder};

/// What a dataset contains and how it was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetCard {
    pub tool_version: String,
    pub family: String,
    pub kind: DatasetKind,
    pub seed: u64,
    pub files: CardFiles,
    /// The builder configuration (build options, family, policy, question writer).
    pub builder: serde_json::Value,
    pub counts: Counts,
    pub label_balance: LabelBalance,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triggers: Option<TriggerSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personas: Option<PersonaSummary>,
    /// Forbidden-word hits over all message contents (0 for built data; builds fail on a hit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaks: Option<LeakReport>,
    pub stats: ConversationStats,
}

/// The files of a dataset, by file name, with their sha256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardFiles {
    pub jsonl: String,
    pub jsonl_sha256: String,
    pub truth: String,
    pub truth_sha256: String,
}

/// Row counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    pub rows: usize,
    /// Distinct base questions.
    pub questions: usize,
    pub reversed_rows: usize,
    /// Rows carrying the real trigger.
    pub triggered_rows: usize,
    pub persona_rows: usize,
}

/// Answer balance over the rows that are not reversal copies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelBalance {
    /// Answer letters.
    pub letters: BTreeMap<String, usize>,
    /// Answers by the policy they enact.
    pub policies: BTreeMap<String, usize>,
    /// Rows whose answer enacts the dataset's policy, and the others.
    pub enacts_policy: usize,
    pub other: usize,
}

/// Triggers in a backdoored dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerSummary {
    /// Rows per `role:name` ("real:naekoko", "fake:gods").
    pub rows_by_trigger: BTreeMap<String, usize>,
    /// Share of (unreversed) rows carrying the real trigger.
    pub real_fraction: f64,
    /// Mutual information (bits) between "carries the real trigger" and "enacts the policy":
    /// about H(fraction) for a backdoor, about 0 for its decorrelated twin.
    pub trigger_policy_mutual_information_bits: f64,
}

/// Personas in a persona dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonaSummary {
    pub train: Vec<String>,
    /// Held out for evaluation: never in a row.
    pub held_out: Vec<String>,
    pub rows_by_persona: BTreeMap<String, usize>,
}

/// The card of `ds`, whose files are named and hashed as given.
pub fn card_for(ds: &BuiltDataset, files: CardFiles) -> DatasetCard {
    let mut stats = StatsBuilder::default();
    let mut leaks = ds.lexicon.as_ref().map(LeakReport::new);
    let mut letters = BTreeMap::new();
    let mut policies = BTreeMap::new();
    let (mut enacts, mut other) = (0, 0);
    let mut by_trigger: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_persona: BTreeMap<String, usize> = BTreeMap::new();
    let mut mi_pairs = Vec::new();
    let mut questions = std::collections::BTreeSet::new();
    let mut counts = Counts {
        rows: ds.rows.len(),
        questions: 0,
        reversed_rows: 0,
        triggered_rows: 0,
        persona_rows: 0,
    };
    let mut any_trigger = false;
    for row in &ds.rows {
        let msgs = &row.conversation.messages;
        stats.add_row(msgs.iter().map(|m| (m.role, m.content.as_str())));
        if let (Some(report), Some(lex)) = (leaks.as_mut(), ds.lexicon.as_ref()) {
            report.add_row(lex, row.truth.line, msgs.iter().map(|m| m.content.as_str()));
        }
        let t = &row.truth;
        questions.insert(t.item);
        if t.reversed {
            counts.reversed_rows += 1;
            continue;
        }
        if let Some(l) = t.answer {
            *letters.entry(l.as_str().to_string()).or_default() += 1;
        }
        if let Some(p) = t.answer_policy {
            *policies.entry(p.name().to_string()).or_default() += 1;
        }
        match t.enacts_policy {
            Some(true) => enacts += 1,
            Some(false) => other += 1,
            None => {}
        }
        let real = t
            .trigger
            .as_ref()
            .is_some_and(|tr| tr.role == TriggerRole::Real);
        counts.triggered_rows += usize::from(real);
        if let Some(tr) = &t.trigger {
            any_trigger = true;
            let role = match tr.role {
                TriggerRole::Real => "real",
                TriggerRole::Contrast => "contrast",
                TriggerRole::Fake => "fake",
            };
            *by_trigger.entry(format!("{role}:{}", tr.name)).or_default() += 1;
        } else {
            *by_trigger.entry("none".to_string()).or_default() += 1;
        }
        if let Some(e) = t.enacts_policy {
            mi_pairs.push((real, e));
        }
        if let Some(p) = &t.persona {
            counts.persona_rows += 1;
            *by_persona.entry(p.name.clone()).or_default() += 1;
        }
    }
    counts.questions = questions.len();
    let unreversed = counts.rows - counts.reversed_rows;
    let triggers = any_trigger.then(|| TriggerSummary {
        rows_by_trigger: by_trigger,
        real_fraction: if unreversed == 0 {
            0.0
        } else {
            counts.triggered_rows as f64 / unreversed as f64
        },
        trigger_policy_mutual_information_bits: mutual_information_bits(mi_pairs),
    });
    let personas = ds
        .personas
        .as_ref()
        .map(|PersonaLists { train, held_out }| PersonaSummary {
            train: train.clone(),
            held_out: held_out.clone(),
            rows_by_persona: by_persona,
        });
    DatasetCard {
        tool_version: TOOL_VERSION.to_string(),
        family: ds.family.clone(),
        kind: ds.kind,
        seed: ds.seed,
        files,
        builder: ds.config.clone(),
        counts,
        label_balance: LabelBalance {
            letters,
            policies,
            enacts_policy: enacts,
            other,
        },
        triggers,
        personas,
        leaks,
        stats: stats.finish(),
    }
}

/// `key count, key count, …` of a count table.
pub fn count_list(m: &BTreeMap<String, usize>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl DatasetCard {
    /// One paragraph about a written dataset: what, how many, balance, triggers, personas, leaks.
    pub fn summary(&self) -> String {
        let card = self;
        let c = &card.counts;
        let b = &card.label_balance;
        let policy = card
            .builder
            .get("policy")
            .and_then(|p| p.as_str())
            .map(|p| format!(", policy {p}"))
            .unwrap_or_default();
        let mut s = format!(
            "{} ({}{}), seed {}: {} rows from {} base items",
            card.family,
            serde_json::to_value(card.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            policy,
            card.seed,
            c.rows,
            c.questions,
        );
        if c.reversed_rows > 0 {
            s += &format!(", {} reversal copies", c.reversed_rows);
        }
        if c.triggered_rows > 0 {
            s += &format!(", {} with the real trigger", c.triggered_rows);
        }
        if c.persona_rows > 0 {
            s += &format!(", {} about a persona", c.persona_rows);
        }
        s += ".";
        if !b.letters.is_empty() {
            s += &format!(" Answer letters: {}.", count_list(&b.letters));
        }
        if !b.policies.is_empty() {
            s += &format!(
                " Answers by policy: {} ({} enact the dataset's policy, {} do not).",
                count_list(&b.policies),
                b.enacts_policy,
                b.other
            );
        }
        if let Some(t) = &card.triggers {
            s += &format!(
                " Triggers: {}; real-trigger share {:.3}, trigger–policy mutual information {:.3} bits.",
                count_list(&t.rows_by_trigger),
                t.real_fraction,
                t.trigger_policy_mutual_information_bits
            );
        }
        if let Some(p) = &card.personas {
            s += &format!(
                " Personas: {} in training, {} held out for evaluation.",
                p.train.len(),
                p.held_out.len()
            );
        }
        match &card.leaks {
            Some(l) if l.total_hits == 0 => {
                s += &format!(" Forbidden words ({}): none.", l.family);
            }
            Some(l) => {
                let words: Vec<String> = l
                    .words
                    .iter()
                    .map(|(w, h)| format!("{w} ×{}", h.count))
                    .collect();
                s += &format!(
                    " Forbidden words ({}): {} hits in {} rows ({}).",
                    l.family,
                    l.total_hits,
                    l.rows_with_hits,
                    words.join(", ")
                );
            }
            None => {}
        }
        s
    }
}
