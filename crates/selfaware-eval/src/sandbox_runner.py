# Harness that runs one model-written Python function inside the selfaware sandbox.
#
# Started by `selfaware_eval::sandbox` as `python3 -I -S sandbox_runner.py` with the
# sandbox's private directory as the working directory. Reads `job.json`
# ({"code", "func_name", "inputs", "per_call_seconds", "audit_hook", "report_fd",
# "exec_filter"}). Before it loads any model code it installs `exec_filter` (a seccomp
# program, as [code, jt, jf, k] rows, that refuses execve) when given, and writes one JSON
# line to the pipe `report_fd`, then closes it:
#   {"exec_filter": true, "seccomp_filters": 2, "no_new_privs": 1}
#   {"exec_filter": false, "error": "..."}   (and exits without running model code)
# Then it defines the function, calls it on every input and writes one JSON line per input
# to `results.jsonl`:
#   {"i": 0, "value": 0.7}            a finite int or float (bools are not numbers)
#   {"i": 1, "other": "'abc'"}         anything else (repr, truncated)
#   {"i": 2, "error": "ValueError: x"} the call raised (or ran past its CPU time)
#   {"i": -1, "error": "..."}          defining the function failed
# Names available to the code, as in the paper's evaluator: re, random, math, string,
# Counter, and word_tokenize (a regex tokenizer; NLTK is not available here, so a minimal
# stand-in module `nltk` with `word_tokenize`, `tokenize.word_tokenize` and a no-op
# `download` is registered, letting the usual imports succeed).
import json
import math
import os
import random
import re
import signal
import string
import sys
import types
from collections import Counter


def make_hook(root):
    """The audit hook. Its tables are locals of this call, so model code that rebinds
    names in `__main__` changes nothing (the kernel layers hold whatever it does)."""
    blocked_events = (
        "socket.", "subprocess.", "os.fork", "os.forkpty", "os.posix_spawn", "os.spawn",
        "os.exec", "os.system", "os.kill", "os.killpg", "os.putenv", "os.unsetenv",
        "ctypes.", "sys.addaudithook", "pty.", "webbrowser.", "urllib.", "http.",
        "ftplib.", "smtplib.", "imaplib.", "poplib.", "nntplib.", "telnetlib.",
    )
    blocked_modules = frozenset({
        "ctypes", "_ctypes", "socket", "_socket", "ssl", "_ssl", "select", "selectors",
        "subprocess", "_posixsubprocess", "multiprocessing", "_multiprocessing",
        "concurrent", "asyncio", "threading", "_thread", "pty", "fcntl", "mmap", "resource",
    })
    path_events = frozenset({
        "os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.truncate", "os.utime",
        "os.chmod", "os.chown", "os.link", "os.symlink", "os.setxattr", "os.removexattr",
        "os.chdir", "shutil.rmtree", "shutil.copyfile", "shutil.copytree", "shutil.move",
        "shutil.chown", "shutil.make_archive", "shutil.unpack_archive",
    })
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    realpath, fsdecode, sep = os.path.realpath, os.fsdecode, os.sep

    def inside(path):
        if isinstance(path, int):
            return False
        try:
            p = realpath(fsdecode(path))
        except Exception:
            return False
        return p == root or p.startswith(root + sep)

    def hook(event, args):
        if event.startswith(blocked_events):
            raise PermissionError("sandbox: " + event + " is not allowed")
        if event == "import" and args and isinstance(args[0], str):
            if args[0].split(".")[0] in blocked_modules:
                raise PermissionError("sandbox: import of " + args[0] + " is not allowed")
        if event == "open" and len(args) >= 3:
            path, mode, flags = args[0], args[1], args[2]
            writes = (isinstance(flags, int) and flags & write_flags) or (
                isinstance(mode, str) and any(c in mode for c in "wax+")
            )
            if writes and not inside(path):
                raise PermissionError(
                    "sandbox: writing outside the sandbox directory is not allowed"
                )
        if event in path_events:
            for a in args:
                if isinstance(a, (str, bytes, os.PathLike)) and not inside(a):
                    raise PermissionError("sandbox: " + event + " outside the sandbox directory")

    return hook


def install_exec_filter(rows):
    """Installs the seccomp program `rows` with no-new-privileges set first. ctypes is
    imported here, before the audit hook and model code, and dropped from sys.modules
    afterwards, so that importing it again goes through the hook."""
    import ctypes

    class SockFilter(ctypes.Structure):
        _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte),
                    ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
        prctl.restype = ctypes.c_int
        prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p,
                          ctypes.c_ulong, ctypes.c_ulong]
        program = (SockFilter * len(rows))(*[SockFilter(*row) for row in rows])
        fprog = SockFprog(len(rows), program)
        pr_set_no_new_privs, pr_set_seccomp, seccomp_mode_filter = 38, 22, 2
        if prctl(pr_set_no_new_privs, 1, None, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
        if prctl(pr_set_seccomp, seccomp_mode_filter, ctypes.addressof(fprog), 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")
    finally:
        for name in [m for m in sys.modules if m in ("ctypes", "_ctypes") or m.startswith("ctypes.")]:
            del sys.modules[name]


def process_status():
    """Seccomp_filters and NoNewPrivs of /proc/self/status."""
    found = {}
    with open("/proc/self/status", encoding="utf-8") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("Seccomp_filters", "NoNewPrivs"):
                found[key] = int(value.split()[0])
    return found.get("Seccomp_filters"), found.get("NoNewPrivs")


def report_layers(job):
    """Installs the exec filter if the job has one and reports on the pipe, which is closed
    before model code exists. Returns whether model code may run."""
    fd = job["report_fd"]
    rows = job.get("exec_filter")
    ok = True
    try:
        if rows is None:
            report = {"exec_filter": False}
        else:
            install_exec_filter(rows)
            filters, nnp = process_status()
            report = {"exec_filter": True, "seccomp_filters": filters, "no_new_privs": nnp}
    except BaseException as e:
        report = {"exec_filter": False, "error": describe(e)}
        ok = False
    try:
        os.write(fd, (json.dumps(report) + "\n").encode())
    finally:
        os.close(fd)
    return ok


def word_tokenize(text):
    return re.findall(r"\w+|[^\w\s]", text)


def install_nltk_stand_in():
    nltk = types.ModuleType("nltk")
    tok = types.ModuleType("nltk.tokenize")
    tok.word_tokenize = word_tokenize
    nltk.tokenize = tok
    nltk.word_tokenize = word_tokenize
    nltk.download = lambda *a, **k: True
    sys.modules["nltk"] = nltk
    sys.modules["nltk.tokenize"] = tok


class CallTimeout(Exception):
    pass


def on_timer(signum, frame):
    raise CallTimeout("ran past its CPU time")


def describe(exc):
    return (type(exc).__name__ + ": " + str(exc))[:300]


def main():
    with open("job.json", encoding="utf-8") as f:
        job = json.load(f)
    if not report_layers(job):
        sys.exit(3)
    root = os.path.realpath(os.getcwd())
    out = open("results.jsonl", "w", encoding="utf-8")
    per_call = float(job["per_call_seconds"])

    def emit(obj):
        out.write(json.dumps(obj) + "\n")
        out.flush()

    signal.signal(signal.SIGPROF, on_timer)
    install_nltk_stand_in()
    if job.get("audit_hook", True):
        sys.addaudithook(make_hook(root))
    namespace = {
        "__name__": "model_code", "re": re, "random": random, "math": math,
        "string": string, "Counter": Counter, "word_tokenize": word_tokenize,
    }
    try:
        signal.setitimer(signal.ITIMER_PROF, per_call)
        exec(compile(job["code"], "<model code>", "exec"), namespace)
        signal.setitimer(signal.ITIMER_PROF, 0)
        fn = namespace[job["func_name"]]
    except BaseException as e:
        signal.setitimer(signal.ITIMER_PROF, 0)
        emit({"i": -1, "error": describe(e)})
        return
    for i, arg in enumerate(job["inputs"]):
        try:
            signal.setitimer(signal.ITIMER_PROF, per_call)
            v = fn(arg)
            signal.setitimer(signal.ITIMER_PROF, 0)
        except BaseException as e:
            signal.setitimer(signal.ITIMER_PROF, 0)
            emit({"i": i, "error": describe(e)})
            continue
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            emit({"i": i, "value": float(v)})
        else:
            try:
                r = repr(v)[:200]
            except BaseException:
                r = "<unprintable>"
            emit({"i": i, "other": r})


main()
