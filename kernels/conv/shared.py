"""What the GEMM (gemm.py) and the depthwise (depthwise.py) kernels share: the fused epilogue, the
input gradient's tap enumeration (``tap_axis`` on the host, ``tap_range`` on the device), the
weight gradient's K blocks of output positions, and its deterministic second pass
(``_conv2d_wgrad_reduce_kernel``: the sum of the split-K partials in split order).

Argument groups (the kernels of this package take them as tuples, as the C++ kernels take
``Strides4`` / ``Geometry`` / ``TapAxis`` structs, csrc/common/conv.h):

* ``<tensor>_strides`` = (s0, s1, s2, s3): the strides of a 4-D tensor, in elements
  (``t.stride()``);
* ``conv`` = (sh, sw, ph, pw, dh, dw): stride, top/left padding and dilation (``conv_args``);
* ``taps_h``, ``taps_w`` = (g, step, inv): one axis of the input gradient's tap enumeration
  (``tap_axis``).
"""
import math

import triton
import triton.language as tl

from .._common import _decompose, _positions
from .tiles import BLOCK, NUM_WARPS


def conv_args(stride, padding, dilation):
    """The ``conv`` argument group (sh, sw, ph, pw, dh, dw) of the kernels."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    return sh, sw, ph, pw, dh, dw


def tap_axis(s, d):
    """(g, step, inv) of one axis for the dgrad tap enumeration: g = gcd(d, s), step = s / g,
    inv = (d / g)^-1 mod step."""
    g = math.gcd(d, s)
    step = s // g
    return g, step, (pow(d // g, -1, step) if step > 1 else 0)


@triton.jit
def tap_range(i, p, s, taps, K):
    """First tap, and the number of taps, that reach input index ``i`` along an axis of padding
    ``p``, stride ``s``, ``K`` taps and ``taps`` = (g, step, inv) (see the package docstring)."""
    g, step, inv = taps
    r = (i + p) % s
    k0 = ((r // g) * inv) % step
    count = (K - k0 + step - 1) // step
    return k0, tl.where(r % g == 0, count, 0)


@triton.jit
def epilogue(acc, b_ptr, r_ptr, oc, r_off, mask, scale,
             HAS_BIAS: tl.constexpr, HAS_RES: tl.constexpr, RELU: tl.constexpr):
    """residual + scale * act(acc + bias), in the accumulation type."""
    if HAS_BIAS:
        acc += tl.load(b_ptr + oc, mask=mask, other=0.0).to(acc.dtype)
    if RELU:
        acc = tl.where(acc < 0.0, 0.0, acc)  # NaN stays NaN, as F.relu (tl.maximum drops it)
    acc = acc * scale
    if HAS_RES:
        acc += tl.load(r_ptr + r_off, mask=mask, other=0.0).to(acc.dtype)
    return acc


@triton.jit
def wgrad_positions(p0, hi, H, W, OH, OW, kh, kw, conv, BLOCK: tl.constexpr):
    """The weight gradient's K block [p0, p0 + BLOCK) of output positions p = (n, oh, ow), cut at
    ``hi``, and the input pixel (ih, iw) tap (kh, kw) reads for each: (n, oh, ow, ih, iw, p_ok,
    x_ok), x_ok false where the tap falls in the padding."""
    sh, sw, ph, pw, dh, dw = conv
    p = p0 + tl.arange(0, BLOCK)
    p_ok = p < hi
    ow = p % OW
    t = p // OW
    oh = t % OH
    n = t // OH
    ih = oh * sh - ph + kh * dh
    iw = ow * sw - pw + kw * dw
    x_ok = p_ok & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
    return n, oh, ow, ih, iw, p_ok, x_ok


@triton.jit
def _conv2d_wgrad_reduce_kernel(part_ptr, gw_ptr,      # partials (SPLIT, OC, Cg, KH, KW); grad of w
                                E, SPLIT, Cg, KH, KW,  # sizes
                                gw_strides,            # (s0, s1, s2, s3)
                                INDEX_64: tl.constexpr, BLOCK: tl.constexpr):
    """gw[oc, c, kh, kw] = sum_s part[s, oc, c, kh, kw], in split order."""
    e = _positions(E, INDEX_64, BLOCK)
    ok = e < E
    acc = tl.load(part_ptr + e, mask=ok, other=0.0)
    for s in range(1, SPLIT):
        acc += tl.load(part_ptr + s * E + e, mask=ok, other=0.0)
    oc, c, kh, kw = _decompose(e, Cg, KH, KW, False)
    gs0, gs1, gs2, gs3 = gw_strides
    tl.store(gw_ptr + oc * gs0 + c * gs1 + kh * gs2 + kw * gs3,
             acc.to(gw_ptr.dtype.element_ty), mask=ok)


def wgrad_reduce(part, gw, index_64):
    """Write the sum over the split of the weight gradient's partials ``part`` (SPLIT, OC, Cg, KH,
    KW) into ``gw`` (OC, Cg, KH, KW), in split order."""
    _, Cg, KH, KW = gw.shape
    E = gw.numel()
    _conv2d_wgrad_reduce_kernel[(triton.cdiv(E, BLOCK),)](
        part, gw,
        E, part.shape[0], Cg, KH, KW,
        gw.stride(),
        INDEX_64=index_64, BLOCK=BLOCK, num_warps=NUM_WARPS)
