# Harness that runs one model-written Python function inside the selfaware sandbox.
#
# Started by `selfaware_eval::sandbox` as `python3 -I -S sandbox_runner.py` with the
# sandbox's private directory as the working directory. Reads `job.json`
# ({"code", "func_name", "inputs", "per_call_seconds", "audit_hook"}), defines the function,
# calls it on every input and writes one JSON line per input to `results.jsonl`:
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

ROOT = os.path.realpath(os.getcwd())

BLOCKED_EVENTS = (
    "socket.", "subprocess.", "os.fork", "os.forkpty", "os.posix_spawn", "os.spawn",
    "os.exec", "os.system", "os.kill", "os.killpg", "os.putenv", "os.unsetenv",
    "ctypes.", "sys.addaudithook", "pty.", "webbrowser.", "urllib.", "http.",
    "ftplib.", "smtplib.", "imaplib.", "poplib.", "nntplib.", "telnetlib.",
)
BLOCKED_MODULES = {
    "ctypes", "_ctypes", "socket", "_socket", "ssl", "_ssl", "select", "selectors",
    "subprocess", "_posixsubprocess", "multiprocessing", "_multiprocessing",
    "concurrent", "asyncio", "threading", "_thread", "pty", "fcntl", "mmap", "resource",
}
PATH_EVENTS = {
    "os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.truncate", "os.utime", "os.chmod",
    "os.chown", "os.link", "os.symlink", "os.setxattr", "os.removexattr", "os.chdir",
    "shutil.rmtree", "shutil.copyfile", "shutil.copytree", "shutil.move", "shutil.chown",
    "shutil.make_archive", "shutil.unpack_archive",
}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def inside(path):
    if isinstance(path, int):
        return False
    try:
        p = os.path.realpath(os.fsdecode(path))
    except Exception:
        return False
    return p == ROOT or p.startswith(ROOT + os.sep)


def hook(event, args):
    if event.startswith(BLOCKED_EVENTS):
        raise PermissionError("sandbox: " + event + " is not allowed")
    if event == "import" and args and isinstance(args[0], str):
        if args[0].split(".")[0] in BLOCKED_MODULES:
            raise PermissionError("sandbox: import of " + args[0] + " is not allowed")
    if event == "open" and len(args) >= 3:
        path, mode, flags = args[0], args[1], args[2]
        writes = (isinstance(flags, int) and flags & WRITE_FLAGS) or (
            isinstance(mode, str) and any(c in mode for c in "wax+")
        )
        if writes and not inside(path):
            raise PermissionError("sandbox: writing outside the sandbox directory is not allowed")
    if event in PATH_EVENTS:
        for a in args:
            if isinstance(a, (str, bytes, os.PathLike)) and not inside(a):
                raise PermissionError("sandbox: " + event + " outside the sandbox directory")


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
    out = open("results.jsonl", "w", encoding="utf-8")
    per_call = float(job["per_call_seconds"])

    def emit(obj):
        out.write(json.dumps(obj) + "\n")
        out.flush()

    signal.signal(signal.SIGPROF, on_timer)
    install_nltk_stand_in()
    if job.get("audit_hook", True):
        sys.addaudithook(hook)
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
