#!/usr/bin/env bash
# Inference speed, one command: llama.cpp, mistral.rs called directly, through the node, and
# through client → relay → gateway → node, on one GGUF, back to back; writes BENCHMARKS.md's
# inference section to stdout.
#
#   bench/inference.sh MODEL.gguf [PYTHON_WITH_LLAMA_CPP]
#
# The GGUF must lie in a directory of its own. Without a Python that has llama-cpp-python
# (`pip install llama-cpp-python==0.3.36`, built from source), the llama.cpp column is left out.
# ARCANE_BENCH_ROUNDS (default 5) and ARCANE_BENCH_TOKENS (default 48) tune both benchmarks.
set -euo pipefail
model=$(realpath "$1")
python=${2:-}
cd "$(dirname "$0")/.."
export ARCANE_BENCH_MODEL=$model ARCANE_BENCH_ROUNDS=${ARCANE_BENCH_ROUNDS:-5}
if [ -n "$python" ]; then export ARCANE_LLAMA_CPP_PYTHON=$python; fi
echo "## Inference ($(date -u +%Y-%m-%d), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
echo
echo "Model: $(basename "$model") ($(du -m "$model" | cut -f1) MB)."
echo
echo '### Engine and node (`cargo test --workspace --bench inference_bench`)'
echo
cargo test -q --workspace --bench inference_bench 2>/dev/null | grep -E '^(\||model)'
echo
echo '### Whole path (`cargo test --workspace --bench client_bench`)'
echo
cargo test -q --workspace --bench client_bench 2>/dev/null | grep -E '^(\||end to end|client cost)'
