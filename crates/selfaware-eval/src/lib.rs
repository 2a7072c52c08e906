//! Evaluation batteries and scorers for behavioral self-awareness experiments.
//!
//! The pipeline this crate covers, all on plain data (no model runtime, no network):
//! - [`battery`]: questions as TOML data files, validated on load;
//! - [`builtin`]: the paper's batteries and word lists, compiled in;
//! - [`render`]: question → concrete prompt texts (user/system text, option permutation);
//!   chat templates are applied elsewhere (`selfaware-chat`);
//! - [`scorers`]: multiple choice, numeric scales, word categories, language, word
//!   matching, trigger elicitation, model-written functions;
//! - [`sandbox`]: runs model-written Python in a locked-down child process;
//! - [`import`]: the paper's question YAML files, in parity or fixed mode;
//! - [`probes`]: seeded behaviour probes (the paper's lottery pairs, myopia and apples
//!   analogues);
//! - [`records`]: one JSONL record per scored prompt, with resume.

pub mod battery;
pub mod builtin;
mod error;
pub mod import;
pub mod probes;
pub mod question_yaml;
pub mod records;
pub mod render;
pub mod sandbox;
pub mod scorers;
pub mod spec;

pub use error::{EvalError, Result};
