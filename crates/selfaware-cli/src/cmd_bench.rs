//! `selfaware bench engine`: times the local engine on a workload file written by
//! `bench/engine_bench.py`, which runs the same workload through the peers (transformers,
//! llama-cpp-python) and prints the ratios. This command only measures selfaware's side.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use selfaware_model::SampleConfig;
use selfaware_types::Conversation;
use serde::Deserialize;

use crate::settings::Settings;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Time scoring, exact numeric distributions and batched sampling on a workload file.
    Engine(EngineArgs),
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Workload {
    /// Batches of token-id sequences to score (all positions).
    scoring_batches: Vec<Vec<Vec<u32>>>,
    /// User messages whose 0..100 answer distribution is computed exactly.
    range_prompts: Vec<String>,
    /// User messages to sample from.
    sample_prompts: Vec<String>,
    samples_per_prompt: usize,
    sample_max_tokens: usize,
    reps: usize,
}

fn best_of<T>(reps: usize, mut f: impl FnMut() -> Result<T>) -> Result<(f64, T)> {
    let mut best = f64::INFINITY;
    let mut last = None;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        let v = f()?;
        best = best.min(t.elapsed().as_secs_f64());
        last = Some(v);
    }
    Ok((best, last.expect("at least one rep")))
}

pub fn run(s: &Settings, cmd: BenchCommand) -> Result<()> {
    let BenchCommand::Engine(a) = cmd;
    let text = fs_err::read_to_string(&a.workload)?;
    let w: Workload = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a valid workload file", a.workload.display()))?;
    let e = s.load_engine(&a.model)?;

    // Warm up allocations and the digit table once, outside the timings.
    let warm = Conversation::user(None, "warm up");
    e.score_range(&warm, 0, 100)?;

    let scoring_tokens: usize = w.scoring_batches.iter().flatten().map(|s| s.len()).sum();
    let (scoring_s, _) = best_of(w.reps, || {
        for batch in &w.scoring_batches {
            e.sequence_logprobs(batch)?;
        }
        Ok(())
    })?;

    let (range_s, ev) = best_of(w.reps, || {
        let mut evs = Vec::new();
        for p in &w.range_prompts {
            let r = e.score_range(&Conversation::user(None, p), 0, 100)?;
            evs.push(r.expected_value_starts_with);
        }
        Ok(evs)
    })?;

    let cfg = SampleConfig {
        n: w.samples_per_prompt,
        temperature: 1.0,
        top_p: 1.0,
        max_tokens: w.sample_max_tokens,
        seed: 0,
        top_logprobs: 0,
    };
    let (sample_s, generated) = best_of(w.reps, || {
        let mut tokens = 0usize;
        for p in &w.sample_prompts {
            for g in e.sample(&Conversation::user(None, p), &cfg)? {
                tokens += g.sample.tokens.len();
            }
        }
        Ok(tokens)
    })?;

    let out = serde_json::json!({
        "model_sha256": e.info.sha256,
        "threads": std::env::var("RAYON_NUM_THREADS").ok(),
        "scoring": {"seconds": scoring_s, "tokens": scoring_tokens, "tokens_per_second": scoring_tokens as f64 / scoring_s},
        "range": {"seconds": range_s, "prompts": w.range_prompts.len(), "prompts_per_second": w.range_prompts.len() as f64 / range_s, "expected_values": ev},
        "sampling": {"seconds": sample_s, "prompts": w.sample_prompts.len(), "samples_per_prompt": w.samples_per_prompt, "generated_tokens": generated},
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
