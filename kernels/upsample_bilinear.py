"""Triton kernels of bilinear upsampling (``F.interpolate(mode="bilinear")``), forward and backward.

Per axis the caller passes tables built once per call (``pydense.ops.upsample_bilinear``) with
PyTorch's source-index formula: for output index o, ``idx[0, o] = i0``, ``idx[1, o] = i1`` (the
two input taps, i1 = i0 + 1 clamped) and ``lam[0, o] = l0``, ``lam[1, o] = l1`` (their weights,
in the accumulation type);
for input index i, ``rng[0, i], rng[1, i]`` = the range of output indices whose taps include i.

Forward (a gather over the output)::

    out[n, c, oh, ow] = sum_{a, b in {0, 1}} lam_h[a, oh] * lam_w[b, ow] * x[n, c, idx_h[a, oh], idx_w[b, ow]]

Backward (a gather over the input: no atomics, a fixed summation order, bitwise deterministic)::

    grad_x[n, c, ih, iw] = sum_{oh in rng_h(ih)} sum_{ow in rng_w(iw)} wh(oh, ih) * ww(ow, iw) * g[n, c, oh, ow]
    wh(oh, ih) = lam_h[0, oh] * (idx_h[0, oh] == ih) + lam_h[1, oh] * (idx_h[1, oh] == ih)

With ``CONCAT`` the forward also writes UNet's skip concatenation in the same pass: output
channels ``c < CX`` are upsampled from x, channels ``c >= CX`` copy ``skip[:, c - CX]``
(``torch.cat([interpolate(x), skip], 1)`` without the intermediate upsampled tensor).

The loops run to ``MAXH``/``MAXW`` (an upper bound of the range lengths, a runtime scalar) with
masks. Arithmetic is in fp32 (half/bf16 converted right after loading), fp64 for fp64 data.
"""
import torch
import triton
import triton.language as tl

from ._common import (_decompose, _is_channels_last, _needs_int64, _positions, bilinear_gather,
                      launcher)

BLOCK = 512
NUM_WARPS = 4

# (kernel, constexprs[, data dtypes]): fp64 data accumulates in fp64, everything else in fp32.
CONFIGS = [(name, {"CHANNELS_LAST": cl, "INDEX_64": i64, "ACC_FP64": fp64, "BLOCK": BLOCK, **extra},
            ("fp64",) if fp64 else ("fp32", "fp16", "bf16"))
           for name, extra in (("_upsample_bilinear2d_fwd_kernel", {"CONCAT": False}),
                               ("_upsample_bilinear2d_fwd_kernel", {"CONCAT": True}),
                               ("_upsample_bilinear2d_bwd_kernel", {}))
           for cl in (False, True) for i64 in (False, True) for fp64 in (False, True)]


@triton.jit
def _upsample_bilinear2d_fwd_kernel(x_ptr, s_ptr, out_ptr, hidx_ptr, hlam_ptr, widx_ptr, wlam_ptr,
                                    xs0, xs1, xs2, xs3, ss0, ss1, ss2, ss3, os0, os1, os2, os3, C,
                                    CX, H, W, OH, OW, total,
                                    CHANNELS_LAST: tl.constexpr, INDEX_64: tl.constexpr,
                                    ACC_FP64: tl.constexpr, CONCAT: tl.constexpr,
                                    BLOCK: tl.constexpr):
    acc: tl.constexpr = tl.float64 if ACC_FP64 else tl.float32
    l = _positions(total, INDEX_64, BLOCK)
    n, c, oh, ow = _decompose(l, C, OH, OW, CHANNELS_LAST)
    o_ptr = out_ptr + n * os0 + c * os1 + oh * os2 + ow * os3
    live = l < total
    if CONCAT:  # channels >= CX: a copy of the skip tensor
        from_skip = live & (c >= CX)
        s = tl.load(s_ptr + n * ss0 + (c - CX) * ss1 + oh * ss2 + ow * ss3, mask=from_skip)
        tl.store(o_ptr, s, mask=from_skip)
        live = live & (c < CX)
    h0 = tl.load(hidx_ptr + oh, mask=live, other=0)
    h1 = tl.load(hidx_ptr + OH + oh, mask=live, other=0)
    lh0 = tl.load(hlam_ptr + oh, mask=live, other=0.0).to(acc)
    lh1 = tl.load(hlam_ptr + OH + oh, mask=live, other=0.0).to(acc)
    w0 = tl.load(widx_ptr + ow, mask=live, other=0)
    w1 = tl.load(widx_ptr + OW + ow, mask=live, other=0)
    lw0 = tl.load(wlam_ptr + ow, mask=live, other=0.0).to(acc)
    lw1 = tl.load(wlam_ptr + OW + ow, mask=live, other=0.0).to(acc)
    v = bilinear_gather(x_ptr + n * xs0 + c * xs1, H, W, xs2, xs3, h0, h1, w0, w1,
                        lh0, lh1, lw0, lw1, live, acc)
    tl.store(o_ptr, v.to(out_ptr.dtype.element_ty), mask=live)


@triton.jit
def _tap_weight(idx_ptr, lam_ptr, o, i, OUT, mask):
    """Weight of input index ``i`` in output ``o``'s two taps (0 where it is neither)."""
    i0 = tl.load(idx_ptr + o, mask=mask, other=-1)
    i1 = tl.load(idx_ptr + OUT + o, mask=mask, other=-1)
    l0 = tl.load(lam_ptr + o, mask=mask, other=0.0)
    l1 = tl.load(lam_ptr + OUT + o, mask=mask, other=0.0)
    return tl.where(i0 == i, l0, 0.0) + tl.where(i1 == i, l1, 0.0)


@triton.jit
def _upsample_bilinear2d_bwd_kernel(go_ptr, gi_ptr, hidx_ptr, hlam_ptr, hrng_ptr, widx_ptr,
                                    wlam_ptr, wrng_ptr, gs0, gs1, gs2, gs3, xs0, xs1, xs2, xs3, C,
                                    H, W, OH, OW, MAXH, MAXW, total,
                                    CHANNELS_LAST: tl.constexpr, INDEX_64: tl.constexpr,
                                    ACC_FP64: tl.constexpr, BLOCK: tl.constexpr):
    acc_t: tl.constexpr = tl.float64 if ACC_FP64 else tl.float32
    l = _positions(total, INDEX_64, BLOCK)
    live = l < total
    n, c, ih, iw = _decompose(l, C, H, W, CHANNELS_LAST)
    h_start = tl.load(hrng_ptr + ih, mask=live, other=0)
    h_end = tl.load(hrng_ptr + H + ih, mask=live, other=0)
    w_start = tl.load(wrng_ptr + iw, mask=live, other=0)
    w_end = tl.load(wrng_ptr + W + iw, mask=live, other=0)
    base = go_ptr + n * gs0 + c * gs1
    acc = tl.zeros([BLOCK], dtype=acc_t)
    for k in range(0, MAXH):
        oh = h_start + k
        mh = live & (oh >= 0) & (oh < h_end) & (oh < OH)  # no table entry reads outside
        wh = _tap_weight(hidx_ptr, hlam_ptr, oh, ih, OH, mh).to(acc_t)
        row = tl.zeros([BLOCK], dtype=acc_t)
        for m in range(0, MAXW):
            ow = w_start + m
            mw = mh & (ow >= 0) & (ow < w_end) & (ow < OW)
            ww = _tap_weight(widx_ptr, wlam_ptr, ow, iw, OW, mw).to(acc_t)
            g = tl.load(base + oh * gs2 + ow * gs3, mask=mw, other=0.0).to(acc_t)
            row += ww * g
        acc += wh * row
    tl.store(gi_ptr + n * xs0 + c * xs1 + ih * xs2 + iw * xs3,
             acc.to(gi_ptr.dtype.element_ty), mask=live)


@launcher
def forward(input, skip, h_idx, h_lam, w_idx, w_lam, out):
    """Write the bilinear upsampling of ``input`` into ``out`` (both 4-D) from the axis tables;
    with ``skip``, write ``cat([upsampled input, skip], 1)`` (out has C + C_skip channels)."""
    total = out.numel()
    if total == 0:
        return out
    s = input if skip is None else skip
    _upsample_bilinear2d_fwd_kernel[(triton.cdiv(total, BLOCK),)](
        input, s, out, h_idx, h_lam, w_idx, w_lam, *input.stride(), *s.stride(), *out.stride(),
        out.shape[1], input.shape[1], input.shape[2], input.shape[3], out.shape[2], out.shape[3], total,
        CHANNELS_LAST=_is_channels_last(out), INDEX_64=_needs_int64(input, s, out),
        ACC_FP64=input.dtype == torch.float64, CONCAT=skip is not None, BLOCK=BLOCK,
        num_warps=NUM_WARPS)
    return out


@launcher
def backward(grad_output, h_idx, h_lam, h_rng, w_idx, w_lam, w_rng, grad_input, *, max_len):
    """Write the input gradient into ``grad_input`` (4-D) from the axis tables (idx, lam, rng);
    ``max_len`` = (rows, columns): upper bounds of the ranges' lengths (the loop bounds, which the
    compiled kernels do not need)."""
    total = grad_input.numel()
    if total == 0:
        return grad_input
    _, C, H, W = grad_input.shape
    OH, OW = grad_output.shape[2], grad_output.shape[3]
    _upsample_bilinear2d_bwd_kernel[(triton.cdiv(total, BLOCK),)](
        grad_output, grad_input, h_idx, h_lam, h_rng, w_idx, w_lam, w_rng,
        *grad_output.stride(), *grad_input.stride(),
        C, H, W, OH, OW, *max_len, total, CHANNELS_LAST=_is_channels_last(grad_input),
        INDEX_64=_needs_int64(grad_output, grad_input), ACC_FP64=grad_input.dtype == torch.float64,
        BLOCK=BLOCK, num_warps=NUM_WARPS)
    return grad_input
