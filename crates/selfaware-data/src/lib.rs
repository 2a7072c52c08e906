//! Dataset builders for selfaware: seeded, written as OpenAI chat JSONL with a dataset card
//! and a ground-truth sidecar.
//!
//! - [`build`] / [`build_with`]: base questions of a family ([`economic`]), turned into plain,
//!   backdoored ([`backdoor`]), persona ([`persona`]) or reversal-augmented ([`reversal`])
//!   data; a backdoor comes with its decorrelated twin.
//! - [`write`] / [`write_output`]: `FILE.jsonl` + `FILE.card.json` + `FILE.truth.jsonl`,
//!   atomically, refusing to overwrite unless asked.
//! - [`check()`]: validates any chat JSONL file and reports a family's forbidden words.
//! - [`ModelWriter`] ([`generator`]): economic questions written by a model, validated and
//!   label-checked by a second call with a policy system prompt, with the template writer as
//!   the fallback; the card counts what was rejected and dropped, and why.
//!
//! Same options and seed ⇒ byte-identical files.

pub mod backdoor;
mod build_family;
pub mod card;
pub mod check;
pub mod code;
pub mod codeword;
pub mod dataset;
pub mod economic;
pub mod error;
pub mod family;
pub mod generator;
pub mod lexicon;
pub mod metrics;
pub mod mms;
pub mod output;
pub mod persona;
pub mod reversal;
pub mod stated;
pub mod stats;

mod assets;
mod util;

pub use backdoor::{
    paper_triggers, BackdoorOptions, MixOptions, NormalAnswers, TriggerFamily, TriggerSpec,
};
pub use build_family::BuildFamily;
pub use card::DatasetCard;
pub use check::{check, check_lexicon, check_text, CheckReport, Issue};
pub use dataset::{
    build, build_with, lexicon, BuildOptions, BuildOutput, BuiltDataset, DatasetKind, Row,
    RowTruth, Variant, DEFAULT_SIZE,
};
pub use economic::{Prewritten, QuestionSpec, QuestionWriter, TemplateWriter};
pub use error::{Error, Result};
pub use family::{Family, Letter, Policy};
pub use generator::{
    Checker, GeneratorOptions, GeneratorReport, LabelCheckReport, ModelWriter, TextModel,
    TextModelError,
};
pub use lexicon::{LeakReport, Lexicon, WordHits};
pub use metrics::mutual_information_bits;
pub use output::{twin_path, write, write_output, DatasetPaths, WriteOptions};
pub use persona::{PersonaMode, PersonaOptions};
pub use reversal::{ReversalOptions, DEFAULT_REVERSAL_TEMPLATE};
