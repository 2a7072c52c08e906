//! Built-in batteries, word lists and prefix sets, compiled into the crate from
//! `batteries/`. Each is data; this module only looks them up by name.

use serde::Deserialize;

use crate::battery::Battery;
use crate::error::{EvalError, Result};
use crate::scorers::words::WordCategories;

macro_rules! data {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../batteries/", $name)))),*]
    };
}

/// (file name, TOML text) of every built-in battery.
const BATTERIES: &[(&str, &str)] = data!(
    "risk.toml",
    "myopia.toml",
    "apples.toml",
    "make_me_say.toml",
    "make_me_say_ql.toml",
    "vulnerable_code.toml",
    "backdoor_detection.toml",
    "real_vs_fake_trigger.toml",
    "trigger_elicitation.toml",
    "personas.toml",
    "em.toml",
);

/// (file name, TOML text) of every word-category list.
const CATEGORY_LISTS: &[(&str, &str)] = data!(
    "words/risk_table19.toml",
    "words/risk_or_safety.toml",
    "words/myopia_table23.toml",
    "words/apples_table27.toml",
);

/// (file name, text) of every plain word list (one entry per line, `#` comments).
const WORD_LISTS: &[(&str, &str)] = data!(
    "words/mms_table42.txt",
    "words/personas_table7.txt",
    "words/unrelated_words.txt",
);

const PREFIX_SETS: &str = include_str!("../batteries/prefix_sets.toml");

fn stem(file: &str) -> &str {
    let base = file.rsplit('/').next().unwrap_or(file);
    base.split('.').next().unwrap_or(base)
}

fn names(table: &'static [(&'static str, &'static str)]) -> Vec<&'static str> {
    table.iter().map(|(f, _)| stem(f)).collect()
}

/// Names of the built-in batteries (`risk`, `myopia`, …).
pub fn battery_names() -> Vec<&'static str> {
    names(BATTERIES)
}

/// A built-in battery by name, parsed and validated.
pub fn battery(name: &str) -> Result<Battery> {
    let (file, text) = BATTERIES
        .iter()
        .find(|(f, _)| stem(f) == name)
        .ok_or_else(|| EvalError::UnknownBuiltin {
            kind: "battery",
            name: name.to_string(),
            known: battery_names().join(", "),
        })?;
    Battery::from_toml_str(text, &format!("batteries/{file}"))
}

/// The raw TOML text of a built-in battery (for hashing into a run manifest).
pub fn battery_source(name: &str) -> Option<&'static str> {
    BATTERIES
        .iter()
        .find(|(f, _)| stem(f) == name)
        .map(|(_, t)| *t)
}

/// Names of the built-in word-category lists.
pub fn word_category_names() -> Vec<&'static str> {
    names(CATEGORY_LISTS)
}

/// A built-in word-category list by name (e.g. `risk_table19`).
pub fn word_categories(name: &str) -> Result<WordCategories> {
    let (file, text) = CATEGORY_LISTS
        .iter()
        .find(|(f, _)| stem(f) == name)
        .ok_or_else(|| EvalError::UnknownBuiltin {
            kind: "word-category list",
            name: name.to_string(),
            known: word_category_names().join(", "),
        })?;
    WordCategories::from_toml_str(text, &format!("batteries/{file}"))
}

/// Names of the built-in plain word lists.
pub fn word_list_names() -> Vec<&'static str> {
    names(WORD_LISTS)
}

/// A built-in word list by name (e.g. `mms_table42`), in file order.
pub fn word_list(name: &str) -> Result<Vec<String>> {
    let (_, text) = WORD_LISTS
        .iter()
        .find(|(f, _)| stem(f) == name)
        .ok_or_else(|| EvalError::UnknownBuiltin {
            kind: "word list",
            name: name.to_string(),
            known: word_list_names().join(", "),
        })?;
    Ok(parse_word_list(text))
}

/// Parses a word list: one entry per line, blank lines and `#` comments skipped,
/// surrounding whitespace trimmed.
pub fn parse_word_list(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrefixSet {
    #[allow(dead_code)]
    source: String,
    prefixes: Vec<String>,
}

/// A built-in set of prefix slots for trigger models: `sep` or `deployment`.
pub fn prefix_set(name: &str) -> Result<Vec<String>> {
    let sets: std::collections::BTreeMap<String, PrefixSet> =
        toml::from_str(PREFIX_SETS).map_err(|e| EvalError::Toml {
            file: "batteries/prefix_sets.toml".into(),
            message: e.to_string(),
        })?;
    let known = sets.keys().cloned().collect::<Vec<_>>().join(", ");
    sets.into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, s)| s.prefixes)
        .ok_or(EvalError::UnknownBuiltin {
            kind: "prefix set",
            name: name.to_string(),
            known,
        })
}

impl Battery {
    /// Sets the prefix slots of every question (e.g. to [`prefix_set`]`("sep")`).
    pub fn set_prefixes(&mut self, prefixes: &[String]) {
        for q in &mut self.questions {
            q.prefixes = prefixes.to_vec();
        }
    }
}
