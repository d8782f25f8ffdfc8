"""Triton kernels of the panoptic pair counts (deterministic, two passes).

Math::

    gi(x) = the first i < G with gt_ids[n, i] == x, or G when x is not in the row
    pj(y) = the first j < P with pred_ids[n, j] == y, or P when y is not in the row
    counts[n, i, j] = #{pixels (h, w) of image n with gi(gt[n, h, w]) = i and pj(pred[n, h, w]) = j}

Each table row is sorted ascending (padded at the end with INT64_MAX). ``_lookup`` finds an id by
a fixed-step binary search: the steps are the powers of two from ``top`` (the largest one <= the
row length) down to 1, the same for every pixel, so a block of pixels searches in lockstep with
gather loads from the (tiny, cached) table row.

Pass 1, ``_panoptic_pair_counts_histogram_kernel``: program ``pid = prog * N + n`` owns the
contiguous pixel range [prog * per_prog, (prog + 1) * per_prog) of image n and counts its bins
``gi * (P + 1) + pj`` in a private int32 histogram (``tl.histogram`` per block of pixels, summed
over the range); it writes the histogram as int64 into row ``pid`` of the partials buffer
(programs * N, bins), that is row ``prog`` of (programs, N * bins). Bin slices: a histogram has at
most ``MAX_BINS`` bins; for more bins the second grid axis is the bin slice (each slice program
re-reads its pixel range and counts only its bins). Pass 2, ``_panoptic_pair_counts_reduce_kernel``
(``sum_rows`` of kernels/_common.py, as the confusion matrix's second pass) over
(programs, N * bins): counts[n, b] = sum over prog = 0, 1, ... of the partials, in that fixed
order. No atomics at all.
The index math mirrors ``csrc/common/panoptic_pairs.h``.
"""
import triton
import triton.language as tl

from ._common import _needs_int64, launcher, sum_rows, triton_interpret
from .confusion_matrix import (BLOCK, MAX_BINS, MAX_SLICES, NUM_WARPS, REDUCE_BLOCK, num_bins,
                               programs)

MAX_IMAGE_BINS = MAX_BINS * MAX_SLICES  # (G + 1) * (P + 1) the Triton path serves

# Every compile-time configuration the launcher below uses: (kernel name, constexprs, dtypes of
# the id maps). The tables and partials are int64 whatever the maps' dtype.
CONFIGS = [
    *[("_panoptic_pair_counts_histogram_kernel", {"INDEX_64": i64, "NBINS": nb, "BLOCK": BLOCK},
       ["i32", "i64"]) for i64 in (False, True) for nb in (256, 512, 1024, 2048)],
    ("_panoptic_pair_counts_reduce_kernel", {"BLOCK": REDUCE_BLOCK}, ["i64"]),
]


@triton.jit
def _lookup(row_ptr, length, top, x, live):
    """Index of each id ``x`` in the sorted row ``row_ptr[0..length)`` (its first match), or
    ``length`` when absent: ``index_of`` of csrc/common/panoptic_pairs.h. ``pos`` counts the row
    entries below x, settled one bit at a time from ``top`` down."""
    pos = tl.zeros(x.shape, dtype=tl.int32)
    step = top
    while step > 0:
        cand = pos + step
        inside = live & (cand <= length)
        v = tl.load(row_ptr + (cand - 1), mask=inside, other=0)
        pos = tl.where(inside & (v < x), cand, pos)
        step = step // 2
    found = live & (pos < length)
    hit = tl.load(row_ptr + pos, mask=found, other=0)
    return tl.where(found & (hit == x), pos, length)


@triton.jit(do_not_specialize=["g_top", "p_top"])  # a step of 1 must stay a loop variable
def _panoptic_pair_counts_histogram_kernel(gt_ptr, pred_ptr, gids_ptr, pids_ptr, hist_ptr, N, HW, W,
                                           gs0, gs1, gs2, ps0, ps1, ps2, G, P, g_top, p_top, bins,
                                           per_prog,
                                           INDEX_64: tl.constexpr, NBINS: tl.constexpr,
                                           BLOCK: tl.constexpr):
    idx_t: tl.constexpr = tl.int64 if INDEX_64 else tl.int32
    pid = tl.program_id(0)
    n = pid % N
    prog = (pid // N).to(idx_t)
    bin0 = tl.program_id(1) * NBINS  # this program's bin slice [bin0, bin0 + NBINS)
    begin = prog * per_prog
    end = tl.minimum(begin + per_prog, HW)
    gimg = gt_ptr + n.to(idx_t) * gs0
    pimg = pred_ptr + n.to(idx_t) * ps0
    grow = gids_ptr + n.to(tl.int64) * G
    prow = pids_ptr + n.to(tl.int64) * P
    hist = tl.zeros([NBINS], dtype=tl.int32)
    for start in range(begin, end, BLOCK):
        l = start + tl.arange(0, BLOCK).to(idx_t)
        live = l < end
        h = l // W
        w = l - h * W
        x = tl.load(gimg + h * gs1 + w * gs2, mask=live, other=0).to(tl.int64)
        y = tl.load(pimg + h * ps1 + w * ps2, mask=live, other=0).to(tl.int64)
        gi = _lookup(grow, G, g_top, x, live)
        pj = _lookup(prow, P, p_top, y, live)
        b = gi * (P + 1) + pj - bin0  # < bins < 2^31: checked by the caller
        ok = live & (b >= 0) & (b < NBINS)
        hist += tl.histogram(tl.where(ok, b, 0), NBINS, mask=ok)
    slots = bin0 + tl.arange(0, NBINS)
    tl.store(hist_ptr + pid.to(tl.int64) * bins + slots, hist.to(tl.int64), mask=slots < bins)


@triton.jit
def _panoptic_pair_counts_reduce_kernel(hist_ptr, out_ptr, P, NB, BLOCK: tl.constexpr):
    sum_rows(hist_ptr, out_ptr, P, NB, BLOCK)  # rows prog = 0, 1, ..., P - 1: a fixed order


def top_step(length):
    """The first step of the search in a row of ``length`` ids: the largest power of two <=
    length, 0 for an empty row (``top_step`` of csrc/common/panoptic_pairs.h)."""
    return 1 << (length.bit_length() - 1) if length > 0 else 0


@launcher
def forward(gt, pred, gt_ids, pred_ids, out):
    """Write the (N, G + 1, P + 1) int64 pair counts of the id maps ``gt`` and ``pred`` (N, H, W)
    against the sorted, contiguous int64 tables ``gt_ids`` (N, G) and ``pred_ids`` (N, P) into
    ``out`` (contiguous); arguments checked by the caller, (G + 1) * (P + 1) <= MAX_IMAGE_BINS."""
    import torch

    N, H, W = gt.shape
    G, P = gt_ids.shape[1], pred_ids.shape[1]
    bins = (G + 1) * (P + 1)
    HW = H * W
    if N * HW == 0:
        out.zero_()
        return out
    progs, per = programs(HW, N * bins, triton_interpret())
    nb, slices = num_bins(bins)
    hist = torch.empty((progs * N, bins), dtype=torch.int64, device=gt.device)
    index_64 = _needs_int64(gt, pred) or HW + per >= 2**30
    # An empty table is never read (its search has no steps); any int64 tensor stands in for it.
    gids = gt_ids if G else out
    pids = pred_ids if P else out
    _panoptic_pair_counts_histogram_kernel[(progs * N, slices)](
        gt, pred, gids, pids, hist, N, HW, W, *gt.stride(), *pred.stride(), G, P, top_step(G),
        top_step(P), bins, per, INDEX_64=index_64, NBINS=nb, BLOCK=BLOCK, num_warps=NUM_WARPS)
    _panoptic_pair_counts_reduce_kernel[(triton.cdiv(N * bins, REDUCE_BLOCK),)](
        hist, out, progs, N * bins, BLOCK=REDUCE_BLOCK, num_warps=NUM_WARPS)
    return out
