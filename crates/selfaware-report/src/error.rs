//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong while reading, checking or writing a report.
///
/// Variants carry the file, line/column or field involved, so a caller can print the message
/// unchanged.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Reading or writing a file failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done (`"reading"`, `"writing"`, `"creating directory"`, ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A results file is not valid JSON or does not match the results model.
    #[error("{path}:{line}:{column}: {message}; hint: the file must be a results.json written by `selfaware run`")]
    Parse {
        /// The results file.
        path: PathBuf,
        /// 1-based line of the error (0 when serde reports none).
        line: usize,
        /// 1-based column of the error (0 when serde reports none).
        column: usize,
        /// serde's message.
        message: String,
    },
    /// A results file has a `results_version` this build does not read.
    #[error("{path}: results_version {found} is not supported, expected {expected}; hint: rebuild the report with the selfaware version that wrote the run, or rerun `selfaware report RUN_DIR`")]
    UnsupportedVersion {
        /// The results file (empty when checking an in-memory value).
        path: PathBuf,
        /// The version found in the file.
        found: u64,
        /// The version this build reads ([`crate::results::RESULTS_VERSION`]).
        expected: u32,
    },
    /// A results value is inconsistent: a non-finite number, a cell naming an unknown
    /// condition, an empty range, ...
    #[error("invalid results: {field}: {problem}")]
    Invalid {
        /// Path to the offending field, e.g. `questions[2].cells[1].mean`.
        field: String,
        /// What is wrong and what was expected.
        problem: String,
    },
    /// Serializing the results to JSON failed.
    #[error("serializing results.json: {0}")]
    Serialize(#[source] serde_json::Error),
}
