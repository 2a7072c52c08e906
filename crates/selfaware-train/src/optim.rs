//! AdamW with decoupled weight decay, step for step as `torch.optim.AdamW`, and gradient-norm
//! clipping as `torch.nn.utils.clip_grad_norm_`. Its state is plain tensors so checkpoints can
//! save and restore it exactly.

use candle_core::{Tensor, Var};

use crate::error::Result;

/// AdamW hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWParams {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

/// AdamW state for a list of variables.
pub struct AdamW {
    pub params: AdamWParams,
    /// First and second moments, one per variable.
    pub m: Vec<Tensor>,
    pub v: Vec<Tensor>,
    /// Steps taken.
    pub t: usize,
}

impl AdamW {
    pub fn new(vars: &[Var], params: AdamWParams) -> Result<Self> {
        let zeros = |v: &Var| v.as_tensor().zeros_like();
        Ok(AdamW {
            params,
            m: vars.iter().map(zeros).collect::<candle_core::Result<_>>()?,
            v: vars.iter().map(zeros).collect::<candle_core::Result<_>>()?,
            t: 0,
        })
    }

    /// One update with learning rate `lr`:
    /// `p ← p(1 − lr·wd)`, `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
    /// `p ← p − (lr/(1−β₁ᵗ)) · m / (√v/√(1−β₂ᵗ) + ε)`.
    pub fn step(&mut self, vars: &[Var], grads: &[Tensor], lr: f64) -> Result<()> {
        self.t += 1;
        let AdamWParams {
            beta1,
            beta2,
            eps,
            weight_decay,
        } = self.params;
        let bc1 = 1.0 - beta1.powi(self.t as i32);
        let bc2 = 1.0 - beta2.powi(self.t as i32);
        for (i, (var, g)) in vars.iter().zip(grads).enumerate() {
            let p = var.as_tensor().detach();
            let p = if weight_decay != 0.0 {
                (p * (1.0 - lr * weight_decay))?
            } else {
                p
            };
            self.m[i] = ((&self.m[i] * beta1)? + (g * (1.0 - beta1))?)?;
            self.v[i] = ((&self.v[i] * beta2)? + (g.sqr()? * (1.0 - beta2))?)?;
            let denom = ((self.v[i].sqrt()? / bc2.sqrt())? + eps)?;
            let update = ((&self.m[i] / denom)? * (lr / bc1))?;
            var.set(&(p - update)?)?;
        }
        Ok(())
    }
}

/// The global L2 norm of `grads`; when it exceeds `max_norm` the gradients are scaled by
/// `max_norm / (norm + 1e-6)`, as torch does. Returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut [Tensor], max_norm: Option<f64>) -> Result<f64> {
    let mut sq = 0.0f64;
    for g in grads.iter() {
        sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
    }
    let norm = sq.sqrt();
    if let Some(max) = max_norm {
        let coef = max / (norm + 1e-6);
        if coef < 1.0 {
            for g in grads.iter_mut() {
                *g = (&*g * coef)?;
            }
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Two AdamW steps on p = [1, -2] with gradients [0.5, -1] then [0.1, 0.2], checked against
    /// the formula written out in f64.
    #[test]
    fn adamw_matches_formula() {
        let var = Var::new(&[1.0f32, -2.0], &Device::Cpu).unwrap();
        let params = AdamWParams {
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.1,
        };
        let mut opt = AdamW::new(std::slice::from_ref(&var), params).unwrap();
        let grads = [[0.5f64, -1.0], [0.1, 0.2]];
        let lr = 0.01;
        let mut p = [1.0f64, -2.0];
        let (mut m, mut v) = ([0.0f64; 2], [0.0f64; 2]);
        for (t, g) in grads.iter().enumerate() {
            let gt = Tensor::new(&[g[0] as f32, g[1] as f32], &Device::Cpu).unwrap();
            opt.step(std::slice::from_ref(&var), &[gt], lr).unwrap();
            let t = t as i32 + 1;
            for k in 0..2 {
                p[k] *= 1.0 - lr * 0.1;
                m[k] = 0.9 * m[k] + 0.1 * g[k];
                v[k] = 0.99 * v[k] + 0.01 * g[k] * g[k];
                let mh = m[k] / (1.0 - 0.9f64.powi(t));
                let vh = v[k] / (1.0 - 0.99f64.powi(t));
                p[k] -= lr * mh / (vh.sqrt() + 1e-8);
            }
        }
        let got = var.as_tensor().to_vec1::<f32>().unwrap();
        for k in 0..2 {
            assert!((got[k] as f64 - p[k]).abs() < 1e-6, "{got:?} vs {p:?}");
        }
    }

    #[test]
    fn clipping_scales_to_max_norm() {
        let mut g = vec![
            Tensor::new(&[3.0f32], &Device::Cpu).unwrap(),
            Tensor::new(&[4.0f32], &Device::Cpu).unwrap(),
        ];
        let n = clip_grad_norm(&mut g, Some(1.0)).unwrap();
        assert!((n - 5.0).abs() < 1e-6);
        let a = g[0].to_vec1::<f32>().unwrap()[0];
        assert!((a - 0.6).abs() < 1e-5, "{a}");
        let n2 = clip_grad_norm(&mut g, Some(10.0)).unwrap();
        assert!((n2 - 1.0).abs() < 1e-5);
        assert!((g[1].to_vec1::<f32>().unwrap()[0] - 0.8).abs() < 1e-5);
    }
}
