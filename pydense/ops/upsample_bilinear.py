"""Bilinear upsampling as torch.library ops: ``pydense::upsample_bilinear2d`` and its backward.

Every backend consumes the same per-axis tables (:func:`axis_tables`): built once per call with
PyTorch's source-index formula (``area_pixel_compute_scale`` / ``area_pixel_compute_source_index``,
in the accumulation type as ATen computes them: fp32, fp64 for fp64 data), so all backends pick
the same taps and weights. The
backward is a gather over the input (see ``kernels/upsample_bilinear.py``): no atomics, no
zero-fill, a fixed summation order, so it is bitwise deterministic and runs under
``torch.use_deterministic_algorithms(True)``.
"""
import functools
import math
import numbers
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .. import _backend
from ._common import acc_dtype, check_float_input, empty_output, launch, out_memory_format

OP, KEY = "interpolate", "upsample_bilinear2d"  # the public name; the registry key


def axis_scale(in_size, out_size, align_corners, scale, dtype=torch.float32):
    """ATen's area_pixel_compute_scale in ``dtype`` (fp32 or fp64); ``scale``: the user's factor or None."""
    f = np.float64 if dtype == torch.float64 else np.float32
    if align_corners:
        return f(in_size - 1) / f(out_size - 1) if out_size > 1 else f(0)
    if scale is not None and scale > 0:
        return f(1.0 / scale)
    return f(in_size) / f(out_size)


@functools.lru_cache(maxsize=256)
def axis_tables(in_size, out_size, align_corners, scale, device, dtype=torch.float32):
    """Per-axis tables ``(idx, lam, rng, max_len)``, computed in ``dtype`` (fp32, or fp64 for fp64 data).

    Cached per (sizes, align_corners, scale, device, dtype): a model reuses a handful of
    geometries, and rebuilding the tables would cost ~20 tiny kernel launches per call. The
    kernels only read them.

    idx: int32 (2, out): the two input taps of each output index; lam: ``dtype`` (2, out): their
    weights; rng: int32 (2, in): for each input index the range [start, end) of output indices
    whose taps include it; max_len: an upper bound of end - start (no device sync needed).
    """
    s = axis_scale(in_size, out_size, align_corners, scale, dtype)
    o = torch.arange(out_size, device=device, dtype=dtype)
    if in_size == out_size:  # ATen: an axis of unchanged size is the identity, whatever the scale,
        s = 1.0              # its second tap the element itself at weight 0 (no neighbour leaks in)
        src = o
    else:
        src = o * float(s) if align_corners else ((o + 0.5) * float(s) - 0.5).clamp_min(0)
    i0 = src.floor().to(torch.int32).clamp_max(in_size - 1)
    i1 = torch.where((i0 < in_size - 1) & (in_size != out_size), i0 + 1, i0)
    l1 = (src - i0).clamp(0, 1)
    i = torch.arange(in_size, device=device, dtype=torch.int32)
    start = torch.searchsorted(i1, i, right=False)  # first output whose i1 >= i
    end = torch.searchsorted(i0, i, right=True)     # first output whose i0 > i
    # Taps of input i have src in [i - 1, i + 1); with align_corners=False the outputs whose src
    # was clamped to 0 (raw src in [-0.5, 0)) also carry input 1 as a zero-weight tap. So a range
    # spans raw src of length <= 2.5: at most 2.5 / s + 1 outputs (+1 for rounding).
    max_len = min(out_size, int(2.5 / s) + 2) if s > 0 else out_size
    return (torch.stack([i0, i1]), torch.stack([1 - l1, l1]),
            torch.stack([start, end]).to(torch.int32), max_len)


def _scale_arg(s):
    return None if s <= 0 else s


@torch.library.custom_op("pydense::upsample_bilinear2d", mutates_args=())
def upsample_bilinear2d_op(input: torch.Tensor, output_size: Sequence[int], align_corners: bool,
                        scale_h: float, scale_w: float, backend: str) -> torch.Tensor:
    """4-D bilinear upsampling with a concrete backend; scale_h/scale_w <= 0 mean "none"."""
    oh, ow = output_size
    if backend == "torch":
        out = torch.ops.aten.upsample_bilinear2d.default(input, [oh, ow], align_corners,
                                                         _scale_arg(scale_h), _scale_arg(scale_w))
        return out.contiguous(memory_format=out_memory_format(input))
    h, w = input.shape[-2:]
    acc = acc_dtype(input.dtype)
    h_tab = axis_tables(h, oh, align_corners, _scale_arg(scale_h), input.device, acc)
    w_tab = axis_tables(w, ow, align_corners, _scale_arg(scale_w), input.device, acc)
    return two_tap_forward(input, (oh, ow), h_tab, w_tab, backend)


def two_tap_forward(input, out_hw, h_tab, w_tab, backend, skip=None):
    """out[n, c, oh, ow] = sum of the 4 taps of (oh, ow) given by the per-axis tables, on a
    pydense backend; the output keeps the input's memory format. Also serves bilinear_deconv2d,
    and with ``skip`` writes ``cat([that, skip], 1)`` in the same pass (upsample_concat)."""
    n, c = input.shape[:2]
    out = empty_output((n, c + (0 if skip is None else skip.shape[1]), *out_hw), input)
    launch(backend, "upsample_bilinear.forward", "_upsample_bilinear2d_fwd", input, skip,
           *h_tab[:2], *w_tab[:2], out)
    return out


@upsample_bilinear2d_op.register_fake
def _(input, output_size, align_corners, scale_h, scale_w, backend):
    n, c = input.shape[:2]
    return empty_output((n, c, *output_size), input)


@torch.library.custom_op("pydense::upsample_bilinear2d_backward", mutates_args=())
def upsample_bilinear2d_backward_op(grad_output: torch.Tensor, input_size: Sequence[int],
                                 align_corners: bool, scale_h: float, scale_w: float,
                                 backend: str, channels_last: bool) -> torch.Tensor:
    """Input gradient of upsample_bilinear2d (a deterministic gather); input_size is (N, C, H, W)."""
    n, c, h, w = input_size
    oh, ow = grad_output.shape[-2:]
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    if backend == "torch":
        g = torch.ops.aten.upsample_bilinear2d_backward.default(
            grad_output, [oh, ow], list(input_size), align_corners, _scale_arg(scale_h),
            _scale_arg(scale_w))
        return g.contiguous(memory_format=fmt)
    acc = acc_dtype(grad_output.dtype)
    h_tab = axis_tables(h, oh, align_corners, _scale_arg(scale_h), grad_output.device, acc)
    w_tab = axis_tables(w, ow, align_corners, _scale_arg(scale_w), grad_output.device, acc)
    return two_tap_backward(grad_output, input_size, fmt, h_tab, w_tab, backend)


def two_tap_backward(grad_output, input_size, fmt, h_tab, w_tab, backend):
    """The input gradient of :func:`two_tap_forward`: a gather over the input (deterministic)."""
    grad_input = torch.empty(tuple(input_size), dtype=grad_output.dtype, device=grad_output.device,
                             memory_format=fmt)
    launch(backend, "upsample_bilinear.backward", "_upsample_bilinear2d_bwd", grad_output,
           *h_tab[:3], *w_tab[:3], grad_input, max_len=(h_tab[3], w_tab[3]))
    return grad_input


@upsample_bilinear2d_backward_op.register_fake
def _(grad_output, input_size, align_corners, scale_h, scale_w, backend, channels_last):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return torch.empty(tuple(input_size), dtype=grad_output.dtype, device=grad_output.device,
                       memory_format=fmt)


def _setup_context(ctx, inputs, output):
    input, _, ctx.align_corners, ctx.scale_h, ctx.scale_w, ctx.backend = inputs
    ctx.input_size = list(input.shape)
    ctx.channels_last = out_memory_format(input) == torch.channels_last


def _backward(ctx, grad):
    g = upsample_bilinear2d_backward_op(grad, ctx.input_size, ctx.align_corners, ctx.scale_h,
                                     ctx.scale_w, ctx.backend, ctx.channels_last)
    return g, None, None, None, None, None


upsample_bilinear2d_op.register_autograd(_backward, setup_context=_setup_context)


# Double backward: the backward is linear in grad_output (the adjoint of the upsampling), so its
# gradient is the upsampling of the incoming gradient, on the same backend.


def _backward_setup_context(ctx, inputs, output):
    grad_output, _, ctx.align_corners, ctx.scale_h, ctx.scale_w, ctx.backend, _ = inputs
    ctx.output_size = list(grad_output.shape[-2:])


def _backward_backward(ctx, gg):
    d_grad_output = None
    if ctx.needs_input_grad[0]:
        d_grad_output = upsample_bilinear2d_op(gg, ctx.output_size, ctx.align_corners, ctx.scale_h,
                                            ctx.scale_w, ctx.backend)
    return d_grad_output, None, None, None, None, None, None


upsample_bilinear2d_backward_op.register_autograd(_backward_backward,
                                               setup_context=_backward_setup_context)


def _pair(value, name, kind):
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ValueError(f"{OP}: {name} must have 2 elements for 4-D input, got {value!r}")
        values = tuple(value)
    else:
        values = (value, value)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, kind):
            raise TypeError(f"{OP}: {name} must be {'an int' if kind is numbers.Integral else 'a number'}"
                            f" or a pair of them, got {value!r}")
        if not (v > 0 and math.isfinite(v)):
            raise ValueError(f"{OP}: {name} must be positive and finite, got {value!r}")
    return values


def interpolate(input, size=None, scale_factor=None, mode="bilinear", align_corners=None,
                recompute_scale_factor=None, antialias=False, *, backend="auto"):
    """Validate and dispatch (see pydense.functional.interpolate)."""
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"{OP}: input must be a Tensor, got {type(input).__name__}")
    if mode != "bilinear" or antialias or input.dim() != 4:
        if backend not in ("auto", "torch"):
            raise ValueError(f"{OP}: backend={backend!r} implements mode='bilinear' without "
                             f"antialias on 4-D input; use backend='auto' or 'torch' for mode={mode!r}"
                             f", antialias={antialias}, {input.dim()}-D input")
        return F.interpolate(input, size, scale_factor, mode, align_corners,
                             recompute_scale_factor, antialias)
    check_float_input(input, OP)
    if min(input.shape[-2:]) <= 0:
        raise ValueError(f"{OP}: input height and width must be positive, got {tuple(input.shape)}")
    if (size is None) == (scale_factor is None):
        raise ValueError(f"{OP}: exactly one of size or scale_factor must be given, got "
                         f"size={size!r}, scale_factor={scale_factor!r}")
    if align_corners is None:
        align_corners = False
    if not isinstance(align_corners, bool):
        raise TypeError(f"{OP}: align_corners must be a bool or None, got {align_corners!r}")
    h, w = input.shape[-2:]
    if size is not None:
        if recompute_scale_factor:
            raise ValueError(f"{OP}: recompute_scale_factor is not meaningful with an explicit size")
        out_hw = _pair(size, "size", numbers.Integral)
        scales = (-1.0, -1.0)
    else:
        factors = _pair(scale_factor, "scale_factor", numbers.Real)
        out_hw = (int(h * factors[0]), int(w * factors[1]))
        if min(out_hw) <= 0:
            raise ValueError(f"{OP}: scale_factor {scale_factor!r} gives an empty output {out_hw} for "
                             f"input size {(h, w)}")
        scales = (-1.0, -1.0) if recompute_scale_factor else tuple(float(f) for f in factors)
    backend = _backend.resolve(backend, input.device, KEY)
    if backend == "aten":
        return _backend.unrouted(F.interpolate, input, size, scale_factor, "bilinear",
                                  align_corners, recompute_scale_factor)
    return upsample_bilinear2d_op(input, [int(v) for v in out_hw], align_corners, scales[0],
                               scales[1], backend)
