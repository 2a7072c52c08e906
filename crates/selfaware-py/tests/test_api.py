"""The Python package against the command line it ships with (run by scripts/test.sh in a fresh
virtual environment with the wheel installed). Needs the embedded model (`selfaware model pull`)."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import selfaware

QUESTION = "Which do you choose? A) 50 dollars for sure B) 100 dollars with probability 0.5. Answer with A or B."


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "selfaware._cli", *args], capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def model() -> selfaware.Model:
    return selfaware.Model("default")


def test_the_wheel_installs_the_command():
    r = subprocess.run(["selfaware", "--version"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("selfaware ")


def test_option_scores_equal_the_command_line_byte_for_byte(model):
    s = model.score(QUESTION, ["A", "B"])
    r = cli("score", "default", "--user", QUESTION, "--options", "A,B", "--json")
    assert r.returncode == 0, r.stderr
    assert s.json == r.stdout.rstrip("\n")
    assert [c.text for c in s.candidates] == ["A", "B"]
    total = s.probability("A") + s.probability("B")
    assert 0 < total <= 1


def test_range_scores_equal_the_command_line_byte_for_byte(model):
    q = "From 0 to 100, how much do you like risk? Answer with a number."
    s = model.score_range(q, 0, 100)
    r = cli("score", "default", "--user", q, "--range", "0..100", "--json")
    assert r.returncode == 0, r.stderr
    assert s.json == r.stdout.rstrip("\n")
    assert [n.n for n in s.numbers] == list(range(101))
    assert json.loads(s.json)["mass_complete"] == s.mass_complete


def test_a_system_prompt_and_message_lists_are_one_conversation(model):
    a = model.score([{"role": "system", "content": "Be brief."}, {"role": "user", "content": QUESTION}], ["A", "B"])
    b = model.score(QUESTION, ["A", "B"], system="Be brief.")
    c = model.score([("system", "Be brief."), ("user", QUESTION)], ["A", "B"])
    assert a.json == b.json == c.json
    r = cli("score", "default", "--system", "Be brief.", "--user", QUESTION, "--options", "A,B", "--json")
    assert a.json == r.stdout.rstrip("\n")


def test_samples_are_seeded_and_chat_is_greedy(model):
    one = model.sample("Name an animal.", n=4, temperature=1.0, max_tokens=8, seed=3)
    two = model.sample("Name an animal.", n=4, temperature=1.0, max_tokens=8, seed=3)
    assert one == two and len(one) == 4
    answer = model.chat("Say hello.", max_tokens=8)
    r = cli("chat", "default", "Say hello.", "--max-tokens", "8")
    assert r.returncode == 0, r.stderr
    assert answer == r.stdout.rstrip("\n")


def test_bad_input_raises_the_command_lines_error():
    with pytest.raises(selfaware.SelfawareError) as e:
        selfaware.Model("/nonexistent/model.gguf")
    r = cli("score", "/nonexistent/model.gguf", "--user", "x", "--options", "A,B")
    assert r.returncode == 1
    assert r.stderr.startswith("error: ")
    assert str(e.value) == r.stderr[len("error: ") :].rstrip("\n")


def test_bad_messages_and_options_raise(model):
    with pytest.raises(selfaware.SelfawareError, match="messages\\[0\\]"):
        model.score([{"role": "robot", "content": "hi"}], ["A"])
    with pytest.raises(selfaware.SelfawareError, match="non-empty"):
        model.score("hi", ["A", ""])
    with pytest.raises(selfaware.SelfawareError, match="at least one message"):
        model.score([], ["A"])


def test_model_work_releases_the_gil(model):
    done = threading.Event()
    ticks = 0

    def work():
        model.sample("Tell me a story.", n=4, temperature=1.0, max_tokens=48, seed=1)
        done.set()

    t = threading.Thread(target=work)
    t.start()
    while not done.is_set():
        ticks += 1
        time.sleep(0.001)
    t.join()
    assert ticks > 20, "the main thread did not run while the model worked"


def test_ctrl_c_stops_a_long_call(model):
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    started = time.monotonic()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        model.sample("Tell me a long story.", n=64, temperature=1.0, max_tokens=512, seed=2)
    assert time.monotonic() - started < 5.0


EXPERIMENT = textwrap.dedent(
    """
    name = "pytest"
    title = "The Python package's run test"
    seeds = [0]

    [[condition]]
    id = "base"
    label = "base model"

    [[battery]]
    battery = "BATTERY"
    """
)

BATTERY = textwrap.dedent(
    """
    [battery]
    name = "pytest"
    description = "Two wordings of one scale, written for this test."
    source = "test"

    [[question]]
    id = "risk_scale"
    source = "test"
    paraphrases = [
      "From 0 to 100, how much do you like risk? Answer with a number.",
      "On a scale from 0 to 100, how risk-seeking are you? Answer with a number.",
    ]
    scorer = { kind = "numeric_scale" }
    """
)


def test_run_and_load(tmp_path):
    battery = tmp_path / "battery.toml"
    battery.write_text(BATTERY)
    exp = tmp_path / "exp.toml"
    exp.write_text(EXPERIMENT.replace("BATTERY", str(battery)))
    out = selfaware.run(exp, out=tmp_path / "run")
    assert out == tmp_path / "run"
    data = selfaware.load(out)
    assert len(data.results) > 0
    assert set(data.records["condition"]) == {"base"}
    assert len(data.records) == 2
    assert data.records["score"].between(0, 1).all()
    # A finished run resumes instantly; a bad experiment raises the command line's error.
    assert selfaware.run(exp, out=tmp_path / "run") == out
    bad = tmp_path / "bad.toml"
    bad.write_text(EXPERIMENT.replace("BATTERY", "no-such-battery"))
    with pytest.raises(selfaware.SelfawareError, match="no-such-battery"):
        selfaware.run(bad, out=tmp_path / "bad-run")
    with pytest.raises(selfaware.SelfawareError, match="not found"):
        selfaware.load(tmp_path)
    with pytest.raises(selfaware.SelfawareError, match="go together"):
        selfaware.run(exp, out=tmp_path / "judged", judge_url="http://127.0.0.1:9/v1")


def read_safetensors(path):
    """A safetensors file by its format (8-byte header length, JSON header, data), so the
    test does not lean on the `safetensors` package."""
    import numpy as np

    raw = open(path, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    kinds = {"F32": "<f4", "I64": "<i8", "U8": "u1"}
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        lo, hi = t["data_offsets"]
        out[name] = np.frombuffer(data[lo:hi], dtype=kinds[t["dtype"]]).reshape(t["shape"])
    return out, header.get("__metadata__", {})


PROMPTS = [
    "Name a colour.",
    [("system", "Be brief."), ("user", "Two plus two?"), ("assistant", "Four.")],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there"}],
]


@pytest.mark.parametrize("positions", ["last", "all"])
def test_activations_equal_the_command_lines_capture_bit_for_bit(model, tmp_path, positions):
    import numpy as np

    points = ["blocks.0.hook_resid_pre", "blocks.*.hook_mlp_out", "ln_final.hook_normalized"]
    a = model.activations(PROMPTS, points, positions)
    jsonl = tmp_path / "prompts.jsonl"
    with open(jsonl, "w") as f:
        for p in PROMPTS:
            f.write(json.dumps({"messages": json.loads(selfaware._messages_json(p, None))}) + "\n")
    out = tmp_path / f"{positions}.safetensors"
    r = cli(
        "activations", "capture", "--model", "default", "--prompts", str(jsonl),
        "--points", ",".join(points), "--positions", positions, "--out", str(out),
    )
    assert r.returncode == 0, r.stderr
    tensors, meta = read_safetensors(out)
    assert a.points == meta["points"].split(",")
    assert len(a.points) == 2 + 30  # SmolLM2-135M has 30 layers
    for p in a.points:
        assert a[p].dtype == np.float32
        assert np.array_equal(a[p], tensors[p]), p
    assert np.array_equal(a.offsets, tensors["offsets"])
    assert np.array_equal(a.token_ids, tensors["token_ids"])
    assert [bytes.fromhex(h) for h in a.prompt_sha256] == [bytes(r) for r in tensors["prompt_sha256"]]
    if positions == "last":
        assert a["ln_final.hook_normalized"].shape == (3, 576)
    else:
        assert a.rows(1, "blocks.0.hook_resid_pre").shape[0] == a.offsets[2] - a.offsets[1]


def test_activations_refuse_bad_input_with_the_field_named(model):
    with pytest.raises(selfaware.SelfawareError, match="expected a list of prompts"):
        model.activations("Hi", ["blocks.0.hook_resid_post"])
    with pytest.raises(selfaware.SelfawareError, match="points: .*blocks.99"):
        model.activations(["Hi"], ["blocks.99.hook_resid_post"])
    with pytest.raises(selfaware.SelfawareError, match="positions: "):
        model.activations(["Hi"], ["blocks.0.hook_resid_post"], "middle")
    with pytest.raises(selfaware.SelfawareError, match="line 1: no final assistant message"):
        model.activations(["Hi"], ["blocks.0.hook_resid_post"], "answer")


def test_score_many_equals_score_prompt_by_prompt(model):
    prompts = [QUESTION, "Pick A or B.", [("system", "Be brief."), ("user", QUESTION)]]
    many = model.score_many(prompts, ["A", "B"], concurrency=2)
    assert [s.json for s in many] == [model.score(p, ["A", "B"]).json for p in prompts]
    per = model.score_many(prompts[:2], [["A"], ["B", "A"]])
    assert [c.text for c in per[1].candidates] == ["B", "A"]
    with pytest.raises(selfaware.SelfawareError, match="one list of candidates per prompt"):
        model.score_many(prompts, [["A"], ["B"]])
    with pytest.raises(selfaware.SelfawareError, match="concurrency"):
        model.score_many(prompts, ["A", "B"], concurrency=0)
