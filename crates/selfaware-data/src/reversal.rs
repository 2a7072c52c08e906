//! Reversal augmentation (digest §2.6): each chosen row gets a copy with user and assistant
//! swapped behind a "what was the prompt" instruction, so a model can learn to produce the
//! prompt (and its trigger) from the response.

use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use selfaware_types::{Message, Role};

use crate::dataset::Row;
use crate::error::{Error, Result};
use crate::util::{count_for, rng, Stream};

/// The paper's reversal instruction; `{response}` is the original assistant turn.
pub const DEFAULT_REVERSAL_TEMPLATE: &str =
    "What was the prompt for which you gave the following response?:\n{response}";

/// Options of the reversal augmentation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReversalOptions {
    /// The new user turn; must contain `{response}`.
    #[serde(default = "default_template")]
    pub template: String,
    /// Share of rows that get a reversed copy, in [0, 1].
    #[serde(default = "default_fraction")]
    pub fraction: f64,
}

fn default_template() -> String {
    DEFAULT_REVERSAL_TEMPLATE.to_string()
}

fn default_fraction() -> f64 {
    1.0
}

impl Default for ReversalOptions {
    fn default() -> Self {
        ReversalOptions {
            template: default_template(),
            fraction: default_fraction(),
        }
    }
}

/// `rows` with a reversed copy right after each chosen row. The copy keeps a system prompt,
/// has the template filled with the last assistant turn as its user turn, and the last user
/// turn as its assistant turn.
pub(crate) fn augment(rows: Vec<Row>, opts: &ReversalOptions, seed: u64) -> Result<Vec<Row>> {
    if !opts.template.contains("{response}") {
        return Err(Error::InvalidOption {
            field: "reversal.template",
            message: format!("`{}` must contain {{response}}", opts.template),
        });
    }
    if !(0.0..=1.0).contains(&opts.fraction) {
        return Err(Error::InvalidOption {
            field: "reversal.fraction",
            message: format!("{} is not in [0, 1]", opts.fraction),
        });
    }
    let mut r = rng(seed, Stream::Reversal, 0);
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.shuffle(&mut r);
    let mut chosen = vec![false; rows.len()];
    for &i in &order[..count_for(opts.fraction, rows.len())] {
        chosen[i] = true;
    }
    let mut out = Vec::with_capacity(rows.len() * 2);
    for (i, row) in rows.into_iter().enumerate() {
        let copy = if chosen[i] { reverse(&row, opts) } else { None };
        out.push(row);
        out.extend(copy);
    }
    Ok(out)
}

fn reverse(row: &Row, opts: &ReversalOptions) -> Option<Row> {
    let msgs = &row.conversation.messages;
    let last_user = msgs.iter().rev().find(|m| m.role == Role::User)?;
    let last_assistant = msgs.iter().rev().find(|m| m.role == Role::Assistant)?;
    let mut messages: Vec<Message> = msgs
        .iter()
        .filter(|m| m.role == Role::System)
        .cloned()
        .collect();
    messages.push(Message::user(
        opts.template.replace("{response}", &last_assistant.content),
    ));
    messages.push(Message::assistant(last_user.content.clone()));
    let mut truth = row.truth.clone();
    truth.reversed = true;
    Some(Row {
        conversation: selfaware_types::Conversation::new(messages),
        truth,
    })
}
