"""selfaware from Python: the same library as the `selfaware` command.

    import selfaware
    m = selfaware.Model("default")                       # or a .gguf, an HF folder, "URL#MODEL"
    s = m.score("Pick A or B. Answer with one letter.", options=["A", "B"])
    s.probability("A")                                   # exact, from the model's logits
    m.score_many(["Pick A or B.", "A or B?"], options=["A", "B"])   # many prompts at once
    r = m.score_range("From 0 to 100, how risk-seeking are you?", 0, 100)
    r.expected_value_complete
    m.sample("Name an animal.", n=5, temperature=1.0, seed=0)
    a = m.activations(["Hi", "Name a colour."], points=["blocks.*.hook_resid_post"])
    a["blocks.3.hook_resid_post"]                        # numpy array [prompts, d]
    run_dir = selfaware.run("quick")                     # a whole experiment, with progress
    data = selfaware.load(run_dir)                       # pandas DataFrames: data.results, ...

Scores equal `selfaware score --json` byte for byte (`.json`). Model work releases the GIL and
Ctrl-C stops a call; every error is a `SelfawareError` with the command line's message.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from . import _selfaware
from ._selfaware import SelfawareError, __version__

__all__ = [
    "Model",
    "Activations",
    "OptionScores",
    "Candidate",
    "RangeScores",
    "NumberScore",
    "RunData",
    "SelfawareError",
    "load",
    "run",
    "__version__",
]

Messages = Union[str, Sequence[Mapping[str, str]], Sequence[Tuple[str, str]]]
_ROLES = ("system", "user", "assistant")


def _messages_json(messages: Messages, system: Optional[str]) -> str:
    """A conversation as the native module reads it: a string is one user message; otherwise
    `{"role", "content"}` mappings or `(role, content)` pairs."""
    out: List[Dict[str, str]] = []
    if system is not None:
        out.append({"role": "system", "content": system})
    if isinstance(messages, str):
        out.append({"role": "user", "content": messages})
    else:
        for i, m in enumerate(messages):
            if isinstance(m, Mapping):
                role, content = m.get("role"), m.get("content")
            elif isinstance(m, (tuple, list)) and len(m) == 2:
                role, content = m
            else:
                raise SelfawareError(
                    f"messages[{i}]: expected {{'role': ..., 'content': ...}} or (role, content), got {m!r}"
                )
            if role not in _ROLES or not isinstance(content, str):
                raise SelfawareError(
                    f"messages[{i}]: expected a role in {_ROLES} and string content, got {role!r}, {type(content).__name__}"
                )
            out.append({"role": role, "content": content})
    if not out:
        raise SelfawareError("messages: expected at least one message")
    return json.dumps(out)


@dataclass(frozen=True)
class Candidate:
    """One candidate answer's exact scores (natural logarithms)."""

    text: str
    token_ids: List[int]
    #: log P(the candidate's first token | prompt)
    first_token_logprob: float
    #: log P(the whole candidate, then the end of the turn | prompt)
    logprob: float


@dataclass(frozen=True)
class OptionScores:
    """`selfaware score --options … --json`, as dataclasses; `json` is the command's text."""

    prompt_tokens: int
    candidates: List[Candidate]
    off_candidate_first_token_mass: float
    json: str = field(repr=False, compare=False)

    def probability(self, text: str) -> float:
        """P(the candidate `text` as the whole answer)."""
        for c in self.candidates:
            if c.text == text:
                return math.exp(c.logprob)
        raise KeyError(text)


@dataclass(frozen=True)
class NumberScore:
    n: int
    #: log P(the answer starts with the digits of n, then a non-digit)
    logprob_starts_with: float
    #: log P(the answer is exactly n, then the end of the turn)
    logprob_complete: float


@dataclass(frozen=True)
class RangeScores:
    """`selfaware score --range LO..HI --json`, as dataclasses; `json` is the command's text."""

    prompt_tokens: int
    numbers: List[NumberScore]
    mass_starts_with: float
    expected_value_starts_with: Optional[float]
    mass_complete: float
    expected_value_complete: Optional[float]
    json: str = field(repr=False, compare=False)


@dataclass(frozen=True)
class Activations:
    """Activations at hook points, as `selfaware activations capture` records them (the same
    rows, bit for bit): `arrays[point]` is a float32 numpy array `[rows, d]`. With
    positions="last" there is one row per prompt; otherwise prompt `i`'s rows are
    `offsets[i]:offsets[i + 1]`, and `token_ids[r]` is the token at row `r`."""

    positions: str
    arrays: Dict[str, Any]
    offsets: Any
    token_ids: Any
    #: sha256 of each conversation as JSON ({"messages": [...]}), as capture files record it
    prompt_sha256: List[str]

    def __getitem__(self, point: str) -> Any:
        return self.arrays[point]

    @property
    def points(self) -> List[str]:
        return list(self.arrays)

    def rows(self, prompt: int, point: str) -> Any:
        """Prompt `prompt`'s rows at `point`."""
        return self.arrays[point][self.offsets[prompt] : self.offsets[prompt + 1]]


def _option_scores(text: str) -> OptionScores:
    d = json.loads(text)
    return OptionScores(
        prompt_tokens=d["prompt_tokens"],
        candidates=[Candidate(**c) for c in d["candidates"]],
        off_candidate_first_token_mass=d["off_candidate_first_token_mass"],
        json=text,
    )


class Model:
    """A model: "default" (the embedded SmolLM2-135M-Instruct, installed on first use), a
    .gguf file, a Hugging Face folder, "URL#MODEL" on an OpenAI-compatible server, or a
    `selfaware finetune` result file; `adapter` is a PEFT LoRA folder (local models)."""

    def __init__(
        self,
        model: str = "default",
        adapter: Optional[Union[str, os.PathLike]] = None,
        *,
        api_key_env: Optional[str] = None,
        estimate: bool = False,
        home: Optional[Union[str, os.PathLike]] = None,
    ) -> None:
        self._m = _selfaware.Model(
            str(model),
            None if adapter is None else os.fspath(adapter),
            api_key_env,
            estimate,
            None if home is None else os.fspath(home),
        )

    @property
    def reference(self) -> str:
        return self._m.reference

    def __repr__(self) -> str:
        return f"selfaware.Model({self._m.reference!r})"

    def score(
        self, messages: Messages, options: Sequence[str], *, system: Optional[str] = None
    ) -> OptionScores:
        """Exact scores of each candidate as the whole answer."""
        return _option_scores(
            self._m.score_json(_messages_json(messages, system), [str(o) for o in options])
        )

    def score_many(
        self,
        prompts: Sequence[Messages],
        options: Union[Sequence[str], Sequence[Sequence[str]]],
        *,
        concurrency: Optional[int] = None,
        system: Optional[str] = None,
    ) -> List[OptionScores]:
        """`.score` for many prompts at once, asked `concurrency` at a time as `selfaware eval`
        asks them (default: one per compute thread, at most 4, for a local model; 8 for a
        served one). `options` is one list for every prompt, or one list per prompt. The
        results equal `.score`'s, in prompt order."""
        if isinstance(prompts, str):
            raise SelfawareError("prompts: expected a list of prompts (each a string or a list of messages)")
        prompts = list(prompts)
        opts = list(options)
        if opts and all(isinstance(o, str) for o in opts):
            per = [[str(o) for o in opts]] * len(prompts)
        else:
            per = [[str(o) for o in os] for os in opts]
        texts = self._m.score_many_json(
            [_messages_json(p, system) for p in prompts], per, concurrency
        )
        return [_option_scores(t) for t in texts]

    def score_range(
        self, messages: Messages, lo: int, hi: int, *, system: Optional[str] = None
    ) -> RangeScores:
        """The exact distribution over the integers lo..hi (inclusive)."""
        text = self._m.score_range_json(_messages_json(messages, system), int(lo), int(hi))
        d = json.loads(text)
        return RangeScores(
            prompt_tokens=d["prompt_tokens"],
            numbers=[NumberScore(**n) for n in d["numbers"]],
            mass_starts_with=d["mass_starts_with"],
            expected_value_starts_with=d["expected_value_starts_with"],
            mass_complete=d["mass_complete"],
            expected_value_complete=d["expected_value_complete"],
            json=text,
        )

    def sample(
        self,
        messages: Messages,
        n: int = 1,
        temperature: float = 1.0,
        *,
        top_p: float = 1.0,
        max_tokens: int = 64,
        seed: int = 0,
        system: Optional[str] = None,
    ) -> List[str]:
        """`n` seeded completions (the same seed gives the same answers)."""
        return self._m.sample(
            _messages_json(messages, system), n, temperature, top_p, max_tokens, seed
        )

    def chat(
        self,
        messages: Messages,
        *,
        temperature: float = 0.0,
        top_p: float = 1.0,
        max_tokens: int = 256,
        seed: int = 0,
        system: Optional[str] = None,
    ) -> str:
        """One answer, greedy by default (as `selfaware chat`)."""
        return self.sample(
            messages, 1, temperature, top_p=top_p, max_tokens=max_tokens, seed=seed, system=system
        )[0]

    def activations(
        self,
        prompts: Sequence[Messages],
        points: Union[str, Sequence[str]],
        positions: str = "last",
        *,
        system: Optional[str] = None,
    ) -> Activations:
        """Activations at hook points (TransformerLens names: blocks.L.hook_resid_pre,
        hook_resid_post, hook_attn_out, hook_mlp_out, ln_final.hook_normalized;
        blocks.*.HOOK for every layer) for a list of prompts, each a string (one user
        message) or a conversation. positions: "last" (the last prompt token, before the
        answer if the conversation ends with one), "all", or "answer" (the final assistant
        message's tokens). Local models only."""
        import numpy as np

        if isinstance(prompts, str) or (
            len(prompts) > 0 and isinstance(prompts[0], (Mapping, tuple))
        ):
            raise SelfawareError(
                "prompts: expected a list of prompts (each a string or a list of messages); wrap a single conversation in a list"
            )
        if isinstance(points, str):
            points = [points]
        convs = [_messages_json(p, system) for p in prompts]
        arrays, rows, d, offsets, token_ids, shas = self._m.activations(
            convs, [str(p) for p in points], positions
        )
        return Activations(
            positions=positions,
            arrays={
                name: np.frombuffer(data, dtype="<f4").reshape(rows, d).copy()
                for name, data in arrays
            },
            offsets=np.asarray(offsets, dtype=np.int64),
            token_ids=np.asarray(token_ids, dtype=np.int64),
            prompt_sha256=list(shas),
        )


def _command() -> List[str]:
    """The `selfaware` command of this installation: the console script beside the
    interpreter, else the module."""
    script = os.path.join(os.path.dirname(sys.executable), "selfaware")
    if os.access(script, os.X_OK):
        return [script]
    return [sys.executable, "-m", "selfaware._cli"]


def run(
    experiment: Union[str, os.PathLike],
    out: Optional[Union[str, os.PathLike]] = None,
    *,
    jobs: Optional[int] = None,
    threads: Optional[int] = None,
    force: bool = False,
    dry_run: bool = False,
    judge_url: Optional[str] = None,
    judge_model: Optional[str] = None,
    home: Optional[Union[str, os.PathLike]] = None,
) -> Path:
    """Runs an experiment (a preset name or a TOML file) as `selfaware run` does, showing its
    progress on stderr, and returns the run folder. Reruns resume; Ctrl-C stops the run."""
    cmd = _command()
    if home is not None:
        cmd += ["--home", os.fspath(home)]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    cmd += ["run", os.fspath(experiment)]
    if out is not None:
        cmd += ["--out", os.fspath(out)]
    if jobs is not None:
        cmd += ["--jobs", str(jobs)]
    if force:
        cmd.append("--force")
    if dry_run:
        cmd.append("--dry-run")
    if (judge_url is None) != (judge_model is None):
        raise SelfawareError("run: judge_url and judge_model go together (a judge server and its model)")
    if judge_url is not None:
        cmd += ["--judge-url", str(judge_url), "--judge-model", str(judge_model)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, bufsize=1)
    lines: List[str] = []
    run_dir: Optional[str] = None
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            sys.stderr.write(line)
            lines.append(line)
            if line.startswith("selfaware: run folder "):
                run_dir = line[len("selfaware: run folder ") :].split(" (")[0]
        code = proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait()
        raise
    if code != 0:
        errors = [l[len("error: ") :] for l in lines if l.startswith("error: ")]
        message = "".join(lines[lines.index("error: " + errors[0]) :]) if errors else "".join(lines[-5:])
        raise SelfawareError(message.removeprefix("error: ").rstrip())
    if run_dir is not None:
        return Path(run_dir)
    if out is not None:
        return Path(out)
    return Path("runs") / Path(os.fspath(experiment)).stem


@dataclass
class RunData:
    """A finished run's tables."""

    path: Path
    #: results.csv: one row per metric × condition (and comparison), with intervals
    results: Any
    #: every evaluation record of the run: stage, condition, seed, question, paraphrase, score, …
    records: Any
    #: plan.json as a dict
    plan: Dict[str, Any]


def load(run_dir: Union[str, os.PathLike]) -> RunData:
    """Reads a run folder (what `selfaware run` wrote) into pandas DataFrames."""
    import pandas as pd

    root = Path(run_dir)
    results_csv = root / "results.csv"
    plan_json = root / "plan.json"
    for f in (results_csv, plan_json):
        if not f.is_file():
            raise SelfawareError(
                f"{f}: not found; expected a finished run folder\nhint: rerun `selfaware run` with the same experiment and --out to finish it"
            )
    plan = json.loads(plan_json.read_text())
    rows: List[Dict[str, Any]] = []
    variants = plan.get("variants", [])
    for m in plan.get("measurements", []):
        if m.get("battery") is None:
            continue
        stage = plan["stages"][m["stage"]]
        variant = variants[m["variant"]]
        path = root / stage["dir"] / "records.jsonl"
        if not path.is_file():
            continue
        with open(path) as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    r = json.loads(line)
                except json.JSONDecodeError as e:
                    raise SelfawareError(f"{path}:{line_no}: invalid record: {e}") from None
                rows.append(
                    {
                        "stage": stage["name"],
                        "condition": variant.get("condition"),
                        "seed": variant.get("seed"),
                        "target_word": m.get("target_word"),
                        "trigger": m.get("trigger"),
                        "battery": r.get("battery"),
                        "question": r.get("question"),
                        "paraphrase": r.get("paraphrase"),
                        "system_prompt": r.get("system_prompt"),
                        "prefix": r.get("prefix"),
                        "score": r.get("score"),
                        "scorer": r.get("scorer"),
                        "observation": (r.get("observation") or {}).get("kind"),
                        "prompt_sha256": r.get("prompt_sha256"),
                    }
                )
    return RunData(
        path=root,
        results=pd.read_csv(results_csv),
        records=pd.DataFrame(rows),
        plan=plan,
    )
