#!/usr/bin/env bash
# test-outside.sh: builds and runs a program that imports
# github.com/matsteer/matsteer from a module outside this repository, as a
# user's program would (run by `make test`).
#
# 1. `scripts/llama-cpp.sh install` puts the static llama.cpp build of this
#    checkout into a temporary PREFIX (what `make install PREFIX=...` does).
# 2. The files git would commit (tracked and new, nothing ignored: no
#    third_party/ links, no generated llama/link_build.go) are copied into a
#    read-only directory, as they would sit in the module cache.
# 3. A new module requires matsteer with a replace pointing at that copy. It
#    holds scripts/testdata/outside/main.go (package llama only) and copies
#    of the programs in examples/ (the root package). With CGO_CFLAGS /
#    CGO_LDFLAGS from PREFIX/lib/matsteer/cgo.env all of them are built, the
#    first runs (it generates from the default model when that is cached),
#    and so does examples/chat (one turn on the default model). With
#    -tags matsteer_pkgconfig and PKG_CONFIG_PATH (when pkg-config is
#    installed) the first is built and run again.
#
# Environment: CUDA=1 etc. as for scripts/llama-cpp.sh; GO (default go).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
GO="${GO:-go}"
log() { echo "test-outside: $*" >&2; }
fail() { echo "test-outside: FAIL: $*" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/matsteer-outside.XXXXXX")
cleanup() { chmod -R u+w "$tmp" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

prefix="$tmp/prefix"
log "installing llama.cpp into $prefix"
scripts/llama-cpp.sh install "$prefix" 2>"$tmp/install.log" || { cat "$tmp/install.log" >&2; fail "install"; }
for f in lib/matsteer/cgo.env lib/pkgconfig/matsteer-llama.pc include/llama.h include/ggml.h; do
  [ -f "$prefix/$f" ] || fail "install left no $f"
done

src="$tmp/modcache/github.com/matsteer/matsteer@v0.0.0"
mkdir -p "$src"
git ls-files -z --cached --others --exclude-standard | tar --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -xf - -C "$src"
[ -f "$src/go.mod" ] && [ -f "$src/llama/link.go" ] || fail "copy of the module is incomplete"
[ ! -e "$src/third_party/build" ] && [ ! -e "$src/llama/link_build.go" ] || fail "the copy holds build outputs"
chmod -R a-w "$src"

mod="$tmp/outside"
mkdir -p "$mod"
cp scripts/testdata/outside/main.go "$mod/"
examples=()
for d in examples/*/; do
  [ -f "$d/main.go" ] || continue
  e=$(basename "$d"); examples+=("$e")
  mkdir -p "$mod/$e" && cp "$d"/*.go "$mod/$e/"
done
cp go.sum "$mod/"
gover=$(sed -n 's/^go //p' go.mod)
cat >"$mod/go.mod" <<MOD
module example.com/outside

go $gover

require github.com/matsteer/matsteer v0.0.0

replace github.com/matsteer/matsteer => $src
MOD

model_args=()
model="${MATSTEER_CACHE:-$HOME/.cache/matsteer}/models/SmolLM2-135M-Instruct.Q4_1.gguf"
[ -f "$model" ] && model_args=("$model")

run_check() {
  local what="$1" bin="$2"
  local out
  out=$("$bin" "${model_args[@]}" 2>&1) || { echo "$out" >&2; fail "$what: the program failed"; }
  echo "$out" | sed 's/^/  /' >&2
  grep -q '^outside: ok$' <<<"$out" || fail "$what: no 'outside: ok' in its output"
}

# GOFLAGS=-mod=mod: resolve the new module's requirements, as a user's
# `go mod tidy` would. Its module graph is not pruned as this repository's
# own build is, so it needs go.mod files that `make build` never fetched
# (github.com/ajstarks/deck/generate, through gonum's plot): on a fresh
# machine they come from GOPROXY first (go.sum pins them), then every
# build runs from the module cache alone (GOPROXY=off).
export GOFLAGS=-mod=mod GOWORK=off
(cd "$mod" && "$GO" list -deps ./... >/dev/null 2>"$tmp/modules.log") || { cat "$tmp/modules.log" >&2; fail "cannot load the module graph (GOPROXY=$("$GO" env GOPROXY))"; }
export GOPROXY=off
(
  cd "$mod"
  # shellcheck disable=SC1091
  source "$prefix/lib/matsteer/cgo.env"
  log "go build with CGO_CFLAGS/CGO_LDFLAGS from cgo.env (and examples: ${examples[*]:-none})"
  "$GO" build -o "$tmp/outside-env" . 2>&1 || exit 1
  for e in "${examples[@]}"; do
    "$GO" build -o "$tmp/example-$e" "./$e" 2>&1 || exit 1
  done
) || fail "build with cgo.env"
run_check "cgo.env build" "$tmp/outside-env"
if [ -x "$tmp/example-chat" ] && [ ${#model_args[@]} -gt 0 ]; then
  log "running examples/chat (one turn)"
  out=$(printf 'Hello!\n' | "$tmp/example-chat" -model "$model" 2>&1) || { echo "$out" >&2; fail "examples/chat failed"; }
  echo "$out" | sed 's/^/  /' >&2
  reply=$(sed 's/> //g' <<<"$out" | tr -d '[:space:]')
  [ "$(grep -o '> ' <<<"$out" | wc -l)" -ge 2 ] && [ -n "$reply" ] || fail "examples/chat: no reply"
fi

if command -v pkg-config >/dev/null; then
  (
    cd "$mod"
    log "go build -tags matsteer_pkgconfig with PKG_CONFIG_PATH"
    PKG_CONFIG_PATH="$prefix/lib/pkgconfig" CGO_CFLAGS= CGO_LDFLAGS= "$GO" build -tags matsteer_pkgconfig -o "$tmp/outside-pc" . 2>&1 || exit 1
  ) || fail "build with pkg-config"
  run_check "pkg-config build" "$tmp/outside-pc"
else
  log "pkg-config not installed: the pkg-config build is skipped"
fi
log "ok"
