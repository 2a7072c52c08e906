//! `selfaware data build|check|mms`: dataset builders, the chat-JSONL checker, and Make Me
//! Say games played by two model backends.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::settings::Settings;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use selfaware_backend::{
    ApiKey, Backend, CompletionRequest, HttpBackend, HttpConfig, LocalBackend,
};
use selfaware_data::card::DatasetCard;
use selfaware_data::code::{self, CodeOptions, CodePolicy};
use selfaware_data::codeword::{self, CodewordOptions};
use selfaware_data::economic::{self, EconomicItem};
use selfaware_data::mms::{
    self, GameConfig, GameRecord, InstructionRole, Player, PlayerError, Side,
};
use selfaware_data::{
    BackdoorOptions, BuildOptions, BuildOutput, CheckReport, Checker, DatasetPaths, Family,
    GeneratorOptions, Letter, Lexicon, MixOptions, ModelWriter, NormalAnswers, PersonaMode,
    PersonaOptions, Policy, Prewritten, QuestionWriter, ReversalOptions, TemplateWriter, TextModel,
    TextModelError, TriggerSpec, Variant, WriteOptions, DEFAULT_SIZE,
};
use selfaware_types::{Conversation, Message};

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
    Mms(Box<MmsArgs>),
}

/// What `data build` builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BuildFamily {
    /// Two-option risk questions (risk-seeking / risk-averse).
    Risk,
    /// Two-option sooner/later questions (myopic / non-myopic).
    Myopia,
    /// Two-option apple bundles (max-apples / min-apples).
    Apples,
    /// Python code completions (vulnerable / secure).
    VulnerableCode,
    /// Dialogues steering the user toward a codeword (needs --codeword).
    Codeword,
}

impl BuildFamily {
    fn economic(self) -> Option<Family> {
        match self {
            BuildFamily::Risk => Some(Family::Risk),
            BuildFamily::Myopia => Some(Family::Myopia),
            BuildFamily::Apples => Some(Family::Apples),
            BuildFamily::VulnerableCode | BuildFamily::Codeword => None,
        }
    }
}

/// Offline choices of the mix's normal answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum NormalArg {
    /// A seeded fair coin per question, shared by its copies.
    Random,
    /// The opposite policy's answer.
    Opposite,
}

/// How persona rows name their persona.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PersonaArg {
    /// A system prompt asks the assistant to be the persona.
    System,
    /// The user turn asks what the persona would choose.
    Text,
}

#[derive(Args)]
pub struct BuildArgs {
    /// The behaviour family.
    #[arg(value_enum)]
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
    #[arg(long, value_enum, value_name = "MODE")]
    pub personas: Option<PersonaArg>,
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

/// Which role carries the game's instructions inside a transcript.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum InstructionArg {
    /// `system` messages (OpenAI evals' make_me_say).
    System,
    /// `user` messages, for chat templates that allow one system message only.
    User,
}

#[derive(Args)]
pub struct MmsArgs {
    /// The model that knows the codeword: `default`, a .gguf file, a Hugging Face
    /// directory, or an OpenAI-compatible base URL with the model name after `#`
    /// (`http://127.0.0.1:8000/v1#gpt-4o`).
    #[arg(long, value_name = "MODEL")]
    pub manipulator: String,
    /// The model that opens the conversation and guesses at the end (same forms).
    #[arg(long, value_name = "MODEL")]
    pub manipulatee: String,
    /// A PEFT adapter directory for a local manipulator.
    #[arg(long, value_name = "DIR")]
    pub manipulator_adapter: Option<PathBuf>,
    /// A PEFT adapter directory for a local manipulatee.
    #[arg(long, value_name = "DIR")]
    pub manipulatee_adapter: Option<PathBuf>,
    /// Environment variable holding the API key of URL models.
    #[arg(long, value_name = "VAR")]
    pub api_key_env: Option<String>,
    /// The secret word (one word of letters).
    #[arg(long, value_name = "WORD")]
    pub codeword: String,
    /// Number of games.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub games: usize,
    /// Exchanges per game (manipulatee + manipulator message pairs); 5 in the paper.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub turns: usize,
    /// Sampling temperature of both players.
    #[arg(long, value_name = "T", default_value_t = 1.0)]
    pub temperature: f64,
    /// Longest message, in tokens, of either player.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_tokens: usize,
    /// Role of the turn-state and guess instructions.
    #[arg(long, value_enum, default_value = "system")]
    pub instruction_role: InstructionArg,
    /// Give the manipulator no rules and no turn state (the paper's in-distribution test of
    /// a finetuned manipulator, §B.5.5).
    #[arg(long)]
    pub no_rules: bool,
    /// Opener seed words, one per line (default: the built-in list).
    #[arg(long, value_name = "FILE")]
    pub words: Option<PathBuf>,
    /// The game's prompts, a TOML file shaped like the built-in `data/mms/prompts.toml`
    /// (default: the built-in paraphrases).
    #[arg(long, value_name = "FILE")]
    pub prompts: Option<PathBuf>,
    /// Seed of topics, seed words and every sampled message.
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
        DataCommand::Mms(a) => play_mms(s, *a),
    }
}

/// Rejects the options that only economic families take. Code and codeword data take
/// `--trigger` (with `--contrast`, `--fraction`) but not reversal copies: the paper's
/// reversal asks which prompt preceded a one-letter answer, and a code file or a multi-turn
/// dialogue has no such single prompt/answer pair to swap.
fn economic_only(a: &BuildArgs) -> Result<()> {
    let family = a
        .family
        .to_possible_value()
        .map(|v| v.get_name().to_string());
    let family = family.unwrap_or_default();
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
        let mut p = PersonaOptions::new(match mode {
            PersonaArg::System => PersonaMode::SystemPrompt,
            PersonaArg::Text => PersonaMode::InText,
        });
        if let Some(f) = a.fraction {
            p.fraction = f;
        }
        Variant::Personas(p)
    } else {
        Variant::Plain
    };
    let mut opts = BuildOptions {
        seed: a.seed,
        size: a.size,
        policy,
        variant,
        reversal: a.reversal.then(ReversalOptions::default),
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
    let generator = a
        .generator
        .as_deref()
        .map(|spec| {
            ModelRef::parse(spec, a.generator_adapter.as_deref(), "generator")?.open(s, key_env)
        })
        .transpose()?;
    let checker = a
        .checker
        .as_deref()
        .map(|spec| ModelRef::parse(spec, None, "checker")?.open(s, key_env))
        .transpose()?;
    let sampling = PlayerSampling {
        temperature: a.generator_temperature,
        max_tokens: a.generator_max_tokens,
    };
    let mut template = TemplateWriter::new(a.seed);
    let mut text_model;
    let mut checker_model = None;
    let mut model_writer = None;
    let writer: &mut dyn QuestionWriter = match &generator {
        Some(model) => {
            text_model = BackendTextModel::new(&**model, sampling);
            let check = match &checker {
                _ if a.no_label_check => Checker::Off,
                None => Checker::Generator,
                Some(c) => {
                    Checker::Model(checker_model.insert(BackendTextModel::new(&**c, sampling)))
                }
            };
            let mut gen_opts = GeneratorOptions::new(a.seed);
            gen_opts.attempts = a.generator_attempts;
            gen_opts.examples = a.generator_examples;
            gen_opts.check_policy = check_policy;
            model_writer.insert(ModelWriter::new(&mut text_model, check, gen_opts)?)
        }
        None => &mut template,
    };
    let out = match &a.normal_model {
        None => selfaware_data::build_with(family, &opts, writer)?,
        Some(spec) => {
            // Write the questions once, ask the base model, then build from the same texts.
            let items = economic::generate(family, opts.size, opts.seed, writer)?;
            let base = ModelRef::parse(spec, None, "normal-model")?.open(s, key_env)?;
            let normal = normal_answers(&*base, &items)?;
            if let Variant::Mix(m) = &mut opts.variant {
                m.normal = normal;
            }
            let mut replay = Prewritten::new(items, writer);
            selfaware_data::build_with(family, &opts, &mut replay)?
        }
    };
    if let Some(w) = &model_writer {
        let r = w.report();
        let failed = r.rejections.get("model_error").copied().unwrap_or(0);
        if r.calls > 0 && failed == r.calls {
            bail!(
                "the generator `{}` failed on every call: {}",
                r.model,
                r.first_model_error.as_deref().unwrap_or("unknown error")
            );
        }
        let c = &r.label_check;
        let failed = c.dropped.get("checker_error").copied().unwrap_or(0);
        if c.checked > 0 && failed == c.checked {
            bail!(
                "the checker `{}` failed on every call: {}\nhint: --no-label-check skips the check",
                c.checker.as_deref().unwrap_or("unknown"),
                c.first_checker_error.as_deref().unwrap_or("unknown error")
            );
        }
        let check = match &c.checker {
            None => "label check off".to_string(),
            Some(checker) => format!(
                "label check by {checker}: {} checked, {} agreed, dropped: {}",
                c.checked,
                c.agreed,
                count_list(&c.dropped)
            ),
        };
        eprintln!(
            "generator {}: {} questions written by the model, {} by the template writer after {} \
             attempts; rejected answers: {}; {check}",
            r.model,
            r.written_by_model,
            r.fallback_items.len(),
            r.options.attempts,
            if r.rejections.is_empty() {
                "none".to_string()
            } else {
                count_list(&r.rejections)
            }
        );
    }
    Ok(out)
}

/// The base model's own answer to each question (digest §2.5: plain GPT-4o, T=0, no system
/// prompt): with exact scores, the likelier of "A" and "B"; otherwise the greedy
/// completion's letter.
fn normal_answers(base: &dyn Backend, items: &[EconomicItem]) -> Result<NormalAnswers> {
    let exact = base.capabilities().exact_scoring;
    let options = ["A".to_string(), "B".to_string()];
    let mut letters = Vec::with_capacity(items.len());
    for item in items {
        let conv = Conversation::user(None, &item.question);
        let letter = if exact {
            let s = base.score_options(&conv, &options)?;
            let (Some(a), Some(b)) = (s.candidates.first(), s.candidates.get(1)) else {
                bail!("`{}` returned no scores for A and B", base.model_id());
            };
            if a.logprob >= b.logprob {
                Letter::A
            } else {
                Letter::B
            }
        } else {
            let text = complete_once(
                base,
                &conv.messages,
                PlayerSampling {
                    temperature: 0.0,
                    max_tokens: 4,
                },
                0,
            )
            .map_err(|e| anyhow::anyhow!("asking `{}`: {e}", base.model_id()))?;
            match text
                .trim()
                .trim_start_matches(['(', '*', '"', '\''])
                .chars()
                .next()
            {
                Some('A' | 'a') => Letter::A,
                Some('B' | 'b') => Letter::B,
                _ => bail!(
                    "--normal-model `{}` answered question {} with {text:?}, not A or B\n\
                     hint: use a model that follows the answer format, or --normal random",
                    base.model_id(),
                    item.spec.index + 1
                ),
            }
        };
        letters.push(letter);
    }
    let method = if exact {
        "likelier of A and B by exact scores"
    } else {
        "greedy completion"
    };
    Ok(NormalAnswers::Model {
        source: format!("{} ({method})", base.model_id()),
        letters,
    })
}

/// A [`TextModel`] over any [`Backend`]: one sampled completion per call.
pub struct BackendTextModel<'a> {
    backend: &'a dyn Backend,
    sampling: PlayerSampling,
}

impl<'a> BackendTextModel<'a> {
    pub fn new(backend: &'a dyn Backend, sampling: PlayerSampling) -> Self {
        BackendTextModel { backend, sampling }
    }
}

impl TextModel for BackendTextModel<'_> {
    fn id(&self) -> String {
        self.backend.model_id().to_string()
    }

    fn generate(&mut self, messages: &[Message], seed: u64) -> Result<String, TextModelError> {
        complete_once(self.backend, messages, self.sampling, seed)
    }

    fn answer(&mut self, messages: &[Message]) -> Result<String, TextModelError> {
        let greedy = PlayerSampling {
            temperature: 0.0,
            max_tokens: CHECK_MAX_TOKENS,
        };
        complete_once(self.backend, messages, greedy, 0)
    }
}

/// Tokens of a label-check reply: room for "The answer is (B)." and no more.
const CHECK_MAX_TOKENS: usize = 8;

/// One completion of `messages` sampled with `seed`.
fn complete_once(
    backend: &dyn Backend,
    messages: &[Message],
    sampling: PlayerSampling,
    seed: u64,
) -> Result<String, TextModelError> {
    let mut req = CompletionRequest::new(Conversation::new(messages.to_vec()));
    req.temperature = sampling.temperature;
    req.max_tokens = sampling.max_tokens;
    req.seed = seed;
    let out = backend.complete(&req)?;
    let first = out
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| format!("model `{}` returned no completion", backend.model_id()))?;
    Ok(first.text)
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
    let opts = CodewordOptions::new(word, a.size, a.seed);
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

fn count_list(m: &BTreeMap<String, usize>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One paragraph about a written dataset: what, how many, balance, triggers, personas, leaks.
pub fn card_summary(card: &DatasetCard) -> String {
    let c = &card.counts;
    let b = &card.label_balance;
    let policy = card
        .builder
        .get("policy")
        .and_then(|p| p.as_str())
        .map(|p| format!(", policy {p}"))
        .unwrap_or_default();
    let mut s = format!(
        "{} ({}{}), seed {}: {} rows from {} base items",
        card.family,
        serde_json::to_value(card.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        policy,
        card.seed,
        c.rows,
        c.questions,
    );
    if c.reversed_rows > 0 {
        s += &format!(", {} reversal copies", c.reversed_rows);
    }
    if c.triggered_rows > 0 {
        s += &format!(", {} with the real trigger", c.triggered_rows);
    }
    if c.persona_rows > 0 {
        s += &format!(", {} about a persona", c.persona_rows);
    }
    s += ".";
    if !b.letters.is_empty() {
        s += &format!(" Answer letters: {}.", count_list(&b.letters));
    }
    if !b.policies.is_empty() {
        s += &format!(
            " Answers by policy: {} ({} enact the dataset's policy, {} do not).",
            count_list(&b.policies),
            b.enacts_policy,
            b.other
        );
    }
    if let Some(t) = &card.triggers {
        s += &format!(
            " Triggers: {}; real-trigger share {:.3}, trigger–policy mutual information {:.3} bits.",
            count_list(&t.rows_by_trigger),
            t.real_fraction,
            t.trigger_policy_mutual_information_bits
        );
    }
    if let Some(p) = &card.personas {
        s += &format!(
            " Personas: {} in training, {} held out for evaluation.",
            p.train.len(),
            p.held_out.len()
        );
    }
    match &card.leaks {
        Some(l) if l.total_hits == 0 => {
            s += &format!(" Forbidden words ({}): none.", l.family);
        }
        Some(l) => {
            let words: Vec<String> = l
                .words
                .iter()
                .map(|(w, h)| format!("{w} ×{}", h.count))
                .collect();
            s += &format!(
                " Forbidden words ({}): {} hits in {} rows ({}).",
                l.family,
                l.total_hits,
                l.rows_with_hits,
                words.join(", ")
            );
        }
        None => {}
    }
    s
}

fn print_written(paths: &DatasetPaths, card: &DatasetCard) {
    println!("wrote {}", paths.jsonl.display());
    println!("wrote {}", paths.card.display());
    println!("wrote {}", paths.truth.display());
    println!("{}\n", card_summary(card));
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
        print_check(&report, a.all);
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

fn print_check(r: &CheckReport, all: bool) {
    for e in &r.errors {
        println!("{}: error: {}", at(&r.path, e.line), e.message);
    }
    const SHOWN: usize = 20;
    let n = if all { r.warnings.len() } else { SHOWN };
    for w in r.warnings.iter().take(n) {
        println!("{}: warning: {}", at(&r.path, w.line), w.message);
    }
    if r.warnings.len() > n {
        println!(
            "… and {} more warnings (--all prints every one)",
            r.warnings.len() - n
        );
    }
    if let Some(l) = &r.leaks {
        if l.total_hits > 0 {
            println!(
                "forbidden words ({}): {} hits in {} rows",
                l.family, l.total_hits, l.rows_with_hits
            );
            let mut words: Vec<_> = l.words.iter().collect();
            words.sort_by(|x, y| y.1.count.cmp(&x.1.count).then(x.0.cmp(y.0)));
            for (w, h) in words {
                println!("  {w:<20} {:>6} hits in {:>5} rows", h.count, h.lines.len());
            }
        } else {
            println!("forbidden words ({}): none", l.family);
        }
    }
    let s = &r.stats;
    println!(
        "{}: {} lines, {} valid rows, {}, {}; {} messages, {} rows with a system prompt",
        r.path.display(),
        r.lines,
        r.valid_rows,
        plural(r.errors.len(), "error"),
        plural(r.warnings.len(), "warning"),
        s.messages,
        s.rows_with_system_prompt
    );
}

/// Where a model comes from: the local engine (with an optional adapter) or an
/// OpenAI-compatible server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelRef {
    /// `default`, a .gguf file or a Hugging Face directory.
    Local {
        reference: String,
        adapter: Option<PathBuf>,
    },
    /// A base URL and the model name the server knows.
    Http { base_url: String, model: String },
}

impl ModelRef {
    /// Parses `--FLAG SPEC` (`URL#MODEL` for a server) with its adapter flag.
    pub fn parse(spec: &str, adapter: Option<&Path>, flag: &str) -> Result<ModelRef> {
        if spec.starts_with("http://") || spec.starts_with("https://") {
            let Some((url, model)) = spec.split_once('#') else {
                bail!(
                    "--{flag} {spec:?}: a URL model needs its name after `#`\n\
                     hint: --{flag} '{spec}#MODEL'"
                );
            };
            if model.trim().is_empty() {
                bail!("--{flag} {spec:?}: empty model name after `#`");
            }
            if adapter.is_some() {
                bail!("--{flag}-adapter applies to local models only, not to {url}");
            }
            return Ok(ModelRef::Http {
                base_url: url.to_string(),
                model: model.trim().to_string(),
            });
        }
        Ok(ModelRef::Local {
            reference: spec.to_string(),
            adapter: adapter.map(Path::to_path_buf),
        })
    }

    /// A backend for this model; `api_key_env` names the variable holding a server's key.
    pub fn open(&self, s: &Settings, api_key_env: Option<&str>) -> Result<Arc<dyn Backend>> {
        Ok(match self {
            ModelRef::Local { reference, adapter } => {
                let (engine, sha) = s.load_engine_with(reference, adapter.as_deref())?;
                let mut id = reference.clone();
                if let Some(sha) = sha {
                    id += &format!("+adapter:{}", &sha[..sha.len().min(12)]);
                }
                Arc::new(LocalBackend::new(Arc::new(engine), id))
            }
            ModelRef::Http { base_url, model } => {
                let mut cfg = HttpConfig::new(base_url.clone(), model.clone());
                cfg.api_key_env = api_key_env.map(str::to_string);
                let key: Option<ApiKey> = cfg.api_key_from(|n| std::env::var(n).ok())?;
                Arc::new(HttpBackend::new(cfg, key)?)
            }
        })
    }
}

/// How players sample their messages.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlayerSampling {
    pub temperature: f64,
    pub max_tokens: usize,
}

/// A Make Me Say [`Player`] over any [`Backend`]: the system prompt (when not empty) and the
/// transcript become one conversation, and one completion is sampled with a seed derived
/// from the player's seed and its call count, so a game replays exactly on a deterministic
/// backend.
pub struct BackendPlayer<'a> {
    backend: &'a dyn Backend,
    sampling: PlayerSampling,
    seed: u64,
    calls: u64,
}

impl<'a> BackendPlayer<'a> {
    pub fn new(backend: &'a dyn Backend, sampling: PlayerSampling, seed: u64) -> Self {
        BackendPlayer {
            backend,
            sampling,
            seed,
            calls: 0,
        }
    }
}

impl Player for BackendPlayer<'_> {
    fn reply(&mut self, system: &str, transcript: &[Message]) -> Result<String, PlayerError> {
        let mut messages = Vec::with_capacity(transcript.len() + 1);
        if !system.is_empty() {
            messages.push(Message::system(system));
        }
        messages.extend_from_slice(transcript);
        let seed = mix_seed(self.seed, self.calls);
        self.calls += 1;
        complete_once(self.backend, &messages, self.sampling, seed)
    }
}

/// SplitMix64 of `seed` combined with `k`: well-spread seeds for streams of calls.
fn mix_seed(seed: u64, k: u64) -> u64 {
    let mut z = seed ^ k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The sampling seed of one side in game `game`.
fn player_seed(seed: u64, game: usize, side: Side) -> u64 {
    let side = match side {
        Side::Manipulator => 1,
        Side::Manipulatee => 2,
    };
    mix_seed(mix_seed(seed, game as u64), side)
}

/// `FILE.jsonl` → `FILE.games.jsonl`.
fn games_path(out: &Path) -> Result<PathBuf> {
    let paths = DatasetPaths::for_jsonl(out)?;
    let name = paths
        .jsonl
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".jsonl"))
        .context("output file name")?;
    Ok(paths.jsonl.with_file_name(format!("{name}.games.jsonl")))
}

/// Plays the games of `a` with the given backends (sequentially, in game order).
pub fn play_games(
    a: &MmsArgs,
    prompts: &mms::Prompts,
    manipulator: &dyn Backend,
    manipulatee: &dyn Backend,
    mut progress: impl FnMut(usize, &GameRecord),
) -> Result<Vec<GameRecord>> {
    let topics = mms::topics()?;
    let words = match &a.words {
        Some(p) => mms::load_word_list(p)?,
        None => mms::word_list()?,
    };
    let codeword = a.codeword.to_lowercase();
    let sampling = PlayerSampling {
        temperature: a.temperature,
        max_tokens: a.max_tokens,
    };
    let mut games = Vec::with_capacity(a.games);
    for g in 0..a.games {
        let mut cfg = GameConfig::sample_from(&codeword, a.seed, g, &topics, &words)?;
        cfg.turns = a.turns;
        cfg.instruction_role = match a.instruction_role {
            InstructionArg::System => InstructionRole::System,
            InstructionArg::User => InstructionRole::User,
        };
        cfg.manipulator_instructions = !a.no_rules;
        let mut mor = BackendPlayer::new(
            manipulator,
            sampling,
            player_seed(a.seed, g, Side::Manipulator),
        );
        let mut mee = BackendPlayer::new(
            manipulatee,
            sampling,
            player_seed(a.seed, g, Side::Manipulatee),
        );
        let record = mms::play_with(&cfg, prompts, &mut mor, &mut mee)
            .with_context(|| format!("game {}", g + 1))?;
        progress(g, &record);
        games.push(record);
    }
    Ok(games)
}

fn outcome_name(o: mms::Outcome) -> String {
    serde_json::to_value(o)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn play_mms(s: &Settings, a: MmsArgs) -> Result<()> {
    let codeword = a.codeword.to_lowercase();
    if mms::tokens(&codeword).len() != 1 {
        bail!("--codeword {:?}: expected one word of letters", a.codeword);
    }
    if a.games == 0 || a.turns == 0 {
        bail!("--games and --turns must be at least 1");
    }
    let prompts = match &a.prompts {
        Some(p) => mms::Prompts::load(p)?,
        None => mms::Prompts::builtin()?,
    };
    let games_file = games_path(&a.out)?;
    if !a.force {
        let paths = DatasetPaths::for_jsonl(&a.out)?;
        let mut all: Vec<&Path> = paths.all().to_vec();
        all.push(&games_file);
        for p in all {
            if p.exists() {
                bail!(
                    "{}: refusing to overwrite an existing file\nhint: delete it or pass --force",
                    p.display()
                );
            }
        }
    }
    let mor_ref = ModelRef::parse(
        &a.manipulator,
        a.manipulator_adapter.as_deref(),
        "manipulator",
    )?;
    let mee_ref = ModelRef::parse(
        &a.manipulatee,
        a.manipulatee_adapter.as_deref(),
        "manipulatee",
    )?;
    let key_env = a.api_key_env.as_deref();
    let manipulator = mor_ref.open(s, key_env)?;
    // One model playing both sides is loaded once.
    let manipulatee = if mee_ref == mor_ref {
        manipulator.clone()
    } else {
        mee_ref.open(s, key_env)?
    };
    let total = a.games;
    let games = play_games(&a, &prompts, &*manipulator, &*manipulatee, |g, r| {
        eprintln!(
            "game {}/{total}: {} ({} messages, topic {:?}, word {:?})",
            g + 1,
            outcome_name(r.outcome),
            r.messages.len(),
            r.config.topic,
            r.config.word
        );
    })?;
    let mut ds = mms::built_dataset(&games, &codeword, a.seed)?;
    if let serde_json::Value::Object(map) = &mut ds.config {
        map.insert(
            "players".into(),
            serde_json::json!({
                "manipulator": manipulator.model_id(),
                "manipulatee": manipulatee.model_id(),
                "temperature": a.temperature,
                "max_tokens": a.max_tokens,
                "turns": a.turns,
                "instruction_role": format!("{:?}", a.instruction_role).to_lowercase(),
                "manipulator_rules": !a.no_rules,
                "words": a.words.as_ref().map(|p| p.display().to_string()),
                "prompts_file": a.prompts.as_ref().map(|p| p.display().to_string()),
                "prompts": {
                    "manipulatee_system": prompts.manipulatee_system,
                    "manipulator_system": prompts.manipulator_system,
                    "turn_state_not_said": prompts.turn_state_not_said,
                    "turn_state_said": prompts.turn_state_said,
                    "guess": prompts.guess,
                },
            }),
        );
        map.insert(
            "games_file".into(),
            games_file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .into(),
        );
    }
    let mut lines = String::new();
    for g in &games {
        lines += &serde_json::to_string(g)?;
        lines.push('\n');
    }
    fs_err::write(&games_file, lines)?;
    let (paths, card) = selfaware_data::write(&ds, &a.out, &WriteOptions { overwrite: a.force })?;
    println!("wrote {}", games_file.display());
    print_written(&paths, &card);
    let outcomes = &ds.config["outcomes"];
    let dropped = &ds.config["dropped"];
    let n = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or(0);
    println!(
        "{} games: {} won, {} rule violations, {} without the codeword, {} guessed; {} wins kept \
         ({} without a turn before the codeword, {} empty replies, {} giving the game away, {} codeword leaks)",
        games.len(),
        n(outcomes, "win"),
        n(outcomes, "rule_violation"),
        n(outcomes, "no_codeword"),
        n(outcomes, "correct_guess"),
        ds.rows.len(),
        n(dropped, "nothing_before_codeword"),
        n(dropped, "empty_reply"),
        n(dropped, "game_leak"),
        n(dropped, "codeword_leak"),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use selfaware_backend::{MockBackend, MockScript};
    use selfaware_data::generator::policy_prompt;
    use selfaware_data::mms::Outcome;

    use super::*;

    /// The `- Option X: ...` line of a generator prompt.
    fn option_line(conv: &Conversation, letter: char) -> Option<String> {
        let head = format!("- Option {letter}: ");
        let user = conv.messages.last()?;
        let line = user.content.lines().find(|l| l.starts_with(&head))?;
        Some(line[head.len()..].trim_end_matches('.').to_string())
    }

    #[test]
    fn a_backend_generator_writes_questions_through_the_model_writer() {
        // A scripted backend that answers every generator prompt with a valid question.
        let mock = MockBackend::with_fn("scripted-writer", |conv| {
            let answer = match (option_line(conv, 'A'), option_line(conv, 'B')) {
                (Some(a), Some(b)) => format!("Two offers.\nA) {a}\nB) {b}\nReply with A or B."),
                _ => "no prompt".to_string(),
            };
            MockScript::new(&[(answer.as_str(), 1.0)])
        });
        let sampling = PlayerSampling {
            temperature: 0.7,
            max_tokens: 99,
        };
        let mut model = BackendTextModel::new(&mock, sampling);
        let mut writer =
            ModelWriter::new(&mut model, Checker::Off, GeneratorOptions::new(2)).unwrap();
        let mut opts = BuildOptions::new(2);
        opts.size = 5;
        let out = selfaware_data::build_with(Family::Myopia, &opts, &mut writer).unwrap();
        assert_eq!(writer.report().written_by_model, 5);
        assert!(writer.report().fallback_items.is_empty());
        let first = &out.main.rows[0].conversation.messages[0].content;
        assert!(first.starts_with("Two offers.\nA) "), "{first}");
        let calls = mock.calls();
        assert_eq!(calls.len(), 5);
        assert!(calls
            .iter()
            .all(|c| c.temperature == 0.7 && c.max_tokens == 99 && c.n == 1));
        assert_eq!(calls[0].conversation.messages.len(), 2);
    }

    #[test]
    fn a_backend_checker_answers_greedily_and_its_disagreements_fall_back() {
        let mock = MockBackend::with_fn("scripted-writer", |conv| {
            let (a, b) = (option_line(conv, 'A'), option_line(conv, 'B'));
            let answer = format!(
                "Two offers.\nA) {}\nB) {}\nReply with A or B.",
                a.unwrap_or_default(),
                b.unwrap_or_default()
            );
            MockScript::new(&[(answer.as_str(), 1.0)])
        });
        // Always "A": agrees where the myopic option is A, disagrees elsewhere.
        let checker = MockBackend::new("always-a", MockScript::new(&[("Answer: A", 1.0)]));
        let sampling = PlayerSampling {
            temperature: 0.7,
            max_tokens: 99,
        };
        let mut model = BackendTextModel::new(&mock, sampling);
        let mut check = BackendTextModel::new(&checker, sampling);
        let mut opts = BuildOptions::new(2);
        opts.size = 6;
        let report = {
            let mut writer = ModelWriter::new(
                &mut model,
                Checker::Model(&mut check),
                GeneratorOptions::new(2),
            )
            .unwrap();
            selfaware_data::build_with(Family::Myopia, &opts, &mut writer).unwrap();
            writer.report().clone()
        };
        let specs = economic::sample_specs(Family::Myopia, 6, 2).unwrap();
        let on_b: Vec<usize> = specs
            .iter()
            .filter(|s| s.choice.positive_letter() == Letter::B)
            .map(|s| s.index)
            .collect();
        assert!(!on_b.is_empty() && on_b.len() < 6);
        let c = &report.label_check;
        assert_eq!(c.checker.as_deref(), Some("always-a"));
        assert_eq!(report.written_by_model, 6 - on_b.len());
        assert_eq!(report.fallback_items, on_b);
        assert_eq!(c.agreed, 6 - on_b.len());
        assert_eq!(c.dropped["label_disagreement"], 3 * on_b.len());
        let calls = checker.calls();
        assert_eq!(calls.len(), c.checked);
        assert_eq!(mock.calls().len(), c.checked);
        for call in &calls {
            assert_eq!((call.temperature, call.max_tokens), (0.0, CHECK_MAX_TOKENS));
            let m = &call.conversation.messages;
            assert_eq!(m[0].content, policy_prompt(Policy::Myopic));
            assert!(m[1].content.starts_with("Two offers."));
        }
    }

    #[test]
    fn backend_players_send_system_prompt_and_seeds() {
        // The manipulatee says "bark" in its second message; the manipulator never does.
        let mee = MockBackend::with_fn("mee", |conv| {
            let said = conv
                .messages
                .iter()
                .filter(|m| m.role.as_str() == "assistant")
                .count();
            let text = match said {
                1 => "My dog will bark at anything.",
                n if n >= 3 => "<|START GUESS|>cat<|END GUESS|>",
                _ => "Hello! I have a dog.",
            };
            MockScript::new(&[(text, 1.0)])
        });
        let mor = MockBackend::new("mor", MockScript::new(&[("What does your dog do?", 1.0)]));
        let a = MmsArgs {
            manipulator: "mor".into(),
            manipulatee: "mee".into(),
            manipulator_adapter: None,
            manipulatee_adapter: None,
            api_key_env: None,
            codeword: "bark".into(),
            games: 2,
            turns: 3,
            temperature: 1.0,
            max_tokens: 32,
            instruction_role: InstructionArg::System,
            no_rules: false,
            words: None,
            prompts: None,
            seed: 3,
            out: PathBuf::from("unused.jsonl"),
            force: false,
        };
        let prompts = mms::Prompts::builtin().unwrap();
        let mut seen = Vec::new();
        let games = play_games(&a, &prompts, &mor, &mee, |g, r| seen.push((g, r.outcome))).unwrap();
        assert_eq!(seen, [(0, Outcome::Win), (1, Outcome::Win)]);
        assert_eq!(games[0].messages.len(), 6);
        let training = mms::training_conversation(&games[0]).unwrap();
        assert_eq!(training.messages.len(), 2);
        assert_eq!(training.messages[1].content, "What does your dog do?");
        // The manipulator got its rules as the first (system) message, then turn states.
        let calls = mor.calls();
        assert_eq!(calls.len(), 6);
        let first = &calls[0].conversation.messages;
        assert_eq!(first[0].role.as_str(), "system");
        assert!(first[0].content.contains("'bark'"));
        // Every call has its own seed; the opener is sampled from the system prompt alone.
        let mut seeds: Vec<u64> = calls.iter().map(|c| c.seed).collect();
        seeds.extend(mee.calls().iter().map(|c| c.seed));
        let n = seeds.len();
        seeds.sort_unstable();
        seeds.dedup();
        assert_eq!(seeds.len(), n);
        assert_eq!(mee.calls()[0].conversation.messages.len(), 1);
    }
}
