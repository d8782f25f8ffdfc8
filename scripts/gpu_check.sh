#!/usr/bin/env bash
# The GPU check, as two commands for a lent GPU machine (preinstalled torch >= 2.11, triton >= 3.6,
# no network; 15 minutes of GPU time with the machine's start, 10 minutes per command):
#
#   bash scripts/gpu_check.sh check   correctness, ~8 min: environment; build for the native arch
#                                     with all cores; every GPU test (pytest -m cuda, in parallel,
#                                     a per-test timeout, junit); compute-sanitizer memcheck over
#                                     one small call of every CUDA and Triton kernel
#                                     -> $OUT/check-summary.md, $OUT/check-results.tar.gz
#   bash scripts/gpu_check.sh bench   the headline benchmark tier, ~4 min, on the same machine
#                                     after "check" (reuses its build, Triton and Inductor caches)
#                                     -> $OUT/bench-summary.md, $OUT/bench-results.tar.gz
#   ... --dry-run (or DRY_RUN=1)      the same stages on CPU: Triton's interpreter, tiny shapes,
#                                     no sanitizer (the sample runs interpreted instead), build
#                                     skipped when already built (make gpu-check-dry; CI)
#
# Every stage runs under `timeout` with its own cap, bounded by what is left of the command's
# budget (CHECK_BUDGET_S, BENCH_BUDGET_S) after the minimum the later stages need; its time is
# printed, and the summary and the tarball are rewritten as each stage ends, so a command cut
# short still returns what finished. Caches live in ignored build folders (build/triton-cache,
# build/inductor-cache), which survive between the two commands on the same machine.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

MODE=""
DRY=${DRY_RUN:-0}
for arg in "$@"; do
  case "$arg" in
    check|bench) MODE=$arg ;;
    --dry-run) DRY=1 ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "usage: bash scripts/gpu_check.sh check|bench [--dry-run]" >&2; exit 2 ;;
  esac
done
[[ -n "$MODE" ]] || { echo "usage: bash scripts/gpu_check.sh check|bench [--dry-run]" >&2; exit 2; }
[[ "$DRY" == 1 ]] || DRY=0

if [[ -z "${PYTHON:-}" ]]; then
  if [[ "$DRY" == 1 && -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
PY=$PYTHON
OUT=${OUT:-$ROOT/build/gpu-check/out}
WORK=$ROOT/build/gpu-check/$MODE
NPROC=$(nproc 2>/dev/null || echo 2)
rm -rf "$WORK" && mkdir -p "$WORK" "$OUT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
export TRITON_CACHE_DIR=$ROOT/build/triton-cache TORCHINDUCTOR_CACHE_DIR=$ROOT/build/inductor-cache
export MAX_JOBS=${MAX_JOBS:-$NPROC}
if [[ "$DRY" == 1 ]]; then
  export TRITON_INTERPRET=1 CUDA_VISIBLE_DEVICES=""
fi

if [[ "$MODE" == check ]]; then BUDGET=${CHECK_BUDGET_S:-470}; else BUDGET=${BENCH_BUDGET_S:-235}; fi
T0=$(date +%s)
DEADLINE=$(( T0 + BUDGET ))
printf "stage\tstatus\tseconds\tcap\tnote\n" > "$WORK/stages.tsv"
echo "== gpu_check $MODE$([[ $DRY == 1 ]] && echo ' (dry run: CPU, Triton interpreter)'), budget ${BUDGET} s, python $PY, $NPROC cores"

# cap MAX RESERVE: a stage's time limit, at most MAX, leaving RESERVE seconds of the budget to the
# stages after it; 0 when less than 10 s are left.
cap() {
  local left=$(( DEADLINE - $(date +%s) - $2 ))
  (( left > $1 )) && left=$1
  (( left < 10 )) && left=0
  echo "$left"
}
STAGE_START=0
begin() { STAGE_START=$(date +%s); echo "== $1 (cap $2 s, $(date +%T))"; }
# end NAME RC CAP NOTE: record the stage, rewrite the summary and the tarball.
end() {
  local name=$1 rc=$2 limit=$3 note=${4:-} secs=$(( $(date +%s) - STAGE_START )) status
  case "$rc" in
    0) status=ok ;;
    124|137|130) status=TIMEOUT ;;
    skip) status=skipped ;;
    reused|unsupported|warn) status=$rc ;;
    *) status="FAILED (exit $rc)" ;;
  esac
  printf "%s\t%s\t%s\t%s\t%s\n" "$name" "$status" "$secs" "$limit" "$note" >> "$WORK/stages.tsv"
  echo "== $name: $status in ${secs} s (cap ${limit} s)${note:+ - $note}"
  pack
}
pack() {
  "$PY" scripts/gpu_check_report.py "$MODE" "$WORK" "$OUT/$MODE-summary.md" $([[ $DRY == 1 ]] && echo --dry-run) \
    > /dev/null 2> "$WORK/report.err" || cat "$WORK/report.err"
  cp "$OUT/$MODE-summary.md" "$WORK/summary.md" 2> /dev/null
  for f in "$WORK"/*.log "$WORK"/*/*.log; do  # keep the tarball far below the 16 MiB limit
    [[ -f "$f" ]] && (( $(stat -c %s "$f") > 4000000 )) && { tail -c 4000000 "$f" > "$f.tail"; mv "$f.tail" "$f"; }
  done
  tar -czf "$OUT/$MODE-results.tar.gz.tmp" -C "$(dirname "$WORK")" "$MODE" && \
    mv "$OUT/$MODE-results.tar.gz.tmp" "$OUT/$MODE-results.tar.gz"
}

# ---------------------------------------------------------------------------------------------
stage_env() {
  local c; c=$(cap 30 0); begin environment "$c"
  {
    echo "date: $(date -Is)"; echo "git: $(git describe --always --dirty 2>/dev/null || echo '?')"
    echo "cores: $NPROC"; free -g 2>/dev/null | sed -n 2p | awk '{print "memory: " $2 " GiB"}'
    df -h . 2>/dev/null | awk 'NR==2 {print "disk free: " $4}'
    if command -v nvidia-smi > /dev/null; then
      nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader \
        | sed 's/^/gpu: /'
    else
      echo "gpu: none (nvidia-smi not found)"
    fi
    timeout "$c" "$PY" - <<'EOF'
import importlib.metadata as md, platform, sys
import torch
print("python:", platform.python_version(), sys.executable)
print("torch:", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"device: {p.name}, sm_{p.major}{p.minor}, {p.multi_processor_count} SMs, "
          f"{p.total_memory / 2**30:.0f} GiB, {torch.cuda.device_count()} visible")
for name in ("triton", "numpy", "pytest", "pytest-xdist", "pytest-timeout", "hypothesis", "ninja"):
    try:
        print(f"{name}: {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"{name}: MISSING")
EOF
    local nvcc; nvcc=$(command -v nvcc || ls "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" 2>/dev/null)
    echo "nvcc: ${nvcc:-not found} $([[ -n "$nvcc" ]] && "$nvcc" --version | grep -o 'release [0-9.]*')"
    echo "compute-sanitizer: $(sanitizer_bin || echo 'not found') $(s=$(sanitizer_bin) && "$s" --version 2>/dev/null | grep -o 'Version [0-9.]*' | head -1)"
  } > "$WORK/env.txt" 2>&1
  local rc=0
  grep -q "^torch: " "$WORK/env.txt" || rc=1
  sed 's/^/   /' "$WORK/env.txt"
  end environment $rc "$c"
  return $rc
}

sanitizer_bin() {
  command -v compute-sanitizer 2>/dev/null && return 0
  local d
  for d in "${CUDA_HOME:-}" /usr/local/cuda; do
    [[ -n "$d" && -x "$d/bin/compute-sanitizer" ]] && { echo "$d/bin/compute-sanitizer"; return 0; }
  done
  return 1
}

built() {  # the extension loads (with its CUDA kernels, on the GPU machine); its build info
  "$PY" -c "import pydense, sys; i = pydense.build_info()
print('cuda', i.get('cuda'), 'archs', i.get('cuda_archs') or '-', 'torch', i.get('torch'))
sys.exit(0 if pydense.extension_available() and (i.get('cuda') or '$DRY' == '1') else 1)" 2> /dev/null
}

# stage_build MAX RESERVE REUSE
stage_build() {
  local c; c=$(cap "$1" "$2"); begin build "$c"
  if [[ "$3" == reuse || "$DRY" == 1 ]] && built > "$WORK/build_info.txt"; then
    end build reused "$c" "extension already built: $(cat "$WORK/build_info.txt")"
    return 0
  fi
  if (( c == 0 )); then end build skip 0 "no time left"; return 1; fi
  local arch="" rc
  if [[ "$DRY" == 0 ]]; then  # the native arch only
    arch=$("$PY" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())" 2>/dev/null)
  fi
  # In place, against the preinstalled torch (no pip: nothing is installed, PYTHONPATH finds the
  # checkout); ninja's objects stay in build/temp.*, so a second check rebuilds incrementally.
  TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-$arch} MAX_JOBS=$MAX_JOBS \
    timeout -k 10 "$c" "$PY" setup.py build_ext --inplace > "$WORK/build.log" 2>&1
  rc=$?
  "$PY" scripts/ptxas_summary.py "$WORK/build.log" > "$WORK/ptxas.txt" 2>&1
  cp "$WORK/ptxas.txt" "$ROOT/build/ptxas.txt" 2> /dev/null
  if (( rc == 0 )) && ! built > "$WORK/build_info.txt"; then rc=1; fi
  (( rc == 0 )) || tail -n 40 "$WORK/build.log"
  end build $rc "$c" "$(cat "$WORK/build_info.txt"), MAX_JOBS=$MAX_JOBS; $(head -1 "$WORK/ptxas.txt" 2>/dev/null)"
  return $rc
}

# The headline tier's compile-only warm-up in N processes (Inductor and Triton caches).
warm_cmd() {  # warm_cmd K N
  local extra=()
  [[ "$DRY" == 1 ]] && extra=(--quick --device cpu --compile-backend aot_eager --ops pixel_shuffle,conv2d)
  echo "$PY" -m benchmarks.headline --warm --part "$1/$2" "${extra[@]}"
}

stage_tests() {
  local c; c=$(cap "$1" "$2"); begin "tests (GPU: -m cuda)" "$c"
  if (( c == 0 )); then end tests skip 0 "no time left"; return 1; fi
  local workers=$(( NPROC > 3 ? NPROC - 2 : 2 )) per_test=${PER_TEST_TIMEOUT_S:-180} rc flags=()
  [[ "$DRY" == 1 ]] && per_test=60
  # pytest-xdist and pytest-timeout are on the GPU machine; without them, run serially / untimed.
  if "$PY" -c "import xdist" 2> /dev/null; then flags+=(-n "$workers"); else workers=1; fi
  # the thread method: a test stuck in a CUDA call (where no signal handler runs) still ends; its
  # worker exits, xdist reports the test as failed and starts another worker
  if "$PY" -c "import pytest_timeout" 2> /dev/null; then
    flags+=(--timeout="$per_test" --timeout-method=thread)
  else
    per_test=none
  fi
  # SIGINT first: pytest then stops, writes the junit file and its summary; KILL 20 s later.
  timeout -s INT -k 20 "$c" "$PY" -m pytest -m cuda "${flags[@]}" \
    -p no:cacheprovider --continue-on-collection-errors --tb=short -rfE --durations=15 \
    --junitxml="$WORK/junit.xml" > "$WORK/tests.log" 2>&1
  rc=$?
  grep -E "^(FAILED|ERROR) " "$WORK/tests.log" | head -20
  tail -n 3 "$WORK/tests.log"
  local items; items=$(grep -oE "workers \[[0-9]+ items\]|[0-9]+ selected" "$WORK/tests.log" | grep -oE "[0-9]+" | head -1)
  end tests $rc "$c" "$workers workers, --timeout=$per_test, ${items:-?} tests selected by -m cuda"
  return $rc
}

stage_sanitizer() {
  local c; c=$(cap "$1" "$2"); begin "compute-sanitizer (memcheck)" "$c"
  if (( c == 0 )); then end sanitizer skip 0 "no time left"; return 1; fi
  local dir=$WORK/sanitizer parts k rc=0 note san f
  mkdir -p "$dir"
  local pids=()
  if [[ "$DRY" == 1 ]]; then
    parts=2
    echo "   dry run: no sanitizer; the sample runs on CPU (Triton interpreter, fp32, channels_last)"
    for k in $(seq 1 $parts); do
      timeout -k 10 "$c" "$PY" scripts/sanitizer_sample.py --device cpu --dtypes fp32 \
        --layouts channels_last --part "$k/$parts" --record "$dir/part-$k.json" > "$dir/part-$k.log" 2>&1 &
      pids+=($!)
    done
    wait "${pids[@]}"
    note="dry run: sanitizer skipped, sample interpreted on CPU"
  elif ! san=$(sanitizer_bin); then
    note="compute-sanitizer not found: plain run of the sample instead"
    rc=unsupported
  else
    parts=${SANITIZER_PARTS:-$(( NPROC >= 16 ? 8 : (NPROC > 2 ? NPROC / 2 : 1) ))}
    for k in $(seq 1 "$parts"); do
      PYTORCH_NO_CUDA_MEMORY_CACHING=1 timeout -k 10 "$c" "$san" --tool memcheck --error-exitcode 3 \
        --print-limit 50 "$PY" scripts/sanitizer_sample.py --dtypes fp32,bf16 --part "$k/$parts" \
        --record "$dir/part-$k.json" > "$dir/part-$k.log" 2>&1 &
      pids+=($!)
    done
    wait "${pids[@]}"
    # the sanitizer's own lines start with "=========" (gVisor: "Device not supported")
    if grep -qiE "^=+ .*(not supported|unsupported)" "$dir"/part-*.log; then
      note="compute-sanitizer not supported here ($(grep -hiE -m1 '^=+ .*(not supported|unsupported)' "$dir"/part-*.log | head -1 | cut -c1-120)): plain run instead"
      rc=unsupported
    else
      note="$parts parts, fp32 + bf16, both layouts, PYTORCH_NO_CUDA_MEMORY_CACHING=1"
    fi
  fi
  if [[ "$rc" == unsupported ]]; then  # still run every kernel once, and record the CUDA ones
    rm -f "$dir"/part-*.json
    for f in "$dir"/part-*.log; do [[ -f "$f" ]] && mv "$f" "${f/part-/unsupported-}"; done
    c=$(cap "$1" "$2")
    timeout -k 10 "$c" "$PY" scripts/sanitizer_sample.py --dtypes fp32,bf16 --cuda-coverage \
      --record "$dir/part-1.json" > "$dir/plain.log" 2>&1 || note="$note; the plain run FAILED (exit $?)"
  fi
  local ptxas=$WORK/../check/ptxas.txt
  [[ -f "$ptxas" ]] || ptxas=$ROOT/build/ptxas.txt
  "$PY" scripts/sanitizer_sample.py --merge "$dir"/part-*.json --ptxas "$ptxas" > "$dir/coverage.txt" 2>&1
  local cov=$?
  cat "$dir/coverage.txt"
  grep -h "ERROR SUMMARY" "$dir"/part-*.log 2>/dev/null | sort | uniq -c
  local failed_parts=0
  for f in "$dir"/part-*.log; do
    [[ -f "$f" ]] || continue
    if ! grep -q "units done" "$f" || grep -qE "ERROR SUMMARY: [1-9]" "$f"; then
      failed_parts=$(( failed_parts + 1 ))
    fi
  done
  if (( failed_parts > 0 )); then
    note="$note; $failed_parts part(s) with errors or unfinished"
    [[ "$rc" == 0 ]] && rc=1
  fi
  if (( cov != 0 )); then  # a kernel the sample never launched: extend the sample
    note="$note; coverage gap"
    rc=5
  fi
  end sanitizer "$rc" "$c" "$note"
  [[ "$rc" == 0 || "$rc" == unsupported ]]
}

stage_warm() {  # in the bench command: finish the warm-up in parallel before the timed run
  local c; c=$(cap "$1" "$2"); begin "warm caches (compile only)" "$c"
  if (( c == 0 )); then end warm skip 0 "no time left"; return 0; fi
  local done_logs; done_logs=$(grep -l "^warm part" "$ROOT"/build/gpu-check/check/warm-*.log 2>/dev/null | wc -l)
  if [[ "$DRY" == 0 ]] && (( done_logs > 0 )) \
      && (( done_logs == $(ls "$ROOT"/build/gpu-check/check/warm-*.log | wc -l) )); then
    end warm reused "$c" "the check command's warm-up finished on this machine"
    return 0
  fi
  local parts=$(( NPROC >= 16 ? 8 : (NPROC > 2 ? NPROC / 2 : 2) )) k rc=0 pids=() p
  for k in $(seq 1 $parts); do
    TORCHINDUCTOR_COMPILE_THREADS=2 OMP_NUM_THREADS=2 timeout -k 10 "$c" $(warm_cmd "$k" "$parts") > "$WORK/warm-$k.log" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || rc=$?; done
  end warm $([[ $rc == 0 ]] && echo 0 || echo warn) "$c" "$parts processes (the timed run compiles what is missing)"
}

stage_headline() {
  local c; c=$(cap "$1" "$2"); begin "headline benchmarks" "$c"
  if (( c == 0 )); then end headline skip 0 "no time left"; return 1; fi
  local budget=$(( c > 80 ? c - 45 : c / 2 )) extra=() rc
  [[ "$DRY" == 1 ]] && extra=(--quick --smoke --device cpu --compile-backend aot_eager)
  timeout -s INT -k 10 "$c" "$PY" -m benchmarks.headline --out "$WORK/results" --budget-s "$budget" -v \
    "${extra[@]}" > "$WORK/headline.log" 2>&1
  rc=$?
  grep -E ": [0-9.]+ s$" "$WORK/headline.log" | tail -n 40 | sed 's/^/   /'
  # What backend="auto" would pick from these results (shown, not written: tune --print).
  "$PY" -m benchmarks.tune "$WORK/results" --print > "$WORK/tuned.py" 2> "$WORK/tune.log" \
    || { tail -n 1 "$WORK/tune.log" > "$WORK/tune.err"; mv "$WORK/tune.err" "$WORK/tune.log"; rm -f "$WORK/tuned.py"; }
  end headline $rc "$c" "--budget-s $budget"
  return $rc
}

# ---------------------------------------------------------------------------------------------
status=0
if [[ "$MODE" == check ]]; then
  stage_env || status=1
  # The headline tier's compile warm-up runs beside the build (nvcc leaves most cores idle after
  # its first wave), for the bench command; it imports pydense before the extension exists and
  # only compiles Triton kernels and torch.compile graphs. GPU_CHECK_WARM=0 turns it off.
  WARM_PIDS=()
  if [[ "${GPU_CHECK_WARM:-1}" == 1 ]]; then
    nwarm=$([[ "$DRY" == 1 ]] && echo 1 || echo 4)
    for k in $(seq 1 "$nwarm"); do
      TORCHINDUCTOR_COMPILE_THREADS=2 OMP_NUM_THREADS=2 timeout -k 10 300 $(warm_cmd "$k" "$nwarm") > "$WORK/warm-$k.log" 2>&1 &
      WARM_PIDS+=($!)
    done
  fi
  # reserves: the tests need >= 150 s, the sanitizer >= 45 s, packing 10 s
  stage_build 240 205 build || status=1
  if (( status == 0 )); then
    stage_tests 300 55 || status=1
    stage_sanitizer 150 10 || status=1
  else
    echo "build failed: tests and sanitizer skipped"
  fi
  if (( ${#WARM_PIDS[@]} )); then
    STAGE_START=$(date +%s); wrc=0
    for p in "${WARM_PIDS[@]}"; do wait "$p" || wrc=$?; done
    end "warm (beside the build)" $([[ $wrc == 0 ]] && echo 0 || echo warn) 300 "headline compile warm-up, ${#WARM_PIDS[@]} processes"
  fi
else
  stage_env || status=1
  stage_build 240 120 reuse || status=1
  if (( status == 0 )); then
    stage_warm 75 130
    stage_headline 210 5 || status=1
  fi
fi
STAGE_START=$T0
echo "== gpu_check $MODE done in $(( $(date +%s) - T0 )) s: status $status; $OUT/$MODE-summary.md, $OUT/$MODE-results.tar.gz"
pack
sed -n '1,12p' "$OUT/$MODE-summary.md"
exit $status
