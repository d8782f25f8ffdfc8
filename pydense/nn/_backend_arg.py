"""The ``backend`` argument of pydense's modules, models and :func:`pydense.patch`: one word with
the ops' meaning.

Its values are the ops' (``pydense._backend.BACKENDS``): "auto", "triton", "cuda", "cpu" and
"torch" (the stock PyTorch operator; a model built with it is made of the stock torch modules).
Any other value is a ValueError naming the module or model, the argument and the valid values.

The models' older spellings still work, with a DeprecationWarning: ``backend="pydense"`` is
``backend="auto"``, and ``op_backend=X`` is ``backend=X``.
"""
import sys
import warnings

from .._backend import BACKENDS

__all__ = ["BACKENDS", "check_backend"]

LEGACY_FUSED = "pydense"  # the models' old word for "pydense's ops", now "auto"


def _caller_stacklevel():
    """The ``stacklevel`` of the first frame outside pydense, as seen from the caller of this
    function: a deprecation names the user's line, however deep the model's constructors nest."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").partition(".")[0] == "pydense":
        frame, level = frame.f_back, level + 1
    return level


def _warn(message):
    warnings.warn(message, DeprecationWarning, stacklevel=_caller_stacklevel())


def _check(value, owner, name):
    if not isinstance(value, str) or value not in BACKENDS:
        raise ValueError(f"{owner}: {name} must be one of {BACKENDS}, got {value!r}")
    return value


def check_backend(backend, owner, *, op_backend=None, legacy=False):
    """``backend`` checked against the ops' values; returns it.

    Args:
        backend: the value passed.
        owner (str): what takes it, for the messages ("FCN", "pydense.nn.Conv2d", ...).
        op_backend: the models' deprecated second argument (None: not given); with ``legacy``.
        legacy (bool): accept the models' deprecated spellings (``backend="pydense"`` and
            ``op_backend``), with a DeprecationWarning each.

    With both ``backend`` and ``op_backend``: "torch" stays "torch" (the stock modules, as before,
    when ``op_backend`` was unused), "auto" (the default) becomes ``op_backend``, and another
    ``backend`` must equal it.
    """
    if legacy and isinstance(backend, str) and backend == LEGACY_FUSED:
        _warn(f'{owner}: backend="pydense" is deprecated, use backend="auto" (the same: pydense\'s '
              f"ops, each on the backend pydense._tuned picks per device) or one of {BACKENDS}")
        backend = "auto"
    if op_backend is not None:
        if not legacy:
            raise TypeError(f"{owner}: unexpected keyword argument 'op_backend'")
        _warn(f"{owner}: op_backend is deprecated, pass the op backend as backend= (one of "
              f"{BACKENDS}; \"torch\" builds the stock torch model)")
        op_backend = _check(op_backend, owner, "op_backend")
        backend = _check(backend, owner, "backend")
        if backend == "auto":
            backend = op_backend
        elif backend not in ("torch", op_backend):
            raise ValueError(f"{owner}: backend={backend!r} and the deprecated "
                             f"op_backend={op_backend!r} disagree; pass backend only")
    return _check(backend, owner, "backend")
