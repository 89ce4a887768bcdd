#!/usr/bin/env bash
# The main job on an embedded default: builds flexinfer, writes a small random-weight llama model
# with a self-contained byte vocabulary (no download), and generates text from it.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/build.sh
model=build/demo-tiny-q8_0.gguf
[ -f "$model" ] || build/tools/flexinfer make-model --preset tiny --type q8_0 --byte-vocab --seed 1 -o "$model"
echo "== random weights, so the text is noise; the tokens/s at the end are real =="
build/tools/flexinfer generate -m "$model" -p "Once upon a time" -n 64 --seed 42
