"""llama.cpp (the llama-cpp-python package) as the inference benchmark's reference, driven by the
benchmark over stdin so that its rounds interleave with the others in the same run.

    python3 llama_cpp_round.py MODEL.gguf PROMPT MAX_TOKENS

Loads the model once (2 threads, no prompt cache: a prefix cache shared across users would leak),
then answers each line `round` on stdin with one JSON line: time to first token (ms), decode
tokens/s and the number of tokens; `rss` answers with the process's peak RSS (KiB). Sampling is
the node's greedy path: temperature 0 and a repetition penalty of 1.1."""

import json
import resource
import sys
import time

from llama_cpp import Llama

path, prompt, max_tokens = sys.argv[1], sys.argv[2], int(sys.argv[3])
model = Llama(model_path=path, n_threads=2, n_ctx=2048, verbose=False)
for line in sys.stdin:
    if line.strip() == "rss":
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({"peak_rss_kib": peak}), flush=True)
        continue
    model.reset()
    started = time.perf_counter()
    first = None
    tokens = 0
    for chunk in model.create_chat_completion(
        messages=[{"role": "user", "content": prompt}],
        max_tokens=max_tokens,
        temperature=0,
        repeat_penalty=1.1,
        stream=True,
    ):
        if chunk["choices"][0]["delta"].get("content"):
            tokens += 1
            if first is None:
                first = time.perf_counter()
    end = time.perf_counter()
    print(
        json.dumps(
            {
                "ttft_ms": (first - started) * 1e3,
                "tokens_per_s": (tokens - 1) / max(end - first, 1e-9),
                "tokens": tokens,
            }
        ),
        flush=True,
    )
