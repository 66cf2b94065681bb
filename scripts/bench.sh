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

if [ -d cmd/matsteer-load ]; then
  echo
  echo "== server load (1, 4, 16 concurrent clients; unsteered vs steered)"
  go run $GOTAGS ./cmd/matsteer-load -threads "$THREADS"
fi
