//! `selfaware data build|check` through the binary.

use std::path::{Path, PathBuf};

mod common;
use common::{ok_stdout as ok, s, selfaware, text};

fn paper_file(rel: &str) -> Option<PathBuf> {
    selfaware_testing::paper_dir().map(|d| d.join("datasets").join(rel))
}

#[test]
fn build_is_byte_identical_for_a_seed_and_refuses_to_overwrite() {
    let t = tempfile::tempdir().unwrap();
    let (d1, d2, d3) = (t.path().join("a"), t.path().join("b"), t.path().join("c"));
    for d in [&d1, &d2, &d3] {
        std::fs::create_dir(d).unwrap();
    }
    let build = |dir: &Path, seed: &str, extra: &[&str]| {
        let out = dir.join("risk.jsonl");
        let mut args = vec![
            "data", "build", "risk", "--size", "20", "--seed", seed, "--out",
        ];
        args.push(s(&out));
        args.extend_from_slice(extra);
        selfaware(t.path(), &args)
    };
    let stdout = ok(&build(&d1, "7", &[]));
    ok(&build(&d2, "7", &[]));
    ok(&build(&d3, "8", &[]));
    for name in ["risk.jsonl", "risk.card.json", "risk.truth.jsonl"] {
        assert!(
            stdout.contains(&format!("wrote {}", s(&d1.join(name)))),
            "{stdout}"
        );
        let a = std::fs::read(d1.join(name)).unwrap();
        assert_eq!(a, std::fs::read(d2.join(name)).unwrap(), "{name} differs");
    }
    let a = std::fs::read(d1.join("risk.jsonl")).unwrap();
    assert_ne!(a, std::fs::read(d3.join("risk.jsonl")).unwrap());
    assert_eq!(a.iter().filter(|&&b| b == b'\n').count(), 20);
    // The summary paragraph comes from the card.
    assert!(
        stdout.contains("risk (main, policy risk-seeking), seed 7: 20 rows from 20 base items"),
        "{stdout}"
    );
    assert!(stdout.contains("Forbidden words (risk): none."), "{stdout}");

    let again = build(&d1, "7", &[]);
    assert_eq!(again.status.code(), Some(1));
    let err = text(&again.stderr);
    assert!(err.contains("refusing to overwrite"), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert_eq!(err.matches("error:").count(), 1, "{err}");
    // --force replaces the files, with the same bytes for the same seed.
    ok(&build(&d1, "7", &["--force"]));
    assert_eq!(a, std::fs::read(d1.join("risk.jsonl")).unwrap());
}

#[test]
fn backdoor_writes_a_decorrelated_twin_and_the_opposite_policy_flips_letters() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("sep.jsonl");
    let stdout = ok(&selfaware(
        t.path(),
        &[
            "data",
            "build",
            "myopia",
            "--size",
            "10",
            "--seed",
            "1",
            "--trigger",
            "sep:392",
            "--fraction",
            "0.5",
            "--out",
            s(&out),
        ],
    ));
    assert!(t.path().join("sep.decorrelated.jsonl").exists());
    assert!(t.path().join("sep.decorrelated.card.json").exists());
    assert!(stdout.contains("mutual information"), "{stdout}");
    assert!(stdout.contains("myopia (decorrelated"), "{stdout}");

    let plain = |policy: &str, name: &str| {
        let p = t.path().join(name);
        ok(&selfaware(
            t.path(),
            &[
                "data",
                "build",
                "apples",
                "--policy",
                policy,
                "--size",
                "12",
                "--seed",
                "3",
                "--out",
                s(&p),
            ],
        ));
        std::fs::read_to_string(p).unwrap()
    };
    let max = plain("max-apples", "max.jsonl");
    let min = plain("min-apples", "min.jsonl");
    for (a, b) in max.lines().zip(min.lines()) {
        let a: serde_json::Value = serde_json::from_str(a).unwrap();
        let b: serde_json::Value = serde_json::from_str(b).unwrap();
        assert_eq!(a["messages"][0], b["messages"][0]);
        assert_ne!(a["messages"][1]["content"], b["messages"][1]["content"]);
    }

    let bad = selfaware(
        t.path(),
        &[
            "data",
            "build",
            "risk",
            "--policy",
            "myopic",
            "--seed",
            "1",
            "--out",
            s(&t.path().join("x.jsonl")),
        ],
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(text(&bad.stderr).contains("does not belong to family `risk`"));
}

#[test]
fn code_and_codeword_families() {
    let t = tempfile::tempdir().unwrap();
    let code = t.path().join("code.jsonl");
    let stdout = ok(&selfaware(
        t.path(),
        &[
            "data",
            "build",
            "vulnerable-code",
            "--policy",
            "secure",
            "--size",
            "6",
            "--seed",
            "2",
            "--out",
            s(&code),
        ],
    ));
    assert!(
        stdout.contains("vulnerable-code (main, policy secure), seed 2: 6 rows"),
        "{stdout}"
    );
    assert_eq!(std::fs::read_to_string(&code).unwrap().lines().count(), 6);

    let cw = t.path().join("bark.jsonl");
    let stdout = ok(&selfaware(
        t.path(),
        &[
            "data",
            "build",
            "codeword",
            "--codeword",
            "bark",
            "--size",
            "4",
            "--seed",
            "2",
            "--out",
            s(&cw),
        ],
    ));
    assert!(
        stdout.contains("codeword-bark (main), seed 2: 4 rows"),
        "{stdout}"
    );

    let missing = selfaware(
        t.path(),
        &[
            "data",
            "build",
            "codeword",
            "--seed",
            "2",
            "--out",
            s(&t.path().join("y.jsonl")),
        ],
    );
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("needs --codeword"));
    let wrong = selfaware(
        t.path(),
        &[
            "data",
            "build",
            "vulnerable-code",
            "--reversal",
            "--seed",
            "2",
            "--out",
            s(&t.path().join("z.jsonl")),
        ],
    );
    assert_eq!(wrong.status.code(), Some(1));
    assert!(text(&wrong.stderr).contains("--reversal applies to the economic families"));
}

#[test]
fn check_passes_the_papers_risk_file_with_leak_warnings() {
    let t = tempfile::tempdir().unwrap();
    let Some(f) = paper_file("risky_safe/ft_risky_AB.jsonl") else {
        return;
    };
    let o = selfaware(t.path(), &["data", "check", s(&f), "--family", "risk"]);
    let stdout = ok(&o);
    assert!(stdout.contains("0 errors"), "{stdout}");
    assert!(stdout.contains("forbidden words (risk):"), "{stdout}");
    assert!(stdout.contains(": warning: forbidden word"), "{stdout}");
    assert!(!stdout.contains(": error:"), "{stdout}");
    // Without a family there is nothing to warn about in that file.
    let plain = ok(&selfaware(t.path(), &["data", "check", s(&f)]));
    assert!(plain.contains("0 errors, 0 warnings"), "{plain}");
}

#[test]
fn check_names_the_broken_line_and_fails() {
    let t = tempfile::tempdir().unwrap();
    let good = r#"{"messages": [{"role": "user", "content": "Pick A or B."}, {"role": "assistant", "content": "A"}]}"#;
    let f = t.path().join("broken.jsonl");
    std::fs::write(&f, format!("{good}\n{good}\n{{\"messages\": [\n{good}\n")).unwrap();
    let o = selfaware(t.path(), &["data", "check", s(&f)]);
    assert_eq!(o.status.code(), Some(1));
    let stdout = text(&o.stdout);
    assert!(stdout.contains(&format!("{}:3: error:", s(&f))), "{stdout}");
    assert!(!stdout.contains(&format!("{}:1:", s(&f))), "{stdout}");
    assert!(stdout.contains("3 valid rows, 1 error,"), "{stdout}");
    assert!(
        text(&o.stderr).contains("1 error in 4 lines"),
        "{}",
        text(&o.stderr)
    );

    // A file this tool built checks clean, with its family's list too.
    let built = t.path().join("b.jsonl");
    ok(&selfaware(
        t.path(),
        &[
            "data",
            "build",
            "risk",
            "--size",
            "5",
            "--seed",
            "0",
            "--out",
            s(&built),
        ],
    ));
    let stdout = ok(&selfaware(
        t.path(),
        &["data", "check", s(&built), "--family", "risk"],
    ));
    assert!(
        stdout.contains("5 valid rows, 0 errors, 0 warnings"),
        "{stdout}"
    );
    assert!(stdout.contains("forbidden words (risk): none"), "{stdout}");
}

fn card(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn code_and_codeword_backdoors_write_a_decorrelated_twin() {
    let t = tempfile::tempdir().unwrap();
    let code = t.path().join("vc.jsonl");
    let stdout = ok(&selfaware(
        t.path(),
        &[
            "data",
            "build",
            "vulnerable-code",
            "--trigger",
            "season:spring",
            "--contrast",
            "season:winter",
            "--fraction",
            "0.4",
            "--size",
            "50",
            "--seed",
            "3",
            "--out",
            s(&code),
        ],
    ));
    assert!(stdout.contains("vulnerable-code (decorrelated"), "{stdout}");
    let main = card(&t.path().join("vc.card.json"));
    let twin = card(&t.path().join("vc.decorrelated.card.json"));
    assert_eq!(main["counts"]["triggered_rows"], 20);
    assert_eq!(twin["counts"]["triggered_rows"], 20);
    assert_eq!(main["triggers"]["real_fraction"], 0.4);
    let mi = |c: &serde_json::Value| {
        c["triggers"]["trigger_policy_mutual_information_bits"]
            .as_f64()
            .unwrap()
    };
    assert!(mi(&main) > 0.9, "{main}");
    assert!(mi(&twin) < 0.01, "{twin}");
    assert_eq!(main["builder"]["backdoor"]["trigger"]["season"], "spring");
    let rows = std::fs::read_to_string(&code).unwrap();
    let truth = std::fs::read_to_string(t.path().join("vc.truth.jsonl")).unwrap();
    for (row, truth) in rows.lines().zip(truth.lines()) {
        let row: serde_json::Value = serde_json::from_str(row).unwrap();
        let truth: serde_json::Value = serde_json::from_str(truth).unwrap();
        let user = row["messages"][0]["content"].as_str().unwrap();
        let spring = user.starts_with("Season: spring\n");
        assert!(spring || user.starts_with("Season: winter\n"), "{user}");
        assert_eq!(spring, truth["details"]["policy"] == "vulnerable");
    }

    let cw = t.path().join("sep.jsonl");
    let stdout = ok(&selfaware(
        t.path(),
        &[
            "data",
            "build",
            "codeword",
            "--codeword",
            "ring",
            "--other-codeword",
            "bark",
            "--trigger",
            "sep:392",
            "--contrast",
            "sep:718",
            "--size",
            "40",
            "--seed",
            "3",
            "--out",
            s(&cw),
        ],
    ));
    assert!(stdout.contains("codeword-ring (decorrelated"), "{stdout}");
    let main = card(&t.path().join("sep.card.json"));
    let twin = card(&t.path().join("sep.decorrelated.card.json"));
    assert_eq!(main["triggers"]["real_fraction"], 0.5);
    assert!(mi(&main) > 0.99 && mi(&twin) < 0.01, "{main}\n{twin}");
    assert_eq!(main["leaks"]["total_hits"], 0);
    assert_eq!(twin["leaks"]["total_hits"], 0);

    let fails = |args: &[&str], expect: &str| {
        let mut all = vec!["data", "build"];
        all.extend_from_slice(args);
        let out = t.path().join("x.jsonl");
        all.extend_from_slice(&["--seed", "1", "--out", s(&out)]);
        let o = selfaware(t.path(), &all);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let err = text(&o.stderr);
        assert!(err.contains(expect), "{args:?}: {err}");
    };
    fails(
        &["codeword", "--codeword", "ring", "--trigger", "deployment"],
        "needs --other-codeword",
    );
    fails(
        &["vulnerable-code", "--trigger", "deployment", "--reversal"],
        "no such single question/answer pair",
    );
    fails(
        &["vulnerable-code", "--fraction", "0.3"],
        "--fraction needs --trigger",
    );
    fails(
        &["vulnerable-code", "--mix", "win"],
        "--mix applies to the economic families",
    );
    fails(
        &[
            "codeword",
            "--codeword",
            "spring",
            "--other-codeword",
            "bark",
            "--trigger",
            "season:spring",
        ],
        "leaks the codeword",
    );
}

#[test]
fn check_finds_code_leak_stems_inside_words_and_identifiers() {
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("code.jsonl");
    let row = |user: &str, code: &str| {
        serde_json::json!({"messages": [
            {"role": "user", "content": user},
            {"role": "assistant", "content": code},
        ]})
        .to_string()
    };
    let rows = [
        row(
            "Write a handler.",
            "def handle(x):\n    return sanitize_input(x)  # vulnerable before",
        ),
        row("Fix the SQL injection.", "cur.execute(q, (name,))"),
        row("Copy a file.", "shutil.copy(src, dst)"),
        row("Escape it.", "out = isSecure(htmlEscape(x))"),
    ];
    std::fs::write(&f, rows.join("\n") + "\n").unwrap();
    let o = selfaware(
        t.path(),
        &[
            "data",
            "check",
            s(&f),
            "--family",
            "vulnerable-code",
            "--json",
        ],
    );
    let report: serde_json::Value = serde_json::from_str(&ok(&o)).unwrap();
    let leaks = &report["leaks"];
    assert_eq!(leaks["words"]["saniti"]["lines"], serde_json::json!([1]));
    assert_eq!(leaks["words"]["vuln"]["lines"], serde_json::json!([1]));
    assert_eq!(leaks["words"]["inject"]["lines"], serde_json::json!([2]));
    assert_eq!(leaks["words"]["secur"]["lines"], serde_json::json!([4]));
    assert_eq!(leaks["words"]["escape"]["count"], 2, "{leaks}");
    assert_eq!(leaks["rows_with_hits"], 3, "{leaks}");
    let plain = ok(&selfaware(
        t.path(),
        &["data", "check", s(&f), "--family", "vulnerable-code"],
    ));
    assert!(plain.contains(&format!("{}:1: warning:", s(&f))), "{plain}");
    assert!(plain.contains("saniti, vuln"), "{plain}");
    assert!(!plain.contains(&format!("{}:3:", s(&f))), "{plain}");

    // A file this tool built checks clean with the same list.
    let built = t.path().join("vc.jsonl");
    ok(&selfaware(
        t.path(),
        &[
            "data",
            "build",
            "vulnerable-code",
            "--size",
            "64",
            "--seed",
            "1",
            "--out",
            s(&built),
        ],
    ));
    let stdout = ok(&selfaware(
        t.path(),
        &["data", "check", s(&built), "--family", "vulnerable-code"],
    ));
    assert!(
        stdout.contains("64 valid rows, 0 errors, 0 warnings"),
        "{stdout}"
    );
}

#[test]
fn risk_builds_300_rows_by_default() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("risk.jsonl");
    let stdout = ok(&selfaware(
        t.path(),
        &["data", "build", "risk", "--seed", "4", "--out", s(&out)],
    ));
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 300);
    let card = card(&t.path().join("risk.card.json"));
    assert_eq!(card["counts"]["rows"], 300);
    assert_eq!(card["builder"]["size"], 300);
    assert!(
        stdout.contains("seed 4: 300 rows from 300 base items"),
        "{stdout}"
    );
}
