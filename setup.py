"""Build pydense: the Python package, the Triton kernels (kernels/ -> pydense.kernels) and the
compiled extension pydense._C (csrc/: C++ CPU kernels, plus CUDA kernels when nvcc is found).

Environment:
  PYDENSE_CUDA=0          build the CPU kernels only (default: CUDA too when nvcc is found)
  CUDA_HOME               the CUDA toolkit root (default: found from nvcc, else /usr/local/cuda)
  TORCH_CUDA_ARCH_LIST    CUDA architectures (default: the visible GPU's, else "8.0;9.0")
  MAX_JOBS                parallel compile jobs (ninja)
"""
import glob
import os
import shutil
import sys

import setuptools
from setuptools import setup

# pyproject.toml's license is an SPDX string, which older setuptools reject with a schema error;
# without build isolation the environment's own setuptools builds, so say what is needed.
if int(setuptools.__version__.split(".")[0]) < 77:
    sys.exit(f"pydense needs setuptools >= 77 to build (found {setuptools.__version__}): "
             "pip install 'setuptools>=77'")

ROOT = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ARCHS = "8.0;9.0"


def _is_cuda_root(path):
    return bool(path) and os.path.isfile(os.path.join(path, "bin", "nvcc")) and os.path.isfile(
        os.path.join(path, "include", "cuda_runtime.h"))


def _find_cuda_home():
    """CUDA_HOME if set; else the toolkit owning the nvcc on PATH; else /usr/local/cuda.

    An nvcc on PATH may be a wrapper script outside the toolkit; a root counts only if it has both
    bin/nvcc and include/cuda_runtime.h.
    """
    env = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if env:
        return env if _is_cuda_root(env) else None
    nvcc = shutil.which("nvcc")
    candidates = []
    if nvcc:
        candidates += [os.path.dirname(os.path.dirname(os.path.realpath(nvcc))),
                       os.path.dirname(os.path.dirname(nvcc))]
    candidates.append("/usr/local/cuda")
    return next((c for c in candidates if _is_cuda_root(c)), None)


WANT_CUDA = os.environ.get("PYDENSE_CUDA", "1") != "0"
CUDA_HOME = _find_cuda_home() if WANT_CUDA else None
if CUDA_HOME:
    os.environ["CUDA_HOME"] = CUDA_HOME  # before torch.utils.cpp_extension reads it

import torch  # noqa: E402
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402

WITH_CUDA = CUDA_HOME is not None
if WITH_CUDA and not os.environ.get("TORCH_CUDA_ARCH_LIST"):
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        os.environ["TORCH_CUDA_ARCH_LIST"] = f"{major}.{minor}"
    else:
        os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_ARCHS
ARCHS = os.environ.get("TORCH_CUDA_ARCH_LIST", "") if WITH_CUDA else ""

sources = ["csrc/ops.cpp"] + sorted(glob.glob("csrc/cpu/*.cpp"))
if WITH_CUDA:
    sources += sorted(glob.glob("csrc/cuda/*.cu"))

# -fopenmp: ATen's at::parallel_for is an inline OpenMP loop in torch's (OpenMP) builds; without
# the flag the CPU kernels would run on one thread.
cxx_flags = ["-O3", "-std=c++20", "-fopenmp"]
nvcc_flags = ["-O3", "-std=c++20", "-Xptxas", "-v", "-lineinfo"]
Extension = CUDAExtension if WITH_CUDA else CppExtension
ext_kwargs = {"extra_compile_args": {"cxx": cxx_flags, "nvcc": nvcc_flags} if WITH_CUDA else cxx_flags,
              "extra_link_args": ["-fopenmp"]}

BUILD_INFO = {
    "cuda": WITH_CUDA,
    "cuda_home": bool(CUDA_HOME),
    "cuda_archs": ARCHS,
    "torch": torch.__version__,
    "torch_cuda": torch.version.cuda,
    "sources": sources,
}

print("pydense build configuration:", file=sys.stderr)
print(f"  CUDA kernels: {'yes' if WITH_CUDA else 'no'}"
      f"{'' if WITH_CUDA else ' (PYDENSE_CUDA=0)' if not WANT_CUDA else ' (no CUDA toolkit found)'}",
      file=sys.stderr)
print(f"  CUDA_HOME: {CUDA_HOME}", file=sys.stderr)
print(f"  TORCH_CUDA_ARCH_LIST: {ARCHS or '-'}", file=sys.stderr)
print(f"  torch {torch.__version__} (CUDA {torch.version.cuda}); MAX_JOBS={os.environ.get('MAX_JOBS', '-')}",
      file=sys.stderr)
print(f"  sources: {' '.join(sources)}", file=sys.stderr)


class BuildExt(BuildExtension.with_options(use_ninja=True)):
    """build_ext that writes pydense/_build_info.py beside the extension it built: into the build
    folder for a wheel, into the source tree for an in-place or editable build. (Writing it into
    the source tree for a wheel would overwrite the info of the checkout's own build.) pydense
    compares its "torch" entry with the running torch at import (pydense/_backend.py)."""

    def run(self):
        super().run()
        package = os.path.join(ROOT if self.inplace else self.build_lib, "pydense")
        os.makedirs(package, exist_ok=True)
        with open(os.path.join(package, "_build_info.py"), "w") as f:
            f.write("# Written by setup.py at build time.\nBUILD_INFO = " + repr(BUILD_INFO) + "\n")


setup(
    packages=["pydense", "pydense.ops", "pydense.nn", "pydense.models", "pydense.metrics",
              "pydense.kernels", "pydense.kernels.conv"],
    package_dir={"pydense.kernels": "kernels"},
    ext_modules=[Extension("pydense._C", sources, include_dirs=[os.path.join(ROOT, "csrc")],
                           **ext_kwargs)],
    cmdclass={"build_ext": BuildExt},
)
