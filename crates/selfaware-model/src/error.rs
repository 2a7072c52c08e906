use std::path::PathBuf;

/// Errors of the model runtime. Variants name the file, tensor or shape involved.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Chat(#[from] selfaware_chat::ChatError),
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("failed to read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: architecture `{arch}` is not supported (supported: {supported})")]
    UnsupportedArchitecture {
        path: PathBuf,
        arch: String,
        supported: &'static str,
    },
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("{path}: tensor `{name}` is missing")]
    MissingTensor { path: PathBuf, name: String },
    #[error("{path}: tensor `{name}` has shape {found:?}, expected {expected:?}")]
    TensorShape {
        path: PathBuf,
        name: String,
        found: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("{path}: tensor `{name}` has dtype {dtype}, which selfaware cannot load (supported: F32, F16, BF16)")]
    TensorDtype {
        path: PathBuf,
        name: String,
        dtype: String,
    },
    #[error("model reference `{reference}` is neither `default`, a .gguf file nor a Hugging Face model directory{hint}")]
    BadReference { reference: String, hint: String },
    #[error("{0}")]
    Input(String),
    #[error("adapter {path}: {message}")]
    Adapter { path: PathBuf, message: String },
    /// A steering vector (`FILE:POINT:ALPHA`) that cannot be read or does not fit the model.
    #[error("steering vector {spec}: {message}")]
    Steer { spec: String, message: String },
    #[error("installing the default model failed: {message}\nhint: {hint}")]
    Pull { message: String, hint: String },
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
