#!/usr/bin/env bash
# Every benchmark in one command and one table. Each benchmark measures its figures against a
# baseline in the same run and prints a `summary | …` row (figure, baseline, ratio, goal, met);
# this script runs them all, one after another, and writes the rows, with the machine, the date
# and the commit, into BENCHMARKS.md between its two `bench/all.sh` markers. Each benchmark's
# whole output is kept in the folder it names at the end.
#
#   bench/all.sh [MODEL.gguf [PYTHON_WITH_LLAMA_CPP]]
#
# Without MODEL the end-to-end rows are on the tiny generated model only; with it (a GGUF in a
# directory of its own) they are on both, and the engine's rows compare it with llama.cpp when
# PYTHON has llama-cpp-python (bench/inference.sh says how). ARCANE_BENCH_POSTGRES_URL (a role
# that may create databases, e.g. postgres://arcane:arcane@127.0.0.1:5432/postgres) adds the
# PostgreSQL rows: the script (re)creates the databases arcane_bench_log and
# arcane_bench_gateway on that server with psql.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:+$(realpath "$1")}
python=${2:-}
out=${ARCANE_BENCH_OUT:-$(mktemp -d -t arcane-bench.XXXXXX)}
mkdir -p "$out"

pg_log='' pg_gateway=''
if [ -n "${ARCANE_BENCH_POSTGRES_URL:-}" ]; then
  base=${ARCANE_BENCH_POSTGRES_URL%/*}
  for db in arcane_bench_log arcane_bench_gateway; do
    psql -q -v ON_ERROR_STOP=1 "$ARCANE_BENCH_POSTGRES_URL" \
      -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
  done
  pg_log=$base/arcane_bench_log pg_gateway=$base/arcane_bench_gateway
fi

# run NAME COMMAND…: the command's output in $out/NAME.txt, its summary rows collected (less
# those matching $skip_rows, when set).
run() {
  local name=$1
  shift
  echo "bench/all.sh: $name" >&2
  if ! "$@" >"$out/$name.txt" 2>"$out/$name.stderr"; then
    echo "bench/all.sh: $name failed; see $out/$name.stderr" >&2
    return 1
  fi
  grep '^summary |' "$out/$name.txt" | sed 's/^summary //' | grep -v "${skip_rows:-^$}" >>"$out/rows.md" || true
}

: >"$out/rows.md"
run log env ${pg_log:+ARCANE_BENCH_POSTGRES_URL=$pg_log} \
  cargo bench -q -p arcane-log --bench log_bench
run relay env ${pg_gateway:+ARCANE_BENCH_POSTGRES_URL=$pg_gateway} \
  cargo test -q --workspace --bench relay_bench
run gateway cargo test -q --workspace --bench gateway_bench
run attestation cargo test -q --workspace --bench attestation_bench
run client-tiny env -u ARCANE_BENCH_MODEL cargo test -q --workspace --bench client_bench
run relay-http3 env -u ARCANE_BENCH_MODEL cargo test -q --workspace --bench relay_http3_bench
run ensemble cargo test -q --workspace --bench ensemble_bench
if [ -n "$model" ]; then
  # The client's own rows (warm, cold) do not depend on the model: the tiny run's are kept.
  skip_rows='^| client, ' run client-model \
    env ARCANE_BENCH_MODEL="$model" cargo test -q --workspace --bench client_bench
  run inference env ARCANE_BENCH_MODEL="$model" ${python:+ARCANE_LLAMA_CPP_PYTHON=$python} \
    cargo test -q --workspace --bench inference_bench
else
  run inference env -u ARCANE_BENCH_MODEL cargo test -q --workspace --bench inference_bench
fi
if [ -n "$model" ]; then
  run sealed-boot env ARCANE_BENCH_MODEL="$model" cargo test -q --workspace --bench sealed_boot_bench
else
  run sealed-boot env -u ARCANE_BENCH_MODEL cargo test -q --workspace --bench sealed_boot_bench
fi
run replay cargo bench -q -p arcane-audit --bench replay_bench

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)
memory=$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
{
  echo "Run $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) cores ($cpu), $memory, Linux $(uname -r);"
  echo "commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' with local changes');"
  echo "model ${model:+$(basename "$model") and }the tiny generated one;"
  if [ -n "$pg_log" ]; then
    echo "PostgreSQL $(psql -tA "$ARCANE_BENCH_POSTGRES_URL" -c 'SHOW server_version' | cut -d' ' -f1)."
  else
    echo "PostgreSQL not run."
  fi
  echo
  echo "| measurement | ours | baseline (same run) | ratio | goal | met |"
  echo "|---|---|---|---|---|---|"
  cat "$out/rows.md"
} >"$out/table.md"

python3 - "$out/table.md" BENCHMARKS.md <<'EOF'
import sys
table, path = open(sys.argv[1]).read(), sys.argv[2]
begin, end = "<!-- bench/all.sh: begin -->", "<!-- bench/all.sh: end -->"
text = open(path).read()
if begin not in text or end not in text:
    sys.exit(f"{path} has no {begin} … {end} markers")
head, rest = text.split(begin, 1)
_, tail = rest.split(end, 1)
open(path, "w").write(f"{head}{begin}\n{table}{end}{tail}")
EOF
cat "$out/table.md"
echo "bench/all.sh: every output in $out; the table is in BENCHMARKS.md" >&2
