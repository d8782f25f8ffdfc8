#!/usr/bin/env bash
# Build and check pydense against another torch than .venv's: by default 2.11.0, the oldest
# supported one (the GPU machine's). Each step is timed:
#   venv   .venv-torch-<version> (kept between runs): that torch from the package registry, with the
#          triton and nvidia runtime packages it pulls (~4.7 GB), and the build and test tools
#   build  a copy of the working tree under build/torch-<version>/ (the checkout's own
#          pydense/_C*.so stays as it is), installed editable into that venv with
#          --no-build-isolation: CPU kernels only, or also the CUDA kernels for sm_90 with
#          CHECK_TORCH_CUDA=1 (slow on 2 cores)
#   ops    scripts/check_install.py: every module imports, every op of the source is registered
#   smoke  tests/test_package.py and tests/test_pixel_shuffle.py (C++ CPU kernels, Triton interpreter)
#
#   bash scripts/check_torch.sh [TORCH_VERSION]        (or: make check-torch [CHECK_TORCH=2.11.0])
set -euo pipefail
cd "$(dirname "$0")/.."
V="${1:-2.11.0}"
VENV=".venv-torch-$V"
PY="$VENV/bin/python"
WORK="build/torch-$V"
mkdir -p "$WORK"
times=()
step() { echo "== $1 ($(date +%T))"; T0=$(date +%s); }
done_step() { local t=$(( $(date +%s) - T0 )); times+=("$1 ${t}s"); echo "   $1: ${t}s"; }

step "venv $VENV (torch==$V)"
if [ ! -x "$PY" ]; then
  python3 -m venv "$VENV"
  "$PY" -m pip install -q --upgrade pip
fi
# One resolve, so that torch's own pins hold (2.11: setuptools<82); a quick no-op once installed.
# setuptools>=77: pyproject's SPDX license (a venv's bundled setuptools may be older).
# numpy<2.4: triton 3.6's interpreter fails with numpy >= 2.4 on kernels with runtime loops.
"$PY" -m pip install -q "torch==$V" "setuptools>=77" wheel ninja pytest hypothesis expecttest \
  "numpy<2.4" pillow 2>&1 | { grep -v "^WARNING: Location" || true; }
"$PY" -c "import torch, triton, setuptools; print('torch', torch.__version__, 'CUDA', torch.version.cuda, '| triton', triton.__version__, '| setuptools', setuptools.__version__)"
done_step venv

step "build against torch $V"
rm -rf "$WORK/src"
mkdir -p "$WORK/src"
git ls-files -z -co --exclude-standard | python3 -c '
import os, shutil, sys
dst = sys.argv[1]
for f in sys.stdin.read().split("\0"):
    if f and os.path.isfile(f) and not f.startswith(("pydense/_C", "pydense/_build_info")):
        os.makedirs(os.path.join(dst, os.path.dirname(f)), exist_ok=True)
        shutil.copy2(f, os.path.join(dst, f))' "$WORK/src"
if [ "${CHECK_TORCH_CUDA:-0}" = 1 ]; then
  export PYDENSE_CUDA=1 TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
else
  export PYDENSE_CUDA=0
fi
export MAX_JOBS="${MAX_JOBS:-2}"
if ! (cd "$WORK/src" && "../../../$PY" -m pip install --no-build-isolation --no-deps -v -e . \
      > ../build.log 2>&1); then
  tail -n 60 "$WORK/build.log"; echo "BUILD FAILED (log: $WORK/build.log)"; exit 1
fi
grep -A5 "pydense build configuration" "$WORK/build.log" | sed 's/^ */   /' | head -6
done_step build

cd "$WORK/src"
PY="../../../$PY"
status=0
step "ops: import and registration under torch $V"
"$PY" scripts/check_install.py || status=1
done_step ops

step "smoke tests under torch $V"
"$PY" -m pytest -q -p no:cacheprovider tests/test_package.py tests/test_pixel_shuffle.py \
  tests/test_auto_cpu.py tests/test_fusion.py tests/test_explain.py tests/test_distributed.py \
  2>&1 | tail -n 15 || status=1
# DDP and FSDP2 (torch.distributed's APIs of that version) on two gloo processes
"$PY" -m pytest -q -p no:cacheprovider tests/test_distributed_training.py -k "edsr and eager and not bf16" \
  2>&1 | tail -n 15 || status=1
done_step smoke

echo "== torch $V: ${times[*]}; $([ $status = 0 ] && echo ok || echo FAILED)"
exit $status
