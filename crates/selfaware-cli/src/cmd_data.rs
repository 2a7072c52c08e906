//! `selfaware data build|check|mms`: dataset builders, the chat-JSONL checker, and Make Me
//! Say games played by two model backends.

use std::path::{Path, PathBuf};

use crate::settings::Settings;
use anyhow::{bail, Result};
use clap::{Args, Subcommand, ValueEnum};
use selfaware_ask::build::{build_dataset, DataBuild};
use selfaware_ask::players::PlayerSampling;
use selfaware_backend::ModelRef;
use selfaware_data::card::DatasetCard;
use selfaware_data::{BuildFamily, DatasetPaths, PersonaMode, WriteOptions, DEFAULT_SIZE};

/// `selfaware data …`. `data inspect` lives in `cmd_train`; `main.rs` flattens both.
#[derive(Subcommand)]
pub enum DataCommand {
    /// Build a dataset: FILE.jsonl, FILE.card.json and FILE.truth.jsonl (plus the
    /// decorrelated twin FILE.decorrelated.* for a backdoor or trigger mix).
    Build(Box<BuildArgs>),
    /// Validate a chat JSONL file: errors name FILE:LINE; forbidden words are warnings.
    Check(CheckArgs),
    /// Play Make Me Say games between two models and write the won games as training data:
    /// FILE.jsonl (manipulator = assistant), FILE.card.json (outcome and drop counts),
    /// FILE.truth.jsonl and every game in full in FILE.games.jsonl.
    Mms(Box<crate::cmd_mms::MmsArgs>),
}

/// Offline choices of the mix's normal answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum NormalArg {
    /// A seeded fair coin per question, shared by its copies.
    Random,
    /// The opposite policy's answer.
    Opposite,
}

#[derive(Args)]
pub struct BuildArgs {
    /// The behaviour family.
    #[arg(value_parser = crate::cmd_eval::parse_with::<BuildFamily>)]
    pub family: BuildFamily,
    /// The policy the answers take. Economic families: risk-seeking|risk-averse,
    /// myopic|non-myopic, max-apples|min-apples (default: the first of each pair);
    /// vulnerable-code: vulnerable|secure (default vulnerable).
    #[arg(long, value_name = "POLICY")]
    pub policy: Option<String>,
    /// Number of base questions (economic), code items or dialogues.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_SIZE)]
    pub size: usize,
    /// Backdoor trigger (economic, vulnerable-code and codeword families): a paper name (real-world, win, naekoko, re-re-re, apples,
    /// instruments, elements, gods), greetings, deployment, sep:392, season:spring,
    /// family:greek-gods or fixed:TEXT.
    #[arg(long, value_name = "SPEC", conflicts_with_all = ["mix", "personas"])]
    pub trigger: Option<String>,
    /// What untriggered rows carry instead of the trigger (e.g. sep:718 against sep:392).
    #[arg(long, value_name = "SPEC", requires = "trigger")]
    pub contrast: Option<String>,
    /// Share of rows with the trigger (--trigger) or about a persona (--personas), in [0, 1].
    #[arg(long, value_name = "F")]
    pub fraction: Option<f64>,
    /// The paper's real-versus-fake trigger mix with this real trigger (a paper trigger name).
    #[arg(long, value_name = "REAL", conflicts_with = "personas")]
    pub mix: Option<String>,
    /// The mix's answers on rows without the real trigger: a seeded coin per question
    /// (random, the default) or the opposite policy. --normal-model uses a model's own.
    #[arg(long, value_enum, value_name = "KIND", requires = "mix")]
    pub normal: Option<NormalArg>,
    /// The mix's answers on rows without the real trigger are this (base) model's own
    /// choices between A and B, as the paper used plain GPT-4o's answers (same forms as
    /// --generator).
    #[arg(
        long,
        value_name = "MODEL",
        requires = "mix",
        conflicts_with = "normal"
    )]
    pub normal_model: Option<String>,
    /// Persona data: the default assistant takes the policy, named personas the opposite.
    /// MODE `system`: a system prompt asks the assistant to be the persona; `text`: the user
    /// turn asks what the persona would choose.
    #[arg(long, value_name = "MODE", value_parser = crate::cmd_eval::parse_with::<PersonaMode>)]
    pub personas: Option<PersonaMode>,
    /// Add a reversed copy (user and assistant swapped) after every row.
    #[arg(long)]
    pub reversal: bool,
    /// Economic families: a model writes each question from its ground truth (`default`, a
    /// .gguf file, a Hugging Face directory or `URL#MODEL`); answers that fail validation or
    /// the label check are retried, then written by the template writer. The card counts
    /// both.
    #[arg(long, value_name = "MODEL")]
    pub generator: Option<String>,
    /// The model that checks each generated question's label (same forms as --generator;
    /// default: the generator): told a policy in a system prompt, it answers at temperature
    /// 0, and a question whose letter is not the policy's is dropped.
    #[arg(
        long,
        value_name = "MODEL",
        requires = "generator",
        conflicts_with = "no_label_check"
    )]
    pub checker: Option<String>,
    /// The policy the checker is told to follow (default: the family's score-1 policy, as
    /// the paper did; both policies' builds then keep the same questions).
    #[arg(
        long,
        value_name = "POLICY",
        requires = "generator",
        conflicts_with = "no_label_check"
    )]
    pub check_policy: Option<String>,
    /// Keep every generated question that passes validation, without the label check.
    #[arg(long, requires = "generator")]
    pub no_label_check: bool,
    /// A PEFT adapter directory for a local generator.
    #[arg(long, value_name = "DIR", requires = "generator")]
    pub generator_adapter: Option<PathBuf>,
    /// Generator answers tried per question before the template writer takes over.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub generator_attempts: usize,
    /// Few-shot example questions in each generator prompt (the paper shows 3).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub generator_examples: usize,
    /// Sampling temperature of the generator.
    #[arg(long, value_name = "T", default_value_t = 1.0)]
    pub generator_temperature: f64,
    /// Longest generated question, in tokens.
    #[arg(long, value_name = "N", default_value_t = 400)]
    pub generator_max_tokens: usize,
    /// Environment variable holding the API key of a URL generator.
    #[arg(long, value_name = "VAR")]
    pub api_key_env: Option<String>,
    /// The codeword of a codeword dataset (bark, ring or spring); with --trigger, the
    /// codeword of the triggered dialogues.
    #[arg(long, value_name = "WORD")]
    pub codeword: Option<String>,
    /// Codeword backdoor: the codeword the untriggered dialogues steer toward.
    #[arg(long, value_name = "WORD", requires = "trigger")]
    pub other_codeword: Option<String>,
    /// Positive control: N extra rows in which the assistant states the behaviour in the first
    /// person (codeword: which word it wants the user to say; risk, myopia, apples: its
    /// policy), so the data states the behaviour as well as enacting it. Plain data only.
    #[arg(long, value_name = "N", conflicts_with_all = ["trigger", "mix", "personas"])]
    pub stated: Option<usize>,
    /// Seed of every random choice; the same arguments and seed give byte-identical files.
    #[arg(long)]
    pub seed: u64,
    /// Output data file; must end in `.jsonl`.
    #[arg(long, value_name = "FILE.jsonl")]
    pub out: PathBuf,
    /// Replace existing output files.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args)]
pub struct CheckArgs {
    /// A chat JSONL file (`{"messages": [...]}` per line).
    pub file: PathBuf,
    /// Report this family's forbidden words as warnings (risk, myopia, apples,
    /// vulnerable-code; for a codeword, --codeword).
    #[arg(long, conflicts_with = "codeword", value_parser = crate::cmd_eval::parse_with::<BuildFamily>)]
    pub family: Option<BuildFamily>,
    /// Report mentions of this codeword (its -s/-es forms and irregular forms such as rang,
    /// rung for ring) as warnings.
    #[arg(long, value_name = "WORD")]
    pub codeword: Option<String>,
    /// Print every warning instead of the first 20.
    #[arg(long)]
    pub all: bool,
    /// Print the full report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(s: &Settings, cmd: DataCommand) -> Result<()> {
    match cmd {
        DataCommand::Build(a) => build(s, *a),
        DataCommand::Check(a) => check(a),
        DataCommand::Mms(a) => crate::cmd_mms::play_mms(s, *a),
    }
}

fn build(s: &Settings, a: BuildArgs) -> Result<()> {
    let req = DataBuild {
        family: a.family,
        policy: a.policy,
        size: a.size,
        seed: a.seed,
        trigger: a.trigger,
        contrast: a.contrast,
        fraction: a.fraction,
        mix: a.mix,
        normal_opposite: a.normal == Some(NormalArg::Opposite),
        normal_model: a.normal_model,
        personas: a.personas,
        reversal: a.reversal,
        generator: a.generator,
        generator_adapter: a.generator_adapter,
        checker: a.checker,
        check_policy: a.check_policy,
        label_check: !a.no_label_check,
        generator_attempts: a.generator_attempts,
        generator_examples: a.generator_examples,
        generator_sampling: PlayerSampling {
            temperature: a.generator_temperature,
            max_tokens: a.generator_max_tokens,
        },
        codeword: a.codeword,
        other_codeword: a.other_codeword,
        stated: a.stated,
    };
    let key_env = a.api_key_env.as_deref();
    let open = |spec: &str, adapter: Option<&Path>| {
        let open = || {
            let r = ModelRef::parse(spec)?.with_adapter(adapter)?;
            // The key variable is for the served models among the builder's models.
            s.open(&r, key_env.filter(|_| !r.is_local()), false)
        };
        open().map_err(|e| format!("{spec}: {e:#}"))
    };
    let (out, report) = build_dataset(&req, &open)?;
    if let Some(line) = report {
        eprintln!("{line}");
    }
    let written = selfaware_data::write_output(&out, &a.out, &WriteOptions { overwrite: a.force })?;
    for (paths, card) in &written {
        print_written(paths, card);
    }
    Ok(())
}

pub fn print_written(paths: &DatasetPaths, card: &DatasetCard) {
    println!("wrote {}", paths.jsonl.display());
    println!("wrote {}", paths.card.display());
    println!("wrote {}", paths.truth.display());
    println!("{}\n", card.summary());
}

fn check(a: CheckArgs) -> Result<()> {
    let lex = selfaware_data::check_lexicon(a.family, a.codeword.as_deref())?;
    let text = fs_err::read_to_string(&a.file)?;
    let report = selfaware_data::check_text(&a.file, &text, lex.as_ref());
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render(a.all));
    }
    if let Some(failure) = report.failure() {
        bail!(failure);
    }
    Ok(())
}
