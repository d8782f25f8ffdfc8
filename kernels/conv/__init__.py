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
valid taps are a scalar arithmetic sequence (``tap_range``): with stride s only 1/s of the taps
per axis are visited, never multiplied as masked zeros (a k64 s32 transposed conv does 4 taps, not
4096). Given g = gcd(d, s), step = s / g and inv = (d / g)^-1 mod step, the taps of an input
index i with r = (i + p) % s are ``k = k0 + j*step`` with ``k0 = (r/g * inv) % step`` (none when
g does not divide r); the output index is then ``o = (i + p - k*d) / s`` (exact). The same
enumeration, per element, drives the depthwise kernel and the C++ kernels (csrc/common/conv.h).

Weight gradient (per group and tap: M = OCg, N = Cg, K = N*OH*OW), deterministic: the K range is
split into SPLIT fixed chunks, each program writes its partial tile into a buffer (fp32, fp64 for
fp64 data), and ``_conv2d_wgrad_reduce_kernel`` sums the partials in split order; no atomics, so
the result is bitwise identical from run to run (for a given SPLIT, which depends on the shapes
only).

Sub-pixel convolution (EDSR's upsampler): with ``SHUFFLE`` = r > 1 the forward writes its output
straight into the pixel-shuffled layout Y (N, OC / r^2, OH*r, OW*r), conv channel
``oc = c*r*r + i*r + j`` at (oh, ow) going to ``Y[n, c, oh*r + i, ow*r + j]`` (the residual is
read in Y's layout too). The offset stays separable into a row part
``n*s0 + oh*(r*s2) + ow*(r*s3)`` and a column part ``c*s1 + i*s2 + j*s3`` (``_out_offsets``), so
the tile's store costs what a plain one does; Cg == 1 then runs the GEMM kernel too.

Depthwise convolutions (Cg == 1, any channel multiplier OCg) are memory-bound and have no GEMM
worth the name; they get direct kernels: ``_conv2d_dw_fwd_kernel`` (one output element per lane,
taps unrolled, same epilogue), ``_conv2d_dw_dgrad_kernel`` (a gather with the per-element tap
sequence) and ``_conv2d_dw_wgrad_kernel`` (2-D tiles of positions x channels, reduced in a fixed
order, split-K).

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

Layout of this package:

* ``tiles.py``: the tile and configuration choice (``gemm_tile``, ``wgrad_tile``, autotuning and
  its pruning, split-K, precision flags) and ``CONFIGS``, the AOT table;
* ``gemm.py``: the implicit-GEMM kernels (forward, input gradient, weight-gradient partials) and
  their launchers;
* ``depthwise.py``: the depthwise kernels and their launchers;
* ``shared.py``: what both share (the epilogue, the tap enumeration, the weight gradient's
  positions and its split-order reduction, the kernels' argument groups);
* here: the launchers ``forward``, ``input_grad`` and ``weight_grad`` that pydense.ops calls
  (device guard, empty and degenerate shapes, index width, then the depthwise or GEMM path).
"""
import torch

from .._common import _needs_int64, acc_dtype, allow_tf32, launcher
from . import depthwise, gemm, shared, tiles
# Every kernel, for the AOT test (CONFIGS names them; tests/triton_aot.py finds them here).
from .depthwise import (_conv2d_dw_dgrad_kernel, _conv2d_dw_fwd_kernel,  # noqa: F401
                        _conv2d_dw_wgrad_kernel)
from .gemm import (_conv2d_dgrad_kernel, _conv2d_dgrad_kernel_tuned, _conv2d_fwd_kernel,  # noqa: F401
                   _conv2d_fwd_kernel_tuned, _conv2d_wgrad_kernel)
from .shared import _conv2d_wgrad_reduce_kernel, conv_args, tap_axis  # noqa: F401
from .tiles import (BLOCK, CONFIGS, DW_BC, DW_BP, DW_STATIC_TAPS_MAX,  # noqa: F401
                    FP64_TILE, GEMM_TILES, INDEX64_TILE, INTERPRET_TILE, NUM_WARPS, SMEM_BUDGET,
                    STATIC_TAPS_MAX, WGRAD_TILES, autotune_enabled, gemm_tile, pipeline_smem,
                    wgrad_tile)


@launcher
def forward(x, w, bias, residual, stride, padding, dilation, relu, scale, shuffle, out):
    """Write ``residual + scale * act(conv2d(x, w) + bias)`` into ``out``; ``padding`` is
    (top, left). ``shuffle`` = r > 1: ``out`` (and ``residual``) is the pixel shuffle of that by
    r, (N, OC / r^2, OH*r, OW*r), written directly (no intermediate)."""
    OC, Cg, KH, KW = w.shape
    if out.numel() == 0:
        return out
    if Cg * KH * KW == 0:
        return out.copy_(_bias_only(bias, residual, out, relu, scale, shuffle))
    b = bias if bias is not None else out  # stand-ins for an absent bias / residual (never read)
    r = residual if residual is not None else out
    conv = conv_args(stride, padding, dilation)
    index_64 = _needs_int64(x, w, out, r)
    flags = dict(has_bias=bias is not None, has_res=residual is not None, relu=relu)
    if Cg == 1 and shuffle == 1:
        depthwise.fwd(x, w, b, r, out, conv, float(scale), index_64, **flags)
    else:
        gemm.fwd(x, w, b, r, out, conv, float(scale), x.shape[1] // Cg, shuffle, index_64,
                 allow_tf32(), **flags)
    return out


def _bias_only(bias, residual, out, relu, scale, shuffle=1):
    N, C, H, W = out.shape
    shape = (N, C * shuffle * shuffle, H // shuffle, W // shuffle)  # the convolution's output
    z = out.new_zeros(shape) if bias is None else bias.view(1, -1, 1, 1).expand(shape)
    z = z.relu() if relu else z
    z = torch.nn.functional.pixel_shuffle(z * scale, shuffle) if shuffle > 1 else z * scale
    return z + (residual if residual is not None else 0)


@launcher
def input_grad(gy, w, bias, stride, padding, dilation, gx):
    """Write the input gradient of conv2d (= conv_transpose2d of ``gy``, plus ``bias`` per
    channel of ``gx`` if given) into ``gx``; ``padding`` is (top, left)."""
    OC, Cg, KH, KW = w.shape
    OH, OW = gy.shape[2], gy.shape[3]
    if gx.numel() == 0:
        return gx
    b = bias if bias is not None else gx  # a stand-in for an absent bias (never read)
    conv = conv_args(stride, padding, dilation)
    index_64 = _needs_int64(gy, w, gx)
    if OC * KH * KW == 0 or OH * OW == 0:
        return gx.copy_(torch.zeros_like(gx) if bias is None
                        else bias.view(1, -1, 1, 1).expand_as(gx))
    if Cg == 1:
        depthwise.dgrad(gy, w, b, gx, conv, index_64, has_bias=bias is not None)
    else:
        gemm.dgrad(gy, w, b, gx, conv, gx.shape[1] // Cg, index_64, allow_tf32(),
                   has_bias=bias is not None)
    return gx


@launcher
def weight_grad(gy, x, stride, padding, dilation, gw):
    """Write the weight gradient of conv2d into ``gw`` (OC, Cg, KH, KW); deterministic split-K."""
    Cg = gw.shape[1]
    if gw.numel() == 0:
        return gw
    conv = conv_args(stride, padding, dilation)
    index_64 = _needs_int64(gy, x, gw)
    if gy.shape[0] * gy.shape[2] * gy.shape[3] == 0:
        return gw.zero_()
    if Cg == 1:
        part = depthwise.wgrad(gy, x, gw, conv, index_64, acc_dtype(x.dtype))
    else:
        part = gemm.wgrad(gy, x, gw, conv, x.shape[1] // Cg, index_64, allow_tf32(), acc_dtype(x.dtype))
    shared.wgrad_reduce(part, gw, index_64)
    return gw
