//! `selfaware activations`: activations of a local model at named hook points.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use selfaware_activations::{CaptureModel, CaptureSpec, Positions, PromptSource};
use selfaware_ask::Progress;
use selfaware_model::HookPoint;
use selfaware_types::{Provenance, TOOL_VERSION};

use crate::progress::Bar;
use crate::settings::{environment, Settings};

#[derive(Subcommand)]
pub enum ActivationsCommand {
    /// Record activations at hook points for a set of conversations, as safetensors (one
    /// tensor per point, named as the point; offsets, token_ids and prompt_sha256 beside them;
    /// provenance in the metadata).
    Capture(CaptureArgs),
}

#[derive(Args)]
pub struct CaptureArgs {
    /// `default`, a .gguf file or a Hugging Face model directory (a local model).
    #[arg(long, default_value = "default")]
    pub model: String,
    /// A PEFT LoRA adapter directory to attach to the model.
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<PathBuf>,
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
    }
}

fn capture(s: &Settings, a: CaptureArgs) -> Result<()> {
    // Refuse an existing output before the model loads.
    selfaware_activations::write::check_out(&a.out, a.force)?;
    let engine = s.load_engine_with(&a.model, a.adapter.as_deref())?;
    let points =
        HookPoint::parse_list(&a.points, engine.model.cfg.num_layers).context("--points")?;
    let source = match (&a.prompts, &a.battery) {
        (Some(p), _) => PromptSource::File(p.clone()),
        (None, Some(b)) => PromptSource::Battery {
            name: b.clone(),
            seed: a.seed,
        },
        (None, None) => anyhow::bail!("expected --prompts FILE or --battery NAME"),
    };
    let spec = CaptureSpec {
        source,
        points,
        positions: a.positions,
        out: a.out.clone(),
        force: a.force,
    };
    let model = CaptureModel {
        engine: &engine,
        label: a.model.clone(),
        adapter: a.adapter.clone(),
    };
    let provenance = Provenance {
        tool_version: TOOL_VERSION.to_string(),
        git_revision: environment().git_revision.map(str::to_string),
        ..Default::default()
    };
    let mut bar = Bar::new(64);
    let mut reported = 0usize;
    let summary =
        selfaware_activations::capture(&model, &spec, &provenance, &mut |done, total| {
            if reported == 0 {
                bar.start(total, "prompts");
            }
            while reported < done {
                reported += 1;
                bar.step("captured");
            }
        })?;
    bar.finish();
    println!(
        "wrote {}: {} prompts, {} rows × {} points ({} bytes)",
        summary.out.display(),
        summary.prompts,
        summary.rows,
        spec.points.len(),
        summary.bytes
    );
    Ok(())
}
