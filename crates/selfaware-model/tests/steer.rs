//! Additive steering on tiny random models: values computed by hand from the model's tensors
//! (the final norm and unembedding, the embeddings), equalities that hold by construction of
//! the decoder, and every scoring and decoding path against the plain uncached forward under
//! the same steering.

use candle_core::{Device, Tensor};
use selfaware_model::capture::capture_positions;
use selfaware_model::llama::{build_mask, u32_matrix, Step};
use selfaware_model::testing::{write_tiny_gguf, TinySpec, IM_END};
use selfaware_model::{
    Engine, HookPoint, LayerHook, ModelSource, SampleConfig, SteerArg, SteerSpec, SteerVector,
    Steering,
};
use selfaware_types::Conversation;

fn engine(spec: &TinySpec) -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    write_tiny_gguf(&path, spec).unwrap();
    let e = Engine::load(&ModelSource::Gguf(path)).unwrap();
    (dir, e)
}

fn tiny() -> (tempfile::TempDir, Engine) {
    engine(&TinySpec {
        layers: 3,
        ..TinySpec::default()
    })
}

/// A deterministic vector of width `h`, entries in [-1, 1].
fn vector(h: usize, k: usize) -> Vec<f32> {
    (0..h)
        .map(|i| (((i * 7 + k * 11) % 23) as f32 - 11.0) / 11.0)
        .collect()
}

fn steered(e: &Engine, vectors: &[SteerVector]) -> Engine {
    let mut s = e.with_steering(None).unwrap();
    s.set_steering(Steering::new(vectors, &e.model.cfg).unwrap());
    s
}

fn prompt_ids(e: &Engine, text: &str) -> Vec<u32> {
    e.chat.prompt(&Conversation::user(None, text)).unwrap().ids
}

/// Final hidden states (after the final norm) of one sequence: `[T][hidden]`.
fn hidden(e: &Engine, ids: &[u32]) -> Vec<Vec<f32>> {
    let t = ids.len();
    let mask = build_mask(1, t, t, |_, q, k| k <= q).unwrap();
    let h = e
        .model
        .forward(
            &Step {
                tokens: &u32_matrix(&[ids.to_vec()]).unwrap(),
                positions: &u32_matrix(&[(0..t as u32).collect()]).unwrap(),
                mask: &mask,
            },
            None,
        )
        .unwrap();
    h.squeeze(0).unwrap().to_vec2().unwrap()
}

fn logits(e: &Engine, ids: &[u32]) -> Vec<Vec<f32>> {
    let h = hidden(e, ids);
    let h = Tensor::new(h, &Device::Cpu).unwrap();
    e.model.logits(&h).unwrap().to_vec2().unwrap()
}

fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len());
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f32::max)
}

fn every_point(layers: usize) -> Vec<HookPoint> {
    let mut p: Vec<HookPoint> = (0..layers)
        .flat_map(|l| LayerHook::ALL.map(|h| HookPoint::block(l, h)))
        .collect();
    p.push(HookPoint::LnFinal);
    p
}

#[test]
fn alpha_zero_at_every_point_equals_the_unsteered_model_bit_for_bit() {
    let (_d, e) = tiny();
    let h = e.model.cfg.hidden_size;
    let vs: Vec<SteerVector> = every_point(3)
        .into_iter()
        .enumerate()
        .map(|(k, p)| SteerVector::new(p, vector(h, k), 0.0))
        .collect();
    let s = steered(&e, &vs);
    let ids = prompt_ids(&e, "Is the sky blue?");
    assert_eq!(hidden(&s, &ids), hidden(&e, &ids));
    // And a nonzero alpha does change them (the comparison above can fail).
    let one = steered(
        &e,
        &[SteerVector::new(HookPoint::LnFinal, vector(h, 0), 1.0)],
    );
    assert!(max_diff(&hidden(&one, &ids), &hidden(&e, &ids)) > 0.1);
}

#[test]
fn at_ln_final_logits_shift_by_the_unembedding_of_the_vector_times_the_gain() {
    let (_d, e) = tiny();
    let h = e.model.cfg.hidden_size;
    let alpha = -2.5f32;
    let v = vector(h, 3);
    let s = steered(
        &e,
        &[SteerVector::new(HookPoint::LnFinal, v.clone(), alpha)],
    );
    let ids = prompt_ids(&e, "Name a colour.");
    let (before, after) = (logits(&e, &ids), logits(&s, &ids));
    // By hand: Δlogits[j] = Σ_i W_U[j, i] · gain[i] · alpha · v[i], the same at every position.
    let gain: Vec<f32> = e.model.norm.to_vec1().unwrap();
    let wu: Vec<Vec<f32>> = e.model.lm_head.to_vec2().unwrap();
    let shift: Vec<f64> = wu
        .iter()
        .map(|row| {
            (0..h)
                .map(|i| row[i] as f64 * gain[i] as f64 * alpha as f64 * v[i] as f64)
                .sum()
        })
        .collect();
    let mut worst = 0.0f64;
    for (b, a) in before.iter().zip(&after) {
        for j in 0..shift.len() {
            worst = worst.max(((a[j] - b[j]) as f64 - shift[j]).abs());
        }
    }
    assert!(
        worst < 1e-4,
        "logit shift differs from W_U (gain ⊙ alpha v) by {worst}"
    );
    assert!(
        shift.iter().any(|x| x.abs() > 0.5),
        "the shift is not trivial"
    );
}

#[test]
fn at_the_last_resid_post_the_output_is_the_final_norm_of_the_shifted_stream() {
    let (_d, e) = tiny();
    let h = e.model.cfg.hidden_size;
    let eps = e.model.cfg.rms_eps;
    let point = HookPoint::block(2, LayerHook::ResidPost);
    let (alpha, v) = (3.0f32, vector(h, 5));
    let ids = prompt_ids(&e, "Pick A or B.");
    let positions: Vec<usize> = (0..ids.len()).collect();
    // The unsteered stream at the last layer's output, then by hand: rms_norm(x + alpha v) · gain.
    let x: Vec<Vec<f32>> = capture_positions(&e.model, &ids, &positions, &[point]).unwrap()[0]
        .to_vec2()
        .unwrap();
    let gain: Vec<f32> = e.model.norm.to_vec1().unwrap();
    let want: Vec<Vec<f32>> = x
        .iter()
        .map(|row| {
            let y: Vec<f64> = row
                .iter()
                .zip(&v)
                .map(|(&r, &vi)| r as f64 + (alpha * vi) as f64)
                .collect();
            let ms = y.iter().map(|a| a * a).sum::<f64>() / h as f64;
            let inv = 1.0 / (ms + eps).sqrt();
            y.iter()
                .zip(&gain)
                .map(|(a, &g)| (a * inv * g as f64) as f32)
                .collect()
        })
        .collect();
    let s = steered(&e, &[SteerVector::new(point, v, alpha)]);
    let got = hidden(&s, &ids);
    assert!(max_diff(&got, &want) < 1e-5, "{}", max_diff(&got, &want));
    assert!(max_diff(&got, &hidden(&e, &ids)) > 0.1);
}

#[test]
fn a_capture_at_a_steered_point_records_the_steered_value() {
    let (_d, e) = tiny();
    let h = e.model.cfg.hidden_size;
    let v = vector(h, 1);
    let point = HookPoint::block(0, LayerHook::ResidPre);
    let s = steered(&e, &[SteerVector::new(point, v.clone(), 0.5)]);
    let ids = prompt_ids(&e, "Hi");
    let positions: Vec<usize> = (0..ids.len()).collect();
    let got: Vec<Vec<f32>> = capture_positions(&s.model, &ids, &positions, &[point]).unwrap()[0]
        .to_vec2()
        .unwrap();
    // Layer 0's resid_pre is the token's embedding row, plus 0.5 v.
    let embed: Vec<Vec<f32>> = e.model.embed.to_vec2().unwrap();
    let want: Vec<Vec<f32>> = ids
        .iter()
        .map(|&id| {
            embed[id as usize]
                .iter()
                .zip(&v)
                .map(|(a, b)| a + 0.5 * b)
                .collect()
        })
        .collect();
    assert_eq!(got, want);
}

#[test]
fn resid_post_of_a_layer_is_resid_pre_of_the_next_and_vectors_at_one_point_add_up() {
    let (_d, e) = tiny();
    let h = e.model.cfg.hidden_size;
    let ids = prompt_ids(&e, "Tell me about bread.");
    let v = vector(h, 2);
    let post0 = steered(
        &e,
        &[SteerVector::new(
            HookPoint::block(0, LayerHook::ResidPost),
            v.clone(),
            2.0,
        )],
    );
    let pre1 = steered(
        &e,
        &[SteerVector::new(
            HookPoint::block(1, LayerHook::ResidPre),
            v.clone(),
            2.0,
        )],
    );
    assert_eq!(hidden(&post0, &ids), hidden(&pre1, &ids));
    // Two vectors at one point act as their weighted sum.
    let (w, p) = (vector(h, 9), HookPoint::block(1, LayerHook::MlpOut));
    let two = steered(
        &e,
        &[
            SteerVector::new(p, v.clone(), 2.0),
            SteerVector::new(p, w.clone(), -1.0),
        ],
    );
    let sum: Vec<f32> = v.iter().zip(&w).map(|(a, b)| 2.0 * a - b).collect();
    let one = steered(&e, &[SteerVector::new(p, sum, 1.0)]);
    let d = max_diff(&hidden(&two, &ids), &hidden(&one, &ids));
    assert!(d < 1e-5, "{d}");
    assert_eq!(two.steering().len(), 2);
    assert!(max_diff(&hidden(&two, &ids), &hidden(&e, &ids)) > 0.1);
}

/// Uncached log P(answer | prompt) from the full-sequence forward.
fn uncached_logprob(e: &Engine, prompt: &[u32], answer: &[u32]) -> f64 {
    let mut seq = prompt.to_vec();
    seq.extend_from_slice(answer);
    let lp = e.sequence_logprobs(&[seq]).unwrap().remove(0);
    lp[prompt.len() - 1..].iter().map(|&x| x as f64).sum()
}

/// Steering at three kinds of point in different layers.
fn mixed(e: &Engine) -> Engine {
    let h = e.model.cfg.hidden_size;
    steered(
        e,
        &[
            SteerVector::new(HookPoint::block(0, LayerHook::AttnOut), vector(h, 4), 1.5),
            SteerVector::new(
                HookPoint::block(1, LayerHook::ResidPost),
                vector(h, 6),
                -2.0,
            ),
            SteerVector::new(HookPoint::LnFinal, vector(h, 8), 0.7),
        ],
    )
}

#[test]
fn every_scoring_path_is_steered_at_every_position() {
    let (_d, e) = tiny();
    let s = mixed(&e);
    let c = Conversation::user(None, "Pick one: A) the sea B) the sky.");
    let prompt = s.chat.prompt(&c).unwrap().ids;
    let options: Vec<String> = ["A", "B", "the sky"].map(String::from).to_vec();
    // Exact options: prefill (head, then rest, with the KV cache), then the token tree.
    let scores = s.score_options(&c, &options).unwrap();
    let plain = e.score_options(&c, &options).unwrap();
    let mut moved = 0.0f64;
    for (cand, unsteered) in scores.candidates.iter().zip(&plain.candidates) {
        let mut ids = cand.token_ids.clone();
        ids.push(IM_END);
        let want = uncached_logprob(&s, &prompt, &ids);
        assert!(
            (want - cand.logprob).abs() < 1e-4,
            "{}: {want} vs {}",
            cand.text,
            cand.logprob
        );
        moved = moved.max((cand.logprob - unsteered.logprob).abs());
    }
    assert!(moved > 0.05, "steering moved the scores by only {moved}");
    // First-token scoring, one prompt and many side by side.
    let convs: Vec<Conversation> = ["the sea?", "the sky, or the sea?", "x"]
        .iter()
        .map(|t| Conversation::user(None, t))
        .collect();
    let many = s
        .first_token_logprobs_many(&convs, &options, &mut |_| {})
        .unwrap();
    for (conv, got) in convs.iter().zip(&many) {
        let ids = s.chat.prompt(conv).unwrap().ids;
        for &(tok, lp) in got {
            let want = uncached_logprob(&s, &ids, &[tok]);
            assert!((want - lp).abs() < 1e-4, "{conv:?}: {want} vs {lp}");
        }
    }
    // Exact ranges.
    let r = s.score_range(&c, 0, 12).unwrap();
    for n in &r.numbers {
        let mut ids = s.chat.answer_ids(&n.n.to_string()).unwrap();
        ids.push(IM_END);
        let want = uncached_logprob(&s, &prompt, &ids);
        assert!((want - n.logprob_complete).abs() < 1e-4, "{}", n.n);
    }
}

#[test]
fn decoding_is_steered_at_the_prompt_and_at_every_generated_token() {
    let (_d, e) = tiny();
    let s = mixed(&e);
    let prompt = prompt_ids(&s, "Say something.");
    let cfg = SampleConfig {
        n: 3,
        temperature: 1.0,
        max_tokens: 8,
        seed: 5,
        ..SampleConfig::default()
    };
    let out = s.sample_ids(&prompt, &cfg, &[]).unwrap();
    for g in &out {
        let ids = g.sample.ids();
        let mut seq = prompt.clone();
        seq.extend(&ids);
        let lp = s.sequence_logprobs(&[seq]).unwrap().remove(0);
        for (k, t) in g.sample.tokens.iter().enumerate() {
            let want = lp[prompt.len() - 1 + k];
            assert!(
                (want - t.logprob).abs() < 1e-4,
                "token {k}: {want} vs {}",
                t.logprob
            );
        }
    }
    // Greedy answers of the steered and unsteered model differ (same seed).
    let greedy = SampleConfig {
        temperature: 0.0,
        max_tokens: 8,
        ..SampleConfig::default()
    };
    let a = s.sample_ids(&prompt, &greedy, &[]).unwrap()[0].sample.ids();
    let b = e.sample_ids(&prompt, &greedy, &[]).unwrap()[0].sample.ids();
    assert_ne!(a, b);
}

#[test]
fn steering_an_engine_forgets_the_prompt_heads_it_kept() {
    let (_d, e) = tiny();
    let c = Conversation::user(Some("You answer with one letter."), "A or B?");
    let opts: Vec<String> = ["A", "B"].map(String::from).to_vec();
    let fresh = mixed(&e).score_options(&c, &opts).unwrap();
    let mut same = e.with_steering(None).unwrap();
    let before = same.score_options(&c, &opts).unwrap();
    same.set_steering(mixed(&e).model.steering.as_deref().cloned());
    let after = same.score_options(&c, &opts).unwrap();
    for ((a, f), b) in after
        .candidates
        .iter()
        .zip(&fresh.candidates)
        .zip(&before.candidates)
    {
        assert_eq!(a.logprob, f.logprob);
        assert_ne!(a.logprob, b.logprob);
    }
}

#[test]
fn vectors_that_do_not_fit_the_model_are_refused_with_what_is_wrong() {
    let (_d, e) = tiny();
    let cfg = &e.model.cfg;
    let err = |v: SteerVector| Steering::new(&[v], cfg).unwrap_err().to_string();
    let e1 = err(SteerVector::new(HookPoint::LnFinal, vec![1.0; 10], 1.0));
    assert!(
        e1.contains("10 values") && e1.contains("hidden size is 64"),
        "{e1}"
    );
    let e2 = err(SteerVector::new(
        HookPoint::block(3, LayerHook::ResidPost),
        vec![1.0; 64],
        1.0,
    ));
    assert!(
        e2.contains("blocks.3.hook_resid_post") && e2.contains("3 layers"),
        "{e2}"
    );
    assert!(Steering::new(&[], cfg).unwrap().is_none());
}

fn save(path: &std::path::Path, tensors: &[(&str, Tensor)]) {
    let map: std::collections::HashMap<String, Tensor> = tensors
        .iter()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect();
    candle_core::safetensors::save(&map, path).unwrap();
}

#[test]
fn files_are_read_by_point_and_bad_ones_name_file_point_and_what_was_expected() {
    let (_d, e) = tiny();
    let cfg = &e.model.cfg;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("dirs.safetensors");
    let v = vector(64, 0);
    save(
        &f,
        &[
            (
                "blocks.1.hook_resid_post",
                Tensor::new(v.clone(), &Device::Cpu).unwrap(),
            ),
            (
                "blocks.2.hook_resid_post",
                Tensor::new(v.clone(), &Device::Cpu)
                    .unwrap()
                    .reshape((1, 64))
                    .unwrap(),
            ),
            (
                "blocks.0.hook_mlp_out",
                Tensor::zeros((2, 64), candle_core::DType::F32, &Device::Cpu).unwrap(),
            ),
            (
                "blocks.0.hook_attn_out",
                Tensor::new(v.clone(), &Device::Cpu)
                    .unwrap()
                    .to_dtype(candle_core::DType::BF16)
                    .unwrap(),
            ),
        ],
    );
    let spec = |s: &str| format!("{}:{s}", f.display()).parse::<SteerSpec>().unwrap();
    let s = Steering::load(
        &[
            spec("blocks.1.hook_resid_post:2"),
            spec("blocks.2.hook_resid_post:-1"),
        ],
        cfg,
    )
    .unwrap()
    .unwrap();
    let rec = &s.records()[1];
    assert_eq!(rec.point, "blocks.2.hook_resid_post");
    assert_eq!(rec.alpha, -1.0);
    assert_eq!(rec.sha256, selfaware_model::file_sha256(&f).unwrap());
    assert_eq!(spec("blocks.1.hook_resid_post:2").read_vector().unwrap(), v);
    // BF16 is widened: the values are the vector rounded to bf16.
    let bf = spec("blocks.0.hook_attn_out:1").read_vector().unwrap();
    assert!(bf
        .iter()
        .zip(&v)
        .all(|(a, b)| (a - b).abs() <= b.abs() / 128.0));
    let err = |s: &str| Steering::load(&[spec(s)], cfg).unwrap_err().to_string();
    let m = err("blocks.0.hook_resid_pre:1");
    assert!(m.contains("dirs.safetensors"), "{m}");
    assert!(m.contains("no tensor `blocks.0.hook_resid_pre`"), "{m}");
    assert!(
        m.contains("blocks.0.hook_attn_out, blocks.0.hook_mlp_out, blocks.1.hook_resid_post"),
        "{m}"
    );
    let m = err("blocks.0.hook_mlp_out:1");
    assert!(
        m.contains("shape [2, 64]") && m.contains("[d] or [1, d]"),
        "{m}"
    );
    let missing = format!(
        "{}/nope.safetensors:ln_final.hook_normalized:1",
        dir.path().display()
    );
    let m = Steering::load(&[missing.parse().unwrap()], cfg)
        .unwrap_err()
        .to_string();
    assert!(m.contains("nope.safetensors"), "{m}");
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"not a file of tensors").unwrap();
    let m = Steering::load(
        &[format!("{}:ln_final.hook_normalized:1", junk.display())
            .parse()
            .unwrap()],
        cfg,
    )
    .unwrap_err()
    .to_string();
    assert!(
        m.contains("junk.safetensors") && m.contains("not a safetensors file"),
        "{m}"
    );
}

#[test]
fn forward_rows_is_steered_as_the_full_forward_is() {
    let (_d, e) = tiny();
    let s = mixed(&e);
    let ids = prompt_ids(&s, "Tell me about bread.");
    let t = ids.len();
    let mask = build_mask(1, t, t, |_, q, k| k <= q).unwrap();
    let step = Step {
        tokens: &u32_matrix(std::slice::from_ref(&ids)).unwrap(),
        positions: &u32_matrix(&[(0..t as u32).collect()]).unwrap(),
        mask: &mask,
    };
    let rows = [1u32, 4, t as u32 - 1];
    let got: Vec<Vec<f32>> = s
        .model
        .forward_rows(&step, None, &Tensor::new(&rows[..], &Device::Cpu).unwrap())
        .unwrap()
        .to_vec2()
        .unwrap();
    let all = hidden(&s, &ids);
    let want: Vec<Vec<f32>> = rows.iter().map(|&r| all[r as usize].clone()).collect();
    assert!(max_diff(&got, &want) < 1e-5, "{}", max_diff(&got, &want));
    assert!(
        max_diff(
            &want,
            &rows
                .iter()
                .map(|&r| hidden(&e, &ids)[r as usize].clone())
                .collect::<Vec<_>>()
        ) > 0.1
    );
}

#[test]
fn the_short_form_file_alpha_takes_the_point_from_a_file_of_one_tensor_only() {
    let dir = tempfile::tempdir().unwrap();
    let v = vector(64, 3);
    let one = dir.path().join("one.safetensors");
    save(
        &one,
        &[(
            "blocks.1.hook_resid_post",
            Tensor::new(v.clone(), &Device::Cpu).unwrap(),
        )],
    );
    let s: SteerSpec = format!("{}:-2.5", one.display()).parse().unwrap();
    assert_eq!(s.file, one);
    assert_eq!(s.point.to_string(), "blocks.1.hook_resid_post");
    assert_eq!(s.alpha, -2.5);
    assert_eq!(s.read_vector().unwrap(), v);
    // The long form of the same vector is the same spec.
    let long: SteerSpec = format!("{}:blocks.1.hook_resid_post:-2.5", one.display())
        .parse()
        .unwrap();
    assert_eq!(s, long);
    let err = |s: String| s.parse::<SteerSpec>().unwrap_err().to_string();
    // Two tensors: the point is ambiguous; the error names the count and the tensors.
    let two = dir.path().join("two.safetensors");
    save(
        &two,
        &[
            (
                "blocks.0.hook_resid_post",
                Tensor::new(v.clone(), &Device::Cpu).unwrap(),
            ),
            (
                "blocks.1.hook_resid_post",
                Tensor::new(v.clone(), &Device::Cpu).unwrap(),
            ),
        ],
    );
    let e = err(format!("{}:1", two.display()));
    assert!(
        e.contains("exactly one tensor")
            && e.contains("holds 2 (blocks.0.hook_resid_post, blocks.1.hook_resid_post)")
            && e.contains("FILE:POINT:ALPHA"),
        "{e}"
    );
    // One tensor whose name is not a hook point.
    let odd = dir.path().join("odd.safetensors");
    save(
        &odd,
        &[("direction", Tensor::new(v, &Device::Cpu).unwrap())],
    );
    let e = err(format!("{}:1", odd.display()));
    assert!(e.contains("`direction`, not a hook point"), "{e}");
    // A missing file says so.
    let missing = format!("{}:1", dir.path().join("none.safetensors").display());
    let e = err(missing.clone());
    assert!(e.contains("cannot read"), "{e}");
    // A command line is checked before the file exists: `--steer` parses its syntax and reads
    // the file when the model opens.
    let arg: SteerArg = missing.parse().unwrap();
    assert!(arg
        .resolve()
        .unwrap_err()
        .to_string()
        .contains("cannot read"));
    assert!("x.safetensors:nan".parse::<SteerArg>().is_err());
    assert!(":1"
        .parse::<SteerArg>()
        .unwrap_err()
        .to_string()
        .contains("file name is empty"));
    let ok: SteerArg = format!("{}:3", one.display()).parse().unwrap();
    assert_eq!(
        SteerArg::resolve_all(&[ok]).unwrap()[0].point.to_string(),
        "blocks.1.hook_resid_post"
    );
}
