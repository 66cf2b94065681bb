#!/usr/bin/env bash
# demo.sh: the `make run` demo. Extracts activations of the team's small
# demo dataset (demo/data/demo.jsonl: positivity and formality), trains a
# MAT-Steer file (both cached), then shows unsteered and steered completions
# side by side, and the per-token gates of one steered completion.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=bin/matsteer
CACHE="${MATSTEER_CACHE:-$HOME/.cache/matsteer}/demo"
LAYER="${DEMO_LAYER:-12}"
THREADS="${THREADS:-2}"
DATA=demo/data/demo.jsonl
mkdir -p "$CACHE"

model=$($BIN model pull 2>/dev/null)
key=$( (sha256sum "$DATA" "$BIN" | cut -d' ' -f1; echo "$model $LAYER") | sha256sum | cut -c1-16)
acts="$CACHE/acts-$key.safetensors"
steerfile="$CACHE/steer-$key.gguf"

echo "== matsteer demo: $(basename "$model"), layer $LAYER, $THREADS threads"
if [ ! -f "$acts" ]; then
  echo "-- extracting activations of $DATA (200 labelled texts)"
  $BIN extract -t "$THREADS" --data "$DATA" --layer "$LAYER" --tokens all --out "$acts"
fi
if [ ! -f "$steerfile" ]; then
  echo "-- training MAT-Steer (gated, 2 attributes)"
  $BIN train --acts "$acts" --out "$steerfile" --quiet
fi
$BIN inspect "$steerfile" | sed -n '/^attributes/,/^$/p'

show() { # prompt, strengths
  local prompt=$1 strengths=$2
  echo
  echo "prompt: $prompt"
  printf '  %-28s ' "unsteered:"
  $BIN generate -t "$THREADS" -q -n 40 --prompt "$prompt" | tr '\n' ' '
  echo
  printf '  %-28s\n  %-28s ' "steered" "($strengths):"
  $BIN generate -t "$THREADS" -q -n 40 --prompt "$prompt" --steer "$steerfile" --strength "$strengths" | tr '\n' ' '
  echo
}
show "Describe a rainy Monday at work." "positivity=2,formality=0"
show "Write a one-line text message to a friend saying you will be late." "positivity=2,formality=0"
show "Write a one-line text message to a friend saying you will be late." "positivity=0,formality=4"

echo
echo "-- gates of a steered completion (which tokens MAT-Steer chose to steer):"
$BIN generate -t "$THREADS" -q -n 14 --prompt "Describe a rainy Monday at work." --steer "$steerfile" --strength positivity=2,formality=0 --explain
