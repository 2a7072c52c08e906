//! Writes the test suite's sample report (three conditions, five seeds, a probe, four
//! questions, a scatter) into a directory, to look at the layout; `--stress` writes the
//! harder sample (five conditions, eleven long-labelled questions, missing and out-of-range
//! values):
//!
//! ```text
//! cargo run -p selfaware-report --example sample-report -- OUT_DIR [--stress]
//! scripts/report-screenshot.sh OUT_DIR/report.html OUT_DIR/report.png
//! ```

#[path = "../tests/common/mod.rs"]
mod common;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let stress = args.iter().any(|a| a == "--stress");
    let Some(dir) = args.iter().find(|a| *a != "--stress") else {
        return Err("usage: sample-report OUT_DIR [--stress]".into());
    };
    let results = if stress {
        common::stress()
    } else {
        common::sample()
    };
    for path in selfaware_report::write_report(std::path::Path::new(dir), &results)? {
        println!("{}", path.display());
    }
    Ok(())
}
