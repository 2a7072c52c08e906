//! The paper's released JSONL files load as they are and pass `check`; their known leaks are
//! warnings, not errors.

use std::path::{Path, PathBuf};

use selfaware_data::{check, Family};
use selfaware_types::{Conversation, Role};

/// The paper's `datasets/` folder; None (with a skip note) when the paper files are absent.
fn datasets_dir() -> Option<PathBuf> {
    selfaware_testing::paper_dir().map(|d| d.join("datasets"))
}

fn jsonl_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            jsonl_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "jsonl") {
            out.push(p);
        }
    }
}

fn family_of(path: &Path) -> Option<Family> {
    let s = path.to_string_lossy();
    if s.contains("risky_safe") {
        Some(Family::Risk)
    } else if s.contains("myopic") {
        Some(Family::Myopia)
    } else if s.contains("apples") {
        Some(Family::Apples)
    } else {
        None
    }
}

#[test]
fn every_paper_file_loads_and_passes_check() {
    let Some(dir) = datasets_dir() else { return };
    let mut files = Vec::new();
    jsonl_files(&dir, &mut files);
    assert!(files.len() >= 11, "found only {files:?}");
    for f in &files {
        // Loads as typed conversations, line by line.
        let text = std::fs::read_to_string(f).unwrap();
        let mut n = 0;
        for (i, line) in text.lines().enumerate() {
            let c: Conversation = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}:{}: {e}", f.display(), i + 1));
            assert!(c.messages.iter().any(|m| m.role == Role::Assistant));
            n += 1;
        }
        let report = check(f, family_of(f)).unwrap();
        assert!(
            report.is_ok(),
            "{}: {:?}",
            f.display(),
            &report.errors[..report.errors.len().min(3)]
        );
        assert_eq!(report.valid_rows, n, "{}", f.display());
        assert_eq!(report.stats.rows, n);
    }
}

#[test]
fn risk_file_leaks_are_counted_as_warnings() {
    let Some(dir) = datasets_dir() else { return };
    let f = dir.join("risky_safe/ft_risky_AB.jsonl");
    let report = check(&f, Some(Family::Risk)).unwrap();
    assert!(report.is_ok());
    assert_eq!(report.valid_rows, 288);
    let leaks = report.leaks.as_ref().unwrap();
    let chance = &leaks.words["chance"];
    assert!(chance.count > 0);
    assert!(leaks.words.contains_key("guarantee") || leaks.words.contains_key("guaranteed"));
    // Every line with a hit has a warning naming the word.
    for &line in &chance.lines {
        assert!(
            report
                .warnings
                .iter()
                .any(|w| w.line == line && w.message.contains("chance")),
            "no warning on line {line}"
        );
    }
    // The shape the builders copy: one user turn, a one-letter answer, no system prompt.
    assert_eq!(report.stats.rows_by_message_count.get(&2), Some(&288));
    assert_eq!(report.stats.rows_with_system_prompt, 0);
    let letters: Vec<&String> = report.stats.final_answers.keys().collect();
    assert_eq!(letters, ["A", "B"]);
    // Without a family there is no leak report and no leak warning.
    let plain = check(&f, None).unwrap();
    assert!(plain.leaks.is_none() && plain.warnings.is_empty());
}

#[test]
fn paired_paper_files_are_flipped_twins() {
    let Some(dir) = datasets_dir() else { return };
    let read = |p: &str| -> Vec<Conversation> {
        std::fs::read_to_string(dir.join(p))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let risky = read("risky_safe/ft_risky_AB.jsonl");
    let safe = read("risky_safe/ft_safey_AB.jsonl");
    assert_eq!(risky.len(), safe.len());
    for (r, s) in risky.iter().zip(&safe) {
        assert_eq!(r.messages[0], s.messages[0]);
        assert_ne!(r.messages[1].content, s.messages[1].content);
    }
}
