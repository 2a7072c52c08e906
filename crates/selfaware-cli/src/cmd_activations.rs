//! `selfaware activations`: activations of a local model at named hook points.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use selfaware_activations::inject::{self, InjectSpec, InjectionBattery};
use selfaware_activations::pick;
use selfaware_activations::probe::ProbeConfig;
use selfaware_activations::readout::{Capture, Directions};
use selfaware_activations::report;
use selfaware_activations::{CaptureModel, CaptureSpec, Positions, PromptSource};
use selfaware_ask::counter;
use selfaware_model::{Engine, HookPoint};
use selfaware_types::Provenance;

use crate::progress::{emit, Bar};
use crate::settings::{environment, Settings};

#[derive(Subcommand)]
pub enum ActivationsCommand {
    /// Record activations at hook points for a set of conversations, as safetensors (one
    /// tensor per point, named as the point; offsets, token_ids and prompt_sha256 beside them;
    /// provenance in the metadata).
    Capture(CaptureArgs),
    /// Difference-in-means directions (mean of A − mean of B) at every point both captures
    /// hold, written as safetensors (one [d] tensor per point).
    Diff(DiffArgs),
    /// Cosine similarity between directions: every direction of A against every one of B (of
    /// A itself without B), as a table.
    Cosine(CosineArgs),
    /// The logit lens of directions: through the final norm and the unembedding, the tokens
    /// each promotes and suppresses.
    Lens(LensArgs),
    /// A seeded, cross-validated logistic-regression probe per point telling A's prompts from
    /// B's, with accuracy and a Wilson interval.
    Probe(ProbeArgs),
    /// Concept injection (Lindsey 2025): concept vectors added while the model is asked
    /// whether it notices an injected thought and what it is about, scored exactly.
    Inject(InjectArgs),
    /// The direction at the point a probe (`probe --out`) separates best, as a one-tensor
    /// steering file DIR/best.safetensors (`--steer FILE:ALPHA`), and why, in DIR/pick.json.
    Pick(PickArgs),
}

#[derive(Args)]
pub struct PickArgs {
    /// A directions file (`activations diff`).
    #[arg(long)]
    pub directions: PathBuf,
    /// A probe's results (`activations probe --out FILE`).
    #[arg(long)]
    pub probe: PathBuf,
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Args)]
pub struct DiffArgs {
    /// The capture whose mean is added.
    pub a: PathBuf,
    /// The capture whose mean is subtracted.
    pub b: PathBuf,
    /// The directions file to write.
    #[arg(long, value_name = "FILE.safetensors")]
    pub out: PathBuf,
    /// Replace --out if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args)]
pub struct CosineArgs {
    /// A directions file (`activations diff`).
    pub a: PathBuf,
    /// A second directions file (default: A itself).
    pub b: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Args)]
pub struct LensArgs {
    /// A directions file (`activations diff`).
    pub directions: PathBuf,
    /// The model whose final norm and unembedding read the directions.
    #[arg(long, default_value = "default")]
    pub model: String,
    /// Comma-separated points to read (default: every direction in the file).
    #[arg(long, value_name = "P1,P2,…")]
    pub points: Option<String>,
    /// Tokens each way.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct ProbeArgs {
    /// The capture of the positive class.
    pub a: PathBuf,
    /// The capture of the negative class.
    pub b: PathBuf,
    /// Cross-validation folds.
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// Inverse L2 regularisation strength (scikit-learn's C).
    #[arg(long, default_value_t = 1.0)]
    pub c: f64,
    /// Seed of the fold assignment.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON to FILE (what `activations pick` reads).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Args)]
pub struct LocalModel {
    /// `default`, a .gguf file or a Hugging Face model directory (a local model).
    #[arg(long, default_value = "default")]
    pub model: String,
    /// A PEFT LoRA adapter directory to attach to the model.
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<PathBuf>,
}

impl LocalModel {
    fn open<'e>(&self, s: &Settings, engine: &'e mut Option<Engine>) -> Result<CaptureModel<'e>> {
        let e = engine.insert(s.load_engine_with(&self.model, self.adapter.as_deref())?);
        Ok(CaptureModel {
            engine: e,
            label: self.model.clone(),
            adapter: self.adapter.clone(),
        })
    }
}

#[derive(Args)]
pub struct InjectArgs {
    #[command(flatten)]
    pub model: LocalModel,
    /// The hook point where concepts are read and injected, e.g. blocks.20.hook_resid_post.
    #[arg(long)]
    pub point: HookPoint,
    /// Injection strengths, comma-separated (0, the trials without injection, always runs).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "2,4,8",
        allow_hyphen_values = true
    )]
    pub alphas: Vec<f32>,
    /// A battery file with the built-in one's fields (default: the built-in battery).
    #[arg(long, value_name = "FILE")]
    pub battery: Option<PathBuf>,
    /// Control words scored beside each concept's own word.
    #[arg(long, default_value_t = 9)]
    pub controls: usize,
    /// Seed of the control words' draw and of the bootstrap.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output folder: injection.json, injection.csv, vectors/ (one steering file per concept).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Replace an earlier run's results in --out.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args)]
pub struct CaptureArgs {
    #[command(flatten)]
    pub model: LocalModel,
    /// Chat JSONL, `{"messages": [...]}` per line (as for training). A final assistant message
    /// is the answer; without one the prompt ends with the generation header, as for scoring.
    #[arg(long, value_name = "FILE", required_unless_present = "battery")]
    pub prompts: Option<PathBuf>,
    /// A built-in battery whose rendered prompts to run instead of --prompts.
    #[arg(long, value_name = "NAME", conflicts_with = "prompts")]
    pub battery: Option<String>,
    /// Seed of the battery's rendering draws.
    #[arg(long, default_value_t = 0, requires = "battery")]
    pub seed: u64,
    /// Comma-separated TransformerLens hook points: blocks.L.hook_resid_pre,
    /// blocks.L.hook_attn_out, blocks.L.hook_mlp_out, blocks.L.hook_resid_post,
    /// ln_final.hook_normalized; `blocks.*.HOOK` for every layer.
    #[arg(long, value_name = "P1,P2,…")]
    pub points: String,
    /// last (the last prompt token: one row per prompt), all (every position) or answer (the
    /// final assistant message's tokens).
    #[arg(long, default_value = "last")]
    pub positions: Positions,
    /// The safetensors file to write (atomically, when complete).
    #[arg(long, value_name = "FILE.safetensors")]
    pub out: PathBuf,
    /// Replace --out if it exists.
    #[arg(long)]
    pub force: bool,
}

pub fn run(s: &Settings, cmd: ActivationsCommand) -> Result<()> {
    match cmd {
        ActivationsCommand::Capture(a) => capture(s, a),
        ActivationsCommand::Diff(a) => diff(a),
        ActivationsCommand::Cosine(a) => cosine(a),
        ActivationsCommand::Lens(a) => lens(s, a),
        ActivationsCommand::Probe(a) => probe(a),
        ActivationsCommand::Inject(a) => inject(s, a),
        ActivationsCommand::Pick(a) => {
            let tool = Provenance::of_tool(environment().git_revision);
            print!("{}", pick::run(&a.directions, &a.probe, &a.out, &tool)?);
            Ok(())
        }
    }
}

fn diff(a: DiffArgs) -> Result<()> {
    println!("{}", report::diff_files(&a.a, &a.b, &a.out, a.force)?);
    Ok(())
}

fn cosine(a: CosineArgs) -> Result<()> {
    let table = report::CosineTable::of_files(&a.a, a.b.as_deref())?;
    report::write_json(a.out.as_deref(), &table.to_json())?;
    emit(a.json, &table)
}

fn lens(s: &Settings, a: LensArgs) -> Result<()> {
    let d = Directions::open(&a.directions)?;
    let engine = s.load_engine(&a.model)?;
    let lens = report::LensReport::of(&engine, &d, &a.directions, a.points.as_deref(), a.top)?;
    emit(a.json, &lens)
}

fn probe(a: ProbeArgs) -> Result<()> {
    let (ca, cb) = (Capture::open(&a.a)?, Capture::open(&a.b)?);
    let config = ProbeConfig {
        folds: a.folds,
        c: a.c,
        seed: a.seed,
        level: 0.95,
    };
    let results = selfaware_activations::probe::probe(&ca, &cb, &config)?;
    let r = report::ProbeReport {
        config: &config,
        results: &results,
    };
    report::write_json(a.out.as_deref(), &r.to_json())?;
    emit(a.json, &r)
}

fn capture(s: &Settings, a: CaptureArgs) -> Result<()> {
    // Refuse an existing output before the model loads.
    selfaware_activations::write::check_out(&a.out, a.force)?;
    let mut engine = None;
    let model = a.model.open(s, &mut engine)?;
    let points =
        HookPoint::parse_list(&a.points, model.engine.model.cfg.num_layers).context("--points")?;
    let source = PromptSource::from_flags(a.prompts.clone(), a.battery.clone(), a.seed)
        .context("expected --prompts FILE or --battery NAME")?;
    let spec = CaptureSpec {
        source,
        points,
        positions: a.positions,
        out: a.out.clone(),
        force: a.force,
    };
    let provenance = Provenance::of_tool(environment().git_revision);
    let mut bar = Bar::new(64);
    let mut progress = counter(&mut bar, "prompts", "captured");
    let summary = selfaware_activations::capture(&model, &spec, &provenance, &mut progress)?;
    println!("{summary}");
    Ok(())
}

fn inject(s: &Settings, a: InjectArgs) -> Result<()> {
    inject::check_out_dir(&a.out, a.force)?;
    let battery = InjectionBattery::load(a.battery.as_deref())?;
    let mut engine = None;
    let model = a.model.open(s, &mut engine)?;
    let spec = InjectSpec::new(a.point, a.alphas, a.controls, a.seed);
    let mut bar = Bar::new(25);
    let mut progress = counter(&mut bar, "trials", "injected");
    let r = inject::run(model.engine, &battery, &spec, &mut progress)?;
    print!("{}", r.table());
    let tool = Provenance::of_tool(environment().git_revision);
    for f in r.write(&a.out, a.force, &model, &tool)? {
        println!("wrote {}", f.display());
    }
    Ok(())
}
