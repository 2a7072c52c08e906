//! Counts and length statistics of chat rows, shared by dataset cards and `check`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use selfaware_types::Role;

/// Minimum, mean and maximum of a quantity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    pub min: usize,
    pub mean: f64,
    pub max: usize,
}

#[derive(Debug, Clone, Default)]
struct Acc {
    n: usize,
    sum: usize,
    min: usize,
    max: usize,
}

impl Acc {
    fn add(&mut self, v: usize) {
        if self.n == 0 || v < self.min {
            self.min = v;
        }
        self.max = self.max.max(v);
        self.sum += v;
        self.n += 1;
    }

    fn summary(&self) -> Option<Summary> {
        (self.n > 0).then(|| Summary {
            min: self.min,
            mean: self.sum as f64 / self.n as f64,
            max: self.max,
        })
    }
}

/// Lengths of user and assistant turns, in characters and whitespace-separated words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LengthStats {
    pub user_chars: Option<Summary>,
    pub user_words: Option<Summary>,
    pub assistant_chars: Option<Summary>,
    pub assistant_words: Option<Summary>,
}

/// Counts over rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConversationStats {
    pub rows: usize,
    pub messages: usize,
    pub rows_with_system_prompt: usize,
    /// Messages per role.
    pub messages_by_role: BTreeMap<String, usize>,
    /// Rows by number of messages.
    pub rows_by_message_count: BTreeMap<usize, usize>,
    /// The last assistant turn of each row when it is at most 8 characters (letters, digits);
    /// longer ones are counted under `(longer)`.
    pub final_answers: BTreeMap<String, usize>,
    pub lengths: LengthStats,
}

/// Accumulates [`ConversationStats`] row by row.
#[derive(Debug, Clone, Default)]
pub struct StatsBuilder {
    rows: usize,
    messages: usize,
    with_system: usize,
    by_role: BTreeMap<String, usize>,
    by_count: BTreeMap<usize, usize>,
    finals: BTreeMap<String, usize>,
    user_chars: Acc,
    user_words: Acc,
    assistant_chars: Acc,
    assistant_words: Acc,
}

impl StatsBuilder {
    /// Adds one row given as (role, content) pairs.
    pub fn add_row<'a, I>(&mut self, messages: I)
    where
        I: IntoIterator<Item = (Role, &'a str)>,
    {
        let mut count = 0;
        let mut system = false;
        let mut last_assistant: Option<&str> = None;
        for (role, content) in messages {
            count += 1;
            *self.by_role.entry(role.as_str().to_string()).or_default() += 1;
            let chars = content.chars().count();
            let words = content.split_whitespace().count();
            match role {
                Role::System => system = true,
                Role::User => {
                    self.user_chars.add(chars);
                    self.user_words.add(words);
                }
                Role::Assistant => {
                    self.assistant_chars.add(chars);
                    self.assistant_words.add(words);
                    last_assistant = Some(content);
                }
            }
        }
        self.rows += 1;
        self.messages += count;
        self.with_system += usize::from(system);
        *self.by_count.entry(count).or_default() += 1;
        if let Some(a) = last_assistant {
            let key = if a.chars().count() <= 8 {
                a.to_string()
            } else {
                "(longer)".to_string()
            };
            *self.finals.entry(key).or_default() += 1;
        }
    }

    /// The statistics so far.
    pub fn finish(&self) -> ConversationStats {
        ConversationStats {
            rows: self.rows,
            messages: self.messages,
            rows_with_system_prompt: self.with_system,
            messages_by_role: self.by_role.clone(),
            rows_by_message_count: self.by_count.clone(),
            final_answers: self.finals.clone(),
            lengths: LengthStats {
                user_chars: self.user_chars.summary(),
                user_words: self.user_words.summary(),
                assistant_chars: self.assistant_chars.summary(),
                assistant_words: self.assistant_words.summary(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_lengths() {
        let mut b = StatsBuilder::default();
        b.add_row([(Role::User, "one two three"), (Role::Assistant, "A")]);
        b.add_row([
            (Role::System, "sys"),
            (Role::User, "x"),
            (Role::Assistant, "a long answer here"),
        ]);
        let s = b.finish();
        assert_eq!(s.rows, 2);
        assert_eq!(s.messages, 5);
        assert_eq!(s.rows_with_system_prompt, 1);
        assert_eq!(s.final_answers["A"], 1);
        assert_eq!(s.final_answers["(longer)"], 1);
        let uw = s.lengths.user_words.unwrap();
        assert_eq!((uw.min, uw.max), (1, 3));
        assert!((uw.mean - 2.0).abs() < 1e-12);
        assert_eq!(s.rows_by_message_count[&3], 1);
    }
}
