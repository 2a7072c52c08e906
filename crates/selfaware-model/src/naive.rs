//! A naive reference forward pass: plain loops over `Vec<f32>`, one sequence, no cache, no
//! batching, no fused kernels. It exists only to hold the fast path in [`crate::llama`] honest
//! (tests compare the two); it is far too slow for real models.

use crate::error::Result;
use crate::llama::{Linear, Llama};

struct Mat {
    rows: usize,
    cols: usize,
    data: Vec<f32>,
}

impl Mat {
    fn from(t: &candle_core::Tensor) -> Result<Self> {
        let (rows, cols) = t.dims2()?;
        Ok(Mat {
            rows,
            cols,
            data: t.flatten_all()?.to_vec1()?,
        })
    }
    /// `W x` for `W: [rows, cols]`.
    fn apply(&self, x: &[f32]) -> Vec<f32> {
        (0..self.rows)
            .map(|r| {
                let row = &self.data[r * self.cols..(r + 1) * self.cols];
                row.iter().zip(x).map(|(a, b)| a * b).sum()
            })
            .collect()
    }
}

fn linear(l: &Linear, x: &[f32]) -> Result<Vec<f32>> {
    let mut y = Mat::from(&l.weight)?.apply(x);
    if let Some(b) = &l.bias {
        let b: Vec<f32> = b.to_vec1()?;
        y.iter_mut().zip(b).for_each(|(y, b)| *y += b);
    }
    Ok(y)
}

fn rms_norm(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let ms = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let r = 1.0 / (ms + eps).sqrt();
    x.iter().zip(w).map(|(v, w)| v * r * w).collect()
}

/// Rotates one head in place, "half" layout.
fn rope(head: &mut [f32], pos: usize, inv_freq: &[f64]) {
    let half = head.len() / 2;
    for i in 0..half {
        let a = (pos as f32) * (inv_freq[i] as f32);
        let (s, c) = a.sin_cos();
        let (x1, x2) = (head[i], head[i + half]);
        head[i] = x1 * c - x2 * s;
        head[i + half] = x2 * c + x1 * s;
    }
}

/// Logits `[T][vocab]` for one sequence at positions `0..T`.
pub fn forward(model: &Llama, tokens: &[u32]) -> Result<Vec<Vec<f32>>> {
    let cfg = &model.cfg;
    let (h, nh, nkv, hd) = (
        cfg.hidden_size,
        cfg.num_heads,
        cfg.num_kv_heads,
        cfg.head_dim,
    );
    let eps = cfg.rms_eps as f32;
    let embed = Mat::from(&model.embed)?;
    let mut xs: Vec<Vec<f32>> = tokens
        .iter()
        .map(|&t| embed.data[t as usize * h..(t as usize + 1) * h].to_vec())
        .collect();
    for layer in &model.layers {
        let in_w: Vec<f32> = layer.input_norm.to_vec1()?;
        let mut qs = Vec::new();
        let mut ks = Vec::new();
        let mut vs = Vec::new();
        for (pos, x) in xs.iter().enumerate() {
            let n = rms_norm(x, &in_w, eps);
            let mut q = linear(&layer.q_proj, &n)?;
            let mut k = linear(&layer.k_proj, &n)?;
            for head in q.chunks_mut(hd) {
                rope(head, pos, &model.rope.inv_freq);
            }
            for head in k.chunks_mut(hd) {
                rope(head, pos, &model.rope.inv_freq);
            }
            qs.push(q);
            ks.push(k);
            vs.push(linear(&layer.v_proj, &n)?);
        }
        let scale = 1.0 / (hd as f32).sqrt();
        for (i, x) in xs.iter_mut().enumerate() {
            let mut attn = vec![0f32; nh * hd];
            for head in 0..nh {
                let kvh = head / (nh / nkv);
                let q = &qs[i][head * hd..(head + 1) * hd];
                let scores: Vec<f32> = (0..=i)
                    .map(|j| {
                        let k = &ks[j][kvh * hd..(kvh + 1) * hd];
                        q.iter().zip(k).map(|(a, b)| a * b).sum::<f32>() * scale
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let e: Vec<f32> = scores.iter().map(|s| (s - m).exp()).collect();
                let z: f32 = e.iter().sum();
                for (j, w) in e.iter().enumerate() {
                    let v = &vs[j][kvh * hd..(kvh + 1) * hd];
                    for d in 0..hd {
                        attn[head * hd + d] += w / z * v[d];
                    }
                }
            }
            let o = linear(&layer.o_proj, &attn)?;
            x.iter_mut().zip(o).for_each(|(x, o)| *x += o);
        }
        let post_w: Vec<f32> = layer.post_norm.to_vec1()?;
        for x in xs.iter_mut() {
            let n = rms_norm(x, &post_w, eps);
            let g = linear(&layer.gate_proj, &n)?;
            let u = linear(&layer.up_proj, &n)?;
            let act: Vec<f32> = g
                .iter()
                .zip(&u)
                .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
                .collect();
            let d = linear(&layer.down_proj, &act)?;
            x.iter_mut().zip(d).for_each(|(x, d)| *x += d);
        }
    }
    let norm_w: Vec<f32> = model.norm.to_vec1()?;
    let head = Mat::from(&model.lm_head)?;
    Ok(xs
        .iter()
        .map(|x| head.apply(&rms_norm(x, &norm_w, eps)))
        .collect())
}
