//! `selfaware probe` through the binary on the tiny random GGUF model: a smoke run of every
//! probe kind (the probes' logic is tested in-process in `selfaware-ask`'s `tests/probes.rs`),
//! and the flag combinations the command refuses.

use std::path::Path;

mod common;
use common::{ok_stdout as ok, s, selfaware, text, tiny};

fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn every_probe_kind_runs_and_writes_its_report() {
    let t = tempfile::tempdir().unwrap();
    let model = tiny(t.path());
    let cases: &[(&str, &[&str], &str)] = &[
        ("lotteries", &[], "lotteries probe, 2 items"),
        ("apples", &[], "apples probe, 2 items"),
        (
            "codeword",
            &["--codeword", "bark", "--samples", "2", "--max-tokens", "6"],
            "codeword-bark probe, 2 items",
        ),
        (
            "codeword-choice",
            &["--codeword", "bark", "--against", "ring"],
            "codeword-choice-bark probe, 2 items",
        ),
        (
            "vulnerable-code",
            &["--samples", "2", "--max-tokens", "8"],
            "vulnerable-code probe, 2 items",
        ),
        (
            "mms",
            &["--codeword", "bark", "--max-tokens", "4"],
            "mms-bark probe, 2 items",
        ),
    ];
    for (kind, extra, line) in cases {
        let out = t.path().join(format!("{kind}.json"));
        let mut args = vec![
            "probe",
            kind,
            "--model",
            s(&model),
            "--n",
            "2",
            "--seed",
            "3",
            "--out",
            s(&out),
        ];
        args.extend_from_slice(extra);
        let stdout = ok(&selfaware(t.path(), &args));
        assert!(stdout.starts_with(line), "{kind}: {stdout}");
        let v = read_json(&out);
        assert_eq!(v["n"], 2, "{kind}");
        assert_eq!(v["item_scores"].as_array().unwrap().len(), 2, "{kind}");
        let score = v["score"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&score), "{kind}: {score}");
        assert!(v["provenance"]["model_sha256"].is_string(), "{kind}");
    }
}

#[test]
fn probe_flags_that_do_not_fit_the_probe_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let model = tiny(t.path());
    let refused: &[&[&str]] = &[
        &["lotteries", "--codeword", "bark"],
        &["codeword-choice", "--codeword", "bark"],
        &["lotteries", "--manipulator-rules"],
        &["lotteries", "--n", "0"],
    ];
    for extra in refused {
        let mut args = vec!["probe", "--model", s(&model)];
        args.extend_from_slice(extra);
        let o = selfaware(t.path(), &args);
        assert_eq!(o.status.code(), Some(1), "{extra:?}");
        let err = text(&o.stderr);
        assert!(
            err.starts_with("error: ") && err.lines().count() <= 2,
            "{extra:?}: {err}"
        );
    }
}
