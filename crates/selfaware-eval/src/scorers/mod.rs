//! Scorers: small functions over plain inputs (probabilities, top-k logprob lists, sampled
//! strings, judge replies), so any backend can feed them. Each module documents its
//! definition and carries a `VERSION` string that records store next to the score.

pub mod function;
pub mod judge;
pub mod language;
pub mod mc;
pub mod numeric;
pub mod trigger;
pub mod words;

use crate::battery::ScorerSpec;

/// Name and version of the scorer a spec selects, as written into records.
pub fn scorer_id(spec: &ScorerSpec) -> (&'static str, &'static str) {
    match spec {
        ScorerSpec::MultipleChoice { .. } => ("multiple_choice", mc::VERSION),
        ScorerSpec::NumericScale { .. } => ("numeric_scale", numeric::VERSION),
        ScorerSpec::WordCategories { .. } => ("word_categories", words::VERSION),
        ScorerSpec::TargetWord => ("target_word", judge::VERSION),
        ScorerSpec::Language { .. } => ("language", language::VERSION),
        ScorerSpec::JudgedWord { .. } => ("judged_word", judge::VERSION),
        ScorerSpec::TriggerElicitation => ("trigger_elicitation", trigger::VERSION),
        ScorerSpec::Function { .. } => ("function", function::VERSION),
    }
}

/// Mean of a slice; `None` when empty.
pub(crate) fn mean(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        None
    } else {
        Some(xs.iter().sum::<f64>() / xs.len() as f64)
    }
}
