//! Masked grouped-query attention `softmax(scale · q kᵀ + mask) v` as one node of the gradient
//! graph (training).
//!
//! Built from candle ops, attention is a dozen nodes per layer (scale, product, mask, softmax,
//! product, and the reshapes between them), and candle's backward gives each node a zeroed
//! gradient buffer and adds into it. Here the forward keeps the softmax probabilities and the
//! backward computes the three input gradients directly:
//!
//! - `dV = Pᵀ dO` (summed over the query heads sharing a KV head),
//! - `dP = dO Vᵀ`, `dS = P ⊙ (dP − rowsum(dP ⊙ P))`,
//! - `dQ = scale · dS K`, `dK = scale · dSᵀ Q` (summed over the group).
//!
//! Each (sequence, head) is one task, its products are single-threaded `gemm` calls with a fixed
//! summation order, so results do not depend on the thread count.

use std::sync::Mutex;

use candle_core::{CpuStorage, Layout, Shape, Storage, Tensor};
use rayon::prelude::*;

use crate::ops::{f32_data, matmul};

const NAME: &str = "attention";

/// The op: shapes come from the operands, `q: [B, nh, T, hd]`, `k, v: [B, nkv, Tk, hd]`.
pub(crate) struct Attention {
    /// `[1 or B, 1, T, Tk]` additive mask (0 where allowed, −inf elsewhere), flattened.
    pub mask: Vec<f32>,
    /// Whether the mask has one `[T, Tk]` block per sequence (else one for all).
    pub per_sequence: bool,
    pub scale: f32,
    /// Softmax probabilities `[B, nh, T, Tk]`, written by the forward for the backward.
    pub probs: Mutex<Option<Vec<f32>>>,
}

#[derive(Clone, Copy)]
struct Dims {
    b: usize,
    nh: usize,
    nkv: usize,
    t: usize,
    tk: usize,
    hd: usize,
}

impl Dims {
    fn groups(&self) -> usize {
        self.nh / self.nkv
    }
}

fn dims(q: &Layout, k: &Layout, v: &Layout) -> candle_core::Result<Dims> {
    let (b, nh, t, hd) = q.shape().dims4()?;
    let (bk, nkv, tk, hdk) = k.shape().dims4()?;
    if k.shape() != v.shape() || bk != b || hdk != hd || nkv == 0 || nh % nkv != 0 {
        return Err(candle_core::Error::Msg(format!(
            "{NAME}: shapes q {:?}, k {:?}, v {:?} do not fit",
            q.shape(),
            k.shape(),
            v.shape()
        )));
    }
    Ok(Dims {
        b,
        nh,
        nkv,
        t,
        tk,
        hd,
    })
}

impl Attention {
    fn mask_block(&self, d: Dims, seq: usize) -> &[f32] {
        let block = d.t * d.tk;
        let at = if self.per_sequence { seq * block } else { 0 };
        &self.mask[at..at + block]
    }
}

impl candle_core::CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        NAME
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
        let d = dims(l1, l2, l3)?;
        let (q, k, v) = (
            f32_data(s1, l1, NAME)?,
            f32_data(s2, l2, NAME)?,
            f32_data(s3, l3, NAME)?,
        );
        let Dims {
            b,
            nh,
            nkv,
            t,
            tk,
            hd,
        } = d;
        if self.mask.len() != if self.per_sequence { b } else { 1 } * t * tk {
            return Err(candle_core::Error::Msg(format!(
                "{NAME}: mask of {} values for {b} × {t} × {tk}",
                self.mask.len()
            )));
        }
        let mut out = vec![0f32; b * nh * t * hd];
        let mut probs = vec![0f32; b * nh * t * tk];
        out.par_chunks_mut(t * hd)
            .zip(probs.par_chunks_mut(t * tk))
            .enumerate()
            .for_each(|(bh, (o, p))| {
                let (seq, h) = (bh / nh, bh % nh);
                let kv = (seq * nkv + h / d.groups()) * tk * hd;
                let qs = &q[bh * t * hd..(bh + 1) * t * hd];
                let ks = &k[kv..kv + tk * hd];
                let vs = &v[kv..kv + tk * hd];
                // S = scale · Q Kᵀ
                matmul(
                    (t, tk, hd),
                    p,
                    false,
                    (qs, hd, 1),
                    (ks, 1, hd),
                    self.scale,
                    1,
                );
                let mask = self.mask_block(d, seq);
                for (row, m) in p.chunks_mut(tk).zip(mask.chunks(tk)) {
                    softmax_row(row, m);
                }
                // O = P V
                matmul((t, hd, tk), o, false, (p, tk, 1), (vs, hd, 1), 1.0, 1);
            });
        *self.probs.lock().unwrap_or_else(|e| e.into_inner()) = Some(probs);
        Ok((CpuStorage::F32(out), Shape::from((b, nh, t, hd))))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let probs = self
            .probs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| {
                candle_core::Error::Msg(format!("{NAME}: backward without a forward"))
            })?;
        let dout = grad_res.contiguous()?;
        let (gq, lq) = q.storage_and_layout();
        let (gk, lk) = k.storage_and_layout();
        let (gv, lv) = v.storage_and_layout();
        let (gd, ld) = dout.storage_and_layout();
        let d = dims(lq, lk, lv)?;
        let (qv, kv, vv, dov) = (
            f32_of(&gq, lq)?,
            f32_of(&gk, lk)?,
            f32_of(&gv, lv)?,
            f32_of(&gd, ld)?,
        );
        let (dq, dk, dv) = self.grads(d, &probs, qv, kv, vv, dov);
        let dev = q.device();
        let qshape = (d.b, d.nh, d.t, d.hd);
        let kshape = (d.b, d.nkv, d.tk, d.hd);
        Ok((
            q.track_op()
                .then(|| Tensor::from_vec(dq, qshape, dev))
                .transpose()?,
            k.track_op()
                .then(|| Tensor::from_vec(dk, kshape, dev))
                .transpose()?,
            v.track_op()
                .then(|| Tensor::from_vec(dv, kshape, dev))
                .transpose()?,
        ))
    }
}

fn f32_of<'a>(s: &'a Storage, l: &Layout) -> candle_core::Result<&'a [f32]> {
    match s {
        Storage::Cpu(c) => f32_data(c, l, NAME),
        _ => Err(candle_core::Error::Msg(format!("{NAME}: CPU only"))),
    }
}

impl Attention {
    /// `(dQ, dK, dV)` from the forward's probabilities and the output gradient. One task per
    /// (sequence, KV head): it owns that KV head's `dK`, `dV` and its query heads' `dQ`.
    fn grads(
        &self,
        d: Dims,
        probs: &[f32],
        q: &[f32],
        k: &[f32],
        v: &[f32],
        dout: &[f32],
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let Dims {
            b,
            nh,
            nkv,
            t,
            tk,
            hd,
        } = d;
        let groups = d.groups();
        let mut dq = vec![0f32; b * nh * t * hd];
        let mut dk = vec![0f32; b * nkv * tk * hd];
        let mut dv = vec![0f32; b * nkv * tk * hd];
        dq.par_chunks_mut(groups * t * hd)
            .zip(dk.par_chunks_mut(tk * hd).zip(dv.par_chunks_mut(tk * hd)))
            .enumerate()
            .for_each(|(bg, (dq_g, (dk_g, dv_g)))| {
                let seq = bg / nkv;
                let kv = bg * tk * hd;
                let ks = &k[kv..kv + tk * hd];
                let vs = &v[kv..kv + tk * hd];
                let mut ds = vec![0f32; t * tk];
                for (j, dq_h) in dq_g.chunks_mut(t * hd).enumerate() {
                    let bh = seq * nh + (bg % nkv) * groups + j;
                    let p = &probs[bh * t * tk..(bh + 1) * t * tk];
                    let qs = &q[bh * t * hd..(bh + 1) * t * hd];
                    let dos = &dout[bh * t * hd..(bh + 1) * t * hd];
                    // dV += Pᵀ dO
                    matmul((tk, hd, t), dv_g, j > 0, (p, 1, tk), (dos, hd, 1), 1.0, 1);
                    // dP = dO Vᵀ, then dS = P ⊙ (dP − rowsum(dP ⊙ P)) in place
                    matmul(
                        (t, tk, hd),
                        &mut ds,
                        false,
                        (dos, hd, 1),
                        (vs, 1, hd),
                        1.0,
                        1,
                    );
                    for (drow, prow) in ds.chunks_mut(tk).zip(p.chunks(tk)) {
                        let dot: f32 = drow.iter().zip(prow).map(|(a, b)| a * b).sum();
                        for (x, &pv) in drow.iter_mut().zip(prow) {
                            *x = pv * (*x - dot);
                        }
                    }
                    // dQ = scale · dS K
                    matmul(
                        (t, hd, tk),
                        dq_h,
                        false,
                        (&ds, tk, 1),
                        (ks, hd, 1),
                        self.scale,
                        1,
                    );
                    // dK += scale · dSᵀ Q
                    matmul(
                        (tk, hd, t),
                        dk_g,
                        j > 0,
                        (&ds, 1, tk),
                        (qs, hd, 1),
                        self.scale,
                        1,
                    );
                }
            });
        (dq, dk, dv)
    }
}

/// `row ← softmax(row + mask)` as candle's softmax computes it (max subtracted, `exp`, sum,
/// divide); a row with no allowed position becomes zeros.
fn softmax_row(row: &mut [f32], mask: &[f32]) {
    let mut max = f32::NEG_INFINITY;
    for (x, m) in row.iter_mut().zip(mask) {
        *x += m;
        max = max.max(*x);
    }
    if max == f32::NEG_INFINITY {
        row.fill(0.0);
        return;
    }
    let mut sum = 0f32;
    for x in row.iter_mut() {
        // exp(−inf) is 0: masked keys skip the call.
        *x = if *x == f32::NEG_INFINITY {
            0.0
        } else {
            (*x - max).exp()
        };
        sum += *x;
    }
    for x in row.iter_mut() {
        *x /= sum;
    }
}
