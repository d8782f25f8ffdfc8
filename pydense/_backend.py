"""Backend discovery and selection shared by every op.

Backends (keyword-only ``backend=`` on every public op):

* ``"triton"`` — the Triton kernels in ``pydense.kernels``. On CUDA tensors they compile for the
  GPU; on CPU tensors they run through the Triton interpreter, which needs ``TRITON_INTERPRET=1``
  in the environment before ``triton`` is first imported (that is how CI runs them).
* ``"cuda"`` — the CUDA C++ kernels of the compiled extension (``csrc/cuda``), CUDA tensors only.
* ``"cpu"`` — the C++ CPU kernels of the compiled extension (``csrc/cpu``), CPU tensors only.
* ``"torch"`` — the stock PyTorch operator.
* ``"auto"`` — per device (and, where the table has classes, per shape class), the backend listed
  in ``pydense._tuned.AUTO_BACKEND``. It may resolve to ``"aten"``: the stock PyTorch function
  itself, called directly by the public function (no custom op), where the committed benchmark
  shows ATen faster than every pydense kernel for that class of shapes.
"""
import glob
import importlib.util
import os
import re
import threading

import torch

from . import _tuned

BACKENDS = ("auto", "triton", "cuda", "cpu", "torch")


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run here (not built, no GPU, no Triton...)."""


SKIP_TORCH_VERSION_CHECK = "PYDENSE_SKIP_TORCH_VERSION_CHECK"


class TorchVersionMismatchError(ImportError):
    """The compiled extension was built against another torch (major.minor) than the running one."""


def _major_minor(version):
    parts = re.match(r"(\d+)\.(\d+)", str(version))
    return (int(parts[1]), int(parts[2])) if parts else None


def torch_version_mismatch(built, running, lib="pydense/_C"):
    """The error to raise when the extension ``lib`` built against torch ``built`` is loaded under
    torch ``running`` and their major.minor differ (e.g. 2.15.0+cu132 vs 2.14.1), else None."""
    if not built or _major_minor(built) == _major_minor(running):
        return None
    return TorchVersionMismatchError(
        f"pydense's compiled extension ({lib}) was built against torch {built}, but torch "
        f"{running} is running: a C++ extension is tied to the torch it was compiled against "
        f"(its ABI) and may crash or fail to load under another. Rebuild pydense against the "
        f"running torch without build isolation: `pip install --no-build-isolation .` (or `-e .` in "
        f"a checkout; with build isolation pip compiles against whichever torch it downloads into "
        f"its build environment). Set {SKIP_TORCH_VERSION_CHECK}=1 to load it anyway.")


def _built_torch_version():
    try:
        from . import _build_info
    except ImportError:
        return None
    return _build_info.BUILD_INFO.get("torch")


def _find_and_load_extension():
    """Load the compiled library (pydense/_C*.so); return (path, None) or (None, the reason).

    Raises TorchVersionMismatchError (at ``import pydense``) if the library was built against
    another torch major.minor than the running one, unless PYDENSE_SKIP_TORCH_VERSION_CHECK=1."""
    here = os.path.dirname(os.path.abspath(__file__))
    libs = sorted(glob.glob(os.path.join(here, "_C*.so")) + glob.glob(os.path.join(here, "_C*.pyd")))
    if not libs:
        return None, BackendUnavailableError(
            "pydense's compiled extension is not built (no pydense/_C*.so): install with "
            "`pip install --no-build-isolation .` (or `make build`), or use backend='triton' or 'torch'")
    if os.environ.get(SKIP_TORCH_VERSION_CHECK, "0") in ("", "0"):
        mismatch = torch_version_mismatch(_built_torch_version(), torch.__version__, libs[0])
        if mismatch is not None:
            raise mismatch
    try:
        torch.ops.load_library(libs[0])
    except OSError as e:
        return None, BackendUnavailableError(f"pydense's compiled extension {libs[0]} failed to load: {e}")
    return libs[0], None


def _find_triton():
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed"
    return None


# Settled once at import, so that backend selection is plain reads (and traceable by torch.compile).
_EXTENSION_PATH, _EXTENSION_ERROR = _find_and_load_extension()
_TRITON_ERROR = _find_triton()


def _load_extension():
    if _EXTENSION_ERROR is not None:
        raise _EXTENSION_ERROR
    return _EXTENSION_PATH


def extension_available():
    return _EXTENSION_ERROR is None


def build_info():
    """What the loaded extension was compiled with (see setup.py), or {} without one."""
    if _EXTENSION_ERROR is not None:
        return {}
    try:
        from . import _build_info
    except ImportError:
        return {}
    return dict(_build_info.BUILD_INFO)


_CUDA_KERNELS_BUILT = bool(build_info().get("cuda", False))


def cuda_kernels_built():
    return _CUDA_KERNELS_BUILT


def triton_interpret():
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def require(backend, device, op):
    """Raise BackendUnavailableError unless ``backend`` can run ``op`` on ``device``."""
    if backend == "torch":
        return
    if backend == "triton":
        if _TRITON_ERROR:
            raise BackendUnavailableError(f"{op}: backend='triton' is unavailable: {_TRITON_ERROR}")
        if device.type == "cpu" and not triton_interpret():
            raise BackendUnavailableError(
                f"{op}: backend='triton' got CPU tensors; Triton kernels run on CUDA tensors, or on "
                "CPU tensors through the interpreter when TRITON_INTERPRET=1 is set before triton "
                "is imported. Use backend='cpu' or 'torch' for CPU tensors.")
        if device.type not in ("cpu", "cuda"):
            raise BackendUnavailableError(f"{op}: backend='triton' does not support device {device}")
        return
    if backend == "cpu":
        if device.type != "cpu":
            raise BackendUnavailableError(
                f"{op}: backend='cpu' needs CPU tensors, got {device}; use backend='cuda' or 'triton'")
        _load_extension()
        return
    if backend == "cuda":
        if device.type != "cuda":
            raise BackendUnavailableError(
                f"{op}: backend='cuda' needs CUDA tensors, got {device}; use backend='cpu' or 'torch'")
        _load_extension()
        if not cuda_kernels_built():
            raise BackendUnavailableError(
                f"{op}: backend='cuda' is unavailable: pydense was built without CUDA kernels "
                "(PYDENSE_CUDA=0 or no nvcc at build time); rebuild with nvcc and CUDA_HOME set, "
                "or use backend='triton'")
        return
    raise ValueError(f"{op}: backend must be one of {BACKENDS}, got {backend!r}")


def _leave_triton(requested, device, op, limit):
    """Where an op goes when its arguments are beyond the Triton kernels' ``limit``: ValueError if
    Triton was asked for by name, else the compiled kernels of ``device`` when built, else
    "torch"."""
    if requested == "triton":
        raise ValueError(f"{op}: backend='triton' supports {limit}; use backend='cuda', 'cpu' or "
                         f"'torch'")
    if device.type == "cuda" and cuda_kernels_built():
        return "cuda"
    if device.type == "cpu" and extension_available():
        return "cpu"
    return "torch"


def auto_choice(op, device, shape_class="*"):
    """What ``backend="auto"`` picks for the registered op ``op`` on ``device``: its
    ``pydense._tuned.AUTO_BACKEND`` entry for the device type (``"torch"`` if none), looked up by
    ``shape_class`` where the entry is a {class: backend} table (``"*"``: every other class).
    ``shape_class=None`` says the stock function cannot run these arguments (compact indices):
    then an ``"aten"`` choice becomes the device's compiled kernels, as for an op whose public
    function has no stock path; ``"cpu"`` becomes ``"torch"`` when the extension is not built."""
    spec = registry.spec(op)
    choice = _tuned.AUTO_BACKEND[spec.key].get(device.type, "torch")
    if isinstance(choice, dict):
        choice = choice.get(shape_class, choice["*"])
    if choice == "aten" and (shape_class is None or not spec.aten):
        choice = "cpu" if device.type == "cpu" else "torch"
    if choice == "cpu" and not extension_available():
        choice = "torch"
    return choice


def resolve(backend, device, op, beyond_triton=None, shape_class="*"):
    """The concrete backend for the registered op ``op`` (its key in ``pydense.ops.registry``) on
    ``device``; checks it can run, before any kernel. The one dispatch rule of every op:

    * an op key that is not registered is a ValueError (a typo never falls back silently);
    * ``"auto"`` is :func:`auto_choice`: ``pydense._tuned.AUTO_BACKEND[op][device.type]`` (per
      ``shape_class`` where that entry is a table), ``"torch"`` where it is ``"cpu"`` and the
      compiled extension is not built; ``"aten"`` tells the caller to call the stock PyTorch
      function itself;
    * ``beyond_triton`` (a text such as "num_classes <= 362, got 400", given when the arguments
      exceed the Triton kernels' limits): a Triton choice goes to the compiled kernels of the
      device (or "torch" without them), and ``backend="triton"`` by name is a ValueError;
    * the backend must be able to run on ``device`` (:func:`require`).

    Error messages name the op's public function."""
    spec = registry.spec(op)
    name = spec.public[0]
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"{name}: backend must be one of {BACKENDS}, got {backend!r}")
    requested = backend
    if backend == "auto":
        backend = auto_choice(op, device, shape_class)
        if backend == "aten":
            return _traced(spec, requested, backend, device, shape_class)
    if backend == "triton" and beyond_triton is not None:
        backend = _leave_triton(requested, device, name, beyond_triton)
    require(backend, device, name)
    return _traced(spec, requested, backend, device, shape_class)


# While pydense handles a call (one that pydense.enabled() routed, or the stock computation of
# the "aten" choice), pydense.enabled() routes nothing (per thread).
_UNROUTED = threading.local()


def routing_off():
    """Whether pydense is handling a call on this thread (see :func:`unrouted`)."""
    return getattr(_UNROUTED, "active", False)


def unrouted(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` with ``pydense.enabled()`` routing nothing, so that the torch
    functions pydense calls itself reach ATen: the handling of a call the mode routed, and the
    stock computation an op's public function runs when ``auto`` resolved to ``"aten"`` (a
    patched module whose op resolved to the stock path is not sent back to pydense)."""
    previous = routing_off()
    _UNROUTED.active = True
    try:
        return fn(*args, **kwargs)
    finally:
        _UNROUTED.active = previous


# What pydense.explain records: while a list is set here (per thread), every resolution appends
# (op key, requested backend, resolved backend, device type, shape class).
TRACE = threading.local()


def _traced(spec, requested, backend, device, shape_class):
    calls = getattr(TRACE, "calls", None)
    if calls is not None:
        calls.append((spec.key, requested, backend, device.type, shape_class))
    return backend


# Last: importing the registry imports the pydense.ops package, whose op modules import this one
# (complete by now).
from .ops import registry  # noqa: E402
