"""Steered log-probabilities against Hugging Face transformers with forward hooks.

Run by `tests/reference.rs`, or by hand from the repository root:

    PYTHON crates/selfaware-activations/reference/steer.py MODEL.gguf CASES.json OURS.safetensors

CASES.json lists the steering cases, each a list of vectors {file, point, alpha} (a vector is the
tensor named `point` of the safetensors `file`, as `--steer FILE:POINT:ALPHA` reads it).
OURS.safetensors holds the prompts (`token_ids` with `offsets`, as a capture file does) and, per
case k, what selfaware computed under that steering: `case{k}.seq`, each prompt's per-token
log-probabilities log P(token i+1 | tokens ..i) concatenated, and `case{k}.next`, the full
next-token log-distribution after each prompt ([prompts, vocab]).

The GGUF is loaded by transformers (dequantized to f32) and each vector is added by a PyTorch
hook, `h + alpha * v`, as TransformerLens's hooks add it:
  - blocks.l.hook_resid_pre: a forward pre-hook on decoder layer l (its input hidden states);
  - blocks.l.hook_resid_post: a forward hook on decoder layer l (its output);
  - blocks.l.hook_attn_out / hook_mlp_out: forward hooks on `self_attn` / `mlp` (their outputs);
  - ln_final.hook_normalized: TransformerLens adds to the normalized stream before the final
    norm's gain, (x / rms(x) + alpha * v) * gain, which is the norm's output plus
    alpha * v * gain: a forward hook on the final norm adding that.
Several vectors at one point are added one hook after the other, in the order given. Prints per
case the max abs difference of both kinds of log-probability (and how far the steering moved
them from the unsteered case 0), and exits non-zero when one exceeds 1e-4.
"""

import json
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

LIMIT = 1e-4
torch.set_num_threads(2)
gguf = Path(sys.argv[1])
cases = json.loads(Path(sys.argv[2]).read_text())
ours = load_file(sys.argv[3])

model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
model.eval()
inner = model.model


def add_to_output(vec):
    def hook(_module, _args, out):
        if isinstance(out, tuple):
            return (out[0] + vec,) + tuple(out[1:])
        return out + vec

    return hook


def add_to_input(vec):
    def hook(_module, args, kwargs):
        if args:
            return (args[0] + vec,) + tuple(args[1:]), kwargs
        kwargs = dict(kwargs)
        kwargs["hidden_states"] = kwargs["hidden_states"] + vec
        return args, kwargs

    return hook


def register(point, vec):
    if point == "ln_final.hook_normalized":
        return inner.norm.register_forward_hook(add_to_output(vec * inner.norm.weight.detach()))
    blocks, layer, hook = point.split(".")
    assert blocks == "blocks", point
    layer = inner.layers[int(layer)]
    if hook == "hook_resid_pre":
        return layer.register_forward_pre_hook(add_to_input(vec), with_kwargs=True)
    if hook == "hook_resid_post":
        return layer.register_forward_hook(add_to_output(vec))
    if hook == "hook_attn_out":
        return layer.self_attn.register_forward_hook(add_to_output(vec))
    if hook == "hook_mlp_out":
        return layer.mlp.register_forward_hook(add_to_output(vec))
    raise ValueError(point)


def vector(v):
    with safe_open(v["file"], "pt") as f:
        t = f.get_tensor(v["point"]).float().reshape(-1)
    # alpha * v in f32, as selfaware computes it.
    return torch.tensor(v["alpha"], dtype=torch.float32) * t


ids = ours["token_ids"]
offsets = ours["offsets"].tolist()
failed = False
print(f"{len(offsets) - 1} prompts, {offsets[-1]} tokens, {len(cases)} steering cases:")
with torch.no_grad():
    for k, case in enumerate(cases):
        handles = [register(v["point"], vector(v)) for v in case]
        seq, nxt = [], []
        for p in range(len(offsets) - 1):
            x = ids[offsets[p] : offsets[p + 1]].long()
            lp = torch.log_softmax(model(input_ids=x.unsqueeze(0)).logits[0].float(), -1)
            seq.append(lp[:-1].gather(1, x[1:].unsqueeze(1)).squeeze(1))
            nxt.append(lp[-1])
        for h in handles:
            h.remove()
        seq, nxt = torch.cat(seq), torch.stack(nxt)
        d_seq = (ours[f"case{k}.seq"] - seq).abs().max().item()
        d_next = (ours[f"case{k}.next"] - nxt).abs().max().item()
        moved = max(
            (ours[f"case{k}.seq"] - ours["case0.seq"]).abs().max().item(),
            (ours[f"case{k}.next"] - ours["case0.next"]).abs().max().item(),
        )
        name = " + ".join(f"{v['alpha']:g}·{Path(v['file']).name}:{v['point']}" for v in case)
        bad = max(d_seq, d_next) > LIMIT
        failed |= bad
        print(
            f"  case {k} ({name or 'not steered'}): max |difference| tokens {d_seq:.2e}, "
            f"next-token distributions {d_next:.2e}; moved by steering {moved:.2f}"
            f"{'  > limit' if bad else ''}"
        )
if failed:
    print(f"FAILED: limit {LIMIT:.0e}")
    sys.exit(1)
print("OK")
