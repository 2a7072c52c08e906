//! A reader for GGUF headers: metadata key/values and tensor descriptors.
//!
//! Tensor *data* stays in the file (memory-mapped; [`GgufFile::from_bytes`] reads bytes in memory
//! instead); `selfaware-model` turns it into tensors. This
//! module owns validation: bad magic, unsupported versions, truncation and unknown tensor types
//! are reported with the file's path before anything is loaded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{ChatError, Result};

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<GgufValue>),
}

impl GgufValue {
    /// The value as an unsigned integer, if it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::U8(v) => Some(v.into()),
            GgufValue::U16(v) => Some(v.into()),
            GgufValue::U32(v) => Some(v.into()),
            GgufValue::U64(v) => Some(v),
            GgufValue::I8(v) => u64::try_from(v).ok(),
            GgufValue::I16(v) => u64::try_from(v).ok(),
            GgufValue::I32(v) => u64::try_from(v).ok(),
            GgufValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            GgufValue::F32(v) => Some(v.into()),
            GgufValue::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            GgufValue::Bool(b) => Some(b),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            GgufValue::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// The storage type of a tensor, with the ggml type id used in files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q8_0,
    Q4K,
    Q6K,
}

impl GgmlType {
    /// Types selfaware can dequantize, as listed in error messages.
    pub const SUPPORTED: &'static str = "F32, F16, BF16, Q4_0, Q4_1, Q8_0, Q4_K, Q6_K";

    fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            8 => GgmlType::Q8_0,
            12 => GgmlType::Q4K,
            14 => GgmlType::Q6K,
            30 => GgmlType::BF16,
            _ => return None,
        })
    }

    /// Name of a ggml type id, including ones selfaware does not support (for error messages).
    pub fn name_of_id(id: u32) -> String {
        let known = [
            (0, "F32"),
            (1, "F16"),
            (2, "Q4_0"),
            (3, "Q4_1"),
            (6, "Q5_0"),
            (7, "Q5_1"),
            (8, "Q8_0"),
            (9, "Q8_1"),
            (10, "Q2_K"),
            (11, "Q3_K"),
            (12, "Q4_K"),
            (13, "Q5_K"),
            (14, "Q6_K"),
            (15, "Q8_K"),
            (30, "BF16"),
        ];
        known
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, n)| n.to_string())
            .unwrap_or_else(|| format!("type id {id}"))
    }

    /// (elements per block, bytes per block)
    pub fn block(self) -> (u64, u64) {
        match self {
            GgmlType::F32 => (1, 4),
            GgmlType::F16 | GgmlType::BF16 => (1, 2),
            GgmlType::Q4_0 => (32, 18),
            GgmlType::Q4_1 => (32, 20),
            GgmlType::Q8_0 => (32, 34),
            GgmlType::Q4K => (256, 144),
            GgmlType::Q6K => (256, 210),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            GgmlType::BF16 => "BF16",
            GgmlType::Q4_0 => "Q4_0",
            GgmlType::Q4_1 => "Q4_1",
            GgmlType::Q8_0 => "Q8_0",
            GgmlType::Q4K => "Q4_K",
            GgmlType::Q6K => "Q6_K",
        }
    }
}

/// Where a tensor lives in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions as GGUF stores them: innermost (contiguous) first.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Absolute byte offset of the tensor's data in the file.
    pub offset: u64,
    pub n_bytes: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// The bytes a [`GgufFile`] reads tensors from: a memory-mapped file, or bytes in memory.
enum Data {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Data {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Data::Mapped(m) => m,
            Data::Owned(v) => v,
        }
    }
}

/// A parsed GGUF header over a memory-mapped file (or over bytes in memory).
pub struct GgufFile {
    pub path: PathBuf,
    pub version: u32,
    pub metadata: BTreeMap<String, GgufValue>,
    pub tensors: Vec<TensorInfo>,
    data: Data,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata_keys", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl GgufFile {
    /// Opens and validates a GGUF file: header, metadata, tensor table, and that every tensor's
    /// data lies inside the file.
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|source| ChatError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        // SAFETY: the file is opened read-only and selfaware never writes model files while
        // reading them; a concurrent external modification is the user's responsibility, as
        // with every memory-mapped model loader.
        let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|source| ChatError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(Data::Mapped(mmap), path)
    }

    /// Validates a GGUF file held in memory, as [`GgufFile::open`] does a file; `path` only
    /// names it in errors.
    pub fn from_bytes(bytes: Vec<u8>, path: &Path) -> Result<Self> {
        Self::parse(Data::Owned(bytes), path)
    }

    fn parse(data: Data, path: &Path) -> Result<Self> {
        let mut r = Reader {
            buf: &data,
            pos: 0,
            path,
        };
        let magic: [u8; 4] = r.bytes(4, "magic")?.try_into().expect("4 bytes");
        if &magic != MAGIC {
            return Err(ChatError::BadMagic {
                path: path.to_path_buf(),
                found: magic,
            });
        }
        let version = r.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(ChatError::UnsupportedGgufVersion {
                path: path.to_path_buf(),
                version,
            });
        }
        let n_tensors = r.u64("tensor count")?;
        let n_kv = r.u64("metadata count")?;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = r.string("metadata key")?;
            let ty = r.u32("metadata type")?;
            let value = r.value(ty, &key, 0)?;
            metadata.insert(key, value);
        }
        let mut raw = Vec::new();
        for _ in 0..n_tensors {
            let name = r.string("tensor name")?;
            let n_dims = r.u32("tensor rank")?;
            if n_dims > 4 {
                return Err(r.malformed(format!("tensor `{name}` has {n_dims} dimensions")));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(r.u64("tensor dimension")?);
            }
            let ty = r.u32("tensor type")?;
            let offset = r.u64("tensor offset")?;
            raw.push((name, dims, ty, offset));
        }
        let alignment = metadata
            .get("general.alignment")
            .and_then(GgufValue::as_u64)
            .unwrap_or(DEFAULT_ALIGNMENT);
        if alignment == 0 || !alignment.is_power_of_two() {
            return Err(r.malformed(format!("general.alignment = {alignment}")));
        }
        let data_start = (r.pos as u64).div_ceil(alignment) * alignment;
        let len = data.len() as u64;
        let mut tensors = Vec::with_capacity(raw.len());
        for (name, dims, ty, offset) in raw {
            let ggml_type = GgmlType::from_id(ty).ok_or_else(|| ChatError::MalformedGguf {
                path: path.to_path_buf(),
                what: format!(
                    "tensor `{name}` has type {}, which selfaware cannot load (supported: {})",
                    GgmlType::name_of_id(ty),
                    GgmlType::SUPPORTED
                ),
            })?;
            let n = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| {
                    r.malformed(format!(
                        "tensor `{name}` has dimensions {dims:?}, whose product overflows 64 bits"
                    ))
                })?;
            let (per_block, block_bytes) = ggml_type.block();
            if !n.is_multiple_of(per_block) {
                return Err(r.malformed(format!(
                    "tensor `{name}` has {n} elements, not a multiple of the {} block size {per_block}",
                    ggml_type.name()
                )));
            }
            // Offsets and sizes come from the file: every sum is checked, so a huge offset is
            // an error rather than a panic or a wrap-around into the header.
            let n_bytes = (n / per_block).checked_mul(block_bytes);
            let start = data_start.checked_add(offset);
            let end = start.zip(n_bytes).and_then(|(s, b)| s.checked_add(b));
            let (Some(start), Some(n_bytes), Some(end)) = (start, n_bytes, end) else {
                return Err(r.malformed(format!(
                    "tensor `{name}` at offset {offset} with {n} elements of {} lies beyond \
                     any file (the sum overflows 64 bits)",
                    ggml_type.name()
                )));
            };
            if !offset.is_multiple_of(alignment) {
                return Err(r.malformed(format!(
                    "tensor `{name}` has offset {offset}, not a multiple of the alignment \
                     {alignment}"
                )));
            }
            if end > len {
                return Err(ChatError::Truncated {
                    path: path.to_path_buf(),
                    what: format!("tensor `{name}`"),
                    needed: end,
                    len,
                });
            }
            tensors.push(TensorInfo {
                name,
                dims,
                ggml_type,
                offset: start,
                n_bytes,
            });
        }
        Ok(GgufFile {
            path: path.to_path_buf(),
            version,
            metadata,
            tensors,
            data,
        })
    }

    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    fn missing(&self, key: &str, expected: &'static str) -> ChatError {
        ChatError::Metadata {
            path: self.path.clone(),
            key: key.to_string(),
            expected,
        }
    }

    pub fn get_str(&self, key: &str) -> Result<&str> {
        self.get(key)
            .and_then(GgufValue::as_str)
            .ok_or_else(|| self.missing(key, "a string"))
    }

    pub fn get_u64(&self, key: &str) -> Result<u64> {
        self.get(key)
            .and_then(GgufValue::as_u64)
            .ok_or_else(|| self.missing(key, "an unsigned integer"))
    }

    pub fn get_f64(&self, key: &str) -> Result<f64> {
        self.get(key)
            .and_then(GgufValue::as_f64)
            .ok_or_else(|| self.missing(key, "a number"))
    }

    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        let arr = self
            .get(key)
            .and_then(GgufValue::as_array)
            .ok_or_else(|| self.missing(key, "an array of strings"))?;
        arr.iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| self.missing(key, "an array of strings"))
            })
            .collect()
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The raw bytes of a tensor's data.
    pub fn tensor_bytes(&self, info: &TensorInfo) -> &[u8] {
        &self.data[info.offset as usize..(info.offset + info.n_bytes) as usize]
    }
}

/// The fewest bytes a metadata value of type `ty` takes in the file (an unknown type still
/// takes one byte: it fails when read).
fn min_value_bytes(ty: u32) -> u64 {
    match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        10..=12 => 8,
        // A string: its u64 length.
        8 => 8,
        // An array: its u32 element type and u64 count.
        9 => 12,
        _ => 1,
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    fn malformed(&self, what: String) -> ChatError {
        ChatError::MalformedGguf {
            path: self.path.to_path_buf(),
            what,
        }
    }

    fn bytes(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(ChatError::Truncated {
                path: self.path.to_path_buf(),
                what: what.to_string(),
                needed: (self.pos as u64).saturating_add(n as u64),
                len: self.buf.len() as u64,
            }),
        }
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        Ok(self.bytes(N, what)?.try_into().expect("exact length"))
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.u64(what)?;
        let n = usize::try_from(n).map_err(|_| self.malformed(format!("{what} length {n}")))?;
        let b = self.bytes(n, what)?;
        // GGUF strings are UTF-8; a few converters wrote invalid bytes into vocab entries, which
        // we keep lossily rather than rejecting the file.
        Ok(String::from_utf8_lossy(b).into_owned())
    }

    fn value(&mut self, ty: u32, key: &str, depth: usize) -> Result<GgufValue> {
        Ok(match ty {
            0 => GgufValue::U8(self.array::<1>(key)?[0]),
            1 => GgufValue::I8(self.array::<1>(key)?[0] as i8),
            2 => GgufValue::U16(u16::from_le_bytes(self.array(key)?)),
            3 => GgufValue::I16(i16::from_le_bytes(self.array(key)?)),
            4 => GgufValue::U32(u32::from_le_bytes(self.array(key)?)),
            5 => GgufValue::I32(i32::from_le_bytes(self.array(key)?)),
            6 => GgufValue::F32(f32::from_le_bytes(self.array(key)?)),
            7 => GgufValue::Bool(self.array::<1>(key)?[0] != 0),
            8 => GgufValue::String(self.string(key)?),
            9 => {
                if depth > 2 {
                    return Err(self.malformed(format!("`{key}` nests arrays too deeply")));
                }
                let ety = self.u32(key)?;
                let n = self.u64(key)?;
                // Reject counts the rest of the file cannot hold before allocating anything:
                // each element takes at least `min_value_bytes` of the file, while its parsed
                // value takes 32 bytes of memory.
                let min = min_value_bytes(ety);
                let rest = (self.buf.len() - self.pos) as u64;
                if n.checked_mul(min).is_none_or(|need| need > rest) {
                    return Err(ChatError::Truncated {
                        path: self.path.to_path_buf(),
                        what: format!(
                            "metadata array `{key}` of {n} elements (at least {min} bytes each)"
                        ),
                        needed: (self.pos as u64).saturating_add(n.saturating_mul(min)),
                        len: self.buf.len() as u64,
                    });
                }
                let mut v = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    v.push(self.value(ety, key, depth + 1)?);
                }
                GgufValue::Array(v)
            }
            10 => GgufValue::U64(u64::from_le_bytes(self.array(key)?)),
            11 => GgufValue::I64(i64::from_le_bytes(self.array(key)?)),
            12 => GgufValue::F64(f64::from_le_bytes(self.array(key)?)),
            other => {
                return Err(self.malformed(format!("`{key}` has unknown value type {other}")));
            }
        })
    }
}

/// Writes a minimal GGUF file (v3) — used by tests across the workspace to build tiny models and
/// malformed files without shipping binaries.
pub mod write {
    use super::GgufValue;

    /// A tensor to write: name, GGUF dims (innermost first), ggml type id, raw bytes.
    pub struct RawTensor {
        pub name: String,
        pub dims: Vec<u64>,
        pub type_id: u32,
        pub data: Vec<u8>,
    }

    fn put_str(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    fn put_value(out: &mut Vec<u8>, v: &GgufValue) {
        match v {
            GgufValue::U8(x) => out.push(*x),
            GgufValue::I8(x) => out.push(*x as u8),
            GgufValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::Bool(x) => out.push(u8::from(*x)),
            GgufValue::String(s) => put_str(out, s),
            GgufValue::Array(a) => {
                let ety = a.first().map(type_id).unwrap_or(4);
                out.extend_from_slice(&ety.to_le_bytes());
                out.extend_from_slice(&(a.len() as u64).to_le_bytes());
                for e in a {
                    put_value(out, e);
                }
            }
        }
    }

    fn type_id(v: &GgufValue) -> u32 {
        match v {
            GgufValue::U8(_) => 0,
            GgufValue::I8(_) => 1,
            GgufValue::U16(_) => 2,
            GgufValue::I16(_) => 3,
            GgufValue::U32(_) => 4,
            GgufValue::I32(_) => 5,
            GgufValue::F32(_) => 6,
            GgufValue::Bool(_) => 7,
            GgufValue::String(_) => 8,
            GgufValue::Array(_) => 9,
            GgufValue::U64(_) => 10,
            GgufValue::I64(_) => 11,
            GgufValue::F64(_) => 12,
        }
    }

    /// Serialises metadata and tensors into GGUF v3 bytes with 32-byte alignment.
    pub fn gguf_bytes(metadata: &[(String, GgufValue)], tensors: &[RawTensor]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(b"GGUF");
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
        for (k, v) in metadata {
            put_str(&mut out, k);
            out.extend_from_slice(&type_id(v).to_le_bytes());
            put_value(&mut out, v);
        }
        let mut offset = 0u64;
        let mut offsets = Vec::new();
        for t in tensors {
            put_str(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.type_id.to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offsets.push(offset);
            offset += (t.data.len() as u64).div_ceil(32) * 32;
        }
        while out.len() % 32 != 0 {
            out.push(0);
        }
        for t in tensors {
            out.extend_from_slice(&t.data);
            while out.len() % 32 != 0 {
                out.push(0);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::write::*;
    use super::*;

    fn tmp(bytes: &[u8]) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), bytes).unwrap();
        f
    }

    fn sample() -> Vec<u8> {
        let md = vec![
            (
                "general.architecture".to_string(),
                GgufValue::String("llama".into()),
            ),
            ("llama.block_count".to_string(), GgufValue::U32(2)),
            (
                "tokenizer.ggml.tokens".to_string(),
                GgufValue::Array(vec![
                    GgufValue::String("a".into()),
                    GgufValue::String("b".into()),
                ]),
            ),
        ];
        let t = RawTensor {
            name: "w".into(),
            dims: vec![4, 2],
            type_id: 0,
            data: (0..8u32).flat_map(|i| (i as f32).to_le_bytes()).collect(),
        };
        gguf_bytes(&md, &[t])
    }

    #[test]
    fn reads_what_it_writes() {
        let f = tmp(&sample());
        let g = GgufFile::open(f.path()).unwrap();
        assert_eq!(g.get_str("general.architecture").unwrap(), "llama");
        assert_eq!(g.get_u64("llama.block_count").unwrap(), 2);
        assert_eq!(
            g.get_str_array("tokenizer.ggml.tokens").unwrap(),
            vec!["a", "b"]
        );
        let t = g.tensor("w").unwrap();
        assert_eq!(t.n_elements(), 8);
        let b = g.tensor_bytes(t);
        assert_eq!(f32::from_le_bytes(b[4..8].try_into().unwrap()), 1.0);
    }

    #[test]
    fn bytes_in_memory_read_as_the_file_does() {
        let g = GgufFile::from_bytes(sample(), Path::new("mem.gguf")).unwrap();
        assert_eq!(g.get_u64("llama.block_count").unwrap(), 2);
        let t = g.tensor("w").unwrap();
        let b = g.tensor_bytes(t);
        assert_eq!(f32::from_le_bytes(b[28..32].try_into().unwrap()), 7.0);
        let e = GgufFile::from_bytes(b"GGUF".to_vec(), Path::new("mem.gguf")).unwrap_err();
        assert!(matches!(e, ChatError::Truncated { .. }), "{e}");
        assert!(e.to_string().contains("mem.gguf"), "{e}");
    }

    #[test]
    fn bad_magic_names_the_file() {
        let mut b = sample();
        b[0] = b'X';
        let f = tmp(&b);
        let e = GgufFile::open(f.path()).unwrap_err().to_string();
        assert!(e.contains("is not a GGUF file"), "{e}");
        assert!(e.contains(&f.path().display().to_string()), "{e}");
    }

    #[test]
    fn truncation_is_detected_at_every_cut() {
        let b = sample();
        for cut in [3, 10, 30, b.len() - 40, b.len() - 1] {
            let f = tmp(&b[..cut]);
            let e = GgufFile::open(f.path()).unwrap_err();
            assert!(
                matches!(e, ChatError::Truncated { .. } | ChatError::BadMagic { .. }),
                "cut {cut}: {e}"
            );
        }
    }

    #[test]
    fn unsupported_quant_type_is_named() {
        let md = vec![];
        let t = RawTensor {
            name: "w".into(),
            dims: vec![32],
            type_id: 6, // Q5_0
            data: vec![0; 22],
        };
        let f = tmp(&gguf_bytes(&md, &[t]));
        let e = GgufFile::open(f.path()).unwrap_err().to_string();
        assert!(e.contains("Q5_0") && e.contains("supported: F32"), "{e}");
    }

    /// A v3 header by hand: no metadata, one F32 tensor of `dims` at `offset`, then `data`.
    fn one_tensor(dims: &[u64], offset: u64, data: &[u8]) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&1u64.to_le_bytes()); // tensors
        b.extend_from_slice(&0u64.to_le_bytes()); // metadata
        b.extend_from_slice(&1u64.to_le_bytes());
        b.push(b'w');
        b.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for d in dims {
            b.extend_from_slice(&d.to_le_bytes());
        }
        b.extend_from_slice(&0u32.to_le_bytes()); // F32
        b.extend_from_slice(&offset.to_le_bytes());
        b.resize(b.len().div_ceil(32) * 32, 0);
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn hand_written_header_is_valid() {
        // The helper below is right, so the failures that follow come from the values alone.
        let f = tmp(&one_tensor(&[2], 0, &[0; 8]));
        let g = GgufFile::open(f.path()).unwrap();
        assert_eq!(g.tensors[0].n_bytes, 8);
    }

    #[test]
    fn overflowing_tensor_offset_is_an_error_not_a_panic_or_a_wrap() {
        // data_start (64) + offset wraps to 0 in u64: without checks the tensor would read the
        // header as weights.
        for offset in [u64::MAX - 63, u64::MAX - 31, u64::MAX - 7, u64::MAX] {
            let f = tmp(&one_tensor(&[2], offset, &[0; 8]));
            let e = GgufFile::open(f.path()).unwrap_err();
            assert!(
                matches!(e, ChatError::MalformedGguf { .. }),
                "offset {offset}: {e}"
            );
            let e = e.to_string();
            assert!(e.contains("tensor `w`"), "{e}");
            assert!(e.contains(&f.path().display().to_string()), "{e}");
        }
        // An aligned offset past the end is truncation, naming the bytes needed.
        let f = tmp(&one_tensor(&[2], 1 << 40, &[0; 8]));
        let e = GgufFile::open(f.path()).unwrap_err();
        assert!(
            matches!(e, ChatError::Truncated { needed, .. } if needed == 64 + (1 << 40) + 8),
            "{e}"
        );
    }

    #[test]
    fn misaligned_tensor_offset_is_an_error() {
        let f = tmp(&one_tensor(&[2], 4, &[0; 16]));
        let e = GgufFile::open(f.path()).unwrap_err().to_string();
        assert!(e.contains("not a multiple of the alignment 32"), "{e}");
    }

    #[test]
    fn overflowing_element_count_is_an_error() {
        let f = tmp(&one_tensor(&[1 << 32, 1 << 32], 0, &[0; 8]));
        let e = GgufFile::open(f.path()).unwrap_err().to_string();
        assert!(e.contains("overflows 64 bits"), "{e}");
        // Elements × 4 bytes overflows while the element count does not.
        let f = tmp(&one_tensor(&[1 << 63], 0, &[0; 8]));
        let e = GgufFile::open(f.path()).unwrap_err().to_string();
        assert!(e.contains("overflows 64 bits"), "{e}");
    }

    /// A header whose one metadata key is an array of `count` elements of type `ety`, followed
    /// by `tail` bytes.
    fn array_header(ety: u32, count: u64, tail: usize) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        b.extend_from_slice(&1u64.to_le_bytes());
        b.extend_from_slice(&1u64.to_le_bytes());
        b.push(b'k');
        b.extend_from_slice(&9u32.to_le_bytes());
        b.extend_from_slice(&ety.to_le_bytes());
        b.extend_from_slice(&count.to_le_bytes());
        b.resize(b.len() + tail, 0);
        b
    }

    #[test]
    fn array_counts_are_bounded_by_the_bytes_each_element_needs() {
        // 1000 bytes left: 1000 u8 fit, 1001 do not; 125 u64 (or strings of length 0) fit,
        // 126 do not. The old check allowed one element per byte whatever the type, so a
        // count of n allocated 32·n bytes for n up to the file size.
        for (ety, fits) in [(0u32, 1000u64), (10, 125), (8, 125), (4, 250), (9, 83)] {
            let f = tmp(&array_header(ety, fits + 1, 1000));
            let e = GgufFile::open(f.path()).unwrap_err();
            assert!(matches!(e, ChatError::Truncated { .. }), "type {ety}: {e}");
            assert!(e.to_string().contains("metadata array `k`"), "{e}");
        }
        let f = tmp(&array_header(10, 125, 1000));
        let g = GgufFile::open(f.path()).unwrap();
        assert_eq!(g.get("k").unwrap().as_array().unwrap().len(), 125);
        // A count whose byte size overflows u64.
        let f = tmp(&array_header(10, u64::MAX / 4, 1000));
        let e = GgufFile::open(f.path()).unwrap_err();
        assert!(matches!(e, ChatError::Truncated { .. }), "{e}");
    }
}
