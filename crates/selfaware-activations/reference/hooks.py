"""Captured activations against Hugging Face transformers (and PEFT) on the same weights.

Run by `tests/reference.rs`, or by hand from the repository root:

    PYTHON crates/selfaware-activations/reference/hooks.py MODEL.gguf CAPTURE.safetensors [ADAPTER_DIR]

CAPTURE is a `selfaware activations capture --positions all` file holding every hook point of
every layer and `ln_final.hook_normalized`. The GGUF is loaded by transformers (dequantized to
f32), with the PEFT adapter when given; each prompt's tokens (the file's `token_ids` between its
`offsets`) run through it once, and the activations are read from
  - `output_hidden_states`: hidden_states[l] is blocks.l.hook_resid_pre, and the last entry
    (after the final norm) is ln_final.hook_normalized times the norm's weight;
  - forward hooks: each decoder layer's output (hook_resid_post), `self_attn`'s output
    (hook_attn_out), `mlp`'s output (hook_mlp_out), and the final norm's input divided by its
    RMS (ln_final.hook_normalized, before the gain, as TransformerLens defines it).
The check is 1e-4 in f32 in units of each row's scale: max |ours - theirs| over a position's
vector <= 1e-4 * max(1, max |theirs| over that vector). Plain max abs <= 1e-4 cannot hold on this
model's residual stream: SmolLM2 carries "massive activations" (a few dimensions reaching ~25 000
at many positions from layer 12 on), where one f32 step is 2e-3, and the two implementations'
different summation orders differ there by a step or two. Prints, per kind of point, the scaled
difference, the plain max abs difference on rows below 1000 and on the rows above, and exits
non-zero when a scaled difference exceeds 1e-4.
"""

import sys
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM

LIMIT = 1e-4
torch.set_num_threads(2)
gguf = Path(sys.argv[1])
capture = Path(sys.argv[2])
adapter = Path(sys.argv[3]) if len(sys.argv) > 3 else None

model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
if adapter is not None:
    from peft import PeftModel

    model = PeftModel.from_pretrained(model, adapter).get_base_model()
model.eval()
inner = model.model
layers = inner.layers
eps = model.config.rms_norm_eps

got = {}


def first(x):
    return x[0] if isinstance(x, tuple) else x


def keep(name):
    def hook(_module, _args, out):
        got[name] = first(out)[0].detach()

    return hook


for l, layer in enumerate(layers):
    layer.register_forward_hook(keep(f"blocks.{l}.hook_resid_post"))
    layer.self_attn.register_forward_hook(keep(f"blocks.{l}.hook_attn_out"))
    layer.mlp.register_forward_hook(keep(f"blocks.{l}.hook_mlp_out"))


def norm_input(_module, args, kwargs):
    x = (args[0] if args else kwargs["hidden_states"])[0].detach().float()
    got["ln_final.hook_normalized"] = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


inner.norm.register_forward_pre_hook(norm_input, with_kwargs=True)

worst = {}


# Rows (positions) whose values reach the thousands: SmolLM2's "massive activations" (a few
# dimensions at the first tokens, up to ~25 000 here), where one f32 step is already ~2e-3.
MASSIVE = 1000.0
scaled = {}
massive = {}


def compare(kind, ours, theirs):
    diff = (torch.as_tensor(ours) - theirs).abs()
    row_max = theirs.abs().amax(-1)
    row_diff = diff.amax(-1)
    normal = row_max < MASSIVE
    if normal.any():
        worst[kind] = max(worst.get(kind, 0.0), row_diff[normal].max().item())
    if (~normal).any():
        m = massive.get(kind, (0, 0.0, 0.0))
        massive[kind] = (m[0] + int((~normal).sum()), max(m[1], row_diff[~normal].max().item()),
                         max(m[2], row_max[~normal].max().item()))
    scaled[kind] = max(scaled.get(kind, 0.0), (row_diff / row_max.clamp(min=1.0)).max().item())


with safe_open(capture, "pt") as f:
    meta = f.metadata()
    assert meta["positions"] == "all", "the reference check reads --positions all captures"
    offsets = f.get_tensor("offsets").tolist()
    ids = f.get_tensor("token_ids")
    tensors = {k: f.get_tensor(k) for k in f.keys()}
n_layers = len(layers)
with torch.no_grad():
    for p in range(len(offsets) - 1):
        a, b = offsets[p], offsets[p + 1]
        got.clear()
        out = model(input_ids=ids[a:b].unsqueeze(0), output_hidden_states=True)
        hs = [h[0] for h in out.hidden_states]
        for l in range(n_layers):
            compare("resid_pre (hidden_states)", tensors[f"blocks.{l}.hook_resid_pre"][a:b], hs[l])
            for kind in ["resid_post", "attn_out", "mlp_out"]:
                name = f"blocks.{l}.hook_{kind}"
                compare(kind + " (hooks)", tensors[name][a:b], got[name])
        ln = tensors["ln_final.hook_normalized"][a:b]
        compare("ln_final (norm input hook)", ln, got["ln_final.hook_normalized"])
        compare("ln_final x gain (hidden_states[-1])", ln * inner.norm.weight, hs[n_layers])

label = "with adapter" if adapter is not None else "base model"
print(f"{capture.name} ({label}, {len(offsets) - 1} prompts, {offsets[-1]} positions):")
failed = False
for kind in scaled:
    line = f"  {kind:36s} scaled {scaled[kind]:.1e}{'  > limit' if scaled[kind] > LIMIT else ''}"
    failed |= scaled[kind] > LIMIT
    if kind in worst:
        line += f"; max |difference| {worst[kind]:.2e} on rows below {MASSIVE:.0f}"
    if kind in massive:
        n, md, mv = massive[kind]
        line += f", {md:.2e} on {n} rows reaching {mv:.0f}"
    print(line)
if failed:
    print(f"FAILED: limit {LIMIT:.0e}")
    sys.exit(1)
print("OK")
