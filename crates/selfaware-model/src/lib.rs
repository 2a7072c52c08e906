//! The local engine: Llama-family decoders on candle, in f32, with exact scoring and sampling.
//!
//! [`Engine`] is a loaded model plus its [`ChatFormat`]. It answers
//! - [`Engine::score_options`]: exact log-probabilities of candidate answers;
//! - [`Engine::score_range`]: the exact distribution of an integer answer over a range;
//! - [`Engine::sample`]: seeded sampling of `n` answers decoded as one batch, and
//!   [`Engine::decode`]: several prompts' answers decoded together, token by token;
//! - [`Engine::sequence_logprobs`]: per-token log-probabilities of whole sequences.
//!
//! The forward pass lives in [`llama`]; a naive loop implementation in [`naive`] is its test
//! reference.

mod attention;
pub mod bench;
pub mod capture;
mod config;
mod error;
mod fused;
mod gemv;
pub mod home;
pub mod llama;
pub mod lora;
pub mod machine;
pub mod naive;
pub mod ops;
pub mod runtime;
pub mod sample;
pub mod score;
pub mod steer;
pub mod testing;
pub mod weights;

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use selfaware_chat::{ChatFormat, GgufFile};
use selfaware_types::Conversation;
use serde::Serialize;

pub use capture::{Capture, HookPoint, LayerHook};
pub use config::{Arch, Config, Llama3RopeScaling, SUPPORTED_ARCHITECTURES};
pub use error::{ModelError, Result};
pub use llama::{KvCache, Llama};
pub use lora::{Adapter, LoraSpec};
pub use sample::{FinishReason, Generated, Sample, SampleConfig, TokenLogprob};
pub use score::{CandidateScore, NumberScore, OptionScores, RangeScores};
pub use steer::{SteerArg, SteerSpec, SteerVar, SteerVector, Steering};

/// What a model reference points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A single GGUF file.
    Gguf(PathBuf),
    /// A Hugging Face directory (`config.json`, safetensors, `tokenizer.json`,
    /// `tokenizer_config.json`).
    HfDir(PathBuf),
}

impl ModelSource {
    /// Classifies a path given by the user. (`default` is resolved by [`home`] first.)
    pub fn from_path(path: &Path) -> Result<Self> {
        if path.is_dir() {
            if path.join("config.json").exists() {
                return Ok(ModelSource::HfDir(path.to_path_buf()));
            }
            return Err(ModelError::BadReference {
                reference: path.display().to_string(),
                hint: " (the directory has no config.json)".into(),
            });
        }
        if path.is_file() {
            return Ok(ModelSource::Gguf(path.to_path_buf()));
        }
        Err(ModelError::BadReference {
            reference: path.display().to_string(),
            hint: " (no such file or directory)\nhint: use `default` for the embedded SmolLM2-135M-Instruct".into(),
        })
    }

    pub fn path(&self) -> &Path {
        match self {
            ModelSource::Gguf(p) | ModelSource::HfDir(p) => p,
        }
    }
}

/// Facts about a loaded model, for `model info` and provenance.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub path: String,
    pub format: &'static str,
    pub sha256: String,
    pub architecture: &'static str,
    pub layers: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub context_length: usize,
    pub rope_theta: f64,
    pub rms_eps: f64,
    pub tied_embeddings: bool,
    pub attention_bias: bool,
    pub parameters: usize,
    /// Storage types of the weights in the file and how many tensors use each.
    pub weight_types: BTreeMap<String, usize>,
    pub tokenizer: String,
    pub bos_token: Option<String>,
    pub eot_token: String,
    pub pad_token_id: u32,
    pub stop_token_ids: Vec<u32>,
    pub chat_template: String,
}

/// The facts as `selfaware model info` prints them, one per line.
impl std::fmt::Display for ModelInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = self;
        writeln!(f, "path            {}", i.path)?;
        writeln!(f, "format          {}", i.format)?;
        writeln!(f, "sha256          {}", i.sha256)?;
        writeln!(f, "architecture    {}", i.architecture)?;
        writeln!(f, "parameters      {}", i.parameters)?;
        writeln!(f, "layers          {}", i.layers)?;
        writeln!(f, "hidden size     {}", i.hidden_size)?;
        writeln!(f, "ffn size        {}", i.intermediate_size)?;
        writeln!(
            f,
            "heads           {} (kv heads {}, head dim {})",
            i.heads, i.kv_heads, i.head_dim
        )?;
        writeln!(f, "vocabulary      {}", i.vocab_size)?;
        writeln!(f, "context         {}", i.context_length)?;
        writeln!(f, "rope theta      {}", i.rope_theta)?;
        writeln!(f, "rms eps         {}", i.rms_eps)?;
        writeln!(f, "tied embeddings {}", i.tied_embeddings)?;
        writeln!(f, "qkv bias        {}", i.attention_bias)?;
        let types: Vec<String> = i
            .weight_types
            .iter()
            .map(|(k, v)| format!("{k}×{v}"))
            .collect();
        writeln!(f, "weight types    {} (computed in f32)", types.join(", "))?;
        writeln!(f, "tokenizer       {}", i.tokenizer)?;
        writeln!(
            f,
            "bos token       {}",
            i.bos_token.as_deref().unwrap_or("(none)")
        )?;
        writeln!(f, "end of turn     {}", i.eot_token)?;
        writeln!(f, "pad token id    {}", i.pad_token_id)?;
        writeln!(f, "stop token ids  {:?}", i.stop_token_ids)?;
        writeln!(f, "chat template:\n{}", i.chat_template)?;
        Ok(())
    }
}

/// A loaded model with its tokenizer and chat template.
pub struct Engine {
    pub model: Llama,
    pub chat: ChatFormat,
    pub info: ModelInfo,
    digit_start: OnceLock<Vec<bool>>,
    heads: std::sync::Mutex<score::HeadCache>,
}

/// A model's identity without loading it: the sha256 of a GGUF file, or of a Hugging Face
/// folder's weight files' hashes in name order (what [`EngineInfo::sha256`] holds).
pub fn source_sha256(source: &ModelSource) -> Result<String> {
    match source {
        ModelSource::Gguf(path) => file_sha256(path),
        ModelSource::HfDir(dir) => {
            let mut joined = String::new();
            for f in weights::safetensors_files(dir)? {
                joined.push_str(&file_sha256(&f)?);
            }
            Ok(selfaware_types::sha256_hex(joined.as_bytes()))
        }
    }
}

/// sha256 of a file, streamed.
pub fn file_sha256(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let io = |e| ModelError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

impl Engine {
    /// Loads a GGUF file or a Hugging Face directory.
    pub fn load(source: &ModelSource) -> Result<Self> {
        match source {
            ModelSource::Gguf(path) => {
                let g = GgufFile::open(path)?;
                let cfg = Config::from_gguf(&g)?;
                let chat = ChatFormat::from_gguf(&g)?;
                let w = weights::load_gguf(&g, &cfg)?;
                let model = Llama::load(&w, &cfg)?;
                let mut types = BTreeMap::new();
                for t in &g.tensors {
                    *types.entry(t.ggml_type.name().to_string()).or_insert(0) += 1;
                }
                let sha = file_sha256(path)?;
                Ok(Self::assemble(model, chat, path, "gguf", sha, types))
            }
            ModelSource::HfDir(dir) => {
                let cfg = Config::from_hf_json(&dir.join("config.json"))?;
                let chat = ChatFormat::from_hf_dir(dir)?;
                let w = weights::load_safetensors(dir)?;
                let mut types = BTreeMap::new();
                for t in w.tensors.values() {
                    *types.entry(format!("{:?}", t.dtype())).or_insert(0) += 1;
                }
                let model = Llama::load(&w, &cfg)?;
                let sha = source_sha256(source)?;
                Ok(Self::assemble(model, chat, dir, "huggingface", sha, types))
            }
        }
    }

    fn assemble(
        model: Llama,
        chat: ChatFormat,
        path: &Path,
        format: &'static str,
        sha256: String,
        weight_types: BTreeMap<String, usize>,
    ) -> Self {
        let c = &model.cfg;
        let t = &chat.tokenizer;
        let info = ModelInfo {
            path: path.display().to_string(),
            format,
            sha256,
            architecture: c.arch.name(),
            layers: c.num_layers,
            hidden_size: c.hidden_size,
            intermediate_size: c.intermediate_size,
            heads: c.num_heads,
            kv_heads: c.num_kv_heads,
            head_dim: c.head_dim,
            vocab_size: c.vocab_size,
            context_length: c.max_position,
            rope_theta: c.rope_theta,
            rms_eps: c.rms_eps,
            tied_embeddings: c.tie_embeddings,
            attention_bias: c.attention_bias,
            parameters: c.n_params(),
            weight_types,
            tokenizer: t.kind.clone(),
            bos_token: t.bos.as_ref().map(|b| b.1.clone()),
            eot_token: t.eot.1.clone(),
            pad_token_id: t.pad_id,
            stop_token_ids: t.stop_ids.iter().copied().collect(),
            chat_template: chat.template.source.clone(),
        };
        Engine {
            model,
            chat,
            info,
            digit_start: OnceLock::new(),
            heads: Default::default(),
        }
    }

    /// Builds an engine from parts (tests build tiny random models this way).
    pub fn from_parts(model: Llama, chat: ChatFormat, path: &Path, sha256: String) -> Self {
        Self::assemble(model, chat, path, "memory", sha256, BTreeMap::new())
    }

    /// A new engine on `model` (made from this one's tensors, which are reference-counted)
    /// with this one's facts. The chat format is read again from the model's files, so `self`
    /// must have been loaded from a GGUF file or a Hugging Face directory.
    pub fn sibling(&self, model: Llama) -> Result<Engine> {
        let path = Path::new(&self.info.path);
        let chat = match ModelSource::from_path(path)? {
            ModelSource::Gguf(p) => ChatFormat::from_gguf(&GgufFile::open(&p)?),
            ModelSource::HfDir(d) => ChatFormat::from_hf_dir(&d),
        }?;
        let mut engine = Engine::from_parts(model, chat, path, self.info.sha256.clone());
        engine.info = self.info.clone();
        Ok(engine)
    }

    /// Steers the model with `steering` from now on (None: no longer steered), replacing any
    /// steering it had. Kept prompt heads are forgotten (the model's identity changes).
    pub fn set_steering(&mut self, steering: Option<Steering>) {
        self.model.steering = steering.map(std::sync::Arc::new);
    }

    /// A new engine sharing this one's weights and adapter, steered by `steering` (None: not
    /// steered) in place of any steering here. See [`Engine::sibling`] for what `self` must be.
    pub fn with_steering(&self, steering: Option<Steering>) -> Result<Engine> {
        let mut engine = self.sibling(self.model.clone())?;
        engine.set_steering(steering);
        Ok(engine)
    }

    /// The vectors this model adds, as results record them (empty when it is not steered).
    pub fn steering(&self) -> &[selfaware_types::SteerRecord] {
        self.model
            .steering
            .as_deref()
            .map_or(&[], Steering::records)
    }

    fn eot(&self) -> u32 {
        self.chat.tokenizer.eot.0
    }

    /// For each token id, whether its text starts with an ASCII digit.
    pub fn digit_start_tokens(&self) -> &[bool] {
        self.digit_start.get_or_init(|| {
            (0..self.model.cfg.vocab_size as u32)
                .map(|id| {
                    !self.chat.tokenizer.special_ids.contains(&id)
                        && self
                            .chat
                            .tokenizer
                            .token_text(id)
                            .starts_with(|c: char| c.is_ascii_digit())
                })
                .collect()
        })
    }

    /// Prefills the conversation's prompt (the conversation rendered with the generation
    /// prompt), as its head (everything before the last message's text: system prompt, earlier
    /// turns, the template's header) and then the rest. Heads are kept for the next prompts
    /// ([`score::HeadCache`]), so a battery asked under one system prompt runs it once.
    pub fn prefill(&self, conv: &Conversation) -> Result<score::Prefilled> {
        let prompt = self.chat.prompt(conv)?;
        let head = self.head_len(conv, &prompt.ids);
        score::prefill_split(&self.model, &prompt.ids, head, &self.heads)
    }

    /// How many of `ids` (the prompt of `conv`) come before the last message's text: the tokens
    /// the prompt shares with the same conversation whose last message is empty.
    fn head_len(&self, conv: &Conversation, ids: &[u32]) -> usize {
        let mut empty = conv.clone();
        match empty.messages.last_mut() {
            Some(m) => m.content.clear(),
            None => return 0,
        }
        match self.chat.prompt(&empty) {
            Ok(p) => p.ids.iter().zip(ids).take_while(|(a, b)| a == b).count(),
            Err(_) => 0,
        }
    }

    /// Exact scores of candidate answers (see [`OptionScores`]).
    pub fn score_options(&self, conv: &Conversation, options: &[String]) -> Result<OptionScores> {
        let pre = self.prefill(conv)?;
        self.score_options_prefilled(&pre, options)
    }

    /// For each option, its first token and log P(that token | prompt): the prompt's prefill
    /// alone, without the step that scores whole options ([`Engine::score_options`] gives the
    /// same first-token numbers).
    pub fn first_token_logprobs(
        &self,
        conv: &Conversation,
        options: &[String],
    ) -> Result<Vec<(u32, f64)>> {
        let pre = self.prefill(conv)?;
        options
            .iter()
            .map(|o| {
                let ids = self.chat.answer_ids(o)?;
                let first = *ids
                    .first()
                    .ok_or_else(|| ModelError::Input(format!("candidate {o:?} has no tokens")))?;
                Ok((first, pre.next[first as usize] as f64))
            })
            .collect()
    }

    /// [`Engine::first_token_logprobs`] for many conversations at once (a probe's items): in
    /// token order, each batch's common head once and the rests several to a forward
    /// ([`score::next_logprobs_many`]). The numbers equal the one-at-a-time ones up to rounding.
    /// `on_done(k)` reports `k` more conversations finished.
    pub fn first_token_logprobs_many(
        &self,
        convs: &[Conversation],
        options: &[String],
        on_done: &mut dyn FnMut(usize),
    ) -> Result<Vec<Vec<(u32, f64)>>> {
        let firsts = options
            .iter()
            .map(|o| {
                self.chat
                    .answer_ids(o)?
                    .first()
                    .copied()
                    .ok_or_else(|| ModelError::Input(format!("candidate {o:?} has no tokens")))
            })
            .collect::<Result<Vec<u32>>>()?;
        let prompts = convs
            .iter()
            .map(|c| Ok(self.chat.prompt(c)?.ids))
            .collect::<Result<Vec<_>>>()?;
        let lps = score::next_logprobs_many(&self.model, &prompts, &firsts, on_done)?;
        Ok(lps
            .into_iter()
            .map(|lp| {
                firsts
                    .iter()
                    .zip(lp)
                    .map(|(&id, l)| (id, l as f64))
                    .collect()
            })
            .collect())
    }

    /// The full log-distribution of the first answer token of each conversation (`[vocab]`
    /// log-probabilities, indexed by token id), run as [`Engine::first_token_logprobs_many`]
    /// runs its prompts. `on_done(k)` reports `k` more conversations finished.
    pub fn next_token_logprobs_many(
        &self,
        convs: &[Conversation],
        on_done: &mut dyn FnMut(usize),
    ) -> Result<Vec<Vec<f32>>> {
        let all: Vec<u32> = (0..self.model.cfg.vocab_size as u32).collect();
        let prompts = convs
            .iter()
            .map(|c| Ok(self.chat.prompt(c)?.ids))
            .collect::<Result<Vec<_>>>()?;
        score::next_logprobs_many(&self.model, &prompts, &all, on_done)
    }

    /// As [`Engine::score_options`], reusing a prefilled prompt.
    pub fn score_options_prefilled(
        &self,
        pre: &score::Prefilled,
        options: &[String],
    ) -> Result<OptionScores> {
        let cands = options
            .iter()
            .map(|o| Ok((o.clone(), self.chat.answer_ids(o)?)))
            .collect::<Result<Vec<_>>>()?;
        score::score_candidates(&self.model, pre, &cands, self.eot())
    }

    /// The exact distribution of an integer answer in `lo..=hi` (see [`RangeScores`]).
    pub fn score_range(&self, conv: &Conversation, lo: i64, hi: i64) -> Result<RangeScores> {
        let pre = self.prefill(conv)?;
        self.score_range_prefilled(&pre, lo, hi)
    }

    pub fn score_range_prefilled(
        &self,
        pre: &score::Prefilled,
        lo: i64,
        hi: i64,
    ) -> Result<RangeScores> {
        // Every number ends in its own node of the token tree, so a range of more numbers than
        // the tree may hold is refused before anything is tokenized or allocated.
        let count = hi.checked_sub(lo).and_then(|d| d.checked_add(1));
        if !count.is_some_and(|c| c > 0 && c <= score::MAX_TREE_NODES as i64) {
            return Err(ModelError::Input(format!(
                "range {lo}..{hi} is empty or too large (at most {} numbers, and fewer when \
                 numbers take several tokens)",
                score::MAX_TREE_NODES
            )));
        }
        let ids = (lo..=hi)
            .map(|n| Ok(self.chat.answer_ids(&n.to_string())?))
            .collect::<Result<Vec<_>>>()?;
        score::score_range(
            &self.model,
            pre,
            lo,
            &ids,
            self.digit_start_tokens(),
            self.eot(),
        )
    }

    /// Samples answers to the conversation.
    pub fn sample(&self, conv: &Conversation, cfg: &SampleConfig) -> Result<Vec<Generated>> {
        let prompt = self.chat.prompt(conv)?;
        self.sample_ids(&prompt.ids, cfg, &[])
    }

    /// Samples continuations of prompt tokens; generation also stops when the decoded text
    /// contains one of `stop` (which is cut off, as OpenAI's API does). One request of
    /// [`Engine::decode`].
    pub fn sample_ids(
        &self,
        prompt: &[u32],
        cfg: &SampleConfig,
        stop: &[String],
    ) -> Result<Vec<Generated>> {
        let req = sample::Request {
            prompt: prompt.to_vec(),
            cfg: cfg.clone(),
            stop: stop.to_vec(),
            stream_text: false,
        };
        let mut out = self.decode(std::slice::from_ref(&req), &mut |_| {
            ControlFlow::Continue(())
        })?;
        Ok(out.pop().unwrap_or_default())
    }

    /// Decodes several prompts' answers together, reporting each token as it is made (see
    /// [`sample::decode`]); returns the answers per request.
    pub fn decode(
        &self,
        requests: &[sample::Request],
        on_event: &mut dyn FnMut(sample::Event<'_>) -> ControlFlow<()>,
    ) -> Result<Vec<Vec<Generated>>> {
        sample::decode(&self.model, &self.chat.tokenizer, requests, on_event)
    }

    /// Per-token log-probabilities of whole token sequences, batched.
    pub fn sequence_logprobs(&self, seqs: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        score::sequence_logprobs(&self.model, seqs, self.chat.tokenizer.pad_id)
    }
}
