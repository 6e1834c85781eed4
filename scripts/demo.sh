#!/usr/bin/env bash
# The main job on the built-in default: train and export the reference fusion zoo on digits-av in
# both frameworks, evaluate every package, gate them with the default policy, print where the
# reports are. `make demo` runs it inside .venv. Set ZOO="early" (or a list) to train fewer models.
set -euo pipefail
OUT=${OUT:-out}
MMSTD=${MMSTD:-mmstd}
SUITE=${SUITE:-digits-av}
ZOO=${ZOO:-early late intermediate attention}
FRAMEWORKS=${FRAMEWORKS:-torch keras}
mkdir -p "$OUT"

echo "== 1. the shared dataset: $SUITE (sha256-pinned)"
"$MMSTD" suites verify "$SUITE"

echo "== 2. train and export the zoo ($ZOO) in $FRAMEWORKS; parity is checked on every export"
for name in $ZOO; do
  for fw in $FRAMEWORKS; do
    "$MMSTD" zoo train "$name" --framework "$fw" --suite "$SUITE" --out "$OUT/packages/$name-$fw" --force
    "$MMSTD" validate "$OUT/packages/$name-$fw"
  done
done

echo "== 3. evaluate each package on $SUITE (onnxruntime CPU, every variant)"
for pkg in "$OUT"/packages/*/; do
  name=$(basename "$pkg")
  "$MMSTD" evaluate "$pkg" --suite "$SUITE" --variant all --out "$OUT/reports/$name" --force >/dev/null
done

echo "== 4. gate the zoo with the default policy"
set +e
"$MMSTD" gate "$OUT/packages" --policy conformance/policies/default.yaml --out "$OUT/gate" \
  --junit "$OUT/gate/junit.xml" --force
status=$?
set -e
cat "$OUT/gate/summary.md"

echo
echo "== reports"
for r in "$OUT"/reports/*/report.html; do echo "  $r"; done
echo "  gate summary: $OUT/gate/summary.md"
exit "$status"
