//! Chat templates (Jinja, as shipped with Hugging Face models), rendered with minijinja the way
//! `transformers`' `apply_chat_template` renders them: `trim_blocks` and `lstrip_blocks` on,
//! Python string methods available, `raise_exception` and `strftime_now` defined, and the special
//! tokens passed as variables.

use minijinja::{context, Environment, Error, ErrorKind, Value};
use selfaware_types::Message;

use crate::error::{ChatError, Result};

/// Most template instructions one rendering may run (minijinja's fuel): a chat template runs a
/// few dozen per message, so this allows conversations of a hundred thousand messages and stops
/// a template that loops without end.
pub const MAX_TEMPLATE_FUEL: u64 = 10_000_000;

/// Most bytes a rendering may add to the messages' own text: a template's fixed text (a default
/// system prompt, special tokens) is a few kilobytes; more is a template that multiplies text,
/// which the tokenizer would then spend minutes and gigabytes on.
pub const MAX_TEMPLATE_OWN_BYTES: usize = 1 << 20;

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    /// The template source, as found in the model's files.
    pub source: String,
    /// Where it came from (a path), for error messages.
    pub origin: String,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("origin", &self.origin)
            .finish()
    }
}

fn raise_exception(msg: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, msg))
}

impl ChatTemplate {
    /// Compiles `source`. `bos_token`/`eos_token` are the strings templates see as variables.
    pub fn new(source: &str, origin: &str, bos_token: &str, eos_token: &str) -> Result<Self> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(false);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_fuel(Some(MAX_TEMPLATE_FUEL));
        env.add_function("raise_exception", raise_exception);
        // Templates that print today's date get a fixed one: a prompt must not change with the
        // wall clock, or cached results and golden tests would drift.
        env.add_function("strftime_now", |_fmt: String| -> Value {
            Value::from("26 Jul 2024")
        });
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| ChatError::Template {
                origin: origin.to_string(),
                message: format!("{e:#}"),
            })?;
        Ok(ChatTemplate {
            env,
            source: source.to_string(),
            origin: origin.to_string(),
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
        })
    }

    /// Renders `messages`; with `add_generation_prompt` the text ends where the assistant's reply
    /// begins.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let msgs: Vec<Value> = messages
            .iter()
            .map(|m| context! { role => m.role.as_str(), content => m.content.as_str() })
            .collect();
        let tmpl = self.env.get_template("chat").map_err(|e| self.err(e))?;
        let text = tmpl
            .render(context! {
                messages => msgs,
                add_generation_prompt => add_generation_prompt,
                bos_token => self.bos_token.as_str(),
                eos_token => self.eos_token.as_str(),
                tools => Value::from(()),
                documents => Value::from(()),
            })
            .map_err(|e| self.err(e))?;
        // A template may repeat a message (a system prompt shown twice), so each message's text
        // counts four times before the template's own text is measured.
        let content: usize = messages.iter().map(|m| m.content.len()).sum();
        let allowed = content
            .saturating_mul(4)
            .saturating_add(MAX_TEMPLATE_OWN_BYTES);
        if text.len() > allowed {
            return Err(ChatError::Template {
                origin: self.origin.clone(),
                message: format!(
                    "the rendering is {} bytes for {} bytes of messages, more than \
                     {MAX_TEMPLATE_OWN_BYTES} bytes besides four times the messages' text",
                    text.len(),
                    content
                ),
            });
        }
        Ok(text)
    }

    fn err(&self, e: Error) -> ChatError {
        let mut message = e.to_string();
        if e.kind() == ErrorKind::OutOfFuel {
            message.push_str(&format!(
                " (the template ran more than {MAX_TEMPLATE_FUEL} instructions for one conversation)"
            ));
        }
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            message.push_str(&format!(": {s}"));
            src = s.source();
        }
        ChatError::Template {
            origin: self.origin.clone(),
            message,
        }
    }
}
