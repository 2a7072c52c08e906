//! Every hand-written backward against candle's slow (differentiable) ops, and the LoRA and
//! steering-vector gradients of the whole tiny model against central finite differences.

mod common;

use candle_core::{Device, Tensor, Var, D};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use selfaware_model::lora::Adapter;
use selfaware_model::ops;
use selfaware_model::testing::TinySpec;
use selfaware_model::{HookPoint, LayerHook, SteerVar, SteerVector, Steering};
use selfaware_train::batch::Batch;
use selfaware_train::loss::batch_nll;
use selfaware_train::{data, TrainConfig};

fn randn(rng: &mut ChaCha8Rng, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn max_rel_diff(a: &Tensor, b: &Tensor) -> f32 {
    let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let scale = b.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-6);
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
        / scale
}

/// Gradient of `sum(f(x) · g)` with respect to `x`.
fn grad_of(x: &Tensor, g: &Tensor, f: impl Fn(&Tensor) -> Tensor) -> Tensor {
    forward_and_grad(x, g, f).1
}

/// `f(x)` computed with `x` in a gradient graph (the training path), and the gradient of
/// `sum(f(x) · g)` with respect to `x`.
fn forward_and_grad(x: &Tensor, g: &Tensor, f: impl Fn(&Tensor) -> Tensor) -> (Tensor, Tensor) {
    let v = Var::from_tensor(x).unwrap();
    let y = f(v.as_tensor());
    let loss = (&y * g).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let grad = grads
        .get(v.as_tensor())
        .expect("a gradient reached x")
        .clone();
    (y.detach(), grad)
}

/// The op's output (fast path) equals the slow op's, and so does its input gradient.
fn check_op(
    name: &str,
    x: &Tensor,
    fast: impl Fn(&Tensor) -> Tensor,
    slow: impl Fn(&Tensor) -> Tensor,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let y_fast = fast(x);
    let y_slow = slow(x);
    assert!(
        max_rel_diff(&y_fast, &y_slow) < 1e-5,
        "{name}: forward differs"
    );
    let g = randn(&mut rng, y_fast.dims());
    let (y_train, gf) = forward_and_grad(x, &g, &fast);
    // The training path (x in a graph) may take a different kernel: its forward must agree too.
    assert!(
        max_rel_diff(&y_train, &y_slow) < 1e-5,
        "{name}: forward with gradients differs"
    );
    let gs = grad_of(x, &g, &slow);
    let d = max_rel_diff(&gf, &gs);
    assert!(d < 1e-5, "{name}: backward differs from the slow op by {d}");
    let norm = gf
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(norm > 1e-6, "{name}: gradient is zero");
}

#[test]
fn custom_backwards_match_slow_ops() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let x = randn(&mut rng, &[2, 5, 16]);
    let w = randn(&mut rng, &[16]).affine(0.3, 1.0).unwrap();
    check_op(
        "rms_norm",
        &x,
        |x| ops::rms_norm(x, &w, 1e-5).unwrap(),
        |x| candle_nn::ops::rms_norm_slow(x, &w, 1e-5).unwrap(),
    );

    let s = (randn(&mut rng, &[2, 3, 4, 7]) * 3.0).unwrap();
    check_op(
        "softmax",
        &s,
        |x| ops::softmax_last_dim(x).unwrap(),
        |x| candle_nn::ops::softmax(x, D::Minus1).unwrap(),
    );
    // With masked (-inf) entries, as in causal attention.
    let mask = selfaware_model::llama::build_mask(1, 4, 7, |_, q, k| k <= q + 3).unwrap();
    let masked = s.broadcast_add(&mask).unwrap();
    let g = randn(&mut rng, masked.dims());
    let gf = grad_of(&s, &g, |x| {
        ops::softmax_last_dim(&x.broadcast_add(&mask).unwrap()).unwrap()
    });
    let gs = grad_of(&s, &g, |x| {
        candle_nn::ops::softmax(&x.broadcast_add(&mask).unwrap(), D::Minus1).unwrap()
    });
    assert!(max_rel_diff(&gf, &gs) < 1e-5, "masked softmax backward");

    let q = randn(&mut rng, &[1, 3, 6, 8]);
    let angles: Vec<f32> = (0..6 * 4).map(|i| (i as f32) * 0.37).collect();
    let a = Tensor::from_vec(angles, (6, 4), &Device::Cpu).unwrap();
    let (cos, sin) = (a.cos().unwrap(), a.sin().unwrap());
    check_op(
        "rope",
        &q,
        |x| ops::rope(x, &cos, &sin).unwrap(),
        |x| candle_nn::rotary_emb::rope_slow(x, &cos, &sin).unwrap(),
    );

    // silu(gate) · up, differentiated with respect to each input in turn.
    let other = randn(&mut rng, &[2, 5, 16]);
    let gate = (randn(&mut rng, &[2, 5, 16]) * 4.0).unwrap();
    check_op(
        "swiglu (gate)",
        &gate,
        |g| ops::swiglu(g, &other).unwrap(),
        |g| (g.silu().unwrap() * &other).unwrap(),
    );
    check_op(
        "swiglu (up)",
        &x,
        |u| ops::swiglu(&gate, u).unwrap(),
        |u| (gate.silu().unwrap() * u).unwrap(),
    );

    let lin_w = randn(&mut rng, &[12, 16]);
    check_op(
        "frozen linear",
        &x,
        |x| ops::linear(x, &lin_w).unwrap(),
        |x| x.broadcast_matmul(&lin_w.t().unwrap()).unwrap(),
    );
    // x wᵀ + z with z a LoRA-like term depending on x.
    let a = randn(&mut rng, &[12, 16]);
    let z_of = |x: &Tensor| (x.broadcast_matmul(&a.t().unwrap()).unwrap() * 0.5).unwrap();
    check_op(
        "frozen linear + add",
        &x,
        |x| ops::linear_add(x, &lin_w, &z_of(x)).unwrap(),
        |x| (x.broadcast_matmul(&lin_w.t().unwrap()).unwrap() + z_of(x)).unwrap(),
    );
}

#[test]
fn fused_backwards_split_across_tasks_match_slow_ops() {
    // Large enough that the fused kernels hand rows to several rayon tasks.
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let x = randn(&mut rng, &[40, 100, 16]);
    let w = randn(&mut rng, &[16]).affine(0.3, 1.0).unwrap();
    check_op(
        "rms_norm, many rows",
        &x,
        |x| ops::rms_norm(x, &w, 1e-5).unwrap(),
        |x| candle_nn::ops::rms_norm_slow(x, &w, 1e-5).unwrap(),
    );
    let s = (randn(&mut rng, &[4, 2, 100, 50]) * 3.0).unwrap();
    check_op(
        "softmax, many rows",
        &s,
        |x| ops::softmax_last_dim(x).unwrap(),
        |x| candle_nn::ops::softmax(x, D::Minus1).unwrap(),
    );
    let up = randn(&mut rng, &[40, 100, 16]);
    check_op(
        "swiglu, many values",
        &(x.clone() * 4.0).unwrap(),
        |g| ops::swiglu(g, &up).unwrap(),
        |g| (g.silu().unwrap() * &up).unwrap(),
    );
}

#[test]
fn lora_linear_matches_slow_ops_for_every_input() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let x = randn(&mut rng, &[2, 5, 16]);
    let w = randn(&mut rng, &[12, 16]);
    let a = randn(&mut rng, &[4, 16]);
    let b = randn(&mut rng, &[12, 4]);
    let slow = |x: &Tensor, a: &Tensor, b: &Tensor| {
        let base = x.broadcast_matmul(&w.t().unwrap()).unwrap();
        let low = (x.broadcast_matmul(&a.t().unwrap()).unwrap() * 0.5).unwrap();
        (base + low.broadcast_matmul(&b.t().unwrap()).unwrap()).unwrap()
    };
    check_op(
        "lora linear (x)",
        &x,
        |x| ops::lora_linear(x, &w, &a, &b, 0.5).unwrap(),
        |x| slow(x, &a, &b),
    );
    check_op(
        "lora linear (A)",
        &a,
        |a| ops::lora_linear(&x, &w, a, &b, 0.5).unwrap(),
        |a| slow(&x, a, &b),
    );
    check_op(
        "lora linear (B)",
        &b,
        |b| ops::lora_linear(&x, &w, &a, b, 0.5).unwrap(),
        |b| slow(&x, &a, b),
    );
}

#[test]
fn fused_ops_without_grad_graph_are_unchanged() {
    // Inference tensors take the fused kernels: same values, no graph.
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let x = randn(&mut rng, &[3, 16]);
    let w = randn(&mut rng, &[16]);
    let y = ops::rms_norm(&x, &w, 1e-5).unwrap();
    assert!(!ops::needs_backward(&y));
    let y2 = candle_nn::ops::rms_norm(&x, &w, 1e-5).unwrap();
    assert_eq!(
        y.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        y2.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );
}

/// A fresh adapter with a random non-zero B (so gradients reach A too); deterministic.
fn adapter_with_random_b(e: &selfaware_model::Engine, init_seed: u64, b_seed: u64) -> Adapter {
    let cfg = TrainConfig::default();
    let mut adapter = Adapter::init(&e.model.cfg, &cfg.lora_spec(), init_seed).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(b_seed);
    for (_, (_, b)) in adapter.factors.iter_mut() {
        *b = (randn(&mut rng, b.dims()) * 0.2).unwrap();
    }
    adapter
}

/// Every named gradient of `got` within 1e-4 (relative L2) of the same one in `want`.
fn assert_same_gradients(got: &[(String, Tensor)], want: &[(String, Tensor)]) {
    assert_eq!(got.len(), want.len());
    for ((name, a), (_, b)) in got.iter().zip(want) {
        let diff = (a - b).unwrap().sqr().unwrap().sum_all().unwrap();
        let norm = b.sqr().unwrap().sum_all().unwrap();
        let rel = (diff.to_scalar::<f32>().unwrap() / norm.to_scalar::<f32>().unwrap()).sqrt();
        assert!(rel < 1e-4, "{name}: relative difference {rel}");
    }
}

/// Loss (mean NLL over trained tokens) of the tiny model with `adapter` attached.
fn loss_with(
    e: &selfaware_model::Engine,
    adapter: &Adapter,
    batch: &Batch,
) -> (f64, Vec<(String, Tensor)>) {
    loss_by(e, adapter, batch, |m, b| batch_nll(m, b, None).unwrap())
}

/// The mean loss that `nll` computes for the batch, and its LoRA gradients.
fn loss_by(
    e: &selfaware_model::Engine,
    adapter: &Adapter,
    batch: &Batch,
    nll: impl Fn(&selfaware_model::Llama, &Batch) -> Tensor,
) -> (f64, Vec<(String, Tensor)>) {
    let mut a = adapter.clone();
    let vars = a.make_trainable().unwrap();
    let mut m = e.model.clone();
    m.attach_adapter(&a, std::path::Path::new("test")).unwrap();
    let nll = (nll(&m, batch) / batch.n_trained as f64).unwrap();
    let grads = nll.backward().unwrap();
    let g = vars
        .iter()
        .map(|(n, v)| {
            (
                n.clone(),
                grads
                    .get(v.as_tensor())
                    .cloned()
                    .unwrap_or_else(|| v.as_tensor().zeros_like().unwrap()),
            )
        })
        .collect();
    (nll.to_scalar::<f32>().unwrap() as f64, g)
}

#[test]
fn lora_gradient_matches_finite_differences() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::tiny_engine(dir.path(), &TinySpec::default());
    let file = common::ab_file(dir.path(), 3);
    let ds = data::load(&file, &e.chat, 512).unwrap();
    let exs: Vec<_> = ds.examples.iter().collect();
    let batch = Batch::new(&exs, e.chat.tokenizer.pad_id, true).unwrap();
    assert!(batch.prefix.is_some(), "the examples share a chat head");

    // A non-zero B so that gradients reach A too; deterministic values. The same stream then
    // draws the probe directions.
    let cfg = TrainConfig::default();
    let mut adapter = Adapter::init(&e.model.cfg, &cfg.lora_spec(), 5).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for (_, (_, b)) in adapter.factors.iter_mut() {
        *b = (randn(&mut rng, b.dims()) * 0.2).unwrap();
    }
    let (_, grads) = loss_with(&e, &adapter, &batch);
    assert_eq!(grads.len(), 2 * 7 * 2);

    // Directional derivative along a random direction, tensor by tensor.
    let h = 1e-3f64;
    let mut checked = 0;
    for (k, key) in adapter
        .factors
        .keys()
        .cloned()
        .collect::<Vec<_>>()
        .iter()
        .enumerate()
    {
        for which in 0..2 {
            let (a, b) = &adapter.factors[key];
            let t = if which == 0 { a } else { b };
            let d = randn(&mut rng, t.dims());
            let analytic = (&grads[2 * k + which].1 * &d)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap() as f64;
            let shifted = |sign: f64| {
                let mut ad = adapter.clone();
                let (a, b) = ad.factors.get_mut(key).unwrap();
                let t = if which == 0 { a } else { b };
                *t = (&*t + (&d * (sign * h)).unwrap()).unwrap();
                loss_with(&e, &ad, &batch).0
            };
            let fd = (shifted(1.0) - shifted(-1.0)) / (2.0 * h);
            let tol = 2e-3 + 2e-2 * analytic.abs();
            assert!(
                (fd - analytic).abs() < tol,
                "{} {key:?}: finite difference {fd} vs backward {analytic}",
                if which == 0 { "A" } else { "B" }
            );
            assert!(
                analytic.abs() > 1e-4,
                "{key:?}: gradient vanished ({analytic})"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 28);
}

#[test]
fn shared_head_gives_the_loss_and_gradients_of_the_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::tiny_engine(dir.path(), &TinySpec::default());
    let file = common::ab_file(dir.path(), 5);
    let ds = data::load(&file, &e.chat, 512).unwrap();
    let exs: Vec<_> = ds.examples.iter().collect();
    let pad = e.chat.tokenizer.pad_id;
    let shared = Batch::new(&exs, pad, true).unwrap();
    let whole = Batch::new(&exs, pad, false).unwrap();
    assert!(shared.prefix.as_ref().unwrap().len >= 8);
    assert!(whole.prefix.is_none());
    assert_eq!(shared.n_trained, whole.n_trained);

    let adapter = adapter_with_random_b(&e, 5, 3);
    let (l_shared, g_shared) = loss_with(&e, &adapter, &shared);
    let (l_whole, g_whole) = loss_with(&e, &adapter, &whole);
    assert!(
        (l_shared - l_whole).abs() < 1e-5 * l_whole.abs(),
        "{l_shared} vs {l_whole}"
    );
    assert_same_gradients(&g_shared, &g_whole);
}

#[test]
fn last_layer_on_trained_rows_gives_the_loss_and_gradients_of_every_row() {
    // 5 examples fit in one piece of the loss; 150 take several (`LOSS_ROWS` positions each).
    for n in [5, 150] {
        trained_rows_match_every_row(n);
    }
}

fn trained_rows_match_every_row(n_examples: usize) {
    let dir = tempfile::tempdir().unwrap();
    let e = common::tiny_engine(dir.path(), &TinySpec::default());
    let file = common::ab_file(dir.path(), n_examples);
    let ds = data::load(&file, &e.chat, 512).unwrap();
    let exs: Vec<_> = ds.examples.iter().collect();
    let batch = Batch::new(&exs, e.chat.tokenizer.pad_id, false).unwrap();
    let rows = batch.select.dim(0).unwrap();
    if n_examples > 5 {
        assert!(
            rows > 2 * selfaware_train::loss::LOSS_ROWS,
            "{rows} trained positions take several pieces"
        );
    }
    let adapter = adapter_with_random_b(&e, 9, 4);
    // Every position through every layer, then the trained ones picked.
    let every_row = |m: &selfaware_model::Llama, b: &Batch| {
        let hidden = m.forward(&b.step(), None).unwrap();
        let (n, t, h) = hidden.dims3().unwrap();
        let sel = hidden
            .reshape((n * t, h))
            .unwrap()
            .index_select(&b.select, 0)
            .unwrap();
        let logp = ops::log_softmax(&m.logits(&sel).unwrap()).unwrap();
        logp.gather(&b.targets.unsqueeze(D::Minus1).unwrap(), D::Minus1)
            .unwrap()
            .sum_all()
            .unwrap()
            .neg()
            .unwrap()
    };
    let (l_rows, g_rows) = loss_with(&e, &adapter, &batch);
    let (l_all, g_all) = loss_by(&e, &adapter, &batch, every_row);
    assert!(
        (l_rows - l_all).abs() < 1e-5 * l_all.abs(),
        "{l_rows} vs {l_all}"
    );
    assert_same_gradients(&g_rows, &g_all);
    let last_layer = g_all
        .iter()
        .filter(|(name, g)| {
            let norm = g.sqr().unwrap().sum_all().unwrap();
            name.contains("layers.1.") && norm.to_scalar::<f32>().unwrap() > 0.0
        })
        .count();
    // The last layer's projections (the ones run on fewer rows) have gradients to compare.
    assert!(last_layer >= 7, "{last_layer}");
}

/// Attention from candle's differentiable ops: KV heads repeated for their query heads.
fn slow_attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor, scale: f64) -> Tensor {
    let (b, nh, _, hd) = q.dims4().unwrap();
    let (_, nkv, tk, _) = k.dims4().unwrap();
    let repeat = |x: &Tensor| {
        x.unsqueeze(2)
            .unwrap()
            .broadcast_as((b, nkv, nh / nkv, tk, hd))
            .unwrap()
            .contiguous()
            .unwrap()
            .reshape((b, nh, tk, hd))
            .unwrap()
    };
    let s = (q.matmul(&repeat(k).t().unwrap()).unwrap() * scale)
        .unwrap()
        .broadcast_add(mask)
        .unwrap();
    candle_nn::ops::softmax(&s, D::Minus1)
        .unwrap()
        .matmul(&repeat(v))
        .unwrap()
}

#[test]
fn attention_matches_slow_ops_for_every_input() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let (b, nh, nkv, t, p, hd) = (2, 6, 2, 5, 3, 4);
    let q = randn(&mut rng, &[b, nh, t, hd]);
    let k = randn(&mut rng, &[b, nkv, p + t, hd]);
    let v = randn(&mut rng, &[b, nkv, p + t, hd]);
    let scale = 0.5;
    // A shared head of p keys, then causal; and one mask per sequence with padded keys.
    let causal = selfaware_model::llama::build_mask(1, t, p + t, |_, i, j| j <= i + p).unwrap();
    let padded =
        selfaware_model::llama::build_mask(b, t, p + t, |s, i, j| j <= i + p && j < p + t - s)
            .unwrap();
    for (what, mask) in [("causal", &causal), ("per sequence", &padded)] {
        check_op(
            &format!("attention (q, {what})"),
            &q,
            |q| ops::attention(q, &k, &v, mask, scale).unwrap(),
            |q| slow_attention(q, &k, &v, mask, scale),
        );
        check_op(
            &format!("attention (k, {what})"),
            &k,
            |k| ops::attention(&q, k, &v, mask, scale).unwrap(),
            |k| slow_attention(&q, k, &v, mask, scale),
        );
        check_op(
            &format!("attention (v, {what})"),
            &v,
            |v| ops::attention(&q, &k, v, mask, scale).unwrap(),
            |v| slow_attention(&q, &k, v, mask, scale),
        );
    }
    // A mask that fits neither the queries nor the keys is one clear error.
    let wrong = selfaware_model::llama::build_mask(1, t, t, |_, i, j| j <= i).unwrap();
    let err = ops::attention(&q, &k, &v, &wrong, scale)
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not fit"), "{err}");
}

/// The summed NLL of `batch` on the tiny model steered by `v` at `point` (multiplier 1), on
/// the inference path: a plain [`Steering`], no gradient graph.
fn steered_nll(e: &selfaware_model::Engine, point: HookPoint, v: &[f32], batch: &Batch) -> f64 {
    let s = e
        .with_steering(
            Steering::new(&[SteerVector::new(point, v.to_vec(), 1.0)], &e.model.cfg).unwrap(),
        )
        .unwrap();
    batch_nll(&s.model, batch, None)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap() as f64
}

/// The summed NLL of `batch` with a trainable vector `v` at `point`, and its gradient.
fn steer_var_nll(
    e: &selfaware_model::Engine,
    point: HookPoint,
    v: &[f32],
    batch: &Batch,
) -> (f64, Vec<f32>) {
    let s = SteerVar::new(point, v.to_vec(), &e.model.cfg).unwrap();
    let m = s.attach(&e.model).unwrap();
    let nll = batch_nll(&m, batch, None).unwrap();
    let g = s.grad(&nll.backward().unwrap()).unwrap();
    (nll.to_scalar::<f32>().unwrap() as f64, g.to_vec1().unwrap())
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

#[test]
fn steering_vector_gradient_matches_finite_differences_at_every_kind_of_point() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::tiny_engine(dir.path(), &TinySpec::default());
    let file = common::ab_file(dir.path(), 3);
    let ds = data::load(&file, &e.chat, 512).unwrap();
    let exs: Vec<_> = ds.examples.iter().collect();
    let batch = Batch::new(&exs, e.chat.tokenizer.pad_id, true).unwrap();
    assert!(batch.prefix.is_some(), "the examples share a chat head");
    let lens: Vec<usize> = exs.iter().map(|x| x.len()).collect();
    assert!(
        lens.iter().min() < lens.iter().max(),
        "rows are padded: {lens:?}"
    );
    let h = e.model.cfg.hidden_size;
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let mut draw = |scale: f32| -> Vec<f32> {
        (0..h)
            .map(|_| rng.gen_range(-1.0f32..1.0) * scale)
            .collect()
    };
    let points = [
        HookPoint::block(0, LayerHook::ResidPre),
        HookPoint::block(0, LayerHook::AttnOut),
        HookPoint::block(1, LayerHook::MlpOut),
        HookPoint::block(0, LayerHook::ResidPost),
        HookPoint::block(1, LayerHook::ResidPost),
        HookPoint::LnFinal,
    ];
    for point in points {
        // Away from zero, so the check is not only at the unsteered model.
        let v = draw(0.3);
        let (loss, grad) = steer_var_nll(&e, point, &v, &batch);
        // The trainable vector's forward is the inference path's (different kernels after
        // the point, same numbers to rounding).
        let reference = steered_nll(&e, point, &v, &batch);
        assert!(
            (loss - reference).abs() < 1e-5 * reference.abs(),
            "{point}: {loss} vs {reference}"
        );
        let d = draw(1.0);
        let analytic = dot(&grad, &d);
        let eps = 1e-3f32;
        let shifted = |sign: f32| {
            let w: Vec<f32> = v.iter().zip(&d).map(|(a, b)| a + sign * eps * b).collect();
            steered_nll(&e, point, &w, &batch)
        };
        let fd = (shifted(1.0) - shifted(-1.0)) / (2.0 * eps as f64);
        let tol = 2e-3 + 2e-2 * analytic.abs();
        assert!(
            (fd - analytic).abs() < tol,
            "{point}: finite difference {fd} vs backward {analytic}"
        );
        assert!(
            analytic.abs() > 1e-2,
            "{point}: gradient vanished ({analytic})"
        );
    }
}

#[test]
fn steering_gradient_of_a_padded_batch_is_the_sum_of_its_rows_gradients() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::tiny_engine(dir.path(), &TinySpec::default());
    let ds = data::load(&common::ab_file(dir.path(), 4), &e.chat, 512).unwrap();
    let exs: Vec<_> = ds.examples.iter().collect();
    let pad = e.chat.tokenizer.pad_id;
    let point = HookPoint::block(0, LayerHook::ResidPost);
    let h = e.model.cfg.hidden_size;
    let v: Vec<f32> = (0..h).map(|i| ((i * 5 % 11) as f32 - 5.0) / 20.0).collect();
    // Each row alone: no padding, nothing shared.
    let mut want = vec![0f64; h];
    let mut want_loss = 0.0;
    for x in &exs {
        let (l, g) = steer_var_nll(&e, point, &v, &Batch::new(&[*x], pad, false).unwrap());
        want_loss += l;
        for (w, g) in want.iter_mut().zip(g) {
            *w += g as f64;
        }
    }
    let norm = dot(
        &want.iter().map(|x| *x as f32).collect::<Vec<_>>(),
        &want.iter().map(|x| *x as f32).collect::<Vec<_>>(),
    )
    .sqrt();
    assert!(norm > 1e-2, "{norm}");
    for share in [false, true] {
        let batch = Batch::new(&exs, pad, share).unwrap();
        assert_eq!(batch.prefix.is_some(), share);
        let (l, g) = steer_var_nll(&e, point, &v, &batch);
        assert!(
            (l - want_loss).abs() < 1e-5 * want_loss,
            "{l} vs {want_loss}"
        );
        let diff: f64 = g
            .iter()
            .zip(&want)
            .map(|(a, b)| (*a as f64 - b).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!(diff < 1e-4 * norm, "shared head {share}: {diff} of {norm}");
    }
}
