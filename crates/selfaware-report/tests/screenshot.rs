//! Renders the sample report and screenshots it with headless Chromium through
//! `scripts/report-screenshot.sh`. Skipped (with a note on stderr) when no `chromium` binary
//! is on PATH, a failure then under CI=true (`scripts/test.sh` installs it there).

mod common;

use std::path::Path;
use std::process::Command;

use selfaware_testing::{on_path, require_or_skip, Tier};

#[test]
fn sample_report_screenshots_as_png() {
    let Some(chromium) = require_or_skip(Tier::Chromium, on_path("chromium")) else {
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/report-screenshot.sh");
    let dir = tempfile::tempdir().unwrap();
    let files = selfaware_report::write_report(dir.path(), &common::sample()).unwrap();
    let html = &files[1];
    let png = dir.path().join("report.png");
    let status = Command::new("bash")
        .arg(&script)
        .arg(html)
        .arg(&png)
        .env("CHROMIUM", &chromium)
        .status()
        .unwrap();
    assert!(status.success(), "{script:?} failed: {status}");
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    // A blank 1400x3000 page compresses to a few kilobytes; figures and tables do not.
    assert!(
        bytes.len() > 50_000,
        "screenshot suspiciously small: {} bytes",
        bytes.len()
    );
    // IHDR: width and height of the window.
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!((width, height), (1400, 3000));
}
