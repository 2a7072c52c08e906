//! The Llama-family decoder (Llama 2/3, SmolLM, Mistral, Qwen2), f32, forward over all
//! positions with an explicit attention mask, per-token positions and an optional KV cache.
//!
//! Weight names follow the Hugging Face checkpoints. Unlike a generation-only forward, this one
//! returns the hidden state of every position: scoring, tree scoring and training need them.

use candle_core::{DType, Device, Tensor, D};

use crate::capture::{Capture, LayerHook};
use crate::config::Config;
use crate::error::Result;
use crate::lora::{Dropout, Lora};
use crate::ops;
use crate::steer::Steering;
use crate::weights::Weights;

/// A linear layer `y = x Wᵀ + b` with `W: [out, in]`, plus an optional LoRA `scale · B A x`.
#[derive(Clone)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub lora: Option<Lora>,
    /// `Wᵀ`, contiguous, for inference on many rows (see [`Transposed`]).
    weight_t: Transposed,
}

/// A contiguous `[in, out]` copy of a weight, made on first use. The matrix multiply reads `x Wᵀ`
/// from it without repacking the weight on every call, which for prompt-sized inputs (tens of
/// rows) is a large share of the product (one thread, 60 × 576 · 576 × 1536: 576 → 487 µs); the
/// results are the same bits. The copy remembers which weight it was made from and is remade
/// when the weight is replaced (a merge). Clones of a layer share it.
#[derive(Clone, Default)]
struct Transposed(std::sync::Arc<std::sync::Mutex<Option<(candle_core::TensorId, Tensor)>>>);

impl Transposed {
    fn of(&self, w: &Tensor) -> Result<Tensor> {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((id, t)) = slot.as_ref() {
            if *id == w.id() {
                return Ok(t.clone());
            }
        }
        let t = w.t()?.contiguous()?;
        *slot = Some((w.id(), t.clone()));
        Ok(t)
    }
}

impl Linear {
    fn load(w: &Weights, prefix: &str, out: usize, inp: usize, bias: bool) -> Result<Self> {
        Ok(Linear {
            weight: w.get_shaped(&format!("{prefix}.weight"), &[out, inp])?,
            bias: if bias {
                Some(w.get_shaped(&format!("{prefix}.bias"), &[out])?)
            } else {
                None
            },
            lora: None,
            weight_t: Transposed::default(),
        })
    }

    /// `x: [.., in] → [.., out]`
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_with(x, None)
    }

    /// As [`Linear::forward`], with dropout on the LoRA input when given (training).
    pub fn forward_with(&self, x: &Tensor, dropout: Option<&mut Dropout>) -> Result<Tensor> {
        let y = match self.inference_rows(x)? {
            Some(y) => y,
            None => self.product(x, dropout)?,
        };
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }

    /// Inference (nothing tracked) on more rows than the few-rows kernel takes: `x Wᵀ` from the
    /// contiguous transpose, plus the LoRA term computed as [`ops::lora_linear_composed`] does.
    fn inference_rows(&self, x: &Tensor) -> Result<Option<Tensor>> {
        let tracked = ops::needs_backward(x)
            || ops::needs_backward(&self.weight)
            || self
                .lora
                .as_ref()
                .is_some_and(|l| ops::needs_backward(&l.a) || ops::needs_backward(&l.b));
        let dims = x.dims().to_vec();
        let Some(&inp) = dims.last() else {
            return Ok(None);
        };
        let n: usize = dims[..dims.len() - 1].iter().product();
        if tracked
            || n <= crate::gemv::MAX_ROWS
            || x.dtype() != DType::F32
            || self.weight.dtype() != DType::F32
            || !x.device().is_cpu()
        {
            return Ok(None);
        }
        let x2 = x.reshape((n, inp))?;
        let mut y = x2.matmul(&self.weight_t.of(&self.weight)?)?;
        if let Some(l) = &self.lora {
            let z = ops::linear(&(ops::linear(&x2, &l.a)? * l.scale)?, &l.b)?;
            y = (y + z)?;
        }
        let mut out_dims = dims;
        *out_dims.last_mut().expect("non-empty") = self.weight.dim(0)?;
        Ok(Some(y.reshape(out_dims)?))
    }

    /// `x Wᵀ` plus the LoRA term, for training and for few-row inference.
    fn product(&self, x: &Tensor, dropout: Option<&mut Dropout>) -> Result<Tensor> {
        Ok(match &self.lora {
            Some(l) => match dropout.filter(|d| d.p > 0.0) {
                // Without dropout the LoRA input is `x` itself: one fused node.
                None => ops::lora_linear(x, &self.weight, &l.a, &l.b, l.scale)?,
                Some(d) => {
                    let xd = d.apply(x)?;
                    ops::lora_linear_composed(x, &xd, &self.weight, &l.a, &l.b, l.scale)?
                }
            },
            None => ops::linear(x, &self.weight)?,
        })
    }
}

/// Projections of one decoder layer, by their Hugging Face module names.
pub const PROJECTIONS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

#[derive(Clone)]
pub struct Layer {
    pub input_norm: Tensor,
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    pub post_norm: Tensor,
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

impl Layer {
    /// The projection called `name` (one of [`PROJECTIONS`]).
    pub fn projection_mut(&mut self, name: &str) -> Option<&mut Linear> {
        Some(match name {
            "q_proj" => &mut self.q_proj,
            "k_proj" => &mut self.k_proj,
            "v_proj" => &mut self.v_proj,
            "o_proj" => &mut self.o_proj,
            "gate_proj" => &mut self.gate_proj,
            "up_proj" => &mut self.up_proj,
            "down_proj" => &mut self.down_proj,
            _ => return None,
        })
    }

    pub fn projection(&self, name: &str) -> Option<&Linear> {
        Some(match name {
            "q_proj" => &self.q_proj,
            "k_proj" => &self.k_proj,
            "v_proj" => &self.v_proj,
            "o_proj" => &self.o_proj,
            "gate_proj" => &self.gate_proj,
            "up_proj" => &self.up_proj,
            "down_proj" => &self.down_proj,
            _ => return None,
        })
    }
}

/// Key/value tensors of every layer for the tokens seen so far: `[B, n_kv, T, head_dim]` each.
///
/// A cache can also hold a *shared* prefix, `[1, n_kv, P, head_dim]` per layer, that every row
/// attends to before its own keys ([`KvCache::share`]): when many samples continue one prompt,
/// the prompt's keys and values are stored and read once instead of copied into every row, and
/// its attention scores are one product for the whole batch. Inference only.
#[derive(Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<KeysValues>>,
    shared: Vec<Option<KeysValues>>,
}

/// One layer's cached keys and values.
type KeysValues = (Tensor, Tensor);

impl KvCache {
    pub fn new(n_layers: usize) -> Self {
        KvCache {
            layers: vec![None; n_layers],
            shared: vec![None; n_layers],
        }
    }

    /// Number of cached positions (shared and own).
    pub fn len(&self) -> usize {
        let len = |l: &[Option<KeysValues>]| {
            l.first()
                .and_then(|l| l.as_ref())
                .map(|(k, _)| k.dim(2).unwrap_or(0))
                .unwrap_or(0)
        };
        len(&self.shared) + len(&self.layers)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Batch size of the rows' own cached tensors (0 when there are none).
    pub fn batch(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .map(|(k, _)| k.dim(0).unwrap_or(0))
            .unwrap_or(0)
    }

    /// Keeps only the batch rows in `rows` (e.g. the sequences still generating); a shared
    /// prefix stays shared.
    pub fn select(&self, rows: &[u32]) -> Result<Self> {
        let idx = Tensor::new(rows, &Device::Cpu)?;
        let mut out = Vec::with_capacity(self.layers.len());
        for l in &self.layers {
            out.push(match l {
                Some((k, v)) => Some((k.index_select(&idx, 0)?, v.index_select(&idx, 0)?)),
                None => None,
            });
        }
        Ok(KvCache {
            layers: out,
            shared: self.shared.clone(),
        })
    }

    /// The first `len` positions of a cache without a shared prefix (the keys and values of a
    /// prompt's first `len` tokens, which attend to nothing after them).
    pub fn truncate(&self, len: usize) -> Result<Self> {
        if self.shared.iter().any(Option::is_some) || len > self.len() {
            return Err(crate::error::ModelError::Input(format!(
                "cannot cut a cache of {} positions{} to {len}",
                self.len(),
                if self.shared.iter().any(Option::is_some) {
                    " with a shared prefix"
                } else {
                    ""
                }
            )));
        }
        let cut = |t: &Tensor| -> Result<Tensor> { Ok(t.narrow(2, 0, len)?.contiguous()?) };
        let mut layers = Vec::with_capacity(self.layers.len());
        for l in &self.layers {
            layers.push(match l {
                Some((k, v)) => Some((cut(k)?, cut(v)?)),
                None => None,
            });
        }
        Ok(KvCache {
            layers,
            shared: self.shared.clone(),
        })
    }

    /// This one-row cache as a prefix shared by any number of rows that follow it.
    pub fn share(self) -> Result<Self> {
        if self.shared.iter().any(Option::is_some) || self.batch() > 1 {
            return Err(crate::error::ModelError::Input(
                "only a one-row cache without a shared prefix can be shared".into(),
            ));
        }
        Ok(KvCache {
            shared: self.layers,
            layers: vec![None; self.shared.len()],
        })
    }
}

/// Precomputed rotary tables.
#[derive(Clone)]
pub struct Rope {
    /// `[max_pos, head_dim / 2]`
    cos: Tensor,
    sin: Tensor,
    pub inv_freq: Vec<f64>,
}

/// Longest context the rotary table is built for.
const MAX_ROPE_POSITIONS: usize = 32_768;

impl Rope {
    pub fn new(cfg: &Config) -> Result<Self> {
        let inv_freq = inv_freq(cfg);
        let max = cfg.max_position.clamp(1, MAX_ROPE_POSITIONS);
        let half = cfg.head_dim / 2;
        let mut cos = Vec::with_capacity(max * half);
        let mut sin = Vec::with_capacity(max * half);
        for p in 0..max {
            for f in &inv_freq {
                // f32 product, like transformers, so angles at large positions round the same way.
                let a = (p as f32) * (*f as f32);
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        Ok(Rope {
            cos: Tensor::from_vec(cos, (max, half), &Device::Cpu)?,
            sin: Tensor::from_vec(sin, (max, half), &Device::Cpu)?,
            inv_freq,
        })
    }

    pub fn max_positions(&self) -> usize {
        self.cos.dim(0).unwrap_or(0)
    }

    /// cos and sin for `positions: [B, T]` (u32) → `[B, T, head_dim/2]` each.
    pub fn tables(&self, positions: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, t) = positions.dims2()?;
        let flat = positions.flatten_all()?;
        let cos = self.cos.index_select(&flat, 0)?;
        let sin = self.sin.index_select(&flat, 0)?;
        let half = cos.dim(1)?;
        Ok((cos.reshape((b, t, half))?, sin.reshape((b, t, half))?))
    }
}

/// Rotary inverse frequencies, with Llama 3.1's scaling when configured.
pub fn inv_freq(cfg: &Config) -> Vec<f64> {
    let d = cfg.head_dim;
    let base: Vec<f64> = (0..d / 2)
        .map(|i| {
            // Computed like transformers: base ** (arange(0, d, 2, int64).float() / d), in f32.
            let e = (2 * i) as f32 / d as f32;
            1.0 / (cfg.rope_theta as f32).powf(e) as f64
        })
        .collect();
    match &cfg.rope_scaling {
        None => base,
        Some(s) => {
            let low_wavelen = s.original_max_position_embeddings / s.low_freq_factor;
            let high_wavelen = s.original_max_position_embeddings / s.high_freq_factor;
            base.into_iter()
                .map(|f| {
                    let wavelen = 2.0 * std::f64::consts::PI / f;
                    if wavelen < high_wavelen {
                        f
                    } else if wavelen > low_wavelen {
                        f / s.factor
                    } else {
                        let smooth = (s.original_max_position_embeddings / wavelen
                            - s.low_freq_factor)
                            / (s.high_freq_factor - s.low_freq_factor);
                        (1.0 - smooth) * f / s.factor + smooth * f
                    }
                })
                .collect()
        }
    }
}

/// One forward step: tokens, their positions, and which keys each query may attend to.
pub struct Step<'a> {
    /// `[B, T]` u32
    pub tokens: &'a Tensor,
    /// `[B, T]` u32 rotary positions
    pub positions: &'a Tensor,
    /// `[B, 1, T, past + T]` f32, 0 where attention is allowed and -inf where it is not.
    pub mask: &'a Tensor,
}

/// A loaded decoder.
#[derive(Clone)]
pub struct Llama {
    pub cfg: Config,
    pub embed: Tensor,
    pub layers: Vec<Layer>,
    pub norm: Tensor,
    /// `[vocab, hidden]`; the embedding matrix itself when tied.
    pub lm_head: Tensor,
    pub rope: Rope,
    /// `lm_headᵀ`, contiguous, for logits of many rows at once (batched decoding).
    lm_head_t: Transposed,
    /// Vectors added at hook points in every forward pass ([`crate::steer`]); None: none.
    pub steering: Option<std::sync::Arc<Steering>>,
}

impl Llama {
    pub fn load(w: &Weights, cfg: &Config) -> Result<Self> {
        let h = cfg.hidden_size;
        let q = cfg.num_heads * cfg.head_dim;
        let kv = cfg.num_kv_heads * cfg.head_dim;
        let f = cfg.intermediate_size;
        let bias = cfg.attention_bias;
        let embed = w.get_shaped("model.embed_tokens.weight", &[cfg.vocab_size, h])?;
        // The layer count comes from the file: a vector grows as layers are found, so a huge count
        // ends at the first missing tensor instead of reserving memory for all of them.
        let mut layers = Vec::new();
        for i in 0..cfg.num_layers {
            let p = format!("model.layers.{i}");
            layers.push(Layer {
                input_norm: w.get_shaped(&format!("{p}.input_layernorm.weight"), &[h])?,
                q_proj: Linear::load(w, &format!("{p}.self_attn.q_proj"), q, h, bias)?,
                k_proj: Linear::load(w, &format!("{p}.self_attn.k_proj"), kv, h, bias)?,
                v_proj: Linear::load(w, &format!("{p}.self_attn.v_proj"), kv, h, bias)?,
                o_proj: Linear::load(w, &format!("{p}.self_attn.o_proj"), h, q, false)?,
                post_norm: w.get_shaped(&format!("{p}.post_attention_layernorm.weight"), &[h])?,
                gate_proj: Linear::load(w, &format!("{p}.mlp.gate_proj"), f, h, false)?,
                up_proj: Linear::load(w, &format!("{p}.mlp.up_proj"), f, h, false)?,
                down_proj: Linear::load(w, &format!("{p}.mlp.down_proj"), h, f, false)?,
            });
        }
        let lm_head = if cfg.tie_embeddings {
            embed.clone()
        } else {
            w.get_shaped("lm_head.weight", &[cfg.vocab_size, h])?
        };
        Ok(Llama {
            cfg: cfg.clone(),
            embed,
            layers,
            norm: w.get_shaped("model.norm.weight", &[h])?,
            lm_head,
            rope: Rope::new(cfg)?,
            lm_head_t: Transposed::default(),
            steering: None,
        })
    }

    /// Identities of every tensor the forward reads (weights, norms, adapters, steering
    /// vectors) and the bits of every LoRA scale. candle tensors do not change after they are made, except training
    /// `Var`s, so equal identities mean the same model for inference.
    pub fn identity(&self) -> (Vec<candle_core::TensorId>, Vec<u64>) {
        let mut ids = vec![self.embed.id(), self.norm.id(), self.lm_head.id()];
        let mut scales = Vec::new();
        for l in &self.layers {
            ids.push(l.input_norm.id());
            ids.push(l.post_norm.id());
            for lin in [
                &l.q_proj,
                &l.k_proj,
                &l.v_proj,
                &l.o_proj,
                &l.gate_proj,
                &l.up_proj,
                &l.down_proj,
            ] {
                ids.push(lin.weight.id());
                if let Some(b) = &lin.bias {
                    ids.push(b.id());
                }
                if let Some(lora) = &lin.lora {
                    ids.push(lora.a.id());
                    ids.push(lora.b.id());
                    scales.push(lora.scale.to_bits());
                }
            }
        }
        if let Some(s) = &self.steering {
            ids.extend(s.tensor_ids());
        }
        (ids, scales)
    }

    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.cfg.num_layers)
    }

    /// Hidden states after the final norm for every position: `[B, T, hidden]`. With a cache,
    /// the step's keys and values are appended to it.
    pub fn forward(&self, step: &Step, cache: Option<&mut KvCache>) -> Result<Tensor> {
        self.forward_with(step, cache, None)
    }

    /// As [`Llama::forward`], with LoRA dropout drawn from `dropout` when given (training).
    pub fn forward_with(
        &self,
        step: &Step,
        cache: Option<&mut KvCache>,
        dropout: Option<&mut Dropout>,
    ) -> Result<Tensor> {
        self.forward_impl(step, cache, dropout, None, None)
    }

    /// As [`Llama::forward`], recording the activations `capture` asks for (see
    /// [`crate::capture`]). Inference only: the recorded tensors are not tracked.
    pub fn forward_capture(
        &self,
        step: &Step,
        cache: Option<&mut KvCache>,
        capture: &mut Capture,
    ) -> Result<Tensor> {
        self.forward_impl(step, cache, None, None, Some(capture))
    }

    /// Hidden states after the final norm at the positions `rows` only (flat indices `b·T + t`
    /// into the step's `[B, T]`): `[N, hidden]`, what [`Llama::forward`] gives there. Only the
    /// last layer's keys and values are needed at every position, so its attention output,
    /// output projection and MLP run on those rows alone (a training loss reads a few positions
    /// per sequence). With a cache, every position's keys and values are still appended.
    pub fn forward_rows(
        &self,
        step: &Step,
        cache: Option<&mut KvCache>,
        rows: &Tensor,
    ) -> Result<Tensor> {
        self.forward_impl(step, cache, None, Some(rows), None)
    }

    fn forward_impl(
        &self,
        step: &Step,
        mut cache: Option<&mut KvCache>,
        mut dropout: Option<&mut Dropout>,
        rows: Option<&Tensor>,
        mut capture: Option<&mut Capture>,
    ) -> Result<Tensor> {
        let (b, t) = step.tokens.dims2()?;
        let cfg = &self.cfg;
        let steer = self.steering.as_deref();
        // `x + Σ alpha · v` where the model is steered at that point (before it is recorded).
        let steered = |i: usize, hook: LayerHook, x: Tensor| -> Result<Tensor> {
            match steer {
                Some(s) => s.add(i, hook, x),
                None => Ok(x),
            }
        };
        let mut x = self
            .embed
            .index_select(&step.tokens.flatten_all()?, 0)?
            .reshape((b, t, cfg.hidden_size))?;
        let (cos, sin) = self.rope.tables(step.positions)?;
        let eps = cfg.rms_eps as f32;
        for (i, layer) in self.layers.iter().enumerate() {
            let slot = cache
                .as_deref_mut()
                .map(|c| (c.shared.get(i).and_then(Option::as_ref), &mut c.layers[i]));
            x = steered(i, LayerHook::ResidPre, x)?;
            if let Some(c) = capture.as_deref_mut() {
                c.record(i, LayerHook::ResidPre, &x)?;
            }
            let h = ops::rms_norm(&x, &layer.input_norm, eps)?;
            let mut heads = self.attention(
                layer,
                &h,
                (&cos, &sin),
                step.mask,
                slot,
                dropout.as_deref_mut(),
            )?;
            if let (Some(rows), true) = (rows, i + 1 == self.layers.len()) {
                let flat = |v: &Tensor| -> Result<Tensor> {
                    let w = v.dim(2)?;
                    Ok(v.reshape((b * t, w))?.index_select(rows, 0)?)
                };
                heads = flat(&heads)?;
                x = flat(&x)?;
            }
            let a = layer.o_proj.forward_with(&heads, dropout.as_deref_mut())?;
            let a = steered(i, LayerHook::AttnOut, a)?;
            if let Some(c) = capture.as_deref_mut() {
                c.record(i, LayerHook::AttnOut, &a)?;
            }
            x = (x + a)?;
            let h = ops::rms_norm(&x, &layer.post_norm, eps)?;
            let gate = layer.gate_proj.forward_with(&h, dropout.as_deref_mut())?;
            let up = layer.up_proj.forward_with(&h, dropout.as_deref_mut())?;
            let m = layer
                .down_proj
                .forward_with(&ops::swiglu(&gate, &up)?, dropout.as_deref_mut())?;
            let m = steered(i, LayerHook::MlpOut, m)?;
            if let Some(c) = capture.as_deref_mut() {
                c.record(i, LayerHook::MlpOut, &m)?;
            }
            x = (x + m)?;
            x = steered(i, LayerHook::ResidPost, x)?;
            if let Some(c) = capture.as_deref_mut() {
                c.record(i, LayerHook::ResidPost, &x)?;
            }
        }
        match steer.and_then(Steering::ln_final) {
            // `(x / rms(x) + Σ alpha · v) · gain`: the vector joins the normalized stream
            // before the final norm's gain, as a hook on TransformerLens's `hook_normalized`.
            Some(v) => {
                let ones = Tensor::ones(cfg.hidden_size, x.dtype(), x.device())?;
                let n = ops::rms_norm(&x, &ones, eps)?.broadcast_add(v)?;
                if let Some(c) = capture {
                    c.record_normalized(&n)?;
                }
                Ok(n.broadcast_mul(&self.norm)?)
            }
            None => {
                if let Some(c) = capture {
                    c.record_ln_final(&x, eps)?;
                }
                ops::rms_norm(&x, &self.norm, eps)
            }
        }
    }

    /// The attention heads' output before the output projection: `[B, T, heads·hd]`.
    fn attention(
        &self,
        layer: &Layer,
        x: &Tensor,
        (cos, sin): (&Tensor, &Tensor),
        mask: &Tensor,
        cache: Option<(Option<&KeysValues>, &mut Option<KeysValues>)>,
        mut dropout: Option<&mut Dropout>,
    ) -> Result<Tensor> {
        let cfg = &self.cfg;
        let (b, t, _) = x.dims3()?;
        let (nh, nkv, hd) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        // [B, T, heads*hd] → [B, heads, T, hd]
        let q = layer
            .q_proj
            .forward_with(x, dropout.as_deref_mut())?
            .reshape((b, t, nh, hd))?
            .transpose(1, 2)?;
        let k = layer
            .k_proj
            .forward_with(x, dropout.as_deref_mut())?
            .reshape((b, t, nkv, hd))?
            .transpose(1, 2)?;
        let v = layer
            .v_proj
            .forward_with(x, dropout)?
            .reshape((b, t, nkv, hd))?
            .transpose(1, 2)?;
        let q = ops::rope(&q.contiguous()?, cos, sin)?;
        let k = ops::rope(&k.contiguous()?, cos, sin)?;
        let v = v.contiguous()?;
        let (shared, slot) = match cache {
            Some((shared, slot)) => (shared, Some(slot)),
            None => (None, None),
        };
        let (k, v) = match slot {
            Some(slot) => {
                let kv = match slot.take() {
                    Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
                    None => (k, v),
                };
                *slot = Some(kv.clone());
                kv
            }
            None => (k, v),
        };
        let scale = 1.0 / (hd as f64).sqrt();
        let tracked = ops::needs_backward(&q) || ops::needs_backward(&k) || ops::needs_backward(&v);
        if let Some((sk, sv)) = shared {
            if tracked {
                return Err(crate::error::ModelError::Input(
                    "a shared-prefix cache is for inference, not training".into(),
                ));
            }
            return shared_attention(&q, (sk, sv), (&k, &v), mask, scale);
        }
        if tracked {
            // Training: one graph node with a hand-written backward.
            return Ok(ops::attention(&q, &k, &v, mask, scale)?
                .transpose(1, 2)?
                .reshape((b, t, nh * hd))?);
        }
        let tk = k.dim(2)?;
        let groups = nh / nkv;
        // Grouped-query attention without copying K/V: fold each group's heads into the query
        // rows. Head h uses KV head h / groups, as in transformers' repeat_kv.
        let qg = q.reshape((b, nkv, groups * t, hd))?;
        let scores = if ops::needs_backward(&qg) {
            // Scaling q ([.., hd]) instead of the scores ([.., tk]) keeps one activation fewer.
            (qg * scale)?.matmul(&k.t()?)?
        } else {
            (qg.matmul(&k.t()?)? * scale)?
        };
        let scores = scores.reshape((b, nh, t, tk))?;
        let probs = ops::softmax_masked(&scores, mask)?;
        let out = probs.reshape((b, nkv, groups * t, tk))?.matmul(&v)?;
        Ok(out
            .reshape((b, nh, t, hd))?
            .transpose(1, 2)?
            .reshape((b, t, nh * hd))?)
    }

    /// Logits for hidden states `[.., hidden] → [.., vocab]`.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let dims = hidden.dims();
        let rows: usize = dims[..dims.len().saturating_sub(1)].iter().product();
        if rows > crate::gemv::MAX_ROWS
            && !ops::needs_backward(hidden)
            && !ops::needs_backward(&self.lm_head)
            && hidden.dtype() == DType::F32
            && self.lm_head.dtype() == DType::F32
            && hidden.device().is_cpu()
        {
            // Many rows (a batch of samples): read the vocabulary matrix from its transpose
            // instead of repacking all of it on every call; the same bits.
            let h = *dims.last().expect("hidden states have a last dimension");
            let mut out_dims = dims.to_vec();
            *out_dims.last_mut().expect("non-empty") = self.lm_head.dim(0)?;
            let y = hidden
                .reshape((rows, h))?
                .matmul(&self.lm_head_t.of(&self.lm_head)?)?;
            return Ok(y.reshape(out_dims)?);
        }
        ops::linear(hidden, &self.lm_head)
    }

    /// Log-probabilities over the vocabulary for hidden states `[N, hidden] → [N, vocab]`, in f32
    /// with a max-subtracted log-sum-exp.
    pub fn log_softmax(&self, hidden: &Tensor) -> Result<Tensor> {
        let logits = self.logits(hidden)?;
        Ok(candle_nn::ops::log_softmax(&logits, D::Minus1)?)
    }
}

/// Inference attention of `q: [B, nh, T, hd]` over a prefix shared by every row
/// (`[1, nkv, P, hd]`) followed by each row's own keys and values (`[B, nkv, Tk, hd]`), with
/// `mask: [B or 1, 1, T, P + Tk]`; returns `[B, T, nh · hd]`. The shared part is one product
/// per KV head for all rows and query heads at once.
fn shared_attention(
    q: &Tensor,
    (sk, sv): (&Tensor, &Tensor),
    (k, v): (&Tensor, &Tensor),
    mask: &Tensor,
    scale: f64,
) -> Result<Tensor> {
    let (b, nh, t, hd) = q.dims4()?;
    let (_, nkv, p, _) = sk.dims4()?;
    let tk = k.dim(2)?;
    let rows = (nh / nkv) * t;
    // Head h uses KV head h / groups: fold each group's heads into the query rows.
    let qg = q.reshape((b, nkv, rows, hd))?;
    // [nkv, B·rows, hd] · [nkv, hd, P] → [nkv, B·rows, P] → [B, nkv, rows, P]
    let by_head = qg
        .transpose(0, 1)?
        .contiguous()?
        .reshape((nkv, b * rows, hd))?;
    let s_shared = by_head
        .matmul(&sk.squeeze(0)?.t()?)?
        .reshape((nkv, b, rows, p))?
        .transpose(0, 1)?;
    let s_own = qg.matmul(&k.t()?)?;
    let scores = (Tensor::cat(&[&s_shared, &s_own], 3)? * scale)?;
    let probs = ops::softmax_masked(&scores.reshape((b, nh, t, p + tk))?, mask)?.reshape((
        b,
        nkv,
        rows,
        p + tk,
    ))?;
    let p_shared = probs
        .narrow(3, 0, p)?
        .transpose(0, 1)?
        .contiguous()?
        .reshape((nkv, b * rows, p))?;
    let o_shared = p_shared
        .matmul(&sv.squeeze(0)?)?
        .reshape((nkv, b, rows, hd))?
        .transpose(0, 1)?;
    let o_own = probs.narrow(3, p, tk)?.contiguous()?.matmul(v)?;
    Ok((o_shared + o_own)?
        .reshape((b, nh, t, hd))?
        .transpose(1, 2)?
        .reshape((b, t, nh * hd))?)
}

/// Additive attention mask `[B, 1, Tq, Tk]` from a predicate `allowed(b, q, k)`.
pub fn build_mask(
    b: usize,
    tq: usize,
    tk: usize,
    allowed: impl Fn(usize, usize, usize) -> bool,
) -> Result<Tensor> {
    let mut m = Vec::with_capacity(b * tq * tk);
    for bi in 0..b {
        for qi in 0..tq {
            for ki in 0..tk {
                m.push(if allowed(bi, qi, ki) {
                    0.0f32
                } else {
                    f32::NEG_INFINITY
                });
            }
        }
    }
    Ok(Tensor::from_vec(m, (b, 1, tq, tk), &Device::Cpu)?)
}

/// `[B, T]` u32 tensor from rows of equal length.
pub fn u32_matrix(rows: &[Vec<u32>]) -> Result<Tensor> {
    let b = rows.len();
    let t = rows.first().map(|r| r.len()).unwrap_or(0);
    let flat: Vec<u32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Ok(Tensor::from_vec(flat, (b, t), &Device::Cpu)?.to_dtype(DType::U32)?)
}
