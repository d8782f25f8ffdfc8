# pydense: every command sets itself up (venv, pinned torch, build) on a fresh machine.
#   make test    build, then run the test suite (the command CI runs)
#   make bench   build, then run the benchmark suite (results under benchmarks/results/)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.14.1
TORCHVISION_VERSION ?= 0.29.1
export MAX_JOBS ?= 2

.PHONY: all venv build test bench bench-quick gpu-check gpu-check-dry wheel check-torch clean
all: test

$(VENV)/.deps-stamp:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch==$(TORCH_VERSION)" "torchvision==$(TORCHVISION_VERSION)" \
		setuptools wheel ninja pytest pytest-benchmark pytest-xdist pytest-timeout hypothesis numpy \
		expecttest pillow
	touch $@

venv: $(VENV)/.deps-stamp

SOURCES := setup.py $(shell find csrc -name '*.cpp' -o -name '*.cu' -o -name '*.h')

# Editable install: compiles pydense._C (CPU kernels, and CUDA kernels for TORCH_CUDA_ARCH_LIST,
# default 8.0;9.0 without a GPU). The full log, with ptxas -v resource lines, is kept in build/.
build/.built: $(VENV)/.deps-stamp $(SOURCES)
	@mkdir -p build
	$(PY) -m pip install --no-build-isolation --no-deps -v -e . > build/build.log 2>&1 \
		|| { tail -n 80 build/build.log; exit 1; }
	@grep -A5 "pydense build configuration" build/build.log | sed 's/^ *//' | head -6
	@$(PY) scripts/ptxas_summary.py build/build.log | tee build/ptxas.txt
	@touch $@

build: build/.built

test: build
	$(PY) -m pytest -ra

bench: build
	$(PY) -m benchmarks

bench-quick: build
	$(PY) -m benchmarks --quick --out build/bench

# The GPU check (scripts/gpu_check.sh): on a GPU machine with a preinstalled torch, its two
# commands, correctness then the headline benchmarks (results under $OUT, default
# build/gpu-check/out); gpu-check-dry runs both on CPU (Triton's interpreter, tiny shapes, no
# sanitizer), as CI does, so that a broken stage never costs GPU time.
gpu-check:
	bash scripts/gpu_check.sh check; c=$$?; bash scripts/gpu_check.sh bench && exit $$c

gpu-check-dry: build
	PYTHON=$(PY) bash scripts/gpu_check.sh check --dry-run
	PYTHON=$(PY) bash scripts/gpu_check.sh bench --dry-run

# Install as users do: a wheel built without build isolation (against .venv's torch) into dist/,
# installed into a scratch folder and imported from there (scripts/check_wheel.sh). CPU kernels
# only unless PYDENSE_CUDA=1 (default here 0: the quick check).
wheel: $(VENV)/.deps-stamp
	PYDENSE_CUDA=$(or $(PYDENSE_CUDA),0) PYTHON=$(PY) bash scripts/check_wheel.sh

# pydense against another torch (default 2.11.0, the oldest supported) in its own venv
# .venv-torch-<version>: build (CPU kernels; CHECK_TORCH_CUDA=1 adds sm_90), op registration,
# smoke tests (scripts/check_torch.sh).
CHECK_TORCH ?= 2.11.0
check-torch:
	bash scripts/check_torch.sh $(CHECK_TORCH)

clean:
	rm -rf build *.egg-info pydense/_C*.so pydense/_build_info.py
