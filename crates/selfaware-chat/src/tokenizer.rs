//! Tokenizers built from GGUF metadata or loaded from `tokenizer.json`.
//!
//! GGUF files carry the vocabulary and merges of a byte-level BPE plus the *name* of the
//! pre-tokenizer (`tokenizer.ggml.pre`). We rebuild the matching Hugging Face tokenizer from those
//! parts, so ids equal what `transformers` produces for the same model.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{json, Value};

use crate::error::{ChatError, Result};
use crate::gguf::GgufFile;

/// Pre-tokenizers selfaware can rebuild from a GGUF file's `tokenizer.ggml.pre`.
pub const SUPPORTED_GGUF_PRE: &str = "`smollm`, `llama-bpe`, `qwen2` (and `default`/`gpt-2`)";

/// The split pattern of Llama 3's tokenizer (digits in groups of up to three).
const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's pattern: as Llama 3's, but every digit is its own piece.
const QWEN2_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// A tokenizer plus the special tokens chat formatting and decoding need.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// Beginning-of-sequence token, if the model has one.
    pub bos: Option<(u32, String)>,
    /// The token a chat turn ends with (`<|im_end|>` for ChatML, `<|eot_id|>` for Llama 3).
    pub eot: (u32, String),
    /// Every token that ends generation (the end-of-turn token and the model's EOS tokens).
    pub stop_ids: BTreeSet<u32>,
    /// Token used to pad batches.
    pub pad_id: u32,
    /// Ids of special (control) tokens; never produced by plain text.
    pub special_ids: BTreeSet<u32>,
    /// Where the tokenizer came from, e.g. `gguf:smollm` or `tokenizer.json`.
    pub kind: String,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("kind", &self.kind)
            .field("vocab", &self.vocab_size())
            .field("eot", &self.eot)
            .finish()
    }
}

fn byte_level(use_regex: bool) -> Value {
    json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex})
}

fn split(pattern: &str) -> Value {
    json!({"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false})
}

impl Tokenizer {
    /// Builds the tokenizer described by a GGUF file's `tokenizer.ggml.*` metadata.
    pub fn from_gguf(g: &GgufFile) -> Result<Self> {
        let model = g.get_str("tokenizer.ggml.model")?;
        let pre = g
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.as_str())
            .unwrap_or("default");
        let unsupported = || ChatError::UnsupportedTokenizer {
            path: g.path.clone(),
            model: model.to_string(),
            pre: pre.to_string(),
            supported: SUPPORTED_GGUF_PRE,
        };
        if model != "gpt2" {
            return Err(unsupported());
        }
        let (normalizer, pre_tokenizer, ignore_merges) = match pre {
            "smollm" => (
                Value::Null,
                json!({"type": "Sequence", "pretokenizers": [
                    {"type": "Digits", "individual_digits": true}, byte_level(true)]}),
                false,
            ),
            "llama-bpe" | "llama3" => (
                Value::Null,
                json!({"type": "Sequence", "pretokenizers": [split(LLAMA3_PATTERN), byte_level(false)]}),
                true,
            ),
            "qwen2" => (
                json!({"type": "NFC"}),
                json!({"type": "Sequence", "pretokenizers": [split(QWEN2_PATTERN), byte_level(false)]}),
                false,
            ),
            "default" | "gpt-2" | "gpt2" => (Value::Null, byte_level(true), false),
            _ => return Err(unsupported()),
        };
        let tokens = g.get_str_array("tokenizer.ggml.tokens")?;
        let merges = g.get_str_array("tokenizer.ggml.merges")?;
        let types: Vec<u64> = match g.get("tokenizer.ggml.token_type") {
            Some(v) => v
                .as_array()
                .map(|a| a.iter().map(|x| x.as_u64().unwrap_or(1)).collect())
                .unwrap_or_default(),
            None => vec![1; tokens.len()],
        };
        let mut vocab = serde_json::Map::with_capacity(tokens.len());
        let mut added = Vec::new();
        for (id, tok) in tokens.iter().enumerate() {
            vocab.insert((*tok).to_string(), json!(id));
            // token_type 3 = control, 4 = user-defined: both are matched as whole tokens.
            let ty = types.get(id).copied().unwrap_or(1);
            if ty == 3 || ty == 4 {
                added.push(
                    json!({"id": id, "content": tok, "single_word": false, "lstrip": false,
                    "rstrip": false, "normalized": false, "special": ty == 3}),
                );
            }
        }
        let spec = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": normalizer,
            "pre_tokenizer": pre_tokenizer,
            "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null,
                "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": false,
                "byte_fallback": false, "ignore_merges": ignore_merges,
                "vocab": vocab, "merges": merges}
        });
        let inner: tokenizers::Tokenizer =
            serde_json::from_value(spec).map_err(|e| ChatError::Tokenizer {
                path: g.path.clone(),
                message: e.to_string(),
            })?;
        let name = |id: u64| tokens.get(id as usize).map(|s| s.to_string());
        let bos = match g
            .get("tokenizer.ggml.bos_token_id")
            .and_then(|v| v.as_u64())
        {
            Some(id) => name(id).map(|s| (id as u32, s)),
            None => None,
        };
        let eos_id = g.get_u64("tokenizer.ggml.eos_token_id")?;
        let eos = name(eos_id).ok_or_else(|| ChatError::Metadata {
            path: g.path.clone(),
            key: "tokenizer.ggml.eos_token_id".into(),
            expected: "an id inside the vocabulary",
        })?;
        let mut stop_ids = BTreeSet::from([eos_id as u32]);
        // Llama 3 instruct files name `<|eot_id|>` as EOT separately from EOS.
        let eot = match g
            .get("tokenizer.ggml.eot_token_id")
            .and_then(|v| v.as_u64())
        {
            Some(id) => {
                stop_ids.insert(id as u32);
                (id as u32, name(id).unwrap_or_default())
            }
            None => (eos_id as u32, eos),
        };
        let pad_id = g
            .get("tokenizer.ggml.padding_token_id")
            .and_then(|v| v.as_u64())
            .unwrap_or(eot.0 as u64) as u32;
        let special_ids = types
            .iter()
            .enumerate()
            .filter(|(_, &t)| t == 3)
            .map(|(i, _)| i as u32)
            .collect();
        Ok(Tokenizer {
            inner,
            bos,
            eot,
            stop_ids,
            pad_id,
            special_ids,
            kind: format!("gguf:{pre}"),
        })
    }

    /// Loads `tokenizer.json` and the special tokens named in `tokenizer_config.json` (and
    /// `generation_config.json`'s extra EOS ids, when present) from a Hugging Face directory.
    pub fn from_hf_dir(dir: &Path, config: &crate::HfTokenizerConfig) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        let inner = tokenizers::Tokenizer::from_file(&path).map_err(|e| ChatError::Tokenizer {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let id_of = |field: &str, tok: &str| {
            inner.token_to_id(tok).ok_or_else(|| ChatError::Config {
                path: dir.join("tokenizer_config.json"),
                field: field.to_string(),
                message: format!("names token {tok:?}, which is not in tokenizer.json"),
            })
        };
        let eos_tok = config.eos_token.clone().ok_or_else(|| ChatError::Config {
            path: dir.join("tokenizer_config.json"),
            field: "eos_token".into(),
            message: "is missing (needed to end chat turns)".into(),
        })?;
        let eot = (id_of("eos_token", &eos_tok)?, eos_tok);
        let bos = match &config.bos_token {
            Some(t) => Some((id_of("bos_token", t)?, t.clone())),
            None => None,
        };
        let pad_id = match &config.pad_token {
            Some(t) => id_of("pad_token", t)?,
            None => eot.0,
        };
        let mut stop_ids = BTreeSet::from([eot.0]);
        stop_ids.extend(config.extra_eos_ids.iter().copied());
        let special_ids = inner
            .get_added_tokens_decoder()
            .iter()
            .filter(|(_, t)| t.special)
            .map(|(id, _)| *id)
            .collect();
        Ok(Tokenizer {
            inner,
            bos,
            eot,
            stop_ids,
            pad_id,
            special_ids,
            kind: "tokenizer.json".into(),
        })
    }

    /// Token ids of `text`, with special-token strings in the text recognised as such and no
    /// BOS/EOS added (chat templates write those themselves).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| ChatError::Encode(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The tokenizer in Hugging Face `tokenizer.json` form.
    pub fn to_json(&self) -> Result<String> {
        self.inner
            .to_string(false)
            .map_err(|e| ChatError::Encode(e.to_string()))
    }

    /// The text of `ids`; special tokens are kept when `skip_special` is false.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| ChatError::Encode(e.to_string()))
    }

    /// The text a single token stands for (raw bytes decoded lossily).
    pub fn token_text(&self, id: u32) -> String {
        self.inner.decode(&[id], false).unwrap_or_default()
    }

    pub fn token_to_id(&self, tok: &str) -> Option<u32> {
        self.inner.token_to_id(tok)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// An upper bound on the bytes of text one token stands for: the longest token, measured
    /// both as stored (byte-level symbols take one or two bytes per text byte; `▁` three for
    /// a space) and as decoded. A text of more than `n × max_token_bytes()` bytes has more
    /// than `n` tokens, which can be known without tokenizing it.
    pub fn max_token_bytes(&self) -> usize {
        (0..self.vocab_size() as u32)
            .map(|id| {
                let stored = self.id_to_token(id).map_or(0, |t| t.len());
                stored.max(self.token_text(id).len())
            })
            .max()
            .unwrap_or(0)
            .max(1)
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn is_stop(&self, id: u32) -> bool {
        self.stop_ids.contains(&id)
    }
}
