//! A tiny random-weights Llama written as a real GGUF file, for fast tests across the workspace.
//!
//! The file goes through the same loader as real models (header validation, tokenizer rebuilt
//! from metadata, chat template, Q/K un-permutation), so tests on it exercise the real paths.
//! The vocabulary is byte-level BPE (the 256 byte symbols of GPT-2's byte-to-unicode map, a
//! handful of merges) plus the three ChatML special tokens; the chat template is SmolLM2's.

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use selfaware_chat::gguf::write::{gguf_bytes, RawTensor};
use selfaware_chat::{GgmlType, GgufValue};

use crate::error::{ModelError, Result};

/// SmolLM2-135M-Instruct's chat template (ChatML with a default system prompt).
pub const SMOLLM_TEMPLATE: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// Shape of the tiny model.
#[derive(Debug, Clone)]
pub struct TinySpec {
    pub layers: usize,
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub ffn: usize,
    /// Standard deviation-like scale of the random weights.
    pub scale: f32,
    pub seed: u64,
    pub qkv_bias: bool,
    pub tied: bool,
    /// Storage type of the projection weights (norms and embeddings stay F32).
    pub linear_type: GgmlType,
    /// `general.architecture` written to the file.
    pub arch: String,
    /// `tokenizer.ggml.pre` written to the file.
    pub pre: String,
}

impl Default for TinySpec {
    fn default() -> Self {
        TinySpec {
            layers: 2,
            hidden: 64,
            heads: 4,
            kv_heads: 2,
            ffn: 128,
            scale: 0.2,
            seed: 0,
            qkv_bias: false,
            tied: true,
            linear_type: GgmlType::F32,
            arch: "llama".into(),
            pre: "smollm".into(),
        }
    }
}

/// GPT-2's byte-to-unicode map: printable bytes stand for themselves, the rest are shifted
/// above 255.
pub fn byte_symbols() -> Vec<char> {
    let mut out = vec!['\0'; 256];
    let mut extra = 0u32;
    for b in 0..=255u32 {
        let printable =
            (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        out[b as usize] = if printable {
            char::from_u32(b).expect("valid char")
        } else {
            extra += 1;
            char::from_u32(255 + extra).expect("valid char")
        };
    }
    out
}

const MERGES: [(&str, &str); 6] = [
    ("Ġ", "t"),
    ("h", "e"),
    ("Ġt", "he"),
    ("i", "n"),
    ("a", "n"),
    ("Ġ", "a"),
];
/// Ids of the special tokens in the tiny vocabulary.
pub const ENDOFTEXT: u32 = 256 + MERGES.len() as u32;
pub const IM_START: u32 = ENDOFTEXT + 1;
pub const IM_END: u32 = ENDOFTEXT + 2;

/// Vocabulary size of the tiny model.
pub fn tiny_vocab_size() -> usize {
    256 + MERGES.len() + 3
}

/// Bytes of a tiny GGUF model.
pub fn tiny_gguf_bytes(spec: &TinySpec) -> Vec<u8> {
    let mut tokens: Vec<String> = byte_symbols().iter().map(|c| c.to_string()).collect();
    for (a, b) in MERGES {
        tokens.push(format!("{a}{b}"));
    }
    tokens.extend(["<|endoftext|>", "<|im_start|>", "<|im_end|>"].map(String::from));
    let vocab = tokens.len();
    let mut types = vec![GgufValue::I32(1); vocab];
    for t in types.iter_mut().skip(vocab - 3) {
        *t = GgufValue::I32(3);
    }
    let s = |x: &str| GgufValue::String(x.to_string());
    let u = |x: usize| GgufValue::U32(x as u32);
    let head_dim = spec.hidden / spec.heads;
    let md = vec![
        ("general.architecture".to_string(), s(&spec.arch)),
        ("general.name".to_string(), s("tiny-random-llama")),
        ("llama.block_count".to_string(), u(spec.layers)),
        ("llama.context_length".to_string(), u(2048)),
        ("llama.embedding_length".to_string(), u(spec.hidden)),
        ("llama.feed_forward_length".to_string(), u(spec.ffn)),
        ("llama.attention.head_count".to_string(), u(spec.heads)),
        (
            "llama.attention.head_count_kv".to_string(),
            u(spec.kv_heads),
        ),
        ("llama.rope.freq_base".to_string(), GgufValue::F32(10000.0)),
        (
            "llama.attention.layer_norm_rms_epsilon".to_string(),
            GgufValue::F32(1e-5),
        ),
        ("llama.vocab_size".to_string(), u(vocab)),
        ("tokenizer.ggml.model".to_string(), s("gpt2")),
        ("tokenizer.ggml.pre".to_string(), s(&spec.pre)),
        (
            "tokenizer.ggml.tokens".to_string(),
            GgufValue::Array(tokens.iter().map(|t| s(t)).collect()),
        ),
        (
            "tokenizer.ggml.token_type".to_string(),
            GgufValue::Array(types),
        ),
        (
            "tokenizer.ggml.merges".to_string(),
            GgufValue::Array(MERGES.iter().map(|(a, b)| s(&format!("{a} {b}"))).collect()),
        ),
        (
            "tokenizer.ggml.bos_token_id".to_string(),
            u(IM_START as usize),
        ),
        (
            "tokenizer.ggml.eos_token_id".to_string(),
            u(IM_END as usize),
        ),
        (
            "tokenizer.ggml.padding_token_id".to_string(),
            u(IM_END as usize),
        ),
        ("tokenizer.chat_template".to_string(), s(SMOLLM_TEMPLATE)),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let mut tensor = |name: &str, dims: Vec<usize>, scale: f32| {
        let n: usize = dims.iter().product();
        let data: Vec<u8> = (0..n)
            .flat_map(|_| {
                let v: f32 = (rng.gen::<f32>() * 2.0 - 1.0) * scale * 1.732;
                v.to_le_bytes()
            })
            .collect();
        RawTensor {
            name: name.to_string(),
            // GGUF lists dimensions innermost first.
            dims: dims.iter().rev().map(|&d| d as u64).collect(),
            type_id: 0,
            data,
        }
    };
    let (h, f) = (spec.hidden, spec.ffn);
    let kv = spec.kv_heads * head_dim;
    let mut ts = vec![tensor("token_embd.weight", vec![vocab, h], 1.0)];
    for l in 0..spec.layers {
        let p = format!("blk.{l}");
        let norm = |rng_t: &mut dyn FnMut(&str, Vec<usize>, f32) -> RawTensor, name: &str| {
            let mut t = rng_t(name, vec![h], 0.1);
            // Norm weights near 1, as in trained models.
            for c in t.data.chunks_mut(4) {
                let v = f32::from_le_bytes(c.try_into().expect("4 bytes")) + 1.0;
                c.copy_from_slice(&v.to_le_bytes());
            }
            t
        };
        ts.push(norm(&mut tensor, &format!("{p}.attn_norm.weight")));
        ts.push(tensor(
            &format!("{p}.attn_q.weight"),
            vec![h, h],
            spec.scale,
        ));
        ts.push(tensor(
            &format!("{p}.attn_k.weight"),
            vec![kv, h],
            spec.scale,
        ));
        ts.push(tensor(
            &format!("{p}.attn_v.weight"),
            vec![kv, h],
            spec.scale,
        ));
        if spec.qkv_bias {
            ts.push(tensor(&format!("{p}.attn_q.bias"), vec![h], spec.scale));
            ts.push(tensor(&format!("{p}.attn_k.bias"), vec![kv], spec.scale));
            ts.push(tensor(&format!("{p}.attn_v.bias"), vec![kv], spec.scale));
        }
        ts.push(tensor(
            &format!("{p}.attn_output.weight"),
            vec![h, h],
            spec.scale,
        ));
        ts.push(norm(&mut tensor, &format!("{p}.ffn_norm.weight")));
        ts.push(tensor(
            &format!("{p}.ffn_gate.weight"),
            vec![f, h],
            spec.scale,
        ));
        ts.push(tensor(
            &format!("{p}.ffn_up.weight"),
            vec![f, h],
            spec.scale,
        ));
        ts.push(tensor(
            &format!("{p}.ffn_down.weight"),
            vec![h, f],
            spec.scale,
        ));
    }
    if spec.linear_type != GgmlType::F32 {
        for t in ts.iter_mut() {
            let is_proj = t.dims.len() == 2 && t.name.starts_with("blk.");
            if is_proj {
                *t = quantize(t, spec.linear_type);
            }
        }
    }
    let mut out_norm = tensor("output_norm.weight", vec![h], 0.1);
    for c in out_norm.data.chunks_mut(4) {
        let v = f32::from_le_bytes(c.try_into().expect("4 bytes")) + 1.0;
        c.copy_from_slice(&v.to_le_bytes());
    }
    ts.push(out_norm);
    if !spec.tied {
        ts.push(tensor("output.weight", vec![vocab, h], 1.0));
    }
    gguf_bytes(&md, &ts)
}

/// Writes a tiny model to `path`.
pub fn write_tiny_gguf(path: &Path, spec: &TinySpec) -> Result<()> {
    fs_err::write(path, tiny_gguf_bytes(spec)).map_err(|e| ModelError::Io {
        path: path.to_path_buf(),
        source: e,
    })
}

/// Re-encodes an F32 tensor in `ty` with candle's quantizer (the same bytes llama.cpp writes).
fn quantize(t: &RawTensor, ty: GgmlType) -> RawTensor {
    use candle_core::quantized::{GgmlDType, QTensor};
    let values: Vec<f32> = t
        .data
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    let dims: Vec<usize> = t.dims.iter().rev().map(|&d| d as usize).collect();
    let src = candle_core::Tensor::from_vec(values, dims, &candle_core::Device::Cpu)
        .expect("tensor from test weights");
    let (dtype, id) = match ty {
        GgmlType::F32 => (GgmlDType::F32, 0),
        GgmlType::F16 => (GgmlDType::F16, 1),
        GgmlType::Q4_0 => (GgmlDType::Q4_0, 2),
        GgmlType::Q4_1 => (GgmlDType::Q4_1, 3),
        GgmlType::Q8_0 => (GgmlDType::Q8_0, 8),
        GgmlType::Q4K => (GgmlDType::Q4K, 12),
        GgmlType::Q6K => (GgmlDType::Q6K, 14),
        GgmlType::BF16 => (GgmlDType::BF16, 30),
    };
    let q = QTensor::quantize(&src, dtype).expect("row size fits the block size");
    RawTensor {
        name: t.name.clone(),
        dims: t.dims.clone(),
        type_id: id,
        data: q.data().expect("quantized bytes").into_owned(),
    }
}

/// Writes `engine`'s weights and tokenizer as a Hugging Face model directory (`config.json`,
/// `model.safetensors` or `shards` shards with an index, `tokenizer.json`,
/// `tokenizer_config.json`), declaring `model_type`.
pub fn write_hf_dir(
    engine: &crate::Engine,
    dir: &Path,
    model_type: &str,
    shards: usize,
) -> Result<()> {
    use std::collections::BTreeMap;
    let io = |e: std::io::Error| ModelError::Io {
        path: dir.to_path_buf(),
        source: e,
    };
    fs_err::create_dir_all(dir).map_err(io)?;
    let m = &engine.model;
    let c = &m.cfg;
    let mut tensors: BTreeMap<String, candle_core::Tensor> = BTreeMap::new();
    tensors.insert("model.embed_tokens.weight".into(), m.embed.clone());
    tensors.insert("model.norm.weight".into(), m.norm.clone());
    if !c.tie_embeddings {
        tensors.insert("lm_head.weight".into(), m.lm_head.clone());
    }
    for (i, l) in m.layers.iter().enumerate() {
        let p = format!("model.layers.{i}");
        tensors.insert(format!("{p}.input_layernorm.weight"), l.input_norm.clone());
        tensors.insert(
            format!("{p}.post_attention_layernorm.weight"),
            l.post_norm.clone(),
        );
        for name in crate::llama::PROJECTIONS {
            let lin = l.projection(name).expect("known projection");
            let module = if name.ends_with("_proj")
                && ["gate_proj", "up_proj", "down_proj"].contains(&name)
            {
                "mlp"
            } else {
                "self_attn"
            };
            tensors.insert(format!("{p}.{module}.{name}.weight"), lin.weight.clone());
            if let Some(b) = &lin.bias {
                tensors.insert(format!("{p}.{module}.{name}.bias"), b.clone());
            }
        }
    }
    let names: Vec<String> = tensors.keys().cloned().collect();
    let shards = shards.max(1);
    let per = names.len().div_ceil(shards);
    let mut weight_map = serde_json::Map::new();
    for (k, chunk) in names.chunks(per).enumerate() {
        let file = if shards == 1 {
            "model.safetensors".to_string()
        } else {
            format!("model-{:05}-of-{:05}.safetensors", k + 1, shards)
        };
        let part: std::collections::HashMap<String, candle_core::Tensor> = chunk
            .iter()
            .map(|n| (n.clone(), tensors[n].clone()))
            .collect();
        candle_core::safetensors::save(&part, dir.join(&file))?;
        for n in chunk {
            weight_map.insert(n.clone(), serde_json::Value::String(file.clone()));
        }
    }
    if shards > 1 {
        let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
        fs_err::write(dir.join("model.safetensors.index.json"), index.to_string()).map_err(io)?;
    }
    let config = serde_json::json!({
        "model_type": model_type,
        "vocab_size": c.vocab_size,
        "hidden_size": c.hidden_size,
        "intermediate_size": c.intermediate_size,
        "num_hidden_layers": c.num_layers,
        "num_attention_heads": c.num_heads,
        "num_key_value_heads": c.num_kv_heads,
        "rms_norm_eps": c.rms_eps,
        "rope_theta": c.rope_theta,
        "max_position_embeddings": c.max_position,
        "tie_word_embeddings": c.tie_embeddings,
        "attention_bias": c.attention_bias,
    });
    fs_err::write(dir.join("config.json"), config.to_string()).map_err(io)?;
    let tok = &engine.chat.tokenizer;
    fs_err::write(dir.join("tokenizer.json"), tok.to_json()?).map_err(io)?;
    let tc = serde_json::json!({
        "chat_template": engine.chat.template.source,
        "bos_token": tok.bos.as_ref().map(|b| b.1.clone()),
        "eos_token": tok.eot.1,
        "pad_token": tok.id_to_token(tok.pad_id),
    });
    fs_err::write(dir.join("tokenizer_config.json"), tc.to_string()).map_err(io)?;
    Ok(())
}
