//! The numeric building blocks of the forward pass, in one place so the fast kernels and their
//! gradient-carrying variants are chosen here and nowhere else.
//!
//! candle's fused `rms_norm`, `softmax_last_dim` and `rope` are fast but have no backward pass:
//! gradients through them are silently zero (engine notes), and its matmul backward computes
//! the gradient of frozen weights too. Every op below therefore asks one predicate,
//! [`needs_backward`]: inference tensors never carry a gradient graph and take the fused kernel
//! unchanged; training tensors (those depending on a LoRA `Var`) run the same fused forward and
//! attach a hand-written backward to its result (see [`Backward`]).

use candle_core::{CpuStorage, Layout, Shape, Tensor, D};

use crate::error::Result;

/// The one predicate choosing between the fast inference kernels and the differentiable ones:
/// whether `x` is part of a gradient graph (it is a `Var` or was computed from one).
pub fn needs_backward(x: &Tensor) -> bool {
    x.track_op()
}

/// `x: [.., in]`, `w: [out, in]` → `[.., out]`. When `x` needs a backward pass, `w` is treated
/// as frozen: only the input gradient is computed (`dx = dy · w`).
pub fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let inp = *dims.last().expect("linear input has a last dimension");
    let n: usize = dims[..dims.len() - 1].iter().product();
    let x2 = x.reshape((n, inp))?;
    let y = if needs_backward(&x2) && !needs_backward(w) {
        let y = x2.detach().matmul(&w.t()?)?;
        attach(&x2, &y, Backward::FrozenLinear { weight: w.clone() })?
    } else if (1..=crate::gemv::MAX_ROWS).contains(&n)
        && x2.dtype() == candle_core::DType::F32
        && w.dtype() == candle_core::DType::F32
        && x2.device().is_cpu()
        && w.is_contiguous()
        && !needs_backward(w)
    {
        // A few rows (decoding): stream the weights once instead of packing them.
        x2.contiguous()?
            .apply_op2_no_bwd(w, &crate::gemv::SmallRowsLinear)?
    } else {
        x2.matmul(&w.t()?)?
    };
    let mut out_dims = dims;
    *out_dims.last_mut().expect("non-empty") = w.dim(0)?;
    Ok(y.reshape(out_dims)?)
}

/// `x wᵀ + z` for `x: [.., in]`, `w: [out, in]` frozen and `z: [.., out]` (a LoRA term), in one
/// output tensor: when gradients are needed, the base product is computed without a graph and
/// the op's backward gives `dx = dy · w` (only when `x` itself needs it) and `dz = dy`.
pub fn linear_add(x: &Tensor, w: &Tensor, z: &Tensor) -> Result<Tensor> {
    if !(needs_backward(x) || needs_backward(z)) || needs_backward(w) {
        return Ok((linear(x, w)? + z)?);
    }
    let dims = x.dims().to_vec();
    let inp = *dims.last().expect("linear input has a last dimension");
    let n: usize = dims[..dims.len() - 1].iter().product();
    let out = w.dim(0)?;
    let x2 = x.reshape((n, inp))?;
    let z2 = z.reshape((n, out))?.contiguous()?;
    let y = x2.detach().matmul(&w.t()?)?;
    let sum = x2.apply_op2(
        &z2,
        AddFrozenLinear {
            weight: w.clone(),
            y: Handoff::new(y),
        },
    )?;
    let mut out_dims = dims;
    *out_dims.last_mut().expect("non-empty") = out;
    Ok(sum.reshape(out_dims)?)
}

/// A LoRA linear layer `x wᵀ + scale · (x aᵀ) bᵀ` for `x: [.., in]`, `w: [out, in]` frozen,
/// `a: [r, in]` and `b: [out, r]`. When gradients are needed the whole layer is one node of
/// the graph: products are computed without a graph and the node's backward gives the
/// gradients of `x`, `a` and `b` directly. Composed of candle ops, the same layer is ten
/// nodes (reshapes, the scaling, two products, the sum), and candle's backward adds each
/// node's gradient into a freshly zeroed buffer: two extra passes over activations per node.
pub fn lora_linear(x: &Tensor, w: &Tensor, a: &Tensor, b: &Tensor, scale: f64) -> Result<Tensor> {
    let tracked = needs_backward(x) || needs_backward(a) || needs_backward(b);
    if !tracked || needs_backward(w) || x.dtype() != candle_core::DType::F32 || !x.device().is_cpu()
    {
        return lora_linear_composed(x, x, w, a, b, scale);
    }
    let dims = x.dims().to_vec();
    let inp = *dims.last().expect("linear input has a last dimension");
    let n: usize = dims[..dims.len() - 1].iter().product();
    let out = w.dim(0)?;
    let r = a.dim(0)?;
    let xc = x.contiguous()?;
    let (wc, ac, bc) = (
        w.contiguous()?,
        a.detach().contiguous()?,
        b.detach().contiguous()?,
    );
    let threads = candle_core::utils::get_num_threads();
    // u = scale · x aᵀ  [n, r]; y = x wᵀ + u bᵀ  [n, out], the second product added in place.
    let mut u = vec![0f32; n * r];
    let mut y = vec![0f32; n * out];
    with_f32(&xc, |xs| {
        with_f32(&wc, |ws| {
            with_f32(&ac, |as_| {
                with_f32(&bc, |bs| {
                    matmul(
                        (n, r, inp),
                        &mut u,
                        false,
                        (xs, inp, 1),
                        (as_, 1, inp),
                        scale as f32,
                        threads,
                    );
                    matmul(
                        (n, out, inp),
                        &mut y,
                        false,
                        (xs, inp, 1),
                        (ws, 1, inp),
                        1.0,
                        threads,
                    );
                    matmul(
                        (n, out, r),
                        &mut y,
                        true,
                        (&u, r, 1),
                        (bs, 1, r),
                        1.0,
                        threads,
                    );
                    Ok(())
                })
            })
        })
    })?;
    let mut out_dims = dims;
    *out_dims.last_mut().expect("non-empty") = out;
    Ok(xc.apply_op3(
        a,
        b,
        LoraLinear {
            weight: wc,
            scale,
            y: Handoff::from_vec(y, Shape::from(out_dims)),
            u,
        },
    )?)
}

/// `x wᵀ + scale · (x_lora aᵀ) bᵀ` from candle ops and [`linear_add`]: inference, and training
/// with LoRA dropout (`x_lora` is then the dropped-out input).
pub fn lora_linear_composed(
    x: &Tensor,
    x_lora: &Tensor,
    w: &Tensor,
    a: &Tensor,
    b: &Tensor,
    scale: f64,
) -> Result<Tensor> {
    // [.., in] → [.., r] (scaled while small) → [.., out]
    let z = linear(&(linear(x_lora, a)? * scale)?, b)?;
    linear_add(x, w, &z)
}

/// Forward: the precomputed `x wᵀ + u bᵀ` with `u = scale · x aᵀ`. Backward, with `g = dy b`:
/// `dx = dy w + scale · g a`, `da = scale · gᵀ x`, `db = dyᵀ u`.
struct LoraLinear {
    weight: Tensor,
    scale: f64,
    y: Handoff,
    /// `u = scale · x aᵀ` `[n, r]` from the forward, for `db` (kept, not taken, so the graph
    /// can be differentiated more than once).
    u: Vec<f32>,
}

impl candle_core::CustomOp3 for LoraLinear {
    fn name(&self) -> &'static str {
        "lora-linear"
    }

    fn cpu_fwd(
        &self,
        _s1: &CpuStorage,
        _l1: &Layout,
        _s2: &CpuStorage,
        _l2: &Layout,
        _s3: &CpuStorage,
        _l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (v, shape) = self.y.take(self.name())?;
        Ok((CpuStorage::F32(v), shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx_needed, da_needed, db_needed) = (x.track_op(), a.track_op(), b.track_op());
        let u = &self.u;
        let (x, a, b) = (
            x.detach().contiguous()?,
            a.detach().contiguous()?,
            b.detach().contiguous()?,
        );
        let inp = x.dim(D::Minus1)?;
        let (out, r) = b.dims2()?;
        let n = x.elem_count() / inp;
        let dy = grad_res.contiguous()?;
        let threads = candle_core::utils::get_num_threads();
        let scale = self.scale as f32;
        let mut g = vec![0f32; n * r];
        let mut da = vec![0f32; if da_needed { r * inp } else { 0 }];
        let mut db = vec![0f32; if db_needed { out * r } else { 0 }];
        let mut dx = vec![0f32; if dx_needed { n * inp } else { 0 }];
        let dev = x.device().clone();
        let mut run = |dys: &[f32], xs: &[f32], ws: &[f32], as_: &[f32], bs: &[f32]| {
            // g = dy b  [n, r]
            matmul(
                (n, r, out),
                &mut g,
                false,
                (dys, out, 1),
                (bs, r, 1),
                1.0,
                threads,
            );
            if db_needed {
                // db = dyᵀ u  [out, r]
                matmul(
                    (out, r, n),
                    &mut db,
                    false,
                    (dys, 1, out),
                    (u, r, 1),
                    1.0,
                    threads,
                );
            }
            if da_needed {
                // da = scale · gᵀ x  [r, in]
                matmul(
                    (r, inp, n),
                    &mut da,
                    false,
                    (&g, 1, r),
                    (xs, inp, 1),
                    scale,
                    threads,
                );
            }
            if dx_needed {
                // dx = dy w + scale · g a  [n, in]
                matmul(
                    (n, inp, out),
                    &mut dx,
                    false,
                    (dys, out, 1),
                    (ws, inp, 1),
                    1.0,
                    threads,
                );
                matmul(
                    (n, inp, r),
                    &mut dx,
                    true,
                    (&g, r, 1),
                    (as_, inp, 1),
                    scale,
                    threads,
                );
            }
            Ok(())
        };
        with_f32(&dy, |dys| {
            with_f32(&x, |xs| {
                with_f32(&self.weight, |ws| {
                    with_f32(&a, |as_| with_f32(&b, |bs| run(dys, xs, ws, as_, bs)))
                })
            })
        })?;
        Ok((
            dx_needed
                .then(|| Tensor::from_vec(dx, x.dims(), &dev))
                .transpose()?,
            da_needed
                .then(|| Tensor::from_vec(da, (r, inp), &dev))
                .transpose()?,
            db_needed
                .then(|| Tensor::from_vec(db, (out, r), &dev))
                .transpose()?,
        ))
    }
}

/// Runs `f` on the f32 values of a contiguous CPU tensor.
fn with_f32<R>(
    t: &Tensor,
    f: impl FnOnce(&[f32]) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        candle_core::Storage::Cpu(c) => f(f32_data(c, layout, "tensor")?),
        _ => Err(candle_core::Error::Msg("expected a CPU tensor".into())),
    }
}

/// `dst (m × n, row-major) = [dst +] beta · A B`, with `A: m × k` and `B: k × n` given by their
/// row and column strides, on `threads` threads (the split is over output blocks, so every
/// element's sum is taken in the same order whatever the count).
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    accumulate: bool,
    (a, a_rs, a_cs): (&[f32], usize, usize),
    (b, b_rs, b_cs): (&[f32], usize, usize),
    beta: f32,
    threads: usize,
) {
    assert!(dst.len() >= m * n, "matmul: destination too small");
    assert!(
        m == 0 || k == 0 || a.len() > (m - 1) * a_rs + (k - 1) * a_cs,
        "matmul: left operand too small"
    );
    assert!(
        k == 0 || n == 0 || b.len() > (k - 1) * b_rs + (n - 1) * b_cs,
        "matmul: right operand too small"
    );
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the slices hold every element the strides reach (checked above), `dst` does not
    // overlap `a` or `b` (it is borrowed mutably), and no other thread touches `dst` during the
    // call.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            1.0,
            beta,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Forward `y + z` (y = x wᵀ precomputed), backward `(dy · w, dy)`.
struct AddFrozenLinear {
    weight: Tensor,
    y: Handoff,
}

/// A result computed without a graph, handed to a custom op's forward once and then dropped,
/// so the gradient graph keeps only the op's output, not a second copy of it.
struct Handoff(std::sync::Mutex<Option<Handed>>);

enum Handed {
    Tensor(Tensor),
    Values(Vec<f32>, Shape),
}

impl Handoff {
    fn new(t: Tensor) -> Self {
        Handoff(std::sync::Mutex::new(Some(Handed::Tensor(t))))
    }

    /// Values computed straight into a buffer: handed over without a copy.
    fn from_vec(v: Vec<f32>, shape: Shape) -> Self {
        Handoff(std::sync::Mutex::new(Some(Handed::Values(v, shape))))
    }

    /// The f32 values (row-major) and shape; the tensor itself is released.
    fn take(&self, op: &str) -> candle_core::Result<(Vec<f32>, Shape)> {
        let handed = self
            .0
            .lock()
            .map_err(|_| candle_core::Error::Msg(format!("{op}: poisoned lock")))?
            .take()
            .ok_or_else(|| candle_core::Error::Msg(format!("{op}: forward ran twice")))?;
        match handed {
            Handed::Values(v, shape) => Ok((v, shape)),
            Handed::Tensor(t) => {
                let shape = t.shape().clone();
                Ok((t.flatten_all()?.to_vec1::<f32>()?, shape))
            }
        }
    }
}

/// The contiguous f32 data of a custom op's operand.
pub(crate) fn f32_data<'a>(
    s: &'a CpuStorage,
    l: &Layout,
    op: &str,
) -> candle_core::Result<&'a [f32]> {
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{op}: operand not contiguous")))?;
    match s {
        CpuStorage::F32(v) => Ok(&v[a..b]),
        _ => Err(candle_core::Error::Msg(format!(
            "{op}: only f32 is supported"
        ))),
    }
}

impl candle_core::CustomOp2 for AddFrozenLinear {
    fn name(&self) -> &'static str {
        "frozen-linear-add"
    }

    fn cpu_fwd(
        &self,
        _s1: &CpuStorage,
        _l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (mut sum, shape) = self.y.take(self.name())?;
        let z = f32_data(s2, l2, self.name())?;
        if z.len() != sum.len() {
            return Err(candle_core::Error::Msg(format!(
                "{}: {} values in the LoRA term, {} in the product",
                self.name(),
                z.len(),
                sum.len()
            )));
        }
        for (y, z) in sum.iter_mut().zip(z) {
            *y += z;
        }
        Ok((CpuStorage::F32(sum), shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        _z: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let dx = if x.track_op() {
            Some(grad_res.matmul(&self.weight)?)
        } else {
            None
        };
        Ok((dx, Some(grad_res.clone())))
    }
}

/// RMSNorm over the last dimension: `x / sqrt(mean(x²) + eps) * weight` (the weight is frozen).
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f32) -> Result<Tensor> {
    let xc = x.contiguous()?;
    if needs_backward(&xc) {
        let y = candle_nn::ops::rms_norm(&xc.detach(), weight, eps)?;
        return attach(
            &xc,
            &y,
            Backward::RmsNorm {
                weight: weight.clone(),
                eps,
            },
        );
    }
    Ok(candle_nn::ops::rms_norm(&xc, weight, eps)?)
}

/// Rotary embedding in the "half" layout (first half of each head rotated with the second):
/// `x: [B, H, T, D]`, `cos`/`sin`: `[B, T, D/2]`.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    if needs_backward(x) {
        let y = candle_nn::rotary_emb::rope(&x.detach(), cos, sin)?;
        return attach(
            x,
            &y,
            Backward::Rope {
                cos: cos.clone(),
                sin: sin.clone(),
            },
        );
    }
    Ok(candle_nn::rotary_emb::rope(x, cos, sin)?)
}

/// `softmax(x + mask)` over the last dimension, `mask` broadcast to `x` and constant: when `x`
/// needs a backward pass the masked scores are not kept in the graph.
pub fn softmax_masked(x: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let xc = x.contiguous()?;
    if needs_backward(&xc) {
        let y = candle_nn::ops::softmax_last_dim(&xc.detach().broadcast_add(mask)?)?;
        return attach(&xc, &y, Backward::Softmax);
    }
    softmax_last_dim(&xc.broadcast_add(mask)?)
}

pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let xc = x.contiguous()?;
    if needs_backward(&xc) {
        let y = candle_nn::ops::softmax_last_dim(&xc.detach())?;
        return attach(&xc, &y, Backward::Softmax);
    }
    Ok(candle_nn::ops::softmax_last_dim(&xc)?)
}

pub fn silu(x: &Tensor) -> Result<Tensor> {
    Ok(x.silu()?)
}

/// `silu(gate) · up` (the gated MLP's activation). When gradients are needed, one fused op
/// whose backward yields both input gradients in a single pass; otherwise candle's kernels.
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    if (needs_backward(gate) || needs_backward(up))
        && gate.dtype() == candle_core::DType::F32
        && gate.device().is_cpu()
    {
        return Ok(gate
            .contiguous()?
            .apply_op2(&up.contiguous()?, crate::fused::SwiGlu)?);
    }
    Ok((silu(gate)? * up)?)
}

/// `softmax(scale · q kᵀ + mask) v` with `q: [B, nh, T, hd]`, `k, v: [B, nkv, Tk, hd]` (query
/// head `h` reads KV head `h / (nh / nkv)`) and an additive `mask: [1 or B, 1, T, Tk]`, as one
/// graph node with a hand-written backward ([`crate::attention`]). For training: inference keeps
/// the composed path, which needs no stored probabilities.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor, scale: f64) -> Result<Tensor> {
    let (b, _, t, _) = q.dims4()?;
    let (mb, _, mt, mtk) = mask.dims4()?;
    if mt != t || mtk != k.dim(2)? || (mb != 1 && mb != b) {
        return Err(crate::error::ModelError::Input(format!(
            "attention mask {:?} does not fit queries {:?} and keys {:?}",
            mask.dims(),
            q.dims(),
            k.dims()
        )));
    }
    let op = crate::attention::Attention {
        mask: mask.flatten_all()?.to_vec1()?,
        per_sequence: mb > 1,
        scale: scale as f32,
        probs: std::sync::Mutex::new(None),
    };
    Ok(q.contiguous()?
        .apply_op3(&k.contiguous()?, &v.contiguous()?, op)?)
}

/// Log-softmax over the last dimension (built from primitive ops, so it has a backward).
pub fn log_softmax(x: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::ops::log_softmax(x, D::Minus1)?)
}

/// Hand-written backward passes of the ops whose forward is a fused candle kernel.
#[derive(Clone)]
pub enum Backward {
    /// `y = x wᵀ` with `w: [out, in]` frozen: `dx = dy w`.
    FrozenLinear { weight: Tensor },
    /// `y = x r w`, `r = 1/sqrt(mean(x²) + eps)`, `w` frozen:
    /// `dx = r (dy w − x r² mean(dy w x))` (one fused pass, [`crate::fused::RmsNormGrad`]).
    RmsNorm { weight: Tensor, eps: f32 },
    /// Rotation by angle θ; its transpose is the rotation by −θ: `dx = rope(dy, cos, −sin)`.
    Rope { cos: Tensor, sin: Tensor },
    /// `y = softmax(x)`: `dx = y (dy − Σ dy y)` (one fused pass, [`crate::fused::SoftmaxGrad`]).
    Softmax,
}

impl Backward {
    /// The input gradient given the forward input `x`, output `y` and output gradient `dy`.
    pub fn input_grad(&self, x: &Tensor, y: &Tensor, dy: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Backward::FrozenLinear { weight } => dy.matmul(weight),
            Backward::RmsNorm { weight, eps } => x.contiguous()?.apply_op3_no_bwd(
                &dy.contiguous()?,
                &weight.contiguous()?,
                &crate::fused::RmsNormGrad { eps: *eps },
            ),
            Backward::Rope { cos, sin } => {
                candle_nn::rotary_emb::rope(&dy.contiguous()?, cos, &sin.neg()?)
            }
            Backward::Softmax => y
                .contiguous()?
                .apply_op2_no_bwd(&dy.contiguous()?, &crate::fused::SoftmaxGrad),
        }
    }
}

/// Returns a copy of `y` (computed from `x.detach()`) that is connected to `x` in the gradient
/// graph through `backward`.
fn attach(x: &Tensor, y: &Tensor, backward: Backward) -> Result<Tensor> {
    Ok(x.apply_op1(Attached(backward, Handoff::new(y.clone())))?)
}

struct Attached(Backward, Handoff);

impl candle_core::CustomOp1 for Attached {
    fn name(&self) -> &'static str {
        match self.0 {
            Backward::FrozenLinear { .. } => "frozen-linear",
            Backward::RmsNorm { .. } => "rms-norm-frozen-weight",
            Backward::Rope { .. } => "rope-half",
            Backward::Softmax => "softmax-last-dim",
        }
    }

    /// Forward: the precomputed result, handed over.
    fn cpu_fwd(&self, _s1: &CpuStorage, _l1: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (v, shape) = self.1.take(self.name())?;
        Ok((CpuStorage::F32(v), shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(self.0.input_grad(x, res, grad_res)?))
    }
}
