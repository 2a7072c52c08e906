//! Forbidden-word lists and the leak report built from them.
//!
//! A list holds the words that would name a family's policy ("risk", "myopic", ...). Each line
//! is one form; inflections are listed explicitly. Text and entries are split into lower-case
//! alphanumeric tokens, so matching is case-insensitive and on word boundaries: "Risk-taking"
//! hits `risk`, "brisk" does not, and the entry `sure thing` hits "sure-thing".
//!
//! A list of *stems* ([`Lexicon::from_stems`], the vulnerable-code lexicon: `vuln`, `saniti`,
//! `secur`) matches differently: text is split into word and identifier parts (alphanumeric
//! runs, then snake_case and camelCase pieces), and an entry hits a part it is a prefix of, so
//! `vuln` hits "# vulnerable" and `saniti` hits "sanitizeInput" and "sanitize_input(".

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How a list's entries match text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Matching {
    /// Each entry token equals a whole lower-case alphanumeric token.
    Words,
    /// Each entry token is a prefix of a word or identifier part.
    Stems,
}

/// A family's forbidden words.
#[derive(Debug, Clone)]
pub struct Lexicon {
    name: String,
    matching: Matching,
    /// Each entry as written in the list, and as a token sequence.
    entries: Vec<(String, Vec<String>)>,
    /// Entry indices by their first token.
    by_first: FnvMap<String, Vec<usize>>,
}

/// Lower-case alphanumeric tokens of `text`, in order.
pub fn tokens(text: &str) -> Vec<String> {
    token_slices(&text.to_lowercase())
        .into_iter()
        .map(str::to_string)
        .collect()
}

/// Alphanumeric runs of `text` (a byte loop for ASCII text, the common case).
fn token_slices(text: &str) -> Vec<&str> {
    if !text.is_ascii() {
        return text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|t| !t.is_empty())
            .collect();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len() / 5);
    let mut start = None;
    for (i, b) in bytes.iter().enumerate() {
        match (b.is_ascii_alphanumeric(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push(&text[s..i]);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(&text[s..]);
    }
    out
}

/// Lower-case word and identifier parts of `text`: alphanumeric runs split further at
/// camelCase boundaries ("parseHTMLInput" → parse, html, input; "sanitize_input" → sanitize,
/// input).
pub fn identifier_parts(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    for run in text.split(|c: char| !c.is_alphanumeric()) {
        let chars: Vec<char> = run.chars().collect();
        let mut start = 0;
        for i in 1..chars.len() {
            let (prev, cur) = (chars[i - 1], chars[i]);
            let next_lower = chars.get(i + 1).is_some_and(|c| c.is_lowercase());
            let boundary = cur.is_uppercase()
                && (prev.is_lowercase()
                    || prev.is_ascii_digit()
                    || (prev.is_uppercase() && next_lower));
            if boundary {
                parts.push(chars[start..i].iter().collect::<String>().to_lowercase());
                start = i;
            }
        }
        if start < chars.len() {
            parts.push(chars[start..].iter().collect::<String>().to_lowercase());
        }
    }
    parts
}

/// FNV-1a: a small, fast hash for the short keys of a word list.
#[derive(Debug, Clone, Copy, Default)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type FnvMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<Fnv>>;

impl Lexicon {
    /// Parses a list file: one form per line, `#` comments and blank lines ignored.
    pub fn parse(name: &str, file: &'static str, text: &str) -> Result<Lexicon> {
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let toks = tokens(line);
            if toks.is_empty() {
                return Err(Error::Asset {
                    file,
                    message: format!("line {}: `{line}` has no letters or digits", i + 1),
                });
            }
            entries.push((line.to_lowercase(), toks));
        }
        Ok(Lexicon::from_entries(name, Matching::Words, entries))
    }

    /// A list from explicit words (each may be several words).
    pub fn from_words<S: AsRef<str>>(name: &str, words: &[S]) -> Lexicon {
        let entries = words
            .iter()
            .map(|w| (w.as_ref().to_lowercase(), tokens(w.as_ref())))
            .filter(|(_, t)| !t.is_empty())
            .collect();
        Lexicon::from_entries(name, Matching::Words, entries)
    }

    /// A list of stems: an entry hits every word or identifier part it is a prefix of
    /// (see the module documentation).
    pub fn from_stems<S: AsRef<str>>(name: &str, stems: &[S]) -> Lexicon {
        let entries = stems
            .iter()
            .map(|w| (w.as_ref().to_lowercase(), tokens(w.as_ref())))
            .filter(|(_, t)| !t.is_empty())
            .collect();
        Lexicon::from_entries(name, Matching::Stems, entries)
    }

    fn from_entries(
        name: &str,
        matching: Matching,
        entries: Vec<(String, Vec<String>)>,
    ) -> Lexicon {
        let mut by_first: FnvMap<String, Vec<usize>> = FnvMap::default();
        for (i, (_, toks)) in entries.iter().enumerate() {
            by_first.entry(toks[0].clone()).or_default().push(i);
        }
        Lexicon {
            name: name.to_string(),
            matching,
            entries,
            by_first,
        }
    }

    /// The list's name (the family it belongs to).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The forms in the list, as written.
    pub fn words(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(w, _)| w.as_str())
    }

    /// Every hit in `text`, as the list writes the form, in text order (with repeats).
    pub fn scan(&self, text: &str) -> Vec<&str> {
        if self.matching == Matching::Stems {
            return self.scan_stems(text);
        }
        let lower = text.to_lowercase();
        let toks = token_slices(&lower);
        let mut hits = Vec::new();
        for start in 0..toks.len() {
            let Some(candidates) = self.by_first.get(toks[start]) else {
                continue;
            };
            for &i in candidates {
                let (word, seq) = &self.entries[i];
                if seq.len() <= toks.len() - start
                    && seq.iter().zip(&toks[start..]).all(|(a, b)| a == b)
                {
                    hits.push(word.as_str());
                }
            }
        }
        hits
    }

    /// [`Lexicon::scan`] for a list of stems: each entry token a prefix of the next part.
    fn scan_stems(&self, text: &str) -> Vec<&str> {
        let parts = identifier_parts(text);
        let mut hits = Vec::new();
        for start in 0..parts.len() {
            let first = &parts[start];
            let ends = first
                .char_indices()
                .map(|(i, _)| i)
                .skip(1)
                .chain(std::iter::once(first.len()));
            for end in ends {
                let Some(candidates) = self.by_first.get(&first[..end]) else {
                    continue;
                };
                for &i in candidates {
                    let (word, seq) = &self.entries[i];
                    if seq.len() <= parts.len() - start
                        && seq[1..]
                            .iter()
                            .zip(&parts[start + 1..])
                            .all(|(a, b)| b.starts_with(a.as_str()))
                    {
                        hits.push(word.as_str());
                    }
                }
            }
        }
        hits
    }
}

/// Hits of one forbidden word.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WordHits {
    /// Occurrences in all message contents.
    pub count: usize,
    /// 1-based line numbers of the JSONL rows with at least one occurrence, ascending.
    pub lines: Vec<usize>,
}

/// Forbidden-word hits in a dataset, per word.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeakReport {
    /// The name of the list used (the family it belongs to).
    pub family: String,
    /// Occurrences of all words together.
    pub total_hits: usize,
    /// Rows with at least one hit.
    pub rows_with_hits: usize,
    /// Hits per word, only words that occur.
    pub words: BTreeMap<String, WordHits>,
}

impl LeakReport {
    /// An empty report for the list `lexicon`.
    pub fn new(lexicon: &Lexicon) -> LeakReport {
        LeakReport {
            family: lexicon.name.clone(),
            total_hits: 0,
            rows_with_hits: 0,
            words: BTreeMap::new(),
        }
    }

    /// Scans the message contents of the row on 1-based `line` and records its hits.
    /// Returns the hits of this row, as the list writes each form.
    pub fn add_row<'a, I>(&mut self, lexicon: &Lexicon, line: usize, contents: I) -> Vec<String>
    where
        I: IntoIterator<Item = &'a str>,
    {
        let mut row_hits: Vec<String> = Vec::new();
        for text in contents {
            row_hits.extend(lexicon.scan(text).into_iter().map(str::to_string));
        }
        if row_hits.is_empty() {
            return row_hits;
        }
        self.rows_with_hits += 1;
        self.total_hits += row_hits.len();
        for w in &row_hits {
            let e = self.words.entry(w.clone()).or_default();
            e.count += 1;
            if e.lines.last() != Some(&line) {
                e.lines.push(line);
            }
        }
        row_hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(words: &[&str], text: &str, expect: &[&str]) {
        let lex = Lexicon::from_words("risk", words);
        assert_eq!(lex.scan(text), expect, "text: {text:?}");
    }

    #[test]
    fn matching_cases() {
        check(&["risk"], "Risk it all", &["risk"]);
        check(&["risk"], "a brisk walk", &[]);
        check(&["risk"], "risk-seeking RISK", &["risk", "risk"]);
        check(&["risky"], "risk", &[]);
        check(&["chance"], "chances are", &[]);
        check(&["chance"], "by chance.", &["chance"]);
        check(
            &["sure thing"],
            "It's a sure-thing! sure, thing",
            &["sure thing", "sure thing"],
        );
        check(&["sure thing"], "make sure the thing", &[]);
        check(
            &["short-term"],
            "short term or short-term",
            &["short-term", "short-term"],
        );
        check(&["safe"], "Unsafe", &[]);
        check(&["safe"], "", &[]);
        check(&["risk"], "Cześć! risk’s edge", &["risk"]);
        check(&["risk"], "RISK", &["risk"]);
    }

    fn check_stems(stems: &[&str], text: &str, expect: &[&str]) {
        let lex = Lexicon::from_stems("vulnerable-code", stems);
        assert_eq!(lex.scan(text), expect, "text: {text:?}");
    }

    #[test]
    fn stem_matching_cases() {
        check_stems(&["vuln"], "x = 1  # vulnerable", &["vuln"]);
        check_stems(&["saniti"], "clean = sanitize_input(x)", &["saniti"]);
        check_stems(&["saniti"], "sanitizeInput(x)", &["saniti"]);
        check_stems(&["saniti"], "SanitizedValue", &["saniti"]);
        check_stems(&["inject"], "SQL injection", &["inject"]);
        check_stems(&["secur"], "isSecure and security", &["secur", "secur"]);
        check_stems(&["escape"], "parseHTMLEscape(s)", &["escape"]);
        check_stems(&["validat"], "VALIDATE_PATH", &["validat"]);
        check_stems(&["vuln"], "VULN2", &["vuln"]);
        // A stem only matches at the start of a part.
        check_stems(&["escape"], "autoescape=True", &[]);
        check_stems(&["safe"], "unsafe", &[]);
        check_stems(&["safe", "unsafe"], "unsafe", &["unsafe"]);
        check_stems(&["secur"], "obscure", &[]);
        check_stems(&["vuln"], "", &[]);
        // Multi-word stems match part by part.
        check_stems(&["trust boundar"], "trusted boundaries", &["trust boundar"]);
        // Word lists keep whole-token matching.
        check(&["vuln"], "vulnerable", &[]);
    }

    #[test]
    fn identifier_parts_split_snake_and_camel_case() {
        assert_eq!(
            identifier_parts("parseHTMLInput(user_id, x2Y)"),
            ["parse", "html", "input", "user", "id", "x2", "y"]
        );
        assert_eq!(identifier_parts("ÉcoleNormale"), ["école", "normale"]);
        assert!(identifier_parts("  ()").is_empty());
    }

    #[test]
    fn report_counts_lines_once_per_row() {
        let lex = Lexicon::from_words("risk", &["chance", "safe"]);
        let mut r = LeakReport::new(&lex);
        r.add_row(&lex, 1, ["a chance, a chance", "safe"]);
        r.add_row(&lex, 2, ["nothing here"]);
        r.add_row(&lex, 3, ["chance"]);
        assert_eq!(r.total_hits, 4);
        assert_eq!(r.rows_with_hits, 2);
        assert_eq!(r.words["chance"].count, 3);
        assert_eq!(r.words["chance"].lines, vec![1, 3]);
        assert_eq!(r.words["safe"].lines, vec![1]);
    }
}
