"""Drives a running selfaware server with the official `openai` Python client: models, chat
completions with logprobs, streaming, errors, file upload, and a fine-tuning job run to
completion whose model then answers.

Usage: python crates/selfaware-server/tests/openai_client.py BASE_URL MODEL
(e.g. http://127.0.0.1:8000/v1 default). Needs `pip install openai`. The Rust test
`openai_python_client` starts a server and runs this script when `openai` is importable.
Exits non-zero on any mismatch; prints one JSON summary line on success.
"""

import json
import sys
import tempfile
import time

import openai


def main() -> None:
    base_url, model = sys.argv[1], sys.argv[2]
    client = openai.OpenAI(base_url=base_url, api_key="not-needed", max_retries=0)

    ids = [m.id for m in client.models.list()]
    assert model in ids, f"{model} not in {ids}"

    r = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Say hi"}],
        max_tokens=6,
        n=2,
        seed=3,
        temperature=1.0,
        logprobs=True,
        top_logprobs=3,
    )
    assert r.object == "chat.completion"
    assert len(r.choices) == 2
    first = r.choices[0]
    assert first.logprobs is not None and first.logprobs.content, "no logprobs"
    for tok in first.logprobs.content:
        assert len(tok.top_logprobs) == 3
        assert tok.logprob <= 0.0
        alts = [t.logprob for t in tok.top_logprobs]
        assert alts == sorted(alts, reverse=True), alts
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens

    # The same seed gives the same answer; streaming gives the same text.
    again = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Say hi"}], max_tokens=6, n=2, seed=3
    )
    assert [c.message.content for c in again.choices] == [c.message.content for c in r.choices]
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Say hi"}], max_tokens=6, seed=3, stream=True
    )
    streamed = "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices)
    assert streamed == r.choices[0].message.content, (streamed, r.choices[0].message.content)

    # vLLM's prompt_logprobs extension, through the client's extra_body.
    scored = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "hi"}],
        max_tokens=1,
        extra_body={"prompt_logprobs": 0, "add_generation_prompt": False},
    )
    prompt_lps = scored.model_extra["prompt_logprobs"]
    assert prompt_lps[0] is None and len(prompt_lps) == scored.usage.prompt_tokens
    assert all(len(e) == 1 and list(e.values())[0]["logprob"] <= 0.0 for e in prompt_lps[1:])

    # Errors come back as the client's typed exceptions.
    try:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
        raise AssertionError("unknown model accepted")
    except openai.NotFoundError:
        pass
    try:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}], n=10000)
        raise AssertionError("n=10000 accepted")
    except openai.BadRequestError as e:
        assert e.body["param"] == "n", e.body

    # File upload for finetuning.
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for q in ("a", "Answer A or B"):
            f.write(json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "B"}]}) + "\n")
        path = f.name
    with open(path, "rb") as fh:
        up = client.files.create(file=fh, purpose="fine-tune")
    assert up.purpose == "fine-tune" and up.bytes > 0
    assert up.id in [x.id for x in client.files.list()]

    # A fine-tuning job on that file, polled to completion; its model then answers.
    job = client.fine_tuning.jobs.create(
        model=model,
        training_file=up.id,
        seed=5,
        suffix="py",
        method={
            "type": "supervised",
            "supervised": {"hyperparameters": {"n_epochs": 2, "batch_size": 1, "learning_rate_multiplier": 2.0}},
        },
    )
    assert job.object == "fine_tuning.job" and job.id.startswith("ftjob-"), job
    assert job.status in ("queued", "running", "succeeded"), job
    deadline = time.time() + 300
    while job.status not in ("succeeded", "failed", "cancelled"):
        assert time.time() < deadline, f"job still {job.status}"
        time.sleep(0.1)
        job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model == f"ft:{model}:selfaware:py:{job.id[6:14]}", job.fine_tuned_model
    assert job.seed == 5 and job.hyperparameters.n_epochs == 2 and job.hyperparameters.batch_size == 1
    assert job.trained_tokens and job.trained_tokens > 0 and job.finished_at >= job.created_at
    assert job.id in [j.id for j in client.fine_tuning.jobs.list()]
    events = list(client.fine_tuning.jobs.list_events(job.id, limit=3))
    assert all(e.object == "fine_tuning.job.event" for e in events)
    metrics = [e for e in events if e.type == "metrics"]
    # 2 examples, batch size 1, 2 epochs: 4 optimizer steps (the pager follows `after`).
    assert [m.data["step"] for m in metrics] == [4, 3, 2, 1], [e.message for e in events]
    assert any(e.message == f"New fine-tuned model created: {job.fine_tuned_model}" for e in events)
    assert job.fine_tuned_model in [m.id for m in client.models.list()]
    tuned = client.chat.completions.create(
        model=job.fine_tuned_model,
        messages=[{"role": "user", "content": "Answer A or B"}],
        max_tokens=4,
        temperature=0,
        logprobs=True,
    )
    assert tuned.model == job.fine_tuned_model and tuned.choices[0].logprobs.content

    print(
        json.dumps(
            {
                "ok": True,
                "models": ids,
                "text": r.choices[0].message.content,
                "file": up.id,
                "fine_tuned_model": job.fine_tuned_model,
                "tuned_text": tuned.choices[0].message.content,
            }
        )
    )


if __name__ == "__main__":
    main()
