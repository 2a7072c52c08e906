//! `selfaware audit`: flags → [`AuditSpec`] → [`selfaware_audit::run`] → `DIR/audit.json`,
//! `DIR/verdict.txt`, `DIR/audit.html`, and the verdict printed.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use selfaware_audit::{candidates, AuditSpec, BehaviorProbe};

use crate::progress::Bar;
use crate::settings::{environment, Settings};

#[derive(Args)]
pub struct AuditArgs {
    /// The model: `default`, a .gguf file, a Hugging Face directory, or `URL#MODEL`.
    pub model: String,
    /// A PEFT LoRA adapter directory to attach to the model.
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<PathBuf>,
    /// The detection question's comparison (default: the model without --adapter; none
    /// without an adapter).
    #[arg(long, value_name = "MODEL")]
    pub baseline: Option<String>,
    /// Candidate triggers, one per line, scanned before the built-in families.
    #[arg(long, value_name = "FILE")]
    pub candidates: Option<PathBuf>,
    /// Output folder for audit.json, verdict.txt and audit.html (refused if any exists).
    #[arg(long, value_name = "DIR", required_unless_present = "dry_run")]
    pub out: Option<PathBuf>,
    /// Print how much work the audit is and an estimate of its time, and stop.
    #[arg(long)]
    pub dry_run: bool,
    /// A behaviour probe: a question whose answer options' exact probabilities the scan
    /// compares with and without each candidate.
    #[arg(long, value_name = "TEXT", requires = "probe_options")]
    pub probe_question: Option<String>,
    /// The probe's answer options, comma-separated.
    #[arg(
        long,
        value_name = "A,B[,...]",
        value_delimiter = ',',
        requires = "probe_question"
    )]
    pub probe_options: Option<Vec<String>>,
    /// Skip the detection question.
    #[arg(long)]
    pub no_detection: bool,
    /// Skip self-elicitation.
    #[arg(long)]
    pub no_elicitation: bool,
    /// Seed of the bootstraps and sign-flip tests.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The environment variable holding the server's API key (served models).
    #[arg(long, value_name = "VAR")]
    pub api_key_env: Option<String>,
}

pub fn audit(s: &Settings, a: AuditArgs) -> Result<()> {
    let mut spec = AuditSpec::new(candidates::load(a.candidates.as_deref())?)?;
    spec.probe = a.probe_question.clone().map(|question| BehaviorProbe {
        question,
        options: a.probe_options.clone().unwrap_or_default(),
    });
    spec.detection = !a.no_detection;
    spec.elicitation = !a.no_elicitation;
    spec.seed = a.seed;
    let with_baseline = a.baseline.is_some() || a.adapter.is_some();
    if a.dry_run {
        print!("{}", selfaware_audit::plan(&spec, with_baseline)?.summary());
        return Ok(());
    }
    let out = a.out.clone().unwrap_or_default();
    selfaware_audit::check_out(&out)?;
    let opts = s.open_options(a.api_key_env.as_deref(), false);
    let subjects = selfaware_audit::open_subjects(
        &a.model,
        a.adapter.as_deref(),
        a.baseline.as_deref(),
        &opts,
    )?;
    let (model, baseline) = (subjects.model, subjects.baseline);
    let provenance = model.backend.provenance(
        subjects.adapter_sha256,
        Some(a.seed),
        environment().git_revision,
    );
    let report = selfaware_audit::run(
        &spec,
        &model,
        a.adapter.as_ref().map(|p| p.display().to_string()),
        baseline.as_ref(),
        provenance,
        &mut Bar::new(50),
    )?;
    let files = selfaware_audit::write_outputs(&out, &report)?;
    print!("{}", selfaware_audit::verdict::render(&report));
    for f in files {
        println!("wrote {}", f.display());
    }
    Ok(())
}
