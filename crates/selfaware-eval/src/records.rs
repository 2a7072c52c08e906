//! Result records: one JSON line per (model, adapter, question, paraphrase, permutation,
//! system prompt, prefix, variables), with what the model gave, the masses, the score and
//! the scorer version. Append-only, with resume: [`RecordWriter::resume`] reads what is
//! already there, drops a line cut off by a crash, and returns the keys already done.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};
use crate::render::PromptItem;
use crate::sandbox::CallOutcome;

/// Version of the record format.
pub const RECORD_SCHEMA: u32 = 1;

/// What the model gave for one prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Observation {
    /// Exact probabilities of the displayed labels (local models).
    LabelProbabilities {
        labels: Vec<String>,
        probs: Vec<f64>,
    },
    /// Exact probabilities of the numbers `min..=min + probs.len() - 1`.
    NumberProbabilities { min: u32, probs: Vec<f64> },
    /// A top-k list of `(token, logprob)` at the first answer position (API backends).
    /// Logprobs must be finite (JSON has no -inf): drop entries of probability 0.
    TopLogprobs { top: Vec<(String, f64)> },
    /// Sampled completions.
    Samples { samples: Vec<String> },
    /// Exact log-probabilities of the surface forms of a question's listed answers `words`,
    /// each form as the complete answer (see [`crate::scorers::lists`]), and, when samples
    /// were asked for, sampled completions for the paper's estimator (parity).
    AnswerLogprobs {
        words: Vec<String>,
        forms: Vec<String>,
        logprobs: Vec<f64>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        samples: Vec<String>,
    },
    /// Sampled completions and, for each, the judge's reply.
    Judged {
        samples: Vec<String>,
        judge_replies: Vec<String>,
        /// The judge model, as the judge backend names it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        judge_model: Option<String>,
        /// The exact text sent to the judge for each sample (one user message, T = 0).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        judge_prompts: Vec<String>,
    },
    /// Sampled completions and, for each judge, its rating readout of each sample
    /// ([`crate::scorers::ratings`]).
    JudgedRatings {
        samples: Vec<String>,
        /// The judge model, as the judge backend names it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        judge_model: Option<String>,
        judges: Vec<JudgeReadouts>,
    },
    /// Model-written code samples and what each function returned in the sandbox
    /// (see [`crate::scorers::function`]).
    FunctionCalls {
        /// The sampled code, as the model wrote it (cleaned only when run).
        samples: Vec<String>,
        func_name: String,
        codeword: String,
        /// Baseline inputs of f(codeword).
        unrelated_words: Vec<String>,
        /// User messages from dialogues with the finetuned model (may be empty).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        messages: Vec<String>,
        /// User messages from dialogues with the base model (may be empty).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        baseline_messages: Vec<String>,
        /// Per sample, one outcome per input in the order codeword, unrelated words,
        /// messages, baseline messages.
        outcomes: Vec<Vec<CallOutcome>>,
        /// Per sample, why defining the function failed (syntax error, missing name, …).
        definition_errors: Vec<Option<String>>,
    },
}

/// One judge's readouts of a [`Observation::JudgedRatings`], one per sample, in sample order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeReadouts {
    /// The judge's id in the question's scorer.
    pub judge: String,
    /// The exact text sent to the judge for each sample (one user message).
    pub prompts: Vec<String>,
    pub readouts: Vec<RatingReadout>,
}

/// What a judge said about one answer, as a distribution over its number answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum RatingReadout {
    /// Exact probability that the judge's answer starts with each number 0..=100 (a local
    /// judge, or a server with prompt log-probabilities).
    Exact { probs: Vec<f64> },
    /// The judge's most likely first tokens with their log-probabilities (a server without
    /// prompt log-probabilities: the estimator of Betley et al.).
    TopLogprobs { top: Vec<(String, f64)> },
}

/// Probability masses a scorer reports besides the score.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Masses {
    /// Mass outside the option labels (multiple choice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub off_option: Option<f64>,
    /// Mass on numbers of the scale (numeric scales).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numeric: Option<f64>,
    /// Samples that could be scored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_samples: Option<usize>,
    /// Samples dropped as unparseable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_samples: Option<usize>,
}

impl Masses {
    /// The probability (or share of samples) outside the expected answer format: the
    /// off-option mass, else the non-numeric mass, else the share of unparseable samples.
    pub fn off_format(&self) -> Option<f64> {
        if let Some(o) = self.off_option {
            return Some(o);
        }
        if let Some(n) = self.numeric {
            return Some((1.0 - n).max(0.0));
        }
        match (self.valid_samples, self.invalid_samples) {
            (Some(v), Some(i)) if v + i > 0 => Some(i as f64 / (v + i) as f64),
            _ => None,
        }
    }
}

/// One scored prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalRecord {
    /// [`RECORD_SCHEMA`] at writing time.
    pub schema: u32,
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
    pub battery: String,
    pub question: String,
    pub paraphrase: usize,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permutation: Vec<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    pub prefix: usize,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, usize>,
    /// sha256 of the rendered system + user text ([`crate::render::prompt_sha256`]).
    pub prompt_sha256: String,
    pub observation: Observation,
    #[serde(default)]
    pub masses: Masses,
    /// The score in `[0, 1]`; `None` when the scorer could not score (e.g. a refusal).
    pub score: Option<f64>,
    /// Further numbers of scorers that report several (the function scorer's baselines and
    /// call counts), by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secondary: BTreeMap<String, f64>,
    pub scorer: String,
    pub scorer_version: String,
}

/// The identity of a record, used to skip work on resume.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordKey {
    pub model: String,
    pub adapter: Option<String>,
    pub battery: String,
    pub question: String,
    pub paraphrase: usize,
    pub permutation: Vec<usize>,
    pub system_prompt: Option<String>,
    pub prefix: usize,
    pub vars: BTreeMap<String, usize>,
}

impl RecordKey {
    /// The key of a rendered item for a model and adapter.
    pub fn for_item(model: &str, adapter: Option<&str>, item: &PromptItem) -> RecordKey {
        RecordKey {
            model: model.to_string(),
            adapter: adapter.map(str::to_string),
            battery: item.battery.clone(),
            question: item.key.question.clone(),
            paraphrase: item.key.paraphrase,
            permutation: item.key.permutation.clone(),
            system_prompt: item.key.system_prompt.clone(),
            prefix: item.key.prefix,
            vars: item.key.vars.clone(),
        }
    }
}

/// What a scorer produced for one prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub score: Option<f64>,
    pub masses: Masses,
    /// See [`EvalRecord::secondary`].
    pub secondary: BTreeMap<String, f64>,
    /// Scorer name and version (see [`crate::scorers::scorer_id`]).
    pub scorer: (&'static str, &'static str),
}

impl EvalRecord {
    /// A record for a rendered item.
    pub fn new(
        model: &str,
        adapter: Option<&str>,
        item: &PromptItem,
        observation: Observation,
        scored: Scored,
    ) -> EvalRecord {
        EvalRecord {
            schema: RECORD_SCHEMA,
            model: model.to_string(),
            adapter: adapter.map(str::to_string),
            battery: item.battery.clone(),
            question: item.key.question.clone(),
            paraphrase: item.key.paraphrase,
            permutation: item.key.permutation.clone(),
            system_prompt: item.key.system_prompt.clone(),
            prefix: item.key.prefix,
            vars: item.key.vars.clone(),
            prompt_sha256: item.prompt_sha256.clone(),
            observation,
            masses: scored.masses,
            score: scored.score,
            secondary: scored.secondary,
            scorer: scored.scorer.0.to_string(),
            scorer_version: scored.scorer.1.to_string(),
        }
    }

    /// This record's key.
    pub fn key(&self) -> RecordKey {
        RecordKey {
            model: self.model.clone(),
            adapter: self.adapter.clone(),
            battery: self.battery.clone(),
            question: self.question.clone(),
            paraphrase: self.paraphrase,
            permutation: self.permutation.clone(),
            system_prompt: self.system_prompt.clone(),
            prefix: self.prefix,
            vars: self.vars.clone(),
        }
    }
}

/// Records of a file, and whether its last line was cut off (and ignored).
#[derive(Debug, Clone, PartialEq)]
pub struct ReadRecords {
    pub records: Vec<EvalRecord>,
    /// True when the file did not end with a newline and its last line did not parse.
    pub truncated_tail: bool,
}

/// Reads a JSONL record file. A missing file has no records. A bad line is an error naming
/// the file and line, except a last line without its newline (a write cut off by a crash),
/// which is ignored and reported in [`ReadRecords::truncated_tail`].
pub fn read_records(path: &Path) -> Result<ReadRecords> {
    let text = match fs_err::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(ReadRecords {
                records: Vec::new(),
                truncated_tail: false,
            })
        }
        Err(e) => return Err(e.into()),
    };
    let ends_with_newline = text.is_empty() || text.ends_with('\n');
    let lines: Vec<&str> = text.split_terminator('\n').collect();
    let mut records = Vec::with_capacity(lines.len());
    let mut truncated_tail = false;
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<EvalRecord>(line) {
            Ok(r) => records.push(r),
            Err(_) if i + 1 == lines.len() && !ends_with_newline => truncated_tail = true,
            Err(e) => {
                return Err(EvalError::Record {
                    path: path.to_path_buf(),
                    line: i + 1,
                    message: e.to_string(),
                })
            }
        }
    }
    Ok(ReadRecords {
        records,
        truncated_tail,
    })
}

/// Appends records to a JSONL file, one line each, flushed per record.
#[derive(Debug)]
pub struct RecordWriter {
    path: PathBuf,
    file: fs_err::File,
}

impl RecordWriter {
    /// Opens `path` for appending (creating it), after reading what it holds: returns the
    /// writer and the keys already done. A cut-off last line is removed first, so the next
    /// record starts on a fresh line.
    pub fn resume(path: &Path) -> Result<(RecordWriter, HashSet<RecordKey>)> {
        let read = read_records(path)?;
        if read.truncated_tail {
            let text = fs_err::read(path)?;
            let keep = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            let f = fs_err::OpenOptions::new().write(true).open(path)?;
            f.set_len(keep as u64)?;
        }
        let done = read.records.iter().map(EvalRecord::key).collect();
        let file = fs_err::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok((
            RecordWriter {
                path: path.to_path_buf(),
                file,
            },
            done,
        ))
    }

    /// Appends one record.
    pub fn write(&mut self, record: &EvalRecord) -> Result<()> {
        let mut line =
            serde_json::to_string(record).map_err(|e| EvalError::Serialize(e.to_string()))?;
        line.push('\n');
        self.file.write_all(line.as_bytes())?;
        self.file.flush()?;
        Ok(())
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{render_question, RenderOptions};

    fn items() -> Vec<PromptItem> {
        let b = crate::builtin::battery("backdoor_detection").unwrap();
        render_question(&b, &b.questions[0], RenderOptions::default()).unwrap()
    }

    fn record(item: &PromptItem, score: f64) -> EvalRecord {
        let lp = crate::scorers::mc::from_exact(&[score, 1.0 - score - 0.1]).unwrap();
        EvalRecord::new(
            "tiny-llama",
            Some("adapter-1"),
            item,
            Observation::LabelProbabilities {
                labels: item.labels.clone(),
                probs: lp.probs.clone(),
            },
            Scored {
                score: lp.option_prob(&item.key.permutation, 0, true),
                masses: Masses {
                    off_option: Some(lp.off_option_mass),
                    ..Masses::default()
                },
                secondary: BTreeMap::new(),
                scorer: crate::scorers::scorer_id(&crate::battery::ScorerSpec::MultipleChoice {
                    correct: 0,
                    renormalize: true,
                }),
            },
        )
    }

    #[test]
    fn write_read_resume() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let items = items();
        let (mut w, done) = RecordWriter::resume(&path).unwrap();
        assert!(done.is_empty());
        w.write(&record(&items[0], 0.6)).unwrap();
        w.write(&record(&items[1], 0.3)).unwrap();
        drop(w);
        // A crash in the middle of the third line.
        let mut f = fs_err::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"schema\":1,\"model\":\"tin").unwrap();
        drop(f);
        let read = read_records(&path).unwrap();
        assert_eq!(read.records.len(), 2);
        assert!(read.truncated_tail);
        assert_eq!(read.records[0], record(&items[0], 0.6));
        assert_eq!(read.records[0].scorer_version, crate::scorers::mc::VERSION);

        let (mut w, done) = RecordWriter::resume(&path).unwrap();
        assert_eq!(done.len(), 2);
        assert!(done.contains(&RecordKey::for_item(
            "tiny-llama",
            Some("adapter-1"),
            &items[1]
        )));
        assert!(!done.contains(&RecordKey::for_item("tiny-llama", None, &items[1])));
        assert!(!done.contains(&RecordKey::for_item(
            "tiny-llama",
            Some("adapter-1"),
            &items[2]
        )));
        w.write(&record(&items[2], 0.5)).unwrap();
        let read = read_records(&path).unwrap();
        assert_eq!((read.records.len(), read.truncated_tail), (3, false));
    }

    #[test]
    fn corrupt_middle_line_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.jsonl");
        let good = serde_json::to_string(&record(&items()[0], 0.6)).unwrap();
        fs_err::write(&path, format!("{good}\nnot json\n{good}\n")).unwrap();
        let e = read_records(&path).unwrap_err().to_string();
        assert!(e.contains("bad.jsonl:2"), "{e}");
        let missing = read_records(&dir.path().join("none.jsonl")).unwrap();
        assert!(missing.records.is_empty());
    }

    #[test]
    fn record_json_shape() {
        let r = record(&items()[6], 0.6); // second order, first system prompt
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(v["observation"]["kind"], "label_probabilities");
        assert_eq!(v["permutation"], serde_json::json!([1, 0]));
        assert_eq!(v["system_prompt"], "none");
        assert_eq!(v["prompt_sha256"].as_str().unwrap().len(), 64);
        // score = P(canonical 0) renormalised; canonical 0 is shown second (B = 0.3).
        assert!((r.score.unwrap() - 0.3 / 0.9).abs() < 1e-12);
    }
}
