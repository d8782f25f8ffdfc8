"""The segmentation confusion matrix as a torch.library op: ``pydense::confusion_matrix``.

A ``torch.library.custom_op`` (opaque to torch.compile, with a fake kernel; no autograd: the
result is integer counts). Its implementation allocates the (K, K) int64 result and hands it to
the chosen backend: the Triton kernels (``pydense.kernels.confusion_matrix``), the compiled C++
kernels (``torch.ops.pydense._confusion_matrix``, csrc/cpu and csrc/cuda) or ``torch.bincount``.
Argument validation happens in :func:`normalize_args`, before any kernel runs.
"""
import torch

from .. import _backend, reference
from ._common import FLOAT_DTYPES, integer_tensor, launch

OP = "confusion_matrix"
LABEL_DTYPES = (torch.uint8, torch.int32, torch.int64)  # read directly by the compiled kernels
LOGIT_DTYPES = FLOAT_DTYPES
TRITON_MAX_CLASSES = 362  # = pydense.kernels.confusion_matrix.MAX_CLASSES (64 bin slices)


def _labels(t, name):
    """An integer label tensor the compiled kernels read (other integer dtypes become int64)."""
    return integer_tensor(t, name, OP, LABEL_DTYPES, "an integer label tensor")


def normalize_args(pred, target, num_classes, ignore_index):
    """Check every argument; return (pred, target) in dtypes the kernels read.

    Raises TypeError/ValueError naming the argument and the expected value.
    """
    if not isinstance(pred, torch.Tensor):
        raise TypeError(f"{OP}: pred must be a Tensor, got {type(pred).__name__}")
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"{OP}: target must be a Tensor, got {type(target).__name__}")
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes <= 0:
        raise ValueError(f"{OP}: num_classes must be a positive int, got {num_classes!r}")
    if num_classes > 46340:  # K * K bins must stay below 2^31
        raise ValueError(f"{OP}: num_classes must be at most 46340, got {num_classes}")
    if not isinstance(ignore_index, int) or isinstance(ignore_index, bool):
        raise TypeError(f"{OP}: ignore_index must be an int, got {ignore_index!r}")
    if target.dim() != 3:
        raise ValueError(f"{OP}: target must be 3-D (N, H, W) class labels, got shape "
                         f"{tuple(target.shape)}")
    if target.dtype.is_floating_point or target.dtype.is_complex or target.dtype == torch.bool:
        raise TypeError(f"{OP}: target must be an integer label tensor, got {target.dtype}")
    if pred.dim() == 3:
        if pred.dtype.is_floating_point:
            raise TypeError(f"{OP}: pred of shape (N, H, W) must hold integer labels, got "
                            f"{pred.dtype} (pass logits as (N, C, H, W))")
        if pred.shape != target.shape:
            raise ValueError(f"{OP}: pred labels of shape {tuple(pred.shape)} and target of shape "
                             f"{tuple(target.shape)} must have the same shape")
        pred = _labels(pred, "pred")
    elif pred.dim() == 4:
        if pred.dtype not in LOGIT_DTYPES:
            raise TypeError(f"{OP}: pred of shape (N, C, H, W) must hold float logits, got "
                            f"{pred.dtype}")
        if (pred.shape[0], *pred.shape[2:]) != tuple(target.shape):
            raise ValueError(f"{OP}: pred logits of shape {tuple(pred.shape)} (N, C, H, W) and "
                             f"target of shape {tuple(target.shape)} (N, H, W) must agree in N, H, W")
        if pred.shape[1] != num_classes:
            raise ValueError(f"{OP}: pred logits have {pred.shape[1]} channels, expected "
                             f"num_classes={num_classes}")
    else:
        raise ValueError(f"{OP}: pred must be 3-D (N, H, W) labels or 4-D (N, C, H, W) logits, got "
                         f"shape {tuple(pred.shape)}")
    if pred.device != target.device:
        raise ValueError(f"{OP}: pred is on {pred.device} but target is on {target.device}")
    return pred, _labels(target, "target")


def check_label_range(pred, target, num_classes, ignore_index):
    """Raise ValueError unless every target is in [0, K) or ignore_index and every predicted label
    is in [0, K).

    Cost: one masked min/max reduction over ``target`` (ignore pixels read as 0), one min/max over
    label ``pred`` (none for logits), and one host sync for all of them; skip it with
    ``check_labels=False``.
    """
    if target.numel() == 0:
        return
    info = torch.iinfo(target.dtype)
    # Compare with ignore_index only where the dtype can hold it (torch would wrap -1 to 255 for
    # uint8): an ignore_index outside the dtype's range matches no pixel.
    t = torch.where(target == ignore_index, 0, target) if info.min <= ignore_index <= info.max else target
    bounds = [*torch.aminmax(t)]
    if pred.dim() == 3:
        bounds += [*torch.aminmax(pred)]
    bounds = torch.stack([b.to(torch.int64) for b in bounds]).tolist()  # the one host sync
    for name, lo, hi in (("target", *bounds[0:2]), ("pred", *bounds[2:4]))[:len(bounds) // 2]:
        if lo < 0 or hi >= num_classes:
            v = lo if lo < 0 else hi
            kind = "negative label" if v < 0 else "label"
            rule = (f"labels must lie in [0, {num_classes}) or equal ignore_index={ignore_index}"
                    if name == "target" else f"predicted labels must lie in [0, {num_classes})")
            raise ValueError(f"{OP}: {name} holds {kind} {v}; {rule}")


bincount_reference = reference.confusion_matrix  # the oracle; also the "torch" backend


@torch.library.custom_op("pydense::confusion_matrix", mutates_args=())
def confusion_matrix_op(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                        ignore_index: int, backend: str) -> torch.Tensor:
    """(K, K) int64 counts, rows = target class, columns = predicted class (see pydense.metrics)."""
    if backend == "torch":
        return bincount_reference(pred, target, num_classes, ignore_index)
    out = torch.empty((num_classes, num_classes), dtype=torch.int64, device=target.device)
    launch(backend, "confusion_matrix.forward", "_confusion_matrix", pred, target, num_classes,
           ignore_index, out)
    return out


@confusion_matrix_op.register_fake
def _(pred, target, num_classes, ignore_index, backend):
    return torch.empty((num_classes, num_classes), dtype=torch.int64, device=target.device)


def confusion_matrix(pred, target, num_classes, *, ignore_index=255, backend="auto",
                     check_labels=True):
    """Validate, pick the backend, and call ``pydense::confusion_matrix``."""
    pred, target = normalize_args(pred, target, num_classes, ignore_index)
    # Each histogram holds at most 2048 bins; more classes take several passes over the pixels.
    beyond = (f"num_classes <= {TRITON_MAX_CLASSES}, got {num_classes}"
              if num_classes > TRITON_MAX_CLASSES else None)
    backend = _backend.resolve(backend, target.device, OP, beyond_triton=beyond)
    if check_labels:
        check_label_range(pred, target, num_classes, ignore_index)
    return confusion_matrix_op(pred, target, num_classes, ignore_index, backend)
