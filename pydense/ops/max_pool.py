"""max_pool2d with indices as torch.library ops: ``pydense::max_pool2d_with_indices`` and
``pydense::max_pool2d_backward``.

Both are ``torch.library.custom_op`` ops (opaque to torch.compile, with fake kernels and autograd
registered here). Indices are ATen's int64 flat indices (``ih * W + iw``), or, with
``compact=True``, uint8 window-local offsets ``kh * KW + kw`` (8x less memory; SegNet stores only
these). Implementations allocate the outputs in the input's memory format and hand them to the
chosen backend: the Triton kernels (``pydense.kernels.max_pool``), the compiled C++ kernels
(``torch.ops.pydense._max_pool2d_fwd``/``_bwd``) or the stock PyTorch op (plus a conversion of
its indices for ``compact=True``). Argument validation happens in :func:`normalize_args`.
"""
from typing import Sequence

import torch
import torch.nn.functional as F

from .. import _backend
from ._common import check_image_input, empty_output, int_pair, launch, out_memory_format

OP, KEY = "max_pool2d_with_indices", "max_pool2d"  # the public name; the registry key
MAX_COMPACT_WINDOW = 256  # taps a uint8 offset can name


def output_size(in_size, k, s, p, d, ceil_mode):
    """ATen's pooling output size along one axis (pooling_output_shape)."""
    num = in_size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)
    out = num // s + 1
    if ceil_mode and (out - 1) * s >= in_size + p:  # the last window must start inside
        out -= 1
    return out


def normalize_args(input, kernel_size, stride, padding, dilation, ceil_mode, compact):
    """Check every argument; return (kernel, stride, padding, dilation, (OH, OW)) as int pairs.

    Raises TypeError/ValueError naming the argument and the expected value.
    """
    check_image_input(input, OP, zero_batch_ok=False)
    k = int_pair(kernel_size, "kernel_size", OP, allow_single=True, minimum=1)
    s = k if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0) else int_pair(
        stride, "stride", OP, allow_single=True, minimum=1)
    p = int_pair(padding, "padding", OP, allow_single=True)
    d = int_pair(dilation, "dilation", OP, allow_single=True, minimum=1)
    if not isinstance(ceil_mode, bool):
        raise TypeError(f"{OP}: ceil_mode must be a bool, got {ceil_mode!r}")
    if not isinstance(compact, bool):
        raise TypeError(f"{OP}: compact must be a bool, got {compact!r}")
    if min(p) < 0 or p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"{OP}: padding must be non-negative and at most half the kernel_size "
                         f"{k} (as in PyTorch), got {p}")
    if compact and k[0] * k[1] > MAX_COMPACT_WINDOW:
        raise ValueError(f"{OP}: compact=True stores uint8 window offsets and needs "
                         f"kernel_size[0] * kernel_size[1] <= {MAX_COMPACT_WINDOW}, got kernel_size "
                         f"{k} ({k[0] * k[1]} taps); use compact=False")
    in_hw = tuple(input.shape[-2:])
    out_hw = tuple(output_size(in_hw[i], k[i], s[i], p[i], d[i], ceil_mode) for i in range(2))
    if min(out_hw) <= 0:
        raise ValueError(f"{OP}: the output size must be positive, got {out_hw} (input {in_hw}, "
                         f"kernel_size {k}, stride {s}, padding {p}, dilation {d})")
    return k, s, p, d, out_hw


def flat_to_compact(indices, in_w, out_hw, k, s, p, d):
    """ATen's flat indices (ih * W + iw) -> window offsets kh * KW + kw (uint8)."""
    oh = torch.arange(out_hw[0], device=indices.device).view(-1, 1)
    ow = torch.arange(out_hw[1], device=indices.device).view(1, -1)
    kh = (torch.div(indices, in_w, rounding_mode="floor") - (oh * s[0] - p[0])) // d[0]
    kw = (indices % in_w - (ow * s[1] - p[1])) // d[1]
    return (kh * k[1] + kw).to(torch.uint8)


def compact_to_flat(indices, k, s, p, d, target_hw):
    """Window offsets kh * KW + kw of a pooled (.., H, W) map -> flat indices th * TW + tw into a
    target_hw plane, and whether each is valid (offset < KH*KW and the tap inside the plane)."""
    h, w = indices.shape[-2:]
    ih = torch.arange(h, device=indices.device).view(-1, 1)
    iw = torch.arange(w, device=indices.device).view(1, -1)
    off = indices.long()
    th = ih * s[0] - p[0] + torch.div(off, k[1], rounding_mode="floor") * d[0]
    tw = iw * s[1] - p[1] + (off % k[1]) * d[1]
    valid = (off < k[0] * k[1]) & (th >= 0) & (th < target_hw[0]) & (tw >= 0) & (tw < target_hw[1])
    return torch.where(valid, th * target_hw[1] + tw, -1), valid


def _empty_outputs(input, out_hw, compact):
    n, c = input.shape[:2]
    out = empty_output((n, c, *out_hw), input)
    idx = torch.empty((n, c, *out_hw), dtype=torch.uint8 if compact else torch.int64,
                      device=input.device, memory_format=out_memory_format(input))
    return out, idx


@torch.library.custom_op("pydense::max_pool2d_with_indices", mutates_args=())
def max_pool2d_with_indices_op(input: torch.Tensor, kernel_size: Sequence[int], stride: Sequence[int],
                            padding: Sequence[int], dilation: Sequence[int], ceil_mode: bool,
                            compact: bool, backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    """4-D max_pool2d with indices, normalized arguments and a concrete backend (see functional)."""
    k, s, p, d = tuple(kernel_size), tuple(stride), tuple(padding), tuple(dilation)
    if backend == "torch":
        out, idx = F.max_pool2d(input, k, s, p, d, ceil_mode=ceil_mode, return_indices=True)
        fmt = out_memory_format(input)
        if compact:
            idx = flat_to_compact(idx, input.shape[-1], tuple(out.shape[-2:]), k, s, p, d)
        return out.contiguous(memory_format=fmt), idx.contiguous(memory_format=fmt)
    out_hw = tuple(output_size(input.shape[2 + i], k[i], s[i], p[i], d[i], ceil_mode) for i in range(2))
    out, idx = _empty_outputs(input, out_hw, compact)
    launch(backend, "max_pool.forward", "_max_pool2d_fwd", input, k, s, p, d, out, idx)
    return out, idx


@max_pool2d_with_indices_op.register_fake
def _(input, kernel_size, stride, padding, dilation, ceil_mode, compact, backend):
    out_hw = tuple(output_size(input.shape[2 + i], kernel_size[i], stride[i], padding[i], dilation[i],
                               ceil_mode) for i in range(2))
    return _empty_outputs(input, out_hw, compact)


@torch.library.custom_op("pydense::max_pool2d_backward", mutates_args=())
def max_pool2d_backward_op(grad_output: torch.Tensor, indices: torch.Tensor, input_size: Sequence[int],
                        kernel_size: Sequence[int], stride: Sequence[int], padding: Sequence[int],
                        dilation: Sequence[int], channels_last: bool, backend: str) -> torch.Tensor:
    """grad_input (N, C, H, W): the sum of grad_output over the windows whose index names each
    input element (a deterministic gather on the pydense backends)."""
    n, c = grad_output.shape[:2]
    h, w = input_size
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    k, s, p, d = tuple(kernel_size), tuple(stride), tuple(padding), tuple(dilation)
    if backend == "torch":
        flat = indices
        if indices.dtype == torch.uint8:
            flat, _ = compact_to_flat(indices, k, s, p, d, (h, w))
        gi = torch.zeros((n, c, h * w), dtype=grad_output.dtype, device=grad_output.device)
        gi.scatter_add_(2, flat.reshape(n, c, -1), grad_output.reshape(n, c, -1))
        return gi.view(n, c, h, w).contiguous(memory_format=fmt)
    grad_input = torch.empty((n, c, h, w), dtype=grad_output.dtype, device=grad_output.device,
                             memory_format=fmt)
    launch(backend, "max_pool.backward", "_max_pool2d_bwd", grad_output, indices, k, s, p, d,
           grad_input)
    return grad_input


@max_pool2d_backward_op.register_fake
def _(grad_output, indices, input_size, kernel_size, stride, padding, dilation, channels_last, backend):
    n, c = grad_output.shape[:2]
    return torch.empty((n, c, *input_size), dtype=grad_output.dtype, device=grad_output.device,
                       memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def _setup_context(ctx, inputs, output):
    input, kernel_size, stride, padding, dilation, _, _, backend = inputs
    _, indices = output
    ctx.save_for_backward(indices)
    ctx.mark_non_differentiable(indices)
    ctx.geometry = (list(input.shape[-2:]), list(kernel_size), list(stride), list(padding),
                    list(dilation))
    ctx.channels_last = out_memory_format(input) == torch.channels_last
    ctx.backend = backend


def _backward(ctx, grad, _grad_indices):
    (indices,) = ctx.saved_tensors
    grad_input = max_pool2d_backward_op(grad, indices, *ctx.geometry, ctx.channels_last, ctx.backend)
    return grad_input, None, None, None, None, None, None, None


max_pool2d_with_indices_op.register_autograd(_backward, setup_context=_setup_context)


# Double backward: the backward is linear in grad_output (a sum over the windows whose index names
# each element); its gradient is the adjoint gather of the incoming gradient at the indices, which
# is max_unpool2d's backward op (flat and compact indices, every backend).


def _backward_setup_context(ctx, inputs, output):
    _, indices, _, kernel_size, stride, padding, dilation, _, backend = inputs
    ctx.save_for_backward(indices)
    ctx.window = (list(kernel_size), list(stride), list(padding), list(dilation))
    ctx.backend = backend


def _backward_backward(ctx, gg):
    from .max_unpool import max_unpool2d_backward_op  # max_unpool imports this module

    (indices,) = ctx.saved_tensors
    d_grad_output = None
    if ctx.needs_input_grad[0]:  # the pool's own indices: always in range, no check needed
        d_grad_output = max_unpool2d_backward_op(gg, indices, *ctx.window, ctx.backend, False)
    return d_grad_output, None, None, None, None, None, None, None, None


max_pool2d_backward_op.register_autograd(_backward_backward, setup_context=_backward_setup_context)


def max_pool2d_with_indices(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, *, compact=False,
         backend="auto"):
    """Validate, pick the backend, and call ``pydense::max_pool2d_with_indices`` (3-D or 4-D)."""
    k, s, p, d, _ = normalize_args(input, kernel_size, stride, padding, dilation, ceil_mode, compact)
    backend = _backend.resolve(backend, input.device, KEY, shape_class=None if compact else "*")
    if backend == "aten":
        return _backend.unrouted(F.max_pool2d, input, k, s, p, d, ceil_mode=ceil_mode,
                                  return_indices=True)
    squeeze = input.dim() == 3
    if squeeze:
        input = input.unsqueeze(0)
    out, idx = max_pool2d_with_indices_op(input, list(k), list(s), list(p), list(d), ceil_mode, compact,
                                       backend)
    return (out.squeeze(0), idx.squeeze(0)) if squeeze else (out, idx)
