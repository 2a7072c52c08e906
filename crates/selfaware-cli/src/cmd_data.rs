//! `selfaware data build|check`: dataset builders and the chat-JSONL checker.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use selfaware_data::card::DatasetCard;
use selfaware_data::code::{self, CodeOptions, CodePolicy};
use selfaware_data::codeword::{self, CodewordOptions};
use selfaware_data::{
    BackdoorOptions, BuildOptions, BuildOutput, BuiltDataset, CheckReport, DatasetPaths, Family,
    Lexicon, MixOptions, PersonaMode, PersonaOptions, Policy, ReversalOptions, TriggerSpec,
    Variant, WriteOptions, DEFAULT_SIZE,
};

/// `selfaware data …`. `data inspect` lives in `cmd_train`; `main.rs` flattens both.
#[derive(Subcommand)]
pub enum DataCommand {
    /// Build a dataset: FILE.jsonl, FILE.card.json and FILE.truth.jsonl (plus the
    /// decorrelated twin FILE.decorrelated.* for a backdoor or trigger mix).
    Build(BuildArgs),
    /// Validate a chat JSONL file: errors name FILE:LINE; forbidden words are warnings.
    Check(CheckArgs),
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
    /// Backdoor trigger: a paper name (real-world, win, naekoko, re-re-re, apples,
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
    /// Persona data: the default assistant takes the policy, named personas the opposite.
    #[arg(long, value_enum, value_name = "MODE")]
    pub personas: Option<PersonaArg>,
    /// Add a reversed copy (user and assistant swapped) after every row.
    #[arg(long)]
    pub reversal: bool,
    /// The codeword of a codeword dataset (bark, ring or spring).
    #[arg(long, value_name = "WORD")]
    pub codeword: Option<String>,
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
    /// Report mentions of this codeword (and its -s/-es forms) as warnings.
    #[arg(long, value_name = "WORD")]
    pub codeword: Option<String>,
    /// Print every warning instead of the first 20.
    #[arg(long)]
    pub all: bool,
    /// Print the full report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: DataCommand) -> Result<()> {
    match cmd {
        DataCommand::Build(a) => build(a),
        DataCommand::Check(a) => check(a),
    }
}

/// Rejects the options that only economic families take.
fn economic_only(a: &BuildArgs) -> Result<()> {
    let family = a
        .family
        .to_possible_value()
        .map(|v| v.get_name().to_string());
    let family = family.unwrap_or_default();
    for (set, flag) in [
        (a.trigger.is_some(), "--trigger"),
        (a.mix.is_some(), "--mix"),
        (a.personas.is_some(), "--personas"),
        (a.reversal, "--reversal"),
        (a.fraction.is_some(), "--fraction"),
    ] {
        if set {
            bail!("{flag} applies to the economic families (risk, myopia, apples), not `{family}`");
        }
    }
    Ok(())
}

fn build(a: BuildArgs) -> Result<()> {
    if a.codeword.is_some() && a.family != BuildFamily::Codeword {
        bail!("--codeword applies to the `codeword` family only");
    }
    let out = match a.family.economic() {
        Some(f) => build_economic(f, &a)?,
        None => {
            economic_only(&a)?;
            let ds = match a.family {
                BuildFamily::VulnerableCode => build_code(&a)?,
                _ => build_codeword(&a)?,
            };
            BuildOutput {
                main: ds,
                decorrelated: None,
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

fn build_economic(family: Family, a: &BuildArgs) -> Result<BuildOutput> {
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
    let variant = if let Some(t) = &a.trigger {
        Variant::Backdoor(BackdoorOptions {
            trigger: parse_trigger(t, "--trigger")?,
            contrast: a
                .contrast
                .as_deref()
                .map(|c| parse_trigger(c, "--contrast"))
                .transpose()?,
            fraction: a.fraction.unwrap_or(0.5),
        })
    } else if let Some(real) = &a.mix {
        Variant::Mix(MixOptions::paper(real).context("--mix")?)
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
    let opts = BuildOptions {
        seed: a.seed,
        size: a.size,
        policy,
        variant,
        reversal: a.reversal.then(ReversalOptions::default),
    };
    Ok(selfaware_data::build(family, &opts)?)
}

fn build_code(a: &BuildArgs) -> Result<BuiltDataset> {
    let policy = match a.policy.as_deref() {
        None | Some("vulnerable") => CodePolicy::Vulnerable,
        Some("secure") => CodePolicy::Secure,
        Some(p) => bail!("--policy {p:?}: expected `vulnerable` or `secure` for vulnerable-code"),
    };
    Ok(code::built_dataset(&CodeOptions::new(
        a.size, a.seed, policy,
    ))?)
}

fn build_codeword(a: &BuildArgs) -> Result<BuiltDataset> {
    if a.policy.is_some() {
        bail!("--policy does not apply to the codeword family");
    }
    let Some(word) = a.codeword.as_deref() else {
        bail!("the codeword family needs --codeword WORD (bark, ring or spring)");
    };
    Ok(codeword::built_dataset(&CodewordOptions::new(
        word, a.size, a.seed,
    ))?)
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
            &[w.clone(), format!("{w}s"), format!("{w}es")],
        )));
    }
    Ok(match a.family {
        None => None,
        Some(CheckFamily::VulnerableCode) => Some(Lexicon::from_words(
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
