//! Additive steering: vectors added to the decoder's activations at hook points, in every
//! forward pass, at every position.
//!
//! A steering vector `v` with multiplier `alpha` at a [`HookPoint`] changes the value `h` there
//! to `h + alpha · v` before the rest of the model reads it, exactly as a PyTorch forward hook
//! (TransformerLens: `hook_fn = lambda h, hook: h + alpha * v`) would:
//!
//! | point | what `alpha · v` is added to |
//! |---|---|
//! | `blocks.{l}.hook_resid_pre` | the residual stream entering layer `l` |
//! | `blocks.{l}.hook_attn_out` | the attention block's output, before it joins the stream |
//! | `blocks.{l}.hook_mlp_out` | the MLP's output, before it joins the stream |
//! | `blocks.{l}.hook_resid_post` | the residual stream leaving layer `l` |
//! | `ln_final.hook_normalized` | the last residual stream divided by its RMS, before the final norm's gain |
//!
//! Several vectors at one point add up (`alpha₁ v₁ + alpha₂ v₂`, summed in f32 once, when the
//! [`Steering`] is made). A [`crate::Capture`] at a steered point records the steered value, the
//! one the rest of the model reads.
//!
//! On the command line a vector is `FILE:POINT:ALPHA` ([`SteerSpec`]): the tensor named `POINT`
//! (shape `[d]` or `[1, d]`) of the safetensors file `FILE` — a directions file written by
//! `selfaware activations diff` holds one such tensor per point.
//!
//! A vector can also be trained: a [`SteerVar`] is a `Var` added at one point (multiplier 1);
//! the backward pass of a loss computed through it gives its gradient, the sum over positions
//! of the loss's gradient at that point. `selfaware train --method steer` trains one and writes
//! it as such a file ([`SteerVar::save`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor, Var};
use selfaware_types::SteerRecord;

use crate::capture::{HookPoint, LayerHook};
use crate::config::Config;
use crate::error::{ModelError, Result};
use crate::llama::Llama;

/// A steering vector as a user names it: `FILE:POINT:ALPHA`.
#[derive(Debug, Clone, PartialEq)]
pub struct SteerSpec {
    pub file: PathBuf,
    pub point: HookPoint,
    pub alpha: f32,
}

impl std::str::FromStr for SteerSpec {
    type Err = ModelError;

    /// `FILE:POINT:ALPHA`, split at the last two colons (so a file name may hold colons); or
    /// the short form `FILE:ALPHA` when FILE holds exactly one tensor, whose name is the point
    /// (the file is read to find it: a file of several tensors, or of one whose name is not a
    /// hook point, is an error naming them).
    fn from_str(s: &str) -> Result<Self> {
        match parse_syntax(s)? {
            Written::Long(spec) => Ok(spec),
            Written::Short { file, alpha } => Ok(SteerSpec {
                point: only_tensor(&file).map_err(|message| ModelError::Steer {
                    spec: s.to_string(),
                    message,
                })?,
                file,
                alpha,
            }),
        }
    }
}

/// A `--steer` value as written: its syntax checked when parsed, its file read only by
/// [`SteerArg::resolve`] (the short form `FILE:ALPHA` finds its point in the file, which may
/// not exist yet when a command line is checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SteerArg(String);

impl std::str::FromStr for SteerArg {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self> {
        parse_syntax(s)?;
        Ok(SteerArg(s.to_string()))
    }
}

impl SteerArg {
    /// The vector it names (see [`SteerSpec`]'s `FromStr`).
    pub fn resolve(&self) -> Result<SteerSpec> {
        self.0.parse()
    }

    /// Every vector of `args`, in order.
    pub fn resolve_all(args: &[SteerArg]) -> Result<Vec<SteerSpec>> {
        args.iter().map(SteerArg::resolve).collect()
    }
}

/// A steering value's two written forms.
enum Written {
    Long(SteerSpec),
    Short { file: PathBuf, alpha: f32 },
}

/// `FILE:POINT:ALPHA` when the part before the alpha ends in a hook point (or is not an
/// existing file, so that a misspelt point is reported as one), else `FILE:ALPHA`.
fn parse_syntax(s: &str) -> Result<Written> {
    let bad = |message: String| ModelError::Steer {
        spec: s.to_string(),
        message,
    };
    let Some((rest, alpha)) = s.rsplit_once(':') else {
        return Err(bad("expected FILE:POINT:ALPHA, e.g. \
             directions.safetensors:blocks.12.hook_resid_post:4, or FILE:ALPHA for a file of \
             one tensor"
            .into()));
    };
    let alpha = alpha
        .trim()
        .parse::<f32>()
        .ok()
        .filter(|a| a.is_finite())
        .ok_or_else(|| bad(format!("alpha {alpha:?} is not a finite number")))?;
    match rest.rsplit_once(':') {
        Some((file, point)) if point.parse::<HookPoint>().is_ok() || !Path::new(rest).exists() => {
            let point = point.parse::<HookPoint>().map_err(bad)?;
            if file.is_empty() {
                return Err(bad(
                    "the file name is empty (expected FILE:POINT:ALPHA)".into()
                ));
            }
            Ok(Written::Long(SteerSpec {
                file: PathBuf::from(file),
                point,
                alpha,
            }))
        }
        _ if rest.is_empty() => Err(bad(
            "the file name is empty (expected FILE:POINT:ALPHA or FILE:ALPHA)".into(),
        )),
        _ => Ok(Written::Short {
            file: PathBuf::from(rest),
            alpha,
        }),
    }
}

/// The point a one-tensor steering file names (its tensor's name), for `FILE:ALPHA`.
fn only_tensor(path: &Path) -> std::result::Result<HookPoint, String> {
    let bytes = std::fs::read(path).map_err(|e| {
        format!(
            "cannot read {}: {e} (expected FILE:POINT:ALPHA, or FILE:ALPHA for a file of one \
             tensor)",
            path.display()
        )
    })?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| format!("{} is not a safetensors file ({e})", path.display()))?;
    let mut names = st.names();
    names.sort();
    match names.as_slice() {
        [one] => one.parse::<HookPoint>().map_err(|e| {
            format!(
                "{}'s one tensor is named `{one}`, not a hook point ({e}); name the point: \
                 FILE:POINT:ALPHA",
                path.display()
            )
        }),
        _ => {
            let shown: Vec<&str> = names.iter().take(6).map(|s| &s[..]).collect();
            Err(format!(
                "FILE:ALPHA needs a file of exactly one tensor; {} holds {} ({}{})\nhint: name \
                 the point: FILE:POINT:ALPHA",
                path.display(),
                names.len(),
                shown.join(", "),
                if names.len() > shown.len() {
                    ", …"
                } else {
                    ""
                }
            ))
        }
    }
}

// `alpha` is finite (checked when parsed), so equality is an equivalence.
impl Eq for SteerSpec {}

impl std::fmt::Display for SteerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.point, self.alpha)
    }
}

impl SteerSpec {
    fn error(&self, message: String) -> ModelError {
        ModelError::Steer {
            spec: self.to_string(),
            message,
        }
    }

    /// Reads the vector: the tensor named as the point, `[d]` or `[1, d]`, F32 (F16, BF16 and
    /// F64 are converted), finite.
    pub fn read_vector(&self) -> Result<Vec<f32>> {
        let path = &self.file;
        let f = std::fs::File::open(path).map_err(|source| ModelError::Io {
            path: path.clone(),
            source,
        })?;
        // SAFETY: read-only map of a file this process does not write; the vector is copied
        // out before the map is dropped.
        let map = unsafe { memmap2::Mmap::map(&f) }.map_err(|source| ModelError::Io {
            path: path.clone(),
            source,
        })?;
        let st = safetensors::SafeTensors::deserialize(&map)
            .map_err(|e| self.error(format!("not a safetensors file ({e})")))?;
        let name = self.point.to_string();
        let view = st.tensor(&name).map_err(|_| {
            let mut names = st.names();
            names.sort();
            let shown: Vec<&str> = names.iter().take(12).map(|s| &s[..]).collect();
            let more = names.len().saturating_sub(shown.len());
            self.error(format!(
                "no tensor `{name}` in the file; it holds {}{}\nhint: the vector is the tensor \
                 named as the point (`selfaware activations diff` writes one per point)",
                if shown.is_empty() {
                    "no tensors".to_string()
                } else {
                    shown.join(", ")
                },
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ))
        })?;
        let shape = view.shape().to_vec();
        let d = match shape.as_slice() {
            [d] | [1, d] => *d,
            _ => {
                return Err(self.error(format!(
                    "tensor `{name}` has shape {shape:?}; a steering vector is [d] or [1, d]"
                )))
            }
        };
        let bytes = view.data();
        let v: Vec<f32> = match view.dtype() {
            safetensors::Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            safetensors::Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            safetensors::Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            safetensors::Dtype::F64 => bytes
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
                .collect(),
            other => {
                return Err(self.error(format!(
                    "tensor `{name}` has dtype {other:?}; a steering vector is F32 (or F16, \
                     BF16, F64)"
                )))
            }
        };
        debug_assert_eq!(v.len(), d);
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(self.error(format!(
                "tensor `{name}` holds a non-finite value ({}) at index {i}",
                v[i]
            )));
        }
        Ok(v)
    }
}

/// One vector to add at one point.
#[derive(Debug, Clone, PartialEq)]
pub struct SteerVector {
    pub point: HookPoint,
    /// `[hidden]`
    pub vector: Vec<f32>,
    pub alpha: f32,
    /// Where it came from, for results' provenance.
    pub record: SteerRecord,
}

impl SteerVector {
    /// A vector made in memory (its record names no file; its sha256 is that of the vector's
    /// little-endian f32 bytes).
    pub fn new(point: HookPoint, vector: Vec<f32>, alpha: f32) -> Self {
        let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
        SteerVector {
            record: SteerRecord {
                file: String::new(),
                sha256: selfaware_types::sha256_hex(&bytes),
                point: point.to_string(),
                alpha,
            },
            point,
            vector,
            alpha,
        }
    }

    /// Reads the vector a spec names, recording the file's sha256.
    pub fn load(spec: &SteerSpec) -> Result<Self> {
        let vector = spec.read_vector()?;
        Ok(SteerVector {
            record: SteerRecord {
                file: spec.file.display().to_string(),
                sha256: crate::file_sha256(&spec.file)?,
                point: spec.point.to_string(),
                alpha: spec.alpha,
            },
            point: spec.point,
            vector,
            alpha: spec.alpha,
        })
    }
}

/// The vectors a model adds in its forward pass, checked against its shape and summed per
/// point (`Σ alpha · v`, `[hidden]` each), ready to be added.
#[derive(Debug, Clone)]
pub struct Steering {
    /// Per layer, per [`LayerHook`]: the sum to add there.
    slots: Vec<[Option<Tensor>; 4]>,
    ln_final: Option<Tensor>,
    records: Vec<SteerRecord>,
}

impl Steering {
    /// Checks every vector against `cfg` (its point's layer, its length against the hidden
    /// size) and sums those at the same point. None when `vectors` is empty.
    pub fn new(vectors: &[SteerVector], cfg: &Config) -> Result<Option<Self>> {
        if vectors.is_empty() {
            return Ok(None);
        }
        let h = cfg.hidden_size;
        let mut sums: Vec<[Option<Vec<f32>>; 4]> = vec![Default::default(); cfg.num_layers];
        let mut ln_final: Option<Vec<f32>> = None;
        for v in vectors {
            let what = || {
                if v.record.file.is_empty() {
                    v.point.to_string()
                } else {
                    format!("{}:{}:{}", v.record.file, v.point, v.alpha)
                }
            };
            v.point
                .check(cfg.num_layers)
                .map_err(|e| ModelError::Steer {
                    spec: what(),
                    message: e.to_string(),
                })?;
            if v.vector.len() != h {
                return Err(ModelError::Steer {
                    spec: what(),
                    message: format!(
                        "the vector has {} values, but the model's hidden size is {h}",
                        v.vector.len()
                    ),
                });
            }
            if !v.alpha.is_finite() {
                return Err(ModelError::Steer {
                    spec: what(),
                    message: format!("alpha {} is not finite", v.alpha),
                });
            }
            let slot = match v.point {
                HookPoint::Block { layer, hook } => &mut sums[layer][hook.slot()],
                HookPoint::LnFinal => &mut ln_final,
            };
            let sum = slot.get_or_insert_with(|| vec![0.0; h]);
            for (s, x) in sum.iter_mut().zip(&v.vector) {
                *s += v.alpha * x;
            }
        }
        let tensor = |v: Option<Vec<f32>>| -> Result<Option<Tensor>> {
            v.map(|v| Tensor::from_vec(v, h, &Device::Cpu))
                .transpose()
                .map_err(Into::into)
        };
        Ok(Some(Steering {
            slots: sums
                .into_iter()
                .map(|[a, b, c, d]| Ok([tensor(a)?, tensor(b)?, tensor(c)?, tensor(d)?]))
                .collect::<Result<_>>()?,
            ln_final: tensor(ln_final)?,
            records: vectors.iter().map(|v| v.record.clone()).collect(),
        }))
    }

    /// Reads and checks the vectors `specs` name (see [`Steering::new`]).
    pub fn load(specs: &[SteerSpec], cfg: &Config) -> Result<Option<Self>> {
        let vectors = specs
            .iter()
            .map(SteerVector::load)
            .collect::<Result<Vec<_>>>()?;
        Steering::new(&vectors, cfg)
    }

    /// The vectors as results record them, in the order given.
    pub fn records(&self) -> &[SteerRecord] {
        &self.records
    }

    /// `x + Σ alpha · v` at `hook` of `layer` (`x: [.., hidden]`); `x` itself where nothing
    /// is added.
    pub(crate) fn add(&self, layer: usize, hook: LayerHook, x: Tensor) -> Result<Tensor> {
        match self.slots.get(layer).and_then(|s| s[hook.slot()].as_ref()) {
            Some(v) => Ok(x.broadcast_add(v)?),
            None => Ok(x),
        }
    }

    /// The sum added at `ln_final.hook_normalized`, if any.
    pub(crate) fn ln_final(&self) -> Option<&Tensor> {
        self.ln_final.as_ref()
    }

    /// Identities of the added tensors (a model's identity includes them).
    pub(crate) fn tensor_ids(&self) -> Vec<candle_core::TensorId> {
        self.slots
            .iter()
            .flatten()
            .chain(std::iter::once(&self.ln_final))
            .flatten()
            .map(Tensor::id)
            .collect()
    }
}

/// A steering vector being trained: one `Var` of shape `[hidden]`, added with multiplier 1 at
/// one point, at every position.
///
/// A model it is attached to ([`SteerVar::attach`]) adds it like any [`Steering`]. Because the
/// vector is a `Var`, the stream is part of a gradient graph from that point on, so the layers
/// after it take their differentiable kernels ([`crate::ops::needs_backward`]; the layers before
/// it stay on the inference kernels, and the base weights stay frozen), and the backward pass
/// of a loss computed from that forward gives the vector's gradient ([`SteerVar::grad`]): the
/// sum over every position it was added at of `dL/dh` at the point (candle's backward of the
/// broadcast sums over batch and positions). Positions the loss does not read and no read
/// position attends to — right padding behind a causal mask — contribute exactly zero.
#[derive(Debug, Clone)]
pub struct SteerVar {
    pub point: HookPoint,
    /// `[hidden]`
    pub var: Var,
}

impl SteerVar {
    /// A trainable vector at `point` starting from `init`, checked against the model shape.
    pub fn new(point: HookPoint, init: Vec<f32>, cfg: &Config) -> Result<Self> {
        let bad = |message: String| ModelError::Steer {
            spec: point.to_string(),
            message,
        };
        point
            .check(cfg.num_layers)
            .map_err(|e| bad(e.to_string()))?;
        if init.len() != cfg.hidden_size {
            return Err(bad(format!(
                "the vector has {} values, but the model's hidden size is {}",
                init.len(),
                cfg.hidden_size
            )));
        }
        let var = Var::from_tensor(&Tensor::from_vec(init, cfg.hidden_size, &Device::Cpu)?)?;
        Ok(SteerVar { point, var })
    }

    /// A zero vector at `point`.
    pub fn zeros(point: HookPoint, cfg: &Config) -> Result<Self> {
        SteerVar::new(point, vec![0.0; cfg.hidden_size], cfg)
    }

    /// A copy of `model` (sharing its weights) that adds this vector at its point. A model that
    /// is already steered is refused: its vectors would be trained around, unrecorded.
    pub fn attach(&self, model: &Llama) -> Result<Llama> {
        if let Some(s) = &model.steering {
            let names: Vec<String> = s
                .records()
                .iter()
                .map(|r| match r.file.as_str() {
                    "" => format!("{} × {}", r.alpha, r.point),
                    file => format!("{file}:{}:{}", r.point, r.alpha),
                })
                .collect();
            return Err(ModelError::Steer {
                spec: self.point.to_string(),
                message: format!(
                    "the model is already steered ({}); a steering vector is trained on an \
                     unsteered model",
                    names.join(", ")
                ),
            });
        }
        let cfg = &model.cfg;
        let mut slots: Vec<[Option<Tensor>; 4]> = vec![Default::default(); cfg.num_layers];
        let mut ln_final = None;
        match self.point {
            HookPoint::Block { layer, hook } => {
                slots[layer][hook.slot()] = Some(self.var.as_tensor().clone())
            }
            HookPoint::LnFinal => ln_final = Some(self.var.as_tensor().clone()),
        }
        let mut steered = model.clone();
        steered.steering = Some(std::sync::Arc::new(Steering {
            slots,
            ln_final,
            records: vec![SteerRecord {
                file: String::new(),
                sha256: String::new(),
                point: self.point.to_string(),
                alpha: 1.0,
            }],
        }));
        Ok(steered)
    }

    /// The vector's gradient in `grads` (the backward of a loss computed by a model this
    /// vector is attached to): `[hidden]`, zeros when none reached it.
    pub fn grad(&self, grads: &candle_core::backprop::GradStore) -> Result<Tensor> {
        Ok(match grads.get(self.var.as_tensor()) {
            Some(g) => g.clone(),
            None => self.var.as_tensor().zeros_like()?,
        })
    }

    /// The vector's current values.
    pub fn vector(&self) -> Result<Vec<f32>> {
        Ok(self.var.as_tensor().to_vec1::<f32>()?)
    }

    /// Writes the vector as a steering file [`SteerSpec::read_vector`] reads: one F32 tensor
    /// `[hidden]` named as the point, with `metadata` in the header. Written to a temporary
    /// file in the same folder and renamed over `path`, so a reader never sees half a file.
    pub fn save(&self, path: &Path, metadata: &BTreeMap<String, String>) -> Result<()> {
        let io = |source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        };
        let v = self.vector()?;
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        let view =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![v.len()], &bytes)
                .map_err(|e| {
                    ModelError::Input(format!("steering vector {}: {e}", path.display()))
                })?;
        let meta: std::collections::HashMap<String, String> = metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let data = safetensors::serialize([(self.point.to_string(), view)], Some(meta))
            .map_err(|e| ModelError::Input(format!("steering vector {}: {e}", path.display())))?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        std::io::Write::write_all(&mut tmp, &data).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(path).map_err(|e| io(e.error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_split_at_the_last_two_colons_and_say_what_is_wrong() {
        let s: SteerSpec = "dir:with:colons/d.safetensors:blocks.3.hook_resid_post:-4.5"
            .parse()
            .unwrap();
        assert_eq!(s.file, PathBuf::from("dir:with:colons/d.safetensors"));
        assert_eq!(s.point, HookPoint::block(3, LayerHook::ResidPost));
        assert_eq!(s.alpha, -4.5);
        assert_eq!(
            s.to_string(),
            "dir:with:colons/d.safetensors:blocks.3.hook_resid_post:-4.5"
        );
        let ln: SteerSpec = "v.safetensors:ln_final.hook_normalized:2".parse().unwrap();
        assert_eq!(ln.point, HookPoint::LnFinal);
        let err = |s: &str| s.parse::<SteerSpec>().unwrap_err().to_string();
        assert!(err("v.safetensors").contains("expected FILE:POINT:ALPHA"));
        assert!(err("v.safetensors:4").contains("expected FILE:POINT:ALPHA"));
        assert!(err(":blocks.1.hook_mlp_out:1").contains("file name is empty"));
        let e = err("v.safetensors:blocks.1.hook_resid_mid:1");
        assert!(
            e.contains("v.safetensors") && e.contains("expected blocks.LAYER.HOOK"),
            "{e}"
        );
        let e = err("v.safetensors:blocks.1.hook_mlp_out:x");
        assert!(e.contains("alpha \"x\" is not a finite number"), "{e}");
        assert!(err("v.safetensors:blocks.1.hook_mlp_out:inf").contains("not a finite"));
        assert!(err("v.safetensors:blocks.1.hook_mlp_out:NaN").contains("not a finite"));
    }
}
