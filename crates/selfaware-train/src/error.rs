use std::path::PathBuf;

/// Errors of the training crate. Variants name the file, line or field involved.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Model(#[from] selfaware_model::ModelError),
    #[error(transparent)]
    Chat(#[from] selfaware_chat::ChatError),
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A problem with one line of a training file.
    #[error("{path}:{line}: {message}")]
    Data {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// A problem with a whole training file.
    #[error("{path}: {message}")]
    Dataset { path: PathBuf, message: String },
    /// An invalid training setting.
    #[error("invalid training setting `{field}`: {message}")]
    Config {
        field: &'static str,
        message: String,
    },
    /// An output folder this run may not write into.
    #[error("{path}: {message}")]
    Output { path: PathBuf, message: String },
    /// A checkpoint that cannot be resumed.
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
}

pub type Result<T, E = TrainError> = std::result::Result<T, E>;

pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> TrainError {
    let path = path.to_path_buf();
    move |source| TrainError::Io { path, source }
}
