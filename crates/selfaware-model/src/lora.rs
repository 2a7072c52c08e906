//! LoRA adapters in Hugging Face PEFT's format: initialisation, attaching to a [`Llama`],
//! merging, and reading/writing `adapter_config.json` + `adapter_model.safetensors`.
//!
//! A LoRA on projection `W: [out, in]` adds `scale · B A x` with `A: [r, in]`, `B: [out, r]`,
//! `scale = alpha / r` (or `alpha / √r` with rsLoRA), applied after dropout on `x` as PEFT does.
//! Weights are named as PEFT names them for a causal LM:
//! `base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use crate::config::Config;
use crate::error::{ModelError, Result};
use crate::llama::{Llama, PROJECTIONS};

/// File names of a PEFT adapter directory.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";

/// The LoRA hyper-parameters an adapter is made with.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraSpec {
    pub rank: usize,
    pub alpha: f64,
    pub dropout: f64,
    /// Module names, a subset of [`PROJECTIONS`].
    pub targets: Vec<String>,
    /// rsLoRA scaling (`alpha / √r`) instead of `alpha / r`.
    pub use_rslora: bool,
}

impl LoraSpec {
    /// The factor multiplying `B A x`.
    pub fn scale(&self) -> f64 {
        if self.use_rslora {
            self.alpha / (self.rank as f64).sqrt()
        } else {
            self.alpha / self.rank as f64
        }
    }

    /// Checks rank and target names.
    pub fn validate(&self) -> Result<()> {
        if self.rank == 0 {
            return Err(ModelError::Input("LoRA rank must be at least 1".into()));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(ModelError::Input(format!(
                "LoRA dropout {} must be in [0, 1)",
                self.dropout
            )));
        }
        if self.targets.is_empty() {
            return Err(ModelError::Input(
                "LoRA needs at least one target module".into(),
            ));
        }
        for t in &self.targets {
            if !PROJECTIONS.contains(&t.as_str()) {
                return Err(ModelError::Input(format!(
                    "unknown LoRA target module `{t}` (expected one of {})",
                    PROJECTIONS.join(", ")
                )));
            }
        }
        Ok(())
    }
}

/// One projection's LoRA factors, attached to a [`crate::llama::Linear`].
#[derive(Clone)]
pub struct Lora {
    /// `[r, in]`
    pub a: Tensor,
    /// `[out, r]`
    pub b: Tensor,
    pub scale: f64,
}

/// Inverted dropout on LoRA inputs with masks drawn from a seeded RNG (training only).
pub struct Dropout {
    pub p: f64,
    pub rng: ChaCha8Rng,
}

impl Dropout {
    /// `x` with each element zeroed with probability `p` and the rest scaled by `1/(1-p)`.
    pub fn apply(&mut self, x: &Tensor) -> Result<Tensor> {
        if self.p <= 0.0 {
            return Ok(x.clone());
        }
        let keep = 1.0 - self.p;
        let n = x.elem_count();
        let scale = (1.0 / keep) as f32;
        let mask: Vec<f32> = (0..n)
            .map(|_| {
                if self.rng.gen::<f64>() < keep {
                    scale
                } else {
                    0.0
                }
            })
            .collect();
        let mask = Tensor::from_vec(mask, x.shape(), x.device())?;
        Ok((x * mask)?)
    }
}

/// Module path of a projection inside a decoder layer (`self_attn` or `mlp`).
pub fn module_path(module: &str) -> &'static str {
    match module {
        "q_proj" | "k_proj" | "v_proj" | "o_proj" => "self_attn",
        _ => "mlp",
    }
}

/// PEFT's tensor name for factor `ab` ("A" or "B") of `module` in layer `layer`.
pub fn peft_name(layer: usize, module: &str, ab: &str) -> String {
    format!(
        "base_model.model.model.layers.{layer}.{}.{module}.lora_{ab}.weight",
        module_path(module)
    )
}

/// Input and output width of a projection.
fn projection_dims(cfg: &Config, module: &str) -> (usize, usize) {
    let h = cfg.hidden_size;
    let q = cfg.num_heads * cfg.head_dim;
    let kv = cfg.num_kv_heads * cfg.head_dim;
    let f = cfg.intermediate_size;
    match module {
        "q_proj" => (h, q),
        "k_proj" | "v_proj" => (h, kv),
        "o_proj" => (q, h),
        "gate_proj" | "up_proj" => (h, f),
        _ => (f, h),
    }
}

/// A LoRA adapter: its spec and the `(A, B)` factors of every adapted projection.
#[derive(Clone)]
pub struct Adapter {
    pub spec: LoraSpec,
    /// What the adapter was made for (`base_model_name_or_path`).
    pub base_model: Option<String>,
    /// `(layer, module)` → `(A [r, in], B [out, r])`.
    pub factors: BTreeMap<(usize, String), (Tensor, Tensor)>,
}

impl Adapter {
    /// A fresh adapter initialised as PEFT does: `A` Kaiming-uniform with `a = √5`, i.e.
    /// uniform in `±1/√in`, and `B = 0`. Values are drawn from `ChaCha8Rng(seed)` layer by
    /// layer, module by module in [`PROJECTIONS`] order, row-major.
    pub fn init(cfg: &Config, spec: &LoraSpec, seed: u64) -> Result<Self> {
        spec.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut factors = BTreeMap::new();
        for layer in 0..cfg.num_layers {
            for module in PROJECTIONS {
                if !spec.targets.iter().any(|t| t == module) {
                    continue;
                }
                let (inp, out) = projection_dims(cfg, module);
                let bound = 1.0 / (inp as f64).sqrt();
                let a: Vec<f32> = (0..spec.rank * inp)
                    .map(|_| rng.gen_range(-bound..bound) as f32)
                    .collect();
                let a = Tensor::from_vec(a, (spec.rank, inp), &Device::Cpu)?;
                let b = Tensor::zeros((out, spec.rank), candle_core::DType::F32, &Device::Cpu)?;
                factors.insert((layer, module.to_string()), (a, b));
            }
        }
        Ok(Adapter {
            spec: spec.clone(),
            base_model: None,
            factors,
        })
    }

    /// Turns every factor into a trainable `Var`, returned in the adapter's (sorted) order,
    /// A before B. The adapter's tensors then are those variables.
    pub fn make_trainable(&mut self) -> Result<Vec<(String, Var)>> {
        let mut vars = Vec::with_capacity(self.factors.len() * 2);
        for ((layer, module), (a, b)) in self.factors.iter_mut() {
            let va = Var::from_tensor(a)?;
            let vb = Var::from_tensor(b)?;
            *a = va.as_tensor().clone();
            *b = vb.as_tensor().clone();
            vars.push((peft_name(*layer, module, "A"), va));
            vars.push((peft_name(*layer, module, "B"), vb));
        }
        Ok(vars)
    }

    /// Checks that every factor fits the model's shapes.
    pub fn check_fits(&self, cfg: &Config, origin: &Path) -> Result<()> {
        for ((layer, module), (a, b)) in &self.factors {
            let bad = |name: String, t: &Tensor, expected: Vec<usize>| ModelError::TensorShape {
                path: origin.to_path_buf(),
                name,
                found: t.dims().to_vec(),
                expected,
            };
            if *layer >= cfg.num_layers {
                return Err(ModelError::Adapter {
                    path: origin.to_path_buf(),
                    message: format!(
                        "adapts layer {layer}, but the model has {} layers",
                        cfg.num_layers
                    ),
                });
            }
            let (inp, out) = projection_dims(cfg, module);
            let r = self.spec.rank;
            if a.dims() != [r, inp] {
                return Err(bad(peft_name(*layer, module, "A"), a, vec![r, inp]));
            }
            if b.dims() != [out, r] {
                return Err(bad(peft_name(*layer, module, "B"), b, vec![out, r]));
            }
        }
        Ok(())
    }

    /// `adapter_config.json` as PEFT writes it.
    pub fn peft_config(&self) -> Value {
        json!({
            "alpha_pattern": {},
            "auto_mapping": null,
            "base_model_name_or_path": self.base_model,
            "bias": "none",
            "fan_in_fan_out": false,
            "inference_mode": true,
            "init_lora_weights": true,
            "layers_pattern": null,
            "layers_to_transform": null,
            "lora_alpha": self.spec.alpha,
            "lora_dropout": self.spec.dropout,
            "modules_to_save": null,
            "peft_type": "LORA",
            "r": self.spec.rank,
            "rank_pattern": {},
            "revision": null,
            "target_modules": self.spec.targets,
            "task_type": "CAUSAL_LM",
            "use_dora": false,
            "use_rslora": self.spec.use_rslora,
        })
    }

    /// The factors by PEFT tensor name.
    pub fn named_tensors(&self) -> Result<BTreeMap<String, Tensor>> {
        let mut out = BTreeMap::new();
        for ((layer, module), (a, b)) in &self.factors {
            out.insert(peft_name(*layer, module, "A"), a.detach().contiguous()?);
            out.insert(peft_name(*layer, module, "B"), b.detach().contiguous()?);
        }
        Ok(out)
    }

    /// Writes `adapter_config.json` and `adapter_model.safetensors` into `dir` (created).
    pub fn save(&self, dir: &Path) -> Result<()> {
        let io = |path: PathBuf| move |e| ModelError::Io { path, source: e };
        fs_err::create_dir_all(dir).map_err(io(dir.to_path_buf()))?;
        let cfg_path = dir.join(ADAPTER_CONFIG);
        let text =
            serde_json::to_string_pretty(&self.peft_config()).map_err(|e| ModelError::Adapter {
                path: cfg_path.clone(),
                message: e.to_string(),
            })?;
        fs_err::write(&cfg_path, text + "\n").map_err(io(cfg_path.clone()))?;
        let tensors: HashMap<String, Tensor> = self.named_tensors()?.into_iter().collect();
        candle_core::safetensors::save(&tensors, dir.join(ADAPTER_WEIGHTS))?;
        Ok(())
    }

    /// Reads a PEFT LoRA adapter directory (made by selfaware or by HF PEFT).
    ///
    /// PEFT's config has many fields; those that change the computation and that selfaware does
    /// not implement (DoRA, bias training, per-module rank/alpha patterns, `modules_to_save`,
    /// `fan_in_fan_out`) are rejected rather than ignored.
    pub fn load(dir: &Path) -> Result<Self> {
        let cfg_path = dir.join(ADAPTER_CONFIG);
        let bad = |message: String| ModelError::Adapter {
            path: cfg_path.clone(),
            message,
        };
        let text = fs_err::read_to_string(&cfg_path).map_err(|e| ModelError::Io {
            path: cfg_path.clone(),
            source: e,
        })?;
        let v: Value =
            serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let get = |k: &str| v.get(k).filter(|x| !x.is_null());
        match get("peft_type").and_then(Value::as_str) {
            Some("LORA") => {}
            other => return Err(bad(format!("`peft_type` is {other:?}, expected \"LORA\""))),
        }
        let rank = get("r")
            .and_then(Value::as_u64)
            .ok_or_else(|| bad("`r` is missing or not a positive integer".into()))?
            as usize;
        let alpha = get("lora_alpha")
            .and_then(Value::as_f64)
            .ok_or_else(|| bad("`lora_alpha` is missing or not a number".into()))?;
        let dropout = get("lora_dropout").and_then(Value::as_f64).unwrap_or(0.0);
        let use_rslora = get("use_rslora").and_then(Value::as_bool).unwrap_or(false);
        let targets: Vec<String> = match get("target_modules") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|t| {
                    t.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| bad("`target_modules` must list strings".into()))
                })
                .collect::<Result<_>>()?,
            Some(Value::String(s)) if PROJECTIONS.contains(&s.as_str()) => vec![s.clone()],
            other => {
                return Err(bad(format!(
                    "`target_modules` is {other:?}; expected a list of module names"
                )))
            }
        };
        let unsupported = [
            (
                "use_dora",
                get("use_dora").and_then(Value::as_bool) == Some(true),
            ),
            (
                "bias",
                get("bias")
                    .and_then(Value::as_str)
                    .is_some_and(|b| b != "none"),
            ),
            (
                "fan_in_fan_out",
                get("fan_in_fan_out").and_then(Value::as_bool) == Some(true),
            ),
            (
                "modules_to_save",
                get("modules_to_save")
                    .and_then(Value::as_array)
                    .is_some_and(|a| !a.is_empty()),
            ),
            (
                "rank_pattern",
                get("rank_pattern")
                    .and_then(Value::as_object)
                    .is_some_and(|o| !o.is_empty()),
            ),
            (
                "alpha_pattern",
                get("alpha_pattern")
                    .and_then(Value::as_object)
                    .is_some_and(|o| !o.is_empty()),
            ),
        ];
        if let Some((field, _)) = unsupported.iter().find(|(_, on)| *on) {
            return Err(bad(format!(
                "`{field}` is set; selfaware does not support it"
            )));
        }
        let spec = LoraSpec {
            rank,
            alpha,
            dropout,
            targets: targets
                .into_iter()
                .filter(|t| PROJECTIONS.contains(&t.as_str()))
                .collect(),
            use_rslora,
        };
        spec.validate().map_err(|e| bad(e.to_string()))?;
        let wpath = dir.join(ADAPTER_WEIGHTS);
        if !wpath.exists() {
            return Err(ModelError::Adapter {
                path: wpath,
                message:
                    "missing (adapters in the older adapter_model.bin format are not supported)"
                        .into(),
            });
        }
        let tensors = candle_core::safetensors::load(&wpath, &Device::Cpu)?;
        let mut a_b: BTreeMap<(usize, String), [Option<Tensor>; 2]> = BTreeMap::new();
        for (name, t) in tensors {
            let (layer, module, which) =
                parse_peft_name(&name).ok_or_else(|| ModelError::Adapter {
                    path: wpath.clone(),
                    message: format!(
                        "tensor `{name}` is not a LoRA factor of a decoder projection \
                         (expected e.g. {})",
                        peft_name(0, "q_proj", "A")
                    ),
                })?;
            let t = t.to_dtype(candle_core::DType::F32)?;
            a_b.entry((layer, module)).or_default()[which] = Some(t);
        }
        let mut factors = BTreeMap::new();
        for ((layer, module), [a, b]) in a_b {
            match (a, b) {
                (Some(a), Some(b)) => {
                    factors.insert((layer, module), (a, b));
                }
                _ => {
                    return Err(ModelError::Adapter {
                        path: wpath.clone(),
                        message: format!("layer {layer} {module} has only one of lora_A/lora_B"),
                    })
                }
            }
        }
        Ok(Adapter {
            spec,
            base_model: get("base_model_name_or_path")
                .and_then(Value::as_str)
                .map(str::to_string),
            factors,
        })
    }
}

/// `(layer, module, 0 for A / 1 for B)` of a PEFT tensor name.
fn parse_peft_name(name: &str) -> Option<(usize, String, usize)> {
    let rest = name.strip_prefix("base_model.model.model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer = layer.parse().ok()?;
    let (path, rest) = rest.split_once('.')?;
    let (module, rest) = rest.split_once('.')?;
    let which = match rest {
        "lora_A.weight" | "lora_A.default.weight" => 0,
        "lora_B.weight" | "lora_B.default.weight" => 1,
        _ => return None,
    };
    (PROJECTIONS.contains(&module) && module_path(module) == path)
        .then(|| (layer, module.to_string(), which))
}

impl crate::Engine {
    /// Loads the PEFT adapter in `dir` and attaches it to the model (inference stays on the fast
    /// kernels; the adapter adds `scale · B A x` to each adapted projection).
    pub fn attach_adapter_dir(&mut self, dir: &Path) -> Result<Adapter> {
        let adapter = Adapter::load(dir)?;
        self.model.attach_adapter(&adapter, dir)?;
        Ok(adapter)
    }
}

impl Llama {
    /// Attaches an adapter's factors to the projections they adapt (replacing earlier ones).
    pub fn attach_adapter(&mut self, adapter: &Adapter, origin: &Path) -> Result<()> {
        adapter.check_fits(&self.cfg, origin)?;
        let scale = adapter.spec.scale();
        for ((layer, module), (a, b)) in &adapter.factors {
            let lin =
                self.layers[*layer]
                    .projection_mut(module)
                    .ok_or_else(|| ModelError::Adapter {
                        path: origin.to_path_buf(),
                        message: format!("unknown module {module}"),
                    })?;
            lin.lora = Some(Lora {
                a: a.clone(),
                b: b.clone(),
                scale,
            });
        }
        Ok(())
    }

    /// Removes every attached LoRA.
    pub fn detach_adapters(&mut self) {
        for l in &mut self.layers {
            for m in PROJECTIONS {
                if let Some(p) = l.projection_mut(m) {
                    p.lora = None;
                }
            }
        }
    }

    /// Folds attached LoRAs into the base weights (`W + scale · B A`) and removes them.
    pub fn merge_adapters(&mut self) -> Result<()> {
        for l in &mut self.layers {
            for m in PROJECTIONS {
                if let Some(p) = l.projection_mut(m) {
                    if let Some(lora) = p.lora.take() {
                        let delta = (lora.b.detach().matmul(&lora.a.detach())? * lora.scale)?;
                        p.weight = (&p.weight + delta)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes the weights (after any merge) as one safetensors file with Hugging Face names.
    pub fn save_safetensors(&self, path: &Path) -> Result<()> {
        let tensors: HashMap<String, Tensor> = self.named_weights().into_iter().collect();
        candle_core::safetensors::save(&tensors, path)?;
        Ok(())
    }

    /// Base weights by Hugging Face name (after any merge), for writing merged checkpoints.
    pub fn named_weights(&self) -> BTreeMap<String, Tensor> {
        let mut out = BTreeMap::new();
        out.insert("model.embed_tokens.weight".to_string(), self.embed.clone());
        out.insert("model.norm.weight".to_string(), self.norm.clone());
        if !self.cfg.tie_embeddings {
            out.insert("lm_head.weight".to_string(), self.lm_head.clone());
        }
        for (i, l) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{i}");
            out.insert(format!("{p}.input_layernorm.weight"), l.input_norm.clone());
            out.insert(
                format!("{p}.post_attention_layernorm.weight"),
                l.post_norm.clone(),
            );
            for m in PROJECTIONS {
                if let Some(lin) = l.projection(m) {
                    let base = format!("{p}.{}.{m}", module_path(m));
                    out.insert(format!("{base}.weight"), lin.weight.clone());
                    if let Some(b) = &lin.bias {
                        out.insert(format!("{base}.bias"), b.clone());
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peft_names_round_trip() {
        for m in PROJECTIONS {
            for (ab, w) in [("A", 0), ("B", 1)] {
                let n = peft_name(7, m, ab);
                assert_eq!(parse_peft_name(&n), Some((7, m.to_string(), w)), "{n}");
            }
        }
        assert_eq!(
            peft_name(3, "gate_proj", "A"),
            "base_model.model.model.layers.3.mlp.gate_proj.lora_A.weight"
        );
        assert_eq!(
            parse_peft_name("base_model.model.model.layers.3.mlp.q_proj.lora_A.weight"),
            None
        );
        assert_eq!(
            parse_peft_name("base_model.model.lm_head.lora_A.weight"),
            None
        );
    }
}
