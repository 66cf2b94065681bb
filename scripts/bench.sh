#!/usr/bin/env bash
# bench.sh: `make bench`. Every comparison is measured side by side in one
# process run (variants interleaved, median of repeated runs). Results are
# recorded in BENCHMARKS.md with the command that produced them.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${THREADS:-2}"
REPS="${REPS:-5}"
ROUNDS="${ROUNDS:-3}"
PARALLEL="${PARALLEL:-16}"
GOTAGS="${GOTAGS:-}"

if [ "${ONLY:-}" != "server" ]; then
echo "== inference: binding vs llama-bench, hooks, extraction, steering ($THREADS threads)"
go run $GOTAGS ./cmd/matsteer-bench -threads "$THREADS" -reps "$REPS" -binding-threads "1,$THREADS"

echo
echo "== training and the apply path (steer package, GOMAXPROCS=$THREADS)"
GOMAXPROCS="$THREADS" go test $GOTAGS -run '^$' -bench . -benchtime 1x ./steer/

fi

echo
echo "== server: matsteer serve vs llama-server on loopback ($THREADS threads in all, --parallel $PARALLEL, $ROUNDS interleaved rounds)"
# Same model, same thread budget, same number of parallel sequences and
# per-sequence context; greedy streaming chat, 32 tokens each (ignore_eos,
# so both servers generate the same number of tokens).
server_bin="$(CUDA="${CUDA:-0}" scripts/llama-cpp.sh build llama-server)/bin/llama-server"
model="${MODEL:-$(go run $GOTAGS ./cmd/matsteer-bench -print-model)}"
work="$(mktemp -d)"
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
go build $GOTAGS -o bin/matsteer-load ./cmd/matsteer-load
go run $GOTAGS ./cmd/matsteer-bench -write-steer "$work/l14.gguf" -layer 14
go run $GOTAGS ./cmd/matsteer-bench -write-steer "$work/l10.gguf" -layer 10
PORT="${PORT:-18089}"
wait_up() {
  for _ in $(seq 300); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && return 0; sleep 0.2; done
  echo "bench.sh: the server did not come up" >&2; return 1
}
# llama-server sometimes ignores SIGTERM after a run (seen once in three):
# give it 15 s, then SIGKILL.
stop_server() {
  kill "$server" 2>/dev/null || true
  for _ in $(seq 75); do kill -0 "$server" 2>/dev/null || break; sleep 0.2; done
  kill -9 "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  server=""
}
load() {
  bin/matsteer-load --url "http://127.0.0.1:$PORT/v1" --concurrency 1,4,16 --requests 32 --max-tokens 32 --warmup 2 \
    --ignore-eos --no-keepalive "$@" || echo "bench.sh: some requests failed (see the table's errors column)"
}
for round in $(seq "$ROUNDS"); do
  echo "-- round $round: llama-server -np $PARALLEL -kvu -c $((PARALLEL * 512)) -t $THREADS"
  "$server_bin" -m "$model" -np "$PARALLEL" -kvu -c $((PARALLEL * 512)) -t "$THREADS" -tb "$THREADS" \
    --port "$PORT" --host 127.0.0.1 --no-webui >"$work/llama-server.log" 2>&1 &
  server=$!
  wait_up
  load --modes unsteered
  stop_server
  echo "-- round $round: matsteer serve --parallel $PARALLEL --ctx 512 --threads $THREADS"
  bin/matsteer serve --model "$model" --parallel "$PARALLEL" --ctx 512 --threads "$THREADS" -q \
    --steer b14="$work/l14.gguf" --steer b10="$work/l10.gguf" --addr "127.0.0.1:$PORT" &
  server=$!
  wait_up
  load --steering '{"file":"b14"}' --mix '{"file":"b14"};{"file":"b10","global":0.5}'
  stop_server
done
