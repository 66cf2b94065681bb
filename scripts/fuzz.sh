#!/usr/bin/env bash
# Runs every Go fuzz target of the module for a bounded time each, one
# `go test -fuzz` per target (Go fuzzes one target of one package at a time).
#
#   scripts/fuzz.sh [seconds]     seconds per target (default 30)
#
# Targets are found by looking for `func FuzzXxx(` in *_test.go files
# (third_party/ excluded), so a new target is fuzzed without editing this
# script; the script fails if the Makefile's `fuzz` target does not list one
# (so `make fuzz` stays complete). Every target's seed corpus also runs in
# plain `go test`. A failing input is written by Go to
# <package>/testdata/fuzz/<Target>/; commit it as a regression seed once
# fixed. Exits non-zero if any target fails.
#
# Environment: GO (default go), FUZZ_PARALLEL (fuzzing workers per target,
# default: Go's, i.e. GOMAXPROCS).
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-30}"
if ! [[ "$secs" =~ ^[0-9]+$ ]] || [ "$secs" -lt 1 ] || [ "$secs" -gt 86400 ]; then
  echo "usage: scripts/fuzz.sh [seconds per target, 1..86400]" >&2
  exit 2
fi
GO="${GO:-go}"
parallel=()
if [ -n "${FUZZ_PARALLEL:-}" ]; then
  parallel=(-parallel "$FUZZ_PARALLEL")
fi

# "dir name" per target, sorted.
mapfile -t targets < <(
  grep -rEo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*\(' . \
    | grep -v '^\./third_party/' \
    | sed -E 's|^\./(.*)/[^/]*:func (Fuzz[A-Za-z0-9_]*)\($|\1 \2|' \
    | sort -u
)
if [ "${#targets[@]}" -eq 0 ]; then
  echo "fuzz.sh: no fuzz targets found" >&2
  exit 1
fi

missing=()
for t in "${targets[@]}"; do
  name="${t#* }"
  if ! grep -Eq -- "-fuzz='\^${name}\\$\\$'" Makefile; then
    missing+=("$t")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "fuzz.sh: the Makefile's fuzz target does not list: ${missing[*]}" >&2
  exit 1
fi

echo "fuzz.sh: ${#targets[@]} targets, ${secs}s each"
failed=()
for t in "${targets[@]}"; do
  dir="${t% *}"
  name="${t#* }"
  echo "== ${name} (./${dir})"
  if ! "$GO" test -run '^$' -fuzz="^${name}\$" -fuzztime="${secs}s" "${parallel[@]}" "./${dir}"; then
    failed+=("${name} (./${dir})")
  fi
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz.sh: FAILED: ${failed[*]} (failing inputs are under <package>/testdata/fuzz/)" >&2
  exit 1
fi
echo "fuzz.sh: all ${#targets[@]} targets passed"
