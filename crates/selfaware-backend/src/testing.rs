//! Test fixture: the workspace's tiny random-weights Llama (`selfaware_model::testing`, 2
//! layers, width 64, byte-level vocabulary, SmolLM2 ChatML template) loaded as an [`Engine`].
//! Used by backend and server tests and by the server benchmark. It produces noise, but exactly
//! reproducible noise.

use selfaware_model::testing::{write_tiny_gguf, TinySpec};
use selfaware_model::{Engine, ModelSource};

use crate::{BackendError, Result};

/// Loads the tiny model with weights drawn from `seed` (through a temporary GGUF file, removed
/// afterwards).
pub fn tiny_engine(seed: u64) -> Result<Engine> {
    let dir = tempfile::tempdir().map_err(BackendError::io(std::path::Path::new("(temp dir)")))?;
    let path = dir.path().join("tiny-random-llama.gguf");
    let spec = TinySpec {
        seed,
        ..TinySpec::default()
    };
    write_tiny_gguf(&path, &spec)?;
    Ok(Engine::load(&ModelSource::Gguf(path))?)
}
