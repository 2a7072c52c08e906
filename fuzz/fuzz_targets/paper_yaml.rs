//! The importer of the paper's question YAML (selfaware-eval), in both modes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use selfaware_eval::import::{import_text, ImportMode};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for mode in [ImportMode::Parity, ImportMode::Fixed] {
        let _ = import_text(text, "fuzz/questions.yaml", mode);
    }
});
