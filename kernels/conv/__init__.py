"""Triton kernels of 2-D convolution (dense, grouped, depthwise; any stride, padding, dilation):
forward with a fused epilogue, input gradient (dgrad, which is also the transposed convolution)
and weight gradient (wgrad, deterministic split-K).

Notation: input x (N, C, H, W), weight w (OC, Cg, KH, KW) with Cg = C / groups and
OCg = OC / groups, output y (N, OC, OH, OW), stride (sh, sw), top/left padding (ph, pw),
dilation (dh, dw). The input row of output row oh under tap kh is ``ih = oh*sh - ph + kh*dh``.

Forward, an implicit GEMM per group (M = N*OH*OW, N = OCg, K = Cg*KH*KW)::

    y[n, oc, oh, ow] = residual + scale * act(b[oc] + sum_{c, kh, kw} x[n, g*Cg + c, ih, iw] * w[oc, c, kh, kw])

The taps are unrolled with ``tl.static_range`` (a runtime loop for kernels above STATIC_TAPS_MAX
taps, e.g. the 64x64 kernels of FCN's upsampling), inside each tap a runtime loop runs over blocks
of channels (``k_loop``); the row bases and bounds masks are computed once per tap. There is no
flattened K loop with div/mod (a pattern Triton has miscompiled for convolutions).

Input gradient (M = N*H*W, N = Cg, K = OCg * valid taps), a gather: no atomics::

    dx[n, c, ih, iw] = sum_{oc in group, kh, kw : (ih + ph - kh*dh) % sh == 0, ...} dy[n, oc, oh, ow] * w[oc, c, kh, kw]

The GEMM kernel runs one stride phase (ih % sh, iw % sw) per program, so that each program's
valid taps are a scalar arithmetic sequence (``_tap_range``): with stride s only 1/s of the taps
per axis are visited, never multiplied as masked zeros (a k64 s32 transposed conv does 4 taps, not
4096). Given g = gcd(d, s), step = s / g and inv = (d / g)^-1 mod step, the taps of an input
index i with r = (i + p) % s are ``k = k0 + j*step`` with ``k0 = (r/g * inv) % step`` (none when
g does not divide r); the output index is then ``o = (i + p - k*d) / s`` (exact). The same
enumeration, per element, drives the depthwise kernel and the C++ kernels (csrc/common/conv.h).

Weight gradient (per group and tap: M = OCg, N = Cg, K = N*OH*OW), deterministic: the K range is
split into SPLIT fixed chunks, each program writes its partial tile into a buffer (fp32, fp64 for
fp64 data), and ``_reduce_kernel`` sums the partials in split order; no atomics, so the result is
bitwise identical from run to run (for a given SPLIT, which depends on the shapes only).

Sub-pixel convolution (EDSR's upsampler): with ``SHUFFLE`` = r > 1 the forward writes its output
straight into the pixel-shuffled layout Y (N, OC / r^2, OH*r, OW*r), conv channel
``oc = c*r*r + i*r + j`` at (oh, ow) going to ``Y[n, c, oh*r + i, ow*r + j]`` (the residual is
read in Y's layout too). The offset stays separable into a row part
``n*s0 + oh*(r*s2) + ow*(r*s3)`` and a column part ``c*s1 + i*s2 + j*s3`` (``_out_offsets``), so
the tile's store costs what a plain one does; Cg == 1 then runs the GEMM kernel too.

Depthwise convolutions (Cg == 1, any channel multiplier OCg) are memory-bound and have no GEMM
worth the name; they get direct kernels: ``_dw_fwd_kernel`` (one output element per lane, taps
unrolled, same epilogue), ``_dw_dgrad_kernel`` (a gather with the per-element tap sequence) and
``_dw_wgrad_kernel`` (2-D tiles of positions x channels, reduced in a fixed order, split-K).

Tile choice: the forward and input-gradient GEMM tiles are by default a fixed function of the
shapes and dtype (``gemm_tile``), like the weight gradient's (``wgrad_tile``): no timing inside the
op, so a first call does not stall or synchronise, the kernels can be captured in a CUDA graph,
and a result's bits never depend on which tile won a timing race in this process. With
``PYDENSE_AUTOTUNE=1`` (read at each call) the two kernels are instead autotuned by
``triton.autotune`` over GEMM_TILES (timed on first use of each (M, OCg, Cg), which synchronises
and cannot run under CUDA graph capture).

Precision: accumulation in fp32 (fp64 for fp64 data). fp32 inputs use TF32 tensor cores when
the caller allows it (``torch.backends.cudnn.allow_tf32``, as cuDNN convolutions do), else exact
fp32 dots. Under the Triton interpreter bf16 tiles are converted to fp32 before the dot
(``UPCAST``; the interpreter's bf16 arithmetic is wrong); compiled kernels feed bf16 to the
tensor cores directly.
"""
import math
import os

import torch
import triton
import triton.language as tl

from .._common import (_decompose, _is_channels_last, _needs_int64, _positions, acc_dtype,
                       k_loop, launcher, triton_interpret)

INTERPRET = triton_interpret()

# GEMM kernels unroll the taps (tl.static_range) for 2-byte data and kernels of at most this
# many taps; otherwise a runtime loop runs over them. Unrolled 3x3 taps compile in ~7-13 s per
# config for fp16/bf16 but ~35 s for fp32/fp64 (measured with triton.compile for sm_80/sm_90),
# and every autotune config is compiled on first use; a runtime tap loop compiles in ~6 s.
STATIC_TAPS_MAX = 9
DW_STATIC_TAPS_MAX = 49  # the depthwise kernels are small: unroll up to 7x7
BLOCK = 256  # depthwise forward/dgrad and the reduction: elements per program
NUM_WARPS = 4
DW_BP, DW_BC = 64, 32  # depthwise wgrad tile: positions x channels
TARGET_PROGRAMS = 264  # wgrad split-K aims at this many programs (2 waves of 132 SMs); fixed, so
# the split (and the result's bits) depends on the shapes only, never on the device

# GEMM tiles (BM, BN, BK, num_warps, num_stages) for fp16/bf16/fp32 (BK=64: 2-byte data only):
# gemm_tile picks one from the shapes, or PYDENSE_AUTOTUNE=1 times them all. Chosen from the AOT resource table (tests/test_aot.py): these compile without
# register spills for sm_80 and sm_90; 128x128 tiles spilled (1.5-12 KB) at 4 and 8 warps.
GEMM_TILES = [(128, 64, 32, 8, 3), (64, 128, 32, 8, 3), (64, 128, 64, 8, 3)]
FP64_TILE = (32, 32, 32, 4, 2)  # fp64 data
INDEX64_TILE = (32, 64, 32, 4, 2)  # 64-bit index math (tensors of 2^30+ elements)
INTERPRET_TILE = (32, 32, 16, 4, 1)
WGRAD_TILES = [(128, 128, 32, 8, 3), (64, 64, 32, 4, 3)]


def _aot_configs():
    """(kernel, constexprs, dtypes, options) of every configuration shipped, for the AOT test
    (tests/triton_aot.py): every tile in fp16, the first tile in the other dtypes, the variants."""
    sizes = {"fp16": 2, "bf16": 2, "fp32": 4, "fp64": 8}
    rows = []

    def gemm(name, base, tiles, dtypes):
        for bm, bn, bk, nw, ns in tiles:
            for dt in dtypes:
                if pipeline_smem(bm, bn, bk, ns, sizes[dt]) > SMEM_BUDGET:
                    continue  # pruned at run time
                prec = "tf32" if dt == "fp32" else "ieee"
                rows.append((name, {**base, "PRECISION": prec, "ACC_FP64": dt == "fp64",
                                    "BM": bm, "BN": bn, "BK": bk}, (dt,),
                             {"num_warps": nw, "num_stages": ns}))

    fwd = dict(KH=3, KW=3, HAS_BIAS=True, HAS_RES=True, RELU=True, UPCAST=False, INDEX_64=False,
               SHUFFLE=1)
    # 2-byte data may run every GEMM tile (gemm_tile's tall BK=32 tile too), 4-byte BK=32 only
    two_byte = GEMM_TILES
    four_byte = [t for t in GEMM_TILES if t[2] <= 32]
    gemm("_fwd_kernel", {**fwd, "STATIC_TAPS": True}, GEMM_TILES, ("fp16",))
    gemm("_fwd_kernel", {**fwd, "STATIC_TAPS": True}, two_byte, ("bf16",))
    gemm("_fwd_kernel", {**fwd, "STATIC_TAPS": False}, four_byte, ("fp32",))
    gemm("_fwd_kernel", {**fwd, "STATIC_TAPS": False}, two_byte, ("fp16",))
    gemm("_fwd_kernel", {**fwd, "STATIC_TAPS": False}, [FP64_TILE], ("fp64",))
    gemm("_fwd_kernel", {**fwd, "STATIC_TAPS": True, "INDEX_64": True}, [INDEX64_TILE], ("fp16",))
    # conv2d_pixel_shuffle (EDSR's x2 upsampler: bias, no residual or ReLU)
    shuffled = {**fwd, "SHUFFLE": 2, "HAS_RES": False, "RELU": False}
    gemm("_fwd_kernel", {**shuffled, "STATIC_TAPS": True}, GEMM_TILES, ("fp16",))
    gemm("_fwd_kernel", {**shuffled, "STATIC_TAPS": True}, two_byte, ("bf16",))
    gemm("_fwd_kernel", {**shuffled, "STATIC_TAPS": False}, four_byte, ("fp32",))
    dgrad = dict(HAS_BIAS=True, UPCAST=False, INDEX_64=False)
    gemm("_dgrad_kernel", dgrad, GEMM_TILES, ("fp16",))
    gemm("_dgrad_kernel", dgrad, two_byte, ("bf16",))
    gemm("_dgrad_kernel", dgrad, four_byte, ("fp32",))
    gemm("_dgrad_kernel", dgrad, [FP64_TILE], ("fp64",))
    gemm("_dgrad_kernel", {**dgrad, "INDEX_64": True}, [INDEX64_TILE], ("fp16",))
    wgrad = dict(UPCAST=False, INDEX_64=False)
    gemm("_wgrad_kernel", wgrad, WGRAD_TILES, ("fp16", "bf16", "fp32"))
    gemm("_wgrad_kernel", wgrad, [FP64_TILE], ("fp64",))
    gemm("_wgrad_kernel", {**wgrad, "INDEX_64": True}, [INDEX64_TILE], ("fp16",))
    opts = {"num_warps": NUM_WARPS}
    for fp64 in (False, True):
        dts = ("fp64",) if fp64 else ("fp32", "fp16", "bf16")
        for cl in (False, True):
            for static in (True, False):
                rows.append(("_dw_fwd_kernel", dict(KH=3, KW=3, STATIC_TAPS=static, HAS_BIAS=True,
                                                    HAS_RES=True, RELU=True, CHANNELS_LAST=cl,
                                                    ACC_FP64=fp64, INDEX_64=False, BLOCK=BLOCK), dts, opts))
            rows.append(("_dw_dgrad_kernel", dict(HAS_BIAS=True, CHANNELS_LAST=cl, ACC_FP64=fp64,
                                                  INDEX_64=False, BLOCK=BLOCK), dts, opts))
        rows.append(("_dw_wgrad_kernel", dict(ACC_FP64=fp64, INDEX_64=False, BP=DW_BP, BC=DW_BC), dts, opts))
        rows.append(("_reduce_kernel", dict(INDEX_64=False, BLOCK=BLOCK), dts, opts))
    rows.append(("_dw_fwd_kernel", dict(KH=3, KW=3, STATIC_TAPS=True, HAS_BIAS=True, HAS_RES=True,
                                        RELU=True, CHANNELS_LAST=True, ACC_FP64=False, INDEX_64=True,
                                        BLOCK=BLOCK), ("fp16",), opts))
    rows.append(("_reduce_kernel", dict(INDEX_64=True, BLOCK=BLOCK), ("fp32",), opts))
    return rows


def _config(tile):
    bm, bn, bk, nw, ns = tile
    return triton.Config({"BM": bm, "BN": bn, "BK": bk}, num_warps=nw, num_stages=ns)


def _tile_of(config):
    return (config.kwargs["BM"], config.kwargs["BN"], config.kwargs["BK"], config.num_warps,
            config.num_stages)


def _tile_configs():
    tiles = [INTERPRET_TILE] if INTERPRET else GEMM_TILES + [FP64_TILE, INDEX64_TILE]
    return [_config(t) for t in tiles]


SMEM_BUDGET = 160 * 1024  # fits sm_80 (163 KiB per block) and sm_90 (227 KiB)


def pipeline_smem(bm, bn, bk, stages, element_size):
    """Shared memory of a pipelined GEMM tile: ``stages`` buffers of the A and B tiles."""
    return stages * (bm * bk + bk * bn) * element_size


def _prune(configs, named_args, **kwargs):
    """The tiles for this call: the dedicated tile for fp64 data or 64-bit indices, else the
    GEMM tiles whose pipeline fits in shared memory (BK=64 for 2-byte data only)."""
    if INTERPRET:
        return configs
    size = next(a for a in named_args.values() if isinstance(a, torch.Tensor)).element_size()
    if {**named_args, **kwargs}.get("INDEX_64"):
        return [c for c in configs if _tile_of(c) == INDEX64_TILE]
    if size == 8:
        return [c for c in configs if _tile_of(c) == FP64_TILE]
    return [c for c in configs if _tile_of(c) in GEMM_TILES and (size == 2 or c.kwargs["BK"] <= 32)
            and pipeline_smem(c.kwargs["BM"], c.kwargs["BN"], c.kwargs["BK"], c.num_stages, size)
            <= SMEM_BUDGET]


def _autotune(key):
    return triton.autotune(configs=_tile_configs(), key=key,
                           prune_configs_by={"early_config_prune": _prune})


def autotune_enabled():
    """Whether the forward / input-gradient GEMM tiles are timed (``PYDENSE_AUTOTUNE=1``) instead
    of chosen from the shapes (the default; see the module docstring)."""
    return os.environ.get("PYDENSE_AUTOTUNE", "0") not in ("", "0")


def _dedicated_tile(dtype, index_64):
    """The tile every GEMM uses under the interpreter, for 64-bit indices or for fp64 data; None
    otherwise (the shapes decide)."""
    if INTERPRET:
        return INTERPRET_TILE
    if index_64:
        return INDEX64_TILE
    if dtype == torch.float64:
        return FP64_TILE
    return None


def gemm_tile(N, dtype, index_64):
    """The forward / input-gradient GEMM tile (BM, BN, BK, num_warps, num_stages) for a GEMM
    whose N dimension (output channels of the forward, input channels of the input gradient,
    per group) is ``N``, chosen from the shapes only: the dedicated tiles for fp64 data and
    64-bit indices; else the wide tile (BN = 128) when N > 64 and the tall one (BM = 128)
    otherwise, with BK = 64 for 2-byte data (GEMM_TILES)."""
    special = _dedicated_tile(dtype, index_64)
    if special:
        return special
    if N <= 64:
        return GEMM_TILES[0]
    return GEMM_TILES[2] if dtype in (torch.float16, torch.bfloat16) else GEMM_TILES[1]


def _launch_gemm(kernel, tuned, grid, args, N, dtype, index_64, **constexprs):
    """Launch the GEMM ``kernel`` (autotuned twin ``tuned``) over ``grid(BM, BN)`` with the fixed
    tile of ``gemm_tile``, or through the autotuner when autotune_enabled()."""
    if autotune_enabled():
        tuned[lambda meta: grid(meta["BM"], meta["BN"])](*args, **constexprs)
        return
    bm, bn, bk, nw, ns = gemm_tile(N, dtype, index_64)
    kernel[grid(bm, bn)](*args, BM=bm, BN=bn, BK=bk, num_warps=nw, num_stages=ns, **constexprs)


# ---------------------------------------------------------------------------------------------
# Shared device helpers


@triton.jit
def _epilogue(acc, b_ptr, r_ptr, oc, r_off, mask, scale,
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
def _out_offsets(n, oh, ow, oc, s0, s1, s2, s3, SHUFFLE: tl.constexpr):
    """Offsets (row part, column part) of the convolution's output (n, oh, ow) x channel ``oc`` in
    a tensor of strides ``s``: the output itself (SHUFFLE == 1) or its pixel shuffle by SHUFFLE = r,
    where (oc = c*r*r + i*r + j, oh, ow) lands at (c, oh*r + i, ow*r + j)."""
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
def _wgrad_positions(p0, hi, H, W, OH, OW, kh, kw, sh, sw, ph, pw, dh, dw, BLOCK: tl.constexpr):
    """The weight gradient's K block [p0, p0 + BLOCK) of output positions p = (n, oh, ow), cut at
    ``hi``, and the input pixel (ih, iw) tap (kh, kw) reads for each: (n, oh, ow, ih, iw, p_ok,
    x_ok), x_ok false where the tap falls in the padding."""
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
def _tap_range(i, p, s, g, step, inv, K):
    """First tap, and the number of taps, that reach input index ``i`` (see the module docstring)."""
    r = (i + p) % s
    k0 = ((r // g) * inv) % step
    count = (K - k0 + step - 1) // step
    return k0, tl.where(r % g == 0, count, 0)


# ---------------------------------------------------------------------------------------------
# Dense / grouped: implicit GEMM


@triton.jit
def _fwd_tap(acc, x_ptr, w_ptr, x_row, oh, ow, m_ok, w_col, oc_ok, kk, kh, kw,
             H, W, Cg, xs1, xs2, xs3, ws1, ws2, ws3, sh, sw, ph, pw, dh, dw,
             BK: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    ih = oh * sh - ph + kh * dh
    iw = ow * sw - pw + kw * dw
    ok = m_ok & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
    return k_loop(acc, x_ptr, x_row + ih * xs2 + iw * xs3, ok, xs1,
                   w_ptr, w_col + kh * ws2 + kw * ws3, oc_ok, ws1, Cg, kk, BK, PRECISION, UPCAST)


@triton.jit
def _fwd_kernel(x_ptr, w_ptr, b_ptr, r_ptr, out_ptr, H, W, OH, OW, M, Cg, OCg,
                xs0, xs1, xs2, xs3, ws0, ws1, ws2, ws3, rs0, rs1, rs2, rs3, os0, os1, os2, os3,
                sh, sw, ph, pw, dh, dw, scale,
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
    x_row = n * xs0 + (g * Cg).to(idx_t) * xs1  # + the tap's (ih, iw) offset
    w_col = oc * ws0
    acc = tl.zeros([BM, BN], dtype=acc_t)
    if STATIC_TAPS:
        for tap in tl.static_range(KH * KW):
            acc = _fwd_tap(acc, x_ptr, w_ptr, x_row, oh, ow, m_ok, w_col, oc_ok, kk,
                           tap // KW, tap % KW, H, W, Cg, xs1, xs2, xs3, ws1, ws2, ws3,
                           sh, sw, ph, pw, dh, dw, BK, PRECISION, UPCAST)
    else:
        for kh in range(KH):
            for kw in range(KW):
                acc = _fwd_tap(acc, x_ptr, w_ptr, x_row, oh, ow, m_ok, w_col, oc_ok, kk,
                               kh, kw, H, W, Cg, xs1, xs2, xs3, ws1, ws2, ws3,
                               sh, sw, ph, pw, dh, dw, BK, PRECISION, UPCAST)
    mask = m_ok[:, None] & oc_ok[None, :]
    r_row, r_col = _out_offsets(n, oh, ow, oc, rs0, rs1, rs2, rs3, SHUFFLE)
    acc = _epilogue(acc, b_ptr, r_ptr, oc[None, :], r_row[:, None] + r_col[None, :], mask, scale,
                    HAS_BIAS, HAS_RES, RELU)
    o_row, o_col = _out_offsets(n, oh, ow, oc, os0, os1, os2, os3, SHUFFLE)
    tl.store(out_ptr + o_row[:, None] + o_col[None, :], acc.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _dgrad_kernel(gy_ptr, w_ptr, b_ptr, gx_ptr, H, W, OH, OW, QH, QW, M, Cg, OCg,
                  gs0, gs1, gs2, gs3, ws0, ws1, ws2, ws3, xs0, xs1, xs2, xs3,
                  sh, sw, ph, pw, dh, dw, gch, stph, invh, gcw, stpw, invw, KH, KW,
                  HAS_BIAS: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr,
                  ACC_FP64: tl.constexpr, INDEX_64: tl.constexpr,
                  BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """One stride phase (rh, rw) of one group per program column: M = N * QH * QW positions
    ih = rh + qh*sh, iw = rw + qw*sw."""
    acc_t: tl.constexpr = tl.float64 if ACC_FP64 else tl.float32
    idx_t: tl.constexpr = tl.int64 if INDEX_64 else tl.int32
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
    w_col0 = j.to(idx_t) * ws1 + (g * OCg).to(idx_t) * ws0  # weight column of channel j of the group
    kh0, nkh = _tap_range(rh, ph, sh, gch, stph, invh, KH)
    kw0, nkw = _tap_range(rw, pw, sw, gcw, stpw, invw, KW)
    acc = tl.zeros([BM, BN], dtype=acc_t)
    for a in range(nkh):
        kh = kh0 + a * stph
        oh = qh + (rh + ph - kh * dh) // sh
        h_ok = m_ok & (oh >= 0) & (oh < OH)
        for b in range(nkw):
            kw = kw0 + b * stpw
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


_fwd_kernel_tuned = _autotune(key=["M", "OCg", "Cg"])(_fwd_kernel)
_dgrad_kernel_tuned = _autotune(key=["M", "OCg", "Cg"])(_dgrad_kernel)


@triton.jit
def _wgrad_kernel(gy_ptr, x_ptr, part_ptr, H, W, OH, OW, P, Cg, OCg, OC, KH, KW, chunk,
                  gs0, gs1, gs2, gs3, xs0, xs1, xs2, xs3, sh, sw, ph, pw, dh, dw,
                  PRECISION: tl.constexpr, UPCAST: tl.constexpr, ACC_FP64: tl.constexpr,
                  INDEX_64: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    """Program (tile, tap, group) x split: the partial dW tile of one K chunk."""
    acc_t: tl.constexpr = tl.float64 if ACC_FP64 else tl.float32
    idx_t: tl.constexpr = tl.int64 if INDEX_64 else tl.int32
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
        n, oh, ow, ih, iw, p_ok, x_ok = _wgrad_positions(p0, hi, H, W, OH, OW, kh, kw,
                                                         sh, sw, ph, pw, dh, dw, BK)
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


@triton.jit
def _reduce_kernel(part_ptr, out_ptr, E, SPLIT, Cg, KH, KW, os0, os1, os2, os3,
                   INDEX_64: tl.constexpr, BLOCK: tl.constexpr):
    """out[oc, c, kh, kw] = sum_s part[s, oc, c, kh, kw], in split order."""
    e = _positions(E, INDEX_64, BLOCK)
    ok = e < E
    acc = tl.load(part_ptr + e, mask=ok, other=0.0)
    for s in range(1, SPLIT):
        acc += tl.load(part_ptr + s * E + e, mask=ok, other=0.0)
    oc, c, kh, kw = _decompose(e, Cg, KH, KW, False)
    tl.store(out_ptr + oc * os0 + c * os1 + kh * os2 + kw * os3,
             acc.to(out_ptr.dtype.element_ty), mask=ok)


# ---------------------------------------------------------------------------------------------
# Depthwise (Cg == 1): direct kernels


@triton.jit
def _dw_fwd_tap(acc, x_base, w_base, oh, ow, live, kh, kw, H, W, xs2, xs3, ws2, ws3,
                sh, sw, ph, pw, dh, dw):
    ih = oh * sh - ph + kh * dh
    iw = ow * sw - pw + kw * dw
    ok = live & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
    v = tl.load(x_base + ih * xs2 + iw * xs3, mask=ok, other=0.0).to(acc.dtype)
    wt = tl.load(w_base + kh * ws2 + kw * ws3, mask=live, other=0.0).to(acc.dtype)
    return acc + v * wt


@triton.jit
def _dw_fwd_kernel(x_ptr, w_ptr, b_ptr, r_ptr, out_ptr, H, W, OC, OH, OW, MULT, total,
                   xs0, xs1, xs2, xs3, ws0, ws1, ws2, ws3, rs0, rs1, rs2, rs3, os0, os1, os2, os3,
                   sh, sw, ph, pw, dh, dw, scale,
                   KH: tl.constexpr, KW: tl.constexpr, STATIC_TAPS: tl.constexpr,
                   HAS_BIAS: tl.constexpr, HAS_RES: tl.constexpr, RELU: tl.constexpr,
                   CHANNELS_LAST: tl.constexpr, ACC_FP64: tl.constexpr, INDEX_64: tl.constexpr,
                   BLOCK: tl.constexpr):
    acc_t: tl.constexpr = tl.float64 if ACC_FP64 else tl.float32
    l = _positions(total, INDEX_64, BLOCK)
    live = l < total
    n, oc, oh, ow = _decompose(l, OC, OH, OW, CHANNELS_LAST)
    x_base = x_ptr + n * xs0 + (oc // MULT) * xs1
    w_base = w_ptr + oc * ws0
    acc = tl.zeros([BLOCK], dtype=acc_t)
    if STATIC_TAPS:
        for tap in tl.static_range(KH * KW):
            acc = _dw_fwd_tap(acc, x_base, w_base, oh, ow, live, tap // KW, tap % KW, H, W,
                              xs2, xs3, ws2, ws3, sh, sw, ph, pw, dh, dw)
    else:
        for kh in range(KH):
            for kw in range(KW):
                acc = _dw_fwd_tap(acc, x_base, w_base, oh, ow, live, kh, kw, H, W,
                                  xs2, xs3, ws2, ws3, sh, sw, ph, pw, dh, dw)
    acc = _epilogue(acc, b_ptr, r_ptr, oc, n * rs0 + oc * rs1 + oh * rs2 + ow * rs3, live, scale,
                    HAS_BIAS, HAS_RES, RELU)
    tl.store(out_ptr + n * os0 + oc * os1 + oh * os2 + ow * os3,
             acc.to(out_ptr.dtype.element_ty), mask=live)


@triton.jit
def _dw_dgrad_kernel(gy_ptr, w_ptr, b_ptr, gx_ptr, C, H, W, OH, OW, MULT, total,
                     gs0, gs1, gs2, gs3, ws0, ws1, ws2, ws3, xs0, xs1, xs2, xs3,
                     sh, sw, ph, pw, dh, dw, gch, stph, invh, gcw, stpw, invw, MAXA, MAXB,
                     KH, KW, HAS_BIAS: tl.constexpr, CHANNELS_LAST: tl.constexpr,
                     ACC_FP64: tl.constexpr, INDEX_64: tl.constexpr, BLOCK: tl.constexpr):
    """dx[n, c, ih, iw] over the taps that reach (ih, iw) and the MULT output channels of c.
    MAXA/MAXB: the most taps any index meets per axis (cdiv(K, step))."""
    acc_t: tl.constexpr = tl.float64 if ACC_FP64 else tl.float32
    l = _positions(total, INDEX_64, BLOCK)
    live = l < total
    n, c, ih, iw = _decompose(l, C, H, W, CHANNELS_LAST)
    kh0, nkh = _tap_range(ih, ph, sh, gch, stph, invh, KH)
    kw0, nkw = _tap_range(iw, pw, sw, gcw, stpw, invw, KW)
    acc = tl.zeros([BLOCK], dtype=acc_t)
    for mu in range(MULT):
        oc = c * MULT + mu
        gy_base = gy_ptr + n * gs0 + oc * gs1
        w_base = w_ptr + oc * ws0
        for a in range(MAXA):
            kh = kh0 + a * stph
            oh = (ih + ph - kh * dh) // sh
            h_ok = live & (a < nkh) & (oh >= 0) & (oh < OH)
            for b in range(MAXB):
                kw = kw0 + b * stpw
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
def _dw_wgrad_kernel(gy_ptr, x_ptr, part_ptr, H, W, OC, OH, OW, MULT, P, KH, KW, chunk,
                     gs0, gs1, gs2, gs3, xs0, xs1, xs2, xs3, sh, sw, ph, pw, dh, dw,
                     ACC_FP64: tl.constexpr, INDEX_64: tl.constexpr,
                     BP: tl.constexpr, BC: tl.constexpr):
    """Program (channel block, tap, split): partial[split, oc, tap] = sum over one chunk of
    positions of dy * x, accumulated per lane and reduced once, in a fixed order."""
    acc_t: tl.constexpr = tl.float64 if ACC_FP64 else tl.float32
    idx_t: tl.constexpr = tl.int64 if INDEX_64 else tl.int32
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
        n, oh, ow, ih, iw, p_ok, x_ok = _wgrad_positions(p0, hi, H, W, OH, OW, kh, kw,
                                                         sh, sw, ph, pw, dh, dw, BP)
        a = tl.load(gy_ptr + (n * gs0 + oh * gs2 + ow * gs3)[:, None] + (oc * gs1)[None, :],
                    mask=p_ok[:, None] & oc_ok[None, :], other=0.0).to(acc_t)
        b = tl.load(x_ptr + (n * xs0 + ih * xs2 + iw * xs3)[:, None] + (c * xs1)[None, :],
                    mask=x_ok[:, None] & oc_ok[None, :], other=0.0).to(acc_t)
        acc += a * b
    tl.store(part_ptr + (split * OC + oc) * (KH * KW) + tap, tl.sum(acc, axis=0), mask=oc_ok)


# ---------------------------------------------------------------------------------------------
# Host side


def _precision(dtype, allow_tf32):
    return "tf32" if dtype == torch.float32 and allow_tf32 and not INTERPRET else "ieee"


def _upcast(dtype):
    return INTERPRET and dtype == torch.bfloat16


def tap_axis(s, d):
    """(g, step, inv) of one axis for the dgrad tap enumeration: g = gcd(d, s), step = s / g,
    inv = (d / g)^-1 mod step."""
    g = math.gcd(d, s)
    step = s // g
    return g, step, (pow(d // g, -1, step) if step > 1 else 0)


def wgrad_tile(OCg, Cg, dtype, index_64):
    """The weight-gradient GEMM tile, chosen from the shapes only (no timing-based autotuning:
    the tile fixes the summation order, and the result must be bitwise reproducible)."""
    return _dedicated_tile(dtype, index_64) or (WGRAD_TILES[0] if min(OCg, Cg) >= 128 else WGRAD_TILES[1])


def _split(tiles, P, BK):
    """Split-K count: enough programs to fill the GPU, chunks of at least 4 K blocks."""
    want = triton.cdiv(TARGET_PROGRAMS, max(tiles, 1))
    return max(1, min(want, triton.cdiv(P, 4 * BK)))


@launcher
def forward(x, w, bias, residual, out, stride, padding, dilation, groups, relu, scale, allow_tf32,
            shuffle=1):
    """Write ``residual + scale * act(conv2d(x, w) + bias)`` into ``out``; ``padding`` is (top, left).
    ``shuffle`` = r > 1: ``out`` (and ``residual``) is the pixel shuffle of that by r,
    (N, OC / r^2, OH*r, OW*r), written directly (no intermediate)."""
    N, C, H, W = x.shape
    OC, Cg, KH, KW = w.shape
    OH, OW = out.shape[2] // shuffle, out.shape[3] // shuffle
    if out.numel() == 0:
        return out
    if Cg * KH * KW == 0:
        return out.copy_(_bias_only(bias, residual, out, relu, scale, shuffle))
    sh, sw = stride
    ph, pw = padding
    dh, dw = dilation
    dummy = out
    b = bias if bias is not None else dummy
    r = residual if residual is not None else dummy
    common = dict(KH=KH, KW=KW, HAS_BIAS=bias is not None,
                  HAS_RES=residual is not None, RELU=relu, ACC_FP64=x.dtype == torch.float64,
                  INDEX_64=_needs_int64(x, w, out, r))
    geo = (sh, sw, ph, pw, dh, dw, float(scale))
    if Cg == 1 and shuffle == 1:
        total = out.numel()
        _dw_fwd_kernel[(triton.cdiv(total, BLOCK),)](
            x, w, b, r, out, H, W, OC, OH, OW, OC // C, total, *x.stride(), *w.stride(),
            *r.stride(), *out.stride(), *geo, CHANNELS_LAST=_is_channels_last(out),
            STATIC_TAPS=KH * KW <= DW_STATIC_TAPS_MAX, BLOCK=BLOCK, num_warps=NUM_WARPS, **common)
        return out
    M, OCg = N * OH * OW, OC // groups
    _launch_gemm(_fwd_kernel, _fwd_kernel_tuned,
                 lambda bm, bn: (triton.cdiv(M, bm), triton.cdiv(OCg, bn), groups),
                 (x, w, b, r, out, H, W, OH, OW, M, Cg, OCg, *x.stride(), *w.stride(),
                  *r.stride(), *out.stride(), *geo), OCg, x.dtype, common["INDEX_64"],
                 STATIC_TAPS=KH * KW <= STATIC_TAPS_MAX and x.element_size() == 2,
                 PRECISION=_precision(x.dtype, allow_tf32),
                 UPCAST=_upcast(x.dtype), SHUFFLE=shuffle, **common)
    return out


def _bias_only(bias, residual, out, relu, scale, shuffle=1):
    N, C, H, W = out.shape
    shape = (N, C * shuffle * shuffle, H // shuffle, W // shuffle)  # the convolution's output
    z = out.new_zeros(shape) if bias is None else bias.view(1, -1, 1, 1).expand(shape)
    z = z.relu() if relu else z
    z = torch.nn.functional.pixel_shuffle(z * scale, shuffle) if shuffle > 1 else z * scale
    return z + (residual if residual is not None else 0)


@launcher
def input_grad(gy, w, bias, gx, stride, padding, dilation, groups, allow_tf32):
    """Write the input gradient of conv2d (= conv_transpose2d of ``gy``, plus ``bias`` per
    channel of ``gx`` if given) into ``gx``; ``padding`` is (top, left)."""
    N, C, H, W = gx.shape
    OC, Cg, KH, KW = w.shape
    _, _, OH, OW = gy.shape
    if gx.numel() == 0:
        return gx
    sh, sw = stride
    ph, pw = padding
    dh, dw = dilation
    taps = (*tap_axis(sh, dh), *tap_axis(sw, dw))
    b = bias if bias is not None else gx
    common = dict(HAS_BIAS=bias is not None, ACC_FP64=gx.dtype == torch.float64,
                  INDEX_64=_needs_int64(gy, w, gx))
    if OC * KH * KW == 0 or OH * OW == 0:
        return gx.copy_(torch.zeros_like(gx) if bias is None else bias.view(1, -1, 1, 1).expand_as(gx))
    if Cg == 1:
        total = gx.numel()
        _dw_dgrad_kernel[(triton.cdiv(total, BLOCK),)](
            gy, w, b, gx, C, H, W, OH, OW, OC // C, total, *gy.stride(), *w.stride(), *gx.stride(),
            sh, sw, ph, pw, dh, dw, *taps, triton.cdiv(KH, taps[1]), triton.cdiv(KW, taps[4]),
            KH, KW, CHANNELS_LAST=_is_channels_last(gx), BLOCK=BLOCK, num_warps=NUM_WARPS, **common)
        return gx
    QH, QW = triton.cdiv(H, sh), triton.cdiv(W, sw)
    M, OCg = N * QH * QW, OC // groups
    _launch_gemm(_dgrad_kernel, _dgrad_kernel_tuned,
                 lambda bm, bn: (triton.cdiv(M, bm), triton.cdiv(Cg, bn), groups * sh * sw),
                 (gy, w, b, gx, H, W, OH, OW, QH, QW, M, Cg, OCg, *gy.stride(), *w.stride(),
                  *gx.stride(), sh, sw, ph, pw, dh, dw, *taps, KH, KW), Cg, gx.dtype,
                 common["INDEX_64"], PRECISION=_precision(gx.dtype, allow_tf32),
                 UPCAST=_upcast(gx.dtype), **common)
    return gx


@launcher
def weight_grad(gy, x, gw, stride, padding, dilation, groups, allow_tf32):
    """Write the weight gradient of conv2d into ``gw`` (OC, Cg, KH, KW); deterministic split-K."""
    N, C, H, W = x.shape
    OC, Cg, KH, KW = gw.shape
    _, _, OH, OW = gy.shape
    if gw.numel() == 0:
        return gw
    P = N * OH * OW
    sh, sw = stride
    ph, pw = padding
    dh, dw = dilation
    part_dtype = acc_dtype(x.dtype)
    i64 = _needs_int64(gy, x, gw)
    geo = (sh, sw, ph, pw, dh, dw)
    if P == 0:
        return gw.zero_()
    if Cg == 1:
        BC = DW_BC
        split = _split(triton.cdiv(OC, BC) * KH * KW, P, DW_BP)
        chunk = triton.cdiv(triton.cdiv(P, split), DW_BP) * DW_BP
        part = torch.empty((split, OC, 1, KH, KW), dtype=part_dtype, device=x.device)
        _dw_wgrad_kernel[(triton.cdiv(OC, BC), KH * KW, split)](
            gy, x, part, H, W, OC, OH, OW, OC // C, P, KH, KW, chunk, *gy.stride(), *x.stride(),
            *geo, ACC_FP64=part_dtype == torch.float64, INDEX_64=i64, BP=DW_BP, BC=BC,
            num_warps=NUM_WARPS)
    else:
        OCg = OC // groups
        bm, bn, bk, nw, ns = wgrad_tile(OCg, Cg, x.dtype, i64)
        tiles = triton.cdiv(OCg, bm) * triton.cdiv(Cg, bn) * groups * KH * KW
        split = _split(tiles, P, bk)
        chunk = triton.cdiv(triton.cdiv(P, split), bk) * bk
        part = torch.empty((split, OC, Cg, KH, KW), dtype=part_dtype, device=x.device)
        _wgrad_kernel[(tiles, split)](
            gy, x, part, H, W, OH, OW, P, Cg, OCg, OC, KH, KW, chunk, *gy.stride(), *x.stride(),
            *geo, PRECISION=_precision(x.dtype, allow_tf32), UPCAST=_upcast(x.dtype),
            ACC_FP64=part_dtype == torch.float64, INDEX_64=i64, BM=bm, BN=bn, BK=bk,
            num_warps=nw, num_stages=ns)
    E = gw.numel()
    _reduce_kernel[(triton.cdiv(E, BLOCK),)](part, gw, E, part.shape[0], Cg, KH, KW, *gw.stride(),
                                             INDEX_64=i64, BLOCK=BLOCK, num_warps=NUM_WARPS)
    return gw


CONFIGS = _aot_configs()
