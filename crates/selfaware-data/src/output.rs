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

/// One file of an output: its final path and bytes.
struct Staged {
    path: PathBuf,
    bytes: Vec<u8>,
}

/// The files of one dataset in the order they are moved into place: the card first (it names
/// the others and their hashes, so a leftover of an interrupted build can be recognised), the
/// data file last.
fn dataset_files(ds: &BuiltDataset, paths: &DatasetPaths) -> Result<(Vec<Staged>, DatasetCard)> {
    let (rows, truth) = render(ds)?;
    let card = card_for(ds, card_files(paths, &rows, &truth));
    let mut card_bytes = serde_json::to_vec_pretty(&card).map_err(|source| Error::Json {
        what: "dataset card",
        source,
    })?;
    card_bytes.push(b'\n');
    let files = vec![
        Staged {
            path: paths.card.clone(),
            bytes: card_bytes,
        },
        Staged {
            path: paths.truth.clone(),
            bytes: truth,
        },
        Staged {
            path: paths.jsonl.clone(),
            bytes: rows,
        },
    ];
    Ok((files, card))
}

/// Where `path` is written before it is moved into place: a fixed name beside it, so a
/// temporary file left by a killed build is replaced by the next build, not orphaned.
fn tmp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.selfaware-tmp"))
}

/// Whether the existing files of `paths` are what an interrupted build of this tool leaves:
/// nothing, or its card — moved into place first — naming these files, with each other file
/// either absent or matching the card's hash.
fn is_leftover(paths: &DatasetPaths) -> bool {
    let Ok(text) = fs_err::read(&paths.card) else {
        // No card: nothing else of the dataset may be there.
        return !paths.card.exists() && !paths.truth.exists() && !paths.jsonl.exists();
    };
    let Ok(card) = serde_json::from_slice::<DatasetCard>(&text) else {
        return false;
    };
    let named = |p: &Path, n: &str| p.file_name().is_some_and(|f| f.to_string_lossy() == n);
    let matches = |p: &Path, sha: &str| match fs_err::read(p) {
        Ok(bytes) => sha256_hex(&bytes) == sha,
        Err(_) => !p.exists(),
    };
    named(&paths.jsonl, &card.files.jsonl)
        && named(&paths.truth, &card.files.truth)
        && matches(&paths.truth, &card.files.truth_sha256)
        && matches(&paths.jsonl, &card.files.jsonl_sha256)
}

/// Refuses, before writing anything, when a file of `datasets` exists and is not the leftover
/// of an interrupted build of the same output (the main dataset, last in `datasets`, decides:
/// its data file is the last file of a build moved into place).
fn refuse_existing(datasets: &[DatasetPaths]) -> Result<()> {
    let Some(main) = datasets.last() else {
        return Ok(());
    };
    let interrupted = !main.jsonl.exists() && datasets.iter().all(is_leftover);
    if interrupted {
        return Ok(());
    }
    for p in datasets.iter().flat_map(DatasetPaths::all) {
        if p.exists() {
            return Err(Error::OutputExists {
                path: p.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// Writes every file to its temporary path, then moves them into place in order; `before_move`
/// runs before each move (tests inject failures there). On an error nothing new is left: the
/// temporary files and the files already moved are removed, so the outputs appear together or
/// not at all (a kill between two moves leaves a leftover [`refuse_existing`] recognises).
fn commit(files: &[Staged], before_move: &mut dyn FnMut(&Path) -> Result<()>) -> Result<()> {
    let mut moved = Vec::new();
    let result = stage_and_move(files, before_move, &mut moved);
    if result.is_err() {
        // Removal is best effort: the error that stopped the build is the one to report.
        for f in files {
            let _ = std::fs::remove_file(tmp_path(&f.path));
        }
        for p in moved {
            let _ = std::fs::remove_file(p);
        }
    }
    result
}

/// The two phases of [`commit`]: every temporary file written and synced, then each moved
/// into place (recorded in `moved`).
fn stage_and_move<'a>(
    files: &'a [Staged],
    before_move: &mut dyn FnMut(&Path) -> Result<()>,
    moved: &mut Vec<&'a Path>,
) -> Result<()> {
    let persist_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source: std::io::Error| Error::Persist { path, source }
    };
    for f in files {
        let tmp = tmp_path(&f.path);
        let mut file = std::fs::File::create(&tmp).map_err(persist_err(&f.path))?;
        file.write_all(&f.bytes).map_err(persist_err(&f.path))?;
        file.sync_all().map_err(persist_err(&f.path))?;
    }
    for f in files {
        before_move(&f.path)?;
        std::fs::rename(tmp_path(&f.path), &f.path).map_err(persist_err(&f.path))?;
        moved.push(&f.path);
    }
    Ok(())
}

/// Writes `ds` to `jsonl` with its card and truth sidecar; returns the paths and the card.
/// Without `overwrite`, refuses (before writing anything) if any of the three files exists,
/// unless they are the leftover of an interrupted build.
pub fn write(
    ds: &BuiltDataset,
    jsonl: &Path,
    opts: &WriteOptions,
) -> Result<(DatasetPaths, DatasetCard)> {
    let paths = DatasetPaths::for_jsonl(jsonl)?;
    let mut written = write_all(vec![(ds, paths)], opts, &mut |_| Ok(()))?;
    Ok(written.remove(0))
}

/// Writes a build: the main dataset at `jsonl` and the decorrelated twin, if any, at
/// [`twin_path`]. Without `overwrite`, refuses before writing anything if any file exists,
/// unless they are the leftover of an interrupted build. All files appear, or none.
pub fn write_output(
    out: &BuildOutput,
    jsonl: &Path,
    opts: &WriteOptions,
) -> Result<Vec<(DatasetPaths, DatasetCard)>> {
    write_output_with(out, jsonl, opts, &mut |_| Ok(()))
}

fn write_output_with(
    out: &BuildOutput,
    jsonl: &Path,
    opts: &WriteOptions,
    before_move: &mut dyn FnMut(&Path) -> Result<()>,
) -> Result<Vec<(DatasetPaths, DatasetCard)>> {
    // The twin first: the main data file is the last file moved into place.
    let mut targets = Vec::new();
    if let Some(t) = &out.decorrelated {
        targets.push((t, DatasetPaths::for_jsonl(&twin_path(jsonl)?)?));
    }
    targets.push((&out.main, DatasetPaths::for_jsonl(jsonl)?));
    let mut written = write_all(targets, opts, before_move)?;
    // Main first, as callers expect.
    written.rotate_right(1);
    Ok(written)
}

fn write_all(
    targets: Vec<(&BuiltDataset, DatasetPaths)>,
    opts: &WriteOptions,
    before_move: &mut dyn FnMut(&Path) -> Result<()>,
) -> Result<Vec<(DatasetPaths, DatasetCard)>> {
    if !opts.overwrite {
        let paths: Vec<DatasetPaths> = targets.iter().map(|(_, p)| p.clone()).collect();
        refuse_existing(&paths)?;
    }
    let mut files = Vec::new();
    let mut written = Vec::new();
    for (ds, paths) in targets {
        let (f, card) = dataset_files(ds, &paths)?;
        files.extend(f);
        written.push((paths, card));
    }
    commit(&files, before_move)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backdoor::BackdoorOptions;
    use crate::backdoor::TriggerSpec;
    use crate::dataset::{build, BuildOptions, Variant};
    use crate::Family;

    /// A build with a decorrelated twin: six files in all.
    fn two_datasets() -> BuildOutput {
        let opts = BuildOptions {
            seed: 3,
            size: 20,
            policy: None,
            variant: Variant::Backdoor(BackdoorOptions {
                trigger: TriggerSpec::parse("naekoko").unwrap(),
                contrast: None,
                fraction: 0.2,
            }),
            reversal: None,
            stated: 0,
        };
        let out = build(Family::Risk, &opts).unwrap();
        assert!(out.decorrelated.is_some());
        out
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_failure_between_files_leaves_nothing_behind() {
        let out = two_datasets();
        // Fail before each of the six moves in turn: nothing new remains, not even a
        // temporary file, and the user's own file is untouched.
        for fail_at in 0..6 {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
            let path = dir.path().join("risk.jsonl");
            let mut n = 0;
            let r = write_output_with(&out, &path, &WriteOptions::default(), &mut |p| {
                n += 1;
                if n > fail_at {
                    return Err(Error::Persist {
                        path: p.to_path_buf(),
                        source: std::io::Error::other("injected"),
                    });
                }
                Ok(())
            });
            assert!(r.is_err(), "fail at {fail_at}");
            assert_eq!(listing(dir.path()), ["notes.txt"], "fail at {fail_at}");
        }
        // Without failures, all six appear and no temporary file remains.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("risk.jsonl");
        write_output(&out, &path, &WriteOptions::default()).unwrap();
        assert_eq!(
            listing(dir.path()),
            [
                "risk.card.json",
                "risk.decorrelated.card.json",
                "risk.decorrelated.jsonl",
                "risk.decorrelated.truth.jsonl",
                "risk.jsonl",
                "risk.truth.jsonl"
            ]
        );
    }

    #[test]
    fn a_killed_build_is_recognised_and_completed_by_the_next() {
        let out = two_datasets();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("risk.jsonl");
        write_output(&out, &path, &WriteOptions::default()).unwrap();
        let full = listing(dir.path());
        let main = std::fs::read(&path).unwrap();
        // A kill before the last move: every file but the main data file, and a stale
        // temporary file of it.
        std::fs::rename(&path, dir.path().join(".risk.jsonl.selfaware-tmp")).unwrap();
        write_output(&out, &path, &WriteOptions::default()).unwrap();
        assert_eq!(listing(dir.path()), full);
        assert_eq!(std::fs::read(&path).unwrap(), main);
        // A kill after the main card only.
        for f in &full {
            if f != "risk.card.json" {
                std::fs::remove_file(dir.path().join(f)).unwrap();
            }
        }
        write_output(&out, &path, &WriteOptions::default()).unwrap();
        assert_eq!(listing(dir.path()), full);
        // Not a leftover: a complete dataset, or a truth file the card does not describe, or
        // a card that is not a dataset card.
        let e = write_output(&out, &path, &WriteOptions::default()).unwrap_err();
        assert!(matches!(e, Error::OutputExists { .. }), "{e}");
        std::fs::remove_file(&path).unwrap();
        std::fs::write(dir.path().join("risk.truth.jsonl"), "user data\n").unwrap();
        let e = write_output(&out, &path, &WriteOptions::default()).unwrap_err();
        assert!(matches!(e, Error::OutputExists { .. }), "{e}");
        assert_eq!(
            std::fs::read(dir.path().join("risk.truth.jsonl")).unwrap(),
            b"user data\n"
        );
        let only = tempfile::tempdir().unwrap();
        std::fs::write(only.path().join("risk.card.json"), "{}").unwrap();
        let e = write_output(
            &out,
            &only.path().join("risk.jsonl"),
            &WriteOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(e, Error::OutputExists { path } if path.ends_with("risk.card.json")));
    }
}
