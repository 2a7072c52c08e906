use std::path::PathBuf;

/// Errors of a backend. Messages never contain an API key.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The backend cannot do this (e.g. exact scoring over a plain chat API).
    #[error("{backend} cannot {what}")]
    Unsupported { backend: String, what: String },
    /// The request itself is wrong; `param` names the offending field.
    #[error("invalid request{}: {message}", param.as_ref().map(|p| format!(" (field `{p}`)")).unwrap_or_default())]
    InvalidRequest {
        param: Option<String>,
        message: String,
    },
    #[error(transparent)]
    Model(#[from] selfaware_model::ModelError),
    /// The server answered with an error that retrying will not fix.
    #[error("{url} answered HTTP {status}: {message}")]
    Http {
        url: String,
        status: u16,
        message: String,
    },
    /// Every attempt failed with a retryable error.
    #[error("{url} failed after {attempts} attempts; last error: {last}")]
    RetriesExhausted {
        url: String,
        attempts: u32,
        last: String,
    },
    /// The server's answer is not what the API promises.
    #[error("{url}: unexpected response: {message}")]
    BadResponse { url: String, message: String },
    #[error("failed to access {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file we read or wrote has the wrong content.
    #[error("{path}{}: {message}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
    File {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
    #[error("{0}")]
    Config(String),
}

/// Result with [`BackendError`].
pub type Result<T, E = BackendError> = std::result::Result<T, E>;

impl BackendError {
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> BackendError {
        let path = path.to_path_buf();
        move |source| BackendError::Io { path, source }
    }
}
