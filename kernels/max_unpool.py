"""Triton kernels of max_unpool2d.

Math (``torch.nn.functional.max_unpool2d``)::

    out[n, c, t] = input[n, c, i]   for t = indices[n, c, i] (flat index in the OH x OW plane)
    out[n, c, t] = 0                where no index points
    duplicates: the later input element (row-major order of the input plane) wins

    grad_input[n, c, i] = grad_output[n, c, indices[n, c, i]]

Forward, kernel == stride (SegNet): ``_max_unpool2d_gather_kernel`` writes every output element
exactly once: the owner of output (oh, ow) is input ((oh + ph) // sh, (ow + pw) // sw), and the
output takes the owner's value if the owner's index points at it, else 0. Indices outside their
own window are legal; the gather flags their plane, and the three scatter kernels redo the flagged
planes: ``_max_unpool2d_scatter_init_kernel`` (out := 0, winner := -1),
``_max_unpool2d_scatter_argmax_kernel`` (atomic max of the input position into winner[target])
and ``_max_unpool2d_scatter_write_kernel`` (write where the winner is this position) give the
later-wins result whatever the execution order. Without the gather (kernel !=
stride) every plane takes the scatter. Indices outside [0, OH*OW) are never used as an address.

Compact indices (uint8, ``COMPACT``): the window offset ``k = kh * KW + kw`` of pooled element
(ih, iw) is decoded to the flat target ``th * OW + tw`` with (th, tw) = (ih*SH - PH + kh*DH,
iw*SW - PW + kw*DW) by ``_target`` right after loading (-1, i.e. invalid, if k >= KH*KW or the tap
lies outside the plane); the kernels then run unchanged.

The index math mirrors ``csrc/common/max_unpool.h`` (window_owner, valid_target, in_window) and
``csrc/common/max_pool.h`` (target_of).
All loads of half/bfloat16 data are moved, not computed on, so no fp32 conversion is needed.
"""
import triton
import triton.language as tl

from ._common import _decompose, _is_channels_last, _needs_int64, _positions, launcher

BLOCK = 1024
NUM_WARPS = 8  # 4 elements per thread: ~60-70 registers in the int32 gather (see the AOT table)
MAX_SPLITS = 16

# Every compile-time configuration the launchers below use: (kernel name, constexprs).
CONFIGS = [
    *[(name, {"CHANNELS_LAST": cl, "INDEX_64": i64, "COMPACT": cp, "BLOCK": BLOCK})
      for name in ("_max_unpool2d_gather_kernel", "_max_unpool2d_bwd_kernel")
      for cl in (False, True) for i64 in (False, True) for cp in (False, True)],
    ("_max_unpool2d_scatter_init_kernel", {"HAS_FLAGS": True, "BLOCK": BLOCK}),
    ("_max_unpool2d_scatter_init_kernel", {"HAS_FLAGS": False, "BLOCK": BLOCK}),
    *[(name, {"HAS_FLAGS": flags, "COMPACT": cp, "BLOCK": BLOCK})
      for name in ("_max_unpool2d_scatter_argmax_kernel", "_max_unpool2d_scatter_write_kernel")
      for flags in (True, False) for cp in (False, True)],
]


@triton.jit
def _target(raw, ih, iw, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, COMPACT: tl.constexpr):
    """Flat plane target of the index ``raw`` of pooled element (ih, iw): int64 indices as they
    are; a compact offset decoded (-1 when k >= KH*KW or its tap lies outside the OH x OW plane)."""
    if COMPACT:
        k = raw.to(tl.int32)
        q = k // KW
        th = ih * SH - PH + q * DH
        tw = iw * SW - PW + (k - q * KW) * DW
        ok = (k < KH * KW) & (th >= 0) & (th < OH) & (tw >= 0) & (tw < OW)
        return tl.where(ok, th.to(tl.int64) * OW + tw, -1)
    else:
        return raw


@triton.jit
def _max_unpool2d_gather_kernel(x_ptr, idx_ptr, out_ptr, flags_ptr, xs0, xs1, xs2, xs3, is0, is1,
                                is2, is3, os0, os1, os2, os3, C, H, W, OH, OW, KH, KW, SH, SW, PH,
                                PW, DH, DW, total,
                                CHANNELS_LAST: tl.constexpr, INDEX_64: tl.constexpr,
                                COMPACT: tl.constexpr, BLOCK: tl.constexpr):
    l = _positions(total, INDEX_64, BLOCK)
    live = l < total
    n, c, oh, ow = _decompose(l, C, OH, OW, CHANNELS_LAST)
    ih = (oh + PH) // SH  # window_owner
    iw = (ow + PW) // SW
    owned = live & (ih < H) & (iw < W)
    t = tl.load(idx_ptr + n * is0 + c * is1 + ih * is2 + iw * is3, mask=owned, other=0)
    t = tl.where(owned, _target(t, ih, iw, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, COMPACT), -1)
    valid = (t >= 0) & (t < OH * OW)
    t = tl.where(valid, t, 0).to(l.dtype)  # in range: narrow to the index width
    hit = owned & valid & (t == oh * OW + ow)
    v = tl.load(x_ptr + n * xs0 + c * xs1 + ih * xs2 + iw * xs3, mask=hit, other=0)
    # in_window(t) for valid targets; invalid targets are flagged too and dropped by the scatter.
    th = t // OW
    tw = t - th * OW
    h0 = ih * SH - PH
    w0 = iw * SW - PW
    inside = valid & (th >= h0) & (th < h0 + KH) & (tw >= w0) & (tw < w0 + KW)
    tl.store(flags_ptr + n * C + c, tl.full([BLOCK], 1, tl.int32), mask=owned & ~inside)
    tl.store(out_ptr + n * os0 + c * os1 + oh * os2 + ow * os3, v, mask=live)


@triton.jit
def _plane_extent(flags_ptr, pl, size, HAS_FLAGS: tl.constexpr):
    """Number of elements of plane ``pl`` to visit: ``size``, or 0 for an unflagged plane."""
    if HAS_FLAGS:
        flag = tl.load(flags_ptr + pl)
        size = tl.where(flag != 0, size, 0)
    return size


@triton.jit
def _max_unpool2d_scatter_init_kernel(out_ptr, winner_ptr, flags_ptr, os0, os1, os2, os3, C, OH, OW,
                                      HAS_FLAGS: tl.constexpr, BLOCK: tl.constexpr):
    pl = tl.program_id(0).to(tl.int64)
    n = pl // C
    c = pl % C
    plane = OH * OW
    extent = _plane_extent(flags_ptr, pl, plane, HAS_FLAGS)
    for start in range(tl.program_id(1) * BLOCK, extent, tl.num_programs(1) * BLOCK):
        j = start + tl.arange(0, BLOCK).to(tl.int64)
        m = j < plane
        oh = j // OW
        ow = j - oh * OW
        tl.store(out_ptr + n * os0 + c * os1 + oh * os2 + ow * os3,
                 tl.zeros([BLOCK], out_ptr.dtype.element_ty), mask=m)
        tl.store(winner_ptr + pl * plane + j, tl.full([BLOCK], -1, tl.int32), mask=m)


@triton.jit
def _input_block(idx_ptr, n, c, is0, is1, is2, is3, H, W, plane, start, KH, KW, SH, SW, PH, PW,
                 DH, DW, OH, OW, COMPACT: tl.constexpr, BLOCK: tl.constexpr):
    """Input positions ``i`` = (ih, iw) of a block of plane (n, c), their targets ``t`` and
    whether each is live and a valid target (``ok``)."""
    i = start + tl.arange(0, BLOCK).to(tl.int64)
    m = i < H * W
    ih = i // W
    iw = i - ih * W
    t = tl.load(idx_ptr + n * is0 + c * is1 + ih * is2 + iw * is3, mask=m, other=0)
    t = tl.where(m, _target(t, ih, iw, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, COMPACT), -1)
    return i, ih, iw, t, m & (t >= 0) & (t < plane)


@triton.jit
def _max_unpool2d_scatter_argmax_kernel(idx_ptr, winner_ptr, flags_ptr, is0, is1, is2, is3, C, H, W,
                                        plane, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW,
                                        HAS_FLAGS: tl.constexpr, COMPACT: tl.constexpr,
                                        BLOCK: tl.constexpr):
    pl = tl.program_id(0).to(tl.int64)
    n = pl // C
    c = pl % C
    extent = _plane_extent(flags_ptr, pl, H * W, HAS_FLAGS)
    for start in range(tl.program_id(1) * BLOCK, extent, tl.num_programs(1) * BLOCK):
        i, ih, iw, t, ok = _input_block(idx_ptr, n, c, is0, is1, is2, is3, H, W, plane, start,
                                        KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, COMPACT, BLOCK)
        tl.atomic_max(winner_ptr + pl * plane + t, i.to(tl.int32), mask=ok)


@triton.jit
def _max_unpool2d_scatter_write_kernel(x_ptr, idx_ptr, out_ptr, winner_ptr, flags_ptr, xs0, xs1,
                                       xs2, xs3, is0, is1, is2, is3, os0, os1, os2, os3, C, H, W,
                                       OW, plane, KH, KW, SH, SW, PH, PW, DH, DW, OH,
                                       HAS_FLAGS: tl.constexpr, COMPACT: tl.constexpr,
                                       BLOCK: tl.constexpr):
    pl = tl.program_id(0).to(tl.int64)
    n = pl // C
    c = pl % C
    extent = _plane_extent(flags_ptr, pl, H * W, HAS_FLAGS)
    for start in range(tl.program_id(1) * BLOCK, extent, tl.num_programs(1) * BLOCK):
        i, ih, iw, t, ok = _input_block(idx_ptr, n, c, is0, is1, is2, is3, H, W, plane, start,
                                        KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, COMPACT, BLOCK)
        win = tl.load(winner_ptr + pl * plane + t, mask=ok, other=-1)
        ok = ok & (win == i.to(tl.int32))
        v = tl.load(x_ptr + n * xs0 + c * xs1 + ih * xs2 + iw * xs3, mask=ok)
        th = t // OW
        tw = t - th * OW
        tl.store(out_ptr + n * os0 + c * os1 + th * os2 + tw * os3, v, mask=ok)


@triton.jit
def _max_unpool2d_bwd_kernel(go_ptr, idx_ptr, gi_ptr, gs0, gs1, gs2, gs3, is0, is1, is2, is3, xs0,
                             xs1, xs2, xs3, C, H, W, OW, plane, KH, KW, SH, SW, PH, PW, DH, DW, OH,
                             total,
                             CHANNELS_LAST: tl.constexpr, INDEX_64: tl.constexpr,
                             COMPACT: tl.constexpr, BLOCK: tl.constexpr):
    l = _positions(total, INDEX_64, BLOCK)
    live = l < total
    n, c, ih, iw = _decompose(l, C, H, W, CHANNELS_LAST)
    t = tl.load(idx_ptr + n * is0 + c * is1 + ih * is2 + iw * is3, mask=live, other=0)
    t = tl.where(live, _target(t, ih, iw, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, COMPACT), -1)
    ok = live & (t >= 0) & (t < plane)
    t = tl.where(ok, t, 0).to(l.dtype)
    th = t // OW
    tw = t - th * OW
    v = tl.load(go_ptr + n * gs0 + c * gs1 + th * gs2 + tw * gs3, mask=ok, other=0)
    tl.store(gi_ptr + n * xs0 + c * xs1 + ih * xs2 + iw * xs3, v, mask=live)


def _plane_grid(planes, elements):
    return (planes, max(1, min(MAX_SPLITS, triton.cdiv(elements, BLOCK))))


@launcher
def forward(input, indices, kernel_size, stride, padding, dilation, gather, out):
    """Write max_unpool2d(input, indices) into ``out`` (N, C, OH, OW); all 4-D, checked by the caller.
    ``indices`` are int64 (flat) or uint8 (compact window offsets, decoded with the window
    geometry kernel_size / stride / padding / dilation)."""
    import torch

    N, C, H, W = input.shape
    OH, OW = out.shape[2], out.shape[3]
    (KH, KW), (SH, SW), (PH, PW), (DH, DW) = kernel_size, stride, padding, dilation
    if out.numel() == 0:
        return out
    compact = indices.dtype == torch.uint8
    win = (KH, KW, SH, SW, PH, PW, DH, DW)
    plane = OH * OW
    winner = torch.empty(N * C * plane, dtype=torch.int32, device=input.device)
    flags = torch.zeros(N * C, dtype=torch.int32, device=input.device) if gather else winner
    if gather:
        total = out.numel()
        _max_unpool2d_gather_kernel[(triton.cdiv(total, BLOCK),)](
            input, indices, out, flags, *input.stride(), *indices.stride(), *out.stride(),
            C, H, W, OH, OW, *win, total,
            CHANNELS_LAST=_is_channels_last(out), INDEX_64=_needs_int64(input, indices, out),
            COMPACT=compact, BLOCK=BLOCK, num_warps=NUM_WARPS)
    grid = _plane_grid(N * C, max(plane, H * W))
    _max_unpool2d_scatter_init_kernel[grid](
        out, winner, flags, *out.stride(), C, OH, OW,
        HAS_FLAGS=gather, BLOCK=BLOCK, num_warps=NUM_WARPS)
    _max_unpool2d_scatter_argmax_kernel[grid](
        indices, winner, flags, *indices.stride(), C, H, W, plane, *win, OH, OW,
        HAS_FLAGS=gather, COMPACT=compact, BLOCK=BLOCK, num_warps=NUM_WARPS)
    _max_unpool2d_scatter_write_kernel[grid](
        input, indices, out, winner, flags, *input.stride(), *indices.stride(), *out.stride(),
        C, H, W, OW, plane, *win, OH,
        HAS_FLAGS=gather, COMPACT=compact, BLOCK=BLOCK, num_warps=NUM_WARPS)
    return out


@launcher
def backward(grad_output, indices, kernel_size, stride, padding, dilation, grad_input):
    """Write the max_unpool2d input gradient into ``grad_input`` (the indices' shape); the window
    geometry only decodes compact (uint8) indices."""
    import torch

    N, C, H, W = indices.shape
    OH, OW = grad_output.shape[2], grad_output.shape[3]
    total = grad_input.numel()
    if total == 0:
        return grad_input
    (KH, KW), (SH, SW), (PH, PW), (DH, DW) = kernel_size, stride, padding, dilation
    _max_unpool2d_bwd_kernel[(triton.cdiv(total, BLOCK),)](
        grad_output, indices, grad_input, *grad_output.stride(), *indices.stride(),
        *grad_input.stride(), C, H, W, OW, OH * OW, KH, KW, SH, SW, PH, PW, DH, DW, OH, total,
        CHANNELS_LAST=_is_channels_last(grad_input),
        INDEX_64=_needs_int64(grad_output, indices, grad_input),
        COMPACT=indices.dtype == torch.uint8, BLOCK=BLOCK, num_warps=NUM_WARPS)
    return grad_input
