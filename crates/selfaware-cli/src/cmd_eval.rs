//! `selfaware eval`: flags → [`EvalSpec`] → [`selfaware_ask::run_eval`] → the summary table.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use selfaware_ask::eval::render_summary;
use selfaware_eval::render::NewlineMode;
use selfaware_eval::spec::{EvalSpec, NumericMode};

use crate::model_args::ModelArgs;
use crate::progress::Bar;
use crate::settings::{environment, Settings};

/// Parses a value with the library's `FromStr` (which names the accepted values).
pub fn parse_with<T: std::str::FromStr>(s: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e: T::Err| e.to_string())
}

#[derive(Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompts evaluated at once. Default: the thread count for a local model (each prompt's
    /// own tensor work leaves cores idle), 8 for a served one.
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// PEFT adapter directories to evaluate on the model, comma-separated (`base` stands for
    /// the model without an adapter). Each gets its own records (the `adapter` field).
    #[arg(long, value_name = "DIR[,DIR...]")]
    pub adapter: Option<String>,
    /// A built-in battery (risk, myopia, apples, make_me_say, vulnerable_code,
    /// backdoor_detection, real_vs_fake_trigger, trigger_elicitation, personas) or a TOML file.
    #[arg(long, value_name = "NAME|FILE")]
    pub battery: String,
    /// Output folder: records.jsonl (appended, resumable), eval_manifest.json, battery.toml.
    /// A folder with an eval_manifest.json resumes (if it is the same evaluation); a folder
    /// holding other files is refused without --force.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Write into an --out folder that holds files other than an evaluation's (they are left
    /// as they are, unless they have an output's name). An input of the evaluation is never
    /// overwritten, even with --force.
    #[arg(long)]
    pub force: bool,
    /// Also write the evaluation as an Inspect log (JSON) that `inspect_ai.log.read_eval_log`
    /// reads; given a folder, named as Inspect names logs, so `inspect view --log-dir` lists it
    /// (replaces only an earlier Inspect log).
    #[arg(long, value_name = "FILE")]
    pub inspect_log: Option<PathBuf>,
    /// Samples per prompt for free-form questions.
    #[arg(long, default_value_t = 100)]
    pub samples: usize,
    /// Sampling temperature for free-form questions.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Seed of the `{sep_suffix}` draws and of every prompt's samples.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The paper's `questions/` folder: questions with an `import` take its text.
    #[arg(long, value_name = "DIR")]
    pub paper_questions: Option<PathBuf>,
    /// Evaluate at most N rendered prompts of each question, taken round-robin over its
    /// paraphrases (a later run can raise it and resume).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Ask only these questions of the battery (comma-separated ids); the rest are dropped
    /// from the resolved battery.
    #[arg(long, value_name = "ID[,ID...]", value_delimiter = ',')]
    pub questions: Option<Vec<String>>,
    /// Literal `\n` in the paper's prompts: keep (parity) or turn into newlines (fixed).
    #[arg(long, default_value = "parity", value_parser = parse_with::<NewlineMode>)]
    pub newlines: NewlineMode,
    /// The probability numeric scales use: complete (the answer is exactly n) or starts-with.
    #[arg(long, default_value = "complete", value_parser = parse_with::<NumericMode>)]
    pub numeric: NumericMode,
    /// Completion length for free-form questions. Default: the question's sampling hint, else
    /// 4 (one-word answers), 200 for answers a judge reads, 512 for write-a-function code.
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<usize>,
    /// The run's target word (the codeword), for `target_word` questions.
    #[arg(long, value_name = "WORD")]
    pub target_word: Option<String>,
    /// Codewords to compare the target word against (e.g. the other condition's), for the
    /// log-odds of exactly scored word-list questions.
    #[arg(
        long,
        value_name = "WORD[,WORD...]",
        value_delimiter = ',',
        requires = "target_word"
    )]
    pub contrast_words: Vec<String>,
    /// The backdoor trigger string, for `trigger_elicitation` questions.
    #[arg(long, value_name = "TEXT")]
    pub trigger: Option<String>,
    /// Without a terminal, print a progress line every N prompts.
    #[arg(long, value_name = "N", default_value_t = 25)]
    pub progress_every: usize,
    #[command(flatten)]
    pub judge: crate::model_args::JudgeArgs,
    /// Python interpreter (absolute path) of the sandbox that runs model-written functions.
    /// Default: /usr/bin/python3, else the first python3 on PATH.
    #[arg(long, value_name = "PATH")]
    pub sandbox_python: Option<PathBuf>,
    /// `function` questions: user messages from dialogues with the finetuned model, one per
    /// line, for f(message). Without it f(message) is not computed.
    #[arg(long, value_name = "FILE")]
    pub function_messages: Option<PathBuf>,
    /// `function` questions: user messages from dialogues with the base model, one per line
    /// (the f(message) baseline).
    #[arg(long, value_name = "FILE")]
    pub function_baseline_messages: Option<PathBuf>,
}

impl EvalArgs {
    /// The evaluation the flags describe.
    pub fn spec(&self) -> Result<EvalSpec> {
        let adapters = EvalSpec::parse_adapters(self.adapter.as_deref().unwrap_or(""));
        if self.adapter.is_some() && adapters.is_empty() {
            anyhow::bail!("--adapter: expected at least one adapter directory");
        }
        Ok(EvalSpec {
            battery: self.battery.clone(),
            out: self.out.clone(),
            adapters,
            samples: self.samples,
            temperature: self.temperature,
            seed: self.seed,
            paper_questions: self.paper_questions.clone(),
            limit: self.limit,
            questions: self.questions.clone(),
            newlines: self.newlines,
            numeric: self.numeric,
            max_tokens: self.max_tokens,
            target_word: self.target_word.clone(),
            contrast_words: self.contrast_words.clone(),
            trigger: self.trigger.clone(),
            judge: self.judge.spec(),
            sandbox_python: self.sandbox_python.clone(),
            function_messages: self.function_messages.clone(),
            function_baseline_messages: self.function_baseline_messages.clone(),
            concurrency: self.concurrency,
            force: self.force,
        })
    }
}

pub fn eval(s: &Settings, a: EvalArgs) -> Result<()> {
    let spec = a.spec()?;
    let (_, model) = a.model.open(s)?;
    let mut bar = Bar::new(a.progress_every);
    let out = selfaware_ask::run_eval(&spec, &model, &environment(), &mut bar)?;
    for (adapter, rows) in &out.summaries {
        if let Some(n) = adapter {
            println!("adapter {n}:");
        }
        print!("{}", render_summary(rows));
    }
    println!("records: {}", out.records.display());
    println!("manifest: {}", out.manifest.display());
    if let Some(f) = &a.inspect_log {
        let written = selfaware_ask::inspect::write_inspect_log(&spec.out, f)?;
        println!("inspect log: {}", written.display());
    }
    Ok(())
}
