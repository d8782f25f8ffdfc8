"""The direct kernels of depthwise convolutions (Cg == 1, any channel multiplier OCg = MULT): these
are memory-bound and have no GEMM worth the name. ``_conv2d_dw_fwd_kernel`` (one output element
per lane, taps unrolled up to DW_STATIC_TAPS_MAX, the forward's fused epilogue),
``_conv2d_dw_dgrad_kernel`` (a gather with the per-element tap sequence) and
``_conv2d_dw_wgrad_kernel`` (2-D tiles of positions x channels, reduced in a fixed order, split-K
partials for shared.wgrad_reduce), with their host launchers ``fwd``, ``dgrad`` and ``wgrad``.

The launchers take checked, non-empty tensors from the device-guarded launchers of
``pydense.kernels.conv`` (which decide the index width), and lay out each launch in the argument
groups of the kernel's signature (shared.py): tensors, their strides, ``conv``, then the sizes.
"""
import torch
import triton
import triton.language as tl

from .._common import _decompose, _is_channels_last, _positions
from .shared import epilogue, tap_axis, tap_range, wgrad_positions
from .tiles import BLOCK, DW_BC, DW_BP, DW_STATIC_TAPS_MAX, NUM_WARPS, split_k


@triton.jit
def _dw_fwd_tap(acc, x_base, w_base, oh, ow, live, kh, kw, H, W, x_strides, w_strides, conv):
    sh, sw, ph, pw, dh, dw = conv
    ih = oh * sh - ph + kh * dh
    iw = ow * sw - pw + kw * dw
    ok = live & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
    v = tl.load(x_base + ih * x_strides[2] + iw * x_strides[3], mask=ok, other=0.0).to(acc.dtype)
    wt = tl.load(w_base + kh * w_strides[2] + kw * w_strides[3], mask=live, other=0.0).to(acc.dtype)
    return acc + v * wt


@triton.jit
def _conv2d_dw_fwd_kernel(x_ptr, w_ptr, b_ptr, r_ptr, out_ptr,           # x, w, bias, residual, out
                          H, W, OC, OH, OW, MULT, total,                 # sizes
                          x_strides, w_strides, r_strides, out_strides,  # (s0, s1, s2, s3) of each
                          conv, scale,                                   # (sh, sw, ph, pw, dh, dw)
                          KH: tl.constexpr, KW: tl.constexpr, STATIC_TAPS: tl.constexpr,
                          HAS_BIAS: tl.constexpr, HAS_RES: tl.constexpr, RELU: tl.constexpr,
                          CHANNELS_LAST: tl.constexpr, ACC_FP64: tl.constexpr,
                          INDEX_64: tl.constexpr, BLOCK: tl.constexpr):
    acc_t: tl.constexpr = tl.float64 if ACC_FP64 else tl.float32
    l = _positions(total, INDEX_64, BLOCK)
    live = l < total
    n, oc, oh, ow = _decompose(l, OC, OH, OW, CHANNELS_LAST)
    x_base = x_ptr + n * x_strides[0] + (oc // MULT) * x_strides[1]
    w_base = w_ptr + oc * w_strides[0]
    acc = tl.zeros([BLOCK], dtype=acc_t)
    if STATIC_TAPS:
        for tap in tl.static_range(KH * KW):
            acc = _dw_fwd_tap(acc, x_base, w_base, oh, ow, live, tap // KW, tap % KW, H, W,
                              x_strides, w_strides, conv)
    else:
        for kh in range(KH):
            for kw in range(KW):
                acc = _dw_fwd_tap(acc, x_base, w_base, oh, ow, live, kh, kw, H, W,
                                  x_strides, w_strides, conv)
    rs0, rs1, rs2, rs3 = r_strides
    acc = epilogue(acc, b_ptr, r_ptr, oc, n * rs0 + oc * rs1 + oh * rs2 + ow * rs3, live, scale,
                   HAS_BIAS, HAS_RES, RELU)
    os0, os1, os2, os3 = out_strides
    tl.store(out_ptr + n * os0 + oc * os1 + oh * os2 + ow * os3,
             acc.to(out_ptr.dtype.element_ty), mask=live)


@triton.jit
def _conv2d_dw_dgrad_kernel(gy_ptr, w_ptr, b_ptr, gx_ptr,        # grad of y, w, bias, grad of x
                            C, H, W, OH, OW, MULT, total,        # sizes
                            gy_strides, w_strides, gx_strides,   # (s0, s1, s2, s3) of each
                            conv,                                # (sh, sw, ph, pw, dh, dw)
                            taps_h, taps_w, MAXA, MAXB, KH, KW,  # (g, step, inv) per axis; taps
                            HAS_BIAS: tl.constexpr, CHANNELS_LAST: tl.constexpr,
                            ACC_FP64: tl.constexpr, INDEX_64: tl.constexpr, BLOCK: tl.constexpr):
    """dx[n, c, ih, iw] over the taps that reach (ih, iw) and the MULT output channels of c.
    MAXA/MAXB: the most taps any index meets per axis (cdiv(K, step))."""
    acc_t: tl.constexpr = tl.float64 if ACC_FP64 else tl.float32
    sh, sw, ph, pw, dh, dw = conv
    gs0, gs1, gs2, gs3 = gy_strides
    ws0, ws1, ws2, ws3 = w_strides
    xs0, xs1, xs2, xs3 = gx_strides
    l = _positions(total, INDEX_64, BLOCK)
    live = l < total
    n, c, ih, iw = _decompose(l, C, H, W, CHANNELS_LAST)
    kh0, nkh = tap_range(ih, ph, sh, taps_h, KH)
    kw0, nkw = tap_range(iw, pw, sw, taps_w, KW)
    acc = tl.zeros([BLOCK], dtype=acc_t)
    for mu in range(MULT):
        oc = c * MULT + mu
        gy_base = gy_ptr + n * gs0 + oc * gs1
        w_base = w_ptr + oc * ws0
        for a in range(MAXA):
            kh = kh0 + a * taps_h[1]
            oh = (ih + ph - kh * dh) // sh
            h_ok = live & (a < nkh) & (oh >= 0) & (oh < OH)
            for b in range(MAXB):
                kw = kw0 + b * taps_w[1]
                ow = (iw + pw - kw * dw) // sw
                ok = h_ok & (b < nkw) & (ow >= 0) & (ow < OW)
                v = tl.load(gy_base + oh * gs2 + ow * gs3, mask=ok, other=0.0).to(acc_t)
                wt = tl.load(w_base + kh * ws2 + kw * ws3, mask=ok, other=0.0).to(acc_t)
                acc += v * wt
    if HAS_BIAS:
        acc += tl.load(b_ptr + c, mask=live, other=0.0).to(acc_t)
    tl.store(gx_ptr + n * xs0 + c * xs1 + ih * xs2 + iw * xs3,
             acc.to(gx_ptr.dtype.element_ty), mask=live)


@triton.jit
def _conv2d_dw_wgrad_kernel(gy_ptr, x_ptr, part_ptr,                   # grad of y, x, partials
                            H, W, OC, OH, OW, MULT, P, KH, KW, chunk,  # sizes; positions per split
                            gy_strides, x_strides,                     # (s0, s1, s2, s3) of each
                            conv,                                      # (sh, sw, ph, pw, dh, dw)
                            ACC_FP64: tl.constexpr, INDEX_64: tl.constexpr,
                            BP: tl.constexpr, BC: tl.constexpr):
    """Program (channel block, tap, split): partial[split, oc, tap] = sum over one chunk of
    positions of dy * x, accumulated per lane and reduced once, in a fixed order."""
    acc_t: tl.constexpr = tl.float64 if ACC_FP64 else tl.float32
    idx_t: tl.constexpr = tl.int64 if INDEX_64 else tl.int32
    gs0, gs1, gs2, gs3 = gy_strides
    xs0, xs1, xs2, xs3 = x_strides
    tap = tl.program_id(1)
    split = tl.program_id(2)
    kh = tap // KW
    kw = tap % KW
    oc = (tl.program_id(0) * BC + tl.arange(0, BC)).to(idx_t)
    oc_ok = oc < OC
    c = oc // MULT
    lo = split.to(idx_t) * chunk
    hi = tl.minimum(lo + chunk, P)
    acc = tl.zeros([BP, BC], dtype=acc_t)
    for p0 in range(lo, hi, BP):
        n, oh, ow, ih, iw, p_ok, x_ok = wgrad_positions(p0, hi, H, W, OH, OW, kh, kw, conv, BP)
        a = tl.load(gy_ptr + (n * gs0 + oh * gs2 + ow * gs3)[:, None] + (oc * gs1)[None, :],
                    mask=p_ok[:, None] & oc_ok[None, :], other=0.0).to(acc_t)
        b = tl.load(x_ptr + (n * xs0 + ih * xs2 + iw * xs3)[:, None] + (c * xs1)[None, :],
                    mask=x_ok[:, None] & oc_ok[None, :], other=0.0).to(acc_t)
        acc += a * b
    tl.store(part_ptr + (split * OC + oc) * (KH * KW) + tap, tl.sum(acc, axis=0), mask=oc_ok)


# ---------------------------------------------------------------------------------------------
# Host side


def fwd(x, w, b, r, out, conv, scale, index_64, *, has_bias, has_res, relu):
    """Write ``r + scale * act(conv2d(x, w) + b)`` of a depthwise convolution (``b``, ``r``:
    stand-ins when absent) into ``out``."""
    N, C, H, W = x.shape
    OC, _, KH, KW = w.shape
    _, _, OH, OW = out.shape
    total = out.numel()
    _conv2d_dw_fwd_kernel[(triton.cdiv(total, BLOCK),)](
        x, w, b, r, out,
        H, W, OC, OH, OW, OC // C, total,
        x.stride(), w.stride(), r.stride(), out.stride(),
        conv, scale,
        KH=KH, KW=KW, STATIC_TAPS=KH * KW <= DW_STATIC_TAPS_MAX,
        HAS_BIAS=has_bias, HAS_RES=has_res, RELU=relu, CHANNELS_LAST=_is_channels_last(out),
        ACC_FP64=x.dtype == torch.float64, INDEX_64=index_64, BLOCK=BLOCK, num_warps=NUM_WARPS)


def dgrad(gy, w, b, gx, conv, index_64, *, has_bias):
    """Write the input gradient of a depthwise conv2d (plus the bias ``b`` per channel of ``gx``
    when ``has_bias``) into ``gx``."""
    N, C, H, W = gx.shape
    OC, _, KH, KW = w.shape
    _, _, OH, OW = gy.shape
    sh, sw, _, _, dh, dw = conv
    taps_h, taps_w = tap_axis(sh, dh), tap_axis(sw, dw)
    max_a, max_b = triton.cdiv(KH, taps_h[1]), triton.cdiv(KW, taps_w[1])  # most taps per axis
    total = gx.numel()
    _conv2d_dw_dgrad_kernel[(triton.cdiv(total, BLOCK),)](
        gy, w, b, gx,
        C, H, W, OH, OW, OC // C, total,
        gy.stride(), w.stride(), gx.stride(),
        conv,
        taps_h, taps_w, max_a, max_b, KH, KW,
        HAS_BIAS=has_bias, CHANNELS_LAST=_is_channels_last(gx), ACC_FP64=gx.dtype == torch.float64,
        INDEX_64=index_64, BLOCK=BLOCK, num_warps=NUM_WARPS)


def wgrad(gy, x, gw, conv, index_64, part_dtype):
    """The depthwise weight gradient's split-K partials (SPLIT, OC, 1, KH, KW) in ``part_dtype``,
    for shared.wgrad_reduce; ``gw`` gives the shape."""
    N, C, H, W = x.shape
    OC, _, KH, KW = gw.shape
    _, _, OH, OW = gy.shape
    P = N * OH * OW
    split = split_k(triton.cdiv(OC, DW_BC) * KH * KW, P, DW_BP)
    chunk = triton.cdiv(triton.cdiv(P, split), DW_BP) * DW_BP
    part = torch.empty((split, OC, 1, KH, KW), dtype=part_dtype, device=x.device)
    _conv2d_dw_wgrad_kernel[(triton.cdiv(OC, DW_BC), KH * KW, split)](
        gy, x, part,
        H, W, OC, OH, OW, OC // C, P, KH, KW, chunk,
        gy.stride(), x.stride(),
        conv,
        ACC_FP64=part_dtype == torch.float64, INDEX_64=index_64, BP=DW_BP, BC=DW_BC,
        num_warps=NUM_WARPS)
    return part
