//! Loading weights into f32 tensors named as in Hugging Face checkpoints.
//!
//! GGUF files are dequantized to f32 (exact numbers need exact weights; see the engine notes), and
//! llama.cpp's permutation of Q and K rows is undone, so every model runs with the same ("half")
//! rotary layout and LoRA adapters made for the Hugging Face checkpoint apply unchanged.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType};
use candle_core::{DType, Device, Tensor};
use selfaware_chat::{GgmlType, GgufFile};

use crate::config::{Arch, Config};
use crate::error::{ModelError, Result};

/// Weights by Hugging Face name (`model.layers.0.self_attn.q_proj.weight`, …), all f32.
pub struct Weights {
    pub tensors: HashMap<String, Tensor>,
    pub origin: PathBuf,
}

impl Weights {
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.tensors
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor {
                path: self.origin.clone(),
                name: name.to_string(),
            })
    }

    /// The tensor `name`, checked to have `shape`.
    pub fn get_shaped(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self.get(name)?;
        if t.dims() != shape {
            return Err(ModelError::TensorShape {
                path: self.origin.clone(),
                name: name.to_string(),
                found: t.dims().to_vec(),
                expected: shape.to_vec(),
            });
        }
        Ok(t.clone())
    }
}

fn candle_dtype(t: GgmlType) -> GgmlDType {
    match t {
        GgmlType::F32 => GgmlDType::F32,
        GgmlType::F16 => GgmlDType::F16,
        GgmlType::BF16 => GgmlDType::BF16,
        GgmlType::Q4_0 => GgmlDType::Q4_0,
        GgmlType::Q4_1 => GgmlDType::Q4_1,
        GgmlType::Q8_0 => GgmlDType::Q8_0,
        GgmlType::Q4K => GgmlDType::Q4K,
        GgmlType::Q6K => GgmlDType::Q6K,
    }
}

/// Hugging Face name of a GGUF tensor, or None for tensors selfaware does not use.
fn hf_name(gguf: &str) -> Option<String> {
    match gguf {
        "token_embd.weight" => return Some("model.embed_tokens.weight".into()),
        "output_norm.weight" => return Some("model.norm.weight".into()),
        "output.weight" => return Some("lm_head.weight".into()),
        _ => {}
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, kind) = part.rsplit_once('.')?;
    let hf = match module {
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}.{kind}"))
}

/// Undoes llama.cpp's interleaving of Q/K rows: GGUF row order (head, pair, 2) → HF (head, 2, pair).
fn unpermute(t: &Tensor, n_head: usize) -> Result<Tensor> {
    let dims = t.dims().to_vec();
    let out = dims[0];
    let half = out / n_head / 2;
    let t = match dims.len() {
        2 => t
            .reshape((n_head, half, 2, dims[1]))?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((out, dims[1]))?,
        1 => t
            .reshape((n_head, half, 2))?
            .transpose(1, 2)?
            .contiguous()?
            .reshape(out)?,
        _ => t.clone(),
    };
    Ok(t)
}

/// Loads and dequantizes every tensor of a GGUF file.
pub fn load_gguf(g: &GgufFile, cfg: &Config) -> Result<Weights> {
    let mut tensors = HashMap::new();
    // llama.cpp permutes Q/K only for the llama family; qwen2 files keep the HF order.
    let permuted = matches!(cfg.arch, Arch::Llama | Arch::Mistral);
    for info in &g.tensors {
        let Some(name) = hf_name(&info.name) else {
            continue;
        };
        let dims: Vec<usize> = info.dims.iter().rev().map(|&d| d as usize).collect();
        let q = qtensor_from_ggml(
            candle_dtype(info.ggml_type),
            g.tensor_bytes(info),
            dims,
            &Device::Cpu,
        )?;
        let mut t = q.dequantize(&Device::Cpu)?.to_dtype(DType::F32)?;
        if permuted && name.contains("self_attn.q_proj") {
            t = unpermute(&t, cfg.num_heads)?;
        } else if permuted && name.contains("self_attn.k_proj") {
            t = unpermute(&t, cfg.num_kv_heads)?;
        }
        tensors.insert(name, t);
    }
    Ok(Weights {
        tensors,
        origin: g.path.clone(),
    })
}

/// The safetensors files of a Hugging Face directory: those named by
/// `model.safetensors.index.json` when present, else every `*.safetensors` file.
pub fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |e: std::io::Error| ModelError::Io { path, source: e }
    };
    let mut files: Vec<PathBuf> = if index.exists() {
        let text = fs_err::read_to_string(&index).map_err(io(&index))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| ModelError::Config {
            path: index.clone(),
            message: format!("not valid JSON: {e}"),
        })?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| ModelError::Config {
                path: index.clone(),
                message: "`weight_map` is missing".into(),
            })?;
        let mut names: Vec<String> = map
            .values()
            .filter_map(|f| f.as_str().map(str::to_string))
            .collect();
        names.sort();
        names.dedup();
        names.into_iter().map(|n| dir.join(n)).collect()
    } else {
        let mut v = Vec::new();
        for entry in fs_err::read_dir(dir).map_err(io(dir))? {
            let p = entry.map_err(io(dir))?.path();
            if p.extension().is_some_and(|e| e == "safetensors") {
                v.push(p);
            }
        }
        v.sort();
        v
    };
    files.retain(|f| !f.ends_with("adapter_model.safetensors"));
    if files.is_empty() {
        return Err(ModelError::Config {
            path: dir.to_path_buf(),
            message: "no *.safetensors weight files".into(),
        });
    }
    Ok(files)
}

/// Loads every tensor of a Hugging Face directory's safetensors files as f32.
pub fn load_safetensors(dir: &Path) -> Result<Weights> {
    let mut tensors = HashMap::new();
    for file in safetensors_files(dir)? {
        if !file.exists() {
            return Err(ModelError::Config {
                path: dir.join("model.safetensors.index.json"),
                message: format!("names {}, which does not exist", file.display()),
            });
        }
        let loaded = candle_core::safetensors::load(&file, &Device::Cpu)?;
        for (name, t) in loaded {
            let t = match t.dtype() {
                DType::F32 => t,
                DType::F16 | DType::BF16 | DType::F64 => t.to_dtype(DType::F32)?,
                other => {
                    return Err(ModelError::TensorDtype {
                        path: file.clone(),
                        name,
                        dtype: format!("{other:?}"),
                    })
                }
            };
            tensors.insert(name, t);
        }
    }
    Ok(Weights {
        tensors,
        origin: dir.to_path_buf(),
    })
}
