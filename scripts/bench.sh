#!/usr/bin/env bash
# bench.sh: `make bench`. Every comparison is measured side by side in one
# process run (variants interleaved, median of repeated runs). Results are
# recorded in BENCHMARKS.md with the command that produced them.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${THREADS:-2}"
REPS="${REPS:-5}"
GOTAGS="${GOTAGS:-}"

echo "== inference: binding vs llama-bench, hooks, extraction, steering ($THREADS threads)"
go run $GOTAGS ./cmd/matsteer-bench -threads "$THREADS" -reps "$REPS"

echo
echo "== training and the apply path (steer package, GOMAXPROCS=$THREADS)"
GOMAXPROCS="$THREADS" go test $GOTAGS -run '^$' -bench . -benchtime 1x ./steer/

echo
echo "== server load on loopback (1, 4, 16 concurrent clients; unsteered vs steered in one run)"
CACHE="${MATSTEER_CACHE:-$HOME/.cache/matsteer}"
steerfile=$(ls "$CACHE"/demo/steer-*.gguf 2>/dev/null | head -1 || true)
if [ -z "$steerfile" ]; then
  scripts/demo.sh >/dev/null
  steerfile=$(ls "$CACHE"/demo/steer-*.gguf | head -1)
fi
PORT="${PORT:-18089}"
go build $GOTAGS -o bin/matsteer-load ./cmd/matsteer-load
# $THREADS threads in all: one slot per thread, one thread per slot.
bin/matsteer serve --parallel "$THREADS" --threads 1 --ctx 512 -q --steer demo="$steerfile" --addr "127.0.0.1:$PORT" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.2; done
bin/matsteer-load --url "http://127.0.0.1:$PORT/v1" --concurrency 1,4,16 --requests 32 --max-tokens 32 --warmup 2 \
  --steering '{"file":"demo","strength":{"positivity":2,"formality":0}}'
