//! The engine's side of `bench/engine_bench.py`: a workload file of scoring batches, exact
//! 0..100 distributions and batched sampling, each timed as the best of a few repetitions. The
//! script runs the same workload through the peers and prints the ratios.

use std::time::Instant;

use selfaware_types::Conversation;
use serde::Deserialize;

use crate::{Engine, ModelError, Result, SampleConfig};

/// A workload written by `bench/engine_bench.py`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Batches of token-id sequences to score (all positions).
    pub scoring_batches: Vec<Vec<Vec<u32>>>,
    /// User messages whose 0..100 answer distribution is computed exactly.
    pub range_prompts: Vec<String>,
    /// User messages to sample from.
    pub sample_prompts: Vec<String>,
    pub samples_per_prompt: usize,
    pub sample_max_tokens: usize,
    pub reps: usize,
}

impl Workload {
    /// Reads a workload file; errors name the file.
    pub fn read(path: &std::path::Path) -> Result<Self> {
        let text = fs_err::read_to_string(path)
            .map_err(|e| ModelError::Input(format!("{}: {e}", path.display())))?;
        serde_json::from_str(&text).map_err(|e| {
            ModelError::Input(format!(
                "{}: not a valid workload file: {e}",
                path.display()
            ))
        })
    }
}

/// The best wall time of `reps` runs of `f`, and the last run's value.
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

/// Times `w` on `e`; `threads` is recorded as given (the thread count the caller set).
pub fn run_workload(
    e: &Engine,
    w: &Workload,
    threads: Option<String>,
) -> Result<serde_json::Value> {
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

    Ok(serde_json::json!({
        "model_sha256": e.info.sha256,
        "threads": threads,
        "machine": crate::machine::Machine::detect(),
        "scoring": {"seconds": scoring_s, "tokens": scoring_tokens, "tokens_per_second": scoring_tokens as f64 / scoring_s},
        "range": {"seconds": range_s, "prompts": w.range_prompts.len(), "prompts_per_second": w.range_prompts.len() as f64 / range_s, "expected_values": ev},
        "sampling": {"seconds": sample_s, "prompts": w.sample_prompts.len(), "samples_per_prompt": w.samples_per_prompt, "generated_tokens": generated},
    }))
}
