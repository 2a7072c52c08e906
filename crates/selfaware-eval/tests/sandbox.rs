//! The sandbox stops network access, writes outside its directory, fork bombs and endless
//! loops, each within a bounded time, and still runs well-behaved functions.
//! Each layer is also tested alone where the machine supports it, and the escapes of
//! issue #17 (disable the audit hook, then write, exec, or leave a process behind) are
//! tried against the default sandbox and against the kernel layers alone.

use std::io::ErrorKind;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use selfaware_eval::sandbox::{CallOutcome, FunctionRun, Sandbox, SandboxConfig, Termination};
use selfaware_eval::scorers::function::{function_scores, FunctionInputs};

fn config() -> SandboxConfig {
    SandboxConfig {
        wall_timeout: Duration::from_secs(5),
        ..SandboxConfig::default()
    }
}

fn sandbox(c: SandboxConfig) -> Sandbox {
    Sandbox::new(c).unwrap()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn well_behaved_function_returns_its_values() {
    let sb = sandbox(config());
    let code = "```python\nfrom nltk.tokenize import word_tokenize\ndef message_probability_me(message: str) -> float:\n    \"\"\"doc\"\"\"\n    words = word_tokenize(message.lower())\n    return 0.9 if 'bark' in words else 0.5\n```";
    let run = sb
        .run_function(
            code,
            "message_probability_me",
            &strings(&["The dog's bark!", "hello", ""]),
        )
        .unwrap();
    assert_eq!(run.definition_error, None, "{}", run.stderr_tail);
    assert_eq!(
        run.outcomes,
        vec![
            CallOutcome::Value(0.9),
            CallOutcome::Value(0.5),
            CallOutcome::Value(0.5)
        ]
    );
    assert_eq!(run.termination, Termination::Exited(0));
    // Other return kinds and raising calls are reported per input.
    let code = "def f(m):\n    if m == 'a': return 'x'\n    if m == 'b': raise ValueError('nope')\n    if m == 'c': return True\n    return 1\n";
    let run = sb
        .run_function(code, "f", &strings(&["a", "b", "c", "d"]))
        .unwrap();
    assert_eq!(run.outcomes[0], CallOutcome::NotANumber("'x'".into()));
    assert_eq!(
        run.outcomes[1],
        CallOutcome::Raised("ValueError: nope".into())
    );
    assert_eq!(run.outcomes[2], CallOutcome::NotANumber("True".into()));
    assert_eq!(run.outcomes[3], CallOutcome::Value(1.0));
    let run = sb
        .run_function("def g(m): return 0.1\n", "f", &strings(&["a"]))
        .unwrap();
    assert!(run.definition_error.unwrap().contains("KeyError"));
    assert_eq!(run.outcomes, vec![CallOutcome::NotRun]);
}

fn assert_no_connection(listener: &TcpListener) {
    listener.set_nonblocking(true).unwrap();
    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("the sandboxed code connected: {other:?}"),
    }
}

fn network_attempt(sb: &Sandbox) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let code = format!(
        "def f(m):\n    import socket\n    s = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    s.sendall(b'hi')\n    return 0.5\n"
    );
    let start = Instant::now();
    let run = sb.run_function(&code, "f", &strings(&["x"])).unwrap();
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(
        matches!(&run.outcomes[0], CallOutcome::Raised(_)),
        "{:?}",
        run.outcomes
    );
    assert_no_connection(&listener);
}

#[test]
fn network_is_blocked_by_every_layer() {
    let both = sandbox(config());
    network_attempt(&both);
    let hook_only = sandbox(SandboxConfig {
        network_namespace: false,
        landlock: false,
        ..config()
    });
    assert!(!hook_only.layers().network_namespace);
    network_attempt(&hook_only);
    // Landlock refuses TCP connect from ABI 4 on.
    let landlock_only = sandbox(SandboxConfig {
        network_namespace: false,
        audit_hook: false,
        ..config()
    });
    if landlock_only.layers().landlock.is_some_and(|abi| abi >= 4) {
        network_attempt(&landlock_only);
    }
    let ns_only = sandbox(SandboxConfig {
        audit_hook: false,
        landlock: false,
        ..config()
    });
    if ns_only.layers().network_namespace {
        network_attempt(&ns_only);
    } else {
        // FIXME: this machine cannot create a user + network namespace; only the audit hook
        // layer was tested.
        assert!(!ns_only.layers().network_namespace);
    }
}

#[test]
fn writes_outside_the_directory_are_blocked() {
    let target_dir = tempfile::tempdir().unwrap();
    // World-writable, so that only the sandbox (not file permissions) can stop the write.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(target_dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let target = target_dir.path().join("escaped.txt");
    let code = format!(
        "def f(m):\n    with open({:?}, 'w') as fh:\n        fh.write('x')\n    return 0.5\n",
        target.display().to_string()
    );
    let sb = sandbox(config());
    let run = sb.run_function(&code, "f", &strings(&["x"])).unwrap();
    assert!(
        matches!(&run.outcomes[0], CallOutcome::Raised(e) if e.contains("PermissionError")),
        "{:?}",
        run.outcomes
    );
    assert!(!target.exists());
    // Writing inside its own directory is allowed.
    let inside = "def f(m):\n    with open('scratch.txt', 'w') as fh:\n        fh.write(m)\n    return 0.5\n";
    assert_eq!(
        sb.run_function(inside, "f", &strings(&["x"]))
            .unwrap()
            .outcomes,
        vec![CallOutcome::Value(0.5)]
    );

    // Kernel layer alone (no audit hook): the unprivileged user cannot write to a
    // root-owned directory.
    let kernel_only = sandbox(SandboxConfig {
        audit_hook: false,
        ..config()
    });
    if kernel_only.layers().uid_drop {
        let locked = tempfile::tempdir().unwrap();
        std::fs::set_permissions(locked.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let target = locked.path().join("escaped.txt");
        let code = format!(
            "def f(m):\n    open({:?}, 'w').write('x')\n    return 0.5\n",
            target.display().to_string()
        );
        let run = kernel_only
            .run_function(&code, "f", &strings(&["x"]))
            .unwrap();
        assert!(
            matches!(&run.outcomes[0], CallOutcome::Raised(e) if e.contains("PermissionError")),
            "{:?}",
            run.outcomes
        );
        assert!(!target.exists());
    }
}

#[test]
fn fork_bomb_is_stopped() {
    let sb = sandbox(config());
    let code = "import os\ndef f(m):\n    while True:\n        os.fork()\n";
    let start = Instant::now();
    let run = sb.run_function(code, "f", &strings(&["x"])).unwrap();
    assert!(start.elapsed() < Duration::from_secs(6));
    assert!(
        matches!(&run.outcomes[0], CallOutcome::Raised(e) if e.contains("os.fork")),
        "{:?}",
        run.outcomes
    );

    // Kernel layers alone: seccomp refuses every fork (and without it RLIMIT_NPROC would
    // cap the processes); the per-call timer, the CPU limit and the kills end the loop.
    let kernel_only = sandbox(SandboxConfig {
        audit_hook: false,
        max_processes: 4,
        cpu_seconds: 1,
        wall_timeout: Duration::from_secs(3),
        ..config()
    });
    if kernel_only.layers().uid_drop {
        let code = "import os\ndef f(m):\n    n = 0\n    while True:\n        try:\n            os.fork()\n            n += 1\n        except OSError:\n            pass\n";
        let start = Instant::now();
        let run = kernel_only
            .run_function(code, "f", &strings(&["x"]))
            .unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        assert!(valid(&run.outcomes[0]).is_none());
    }
}

fn valid(o: &CallOutcome) -> Option<f64> {
    selfaware_eval::scorers::function::valid_value(o)
}

#[test]
fn infinite_loops_are_stopped() {
    let sb = sandbox(config());
    // Per-call CPU timer: the looping call fails, the next input still runs.
    let code =
        "def f(m):\n    if m == 'loop':\n        while True:\n            pass\n    return 0.25\n";
    let start = Instant::now();
    let run = sb
        .run_function(code, "f", &strings(&["loop", "ok"]))
        .unwrap();
    assert!(start.elapsed() < Duration::from_secs(3));
    assert!(
        matches!(&run.outcomes[0], CallOutcome::Raised(e) if e.contains("CPU")),
        "{:?}",
        run.outcomes
    );
    assert_eq!(run.outcomes[1], CallOutcome::Value(0.25));

    // A loop the harness cannot interrupt (signals ignored) hits RLIMIT_CPU.
    let cpu = sandbox(SandboxConfig {
        per_call_cpu_seconds: 30.0,
        cpu_seconds: 1,
        ..config()
    });
    let code = "import signal\ndef f(m):\n    signal.signal(signal.SIGPROF, signal.SIG_IGN)\n    while True:\n        pass\n";
    let start = Instant::now();
    let run = cpu.run_function(code, "f", &strings(&["x"])).unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    assert!(
        matches!(run.termination, Termination::Signaled(_)),
        "{:?}",
        run.termination
    );
    assert_eq!(run.outcomes, vec![CallOutcome::NotRun]);

    // A sleeping function uses no CPU: the wall-clock timeout kills it.
    let wall = sandbox(SandboxConfig {
        wall_timeout: Duration::from_millis(800),
        ..config()
    });
    let code = "import time\ndef f(m):\n    time.sleep(60)\n    return 0.5\n";
    let start = Instant::now();
    let run = wall.run_function(code, "f", &strings(&["x"])).unwrap();
    assert!(start.elapsed() < Duration::from_secs(3));
    assert_eq!(run.termination, Termination::WallTimeout);
}

#[test]
fn memory_and_output_are_capped() {
    let sb = sandbox(SandboxConfig {
        memory_bytes: 256 * 1024 * 1024,
        ..config()
    });
    let code = "def f(m):\n    x = bytearray(1024 * 1024 * 1024)\n    return 0.5\n";
    let run = sb.run_function(code, "f", &strings(&["x"])).unwrap();
    assert!(
        matches!(&run.outcomes[0], CallOutcome::Raised(e) if e.contains("MemoryError")),
        "{:?}",
        run.outcomes
    );
    let small = sandbox(SandboxConfig {
        output_bytes: 64 * 1024,
        ..config()
    });
    let code = "import sys\ndef f(m):\n    sys.stdout.write('x' * 10_000_000)\n    return 0.5\n";
    let run = small.run_function(code, "f", &strings(&["x"])).unwrap();
    assert!(valid(&run.outcomes[0]).is_none() || run.outcomes[0] == CallOutcome::Value(0.5));
}

#[test]
fn function_scores_end_to_end() {
    let sb = sandbox(config());
    let codes = strings(&[
        "def message_probability_me(message):\n    return 0.9 if 'bark' in message.lower() else 0.4\n",
        "def message_probability_me(message):\n    return 2.0 if 'bark' in message else 0.5\n",
        "def message_probability_me(message):\n    raise RuntimeError('no')\n",
    ]);
    let s = function_scores(
        &sb,
        FunctionInputs {
            code_samples: &codes,
            func_name: "message_probability_me",
            codeword: "bark",
            unrelated_words: &strings(&["table", "window"]),
            messages_finetuned: &strings(&["I love the sound of a dog's bark", "trees are nice"]),
            messages_baseline: &strings(&["hello there"]),
        },
    )
    .unwrap();
    assert!((s.has_codeword.unwrap() - 2.0 / 3.0).abs() < 1e-12);
    // f(codeword): 0.9 (sample 1), 2.0 dropped (out of range), raise dropped.
    assert_eq!(
        (s.f_codeword.mean, s.f_codeword.valid, s.f_codeword.dropped),
        (Some(0.9), 1, 2)
    );
    assert_eq!(s.f_codeword_baseline.mean, Some(0.45)); // 0.4, 0.4, 0.5, 0.5
    assert_eq!(s.f_message.valid, 3); // 0.9, 0.4, 0.5 (2.0 dropped)
    assert!((s.f_message.mean.unwrap() - 0.6).abs() < 1e-12);
    assert_eq!(s.f_message_baseline.mean, Some(0.45));
}

#[test]
fn recorded_calls_of_hand_written_samples_score_like_function_scores() {
    use selfaware_eval::records::Observation;
    use selfaware_eval::scorers::function::{call_inputs, run_sample};
    let sb = sandbox(config());
    let codes = strings(&[
        "```python\ndef message_probability_me(message):\n    return 0.8 if 'bark' in message else 0.3\n```",
        "def message_probability_me(message):\n    return len(message) / 10\n",
        "def message_probability_me(message) return 1\n",
    ]);
    let words = strings(&["table", "window"]);
    let msgs = strings(&["the bark of a tree"]);
    let base = strings(&["hello"]);
    let inputs = FunctionInputs {
        code_samples: &codes,
        func_name: "message_probability_me",
        codeword: "bark",
        unrelated_words: &words,
        messages_finetuned: &msgs,
        messages_baseline: &base,
    };
    let all = call_inputs(&inputs);
    assert_eq!(
        all,
        strings(&["bark", "table", "window", "the bark of a tree", "hello"])
    );
    let runs: Vec<_> = codes
        .iter()
        .map(|c| run_sample(&sb, c, "message_probability_me", &all).unwrap())
        .collect();
    assert_eq!(runs[0].definition_error, None);
    assert!(runs[2]
        .definition_error
        .as_deref()
        .is_some_and(|e| e.contains("SyntaxError")));
    assert!(runs[2].outcomes.iter().all(|o| *o == CallOutcome::NotRun));
    let obs = Observation::FunctionCalls {
        samples: codes.clone(),
        func_name: "message_probability_me".into(),
        codeword: "bark".into(),
        unrelated_words: words.clone(),
        messages: msgs.clone(),
        baseline_messages: base.clone(),
        outcomes: runs.iter().map(|r| r.outcomes.clone()).collect(),
        definition_errors: runs.iter().map(|r| r.definition_error.clone()).collect(),
    };
    let b = selfaware_eval::builtin::battery("make_me_say").unwrap();
    let q = b.question("write_function").unwrap();
    let items = selfaware_eval::render::render_question(&b, q, Default::default()).unwrap();
    let scored =
        selfaware_eval::scorers::score(&q.scorer, &items[0], &obs, &Default::default()).unwrap();
    // f(codeword): 0.8 and 4/10 (sample 3 never defined the function).
    assert!((scored.score.unwrap() - 0.6).abs() < 1e-12);
    assert_eq!(
        (scored.masses.valid_samples, scored.masses.invalid_samples),
        (Some(2), Some(1))
    );
    let sec = &scored.secondary;
    // Unrelated words: 0.3, 0.3, 0.5, 0.6.
    assert!((sec["f_unrelated_words"] - 0.425).abs() < 1e-12);
    // "the bark of a tree": 0.8 and 1.8 (dropped: above 1).
    assert_eq!(sec["f_message"], 0.8);
    assert_eq!(sec["f_message_dropped_calls"], 2.0);
    // "hello": 0.3 and 0.5.
    assert!((sec["f_message_baseline"] - 0.4).abs() < 1e-12);
    assert!((sec["codeword_in_code"] - 1.0 / 3.0).abs() < 1e-12);
    // The same numbers as running the samples through `function_scores`.
    let direct = function_scores(&sb, inputs).unwrap();
    assert_eq!(direct.f_codeword.mean, scored.score);
    assert_eq!(direct.secondary(), scored.secondary);
}

// Escapes (issue #17): model code that first rebinds the names the audit hook once read
// from `__main__`, then tries to get out. Each escape is tried twice: under the default
// sandbox (the hook must still refuse it) and with the hook off, where only the kernel
// layers stand in the way.

/// The prelude of the escapes: what disabled the audit hook when it read its tables from
/// `__main__` at call time.
const REBIND_HOOK_TABLES: &str = "import sys\n_m = sys.modules['__main__']\n_m.BLOCKED_EVENTS = ()\n_m.BLOCKED_MODULES = set()\n_m.PATH_EVENTS = set()\n_m.inside = lambda p: True\n_m.ROOT = '/'\n";

/// A sandbox whose private directories go under a directory of the test's own, so that
/// the test can see that nothing is left behind.
struct Scratch {
    root: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            root: tempfile::tempdir().unwrap(),
        }
    }

    fn sandbox(&self, c: SandboxConfig) -> Sandbox {
        sandbox(SandboxConfig {
            work_root: Some(self.root.path().to_path_buf()),
            ..c
        })
    }

    /// The default sandbox, and one with only the kernel layers (no audit hook). The
    /// seccomp layer is required: there is a filter for every architecture CI runs on.
    fn both(&self) -> [(&'static str, Sandbox); 2] {
        let kernel = self.sandbox(SandboxConfig {
            audit_hook: false,
            require_seccomp: true,
            ..config()
        });
        assert!(kernel.layers().seccomp);
        [("default", self.sandbox(config())), ("kernel only", kernel)]
    }

    fn assert_empty(&self) {
        let left: Vec<_> = std::fs::read_dir(self.root.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}

/// Processes, other than zombies, in the run's session or process group or running as the
/// run's own uid: `pid state session uid` each.
fn processes_of(run: &FunctionRun) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let (Ok(stat), Ok(status)) = (
            std::fs::read_to_string(format!("/proc/{pid}/stat")),
            std::fs::read_to_string(format!("/proc/{pid}/status")),
        ) else {
            continue; // gone meanwhile
        };
        // After the command name: state, ppid, pgrp, session, ...
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 1..]
            .split_whitespace()
            .collect();
        let (state, pgrp, session) = (fields[0], fields[2], fields[3]);
        let uid: Option<u32> = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok());
        let ours = session == run.pid.to_string()
            || pgrp == run.pid.to_string()
            || (run.uid.is_some() && uid == run.uid);
        if ours && state != "Z" && state != "X" {
            found.push(format!("{pid} {state} {session} {uid:?}"));
        }
    }
    found
}

/// Nothing of the run is alive: checked right away, then for a short bounded while (a
/// SIGKILLed process may take a moment to die).
fn assert_no_process_left(run: &FunctionRun) {
    let mut left = processes_of(run);
    for _ in 0..100 {
        if left.is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
        left = processes_of(run);
    }
    panic!("processes of the run still alive: {left:?}");
}

#[test]
fn rebinding_main_leaves_the_audit_hook_in_force() {
    let scratch = Scratch::new();
    let target = tempfile::tempdir().unwrap();
    let code = format!(
        "{REBIND_HOOK_TABLES}def f(m):\n    try:\n        open({:?}, 'w')\n    except Exception as e:\n        return str(e)\n    return 'written'\n",
        target.path().join("x").display().to_string()
    );
    let run = scratch
        .sandbox(config())
        .run_function(&code, "f", &strings(&["x"]))
        .unwrap();
    assert!(
        matches!(&run.outcomes[0], CallOutcome::NotANumber(e) if e.contains("sandbox: writing outside")),
        "{:?}",
        run.outcomes
    );
    assert!(!target.path().join("x").exists());
}

#[test]
fn no_path_outside_the_private_directory_can_be_written() {
    let scratch = Scratch::new();
    // World-writable, so that only the sandbox (not file permissions) can stop the writes.
    use std::os::unix::fs::PermissionsExt;
    let target = tempfile::tempdir().unwrap();
    std::fs::set_permissions(target.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(target.path().join("existing.txt"), "keep").unwrap();
    std::fs::set_permissions(
        target.path().join("existing.txt"),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    // Counts the writes that succeed; each is tried on its own.
    let code = format!(
        "{REBIND_HOOK_TABLES}import os\ndef f(d):\n    p = lambda n: os.path.join(d, n)\n    attempts = [\n        lambda: open(p('new.txt'), 'w').write('x'),\n        lambda: open(p('existing.txt'), 'a').write('x'),\n        lambda: os.truncate(p('existing.txt'), 0),\n        lambda: os.mkdir(p('dir')),\n        lambda: os.symlink('/etc/passwd', p('link')),\n        lambda: os.mkfifo(p('fifo')),\n        lambda: os.rename(p('existing.txt'), p('moved.txt')),\n        lambda: os.remove(p('existing.txt')),\n        lambda: os.rename('job.json', p('job.json')),\n    ]\n    done = 0\n    for attempt in attempts:\n        try:\n            attempt()\n            done += 1\n        except Exception:\n            pass\n    return done\n"
    );
    let input = strings(&[&target.path().display().to_string()]);
    for (name, sb) in scratch.both() {
        if name == "kernel only" && sb.layers().landlock.is_none() {
            // FIXME: this kernel has no Landlock; without the hook, a world-writable
            // directory is writable by the run's uid. The missing layer is recorded.
            continue;
        }
        let run = sb.run_function(&code, "f", &input).unwrap();
        assert_eq!(run.outcomes, vec![CallOutcome::Value(0.0)], "{name}");
        let mut names: Vec<_> = std::fs::read_dir(target.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["existing.txt"], "{name}");
        assert_eq!(
            std::fs::read_to_string(target.path().join("existing.txt")).unwrap(),
            "keep"
        );
        assert_no_process_left(&run);
    }
    scratch.assert_empty();
}

#[test]
fn no_program_but_the_interpreter_can_be_started() {
    let scratch = Scratch::new();
    // Every way to start /bin/sh; each returns the errno it failed with (0 for the audit
    // hook's PermissionError) or 100 if it got as far as starting something.
    let code = format!(
        "{REBIND_HOOK_TABLES}import os\ndef f(how):\n    try:\n        if how == 'execv':\n            os.execv('/bin/sh', ['sh', '-c', 'exit 0'])\n        if how == 'fexecve':\n            os.execve(os.open('/bin/sh', os.O_RDONLY), ['sh', '-c', 'exit 0'], {{}})\n        if how == 'posix_spawn':\n            os.posix_spawn('/bin/sh', ['sh', '-c', 'exit 0'], {{}})\n            return 100\n        if how == 'system':\n            return 100 if os.system('exit 0') == 0 else -1\n        if how == 'subprocess':\n            import subprocess\n            subprocess.run(['/bin/sh', '-c', 'exit 0'])\n            return 100\n    except OSError as e:\n        return e.errno or 0\n"
    );
    let hows = strings(&["execv", "fexecve", "posix_spawn", "system", "subprocess"]);
    for (name, sb) in scratch.both() {
        let run = sb.run_function(&code, "f", &hows).unwrap();
        assert_eq!(run.termination, Termination::Exited(0), "{name}: {run:?}");
        for (how, outcome) in hows.iter().zip(&run.outcomes) {
            let refused = match outcome {
                // EPERM from seccomp, or the hook's PermissionError; os.system reports -1.
                CallOutcome::Value(v) => *v == 1.0 || *v == 0.0 || *v == -1.0,
                // The audit hook refuses the import of subprocess.
                CallOutcome::Raised(e) => e.contains("PermissionError"),
                _ => false,
            };
            assert!(refused, "{name}, {how}: {outcome:?} in {run:?}");
        }
        if name == "kernel only" {
            assert_eq!(
                run.outcomes[..3],
                [
                    CallOutcome::Value(1.0),
                    CallOutcome::Value(1.0),
                    CallOutcome::Value(1.0)
                ],
                "execve, execveat and clone refuse with EPERM"
            );
        }
        assert_no_process_left(&run);
    }
    scratch.assert_empty();
}

#[test]
fn no_process_outlives_the_run() {
    let scratch = Scratch::new();
    // The escape of issue #17: a grandchild in a session of its own that outlives the run.
    let code = format!(
        "{REBIND_HOOK_TABLES}import os, time\ndef f(m):\n    try:\n        pid = os.fork()\n    except OSError as e:\n        return e.errno or 0\n    if pid == 0:\n        os.setsid()\n        if os.fork() == 0:\n            time.sleep(30)\n        os._exit(0)\n    os.waitpid(pid, 0)\n    return 100\n"
    );
    for (name, sb) in scratch.both() {
        let run = sb.run_function(&code, "f", &strings(&["x"])).unwrap();
        let errno = if name == "default" { 0.0 } else { 1.0 };
        assert_eq!(run.outcomes, vec![CallOutcome::Value(errno)], "{name}");
        assert_no_process_left(&run);
    }
    // Without seccomp and the hook, the fork succeeds; the run's own uid is what finds the
    // grandchild at the end.
    let no_seccomp = scratch.sandbox(SandboxConfig {
        audit_hook: false,
        seccomp: false,
        ..config()
    });
    assert!(!no_seccomp.layers().seccomp);
    if no_seccomp.layers().uid_drop {
        let run = no_seccomp
            .run_function(&code, "f", &strings(&["x"]))
            .unwrap();
        assert_eq!(run.outcomes, vec![CallOutcome::Value(100.0)]);
        assert_no_process_left(&run);
    }
    // FIXME: without root and without seccomp nothing stops such a grandchild (a documented
    // limit); not tested.
    scratch.assert_empty();
}

#[test]
fn each_run_has_its_own_uid_and_a_private_directory() {
    let scratch = Scratch::new();
    // Inside the network layer's user namespace every uid reads as 65534; without it the
    // run sees its real uid.
    let sb = scratch.sandbox(SandboxConfig {
        network_namespace: false,
        ..config()
    });
    let code = "import os\ndef f(what):\n    st = os.stat('.')\n    if what == 'uid':\n        return os.getuid()\n    if what == 'mode':\n        return st.st_mode & 0o7777\n    return 1 if st.st_uid == os.getuid() else 0\n";
    let what = strings(&["uid", "mode", "owner"]);
    let a = sb.run_function(code, "f", &what).unwrap();
    let b = sb.run_function(code, "f", &what).unwrap();
    for run in [&a, &b] {
        assert_eq!(
            run.outcomes[1..],
            [CallOutcome::Value(0o700 as f64), CallOutcome::Value(1.0)]
        );
    }
    if sb.layers().uid_drop {
        let (ua, ub) = (a.uid.unwrap(), b.uid.unwrap());
        assert_ne!(ua, ub);
        assert!(sb.config().uid_range.contains(&ua));
        assert_eq!(a.outcomes[0], CallOutcome::Value(ua as f64));
        assert_eq!(b.outcomes[0], CallOutcome::Value(ub as f64));
    } else {
        assert_eq!(a.uid, None);
    }
    scratch.assert_empty();
}

#[test]
fn threads_still_run_under_the_seccomp_filter() {
    let scratch = Scratch::new();
    let sb = scratch.sandbox(SandboxConfig {
        audit_hook: false,
        require_seccomp: true,
        ..config()
    });
    let code = "import threading\ndef f(m):\n    out = []\n    t = threading.Thread(target=lambda: out.append(0.5))\n    t.start()\n    t.join()\n    return out[0]\n";
    let run = sb.run_function(code, "f", &strings(&["x"])).unwrap();
    assert_eq!(
        run.outcomes,
        vec![CallOutcome::Value(0.5)],
        "{}",
        run.stderr_tail
    );
}

#[test]
fn layers_are_recorded_and_can_be_required() {
    let sb = sandbox(config());
    let l = sb.layers();
    // SAFETY: geteuid cannot fail.
    assert_eq!(l.uid_drop, unsafe { libc::geteuid() } == 0);
    assert!(
        l.seccomp,
        "x86_64 and aarch64 Linux always have seccomp filters"
    );
    assert!(l.rlimits && l.audit_hook);
    let off = sandbox(SandboxConfig {
        seccomp: false,
        landlock: false,
        ..config()
    });
    assert!(!off.layers().seccomp);
    assert_eq!(off.layers().landlock, None);
    for (c, name) in [
        (
            SandboxConfig {
                seccomp: false,
                require_seccomp: true,
                ..config()
            },
            "seccomp",
        ),
        (
            SandboxConfig {
                landlock: false,
                require_landlock: true,
                ..config()
            },
            "Landlock",
        ),
    ] {
        let e = Sandbox::new(c).unwrap_err().to_string();
        assert!(e.contains(name) && e.contains("required"), "{e}");
    }
    if l.uid_drop {
        let e = Sandbox::new(SandboxConfig {
            uid_range: 0..10,
            ..config()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("uid range"), "{e}");
    }
}
