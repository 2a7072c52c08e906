"""Reads an Inspect log with inspect_ai's own reader and prints what the Rust test checks.

Usage: python read_log.py LOG.json
"""

import json
import sys

from inspect_ai.log import read_eval_log

log = read_eval_log(sys.argv[1])
print(
    json.dumps(
        {
            "status": log.status,
            "task": log.eval.task,
            "model": log.eval.model,
            "samples": [
                {
                    "id": s.id,
                    "target": s.target,
                    "input": s.input if isinstance(s.input, str) else [m.text for m in s.input],
                    "scores": {k: v.value for k, v in (s.scores or {}).items()},
                }
                for s in log.samples or []
            ],
            "results": {
                e.name: {m: v.value for m, v in e.metrics.items()} for e in log.results.scores
            },
        }
    )
)
