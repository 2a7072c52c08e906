//! Activations recorded during a forward pass, at TransformerLens's hook points.
//!
//! A [`HookPoint`] names where in the decoder a value is read, spelled as TransformerLens spells
//! it (`blocks.3.hook_resid_post`), so that users' habits carry over:
//!
//! | point | value, per position |
//! |---|---|
//! | `blocks.{l}.hook_resid_pre` | the residual stream entering layer `l` (layer 0: the embeddings) |
//! | `blocks.{l}.hook_attn_out` | the attention block's output (after `o_proj`), added to the stream |
//! | `blocks.{l}.hook_mlp_out` | the MLP's output (after `down_proj`), added to the stream |
//! | `blocks.{l}.hook_resid_post` | the residual stream leaving layer `l`: `resid_pre + attn_out + mlp_out` |
//! | `ln_final.hook_normalized` | the last layer's `resid_post` divided by its RMS, *before* the final norm's gain, as in TransformerLens |
//!
//! A [`Capture`] is handed to [`Llama::forward_capture`]; it says which points to record and at
//! which positions, and collects them as `[N, hidden]` tensors. The plain forward passes `None`
//! and pays one untaken branch per layer.

use candle_core::{Device, Tensor};

use crate::error::{ModelError, Result};
use crate::llama::{build_mask, u32_matrix, Llama, Step};
use crate::ops;

/// What a hook point reads inside one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LayerHook {
    ResidPre,
    AttnOut,
    MlpOut,
    ResidPost,
}

impl LayerHook {
    pub const ALL: [LayerHook; 4] = [
        LayerHook::ResidPre,
        LayerHook::AttnOut,
        LayerHook::MlpOut,
        LayerHook::ResidPost,
    ];

    pub fn name(self) -> &'static str {
        match self {
            LayerHook::ResidPre => "hook_resid_pre",
            LayerHook::AttnOut => "hook_attn_out",
            LayerHook::MlpOut => "hook_mlp_out",
            LayerHook::ResidPost => "hook_resid_post",
        }
    }

    pub(crate) fn slot(self) -> usize {
        self as usize
    }
}

/// A named place in the decoder where activations can be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HookPoint {
    /// `blocks.{layer}.{hook}`
    Block { layer: usize, hook: LayerHook },
    /// `ln_final.hook_normalized`
    LnFinal,
}

/// Spelling of the final-norm point.
const LN_FINAL: &str = "ln_final.hook_normalized";

impl HookPoint {
    pub fn block(layer: usize, hook: LayerHook) -> Self {
        HookPoint::Block { layer, hook }
    }

    /// Checks the point against a model with `n_layers` layers.
    pub fn check(self, n_layers: usize) -> Result<Self> {
        match self {
            HookPoint::Block { layer, .. } if layer >= n_layers => Err(ModelError::Input(format!(
                "hook point `{self}`: layer {layer} is out of range (the model has {n_layers} \
                 layers, 0..={})",
                n_layers.saturating_sub(1)
            ))),
            _ => Ok(self),
        }
    }

    /// A comma-separated list of points for a model with `n_layers` layers, each checked;
    /// `blocks.*.HOOK` stands for that hook at every layer, in layer order.
    pub fn parse_list(list: &str, n_layers: usize) -> Result<Vec<HookPoint>> {
        let mut out: Vec<HookPoint> = Vec::new();
        for item in list.split(',').map(str::trim) {
            let points = match item.strip_prefix("blocks.*.") {
                Some(hook) => {
                    let hook = LayerHook::ALL
                        .into_iter()
                        .find(|h| h.name() == hook)
                        .ok_or_else(|| {
                            ModelError::Input(format!(
                                "hook point {item:?}: expected blocks.*.HOOK with HOOK one of {}",
                                LayerHook::ALL.map(LayerHook::name).join(", ")
                            ))
                        })?;
                    HookPoint::every_layer(hook, n_layers)
                }
                None => vec![item.parse::<HookPoint>().map_err(ModelError::Input)?],
            };
            for p in points {
                let p = p.check(n_layers)?;
                if out.contains(&p) {
                    return Err(ModelError::Input(format!(
                        "hook point `{p}` is listed twice"
                    )));
                }
                out.push(p);
            }
        }
        Ok(out)
    }

    /// `blocks.{l}.{hook}` for every layer of an `n_layers` model.
    pub fn every_layer(hook: LayerHook, n_layers: usize) -> Vec<HookPoint> {
        (0..n_layers).map(|l| HookPoint::block(l, hook)).collect()
    }
}

impl std::fmt::Display for HookPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HookPoint::Block { layer, hook } => write!(f, "blocks.{layer}.{}", hook.name()),
            HookPoint::LnFinal => f.write_str(LN_FINAL),
        }
    }
}

impl std::str::FromStr for HookPoint {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let expected = || {
            format!(
                "hook point {s:?}: expected blocks.LAYER.HOOK (HOOK one of {}) or {LN_FINAL}",
                LayerHook::ALL.map(LayerHook::name).join(", ")
            )
        };
        if s == LN_FINAL {
            return Ok(HookPoint::LnFinal);
        }
        let rest = s.strip_prefix("blocks.").ok_or_else(expected)?;
        let (layer, name) = rest.split_once('.').ok_or_else(expected)?;
        if layer.is_empty() || !layer.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("hook point {s:?}: layer {layer:?} is not a number"));
        }
        let layer = layer
            .parse()
            .map_err(|_| format!("hook point {s:?}: layer {layer:?} is too large"))?;
        let hook = LayerHook::ALL
            .into_iter()
            .find(|h| h.name() == name)
            .ok_or_else(expected)?;
        Ok(HookPoint::Block { layer, hook })
    }
}

/// Which points to record in one forward pass, at which positions, and what was recorded.
pub struct Capture {
    /// Per layer, per [`LayerHook`]: the index of the point in the request.
    slots: Vec<[Option<usize>; 4]>,
    ln_final: Option<usize>,
    /// Flat indices `b·T + t` into the step's `[B, T]` to keep; every position when None.
    rows: Option<Tensor>,
    taken: Vec<Option<Tensor>>,
}

impl Capture {
    /// Records `points` (checked against the model's layer count; each at most once) at every
    /// position of the step, or at the flat positions `rows` (`b·T + t`) when given.
    pub fn new(points: &[HookPoint], n_layers: usize, rows: Option<&[u32]>) -> Result<Self> {
        let mut slots = vec![[None; 4]; n_layers];
        let mut ln_final = None;
        for (i, &p) in points.iter().enumerate() {
            let slot = match p.check(n_layers)? {
                HookPoint::Block { layer, hook } => &mut slots[layer][hook.slot()],
                HookPoint::LnFinal => &mut ln_final,
            };
            if slot.is_some() {
                return Err(ModelError::Input(format!(
                    "hook point `{p}` is requested twice"
                )));
            }
            *slot = Some(i);
        }
        let rows = rows.map(|r| Tensor::new(r, &Device::Cpu)).transpose()?;
        Ok(Capture {
            slots,
            ln_final,
            rows,
            taken: vec![None; points.len()],
        })
    }

    /// `x: [B, T, H]` (or `[N, H]`, already at the kept rows) as `[N, H]` at the kept rows.
    fn select(&self, x: &Tensor) -> Result<Tensor> {
        if x.rank() == 2 {
            return Ok(x.clone());
        }
        let (b, t, h) = x.dims3()?;
        let flat = x.reshape((b * t, h))?;
        Ok(match &self.rows {
            Some(r) => flat.index_select(r, 0)?,
            None => flat.contiguous()?,
        })
    }

    pub(crate) fn record(&mut self, layer: usize, hook: LayerHook, x: &Tensor) -> Result<()> {
        if let Some(i) = self.slots.get(layer).and_then(|s| s[hook.slot()]) {
            self.taken[i] = Some(self.select(x)?);
        }
        Ok(())
    }

    /// Records `ln_final.hook_normalized` from the last layer's output `x`.
    pub(crate) fn record_ln_final(&mut self, x: &Tensor, eps: f32) -> Result<()> {
        if let Some(i) = self.ln_final {
            let x = self.select(x)?;
            let ones = Tensor::ones(x.dim(1)?, x.dtype(), x.device())?;
            self.taken[i] = Some(ops::rms_norm(&x, &ones, eps)?);
        }
        Ok(())
    }

    /// Records `ln_final.hook_normalized` as the already normalized `n` (a steered model adds
    /// its vectors to it before the gain).
    pub(crate) fn record_normalized(&mut self, n: &Tensor) -> Result<()> {
        if let Some(i) = self.ln_final {
            self.taken[i] = Some(self.select(n)?);
        }
        Ok(())
    }

    /// The recorded tensors, `[N, hidden]` each, in the order the points were requested.
    pub fn into_tensors(self) -> Result<Vec<Tensor>> {
        self.taken
            .into_iter()
            .map(|t| {
                t.ok_or_else(|| ModelError::Input("a requested hook point was not reached".into()))
            })
            .collect()
    }
}

/// Activations at `points` for every position of one token sequence `ids` kept in `positions`
/// (indices into `ids`, in the order given): one `[positions.len(), hidden]` tensor per point.
/// The sequence runs alone, from its first token, with a causal mask.
pub fn capture_positions(
    model: &Llama,
    ids: &[u32],
    positions: &[usize],
    points: &[HookPoint],
) -> Result<Vec<Tensor>> {
    if ids.is_empty() {
        return Err(ModelError::Input("cannot run an empty sequence".into()));
    }
    crate::score::check_len(model, ids.len())?;
    if let Some(&bad) = positions.iter().find(|&&p| p >= ids.len()) {
        return Err(ModelError::Input(format!(
            "position {bad} is outside the {}-token sequence",
            ids.len()
        )));
    }
    // Only the positions up to the last kept one matter (causal attention).
    let t = positions.iter().max().map_or(0, |m| m + 1);
    if t == 0 {
        return points
            .iter()
            .map(|_| {
                Ok(Tensor::zeros(
                    (0, model.cfg.hidden_size),
                    candle_core::DType::F32,
                    &Device::Cpu,
                )?)
            })
            .collect();
    }
    let rows: Vec<u32> = positions.iter().map(|&p| p as u32).collect();
    let mut capture = Capture::new(points, model.cfg.num_layers, Some(&rows))?;
    let mask = build_mask(1, t, t, |_, q, k| k <= q)?;
    model.forward_capture(
        &Step {
            tokens: &u32_matrix(&[ids[..t].to_vec()])?,
            positions: &u32_matrix(&[(0..t as u32).collect()])?,
            mask: &mask,
        },
        None,
        &mut capture,
    )?;
    capture.into_tensors()
}

/// Activations at `points` at the last token of each of `prompts`: one `[prompts, hidden]`
/// tensor per point. Runs as scoring the prompts' next token does
/// ([`crate::score::next_logprobs_many`]: in token order, each batch's common head once, the
/// rests several to a forward), without the vocabulary projection. `on_done(k)` reports `k`
/// more prompts finished.
pub fn capture_last_many(
    model: &Llama,
    prompts: &[Vec<u32>],
    points: &[HookPoint],
    on_done: &mut dyn FnMut(usize),
) -> Result<Vec<Tensor>> {
    // Checked before anything runs.
    Capture::new(points, model.cfg.num_layers, None)?;
    let mut parts: Vec<Vec<Tensor>> = vec![Vec::new(); points.len()];
    // Row r of the concatenated parts is prompt `ran[r]`.
    let mut ran: Vec<usize> = Vec::with_capacity(prompts.len());
    crate::score::last_positions_many(
        model,
        prompts,
        Some(points),
        &mut |which, _, captured| {
            ran.extend_from_slice(which);
            for (p, t) in parts.iter_mut().zip(captured) {
                p.push(t);
            }
            Ok(())
        },
        on_done,
    )?;
    let mut row_of = vec![0u32; prompts.len()];
    for (r, &i) in ran.iter().enumerate() {
        row_of[i] = r as u32;
    }
    let row_of = Tensor::new(row_of.as_slice(), &Device::Cpu)?;
    parts
        .into_iter()
        .map(|p| {
            if p.is_empty() {
                Ok(Tensor::zeros(
                    (0, model.cfg.hidden_size),
                    candle_core::DType::F32,
                    &Device::Cpu,
                )?)
            } else {
                Ok(Tensor::cat(&p, 0)?.index_select(&row_of, 0)?)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, expect: std::result::Result<HookPoint, &str>) {
        let got = name.parse::<HookPoint>();
        match (&got, &expect) {
            (Ok(p), Ok(e)) => {
                assert_eq!(p, e, "{name}");
                assert_eq!(p.to_string(), name, "round trip");
            }
            (Err(m), Err(e)) => assert!(m.contains(e), "{name}: {m:?} lacks {e:?}"),
            _ => panic!("{name}: got {got:?}, expected {expect:?}"),
        }
    }

    #[test]
    fn points_parse_and_print_as_transformerlens_names() {
        use LayerHook::*;
        check("blocks.0.hook_resid_pre", Ok(HookPoint::block(0, ResidPre)));
        check(
            "blocks.29.hook_resid_post",
            Ok(HookPoint::block(29, ResidPost)),
        );
        check("blocks.3.hook_attn_out", Ok(HookPoint::block(3, AttnOut)));
        check("blocks.12.hook_mlp_out", Ok(HookPoint::block(12, MlpOut)));
        check("ln_final.hook_normalized", Ok(HookPoint::LnFinal));
        check(
            "blocks.x.hook_resid_pre",
            Err("layer \"x\" is not a number"),
        );
        check("blocks.-1.hook_resid_pre", Err("is not a number"));
        check("blocks.1.hook_resid_mid", Err("expected blocks.LAYER.HOOK"));
        check("blocks.1", Err("expected blocks.LAYER.HOOK"));
        check("resid_post", Err("expected blocks.LAYER.HOOK"));
        check(
            "blocks.99999999999999999999999.hook_mlp_out",
            Err("too large"),
        );
    }

    #[test]
    fn lists_expand_stars_and_refuse_repeats_and_bad_layers() {
        use LayerHook::*;
        let got = HookPoint::parse_list("blocks.*.hook_resid_post, ln_final.hook_normalized", 3);
        assert_eq!(
            got.unwrap(),
            vec![
                HookPoint::block(0, ResidPost),
                HookPoint::block(1, ResidPost),
                HookPoint::block(2, ResidPost),
                HookPoint::LnFinal
            ]
        );
        let err = |s: &str| HookPoint::parse_list(s, 3).unwrap_err().to_string();
        assert!(err("blocks.*.hook_x").contains("blocks.*.HOOK"));
        assert!(err("blocks.1.hook_mlp_out,blocks.*.hook_mlp_out").contains("listed twice"));
        assert!(err("blocks.3.hook_mlp_out").contains("out of range"));
        assert!(err("").contains("expected blocks.LAYER.HOOK"));
    }

    #[test]
    fn a_layer_out_of_range_names_the_model_size() {
        let p = HookPoint::block(30, LayerHook::ResidPost);
        let e = p.check(30).unwrap_err().to_string();
        assert!(e.contains("blocks.30.hook_resid_post"), "{e}");
        assert!(e.contains("30 layers, 0..=29"), "{e}");
        assert!(HookPoint::block(29, LayerHook::ResidPost).check(30).is_ok());
        assert!(HookPoint::LnFinal.check(0).is_ok());
        let twice = [HookPoint::LnFinal, HookPoint::LnFinal];
        let e = Capture::new(&twice, 2, None).err().unwrap().to_string();
        assert!(e.contains("requested twice"), "{e}");
    }
}
