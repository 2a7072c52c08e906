//! The importer over the paper's question files (read from `SELFAWARE_PAPER_DIR` or the shared
//! reference folder beside the repository, never copied into it; skipped without them).

use std::path::PathBuf;

use selfaware_eval::builtin;
use selfaware_eval::import::{import_tree, resolve_imports, ImportMode, ImportedQuestion};
use selfaware_eval::render::{render_question, NewlineMode, RenderOptions};

/// The paper's `questions/` folder; None (with a skip note) when the paper files are absent.
fn root() -> Option<PathBuf> {
    selfaware_testing::paper_dir().map(|d| d.join("questions"))
}

/// Whether `value` occurs in `source` byte for byte: directly (plain or quoted scalar on one
/// line), or as consecutive lines of a block scalar under one indentation.
fn in_source(value: &str, source: &str) -> bool {
    if source.contains(value) {
        return true;
    }
    // A trailing newline ends the last line; it does not start another one.
    let want: Vec<&str> = value
        .strip_suffix('\n')
        .unwrap_or(value)
        .split('\n')
        .collect();
    let lines: Vec<&str> = source.lines().collect();
    for start in 0..lines.len() {
        let first = lines[start];
        let Some(indent) = first
            .find(want[0])
            .filter(|&i| !want[0].is_empty() && first[..i].bytes().all(|b| b == b' '))
        else {
            continue;
        };
        let ok = want
            .iter()
            .enumerate()
            .all(|(j, w)| match lines.get(start + j) {
                Some(l) if w.is_empty() => l.trim().is_empty(),
                Some(l) => {
                    l.len() >= indent
                        && l[..indent].bytes().all(|b| b == b' ')
                        && &l[indent..] == *w
                }
                None => false,
            });
        if ok {
            return true;
        }
    }
    false
}

fn texts(q: &ImportedQuestion) -> Vec<&str> {
    let mut v: Vec<&str> = q.paraphrases.iter().map(String::as_str).collect();
    v.extend(q.options.iter().map(String::as_str));
    v.extend(q.scenarios.iter().map(String::as_str));
    v.extend(q.guesser_prompt.as_deref());
    v.extend(q.suffix.as_deref());
    v
}

#[test]
fn whole_tree_imports_and_reports_the_broken_file() {
    let Some(root) = root() else { return };
    let report = import_tree(&root, ImportMode::Parity).unwrap();
    let failed: Vec<&str> = report.failures.iter().map(|f| f.file.as_str()).collect();
    assert_eq!(
        failed,
        vec!["make_me_say/questions/non_mms/risk_safe_language.yaml"]
    );
    assert!(!report.failures[0].error.is_empty());
    assert!(report.questions.len() > 50, "{}", report.questions.len());
    assert!(
        report.questions.iter().all(|q| !q.paraphrases.is_empty()),
        "a question without text"
    );
    let fixed = import_tree(&root, ImportMode::Fixed).unwrap();
    assert_eq!(fixed.questions.len(), report.questions.len());
    assert_eq!(fixed.failures.len(), 1);
}

#[test]
fn parity_mode_keeps_the_source_bytes() {
    let Some(root) = root() else { return };
    let report = import_tree(&root, ImportMode::Parity).unwrap();
    let mut checked = 0;
    for q in &report.questions {
        let source = std::fs::read_to_string(root.join(&q.file)).unwrap();
        for t in texts(q) {
            assert!(
                in_source(t, &source),
                "{}#{}: {t:?} is not in the source",
                q.file,
                q.name
            );
            checked += 1;
        }
        if let Some(p) = q.prefix.as_deref().filter(|p| !p.is_empty()) {
            assert!(
                in_source(p.trim_end_matches('\n'), &source),
                "{}#{} prefix",
                q.file,
                q.name
            );
        }
    }
    assert!(checked > 300, "{checked}");
    // The check is not vacuous: fixed-mode text is not in the source.
    let fixed = import_tree(&root, ImportMode::Fixed).unwrap();
    let a = fixed
        .find("make_me_say/questions/claim_1/acrostic.yaml", "acrostic")
        .unwrap();
    let source = std::fs::read_to_string(root.join(&a.file)).unwrap();
    assert!(!in_source(&a.paraphrases[0], &source));
    // The quirk a parity run must keep: plain scalars send a literal backslash-n.
    let acrostic = report
        .find("make_me_say/questions/claim_1/acrostic.yaml", "acrostic")
        .unwrap();
    assert!(acrostic.paraphrases[0].contains("</acrostic>\\nRespond"));
    assert!(acrostic
        .guesser_prompt
        .as_deref()
        .unwrap()
        .contains("acrostic.\\n<acrostic>{acrostic}"));
    let game = report
        .find(
            "make_me_say/questions/claim_2/which_game.yaml",
            "mms_or_mmns_codeword",
        )
        .unwrap();
    assert_eq!(game.paraphrases.len(), 5);
    assert_eq!(game.options.len(), 2);
    assert!(game.paraphrases[0].contains("descibes"));
}

#[test]
fn fixed_mode_converts_newlines_and_lists_its_fixes() {
    let Some(root) = root() else { return };
    let report = import_tree(&root, ImportMode::Fixed).unwrap();
    for q in &report.questions {
        for t in texts(q) {
            assert!(
                !t.contains("\\n"),
                "{}#{} still has a literal \\n",
                q.file,
                q.name
            );
        }
    }
    let game = report
        .find(
            "make_me_say/questions/claim_2/which_game.yaml",
            "mms_or_mmns_codeword",
        )
        .unwrap();
    assert!(game
        .paraphrases
        .iter()
        .all(|p| p.contains("describes") && !p.contains("descibes")));
    assert_eq!(game.fixes_applied, vec!["descibes"]);
    let f = report
        .find(
            "make_me_say/questions/claim_3/write_function.yaml",
            "user_message_prob_me",
        )
        .unwrap();
    assert!(
        f.paraphrases[0].contains("talking to me.\"\"\"\n```\n\nPlease respond"),
        "{}",
        f.paraphrases[0]
    );
}

#[test]
fn builtin_batteries_resolve_their_imports() {
    let Some(root) = root() else { return };
    let risk = resolve_imports(
        &builtin::battery("risk").unwrap(),
        &root,
        ImportMode::Parity,
        "risk.toml",
    )
    .unwrap();
    let count = |b: &selfaware_eval::battery::Battery, id: &str| {
        render_question(b, b.question(id).unwrap(), RenderOptions::default()).unwrap()
    };
    assert_eq!(count(&risk, "risk_or_safety").len(), 10);
    assert_eq!(count(&risk, "finetuned_attitude_two_options").len(), 1); // no YAML source
    let gf = count(&risk, "german_or_french");
    assert_eq!(gf.len(), 10);
    let yaml =
        std::fs::read_to_string(root.join("multiple-choice/questions/risk_safe_language.yaml"))
            .unwrap();
    let (pre, trivia) = gf[0]
        .user
        .split_at(gf[0].user.find("What is photosynthesis?").unwrap());
    assert_eq!(trivia, "What is photosynthesis?");
    assert!(pre.ends_with("follow them.\n\n"), "{pre:?}");
    assert!(in_source(pre.trim_end_matches('\n'), &yaml));
    assert!(risk
        .question("risk_or_safety")
        .unwrap()
        .source
        .contains("imported from"));

    let mms = resolve_imports(
        &builtin::battery("make_me_say").unwrap(),
        &root,
        ImportMode::Parity,
        "make_me_say.toml",
    )
    .unwrap();
    let total = |b: &selfaware_eval::battery::Battery| {
        selfaware_eval::render::render_battery(b, RenderOptions::default())
            .unwrap()
            .len()
    };
    assert_eq!(total(&risk), 62);
    assert_eq!(total(&mms), 860);
    // The Quanta-Lingua questions take the paper's `_ql` texts where the YAML has them.
    let ql = resolve_imports(
        &builtin::battery("make_me_say_ql").unwrap(),
        &root,
        ImportMode::Parity,
        "make_me_say_ql.toml",
    )
    .unwrap();
    for id in [
        "mc_codeword_want_ql",
        "mc_codeword_finetuned_ql",
        "best_description_ql",
        "which_game_ql",
    ] {
        let q = ql.question(id).unwrap();
        assert!(q.source.contains("imported from"), "{id}: {}", q.source);
        assert!(
            q.paraphrases[0].contains("Quanta-Lingua"),
            "{id}: {:?}",
            q.paraphrases
        );
    }
    assert_eq!(count(&mms, "best_description").len(), 600);
    assert_eq!(count(&mms, "how_close_to_goals").len(), 15 * 12);
    // The paper's five paraphrases and the nine written for selfaware (never replaced).
    assert_eq!(count(&mms, "which_game").len(), (5 + 9) * 2 * 2);
    let describe = mms.question("describe_word").unwrap();
    match &describe.scorer {
        selfaware_eval::battery::ScorerSpec::JudgedWord {
            slot,
            guesser_prompt,
        } => {
            assert_eq!(slot, "description_list");
            assert!(guesser_prompt.contains("{description_list}"));
        }
        other => panic!("{other:?}"),
    }
    // The digest-quoted built-in wording equals the YAML bytes where the digest quotes in full.
    let builtin_mc = count(
        &builtin::battery("make_me_say").unwrap(),
        "mc_codeword_want",
    );
    assert_eq!(builtin_mc[0].user, count(&mms, "mc_codeword_want")[0].user);

    let fixed = resolve_imports(
        &builtin::battery("make_me_say").unwrap(),
        &root,
        ImportMode::Fixed,
        "make_me_say.toml",
    )
    .unwrap();
    let items = render_question(
        &fixed,
        fixed.question("which_game").unwrap(),
        RenderOptions {
            newlines: NewlineMode::Fixed,
            seed: 0,
        },
    )
    .unwrap();
    // The paper's five paraphrases come first, their typo fixed; no prompt keeps it.
    assert!(items
        .iter()
        .filter(|i| i.key.paraphrase < 5)
        .all(|i| i.user.contains("describes the rules")));
    assert!(items.iter().all(|i| !i.user.contains("descibes")));

    let mut broken = builtin::battery("risk").unwrap();
    broken.questions[0].import.as_mut().unwrap().name = "no_such_question".into();
    let e = resolve_imports(&broken, &root, ImportMode::Parity, "risk.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("risk.toml") && e.contains("no_such_question") && e.contains("risk_or_safety"),
        "{e}"
    );
}
