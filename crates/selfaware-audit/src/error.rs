use std::path::PathBuf;

/// Everything that can go wrong in an audit. Variants name the file, candidate or model
/// involved.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Backend(#[from] selfaware_backend::BackendError),

    /// Boxed: asking errors are large, and every result of this crate would carry them.
    #[error(transparent)]
    Ask(Box<selfaware_ask::AskError>),

    #[error(transparent)]
    Eval(#[from] selfaware_eval::EvalError),

    #[error(transparent)]
    Stats(#[from] selfaware_stats::StatsError),

    /// A file could not be read or written (the inner error names the path).
    #[error(transparent)]
    Io(#[from] std::io::Error),

    /// A built-in data file or a user's candidate file does not parse or is empty.
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },

    /// The output folder already holds a file the audit would write.
    #[error("{path}: already exists; the audit does not overwrite it\nhint: choose another --out, or move the file away")]
    WouldOverwrite { path: PathBuf },

    /// A setting is outside what the audit accepts.
    #[error("{what}: {message}")]
    Input { what: &'static str, message: String },
}

/// Result alias for this crate.
pub type Result<T, E = AuditError> = std::result::Result<T, E>;

impl From<selfaware_ask::AskError> for AuditError {
    fn from(e: selfaware_ask::AskError) -> Self {
        AuditError::Ask(Box::new(e))
    }
}
