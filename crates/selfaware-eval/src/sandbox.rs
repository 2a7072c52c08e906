//! A sandbox for model-written Python (the "write a function" question).
//!
//! Each run is a separate process: `python3 -I -S sandbox_runner.py` (isolated mode: no
//! user site, no `PYTHON*` variables, script directory not on the path; `-S`: no
//! site-packages), with a fresh private directory as its working directory and empty
//! environment. The guarantees rest on layers 1 to 6, which the kernel enforces and which
//! are in force before any model code is loaded; nothing model code does in Python can lift
//! them. Layers, from the kernel up:
//!
//! 1. **resource limits** (`setrlimit` before `exec`): CPU seconds (`RLIMIT_CPU`), address
//!    space (`RLIMIT_AS`), size of any file written, including captured stdout/stderr
//!    (`RLIMIT_FSIZE`), open files (`RLIMIT_NOFILE`), and processes (`RLIMIT_NPROC`);
//! 2. **a fresh user per run** (when the parent runs as root): the child drops to a uid of
//!    its own, taken from [`SandboxConfig::uid_range`] (and never shared by two live runs),
//!    and its private directory is mode 0700 and owned by that uid, so no other run can
//!    write it; `RLIMIT_NPROC` is enforced (the kernel does not enforce it for root); at the
//!    end every process running as that uid is killed, wherever it moved (`setsid`);
//! 3. **network namespace**: `unshare(CLONE_NEWUSER | CLONE_NEWNET)` gives the child an
//!    empty network stack (not even a working loopback), so no connection can leave it;
//!    probed once in [`Sandbox::new`], used when the kernel allows it;
//! 4. **Landlock** (applied before `exec`, with no-new-privileges): nothing outside the
//!    private directory can be written, created, removed, renamed or truncated, whatever
//!    the file permissions say; on kernels with Landlock ABI 4 or later TCP `bind`/`connect`
//!    are refused, and with ABI 6 or later the child cannot signal processes outside its
//!    own sandbox;
//! 5. **seccomp** (a BPF filter): no new processes, ever (`fork`, `vfork`, and `clone`
//!    without `CLONE_THREAD` fail; threads still work), installed before `exec`; and no
//!    `execve`/`execveat`, installed by the harness before it loads any model code (the
//!    interpreter's own `exec` has to come first). The harness reports the filter on a pipe
//!    it closes before loading model code, and the run fails if the report is missing;
//! 6. **process group kill**: after the run, whatever is left in the child's process group
//!    is killed (with layer 5 there is nothing, and with layer 2 nothing survives anyway);
//! 7. **audit hook** in the harness (Python's `sys.addaudithook`): refuses sockets,
//!    subprocesses, `fork`/`exec`/`kill`, `ctypes`, and opening for writing, deleting or
//!    renaming anything outside the private directory, with a readable error. Its tables
//!    live in a closure, not in `__main__`, so rebinding names there changes nothing;
//! 8. **timers**: a per-call CPU timer in the harness (a looping call fails, the next input
//!    still runs) and a wall-clock timeout after which the whole process group is killed.
//!
//! [`Sandbox::layers`] records which layers are in force; each optional one can be
//! required ([`SandboxConfig::require_seccomp`], [`SandboxConfig::require_landlock`],
//! [`SandboxConfig::require_network_namespace`]) so that [`Sandbox::new`] fails without it.
//!
//! Known limits: the audit hook is in-process, so it stops accidents and ordinary code, not
//! a determined attacker (who can reach its closure through the garbage collector or
//! frames); the kernel layers are what hold. Without root there is no per-run uid: runs
//! share the caller's uid (Landlock still keeps each run's writes in its own directory), and
//! leftover processes are only stopped by layers 5 and 6. Without seccomp (another
//! architecture, or a kernel that refuses it) a process that calls `setsid` outlives the
//! run unless layer 2 is in force; without Landlock, writes are limited only by the file
//! permissions of the per-run uid (world-writable places stay writable). Reading is not
//! restricted: model code can read whatever the per-run uid may read. Model code can write
//! to the harness's result file descriptor and so forge its own results.

mod landlock;
mod seccomp;

use std::io::Read;
use std::ops::Range;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
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
    /// Drop to a fresh uid per run when running as root (default true).
    pub drop_privileges: bool,
    /// The uids (and equal gids) runs drop to: each run takes one no live run of this
    /// process or any other holds, as long as the range has 2^30 uids and a process has
    /// fewer than 256 runs at a time. It must be unused by anything else on the machine:
    /// every process of a run's uid is killed when the run ends. Default 2^30 .. 2^31.
    pub uid_range: Range<u32>,
    /// Use a fresh user + network namespace when the kernel allows it (default true).
    pub network_namespace: bool,
    /// Fail in [`Sandbox::new`] if the namespace is not available (default false).
    pub require_network_namespace: bool,
    /// Install the seccomp filters (no new processes, no `execve`) when the architecture and
    /// kernel allow it (default true).
    pub seccomp: bool,
    /// Fail in [`Sandbox::new`] if the seccomp filters are not available (default false).
    pub require_seccomp: bool,
    /// Confine writes to the private directory with Landlock when the kernel has it
    /// (default true).
    pub landlock: bool,
    /// Fail in [`Sandbox::new`] if Landlock is not available (default false).
    pub require_landlock: bool,
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
            uid_range: 1 << 30..1 << 31,
            network_namespace: true,
            require_network_namespace: false,
            seccomp: true,
            require_seccomp: false,
            landlock: true,
            require_landlock: false,
            audit_hook: true,
            work_root: None,
        }
    }
}

/// The layers actually in force (some depend on the kernel, the architecture and on
/// running as root). A record of how a result was produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveLayers {
    pub rlimits: bool,
    /// A fresh uid per run, whose processes are all killed at the end.
    pub uid_drop: bool,
    pub network_namespace: bool,
    /// The Landlock ABI version in force (`None`: no Landlock).
    pub landlock: Option<u32>,
    /// Both seccomp filters (no new processes; no `execve`), confirmed by every run.
    pub seccomp: bool,
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
    /// The child's process id, which is also its session and process group id.
    pub pid: u32,
    /// The run's own uid, when the uid drop is in force.
    pub uid: Option<u32>,
}

/// A configured sandbox. Creating one checks the interpreter and probes the layers.
#[derive(Debug, Clone)]
pub struct Sandbox {
    config: SandboxConfig,
    layers: ActiveLayers,
}

/// What the harness reads from `job.json`.
#[derive(Serialize)]
struct Job<'a> {
    code: &'a str,
    func_name: &'a str,
    inputs: &'a [String],
    per_call_seconds: f64,
    audit_hook: bool,
    /// The descriptor to write a [`HarnessReport`] to and close before loading model code.
    report_fd: i32,
    /// The seccomp program to install before loading model code, as `[code, jt, jf, k]`.
    exec_filter: Option<Vec<[u32; 4]>>,
}

/// What the harness says before it loads model code.
#[derive(Debug, Deserialize)]
struct HarnessReport {
    /// The filter of [`Job::exec_filter`] is installed.
    exec_filter: bool,
    #[serde(default)]
    error: Option<String>,
    /// `Seccomp_filters` and `NoNewPrivs` of `/proc/self/status`, read after installing.
    #[serde(default)]
    seccomp_filters: Option<u32>,
    #[serde(default)]
    no_new_privs: Option<u32>,
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

/// Runs started by this process so far; with the process id it picks a run's uid.
static RUNS: AtomicU32 = AtomicU32::new(0);

/// A uid for the next run: `range.start + (pid · 256 + n mod 256) mod |range|`, where `n`
/// counts this process's runs. Process ids are below 2^22, so with 2^30 uids in the range
/// no two live runs share one unless a process has 256 runs at a time.
fn next_run_uid(range: &Range<u32>, pid: u32) -> u32 {
    let n = RUNS.fetch_add(1, Ordering::Relaxed) % 256;
    let key = (u64::from(pid) << 8) | u64::from(n);
    range.start + (key % u64::from(range.end - range.start)) as u32
}

/// Whether every uid of `range` is mapped in the user namespace described by `uid_map`
/// (the text of `/proc/self/uid_map`: `inside outside count` per line).
fn uids_mapped(range: &Range<u32>, uid_map: &str) -> bool {
    uid_map.lines().any(|line| {
        let f: Vec<u64> = line
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        f.len() == 3 && f[0] <= u64::from(range.start) && u64::from(range.end) <= f[0] + f[2]
    })
}

/// Kills every process whose real or saved uid is `uid`, from a helper process that takes
/// that uid and signals everything it may signal (`kill(-1)`), until nothing is left (or a
/// bounded number of rounds, when only unreaped zombies remain).
fn kill_every_process_of(uid: u32) -> Result<()> {
    // SAFETY: the child makes only async-signal-safe calls (setgroups, setgid, setuid,
    // kill, nanosleep, _exit) and never returns into Rust code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(sandbox_err(format!(
            "could not fork to clean up uid {uid}: {}",
            std::io::Error::last_os_error()
        )));
    }
    if pid == 0 {
        // SAFETY: see above; this is the forked child.
        unsafe {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(uid as libc::gid_t) != 0
                || libc::setuid(uid as libc::uid_t) != 0
            {
                libc::_exit(2);
            }
            let pause = libc::timespec {
                tv_sec: 0,
                tv_nsec: 1_000_000,
            };
            for _ in 0..200 {
                if libc::kill(-1, libc::SIGKILL) != 0 {
                    libc::_exit(0);
                }
                libc::nanosleep(&pause, std::ptr::null_mut());
            }
            libc::_exit(1);
        }
    }
    let mut status = 0;
    // SAFETY: waits for the child forked above.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(sandbox_err(format!(
                "waiting for the uid {uid} clean-up: {e}"
            )));
        }
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 2 {
        return Err(sandbox_err(format!(
            "could not take uid {uid} to kill its processes"
        )));
    }
    Ok(())
}

/// A pipe for the harness's report: the read end (non-blocking) and the write end, both
/// close-on-exec (the child clears the flag on its copy of the write end).
fn report_pipe() -> Result<(std::fs::File, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(sandbox_err(format!(
            "could not create the report pipe: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: pipe2 just returned both descriptors; nothing else owns them.
    unsafe {
        Ok((
            std::fs::File::from_raw_fd(fds[0]),
            OwnedFd::from_raw_fd(fds[1]),
        ))
    }
}

/// Whatever is in the pipe now (the writer has exited), at most 64 KiB.
fn read_report(mut pipe: std::fs::File) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while buf.len() < 64 * 1024 {
        match pipe.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
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
        let uid_drop = config.drop_privileges && is_root();
        if uid_drop {
            let r = &config.uid_range;
            if r.start == 0 || r.end <= r.start {
                return Err(sandbox_err(format!(
                    "uid range {}..{} must be non-empty and not include root",
                    r.start, r.end
                )));
            }
            let map = fs_err::read_to_string("/proc/self/uid_map")?;
            if !uids_mapped(r, &map) {
                return Err(sandbox_err(format!(
                    "uid range {}..{} is not mapped in this user namespace (uid_map: {})\nhint: choose a `uid_range` inside the mapped uids",
                    r.start,
                    r.end,
                    map.trim()
                )));
            }
        }
        let landlock = if config.landlock {
            match landlock::abi() {
                Ok(abi) => Some(abi),
                Err(e) if config.require_landlock => {
                    return Err(sandbox_err(format!(
                        "Landlock is required but this kernel does not offer it: {e}\nhint: Landlock needs Linux 5.13 or later with `landlock` among the active security modules"
                    )));
                }
                Err(_) => None,
            }
        } else {
            None
        };
        let seccomp = config.seccomp && seccomp::native().is_some();
        if config.require_seccomp && !seccomp {
            return Err(sandbox_err(format!(
                "the seccomp filters are required but {}",
                if config.seccomp {
                    "there is no filter for this architecture (only x86_64 and aarch64)"
                } else {
                    "`seccomp` is off"
                }
            )));
        }
        let none = ActiveLayers {
            rlimits: true,
            uid_drop,
            network_namespace: false,
            landlock: None,
            seccomp: false,
            audit_hook: config.audit_hook,
        };
        let mut sb = Sandbox {
            layers: none,
            config,
        };
        // Each optional layer is probed alone, so that one the kernel refuses is named.
        let probes = [
            (
                "a user + network namespace",
                ActiveLayers {
                    network_namespace: true,
                    ..none
                },
                sb.config.network_namespace,
                sb.config.require_network_namespace,
            ),
            (
                "Landlock",
                ActiveLayers { landlock, ..none },
                landlock.is_some(),
                sb.config.require_landlock,
            ),
            (
                "the seccomp filters",
                ActiveLayers {
                    seccomp: true,
                    ..none
                },
                seccomp,
                sb.config.require_seccomp,
            ),
        ];
        let mut layers = none;
        for (name, with, wanted, required) in probes {
            if !wanted {
                if required {
                    return Err(sandbox_err(format!(
                        "{name} is required but turned off in the configuration"
                    )));
                }
                continue;
            }
            let probe = sb.run_raw(
                "def f(x):\n    return 0.0\n",
                "f",
                &["probe".to_string()],
                with,
            );
            match probe {
                Ok(r) if r.outcomes == vec![CallOutcome::Value(0.0)] => {
                    layers.network_namespace |= with.network_namespace;
                    layers.landlock = layers.landlock.or(with.landlock);
                    layers.seccomp |= with.seccomp;
                }
                _ if !required => {}
                probe => {
                    let why = match probe {
                        Ok(r) => format!("{:?}: {}", r.termination, r.stderr_tail),
                        Err(e) => e.to_string(),
                    };
                    return Err(sandbox_err(format!(
                        "{name} is required but unavailable: {why}"
                    )));
                }
            }
        }
        sb.layers = layers;
        let check = sb.run_raw(
            "def f(x):\n    return 0.25\n",
            "f",
            &["check".to_string()],
            layers,
        )?;
        if check.outcomes != vec![CallOutcome::Value(0.25)] {
            return Err(sandbox_err(format!(
                "the sandbox cannot run a trivial function with {layers:?} ({:?}; stderr: {})",
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
        self.run_raw(&clean_code(code), func_name, inputs, self.layers)
    }

    fn run_raw(
        &self,
        code: &str,
        func_name: &str,
        inputs: &[String],
        layers: ActiveLayers,
    ) -> Result<FunctionRun> {
        let c = &self.config;
        let mut builder = tempfile::Builder::new();
        builder.prefix("selfaware-sandbox-");
        let dir = match &c.work_root {
            Some(root) => builder.tempdir_in(root),
            None => builder.tempdir(),
        }
        .map_err(|e| sandbox_err(format!("could not create a private directory: {e}")))?;
        let path = dir.path();
        // Private: only the run's own uid (or the caller) may enter it.
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(|e| sandbox_err(format!("could not make {} private: {e}", path.display())))?;
        let (report_read, report_write) = report_pipe()?;
        let report_fd = report_write.as_raw_fd();
        let arch = seccomp::native().filter(|_| layers.seccomp);
        let job = Job {
            code,
            func_name,
            inputs,
            per_call_seconds: c.per_call_cpu_seconds,
            audit_hook: layers.audit_hook,
            report_fd,
            exec_filter: arch.map(|a| {
                seccomp::program(a, seccomp::Rules::NoNewProcessesNoExec)
                    .iter()
                    .map(|i| [u32::from(i.code), u32::from(i.jt), u32::from(i.jf), i.k])
                    .collect()
            }),
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
        let uid = layers
            .uid_drop
            .then(|| next_run_uid(&c.uid_range, std::process::id()));
        if let Some(uid) = uid {
            std::os::unix::fs::chown(path, Some(uid), Some(uid)).map_err(|e| {
                sandbox_err(format!(
                    "could not hand {} to uid {uid}: {e}",
                    path.display()
                ))
            })?;
        }
        let ruleset = layers
            .landlock
            .map(|abi| landlock::ruleset(path, abi))
            .transpose()
            .map_err(|e| {
                sandbox_err(format!(
                    "could not build the Landlock rules for {}: {e}",
                    path.display()
                ))
            })?;
        let ruleset_fd = ruleset.as_ref().map(|fd| fd.as_raw_fd());
        let spawn_filter = arch.map(|a| seccomp::program(a, seccomp::Rules::NoNewProcesses));

        let limits = [
            (libc::RLIMIT_CPU, c.cpu_seconds, c.cpu_seconds + 1),
            (libc::RLIMIT_AS, c.memory_bytes, c.memory_bytes),
            (libc::RLIMIT_FSIZE, c.output_bytes, c.output_bytes),
            (libc::RLIMIT_NOFILE, 64, 64),
            (libc::RLIMIT_CORE, 0, 0),
        ];
        let nproc = uid.map(|_| c.max_processes);
        let netns = layers.network_namespace;
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
        // unshare, fcntl, prctl, landlock_restrict_self) on values computed before the fork.
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
                // The harness inherits the report pipe (and nothing else of ours).
                if libc::fcntl(report_fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(fd) = ruleset_fd {
                    let zero: libc::c_ulong = 0;
                    if libc::prctl(
                        libc::PR_SET_NO_NEW_PRIVS,
                        1 as libc::c_ulong,
                        zero,
                        zero,
                        zero,
                    ) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    landlock::restrict_self(fd)?;
                }
                if let Some(p) = &spawn_filter {
                    seccomp::install(p)?;
                }
                Ok(())
            });
        }
        let start = Instant::now();
        let spawned = cmd.spawn();
        drop(cmd);
        drop(report_write);
        drop(ruleset);
        let mut child = spawned
            .map_err(|e| sandbox_err(format!("could not start {}: {e}", c.python.display())))?;
        let pgid = child.id() as libc::pid_t;
        // The child is waited for without being reaped (WNOWAIT), so that its pid, which
        // names its process group, cannot be reused before the group is killed.
        let timed_out = loop {
            // SAFETY: siginfo_t is plain data that waitid fills in.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: waits on our own child without reaping it.
            let r = unsafe {
                libc::waitid(
                    libc::P_PID,
                    pgid as libc::id_t,
                    &mut info,
                    libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
                )
            };
            if r != 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(sandbox_err(format!("waiting for the child: {e}")));
            }
            // SAFETY: waitid filled in `info` (si_pid stays 0 while the child runs).
            if unsafe { info.si_pid() } != 0 {
                break false;
            }
            if start.elapsed() >= c.wall_timeout {
                break true;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        // Whatever is left in the child's group goes (the whole group when it timed out),
        // and, with a uid of its own, whatever runs as that uid anywhere.
        // SAFETY: kill has no memory-safety preconditions; pgid is the group this run
        // created with setsid, and its leader is not reaped yet.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let status = child
            .wait()
            .map_err(|e| sandbox_err(format!("waiting for the child: {e}")))?;
        let termination = if timed_out {
            Termination::WallTimeout
        } else {
            use std::os::unix::process::ExitStatusExt;
            match (status.code(), status.signal()) {
                (Some(code), _) => Termination::Exited(code),
                (None, Some(sig)) => Termination::Signaled(sig),
                (None, None) => Termination::Exited(-1),
            }
        };
        if let Some(uid) = uid {
            kill_every_process_of(uid)?;
        }
        let wall = start.elapsed();

        let results = read_capped(&path.join("results.jsonl"), c.output_bytes)?;
        let stderr = read_capped(&path.join("stderr.txt"), c.output_bytes)?;
        let tail_start = stderr.len().saturating_sub(2000);
        let tail_start = (tail_start..stderr.len())
            .find(|&i| stderr.is_char_boundary(i))
            .unwrap_or(stderr.len());
        let stderr_tail = stderr[tail_start..].to_string();
        if layers.seccomp {
            check_report(&read_report(report_read), termination, &stderr_tail)?;
        }
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
        Ok(FunctionRun {
            outcomes,
            definition_error,
            termination,
            stderr_tail,
            wall,
            pid: pgid as u32,
            uid,
        })
    }
}

/// Fails unless the harness confirmed its `execve` filter on top of the one installed
/// before `exec` (model code only ever runs after that confirmation).
fn check_report(report: &str, termination: Termination, stderr_tail: &str) -> Result<()> {
    let fail = |why: String| {
        Err(sandbox_err(format!(
            "the harness did not confirm its seccomp filter: {why} (the child {termination:?}; stderr: {stderr_tail})"
        )))
    };
    let Some(line) = report.lines().next() else {
        return fail("no report".into());
    };
    let r: HarnessReport = match serde_json::from_str(line) {
        Ok(r) => r,
        Err(e) => return fail(format!("unreadable report `{line}`: {e}")),
    };
    if !r.exec_filter {
        return fail(r.error.unwrap_or_else(|| "not installed".into()));
    }
    // One filter from before exec, one from the harness.
    if r.seccomp_filters.unwrap_or(0) < 2 || r.no_new_privs != Some(1) {
        return fail(format!(
            "/proc/self/status shows {:?} filters, no_new_privs {:?}",
            r.seccomp_filters, r.no_new_privs
        ));
    }
    Ok(())
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
    fn run_uids_stay_in_range_and_differ_between_live_runs() {
        let r = 1u32 << 30..1u32 << 31;
        let a = next_run_uid(&r, 4_194_303);
        let b = next_run_uid(&r, 4_194_303);
        let c = next_run_uid(&r, 1);
        for u in [a, b, c] {
            assert!(r.contains(&u), "{u}");
        }
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_ne!(b, c);
        let small = 1000..1003;
        for pid in 0..20 {
            assert!(small.contains(&next_run_uid(&small, pid)));
        }
    }

    #[test]
    fn uid_ranges_must_be_mapped() {
        let all = "         0          0 4294967295\n";
        assert!(uids_mapped(&(1 << 30..1 << 31), all));
        let rootless = "         0       1000          1\n         1     100000      65536\n";
        assert!(!uids_mapped(&(1 << 30..1 << 31), rootless));
        assert!(uids_mapped(&(1000..65537), rootless));
        assert!(!uids_mapped(&(1000..65538), rootless));
        assert!(!uids_mapped(&(0..2), rootless));
        assert!(!uids_mapped(&(1..2), ""));
    }

    #[test]
    fn a_missing_or_failed_harness_report_fails_the_run() {
        let t = Termination::Exited(0);
        assert!(check_report(
            r#"{"exec_filter": true, "seccomp_filters": 2, "no_new_privs": 1}"#,
            t,
            ""
        )
        .is_ok());
        for bad in [
            "",
            "garbage",
            r#"{"exec_filter": false}"#,
            r#"{"exec_filter": false, "error": "OSError: EINVAL"}"#,
            r#"{"exec_filter": true, "seccomp_filters": 1, "no_new_privs": 1}"#,
            r#"{"exec_filter": true, "seccomp_filters": 2, "no_new_privs": 0}"#,
            r#"{"exec_filter": true}"#,
        ] {
            let e = check_report(bad, t, "").unwrap_err().to_string();
            assert!(
                e.contains("did not confirm its seccomp filter"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn clean_code_strips_fences_and_nltk_downloads() {
        let code = "```python\nimport nltk\nnltk.download('punkt')\ndef f(m):\n    return 0.5\n```";
        assert_eq!(clean_code(code), "import nltk\ndef f(m):\n    return 0.5\n");
        assert_eq!(clean_code("def f(m): return 1"), "def f(m): return 1\n");
    }
}
