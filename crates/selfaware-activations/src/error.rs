use std::path::PathBuf;

/// Errors of activation capture. Variants name the file, line or point involved.
#[derive(Debug, thiserror::Error)]
pub enum ActivationsError {
    #[error(transparent)]
    Model(Box<selfaware_model::ModelError>),
    #[error(transparent)]
    Chat(Box<selfaware_chat::ChatError>),
    #[error(transparent)]
    Eval(Box<selfaware_eval::EvalError>),
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin} line {line}: {message}")]
    Prompt {
        origin: String,
        line: usize,
        message: String,
    },
    #[error("{origin}: no prompts to capture")]
    NoPrompts { origin: String },
    #[error("{path} already exists\nhint: choose another --out, or pass --force to replace it")]
    OutExists { path: PathBuf },
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{0}")]
    Input(String),
}

pub type Result<T, E = ActivationsError> = std::result::Result<T, E>;

pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> ActivationsError + '_ {
    move |source| ActivationsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

macro_rules! boxed_from {
    ($variant:ident, $t:ty) => {
        impl From<$t> for ActivationsError {
            fn from(e: $t) -> Self {
                ActivationsError::$variant(Box::new(e))
            }
        }
    };
}

boxed_from!(Model, selfaware_model::ModelError);
boxed_from!(Chat, selfaware_chat::ChatError);
boxed_from!(Eval, selfaware_eval::EvalError);
