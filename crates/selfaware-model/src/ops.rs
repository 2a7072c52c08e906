//! The numeric building blocks of the forward pass, in one place so the fast kernels and their
//! gradient-carrying variants are chosen here and nowhere else.
//!
//! candle's fused `rms_norm`, `softmax_last_dim` and `rope` are fast but have no backward pass:
//! gradients through them are silently zero (engine notes). Inference uses them directly.

use candle_core::{Tensor, D};

use crate::error::Result;

/// `x: [.., in]`, `w: [out, in]` → `[.., out]`
pub fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let inp = *dims.last().expect("linear input has a last dimension");
    let n: usize = dims[..dims.len() - 1].iter().product();
    let y = x.reshape((n, inp))?.matmul(&w.t()?)?;
    let mut out_dims = dims;
    *out_dims.last_mut().expect("non-empty") = w.dim(0)?;
    Ok(y.reshape(out_dims)?)
}

/// RMSNorm over the last dimension: `x / sqrt(mean(x²) + eps) * weight`.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f32) -> Result<Tensor> {
    Ok(candle_nn::ops::rms_norm(&x.contiguous()?, weight, eps)?)
}

/// Rotary embedding in the "half" layout (first half of each head rotated with the second):
/// `x: [B, H, T, D]`, `cos`/`sin`: `[B, T, D/2]`.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::rotary_emb::rope(x, cos, sin)?)
}

pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::ops::softmax_last_dim(&x.contiguous()?)?)
}

pub fn silu(x: &Tensor) -> Result<Tensor> {
    Ok(x.silu()?)
}

/// Log-softmax over the last dimension.
pub fn log_softmax(x: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::ops::log_softmax(x, D::Minus1)?)
}
