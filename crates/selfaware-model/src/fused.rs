//! Fused elementwise kernels of the training path. Each reads its operands once and writes one
//! result where candle's composite ops would make a pass and an allocation per step (its
//! `silu` backward alone is eight), and candle's backward adds every such intermediate into a
//! zeroed gradient buffer. Rows are independent and each is computed by one thread in a fixed
//! order, so results do not depend on the thread count.

use candle_core::{CpuStorage, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::ops::f32_data;

/// Values per rayon task: enough work to pay for handing it to another thread.
const TASK_VALUES: usize = 32_768;

/// Rows of `row` values per task (at least one).
fn task_rows(row: usize) -> usize {
    (TASK_VALUES / row.max(1)).max(1)
}

/// `f(out_row, a_row, b_row)` for every row of `d` values, rows split over rayon tasks.
fn for_rows(
    out: &mut [f32],
    a: &[f32],
    b: &[f32],
    d: usize,
    f: impl Fn(&mut [f32], &[f32], &[f32]) + Sync,
) {
    let chunk = d * task_rows(d);
    out.par_chunks_mut(chunk)
        .zip(a.par_chunks(chunk).zip(b.par_chunks(chunk)))
        .for_each(|(o, (a, b))| {
            for (o, (a, b)) in o.chunks_mut(d).zip(a.chunks(d).zip(b.chunks(d))) {
                f(o, a, b);
            }
        });
}

fn same_shape(op: &str, a: &Layout, b: &Layout) -> candle_core::Result<()> {
    if a.shape() != b.shape() {
        return Err(candle_core::Error::Msg(format!(
            "{op}: operand shapes differ ({:?} and {:?})",
            a.shape(),
            b.shape()
        )));
    }
    Ok(())
}

fn last_dim(op: &str, l: &Layout) -> candle_core::Result<usize> {
    match l.shape().dims().last() {
        Some(&d) if d > 0 => Ok(d),
        _ => Err(candle_core::Error::Msg(format!(
            "{op}: needs a non-empty last dimension"
        ))),
    }
}

/// Input gradient of `y = softmax(x)` over the last dimension from `(y, dy)`:
/// `dx = y (dy − Σ dy y)` per row.
pub(crate) struct SoftmaxGrad;

impl candle_core::CustomOp2 for SoftmaxGrad {
    fn name(&self) -> &'static str {
        "softmax-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        same_shape(self.name(), l1, l2)?;
        let y = f32_data(s1, l1, self.name())?;
        let dy = f32_data(s2, l2, self.name())?;
        let d = last_dim(self.name(), l1)?;
        let mut out = vec![0f32; y.len()];
        for_rows(&mut out, y, dy, d, |o, y, dy| {
            let s: f32 = y.iter().zip(dy).map(|(a, b)| a * b).sum();
            for ((o, y), dy) in o.iter_mut().zip(y).zip(dy) {
                *o = y * (dy - s);
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// Input gradient of RMSNorm `y = x r w`, `r = 1/sqrt(mean(x²) + eps)`, `w` frozen, from
/// `(x, dy, w)`: `dx = r (dy w − x r² mean(dy w x))` per row.
pub(crate) struct RmsNormGrad {
    pub eps: f32,
}

impl candle_core::CustomOp3 for RmsNormGrad {
    fn name(&self) -> &'static str {
        "rms-norm-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        same_shape(self.name(), l1, l2)?;
        let x = f32_data(s1, l1, self.name())?;
        let dy = f32_data(s2, l2, self.name())?;
        let w = f32_data(s3, l3, self.name())?;
        let d = last_dim(self.name(), l1)?;
        if w.len() != d {
            return Err(candle_core::Error::Msg(format!(
                "{}: {} weights for rows of {d}",
                self.name(),
                w.len()
            )));
        }
        let eps = self.eps;
        let n = d as f32;
        let mut out = vec![0f32; x.len()];
        for_rows(&mut out, x, dy, d, |o, x, dy| {
            let ms: f32 = x.iter().map(|v| v * v).sum::<f32>() / n;
            let r = 1.0 / (ms + eps).sqrt();
            let dot: f32 = x
                .iter()
                .zip(dy)
                .zip(w)
                .map(|((x, dy), w)| dy * w * x)
                .sum::<f32>()
                / n;
            let coef = r * r * dot;
            for (((o, x), dy), w) in o.iter_mut().zip(x).zip(dy).zip(w) {
                *o = r * (dy * w - x * coef);
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// `silu(gate) · up` elementwise, whose backward gives both input gradients in one pass
/// ([`SwiGluGrad`]).
pub(crate) struct SwiGlu;

/// `silu(g)` rounded exactly as candle's kernel rounds it, so a training forward gives the
/// same values as inference.
#[inline]
fn silu(g: f32) -> f32 {
    g / (1.0 + (-g).exp())
}

impl candle_core::CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "swiglu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        same_shape(self.name(), l1, l2)?;
        let g = f32_data(s1, l1, self.name())?;
        let u = f32_data(s2, l2, self.name())?;
        let mut out = vec![0f32; g.len()];
        out.par_chunks_mut(TASK_VALUES)
            .zip(g.par_chunks(TASK_VALUES).zip(u.par_chunks(TASK_VALUES)))
            .for_each(|(o, (g, u))| {
                for ((o, g), u) in o.iter_mut().zip(g).zip(u) {
                    *o = silu(*g) * u;
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let both = gate.apply_op3_no_bwd(up, &grad_res.contiguous()?, &SwiGluGrad)?;
        let dgate = gate.track_op().then(|| both.get(0)).transpose()?;
        let dup = up.track_op().then(|| both.get(1)).transpose()?;
        Ok((dgate, dup))
    }
}

/// From `(gate, up, dy)`: `[2, ..]` holding `d gate = dy · up · σ(g) (1 + g (1 − σ(g)))` and
/// `d up = dy · silu(g)`.
pub(crate) struct SwiGluGrad;

impl candle_core::CustomOp3 for SwiGluGrad {
    fn name(&self) -> &'static str {
        "swiglu-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        same_shape(self.name(), l1, l2)?;
        same_shape(self.name(), l1, l3)?;
        let g = f32_data(s1, l1, self.name())?;
        let u = f32_data(s2, l2, self.name())?;
        let dy = f32_data(s3, l3, self.name())?;
        let n = g.len();
        let mut out = vec![0f32; 2 * n];
        let (dg, du) = out.split_at_mut(n);
        dg.par_chunks_mut(TASK_VALUES)
            .zip(du.par_chunks_mut(TASK_VALUES))
            .zip(
                g.par_chunks(TASK_VALUES)
                    .zip(u.par_chunks(TASK_VALUES))
                    .zip(dy.par_chunks(TASK_VALUES)),
            )
            .for_each(|((dg, du), ((g, u), dy))| {
                for i in 0..g.len() {
                    // σ(g) = 1 / (1 + e^−g) and silu(g) (rounded as `silu` rounds it) from one exp.
                    let e1 = 1.0 + (-g[i]).exp();
                    let s = 1.0 / e1;
                    du[i] = dy[i] * (g[i] / e1);
                    dg[i] = dy[i] * u[i] * s * (1.0 + g[i] * (1.0 - s));
                }
            });
        let mut dims = vec![2];
        dims.extend_from_slice(l1.shape().dims());
        Ok((CpuStorage::F32(out), Shape::from(dims)))
    }
}
