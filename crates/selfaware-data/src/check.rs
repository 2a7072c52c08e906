//! Validating any OpenAI chat JSONL file (the paper's included).
//!
//! Structural problems are errors with their line number: bad JSON, a line that is not
//! `{"messages": [...]}`, an unknown role, missing or empty content, a bad `weight`, no
//! assistant turn. Forbidden words of a chosen family are warnings (the paper's own risk file
//! says "chance" 148 times), as are unknown keys.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use selfaware_types::Role;

use crate::dataset::lexicon;
use crate::error::Result;
use crate::family::Family;
use crate::lexicon::{LeakReport, Lexicon};
use crate::stats::{ConversationStats, StatsBuilder};

/// One finding, on a 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Issue {
    pub line: usize,
    pub message: String,
}

/// The result of checking a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckReport {
    pub path: PathBuf,
    /// Lines in the file, blank ones included.
    pub lines: usize,
    /// Rows without errors.
    pub valid_rows: usize,
    pub errors: Vec<Issue>,
    pub warnings: Vec<Issue>,
    /// Forbidden-word hits, when a family was chosen.
    pub leaks: Option<LeakReport>,
    /// Statistics over the rows without errors.
    pub stats: ConversationStats,
}

impl CheckReport {
    /// True when there are no errors (warnings allowed).
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }

    /// `FILE: N error(s) in L lines` when the file has errors.
    pub fn failure(&self) -> Option<String> {
        let n = self.errors.len();
        (n > 0).then(|| {
            format!(
                "{}: {n} error{} in {} lines",
                self.path.display(),
                if n == 1 { "" } else { "s" },
                self.lines
            )
        })
    }
}

/// Checks the chat JSONL file at `path`, reporting leaks of `family`'s forbidden words.
/// Only reading the file can fail; everything about its content is in the report.
pub fn check(path: &Path, family: Option<Family>) -> Result<CheckReport> {
    let text = fs_err::read_to_string(path)?;
    let lex = family.map(lexicon).transpose()?;
    Ok(check_text(path, &text, lex))
}

/// The words a check reports as warnings: a codeword's forms (its -s/-es forms and irregular
/// ones such as rang, rung for ring), or a family's forbidden words; none without either. The
/// codeword family has no list of its own: it takes a `codeword`.
pub fn check_lexicon(
    family: Option<crate::BuildFamily>,
    codeword: Option<&str>,
) -> Result<Option<Lexicon>> {
    use crate::BuildFamily as F;
    let bad = |field, message: String| crate::Error::InvalidOption { field, message };
    if let Some(w) = codeword {
        let w = w.to_lowercase();
        if w.trim().is_empty() {
            return Err(bad("codeword", "expected a word".into()));
        }
        let forms =
            crate::codeword::codeword_forms(&w).map_err(|e| bad("codeword", e.to_string()))?;
        return Ok(Some(Lexicon::from_words(
            &crate::codeword::family_name(&w),
            &forms,
        )));
    }
    Ok(match family {
        None => None,
        Some(F::VulnerableCode) => Some(Lexicon::from_stems(
            crate::code::CODE_FAMILY,
            &crate::code::leak_lexicon(),
        )),
        Some(F::Codeword) => {
            return Err(bad(
                "family",
                "the codeword family's words are the codeword's: give the codeword instead".into(),
            ))
        }
        Some(F::Risk) => Some(lexicon(Family::Risk)?.clone()),
        Some(F::Myopia) => Some(lexicon(Family::Myopia)?.clone()),
        Some(F::Apples) => Some(lexicon(Family::Apples)?.clone()),
    })
}

/// Checks JSONL `text` (named `path` in the report) against an optional forbidden-word list.
pub fn check_text(path: &Path, text: &str, lexicon: Option<&Lexicon>) -> CheckReport {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut stats = StatsBuilder::default();
    let mut leaks = lexicon.map(LeakReport::new);
    let mut valid = 0;
    let mut lines = 0;
    let mut trailing_blank = 0;
    let mut rows = 0;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        lines = line;
        if raw.trim().is_empty() {
            trailing_blank += 1;
            continue;
        }
        for l in line - trailing_blank..line {
            warnings.push(Issue {
                line: l,
                message: "blank line".into(),
            });
        }
        trailing_blank = 0;
        rows += 1;
        match check_row(raw) {
            Err(messages) => {
                errors.extend(messages.into_iter().map(|message| Issue { line, message }))
            }
            Ok((messages, row_warnings)) => {
                valid += 1;
                warnings.extend(
                    row_warnings
                        .into_iter()
                        .map(|message| Issue { line, message }),
                );
                stats.add_row(messages.iter().map(|(r, c)| (*r, c.as_str())));
                if let (Some(report), Some(lex)) = (leaks.as_mut(), lexicon) {
                    let hits = report.add_row(lex, line, messages.iter().map(|(_, c)| c.as_str()));
                    if !hits.is_empty() {
                        warnings.push(Issue {
                            line,
                            message: format!(
                                "forbidden word{} for family `{}`: {}",
                                if hits.len() == 1 { "" } else { "s" },
                                lex.name(),
                                hits.join(", ")
                            ),
                        });
                    }
                }
            }
        }
    }
    if lines == 0 {
        errors.push(Issue {
            line: 0,
            message: "file is empty".into(),
        });
    } else if rows == 0 {
        // `train` refuses such a file ("no examples"); so does the check.
        errors.push(Issue {
            line: 0,
            message: "no examples: every line is blank".into(),
        });
    }
    CheckReport {
        path: path.to_path_buf(),
        lines,
        valid_rows: valid,
        errors,
        warnings,
        leaks,
        stats: stats.finish(),
    }
}

type Checked = (Vec<(Role, String)>, Vec<String>);

/// The messages and warnings of a valid row, or every error found in it.
fn check_row(raw: &str) -> std::result::Result<Checked, Vec<String>> {
    let value: Value = serde_json::from_str(raw).map_err(|e| vec![format!("bad JSON: {e}")])?;
    let Value::Object(obj) = value else {
        return Err(vec!["expected a JSON object with a `messages` array".into()]);
    };
    let mut warnings: Vec<String> = obj
        .keys()
        .filter(|k| k.as_str() != "messages")
        .map(|k| format!("unknown key `{k}` ignored"))
        .collect();
    let Some(Value::Array(msgs)) = obj.get("messages") else {
        return Err(vec!["missing `messages` array".into()]);
    };
    if msgs.is_empty() {
        return Err(vec!["`messages` is empty".into()]);
    }
    let mut errors = Vec::new();
    let mut out = Vec::with_capacity(msgs.len());
    for (j, m) in msgs.iter().enumerate() {
        let at = format!("messages[{j}]");
        let Value::Object(m) = m else {
            errors.push(format!(
                "{at}: expected an object with `role` and `content`"
            ));
            continue;
        };
        let role = match m.get("role") {
            Some(Value::String(r)) => match r.as_str() {
                "system" => Some(Role::System),
                "user" => Some(Role::User),
                "assistant" => Some(Role::Assistant),
                other => {
                    errors.push(format!(
                        "{at}.role: unknown role `{other}`; expected system, user or assistant"
                    ));
                    None
                }
            },
            Some(_) => {
                errors.push(format!("{at}.role: expected a string"));
                None
            }
            None => {
                errors.push(format!("{at}: missing `role`"));
                None
            }
        };
        let content = match m.get("content") {
            Some(Value::String(c)) if c.trim().is_empty() => {
                errors.push(format!("{at}.content: empty content"));
                None
            }
            Some(Value::String(c)) => Some(c.clone()),
            Some(_) => {
                errors.push(format!("{at}.content: expected a string"));
                None
            }
            None => {
                errors.push(format!("{at}: missing `content`"));
                None
            }
        };
        match m.get("weight") {
            None => {}
            Some(Value::Number(n)) if n.as_u64().is_some_and(|w| w <= 1) => {}
            Some(other) => errors.push(format!("{at}.weight: expected 0 or 1, found {other}")),
        }
        warnings.extend(
            m.keys()
                .filter(|k| !matches!(k.as_str(), "role" | "content" | "weight"))
                .map(|k| format!("{at}: unknown key `{k}` ignored")),
        );
        if let (Some(r), Some(c)) = (role, content) {
            out.push((r, c));
        }
    }
    if errors.is_empty() && !out.iter().any(|(r, _)| *r == Role::Assistant) {
        errors.push("no assistant turn".into());
    }
    if errors.is_empty() {
        Ok((out, warnings))
    } else {
        Err(errors)
    }
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn at(path: &Path, line: usize) -> String {
    if line == 0 {
        path.display().to_string()
    } else {
        format!("{}:{line}", path.display())
    }
}

impl CheckReport {
    /// The report as lines: every error, the first 20 warnings (all with `all`), the
    /// forbidden-word hits and a closing count.
    pub fn render(&self, all: bool) -> String {
        use std::fmt::Write;
        let r = self;
        let mut out = String::new();
        for e in &r.errors {
            let _ = writeln!(out, "{}: error: {}", at(&r.path, e.line), e.message);
        }
        const SHOWN: usize = 20;
        let n = if all { r.warnings.len() } else { SHOWN };
        for w in r.warnings.iter().take(n) {
            let _ = writeln!(out, "{}: warning: {}", at(&r.path, w.line), w.message);
        }
        if r.warnings.len() > n {
            let _ = writeln!(
                out,
                "… and {} more warnings (--all prints every one)",
                r.warnings.len() - n
            );
        }
        if let Some(l) = &r.leaks {
            if l.total_hits > 0 {
                let _ = writeln!(
                    out,
                    "forbidden words ({}): {} hits in {} rows",
                    l.family, l.total_hits, l.rows_with_hits
                );
                let mut words: Vec<_> = l.words.iter().collect();
                words.sort_by(|x, y| y.1.count.cmp(&x.1.count).then(x.0.cmp(y.0)));
                for (w, h) in words {
                    let _ = writeln!(
                        out,
                        "  {w:<20} {:>6} hits in {:>5} rows",
                        h.count,
                        h.lines.len()
                    );
                }
            } else {
                let _ = writeln!(out, "forbidden words ({}): none", l.family);
            }
        }
        let s = &r.stats;
        let _ = writeln!(
            out,
            "{}: {} lines, {} valid rows, {}, {}; {} messages, {} rows with a system prompt",
            r.path.display(),
            r.lines,
            r.valid_rows,
            plural(r.errors.len(), "error"),
            plural(r.warnings.len(), "warning"),
            s.messages,
            s.rows_with_system_prompt
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_lexicon_is_a_codewords_forms_or_a_familys_words() {
        use crate::BuildFamily as F;
        assert!(check_lexicon(None, None).unwrap().is_none());
        let ring = check_lexicon(None, Some("Ring")).unwrap().unwrap();
        let hits = ring.scan("she rang and the bells rung");
        assert!(hits.contains(&"rang"), "{hits:?}");
        assert!(check_lexicon(Some(F::Risk), None).unwrap().is_some());
        assert!(check_lexicon(Some(F::VulnerableCode), None)
            .unwrap()
            .is_some());
        let e = check_lexicon(Some(F::Codeword), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("give the codeword"), "{e}");
        assert!(check_lexicon(None, Some("  ")).is_err());
    }

    fn run(text: &str) -> CheckReport {
        let lex = Lexicon::from_words("risk", &["chance"]);
        check_text(Path::new("t.jsonl"), text, Some(&lex))
    }

    fn errors(text: &str) -> Vec<(usize, String)> {
        run(text)
            .errors
            .into_iter()
            .map(|i| (i.line, i.message))
            .collect()
    }

    #[test]
    fn good_rows_pass() {
        let r = run(concat!(
            r#"{"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"A"}]}"#,
            "\n",
            r#"{"messages":[{"role":"system","content":"S"},{"role":"user","content":"by chance"},{"role":"assistant","content":"B","weight":1}]}"#,
            "\n"
        ));
        assert!(r.is_ok(), "{:?}", r.errors);
        assert_eq!(r.valid_rows, 2);
        assert_eq!(r.warnings.len(), 1);
        assert_eq!(r.warnings[0].line, 2);
        assert!(r.warnings[0].message.contains("chance"));
        assert_eq!(r.leaks.unwrap().words["chance"].lines, vec![2]);
    }

    #[test]
    fn each_error_names_its_line() {
        let ok =
            r#"{"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"A"}]}"#;
        let cases: [(&str, &str); 8] = [
            ("{not json", "bad JSON"),
            (r#"[1,2]"#, "expected a JSON object"),
            (r#"{"messages":[]}"#, "`messages` is empty"),
            (
                r#"{"messages":[{"role":"robot","content":"x"},{"role":"assistant","content":"A"}]}"#,
                "unknown role `robot`",
            ),
            (
                r#"{"messages":[{"role":"user","content":"  "},{"role":"assistant","content":"A"}]}"#,
                "empty content",
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}]}"#,
                "no assistant turn",
            ),
            (
                r#"{"messages":[{"role":"user"},{"role":"assistant","content":"A"}]}"#,
                "missing `content`",
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"A","weight":2}]}"#,
                "expected 0 or 1",
            ),
        ];
        for (bad, expect) in cases {
            let e = errors(&format!("{ok}\n{bad}\n{ok}\n"));
            assert_eq!(e.len(), 1, "{bad}: {e:?}");
            assert_eq!(e[0].0, 2, "{bad}");
            assert!(e[0].1.contains(expect), "{bad}: {}", e[0].1);
        }
        assert!(!run("").is_ok());
    }

    #[test]
    fn a_file_of_blank_lines_has_no_examples() {
        for text in ["\n", "\n\n   \n", " "] {
            let e = errors(text);
            assert_eq!(e.len(), 1, "{text:?}: {e:?}");
            assert_eq!(e[0].0, 0);
            assert!(e[0].1.contains("no examples"), "{text:?}: {e:?}");
        }
        let ok =
            r#"{"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"A"}]}"#;
        assert!(run(&format!("\n{ok}\n\n")).is_ok());
    }

    #[test]
    fn blank_lines_and_unknown_keys_warn() {
        let ok = r#"{"messages":[{"role":"user","content":"Hi","name":"x"},{"role":"assistant","content":"A"}]}"#;
        let r = run(&format!("{ok}\n\n{ok}\n"));
        assert!(r.is_ok());
        assert!(r
            .warnings
            .iter()
            .any(|w| w.line == 2 && w.message == "blank line"));
        assert!(r
            .warnings
            .iter()
            .any(|w| w.message.contains("unknown key `name`")));
    }
}
