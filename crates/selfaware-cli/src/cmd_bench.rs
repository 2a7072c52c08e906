//! `selfaware bench engine`: times the local engine on a workload file written by
//! `bench/engine_bench.py`, which runs the same workload through the peers (transformers,
//! llama-cpp-python) and prints the ratios. This command only measures selfaware's side.
//! `selfaware bench machine`: the machine a measurement runs on (every bench prints it).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use selfaware_model::bench::Workload;

use crate::settings::Settings;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Time scoring, exact numeric distributions and batched sampling on a workload file.
    Engine(EngineArgs),
    /// Time a `last` capture of the residual stream at every layer, and scoring under steering,
    /// against next-token scoring of the same prompts, printing the ratios.
    Capture(CaptureBenchArgs),
    /// Print this machine: CPU, instruction sets, cores, caches, the kernels the engine takes,
    /// compute threads and load average.
    Machine(MachineArgs),
}

#[derive(Args)]
pub struct MachineArgs {
    /// JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct EngineArgs {
    /// `default`, a .gguf file or a Hugging Face model directory.
    #[arg(long, default_value = "default")]
    pub model: String,
    /// Workload JSON (see bench/engine_bench.py).
    #[arg(long)]
    pub workload: PathBuf,
}

#[derive(Args)]
pub struct CaptureBenchArgs {
    /// `default`, a .gguf file or a Hugging Face model directory.
    #[arg(long, default_value = "default")]
    pub model: String,
    /// Chat JSONL prompts (as for `activations capture`).
    #[arg(long, value_name = "FILE", conflicts_with = "battery")]
    pub prompts: Option<PathBuf>,
    /// A built-in battery whose prompts to run (the default: risk).
    #[arg(long, value_name = "NAME")]
    pub battery: Option<String>,
    /// Repetitions of each side (alternating).
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
}

pub fn run(s: &Settings, cmd: BenchCommand) -> Result<()> {
    let a = match cmd {
        BenchCommand::Capture(c) => {
            let battery = c.battery.or_else(|| Some("risk".into()));
            let source = selfaware_activations::PromptSource::from_flags(c.prompts, battery, 0)
                .context("no prompts")?;
            let e = s.load_engine(&c.model)?;
            let threads = std::env::var("RAYON_NUM_THREADS").ok();
            let out =
                selfaware_activations::bench::capture_vs_scoring(&e, &source, c.reps, threads)?;
            println!("{}", serde_json::to_string_pretty(&out)?);
            return Ok(());
        }
        BenchCommand::Engine(a) => a,
        BenchCommand::Machine(m) => {
            return crate::progress::emit(m.json, &selfaware_model::machine::Machine::detect())
        }
    };
    let w = Workload::read(&a.workload)?;
    let e = s.load_engine(&a.model)?;
    let threads = std::env::var("RAYON_NUM_THREADS").ok();
    let out = selfaware_model::bench::run_workload(&e, &w, threads)?;
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
