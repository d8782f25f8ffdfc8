#!/usr/bin/env bash
# One-command GPU validation, for a machine with a CUDA GPU and a preinstalled torch (>= 2.11) and
# triton (>= 3.6), no network: builds pydense against that torch (no build isolation, native
# architecture), runs the test suite on the GPU, compute-sanitizer on a sample, and the benchmark
# suite. Everything lands in $OUT if set, else benchmarks/results/. Aim: under 10 minutes.
#
#   bash scripts/gpu_check.sh            (or: make gpu-check)
#   bash scripts/gpu_check.sh build,tests    only some steps (for 10-minute command limits: run
#                                            "build,tests,sanitizer,bench-eval", then "build,bench,bench-conv",
#                                            then "build,bench-models")
# Steps: build, tests, sanitizer, bench (memory-bound ops), bench-conv (convolutions, with
# torch.compile max-autotune), bench-models (the models), bench-eval (Panoptic Quality images/s), all by default. The AOT-compile tests are CI's (no GPU needed).
set -uo pipefail
STEPS=",${1:-build,tests,sanitizer,bench,bench-conv,bench-models,bench-eval},"
want() { [[ "$STEPS" == *",$1,"* ]]; }
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
export MAX_JOBS="${MAX_JOBS:-$(nproc)}" PYTHONUNBUFFERED=1
status=0
step() { echo "== $1 ($(date +%T))"; }

step "environment"
{ nvidia-smi; "$PY" -c "import sys, torch, triton; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__); print(torch.cuda.get_device_name())"; } > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt" | tail -3

if want build; then
step "build"
if ! timeout 300 "$PY" -m pip install --no-build-isolation --no-deps -v -e . > "$OUT/build.log" 2>&1; then
  tail -n 60 "$OUT/build.log"; echo "BUILD FAILED"; exit 1
fi
"$PY" scripts/ptxas_summary.py "$OUT/build.log" > "$OUT/ptxas.txt"; head -3 "$OUT/ptxas.txt"
fi

if want tests; then
step "tests (GPU)"
timeout 330 "$PY" -m pytest -ra -q -p no:cacheprovider -m "not aot" --durations=20 > "$OUT/tests.log" 2>&1 || status=1
tail -n 45 "$OUT/tests.log"
fi

if want sanitizer; then
step "compute-sanitizer"
if command -v compute-sanitizer > /dev/null; then
  { timeout 120 compute-sanitizer --tool memcheck --error-exitcode 3 "$PY" scripts/sanitizer_sample.py
    echo "memcheck exit: $?"; } > "$OUT/sanitizer.log" 2>&1
  grep -E "ERROR SUMMARY|exit:|done" "$OUT/sanitizer.log" || tail -5 "$OUT/sanitizer.log"
  grep -q "memcheck exit: 0" "$OUT/sanitizer.log" || status=1
else
  echo "compute-sanitizer not found" | tee "$OUT/sanitizer.log"
fi
fi

if want bench; then
step "benchmarks (memory-bound ops)"
OPS=$("$PY" -c "import benchmarks; print(','.join(o for o in benchmarks.discover() if not o.startswith('conv')))")
timeout 240 "$PY" -m benchmarks --ops "$OPS" --out "$OUT" > "$OUT/bench.md" 2>&1 || status=1
head -80 "$OUT/bench.md"
fi

if want bench-conv; then
step "benchmarks (convolutions)"
timeout 300 "$PY" -m benchmarks --ops conv2d,conv2d_fused,conv_transpose2d,conv2d_pixel_shuffle --out "$OUT" > "$OUT/bench_conv.md" 2>&1 || status=1
head -120 "$OUT/bench_conv.md"
fi

if want bench-models; then
step "benchmarks (models: pydense vs eager vs torch.compile max-autotune)"
timeout 540 "$PY" -m benchmarks.models --out "$OUT" > "$OUT/bench_models.md" 2>&1 || status=1
head -100 "$OUT/bench_models.md"
fi

if want bench-eval; then
step "benchmarks (Panoptic Quality: pydense vs the straightforward reference)"
timeout 120 "$PY" -m benchmarks.panoptic_quality --out "$OUT" > "$OUT/bench_pq.md" 2>&1 || status=1
head -30 "$OUT/bench_pq.md"
fi

step "done: status $status"
exit $status
