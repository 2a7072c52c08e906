"""Risk-battery benchmark (issue "Evaluation", Performance): `selfaware eval` over the full risk
battery on the embedded model (SmolLM2-135M-Instruct Q4_1), 2 threads; reports wall time and
prompts/s against the issue's target (<= 60 s on 2 cores). The issue names no peer for this
workload, so only selfaware is timed.

    python3 bench/eval_bench.py [--selfaware target/release/selfaware] [--paper-questions DIR]

"Full" means every rendered prompt of the built-in `risk` battery: every paraphrase and option
permutation, with the paper's imported paraphrases when the paper's `questions/` folder is given
(by default `$SELFAWARE_PAPER_DIR/questions`, else `../shared/reference/paper/questions` next to
the repository, when it exists),
exact 0..100 distributions for the numeric scales and 100 samples at T=1 for the free-form
questions (the paper's settings). Each repetition writes into a fresh folder, so nothing is
resumed. The wall time includes loading the model; the CPU time (user + system of the child)
and the 1-minute load average are reported too, since wall time on a busy machine says little.
Results go to bench/out/eval-risk.json.
"""

import argparse
import collections
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe  # bench/machine.py

THREADS = 2
TARGET_S = 60.0
ROOT = Path(__file__).resolve().parent.parent
PAPER = Path(os.environ.get("SELFAWARE_PAPER_DIR") or ROOT.parent / "shared" / "reference" / "paper")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--selfaware", default=str(ROOT / "target" / "release" / "selfaware"))
    ap.add_argument("--paper-questions", default=str(PAPER / "questions"),
                    help="the paper's questions/ folder (skipped when it does not exist)")
    ap.add_argument("--model", default="default")
    ap.add_argument("--reps", type=int, default=2, help="repetitions; the best is reported")
    args = ap.parse_args()

    paper = Path(args.paper_questions)
    runs = []
    for _ in range(max(1, args.reps)):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "risk"
            cmd = [args.selfaware, "--threads", str(THREADS), "eval", "--model", args.model,
                   "--battery", "risk", "--out", str(out), "--seed", "0", "--progress-every", "1000000"]
            if paper.is_dir():
                cmd += ["--paper-questions", str(paper)]
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, text=True)
            wall = time.perf_counter() - t
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines() if line]
            kinds = collections.Counter(r["observation"]["kind"] for r in records)
            samples = sum(len(r["observation"].get("samples", [])) for r in records)
            runs.append({"seconds": wall, "cpu_seconds": cpu, "prompts": len(records),
                         "observations": dict(kinds), "samples": samples,
                         "load_average_1min": os.getloadavg()[0]})
    best = min(runs, key=lambda r: r["seconds"])
    result = {
        "workload": "selfaware eval --battery risk (every paraphrase and permutation, exact 0..100 "
                    "distributions, 100 samples per free-form prompt at T=1)",
        "paper_questions": paper.is_dir(),
        "threads": THREADS,
        "best": best,
        "prompts_per_second": best["prompts"] / best["seconds"],
        "target_seconds": TARGET_S,
        "runs": runs,
    }
    machine_text, result["machine"] = describe(args.selfaware, THREADS)
    print(machine_text)
    print(f"risk battery: {best['prompts']} prompts ({', '.join(f'{k} {v}' for k, v in sorted(best['observations'].items()))}; "
          f"{best['samples']} samples) in {best['seconds']:.1f} s = {result['prompts_per_second']:.2f} prompts/s "
          f"on {THREADS} threads, {best['cpu_seconds']:.1f} CPU s, load average {best['load_average_1min']:.1f} "
          f"(target <= {TARGET_S:.0f} s: {'met' if best['seconds'] <= TARGET_S else 'missed'})")
    out_dir = ROOT / "bench" / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "eval-risk.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    sys.exit(main())
