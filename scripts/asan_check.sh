#!/usr/bin/env bash
# AddressSanitizer stage: the extension's C++ CPU kernels built with -fsanitize=address in a copy
# of the working tree (build/asan/src; the checkout's own pydense/_C*.so is left as it is), then the
# property suite (tests/test_properties.py) and the cpu-backend op tests run against that build with
# libasan preloaded (python and torch are not instrumented; leak detection is off). Any ASan report
# -- an out-of-bounds read or write, a use after free, a wild pointer -- fails the stage, even when
# the access does not crash: ASan halts the process at the first report and the report is kept in
# build/asan/logs/.
#
#   bash scripts/asan_check.sh              (or: make test-asan)
#   bash scripts/asan_check.sh --self-test  build a copy with an injected out-of-bounds read (the
#                                           conv bias read as contiguous without the checks that
#                                           make it so) and check that the stage fails on it
#
# Environment: PYTHON (default .venv/bin/python), ASAN_PROPERTY_K and ASAN_OP_TESTS_K (pytest -k
# selections of the property suite and of the other test modules; an empty ASAN_OP_TESTS_K skips
# the op tests), PYDENSE_PROPERTY_EXAMPLES (the property suite's multiplier, default 1), MAX_JOBS.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[[ "$PY" == */* && "$PY" != /* ]] && PY="$ROOT/$PY"  # a relative path: the build runs elsewhere
SELF_TEST=0
[ "${1:-}" = "--self-test" ] && SELF_TEST=1
WORK="$ROOT/build/asan$([ $SELF_TEST = 1 ] && echo -selftest)"
LIBASAN=$(gcc -print-file-name=libasan.so)
if [ ! -e "$LIBASAN" ] || [ "$LIBASAN" = "libasan.so" ]; then
  echo "asan: gcc's libasan.so not found (apt-get install gcc, or libasan8)"; exit 1
fi
# libstdc++ preloaded too: python does not link it, and ASan's __cxa_throw interceptor needs it
# at start-up (else the first C++ exception, e.g. a TORCH_CHECK, aborts in asan_interceptors.cpp)
PRELOAD="$LIBASAN $(gcc -print-file-name=libstdc++.so)"
times=()
step() { echo "== $1 ($(date +%T))"; T0=$(date +%s); }
done_step() { local t=$(( $(date +%s) - T0 )); times+=("$1 ${t}s"); echo "   $1: ${t}s"; }

step "copy of the working tree -> ${WORK#$ROOT/}/src"
mkdir -p "$WORK/src"
# Sources are synced, not re-copied: unchanged files keep their times, so ninja rebuilds only what
# changed since the last run of the stage.
git ls-files -z -co --exclude-standard | "$PY" -c '
import filecmp, os, shutil, sys
dst = sys.argv[1]
keep = set()
for f in sys.stdin.read().split("\0"):
    if f and os.path.isfile(f) and not f.startswith(("pydense/_C", "pydense/_build_info")):
        keep.add(f)
        out = os.path.join(dst, f)
        if not (os.path.isfile(out) and filecmp.cmp(f, out, shallow=False)):
            os.makedirs(os.path.dirname(out), exist_ok=True)
            shutil.copy2(f, out)
for d, _, files in os.walk(os.path.join(dst, "tests")):  # stale test files would be collected
    for name in files:
        rel = os.path.relpath(os.path.join(d, name), dst)
        if rel.endswith(".py") and rel not in keep:
            os.remove(os.path.join(d, name))' "$WORK/src"
if [ $SELF_TEST = 1 ]; then
  # Inject a real out-of-bounds read: the conv kernels read bias[oc] as a contiguous vector; drop
  # the C++ check that rejects a strided bias and the Python copy that makes it contiguous, and
  # pass an expanded (stride 0, one element) bias: bias[1..OC-1] lie past its one-float storage.
  sed -i '/bias->is_contiguous()/,+1d' "$WORK/src/csrc/common/conv_checks.h"
  sed -i 's/^\(\s*\)bias = contiguous_vector(bias)/\1pass/' "$WORK/src/pydense/ops/conv.py"
  if grep -q "bias->is_contiguous" "$WORK/src/csrc/common/conv_checks.h"; then
    echo "asan self-test: could not remove the bias check"; exit 1
  fi
fi
done_step copy

step "build the CPU kernels with -fsanitize=address"
# distutils puts CFLAGS into the compile commands (torch's ninja build keeps them) and LDFLAGS into
# the link; setup.py's own flags (-O3 -fopenmp) follow.
if ! (cd "$WORK/src" && PYDENSE_CUDA=0 MAX_JOBS="${MAX_JOBS:-2}" \
      CFLAGS="-fsanitize=address -fno-omit-frame-pointer -g" \
      LDFLAGS="-fsanitize=address" \
      "$PY" setup.py build_ext --inplace > "$WORK/build.log" 2>&1); then
  tail -n 60 "$WORK/build.log"; echo "ASAN BUILD FAILED (log: ${WORK#$ROOT/}/build.log)"; exit 1
fi
SO=$(ls "$WORK"/src/pydense/_C*.so)
if ! readelf -d "$SO" | grep -q "libasan"; then
  echo "asan: $SO does not link libasan (flags not applied?)"; exit 1
fi
done_step build

step "tests under AddressSanitizer"
rm -rf "$WORK/logs"; mkdir -p "$WORK/logs"
# halt_on_error: the first report ends the process (exit code 99); log_path keeps the report;
# protect_shadow_gap=0 and detect_odr_violation=0: torch's CUDA libraries map memory where ASan's
# shadow gap would be and carry duplicate globals.
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:exitcode=99:abort_on_error=0:protect_shadow_gap=0:detect_odr_violation=0:alloc_dealloc_mismatch=0:allocator_may_return_null=1:log_path=$WORK/logs/asan:symbolize=1"
export PYDENSE_PROPERTY_TRACE="$WORK/logs/last-cases.txt"
export PYDENSE_PROPERTY_STATS="$WORK/property-stats.json"
: > "$PYDENSE_PROPERTY_TRACE"
# The property suite on the compiled backends (cpu, auto) and the op tests' cases on the cpu
# backend; Triton (interpreter) and torch run no compiled pydense code.
PROP_K="${ASAN_PROPERTY_K:-cpu-cpu or cpu-auto}"
OP_K="${ASAN_OP_TESTS_K-cpu-cpu or cpu-direct or cpu-auto}"
if [ $SELF_TEST = 1 ]; then
  PROP_K="test_convolution and conv2d- and cpu-cpu"
  OP_K=""
fi
status=0
run_tests() {  # run_tests ARGS...: pytest from the copy (its pydense and _C come first on sys.path)
  (cd "$WORK/src" && LD_PRELOAD="$PRELOAD" "$PY" -X faulthandler -m pytest -q -ra -p no:cacheprovider \
     "$@" 2>&1 | tail -n 40; exit "${PIPESTATUS[0]}")
}
(cd "$WORK/src" && LD_PRELOAD="$PRELOAD" "$PY" -c '
import os, pydense, pydense._backend as b
here = os.getcwd()
assert pydense.__file__.startswith(here), f"pydense imported from {pydense.__file__}, not {here}"
assert b._EXTENSION_PATH and b._EXTENSION_PATH.startswith(here), f"extension {b._EXTENSION_PATH}"
print("asan: pydense", pydense.__file__, "extension", os.path.basename(b._EXTENSION_PATH))') || exit 1
echo "-- property suite: -k '$PROP_K'"
run_tests tests/test_properties.py -k "$PROP_K" || status=$?
if [ -n "$OP_K" ]; then
  echo "-- op tests: -k '$OP_K'"
  run_tests tests --ignore=tests/test_properties.py --ignore=tests/test_aot.py \
    --ignore=tests/test_benchmarks.py -m "not aot" -k "$OP_K" || status=$?
fi
reports=$(ls "$WORK"/logs/asan.* 2>/dev/null || true)
done_step tests

if [ -n "$reports" ]; then
  echo "== AddressSanitizer reports:"
  for r in $reports; do echo "--- $r"; head -n 40 "$r"; done
  echo "last cases run (property suite): $(tail -n 1 "$PYDENSE_PROPERTY_TRACE" | cut -c1-400)"
  status=1
fi
echo "== asan: ${times[*]}; $([ $status = 0 ] && echo ok || echo FAILED)"
if [ $SELF_TEST = 1 ]; then
  # the injected out-of-bounds read must have been reported
  if [ -n "$reports" ] && grep -q "heap-buffer-overflow" $reports; then
    echo "asan self-test: ok (the injected out-of-bounds bias read was reported)"; exit 0
  fi
  echo "asan self-test: FAILED (no heap-buffer-overflow report for the injected out-of-bounds read)"
  exit 1
fi
exit $status
