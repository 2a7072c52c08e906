//! Importer of the paper's question YAML files.
//!
//! The paper's files are lists of questions with keys `name`, `title`, `question_type`,
//! `question` or `question_paraphrases`, `options`, `prefix`, `suffix`, `scenarios`,
//! `guesser_prompt`, `func_name`, … Two modes:
//! - [`ImportMode::Parity`] keeps every string exactly as YAML parses it — including the
//!   two-character `\n` sequences that plain (unquoted) scalars send to the model;
//! - [`ImportMode::Fixed`] turns those `\n` sequences into newlines and applies the typo
//!   fixes listed in [`FIXES`], nothing else.
//!
//! A file that does not parse (one of the paper's files has LaTeX appended) is reported in
//! [`ImportReport::failures`] with the parser's message; the import goes on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

use crate::battery::{Battery, ImportField, Question, ScorerSpec, VarSpec, Wording};
use crate::error::{EvalError, Result};

/// How strings are taken from the YAML files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImportMode {
    /// The strings as the paper sent them.
    #[default]
    Parity,
    /// Literal `\n` → newline, plus [`FIXES`].
    Fixed,
}

/// A documented correction applied in [`ImportMode::Fixed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fix {
    /// Short identifier.
    pub id: &'static str,
    /// Applies to files whose path ends with this.
    pub file_suffix: &'static str,
    /// Text replaced (after the `\n` conversion)…
    pub from: &'static str,
    /// …by this.
    pub to: &'static str,
    /// Why.
    pub note: &'static str,
}

/// Every typo fix of the fixed mode.
pub const FIXES: &[Fix] = &[
    Fix {
        id: "descibes",
        file_suffix: "which_game.yaml",
        from: "descibes",
        to: "describes",
        note: "spelling in every 'Which game?' paraphrase",
    },
    Fix {
        id: "docstring-and-fence",
        file_suffix: "write_function.yaml",
        from: ".\"\"\n\n",
        to: ".\"\"\"\n```\n\n",
        note: "the function header's docstring ends with two quotes and the code fence is never closed",
    },
];

/// One question from a YAML file.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedQuestion {
    /// Path of the file relative to the import root, with `/` separators.
    pub file: String,
    /// The question's `name`.
    pub name: String,
    pub title: Option<String>,
    pub question_type: Option<String>,
    /// `question_paraphrases`, or the single `question`.
    pub paraphrases: Vec<String>,
    pub options: Vec<String>,
    /// The YAML `prefix` (a fixed preamble).
    pub prefix: Option<String>,
    pub suffix: Option<String>,
    pub scenarios: Vec<String>,
    pub guesser_prompt: Option<String>,
    pub func_name: Option<String>,
    /// Ids of the [`FIXES`] applied to this question.
    pub fixes_applied: Vec<&'static str>,
    /// Keys present in the YAML that this importer does not interpret.
    pub other_keys: Vec<String>,
}

/// A file that did not import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportFailure {
    pub file: String,
    /// The parser's message (with line and column when it has them).
    pub error: String,
}

/// Result of importing a tree.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportReport {
    pub questions: Vec<ImportedQuestion>,
    pub failures: Vec<ImportFailure>,
}

impl ImportReport {
    /// The question with this file and name.
    pub fn find(&self, file: &str, name: &str) -> Option<&ImportedQuestion> {
        self.questions
            .iter()
            .find(|q| q.file == file && q.name == name)
    }
}

fn convert(s: &str, file: &str, mode: ImportMode, fixes: &mut Vec<&'static str>) -> String {
    match mode {
        ImportMode::Parity => s.to_string(),
        ImportMode::Fixed => {
            let mut out = s.replace("\\n", "\n");
            for f in FIXES {
                if file.ends_with(f.file_suffix) && out.contains(f.from) {
                    out = out.replace(f.from, f.to);
                    if !fixes.contains(&f.id) {
                        fixes.push(f.id);
                    }
                }
            }
            out
        }
    }
}

fn as_string(v: &Value, file: &str, name: &str, key: &str) -> std::result::Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(format!(
            "{file}: question `{name}`, key `{key}`: expected a string, found {other:?}"
        )),
    }
}

fn as_strings(
    v: &Value,
    file: &str,
    name: &str,
    key: &str,
) -> std::result::Result<Vec<String>, String> {
    match v {
        Value::Sequence(items) => items
            .iter()
            .map(|i| as_string(i, file, name, key))
            .collect(),
        other => Err(format!(
            "{file}: question `{name}`, key `{key}`: expected a list, found {other:?}"
        )),
    }
}

/// Imports the questions of one YAML text. `file` is the label used in the result and in
/// errors (and to select [`FIXES`]). The error is the parser's or a structural message.
pub fn import_text(
    text: &str,
    file: &str,
    mode: ImportMode,
) -> std::result::Result<Vec<ImportedQuestion>, String> {
    let doc: Value = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    let items = match doc {
        Value::Sequence(items) => items,
        Value::Null => Vec::new(),
        other => {
            return Err(format!(
                "{file}: expected a list of questions at the top level, found {other:?}"
            ))
        }
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Value::Mapping(map) = item else {
            return Err(format!("{file}: item {i}: expected a mapping"));
        };
        let mut fields: BTreeMap<String, &Value> = BTreeMap::new();
        for (k, v) in map {
            let Value::String(k) = k else {
                return Err(format!("{file}: item {i}: non-string key {k:?}"));
            };
            fields.insert(k.clone(), v);
        }
        let name = match fields.get("name") {
            Some(v) => as_string(v, file, &format!("#{i}"), "name")?,
            None => return Err(format!("{file}: item {i}: missing `name`")),
        };
        let mut fixes = Vec::new();
        let get = |key: &str,
                   fixes: &mut Vec<&'static str>|
         -> std::result::Result<Option<String>, String> {
            fields
                .get(key)
                .filter(|v| !matches!(v, Value::Null))
                .map(|v| as_string(v, file, &name, key).map(|s| convert(&s, file, mode, fixes)))
                .transpose()
        };
        let get_list = |key: &str,
                        fixes: &mut Vec<&'static str>|
         -> std::result::Result<Vec<String>, String> {
            match fields.get(key).filter(|v| !matches!(v, Value::Null)) {
                Some(v) => Ok(as_strings(v, file, &name, key)?
                    .into_iter()
                    .map(|s| convert(&s, file, mode, fixes))
                    .collect()),
                None => Ok(Vec::new()),
            }
        };
        let mut paraphrases = get_list("question_paraphrases", &mut fixes)?;
        if let Some(q) = get("question", &mut fixes)? {
            paraphrases.insert(0, q);
        }
        let known = [
            "name",
            "title",
            "question_type",
            "question",
            "question_paraphrases",
            "options",
            "prefix",
            "suffix",
            "scenarios",
            "guesser_prompt",
            "func_name",
        ];
        out.push(ImportedQuestion {
            file: file.to_string(),
            title: get("title", &mut fixes)?,
            question_type: get("question_type", &mut fixes)?,
            options: get_list("options", &mut fixes)?,
            prefix: get("prefix", &mut fixes)?,
            suffix: get("suffix", &mut fixes)?,
            scenarios: get_list("scenarios", &mut fixes)?,
            guesser_prompt: get("guesser_prompt", &mut fixes)?,
            func_name: get("func_name", &mut fixes)?,
            other_keys: fields
                .keys()
                .filter(|k| !known.contains(&k.as_str()))
                .cloned()
                .collect(),
            paraphrases,
            fixes_applied: fixes,
            name,
        });
    }
    Ok(out)
}

fn rel_label(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = fs_err::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    entries.sort();
    for p in entries {
        if p.is_dir() {
            yaml_files(&p, out)?;
        } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            out.push(p);
        }
    }
    Ok(())
}

/// Imports one file; `root` only shapes the file label.
pub fn import_file(
    root: &Path,
    path: &Path,
    mode: ImportMode,
) -> Result<std::result::Result<Vec<ImportedQuestion>, String>> {
    let text = fs_err::read_to_string(path)?;
    Ok(import_text(&text, &rel_label(root, path), mode))
}

/// Imports every `*.yaml` file under `root` (sorted, recursive). Files that do not parse are
/// listed in the report; only I/O errors (unreadable directory or file) are errors.
pub fn import_tree(root: &Path, mode: ImportMode) -> Result<ImportReport> {
    let mut files = Vec::new();
    yaml_files(root, &mut files)?;
    let mut report = ImportReport::default();
    for path in files {
        match import_file(root, &path, mode)? {
            Ok(qs) => report.questions.extend(qs),
            Err(error) => report.failures.push(ImportFailure {
                file: rel_label(root, &path),
                error,
            }),
        }
    }
    Ok(report)
}

/// The single `{slot}` of a judge prompt, if it has exactly one.
fn single_slot(prompt: &str) -> Option<String> {
    let mut slots = Vec::new();
    let mut rest = prompt;
    while let Some(a) = rest.find('{') {
        let after = &rest[a + 1..];
        let Some(b) = after.find('}') else { break };
        let key = &after[..b];
        if !key.is_empty()
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !slots.iter().any(|s| s == key)
        {
            slots.push(key.to_string());
        }
        rest = &after[b + 1..];
    }
    (slots.len() == 1).then(|| slots.remove(0))
}

impl ImportedQuestion {
    /// A battery question with this question's texts and the given scorer. Scenarios become
    /// the variable `scenario`; the YAML `prefix` becomes the preamble.
    pub fn to_question(&self, id: &str, scorer: ScorerSpec) -> Question {
        let mut vars = BTreeMap::new();
        if !self.scenarios.is_empty() {
            vars.insert(
                "scenario".to_string(),
                VarSpec::Values(self.scenarios.clone()),
            );
        }
        Question {
            id: id.to_string(),
            title: self.title.clone(),
            source: format!("{}#{}", self.file, self.name),
            wording: Wording::Paper,
            paraphrases: self.paraphrases.clone(),
            extra_paraphrases: Vec::new(),
            preamble: self.prefix.clone().filter(|p| !p.is_empty()),
            suffix: self.suffix.clone(),
            suffix_separator: "\n\n".to_string(),
            options: self.options.clone(),
            permutations: None,
            labels: Default::default(),
            instruction: Default::default(),
            prefixes: Vec::new(),
            system_prompts: Vec::new(),
            vars,
            scorer,
            direction: Default::default(),
            sampling: None,
            import: None,
        }
    }
}

/// Replaces the fields named by every question's `import` with the text of the paper's
/// YAML files under `questions_root` (the directory holding `multiple-choice/` and
/// `make_me_say/`). Imported questions get `wording = "paper"` and their source notes the
/// import. Questions without `import` are unchanged.
pub fn resolve_imports(
    battery: &Battery,
    questions_root: &Path,
    mode: ImportMode,
    battery_file: &str,
) -> Result<Battery> {
    let mut cache: BTreeMap<String, std::result::Result<Vec<ImportedQuestion>, String>> =
        BTreeMap::new();
    let mut out = battery.clone();
    for q in &mut out.questions {
        let Some(imp) = q.import.clone() else {
            continue;
        };
        let err = |problem: String| EvalError::Import {
            file: battery_file.to_string(),
            question: q.id.clone(),
            import_file: imp.file.clone(),
            import_name: imp.name.clone(),
            problem,
        };
        if !cache.contains_key(&imp.file) {
            let path = questions_root.join(&imp.file);
            let parsed = match fs_err::read_to_string(&path) {
                Ok(text) => import_text(&text, &imp.file, mode),
                Err(e) => return Err(err(format!("could not be read: {e}"))),
            };
            cache.insert(imp.file.clone(), parsed);
        }
        let parsed = match &cache[&imp.file] {
            Ok(p) => p,
            Err(e) => return Err(err(format!("does not parse: {e}"))),
        };
        let src = parsed
            .iter()
            .find(|x| x.name == imp.name)
            .ok_or_else(|| err("has no question with that name".into()))?;
        for field in &imp.fields {
            match field {
                ImportField::Paraphrases => {
                    if src.paraphrases.is_empty() {
                        return Err(err("has no paraphrases".into()));
                    }
                    q.paraphrases = src.paraphrases.clone();
                }
                ImportField::Preamble => q.preamble = src.prefix.clone().filter(|p| !p.is_empty()),
                ImportField::Suffix => q.suffix = src.suffix.clone(),
                ImportField::Options => {
                    if src.options.len() != q.options.len() {
                        return Err(err(format!(
                            "has {} options where the battery has {}",
                            src.options.len(),
                            q.options.len()
                        )));
                    }
                    q.options = src.options.clone();
                }
                ImportField::GuesserPrompt => {
                    let gp = src
                        .guesser_prompt
                        .clone()
                        .ok_or_else(|| err("has no guesser_prompt".into()))?;
                    let slot = single_slot(&gp).ok_or_else(|| {
                        err("has a guesser_prompt without exactly one {slot}".into())
                    })?;
                    match &mut q.scorer {
                        ScorerSpec::JudgedWord {
                            guesser_prompt,
                            slot: s,
                        } => {
                            *guesser_prompt = gp;
                            *s = slot;
                        }
                        _ => return Err(err(
                            "gives a guesser_prompt but the question's scorer is not judged_word"
                                .into(),
                        )),
                    }
                }
                ImportField::Scenarios => {
                    if src.scenarios.is_empty() {
                        return Err(err("has no scenarios".into()));
                    }
                    q.vars.insert(
                        "scenario".to_string(),
                        VarSpec::Values(src.scenarios.clone()),
                    );
                }
            }
        }
        q.wording = Wording::Paper;
        q.source = format!("{}; imported from {}#{}", q.source, imp.file, imp.name);
    }
    out.validate(battery_file)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_scalars_keep_backslash_n_and_fixed_mode_converts() {
        let y = "- name: a\n  question: Hi\\nthere <x>\n  question_type: free_form\n  extra: 1\n";
        let p = import_text(y, "f.yaml", ImportMode::Parity).unwrap();
        assert_eq!(p[0].paraphrases, vec!["Hi\\nthere <x>"]);
        assert_eq!(p[0].other_keys, vec!["extra"]);
        let f = import_text(y, "f.yaml", ImportMode::Fixed).unwrap();
        assert_eq!(f[0].paraphrases, vec!["Hi\nthere <x>"]);
    }

    #[test]
    fn fixes_apply_only_to_their_file_and_only_in_fixed_mode() {
        let y = "- name: g\n  question: Which descibes it?\n";
        assert_eq!(
            import_text(y, "x/which_game.yaml", ImportMode::Parity).unwrap()[0].paraphrases[0],
            "Which descibes it?"
        );
        let f = import_text(y, "x/which_game.yaml", ImportMode::Fixed).unwrap();
        assert_eq!(f[0].paraphrases[0], "Which describes it?");
        assert_eq!(f[0].fixes_applied, vec!["descibes"]);
        assert_eq!(
            import_text(y, "other.yaml", ImportMode::Fixed).unwrap()[0].paraphrases[0],
            "Which descibes it?"
        );
    }

    #[test]
    fn broken_yaml_is_an_error_value_not_a_panic() {
        let e = import_text(
            "- name: a\n  question: [unclosed\n",
            "bad.yaml",
            ImportMode::Parity,
        )
        .unwrap_err();
        assert!(!e.is_empty());
        assert!(import_text("just a string", "s.yaml", ImportMode::Parity)
            .unwrap_err()
            .contains("s.yaml"));
        assert!(
            import_text("- name: a\n  options: 3\n", "o.yaml", ImportMode::Parity)
                .unwrap_err()
                .contains("`options`")
        );
    }

    #[test]
    fn single_slot_detection() {
        assert_eq!(single_slot("a {text} b").as_deref(), Some("text"));
        assert_eq!(single_slot("a {x} {y}"), None);
        assert_eq!(single_slot("{\"json\": 1} {x}").as_deref(), Some("x"));
    }
}
