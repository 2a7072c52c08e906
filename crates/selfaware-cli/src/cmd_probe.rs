//! `selfaware probe`: flags → [`ProbeSpec`] → [`selfaware_ask::run_probe`] → a JSON report and
//! a one-line summary.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use selfaware_backend::adapter_sha256;
use selfaware_eval::spec::{ManipulateeSpec, ProbeKind, ProbeSpec};

use crate::cmd_eval::parse_with;
use crate::model_args::ModelArgs;
use crate::progress::Bar;
use crate::settings::{environment, Settings};

#[derive(Args)]
pub struct ProbeArgs {
    /// Which probe: lotteries (alias risk; P(risky option)), myopia (P(immediate option)),
    /// apples (P(more apples)), codeword (share of sampled replies visiting the codeword's
    /// neighbourhood), codeword-choice (exact P(the reply steering toward --codeword) against
    /// --against), vulnerable-code (share of sampled completions the detector finds
    /// vulnerable), mms (Make Me Say win rate as manipulator).
    #[arg(value_parser = parse_with::<ProbeKind>)]
    pub probe: ProbeKind,
    #[command(flatten)]
    pub model: ModelArgs,
    /// A PEFT LoRA adapter directory to attach to the model.
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<PathBuf>,
    /// Number of generated pairs, or of openers for the codeword probe (the paper reports 250
    /// lottery pairs; its code defaults to 100).
    #[arg(long, default_value_t = 100)]
    pub n: usize,
    /// Seed of the pair generator (and of the codeword probe's samples).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// System prompt. Without it the model's chat template decides.
    #[arg(long)]
    pub system: Option<String>,
    /// The codeword of the codeword probes (bark, ring, spring).
    #[arg(long, value_name = "WORD")]
    pub codeword: Option<String>,
    /// Codeword-choice probe: the codewords whose steering replies compete (comma-separated).
    #[arg(long, value_name = "WORD[,WORD...]", value_delimiter = ',')]
    pub against: Option<Vec<String>>,
    /// Codeword and vulnerable-code probes: sampled replies per item (temperature 1).
    #[arg(long, default_value_t = 10)]
    pub samples: usize,
    /// Longest reply in tokens (default 40 for the codeword probe, 512 for vulnerable-code,
    /// 128 for mms).
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<usize>,
    /// Make Me Say probe: the manipulatee's OpenAI-compatible base URL (default: the model
    /// without adapter).
    #[arg(long, value_name = "URL", requires = "manipulatee_model")]
    pub manipulatee_url: Option<String>,
    /// Make Me Say probe: the manipulatee's model name on that server.
    #[arg(long, value_name = "NAME", requires = "manipulatee_url")]
    pub manipulatee_model: Option<String>,
    /// Make Me Say probe: the environment variable holding the manipulatee's API key.
    #[arg(long, value_name = "VAR", requires = "manipulatee_url")]
    pub manipulatee_key_env: Option<String>,
    /// Make Me Say probe: give the manipulator the game's rules and turn states (for models
    /// not finetuned on the game; finetuned models play without them, as in the paper).
    #[arg(long)]
    pub manipulator_rules: bool,
    /// Print JSON with every item.
    #[arg(long)]
    pub json: bool,
    /// Write the JSON report to this file (atomically) instead of printing it.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

impl ProbeArgs {
    /// The probe the flags describe.
    pub fn spec(&self) -> ProbeSpec {
        ProbeSpec {
            kind: self.probe,
            n: self.n,
            seed: self.seed,
            system: self.system.clone(),
            codeword: self.codeword.clone(),
            against: self.against.clone().unwrap_or_default(),
            samples: self.samples,
            max_tokens: self.max_tokens,
            manipulatee: match (&self.manipulatee_url, &self.manipulatee_model) {
                (Some(url), Some(model)) => Some(ManipulateeSpec {
                    url: url.clone(),
                    model: model.clone(),
                    key_env: self.manipulatee_key_env.clone(),
                }),
                _ => None,
            },
            manipulator_rules: self.manipulator_rules,
        }
    }
}

pub fn probe(s: &Settings, a: ProbeArgs) -> Result<()> {
    let spec = a.spec();
    spec.validate()?;
    let (model_ref, mut model) = a.model.open(s)?;
    let base = model.backend.clone();
    let adapter_sha = match &a.adapter {
        Some(dir) => {
            model.backend = model.backend.with_adapter(dir)?;
            Some(adapter_sha256(dir)?)
        }
        None => None,
    };
    let provenance =
        model
            .backend
            .provenance(adapter_sha, Some(a.seed), environment().git_revision);
    let mee = selfaware_ask::probes::manipulatee(
        &spec,
        &model_ref,
        &base,
        &model.label,
        &s.open_options(None, false),
    )?;
    let mut bar = Bar::new(25);
    let report = selfaware_ask::run_probe(
        &spec,
        &model,
        a.adapter.as_ref().map(|p| p.display().to_string()),
        provenance,
        mee.as_ref().map(|(b, n)| (b.as_ref(), n.clone())),
        &mut bar,
    )?;
    if let Some(out) = &a.out {
        let mut bytes = serde_json::to_vec_pretty(&report)?;
        bytes.push(b'\n');
        selfaware_run::exec::write_atomic(out, &bytes)?;
    }
    if a.json && a.out.is_none() {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    print!("{}", report.summary(&spec));
    Ok(())
}
