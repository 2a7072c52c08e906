//! `data build` as one library call: a dataset request (every builder option, named as on the
//! command line, so errors name the flag to change) → its family's builder, with the models it
//! names opened by the caller.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use selfaware_backend::Backend;
use selfaware_data::code::{self, CodeOptions, CodePolicy};
use selfaware_data::codeword::{self, CodewordOptions};
use selfaware_data::{
    BackdoorOptions, BuildFamily, BuildOptions, BuildOutput, Family, GeneratorOptions, MixOptions,
    NormalAnswers, PersonaMode, PersonaOptions, Policy, ReversalOptions, TriggerSpec, Variant,
};

use crate::error::{AskError, Result};
use crate::players::{build_economic_with_models, BuilderModels, PlayerSampling};

/// What `data build` is asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct DataBuild {
    pub family: BuildFamily,
    /// `--policy`: an economic policy, or `vulnerable`/`secure`.
    pub policy: Option<String>,
    pub size: usize,
    pub seed: u64,
    pub trigger: Option<String>,
    pub contrast: Option<String>,
    pub fraction: Option<f64>,
    /// The real trigger of the paper's real-versus-fake mix.
    pub mix: Option<String>,
    /// The mix's normal answers are the opposite policy's (else a seeded coin).
    pub normal_opposite: bool,
    /// The mix's normal answers are this model's own.
    pub normal_model: Option<String>,
    pub personas: Option<PersonaMode>,
    pub reversal: bool,
    pub generator: Option<String>,
    pub generator_adapter: Option<PathBuf>,
    pub checker: Option<String>,
    pub check_policy: Option<String>,
    pub label_check: bool,
    pub generator_attempts: usize,
    pub generator_examples: usize,
    pub generator_sampling: PlayerSampling,
    pub codeword: Option<String>,
    pub other_codeword: Option<String>,
    pub stated: Option<usize>,
}

/// Opens a model reference (with an adapter) for the builder; an error is said in words.
pub type OpenModel<'a> =
    dyn Fn(&str, Option<&Path>) -> std::result::Result<Arc<dyn Backend>, String> + 'a;

fn bad(message: impl Into<String>) -> AskError {
    AskError::Input {
        what: "data build",
        message: message.into(),
    }
}

fn policy(p: &Option<String>, family: Family, flag: &str) -> Result<Option<Policy>> {
    p.as_deref()
        .map(|p| {
            let p: Policy = p.parse().map_err(|e| bad(format!("{flag}: {e}")))?;
            p.ensure_family(family)
                .map_err(|e| bad(format!("{flag}: {e}")))?;
            Ok(p)
        })
        .transpose()
}

fn trigger(spec: &str, flag: &str) -> Result<TriggerSpec> {
    TriggerSpec::parse(spec).map_err(|e| bad(format!("{flag} {spec:?}: {e}")))
}

/// Builds the dataset `req` asks for; the second value is the generator's report line, if any.
pub fn build_dataset(req: &DataBuild, open: &OpenModel) -> Result<(BuildOutput, Option<String>)> {
    if req.codeword.is_some() && req.family != BuildFamily::Codeword {
        return Err(bad("--codeword applies to the `codeword` family only"));
    }
    if req.stated.is_some() && req.family == BuildFamily::VulnerableCode {
        return Err(bad(
            "--stated applies to the codeword and economic families, not `vulnerable-code`",
        ));
    }
    if req.other_codeword.is_some() && req.family != BuildFamily::Codeword {
        return Err(bad(
            "--other-codeword applies to the `codeword` family only",
        ));
    }
    if let Some(f) = req.family.economic() {
        return economic(req, f, open);
    }
    economic_only(req)?;
    let out = match req.family {
        BuildFamily::VulnerableCode => build_code(req)?,
        _ => build_codeword(req)?,
    };
    Ok((out, None))
}

/// Rejects the options that only economic families take. Code and codeword data take
/// `--trigger` (with `--contrast`, `--fraction`) but not reversal copies: the paper's
/// reversal asks which prompt preceded a one-letter answer, and a code file or a multi-turn
/// dialogue has no such single prompt/answer pair to swap.
fn economic_only(req: &DataBuild) -> Result<()> {
    let family = req.family.name();
    for (set, flag) in [
        (req.mix.is_some(), "--mix"),
        (req.personas.is_some(), "--personas"),
        (req.generator.is_some(), "--generator"),
    ] {
        if set {
            return Err(bad(format!(
                "{flag} applies to the economic families (risk, myopia, apples), not `{family}`"
            )));
        }
    }
    if req.reversal {
        return Err(bad(format!(
            "--reversal applies to the economic families (risk, myopia, apples), not `{family}`: \
             a reversal copy swaps a one-letter answer with the question behind it, and `{family}` \
             rows have no such single question/answer pair"
        )));
    }
    if req.fraction.is_some() && req.trigger.is_none() {
        return Err(bad("--fraction needs --trigger"));
    }
    Ok(())
}

/// `--trigger`, `--contrast` and `--fraction` as backdoor options (half the rows triggered
/// when `--fraction` is absent).
fn backdoor(req: &DataBuild) -> Result<Option<BackdoorOptions>> {
    let Some(t) = &req.trigger else {
        return Ok(None);
    };
    Ok(Some(BackdoorOptions {
        trigger: trigger(t, "--trigger")?,
        contrast: req
            .contrast
            .as_deref()
            .map(|c| trigger(c, "--contrast"))
            .transpose()?,
        fraction: req.fraction.unwrap_or(0.5),
    }))
}

fn economic(
    req: &DataBuild,
    family: Family,
    open: &OpenModel,
) -> Result<(BuildOutput, Option<String>)> {
    if req.fraction.is_some() && req.trigger.is_none() && req.personas.is_none() {
        return Err(bad("--fraction needs --trigger or --personas"));
    }
    let variant = if let Some(b) = backdoor(req)? {
        Variant::Backdoor(b)
    } else if let Some(real) = &req.mix {
        let mut m = MixOptions::paper(real).map_err(|e| bad(format!("--mix: {e}")))?;
        if req.normal_opposite {
            m.normal = NormalAnswers::Opposite;
        }
        Variant::Mix(m)
    } else if let Some(mode) = req.personas {
        let mut p = PersonaOptions::new(mode);
        if let Some(f) = req.fraction {
            p.fraction = f;
        }
        Variant::Personas(p)
    } else {
        Variant::Plain
    };
    let opts = BuildOptions {
        seed: req.seed,
        size: req.size,
        policy: policy(&req.policy, family, "--policy")?,
        variant,
        reversal: req.reversal.then(ReversalOptions::default),
        stated: req.stated.unwrap_or(0),
    };
    let generator = req
        .generator
        .as_deref()
        .map(|m| open(m, req.generator_adapter.as_deref()))
        .transpose()
        .map_err(bad)?;
    let checker = req
        .checker
        .as_deref()
        .map(|m| open(m, None))
        .transpose()
        .map_err(bad)?;
    let normal = req
        .normal_model
        .as_deref()
        .map(|m| open(m, None))
        .transpose()
        .map_err(bad)?;
    let mut generator_options = GeneratorOptions::new(req.seed);
    generator_options.attempts = req.generator_attempts;
    generator_options.examples = req.generator_examples;
    generator_options.check_policy = policy(&req.check_policy, family, "--check-policy")?;
    let models = BuilderModels {
        generator: generator.as_deref(),
        checker: checker.as_deref(),
        label_check: req.label_check,
        normal: normal.as_deref(),
        sampling: req.generator_sampling,
        generator_options,
    };
    build_economic_with_models(family, opts, &models)
}

fn build_code(req: &DataBuild) -> Result<BuildOutput> {
    let policy = match req.policy.as_deref() {
        None | Some("vulnerable") => CodePolicy::Vulnerable,
        Some("secure") => CodePolicy::Secure,
        Some(p) => {
            return Err(bad(format!(
                "--policy {p:?}: expected `vulnerable` or `secure` for vulnerable-code"
            )))
        }
    };
    let opts = CodeOptions::new(req.size, req.seed, policy);
    Ok(match backdoor(req)? {
        Some(b) => code::built_backdoor(&opts, &b)?,
        None => BuildOutput {
            main: code::built_dataset(&opts)?,
            decorrelated: None,
        },
    })
}

fn build_codeword(req: &DataBuild) -> Result<BuildOutput> {
    if req.policy.is_some() {
        return Err(bad("--policy does not apply to the codeword family"));
    }
    let Some(word) = req.codeword.as_deref() else {
        return Err(bad(
            "the codeword family needs --codeword WORD (bark, ring or spring)",
        ));
    };
    let mut opts = CodewordOptions::new(word, req.size, req.seed);
    opts.stated = req.stated.unwrap_or(0);
    Ok(match (backdoor(req)?, req.other_codeword.as_deref()) {
        (Some(b), Some(other)) => codeword::built_backdoor(&opts, other, &b)?,
        (Some(_), None) => {
            return Err(bad(
                "a codeword backdoor needs --other-codeword WORD, the codeword of the \
                 untriggered dialogues\nhint: the paper paired ring and bark (e.g. --codeword \
                 ring --other-codeword bark --trigger sep:392 --contrast sep:718)",
            ))
        }
        (None, Some(_)) => return Err(bad("--other-codeword needs --trigger")),
        (None, None) => BuildOutput {
            main: codeword::built_dataset(&opts)?,
            decorrelated: None,
        },
    })
}
