//! A sandbox for model-written Python (the "write a function" question).
//!
//! Each run is a separate process: `python3 -I -S sandbox_runner.py` (isolated mode: no
//! user site, no `PYTHON*` variables, script directory not on the path; `-S`: no
//! site-packages), with a fresh private directory as its working directory and empty
//! environment. Layers, from the kernel up:
//!
//! 1. **resource limits** (`setrlimit` before `exec`): CPU seconds (`RLIMIT_CPU`), address
//!    space (`RLIMIT_AS`), size of any file written, including captured stdout/stderr
//!    (`RLIMIT_FSIZE`), open files (`RLIMIT_NOFILE`), and processes (`RLIMIT_NPROC`);
//! 2. **unprivileged user** (when the parent runs as root): the child drops to
//!    [`SandboxConfig::unprivileged_uid`] (default 65534, "nobody"), so it cannot write
//!    outside world-writable places and `RLIMIT_NPROC` is enforced (the kernel does not
//!    enforce it for root);
//! 3. **network namespace**: `unshare(CLONE_NEWUSER | CLONE_NEWNET)` gives the child an
//!    empty network stack (not even a working loopback), so no connection can leave it;
//!    probed once in [`Sandbox::new`], used when the kernel allows it;
//! 4. **audit hook** in the harness (Python's `sys.addaudithook`): refuses sockets,
//!    subprocesses, `fork`/`exec`/`kill`, `ctypes`, and opening for writing, deleting or
//!    renaming anything outside the private directory;
//! 5. **timers**: a per-call CPU timer in the harness (a looping call fails, the next input
//!    still runs) and a wall-clock timeout after which the whole process group is killed.
//!
//! Known limits: the audit hook is in-process, so it stops accidents and ordinary code, not
//! a determined attacker with C-level tricks (the kernel layers remain); model code could
//! write to the harness's result file descriptor and so forge its own results.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};

const RUNNER: &str = include_str!("sandbox_runner.py");

/// Limits and layers of the sandbox.
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxConfig {
    /// The Python interpreter (an absolute path; it must be readable by the unprivileged
    /// user). Default `/usr/bin/python3`.
    pub python: PathBuf,
    /// `RLIMIT_CPU` of the whole run, seconds (default 2).
    pub cpu_seconds: u64,
    /// CPU seconds one call of the function may use before it is interrupted (default 0.25).
    pub per_call_cpu_seconds: f64,
    /// `RLIMIT_AS`, bytes (default 256 MiB).
    pub memory_bytes: u64,
    /// `RLIMIT_FSIZE` and the most bytes read back of any output file (default 1 MiB).
    pub output_bytes: u64,
    /// Wall-clock limit, after which the process group is killed (default 10 s).
    pub wall_timeout: Duration,
    /// `RLIMIT_NPROC` (default 8). Set only when the uid drop is active: the kernel does not
    /// enforce it for root, and for any other user it would count all their processes.
    pub max_processes: u64,
    /// Drop to `unprivileged_uid` when running as root (default true).
    pub drop_privileges: bool,
    /// The uid and gid to drop to (default 65534).
    pub unprivileged_uid: u32,
    /// Use a fresh user + network namespace when the kernel allows it (default true).
    pub network_namespace: bool,
    /// Fail in [`Sandbox::new`] if the namespace is not available (default false).
    pub require_network_namespace: bool,
    /// Install the Python audit hook (default true).
    pub audit_hook: bool,
    /// Where private directories are created; `None` = the system temporary directory.
    pub work_root: Option<PathBuf>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            python: PathBuf::from("/usr/bin/python3"),
            cpu_seconds: 2,
            per_call_cpu_seconds: 0.25,
            memory_bytes: 256 * 1024 * 1024,
            output_bytes: 1024 * 1024,
            wall_timeout: Duration::from_secs(10),
            max_processes: 8,
            drop_privileges: true,
            unprivileged_uid: 65534,
            network_namespace: true,
            require_network_namespace: false,
            audit_hook: true,
            work_root: None,
        }
    }
}

/// The layers actually in force (some depend on the kernel and on running as root).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveLayers {
    pub rlimits: bool,
    pub uid_drop: bool,
    pub network_namespace: bool,
    pub audit_hook: bool,
}

/// How one call of the function ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    /// Returned a finite int or float.
    Value(f64),
    /// Returned something else (its repr).
    NotANumber(String),
    /// Raised (or ran past its CPU time); the exception's type and message.
    Raised(String),
    /// Never ran: defining the function failed, or the process died first.
    NotRun,
}

/// How the process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Termination {
    /// Exited with this status.
    Exited(i32),
    /// Killed by this signal (e.g. 24 = SIGXCPU at the CPU limit).
    Signaled(i32),
    /// Ran past the wall-clock limit and was killed.
    WallTimeout,
}

/// Result of [`Sandbox::run_function`].
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionRun {
    /// One per input, in order.
    pub outcomes: Vec<CallOutcome>,
    /// Set when defining the function failed (syntax error, missing name, blocked import).
    pub definition_error: Option<String>,
    pub termination: Termination,
    /// The end of the child's stderr (at most 2 000 bytes).
    pub stderr_tail: String,
    pub wall: Duration,
}

/// A configured sandbox. Creating one checks the interpreter and probes the namespace.
#[derive(Debug, Clone)]
pub struct Sandbox {
    config: SandboxConfig,
    layers: ActiveLayers,
}

#[derive(Serialize)]
struct Job<'a> {
    code: &'a str,
    func_name: &'a str,
    inputs: &'a [String],
    per_call_seconds: f64,
    audit_hook: bool,
}

#[derive(Deserialize)]
struct ResultLine {
    i: i64,
    #[serde(default)]
    value: Option<f64>,
    #[serde(default)]
    other: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

fn sandbox_err(what: impl Into<String>) -> EvalError {
    EvalError::Sandbox(what.into())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

impl Sandbox {
    /// Checks the interpreter and probes which layers this machine supports.
    pub fn new(config: SandboxConfig) -> Result<Sandbox> {
        if !config.python.is_absolute() {
            return Err(sandbox_err(format!(
                "interpreter `{}` must be an absolute path\nhint: e.g. /usr/bin/python3",
                config.python.display()
            )));
        }
        if !config.python.exists() {
            return Err(sandbox_err(format!(
                "interpreter `{}` does not exist",
                config.python.display()
            )));
        }
        let mut sb = Sandbox {
            layers: ActiveLayers {
                rlimits: true,
                uid_drop: config.drop_privileges && is_root(),
                network_namespace: config.network_namespace,
                audit_hook: config.audit_hook,
            },
            config,
        };
        if sb.layers.network_namespace {
            let probe = sb.run_raw("def f(x):\n    return 0.0\n", "f", &["probe".to_string()]);
            let works = matches!(&probe, Ok(r) if r.outcomes == vec![CallOutcome::Value(0.0)]);
            if !works {
                if sb.config.require_network_namespace {
                    let why = match probe {
                        Ok(r) => format!("{:?}: {}", r.termination, r.stderr_tail),
                        Err(e) => e.to_string(),
                    };
                    return Err(sandbox_err(format!(
                        "a user + network namespace is required but unavailable: {why}"
                    )));
                }
                sb.layers.network_namespace = false;
            }
        }
        let check = sb.run_raw("def f(x):\n    return 0.25\n", "f", &["check".to_string()])?;
        if check.outcomes != vec![CallOutcome::Value(0.25)] {
            return Err(sandbox_err(format!(
                "the sandbox cannot run a trivial function ({:?}; stderr: {})",
                check.termination, check.stderr_tail
            )));
        }
        Ok(sb)
    }

    /// The layers in force.
    pub fn layers(&self) -> ActiveLayers {
        self.layers
    }

    /// The configuration.
    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// Defines `func_name` from `code` (cleaned with [`clean_code`]) and calls it on every
    /// input, in one sandboxed process.
    pub fn run_function(
        &self,
        code: &str,
        func_name: &str,
        inputs: &[String],
    ) -> Result<FunctionRun> {
        self.run_raw(&clean_code(code), func_name, inputs)
    }

    fn run_raw(&self, code: &str, func_name: &str, inputs: &[String]) -> Result<FunctionRun> {
        let c = &self.config;
        let mut builder = tempfile::Builder::new();
        builder.prefix("selfaware-sandbox-");
        let dir = match &c.work_root {
            Some(root) => builder.tempdir_in(root),
            None => builder.tempdir(),
        }
        .map_err(|e| sandbox_err(format!("could not create a private directory: {e}")))?;
        let path = dir.path();
        let job = Job {
            code,
            func_name,
            inputs,
            per_call_seconds: c.per_call_cpu_seconds,
            audit_hook: self.layers.audit_hook,
        };
        let job_json =
            serde_json::to_string(&job).map_err(|e| EvalError::Serialize(e.to_string()))?;
        fs_err::write(path.join("job.json"), job_json)?;
        fs_err::write(path.join("sandbox_runner.py"), RUNNER)?;
        let stdout = fs_err::File::create(path.join("stdout.txt"))?
            .into_parts()
            .0;
        let stderr = fs_err::File::create(path.join("stderr.txt"))?
            .into_parts()
            .0;
        let uid = self.layers.uid_drop.then_some(c.unprivileged_uid);
        if let Some(uid) = uid {
            std::os::unix::fs::chown(path, Some(uid), Some(uid)).map_err(|e| {
                sandbox_err(format!(
                    "could not hand {} to uid {uid}: {e}",
                    path.display()
                ))
            })?;
        }

        let limits = [
            (libc::RLIMIT_CPU, c.cpu_seconds, c.cpu_seconds + 1),
            (libc::RLIMIT_AS, c.memory_bytes, c.memory_bytes),
            (libc::RLIMIT_FSIZE, c.output_bytes, c.output_bytes),
            (libc::RLIMIT_NOFILE, 64, 64),
            (libc::RLIMIT_CORE, 0, 0),
        ];
        let nproc = uid.map(|_| c.max_processes);
        let netns = self.layers.network_namespace;
        let mut cmd = Command::new(&c.python);
        cmd.args(["-I", "-S", "sandbox_runner.py"])
            .current_dir(path)
            .env_clear()
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        // SAFETY: the closure runs in the forked child before exec and only makes
        // async-signal-safe system calls (setsid, setrlimit, setgroups, setgid, setuid,
        // unshare) on values computed before the fork.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                for (res, soft, hard) in limits {
                    let lim = libc::rlimit {
                        rlim_cur: soft as libc::rlim_t,
                        rlim_max: hard as libc::rlim_t,
                    };
                    if libc::setrlimit(res, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if let Some(n) = nproc {
                    let lim = libc::rlimit {
                        rlim_cur: n as libc::rlim_t,
                        rlim_max: n as libc::rlim_t,
                    };
                    if libc::setrlimit(libc::RLIMIT_NPROC, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if let Some(uid) = uid {
                    if libc::setgroups(0, std::ptr::null()) != 0
                        || libc::setgid(uid as libc::gid_t) != 0
                        || libc::setuid(uid as libc::uid_t) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if netns && libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let start = Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| sandbox_err(format!("could not start {}: {e}", c.python.display())))?;
        let pgid = child.id() as libc::pid_t;
        let termination = loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    use std::os::unix::process::ExitStatusExt;
                    break match (status.code(), status.signal()) {
                        (Some(code), _) => Termination::Exited(code),
                        (None, Some(sig)) => Termination::Signaled(sig),
                        (None, None) => Termination::Exited(-1),
                    };
                }
                Ok(None) if start.elapsed() >= c.wall_timeout => {
                    // SAFETY: kill has no memory-safety preconditions; pgid is the group
                    // this run created with setsid.
                    unsafe { libc::kill(-pgid, libc::SIGKILL) };
                    let _ = child.wait();
                    break Termination::WallTimeout;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(sandbox_err(format!("waiting for the child: {e}"))),
            }
        };
        // Whatever the child left running in its group goes too.
        // SAFETY: as above.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let wall = start.elapsed();

        let results = read_capped(&path.join("results.jsonl"), c.output_bytes)?;
        let stderr = read_capped(&path.join("stderr.txt"), c.output_bytes)?;
        let mut outcomes = vec![CallOutcome::NotRun; inputs.len()];
        let mut seen = vec![false; inputs.len()];
        let mut definition_error = None;
        for line in results.lines() {
            let Ok(r) = serde_json::from_str::<ResultLine>(line) else {
                continue;
            };
            if r.i < 0 {
                definition_error.get_or_insert(r.error.unwrap_or_default());
                continue;
            }
            let i = r.i as usize;
            if i >= inputs.len() || seen[i] {
                continue;
            }
            seen[i] = true;
            outcomes[i] = match (r.value, r.other, r.error) {
                (Some(v), _, _) => CallOutcome::Value(v),
                (None, Some(o), _) => CallOutcome::NotANumber(o),
                (None, None, Some(e)) => CallOutcome::Raised(e),
                (None, None, None) => CallOutcome::NotRun,
            };
        }
        let tail_start = stderr.len().saturating_sub(2000);
        let tail_start = (tail_start..stderr.len())
            .find(|&i| stderr.is_char_boundary(i))
            .unwrap_or(stderr.len());
        Ok(FunctionRun {
            outcomes,
            definition_error,
            termination,
            stderr_tail: stderr[tail_start..].to_string(),
            wall,
        })
    }
}

fn read_capped(path: &Path, cap: u64) -> Result<String> {
    let file = match fs_err::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(e.into()),
    };
    let mut buf = Vec::new();
    file.take(cap).read_to_end(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The paper's clean-up of generated code: drop leading and trailing lines that start with
/// three backticks, and every line that calls `nltk.download`.
pub fn clean_code(code: &str) -> String {
    let mut lines: Vec<&str> = code
        .lines()
        .filter(|l| !l.contains("nltk.download"))
        .collect();
    while lines
        .first()
        .is_some_and(|l| l.trim_start().starts_with("```"))
    {
        lines.remove(0);
    }
    while lines
        .last()
        .is_some_and(|l| l.trim_start().starts_with("```"))
    {
        lines.pop();
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_code_strips_fences_and_nltk_downloads() {
        let code = "```python\nimport nltk\nnltk.download('punkt')\ndef f(m):\n    return 0.5\n```";
        assert_eq!(clean_code(code), "import nltk\ndef f(m):\n    return 0.5\n");
        assert_eq!(clean_code("def f(m): return 1"), "def f(m): return 1\n");
    }
}
