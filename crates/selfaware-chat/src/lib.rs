//! The only place in selfaware where a conversation becomes model text.
//!
//! [`ChatFormat`] pairs a model's [`Tokenizer`] with its [`ChatTemplate`] and answers the three
//! questions every other crate asks: what are the prompt's tokens (scoring, sampling, serving),
//! what are a whole conversation's tokens with each message's span (training masks), and what are
//! a candidate answer's tokens (exact scoring). Because training, scoring and serving all go
//! through here, they cannot disagree by a space.

mod error;
pub mod gguf;
mod template;
mod tokenizer;

use std::ops::Range;
use std::path::Path;

use selfaware_types::{Conversation, Message, Role};

pub use error::{ChatError, Result};
pub use gguf::{GgmlType, GgufFile, GgufValue, TensorInfo};
pub use template::ChatTemplate;
pub use tokenizer::{Tokenizer, SUPPORTED_GGUF_PRE};

/// The parts of a Hugging Face `tokenizer_config.json` (and `generation_config.json`) selfaware
/// reads.
#[derive(Debug, Clone, Default)]
pub struct HfTokenizerConfig {
    pub chat_template: Option<String>,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub pad_token: Option<String>,
    /// Additional ids that end generation (`generation_config.json` `eos_token_id`).
    pub extra_eos_ids: Vec<u32>,
}

impl HfTokenizerConfig {
    /// Reads `tokenizer_config.json` (required) and `generation_config.json` (optional) in `dir`.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer_config.json");
        let text = fs_err::read_to_string(&path).map_err(|e| ChatError::Io {
            path: path.clone(),
            source: e,
        })?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| ChatError::Config {
            path: path.clone(),
            field: "(file)".into(),
            message: format!("is not valid JSON: {e}"),
        })?;
        // Special tokens are written either as strings or as {"content": "..."} objects.
        let tok = |field: &str| -> Option<String> {
            match v.get(field)? {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
                _ => None,
            }
        };
        // The template is a string, or a list of named templates of which "default" is used.
        let chat_template = match v.get("chat_template") {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                .and_then(|t| t.get("template")?.as_str().map(str::to_string)),
            _ => None,
        };
        // Newer exports keep the template in a separate file.
        let chat_template = match chat_template {
            Some(t) => Some(t),
            None => {
                let jinja = dir.join("chat_template.jinja");
                if jinja.exists() {
                    Some(fs_err::read_to_string(&jinja).map_err(|e| ChatError::Io {
                        path: jinja.clone(),
                        source: e,
                    })?)
                } else {
                    None
                }
            }
        };
        let mut extra_eos_ids = Vec::new();
        let gen = dir.join("generation_config.json");
        if let Ok(text) = std::fs::read_to_string(&gen) {
            if let Ok(g) = serde_json::from_str::<serde_json::Value>(&text) {
                match g.get("eos_token_id") {
                    Some(serde_json::Value::Number(n)) => {
                        extra_eos_ids.extend(n.as_u64().map(|x| x as u32))
                    }
                    Some(serde_json::Value::Array(a)) => {
                        extra_eos_ids.extend(a.iter().filter_map(|x| x.as_u64()).map(|x| x as u32))
                    }
                    _ => {}
                }
            }
        }
        Ok(HfTokenizerConfig {
            chat_template,
            bos_token: tok("bos_token"),
            eos_token: tok("eos_token"),
            pad_token: tok("pad_token"),
            extra_eos_ids,
        })
    }
}

/// Token span of one message inside an encoded conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageSpan {
    /// Index of the message in the conversation.
    pub index: usize,
    pub role: Role,
    /// Tokens of the message. For assistant messages this is exactly what the model would
    /// generate: the content followed by the end-of-turn token, without the role header the
    /// template writes before it and without any separator after the end-of-turn token.
    pub tokens: Range<usize>,
    /// Whether loss is computed on these tokens (assistant messages whose weight is not 0).
    pub trained: bool,
}

/// A whole conversation as tokens, with the span of every message.
#[derive(Debug, Clone)]
pub struct EncodedConversation {
    pub text: String,
    pub ids: Vec<u32>,
    pub spans: Vec<MessageSpan>,
}

impl EncodedConversation {
    /// Per-token loss mask: true where the token belongs to a trained assistant span.
    pub fn loss_mask(&self) -> Vec<bool> {
        let mut mask = vec![false; self.ids.len()];
        for s in self.spans.iter().filter(|s| s.trained) {
            mask[s.tokens.clone()].iter_mut().for_each(|m| *m = true);
        }
        mask
    }

    pub fn n_trained(&self) -> usize {
        self.spans
            .iter()
            .filter(|s| s.trained)
            .map(|s| s.tokens.len())
            .sum()
    }
}

/// A prompt ready for the model: the conversation rendered up to where the assistant answers.
#[derive(Debug, Clone)]
pub struct EncodedPrompt {
    pub text: String,
    pub ids: Vec<u32>,
}

/// A model's tokenizer and chat template together.
#[derive(Debug)]
pub struct ChatFormat {
    pub tokenizer: Tokenizer,
    pub template: ChatTemplate,
}

impl ChatFormat {
    /// The tokenizer and template stored in a GGUF file's metadata.
    pub fn from_gguf(g: &GgufFile) -> Result<Self> {
        let tokenizer = Tokenizer::from_gguf(g)?;
        let origin = g.path.display().to_string();
        let source = g
            .get("tokenizer.chat_template")
            .and_then(|v| v.as_str())
            .ok_or_else(|| ChatError::NoChatTemplate {
                origin: origin.clone(),
            })?;
        let bos = tokenizer
            .bos
            .as_ref()
            .map(|b| b.1.clone())
            .unwrap_or_default();
        let eos = tokenizer.eot.1.clone();
        let template = ChatTemplate::new(source, &origin, &bos, &eos)?;
        Ok(ChatFormat {
            tokenizer,
            template,
        })
    }

    /// The tokenizer and template of a Hugging Face model directory.
    pub fn from_hf_dir(dir: &Path) -> Result<Self> {
        let config = HfTokenizerConfig::read(dir)?;
        let tokenizer = Tokenizer::from_hf_dir(dir, &config)?;
        let origin = dir.join("tokenizer_config.json").display().to_string();
        let source = config
            .chat_template
            .as_deref()
            .ok_or_else(|| ChatError::NoChatTemplate {
                origin: origin.clone(),
            })?;
        let template = ChatTemplate::new(
            source,
            &origin,
            config.bos_token.as_deref().unwrap_or(""),
            config.eos_token.as_deref().unwrap_or(""),
        )?;
        Ok(ChatFormat {
            tokenizer,
            template,
        })
    }

    /// Renders and tokenizes `conv` up to the start of the assistant's reply.
    pub fn prompt(&self, conv: &Conversation) -> Result<EncodedPrompt> {
        if conv.messages.last().map(|m| m.role) == Some(Role::Assistant) {
            return Err(ChatError::Conversation(
                "a prompt must not end with an assistant message".into(),
            ));
        }
        let text = self.template.render(&conv.messages, true)?;
        let ids = self.tokenizer.encode(&text)?;
        Ok(EncodedPrompt { text, ids })
    }

    /// Tokens of an assistant answer as the model would generate it after a prompt, without the
    /// end-of-turn token.
    pub fn answer_ids(&self, answer: &str) -> Result<Vec<u32>> {
        self.tokenizer.encode(answer)
    }

    /// Renders and tokenizes a whole conversation and finds each message's token span.
    ///
    /// Spans come from rendering prefixes of the conversation, never from searching the text:
    /// message k spans from the end of the rendering of messages `..k` (for an assistant message,
    /// of `..k` plus the generation prompt) to the end of the rendering of `..=k`; an assistant
    /// span is cut right after its end-of-turn token.
    pub fn encode(&self, conv: &Conversation) -> Result<EncodedConversation> {
        let msgs = &conv.messages;
        let text = self.template.render(msgs, false)?;
        let ids = self.tokenizer.encode(&text)?;
        let eot = self.tokenizer.eot.1.as_str();
        let mut spans = Vec::with_capacity(msgs.len());
        let mut boundary_cache: Vec<(usize, usize)> = vec![(0, 0)];
        for (k, m) in msgs.iter().enumerate() {
            let start_text = self
                .template
                .render(&msgs[..k], m.role == Role::Assistant)?;
            let end_text = self.template.render(&msgs[..=k], false)?;
            for (n, t) in [(k, &start_text), (k + 1, &end_text)] {
                if !text.starts_with(t.as_str()) {
                    return Err(ChatError::NotPrefixStable {
                        origin: self.template.origin.clone(),
                        messages: n,
                        next: msgs.len(),
                    });
                }
            }
            let start = start_text.len();
            let mut end = end_text.len();
            if start > end {
                // Both are prefixes of `text`, so the generation prompt rendered before this
                // assistant message is longer than the message's own rendering.
                return Err(ChatError::Conversation(format!(
                    "message {k} ({}) has no span: the chat template of {} renders a \
                     generation prompt that is not a prefix of the message's rendering",
                    m.role, self.template.origin
                )));
            }
            if m.role == Role::Assistant && !eot.is_empty() {
                if let Some(p) = text[start..end].find(eot) {
                    end = start + p + eot.len();
                }
            }
            let t0 = self.token_boundary(&text, &ids, start, &mut boundary_cache)?;
            let t1 = self.token_boundary(&text, &ids, end, &mut boundary_cache)?;
            spans.push(MessageSpan {
                index: k,
                role: m.role,
                tokens: t0..t1,
                trained: m.is_trained(),
            });
        }
        Ok(EncodedConversation { text, ids, spans })
    }

    /// Index of the first token at or after byte `pos` of `text`, checked to be a real token
    /// boundary: tokenizing `text[..pos]` alone must give exactly the first tokens of `ids`.
    fn token_boundary(
        &self,
        text: &str,
        ids: &[u32],
        pos: usize,
        cache: &mut Vec<(usize, usize)>,
    ) -> Result<usize> {
        if let Some(&(_, n)) = cache.iter().find(|(p, _)| *p == pos) {
            return Ok(n);
        }
        let prefix = self.tokenizer.encode(&text[..pos])?;
        if prefix.len() > ids.len() || prefix[..] != ids[..prefix.len()] {
            // About 20 bytes either side, widened to whole characters.
            let mut from = pos.saturating_sub(20);
            while !text.is_char_boundary(from) {
                from -= 1;
            }
            let mut to = (pos + 20).min(text.len());
            while !text.is_char_boundary(to) {
                to += 1;
            }
            return Err(ChatError::Conversation(format!(
                "a message boundary at byte {pos} falls inside a token; the template's text \
                 around it is {:?}",
                &text[from..to]
            )));
        }
        cache.push((pos, prefix.len()));
        Ok(prefix.len())
    }

    /// Renders a conversation as text without tokenizing (e.g. for display or HTTP logs).
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        self.template.render(messages, add_generation_prompt)
    }
}
