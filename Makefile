# pydense: every command sets itself up (venv, pinned torch, build) on a fresh machine.
#   make test    build, then run the test suite (the command CI runs)
#   make bench   build, then run the benchmark suite (results under benchmarks/results/)
#   make test-triton36   the Triton tests (interpreter and AOT compile) under triton 3.6.0
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.14.1
TORCHVISION_VERSION ?= 0.29.1
# segmentation-models-pytorch (and timm, which it pulls): the models people already run, which
# the patching tests and benchmarks.clients use
SMP_VERSION ?= 0.6.0
TORCHMETRICS_VERSION ?= 1.9.0
SKIMAGE_VERSION ?= 0.26.0
export MAX_JOBS ?= 2

.PHONY: all venv build test bench bench-quick bench-clients gpu-check gpu-check-dry wheel check-torch clean
all: test

$(VENV)/.deps-stamp:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch==$(TORCH_VERSION)" "torchvision==$(TORCHVISION_VERSION)" \
		setuptools wheel ninja pytest pytest-benchmark pytest-xdist pytest-timeout hypothesis numpy \
		expecttest pillow tqdm "segmentation-models-pytorch==$(SMP_VERSION)" \
		"torchmetrics==$(TORCHMETRICS_VERSION)" "scikit-image==$(SKIMAGE_VERSION)"
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
	$(PY) -m pytest -ra --ignore=tests/test_properties.py

# The property-based hardening suite (tests/test_properties.py): every public op on the cpu, triton
# (interpreter), torch and auto backends against torch, on random strides for every tensor argument,
# zero-size dimensions and NaN/Inf; seeded, the same cases every run (~4-5 min on 2 cores); it
# prints the examples run per op and writes them to build/property-stats.json.
# test-properties-full: PROPERTY_EXAMPLES times as many examples (default 10), new random cases.
# test-asan: the C++ CPU kernels built with -fsanitize=address in build/asan/ and the property
# suite and the cpu-backend op tests run against them (scripts/asan_check.sh; any ASan report
# fails); test-asan-selftest: the same on a copy with an injected out-of-bounds read, which must fail.
.PHONY: test-properties test-properties-full test-asan test-asan-selftest
test-properties: build
	$(PY) -m pytest -q -ra -p no:cacheprovider tests/test_properties.py

test-properties-full: build
	PYDENSE_PROPERTY_EXAMPLES=$(or $(PROPERTY_EXAMPLES),10) PYDENSE_PROPERTY_RANDOM=1 \
		$(PY) -m pytest -q -ra -p no:cacheprovider tests/test_properties.py

test-asan: $(VENV)/.deps-stamp
	PYTHON=$(PY) bash scripts/asan_check.sh

test-asan-selftest: $(VENV)/.deps-stamp
	PYTHON=$(PY) bash scripts/asan_check.sh --self-test

# The GPU machine's triton (3.6.0), proven on CPU: .venv-triton36 holds only triton 3.6.0 and
# numpy<2.4 (3.6's interpreter fails with numpy >= 2.4 on runtime loop bounds) and a .pth file that
# appends .venv's site-packages (torch and everything else are .venv's). Two parts, independent
# (make -j2 -O test-triton36 runs them side by side, as CI does):
#   test-triton36-interpret  the interpreter tests of every Triton kernel: every test with "triton"
#                            in its id except the GPU ones (~1060 tests; 7-9 min on 2 shared cores)
#   test-triton36-aot        the AOT compile of every shipped Triton config for sm_80 and sm_90
#                            (tests/test_aot.py; 6-7 min)
TRITON36_VENV := .venv-triton36
TRITON36_PY := $(TRITON36_VENV)/bin/python
PURELIB := import sysconfig; print(sysconfig.get_paths()["purelib"])

$(TRITON36_VENV)/.stamp: $(VENV)/.deps-stamp
	rm -rf $(TRITON36_VENV)
	$(PYTHON) -m venv $(TRITON36_VENV)
	$(PY) -c '$(PURELIB)' > "$$($(TRITON36_PY) -c '$(PURELIB)')/_pydense_main_venv.pth"
	$(TRITON36_PY) -m pip install -q --no-deps "triton==3.6.0" "numpy<2.4"
	$(TRITON36_PY) -c 'import numpy, torch, triton; assert triton.__version__ == "3.6.0", triton.__file__; \
		print("triton", triton.__version__, "numpy", numpy.__version__, "torch", torch.__version__)'
	touch $@

.PHONY: test-triton36 test-triton36-interpret test-triton36-aot
test-triton36: test-triton36-interpret test-triton36-aot

test-triton36-interpret: build $(TRITON36_VENV)/.stamp
	$(TRITON36_PY) -m pytest -q -ra -p no:cacheprovider -m "not aot" -k "triton and not cuda" \
		--ignore=tests/test_properties.py -W "ignore:Conversion of an array with ndim:DeprecationWarning"

test-triton36-aot: build $(TRITON36_VENV)/.stamp
	$(TRITON36_PY) -m pytest -q -ra -p no:cacheprovider -m aot

bench: build
	$(PY) -m benchmarks

bench-quick: build
	$(PY) -m benchmarks --quick --out build/bench
	$(PY) -m benchmarks.clients --quick --out build/bench
	$(PY) -m benchmarks.models --ddp --quick --models edsr_baseline_x4 --device cpu --out build/bench

# The models people already have (segmentation-models-pytorch, torchvision), stock vs pydense:
# CPU results under benchmarks/results/cpu-x86_64/clients.csv (about 11 min on 2 cores)
bench-clients: build
	$(PY) -m benchmarks.clients

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
