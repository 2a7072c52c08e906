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

    /// A new engine that shares this one's base weights (tensors are reference-counted) with
    /// the PEFT adapter in `dir` attached in place of any attached here. The chat format is
    /// read again from the model's files, so `self` must have been loaded from a GGUF file or
    /// a Hugging Face directory.
    pub fn with_adapter_dir(&self, dir: &Path) -> Result<crate::Engine> {
        let mut model = self.model.clone();
        model.detach_adapters();
        let mut engine = self.sibling(model)?;
        engine.attach_adapter_dir(dir)?;
        Ok(engine)
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

/// Files [`crate::Engine::save_hf_dir`] writes: a model directory that selfaware and
/// `transformers` load.
pub const HF_DIR_FILES: [&str; 5] = [
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "generation_config.json",
];

/// `config.json` of a Hugging Face checkpoint with the shape in `cfg` and the special tokens of
/// `tok`, in the fields `transformers` reads for its llama/mistral/qwen2 classes (and
/// [`Config::from_hf_json`] reads back).
pub fn hf_config_json(cfg: &Config, tok: &selfaware_chat::Tokenizer) -> Value {
    use crate::config::Arch;
    let class = match cfg.arch {
        Arch::Llama => "LlamaForCausalLM",
        Arch::Mistral => "MistralForCausalLM",
        Arch::Qwen2 => "Qwen2ForCausalLM",
    };
    let rope_scaling = match &cfg.rope_scaling {
        Some(s) => json!({
            "rope_type": "llama3",
            "factor": s.factor,
            "low_freq_factor": s.low_freq_factor,
            "high_freq_factor": s.high_freq_factor,
            "original_max_position_embeddings": s.original_max_position_embeddings,
        }),
        None => Value::Null,
    };
    let mut v = json!({
        "architectures": [class],
        "model_type": cfg.arch.name(),
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        // The forward pass uses eps as f32 (GGUF stores it so): write its shortest f32 form,
        // 1e-5 rather than 9.999999747378752e-6, which reads back to the same f32.
        "rms_norm_eps": (cfg.rms_eps as f32).to_string().parse::<f64>().unwrap_or(cfg.rms_eps),
        "rope_theta": cfg.rope_theta,
        "rope_scaling": rope_scaling,
        "max_position_embeddings": cfg.max_position,
        "tie_word_embeddings": cfg.tie_embeddings,
        "initializer_range": 0.02,
        "attention_dropout": 0.0,
        "use_cache": true,
        "bos_token_id": tok.bos.as_ref().map(|b| b.0),
        "eos_token_id": tok.eot.0,
        "pad_token_id": tok.pad_id,
        "torch_dtype": "float32",
    });
    let o = v.as_object_mut().expect("a JSON object");
    match cfg.arch {
        Arch::Llama => {
            o.insert("attention_bias".into(), json!(cfg.attention_bias));
            o.insert("mlp_bias".into(), json!(false));
        }
        Arch::Mistral => {
            o.insert("sliding_window".into(), Value::Null);
        }
        Arch::Qwen2 => {
            o.insert("use_sliding_window".into(), json!(false));
            o.insert("sliding_window".into(), Value::Null);
        }
    }
    v
}

/// `tokenizer_config.json` naming the special tokens and the chat template of `chat`, so that
/// [`selfaware_chat::ChatFormat::from_hf_dir`] and `transformers`' `AutoTokenizer` rebuild the
/// same prompts. `eos_token` is the end-of-turn token (what chat templates write after a turn);
/// the model's other stop tokens go to `generation_config.json`.
pub fn hf_tokenizer_config_json(chat: &selfaware_chat::ChatFormat, context: usize) -> Value {
    let tok = &chat.tokenizer;
    json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": chat.template.source,
        "bos_token": tok.bos.as_ref().map(|b| b.1.clone()),
        "eos_token": tok.eot.1,
        "pad_token": tok.id_to_token(tok.pad_id),
        "unk_token": null,
        "add_bos_token": false,
        "add_eos_token": false,
        "clean_up_tokenization_spaces": false,
        "model_max_length": context,
    })
}

/// One tensor's bytes for the `safetensors` writer.
struct RawView {
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl safetensors::View for RawView {
    fn dtype(&self) -> safetensors::Dtype {
        safetensors::Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

impl crate::Engine {
    /// Writes the model as a complete Hugging Face model directory ([`HF_DIR_FILES`]): weights in
    /// f32 under Hugging Face names (the tied LM head is not repeated), its tokenizer as
    /// `tokenizer.json`, the chat template and special tokens in `tokenizer_config.json`.
    ///
    /// Attached adapters must be merged first ([`Llama::merge_adapters`]). `dir` is created; an
    /// existing non-empty `dir` is refused, so nothing already there is overwritten.
    pub fn save_hf_dir(&self, dir: &Path) -> Result<()> {
        use crate::config::Arch;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |e| ModelError::Io { path, source: e }
        };
        if dir.exists() {
            let mut entries = fs_err::read_dir(dir).map_err(io(dir))?;
            if entries.next().is_some() {
                return Err(ModelError::Input(format!(
                    "{} already exists and is not empty; refusing to write a model into it\n\
                     hint: choose a new output directory",
                    dir.display()
                )));
            }
        }
        let m = &self.model;
        let cfg = &m.cfg;
        if m.layers.iter().any(|l| {
            PROJECTIONS
                .iter()
                .any(|p| l.projection(p).is_some_and(|x| x.lora.is_some()))
        }) {
            return Err(ModelError::Input(
                "the model still has LoRA adapters attached; merge them before saving".into(),
            ));
        }
        if cfg.arch == Arch::Mistral && cfg.attention_bias {
            return Err(ModelError::Input(
                "a mistral model with attention biases has no Hugging Face config to save it as"
                    .into(),
            ));
        }
        let mut tensors = self.model.named_weights();
        // transformers' classes fix which projections carry biases: Qwen2 always has q/k/v
        // biases; Llama with `attention_bias` also has an o_proj bias. Zero biases keep the
        // computation identical where selfaware has none.
        for (i, l) in m.layers.iter().enumerate() {
            let p = format!("model.layers.{i}.self_attn");
            let mut zero_bias = |module: &str, lin: &crate::llama::Linear| -> Result<()> {
                if let std::collections::btree_map::Entry::Vacant(slot) =
                    tensors.entry(format!("{p}.{module}.bias"))
                {
                    let out = lin.weight.dim(0)?;
                    slot.insert(Tensor::zeros(out, candle_core::DType::F32, &Device::Cpu)?);
                }
                Ok(())
            };
            match cfg.arch {
                Arch::Qwen2 => {
                    zero_bias("q_proj", &l.q_proj)?;
                    zero_bias("k_proj", &l.k_proj)?;
                    zero_bias("v_proj", &l.v_proj)?;
                }
                Arch::Llama if cfg.attention_bias => zero_bias("o_proj", &l.o_proj)?,
                _ => {}
            }
        }
        fs_err::create_dir_all(dir).map_err(io(dir))?;
        let mut views = Vec::with_capacity(tensors.len());
        for (name, t) in tensors {
            let t = t.detach().to_dtype(candle_core::DType::F32)?;
            let shape = t.dims().to_vec();
            let values = t.flatten_all()?.to_vec1::<f32>()?;
            let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            views.push((name, RawView { shape, bytes }));
        }
        let weights = dir.join("model.safetensors");
        let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
        safetensors::serialize_to_file(views, Some(meta), &weights).map_err(|e| {
            ModelError::Config {
                path: weights.clone(),
                message: format!("writing safetensors failed: {e}"),
            }
        })?;
        let write_json = |name: &str, v: &Value| -> Result<()> {
            let path = dir.join(name);
            let text = serde_json::to_string_pretty(v).map_err(|e| ModelError::Config {
                path: path.clone(),
                message: e.to_string(),
            })?;
            fs_err::write(&path, text + "\n").map_err(io(&path))
        };
        let tok = &self.chat.tokenizer;
        write_json("config.json", &hf_config_json(cfg, tok))?;
        let tok_path = dir.join("tokenizer.json");
        fs_err::write(&tok_path, tok.to_json()?).map_err(io(&tok_path))?;
        write_json(
            "tokenizer_config.json",
            &hf_tokenizer_config_json(&self.chat, cfg.max_position),
        )?;
        let stops: Vec<u32> = tok.stop_ids.iter().copied().collect();
        write_json(
            "generation_config.json",
            &json!({
                "bos_token_id": tok.bos.as_ref().map(|b| b.0),
                "eos_token_id": if stops.len() == 1 { json!(stops[0]) } else { json!(stops) },
                "pad_token_id": tok.pad_id,
            }),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::Arch;
    use crate::llama::{build_mask, u32_matrix, Step};
    use crate::testing::{write_tiny_gguf, TinySpec};
    use crate::{Engine, ModelSource};
    use selfaware_types::Conversation;

    /// Logits `[T · vocab]` of one sequence, every position.
    fn all_logits(e: &Engine, ids: &[u32]) -> Vec<f32> {
        let t = ids.len();
        let tokens = u32_matrix(&[ids.to_vec()]).unwrap();
        let positions = u32_matrix(&[(0..t as u32).collect()]).unwrap();
        let mask = build_mask(1, t, t, |_, q, k| k <= q).unwrap();
        let step = Step {
            tokens: &tokens,
            positions: &positions,
            mask: &mask,
        };
        let h = e.model.forward(&step, None).unwrap();
        e.model
            .logits(&h)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    /// An adapter with random non-zero A and B (a fresh one has B = 0 and changes nothing).
    fn random_adapter(cfg: &Config, seed: u64) -> Adapter {
        let spec = LoraSpec {
            rank: 4,
            alpha: 8.0,
            dropout: 0.0,
            targets: PROJECTIONS.iter().map(|s| s.to_string()).collect(),
            use_rslora: false,
        };
        let mut ad = Adapter::init(cfg, &spec, seed).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(seed + 1);
        for (_, b) in ad.factors.values_mut() {
            let v: Vec<f32> = (0..b.elem_count())
                .map(|_| rng.gen_range(-0.3f32..0.3))
                .collect();
            *b = Tensor::from_vec(v, b.shape(), &Device::Cpu).unwrap();
        }
        ad
    }

    /// A merged model saved with `save_hf_dir` loads as a model reference and computes what the
    /// base model with the adapter attached computes, with the same chat prompt.
    #[test]
    fn merged_model_directory_loads_and_matches_the_attached_adapter() {
        let tmp = tempfile::tempdir().unwrap();
        let cases = [
            (TinySpec::default(), Arch::Llama),
            (
                TinySpec {
                    seed: 1,
                    tied: false,
                    qkv_bias: true,
                    ..TinySpec::default()
                },
                Arch::Llama,
            ),
            (
                TinySpec {
                    seed: 2,
                    tied: false,
                    ..TinySpec::default()
                },
                Arch::Mistral,
            ),
            (
                TinySpec {
                    seed: 3,
                    qkv_bias: true,
                    ..TinySpec::default()
                },
                Arch::Qwen2,
            ),
        ];
        for (k, (spec, arch)) in cases.into_iter().enumerate() {
            let gguf = tmp.path().join(format!("tiny-{k}.gguf"));
            write_tiny_gguf(&gguf, &spec).unwrap();
            let mut e = Engine::load(&ModelSource::Gguf(gguf)).unwrap();
            // The weights are in Hugging Face order once loaded; the family only decides the
            // config written (and which zero biases transformers' class expects).
            e.model.cfg.arch = arch;
            let conv = Conversation::user(None, "Is the sky blue? Answer A or B.");
            let ids = e.chat.prompt(&conv).unwrap().ids;
            let base = all_logits(&e, &ids);
            let adapter = random_adapter(&e.model.cfg, 10 + k as u64);
            e.model.attach_adapter(&adapter, Path::new("test")).unwrap();
            let attached = all_logits(&e, &ids);
            let moved = attached
                .iter()
                .zip(&base)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(
                moved > 1e-2,
                "case {k}: the adapter changes logits by only {moved}"
            );

            let out = tmp.path().join(format!("merged-{k}"));
            let err = e.save_hf_dir(&out).unwrap_err().to_string();
            assert!(err.contains("merge them"), "{err}");
            assert!(!out.exists(), "nothing is written when saving is refused");
            e.model.merge_adapters().unwrap();
            let merged_in_memory = all_logits(&e, &ids);
            e.save_hf_dir(&out).unwrap();
            for f in HF_DIR_FILES {
                assert!(out.join(f).is_file(), "case {k}: {f} missing");
            }

            let m = Engine::load(&ModelSource::from_path(&out).unwrap()).unwrap();
            assert_eq!(m.model.cfg.arch, arch);
            assert_eq!(m.model.cfg.tie_embeddings, spec.tied);
            assert_eq!(m.info.format, "huggingface");
            let merged = all_logits(&m, &ids);
            // Saving and loading changes no bit.
            assert_eq!(merged, merged_in_memory, "case {k}");
            // Folding `scale · B A` into W rounds differently from adding it per token: equal to
            // 1e-5 relative to the largest logit.
            let scale = attached.iter().fold(1.0f32, |m, x| m.max(x.abs()));
            let d = attached
                .iter()
                .zip(&merged)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(
                d <= 1e-5 * scale,
                "case {k}: merged logits differ by {d} (largest logit {scale})"
            );
            for c in [
                conv.clone(),
                Conversation::user(Some("Be brief."), "Héllo 123 <|im_end|>"),
            ] {
                assert_eq!(
                    e.chat.prompt(&c).unwrap().text,
                    m.chat.prompt(&c).unwrap().text
                );
                assert_eq!(
                    e.chat.prompt(&c).unwrap().ids,
                    m.chat.prompt(&c).unwrap().ids
                );
            }
            let (t1, t2) = (&e.chat.tokenizer, &m.chat.tokenizer);
            assert_eq!(t1.bos, t2.bos);
            assert_eq!(t1.eot, t2.eot);
            assert_eq!(t1.pad_id, t2.pad_id);
            assert_eq!(t1.stop_ids, t2.stop_ids);
            assert_eq!(t1.special_ids, t2.special_ids);

            // A second save into the now non-empty directory is refused and changes nothing.
            let before = fs_err::read(out.join("config.json")).unwrap();
            let err = m.save_hf_dir(&out).unwrap_err().to_string();
            assert!(err.contains("not empty"), "{err}");
            assert_eq!(before, fs_err::read(out.join("config.json")).unwrap());
        }
    }

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
