"""Triton kernels of the segmentation confusion matrix (deterministic, two passes).

Math::

    p[n, h, w] = pred[n, h, w]                    (labels)
               = argmax_c pred[n, c, h, w]        (logits; ties and NaN as torch.argmax:
                                                   the lowest index wins, a NaN beats any number)
    cm[t, p] = #{pixels with target t (!= ignore_index, in [0, K)) and prediction p (in [0, K))}

Pass 1, ``_confusion_matrix_histogram_kernel``: program ``pid`` owns the contiguous pixel range
[pid * per_prog, (pid + 1) * per_prog) and counts its bins ``t * K + p`` in a private int32
histogram held in registers (``tl.histogram`` per block of pixels, summed over the range); it
writes the histogram as int64 into row ``pid`` of the partials buffer (P, K*K). Bin slices:
a histogram has at most ``MAX_BINS`` bins; for K*K > MAX_BINS the second grid axis is the bin
slice (each slice program re-reads its pixel range and counts only its bins).
Pass 2, ``_confusion_matrix_reduce_kernel``: cm[b] = sum over p = 0..P-1 of partials[p, b], in
that fixed order (``sum_rows`` of kernels/_common.py). No atomics at all: the result is bitwise
reproducible (integer counts are exact anyway).

Pixels whose target is ignore_index, or whose target or prediction lies outside [0, K) (possible
only with label checks off) are dropped, never used as an address. The index math mirrors
``csrc/common/confusion_matrix.h``.
"""
import triton
import triton.language as tl

from ._common import _needs_int64, launcher, sum_rows, triton_interpret

BLOCK = 1024          # pixels per step
NUM_WARPS = 4
MAX_BINS = 2048       # bins of one histogram (K <= 45 needs one slice)
MIN_BINS = 256
MAX_SLICES = 64       # bin slices re-read the pixels: the Triton path serves K <= 362
MAX_CLASSES = 362
MAX_PROGRAMS = 1024   # programs of pass 1 (GPU); P * K * K int64 partials
MAX_PARTIAL_ELEMS = 1 << 22
REDUCE_BLOCK = 256

# Every compile-time configuration the launchers below use: (kernel name, constexprs, dtypes).
# Labels are compiled with int64 pred/target; logits with each floating dtype and int64 targets.
CONFIGS = [
    *[("_confusion_matrix_histogram_kernel",
       {"LOGITS": logits, "INDEX_64": i64, "NBINS": nb, "BLOCK": BLOCK},
       ["fp32", "fp16", "bf16"] if logits else ["i64"])
      for logits in (False, True) for i64 in (False, True) for nb in (256, 512, 1024, 2048)],
    ("_confusion_matrix_reduce_kernel", {"BLOCK": REDUCE_BLOCK}, ["i64"]),
]


@triton.jit
def _confusion_matrix_histogram_kernel(pred_ptr, target_ptr, hist_ptr, total, HW, W, C, ps0, ps1,
                                       ps2, ps3, ts0, ts1, ts2, K, KK, ignore_index, per_prog,
                                       LOGITS: tl.constexpr, INDEX_64: tl.constexpr,
                                       NBINS: tl.constexpr, BLOCK: tl.constexpr):
    idx_t: tl.constexpr = tl.int64 if INDEX_64 else tl.int32
    pid = tl.program_id(0).to(idx_t)
    bin0 = tl.program_id(1) * NBINS  # this program's bin slice [bin0, bin0 + NBINS)
    begin = pid * per_prog
    end = tl.minimum(begin + per_prog, total)
    hist = tl.zeros([NBINS], dtype=tl.int32)
    for start in range(begin, end, BLOCK):
        l = start + tl.arange(0, BLOCK).to(idx_t)
        live = l < end
        n = l // HW
        r = l - n * HW
        h = r // W
        w = r - h * W
        t = tl.load(target_ptr + n * ts0 + h * ts1 + w * ts2, mask=live, other=0).to(tl.int64)
        if LOGITS:
            base = n * ps0 + h * ps2 + w * ps3
            best = tl.load(pred_ptr + base, mask=live, other=0)
            if best.dtype != tl.float64:
                best = best.to(tl.float32)  # exact for fp16/bf16: the order is kept
            p = tl.zeros([BLOCK], dtype=tl.int32)
            for c in range(1, C):
                v = tl.load(pred_ptr + base + c * ps1, mask=live, other=0)
                if v.dtype != tl.float64:
                    v = v.to(tl.float32)
                take = (v > best) | ((v != v) & (best == best))  # argmax_takes
                best = tl.where(take, v, best)
                p = tl.where(take, c, p)
            p = p.to(tl.int64)
        else:
            p = tl.load(pred_ptr + n * ps0 + h * ps1 + w * ps2, mask=live, other=0).to(tl.int64)
        ok = live & (t != ignore_index) & (t >= 0) & (t < K) & (p >= 0) & (p < K)
        b = tl.where(ok, t * K + p, 0).to(tl.int32) - bin0  # < K*K < 2^31: checked by the caller
        ok = ok & (b >= 0) & (b < NBINS)
        hist += tl.histogram(tl.where(ok, b, 0), NBINS, mask=ok)
    bins = bin0 + tl.arange(0, NBINS)
    tl.store(hist_ptr + pid.to(tl.int64) * KK + bins, hist.to(tl.int64), mask=bins < KK)


@triton.jit
def _confusion_matrix_reduce_kernel(hist_ptr, cm_ptr, P, KK, BLOCK: tl.constexpr):
    sum_rows(hist_ptr, cm_ptr, P, KK, BLOCK)  # rows p = 0, 1, ..., P - 1: a fixed order


def num_bins(kk):
    """Bins of one histogram (a power of two in [MIN_BINS, MAX_BINS]) and the number of slices."""
    nb = min(MAX_BINS, max(MIN_BINS, triton.next_power_of_2(kk)))
    return nb, triton.cdiv(kk, nb)


def programs(total, kk, interpret):
    """(P, pixels per program): P <= MAX_PROGRAMS and P * K * K <= MAX_PARTIAL_ELEMS."""
    cap = max(1, min(MAX_PROGRAMS, MAX_PARTIAL_ELEMS // kk))
    if interpret:
        cap = min(cap, 64)
    p = max(1, min(cap, triton.cdiv(total, BLOCK)))
    per = triton.cdiv(triton.cdiv(total, p), BLOCK) * BLOCK
    return triton.cdiv(total, per), per


@launcher
def forward(pred, target, num_classes, ignore_index, out):
    """Write the (K, K) int64 confusion matrix of ``pred`` (N, H, W) labels or (N, C, H, W)
    logits against ``target`` (N, H, W) into ``out`` (contiguous); arguments checked by the caller."""
    import torch

    K = num_classes
    kk = K * K
    N, H, W = target.shape
    total = N * H * W
    if total == 0:
        out.zero_()
        return out
    P, per = programs(total, kk, triton_interpret())
    nb, slices = num_bins(kk)
    hist = torch.empty((P, kk), dtype=torch.int64, device=target.device)
    logits = pred.dim() == 4
    C = pred.shape[1] if logits else 1
    ps = pred.stride() if logits else (*pred.stride(), 0)
    index_64 = _needs_int64(pred, target) or total + per >= 2**30
    _confusion_matrix_histogram_kernel[(P, slices)](
        pred, target, hist, total, H * W, W, C, *ps, *target.stride(), K, kk, ignore_index, per,
        LOGITS=logits, INDEX_64=index_64, NBINS=nb, BLOCK=BLOCK, num_warps=NUM_WARPS)
    _confusion_matrix_reduce_kernel[(triton.cdiv(kk, REDUCE_BLOCK),)](
        hist, out, P, kk, BLOCK=REDUCE_BLOCK, num_warps=NUM_WARPS)
    return out
