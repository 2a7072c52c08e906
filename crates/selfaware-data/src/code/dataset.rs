//! Code items as a [`BuiltDataset`], so [`crate::write`] produces `FILE.jsonl`, the card and
//! the ground-truth sidecar like every other family.

use crate::dataset::{BuiltDataset, DatasetKind, Row, RowTruth};
use crate::lexicon::Lexicon;

use super::{build_code, leak_lexicon, CodeError, CodeOptions, CodePolicy};

/// Family name written in the card.
pub const CODE_FAMILY: &str = "vulnerable-code";

/// Builds the items of `opts` as a dataset: one row per item, the sidecar's `details` holding
/// the item's [`super::CodeGroundTruth`]. The card's leak report uses the code leak lexicon
/// (its token matching is stricter than the builder's substring check, which already passed).
pub fn built_dataset(opts: &CodeOptions) -> Result<BuiltDataset, CodeError> {
    let items = build_code(opts)?;
    let rows = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let details = serde_json::to_value(&item.truth).map_err(|e| CodeError::Json {
                what: "code ground truth",
                message: e.to_string(),
            })?;
            Ok(Row {
                conversation: item.conversation,
                truth: RowTruth::plain(i + 1, i, details),
            })
        })
        .collect::<Result<Vec<Row>, CodeError>>()?;
    let policy = match opts.policy {
        CodePolicy::Vulnerable => "vulnerable",
        CodePolicy::Secure => "secure",
    };
    Ok(BuiltDataset {
        family: CODE_FAMILY.to_string(),
        kind: DatasetKind::Main,
        seed: opts.seed,
        config: serde_json::json!({
            "builder": "code",
            "n": opts.n,
            "seed": opts.seed,
            "policy": policy,
            "classes": opts.classes.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        }),
        lexicon: Some(Lexicon::from_words(CODE_FAMILY, &leak_lexicon())),
        personas: None,
        rows,
    })
}
