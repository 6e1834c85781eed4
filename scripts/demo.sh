#!/usr/bin/env bash
# The main job on the built-in default, step by step. `make demo` runs it inside .venv.
set -euo pipefail
OUT=${OUT:-out}
MMSTD=${MMSTD:-mmstd}
PY=${PY:-python}
mkdir -p "$OUT"

echo "== 1. a card draft"
"$MMSTD" card init --out "$OUT/card.yaml" --force
"$MMSTD" validate "$OUT/card.yaml"

echo "== 2. a tiny ONNX fusion model sealed as a package"
"$PY" -m mmstd.testing seal --card "$OUT/card.yaml" --out "$OUT/packages/example-fusion" --force
"$MMSTD" validate "$OUT/packages/example-fusion"
"$MMSTD" inspect "$OUT/packages/example-fusion"

echo "== done: package at $OUT/packages/example-fusion"
