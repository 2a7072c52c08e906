//! Writing a dataset: `FILE.jsonl`, `FILE.card.json` and the ground-truth sidecar
//! `FILE.truth.jsonl`, each written to a temporary file in the same folder and renamed into
//! place, so a reader never sees a half-written file.

use std::io::Write;
use std::path::{Path, PathBuf};

use selfaware_types::sha256_hex;

use crate::card::{card_for, CardFiles, DatasetCard};
use crate::dataset::{BuildOutput, BuiltDataset};
use crate::error::{Error, Result};

/// Options of [`write`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Replace existing files instead of refusing.
    pub overwrite: bool,
}

/// The three files of a written dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetPaths {
    pub jsonl: PathBuf,
    pub card: PathBuf,
    pub truth: PathBuf,
}

impl DatasetPaths {
    /// The paths for `jsonl` (`x.jsonl` → `x.card.json`, `x.truth.jsonl`).
    pub fn for_jsonl(jsonl: &Path) -> Result<DatasetPaths> {
        let stem = jsonl_stem(jsonl)?;
        Ok(DatasetPaths {
            jsonl: jsonl.to_path_buf(),
            card: jsonl.with_file_name(format!("{stem}.card.json")),
            truth: jsonl.with_file_name(format!("{stem}.truth.jsonl")),
        })
    }

    /// The three paths: data, card, truth.
    pub fn all(&self) -> [&Path; 3] {
        [&self.jsonl, &self.card, &self.truth]
    }
}

fn jsonl_stem(path: &Path) -> Result<String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".jsonl"))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or_else(|| Error::BadOutputPath {
            path: path.to_path_buf(),
        })
}

/// Where the decorrelated twin of `jsonl` goes (`x.jsonl` → `x.decorrelated.jsonl`).
pub fn twin_path(jsonl: &Path) -> Result<PathBuf> {
    let stem = jsonl_stem(jsonl)?;
    Ok(jsonl.with_file_name(format!("{stem}.decorrelated.jsonl")))
}

/// The JSONL bytes of a dataset (one compact conversation per line) and of its truth sidecar.
pub fn render(ds: &BuiltDataset) -> Result<(Vec<u8>, Vec<u8>)> {
    let mut jsonl = Vec::new();
    let mut truth = Vec::new();
    for row in &ds.rows {
        serde_json::to_writer(&mut jsonl, &row.conversation).map_err(|source| Error::Json {
            what: "conversation",
            source,
        })?;
        jsonl.push(b'\n');
        serde_json::to_writer(&mut truth, &row.truth).map_err(|source| Error::Json {
            what: "row truth",
            source,
        })?;
        truth.push(b'\n');
    }
    Ok((jsonl, truth))
}

/// The card `write` would write for `ds` at `jsonl`.
pub fn card(ds: &BuiltDataset, jsonl: &Path) -> Result<DatasetCard> {
    let paths = DatasetPaths::for_jsonl(jsonl)?;
    let (rows, truth) = render(ds)?;
    Ok(card_for(ds, card_files(&paths, &rows, &truth)))
}

fn card_files(paths: &DatasetPaths, rows: &[u8], truth: &[u8]) -> CardFiles {
    let name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    CardFiles {
        jsonl: name(&paths.jsonl),
        jsonl_sha256: sha256_hex(rows),
        truth: name(&paths.truth),
        truth_sha256: sha256_hex(truth),
    }
}

fn refuse_existing(paths: &[&Path]) -> Result<()> {
    for p in paths {
        if p.exists() {
            return Err(Error::OutputExists {
                path: p.to_path_buf(),
            });
        }
    }
    Ok(())
}

fn atomic_write(path: &Path, bytes: &[u8], overwrite: bool) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let persist_err = |source: std::io::Error| Error::Persist {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".selfaware-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(persist_err)?;
    tmp.write_all(bytes).map_err(persist_err)?;
    tmp.as_file().sync_all().map_err(persist_err)?;
    if overwrite {
        tmp.persist(path).map_err(|e| persist_err(e.error))?;
    } else {
        tmp.persist_noclobber(path).map_err(|e| {
            if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                Error::OutputExists {
                    path: path.to_path_buf(),
                }
            } else {
                persist_err(e.error)
            }
        })?;
    }
    Ok(())
}

/// Writes `ds` to `jsonl` with its card and truth sidecar; returns the paths and the card.
/// Without `overwrite`, refuses (before writing anything) if any of the three files exists.
pub fn write(
    ds: &BuiltDataset,
    jsonl: &Path,
    opts: &WriteOptions,
) -> Result<(DatasetPaths, DatasetCard)> {
    let paths = DatasetPaths::for_jsonl(jsonl)?;
    if !opts.overwrite {
        refuse_existing(&paths.all())?;
    }
    write_checked(ds, paths, opts)
}

fn write_checked(
    ds: &BuiltDataset,
    paths: DatasetPaths,
    opts: &WriteOptions,
) -> Result<(DatasetPaths, DatasetCard)> {
    let (rows, truth) = render(ds)?;
    let card = card_for(ds, card_files(&paths, &rows, &truth));
    let mut card_bytes = serde_json::to_vec_pretty(&card).map_err(|source| Error::Json {
        what: "dataset card",
        source,
    })?;
    card_bytes.push(b'\n');
    // The data file last: once it exists, its card and truth do too.
    atomic_write(&paths.truth, &truth, opts.overwrite)?;
    atomic_write(&paths.card, &card_bytes, opts.overwrite)?;
    atomic_write(&paths.jsonl, &rows, opts.overwrite)?;
    Ok((paths, card))
}

/// Writes a build: the main dataset at `jsonl` and the decorrelated twin, if any, at
/// [`twin_path`]. Without `overwrite`, refuses before writing anything if any file exists.
pub fn write_output(
    out: &BuildOutput,
    jsonl: &Path,
    opts: &WriteOptions,
) -> Result<Vec<(DatasetPaths, DatasetCard)>> {
    let mut targets = vec![(&out.main, DatasetPaths::for_jsonl(jsonl)?)];
    if let Some(t) = &out.decorrelated {
        targets.push((t, DatasetPaths::for_jsonl(&twin_path(jsonl)?)?));
    }
    if !opts.overwrite {
        for (_, p) in &targets {
            refuse_existing(&p.all())?;
        }
    }
    targets
        .into_iter()
        .map(|(ds, p)| write_checked(ds, p, opts))
        .collect()
}
