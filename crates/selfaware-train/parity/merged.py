"""A merged model written by `selfaware adapter merge`, loaded by transformers.

Run from the repository root after `parity.py` (see README.md in this directory), once
`selfaware adapter merge` has merged selfaware's trained adapter (OUT/final) into OUT/merged:

    .venv/bin/python crates/selfaware-train/parity/merged.py OUT

Loads OUT/merged with AutoModelForCausalLM and AutoTokenizer (no GGUF, no PEFT) and compares,
on the five exported prompts:
  - the prompt token ids transformers' chat template + tokenizer produce with those selfaware
    produced (exactly equal);
  - last-position log-probabilities with those of selfaware with the adapter attached
    (OUT/parity.json): max abs difference <= 1e-3.
Exits non-zero when a comparison fails.
"""

import json
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

torch.set_num_threads(2)
out = Path(sys.argv[1])
merged = out / "merged"
exp = json.loads((out / "parity.json").read_text())

tok = AutoTokenizer.from_pretrained(merged)
model = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).eval()

failures = []
worst = 0.0
with torch.no_grad():
    for k, p in enumerate(exp["prompts"]):
        text = tok.apply_chat_template([{"role": "user", "content": p["text"]}], tokenize=False,
                                       add_generation_prompt=True)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        if ids != p["ids"]:
            failures.append(f"prompt {k + 1}: transformers' ids differ from selfaware's")
        logits = model(input_ids=torch.tensor([p["ids"]])).logits[0, -1]
        ours = torch.log_softmax(torch.tensor(p["logits"]), -1)
        d = (torch.log_softmax(logits, -1) - ours).abs().max().item()
        worst = max(worst, d)
print(f"merged model in transformers: max |logprob difference| {worst:.2e} over {len(exp['prompts'])} prompts "
      f"(limit 1e-3); prompt ids {'equal' if not failures else 'DIFFER'}")
if worst > 1e-3:
    failures.append(f"logprob difference {worst:.2e}")
if failures:
    print("FAILED:\n  " + "\n  ".join(failures))
    sys.exit(1)
print("merged model OK")
