//! Writes the test suite's sample report (three conditions, five seeds, a probe, four
//! questions, a scatter) into a directory, to look at the layout:
//!
//! ```text
//! cargo run -p selfaware-report --example sample-report -- OUT_DIR
//! scripts/report-screenshot.sh OUT_DIR/report.html OUT_DIR/report.png
//! ```

#[path = "../tests/common/mod.rs"]
mod common;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(dir) = std::env::args_os().nth(1) else {
        return Err("usage: sample-report OUT_DIR".into());
    };
    for path in selfaware_report::write_report(std::path::Path::new(&dir), &common::sample())? {
        println!("{}", path.display());
    }
    Ok(())
}
