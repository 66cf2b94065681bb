#!/usr/bin/env bash
# rpc-bench.sh: what steering costs when the steered layer lives on a
# llama.cpp rpc-server. Starts two rpc-servers on loopback, splits the
# default model over them (every layer offloaded) and runs
# `matsteer generate` unsteered and steered (a gated 3-attribute file at
# LAYER, held by a server) in interleaved rounds, printing tok/s and
# ms/token per run. Then it counts what a hook adds on the wire: one more
# unsteered and steered run with both servers under strace, summing the
# bytes and calls of their socket sends and receives; both runs upload the
# same weights and decode the same prompt, so the difference per generated
# token is the hook's traffic (rows read back, steered rows written, the
# graph sent in more pieces).
#
#   scripts/rpc-bench.sh            (ROUNDS=3 N=64 LAYER=14 THREADS=1)
#
# Needs `make build` (bin/matsteer, bin/rpc-server), the default model and
# strace (for the count; skipped without it).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-3}"
N="${N:-64}"
LAYER="${LAYER:-14}"
THREADS="${THREADS:-1}"
for v in ROUNDS N LAYER THREADS; do
  [[ "${!v}" =~ ^[0-9]+$ ]] && [ "${!v}" -ge 1 ] || { echo "rpc-bench.sh: $v=${!v}: want a positive integer" >&2; exit 2; }
done
[ -x bin/matsteer ] && [ -x bin/rpc-server ] || { echo "rpc-bench.sh: run make build first" >&2; exit 1; }
model="$(go run ./cmd/matsteer-bench -print-model)"
work="$(mktemp -d)"
pids=()
# stop_servers: ends the servers (and the strace around each, which ends
# with its server).
stop_servers() {
  local p
  for p in "${pids[@]}"; do pkill -TERM -P "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
trap 'stop_servers; rm -rf "$work"' EXIT
go run ./cmd/matsteer-bench -write-steer "$work/steer.gguf" -layer "$LAYER" -model "$model"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# start_servers [strace]: two rpc-servers, optionally each under strace.
start_servers() {
  local endpoints=() i port
  for i in 1 2; do
    port="$(free_port)"
    if [ "${1:-}" = strace ]; then
      strace -f -qq -e trace=sendto,recvfrom,sendmsg,recvmsg -e signal=none -o "$work/trace$i" \
        bin/rpc-server -H 127.0.0.1 -p "$port" -t "$THREADS" >"$work/rpc$i.log" 2>&1 &
    else
      bin/rpc-server -H 127.0.0.1 -p "$port" -t "$THREADS" >"$work/rpc$i.log" 2>&1 &
    fi
    pids+=("$!")
    endpoints+=("127.0.0.1:$port")
    for _ in $(seq 100); do
      (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
      sleep 0.1
    done
  done
  rpc="$(IFS=,; echo "${endpoints[*]}")"
}

# A prompt the default model continues for N tokens either way.
prompt="Once upon a time, in a small village by the sea, there lived"
# run MODE: one generation; prints "GENERATED TOK/S".
run() {
  local args=(generate --model "$model" --rpc "$rpc" -t "$THREADS" -n "$N" --chat=false --prompt "$prompt")
  [ "$1" = steered ] && args+=(--steer "$work/steer.gguf")
  bin/matsteer "${args[@]}" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
  local out
  out="$(sed -nE 's/.* ([0-9]+) generated in [0-9.]+s \(([0-9.]+) tok\/s\).*/\1 \2/p' "$work/err" | tail -1)"
  case "$out" in
  "" | "0 "*) echo "rpc-bench.sh: $1 run generated nothing:" >&2; cat "$work/err" >&2; exit 1 ;;
  esac
  echo "$out"
}

start_servers
echo "rpc-bench: $model over two rpc-servers on loopback (-t $THREADS each; client -t $THREADS), $N tokens, steering at layer $LAYER"
grep -h '^rpc:' "$work/err" 2>/dev/null || true
printf '%-6s %-10s %8s %9s\n' round mode tok/s ms/token
for round in $(seq "$ROUNDS"); do
  declare -A tps=()
  for mode in unsteered steered; do
    read -r gen t < <(run "$mode") && [ -n "$gen" ] || exit 1
    tps[$mode]="$t"
    awk -v r="$round" -v m="$mode" -v t="$t" 'BEGIN{printf "%-6s %-10s %8.1f %9.2f\n", r, m, t, 1000/t}'
  done
  awk -v r="$round" -v u="${tps[unsteered]}" -v s="${tps[steered]}" 'BEGIN{printf "%-6s %-10s %8.3f   (steered / unsteered tok/s)\n", r, "ratio", s/u}'
done
grep -h '^rpc:' "$work/err" || true
stop_servers

if ! command -v strace >/dev/null; then
  echo "rpc-bench: no strace: the traffic count is skipped"
  exit 0
fi
# sum_trace: bytes and calls of every traced send/receive that succeeded.
sum_trace() { cat "$work"/trace* | awk '/= [0-9]+$/{b+=$NF; n++} END{print b+0, n+0}'; }
declare -A bytes=() calls=() gens=()
for mode in unsteered steered; do
  start_servers strace
  read -r gen t < <(run "$mode") && [ -n "$gen" ] || exit 1
  stop_servers
  read -r b c < <(sum_trace)
  bytes[$mode]=$b calls[$mode]=$c gens[$mode]=$gen
  rm -f "$work"/trace*
  echo "count $mode: $b bytes in $c socket calls on both servers for $gen tokens (weights upload and prompt included)"
done
awk -v ub="${bytes[unsteered]}" -v sb="${bytes[steered]}" -v uc="${calls[unsteered]}" -v sc="${calls[steered]}" -v g="${gens[steered]}" \
  'BEGIN{printf "added by the hook per generated token: %.0f bytes, %.1f socket calls (send + receive, both servers)\n", (sb-ub)/g, (sc-uc)/g}'
