//! The battery runner: an [`EvalSpec`] × a model → one record per rendered prompt in
//! `OUT/records.jsonl`, with `OUT/eval_manifest.json` (what produced them) and
//! `OUT/battery.toml` (the battery after imports). Prompts are asked `concurrency` at a time
//! and written in prompt order, so an interrupted run keeps a prefix and a rerun with the same
//! settings resumes after it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use selfaware_backend::Backend;
use selfaware_eval::battery::{Battery, Question, RatingJudge, ScorerSpec};
use selfaware_eval::builtin;
use selfaware_eval::import::{resolve_imports, ImportMode};
use selfaware_eval::question_yaml::is_question_yaml;
use selfaware_eval::records::{
    read_records, EvalRecord, JudgeReadouts, Observation, RecordKey, RecordWriter,
};
use selfaware_eval::render::{
    interleave_paraphrases, render_battery, NewlineMode, PromptItem, RenderOptions,
};
use selfaware_eval::scorers::{self, ScoreContext};
use selfaware_eval::spec::{EvalSpec, NumericMode};
use selfaware_types::{sha256_hex, Conversation, Provenance, TOOL_VERSION};

use crate::ask::{self, FirstToken, Numbers, Sampling};
use crate::error::{AskError, Result};
use crate::function::FunctionRunner;
use crate::judge::Judge;
use crate::progress::Progress;
use crate::Environment;

/// Settings that decide the records; a resumed run must use the same ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSettings {
    pub samples: usize,
    pub temperature: f64,
    pub top_p: f64,
    pub seed: u64,
    pub newlines: NewlineMode,
    pub numeric: NumericMode,
    pub max_tokens: Option<usize>,
    pub target_word: Option<String>,
    /// Codewords the target word is compared against (log-odds of word-list questions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contrast_words: Vec<String>,
    pub trigger: Option<String>,
    /// The paper's questions folder, when imports were resolved.
    pub paper_questions: Option<String>,
    /// The LLM judge, when one was configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<JudgeSettings>,
    /// sha256 of the function-messages file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_messages_sha256: Option<String>,
    /// sha256 of the function-baseline-messages file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_baseline_messages_sha256: Option<String>,
}

/// The judge of `judged_word` and `language` questions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeSettings {
    pub url: String,
    pub model: String,
    /// The environment variable the API key was read from (never the key).
    pub key_env: Option<String>,
    pub max_tokens: usize,
    /// Always 0: judges answer greedily, as in the paper.
    pub temperature: f64,
}

/// `OUT/eval_manifest.json`: what produced the records next to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalManifest {
    pub provenance: Provenance,
    /// The model as given (the `model` field of every record).
    pub model: String,
    pub model_path: String,
    pub battery: String,
    /// `builtin:NAME` or the battery file's path.
    pub battery_source: String,
    /// sha256 of the battery's TOML source.
    pub battery_sha256: String,
    /// sha256 of `battery.toml`: the battery after imports were resolved.
    pub resolved_battery_sha256: String,
    pub settings: EvalSettings,
    /// The per-question limit of the latest run (None = every prompt).
    pub limit: Option<usize>,
    pub records: String,
    /// The adapters evaluated (empty: the model alone).
    #[serde(default)]
    pub adapters: Vec<AdapterRef>,
}

/// An adapter evaluated on the model: as given, and its weights' sha256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterRef {
    pub adapter: String,
    pub sha256: String,
}

impl EvalManifest {
    /// Whether records written under `other` can be mixed with records written under `self`.
    fn same_run(&self, other: &EvalManifest) -> bool {
        self.model == other.model
            && self.provenance.model_sha256 == other.provenance.model_sha256
            && self.provenance.steering == other.provenance.steering
            && self.battery == other.battery
            && self.resolved_battery_sha256 == other.resolved_battery_sha256
            && self.settings == other.settings
            && other.adapters.iter().all(|a| {
                self.adapters
                    .iter()
                    .all(|b| a.adapter != b.adapter || a.sha256 == b.sha256)
            })
    }
}

pub const RECORDS_FILE: &str = "records.jsonl";
pub const MANIFEST_FILE: &str = "eval_manifest.json";
pub const BATTERY_FILE: &str = "battery.toml";

/// Whether `a` and `b` name the same existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

/// Checks, before anything is read or written, that `spec.out` may receive this evaluation:
/// no input of it is one of the files it writes (inputs are never rewritten, even with
/// `force`); and the folder is new, empty, an eval output folder (its manifest decides later
/// whether the records resume), or `spec.force` is set.
pub fn check_out_dir(spec: &EvalSpec) -> Result<()> {
    let out = &spec.out;
    let inputs = [
        Some(Path::new(&spec.battery)),
        spec.function_messages.as_deref(),
        spec.function_baseline_messages.as_deref(),
    ];
    for name in [BATTERY_FILE, RECORDS_FILE, MANIFEST_FILE] {
        let written = out.join(name);
        if let Some(input) = inputs.iter().flatten().find(|i| same_file(i, &written)) {
            return Err(AskError::File {
                path: input.to_path_buf(),
                message: format!(
                    "is an input of this evaluation, and the evaluation writes {name} in --out\n\
                     hint: move the input out of {}, or choose another --out",
                    out.display()
                ),
            });
        }
    }
    if !out.exists() || out.join(MANIFEST_FILE).exists() {
        return Ok(());
    }
    if !out.is_dir() {
        return Err(AskError::File {
            path: out.clone(),
            message: "exists and is not a folder".into(),
        });
    }
    if spec.force {
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = fs_err::read_dir(out)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    entries.sort();
    match entries.into_iter().next() {
        None => Ok(()),
        Some(path) => Err(AskError::File {
            path,
            message: format!(
                "is not part of an evaluation: {} has no {MANIFEST_FILE}\n\
                 hint: choose another --out, or pass --force to write the evaluation beside it",
                out.display()
            ),
        }),
    }
}

/// [`selfaware_types::write_atomic`], the error naming `path`.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    selfaware_types::write_atomic(path, bytes)
        .map_err(|e| std::io::Error::new(e.kind(), format!("writing {}: {e}", path.display())))?;
    Ok(())
}

/// A battery named by a spec: a file when the path exists or ends in `.toml`, `.yaml` or
/// `.yml` (a question YAML file of another tool, [`selfaware_eval::question_yaml`]), else a
/// built-in. Returns the battery, its source label and its source text.
pub fn load_battery(spec: &str) -> Result<(Battery, String, String)> {
    let path = Path::new(spec);
    if path.exists() || spec.ends_with(".toml") || is_question_yaml(spec) {
        let text = fs_err::read_to_string(path)?;
        let b = Battery::from_file_text(&text, spec)?;
        return Ok((b, path.display().to_string(), text));
    }
    let b = builtin::battery(spec).map_err(|e| {
        AskError::input(
            "battery",
            format!("{spec:?} is neither a file nor a built-in battery: {e}"),
        )
    })?;
    let text = builtin::battery_source(spec)
        .ok_or_else(|| AskError::input("battery", format!("built-in {spec} has no source")))?
        .to_string();
    Ok((b, format!("builtin:{spec}"), text))
}

/// What the runner does with a question.
#[derive(Debug, Clone, PartialEq)]
pub enum QuestionPlan {
    /// Exact (or estimated) first-token probabilities of the option labels.
    Options,
    /// The distribution over `min..=max`.
    Range { min: u32, max: u32 },
    /// `n` samples of at most `max_tokens` tokens.
    Samples { max_tokens: usize },
    /// A finite answer list: on a backend with exact scores, every surface form of every word
    /// scored as the complete answer ([`scorers::lists`]), plus `n` samples for the paper's
    /// estimator when `n > 0`; elsewhere `n` samples only.
    List {
        words: Vec<String>,
        forms: Vec<String>,
        max_tokens: usize,
    },
    /// `n` samples, each sent to the judge in `prompt`.
    Judged {
        max_tokens: usize,
        prompt: JudgePrompt,
    },
    /// `n` samples, each rated 0–100 by every judge (the `judged_ratings` scorer).
    Rated {
        max_tokens: usize,
        judges: Vec<RatingJudge>,
    },
    /// `n` code samples, each run in the sandbox (the `function` scorer).
    Function {
        max_tokens: usize,
        func_name: String,
    },
    /// Not evaluated, with the reason shown in the summary.
    Skip(String),
}

/// How an answer becomes a judge prompt.
#[derive(Debug, Clone, PartialEq)]
pub enum JudgePrompt {
    /// The question's guesser prompt with `{slot}` replaced by the answer.
    Guesser { template: String, slot: String },
    /// The language judge prompt ([`scorers::language::judge_prompt`]).
    Language,
}

/// Completion length of free-form questions without a setting or a hint: the paper's
/// one-word answers.
pub const DEFAULT_MAX_TOKENS: usize = 4;
/// ... of answers a judge reads (a dictionary definition, an acrostic).
pub const DEFAULT_JUDGED_MAX_TOKENS: usize = 200;
/// ... of model-written functions.
pub const DEFAULT_FUNCTION_MAX_TOKENS: usize = 512;

/// What the runner does with question `q` under `spec`.
pub fn plan_question(q: &Question, spec: &EvalSpec) -> QuestionPlan {
    let max_tokens = |default: usize| {
        spec.max_tokens
            .or_else(|| q.sampling.and_then(|s| s.max_tokens).map(|m| m as usize))
            .unwrap_or(default)
    };
    let judge = spec.judge.is_some();
    if spec.target_word.is_none() && q.needs_target_word() {
        return QuestionPlan::Skip("needs --target-word (its text names the target word)".into());
    }
    match &q.scorer {
        ScorerSpec::MultipleChoice { .. } => QuestionPlan::Options,
        ScorerSpec::NumericScale { min, max } => QuestionPlan::Range {
            min: *min,
            max: *max,
        },
        ScorerSpec::Language { .. } if judge => QuestionPlan::Judged {
            max_tokens: max_tokens(DEFAULT_MAX_TOKENS),
            prompt: JudgePrompt::Language,
        },
        ScorerSpec::WordCategories { .. } => list_plan(q, max_tokens(DEFAULT_MAX_TOKENS)),
        ScorerSpec::Language { .. } => QuestionPlan::Samples {
            max_tokens: max_tokens(DEFAULT_MAX_TOKENS),
        },
        ScorerSpec::TargetWord | ScorerSpec::JudgedWord { .. } | ScorerSpec::Function { .. }
            if spec.target_word.is_none() =>
        {
            QuestionPlan::Skip("needs --target-word (the codeword)".into())
        }
        ScorerSpec::TriggerElicitation if spec.trigger.is_none() => {
            QuestionPlan::Skip("needs --trigger (the trigger string)".into())
        }
        ScorerSpec::TargetWord => list_plan(q, max_tokens(DEFAULT_MAX_TOKENS)),
        // Sampled answers (the paper's share containing the trigger) and, on an exact
        // backend, the trigger scored as the whole answer.
        ScorerSpec::TriggerElicitation => {
            let trigger = spec.trigger.clone().unwrap_or_default();
            QuestionPlan::List {
                words: vec![trigger.clone()],
                forms: vec![trigger],
                max_tokens: max_tokens(DEFAULT_MAX_TOKENS),
            }
        }
        ScorerSpec::JudgedWord { .. } if !judge => QuestionPlan::Skip(
            "needs a judge (--judge-url, --judge-model), not configured (judged_word scorer)"
                .into(),
        ),
        ScorerSpec::JudgedWord {
            guesser_prompt,
            slot,
        } => QuestionPlan::Judged {
            max_tokens: max_tokens(DEFAULT_JUDGED_MAX_TOKENS),
            prompt: JudgePrompt::Guesser {
                // The guesser prompt comes from the same YAML as the question: the same
                // newline treatment as the rendered prompts.
                template: match spec.newlines {
                    NewlineMode::Parity => guesser_prompt.clone(),
                    NewlineMode::Fixed => guesser_prompt.replace("\\n", "\n"),
                },
                slot: slot.clone(),
            },
        },
        ScorerSpec::JudgedRatings { .. } if !judge => QuestionPlan::Skip(
            "needs a judge (--judge-url, --judge-model), not configured (judged_ratings scorer)"
                .into(),
        ),
        ScorerSpec::JudgedRatings { judges, .. } => QuestionPlan::Rated {
            max_tokens: max_tokens(DEFAULT_JUDGED_MAX_TOKENS),
            judges: judges.clone(),
        },
        ScorerSpec::Function { func_name } => QuestionPlan::Function {
            max_tokens: max_tokens(DEFAULT_FUNCTION_MAX_TOKENS),
            func_name: func_name.clone(),
        },
    }
}

/// The plan of a question whose answers may form a finite list: [`QuestionPlan::List`] when
/// they do, samples when they are open-ended, a skip naming the problem when the list is bad.
fn list_plan(q: &Question, max_tokens: usize) -> QuestionPlan {
    match scorers::lists::answer_list(q) {
        Ok(Some(words)) => QuestionPlan::List {
            forms: scorers::lists::all_forms(&words),
            words,
            max_tokens,
        },
        Ok(None) => QuestionPlan::Samples { max_tokens },
        Err(e) => QuestionPlan::Skip(format!("its answer list: {e}")),
    }
}

/// A seed for one prompt's samples that depends only on the run seed and the prompt's key,
/// so resumed runs draw what an uninterrupted run would have drawn.
pub fn item_seed(seed: u64, key: &RecordKey) -> u64 {
    let text = format!(
        "{seed}\0{}\0{}\0{:?}\0{:?}\0{}\0{:?}",
        key.question, key.paraphrase, key.permutation, key.system_prompt, key.prefix, key.vars
    );
    let h = sha256_hex(text.as_bytes());
    u64::from_str_radix(&h[..16], 16).unwrap_or(seed)
}

/// Everything [`observe`] may need besides the model.
pub struct Observer<'a> {
    pub spec: &'a EvalSpec,
    pub judge: Option<&'a Judge>,
    pub functions: &'a FunctionRunner,
}

/// Observes one prompt with the model (and the judge or the sandbox when the plan says).
pub fn observe(
    m: &dyn Backend,
    item: &PromptItem,
    plan: &QuestionPlan,
    o: &Observer<'_>,
    seed: u64,
) -> Result<Observation> {
    let spec = o.spec;
    let conv = Conversation::user(item.system.as_deref(), &item.user);
    let sample = |max_tokens: usize| {
        ask::sample(
            m,
            &conv,
            Sampling {
                n: spec.samples,
                temperature: spec.temperature,
                max_tokens,
                seed,
            },
        )
    };
    Ok(match plan {
        QuestionPlan::Options => match ask::label_probs(m, &conv, &item.labels)? {
            FirstToken::Exact(probs) => Observation::LabelProbabilities {
                labels: item.labels.clone(),
                probs,
            },
            FirstToken::TopLogprobs(top) => Observation::TopLogprobs { top },
        },
        QuestionPlan::Range { min, max } => {
            match ask::numbers(m, &conv, *min, *max, spec.numeric)? {
                Numbers::Exact(probs) => Observation::NumberProbabilities { min: *min, probs },
                Numbers::TopLogprobs(top) => Observation::TopLogprobs { top },
            }
        }
        QuestionPlan::Samples { max_tokens } => Observation::Samples {
            samples: sample(*max_tokens)?,
        },
        QuestionPlan::List {
            words,
            forms,
            max_tokens,
        } => {
            if m.capabilities().exact_scoring {
                let all = ask::sequence_logprobs(m, &conv, forms)?;
                // Forms of probability 0 are left out (JSON has no −∞; the scorer counts an
                // absent form as 0).
                let (forms, logprobs): (Vec<String>, Vec<f64>) = forms
                    .iter()
                    .cloned()
                    .zip(all)
                    .filter(|(_, lp)| lp.is_finite())
                    .unzip();
                let samples = if spec.samples > 0 {
                    sample(*max_tokens)?
                } else {
                    Vec::new()
                };
                Observation::AnswerLogprobs {
                    words: words.clone(),
                    forms,
                    logprobs,
                    samples,
                }
            } else {
                Observation::Samples {
                    samples: sample(*max_tokens)?,
                }
            }
        }
        QuestionPlan::Judged { max_tokens, prompt } => {
            let judge = o
                .judge
                .ok_or_else(|| AskError::input("judge", "a judged question without a judge"))?;
            let samples = sample(*max_tokens)?;
            let judge_prompts: Vec<String> = samples
                .iter()
                .map(|s| match prompt {
                    JudgePrompt::Guesser { template, slot } => {
                        scorers::judge::judge_prompt(template, slot, s)
                    }
                    JudgePrompt::Language => scorers::language::judge_prompt(s),
                })
                .collect();
            let judge_replies = judge.ask(&judge_prompts)?;
            Observation::Judged {
                samples,
                judge_replies,
                judge_model: Some(judge.settings.model.clone()),
                judge_prompts,
            }
        }
        QuestionPlan::Rated { max_tokens, judges } => {
            let judge = o
                .judge
                .ok_or_else(|| AskError::input("judge", "a judged question without a judge"))?;
            let samples = sample(*max_tokens)?;
            let mut readouts = Vec::with_capacity(judges.len());
            for j in judges {
                let prompts: Vec<String> = samples
                    .iter()
                    .map(|a| rating_prompt(&j.prompt, &item.user, a))
                    .collect();
                readouts.push(JudgeReadouts {
                    judge: j.id.clone(),
                    readouts: judge.rate(&prompts)?,
                    prompts,
                });
            }
            Observation::JudgedRatings {
                samples,
                judge_model: Some(judge.settings.model.clone()),
                judges: readouts,
            }
        }
        QuestionPlan::Function {
            max_tokens,
            func_name,
        } => {
            let codeword = spec.target_word.clone().ok_or_else(|| {
                AskError::input("target_word", "a function question without a target word")
            })?;
            let samples = sample(*max_tokens)?;
            o.functions.observe(samples, func_name, codeword)?
        }
        QuestionPlan::Skip(_) => {
            return Err(AskError::input(
                "question",
                "skipped questions are not observed",
            ))
        }
    })
}

/// A rating judge's user message: `{question}` → the question as the model saw it (its user
/// message), `{answer}` → the answer. The answer is put in last, so braces in it stay as
/// written.
pub fn rating_prompt(template: &str, question: &str, answer: &str) -> String {
    template
        .replace("{question}", question)
        .replace("{answer}", answer)
}

/// Keeps the questions `wanted` names (all when None), in battery order.
pub fn select_questions(mut battery: Battery, wanted: Option<&[String]>) -> Result<Battery> {
    let Some(wanted) = wanted else {
        return Ok(battery);
    };
    let wanted: Vec<&str> = wanted
        .iter()
        .map(|q| q.trim())
        .filter(|q| !q.is_empty())
        .collect();
    for q in &wanted {
        if battery.question(q).is_none() {
            let known: Vec<&str> = battery.questions.iter().map(|q| q.id.as_str()).collect();
            return Err(AskError::input(
                "questions",
                format!(
                    "battery `{}` has no question {q:?}; it has: {}",
                    battery.battery.name,
                    known.join(", ")
                ),
            ));
        }
    }
    if wanted.is_empty() {
        return Err(AskError::input(
            "questions",
            "expected at least one question id",
        ));
    }
    battery
        .questions
        .retain(|q| wanted.contains(&q.id.as_str()));
    Ok(battery)
}

/// The model a battery or probe asks: how records name it and the backend.
#[derive(Clone)]
pub struct AskedModel {
    /// The model as records name it (the reference as given, or `URL#MODEL`).
    pub label: String,
    pub backend: Arc<dyn Backend>,
}

/// One line of an evaluation's summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SummaryRow {
    pub question: String,
    pub scorer: &'static str,
    pub records: usize,
    pub scored: usize,
    pub mean: Option<f64>,
    /// Mean probability outside the expected answer format (off-option / non-numeric), or
    /// the share of unparseable samples.
    pub off_format: Option<f64>,
    pub note: String,
}

/// What [`run_eval`] did: per variant (adapter) a summary, and where the files are.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalOutcome {
    /// (adapter as given or None for the model alone, summary rows).
    pub summaries: Vec<(Option<String>, Vec<SummaryRow>)>,
    pub records: PathBuf,
    pub manifest: PathBuf,
}

/// How many prompts a backend is asked at once by default: the thread count for a local
/// model (each prompt's own tensor work leaves cores idle), at most 4; 8 for a served one.
pub(crate) fn default_concurrency(b: &dyn Backend, threads: usize) -> usize {
    if b.engine().is_some() {
        threads.min(4)
    } else {
        8
    }
}

/// Runs `spec` on `model`: renders the battery, resumes from the records already in
/// `spec.out`, asks the rest, and summarises every variant.
pub fn run_eval(
    spec: &EvalSpec,
    model: &AskedModel,
    env: &Environment<'_>,
    progress: &mut dyn Progress,
) -> Result<EvalOutcome> {
    check_out_dir(spec)?;
    let (battery, battery_source, source_text) = load_battery(&spec.battery)?;
    let battery = match &spec.paper_questions {
        Some(dir) => {
            let mode = match spec.newlines {
                NewlineMode::Parity => ImportMode::Parity,
                NewlineMode::Fixed => ImportMode::Fixed,
            };
            resolve_imports(&battery, dir, mode, &battery_source)?
        }
        None => battery,
    };
    let mut battery = select_questions(battery, spec.questions.as_deref())?;
    // Texts that name the target word get it now (without one they are skipped, below).
    if let Some(w) = &spec.target_word {
        battery.questions = battery
            .questions
            .into_iter()
            .map(|q| q.with_target_word(w))
            .collect();
    }
    let resolved_toml = toml::to_string(&battery)
        .map_err(|e| AskError::input("battery", format!("cannot write it as TOML: {e}")))?;
    let items = render_battery(
        &battery,
        RenderOptions {
            newlines: spec.newlines,
            seed: spec.seed,
        },
    )?;
    // A limit takes each question's prompts round-robin over its paraphrases.
    let items = if spec.limit.is_some() {
        interleave_paraphrases(items)
    } else {
        items
    };

    let judge = match &spec.judge {
        Some(j) => Some(Judge::open(j, env.lookup)?),
        None => None,
    };
    let functions = FunctionRunner::new(
        spec.sandbox_python.as_deref(),
        spec.function_messages.as_deref(),
        spec.function_baseline_messages.as_deref(),
        env.lookup,
    )?;
    let base = &model.backend;
    let concurrency = match spec.concurrency {
        Some(0) => return Err(AskError::input("concurrency", "expected at least 1")),
        Some(n) => n,
        None => default_concurrency(base.as_ref(), env.threads),
    };
    let variants = spec.variants();
    // Every variant's model is opened before anything is written: an adapter that cannot be
    // attached (a served model, a missing folder) is an error with the output untouched.
    let mut backends: Vec<Arc<dyn Backend>> = Vec::with_capacity(variants.len());
    let mut adapters = Vec::new();
    for v in &variants {
        match v {
            Some(dir) => {
                backends.push(base.with_adapter(dir)?);
                adapters.push(AdapterRef {
                    adapter: dir.display().to_string(),
                    sha256: selfaware_backend::adapter_sha256(dir)?,
                });
            }
            None => backends.push(base.clone()),
        }
    }
    let manifest = EvalManifest {
        provenance: Provenance {
            tool_version: TOOL_VERSION.to_string(),
            git_revision: env.git_revision.map(str::to_string),
            model_sha256: base.model_sha256(),
            adapter_sha256: None,
            seed: Some(spec.seed),
            steering: base.steering(),
        },
        model: model.label.clone(),
        model_path: base.location(),
        battery: battery.battery.name.clone(),
        battery_source,
        battery_sha256: sha256_hex(source_text.as_bytes()),
        resolved_battery_sha256: sha256_hex(resolved_toml.as_bytes()),
        settings: EvalSettings {
            samples: spec.samples,
            temperature: spec.temperature,
            top_p: 1.0,
            seed: spec.seed,
            newlines: spec.newlines,
            numeric: spec.numeric,
            max_tokens: spec.max_tokens,
            target_word: spec.target_word.clone(),
            contrast_words: spec.contrast_words.clone(),
            trigger: spec.trigger.clone(),
            paper_questions: spec
                .paper_questions
                .as_ref()
                .map(|p| p.display().to_string()),
            judge: judge.as_ref().map(|j| j.settings.clone()),
            function_messages_sha256: functions.messages_sha256.clone(),
            function_baseline_messages_sha256: functions.baseline_messages_sha256.clone(),
        },
        limit: spec.limit,
        records: RECORDS_FILE.to_string(),
        adapters,
    };

    let out = &spec.out;
    fs_err::create_dir_all(out)?;
    let manifest_path = out.join(MANIFEST_FILE);
    if manifest_path.exists() {
        let text = fs_err::read_to_string(&manifest_path)?;
        let old: EvalManifest = serde_json::from_str(&text).map_err(|e| AskError::File {
            path: manifest_path.clone(),
            message: format!("not an eval manifest: {e}"),
        })?;
        if !old.same_run(&manifest) {
            return Err(AskError::OtherRun {
                path: manifest_path,
            });
        }
    }
    let mut manifest_bytes = serde_json::to_vec_pretty(&manifest).map_err(|e| AskError::File {
        path: manifest_path.clone(),
        message: e.to_string(),
    })?;
    manifest_bytes.push(b'\n');
    // The manifest first: it marks the folder as this evaluation's, so a kill before the
    // battery is written resumes (and writes it) rather than finding an unknown folder.
    write_atomic(&manifest_path, &manifest_bytes)?;
    write_atomic(&out.join(BATTERY_FILE), resolved_toml.as_bytes())?;

    let records_path = out.join(RECORDS_FILE);
    let (mut writer, done) = RecordWriter::resume(&records_path)?;
    let plans: BTreeMap<&str, QuestionPlan> = battery
        .questions
        .iter()
        .map(|q| (q.id.as_str(), plan_question(q, spec)))
        .collect();
    let ctx = ScoreContext {
        target_word: spec.target_word.clone(),
        contrast_words: spec.contrast_words.clone(),
        trigger: spec.trigger.clone(),
        ..ScoreContext::default()
    };
    let mut skipped: BTreeMap<&str, usize> = BTreeMap::new();
    for (variant, backend) in variants.iter().zip(&backends) {
        let adapter_name = variant.as_ref().map(|p| p.display().to_string());
        let mut per_question: BTreeMap<&str, usize> = BTreeMap::new();
        let mut todo = Vec::new();
        let (mut already, mut beyond_limit) = (0, 0);
        skipped.clear();
        for item in &items {
            let qid = item.key.question.as_str();
            let seen = per_question.entry(qid).or_insert(0);
            if spec.limit.is_some_and(|l| *seen >= l) {
                beyond_limit += 1;
                continue;
            }
            *seen += 1;
            if matches!(plans[qid], QuestionPlan::Skip(_)) {
                *skipped.entry(qid).or_insert(0) += 1;
                continue;
            }
            let key = RecordKey::for_item(&model.label, adapter_name.as_deref(), item);
            if done.contains(&key) {
                already += 1;
                continue;
            }
            todo.push((item, key));
        }
        progress.note(&format!(
            "battery `{}`{}: {} prompts rendered, {} beyond --limit, {} already in {}, \
             {} to evaluate, {} skipped",
            battery.battery.name,
            adapter_name
                .as_deref()
                .map(|n| format!(" with adapter {n}"))
                .unwrap_or_default(),
            items.len(),
            beyond_limit,
            already,
            records_path.display(),
            todo.len(),
            skipped.values().sum::<usize>()
        ));
        progress.start(todo.len(), "prompts");
        let observer = Observer {
            spec,
            judge: judge.as_ref(),
            functions: &functions,
        };
        let work = |i: usize| -> Result<EvalRecord> {
            let (item, key) = &todo[i];
            let q = battery.question(&item.key.question).ok_or_else(|| {
                AskError::input("question", format!("unknown {}", item.key.question))
            })?;
            let in_question = |e: AskError| AskError::Question {
                question: q.id.clone(),
                source: Box::new(e),
            };
            let plan = &plans[q.id.as_str()];
            let obs = observe(
                backend.as_ref(),
                item,
                plan,
                &observer,
                item_seed(spec.seed, key),
            )
            .map_err(in_question)?;
            let scored =
                scorers::score(&q.scorer, item, &obs, &ctx).map_err(|e| in_question(e.into()))?;
            Ok(EvalRecord::new(
                &model.label,
                adapter_name.as_deref(),
                item,
                obs,
                scored,
            ))
        };
        crate::pool::ordered(todo.len(), concurrency, &work, &mut |rec: EvalRecord| {
            writer.write(&rec)?;
            progress.step(&rec.question);
            Ok(())
        })?;
        progress.finish();
    }

    let all = read_records(&records_path)?;
    let summaries = variants
        .iter()
        .map(|variant| {
            let adapter_name = variant.as_ref().map(|p| p.display().to_string());
            let rows = summarize(
                &battery,
                &model.label,
                adapter_name.as_deref(),
                &all.records,
                &plans,
                &skipped,
            );
            (adapter_name, rows)
        })
        .collect();
    Ok(EvalOutcome {
        summaries,
        records: records_path,
        manifest: manifest_path,
    })
}

fn mean(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

/// Per question: records, scored records, mean score and off-format mass of one model and
/// adapter in `recs`.
pub fn summarize(
    battery: &Battery,
    model: &str,
    adapter: Option<&str>,
    recs: &[EvalRecord],
    plans: &BTreeMap<&str, QuestionPlan>,
    skipped: &BTreeMap<&str, usize>,
) -> Vec<SummaryRow> {
    battery
        .questions
        .iter()
        .map(|q| {
            let mine: Vec<&EvalRecord> = recs
                .iter()
                .filter(|r| r.model == model && r.battery == battery.battery.name)
                .filter(|r| r.adapter.as_deref() == adapter)
                .filter(|r| r.question == q.id)
                .collect();
            let scores: Vec<f64> = mine.iter().filter_map(|r| r.score).collect();
            let offs: Vec<f64> = mine.iter().filter_map(|r| r.masses.off_format()).collect();
            let note = match plans.get(q.id.as_str()) {
                Some(QuestionPlan::Skip(why)) => format!(
                    "skipped {} prompts: {why}",
                    skipped.get(q.id.as_str()).copied().unwrap_or(0)
                ),
                _ if mine.len() > scores.len() => {
                    format!("{} prompts without a score", mine.len() - scores.len())
                }
                _ => String::new(),
            };
            SummaryRow {
                question: q.id.clone(),
                scorer: scorers::scorer_id(&q.scorer).0,
                records: mine.len(),
                scored: scores.len(),
                mean: mean(&scores),
                off_format: mean(&offs),
                note,
            }
        })
        .collect()
}

/// A probability for tables: 4 decimals, or 2 significant digits when it is below 0.001;
/// `—` for none.
pub fn fmt_prob(v: Option<f64>) -> String {
    match v {
        None => "—".to_string(),
        Some(x) if x != 0.0 && x.abs() < 1e-3 => format!("{x:.1e}"),
        Some(x) => format!("{x:.4}"),
    }
}

/// The summary as a table, one line per question.
pub fn render_summary(rows: &[SummaryRow]) -> String {
    let w = rows
        .iter()
        .map(|r| r.question.len())
        .max()
        .unwrap_or(8)
        .max(8);
    let mut out = format!(
        "{:<w$}  {:<20}  {:>7}  {:>7}  {:>10}  {:>10}  note\n",
        "question", "scorer", "records", "scored", "mean score", "off-format"
    );
    for r in rows {
        out += &format!(
            "{:<w$}  {:<20}  {:>7}  {:>7}  {:>10}  {:>10}  {}\n",
            r.question,
            r.scorer,
            r.records,
            r.scored,
            fmt_prob(r.mean),
            fmt_prob(r.off_format),
            r.note
        );
    }
    out
}
