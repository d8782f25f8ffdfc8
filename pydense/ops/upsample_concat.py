"""UNet's skip connection as one torch.library op: ``pydense::upsample_concat`` writes
``torch.cat([F.interpolate(x, ...), skip], dim=1)`` in one pass, without the upsampled
intermediate (eager: interpolate writes it, cat reads it back and writes it again).

The forward is the two-tap gather of bilinear upsampling (``kernels/upsample_bilinear.py``,
``csrc/*/upsample_bilinear.*``) with the skip copy fused: output channels ``c < C_x`` are
interpolated, channels ``c >= C_x`` copy ``skip``. "nearest" and "nearest-exact" are the same
kernels with nearest-neighbour tables (one tap of weight 1 per axis, ATen's source-index
formula). The backward splits the gradient: the skip's part is a view of it, x's part is the
deterministic gather backward of the upsampling, read in place from the gradient's first
``C_x`` channels.

Bytes: read x and skip, write the output once; the eager chain also writes and re-reads the
upsampled tensor (``benchmarks/bench_upsample_concat.py`` reports the ratio).
"""
import functools
import math
import numbers
from typing import Sequence

import numpy as np
import torch

from .. import _backend
from ._common import FLOAT_DTYPES, acc_dtype, empty_output, out_memory_format
from .upsample_bilinear import axis_tables, two_tap_backward, two_tap_forward

OP = "upsample_concat"
MODES = ("bilinear", "nearest", "nearest-exact")


@functools.lru_cache(maxsize=256)
def nearest_axis_tables(in_size, out_size, scale, exact, device, dtype=torch.float32):
    """Nearest-neighbour tables in the layout of ``upsample_bilinear.axis_tables``: the first tap
    is ATen's source index ``min(floor((o [+ 0.5]) * s), in - 1)``, the second none (-1) (s computed in fp32 as
    ``compute_scales_value``: 1 / scale_factor when given, else in / out), weights (1, 0)."""
    s = np.float32(1.0 / scale) if scale is not None else np.float32(in_size) / np.float32(out_size)
    o = np.arange(out_size, dtype=np.float32) + (np.float32(0.5) if exact else np.float32(0))
    src = np.minimum(np.floor(o * s).astype(np.int64), in_size - 1)
    i = np.arange(in_size)
    start, end = np.searchsorted(src, i, side="left"), np.searchsorted(src, i, side="right")
    # the second tap does not exist (-1: the kernels read 0 for it), so an inf is copied, never
    # multiplied by the zero weight (0 * inf = NaN)
    idx = torch.as_tensor(np.stack([src, np.full_like(src, -1)]), dtype=torch.int32, device=device)
    lam = torch.zeros(2, out_size, dtype=dtype, device=device)
    lam[0] = 1
    rng = torch.as_tensor(np.stack([start, end]), dtype=torch.int32, device=device)
    return idx, lam, rng, max(1, int((end - start).max()))


def _tables(mode, in_size, out_size, align_corners, scale, device, dtype):
    acc = acc_dtype(dtype)
    if mode == "bilinear":
        return axis_tables(in_size, out_size, align_corners, scale, device, acc)
    return nearest_axis_tables(in_size, out_size, scale, mode == "nearest-exact", device, acc)


def _scale(s):
    return None if s <= 0 else s


def _aten_upsample(x, out_hw, mode, align_corners, scales):
    if mode == "bilinear":
        return torch.ops.aten.upsample_bilinear2d.default(x, list(out_hw), align_corners, *scales)
    if mode == "nearest":
        return torch.ops.aten.upsample_nearest2d.default(x, list(out_hw), *scales)
    return torch.ops.aten._upsample_nearest_exact2d.default(x, list(out_hw), *scales)


def _aten_upsample_backward(g, out_hw, input_size, mode, align_corners, scales):
    if mode == "bilinear":
        return torch.ops.aten.upsample_bilinear2d_backward.default(
            g, list(out_hw), list(input_size), align_corners, *scales)
    if mode == "nearest":
        return torch.ops.aten.upsample_nearest2d_backward.default(g, list(out_hw), list(input_size), *scales)
    return torch.ops.aten._upsample_nearest_exact2d_backward.default(g, list(out_hw), list(input_size), *scales)


@torch.library.custom_op("pydense::upsample_concat", mutates_args=())
def upsample_concat_op(x: torch.Tensor, skip: torch.Tensor, mode: str, align_corners: bool,
                       scale_h: float, scale_w: float, backend: str) -> torch.Tensor:
    """cat([upsample(x) to skip's size, skip], 1) with a concrete backend; scales <= 0: none."""
    out_hw = tuple(skip.shape[-2:])
    scales = (_scale(scale_h), _scale(scale_w))
    if backend == "torch":
        out = torch.cat([_aten_upsample(x, out_hw, mode, align_corners, scales), skip], 1)
        return out.contiguous(memory_format=out_memory_format(x))
    tabs = [_tables(mode, x.shape[2 + d], out_hw[d], align_corners, scales[d], x.device, x.dtype)
            for d in range(2)]
    return two_tap_forward(x, out_hw, tabs[0], tabs[1], backend, skip=skip)


@upsample_concat_op.register_fake
def _(x, skip, mode, align_corners, scale_h, scale_w, backend):
    return empty_output((x.shape[0], x.shape[1] + skip.shape[1], *skip.shape[-2:]), x)


@torch.library.custom_op("pydense::upsample_concat_backward", mutates_args=())
def upsample_concat_backward_op(grad_up: torch.Tensor, input_size: Sequence[int], mode: str,
                             align_corners: bool, scale_h: float, scale_w: float, backend: str,
                             channels_last: bool) -> torch.Tensor:
    """x's gradient from ``grad_up`` (the output gradient's first C_x channels, any strides)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    out_hw = tuple(grad_up.shape[-2:])
    scales = (_scale(scale_h), _scale(scale_w))
    if backend == "torch":
        g = _aten_upsample_backward(grad_up, out_hw, input_size, mode, align_corners, scales)
        return g.contiguous(memory_format=fmt)
    tabs = [_tables(mode, input_size[2 + d], out_hw[d], align_corners, scales[d], grad_up.device,
                    grad_up.dtype) for d in range(2)]
    return two_tap_backward(grad_up, input_size, fmt, tabs[0], tabs[1], backend)


@upsample_concat_backward_op.register_fake
def _(grad_up, input_size, mode, align_corners, scale_h, scale_w, backend, channels_last):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return torch.empty(tuple(input_size), dtype=grad_up.dtype, device=grad_up.device,
                       memory_format=fmt)


def _setup_context(ctx, inputs, output):
    x, _, ctx.mode, ctx.align_corners, ctx.scale_h, ctx.scale_w, ctx.backend = inputs
    ctx.input_size = list(x.shape)
    ctx.channels_last = out_memory_format(x) == torch.channels_last


def _backward(ctx, grad):
    cx = ctx.input_size[1]
    gx = upsample_concat_backward_op(grad[:, :cx], ctx.input_size, ctx.mode, ctx.align_corners,
                                  ctx.scale_h, ctx.scale_w, ctx.backend, ctx.channels_last)
    return gx, grad[:, cx:], None, None, None, None, None


upsample_concat_op.register_autograd(_backward, setup_context=_setup_context)


# Double backward: x's gradient is linear in grad_up (the adjoint of the upsampling), so its
# gradient is the upsampling of the incoming gradient: the forward op with a skip of no channels
# (same backend and mode); the skip's gradient is a view of the output gradient.


def _backward_setup_context(ctx, inputs, output):
    grad_up, _, ctx.mode, ctx.align_corners, ctx.scale_h, ctx.scale_w, ctx.backend, _ = inputs
    ctx.output_size = list(grad_up.shape[-2:])


def _backward_backward(ctx, gg):
    d_grad_up = None
    if ctx.needs_input_grad[0]:
        no_skip = gg.new_empty((gg.shape[0], 0, *ctx.output_size))
        d_grad_up = upsample_concat_op(gg, no_skip, ctx.mode, ctx.align_corners, ctx.scale_h,
                                       ctx.scale_w, ctx.backend)
    return d_grad_up, None, None, None, None, None, None, None


upsample_concat_backward_op.register_autograd(_backward_backward,
                                           setup_context=_backward_setup_context)


def _factors(scale_factor):
    values = tuple(scale_factor) if isinstance(scale_factor, (list, tuple)) else (scale_factor,) * 2
    if len(values) != 2 or not all(isinstance(v, numbers.Real) and not isinstance(v, bool)
                                   and v > 0 and math.isfinite(v) for v in values):
        raise ValueError(f"{OP}: scale_factor must be a positive finite number, a pair of them, or "
                         f"None (upsample to skip's size), got {scale_factor!r}")
    return tuple(float(v) for v in values)


def upsample_concat(x, skip, scale_factor=2, mode="bilinear", align_corners=None, backend="auto"):
    """Validate, pick the backend, and call the op (see pydense.functional.upsample_concat)."""
    for name, t in (("x", x), ("skip", skip)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{OP}: {name} must be a Tensor, got {type(t).__name__}")
        if t.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{OP}: {name} dtype must be one of float16, bfloat16, float32, "
                            f"float64, got {t.dtype}")
    if x.dim() != skip.dim() or x.dim() not in (3, 4):
        raise ValueError(f"{OP}: x and skip must both be 4-D (N, C, H, W) or both 3-D (C, H, W), "
                         f"got shapes {tuple(x.shape)} and {tuple(skip.shape)}")
    if x.dim() == 3:
        return upsample_concat(x[None], skip[None], scale_factor, mode, align_corners, backend)[0]
    if x.device != skip.device:
        raise ValueError(f"{OP}: skip must be on x's device {x.device}, got {skip.device}")
    if skip.shape[0] != x.shape[0]:
        raise ValueError(f"{OP}: skip's batch size must be x's ({x.shape[0]}), got {skip.shape[0]}")
    if min(x.shape[-2:]) <= 0:
        raise ValueError(f"{OP}: x's height and width must be positive, got {tuple(x.shape)}")
    if mode not in MODES:
        raise ValueError(f"{OP}: mode must be one of {MODES}, got {mode!r}")
    if align_corners is not None and not isinstance(align_corners, bool):
        raise TypeError(f"{OP}: align_corners must be a bool or None, got {align_corners!r}")
    if mode != "bilinear" and align_corners:
        raise ValueError(f"{OP}: align_corners=True needs mode='bilinear', got mode={mode!r}")
    align_corners = bool(align_corners)
    out_hw = tuple(skip.shape[-2:])
    if min(out_hw) <= 0:  # F.interpolate to an empty size raises
        raise ValueError(f"{OP}: skip's height and width (the output size) must be positive, got "
                         f"{tuple(skip.shape)}")
    if scale_factor is None:
        scales = (-1.0, -1.0)
    else:
        scales = _factors(scale_factor)
        up_hw = tuple(math.floor(float(x.shape[2 + d]) * scales[d]) for d in range(2))
        if up_hw != out_hw:
            raise ValueError(f"{OP}: scale_factor={scale_factor!r} upsamples x's {tuple(x.shape[-2:])} "
                             f"to {up_hw}, but skip's size is {out_hw}; pass scale_factor=None to "
                             f"upsample to skip's size")
    if x.dtype != skip.dtype:  # as torch.cat does (e.g. under autocast): the promoted dtype
        dtype = torch.promote_types(x.dtype, skip.dtype)
        x, skip = x.to(dtype), skip.to(dtype)
    backend = _backend.resolve(backend, x.device, OP)
    if backend == "aten":  # the stock chain itself: interpolate, then cat
        up = _backend.unrouted(_aten_upsample, x, tuple(skip.shape[-2:]), mode, align_corners,
                                (_scale(scales[0]), _scale(scales[1])))
        return torch.cat([up, skip], 1)
    return upsample_concat_op(x, skip, mode, align_corners, scales[0], scales[1], backend)
