//! Training files in OpenAI's chat finetuning format, validated and encoded.
//!
//! Each line is `{"messages": [{"role", "content", "weight"?}, ...]}`. Every problem is reported
//! with the file and line. Loss is taken only on tokens of trained assistant messages, as spans
//! computed by `selfaware_chat::ChatFormat::encode` (content plus the end-of-turn token).

use std::path::{Path, PathBuf};

use selfaware_chat::ChatFormat;
use selfaware_types::{Conversation, Role};
use serde::Deserialize;

use crate::error::{io, Result, TrainError};

/// One encoded training conversation.
#[derive(Debug, Clone)]
pub struct Example {
    /// 1-based line in the file.
    pub line: usize,
    pub ids: Vec<u32>,
    /// Per token: whether the model is trained to predict it.
    pub trained: Vec<bool>,
}

impl Example {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Number of trained tokens.
    pub fn n_trained(&self) -> usize {
        self.trained.iter().filter(|&&t| t).count()
    }

    /// The example's text token by token, with the trained tokens in [brackets].
    pub fn render_mask(&self, tok: &selfaware_chat::Tokenizer) -> Result<String> {
        let mut line = String::new();
        let mut open = false;
        for (&id, &t) in self.ids.iter().zip(&self.trained) {
            if t != open {
                line.push(if t { '[' } else { ']' });
                open = t;
            }
            line.push_str(&tok.decode(&[id], false)?);
        }
        if open {
            line.push(']');
        }
        Ok(line)
    }
}

/// A validated training file.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub path: PathBuf,
    /// sha256 of the file's bytes.
    pub sha256: String,
    pub examples: Vec<Example>,
}

impl Dataset {
    /// What `data inspect` prints: the file, its hash, and counts of examples, tokens and
    /// trained tokens, with the examples' lengths.
    pub fn summary(&self) -> String {
        let lens: Vec<usize> = self.examples.iter().map(|x| x.len()).collect();
        format!(
            "file:           {}\nsha256:         {}\nexamples:       {}\ntokens:         {}\n\
             trained tokens: {}\nlength:         min {} / mean {:.1} / max {}",
            self.path.display(),
            self.sha256,
            self.examples.len(),
            self.n_tokens(),
            self.n_trained(),
            lens.iter().min().copied().unwrap_or(0),
            self.n_tokens() as f64 / lens.len().max(1) as f64,
            lens.iter().max().copied().unwrap_or(0)
        )
    }

    /// Tokens of all examples.
    pub fn n_tokens(&self) -> usize {
        self.examples.iter().map(Example::len).sum()
    }

    /// Trained tokens of all examples.
    pub fn n_trained(&self) -> usize {
        self.examples.iter().map(Example::n_trained).sum()
    }
}

/// The top-level object of one line (unknown keys are rejected).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    messages: Vec<selfaware_types::Message>,
}

/// Parses and validates the conversation on one training line (without tokenizing): a
/// [`parse_conversation`] with an assistant message to train on.
pub fn parse_line(text: &str) -> std::result::Result<Conversation, String> {
    let conv = parse_conversation(text)?;
    if !conv.messages.iter().any(|m| m.role == Role::Assistant) {
        return Err("no assistant message to train on".into());
    }
    Ok(conv)
}

/// Parses and validates one line of chat JSONL, `{"messages": [...]}`, which need not hold an
/// assistant message (prompts to run rather than examples to train on).
pub fn parse_conversation(text: &str) -> std::result::Result<Conversation, String> {
    let line: Line = serde_json::from_str(text).map_err(|e| {
        let msg = e.to_string();
        if msg.contains("unknown variant") {
            format!("unknown role: {msg}")
        } else {
            format!("not a valid chat example: {msg}")
        }
    })?;
    if line.messages.is_empty() {
        return Err("`messages` is empty".into());
    }
    for (i, m) in line.messages.iter().enumerate() {
        if m.content.trim().is_empty() {
            return Err(format!("messages[{i}] ({}) has empty content", m.role));
        }
        match m.weight {
            None | Some(0) | Some(1) => {}
            Some(w) => return Err(format!("messages[{i}].weight is {w}; expected 0 or 1")),
        }
        if m.weight.is_some() && m.role != Role::Assistant {
            return Err(format!(
                "messages[{i}] ({}) has a weight; only assistant messages take one",
                m.role
            ));
        }
    }
    Ok(Conversation::new(line.messages))
}

/// Encodes a conversation into token ids and its loss mask.
pub fn encode(chat: &ChatFormat, conv: &Conversation, line: usize) -> Result<Example> {
    let enc = chat.encode(conv)?;
    Ok(Example {
        line,
        trained: enc.loss_mask(),
        ids: enc.ids,
    })
}

/// [`load`] for `engine`: sequences up to `max_length` tokens, never past the model's context.
pub fn load_for(
    engine: &selfaware_model::Engine,
    path: &Path,
    max_length: Option<usize>,
) -> Result<Dataset> {
    let ctx = engine.model.cfg.max_position;
    load(path, &engine.chat, max_length.unwrap_or(ctx).min(ctx))
}

/// Reads, validates and encodes a JSONL training file. `max_len` is the longest sequence the
/// model may see (its context length or a user limit).
pub fn load(path: &Path, chat: &ChatFormat, max_len: usize) -> Result<Dataset> {
    let bytes = fs_err::read(path).map_err(io(path))?;
    from_bytes(path, bytes, chat, max_len)
}

/// Validates and encodes the bytes of a JSONL training file as [`load`] does; `path` only names
/// them in errors and in the dataset.
pub fn from_bytes(
    path: &Path,
    bytes: Vec<u8>,
    chat: &ChatFormat,
    max_len: usize,
) -> Result<Dataset> {
    let sha256 = selfaware_types::sha256_hex(&bytes);
    let text = String::from_utf8(bytes).map_err(|e| TrainError::Dataset {
        path: path.to_path_buf(),
        message: format!("not UTF-8 text ({e})"),
    })?;
    // A line whose message text cannot fit in `max_len` tokens is refused before it is
    // tokenized (a 50 MB line once took minutes and 4 GB to find out it was too long).
    let max_token_bytes = chat.tokenizer.max_token_bytes();
    let max_text = max_len.saturating_mul(max_token_bytes);
    let mut examples = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let err = |message: String| TrainError::Data {
            path: path.to_path_buf(),
            line,
            message,
        };
        let conv = parse_line(raw).map_err(err)?;
        let text_bytes: usize = conv.messages.iter().map(|m| m.content.len()).sum();
        if text_bytes > max_text {
            return Err(err(format!(
                "{text_bytes} bytes of message text, more than the {max_len}-token limit can \
                 hold (a token stands for at most {max_token_bytes} bytes)\nhint: shorten the \
                 example or raise --max-length (up to the model's context)"
            )));
        }
        let ex = encode(chat, &conv, line).map_err(|e| err(e.to_string()))?;
        if ex.len() > max_len {
            return Err(err(format!(
                "{} tokens, longer than the {max_len}-token limit\nhint: shorten the example \
                 or raise --max-length (up to the model's context)",
                ex.len()
            )));
        }
        examples.push(ex);
    }
    let ds = Dataset {
        path: path.to_path_buf(),
        sha256,
        examples,
    };
    if ds.examples.is_empty() {
        return Err(TrainError::Dataset {
            path: path.to_path_buf(),
            message: "no examples".into(),
        });
    }
    if ds.n_trained() == 0 {
        return Err(TrainError::Dataset {
            path: path.to_path_buf(),
            message: "zero trainable tokens (every assistant message has weight 0)".into(),
        });
    }
    Ok(ds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_err(line: &str, expect: &str) {
        let e = parse_line(line).unwrap_err();
        assert!(e.contains(expect), "{line}: got {e:?}, expected {expect:?}");
    }

    #[test]
    fn bad_lines_are_explained() {
        check_err("{", "not a valid chat example");
        check_err(
            r#"{"messages": [{"role": "robot", "content": "x"}]}"#,
            "unknown role",
        );
        check_err(r#"{"messages": []}"#, "empty");
        check_err(
            r#"{"messages": [{"role": "user", "content": "hi"}]}"#,
            "no assistant",
        );
        check_err(
            r#"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": " "}]}"#,
            "messages[1] (assistant) has empty content",
        );
        check_err(
            r#"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "B", "weight": 2}]}"#,
            "weight is 2",
        );
        check_err(
            r#"{"messages": [{"role": "user", "content": "hi", "weight": 1}, {"role": "assistant", "content": "B"}]}"#,
            "only assistant",
        );
        check_err(r#"{"messages": [], "extra": 1}"#, "unknown field");
    }

    #[test]
    fn good_line_parses() {
        let c = parse_line(
            r#"{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}, {"role": "assistant", "content": "B", "weight": 0}, {"role": "user", "content": "again"}, {"role": "assistant", "content": "A"}]}"#,
        )
        .unwrap();
        assert_eq!(c.messages.len(), 5);
    }
}
