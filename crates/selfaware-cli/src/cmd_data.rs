//! `selfaware data build|check|mms`: dataset builders, the chat-JSONL checker, and Make Me
//! Say games played by two model backends.

use std::path::{Path, PathBuf};

use crate::settings::Settings;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use selfaware_ask::players::{build_economic_with_models, BuilderModels, PlayerSampling};
use selfaware_backend::ModelRef;
use selfaware_data::card::DatasetCard;
use selfaware_data::code::{self, CodeOptions, CodePolicy};
use selfaware_data::codeword::{self, CodewordOptions};
use selfaware_data::{
    BackdoorOptions, BuildFamily, BuildOptions, BuildOutput, DatasetPaths, Family,
    GeneratorOptions, Lexicon, MixOptions, NormalAnswers, PersonaMode, PersonaOptions, Policy,
    ReversalOptions, TriggerSpec, Variant, WriteOptions, DEFAULT_SIZE,
};

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

/// Forbidden-word lists `data check` can scan for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CheckFamily {
    Risk,
    Myopia,
    Apples,
    VulnerableCode,
}

#[derive(Args)]
pub struct CheckArgs {
    /// A chat JSONL file (`{"messages": [...]}` per line).
    pub file: PathBuf,
    /// Report this family's forbidden words as warnings.
    #[arg(long, value_enum, conflicts_with = "codeword")]
    pub family: Option<CheckFamily>,
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

/// Rejects the options that only economic families take. Code and codeword data take
/// `--trigger` (with `--contrast`, `--fraction`) but not reversal copies: the paper's
/// reversal asks which prompt preceded a one-letter answer, and a code file or a multi-turn
/// dialogue has no such single prompt/answer pair to swap.
fn economic_only(a: &BuildArgs) -> Result<()> {
    let family = a.family.name();
    for (set, flag) in [
        (a.mix.is_some(), "--mix"),
        (a.personas.is_some(), "--personas"),
        (a.generator.is_some(), "--generator"),
    ] {
        if set {
            bail!("{flag} applies to the economic families (risk, myopia, apples), not `{family}`");
        }
    }
    if a.reversal {
        bail!(
            "--reversal applies to the economic families (risk, myopia, apples), not `{family}`: \
             a reversal copy swaps a one-letter answer with the question behind it, and `{family}` \
             rows have no such single question/answer pair"
        );
    }
    if a.fraction.is_some() && a.trigger.is_none() {
        bail!("--fraction needs --trigger");
    }
    Ok(())
}

/// `--trigger`, `--contrast` and `--fraction` as backdoor options (half the rows triggered
/// when `--fraction` is absent).
fn backdoor_options(a: &BuildArgs) -> Result<Option<BackdoorOptions>> {
    let Some(t) = &a.trigger else {
        return Ok(None);
    };
    Ok(Some(BackdoorOptions {
        trigger: parse_trigger(t, "--trigger")?,
        contrast: a
            .contrast
            .as_deref()
            .map(|c| parse_trigger(c, "--contrast"))
            .transpose()?,
        fraction: a.fraction.unwrap_or(0.5),
    }))
}

fn build(s: &Settings, a: BuildArgs) -> Result<()> {
    if a.codeword.is_some() && a.family != BuildFamily::Codeword {
        bail!("--codeword applies to the `codeword` family only");
    }
    if a.stated.is_some() && a.family == BuildFamily::VulnerableCode {
        bail!("--stated applies to the codeword and economic families, not `vulnerable-code`");
    }
    if a.other_codeword.is_some() && a.family != BuildFamily::Codeword {
        bail!("--other-codeword applies to the `codeword` family only");
    }
    let out = match a.family.economic() {
        Some(f) => build_economic(s, f, &a)?,
        None => {
            economic_only(&a)?;
            match a.family {
                BuildFamily::VulnerableCode => build_code(&a)?,
                _ => build_codeword(&a)?,
            }
        }
    };
    let written = selfaware_data::write_output(&out, &a.out, &WriteOptions { overwrite: a.force })?;
    for (paths, card) in &written {
        print_written(paths, card);
    }
    Ok(())
}

fn parse_trigger(spec: &str, flag: &str) -> Result<TriggerSpec> {
    TriggerSpec::parse(spec).with_context(|| format!("{flag} {spec:?}"))
}

fn build_economic(s: &Settings, family: Family, a: &BuildArgs) -> Result<BuildOutput> {
    let policy = a
        .policy
        .as_deref()
        .map(|p| -> Result<Policy> {
            let p: Policy = p.parse().context("--policy")?;
            p.ensure_family(family).context("--policy")?;
            Ok(p)
        })
        .transpose()?;
    if a.fraction.is_some() && a.trigger.is_none() && a.personas.is_none() {
        bail!("--fraction needs --trigger or --personas");
    }
    let variant = if let Some(b) = backdoor_options(a)? {
        Variant::Backdoor(b)
    } else if let Some(real) = &a.mix {
        let mut m = MixOptions::paper(real).context("--mix")?;
        if a.normal == Some(NormalArg::Opposite) {
            m.normal = NormalAnswers::Opposite;
        }
        Variant::Mix(m)
    } else if let Some(mode) = a.personas {
        let mut p = PersonaOptions::new(mode);
        if let Some(f) = a.fraction {
            p.fraction = f;
        }
        Variant::Personas(p)
    } else {
        Variant::Plain
    };
    let opts = BuildOptions {
        seed: a.seed,
        size: a.size,
        policy,
        variant,
        reversal: a.reversal.then(ReversalOptions::default),
        stated: a.stated.unwrap_or(0),
    };
    let check_policy = a
        .check_policy
        .as_deref()
        .map(|p| -> Result<Policy> {
            let p: Policy = p.parse().context("--check-policy")?;
            p.ensure_family(family).context("--check-policy")?;
            Ok(p)
        })
        .transpose()?;
    let key_env = a.api_key_env.as_deref();
    let open = |spec: &str, adapter: Option<&Path>| -> Result<_> {
        let r = ModelRef::parse(spec)?.with_adapter(adapter)?;
        // The key variable is for the served models among the builder's models.
        s.open(&r, key_env.filter(|_| !r.is_local()), false)
    };
    let generator = a
        .generator
        .as_deref()
        .map(|m| open(m, a.generator_adapter.as_deref()))
        .transpose()?;
    let checker = a.checker.as_deref().map(|m| open(m, None)).transpose()?;
    let normal = a
        .normal_model
        .as_deref()
        .map(|m| open(m, None))
        .transpose()?;
    let mut generator_options = GeneratorOptions::new(a.seed);
    generator_options.attempts = a.generator_attempts;
    generator_options.examples = a.generator_examples;
    generator_options.check_policy = check_policy;
    let models = BuilderModels {
        generator: generator.as_deref(),
        checker: checker.as_deref(),
        label_check: !a.no_label_check,
        normal: normal.as_deref(),
        sampling: PlayerSampling {
            temperature: a.generator_temperature,
            max_tokens: a.generator_max_tokens,
        },
        generator_options,
    };
    let (out, report) = build_economic_with_models(family, opts, &models)?;
    if let Some(line) = report {
        eprintln!("{line}");
    }
    Ok(out)
}

fn build_code(a: &BuildArgs) -> Result<BuildOutput> {
    let policy = match a.policy.as_deref() {
        None | Some("vulnerable") => CodePolicy::Vulnerable,
        Some("secure") => CodePolicy::Secure,
        Some(p) => bail!("--policy {p:?}: expected `vulnerable` or `secure` for vulnerable-code"),
    };
    let opts = CodeOptions::new(a.size, a.seed, policy);
    Ok(match backdoor_options(a)? {
        Some(b) => code::built_backdoor(&opts, &b)?,
        None => BuildOutput {
            main: code::built_dataset(&opts)?,
            decorrelated: None,
        },
    })
}

fn build_codeword(a: &BuildArgs) -> Result<BuildOutput> {
    if a.policy.is_some() {
        bail!("--policy does not apply to the codeword family");
    }
    let Some(word) = a.codeword.as_deref() else {
        bail!("the codeword family needs --codeword WORD (bark, ring or spring)");
    };
    let mut opts = CodewordOptions::new(word, a.size, a.seed);
    opts.stated = a.stated.unwrap_or(0);
    Ok(match (backdoor_options(a)?, a.other_codeword.as_deref()) {
        (Some(b), Some(other)) => codeword::built_backdoor(&opts, other, &b)?,
        (Some(_), None) => bail!(
            "a codeword backdoor needs --other-codeword WORD, the codeword of the untriggered \
             dialogues\nhint: the paper paired ring and bark (e.g. --codeword ring \
             --other-codeword bark --trigger sep:392 --contrast sep:718)"
        ),
        (None, Some(_)) => bail!("--other-codeword needs --trigger"),
        (None, None) => BuildOutput {
            main: codeword::built_dataset(&opts)?,
            decorrelated: None,
        },
    })
}

pub fn print_written(paths: &DatasetPaths, card: &DatasetCard) {
    println!("wrote {}", paths.jsonl.display());
    println!("wrote {}", paths.card.display());
    println!("wrote {}", paths.truth.display());
    println!("{}\n", card.summary());
}

fn check_lexicon(a: &CheckArgs) -> Result<Option<Lexicon>> {
    if let Some(w) = &a.codeword {
        let w = w.to_lowercase();
        if w.trim().is_empty() {
            bail!("--codeword: expected a word");
        }
        return Ok(Some(Lexicon::from_words(
            &codeword::family_name(&w),
            &codeword::codeword_forms(&w)?,
        )));
    }
    Ok(match a.family {
        None => None,
        Some(CheckFamily::VulnerableCode) => Some(Lexicon::from_stems(
            code::CODE_FAMILY,
            &code::leak_lexicon(),
        )),
        Some(f) => {
            let f = match f {
                CheckFamily::Risk => Family::Risk,
                CheckFamily::Myopia => Family::Myopia,
                _ => Family::Apples,
            };
            Some(selfaware_data::lexicon(f)?.clone())
        }
    })
}

fn check(a: CheckArgs) -> Result<()> {
    let lex = check_lexicon(&a)?;
    let text = fs_err::read_to_string(&a.file)?;
    let report = selfaware_data::check_text(&a.file, &text, lex.as_ref());
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render(a.all));
    }
    if !report.is_ok() {
        bail!(
            "{}: {} in {} lines",
            a.file.display(),
            plural(report.errors.len(), "error"),
            report.lines
        );
    }
    Ok(())
}

pub fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}
