"""The official openai Python package, unmodified, against `arcane proxy`: a whole answer, the
same answer streamed, and a refused node arriving as an error, not as an answer.

ARCANE_PROXY_URL and ARCANE_REFUSING_PROXY_URL are base URLs ending in /v1."""

import os
import sys

import openai

MESSAGES = [{"role": "user", "content": "Hello there"}]

client = openai.OpenAI(base_url=os.environ["ARCANE_PROXY_URL"], api_key="local", max_retries=0)
whole = client.chat.completions.create(model="", messages=MESSAGES, max_tokens=24)
text = whole.choices[0].message.content
assert whole.usage.completion_tokens > 0, whole
assert whole.model_extra["arcane_verification"]["receipt"]["outcome"] == "answered"

stream = client.chat.completions.create(model="", messages=MESSAGES, max_tokens=24, stream=True)
pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
assert len(pieces) >= 2, pieces
assert "".join(pieces) == text, (pieces, text)

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
