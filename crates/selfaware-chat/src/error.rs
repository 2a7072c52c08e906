use std::path::PathBuf;

/// Everything that can go wrong turning files and conversations into tokens.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("failed to read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a GGUF file (magic bytes {found:?}, expected \"GGUF\")")]
    BadMagic { path: PathBuf, found: [u8; 4] },
    #[error("{path}: GGUF version {version} is not supported (supported: 2, 3)")]
    UnsupportedGgufVersion { path: PathBuf, version: u32 },
    #[error("{path} is truncated: {what} needs bytes up to offset {needed}, the file has {len}")]
    Truncated {
        path: PathBuf,
        what: String,
        needed: u64,
        len: u64,
    },
    #[error("{path}: malformed GGUF ({what})")]
    MalformedGguf { path: PathBuf, what: String },
    #[error("{path}: metadata key `{key}` is missing or has the wrong type (expected {expected})")]
    Metadata {
        path: PathBuf,
        key: String,
        expected: &'static str,
    },
    #[error("{path}: tokenizer `{model}` with pre-tokenizer `{pre}` is not supported (supported from GGUF: model `gpt2` with pre-tokenizer {supported})\nhint: point selfaware at a Hugging Face directory with tokenizer.json instead")]
    UnsupportedTokenizer {
        path: PathBuf,
        model: String,
        pre: String,
        supported: &'static str,
    },
    #[error("{path}: invalid tokenizer: {message}")]
    Tokenizer { path: PathBuf, message: String },
    #[error("tokenizer failed on the input: {0}")]
    Encode(String),
    #[error("{path}: `{field}` {message}")]
    Config {
        path: PathBuf,
        field: String,
        message: String,
    },
    #[error("{origin}: no chat template (hint: the model's tokenizer_config.json or GGUF metadata must carry `chat_template`)")]
    NoChatTemplate { origin: String },
    #[error("chat template of {origin} failed to render: {message}")]
    Template { origin: String, message: String },
    #[error("chat template of {origin} is not prefix-stable: rendering the first {messages} message(s) is not a prefix of rendering {next}, so message spans cannot be derived")]
    NotPrefixStable {
        origin: String,
        messages: usize,
        next: usize,
    },
    #[error("conversation: {0}")]
    Conversation(String),
}

pub type Result<T, E = ChatError> = std::result::Result<T, E>;
