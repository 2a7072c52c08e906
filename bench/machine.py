"""The machine a benchmark ran on, as `selfaware bench machine` reads it (CPU model and the
instruction sets that choose kernels, cores and threads per core, caches, the kernels the engine
takes, compute threads, load average). Every bench script prints it above its table and stores
it with its figures: a ratio measured on one machine is not a property of the program."""

import json
import subprocess


def describe(selfaware, threads):
    """(text for the terminal, dict for the record) of this machine, read with `threads`
    compute threads, the count the benchmark runs with."""
    base = [str(selfaware), "--threads", str(threads), "bench", "machine"]
    text = subprocess.run(base, check=True, capture_output=True, text=True).stdout.strip()
    record = json.loads(subprocess.run(base + ["--json"], check=True, capture_output=True, text=True).stdout)
    return text, record
