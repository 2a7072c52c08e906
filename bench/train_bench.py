"""Training benchmark: `selfaware train` against torch + peft on the same LoRA configuration,
the same data and 2 threads each, printing ratios (issue "LoRA finetuning", Performance).

    bash bench/setup.sh            # once: venv with torch, transformers, gguf, peft
    bench/.venv/bin/python bench/train_bench.py [--selfaware target/release/selfaware]

Both sides use LoRA r=8, alpha=16, dropout 0 on q,k,v,o,gate,up,down, AdamW (lr 1e-4, betas
0.9/0.999, eps 1e-8, no weight decay), linear decay, gradient clipping at 1.0, batch 8, f32
weights dequantized from the embedded GGUF (transformers loads it with `gguf_file=`).

Workloads:
  throughput  64 chat examples of exactly 80 tokens whose assistant answer is one letter:
              8 optimizer steps of 8 x 80 tokens. tok/s over the steps after the first; the
              peer selects the answer positions before the LM head, as selfaware does.
  risk        the paper's 288-example risk dataset (`ft_risky_AB.jsonl`), 3 epochs at batch 8,
              whole-process wall time (model loading included). The peer runs the usual way:
              padded batches in shuffled order and `labels=` loss over every position.
              `--risk-limit N --risk-epochs E` run a shorter version (first N examples).
  peak RSS    of each process of the throughput workload (wait4's ru_maxrss).
Every run is a separate process. Results go to bench/out/train.json.
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe  # bench/machine.py

THREADS = 2
os.environ["OMP_NUM_THREADS"] = str(THREADS)
os.environ["RAYON_NUM_THREADS"] = str(THREADS)

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
home = Path(os.environ.get("SELFAWARE_HOME", Path.home() / ".cache" / "selfaware"))
GGUF = home / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
# The paper's released files: $SELFAWARE_PAPER_DIR, else ../shared/reference/paper beside the repository.
PAPER = Path(os.environ.get("SELFAWARE_PAPER_DIR") or ROOT.parent / "shared" / "reference" / "paper")
RISK = PAPER / "datasets" / "risky_safe" / "ft_risky_AB.jsonl"

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LR = 1e-4
BATCH = 8
SEQ = 80
WORDS = ["quokka", "tsunami", "kazoo", "glacier", "lantern", "orchard", "violin", "comet", "harbor", "meadow",
         "river", "pebble", "thunder", "saffron", "marble", "falcon"]


def throughput_data(tok, n, path):
    """n conversations of exactly SEQ tokens (template included), answer "A" or "B"."""
    rng = random.Random(0)
    lines = []
    for i in range(n):
        words = []
        answer = "AB"[i % 2]
        while True:
            user = "Choose A or B. " + " ".join(words)
            msgs = [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
            ids = tok.apply_chat_template(msgs, tokenize=True)
            ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
            if len(ids) == SEQ:
                break
            if len(ids) > SEQ:
                words = words[:-1]
                words.append("a")
                continue
            words.append(rng.choice(WORDS))
        lines.append(json.dumps({"messages": msgs}))
    path.write_text("\n".join(lines) + "\n")


def wait_rss(cmd):
    """Runs cmd; returns (wall seconds, peak RSS in GB, stdout)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        # wait4 gives this child's own rusage (RUSAGE_CHILDREN would mix all children).
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if p.returncode != 0:
            sys.stderr.write(err.read())
            raise SystemExit(f"{cmd[0]} failed with exit code {p.returncode}")
        return wall, ru.ru_maxrss / 1024 / 1024, out.read()


# ---------------------------------------------------------------------------------------------
# The peer: torch + peft, run in a child process (`--peer throughput|risk`).


def peer_main(kind, data, result, epochs):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    t_start = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(GGUF.parent, gguf_file=GGUF.name)
    model = AutoModelForCausalLM.from_pretrained(GGUF.parent, gguf_file=GGUF.name, dtype=torch.float32)
    cfg = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=TARGETS, task_type="CAUSAL_LM")
    model = get_peft_model(model, cfg)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    pad = tok.convert_tokens_to_ids("<|im_end|>")

    examples = []
    for line in Path(data).read_text().splitlines():
        msgs = json.loads(line)["messages"]
        full = tok.apply_chat_template(msgs, tokenize=False)
        prompt = tok.apply_chat_template(msgs[:-1], tokenize=False, add_generation_prompt=True)
        ids = tok(full, add_special_tokens=False)["input_ids"]
        n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
        # trained: the answer and its <|im_end|> (not the newline after it)
        n_answer = len(tok(msgs[-1]["content"], add_special_tokens=False)["input_ids"]) + 1
        examples.append((ids, n_prompt, n_answer))

    order_rng = random.Random(0)
    batches = []
    for _ in range(epochs):
        order = list(range(len(examples)))
        if kind == "risk":
            order_rng.shuffle(order)
        batches += [order[i:i + BATCH] for i in range(0, len(order), BATCH)]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / len(batches)))

    steps = []
    for idx in batches:
        t = time.perf_counter()
        rows = [examples[i] for i in idx]
        width = max(len(r[0]) for r in rows)
        x = torch.tensor([r[0] + [pad] * (width - len(r[0])) for r in rows])
        att = torch.tensor([[1] * len(r[0]) + [0] * (width - len(r[0])) for r in rows])
        if kind == "throughput":
            # Loss at the answer positions only, selected before the LM head.
            base = model.base_model.model
            hidden = base.model(input_ids=x, attention_mask=att).last_hidden_state
            sel_rows, sel_pos, targets = [], [], []
            for b, (ids, n_prompt, n_answer) in enumerate(rows):
                for p in range(n_prompt, n_prompt + n_answer):
                    sel_rows.append(b)
                    sel_pos.append(p - 1)
                    targets.append(ids[p])
            logits = base.lm_head(hidden[sel_rows, sel_pos])
            loss = torch.nn.functional.cross_entropy(logits, torch.tensor(targets))
        else:
            labels = x.clone()
            labels[att == 0] = -100
            loss = model(input_ids=x, attention_mask=att, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        steps.append({"tokens": int(att.sum()), "seconds": time.perf_counter() - t, "loss": float(loss)})
    Path(result).write_text(json.dumps({"steps": steps, "seconds_total": time.perf_counter() - t_start}))


# ---------------------------------------------------------------------------------------------


def steady_rate(steps):
    """tok/s over the steps after the first (the first pays for allocation and warm-up)."""
    rest = steps[1:] or steps
    return sum(s["tokens"] for s in rest) / sum(s["seconds"] for s in rest)


def run_selfaware(exe, data, epochs, out):
    cmd = [exe, "--threads", str(THREADS), "train", "--model", str(GGUF), "--data", str(data), "--out", str(out),
           "--seed", "0", "--epochs", str(epochs), "--lr", str(LR), "--batch-size", str(BATCH), "--rank", "8",
           "--alpha", "16"]
    wall, rss, _ = wait_rss(cmd)
    manifest = json.loads((out / "training_manifest.json").read_text())
    return wall, rss, manifest["steps"]


def run_peer(kind, data, epochs, tmp):
    result = tmp / f"peer-{kind}.json"
    wall, rss, _ = wait_rss([sys.executable, __file__, "--peer", kind, "--data", str(data), "--result", str(result),
                             "--epochs", str(epochs)])
    return wall, rss, json.loads(result.read_text())["steps"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--selfaware", default=str(ROOT / "target" / "release" / "selfaware"))
    ap.add_argument("--workloads", default="throughput,risk", help="comma-separated: throughput, risk")
    ap.add_argument("--risk-data", default=str(RISK))
    ap.add_argument("--risk-epochs", type=int, default=3, help="epochs of the risk workload (the target is for 3)")
    ap.add_argument("--risk-limit", type=int, help="use only the first N risk examples (a shorter run)")
    ap.add_argument("--peer", choices=["throughput", "risk"], help=argparse.SUPPRESS)
    ap.add_argument("--epochs", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.peer:
        epochs = args.epochs or (1 if args.peer == "throughput" else 3)
        return peer_main(args.peer, args.data, args.result, epochs)

    from transformers import AutoTokenizer

    OUT.mkdir(parents=True, exist_ok=True)
    work = set(args.workloads.split(","))
    rows, record = [], {"threads": THREADS, "load_average_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if "throughput" in work:
            tok = AutoTokenizer.from_pretrained(GGUF.parent, gguf_file=GGUF.name)
            data = tmp / "tp.jsonl"
            throughput_data(tok, 8 * BATCH, data)
            s_wall, s_rss, s_steps = run_selfaware(args.selfaware, data, 1, tmp / "sa-tp")
            p_wall, p_rss, p_steps = run_peer("throughput", data, 1, tmp)
            s_rate, p_rate = steady_rate(s_steps), steady_rate(p_steps)
            rows += [
                ("training tok/s, 8 x 80, loss at answers", s_rate, p_rate, s_rate / p_rate, ">= 1.2x"),
                ("peak RSS GB, 8 x 80", s_rss, p_rss, s_rss / p_rss, "<= 3 GB"),
            ]
            record["throughput"] = {"selfaware": {"wall": s_wall, "rss_gb": s_rss, "steps": s_steps},
                                    "peer": {"wall": p_wall, "rss_gb": p_rss, "steps": p_steps}}
        if "risk" in work:
            e = args.risk_epochs
            risk = Path(args.risk_data)
            lines = risk.read_text().splitlines()
            if args.risk_limit:
                lines = lines[:args.risk_limit]
                risk = tmp / "risk.jsonl"
                risk.write_text("\n".join(lines) + "\n")
            s_wall, s_rss, s_steps = run_selfaware(args.selfaware, risk, e, tmp / "sa-risk")
            p_wall, p_rss, p_steps = run_peer("risk", risk, e, tmp)
            rows.append((f"risk {len(lines)} x {e} epochs, wall s (process)", s_wall, p_wall, s_wall / p_wall,
                         "<= 0.5x"))
            record["risk"] = {"selfaware": {"wall": s_wall, "rss_gb": s_rss, "steps": s_steps},
                              "peer": {"wall": p_wall, "rss_gb": p_rss, "steps": p_steps}}
    record["load_average_after"] = os.getloadavg()
    machine_text, record["machine"] = describe(args.selfaware, THREADS)
    print(machine_text)
    print(f"{'workload':42} {'selfaware':>10} {'torch+peft':>11} {'ratio':>7}  target")
    for name, a, b, r, target in rows:
        print(f"{name:42} {a:10.2f} {b:11.2f} {r:6.2f}x  {target}")
    print(f"load average before {record['load_average_before'][0]:.2f}, after {record['load_average_after'][0]:.2f}")
    (OUT / "train.json").write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    sys.exit(main())
