#!/usr/bin/env bash
# check-cuda.sh: `make check-cuda`. Builds llama.cpp with CUDA (CUDA=1, for
# CUDA_ARCHS; the toolkit from scripts/cuda-toolkit.sh) into the cache and
# links bin/matsteer-cuda against it through the build's pkg-config file
# (-tags matsteer_pkgconfig), leaving this checkout's own build alone; then
# checks that the program runs without a GPU:
#   - it links libcudart and libcublas from the toolkit the build used;
#   - `matsteer-cuda --help` runs;
#   - `matsteer-cuda model info --gpu-layers -1 MODEL` either shows layers on a
#     CUDA device (a GPU is present) or fails with the clear "no GPU" error
#     (none is present), never crashes.
#
#   scripts/check-cuda.sh [MODEL]     (default: the default model)
set -euo pipefail
cd "$(dirname "$0")/.."
export CUDA=1
export CUDA_ARCHS="${CUDA_ARCHS:-80;86;89;90}"
GO="${GO:-go}"

die() { echo "check-cuda: FAIL: $*" >&2; exit 1; }

start=$(date +%s)
out=$(scripts/llama-cpp.sh build) || die "the CUDA build of llama.cpp failed"
echo "check-cuda: llama.cpp with CUDA (CUDA_ARCHS=$CUDA_ARCHS): $out ($(($(date +%s) - start)) s, 0 when cached)"
grep -q '^GGML_CUDA:BOOL=ON' "$out/CMakeCache.txt" || die "$out is not a CUDA build"
pc="$out/install/lib/pkgconfig"
[ -f "$pc/matsteer-llama.pc" ] || die "no $pc/matsteer-llama.pc"
grep -q 'cudart' "$out/install/lib/matsteer/ldflags" || die "the link flags of $out name no CUDA runtime: $(cat "$out/install/lib/matsteer/ldflags")"

mkdir -p bin
PKG_CONFIG_PATH="$pc" $GO build -tags matsteer_pkgconfig -o bin/matsteer-cuda ./cmd/matsteer || die "linking bin/matsteer-cuda failed"
echo "check-cuda: linked bin/matsteer-cuda"
libs=$(ldd bin/matsteer-cuda)
for lib in libcudart libcublas; do
  line=$(grep "$lib\.so" <<<"$libs" | head -1)
  [ -n "$line" ] || die "bin/matsteer-cuda does not link $lib"
  case "$line" in *"not found"*) die "bin/matsteer-cuda cannot find $lib at run time: $line" ;; esac
  echo "check-cuda: $line" | sed 's/\t/ /g; s/  */ /g'
done
bin/matsteer-cuda --help >/dev/null || die "bin/matsteer-cuda --help failed"
echo "check-cuda: bin/matsteer-cuda --help runs"

model="${1:-}"
if [ -z "$model" ]; then model=$(bin/matsteer-cuda model list 2>/dev/null | awk '$1 == "smollm2-135m" && $2 == "yes" {print $3}'); fi
[ -n "$model" ] && [ -f "$model" ] || die "no model to load (run make model, or pass one: scripts/check-cuda.sh MODEL)"
set +e
info=$(bin/matsteer-cuda model info --gpu-layers -1 "$model" 2>&1)
rc=$?
set -e
if [ "$rc" -eq 0 ]; then
  grep -qi 'cuda' <<<"$info" || die "model info --gpu-layers -1 succeeded but names no CUDA device:
$info"
  echo "check-cuda: a GPU is present; the layers land on it:"
  grep -i 'cuda' <<<"$info" | head -5
elif [ "$rc" -ge 128 ]; then
  die "model info crashed (exit $rc):
$info"
else
  grep -q 'no GPU in this build or machine' <<<"$info" || die "model info failed (exit $rc) without the no-GPU message:
$info"
  echo "check-cuda: no GPU on this machine; loading a model with --gpu-layers -1 fails clearly (exit $rc):"
  grep -E 'ggml_cuda_init|no GPU' <<<"$info" | sed 's/^/  /'
fi
echo "check-cuda: OK ($(($(date +%s) - start)) s)"
