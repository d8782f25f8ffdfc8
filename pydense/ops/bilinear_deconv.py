"""FCN's fixed bilinear deconvolution as torch.library ops: ``pydense::bilinear_deconv2d`` and
its backward.

FCN upsamples with a bias-free ``ConvTranspose2d(C, C, k=2f, stride=f)`` whose weights are the
bilinear kernel ``w(i, j) = (1 - |i - c| / f) (1 - |j - c| / f)``, ``c = f - 0.5``, on the channel
diagonal, then crops. Per axis each full output index ``o`` receives exactly two inputs,
``i1 = o // f`` and ``i0 = i1 - 1``, with weights ``w1(o - i * f)``: a separable two-tap gather,
computed here by the same kernels as bilinear interpolation (``kernels/upsample_bilinear.py``,
``csrc/*/upsample_bilinear.*``) with their own per-axis tables: no weight tensor, no
multiplications by the zeros off the diagonal, the crop fused (only the cropped window is
computed), and the same deterministic gather backward.
"""
import functools
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .. import _backend
from ._common import acc_dtype, check_image_input, empty_output, out_memory_format
from .upsample_bilinear import two_tap_backward, two_tap_forward

OP = "bilinear_deconv2d"


def kernel_1d(factor):
    """FCN's 1-D bilinear kernel of size 2 * factor (float64): 1 - |j - c| / f, c = f - 0.5."""
    j = np.arange(2 * factor, dtype=np.float64)
    return 1 - np.abs(j - (factor - 0.5)) / factor


def full_size(in_size, factor):
    """ConvTranspose2d(k=2f, stride=f, padding=0) output size: (in - 1) * f + 2f."""
    return (in_size + 1) * factor


@functools.lru_cache(maxsize=256)
def axis_tables(in_size, factor, crop, out_size, device, dtype=torch.float32):
    """Per-axis tables (idx, lam, rng, max_len) of the cropped window [crop, crop + out_size)
    of the full deconvolution output (same layout as upsample_bilinear.axis_tables)."""
    o = torch.arange(crop, crop + out_size, device=device, dtype=torch.int64)
    k = torch.as_tensor(kernel_1d(factor), device=device, dtype=dtype)
    i1 = o // factor
    i0 = i1 - 1
    taps, lams = [], []
    for i in (i0, i1):
        inside = (i >= 0) & (i < in_size)
        lams.append(torch.where(inside, k[(o - i * factor).clamp(0, 2 * factor - 1)], 0))
        # -1: no such tap (the deconvolution has a single input there); the kernels read 0 for it
        # and never multiply a real value by its zero weight (inf * 0 would give NaN)
        taps.append(torch.where(inside, i, -1).to(torch.int32))
    i = torch.arange(in_size, device=device, dtype=torch.int64)
    start = (i * factor - crop).clamp(0, out_size)
    end = (i * factor + 2 * factor - crop).clamp(0, out_size)
    return (torch.stack(taps), torch.stack(lams), torch.stack([start, end]).to(torch.int32),
            min(2 * factor, out_size))


def tables(input_hw, factor, crop, out_hw, device, dtype):
    """The (H, W) axis tables of the deconvolution's window, in the accumulation type of ``dtype``."""
    acc = acc_dtype(dtype)
    return [axis_tables(input_hw[d], factor, crop, out_hw[d], device, acc) for d in range(2)]


def weight(channels, factor, dtype=torch.float32, device=None):
    """FCN's ConvTranspose2d weight (channels, channels, 2f, 2f): the bilinear kernel on the diagonal."""
    k1 = torch.as_tensor(kernel_1d(factor))
    w = torch.zeros(channels, channels, 2 * factor, 2 * factor, dtype=torch.float64)
    w[range(channels), range(channels)] = torch.outer(k1, k1)
    return w.to(dtype=dtype, device=device)


def shape_class(input):
    """The input's class in ``pydense._tuned``'s tables: its layout, "channels_last" or "nchw" (the
    CPU kernel's speed against ATen's depends on it)."""
    cl = input.is_contiguous(memory_format=torch.channels_last) and not input.is_contiguous()
    return "channels_last" if cl else "nchw"


def _aten_deconv(input, factor, crop, out_hw):
    """The stock computation (FCN's fixed bilinear ConvTranspose2d, then the crop), differentiable
    by ATen's autograd: the "torch" backend inside the op, and "aten", which ``auto`` may pick."""
    w = weight(input.shape[1], factor, input.dtype, input.device)
    return F.conv_transpose2d(input, w, stride=factor)[..., crop:crop + out_hw[0], crop:crop + out_hw[1]]


@torch.library.custom_op("pydense::bilinear_deconv2d", mutates_args=())
def bilinear_deconv2d_op(input: torch.Tensor, factor: int, crop: int, output_size: Sequence[int],
                      backend: str) -> torch.Tensor:
    """Cropped FCN bilinear deconvolution of a 4-D input with a concrete backend."""
    oh, ow = output_size
    if backend == "torch":
        out = _aten_deconv(input, factor, crop, (oh, ow))
        return out.contiguous(memory_format=out_memory_format(input))
    h_tab, w_tab = tables(input.shape[-2:], factor, crop, (oh, ow), input.device, input.dtype)
    return two_tap_forward(input, (oh, ow), h_tab, w_tab, backend)


@bilinear_deconv2d_op.register_fake
def _(input, factor, crop, output_size, backend):
    return empty_output((*input.shape[:2], *output_size), input)


@torch.library.custom_op("pydense::bilinear_deconv2d_backward", mutates_args=())
def bilinear_deconv2d_backward_op(grad_output: torch.Tensor, input_size: Sequence[int], factor: int,
                               crop: int, backend: str, channels_last: bool) -> torch.Tensor:
    """Input gradient of bilinear_deconv2d (a deterministic gather); input_size is (N, C, H, W)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    out_hw = tuple(grad_output.shape[-2:])
    if backend == "torch":
        n, c, h, w = input_size
        full = torch.zeros((n, c, full_size(h, factor), full_size(w, factor)),
                           dtype=grad_output.dtype, device=grad_output.device)
        full[..., crop:crop + out_hw[0], crop:crop + out_hw[1]] = grad_output
        g = F.conv2d(full, weight(c, factor, grad_output.dtype, grad_output.device), stride=factor)
        return g.contiguous(memory_format=fmt)
    h_tab, w_tab = tables(input_size[-2:], factor, crop, out_hw, grad_output.device,
                           grad_output.dtype)
    return two_tap_backward(grad_output, input_size, fmt, h_tab, w_tab, backend)


@bilinear_deconv2d_backward_op.register_fake
def _(grad_output, input_size, factor, crop, backend, channels_last):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return torch.empty(tuple(input_size), dtype=grad_output.dtype, device=grad_output.device,
                       memory_format=fmt)


def _setup_context(ctx, inputs, output):
    input, ctx.factor, ctx.crop, _, ctx.backend = inputs
    ctx.input_size = list(input.shape)
    ctx.channels_last = out_memory_format(input) == torch.channels_last


def _backward(ctx, grad):
    g = bilinear_deconv2d_backward_op(grad, ctx.input_size, ctx.factor, ctx.crop, ctx.backend,
                                   ctx.channels_last)
    return g, None, None, None, None


bilinear_deconv2d_op.register_autograd(_backward, setup_context=_setup_context)


# Double backward: the backward is linear in grad_output (the adjoint of the deconvolution), so its
# gradient is the deconvolution of the incoming gradient, on the same backend.


def _backward_setup_context(ctx, inputs, output):
    grad_output, _, ctx.factor, ctx.crop, ctx.backend, _ = inputs
    ctx.output_size = list(grad_output.shape[-2:])


def _backward_backward(ctx, gg):
    d_grad_output = None
    if ctx.needs_input_grad[0]:
        d_grad_output = bilinear_deconv2d_op(gg, ctx.factor, ctx.crop, ctx.output_size, ctx.backend)
    return d_grad_output, None, None, None, None, None


bilinear_deconv2d_backward_op.register_autograd(_backward_backward,
                                             setup_context=_backward_setup_context)


def bilinear_deconv2d(input, factor, crop=0, output_size=None, backend="auto"):
    """Validate, pick the backend, and call the op (see pydense.functional.bilinear_deconv2d)."""
    check_image_input(input, OP, dims=(4,))
    if isinstance(factor, bool) or not isinstance(factor, int) or factor <= 0:
        raise ValueError(f"{OP}: factor must be a positive int, got {factor!r}")
    if isinstance(crop, bool) or not isinstance(crop, int) or crop < 0:
        raise ValueError(f"{OP}: crop must be a non-negative int, got {crop!r}")
    full = tuple(full_size(s, factor) for s in input.shape[-2:])
    if output_size is None:
        out_hw = tuple(f - crop for f in full)
    else:
        if not isinstance(output_size, (tuple, list, torch.Size)):
            raise TypeError(f"{OP}: output_size must be a sequence (H, W) or (N, C, H, W) of ints, "
                            f"got {output_size!r}")
        out_hw = tuple(output_size)[-2:] if len(tuple(output_size)) in (2, 4) else None
        if out_hw is None or not all(isinstance(v, int) and not isinstance(v, bool) for v in out_hw):
            raise ValueError(f"{OP}: output_size must be (H, W) or (N, C, H, W) ints, got {output_size!r}")
    if min(out_hw) <= 0 or any(crop + out_hw[d] > full[d] for d in range(2)):
        raise ValueError(f"{OP}: crop {crop} + output_size {out_hw} must fit the full output {full} "
                         f"((in + 1) * factor) and be positive")
    backend = _backend.resolve(backend, input.device, OP, shape_class=shape_class(input))
    if backend == "aten":
        return _backend.unrouted(_aten_deconv, input, factor, crop, out_hw)
    return bilinear_deconv2d_op(input, factor, crop, list(out_hw), backend)
