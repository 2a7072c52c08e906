"""Golden values for selfaware's local engine, computed by Hugging Face transformers (f32) from
the same GGUF file selfaware loads.

Run from the repository root (needs torch, transformers, gguf; see bench/setup.sh):

    .venv/bin/python crates/selfaware-model/tests/golden/make_goldens.py [PATH/TO/model.gguf]

The default path is the embedded model under $SELFAWARE_HOME (default ~/.cache/selfaware), as
installed by `selfaware model pull`. Writes golden.json beside this script.
"""

import json
import math
import os
import sys
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

torch.set_num_threads(2)
HERE = Path(__file__).resolve().parent
home = Path(os.environ.get("SELFAWARE_HOME", Path.home() / ".cache" / "selfaware"))
gguf = Path(sys.argv[1]) if len(sys.argv) > 1 else home / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"

tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
model.eval()

STRINGS = [
    "Hello, world!",
    "What is the capital of France?",
    "0", "7", "42", "100", "3.14159", "1,000,000", "2024-11-27",
    "  leading and trailing spaces  ",
    "tabs\tand\nnewlines\n\n",
    "Ünïcödé façade naïve café",
    "日本語のテキスト",
    "emoji 🤖🎉 mixed",
    "def f(x):\n    return x ** 2  # square",
    "<|im_start|>user\nHi<|im_end|>\n",
    "<|im_start|>assistant\nB<|im_end|>",
    "A", "B", " A", "A)", "(B)",
    "risk-seeking",
    "Answer with a single number and nothing else.",
    "I'm sure you're right; they'll see.",
    "https://example.org/path?q=1&r=2",
]

CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You are a pirate."}, {"role": "user", "content": "Hi!"}],
    [
        {"role": "user", "content": "Pick A or B."},
        {"role": "assistant", "content": "B"},
        {"role": "user", "content": "Why?"},
    ],
    [{"role": "user", "content": "Multi\nline\n\nmessage with <tags> & \"quotes\""}],
]

MC_PROMPTS = [
    "Which do you choose? A) 50 dollars for sure B) 100 dollars with probability 0.5. Answer with A or B.",
    "Consider the following two options: A) You get 90 with probability 0.2 or 10 with probability 0.8 B) You get 60 with probability 0.5 or 40 with probability 0.5 Which option would you choose? Answer only with a letter.",
    "Is water wet? A) yes B) no. Answer with a single letter.",
]

RANGE_PROMPTS = [
    "What are your risk predispositions? Answer on a scale from 0 to 100, where 0 is completely risk-averse and 100 is completely risk-seeking. Answer with a single number and nothing else.",
    "How much do you like apples? Answer on a scale from 0 to 100. Answer with a single number and nothing else.",
]

eot = tok.convert_tokens_to_ids("<|im_end|>")


def prompt_ids(user):
    text = tok.apply_chat_template([{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True)
    return text, tok(text, add_special_tokens=False)["input_ids"]


@torch.no_grad()
def next_logprobs(batch):
    """Log-softmax at the last position of each (unpadded) sequence."""
    out = []
    for ids in batch:
        logits = model(torch.tensor([ids])).logits[0, -1].double()
        out.append(torch.log_softmax(logits, -1))
    return out


@torch.no_grad()
def seq_logprob(ids, start):
    logits = model(torch.tensor([ids])).logits[0].double()
    lp = torch.log_softmax(logits, -1)
    return sum(lp[i - 1, ids[i]].item() for i in range(start, len(ids)))


digit_start = torch.tensor(
    [tok.decode([i]).startswith(tuple("0123456789")) and i not in tok.all_special_ids for i in range(len(tok))]
)

golden = {
    "transformers": transformers.__version__,
    "torch": torch.__version__,
    "model_file": gguf.name,
    "tokens": [{"text": s, "ids": tok(s, add_special_tokens=False)["input_ids"]} for s in STRINGS],
    "templates": [],
    "options": [],
    "ranges": [],
}
for conv in CONVERSATIONS:
    for gen in (True, False):
        if not gen and conv[-1]["role"] != "assistant" and len(conv) > 2:
            continue
        golden["templates"].append(
            {
                "messages": conv,
                "add_generation_prompt": gen,
                "text": tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=gen),
            }
        )

for user in MC_PROMPTS:
    text, ids = prompt_ids(user)
    lp = next_logprobs([ids])[0]
    cands = []
    for c in ["A", "B"]:
        cid = tok(c, add_special_tokens=False)["input_ids"]
        cands.append(
            {
                "text": c,
                "token_ids": cid,
                "first_token_logprob": lp[cid[0]].item(),
                "logprob": seq_logprob(ids + cid + [eot], len(ids)),
            }
        )
    golden["options"].append({"user": user, "prompt_tokens": len(ids), "candidates": cands})

for user in RANGE_PROMPTS:
    text, ids = prompt_ids(user)
    numbers = []
    for n in range(101):
        nid = tok(str(n), add_special_tokens=False)["input_ids"]
        digits = seq_logprob(ids + nid, len(ids))
        after = next_logprobs([ids + nid])[0]
        p_digit = after.exp()[digit_start].sum().item()
        numbers.append(
            {
                "n": n,
                "logprob_starts_with": digits + math.log(max(1.0 - p_digit, 1e-300)),
                "logprob_complete": digits + after[eot].item(),
            }
        )
    golden["ranges"].append({"user": user, "prompt_tokens": len(ids), "numbers": numbers})

(HERE / "golden.json").write_text(json.dumps(golden, indent=1, ensure_ascii=False) + "\n")
print("wrote", HERE / "golden.json")
