"""The pairwise intersection histogram of Panoptic Quality as a torch.library op:
``pydense::panoptic_pair_counts``.

For N images with ground-truth and predicted segment-id maps ``gt`` and ``pred`` (N, H, W) and
per-image sorted id tables ``gt_ids`` (N, G) and ``pred_ids`` (N, P) (int64, rows ascending, padded
at the end with INT64_MAX), ``counts[n, i, j]`` (N, G + 1, P + 1) int64 is the number of pixels of
image n whose gt id is ``gt_ids[n, i]`` and whose predicted id is ``pred_ids[n, j]``; an id missing
from its image's row counts in the last index (G, or P). Row i of image n's counts gives the
intersections of gt segment i with every predicted segment, and the last row/column the
overlaps with the unlisted ids (VOID and friends): the areas, intersections and unions of
panopticapi's ``pq_compute`` follow by sums.

A ``torch.library.custom_op`` (opaque to torch.compile, with a fake kernel; no autograd: the result
is integer counts). Its implementation allocates the result and hands it to the chosen backend:
the Triton kernels (``pydense.kernels.panoptic_pairs``), the compiled C++ kernels
(``torch.ops.pydense._panoptic_pair_counts``, csrc/cpu and csrc/cuda) or ``torch.searchsorted`` +
``torch.bincount``. Argument validation happens in :func:`normalize_args`, before any kernel runs.
"""
import torch

from .. import _backend
from ._common import integer_tensor, launch

OP = "panoptic_pair_counts"
MAP_DTYPES = (torch.int32, torch.int64)  # read directly by the kernels
MAX_ID = 1 << 24  # map values lie in [0, MAX_ID): the caller's guarantee
TRITON_MAX_BINS = 2048 * 64  # = pydense.kernels.panoptic_pairs.MAX_IMAGE_BINS (64 bin slices)


def normalize_args(gt, pred, gt_ids, pred_ids):
    """Check every argument; return (gt, pred, gt_ids, pred_ids) as the kernels read them: int32
    or int64 maps (any strides), contiguous int64 tables.

    Raises TypeError/ValueError naming the argument and the expected value.
    """
    for name, t in (("gt", gt), ("pred", pred), ("gt_ids", gt_ids), ("pred_ids", pred_ids)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{OP}: {name} must be a Tensor, got {type(t).__name__}")
    if gt.dim() != 3:
        raise ValueError(f"{OP}: gt must be 3-D (N, H, W) segment ids, got shape {tuple(gt.shape)}")
    if pred.shape != gt.shape:
        raise ValueError(f"{OP}: pred of shape {tuple(pred.shape)} and gt of shape "
                         f"{tuple(gt.shape)} must have the same shape")
    gt = integer_tensor(gt, "gt", OP, MAP_DTYPES)
    pred = integer_tensor(pred, "pred", OP, MAP_DTYPES)
    N = gt.shape[0]
    tables = []
    for name, t in (("gt_ids", gt_ids), ("pred_ids", pred_ids)):
        if t.dim() != 2:
            raise ValueError(f"{OP}: {name} must be 2-D (N, ids) sorted id tables, got shape "
                             f"{tuple(t.shape)}")
        if t.shape[0] != N:
            raise ValueError(f"{OP}: {name} must have N={N} rows (one per image), got {t.shape[0]}")
        tables.append(integer_tensor(t, name, OP, (torch.int64,)).contiguous())
    G, P = tables[0].shape[1], tables[1].shape[1]
    if (G + 1) * (P + 1) >= 2**31:
        raise ValueError(f"{OP}: (G + 1) * (P + 1) must be below 2^31, got G={G}, P={P}")
    for name, t in (("pred", pred), ("gt_ids", tables[0]), ("pred_ids", tables[1])):
        if t.device != gt.device:
            raise ValueError(f"{OP}: {name} is on {t.device} but gt is on {gt.device}")
    return gt, pred, *tables


def _indices(ids, x):
    """(N, HW) indices of the ids x (N, HW) in the sorted rows of ids (N, L), L when absent."""
    N, L = ids.shape
    if L == 0:
        return torch.zeros_like(x)
    pos = torch.searchsorted(ids, x)  # lower_bound: the first match
    hit = torch.gather(ids, 1, pos.clamp(max=L - 1)) == x
    return torch.where(hit & (pos < L), pos, L)


def torch_reference(gt, pred, gt_ids, pred_ids):
    """``torch.searchsorted`` of each pixel's ids in its image's rows, then one
    ``torch.bincount`` over the flat (image, gi, pj) bins."""
    N = gt.shape[0]
    G, P = gt_ids.shape[1], pred_ids.shape[1]
    HW = gt.shape[1] * gt.shape[2]
    gi = _indices(gt_ids, gt.reshape(N, HW).long())
    pj = _indices(pred_ids, pred.reshape(N, HW).long())
    bins = (G + 1) * (P + 1)
    image = torch.arange(N, device=gt.device).unsqueeze(1) * bins
    counts = torch.bincount((image + gi * (P + 1) + pj).reshape(-1), minlength=N * bins)
    return counts.view(N, G + 1, P + 1)


@torch.library.custom_op("pydense::panoptic_pair_counts", mutates_args=())
def panoptic_pair_counts_op(gt: torch.Tensor, pred: torch.Tensor, gt_ids: torch.Tensor,
                            pred_ids: torch.Tensor, backend: str) -> torch.Tensor:
    """(N, G + 1, P + 1) int64 pixel counts of the (gt id, pred id) pairs (see the module doc)."""
    if backend == "torch":
        return torch_reference(gt, pred, gt_ids, pred_ids)
    out = torch.empty((gt.shape[0], gt_ids.shape[1] + 1, pred_ids.shape[1] + 1), dtype=torch.int64,
                      device=gt.device)
    launch(backend, "panoptic_pairs.forward", "_panoptic_pair_counts", gt, pred, gt_ids, pred_ids, out)
    return out


@panoptic_pair_counts_op.register_fake
def _(gt, pred, gt_ids, pred_ids, backend):
    return torch.empty((gt.shape[0], gt_ids.shape[1] + 1, pred_ids.shape[1] + 1), dtype=torch.int64,
                       device=gt.device)


def panoptic_pair_counts(gt, pred, gt_ids, pred_ids, *, backend="auto"):
    """Pixel counts of every (ground-truth segment, predicted segment) pair, per image.

    Args:
        gt: (N, H, W) ground-truth segment ids, int32 or int64 (other integer dtypes are
            converted to int64), any strides; values in [0, 2^24).
        pred: (N, H, W) predicted segment ids, as ``gt``.
        gt_ids: (N, G) int64, each row sorted ascending and padded at the end with INT64_MAX: the
            ground-truth segments of each image.
        pred_ids: (N, P) int64, likewise the predicted segments.
        backend: "auto", "triton", "cuda", "cpu" or "torch" (see ``pydense._backend``).

    Returns:
        (N, G + 1, P + 1) int64 ``counts``: ``counts[n, i, j]`` pixels of image n have gt id
        ``gt_ids[n, i]`` and pred id ``pred_ids[n, j]``; index G (P) collects the ids absent from
        the image's gt (pred) row. Deterministic; ``counts[n].sum() == H * W``.
    """
    gt, pred, gt_ids, pred_ids = normalize_args(gt, pred, gt_ids, pred_ids)
    # Each histogram holds at most 2048 bins; more bins take several passes over the pixels.
    G, P = gt_ids.shape[1], pred_ids.shape[1]
    beyond = (f"(G + 1) * (P + 1) <= {TRITON_MAX_BINS}, got G={G}, P={P}"
              if (G + 1) * (P + 1) > TRITON_MAX_BINS else None)
    backend = _backend.resolve(backend, gt.device, OP, beyond_triton=beyond)
    return panoptic_pair_counts_op(gt, pred, gt_ids, pred_ids, backend)

