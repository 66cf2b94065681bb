#!/usr/bin/env bash
# cuda-toolkit.sh: find the CUDA toolkit a CUDA=1 build compiles with, or
# fetch a pinned one.
#
#   scripts/cuda-toolkit.sh root   print the toolkit's root directory (its
#                                  bin/nvcc, include/, lib/ or lib64/)
#   scripts/cuda-toolkit.sh info   print "root=DIR", "version=V" and
#                                  "driver=yes|no" (whether a libcuda to link
#                                  is there: the driver's, or the toolkit's
#                                  stub)
#
# Order: $CUDA_HOME or $CUDA_PATH when set (must hold bin/nvcc), nvcc on
# PATH, /usr/local/cuda; else the CUDA 13.0 wheels from PyPI pinned below,
# fetched with pip (checked against the sha256 recorded here) and unpacked
# into $MATSTEER_CACHE/cuda/13.0-<hash of the pins>. A fetch is built in a
# temporary directory and moved into place when complete, so an interrupted
# one never leaves a half-written toolkit. MATSTEER_CUDA_WHEELS=1 skips the
# system toolkit (to test the wheels on a machine that has one).
#
# The wheels ship no libcuda (the driver library) and no stub of it; the
# build script then builds ggml-cuda with GGML_CUDA_NO_VMM=ON, the one thing
# in ggml-cuda that links the driver library directly (device memory by
# CUDA's virtual memory management; without it ggml uses its pool of
# cudaMalloc'd buffers). A system toolkit has lib64/stubs/libcuda.so.
set -euo pipefail

CACHE="${MATSTEER_CACHE:-$HOME/.cache/matsteer}"

# One release: nvcc, nvvm (cicc), crt and the runtime headers must agree (a
# newer nvvm next to an older nvcc fails in ptxas with "Unsupported
# .version"). cuBLAS 13.1.0.3 and CCCL 13.0.85 ship with CUDA 13.0 update 2.
VERSION=13.0.88
WHEELS=(
  "nvidia-cuda-nvcc==13.0.88 --hash=sha256:56fe502eb77625a12f25172caa3cdddb4e4c8ba2c8c17dba44b164761b380f03"
  "nvidia-nvvm==13.0.88 --hash=sha256:c5f41ffeb6466944a026dfa5317d7d85355c119bbec279205d22f1869d1054e0"
  "nvidia-cuda-crt==13.0.88 --hash=sha256:2c8043c7c9e02492716426e9919fc78d2c5b3b2a7a768a88e952676b08aa55a4"
  "nvidia-cuda-runtime==13.0.96 --hash=sha256:7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548"
  "nvidia-cuda-cccl==13.0.85 --hash=sha256:e0da7ad981f3a8aff08241b5bfc1af868742a63e2762f53a5171c492ef242649"
  "nvidia-cublas==13.1.0.3 --hash=sha256:ee8722c1f0145ab246bccb9e452153b5e0515fd094c3678df50b2a0888b8b171"
)

die() { echo "cuda-toolkit.sh: $*" >&2; exit 1; }
log() { echo "cuda-toolkit.sh: $*" >&2; }

# system_root prints the root of a CUDA toolkit installed on this machine,
# or nothing.
system_root() {
  [ "${MATSTEER_CUDA_WHEELS:-0}" = 1 ] && return 0
  local d
  for d in "${CUDA_HOME:-}" "${CUDA_PATH:-}"; do
    [ -n "$d" ] || continue
    [ -x "$d/bin/nvcc" ] || die "CUDA_HOME/CUDA_PATH=$d has no bin/nvcc"
    (cd "$d" && pwd); return 0
  done
  if command -v nvcc >/dev/null; then
    (cd "$(dirname "$(readlink -f "$(command -v nvcc)")")/.." && pwd); return 0
  fi
  if [ -x /usr/local/cuda/bin/nvcc ]; then echo /usr/local/cuda; return 0; fi
}

# wheels_root fetches the pinned wheels (once) and prints their root.
wheels_root() {
  local hash; hash=$(printf '%s\n' "${WHEELS[@]}" | sha256sum | cut -c1-12)
  local dst="$CACHE/cuda/13.0-$hash"
  if [ -f "$dst/.matsteer-complete" ]; then echo "$dst"; return; fi
  [ "$(uname -sm)" = "Linux x86_64" ] || die "no CUDA toolkit found, and the pinned wheels are for Linux x86_64 only; install CUDA and set CUDA_HOME"
  local pip=(python3 -m pip)
  "${pip[@]}" --version >/dev/null 2>&1 || die "no CUDA toolkit found (CUDA_HOME, nvcc on PATH, /usr/local/cuda) and no pip to fetch the pinned CUDA $VERSION wheels"
  command -v unzip >/dev/null || die "unzip is required to unpack the CUDA wheels"
  mkdir -p "$CACHE/cuda"
  local tmp; tmp=$(mktemp -d "$CACHE/cuda/.fetch.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  printf '%s\n' "${WHEELS[@]}" >"$tmp/requirements.txt"
  log "fetching the CUDA $VERSION toolkit wheels from PyPI (about 530 MB, once; checked by sha256)"
  "${pip[@]}" download --quiet --no-deps --only-binary=:all: --require-hashes \
    -r "$tmp/requirements.txt" -d "$tmp/wheels" >&2 || die "pip download of the CUDA wheels failed"
  [ "$(find "$tmp/wheels" -name '*.whl' | wc -l)" = "${#WHEELS[@]}" ] || die "pip download gave $(find "$tmp/wheels" -name '*.whl' | wc -l) wheels, want ${#WHEELS[@]}"
  local w
  for w in "$tmp"/wheels/*.whl; do
    unzip -q -o "$w" 'nvidia/*' -d "$tmp/unpack" || die "cannot unpack $(basename "$w")"
  done
  [ -x "$tmp/unpack/nvidia/cu13/bin/nvcc" ] || die "the wheels hold no nvidia/cu13/bin/nvcc"
  mv "$tmp/unpack/nvidia/cu13" "$tmp/root"
  # The layout CMake's FindCUDAToolkit expects: unversioned library names
  # (the wheels ship only libX.so.13) and lib64.
  local lib
  for lib in "$tmp"/root/lib/lib*.so.*; do
    ln -sfn "$(basename "$lib")" "${lib%.so.*}.so"
  done
  ln -sfn lib "$tmp/root/lib64"
  printf '%s\n' "${WHEELS[@]}" >"$tmp/root/.matsteer-wheels"
  "$tmp/root/bin/nvcc" --version >/dev/null || die "the unpacked nvcc does not run"
  touch "$tmp/root/.matsteer-complete"
  rm -rf "$dst"; mv "$tmp/root" "$dst"
  rm -rf "$tmp"; trap - EXIT
  echo "$dst"
}

root() {
  local r; r=$(system_root)
  if [ -n "$r" ]; then echo "$r"; else wheels_root; fi
}

# has_driver ROOT: whether a libcuda can be linked: the toolkit's stub or the
# driver's library.
has_driver() {
  local r="$1" d
  for d in "$r/lib64/stubs" "$r/lib/stubs" "$r/targets/x86_64-linux/lib/stubs"; do
    [ -e "$d/libcuda.so" ] && return 0
  done
  ldconfig -p 2>/dev/null | grep -qE '^\s*libcuda\.so \('
}

case "${1:-}" in
  root) root ;;
  info)
    r=$(root)
    echo "root=$r"
    echo "version=$("$r/bin/nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
    if has_driver "$r"; then echo "driver=yes"; else echo "driver=no"; fi
    ;;
  *) echo "usage: $0 root|info" >&2; exit 2 ;;
esac
