//! Activation capture runs: a set of conversations (chat JSONL, or a built-in battery's
//! prompts) through a local model (with or without an adapter), the activations at chosen
//! [`HookPoint`]s and [`Positions`] written to a safetensors file as they are made
//! ([`capture`]), or returned in memory ([`capture_conversations`], the same rows).
//!
//! # The file
//!
//! One `F32` tensor per point, named as the point (`blocks.3.hook_resid_post`), `[rows, d]`:
//! - `last`: one row per prompt (`rows` = prompts), the prompt's last token — with the
//!   generation header when the conversation has no final assistant message (as scoring runs
//!   it), else the token before the answer (the same header);
//! - `all`: every position of the rendered conversation (answer and end-of-turn included when
//!   there is one), prompts one after another;
//! - `answer`: the tokens of the final assistant message (its text and end-of-turn token),
//!   prompts one after another; every conversation must end with one.
//!
//! Beside them: `offsets` (`I64 [prompts + 1]`: prompt `i`'s rows are
//! `offsets[i]..offsets[i+1]`), `token_ids` (`I64 [rows]`, the token at each row) and
//! `prompt_sha256` (`U8 [prompts, 32]`, the sha256 of each conversation as JSON,
//! `{"messages": [...]}`). The metadata (`__metadata__`, strings) records the format, the
//! model and its sha256, the adapter and its sha256, the prompts' source and the hash of all
//! prompt hashes, the points, positions, the battery seed, and the tool's version and revision.

pub mod bench;
mod error;
pub mod inject;
pub mod pick;
pub mod probe;
pub mod readout;
pub mod report;
pub mod write;

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::PathBuf;

use candle_core::Tensor;
use selfaware_model::capture::{capture_last_many, capture_positions};
use selfaware_model::{Engine, HookPoint};
use selfaware_types::{Conversation, Provenance, Role};
use sha2::{Digest, Sha256};

use error::io;
pub use error::{ActivationsError, Result};
use write::{Dtype, StreamWriter, TensorSpec};

/// The file format written in the metadata's `format`.
pub const FORMAT: &str = "selfaware-activations/1";

/// Which positions of each conversation are recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Positions {
    /// The last prompt token (before the answer, if any).
    Last,
    /// Every position.
    All,
    /// The final assistant message's tokens.
    Answer,
}

impl Positions {
    pub const ALL: [Positions; 3] = [Positions::Last, Positions::All, Positions::Answer];

    pub fn name(self) -> &'static str {
        match self {
            Positions::Last => "last",
            Positions::All => "all",
            Positions::Answer => "answer",
        }
    }
}

selfaware_types::names_parse_and_display!(Positions);

/// Where the conversations come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptSource {
    /// Chat JSONL, `{"messages": [...]}` per line (the training format).
    File(PathBuf),
    /// A built-in battery's rendered prompts (system and user message each), in battery
    /// order; `seed` drives the rendering's draws.
    Battery { name: String, seed: u64 },
}

impl PromptSource {
    /// The chat JSONL `file` when given, else the battery `battery` (rendered with `seed`);
    /// `None` without either.
    pub fn from_flags(file: Option<PathBuf>, battery: Option<String>, seed: u64) -> Option<Self> {
        match (file, battery) {
            (Some(p), _) => Some(PromptSource::File(p)),
            (None, Some(name)) => Some(PromptSource::Battery { name, seed }),
            (None, None) => None,
        }
    }
}

/// What to capture and where to write it.
#[derive(Debug, Clone)]
pub struct CaptureSpec {
    pub source: PromptSource,
    pub points: Vec<HookPoint>,
    pub positions: Positions,
    pub out: PathBuf,
    /// Replace an existing `out`.
    pub force: bool,
}

/// What a capture wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureSummary {
    pub out: PathBuf,
    pub prompts: usize,
    pub rows: usize,
    pub bytes: u64,
    /// sha256 over the prompts' sha256 digests, in order.
    pub prompts_sha256: String,
    /// Hook points recorded.
    pub points: usize,
}

/// `wrote FILE: P prompts, R rows × N points (B bytes)`.
impl std::fmt::Display for CaptureSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "wrote {}: {} prompts, {} rows × {} points ({} bytes)",
            self.out.display(),
            self.prompts,
            self.rows,
            self.points,
            self.bytes
        )
    }
}

/// The model a capture runs, as the file records it.
pub struct CaptureModel<'a> {
    pub engine: &'a Engine,
    /// How the user named the model (e.g. `default`, a path).
    pub label: String,
    /// The attached adapter's folder, if any.
    pub adapter: Option<PathBuf>,
}

/// Prompts per chunk of a `last` capture: run as in scoring (in token order, each batch's
/// common head once, the rests 8 to 32 to a forward).
pub(crate) const LAST_CHUNK: usize = 64;

/// One conversation ready to run: the tokens to run and which positions to keep.
struct Unit {
    ids: Vec<u32>,
    keep: Vec<usize>,
    sha: [u8; 32],
}

fn unit(engine: &Engine, conv: &Conversation, positions: Positions) -> Result<Unit, String> {
    let sha: [u8; 32] = Sha256::digest(serde_json::to_vec(conv).map_err(|e| e.to_string())?).into();
    let chat = &engine.chat;
    let has_answer = conv.messages.last().map(|m| m.role) == Some(Role::Assistant);
    let (ids, keep) = if has_answer {
        let enc = chat.encode(conv).map_err(|e| e.to_string())?;
        let span = enc
            .spans
            .last()
            .map(|s| s.tokens.clone())
            .ok_or("the conversation has no messages")?;
        if span.start == 0 {
            return Err("the answer has no prompt before it".into());
        }
        match positions {
            Positions::Last => (enc.ids[..span.start].to_vec(), vec![span.start - 1]),
            Positions::All => {
                let n = enc.ids.len();
                (enc.ids, (0..n).collect())
            }
            Positions::Answer => (enc.ids[..span.end].to_vec(), span.collect()),
        }
    } else {
        if positions == Positions::Answer {
            return Err(
                "no final assistant message, and --positions answer reads one\nhint: end each \
                 conversation with the assistant's answer, or use --positions last|all"
                    .into(),
            );
        }
        let ids = chat.prompt(conv).map_err(|e| e.to_string())?.ids;
        let keep = match positions {
            Positions::Last => vec![ids.len() - 1],
            _ => (0..ids.len()).collect(),
        };
        (ids, keep)
    };
    if ids.is_empty() {
        return Err("renders to no tokens".into());
    }
    let max = engine.model.rope.max_positions();
    if ids.len() > max {
        return Err(format!(
            "{} tokens, more than the model's {max}-token context",
            ids.len()
        ));
    }
    Ok(Unit { ids, keep, sha })
}

/// The conversations of a source, each with its line (1-based; the prompt's index + 1 for a
/// battery), handed to `each` in order.
fn for_each_conversation(
    source: &PromptSource,
    each: &mut dyn FnMut(usize, Conversation) -> Result<()>,
) -> Result<()> {
    match source {
        PromptSource::File(path) => {
            let f = fs_err::File::open(path).map_err(|e| ActivationsError::Io {
                path: path.clone(),
                source: e,
            })?;
            for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
                let line_no = i + 1;
                let text = line.map_err(io(path))?;
                if text.trim().is_empty() {
                    continue;
                }
                let conv = selfaware_train::data::parse_conversation(&text).map_err(|message| {
                    ActivationsError::Prompt {
                        origin: path.display().to_string(),
                        line: line_no,
                        message,
                    }
                })?;
                each(line_no, conv)?;
            }
        }
        PromptSource::Battery { name, seed } => {
            let battery = selfaware_eval::builtin::battery(name)?;
            let items = selfaware_eval::render::render_battery(
                &battery,
                selfaware_eval::render::RenderOptions {
                    seed: *seed,
                    ..Default::default()
                },
            )?;
            for (i, item) in items.into_iter().enumerate() {
                each(
                    i + 1,
                    Conversation::user(item.system.as_deref(), &item.user),
                )?;
            }
        }
    }
    Ok(())
}

fn origin(source: &PromptSource) -> String {
    match source {
        PromptSource::File(p) => p.display().to_string(),
        PromptSource::Battery { name, .. } => format!("battery {name}"),
    }
}

/// Checks a list of hook points: at least one, each inside the model, none twice.
fn check_points(points: &[HookPoint], n_layers: usize) -> Result<()> {
    if points.is_empty() {
        return Err(ActivationsError::Input(
            "no hook points to capture\nhint: --points blocks.0.hook_resid_post,…".into(),
        ));
    }
    for (i, p) in points.iter().enumerate() {
        p.check(n_layers)?;
        if points[..i].contains(p) {
            return Err(ActivationsError::Input(format!(
                "hook point `{p}` is listed twice"
            )));
        }
    }
    Ok(())
}

/// What a batch of finished units hands on: the units, in order, and one `[rows, d]` tensor
/// per point holding their kept positions one unit after another.
type Sink<'s> = dyn FnMut(&[Unit], &[Tensor]) -> Result<()> + 's;

/// Runs units in order: `last` captures [`LAST_CHUNK`] prompts at a time (the chunk's common
/// head once, as scoring runs it), the other positions one conversation at a time.
struct Runner<'a> {
    engine: &'a Engine,
    points: &'a [HookPoint],
    positions: Positions,
    pending: Vec<Unit>,
}

impl<'a> Runner<'a> {
    fn new(engine: &'a Engine, points: &'a [HookPoint], positions: Positions) -> Self {
        Runner {
            engine,
            points,
            positions,
            pending: Vec::new(),
        }
    }

    fn push(&mut self, u: Unit, sink: &mut Sink<'_>) -> Result<()> {
        if self.positions != Positions::Last {
            let got = capture_positions(&self.engine.model, &u.ids, &u.keep, self.points)?;
            return sink(std::slice::from_ref(&u), &got);
        }
        self.pending.push(u);
        if self.pending.len() == LAST_CHUNK {
            self.finish(sink)?;
        }
        Ok(())
    }

    /// Runs what is pending.
    fn finish(&mut self, sink: &mut Sink<'_>) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let ids: Vec<Vec<u32>> = self.pending.iter().map(|u| u.ids.clone()).collect();
        let got = capture_last_many(&self.engine.model, &ids, self.points, &mut |_| {})?;
        let units = std::mem::take(&mut self.pending);
        sink(&units, &got)
    }
}

/// Activations held in memory, as [`capture_conversations`] returns them: the same rows as
/// a capture file's, in the same order.
#[derive(Debug, Clone, PartialEq)]
pub struct Activations {
    /// `(point, rows × d values, row-major)`, in the order the points were given.
    pub points: Vec<(String, Vec<f32>)>,
    pub rows: usize,
    pub d: usize,
    /// Prompt `i`'s rows are `offsets[i]..offsets[i + 1]` (`prompts + 1` entries).
    pub offsets: Vec<usize>,
    /// The token at each row.
    pub token_ids: Vec<u32>,
    /// The sha256 of each conversation as JSON (`{"messages": [...]}`), hex.
    pub prompt_sha256: Vec<String>,
}

/// Activations at `points` and `positions` for `conversations`, in memory (for a library
/// caller that wants arrays rather than a file: the Python module's `Model.activations`).
/// Runs exactly as [`capture`] does, so its rows equal a capture file's bit for bit; every
/// conversation is checked before the model runs. Errors name the conversation (1-based).
pub fn capture_conversations(
    engine: &Engine,
    conversations: &[Conversation],
    points: &[HookPoint],
    positions: Positions,
) -> Result<Activations> {
    check_points(points, engine.model.cfg.num_layers)?;
    if conversations.is_empty() {
        return Err(ActivationsError::NoPrompts {
            origin: "the prompt list".into(),
        });
    }
    let units = conversations
        .iter()
        .enumerate()
        .map(|(i, conv)| {
            unit(engine, conv, positions).map_err(|message| ActivationsError::Prompt {
                origin: "the prompt list".into(),
                line: i + 1,
                message,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let d = engine.model.cfg.hidden_size;
    let rows: usize = units.iter().map(|u| u.keep.len()).sum();
    let mut out = Activations {
        points: points
            .iter()
            .map(|p| (p.to_string(), Vec::with_capacity(rows * d)))
            .collect(),
        rows,
        d,
        offsets: vec![0],
        token_ids: Vec::with_capacity(rows),
        prompt_sha256: Vec::with_capacity(units.len()),
    };
    let mut sink = |units: &[Unit], got: &[Tensor]| -> Result<()> {
        for ((_, values), t) in out.points.iter_mut().zip(got) {
            values.extend(t.flatten_all()?.to_vec1::<f32>()?);
        }
        for u in units {
            let last = *out.offsets.last().unwrap_or(&0);
            out.offsets.push(last + u.keep.len());
            out.token_ids.extend(u.keep.iter().map(|&p| u.ids[p]));
            out.prompt_sha256.push(hex::encode(u.sha));
        }
        Ok(())
    };
    let mut runner = Runner::new(engine, points, positions);
    for u in units {
        runner.push(u, &mut sink)?;
    }
    runner.finish(&mut sink)?;
    Ok(out)
}

/// Runs a capture: reads the conversations twice (first to count rows and check every one,
/// so that a bad line fails before the model runs and the file's header can be written
/// first; then to run them), writing each prompt's rows as soon as they are computed.
/// `progress(done, total)` reports prompts finished.
pub fn capture(
    model: &CaptureModel<'_>,
    spec: &CaptureSpec,
    provenance: &Provenance,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<CaptureSummary> {
    let engine = model.engine;
    let cfg = &engine.model.cfg;
    check_points(&spec.points, cfg.num_layers)?;
    write::check_out(&spec.out, spec.force)?;
    let origin = origin(&spec.source);

    // Pass 1: check every conversation, count prompts and rows, hash the prompts.
    let (mut prompts, mut rows) = (0usize, 0usize);
    let mut all_sha = Sha256::new();
    for_each_conversation(&spec.source, &mut |line, conv| {
        let u =
            unit(engine, &conv, spec.positions).map_err(|message| ActivationsError::Prompt {
                origin: origin.clone(),
                line,
                message,
            })?;
        all_sha.update(u.sha);
        prompts += 1;
        rows += u.keep.len();
        Ok(())
    })?;
    if prompts == 0 {
        return Err(ActivationsError::NoPrompts { origin });
    }
    let prompts_sha256 = hex::encode(all_sha.finalize());

    let d = cfg.hidden_size;
    let n_points = spec.points.len();
    let mut tensors: Vec<TensorSpec> = spec
        .points
        .iter()
        .map(|p| TensorSpec {
            name: p.to_string(),
            dtype: Dtype::F32,
            shape: vec![rows, d],
        })
        .collect();
    let (i_offsets, i_tokens, i_sha) = (n_points, n_points + 1, n_points + 2);
    tensors.push(TensorSpec {
        name: "offsets".into(),
        dtype: Dtype::I64,
        shape: vec![prompts + 1],
    });
    tensors.push(TensorSpec {
        name: "token_ids".into(),
        dtype: Dtype::I64,
        shape: vec![rows],
    });
    tensors.push(TensorSpec {
        name: "prompt_sha256".into(),
        dtype: Dtype::U8,
        shape: vec![prompts, 32],
    });
    let metadata = metadata(model, spec, provenance, &origin, prompts, &prompts_sha256)?;
    let w = StreamWriter::create(&spec.out, spec.force, tensors, &metadata)?;

    // Pass 2: run and write.
    let mut done = 0usize;
    let mut row = 0usize;
    let mut runner = Runner::new(engine, &spec.points, spec.positions);
    let mut sink = |units: &[Unit], got: &[Tensor]| -> Result<()> {
        for (i, t) in got.iter().enumerate() {
            let v: Vec<f32> = t.flatten_all()?.to_vec1()?;
            w.write_f32(i, row, &v)?;
        }
        for u in units {
            w.write_i64(i_offsets, done, &[row as i64])?;
            let toks: Vec<i64> = u.keep.iter().map(|&p| u.ids[p] as i64).collect();
            w.write_i64(i_tokens, row, &toks)?;
            w.write_u8(i_sha, done, &u.sha)?;
            row += u.keep.len();
            done += 1;
        }
        progress(done, prompts);
        Ok(())
    };
    let mut read = 0usize;
    for_each_conversation(&spec.source, &mut |line, conv| {
        let u =
            unit(engine, &conv, spec.positions).map_err(|message| ActivationsError::Prompt {
                origin: origin.clone(),
                line,
                message,
            })?;
        read += 1;
        if read > prompts {
            return Err(ActivationsError::Input(format!(
                "{origin} changed while it was read (more prompts than the first reading)"
            )));
        }
        runner.push(u, &mut sink)
    })?;
    runner.finish(&mut sink)?;
    if done != prompts || row != rows {
        return Err(ActivationsError::Input(format!(
            "{origin} changed while it was read ({done} prompts and {row} rows, after {prompts} \
             and {rows} at first)"
        )));
    }
    w.write_i64(i_offsets, prompts, &[rows as i64])?;
    let bytes = w.finish()?;
    Ok(CaptureSummary {
        out: spec.out.clone(),
        prompts,
        rows,
        bytes,
        prompts_sha256,
        points: spec.points.len(),
    })
}

fn metadata(
    model: &CaptureModel<'_>,
    spec: &CaptureSpec,
    provenance: &Provenance,
    origin: &str,
    prompts: usize,
    prompts_sha256: &str,
) -> Result<BTreeMap<String, String>> {
    let engine = model.engine;
    let mut m = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        m.insert(k.to_string(), v);
    };
    put("format", FORMAT.into());
    put("model", model.label.clone());
    put("model_path", engine.info.path.clone());
    put("model_sha256", engine.info.sha256.clone());
    match &model.adapter {
        Some(dir) => {
            put("adapter", dir.display().to_string());
            put(
                "adapter_sha256",
                selfaware_model::file_sha256(&dir.join(selfaware_model::lora::ADAPTER_WEIGHTS))?,
            );
        }
        None => {
            put("adapter", String::new());
            put("adapter_sha256", String::new());
        }
    }
    match &spec.source {
        PromptSource::File(path) => {
            put("source", "file".into());
            put("prompts_file", origin.to_string());
            put("prompts_file_sha256", selfaware_model::file_sha256(path)?);
        }
        PromptSource::Battery { name, seed } => {
            put("source", "battery".into());
            put("battery", name.clone());
            put(
                "battery_sha256",
                selfaware_eval::builtin::battery_source(name)
                    .map(|t| selfaware_types::sha256_hex(t.as_bytes()))
                    .unwrap_or_default(),
            );
            put("seed", seed.to_string());
        }
    }
    put("prompts", prompts.to_string());
    put("prompts_sha256", prompts_sha256.into());
    let points: Vec<String> = spec.points.iter().map(|p| p.to_string()).collect();
    put("points", points.join(","));
    put("positions", spec.positions.to_string());
    put("d_model", engine.model.cfg.hidden_size.to_string());
    put("layers", engine.model.cfg.num_layers.to_string());
    put("tool_version", provenance.tool_version.clone());
    put(
        "git_revision",
        provenance.git_revision.clone().unwrap_or_default(),
    );
    put(
        "ln_final",
        "ln_final.hook_normalized is resid_post of the last layer over its RMS, before the \
         final norm's gain (TransformerLens)"
            .into(),
    );
    Ok(m)
}
