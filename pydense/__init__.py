"""pydense: Triton and CUDA C++ kernels for dense prediction, as torch.library ops.

    >>> import torch, pydense
    >>> x = torch.randn(2, 8, 16, 16)
    >>> y, idx = torch.nn.functional.max_pool2d(x, 2, 2, return_indices=True)
    >>> pydense.functional.max_unpool2d(y, idx, 2).shape
    torch.Size([2, 8, 16, 16])
"""
import importlib.util
import os
import sys
import warnings


def _map_source_kernels():
    """In a source checkout the Triton kernels live in the top-level ``kernels/`` folder, which
    installs map to ``pydense.kernels`` (setup.py ``package_dir``); map it here too. The
    checkout's own folder comes first: an editable install of another checkout of the repository
    in the same environment (a second worktree) must not supply this checkout's kernels."""
    package = os.path.dirname(os.path.abspath(__file__))
    src = os.path.join(os.path.dirname(package), "kernels")
    installed = os.path.isdir(os.path.join(package, "kernels"))
    if installed or not os.path.isfile(os.path.join(src, "__init__.py")):
        if importlib.util.find_spec(__name__ + ".kernels") is not None:
            return
    spec = importlib.util.spec_from_file_location(
        __name__ + ".kernels", os.path.join(src, "__init__.py"), submodule_search_locations=[src])
    if spec is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)


_map_source_kernels()

from . import _backend  # noqa: E402,F401  (backend discovery runs at import)
from . import ops  # noqa: E402,F401
from . import distributed, functional, metrics, models, nn, panoptic_fusion, patching  # noqa: E402,F401
from . import reference  # noqa: E402,F401
from ._backend import BackendUnavailableError, build_info, extension_available  # noqa: E402,F401
from ._explain import ExplainEntry, Explanation, explain  # noqa: E402,F401
from . import fusion  # noqa: E402,F401
from .fusion import compile  # noqa: E402,F401
from .patching import (ConvSpec, PatchRecord, default_conv_predicate, enabled,  # noqa: E402,F401
                       fixed_bilinear_factor, patch, patched_modules, unpatch)

__version__ = "0.1.0"
__all__ = ["distributed", "functional", "metrics", "models", "nn", "panoptic_fusion", "patching", "reference",
           "build_info", "extension_available", "BackendUnavailableError", "patch", "unpatch",
           "patched_modules", "enabled", "default_conv_predicate", "ConvSpec", "PatchRecord",
           "fixed_bilinear_factor", "explain", "Explanation", "ExplainEntry",
           "fusion"]  # pydense.compile is not in __all__: a star import must not shadow the builtin

# Deprecated submodule names, imported (with their DeprecationWarning) on first attribute access.
_DEPRECATED_MODULES = {"panoptic": "panoptic_fusion"}


def __getattr__(name):
    if name in _DEPRECATED_MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _warn_renamed_module(old, new, note=""):
    """The DeprecationWarning of a renamed module's alias (run by the alias's body), attributed
    to the first frame outside pydense and the import machinery: the user's import statement or
    attribute access."""
    frame, level = sys._getframe(0), 1
    while frame is not None:
        path = frame.f_code.co_filename
        # warnings skips the import machinery's frames itself when it counts the stack level
        if not ("importlib" in path and "_bootstrap" in path):
            if frame.f_globals.get("__name__", "").partition(".")[0] not in ("pydense",
                                                                              "importlib"):
                break
            level += 1
        frame = frame.f_back
    warnings.warn(f"{old} is deprecated, import {new}{note}", DeprecationWarning, stacklevel=level)
