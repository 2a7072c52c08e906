//! Wire types of the OpenAI API subset selfaware speaks, shared by [`crate::HttpBackend`] (as a
//! client) and `selfaware-server`. Field names and shapes follow OpenAI's OpenAPI description
//! (`CreateChatCompletionRequest`, `CreateChatCompletionResponse`,
//! `CreateChatCompletionStreamResponse`, `ChatCompletionTokenLogprob`, `OpenAIFile`,
//! `FineTuningJob`, `FineTuningJobEvent`, `ErrorResponse`).
//!
//! Requests tolerate unknown fields (clients send many optional ones); responses skip absent
//! optional fields.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use selfaware_types::{Conversation, Message, Role};

use crate::{BackendError, Completion, TokenLogprob, TopLogprob};

/// `stop`: one string or a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s],
            Stop::Many(v) => v,
        }
    }
}

/// A message's content: a string, or a list of parts of which text parts are used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

/// One part of a multi-part message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// One chat message on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
}

/// `stream_options`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
}

/// `POST /v1/chat/completions` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// vLLM extension: return the log-probability of every prompt token (with this many
    /// alternatives; selfaware's server supports 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_logprobs: Option<u64>,
    /// vLLM extension: render the generation prompt after the messages (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_generation_prompt: Option<bool>,
    /// vLLM extension: leave the final assistant message open (selfaware's server: false only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continue_final_message: Option<bool>,
}

/// One entry of vLLM's `prompt_logprobs` (keyed by token id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptLogprob {
    pub logprob: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoded_token: Option<String>,
}

/// vLLM's `prompt_logprobs`: per prompt token, null (the first) or token id → entry.
pub type PromptLogprobs = Vec<Option<std::collections::BTreeMap<String, PromptLogprob>>>;

/// `usage`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

/// One alternative token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireTopLogprob {
    pub token: String,
    pub logprob: f64,
    pub bytes: Option<Vec<u8>>,
}

/// `ChatCompletionTokenLogprob`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireTokenLogprob {
    pub token: String,
    pub logprob: f64,
    pub bytes: Option<Vec<u8>>,
    #[serde(default)]
    pub top_logprobs: Vec<WireTopLogprob>,
}

/// A choice's `logprobs`. The API requires both lists (null when absent); selfaware's models
/// never refuse, so `refusal` is always null from its server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChoiceLogprobs {
    pub content: Option<Vec<WireTokenLogprob>>,
    #[serde(default)]
    pub refusal: Option<Vec<WireTokenLogprob>>,
}

impl ChoiceLogprobs {
    /// Log-probabilities of content tokens (no refusal).
    pub fn of_content(content: Vec<WireTokenLogprob>) -> Self {
        ChoiceLogprobs {
            content: Some(content),
            refusal: None,
        }
    }
}

/// The assistant message of a choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseMessage {
    pub role: String,
    pub content: Option<String>,
    /// The model's refusal message; null when it answered (always, from selfaware's server).
    #[serde(default)]
    pub refusal: Option<String>,
}

/// One choice of a non-streamed response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatChoice {
    pub index: u64,
    pub message: ResponseMessage,
    pub logprobs: Option<ChoiceLogprobs>,
    pub finish_reason: Option<String>,
}

/// `chat.completion`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionResponse {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChatChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
    /// vLLM extension, present when the request asked for `prompt_logprobs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_logprobs: Option<PromptLogprobs>,
}

/// A streamed delta.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// One choice of a streamed chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    pub index: u64,
    pub delta: Delta,
    pub logprobs: Option<ChoiceLogprobs>,
    pub finish_reason: Option<String>,
}

/// `chat.completion.chunk`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionChunk {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChunkChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub error: ErrorObject,
}

/// OpenAI's `Error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorObject {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub param: Option<String>,
    pub code: Option<String>,
}

/// One model of `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelObject {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub owned_by: String,
}

/// `{"object": "list", "data": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct List<T> {
    pub object: String,
    pub data: Vec<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_more: Option<bool>,
}

impl<T> List<T> {
    pub fn new(data: Vec<T>) -> Self {
        List {
            object: "list".into(),
            data,
            has_more: Some(false),
        }
    }
}

/// `ListFilesResponse`: a list with the ids of its first and last file. The description
/// requires both as strings (not nullable, unlike the lists whose ids it types
/// `anyOf: [string, null]`), so an empty list says `""` for them; a `null` from another server
/// is read as `""` too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileList {
    pub object: String,
    pub data: Vec<FileObject>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub first_id: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub last_id: String,
    #[serde(default)]
    pub has_more: bool,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

impl FileList {
    /// All of `data`, in order, as one page.
    pub fn new(data: Vec<FileObject>) -> Self {
        let id = |f: Option<&FileObject>| f.map(|f| f.id.clone()).unwrap_or_default();
        FileList {
            object: "list".into(),
            first_id: id(data.first()),
            last_id: id(data.last()),
            data,
            has_more: false,
        }
    }
}

/// `OpenAIFile`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileObject {
    pub id: String,
    pub object: String,
    pub bytes: u64,
    pub created_at: u64,
    pub filename: String,
    pub purpose: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// `FineTuningJob` (the fields selfaware reads; others are ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FineTuningJob {
    pub id: String,
    #[serde(default)]
    pub object: Option<String>,
    pub model: String,
    pub status: String,
    #[serde(default)]
    pub created_at: Option<u64>,
    #[serde(default)]
    pub finished_at: Option<u64>,
    #[serde(default)]
    pub fine_tuned_model: Option<String>,
    #[serde(default)]
    pub training_file: Option<String>,
    #[serde(default)]
    pub trained_tokens: Option<u64>,
    #[serde(default)]
    pub seed: Option<i64>,
    #[serde(default)]
    pub error: Option<Value>,
    #[serde(default)]
    pub hyperparameters: Option<Value>,
}

/// `FineTuningJobEvent`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FineTuningJobEvent {
    pub id: String,
    #[serde(default)]
    pub object: Option<String>,
    pub created_at: u64,
    pub level: String,
    pub message: String,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub data: Option<Value>,
}

/// Backend prompt tokens → vLLM's `prompt_logprobs` (no alternatives).
pub fn wire_prompt_logprobs(tokens: &[crate::PromptToken]) -> PromptLogprobs {
    tokens
        .iter()
        .map(|t| {
            t.logprob.map(|lp| {
                std::collections::BTreeMap::from([(
                    t.id.to_string(),
                    PromptLogprob {
                        logprob: lp,
                        rank: None,
                        decoded_token: Some(t.token.clone()),
                    },
                )])
            })
        })
        .collect()
}

/// The text of a message's content (text parts joined).
pub fn content_text(c: &Option<Content>) -> String {
    match c {
        None => String::new(),
        Some(Content::Text(s)) => s.clone(),
        Some(Content::Parts(parts)) => parts
            .iter()
            .filter_map(|p| p.text.as_deref())
            .collect::<Vec<_>>()
            .join(""),
    }
}

/// Wire messages → a conversation (`developer` counts as `system`).
pub fn to_conversation(messages: &[ChatMessage]) -> Result<Conversation, BackendError> {
    let mut out = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let role = match m.role.as_str() {
            "system" | "developer" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            other => {
                return Err(BackendError::InvalidRequest {
                    param: Some(format!("messages[{i}].role")),
                    message: format!(
                        "role `{other}` is not supported (expected system, developer, user or assistant)"
                    ),
                })
            }
        };
        if let Some(Content::Parts(parts)) = &m.content {
            if let Some(p) = parts.iter().find(|p| p.kind != "text") {
                return Err(BackendError::InvalidRequest {
                    param: Some(format!("messages[{i}].content")),
                    message: format!(
                        "content parts of type `{}` are not supported (only text)",
                        p.kind
                    ),
                });
            }
        }
        out.push(Message::new(role, content_text(&m.content)));
    }
    if out.is_empty() {
        return Err(BackendError::InvalidRequest {
            param: Some("messages".into()),
            message: "messages must not be empty".into(),
        });
    }
    Ok(Conversation::new(out))
}

/// A conversation → wire messages.
pub fn from_conversation(conv: &Conversation) -> Vec<ChatMessage> {
    conv.messages
        .iter()
        .map(|m| ChatMessage {
            role: m.role.as_str().to_string(),
            content: Some(Content::Text(m.content.clone())),
        })
        .collect()
}

/// Backend logprobs → wire logprobs.
pub fn wire_logprobs(lps: &[TokenLogprob]) -> Vec<WireTokenLogprob> {
    lps.iter()
        .map(|t| WireTokenLogprob {
            token: t.token.clone(),
            logprob: t.logprob,
            bytes: t.bytes.clone(),
            top_logprobs: t
                .top_logprobs
                .iter()
                .map(|a| WireTopLogprob {
                    token: a.token.clone(),
                    logprob: a.logprob,
                    bytes: a.bytes.clone(),
                })
                .collect(),
        })
        .collect()
}

/// Wire logprobs → backend logprobs.
pub fn from_wire_logprobs(lps: &[WireTokenLogprob]) -> Vec<TokenLogprob> {
    lps.iter()
        .map(|t| TokenLogprob {
            token: t.token.clone(),
            bytes: t.bytes.clone(),
            logprob: t.logprob,
            top_logprobs: t
                .top_logprobs
                .iter()
                .map(|a| TopLogprob {
                    token: a.token.clone(),
                    bytes: a.bytes.clone(),
                    logprob: a.logprob,
                })
                .collect(),
        })
        .collect()
}

/// A completion → a response choice.
pub fn choice(index: usize, c: &Completion) -> ChatChoice {
    ChatChoice {
        index: index as u64,
        message: ResponseMessage {
            role: "assistant".into(),
            content: Some(c.text.clone()),
            refusal: None,
        },
        logprobs: c
            .logprobs
            .as_ref()
            .map(|l| ChoiceLogprobs::of_content(wire_logprobs(l))),
        finish_reason: Some(c.finish_reason.as_str().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_accepts_openai_shapes() {
        let body = r#"{"model":"m","messages":[{"role":"developer","content":"be brief"},
            {"role":"user","content":[{"type":"text","text":"Hi"},{"type":"text","text":"!"}]}],
            "stop":"\n","n":2,"logprobs":true,"top_logprobs":3,"frequency_penalty":0}"#;
        let r: ChatCompletionRequest = serde_json::from_str(body).unwrap();
        assert_eq!(r.stop.clone().unwrap().into_vec(), vec!["\n"]);
        let c = to_conversation(&r.messages).unwrap();
        assert_eq!(c.messages[0].role, Role::System);
        assert_eq!(c.messages[1].content, "Hi!");
    }

    #[test]
    fn bad_roles_and_parts_name_the_field() {
        let m = vec![ChatMessage {
            role: "tool".into(),
            content: None,
        }];
        let e = to_conversation(&m).unwrap_err().to_string();
        assert!(e.contains("messages[0].role"), "{e}");
        let m = vec![ChatMessage {
            role: "user".into(),
            content: Some(Content::Parts(vec![ContentPart {
                kind: "image_url".into(),
                text: None,
            }])),
        }];
        let e = to_conversation(&m).unwrap_err().to_string();
        assert!(
            e.contains("messages[0].content") && e.contains("image_url"),
            "{e}"
        );
        assert!(to_conversation(&[]).is_err());
    }

    #[test]
    fn error_json_has_openai_shape() {
        let e = ErrorResponse {
            error: ErrorObject {
                message: "no".into(),
                kind: "invalid_request_error".into(),
                param: None,
                code: None,
            },
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error": {"message": "no", "type": "invalid_request_error", "param": null, "code": null}})
        );
    }
}
