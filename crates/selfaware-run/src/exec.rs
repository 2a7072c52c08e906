//! Runs a plan: each stage is a `selfaware` child process started in the run folder, with its
//! output in the stage's cache folder and its stdout/stderr appended to `logs/`.
//!
//! A stage is finished when `DIR/stage.json` exists with the stage's key: it is written
//! atomically (temporary file, rename) after the child succeeded and its output was hashed,
//! so a `kill -9` at any moment leaves either a finished stage or an unfinished one — never a
//! half-written record of completion. Unfinished stages are rerun; the commands they run
//! resume on their own (`train --resume` continues from the last checkpoint, `eval` skips
//! records already written, `data build --force` and `probe --out` rewrite atomically).
//! Children die with the orchestrator (`PR_SET_PDEATHSIG`), so a killed run leaves no
//! process writing into the folder; a lock (`flock`) keeps two runs out of one folder.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use selfaware_types::{sha256_hex, TOOL_VERSION};

use crate::error::{Result, RunError};
use crate::plan::{Plan, Stage};

/// `DIR/stage.json`: the record of a finished stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageRecord {
    pub name: String,
    pub kind: String,
    pub key: String,
    pub args: Vec<String>,
    /// The output file (relative to the run folder) and its sha256.
    pub output: Option<String>,
    pub output_sha256: Option<String>,
    pub wall_s: f64,
    pub threads: usize,
    pub tool_version: String,
}

/// Name of the completion record in a stage folder.
pub const STAGE_RECORD: &str = "stage.json";

/// Reads the completion record of `stage`, if the stage finished under its key.
pub fn finished(run_dir: &Path, stage: &Stage) -> Option<StageRecord> {
    let text = std::fs::read_to_string(run_dir.join(&stage.dir).join(STAGE_RECORD)).ok()?;
    let rec: StageRecord = serde_json::from_str(&text).ok()?;
    (rec.key == stage.key).then_some(rec)
}

/// Writes `bytes` to `path` atomically (a temporary file in the same folder, then a rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    selfaware_types::write_atomic(path, bytes).map_err(|e| {
        RunError::Io(std::io::Error::new(
            e.kind(),
            format!("writing {}: {e}", path.display()),
        ))
    })
}

/// sha256 of a file's bytes.
pub fn file_sha256(path: &Path) -> Result<String> {
    let bytes = fs_err::read(path)?;
    Ok(sha256_hex(&bytes))
}

/// An exclusive lock on a run folder, released when dropped (or when the process dies).
pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// Takes `RUN/.lock`, or fails with [`RunError::Locked`].
    pub fn acquire(run_dir: &Path) -> Result<RunLock> {
        fs_err::create_dir_all(run_dir)?;
        let path = run_dir.join(".lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
        // SAFETY: flock on a file descriptor we own; no memory is shared.
        let rc = unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(RunError::Locked(run_dir.to_path_buf()));
        }
        Ok(RunLock { _file: file })
    }
}

/// What the executor reports while it works.
#[derive(Debug, Clone)]
pub enum Event<'a> {
    /// Before anything runs: how many stages are finished already.
    Planned { total: usize, finished: usize },
    /// A stage was found finished and is skipped.
    Cached { index: usize, stage: &'a Stage },
    Started {
        index: usize,
        stage: &'a Stage,
        /// `--threads` of the child.
        threads: usize,
    },
    Finished {
        index: usize,
        stage: &'a Stage,
        wall_s: f64,
    },
}

/// How to run children.
pub struct ExecOptions {
    /// The `selfaware` binary.
    pub exe: PathBuf,
    /// Stages run at once, at most.
    pub jobs: usize,
    /// CPU threads shared by the children: each child gets `--threads` from what is free when
    /// it starts (see [`child_threads`]).
    pub cores: usize,
    /// Environment variables set for children (e.g. the tool's home).
    pub env: Vec<(String, String)>,
}

fn log_path(stage: &Stage) -> PathBuf {
    Path::new("logs").join(format!("{}-{}.log", stage.kind.name(), &stage.key[..16]))
}

fn tail(path: &Path, bytes: u64) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(bytes)));
    let mut s = String::new();
    let _ = f.read_to_string(&mut s);
    s
}

/// Runs one stage to completion and writes its record.
fn run_stage(run_dir: &Path, stage: &Stage, opts: &ExecOptions, threads: usize) -> Result<f64> {
    let started = Instant::now();
    fs_err::create_dir_all(run_dir.join(&stage.dir))?;
    fs_err::create_dir_all(run_dir.join("logs"))?;
    let log_rel = log_path(stage);
    let log_abs = run_dir.join(&log_rel);
    let mut log = File::options().create(true).append(true).open(&log_abs)?;
    writeln!(log, "=== selfaware {}", stage.args.join(" "))?;
    let mut cmd = Command::new(&opts.exe);
    cmd.arg("--threads")
        .arg(threads.to_string())
        .args(&stage.args)
        .current_dir(run_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log.try_clone()?));
    for (k, v) in &opts.env {
        cmd.env(k, v);
    }
    // SAFETY: prctl in the child between fork and exec; async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let status = cmd.status()?;
    if !status.success() {
        return Err(RunError::StageFailed {
            stage: stage.name.clone(),
            status: status.to_string(),
            log: log_abs.clone(),
            tail: tail(&log_abs, 2000),
        });
    }
    let (output, output_sha256) = match &stage.output {
        Some(o) => {
            let abs = run_dir.join(o);
            if !abs.exists() {
                return Err(RunError::MissingOutput {
                    stage: stage.name.clone(),
                    output: abs,
                });
            }
            (Some(o.display().to_string()), Some(file_sha256(&abs)?))
        }
        None => (None, None),
    };
    let wall_s = started.elapsed().as_secs_f64();
    let rec = StageRecord {
        name: stage.name.clone(),
        kind: stage.kind.name().to_string(),
        key: stage.key.clone(),
        args: stage.args.clone(),
        output,
        output_sha256,
        wall_s,
        threads,
        tool_version: TOOL_VERSION.to_string(),
    };
    let mut bytes = serde_json::to_vec_pretty(&rec).map_err(|e| RunError::Plan {
        message: e.to_string(),
    })?;
    bytes.push(b'\n');
    write_atomic(&run_dir.join(&stage.dir).join(STAGE_RECORD), &bytes)?;
    Ok(wall_s)
}

/// Threads for a child started now: the free threads shared evenly among the stages that could
/// start now (ready ones, up to the free job slots), at least 1 (so with more jobs than cores,
/// stages share cores, as remote stages that mostly wait can). A lone stage gets every free
/// core; two stages on 2 cores get one each, which is faster in total than running them one
/// after the other on both cores (a one-thread child never waits for another thread). Thread
/// counts change no result: products and fused kernels split rows and columns, never a sum,
/// and `eval` writes its records in prompt order whatever its concurrency.
pub fn child_threads(free_cores: usize, ready: usize, free_slots: usize) -> usize {
    let share = ready.min(free_slots).max(1);
    (free_cores / share).max(1)
}

/// Runs every unfinished stage of `plan`, dependencies first, up to `opts.jobs` at once on
/// `opts.cores` threads.
/// Returns the indices of the stages that ran (the others were cached).
pub fn execute(
    run_dir: &Path,
    plan: &Plan,
    opts: &ExecOptions,
    on_event: &mut dyn FnMut(Event),
) -> Result<Vec<usize>> {
    let n = plan.stages.len();
    let mut done = vec![false; n];
    for (i, s) in plan.stages.iter().enumerate() {
        done[i] = finished(run_dir, s).is_some();
    }
    on_event(Event::Planned {
        total: n,
        finished: done.iter().filter(|d| **d).count(),
    });
    for (i, s) in plan.stages.iter().enumerate() {
        if done[i] {
            on_event(Event::Cached { index: i, stage: s });
        }
    }
    let mut ran = Vec::new();
    // Running stages and their threads.
    let mut running: BTreeMap<usize, usize> = BTreeMap::new();
    let (tx, rx) = mpsc::channel::<(usize, Result<f64>)>();
    let jobs = opts.jobs.max(1);
    let cores = opts.cores.max(1);
    std::thread::scope(|scope| -> Result<()> {
        let mut failure: Option<RunError> = None;
        loop {
            // Start what is ready, in plan order.
            if failure.is_none() {
                let ready: Vec<usize> = (0..n)
                    .filter(|&i| !done[i] && !running.contains_key(&i))
                    .filter(|&i| plan.stages[i].deps.iter().all(|&d| done[d]))
                    .collect();
                for (k, &i) in ready.iter().enumerate() {
                    let used: usize = running.values().sum();
                    if running.len() >= jobs {
                        break;
                    }
                    // More jobs than cores (e.g. stages waiting on a server) share the cores.
                    let threads = child_threads(
                        cores.saturating_sub(used),
                        ready.len() - k,
                        jobs - running.len(),
                    );
                    running.insert(i, threads);
                    on_event(Event::Started {
                        index: i,
                        stage: &plan.stages[i],
                        threads,
                    });
                    let tx = tx.clone();
                    let stage = &plan.stages[i];
                    scope.spawn(move || {
                        let r = run_stage(run_dir, stage, opts, threads);
                        let _ = tx.send((i, r));
                    });
                }
            }
            if running.is_empty() {
                break;
            }
            let Ok((i, r)) = rx.recv() else { break };
            running.remove(&i);
            match r {
                Ok(wall_s) => {
                    done[i] = true;
                    ran.push(i);
                    on_event(Event::Finished {
                        index: i,
                        stage: &plan.stages[i],
                        wall_s,
                    });
                }
                Err(e) => {
                    if failure.is_none() {
                        failure = Some(e);
                    }
                }
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    })?;
    Ok(ran)
}
