//! Activation capture on tiny random models: facts that hold by construction of the decoder
//! (the residual stream's bookkeeping, the embeddings, the final norm), the fast `last` path
//! against the every-position one, and that capturing changes nothing it reads.

use candle_core::{Device, IndexOp, Tensor};
use selfaware_model::capture::{capture_last_many, capture_positions};
use selfaware_model::llama::{build_mask, u32_matrix, Step};
use selfaware_model::testing::{write_tiny_gguf, TinySpec};
use selfaware_model::{Capture, Engine, HookPoint, LayerHook, ModelSource};
use selfaware_types::Conversation;

fn engine(spec: &TinySpec) -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    write_tiny_gguf(&path, spec).unwrap();
    let e = Engine::load(&ModelSource::Gguf(path)).unwrap();
    (dir, e)
}

fn rows(t: &Tensor) -> Vec<Vec<f32>> {
    t.to_vec2().unwrap()
}

fn max_abs(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

/// Every point of every layer, then `ln_final`.
fn all_points(layers: usize) -> Vec<HookPoint> {
    let mut p = Vec::new();
    for l in 0..layers {
        for h in LayerHook::ALL {
            p.push(HookPoint::block(l, h));
        }
    }
    p.push(HookPoint::LnFinal);
    p
}

fn prompt_ids(e: &Engine, text: &str) -> Vec<u32> {
    e.chat.prompt(&Conversation::user(None, text)).unwrap().ids
}

#[test]
fn the_residual_stream_adds_up_layer_by_layer() {
    let spec = TinySpec {
        layers: 3,
        ..TinySpec::default()
    };
    let (_d, e) = engine(&spec);
    let ids = prompt_ids(
        &e,
        "Which is heavier, a kilo of lead or a kilo of feathers?",
    );
    let all: Vec<usize> = (0..ids.len()).collect();
    let points = all_points(3);
    let got = capture_positions(&e.model, &ids, &all, &points).unwrap();
    let at = |l: usize, h: LayerHook| &got[l * 4 + h as usize];
    for t in &got {
        assert_eq!(t.dims(), &[ids.len(), spec.hidden]);
    }
    // Layer 0 reads the embeddings of the tokens.
    let embed = e
        .model
        .embed
        .index_select(&Tensor::new(ids.as_slice(), &Device::Cpu).unwrap(), 0)
        .unwrap();
    assert_eq!(rows(at(0, LayerHook::ResidPre)), rows(&embed));
    for l in 0..3 {
        // What leaves a layer is what enters the next one, bit for bit.
        if l + 1 < 3 {
            assert_eq!(
                rows(at(l, LayerHook::ResidPost)),
                rows(at(l + 1, LayerHook::ResidPre))
            );
        }
        // resid_post = resid_pre + attn_out + mlp_out
        let sum = ((at(l, LayerHook::ResidPre) + at(l, LayerHook::AttnOut)).unwrap()
            + at(l, LayerHook::MlpOut))
        .unwrap();
        assert!(max_abs(&sum, at(l, LayerHook::ResidPost)) < 1e-5);
    }
    // ln_final is the last resid_post over its RMS (eps 1e-5), computed here by hand.
    let last = rows(at(2, LayerHook::ResidPost));
    let ln = rows(&got[12]);
    for (x, y) in last.iter().zip(&ln) {
        let ms = x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / x.len() as f64;
        let r = 1.0 / (ms + e.model.cfg.rms_eps).sqrt();
        for (a, b) in x.iter().zip(y) {
            assert!((*a as f64 * r - *b as f64).abs() < 1e-5, "{a} {b}");
        }
    }
}

#[test]
fn capturing_leaves_the_forward_output_unchanged_and_ln_final_times_the_gain_is_it() {
    let (_d, e) = engine(&TinySpec::default());
    let ids = prompt_ids(&e, "Name a colour.");
    let t = ids.len();
    let tokens = u32_matrix(std::slice::from_ref(&ids)).unwrap();
    let positions = u32_matrix(&[(0..t as u32).collect()]).unwrap();
    let mask = build_mask(1, t, t, |_, q, k| k <= q).unwrap();
    let step = Step {
        tokens: &tokens,
        positions: &positions,
        mask: &mask,
    };
    let plain = e.model.forward(&step, None).unwrap();
    let points = all_points(2);
    let mut c = Capture::new(&points, 2, None).unwrap();
    let captured = e.model.forward_capture(&step, None, &mut c).unwrap();
    assert_eq!(
        plain.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        captured.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );
    let ln = c.into_tensors().unwrap().pop().unwrap();
    let scaled = ln.broadcast_mul(&e.model.norm).unwrap();
    assert!(max_abs(&scaled, &plain.i(0).unwrap()) < 1e-6);
}

#[test]
fn last_equals_the_last_row_of_all_for_each_prompt() {
    let (_d, e) = engine(&TinySpec::default());
    let prompts: Vec<Vec<u32>> = [
        "What is two plus two?",
        "What is two plus three?",
        "Tell me a secret word.",
        "Hi",
        "Which way is north, roughly, from here?",
        "A",
        "B or C?",
        "Count to five.",
        "Is the moon made of cheese? Answer yes or no.",
        "Done.",
    ]
    .iter()
    .map(|p| prompt_ids(&e, p))
    .collect();
    let points = vec![
        HookPoint::block(0, LayerHook::ResidPost),
        HookPoint::block(1, LayerHook::AttnOut),
        HookPoint::LnFinal,
    ];
    let mut done = 0;
    let last = capture_last_many(&e.model, &prompts, &points, &mut |k| done += k).unwrap();
    assert_eq!(done, prompts.len());
    for (pi, p) in prompts.iter().enumerate() {
        let all: Vec<usize> = (0..p.len()).collect();
        let full = capture_positions(&e.model, p, &all, &points).unwrap();
        for (k, (l, f)) in last.iter().zip(&full).enumerate() {
            assert_eq!(l.dims(), &[prompts.len(), 64]);
            let d = max_abs(&l.i(pi).unwrap(), &f.i(p.len() - 1).unwrap());
            assert!(d < 1e-5, "prompt {pi}, point {k}: {d}");
        }
    }
    // Chosen positions come back in the order asked.
    let p = &prompts[2];
    let full = capture_positions(&e.model, p, &[3, 1], &points).unwrap();
    let all: Vec<usize> = (0..p.len()).collect();
    let every = capture_positions(&e.model, p, &all, &points).unwrap();
    assert!(max_abs(&full[0].i(0).unwrap(), &every[0].i(3).unwrap()) < 1e-5);
    assert!(max_abs(&full[0].i(1).unwrap(), &every[0].i(1).unwrap()) < 1e-5);
}

/// A random adapter on every projection; `b_scale` 0 keeps PEFT's initial B = 0.
fn adapter(e: &Engine, b_scale: f32) -> selfaware_model::lora::Adapter {
    let spec = selfaware_model::lora::LoraSpec {
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
        targets: selfaware_model::llama::PROJECTIONS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        use_rslora: false,
    };
    let mut ad = selfaware_model::lora::Adapter::init(&e.model.cfg, &spec, 7).unwrap();
    for (k, (_, b)) in ad.factors.values_mut().enumerate() {
        let v: Vec<f32> = (0..b.elem_count())
            .map(|i| (((i * 7 + k * 13) % 17) as f32 - 8.0) * b_scale)
            .collect();
        *b = Tensor::from_vec(v, b.shape(), &Device::Cpu).unwrap();
    }
    ad
}

#[test]
fn an_adapter_changes_captures_only_when_it_is_nonzero() {
    let (dir, e) = engine(&TinySpec::default());
    let ids = prompt_ids(&e, "Pick a number.");
    let all: Vec<usize> = (0..ids.len()).collect();
    let points = all_points(2);
    let base = capture_positions(&e.model, &ids, &all, &points).unwrap();
    for (b_scale, changes) in [(0.0, false), (0.03, true)] {
        let ad_dir = dir.path().join(format!("adapter-{b_scale}"));
        adapter(&e, b_scale).save(&ad_dir).unwrap();
        let with = e.with_adapter_dir(&ad_dir).unwrap();
        let got = capture_positions(&with.model, &ids, &all, &points).unwrap();
        // The embeddings come before any adapted projection.
        assert_eq!(rows(&got[0]), rows(&base[0]));
        for (k, (g, b)) in got.iter().zip(&base).enumerate().skip(1) {
            let d = max_abs(g, b);
            if changes {
                assert!(d > 1e-3, "point {}: {d}", points[k]);
            } else {
                assert_eq!(d, 0.0, "point {}", points[k]);
            }
        }
    }
}

#[test]
fn bad_points_and_positions_are_refused_with_what_is_wrong() {
    let (_d, e) = engine(&TinySpec::default());
    let ids = prompt_ids(&e, "Hi");
    let err = capture_positions(
        &e.model,
        &ids,
        &[0],
        &[HookPoint::block(2, LayerHook::MlpOut)],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("blocks.2.hook_mlp_out") && err.contains("2 layers"),
        "{err}"
    );
    let err = capture_positions(&e.model, &ids, &[ids.len()], &[HookPoint::LnFinal])
        .unwrap_err()
        .to_string();
    assert!(err.contains("outside"), "{err}");
    let err = capture_last_many(
        &e.model,
        std::slice::from_ref(&ids),
        &[HookPoint::block(9, LayerHook::ResidPre)],
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("layer 9 is out of range"), "{err}");
}
