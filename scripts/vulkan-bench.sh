#!/usr/bin/env bash
# vulkan-bench.sh: steered vs unsteered generation, and ours vs llama-bench,
# with every layer on a Vulkan device (Mesa's software device where there is
# no GPU), in interleaved rounds; every round is printed with ms/token.
# Builds llama.cpp with Vulkan (cached like every build) and links
# bin/matsteer-vulkan through its pkg-config file, leaving this checkout's
# own build alone.
#
#   ROUNDS=3 N=24 THREADS=2 scripts/vulkan-bench.sh [MODEL]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-3}" N="${N:-24}" THREADS="${THREADS:-2}" GO="${GO:-go}"
die() { echo "vulkan-bench: $*" >&2; exit 2; }
for v in ROUNDS:1:100 N:2:4096 THREADS:1:1024; do
  IFS=: read -r name lo hi <<<"$v"
  val="${!name}"
  [[ "$val" =~ ^[0-9]+$ ]] && [ "$val" -ge "$lo" ] && [ "$val" -le "$hi" ] || die "$name=$val: want an integer in $lo..$hi"
done
model="${1:-$($GO run ./cmd/matsteer-bench -print-model)}"
[ -f "$model" ] || die "model $model: no such file (matsteer model pull)"
build="$(VULKAN=1 scripts/llama-cpp.sh build llama-bench)"
PKG_CONFIG_PATH="$build/install/lib/pkgconfig" $GO build -tags matsteer_pkgconfig -o bin/matsteer-vulkan ./cmd/matsteer
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
$GO run ./cmd/matsteer-bench -write-steer "$work/l14.gguf" -layer 14 >/dev/null
export GGML_VK_VISIBLE_DEVICES="${GGML_VK_VISIBLE_DEVICES:-0}"
prompt='Once upon a time, in a small village'
# decode: the rate after the first token, from generate's summary line
decode() {
  bin/matsteer-vulkan generate --model "$model" --gpu-layers 99 -n "$N" -t "$THREADS" --chat=false --prompt "$prompt" "$@" 2>&1 >/dev/null |
    tail -1 | awk -v n="$N" '{for (i = 1; i <= NF; i++) { if ($i == "after") f = $(i+1) + 0; if ($i == "generated" && $(i+1) == "in") t = $(i+2) + 0 }}
      END { if (t <= f) { print "?"; exit 1 }; printf "%.3f %.1f\n", (n-1)/(t-f), (t-f)*1000/(n-1) }'
}
echo "vulkan-bench: $model, every layer on device $GGML_VK_VISIBLE_DEVICES, $THREADS threads, $N tokens, $ROUNDS rounds"
for r in $(seq "$ROUNDS"); do
  lb=$("$build/bin/llama-bench" -m "$model" -ngl 99 -t "$THREADS" -p 0 -n 16 -r 1 -o json 2>/dev/null | awk -F: '/"avg_ts"/ {gsub(/[ ,]/, "", $2); print $2}')
  read -r u um <<<"$(decode)"
  read -r s sm <<<"$(decode --steer "$work/l14.gguf")"
  awk -v r="$r" -v lb="$lb" -v u="$u" -v um="$um" -v s="$s" -v sm="$sm" 'BEGIN {
    printf "round %d: llama-bench tg16 %.2f tok/s (%.0f ms/token) | ours unsteered %.2f tok/s (%.0f ms) | steered %.2f tok/s (%.0f ms) | steered/unsteered %.2f | ours/llama-bench %.2f\n",
      r, lb, 1000/lb, u, um, s, sm, s/u, u/lb }'
done
