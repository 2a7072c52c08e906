"""Parity of selfaware's LoRA training with Hugging Face PEFT + torch AdamW.

Run from the repository root after `peft_parity export` (see README.md in this directory):

    .venv/bin/python crates/selfaware-train/parity/parity.py MODEL.gguf OUT

Loads the same GGUF with transformers (f32), loads selfaware's initial adapter (OUT/init) with
PEFT, replays the exported batches with torch.optim.AdamW, the exported learning rates and
clip_grad_norm_, and compares:
  - per-step losses: relative difference <= 1e-4 at every step (>= 10 steps);
  - final LoRA weights: relative Frobenius difference <= 1e-3 per tensor (OUT/final);
  - last-position logits on the 5 exported prompts: max abs difference <= 1e-3.
Then saves the PEFT-trained adapter as OUT/peft_made with its logits (OUT/peft_logits.json), for
`peft_parity check-peft`. Exits non-zero when a comparison fails.
"""

import json
import sys
from pathlib import Path

import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

torch.set_num_threads(2)
gguf = Path(sys.argv[1])
out = Path(sys.argv[2])
exp = json.loads((out / "parity.json").read_text())
cfg = exp["config"]

base = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
model = PeftModel.from_pretrained(base, out / "init", is_trainable=True)
model.train()
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(
    params,
    lr=cfg["lr"],
    betas=(cfg["beta1"], cfg["beta2"]),
    eps=cfg["adam_eps"],
    weight_decay=cfg["weight_decay"],
)


def batch_nll(examples):
    t = max(len(e["ids"]) for e in examples)
    ids = torch.full((len(examples), t), exp["pad_id"], dtype=torch.long)
    att = torch.zeros((len(examples), t), dtype=torch.long)
    for b, e in enumerate(examples):
        ids[b, : len(e["ids"])] = torch.tensor(e["ids"])
        att[b, : len(e["ids"])] = 1
    logits = model(input_ids=ids, attention_mask=att).logits
    nll, n = 0.0, 0
    for b, e in enumerate(examples):
        pos = [p - 1 for p in range(1, len(e["ids"])) if e["trained"][p]]
        tgt = torch.tensor([e["ids"][p + 1] for p in pos])
        lp = torch.log_softmax(logits[b, pos], dim=-1)
        nll = nll - lp.gather(1, tgt[:, None]).sum()
        n += len(pos)
    return nll, n


failures = []
losses = []
for k, step in enumerate(exp["steps"]):
    opt.zero_grad()
    n_total = sum(sum(sum(e["trained"][1:]) for e in mb) for mb in step)
    loss_sum = 0.0
    for mb in step:
        nll, _ = batch_nll(mb)
        (nll / n_total).backward()
        loss_sum += nll.item()
    if cfg["max_grad_norm"] is not None:
        torch.nn.utils.clip_grad_norm_(params, cfg["max_grad_norm"])
    for g in opt.param_groups:
        g["lr"] = exp["lr"][k]
    opt.step()
    loss = loss_sum / n_total
    losses.append(loss)
    ours = exp["loss"][k]
    rel = abs(loss - ours) / abs(loss)
    print(f"step {k + 1}: peft {loss:.7f} selfaware {ours:.7f} rel {rel:.2e}")
    if rel > 1e-4:
        failures.append(f"step {k + 1} loss rel diff {rel:.2e}")
if len(losses) < 10:
    failures.append(f"only {len(losses)} steps compared")

final = load_file(str(out / "final" / "adapter_model.safetensors"))
state = {k.replace(".default", ""): v for k, v in model.state_dict().items() if "lora_" in k}
worst = 0.0
for name, ours in final.items():
    theirs = state[name].detach()
    rel = (torch.linalg.norm(theirs - ours) / torch.linalg.norm(theirs)).item()
    worst = max(worst, rel)
    if rel > 1e-3:
        failures.append(f"{name}: relative Frobenius difference {rel:.2e}")
print(f"final LoRA weights: worst relative Frobenius difference {worst:.2e} over {len(final)} tensors")

model.eval()
worst = 0.0
peft_logits = []
with torch.no_grad():
    for p in exp["prompts"]:
        logits = model(input_ids=torch.tensor([p["ids"]])).logits[0, -1]
        d = (logits - torch.tensor(p["logits"])).abs().max().item()
        worst = max(worst, d)
        peft_logits.append({"ids": p["ids"], "logits": logits.tolist()})
print(f"logits on {len(exp['prompts'])} prompts: max abs difference {worst:.2e}")
if worst > 1e-3:
    failures.append(f"logit difference {worst:.2e}")

model.save_pretrained(out / "peft_made")
(out / "peft_logits.json").write_text(json.dumps({"prompts": peft_logits}))
if failures:
    print("FAILED:\n  " + "\n  ".join(failures))
    sys.exit(1)
print("parity OK")
