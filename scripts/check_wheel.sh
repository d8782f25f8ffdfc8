#!/usr/bin/env bash
# Install pydense the way users do and check the result: build a wheel without build isolation
# (so the extension compiles against this environment's torch) into dist/, install it with
# `pip install --no-deps --target` into a scratch folder (build/wheel-site), then, from a folder
# outside the checkout, import every module from there and check every op is registered
# (scripts/check_install.py). The compile starts afresh (build/lib.*, build/temp.* removed).
# PYDENSE_CUDA=0 by default: CPU kernels only, the quick check; PYDENSE_CUDA=1 for the full wheel
# with the CUDA kernels (TORCH_CUDA_ARCH_LIST, default 8.0;9.0 without a GPU; slow on 2 cores).
#
#   bash scripts/check_wheel.sh          (or: make wheel [PYDENSE_CUDA=1]; PYTHON=... for another venv)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
PY="${PYTHON:-.venv/bin/python}"
[[ "$PY" == */* ]] && PY="$ROOT/$PY"
export PYDENSE_CUDA="${PYDENSE_CUDA:-0}" MAX_JOBS="${MAX_JOBS:-2}"
SITE="$ROOT/build/wheel-site"
mkdir -p build dist
rm -rf build/lib.* build/temp.* build/bdist.* "$SITE" dist/pydense-*.whl

T0=$(date +%s)
echo "== pip wheel --no-build-isolation (PYDENSE_CUDA=$PYDENSE_CUDA, MAX_JOBS=$MAX_JOBS; log: build/wheel.log)"
if ! "$PY" -m pip wheel --no-build-isolation --no-deps -v -w dist . > build/wheel.log 2>&1; then
  tail -n 60 build/wheel.log; echo "WHEEL BUILD FAILED"; exit 1
fi
grep -A5 "pydense build configuration" build/wheel.log | sed 's/^ */   /' | head -6
WHEEL=$(ls dist/pydense-*.whl)
T1=$(date +%s)
echo "   $WHEEL ($(du -h "$WHEEL" | cut -f1)): $((T1 - T0))s"

echo "== pip install --no-deps --target build/wheel-site"
"$PY" -m pip install -q --no-deps --target "$SITE" "$WHEEL"
T2=$(date +%s)

echo "== import from build/wheel-site, outside the checkout"
SCRATCH=$(mktemp -d)
status=0
(cd "$SCRATCH" && PYTHONPATH="$SITE" "$PY" "$ROOT/scripts/check_install.py" --expect-in "$SITE") || status=1
rm -rf "$SCRATCH"
T3=$(date +%s)
echo "== wheel: build $((T1 - T0))s, install $((T2 - T1))s, import check $((T3 - T2))s; $([ $status = 0 ] && echo ok || echo FAILED)"
exit $status
