//! Asking a model: everything the toolkit measures is "ask a model something and compute an
//! exact (or estimated) probability", over any [`selfaware_backend::Backend`].
//!
//! - [`ask`]: the primitives — first-token label probabilities, number distributions,
//!   whole-answer log-probabilities, seeded samples — exact where the backend can compute
//!   them, the paper's top-log-probability estimators where it cannot; the choice is made
//!   from the backend's capabilities, here only;
//! - [`eval`]: the battery runner ([`selfaware_eval::spec::EvalSpec`] → records with resume,
//!   manifest, summary), with the LLM [`judge`] and the sandboxed [`function`] runner;
//! - [`inspect`]: an evaluation folder as an Inspect log (`inspect_ai.log.read_eval_log`);
//! - [`probes`]: behaviour probes ([`selfaware_eval::spec::ProbeSpec`] → [`probes::ProbeReport`]);
//! - [`players`]: models as the data builders' players (question writers and checkers, the
//!   base model's own answers, the one Make Me Say player);
//! - [`progress`]: how long work reports progress (this crate never prints).
//!
//! Tests of all of it run in-process on `MockBackend` (scripted probabilities).

pub mod ask;
pub mod build;
mod error;
pub mod eval;
pub mod function;
pub mod inspect;
pub mod judge;
pub mod players;
pub mod pool;
pub mod probes;
pub mod progress;

pub use error::{AskError, Result};
pub use eval::{run_eval, AskedModel, EvalOutcome};
pub use probes::{run_probe, ProbeReport};
pub use progress::{counter, Progress, Silent};

/// What the runners need from the process that calls them (this library reads no
/// environment variables itself).
pub struct Environment<'a> {
    /// The git revision of the tool, for provenance.
    pub git_revision: Option<&'a str>,
    /// Looks up an environment variable (API keys of judges, `PATH` for the sandbox's Python).
    pub lookup: &'a dyn Fn(&str) -> Option<String>,
    /// Threads of tensor work (the default concurrency of a local model follows it).
    pub threads: usize,
}
