#![allow(dead_code)]
//! Shared setup: the tiny random model served on 127.0.0.1 with a free port.

use std::sync::{Arc, OnceLock};

use selfaware_backend::testing::tiny_engine;
use selfaware_backend::LocalBackend;
use selfaware_model::Engine;
use selfaware_server::{spawn, Registry, ServerConfig, ServerHandle};

pub const MODEL: &str = "tiny";

pub fn engine() -> Arc<Engine> {
    static E: OnceLock<Arc<Engine>> = OnceLock::new();
    E.get_or_init(|| Arc::new(tiny_engine(7).unwrap())).clone()
}

pub fn local() -> Arc<LocalBackend> {
    Arc::new(LocalBackend::new(engine(), MODEL))
}

pub struct Served {
    pub server: ServerHandle,
    pub _dir: tempfile::TempDir,
}

/// The tiny model written to `dir` and loaded from there (fine-tuned models re-read its chat
/// format from the file).
pub fn engine_in(dir: &std::path::Path) -> Arc<Engine> {
    let path = dir.join("tiny.gguf");
    let spec = selfaware_model::testing::TinySpec {
        seed: 7,
        ..Default::default()
    };
    selfaware_model::testing::write_tiny_gguf(&path, &spec).unwrap();
    Arc::new(Engine::load(&selfaware_model::ModelSource::Gguf(path)).unwrap())
}

pub fn serve() -> Served {
    let dir = tempfile::tempdir().unwrap();
    let mut registry = Registry::new();
    registry.add_local(MODEL, engine_in(dir.path())).unwrap();
    let config = ServerConfig {
        port: 0,
        max_n: 16,
        max_tokens: 64,
        max_body_bytes: 64 * 1024,
        max_upload_bytes: 256 * 1024,
        data_dir: Some(dir.path().to_path_buf()),
        ..ServerConfig::default()
    };
    let server = spawn(config, registry).unwrap();
    Served { server, _dir: dir }
}
