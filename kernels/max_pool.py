"""Triton kernels of max_pool2d_with_indices (forward and the gather backward).

Math (``torch.nn.functional.max_pool2d(..., return_indices=True)``, ATen's rule)::

    taps of output (oh, ow): (ih, iw) = (oh*SH - PH + kh*DH, ow*SW - PW + kw*DW), kh < KH, kw < KW
    scanning in-bounds taps in row-major order from max = -inf, a tap replaces the running max
    iff v > max or v is NaN (first of equal maxima wins; last NaN wins); the running index starts
    at the first in-bounds tap
    index = ih * W + iw (int64, flat) or kh * KW + kw (uint8, compact)

    grad_input[n, c, ih, iw] = sum over taps (kh, kw), windows (oh, ow) holding (ih, iw) as that
                               tap and whose index names it, of grad_output[n, c, oh, ow]

The backward is a gather over the input in a fixed tap order (deterministic, no atomics).
Comparisons and sums run in fp32 (fp64 for fp64 data); values are converted right after loading.
The index math mirrors ``csrc/common/max_pool.h`` (first_tap, window_of_tap).
"""
import triton
import triton.language as tl

from ._common import _decompose, _is_channels_last, _needs_int64, _positions, launcher

BLOCK = 256
NUM_WARPS = 8  # 1 element per thread: no spills in the AOT table, <= 51 registers (2 or 4 per thread spilled)

# Every compile-time configuration the launchers use: (kernel name, constexprs[, dtypes]).
# ACC_FP64 is set exactly for float64 data, so those rows compile for fp64 only.
CONFIGS = [
    (name, {"CHANNELS_LAST": cl, "INDEX_64": i64, "COMPACT": cp, "ACC_FP64": f64, "BLOCK": BLOCK},
     *([["fp64"]] if f64 else []))
    for name in ("_max_pool2d_fwd_kernel", "_max_pool2d_bwd_kernel") for f64 in (False, True)
    for cl in (False, True) for i64 in (False, True) for cp in (False, True)
]


@triton.jit
def _first_tap(h0, D):
    """First in-bounds tap coordinate of a window starting at h0 (h0 + k*D >= 0)."""
    return tl.where(h0 < 0, h0 + ((D - 1 - h0) // D) * D, h0)


@triton.jit
def _max_pool2d_fwd_kernel(x_ptr, out_ptr, idx_ptr, xs0, xs1, xs2, xs3, os0, os1, os2, os3, is0,
                           is1, is2, is3, C, H, W, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW, total,
                           CHANNELS_LAST: tl.constexpr, INDEX_64: tl.constexpr,
                           COMPACT: tl.constexpr, ACC_FP64: tl.constexpr, BLOCK: tl.constexpr):
    acc_t: tl.constexpr = tl.float64 if ACC_FP64 else tl.float32
    l = _positions(total, INDEX_64, BLOCK)
    live = l < total
    n, c, oh, ow = _decompose(l, C, OH, OW, CHANNELS_LAST)
    h0 = oh * SH - PH
    w0 = ow * SW - PW
    hf = _first_tap(h0, DH)
    wf = _first_tap(w0, DW)
    if COMPACT:
        arg = ((hf - h0) // DH) * KW + (wf - w0) // DW
    else:
        arg = hf.to(tl.int64) * W + wf
    best = tl.full([BLOCK], float("-inf"), acc_t)
    base = x_ptr + n * xs0 + c * xs1
    for kh in range(0, KH):
        ih = h0 + kh * DH
        hok = live & (ih >= 0) & (ih < H)
        for kw in range(0, KW):
            iw = w0 + kw * DW
            m = hok & (iw >= 0) & (iw < W)
            v = tl.load(base + ih * xs2 + iw * xs3, mask=m, other=0).to(acc_t)
            upd = m & ((v > best) | (v != v))
            best = tl.where(upd, v, best)
            if COMPACT:
                arg = tl.where(upd, kh * KW + kw, arg)
            else:
                arg = tl.where(upd, ih.to(tl.int64) * W + iw, arg)
    tl.store(out_ptr + n * os0 + c * os1 + oh * os2 + ow * os3,
             best.to(out_ptr.dtype.element_ty), mask=live)
    tl.store(idx_ptr + n * is0 + c * is1 + oh * is2 + ow * is3,
             arg.to(idx_ptr.dtype.element_ty), mask=live)


@triton.jit
def _max_pool2d_bwd_kernel(go_ptr, idx_ptr, gi_ptr, gs0, gs1, gs2, gs3, is0, is1, is2, is3, xs0,
                           xs1, xs2, xs3, C, H, W, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW, total,
                           CHANNELS_LAST: tl.constexpr, INDEX_64: tl.constexpr,
                           COMPACT: tl.constexpr, ACC_FP64: tl.constexpr, BLOCK: tl.constexpr):
    acc_t: tl.constexpr = tl.float64 if ACC_FP64 else tl.float32
    l = _positions(total, INDEX_64, BLOCK)
    live = l < total
    n, c, ih, iw = _decompose(l, C, H, W, CHANNELS_LAST)
    acc = tl.zeros([BLOCK], acc_t)
    gbase = go_ptr + n * gs0 + c * gs1
    ibase = idx_ptr + n * is0 + c * is1
    flat = ih.to(tl.int64) * W + iw
    for kh in range(0, KH):
        num_h = ih + PH - kh * DH  # window_of_tap along H
        oh = tl.maximum(num_h, 0) // SH
        hok = live & (num_h >= 0) & (oh * SH == num_h) & (oh < OH)
        for kw in range(0, KW):
            num_w = iw + PW - kw * DW
            ow = tl.maximum(num_w, 0) // SW
            m = hok & (num_w >= 0) & (ow * SW == num_w) & (ow < OW)
            j = tl.load(ibase + oh * is2 + ow * is3, mask=m, other=0)
            if COMPACT:
                hit = m & (j.to(tl.int32) == kh * KW + kw)
            else:
                hit = m & (j == flat)
            acc += tl.load(gbase + oh * gs2 + ow * gs3, mask=hit, other=0).to(acc_t)
    tl.store(gi_ptr + n * xs0 + c * xs1 + ih * xs2 + iw * xs3, acc.to(gi_ptr.dtype.element_ty),
             mask=live)


@launcher
def forward(input, kernel_size, stride, padding, dilation, out, indices):
    """Write max_pool2d(input) into ``out`` and its indices (int64 flat or uint8 compact, by
    ``indices.dtype``) into ``indices``; all 4-D, checked by the caller."""
    import torch

    total = out.numel()
    if total == 0:
        return out, indices
    _, C, H, W = input.shape
    OH, OW = out.shape[2], out.shape[3]
    (KH, KW), (SH, SW), (PH, PW), (DH, DW) = kernel_size, stride, padding, dilation
    _max_pool2d_fwd_kernel[(triton.cdiv(total, BLOCK),)](
        input, out, indices, *input.stride(), *out.stride(), *indices.stride(),
        C, H, W, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW, total,
        CHANNELS_LAST=_is_channels_last(out), INDEX_64=_needs_int64(input, out, indices),
        COMPACT=indices.dtype == torch.uint8, ACC_FP64=input.dtype == torch.float64,
        BLOCK=BLOCK, num_warps=NUM_WARPS)
    return out, indices


@launcher
def backward(grad_output, indices, kernel_size, stride, padding, dilation, grad_input):
    """Write the max_pool2d input gradient into ``grad_input`` (N, C, H, W)."""
    import torch

    total = grad_input.numel()
    if total == 0:
        return grad_input
    _, C, H, W = grad_input.shape
    OH, OW = grad_output.shape[2], grad_output.shape[3]
    (KH, KW), (SH, SW), (PH, PW), (DH, DW) = kernel_size, stride, padding, dilation
    _max_pool2d_bwd_kernel[(triton.cdiv(total, BLOCK),)](
        grad_output, indices, grad_input, *grad_output.stride(), *indices.stride(),
        *grad_input.stride(), C, H, W, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW, total,
        CHANNELS_LAST=_is_channels_last(grad_input),
        INDEX_64=_needs_int64(grad_output, indices, grad_input),
        COMPACT=indices.dtype == torch.uint8, ACC_FP64=grad_input.dtype == torch.float64,
        BLOCK=BLOCK, num_warps=NUM_WARPS)
    return grad_input
