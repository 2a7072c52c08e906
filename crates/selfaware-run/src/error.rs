//! Errors of the run crate; each names the file, field or stage involved.

use std::path::PathBuf;

/// Everything that can go wrong planning, running or summarising an experiment.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The experiment file does not parse.
    #[error("{origin}: {message}")]
    Experiment { origin: String, message: String },
    /// A field of the experiment has a bad value.
    #[error("{origin}: field `{field}`: {message}")]
    Field {
        origin: String,
        field: String,
        message: String,
    },
    /// No preset of that name.
    #[error("no experiment preset named {name:?}; expected a file or one of: {known}")]
    UnknownPreset { name: String, known: String },
    /// The plan cannot be made.
    #[error("plan: {message}")]
    Plan { message: String },
    /// A stage's command failed.
    #[error("stage `{stage}` failed ({status}); its log is {log}:\n{tail}")]
    StageFailed {
        stage: String,
        status: String,
        log: PathBuf,
        tail: String,
    },
    /// A stage exited successfully without its output.
    #[error("stage `{stage}` finished without writing {output}")]
    MissingOutput { stage: String, output: PathBuf },
    /// Another process holds the run folder.
    #[error("{0}: another `selfaware run` is using this run folder")]
    Locked(PathBuf),
    /// The output folder holds a file that is not part of a run.
    #[error("{path}: not part of a selfaware run; refusing to write a run into its folder\nhint: choose another --out, or pass --force to write the run beside it")]
    NotARun { path: PathBuf },
    /// A file of the run folder is not what it should be.
    #[error("{path}: {message}")]
    BadFile { path: PathBuf, message: String },
    /// The run folder belongs to another experiment.
    #[error("{path}: this run folder holds experiment {found:?}, not {expected:?}\nhint: choose another --out, or remove the folder")]
    OtherExperiment {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error(transparent)]
    Eval(#[from] selfaware_eval::EvalError),
    #[error(transparent)]
    Stats(#[from] selfaware_stats::StatsError),
    #[error(transparent)]
    Report(#[from] selfaware_report::ReportError),
}

/// Shorthand.
pub type Result<T> = std::result::Result<T, RunError>;
