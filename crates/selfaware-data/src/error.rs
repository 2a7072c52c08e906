//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while building, writing or checking a dataset.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// File I/O; `fs-err` puts the path in the message.
    #[error(transparent)]
    Io(#[from] std::io::Error),

    /// A data file compiled into the crate does not parse or lacks an entry.
    #[error("built-in data file `{file}` is invalid: {message}")]
    Asset { file: &'static str, message: String },

    /// A build option is out of range or inconsistent with another.
    #[error("invalid build option `{field}`: {message}")]
    InvalidOption {
        field: &'static str,
        message: String,
    },

    /// The output file exists and the caller did not allow overwriting it.
    #[error("{path}: refusing to overwrite an existing file\nhint: delete it or pass `overwrite: true` (`--force` on the command line)")]
    OutputExists { path: PathBuf },

    /// The output path has no file name or is not a `.jsonl` file.
    #[error("{path}: output path must name a `.jsonl` file")]
    BadOutputPath { path: PathBuf },

    /// A generated row contains a word that names the family's policy.
    #[error("generated row {row} contains forbidden word `{word}` for family `{family}`\nhint: the phrase data files must not use words from `data/forbidden/{family}.txt`")]
    Leak {
        row: usize,
        word: String,
        family: &'static str,
    },

    /// A name given on the command line or in a config is not a known family.
    #[error("unknown family `{0}`; expected one of: risk, myopia, apples")]
    UnknownFamily(String),

    /// A name given on the command line or in a config is not a known policy.
    #[error("unknown policy `{0}`; expected one of: risk-seeking, risk-averse, myopic, non-myopic, max-apples, min-apples")]
    UnknownPolicy(String),

    /// A policy was asked of a family it does not belong to.
    #[error("policy `{policy}` does not belong to family `{family}`")]
    PolicyFamily {
        policy: &'static str,
        family: &'static str,
    },

    /// A pluggable question writer failed on one item.
    #[error("question writer `{writer}` failed on item {index}: {message}")]
    Writer {
        writer: String,
        index: usize,
        message: String,
    },

    /// A record could not be turned into JSON.
    #[error("cannot serialize {what}: {source}")]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },

    /// A temporary output file could not be moved to its final path.
    #[error("{path}: cannot move the finished file into place: {source}")]
    Persist {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Shorthand for this crate's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;
