"""The implicit-GEMM kernels of dense and grouped convolutions (see the package docstring for the
math): the forward with its fused epilogue (``_conv2d_fwd_kernel``, also into the pixel-shuffled
layout), the input gradient by stride phase (``_conv2d_dgrad_kernel``) and the weight gradient's
split-K partials (``_conv2d_wgrad_kernel``), with their host launchers ``fwd``, ``dgrad`` and
``wgrad``.

The launchers take checked, non-empty tensors from the device-guarded launchers of
``pydense.kernels.conv`` (which decide the index width), and lay out each launch in the argument
groups of the kernel's signature (shared.py): tensors, their strides, ``conv``, then the sizes.
"""
import functools

import torch
import triton
import triton.language as tl

from .._common import k_loop
from .shared import epilogue, tap_axis, tap_range, wgrad_positions
from .tiles import (STATIC_TAPS_MAX, autotune, autotune_enabled, gemm_tile, precision, split_k,
                    upcast, wgrad_tile)


@triton.jit
def _fwd_tap(acc, x_ptr, w_ptr, x_row, oh, ow, m_ok, w_col, oc_ok, kk, kh, kw, H, W, Cg,
             x_strides, w_strides, conv,
             BK: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    sh, sw, ph, pw, dh, dw = conv
    ih = oh * sh - ph + kh * dh
    iw = ow * sw - pw + kw * dw
    ok = m_ok & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
    return k_loop(acc, x_ptr, x_row + ih * x_strides[2] + iw * x_strides[3], ok, x_strides[1],
                  w_ptr, w_col + kh * w_strides[2] + kw * w_strides[3], oc_ok, w_strides[1], Cg, kk,
                  BK, PRECISION, UPCAST)


@triton.jit
def _out_offsets(n, oh, ow, oc, strides, SHUFFLE: tl.constexpr):
    """Offsets (row part, column part) of the convolution's output (n, oh, ow) x channel ``oc`` in
    a tensor of ``strides``: the output itself (SHUFFLE == 1) or its pixel shuffle by SHUFFLE = r,
    where (oc = c*r*r + i*r + j, oh, ow) lands at (c, oh*r + i, ow*r + j)."""
    s0, s1, s2, s3 = strides
    if SHUFFLE == 1:
        row = n * s0 + oh * s2 + ow * s3
        col = oc * s1
    else:
        c = oc // (SHUFFLE * SHUFFLE)
        i = (oc // SHUFFLE) % SHUFFLE
        j = oc % SHUFFLE
        row = n * s0 + oh * (SHUFFLE * s2) + ow * (SHUFFLE * s3)
        col = c * s1 + i * s2 + j * s3
    return row, col


@triton.jit
def _conv2d_fwd_kernel(x_ptr, w_ptr, b_ptr, r_ptr, out_ptr,           # x, w, bias, residual, out
                       H, W, OH, OW, M, Cg, OCg,                      # sizes
                       x_strides, w_strides, r_strides, out_strides,  # (s0, s1, s2, s3) of each
                       conv, scale,                                   # (sh, sw, ph, pw, dh, dw)
                       KH: tl.constexpr, KW: tl.constexpr, STATIC_TAPS: tl.constexpr,
                       HAS_BIAS: tl.constexpr, HAS_RES: tl.constexpr, RELU: tl.constexpr,
                       PRECISION: tl.constexpr, UPCAST: tl.constexpr, ACC_FP64: tl.constexpr,
                       INDEX_64: tl.constexpr, SHUFFLE: tl.constexpr,
                       BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """out (and residual) strides are the output's: the convolution's, or its pixel shuffle by
    SHUFFLE (OH, OW are the convolution's)."""
    acc_t: tl.constexpr = tl.float64 if ACC_FP64 else tl.float32
    idx_t: tl.constexpr = tl.int64 if INDEX_64 else tl.int32
    g = tl.program_id(2)
    m = tl.program_id(0).to(idx_t) * BM + tl.arange(0, BM)
    j = tl.program_id(1) * BN + tl.arange(0, BN)
    kk = tl.arange(0, BK).to(idx_t)
    m_ok = m < M
    oc_ok = j < OCg
    ow = m % OW
    t = m // OW
    oh = t % OH
    n = t // OH
    oc = (g * OCg + j).to(idx_t)
    x_row = n * x_strides[0] + (g * Cg).to(idx_t) * x_strides[1]  # + the tap's (ih, iw) offset
    w_col = oc * w_strides[0]
    acc = tl.zeros([BM, BN], dtype=acc_t)
    if STATIC_TAPS:
        for tap in tl.static_range(KH * KW):
            acc = _fwd_tap(acc, x_ptr, w_ptr, x_row, oh, ow, m_ok, w_col, oc_ok, kk,
                           tap // KW, tap % KW, H, W, Cg, x_strides, w_strides, conv,
                           BK, PRECISION, UPCAST)
    else:
        for kh in range(KH):
            for kw in range(KW):
                acc = _fwd_tap(acc, x_ptr, w_ptr, x_row, oh, ow, m_ok, w_col, oc_ok, kk,
                               kh, kw, H, W, Cg, x_strides, w_strides, conv,
                               BK, PRECISION, UPCAST)
    mask = m_ok[:, None] & oc_ok[None, :]
    r_row, r_col = _out_offsets(n, oh, ow, oc, r_strides, SHUFFLE)
    acc = epilogue(acc, b_ptr, r_ptr, oc[None, :], r_row[:, None] + r_col[None, :], mask, scale,
                   HAS_BIAS, HAS_RES, RELU)
    o_row, o_col = _out_offsets(n, oh, ow, oc, out_strides, SHUFFLE)
    tl.store(out_ptr + o_row[:, None] + o_col[None, :], acc.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _conv2d_dgrad_kernel(gy_ptr, w_ptr, b_ptr, gx_ptr,       # grad of y, w, bias, grad of x
                         H, W, OH, OW, QH, QW, M, Cg, OCg,   # sizes
                         gy_strides, w_strides, gx_strides,  # (s0, s1, s2, s3) of each
                         conv,                               # (sh, sw, ph, pw, dh, dw)
                         taps_h, taps_w, KH, KW,             # (g, step, inv) per axis; taps
                         HAS_BIAS: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr,
                         ACC_FP64: tl.constexpr, INDEX_64: tl.constexpr,
                         BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """One stride phase (rh, rw) of one group per program column: M = N * QH * QW positions
    ih = rh + qh*sh, iw = rw + qw*sw."""
    acc_t: tl.constexpr = tl.float64 if ACC_FP64 else tl.float32
    idx_t: tl.constexpr = tl.int64 if INDEX_64 else tl.int32
    sh, sw, ph, pw, dh, dw = conv
    gs0, gs1, gs2, gs3 = gy_strides
    ws0, ws1, ws2, ws3 = w_strides
    xs0, xs1, xs2, xs3 = gx_strides
    z = tl.program_id(2)
    phase = z % (sh * sw)
    g = z // (sh * sw)
    rh = phase // sw
    rw = phase % sw
    m = tl.program_id(0).to(idx_t) * BM + tl.arange(0, BM)
    j = tl.program_id(1) * BN + tl.arange(0, BN)
    kk = tl.arange(0, BK).to(idx_t)
    qw = m % QW
    t = m // QW
    qh = t % QH
    n = t // QH
    ih = rh + qh * sh
    iw = rw + qw * sw
    m_ok = (m < M) & (ih < H) & (iw < W)
    c_ok = j < Cg
    c = (g * Cg + j).to(idx_t)
    gy_row0 = n * gs0 + (g * OCg).to(idx_t) * gs1
    w_col0 = j.to(idx_t) * ws1 + (g * OCg).to(idx_t) * ws0  # weight column of channel j of group g
    kh0, nkh = tap_range(rh, ph, sh, taps_h, KH)
    kw0, nkw = tap_range(rw, pw, sw, taps_w, KW)
    acc = tl.zeros([BM, BN], dtype=acc_t)
    for a in range(nkh):
        kh = kh0 + a * taps_h[1]
        oh = qh + (rh + ph - kh * dh) // sh
        h_ok = m_ok & (oh >= 0) & (oh < OH)
        for b in range(nkw):
            kw = kw0 + b * taps_w[1]
            ow = qw + (rw + pw - kw * dw) // sw
            ok = h_ok & (ow >= 0) & (ow < OW)
            acc = k_loop(acc, gy_ptr, gy_row0 + oh * gs2 + ow * gs3, ok, gs1,
                         w_ptr, w_col0 + kh * ws2 + kw * ws3, c_ok, ws0, OCg, kk,
                         BK, PRECISION, UPCAST)
    mask = m_ok[:, None] & c_ok[None, :]
    if HAS_BIAS:  # transposed convolution's bias, per output (= our input) channel
        acc += tl.load(b_ptr + c, mask=c_ok, other=0.0).to(acc_t)[None, :]
    x_off = (n * xs0 + ih * xs2 + iw * xs3)[:, None] + (c * xs1)[None, :]
    tl.store(gx_ptr + x_off, acc.to(gx_ptr.dtype.element_ty), mask=mask)


_conv2d_fwd_kernel_tuned = autotune(key=["M", "OCg", "Cg"])(_conv2d_fwd_kernel)
_conv2d_dgrad_kernel_tuned = autotune(key=["M", "OCg", "Cg"])(_conv2d_dgrad_kernel)


@triton.jit
def _conv2d_wgrad_kernel(gy_ptr, x_ptr, part_ptr,                      # grad of y, x, partials
                         H, W, OH, OW, P, Cg, OCg, OC, KH, KW, chunk,  # sizes; positions per split
                         gy_strides, x_strides,                        # (s0, s1, s2, s3) of each
                         conv,                                         # (sh, sw, ph, pw, dh, dw)
                         PRECISION: tl.constexpr, UPCAST: tl.constexpr, ACC_FP64: tl.constexpr,
                         INDEX_64: tl.constexpr,
                         BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """Program (tile, tap, group) x split: the partial dW tile of one K chunk."""
    acc_t: tl.constexpr = tl.float64 if ACC_FP64 else tl.float32
    idx_t: tl.constexpr = tl.int64 if INDEX_64 else tl.int32
    gs0, gs1, gs2, gs3 = gy_strides
    xs0, xs1, xs2, xs3 = x_strides
    pid = tl.program_id(0)
    split = tl.program_id(1)
    tiles_n = tl.cdiv(Cg, BN)
    tiles = tl.cdiv(OCg, BM) * tiles_n
    tile = pid % tiles
    gt = pid // tiles
    tap = gt % (KH * KW)
    g = gt // (KH * KW)
    kh = tap // KW
    kw = tap % KW
    i = (tile // tiles_n) * BM + tl.arange(0, BM)
    j = (tile % tiles_n) * BN + tl.arange(0, BN)
    i_ok = i < OCg
    j_ok = j < Cg
    oc = (g * OCg + i).to(idx_t)
    c = (g * Cg + j).to(idx_t)
    lo = split.to(idx_t) * chunk
    hi = tl.minimum(lo + chunk, P)
    acc = tl.zeros([BM, BN], dtype=acc_t)
    for p0 in range(lo, hi, BK):
        n, oh, ow, ih, iw, p_ok, x_ok = wgrad_positions(p0, hi, H, W, OH, OW, kh, kw, conv, BK)
        a = tl.load(gy_ptr + (oc * gs1)[:, None] + (n * gs0 + oh * gs2 + ow * gs3)[None, :],
                    mask=i_ok[:, None] & p_ok[None, :], other=0.0)
        b = tl.load(x_ptr + (n * xs0 + ih * xs2 + iw * xs3)[:, None] + (c * xs1)[None, :],
                    mask=x_ok[:, None] & j_ok[None, :], other=0.0)
        if UPCAST:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, b, acc, input_precision=PRECISION, out_dtype=acc.dtype)
    # partial[split, oc, j, kh, kw], contiguous
    off = ((split * OC + oc)[:, None] * Cg + j[None, :]) * (KH * KW) + tap
    tl.store(part_ptr + off, acc, mask=i_ok[:, None] & j_ok[None, :])


# ---------------------------------------------------------------------------------------------
# Host side


def _gemm_launcher(kernel, tuned, grid, N, dtype, index_64):
    """``kernel[grid]`` over ``grid(BM, BN)`` with the fixed tile of ``gemm_tile`` for a GEMM of N
    dimension ``N``, or its autotuned twin ``tuned`` when autotune_enabled(): call it with the
    kernel's arguments."""
    if autotune_enabled():
        return tuned[lambda meta: grid(meta["BM"], meta["BN"])]
    bm, bn, bk, nw, ns = gemm_tile(N, dtype, index_64)
    return functools.partial(kernel[grid(bm, bn)], BM=bm, BN=bn, BK=bk, num_warps=nw, num_stages=ns)


def fwd(x, w, b, r, out, conv, scale, groups, shuffle, index_64, allow_tf32, *, has_bias, has_res,
        relu):
    """Write ``r + scale * act(conv2d(x, w) + b)`` (``b``, ``r``: stand-ins when absent) into
    ``out``, the convolution's output or its pixel shuffle by ``shuffle``."""
    N, C, H, W = x.shape
    OC, Cg, KH, KW = w.shape
    OH, OW = out.shape[2] // shuffle, out.shape[3] // shuffle
    M, OCg = N * OH * OW, OC // groups
    launch = _gemm_launcher(_conv2d_fwd_kernel, _conv2d_fwd_kernel_tuned,
                            lambda bm, bn: (triton.cdiv(M, bm), triton.cdiv(OCg, bn), groups),
                            OCg, x.dtype, index_64)
    launch(x, w, b, r, out,
           H, W, OH, OW, M, Cg, OCg,
           x.stride(), w.stride(), r.stride(), out.stride(),
           conv, scale,
           KH=KH, KW=KW, STATIC_TAPS=KH * KW <= STATIC_TAPS_MAX and x.element_size() == 2,
           HAS_BIAS=has_bias, HAS_RES=has_res, RELU=relu,
           PRECISION=precision(x.dtype, allow_tf32), UPCAST=upcast(x.dtype),
           ACC_FP64=x.dtype == torch.float64, INDEX_64=index_64, SHUFFLE=shuffle)


def dgrad(gy, w, b, gx, conv, groups, index_64, allow_tf32, *, has_bias):
    """Write the input gradient of a dense or grouped conv2d (plus the bias ``b`` per channel of
    ``gx`` when ``has_bias``) into ``gx``, one stride phase per program column."""
    N, C, H, W = gx.shape
    OC, Cg, KH, KW = w.shape
    _, _, OH, OW = gy.shape
    sh, sw, _, _, dh, dw = conv
    QH, QW = triton.cdiv(H, sh), triton.cdiv(W, sw)
    M, OCg = N * QH * QW, OC // groups
    phases = groups * sh * sw  # (group, stride phase) per program column
    launch = _gemm_launcher(_conv2d_dgrad_kernel, _conv2d_dgrad_kernel_tuned,
                            lambda bm, bn: (triton.cdiv(M, bm), triton.cdiv(Cg, bn), phases),
                            Cg, gx.dtype, index_64)
    launch(gy, w, b, gx,
           H, W, OH, OW, QH, QW, M, Cg, OCg,
           gy.stride(), w.stride(), gx.stride(),
           conv,
           tap_axis(sh, dh), tap_axis(sw, dw), KH, KW,
           HAS_BIAS=has_bias, PRECISION=precision(gx.dtype, allow_tf32), UPCAST=upcast(gx.dtype),
           ACC_FP64=gx.dtype == torch.float64, INDEX_64=index_64)


def wgrad(gy, x, gw, conv, groups, index_64, allow_tf32, part_dtype):
    """The weight gradient's split-K partials (SPLIT, OC, Cg, KH, KW) in ``part_dtype``, for
    shared.wgrad_reduce; ``gw`` gives the shape."""
    N, C, H, W = x.shape
    OC, Cg, KH, KW = gw.shape
    _, _, OH, OW = gy.shape
    P, OCg = N * OH * OW, OC // groups
    bm, bn, bk, nw, ns = wgrad_tile(OCg, Cg, x.dtype, index_64)
    tiles = triton.cdiv(OCg, bm) * triton.cdiv(Cg, bn) * groups * KH * KW
    split = split_k(tiles, P, bk)
    chunk = triton.cdiv(triton.cdiv(P, split), bk) * bk
    part = torch.empty((split, OC, Cg, KH, KW), dtype=part_dtype, device=x.device)
    _conv2d_wgrad_kernel[(tiles, split)](
        gy, x, part,
        H, W, OH, OW, P, Cg, OCg, OC, KH, KW, chunk,
        gy.stride(), x.stride(),
        conv,
        PRECISION=precision(x.dtype, allow_tf32), UPCAST=upcast(x.dtype),
        ACC_FP64=part_dtype == torch.float64, INDEX_64=index_64, BM=bm, BN=bn, BK=bk,
        num_warps=nw, num_stages=ns)
    return part
