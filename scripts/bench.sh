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
servers=""
cleanup() {
  # llama-server sometimes ignores SIGTERM after a run (seen once in three):
  # give it 15 s, then SIGKILL.
  for pid in $servers; do kill "$pid" 2>/dev/null || true; done
  for pid in $servers; do
    for _ in $(seq 75); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
go build $GOTAGS -o bin/matsteer-load ./cmd/matsteer-load
go run $GOTAGS ./cmd/matsteer-bench -write-steer "$work/l14.gguf" -layer 14
go run $GOTAGS ./cmd/matsteer-bench -write-steer "$work/l10.gguf" -layer 10
PORT="${PORT:-18089}"
OURS_PORT=$((PORT + 1))
CLIENTS="${CLIENTS:-1 4 16}"
REQUESTS="${REQUESTS:-32}"
wait_up() {
  for _ in $(seq 300); do curl -sf "http://127.0.0.1:$1/health" >/dev/null && return 0; sleep 0.2; done
  echo "bench.sh: the server on port $1 did not come up" >&2; return 1
}
# Both servers run for the whole benchmark (an idle server's threads sleep),
# so the comparison is interleaved per load level, not per server start: a
# neighbour's burst on this shared VM then hits both sides alike. The order
# alternates between rounds.
"$server_bin" -m "$model" -np "$PARALLEL" -kvu -c $((PARALLEL * 512)) -t "$THREADS" -tb "$THREADS" \
  --port "$PORT" --host 127.0.0.1 --no-webui >"$work/llama-server.log" 2>&1 &
servers="$!"
bin/matsteer serve --model "$model" --parallel "$PARALLEL" --ctx 512 --threads "$THREADS" -q \
  --steer b14="$work/l14.gguf" --steer b10="$work/l10.gguf" --addr "127.0.0.1:$OURS_PORT" &
servers="$servers $!"
wait_up "$PORT"
wait_up "$OURS_PORT"
load() {
  local port="$1" clients="$2"
  shift 2
  bin/matsteer-load --url "http://127.0.0.1:$port/v1" --concurrency "$clients" --requests "$REQUESTS" --max-tokens 32 --warmup 2 \
    --ignore-eos --no-keepalive "$@" || echo "bench.sh: some requests failed (see the table's errors column)"
}
llama_load() { echo "-- llama-server -np $PARALLEL -kvu -c $((PARALLEL * 512)) -t $THREADS, $1 client(s)"; load "$PORT" "$1" --modes unsteered; }
ours_load() {
  echo "-- matsteer serve --parallel $PARALLEL --ctx 512 --threads $THREADS, $1 client(s)"
  load "$OURS_PORT" "$1" --steering '{"file":"b14"}' --mix '{"file":"b14"};{"file":"b10","global":0.5}'
}
for round in $(seq "$ROUNDS"); do
  for clients in $CLIENTS; do
    echo "== round $round, $clients client(s)"
    if [ $((round % 2)) -eq 1 ]; then
      llama_load "$clients"
      ours_load "$clients"
    else
      ours_load "$clients"
      llama_load "$clients"
    fi
  done
done
