use std::path::PathBuf;

/// Everything that can go wrong while asking a model. Each variant names the file, question,
/// field or model involved and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    #[error(transparent)]
    Backend(#[from] selfaware_backend::BackendError),

    #[error(transparent)]
    Eval(#[from] selfaware_eval::EvalError),

    #[error(transparent)]
    Data(#[from] selfaware_data::Error),

    #[error(transparent)]
    Codeword(#[from] selfaware_data::codeword::CodewordError),

    #[error(transparent)]
    Code(#[from] selfaware_data::code::CodeError),

    #[error(transparent)]
    Mms(#[from] selfaware_data::mms::MmsError),

    /// A file could not be read or written (the inner error names the path).
    #[error(transparent)]
    Io(#[from] std::io::Error),

    /// A setting or input is outside what the runner accepts.
    #[error("{what}: {message}")]
    Input { what: &'static str, message: String },

    /// The question needs exact scores and the backend can only estimate.
    #[error("`{model}` cannot {what}: its server returns no prompt log-probabilities (vLLM and `selfaware serve` do)")]
    NeedsExact { model: String, what: String },

    /// The output folder holds records of another run.
    #[error("{path}: the records there come from another model, battery or settings\nhint: use a new output folder, or repeat the earlier run's settings")]
    OtherRun { path: PathBuf },

    /// A file this runner wrote or reads back does not parse.
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },

    /// The LLM judge failed or answered nothing.
    #[error("judge `{model}`: {message}")]
    Judge { model: String, message: String },

    /// A question failed; the source says why.
    #[error("question `{question}`")]
    Question {
        question: String,
        #[source]
        source: Box<AskError>,
    },

    /// A Make Me Say game failed.
    #[error("Make Me Say game {game}")]
    Game {
        game: usize,
        #[source]
        source: Box<AskError>,
    },
}

/// Result alias for this crate.
pub type Result<T, E = AskError> = std::result::Result<T, E>;

impl AskError {
    pub(crate) fn input(what: &'static str, message: impl Into<String>) -> AskError {
        AskError::Input {
            what,
            message: message.into(),
        }
    }
}
