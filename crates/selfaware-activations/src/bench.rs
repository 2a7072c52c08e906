//! `selfaware bench capture`: what recording the residual stream costs over scoring.
//!
//! The same prompts (a battery's or a file's, rendered as a `last` capture renders them) are
//! run as next-token scoring runs them ([`selfaware_model::score::next_logprobs_many`]: the
//! common head once, eight rests per forward, log-probabilities of the first answer tokens) and
//! as a `last` capture of `blocks.L.hook_resid_post` at every layer
//! ([`selfaware_model::capture::capture_last_many`], the same loop with the hooks and without
//! the vocabulary projection). Repetitions alternate between the two; each is timed as its
//! best and median repetition.

use std::time::Instant;

use selfaware_model::capture::capture_last_many;
use selfaware_model::{Engine, HookPoint, LayerHook};

use crate::{for_each_conversation, unit, ActivationsError, Positions, PromptSource, Result};

/// Prompts per call, as a `last` capture chunks them.
const CHUNK: usize = crate::LAST_CHUNK;

/// Times scoring and capturing `source`'s prompts `reps` times each, on `threads` compute
/// threads (as set for the process), and says on what machine.
pub fn capture_vs_scoring(
    engine: &Engine,
    source: &PromptSource,
    reps: usize,
    threads: Option<String>,
) -> Result<serde_json::Value> {
    let mut prompts: Vec<Vec<u32>> = Vec::new();
    for_each_conversation(source, &mut |line, conv| {
        let u =
            unit(engine, &conv, Positions::Last).map_err(|message| ActivationsError::Prompt {
                origin: crate::origin(source),
                line,
                message,
            })?;
        prompts.push(u.ids);
        Ok(())
    })?;
    let model = &engine.model;
    let points = HookPoint::every_layer(LayerHook::ResidPost, model.cfg.num_layers);
    let pick: Vec<u32> = ["A", "B"]
        .iter()
        .filter_map(|o| engine.chat.answer_ids(o).ok()?.first().copied())
        .collect();
    let score = || -> Result<()> {
        for c in prompts.chunks(CHUNK) {
            selfaware_model::score::next_logprobs_many(model, c, &pick, &mut |_| {})?;
        }
        Ok(())
    };
    let capture = || -> Result<()> {
        for c in prompts.chunks(CHUNK) {
            capture_last_many(model, c, &points, &mut |_| {})?;
        }
        Ok(())
    };
    // Warm up both (allocations, the weights' transposes) outside the timings.
    score()?;
    capture()?;
    let (mut ts, mut tc) = (Vec::new(), Vec::new());
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        score()?;
        ts.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        capture()?;
        tc.push(t.elapsed().as_secs_f64());
    }
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[0], v[v.len() / 2])
    };
    let (s_best, s_med) = stats(&mut ts);
    let (c_best, c_med) = stats(&mut tc);
    let tokens: usize = prompts.iter().map(Vec::len).sum();
    Ok(serde_json::json!({
        "model_sha256": engine.info.sha256,
        "prompts": prompts.len(),
        "prompt_tokens": tokens,
        "points": format!("blocks.*.hook_resid_post ({} layers), last token", points.len()),
        "reps": reps.max(1),
        "scoring_seconds": {"best": s_best, "median": s_med},
        "capture_seconds": {"best": c_best, "median": c_med},
        "ratio_best": c_best / s_best,
        "ratio_median": c_med / s_med,
        "threads": threads,
        "machine": selfaware_model::machine::Machine::detect(),
    }))
}
