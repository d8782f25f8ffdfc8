"""max_unpool2d as torch.library ops: ``pydense::max_unpool2d`` and ``pydense::max_unpool2d_backward``.

Both are ``torch.library.custom_op`` ops (opaque to torch.compile, with fake kernels and autograd
registered here). Their implementations allocate the output in the input's memory format and hand
it to the chosen backend: the Triton kernels (``pydense.kernels.max_unpool``), the compiled C++
kernels (``torch.ops.pydense._max_unpool2d_fwd``/``_bwd``, csrc/cpu and csrc/cuda) or the stock
PyTorch op. Argument validation happens in :func:`normalize_args`, before any kernel runs.

Indices are int64 flat indices (``max_pool2d(..., return_indices=True)``) or uint8 compact window
offsets ``kh * KW + kw`` (``pydense.functional.max_pool2d_with_indices(..., compact=True)``): the
dtype says which. Compact indices are decoded with the pooling window (kernel_size, stride,
padding, dilation) by the kernels themselves; the "torch" backend decodes them to flat indices.
"""
import os
from typing import Sequence

import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import is_fake

from .. import _backend
from ._common import check_image_input, empty_output, int_pair, launch, out_memory_format
from .max_pool import MAX_COMPACT_WINDOW, compact_to_flat, max_pool2d_backward_op

OP = "max_unpool2d"


def normalize_args(input, indices, kernel_size, stride, padding, output_size, dilation=1):
    """Check every argument; return (kernel, stride, padding, (OH, OW), dilation) as int pairs.

    Raises TypeError/ValueError naming the argument and the expected value.
    """
    check_image_input(input, OP, zero_batch_ok=False)
    if not isinstance(indices, torch.Tensor):
        raise TypeError(f"{OP}: indices must be a Tensor, got {type(indices).__name__}")
    if indices.dtype not in (torch.int64, torch.uint8):
        raise TypeError(f"{OP}: indices must be int64 (flat, as returned by max_pool2d with "
                        f"return_indices=True) or uint8 (compact window offsets, from "
                        f"pydense.functional.max_pool2d_with_indices(..., compact=True)), got "
                        f"{indices.dtype}")
    if indices.shape != input.shape:
        raise ValueError(f"{OP}: indices must have the input's shape {tuple(input.shape)}, got "
                         f"{tuple(indices.shape)}")
    if indices.device != input.device:
        raise ValueError(f"{OP}: indices must be on the input's device {input.device}, got "
                         f"{indices.device}")
    k = int_pair(kernel_size, "kernel_size", OP, minimum=1)
    s = k if stride is None else int_pair(stride, "stride", OP, minimum=1)
    p = int_pair(padding, "padding", OP, minimum=0)
    d = int_pair(dilation, "dilation", OP, minimum=1)
    if indices.dtype == torch.uint8 and k[0] * k[1] > MAX_COMPACT_WINDOW:
        raise ValueError(f"{OP}: uint8 (compact) indices need kernel_size[0] * kernel_size[1] <= "
                         f"{MAX_COMPACT_WINDOW}, got kernel_size {k}")
    in_hw = tuple(input.shape[-2:])
    # the pool's input size (dilated window: d * (k - 1) + 1 taps wide)
    default = tuple((in_hw[i] - 1) * s[i] - 2 * p[i] + d[i] * (k[i] - 1) + 1 for i in range(2))
    if output_size is None:
        out_hw = default
    else:
        if isinstance(output_size, torch.Size):
            output_size = tuple(output_size)
        if not isinstance(output_size, (tuple, list)) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in output_size):
            raise TypeError(f"{OP}: output_size must be a sequence of ints, got {output_size!r}")
        if len(output_size) == input.dim():
            output_size = tuple(output_size)[-2:]
        if len(output_size) != 2:
            raise ValueError(f"{OP}: output_size must have 2 elements (H, W) or {input.dim()}, got "
                             f"{len(output_size)}")
        out_hw = tuple(output_size)
        for i in range(2):
            lo, hi = default[i] - s[i], default[i] + s[i]
            if not lo < out_hw[i] < hi:
                raise ValueError(
                    f"{OP}: output_size must lie strictly between {tuple(x - y for x, y in zip(default, s))} "
                    f"and {tuple(x + y for x, y in zip(default, s))} (the default size {default} -/+ "
                    f"stride), got {out_hw}")
    if min(out_hw) <= 0:
        raise ValueError(f"{OP}: the output size must be positive, got {out_hw} (input {in_hw}, "
                         f"kernel_size {k}, stride {s}, padding {p})")
    return k, s, p, out_hw, d


def gather_ok(in_hw, out_hw, k, s, p):
    """Mirror of csrc/common/max_unpool.h gather_ok: kernel == stride and every window meets the output."""
    return all(k[d] == s[d] and 0 <= p[d] < k[d] and (in_hw[d] - 1) * s[d] - p[d] < out_hw[d]
               for d in range(2))


def default_check_indices(device):
    """Index range checks: always on CPU (free); on GPU only when asked (they cost a host sync)."""
    return device.type == "cpu" or os.environ.get("PYDENSE_CHECK_INDICES", "0") == "1"


def check_index_range(indices, out_hw, name="indices", window=None):
    """Raise IndexError unless every index lies in [0, OH*OW) (int64 compare: no truncation);
    compact (uint8) indices: unless every offset names a tap inside the plane (``window`` =
    (kernel, stride, padding, dilation))."""
    if indices.numel() == 0:
        return
    if indices.dtype == torch.uint8:
        _, valid = compact_to_flat(indices, *window, out_hw)
        if not bool(valid.all()):
            pos = tuple(int(v) for v in (~valid).nonzero()[0])
            raise IndexError(f"{OP}: compact {name} must be window offsets kh * KW + kw below "
                             f"{window[0][0] * window[0][1]} whose tap lies in the {out_hw[0]}x"
                             f"{out_hw[1]} output plane; found {int(indices[pos])} at {name}{list(pos)}")
        return
    plane = out_hw[0] * out_hw[1]
    lo, hi = (int(v) for v in torch.aminmax(indices))
    if lo < 0 or hi >= plane:
        bad = lo if lo < 0 else hi
        raise IndexError(f"{OP}: {name} must lie in [0, {plane}) (output plane {out_hw[0]}x"
                         f"{out_hw[1]}); found {bad}")


def _empty_out(input, out_hw):
    n, c = input.shape[:2]
    return empty_output((n, c, *out_hw), input)


@torch.library.custom_op("pydense::max_unpool2d", mutates_args=())
def max_unpool2d_op(input: torch.Tensor, indices: torch.Tensor, output_size: Sequence[int],
                 kernel_size: Sequence[int], stride: Sequence[int], padding: Sequence[int],
                 dilation: Sequence[int], backend: str, check_indices: bool) -> torch.Tensor:
    """4-D max_unpool2d with normalized arguments and a concrete backend (see functional).
    ``dilation`` only decodes compact (uint8) indices."""
    out_hw = tuple(output_size)
    window = (tuple(kernel_size), tuple(stride), tuple(padding), tuple(dilation))
    if check_indices and backend != "cpu":  # the C++ CPU kernels check every index themselves
        check_index_range(indices, out_hw, window=window)
    if backend == "torch":
        if indices.dtype == torch.uint8:
            indices, _ = compact_to_flat(indices, *window, out_hw)
        # flat indices need no window: it only sets the size check (dilated extent)
        extent = [d * (k - 1) + 1 for k, d in zip(kernel_size, dilation)]
        return F.max_unpool2d(input, indices, extent, stride, padding, out_hw).contiguous(
            memory_format=out_memory_format(input))
    out = _empty_out(input, out_hw)
    gather = gather_ok(tuple(input.shape[-2:]), out_hw, kernel_size, stride, padding) and (
        tuple(dilation) == (1, 1))
    launch(backend, "max_unpool.forward", "_max_unpool2d_fwd", input, indices, *window, gather, out)
    return out


@max_unpool2d_op.register_fake
def _(input, indices, output_size, kernel_size, stride, padding, dilation, backend, check_indices):
    return _empty_out(input, tuple(output_size))


@torch.library.custom_op("pydense::max_unpool2d_backward", mutates_args=())
def max_unpool2d_backward_op(grad_output: torch.Tensor, indices: torch.Tensor,
                          kernel_size: Sequence[int], stride: Sequence[int], padding: Sequence[int],
                          dilation: Sequence[int], backend: str, check_indices: bool) -> torch.Tensor:
    """grad_input[n, c, i] = grad_output[n, c, target(indices[n, c, i])] (a gather; 4-D); the
    window geometry only decodes compact (uint8) indices."""
    out_hw = tuple(grad_output.shape[-2:])
    window = (tuple(kernel_size), tuple(stride), tuple(padding), tuple(dilation))
    if check_indices and backend != "cpu":
        check_index_range(indices, out_hw, window=window)
    if backend == "torch":
        n, c = indices.shape[:2]
        flat = indices
        if indices.dtype == torch.uint8:
            flat, _ = compact_to_flat(indices, *window, out_hw)
        g = grad_output.reshape(n, c, -1).gather(2, flat.reshape(n, c, -1))
        return g.view(indices.shape).contiguous(memory_format=out_memory_format(indices))
    grad_input = torch.empty(indices.shape, dtype=grad_output.dtype, device=grad_output.device,
                             memory_format=out_memory_format(indices))
    launch(backend, "max_unpool.backward", "_max_unpool2d_bwd", grad_output, indices, *window,
           grad_input)
    return grad_input


@max_unpool2d_backward_op.register_fake
def _(grad_output, indices, kernel_size, stride, padding, dilation, backend, check_indices):
    return torch.empty(indices.shape, dtype=grad_output.dtype, device=grad_output.device,
                       memory_format=out_memory_format(indices))


def _setup_context(ctx, inputs, output):
    _, indices, _, kernel_size, stride, padding, dilation, backend, check_indices = inputs
    ctx.save_for_backward(indices)
    ctx.window = (list(kernel_size), list(stride), list(padding), list(dilation))
    ctx.backend = backend
    ctx.check_indices = check_indices


def _backward(ctx, grad):
    (indices,) = ctx.saved_tensors
    grad_input = max_unpool2d_backward_op(grad, indices, *ctx.window, ctx.backend, ctx.check_indices)
    return grad_input, None, None, None, None, None, None, None, None


max_unpool2d_op.register_autograd(_backward, setup_context=_setup_context)


# Double backward: the backward is a gather, linear in grad_output; its gradient is the adjoint
# scatter-add of the incoming gradient at the same indices into grad_output's plane. That is
# max_pool2d's backward op (a deterministic sum over the windows holding each element, every
# backend), exact for every index a max pool with this window returns, duplicates of overlapping
# windows included. It only finds indices inside their own window: a flat index elsewhere (legal
# in the forward) raises here when indices are checked (in eager), and is otherwise dropped.


def check_in_window(indices, out_hw, window):
    """Raise NotImplementedError unless every flat (int64) index names a tap of its own pooling
    window (compact indices always do)."""
    if indices.dtype == torch.uint8 or indices.numel() == 0:
        return
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = window
    h, w = indices.shape[-2:]
    rh = torch.div(indices, out_hw[1], rounding_mode="floor") - (
        torch.arange(h, device=indices.device).view(-1, 1) * sh - ph)
    rw = indices % out_hw[1] - (torch.arange(w, device=indices.device).view(1, -1) * sw - pw)
    ok = (rh >= 0) & (rh % dh == 0) & (rh < kh * dh) & (rw >= 0) & (rw % dw == 0) & (rw < kw * dw)
    if not bool(ok.all()):
        pos = tuple(int(v) for v in (~ok).nonzero()[0])
        raise NotImplementedError(
            f"{OP}: double backward (the gradient of max_unpool2d's gradient) supports only indices "
            f"inside their own pooling window (kernel_size {window[0]}, stride {window[1]}, padding "
            f"{window[2]}, dilation {window[3]}), as max_pool2d returns them; found "
            f"{int(indices[pos])} at indices{list(pos)}")


def _backward_setup_context(ctx, inputs, output):
    grad_output, indices, kernel_size, stride, padding, dilation, backend, check_indices = inputs
    ctx.save_for_backward(indices)
    ctx.window = (list(kernel_size), list(stride), list(padding), list(dilation))
    ctx.out_hw = list(grad_output.shape[-2:])
    ctx.channels_last = out_memory_format(grad_output) == torch.channels_last
    ctx.backend = backend
    ctx.check_indices = check_indices


def _backward_backward(ctx, gg):
    (indices,) = ctx.saved_tensors
    d_grad_output = None
    if ctx.needs_input_grad[0]:
        # checked in eager only: a traced graph (torch.compile) cannot branch on index values
        if ctx.check_indices and not is_fake(indices):
            check_in_window(indices, ctx.out_hw, ctx.window)
        d_grad_output = max_pool2d_backward_op(gg, indices, ctx.out_hw, *ctx.window,
                                            ctx.channels_last, ctx.backend)
    return d_grad_output, None, None, None, None, None, None, None


max_unpool2d_backward_op.register_autograd(_backward_backward, setup_context=_backward_setup_context)


def max_unpool2d(input, indices, kernel_size, stride=None, padding=0, output_size=None, *,
           dilation=1, backend="auto", check_indices=None):
    """Validate, pick the backend, and call ``pydense::max_unpool2d`` (3-D or 4-D input)."""
    k, s, p, out_hw, d = normalize_args(input, indices, kernel_size, stride, padding, output_size,
                                        dilation)
    # The stock op runs only ATen's own (int64) indices of non-overlapping windows: where windows
    # overlap, indices can repeat, and ATen's choice among repeats is not the documented one
    # (the later input element wins) and not even reproducible.
    stock_ok = indices.dtype == torch.int64 and all(kk <= ss for kk, ss in zip(k, s))
    backend = _backend.resolve(backend, input.device, OP, shape_class="*" if stock_ok else None)
    if check_indices is None:
        check_indices = default_check_indices(input.device)
    if backend == "aten":  # flat indices: the window only sets the size check (dilated extent)
        if check_indices:  # the documented IndexError, not ATen's message
            check_index_range(indices, out_hw)
        extent = [dd * (kk - 1) + 1 for kk, dd in zip(k, d)]
        return _backend.unrouted(F.max_unpool2d, input, indices, extent, s, p, out_hw)
    squeeze = input.dim() == 3
    if squeeze:
        input, indices = input.unsqueeze(0), indices.unsqueeze(0)
    out = max_unpool2d_op(input, indices, list(out_hw), list(k), list(s), list(p), list(d), backend,
                       bool(check_indices))
    return out.squeeze(0) if squeeze else out
