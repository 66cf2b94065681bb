#!/usr/bin/env bash
# gpu-check.sh: the hook and steering checks with every layer on a CUDA GPU,
# and what hooks and steering cost there, for a machine with a GPU that
# cannot fetch anything (the `device` machines: no network, a working tree of
# at most 64 MiB).
#
#   scripts/gpu-check.sh pack   here: build llama.cpp with CUDA for
#                               CUDA_ARCHS (default 90, the H200's Hopper) and
#                               link bin/gpu-check/gpucheck (scripts/gpucheck)
#                               against it: the one file to carry
#                               (bin/gpu-check, git-ignored; xz-compressed
#                               when that is what fits)
#   scripts/gpu-check.sh run    on the GPU machine: run the carried program,
#                               or, with no carried program, build it there
#                               (needs Go, CMake, a system CUDA and the
#                               llama.cpp source in the cache), then print its
#                               checks and the hooked/unhooked and
#                               steered/unsteered token-rate ratios
#   scripts/gpu-check.sh run -- ARGS...
#                               extra arguments for gpucheck (-rounds, -n,
#                               -layers, ...; gpucheck -h lists them)
#
# The model is built in memory with random weights (a llama-architecture
# model of 24 layers x 512 by default): the default model (about 90 MB) does
# not fit the 64 MiB that travel to the machine, so the checks compare the
# GPU with the CPU on that model, and the ratios are for that model's shape.
#
# The CUDA libraries the program loads (libcudart.so.13, libcublas.so.13,
# libcublasLt.so.13) are not carried (cuBLAS alone is over 500 MB): run finds
# them in a system CUDA (/usr/local/cuda*) or in Python's nvidia-* packages,
# and fails with a clear message otherwise, as it does when there is no GPU.
# The whole run is bounded by GPU_CHECK_TIMEOUT seconds (default 420).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=bin/gpu-check
PROG="$DIR/gpucheck"
TIMEOUT="${GPU_CHECK_TIMEOUT:-420}"

die() { echo "gpu-check: FAIL: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

pack() {
  [ $# -eq 0 ] || usage
  export CUDA=1 CUDA_ARCHS="${CUDA_ARCHS:-90}"
  local out; out=$(scripts/llama-cpp.sh build) || die "the CUDA build of llama.cpp failed"
  mkdir -p "$DIR"
  rm -f "$PROG" "$PROG.xz"
  PKG_CONFIG_PATH="$out/install/lib/pkgconfig" go build -tags matsteer_pkgconfig -trimpath -ldflags=-s -o "$PROG" ./scripts/gpucheck ||
    die "linking gpucheck against $out failed"
  echo "$CUDA_ARCHS" >"$DIR/cuda-archs"
  local size; size=$(stat -c %s "$PROG")
  if [ "$size" -gt $((48 << 20)) ]; then
    xz -T0 -6 "$PROG" || die "xz failed"
    size=$(stat -c %s "$PROG.xz")
    [ "$size" -le $((60 << 20)) ] || die "$PROG.xz is $((size >> 20)) MiB: too large to carry (64 MiB with the working tree); try one architecture (CUDA_ARCHS=90)"
  fi
  echo "gpu-check: packed $(ls "$DIR") ($((size >> 20)) MiB; CUDA_ARCHS=$CUDA_ARCHS, llama.cpp build $out)"
  echo "gpu-check: on the GPU machine: carry $DIR and run scripts/gpu-check.sh run"
}

# cuda_lib_dirs prints the directories that hold libcublas.so.13 on this
# machine.
cuda_lib_dirs() {
  local d
  for d in /usr/local/cuda*/lib64 /usr/local/cuda*/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu; do
    [ -e "$d/libcublas.so.13" ] && echo "$d"
  done
  local py
  for py in python3 /opt/torch/.venv/bin/python3; do
    command -v "$py" >/dev/null 2>&1 || continue
    "$py" - <<'EOF' 2>/dev/null || true
import glob, site, sys
for base in site.getsitepackages() + [site.getusersitepackages()]:
    for d in glob.glob(base + "/nvidia/cu13/lib") + glob.glob(base + "/nvidia/*/lib"):
        if glob.glob(d + "/libcublas.so.13") or glob.glob(d + "/libcudart.so.13") or glob.glob(d + "/libcublasLt.so.13"):
            print(d)
EOF
  done
}

run() {
  local args=()
  if [ $# -gt 0 ]; then
    [ "$1" = "--" ] || usage
    shift; args=("$@")
  fi
  [[ "$TIMEOUT" =~ ^[0-9]+$ ]] && [ "$TIMEOUT" -ge 10 ] || die "GPU_CHECK_TIMEOUT=$TIMEOUT: want whole seconds, 10 or more"
  local start; start=$(date +%s)
  local prog
  if [ -f "$PROG.xz" ]; then
    prog=$(mktemp -d)/gpucheck
    xz -dc "$PROG.xz" >"$prog" && chmod +x "$prog" || die "cannot unpack $PROG.xz"
  elif [ -x "$PROG" ]; then
    prog="$PROG"
  else
    echo "gpu-check: no carried $PROG: building it here (needs Go, CMake and a system CUDA)"
    command -v go >/dev/null || die "no carried $PROG and no Go on this machine: run scripts/gpu-check.sh pack where Go is, and carry $DIR"
    pack
    [ -f "$PROG.xz" ] && { prog=$(mktemp -d)/gpucheck; xz -dc "$PROG.xz" >"$prog"; chmod +x "$prog"; } || prog="$PROG"
  fi
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | sed 's/^/gpu-check: GPU: /' || true
  else
    echo "gpu-check: no nvidia-smi on this machine"
  fi
  local dirs; dirs=$(cuda_lib_dirs | awk '!seen[$0]++' | paste -sd: -)
  export LD_LIBRARY_PATH="${dirs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  local missing; missing=$(ldd "$prog" 2>&1 | grep 'not found' || true)
  [ -z "$missing" ] || die "the CUDA libraries gpucheck needs are not on this machine (no CUDA 13 toolkit in /usr/local/cuda*, nor Python's nvidia-cublas / nvidia-cuda-runtime):
$missing"
  echo "gpu-check: CUDA libraries from ${dirs:-the default library path}"
  local rc=0
  timeout "$TIMEOUT" "$prog" "${args[@]}" || rc=$?
  echo "gpu-check: $(($(date +%s) - start)) s"
  case "$rc" in
    0) echo "gpu-check: OK" ;;
    124) die "gpucheck ran past GPU_CHECK_TIMEOUT=$TIMEOUT s" ;;
    *) die "gpucheck exited with $rc" ;;
  esac
}

case "${1:-}" in
  pack) shift; pack "$@" ;;
  run) shift; run "$@" ;;
  *) usage ;;
esac
