"""The official openai Python package, unmodified, against `arcane proxy`: a whole answer, the
same answer streamed, and a refused node arriving as an error, not as an answer.

ARCANE_PROXY_URL and ARCANE_REFUSING_PROXY_URL are base URLs ending in /v1."""

import os
import sys

import openai

MESSAGES = [{"role": "user", "content": "Hello there"}]

client = openai.OpenAI(base_url=os.environ["ARCANE_PROXY_URL"], api_key="local", max_retries=0)
# Greedy (temperature 0), so that the streamed answer can be compared with the whole one.
whole = client.chat.completions.create(model="", messages=MESSAGES, max_tokens=24, temperature=0)
text = whole.choices[0].message.content
assert whole.usage.completion_tokens > 0, whole
assert whole.model_extra["arcane_verification"]["receipt"]["outcome"] == "answered"

stream = client.chat.completions.create(
    model="", messages=MESSAGES, max_tokens=24, temperature=0, stream=True
)
pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
assert len(pieces) >= 2, pieces
assert "".join(pieces) == text, (pieces, text)

# Every sampling field the client sends reaches the node, which checks its range.
sampled = client.chat.completions.create(
    model="",
    messages=MESSAGES,
    max_tokens=8,
    temperature=0.7,
    top_p=0.5,
    frequency_penalty=0.5,
    presence_penalty=-0.5,
    stop=["\n\n", "END"],
)
assert sampled.choices[0].finish_reason in ("stop", "length"), sampled
try:
    client.chat.completions.create(model="", messages=MESSAGES, max_tokens=8, top_p=1.5)
    sys.exit("top_p 1.5 was accepted")
except openai.BadRequestError as error:
    assert error.param == "top_p", error.body
try:
    client.chat.completions.create(model="", messages=MESSAGES, max_tokens=8, seed=7)
    sys.exit("a seed was accepted, though no draw can be made reproducible")
except openai.BadRequestError as error:
    assert error.code == "unsupported_parameter" and error.param == "seed", error.body

refusing = openai.OpenAI(
    base_url=os.environ["ARCANE_REFUSING_PROXY_URL"], api_key="local", max_retries=0
)
for streamed in (False, True):
    try:
        answer = refusing.chat.completions.create(
            model="", messages=MESSAGES, max_tokens=24, stream=streamed
        )
        list(answer) if streamed else None
        sys.exit(f"a refused node answered (stream={streamed})")
    except openai.APIStatusError as error:
        assert error.status_code == 502, error
        assert error.code == "checkpoint", error.body
print("python openai: ok")
