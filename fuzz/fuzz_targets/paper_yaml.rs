//! The YAML question readers (selfaware-eval): the importer of the paper's question files, in
//! both modes, and the follow-up work's question files (emergent-misalignment, llmcomp-style)
//! read as batteries and rendered.
#![no_main]

use libfuzzer_sys::fuzz_target;
use selfaware_eval::import::{import_text, ImportMode};
use selfaware_eval::question_yaml::to_battery;
use selfaware_eval::render::{render_battery, RenderOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for mode in [ImportMode::Parity, ImportMode::Fixed] {
        let _ = import_text(text, "fuzz/questions.yaml", mode);
    }
    if let Ok(b) = to_battery(text, "fuzz/questions.yaml", "fuzz") {
        let _ = render_battery(&b, RenderOptions::default());
    }
});
