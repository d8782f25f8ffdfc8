"""Instance coverage patterns as a torch.library op: ``pydense::instance_coverage``.

For masks (M, H, W) and ``order`` (K,) (instance indices; rank r is ``order[r]``), the result is
(H, W, NW) int64 with NW = ceil(K / 64): bit r % 64 of word r // 64 of pixel (h, w) is set iff
``masks[order[r], h, w] != 0`` (rank 63 of a word is its sign bit). It is the parallel half of
panoptic fusion (:mod:`pydense.panoptic_fusion`): pixels with equal patterns are covered by the same set of
instances, so the sequential paste decisions can be made on the table of distinct patterns.

A ``torch.library.custom_op`` (opaque to torch.compile, with a fake kernel; no autograd: the
result is bit sets). Its implementation allocates the result and hands it to the chosen backend:
the Triton kernel (``pydense.kernels.instance_coverage``), the compiled C++ kernels
(``torch.ops.pydense._instance_coverage``, csrc/cpu and csrc/cuda) or plain torch. Argument
validation happens in :func:`normalize_args`, before any kernel runs.
"""
import torch

from .. import _backend
from ._common import INTEGER_DTYPES, launch

OP = "instance_coverage"
BITS = 64


def num_words(k):
    """Words per pixel for ``k`` ranks: ceil(k / 64)."""
    return (k + BITS - 1) // BITS


def normalize_args(masks, order):
    """Check both arguments; return (masks, order) as the kernels read them (masks bool or uint8,
    any strides; order contiguous int64 on the masks' device).

    Raises TypeError/ValueError naming the argument and the expected value.
    """
    if not isinstance(masks, torch.Tensor):
        raise TypeError(f"{OP}: masks must be a Tensor, got {type(masks).__name__}")
    if not isinstance(order, torch.Tensor):
        raise TypeError(f"{OP}: order must be a Tensor, got {type(order).__name__}")
    if masks.dim() != 3:
        raise ValueError(f"{OP}: masks must be 3-D (M, H, W), got shape {tuple(masks.shape)}")
    if masks.dtype not in (torch.bool, torch.uint8):
        raise TypeError(f"{OP}: masks must be bool or uint8 (nonzero = inside), got {masks.dtype}")
    if order.dim() != 1:
        raise ValueError(f"{OP}: order must be 1-D (K,) instance indices, got shape "
                         f"{tuple(order.shape)}")
    if order.dtype not in INTEGER_DTYPES:
        raise TypeError(f"{OP}: order must be an integer tensor of instance indices, got {order.dtype}")
    if order.numel() > 0 and masks.shape[0] == 0:
        raise ValueError(f"{OP}: order has {order.numel()} entries but masks has no instances (M=0)")
    if order.device != masks.device:
        raise ValueError(f"{OP}: order is on {order.device} but masks is on {masks.device}")
    return masks, order.to(torch.int64).contiguous()


def check_order_range(masks, order):
    """Raise ValueError unless every entry of ``order`` is in [0, M) (one host sync)."""
    if order.numel() == 0:
        return
    lo, hi = torch.stack([*torch.aminmax(order)]).tolist()
    if lo < 0 or hi >= masks.shape[0]:
        v = lo if lo < 0 else hi
        raise ValueError(f"{OP}: order holds {v}; instance indices must lie in [0, {masks.shape[0]})")


def torch_reference(masks, order):
    """Plain torch: one OR of ``(masks[order[r]] != 0) << (r % 64)`` per rank."""
    _, H, W = masks.shape
    K = order.numel()
    out = torch.zeros((H, W, num_words(K)), dtype=torch.int64, device=masks.device)
    for r in range(K):
        inside = masks.index_select(0, order[r:r + 1])[0] != 0
        out[:, :, r // BITS] |= inside.to(torch.int64) << (r % BITS)
    return out


@torch.library.custom_op("pydense::instance_coverage", mutates_args=())
def instance_coverage_op(masks: torch.Tensor, order: torch.Tensor, backend: str) -> torch.Tensor:
    """(H, W, ceil(K / 64)) int64 coverage patterns (see the module docstring)."""
    if backend == "torch":
        return torch_reference(masks, order)
    _, H, W = masks.shape
    out = torch.empty((H, W, num_words(order.numel())), dtype=torch.int64, device=masks.device)
    launch(backend, "instance_coverage.forward", "_instance_coverage", masks, order, out)
    return out


@instance_coverage_op.register_fake
def _(masks, order, backend):
    _, H, W = masks.shape
    return masks.new_empty((H, W, num_words(order.shape[0])), dtype=torch.int64)


def instance_coverage(masks, order, *, backend="auto", check_order=True):
    """Per-pixel bit sets of the instances covering each pixel.

    Args:
        masks: (M, H, W) bool or uint8 instance masks (nonzero = inside), any strides.
        order: (K,) integer instance indices in [0, M); rank r is instance ``order[r]``.
        backend: "auto", "triton", "cuda", "cpu" or "torch" (see :mod:`pydense._backend`).
        check_order: check that ``order`` holds valid indices (one host sync; off under
            torch.compile).

    Returns:
        (H, W, ceil(K / 64)) int64: bit r % 64 of word r // 64 is set iff
        ``masks[order[r], h, w] != 0``.
    """
    masks, order = normalize_args(masks, order)
    backend = _backend.resolve(backend, masks.device, OP)
    if check_order:
        check_order_range(masks, order)
    return instance_coverage_op(masks, order, backend)
