//! Model configuration, read from GGUF metadata or a Hugging Face `config.json` and resolved into
//! one plain [`Config`].

use std::path::Path;

use selfaware_chat::GgufFile;
use serde::Deserialize;

use crate::error::{ModelError, Result};

/// Architectures selfaware runs, as listed in error messages.
pub const SUPPORTED_ARCHITECTURES: &str =
    "llama (Llama 2/3, SmolLM), mistral, qwen2 — Llama-family decoders";

/// The decoder family. They share one implementation; the differences are flags in [`Config`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Mistral,
    Qwen2,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Mistral => "mistral",
            Arch::Qwen2 => "qwen2",
        }
    }
}

/// Llama 3.1's long-context frequency scaling (`rope_scaling.rope_type = "llama3"`).
#[derive(Debug, Clone, PartialEq)]
pub struct Llama3RopeScaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: f64,
}

/// Everything the forward pass needs to know about a model's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub arch: Arch,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rms_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: Option<Llama3RopeScaling>,
    pub max_position: usize,
    /// The LM head reuses the token embedding matrix.
    pub tie_embeddings: bool,
    /// q, k and v projections carry biases (Qwen2).
    pub attention_bias: bool,
}

impl Config {
    /// Reads `{arch}.*` keys of a GGUF file.
    pub fn from_gguf(g: &GgufFile) -> Result<Self> {
        let arch_name = g.get_str("general.architecture")?;
        let arch = match arch_name {
            "llama" => Arch::Llama,
            "mistral" => Arch::Mistral,
            "qwen2" => Arch::Qwen2,
            other => {
                return Err(ModelError::UnsupportedArchitecture {
                    path: g.path.clone(),
                    arch: other.to_string(),
                    supported: SUPPORTED_ARCHITECTURES,
                })
            }
        };
        let key = |k: &str| format!("{arch_name}.{k}");
        let hidden_size = g.get_u64(&key("embedding_length"))? as usize;
        let num_heads = g.get_u64(&key("attention.head_count"))? as usize;
        let num_kv_heads = g
            .get(&key("attention.head_count_kv"))
            .and_then(|v| v.as_u64())
            .map(|v| v as usize)
            .unwrap_or(num_heads);
        let head_dim = g
            .get(&key("attention.key_length"))
            .and_then(|v| v.as_u64())
            .map(|v| v as usize)
            .unwrap_or(hidden_size / num_heads.max(1));
        let vocab_size = match g.get(&key("vocab_size")).and_then(|v| v.as_u64()) {
            Some(v) => v as usize,
            None => g.get_str_array("tokenizer.ggml.tokens")?.len(),
        };
        let cfg = Config {
            arch,
            vocab_size,
            hidden_size,
            intermediate_size: g.get_u64(&key("feed_forward_length"))? as usize,
            num_layers: g.get_u64(&key("block_count"))? as usize,
            num_heads,
            num_kv_heads,
            head_dim,
            rms_eps: g.get_f64(&key("attention.layer_norm_rms_epsilon"))?,
            rope_theta: g
                .get(&key("rope.freq_base"))
                .and_then(|v| v.as_f64())
                .unwrap_or(10_000.0),
            rope_scaling: None,
            max_position: g
                .get(&key("context_length"))
                .and_then(|v| v.as_u64())
                .unwrap_or(4096) as usize,
            tie_embeddings: g.tensor("output.weight").is_none(),
            attention_bias: g.tensor("blk.0.attn_q.bias").is_some(),
        };
        cfg.validate(&g.path)?;
        Ok(cfg)
    }

    /// Reads a Hugging Face `config.json`.
    pub fn from_hf_json(path: &Path) -> Result<Self> {
        let text = fs_err::read_to_string(path).map_err(|e| ModelError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        let raw: HfConfig = serde_json::from_str(&text).map_err(|e| ModelError::Config {
            path: path.to_path_buf(),
            message: format!("not a valid config.json: {e}"),
        })?;
        let arch = match raw.model_type.as_str() {
            "llama" => Arch::Llama,
            "mistral" => Arch::Mistral,
            "qwen2" => Arch::Qwen2,
            other => {
                return Err(ModelError::UnsupportedArchitecture {
                    path: path.to_path_buf(),
                    arch: other.to_string(),
                    supported: SUPPORTED_ARCHITECTURES,
                })
            }
        };
        let rope_scaling = match raw.rope_scaling {
            None => None,
            Some(s) => {
                let ty = s.rope_type.or(s.r#type).unwrap_or_default();
                match ty.as_str() {
                    "llama3" => Some(Llama3RopeScaling {
                        factor: s.factor.unwrap_or(8.0),
                        low_freq_factor: s.low_freq_factor.unwrap_or(1.0),
                        high_freq_factor: s.high_freq_factor.unwrap_or(4.0),
                        original_max_position_embeddings: s
                            .original_max_position_embeddings
                            .unwrap_or(8192.0),
                    }),
                    "default" | "" => None,
                    other => {
                        return Err(ModelError::Config {
                            path: path.to_path_buf(),
                            message: format!(
                                "rope_scaling type `{other}` is not supported (supported: llama3, default)"
                            ),
                        })
                    }
                }
            }
        };
        let num_kv_heads = raw.num_key_value_heads.unwrap_or(raw.num_attention_heads);
        let cfg = Config {
            arch,
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_layers: raw.num_hidden_layers,
            num_heads: raw.num_attention_heads,
            num_kv_heads,
            head_dim: raw
                .head_dim
                .unwrap_or(raw.hidden_size / raw.num_attention_heads.max(1)),
            rms_eps: raw.rms_norm_eps,
            rope_theta: raw.rope_theta.unwrap_or(10_000.0),
            rope_scaling,
            max_position: raw.max_position_embeddings.unwrap_or(4096),
            tie_embeddings: raw.tie_word_embeddings.unwrap_or(false),
            attention_bias: raw.attention_bias.unwrap_or(matches!(arch, Arch::Qwen2)),
        };
        cfg.validate(path)?;
        Ok(cfg)
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let bad = |m: String| {
            Err(ModelError::Config {
                path: path.to_path_buf(),
                message: m,
            })
        };
        if self.num_heads == 0
            || self.num_kv_heads == 0
            || !self.num_heads.is_multiple_of(self.num_kv_heads)
        {
            return bad(format!(
                "{} attention heads cannot be grouped over {} key/value heads",
                self.num_heads, self.num_kv_heads
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return bad(format!(
                "head dimension {} must be even for rotary embeddings",
                self.head_dim
            ));
        }
        if self.num_layers == 0 || self.hidden_size == 0 || self.vocab_size == 0 {
            return bad("layers, hidden size and vocabulary must be non-zero".into());
        }
        Ok(())
    }

    /// Parameter count (embeddings counted once when tied).
    pub fn n_params(&self) -> usize {
        let h = self.hidden_size;
        let q = self.num_heads * self.head_dim;
        let kv = self.num_kv_heads * self.head_dim;
        let attn = h * q + 2 * h * kv + q * h + if self.attention_bias { q + 2 * kv } else { 0 };
        let mlp = 3 * h * self.intermediate_size;
        let per_layer = attn + mlp + 2 * h;
        let emb = self.vocab_size * h;
        emb + if self.tie_embeddings { 0 } else { emb } + self.num_layers * per_layer + h
    }
}

#[derive(Deserialize)]
struct HfRopeScaling {
    rope_type: Option<String>,
    r#type: Option<String>,
    factor: Option<f64>,
    low_freq_factor: Option<f64>,
    high_freq_factor: Option<f64>,
    original_max_position_embeddings: Option<f64>,
}

#[derive(Deserialize)]
struct HfConfig {
    model_type: String,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rms_norm_eps: f64,
    rope_theta: Option<f64>,
    rope_scaling: Option<HfRopeScaling>,
    max_position_embeddings: Option<usize>,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
}
