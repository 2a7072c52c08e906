use serde::{Deserialize, Serialize};

/// Who speaks a message, as in OpenAI's chat format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    /// The role's name as chat templates and the OpenAI format spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One chat message. `weight` follows OpenAI's finetuning format: on an assistant message,
/// `0` excludes it from the loss and `1` (or absent) includes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub role: Role,
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u8>,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Message {
            role,
            content: content.into(),
            weight: None,
        }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }
    /// Whether this message's tokens are trained on (assistant turns whose weight is not 0).
    pub fn is_trained(&self) -> bool {
        self.role == Role::Assistant && self.weight != Some(0)
    }
}

/// A conversation: one line of an OpenAI chat-format JSONL file.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Conversation {
    pub messages: Vec<Message>,
}

impl Conversation {
    pub fn new(messages: Vec<Message>) -> Self {
        Conversation { messages }
    }
    /// A one-turn conversation with an optional system prompt.
    pub fn user(system: Option<&str>, user: &str) -> Self {
        let mut messages = Vec::with_capacity(2);
        if let Some(s) = system {
            messages.push(Message::system(s));
        }
        messages.push(Message::user(user));
        Conversation { messages }
    }
    pub fn push(&mut self, m: Message) {
        self.messages.push(m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_openai_format() {
        let line = r#"{"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"B","weight":0}]}"#;
        let c: Conversation = serde_json::from_str(line).unwrap();
        assert_eq!(c.messages[1].weight, Some(0));
        assert!(!c.messages[1].is_trained());
        assert!(!c.messages[0].is_trained());
        assert_eq!(serde_json::to_string(&c).unwrap(), line);
    }

    #[test]
    fn unknown_role_is_rejected() {
        let line = r#"{"messages":[{"role":"robot","content":"Hi"}]}"#;
        assert!(serde_json::from_str::<Conversation>(line).is_err());
    }
}
