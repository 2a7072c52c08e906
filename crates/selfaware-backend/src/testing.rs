//! A tiny random-weights Llama (2 layers, width 64) with a byte-level vocabulary and the SmolLM2
//! ChatML template, built in memory — the fixture of backend and server tests and of the
//! server benchmark. It produces noise, but exactly reproducible noise.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use selfaware_chat::gguf::write::{gguf_bytes, RawTensor};
use selfaware_chat::GgufValue;
use selfaware_model::{Engine, ModelSource};

use crate::token_bytes::byte_to_char;
use crate::{BackendError, Result};

/// SmolLM2-Instruct's chat template.
pub const SMOLLM2_TEMPLATE: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

const HIDDEN: u64 = 64;
const FFN: u64 = 128;
const HEADS: u64 = 4;
const KV_HEADS: u64 = 2;
const LAYERS: u64 = 2;

fn s(v: &str) -> GgufValue {
    GgufValue::String(v.to_string())
}

/// GGUF bytes of the tiny model; `seed` picks the weights.
pub fn tiny_gguf_bytes(seed: u64) -> Vec<u8> {
    let table = byte_to_char();
    let mut tokens: Vec<String> = table.iter().map(|c| c.to_string()).collect();
    let merges = ["Ġ t", "h e", "Ġt he", "i n", "e r", "1 0"];
    for m in merges {
        tokens.push(m.replace(' ', ""));
    }
    let specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
    let first_special = tokens.len() as u32;
    tokens.extend(specials.iter().map(|t| t.to_string()));
    let vocab = tokens.len() as u64;
    let mut types = vec![GgufValue::I32(1); tokens.len()];
    for t in types.iter_mut().skip(first_special as usize) {
        *t = GgufValue::I32(3);
    }
    let md: Vec<(String, GgufValue)> = vec![
        ("general.architecture".into(), s("llama")),
        ("general.name".into(), s("tiny-random-llama")),
        (
            "llama.embedding_length".into(),
            GgufValue::U32(HIDDEN as u32),
        ),
        (
            "llama.feed_forward_length".into(),
            GgufValue::U32(FFN as u32),
        ),
        ("llama.block_count".into(), GgufValue::U32(LAYERS as u32)),
        (
            "llama.attention.head_count".into(),
            GgufValue::U32(HEADS as u32),
        ),
        (
            "llama.attention.head_count_kv".into(),
            GgufValue::U32(KV_HEADS as u32),
        ),
        (
            "llama.attention.layer_norm_rms_epsilon".into(),
            GgufValue::F32(1e-5),
        ),
        ("llama.context_length".into(), GgufValue::U32(1024)),
        ("llama.rope.freq_base".into(), GgufValue::F32(10_000.0)),
        ("tokenizer.ggml.model".into(), s("gpt2")),
        ("tokenizer.ggml.pre".into(), s("smollm")),
        (
            "tokenizer.ggml.tokens".into(),
            GgufValue::Array(tokens.iter().map(|t| s(t)).collect()),
        ),
        ("tokenizer.ggml.token_type".into(), GgufValue::Array(types)),
        (
            "tokenizer.ggml.merges".into(),
            GgufValue::Array(merges.iter().map(|m| s(m)).collect()),
        ),
        (
            "tokenizer.ggml.eos_token_id".into(),
            GgufValue::U32(first_special + 2),
        ),
        (
            "tokenizer.ggml.padding_token_id".into(),
            GgufValue::U32(first_special),
        ),
        ("tokenizer.chat_template".into(), s(SMOLLM2_TEMPLATE)),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut tensor = |name: String, dims: Vec<u64>, scale: f32| {
        let n: u64 = dims.iter().product();
        let data = (0..n)
            .flat_map(|_| {
                let v = if scale == 0.0 {
                    1.0
                } else {
                    rng.gen_range(-scale..scale)
                };
                v.to_le_bytes()
            })
            .collect();
        RawTensor {
            name,
            dims,
            type_id: 0,
            data,
        }
    };
    let kv = HIDDEN / HEADS * KV_HEADS;
    let mut ts = vec![
        tensor("token_embd.weight".into(), vec![HIDDEN, vocab], 1.0),
        tensor("output_norm.weight".into(), vec![HIDDEN], 0.0),
    ];
    for l in 0..LAYERS {
        let b = |n: &str| format!("blk.{l}.{n}.weight");
        ts.push(tensor(b("attn_norm"), vec![HIDDEN], 0.0));
        ts.push(tensor(b("attn_q"), vec![HIDDEN, HIDDEN], 0.3));
        ts.push(tensor(b("attn_k"), vec![HIDDEN, kv], 0.3));
        ts.push(tensor(b("attn_v"), vec![HIDDEN, kv], 0.3));
        ts.push(tensor(b("attn_output"), vec![HIDDEN, HIDDEN], 0.3));
        ts.push(tensor(b("ffn_norm"), vec![HIDDEN], 0.0));
        ts.push(tensor(b("ffn_gate"), vec![HIDDEN, FFN], 0.3));
        ts.push(tensor(b("ffn_up"), vec![HIDDEN, FFN], 0.3));
        ts.push(tensor(b("ffn_down"), vec![FFN, HIDDEN], 0.3));
    }
    gguf_bytes(&md, &ts)
}

/// Loads the tiny model (through a temporary GGUF file, removed afterwards).
pub fn tiny_engine(seed: u64) -> Result<Engine> {
    let dir = tempfile::tempdir().map_err(BackendError::io(std::path::Path::new("(temp dir)")))?;
    let path = dir.path().join("tiny-random-llama.gguf");
    fs_err::write(&path, tiny_gguf_bytes(seed)).map_err(BackendError::io(&path))?;
    Ok(Engine::load(&ModelSource::Gguf(path))?)
}
