//! Battery files (selfaware-eval): parsing, validation and rendering every prompt.
#![no_main]

use libfuzzer_sys::fuzz_target;
use selfaware_eval::battery::Battery;
use selfaware_eval::render::{render_battery, NewlineMode, RenderOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(b) = Battery::from_toml_str(text, "fuzz.toml") else {
        return;
    };
    for newlines in [NewlineMode::Parity, NewlineMode::Fixed] {
        let _ = render_battery(&b, RenderOptions { newlines, seed: 7 });
    }
});
