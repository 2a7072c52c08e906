//! The chat-JSONL readers: `selfaware data check` (selfaware-data) and the trainer's loader
//! (selfaware-train), which also tokenizes each line with the tiny model's chat format.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use selfaware_data::Family;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.jsonl");
    if let Ok(text) = std::str::from_utf8(data) {
        let lexicon = selfaware_data::dataset::lexicon(Family::Risk).expect("built-in lexicon");
        let report = selfaware_data::check_text(path, text, Some(lexicon));
        let _ = report.render(true);
    }
    let _ =
        selfaware_train::data::from_bytes(path, data.to_vec(), selfaware_fuzz::tiny_chat(), 256);
});
