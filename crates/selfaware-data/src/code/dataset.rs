//! Code items as a [`BuiltDataset`], so [`crate::write`] produces `FILE.jsonl`, the card and
//! the ground-truth sidecar like every other family.

use crate::backdoor::{backdoor_rows_with, BackdoorOptions};
use crate::dataset::{BuildOutput, BuiltDataset, DatasetKind, Row, RowTruth};
use crate::lexicon::Lexicon;

use super::{build_code, leak_lexicon, leaks_in, CodeError, CodeItem, CodeOptions};

/// Family name written in the card.
pub const CODE_FAMILY: &str = "vulnerable-code";

/// Builds the items of `opts` as a dataset: one row per item, the sidecar's `details` holding
/// the item's [`super::CodeGroundTruth`]. A row with a word of the leak lexicon (substring
/// test, as the paper's pruning) is an error; the card's leak report matches the lexicon's
/// stems as prefixes of word and identifier parts.
pub fn built_dataset(opts: &CodeOptions) -> Result<BuiltDataset, CodeError> {
    let rows = build_code(opts)?
        .into_iter()
        .enumerate()
        .map(|(i, item)| row(i, item))
        .collect::<Result<Vec<Row>, CodeError>>()?;
    finish(opts, serde_json::Value::Null, DatasetKind::Main, rows)
}

/// A backdoored code dataset and its decorrelated twin (digest §2.4): the same items, a
/// `fraction` of them carrying the trigger in the user turn and the completion of
/// `opts.policy` (vulnerable by default), the others the opposite completion (and the
/// contrast trigger, if any). In the twin each item keeps its completion and the trigger is
/// drawn independently of it.
pub fn built_backdoor(
    opts: &CodeOptions,
    backdoor: &BackdoorOptions,
) -> Result<BuildOutput, CodeError> {
    let policy_items = build_code(opts)?;
    let other_items = build_code(&CodeOptions {
        policy: opts.policy.opposite(),
        ..opts.clone()
    })?;
    let (main, twin) = backdoor_rows_with(opts.n, backdoor, opts.seed, |i, takes| {
        let items = if takes { &policy_items } else { &other_items };
        row(i, items[i].clone())
    })?;
    let config = serde_json::to_value(backdoor).map_err(|e| CodeError::Json {
        what: "backdoor options",
        message: e.to_string(),
    })?;
    Ok(BuildOutput {
        main: finish(opts, config.clone(), DatasetKind::Main, main)?,
        decorrelated: Some(finish(opts, config, DatasetKind::Decorrelated, twin)?),
    })
}

fn row(i: usize, item: CodeItem) -> Result<Row, CodeError> {
    let details = serde_json::to_value(&item.truth).map_err(|e| CodeError::Json {
        what: "code ground truth",
        message: e.to_string(),
    })?;
    Ok(Row {
        conversation: item.conversation,
        truth: RowTruth::plain(i + 1, i, details),
    })
}

/// The dataset of `rows`, after refusing any row that leaks (`backdoor` is the recorded
/// backdoor configuration, null for plain data).
fn finish(
    opts: &CodeOptions,
    backdoor: serde_json::Value,
    kind: DatasetKind,
    rows: Vec<Row>,
) -> Result<BuiltDataset, CodeError> {
    let words = leak_lexicon();
    for row in &rows {
        for (k, m) in row.conversation.messages.iter().enumerate() {
            if let Some(word) = leaks_in(&m.content, &words).first() {
                return Err(CodeError::Leak {
                    row: row.truth.line,
                    message: k,
                    word: word.to_string(),
                });
            }
        }
    }
    let mut config = serde_json::json!({
        "builder": "code",
        "n": opts.n,
        "seed": opts.seed,
        "policy": opts.policy.name(),
        "classes": opts.classes.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
    });
    if !backdoor.is_null() {
        config["backdoor"] = backdoor;
    }
    Ok(BuiltDataset {
        family: CODE_FAMILY.to_string(),
        kind,
        seed: opts.seed,
        config,
        lexicon: Some(Lexicon::from_stems(CODE_FAMILY, &words)),
        personas: None,
        rows,
    })
}
