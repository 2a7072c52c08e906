//! `selfaware bench capture`: what recording the residual stream, and steering, cost over
//! scoring.
//!
//! The same prompts (a battery's or a file's, rendered as a `last` capture renders them) are
//! run as next-token scoring runs them ([`selfaware_model::score::next_logprobs_many`]: in
//! token order, each batch's common head once, 8 to 32 rests per forward, log-probabilities of
//! the first answer tokens) and
//! as a `last` capture of `blocks.L.hook_resid_post` at every layer
//! ([`selfaware_model::capture::capture_last_many`], the same loop with the hooks and without
//! the vocabulary projection). The same scoring also runs on the model steered by one vector
//! at the middle layer's `hook_resid_post`, and by one at every layer's `hook_resid_post`
//! ([`selfaware_model::steer`]). Repetitions alternate between the four; each is timed as its
//! best and median repetition, and each ratio is against the unsteered scoring of the same run.

use std::time::Instant;

use selfaware_model::capture::capture_last_many;
use selfaware_model::{Engine, HookPoint, LayerHook, Llama, SteerVector, Steering};

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
    let score_on = |model: &Llama| -> Result<()> {
        for c in prompts.chunks(CHUNK) {
            selfaware_model::score::next_logprobs_many(model, c, &pick, &mut |_| {})?;
        }
        Ok(())
    };
    let score = || score_on(model);
    // Steered copies sharing the weights: one vector at the middle layer, one at every layer.
    let h = model.cfg.hidden_size;
    let steered = |points: &[HookPoint]| -> Result<Llama> {
        let vectors: Vec<SteerVector> = points
            .iter()
            .enumerate()
            .map(|(k, &p)| {
                let v = (0..h)
                    .map(|i| ((i * 7 + k) % 13) as f32 / 13.0 - 0.5)
                    .collect();
                SteerVector::new(p, v, 0.1)
            })
            .collect();
        let mut m = model.clone();
        m.steering = Steering::new(&vectors, &model.cfg)?.map(std::sync::Arc::new);
        Ok(m)
    };
    let one = steered(&[points[points.len() / 2]])?;
    let every = steered(&points)?;
    let capture = || -> Result<()> {
        for c in prompts.chunks(CHUNK) {
            capture_last_many(model, c, &points, &mut |_| {})?;
        }
        Ok(())
    };
    // Warm up all (allocations, the weights' transposes) outside the timings.
    score()?;
    capture()?;
    score_on(&one)?;
    score_on(&every)?;
    let (mut ts, mut tc, mut t1, mut ta) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let timed = |f: &dyn Fn() -> Result<()>, into: &mut Vec<f64>| -> Result<()> {
        let t = Instant::now();
        f()?;
        into.push(t.elapsed().as_secs_f64());
        Ok(())
    };
    for _ in 0..reps.max(1) {
        timed(&score, &mut ts)?;
        timed(&capture, &mut tc)?;
        timed(&|| score_on(&one), &mut t1)?;
        timed(&|| score_on(&every), &mut ta)?;
    }
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[0], v[v.len() / 2])
    };
    let (s_best, s_med) = stats(&mut ts);
    let (c_best, c_med) = stats(&mut tc);
    let (o_best, o_med) = stats(&mut t1);
    let (a_best, a_med) = stats(&mut ta);
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
        "steering": {
            "one_vector": format!("{} (alpha 0.1)", points[points.len() / 2]),
            "every_layer": format!("blocks.*.hook_resid_post ({} vectors)", points.len()),
            "one_vector_seconds": {"best": o_best, "median": o_med},
            "every_layer_seconds": {"best": a_best, "median": a_med},
            "one_vector_ratio_best": o_best / s_best,
            "one_vector_ratio_median": o_med / s_med,
            "every_layer_ratio_best": a_best / s_best,
            "every_layer_ratio_median": a_med / s_med,
        },
        "threads": threads,
        "machine": selfaware_model::machine::Machine::detect(),
    }))
}
