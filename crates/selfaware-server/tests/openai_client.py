"""Drives a running selfaware server with the official `openai` Python client.

Usage: python crates/selfaware-server/tests/openai_client.py BASE_URL MODEL
(e.g. http://127.0.0.1:8000/v1 default). Needs `pip install openai`. The Rust test
`openai_python_client` starts a server and runs this script when `openai` is importable.
Exits non-zero on any mismatch; prints one JSON summary line on success.
"""

import json
import sys
import tempfile

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
        f.write(json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}) + "\n")
        path = f.name
    with open(path, "rb") as fh:
        up = client.files.create(file=fh, purpose="fine-tune")
    assert up.purpose == "fine-tune" and up.bytes > 0
    assert up.id in [x.id for x in client.files.list()]

    print(json.dumps({"ok": True, "models": ids, "text": r.choices[0].message.content, "file": up.id}))


if __name__ == "__main__":
    main()
