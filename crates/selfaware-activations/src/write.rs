//! A safetensors file written as it goes: the header first (every tensor's shape is known
//! before any data is), then rows written in place at their offsets, into a temporary file
//! beside the output that is renamed over it only once complete. Memory does not grow with the
//! data.
//!
//! The format (<https://github.com/huggingface/safetensors>): an 8-byte little-endian header
//! length, a JSON header (`{"NAME": {"dtype", "shape", "data_offsets": [begin, end]}, …,
//! "__metadata__": {str: str}}`, padded with spaces to a multiple of 8 bytes), then the data,
//! tensors back to back, row-major, little-endian.

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{io, ActivationsError, Result};

/// Element types the writer knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    I64,
    U8,
}

impl Dtype {
    fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "F32",
            Dtype::I64 => "I64",
            Dtype::U8 => "U8",
        }
    }

    fn size(self) -> u64 {
        match self {
            Dtype::F32 => 4,
            Dtype::I64 => 8,
            Dtype::U8 => 1,
        }
    }
}

/// One tensor of the file, before any data is written.
#[derive(Debug, Clone)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
}

impl TensorSpec {
    fn bytes(&self) -> u64 {
        self.shape.iter().map(|&d| d as u64).product::<u64>() * self.dtype.size()
    }

    /// Bytes of one row (everything but the first dimension).
    fn row_bytes(&self) -> u64 {
        self.shape
            .iter()
            .skip(1)
            .map(|&d| d as u64)
            .product::<u64>()
            * self.dtype.size()
    }
}

/// A safetensors file being written.
pub struct StreamWriter {
    out: PathBuf,
    force: bool,
    tmp: tempfile::NamedTempFile,
    /// Per tensor: its spec and where its data starts in the file.
    tensors: Vec<(TensorSpec, u64)>,
}

impl StreamWriter {
    /// Lays out `tensors` in the given order, writes the header with `metadata`, and sizes the
    /// temporary file to its final length. Refuses an existing `out` unless `force`.
    pub fn create(
        out: &Path,
        force: bool,
        tensors: Vec<TensorSpec>,
        metadata: &BTreeMap<String, String>,
    ) -> Result<Self> {
        check_out(out, force)?;
        let mut header = serde_json::Map::new();
        header.insert(
            "__metadata__".into(),
            serde_json::to_value(metadata).expect("strings"),
        );
        let mut offset = 0u64;
        let mut starts = Vec::with_capacity(tensors.len());
        for t in &tensors {
            if t.name == "__metadata__" || header.contains_key(&t.name) {
                return Err(ActivationsError::Input(format!(
                    "tensor name {:?} is used twice",
                    t.name
                )));
            }
            let end = offset + t.bytes();
            header.insert(
                t.name.clone(),
                serde_json::json!({
                    "dtype": t.dtype.name(),
                    "shape": t.shape,
                    "data_offsets": [offset, end],
                }),
            );
            starts.push(offset);
            offset = end;
        }
        let mut json = serde_json::to_vec(&header).expect("a JSON map");
        while json.len() % 8 != 0 {
            json.push(b' ');
        }
        let data_start = 8 + json.len() as u64;
        let dir = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(io(dir))?;
        let f = tmp.as_file();
        f.set_len(data_start + offset).map_err(io(tmp.path()))?;
        f.write_all_at(&(json.len() as u64).to_le_bytes(), 0)
            .map_err(io(tmp.path()))?;
        f.write_all_at(&json, 8).map_err(io(tmp.path()))?;
        Ok(StreamWriter {
            out: out.to_path_buf(),
            force,
            tmp,
            tensors: tensors
                .into_iter()
                .zip(starts)
                .map(|(t, s)| (t, data_start + s))
                .collect(),
        })
    }

    /// Writes `bytes` (whole rows, little-endian) into tensor `index` from row `row` on.
    fn write_rows(&self, index: usize, row: usize, bytes: &[u8]) -> Result<()> {
        let (spec, start) = &self.tensors[index];
        let rb = spec.row_bytes();
        let rows = spec.shape.first().copied().unwrap_or(0) as u64;
        if rb == 0 || bytes.len() as u64 % rb != 0 || row as u64 + bytes.len() as u64 / rb > rows {
            return Err(ActivationsError::Input(format!(
                "{} bytes at row {row} do not fit tensor {} of shape {:?}",
                bytes.len(),
                spec.name,
                spec.shape
            )));
        }
        self.tmp
            .as_file()
            .write_all_at(bytes, start + row as u64 * rb)
            .map_err(io(self.tmp.path()))
    }

    pub fn write_f32(&self, index: usize, row: usize, v: &[f32]) -> Result<()> {
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.write_rows(index, row, &bytes)
    }

    pub fn write_i64(&self, index: usize, row: usize, v: &[i64]) -> Result<()> {
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.write_rows(index, row, &bytes)
    }

    pub fn write_u8(&self, index: usize, row: usize, v: &[u8]) -> Result<()> {
        self.write_rows(index, row, v)
    }

    /// Flushes the file to disk and renames it to the output path (over an existing file only
    /// with `force`). Returns the file's size.
    pub fn finish(self) -> Result<u64> {
        let f = self.tmp.as_file();
        f.sync_all().map_err(io(self.tmp.path()))?;
        let len = f.metadata().map_err(io(self.tmp.path()))?.len();
        let out = self.out.clone();
        let persisted = if self.force {
            self.tmp.persist(&out)
        } else {
            self.tmp.persist_noclobber(&out)
        };
        persisted.map_err(|e| {
            if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                ActivationsError::OutExists { path: out.clone() }
            } else {
                io(&out)(e.error)
            }
        })?;
        Ok(len)
    }
}

/// Refuses an existing output path unless `force`, and a folder even with it.
pub fn check_out(out: &Path, force: bool) -> Result<()> {
    if out.is_dir() {
        return Err(ActivationsError::Input(format!(
            "{} is a folder\nhint: --out names the safetensors file to write",
            out.display()
        )));
    }
    if out.exists() && !force {
        return Err(ActivationsError::OutExists {
            path: out.to_path_buf(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_streamed_file_reads_back_with_rows_in_place_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("a.safetensors");
        let specs = vec![
            TensorSpec {
                name: "x".into(),
                dtype: Dtype::F32,
                shape: vec![3, 2],
            },
            TensorSpec {
                name: "ids".into(),
                dtype: Dtype::I64,
                shape: vec![3],
            },
            TensorSpec {
                name: "h".into(),
                dtype: Dtype::U8,
                shape: vec![1, 4],
            },
        ];
        let meta: BTreeMap<String, String> = [("k".to_string(), "v".to_string())].into();
        let w = StreamWriter::create(&out, false, specs.clone(), &meta).unwrap();
        // Rows out of order: each lands at its place.
        w.write_f32(0, 2, &[5.0, 6.0]).unwrap();
        w.write_f32(0, 0, &[1.0, 2.0, 3.0, 4.0]).unwrap();
        w.write_i64(1, 0, &[7, 8, 9]).unwrap();
        w.write_u8(2, 0, &[1, 2, 3, 4]).unwrap();
        assert!(w.write_f32(0, 2, &[1.0, 2.0, 3.0, 4.0]).is_err());
        assert!(!out.exists(), "nothing at the output before finish");
        w.finish().unwrap();
        let bytes = std::fs::read(&out).unwrap();
        let (n, m) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(m.metadata().as_ref().unwrap()["k"], "v");
        assert_eq!((8 + n) % 8, 0);
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let x = st.tensor("x").unwrap();
        let xs: Vec<f32> = x
            .data()
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(xs, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(st.tensor("ids").unwrap().shape(), [3]);
        assert_eq!(st.tensor("h").unwrap().data(), [1, 2, 3, 4]);
        // An existing output is refused, replaced with force.
        let e = StreamWriter::create(&out, false, specs.clone(), &meta)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("already exists") && e.contains("--force"), "{e}");
        let w = StreamWriter::create(&out, true, specs, &meta).unwrap();
        w.finish().unwrap();
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    }
}
