"""An Inspect task, written for selfaware's interop test: multiple-choice prompts asked through
Inspect's OpenAI-compatible provider with log-probabilities, scored as selfaware's top-logprob
estimator scores them (the probability of the correct label's token among the first token's
top log-probabilities, renormalised over the labels).

The prompts come from the JSON file named by SELFAWARE_INSPECT_ITEMS:
[{"id", "input", "target", "labels"}].
"""

import json
import math
import os

from inspect_ai import Task, task
from inspect_ai.dataset import Sample
from inspect_ai.model import GenerateConfig
from inspect_ai.scorer import Score, Target, mean, scorer
from inspect_ai.solver import TaskState, generate


@scorer(metrics=[mean()])
def label_probability():
    async def score(state: TaskState, target: Target) -> Score:
        labels = state.metadata["labels"]
        logprobs = state.output.choices[0].logprobs
        top = logprobs.content[0].top_logprobs if logprobs and logprobs.content else []
        probs = {label: 0.0 for label in labels}
        for t in top:
            key = t.token.strip()
            if key in probs:
                probs[key] += math.exp(t.logprob)
        total = sum(probs.values())
        return Score(
            value=probs[target.text] / total if total > 0 else float("nan"),
            metadata={"top": [[t.token, t.logprob] for t in top]},
        )

    return score


@task
def selfaware_mc():
    with open(os.environ["SELFAWARE_INSPECT_ITEMS"]) as f:
        items = json.load(f)
    return Task(
        dataset=[
            Sample(id=i["id"], input=i["input"], target=i["target"], metadata={"labels": i["labels"]})
            for i in items
        ],
        solver=generate(),
        scorer=label_probability(),
        config=GenerateConfig(temperature=0.0, max_tokens=1, logprobs=True, top_logprobs=20),
    )
