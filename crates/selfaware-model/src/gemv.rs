//! `x wᵀ` for a few rows of `x` (decoding: one row per sequence in the batch), streaming the
//! weight matrix once.
//!
//! For a handful of rows the general matrix multiply spends its time packing the whole weight
//! matrix into panels on every call, so a batch of 8 rows costs several times one row although
//! the weights are read once either way. Here each weight row is loaded once and multiplied with
//! every input row while it is in L1: the cost of a step is the weight traffic plus the
//! arithmetic, and batching sequences becomes nearly free (see the server benchmark).
//!
//! Every output element is one dot product with a fixed summation order (64 partial sums, then
//! a fixed reduction), so a row's result does not depend on the other rows in the batch. The
//! AVX-512 and AVX2 variants are the same code compiled with those instruction sets, chosen at
//! run time.

use candle_core::{CpuStorage, Layout, Shape};

/// At most this many rows take this path; more rows are a matrix multiply.
pub const MAX_ROWS: usize = 16;

/// Partial sums per dot product (four 16-lane vectors with AVX-512).
const LANES: usize = 64;

/// Weight rows per parallel task.
const ROWS_PER_TASK: usize = 64;

#[inline(always)]
fn dot_body(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let full = a.len() / LANES * LANES;
    for (ca, cb) in a[..full]
        .chunks_exact(LANES)
        .zip(b[..full].chunks_exact(LANES))
    {
        for i in 0..LANES {
            acc[i] += ca[i] * cb[i];
        }
    }
    for (i, (x, y)) in a[full..].iter().zip(&b[full..]).enumerate() {
        acc[i] += x * y;
    }
    // Fixed pairwise reduction.
    let mut width = LANES / 2;
    while width > 0 {
        for i in 0..width {
            acc[i] += acc[i + width];
        }
        width /= 2;
    }
    acc[0]
}

/// The rows `o0..o0 + yt.len() / n` of `yᵀ`: `yt[(o - o0) * n + r] = x_r · w_o`.
#[inline(always)]
fn block_body(x: &[f32], n: usize, inp: usize, w: &[f32], o0: usize, yt: &mut [f32]) {
    for (j, out) in yt.chunks_exact_mut(n).enumerate() {
        let o = o0 + j;
        let w_row = &w[o * inp..(o + 1) * inp];
        for (r, y) in out.iter_mut().enumerate() {
            *y = dot_body(&x[r * inp..(r + 1) * inp], w_row);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn block_avx512(x: &[f32], n: usize, inp: usize, w: &[f32], o0: usize, yt: &mut [f32]) {
    block_body(x, n, inp, w, o0, yt)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn block_avx2(x: &[f32], n: usize, inp: usize, w: &[f32], o0: usize, yt: &mut [f32]) {
    block_body(x, n, inp, w, o0, yt)
}

fn block_plain(x: &[f32], n: usize, inp: usize, w: &[f32], o0: usize, yt: &mut [f32]) {
    block_body(x, n, inp, w, o0, yt)
}

type BlockFn = fn(&[f32], usize, usize, &[f32], usize, &mut [f32]);

/// The best variant this CPU runs (the one [`kernel_name`] names).
fn block_fn() -> BlockFn {
    match kernel_name() {
        // SAFETY: kernel_name said "avx512f" only after detecting AVX-512F on this CPU.
        #[cfg(target_arch = "x86_64")]
        "avx512f" => |x, n, inp, w, o0, yt| unsafe { block_avx512(x, n, inp, w, o0, yt) },
        // SAFETY: kernel_name said "avx2+fma" only after detecting AVX2 and FMA.
        #[cfg(target_arch = "x86_64")]
        "avx2+fma" => |x, n, inp, w, o0, yt| unsafe { block_avx2(x, n, inp, w, o0, yt) },
        _ => block_plain,
    }
}

/// The variant [`small_rows_linear`] takes on this CPU: `avx512f`, `avx2+fma` or `portable`.
pub fn kernel_name() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return "avx512f";
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return "avx2+fma";
        }
    }
    "portable"
}

/// `y = x wᵀ` for `x: [n, inp]` (1 ≤ n ≤ [`MAX_ROWS`]) and `w: [out, inp]`, row-major, on rayon's
/// pool (the threads `--threads` sets).
pub fn small_rows_linear(x: &[f32], n: usize, inp: usize, w: &[f32], out: usize) -> Vec<f32> {
    debug_assert_eq!(x.len(), n * inp);
    debug_assert_eq!(w.len(), out * inp);
    use rayon::prelude::*;
    if n == 0 || out == 0 {
        return Vec::new();
    }
    let f = block_fn();
    let mut yt = vec![0.0f32; out * n];
    yt.par_chunks_mut(ROWS_PER_TASK * n)
        .enumerate()
        .for_each(|(i, c)| f(x, n, inp, w, i * ROWS_PER_TASK, c));
    // yᵀ [out, n] → y [n, out]
    let mut y = vec![0.0f32; n * out];
    for o in 0..out {
        for r in 0..n {
            y[r * out + o] = yt[o * n + r];
        }
    }
    y
}

/// candle custom op over [`small_rows_linear`]: `x: [n, inp]`, `w: [out, inp]` → `[n, out]`.
/// Inference only (no backward).
pub struct SmallRowsLinear;

impl candle_core::CustomOp2 for SmallRowsLinear {
    fn name(&self) -> &'static str {
        "small-rows-linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, inp) = l1.shape().dims2()?;
        let (out, inp2) = l2.shape().dims2()?;
        if inp != inp2 {
            return Err(candle_core::Error::Msg(format!(
                "{}: input width {inp}, weight width {inp2}",
                self.name()
            )));
        }
        let x = crate::ops::f32_data(s1, l1, self.name())?;
        let w = crate::ops::f32_data(s2, l2, self.name())?;
        let y = small_rows_linear(x, n, inp, w, out);
        Ok((CpuStorage::F32(y), Shape::from((n, out))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_plain_loop_and_does_not_depend_on_the_other_rows() {
        let (n, inp, out) = (5, 200, 300);
        let x: Vec<f32> = (0..n * inp)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
            .collect();
        let w: Vec<f32> = (0..out * inp)
            .map(|i| ((i * 53 % 97) as f32 - 48.0) / 48.0)
            .collect();
        let y = small_rows_linear(&x, n, inp, &w, out);
        for r in 0..n {
            for o in 0..out {
                let want: f64 = (0..inp)
                    .map(|k| x[r * inp + k] as f64 * w[o * inp + k] as f64)
                    .sum();
                let got = y[r * out + o] as f64;
                assert!((got - want).abs() < 1e-3, "({r}, {o}): {got} vs {want}");
            }
            // The same row alone gives bit-identical values.
            let alone = small_rows_linear(&x[r * inp..(r + 1) * inp], 1, inp, &w, out);
            assert_eq!(alone, y[r * out..(r + 1) * out].to_vec());
        }
    }
}
