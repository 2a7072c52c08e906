//! Reading captures: difference-in-means directions between two captures, cosine similarity
//! between directions, and the logit lens of a direction.
//!
//! A directions file is safetensors too: one `F32 [d]` tensor per point, named as the point,
//! with the two captures' provenance in its metadata (`format` = [`DIRECTIONS_FORMAT`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use selfaware_model::Engine;

use crate::error::{io, ActivationsError, Result};
use crate::write::{Dtype, StreamWriter, TensorSpec};

/// The `format` of a directions file.
pub const DIRECTIONS_FORMAT: &str = "selfaware-directions/1";

/// Tensors of a capture file that are not hook points.
const NOT_POINTS: [&str; 3] = ["offsets", "token_ids", "prompt_sha256"];

/// A safetensors file, memory-mapped.
struct Mapped {
    path: PathBuf,
    map: memmap2::Mmap,
}

impl Mapped {
    fn open(path: &Path) -> Result<Self> {
        let f = fs_err::File::open(path).map_err(|e| ActivationsError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        // SAFETY: the file is opened read-only; outputs are replaced by rename, never written
        // in place, so a file being read does not change under the map.
        let map = unsafe { memmap2::Mmap::map(f.file()) }.map_err(io(path))?;
        Ok(Mapped {
            path: path.to_path_buf(),
            map,
        })
    }

    fn bad(&self, message: impl Into<String>) -> ActivationsError {
        ActivationsError::File {
            path: self.path.clone(),
            message: message.into(),
        }
    }

    fn tensors(&self) -> Result<safetensors::SafeTensors<'_>> {
        safetensors::SafeTensors::deserialize(&self.map)
            .map_err(|e| self.bad(format!("not a safetensors file ({e})")))
    }

    fn metadata(&self) -> Result<BTreeMap<String, String>> {
        let (_, m) = safetensors::SafeTensors::read_metadata(&self.map)
            .map_err(|e| self.bad(format!("not a safetensors file ({e})")))?;
        Ok(m.metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect())
    }

    /// An `F32` tensor's shape and values.
    fn f32s(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let st = self.tensors()?;
        let t = st
            .tensor(name)
            .map_err(|_| self.bad(format!("has no tensor `{name}`")))?;
        if t.dtype() != safetensors::Dtype::F32 {
            return Err(self.bad(format!("tensor `{name}` is {:?}, expected F32", t.dtype())));
        }
        let v = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok((t.shape().to_vec(), v))
    }

    fn i64s(&self, name: &str) -> Result<Vec<i64>> {
        let st = self.tensors()?;
        let t = st
            .tensor(name)
            .map_err(|_| self.bad(format!("has no tensor `{name}`")))?;
        if t.dtype() != safetensors::Dtype::I64 {
            return Err(self.bad(format!("tensor `{name}` is {:?}, expected I64", t.dtype())));
        }
        Ok(t.data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect())
    }
}

/// A capture file (`selfaware activations capture`) opened for reading.
pub struct Capture {
    file: Mapped,
    pub metadata: BTreeMap<String, String>,
    /// Hook points in the order the capture asked for them.
    pub points: Vec<String>,
    /// Row ranges of each prompt: prompt `i` is `offsets[i]..offsets[i+1]`.
    pub offsets: Vec<usize>,
}

impl Capture {
    pub fn open(path: &Path) -> Result<Self> {
        let file = Mapped::open(path)?;
        let metadata = file.metadata()?;
        if metadata.get("format").map(String::as_str) != Some(crate::FORMAT) {
            return Err(file.bad(format!(
                "is not an activation capture (metadata format is {:?}, expected {:?})\nhint: \
                 write one with `selfaware activations capture`",
                metadata.get("format").cloned().unwrap_or_default(),
                crate::FORMAT
            )));
        }
        let points: Vec<String> = metadata
            .get("points")
            .map(|p| p.split(',').map(str::to_string).collect())
            .unwrap_or_default();
        let offsets = file
            .i64s("offsets")?
            .into_iter()
            .map(|o| o as usize)
            .collect();
        Ok(Capture {
            file,
            metadata,
            points,
            offsets,
        })
    }

    pub fn path(&self) -> &Path {
        &self.file.path
    }

    pub fn prompts(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Checks that `point` is one of the capture's hook points.
    fn check_point(&self, point: &str) -> Result<()> {
        if NOT_POINTS.contains(&point) || !self.points.iter().any(|p| p == point) {
            return Err(self.file.bad(format!(
                "has no point `{point}` (it holds {})",
                self.points.join(", ")
            )));
        }
        Ok(())
    }

    /// Hands each row of one point (`[rows, d]`) to `each`, read from the mapped file one
    /// row at a time.
    pub fn for_each_row(&self, point: &str, each: &mut dyn FnMut(usize, &[f32])) -> Result<()> {
        self.check_point(point)?;
        let st = self.file.tensors()?;
        let t = st
            .tensor(point)
            .map_err(|_| self.file.bad(format!("has no tensor `{point}`")))?;
        let shape = t.shape().to_vec();
        if t.dtype() != safetensors::Dtype::F32 || shape.len() != 2 {
            return Err(self.file.bad(format!(
                "tensor `{point}` is {:?} {shape:?}, expected F32 [rows, d]",
                t.dtype()
            )));
        }
        let d = shape[1];
        let mut row = vec![0f32; d];
        for (i, bytes) in t.data().chunks_exact(4 * d.max(1)).enumerate() {
            for (r, c) in row.iter_mut().zip(bytes.chunks_exact(4)) {
                *r = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
            each(i, &row);
        }
        Ok(())
    }

    /// `[rows, d]` of one point, as rows.
    pub fn rows(&self, point: &str) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::new();
        self.for_each_row(point, &mut |_, r| out.push(r.to_vec()))?;
        Ok(out)
    }

    /// One vector per prompt: its row for a `last` capture, the mean of its rows otherwise.
    pub fn per_prompt(&self, point: &str) -> Result<Vec<Vec<f64>>> {
        let mut sums: Vec<Vec<f64>> = Vec::with_capacity(self.prompts());
        let mut prompt = 0usize;
        let offsets = &self.offsets;
        self.for_each_row(point, &mut |i, r| {
            while prompt + 1 < offsets.len() && i >= offsets[prompt + 1] {
                prompt += 1;
            }
            if sums.len() <= prompt {
                sums.resize(prompt + 1, vec![0.0; r.len()]);
            }
            for (a, x) in sums[prompt].iter_mut().zip(r) {
                *a += *x as f64;
            }
        })?;
        if sums.len() != self.prompts() {
            return Err(self.file.bad(format!(
                "`{point}` has rows for {} prompts, its offsets {}",
                sums.len(),
                self.prompts()
            )));
        }
        for (k, (s, w)) in sums.iter_mut().zip(offsets.windows(2)).enumerate() {
            let n = w[1].saturating_sub(w[0]);
            if n == 0 {
                return Err(self.file.bad(format!("prompt {k} has no rows")));
            }
            s.iter_mut().for_each(|a| *a /= n as f64);
        }
        Ok(sums)
    }

    /// The mean of every row of one point, in f64, streamed from the file.
    pub fn mean(&self, point: &str) -> Result<Vec<f64>> {
        let mut m: Vec<f64> = Vec::new();
        let mut n = 0usize;
        self.for_each_row(point, &mut |_, r| {
            if m.is_empty() {
                m = vec![0.0; r.len()];
            }
            for (a, x) in m.iter_mut().zip(r) {
                *a += *x as f64;
            }
            n += 1;
        })?;
        Ok(m.into_iter().map(|a| a / n.max(1) as f64).collect())
    }
}

/// The points two captures share, in the first one's order; an error naming both files when
/// they share none.
pub fn shared_points(a: &Capture, b: &Capture) -> Result<Vec<String>> {
    let shared: Vec<String> = a
        .points
        .iter()
        .filter(|p| b.points.contains(p))
        .cloned()
        .collect();
    if shared.is_empty() {
        return Err(ActivationsError::Input(format!(
            "{} and {} share no hook point ({} against {})",
            a.path().display(),
            b.path().display(),
            a.points.join(","),
            b.points.join(",")
        )));
    }
    Ok(shared)
}

/// Directions, one per point.
#[derive(Debug, Clone, PartialEq)]
pub struct Directions {
    pub points: Vec<(String, Vec<f32>)>,
    pub metadata: BTreeMap<String, String>,
}

/// `mean(a) − mean(b)` at every point both captures hold (means over all rows: prompts for
/// `last`, tokens otherwise), in f64, stored as f32. The metadata records both captures'
/// files, sizes and provenance.
pub fn mean_difference(a: &Capture, b: &Capture) -> Result<Directions> {
    let mut points = Vec::new();
    for p in shared_points(a, b)? {
        let (ma, mb) = (a.mean(&p)?, b.mean(&p)?);
        if ma.len() != mb.len() {
            return Err(ActivationsError::Input(format!(
                "`{p}` has width {} in {} and {} in {}",
                ma.len(),
                a.path().display(),
                mb.len(),
                b.path().display()
            )));
        }
        points.push((p, ma.iter().zip(&mb).map(|(x, y)| (x - y) as f32).collect()));
    }
    let mut metadata = BTreeMap::new();
    metadata.insert("format".into(), DIRECTIONS_FORMAT.into());
    metadata.insert("method".into(), "mean_difference (a - b)".into());
    // Two models on the same prompts, or two prompt sets.
    let same = a.metadata.contains_key("prompts_sha256")
        && a.metadata.get("prompts_sha256") == b.metadata.get("prompts_sha256");
    metadata.insert("same_prompts".into(), same.to_string());
    for (side, c) in [("a", a), ("b", b)] {
        metadata.insert(format!("{side}_file"), c.path().display().to_string());
        metadata.insert(
            format!("{side}_file_sha256"),
            selfaware_model::file_sha256(c.path())?,
        );
        metadata.insert(format!("{side}_prompts"), c.prompts().to_string());
        metadata.insert(
            format!("{side}_rows"),
            c.offsets.last().copied().unwrap_or(0).to_string(),
        );
        for k in [
            "model_sha256",
            "adapter_sha256",
            "positions",
            "prompts_sha256",
        ] {
            if let Some(v) = c.metadata.get(k) {
                metadata.insert(format!("{side}_{k}"), v.clone());
            }
        }
    }
    Ok(Directions { points, metadata })
}

impl Directions {
    /// Writes the directions as safetensors (atomically; an existing `out` only with `force`).
    pub fn write(&self, out: &Path, force: bool) -> Result<u64> {
        let specs = self
            .points
            .iter()
            .map(|(p, v)| TensorSpec {
                name: p.clone(),
                dtype: Dtype::F32,
                shape: vec![v.len()],
            })
            .collect();
        let w = StreamWriter::create(out, force, specs, &self.metadata)?;
        for (i, (_, v)) in self.points.iter().enumerate() {
            w.write_f32(i, 0, v)?;
        }
        w.finish()
    }

    /// Reads a directions file: every tensor is one direction (`F32 [d]`), in file order.
    pub fn open(path: &Path) -> Result<Self> {
        let file = Mapped::open(path)?;
        let metadata = file.metadata()?;
        let st = file.tensors()?;
        let mut names: Vec<(usize, String)> = st
            .tensors()
            .into_iter()
            .map(|(n, t)| (t.data().as_ptr() as usize, n))
            .collect();
        names.sort();
        let mut points = Vec::new();
        for (_, n) in names {
            let (shape, v) = file.f32s(&n)?;
            if shape.len() != 1 {
                return Err(file.bad(format!(
                    "tensor `{n}` has shape {shape:?}; a direction is one vector [d]\nhint: \
                     make directions with `selfaware activations diff`"
                )));
            }
            points.push((n, v));
        }
        Ok(Directions { points, metadata })
    }

    pub fn get(&self, point: &str) -> Option<&[f32]> {
        self.points
            .iter()
            .find(|(p, _)| p == point)
            .map(|(_, v)| v.as_slice())
    }
}

/// Cosine similarity of two vectors, in f64 (0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (*x as f64, *y as f64);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        return 0.0;
    }
    ab / (aa.sqrt() * bb.sqrt())
}

/// Cosine similarity of every direction of `a` (rows) with every direction of `b` (columns)
/// of the same width.
pub fn cosine_matrix(a: &Directions, b: &Directions) -> Vec<Vec<Option<f64>>> {
    a.points
        .iter()
        .map(|(_, x)| {
            b.points
                .iter()
                .map(|(_, y)| (x.len() == y.len()).then(|| cosine(x, y)))
                .collect()
        })
        .collect()
}

/// One token of a logit lens.
#[derive(Debug, Clone, PartialEq)]
pub struct LensToken {
    pub id: u32,
    pub text: String,
    pub logit: f32,
}

/// The tokens a direction promotes (`top`, largest logit first) and suppresses (`bottom`,
/// smallest first): the direction through the final norm (divided by its RMS, times the
/// norm's gain) and the unembedding.
#[derive(Debug, Clone, PartialEq)]
pub struct Lens {
    pub top: Vec<LensToken>,
    pub bottom: Vec<LensToken>,
}

/// The logit lens of `direction` on `engine`'s model, `k` tokens each way.
pub fn logit_lens(engine: &Engine, direction: &[f32], k: usize) -> Result<Lens> {
    let model = &engine.model;
    let d = model.cfg.hidden_size;
    if direction.len() != d {
        return Err(ActivationsError::Input(format!(
            "the direction has width {}, the model's residual stream {d}",
            direction.len()
        )));
    }
    let v = Tensor::from_slice(direction, (1, d), &Device::Cpu)?;
    let normed = selfaware_model::ops::rms_norm(&v, &model.norm, model.cfg.rms_eps as f32)?;
    let logits: Vec<f32> = model.logits(&normed)?.squeeze(0)?.to_vec1()?;
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    order.sort_by(|&x, &y| {
        logits[y as usize]
            .total_cmp(&logits[x as usize])
            .then(x.cmp(&y))
    });
    let token = |id: u32| LensToken {
        id,
        text: engine.chat.tokenizer.token_text(id),
        logit: logits[id as usize],
    };
    let k = k.min(order.len());
    Ok(Lens {
        top: order[..k].iter().map(|&i| token(i)).collect(),
        bottom: order.iter().rev().take(k).map(|&i| token(i)).collect(),
    })
}
