//! Experiment files (selfaware-run): parsing, validation and, when every battery is built in,
//! the plan of stages (which renders those batteries).
#![no_main]

use libfuzzer_sys::fuzz_target;
use selfaware_run::Experiment;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(e) = Experiment::from_toml_str(text, "fuzz.toml") else {
        return;
    };
    // A battery that is not built in is a file path: the target reads no files.
    let built_in = e
        .batteries
        .iter()
        .all(|b| selfaware_eval::builtin::battery_source(&b.battery).is_some());
    if built_in {
        let _ = selfaware_run::plan_without_files(&e, &"0".repeat(64));
    }
});
