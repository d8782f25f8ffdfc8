"""2-D convolution and transposed convolution as torch.library ops.

Ops (all with a concrete ``backend``):

* ``pydense::conv2d(input, weight, bias, residual, stride, padding, dilation, groups, relu, scale,
  backend, shuffle=1)`` = ``residual + scale * act(conv2d(input, weight) + bias)`` (``act`` = ReLU
  or identity); plain ``conv2d`` is the case without residual, ReLU and scale. ``padding`` is
  (top, bottom, left, right): "same" with an even effective kernel pads one more row at the
  bottom, as PyTorch does. ``shuffle`` = r > 1 returns the pixel shuffle by r of that, written by
  the convolution's epilogue (no intermediate): ``conv2d_pixel_shuffle``, EDSR's upsampler (the
  residual is then in the shuffled layout); its backward unshuffles the gradient first.
* ``pydense::conv2d_input_grad(grad_output, weight, bias, input_hw, stride, padding, dilation,
  groups)``: the input gradient, which is also the transposed
  convolution (``bias`` then adds per output channel).
* ``pydense::conv2d_weight_grad(grad_output, input, weight, ...)``: the weight gradient
  (``weight`` gives the shape and memory format only), deterministic on every backend.
* ``pydense::conv_transpose2d``: the input-gradient kernels applied to the input; its backward is
  the forward convolution (input) and the weight gradient with the roles of input and output
  swapped.

Padding, everywhere in this module and in every op's schema: (top, bottom, left, right), the
forward convolution's (for a gradient op, the convolution it differentiates; the sizes fix the
trailing pads, and the kernels read only (top, left), see ``_lead``). ATen's (left, right, top,
bottom) order for ``F.pad`` appears only inside the ``_aten_*`` helpers.

Backends: ``triton`` (``pydense.kernels.conv``: implicit GEMM for dense/grouped, direct kernels
for depthwise); ``cuda``/``cpu`` (``torch.ops.pydense._conv2d_*``, csrc/cuda/conv.cu and
csrc/cpu/conv.cpp: direct kernels sharing their index math in csrc/common/conv.h). The ``cpu``
backend uses them when C_in/groups <= DIRECT_MAX_CG (depthwise and small groups, where they beat
a GEMM formulation) and ATen's CPU convolution (oneDNN / im2col + BLAS, the best CPU GEMM code
available) for denser convolutions. ``torch`` is ATen (cuDNN on CUDA).
"""
import functools
import math
from typing import List, Optional

import torch
import torch.nn.functional as F

from .. import _backend
from ._common import (FLOAT_DTYPES, acc_dtype, autocast_inputs, bias_grad,
                      check_nonempty_plane, contiguous_vector, empty_output, int_pair, launch,
                      out_memory_format)
from .pixel_shuffle import pixel_unshuffle_op

OP, OP_T, OP_PS = "conv2d", "conv_transpose2d", "conv2d_pixel_shuffle"
DIRECT_MAX_CG = 8


def out_size(size, k, s, pad_lo, pad_hi, d):
    return (size + pad_lo + pad_hi - d * (k - 1) - 1) // s + 1


def _on_aten(backend, cg):
    """Whether the op runs on ATen: backend "torch", or "cpu" for C_in/groups > DIRECT_MAX_CG."""
    return backend == "torch" or (backend == "cpu" and cg > DIRECT_MAX_CG)


# ---------------------------------------------------------------------------------------------
# ATen (backend "torch", and the cpu backend's dense convolutions), any padding


def _aten_pad(size, out, k, s, lo, d):
    """F.pad amounts (lo, hi; negative crops) that turn an input of ``size`` with top padding
    ``lo`` into an unpadded one whose valid convolution has ``out`` outputs."""
    span = (out - 1) * s + d * (k - 1) + 1
    return lo, min(max(lo + size, span), span + s - 1) - lo - size


def _aten_pads(hw, out_hw, khw, stride, pad4, dil):
    """F.pad's (left, right, top, bottom), ATen's order (used only here), for the convolution of
    padding ``pad4`` whose output is ``out_hw`` (the trailing pads follow from the sizes)."""
    (t, b), (l, r) = (_aten_pad(hw[i], out_hw[i], khw[i], stride[i], pad4[2 * i], dil[i]) for i in (0, 1))
    return (l, r, t, b)


def _aten_forward(x, w, bias, stride, pad4, dil, groups):
    t, b, l, r = pad4
    if t == b and l == r:
        return F.conv2d(x, w, bias, stride, (t, l), dil, groups)
    return F.conv2d(F.pad(x, (l, r, t, b)), w, bias, stride, 0, dil, groups)


def _aten_conv(x, w, bias, residual, stride, pad4, dil, groups, relu, scale, shuffle):
    """The eager chain of :func:`conv2d_op` on ATen, differentiable by ATen's own autograd (the
    "torch" backend inside the op; "aten", what ``auto`` may pick, calls it directly)."""
    y = _aten_forward(x, w, bias, stride, pad4, dil, groups)
    y = y.relu() if relu else y
    y = y * scale if scale != 1.0 else y
    y = F.pixel_shuffle(y, shuffle) if shuffle > 1 else y
    return y + residual if residual is not None else y


def _conv_for(backend):
    """``conv(input, weight, bias, residual, stride, pad4, dilation, groups, relu, scale,
    shuffle=)`` on ``backend``: the stock chain itself for "aten", else ``pydense::conv2d``."""
    if backend == "aten":
        return functools.partial(_backend.unrouted, _aten_conv)
    return functools.partial(conv2d_op, backend=backend)


def shape_class(groups, channels_per_group):
    """The class of a convolution in ``pydense._tuned``'s tables: "dense" (groups 1),
    "depthwise" (one channel per group: ``weight.shape[1]``) or "grouped"."""
    if groups == 1:
        return "dense"
    return "depthwise" if channels_per_group == 1 else "grouped"


def _aten_input_grad(gy, w, input_hw, stride, pad4, dil, groups):
    N, C = gy.shape[0], w.shape[1] * groups
    pads = _aten_pads(input_hw, gy.shape[2:], w.shape[2:], stride, pad4, dil)
    hp, wp = input_hw[0] + pads[2] + pads[3], input_hw[1] + pads[0] + pads[1]
    shape_only = gy.new_empty(1, 1, 1, 1).expand(N, C, hp, wp)
    gx = torch.ops.aten.convolution_backward(gy, shape_only, w, None, stride, [0, 0], dil, False,
                                             [0, 0], groups, [True, False, False])[0]
    return F.pad(gx, tuple(-p for p in pads))


def _aten_weight_grad(gy, x, w, stride, pad4, dil, groups):
    pads = _aten_pads(x.shape[2:], gy.shape[2:], w.shape[2:], stride, pad4, dil)
    shape_only = x.new_empty(1, 1, 1, 1).expand(w.shape)
    return torch.ops.aten.convolution_backward(gy, F.pad(x, pads), shape_only, None, stride, [0, 0],
                                               dil, False, [0, 0], groups, [False, True, False])[1]


# ---------------------------------------------------------------------------------------------
# The ops


def _out_shape(input, weight, stride, pad4, dil, shuffle=1):
    """(N, OC, OH, OW) of the convolution, or (N, OC / r^2, OH*r, OW*r) of its pixel shuffle by r."""
    r = shuffle
    return (input.shape[0], weight.shape[0] // (r * r),
            out_size(input.shape[2], weight.shape[2], stride[0], pad4[0], pad4[1], dil[0]) * r,
            out_size(input.shape[3], weight.shape[3], stride[1], pad4[2], pad4[3], dil[1]) * r)


@torch.library.custom_op("pydense::conv2d", mutates_args=())
def conv2d_op(input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
              residual: Optional[torch.Tensor], stride: List[int], padding: List[int],
              dilation: List[int], groups: int, relu: bool, scale: float,
              backend: str, shuffle: int = 1) -> torch.Tensor:
    """residual + scale * act(conv2d(input, weight) + bias), pixel-shuffled by ``shuffle``
    (residual in the shuffled layout); see pydense.functional.conv2d_fused and
    conv2d_pixel_shuffle."""
    cg = weight.shape[1]
    if _on_aten(backend, cg):
        y = _aten_conv(input, weight, bias, residual, stride, padding, dilation, groups, relu, scale,
                       shuffle)
        return y.contiguous(memory_format=out_memory_format(input))
    out = empty_output(_out_shape(input, weight, stride, padding, dilation, shuffle), input)
    pad_tl = _lead(padding)
    bias = contiguous_vector(bias)  # the kernels read bias[oc]
    launch(backend, "conv.forward", "_conv2d_fwd", input, weight, bias, residual, stride, pad_tl,
           dilation, relu, scale, shuffle, out)
    return out


@conv2d_op.register_fake
def _(input, weight, bias, residual, stride, padding, dilation, groups, relu, scale, backend,
      shuffle=1):
    return empty_output(_out_shape(input, weight, stride, padding, dilation, shuffle), input)


@torch.library.custom_op("pydense::conv2d_input_grad", mutates_args=())
def conv2d_input_grad_op(grad_output: torch.Tensor, weight: torch.Tensor,
                         bias: Optional[torch.Tensor], input_hw: List[int], stride: List[int],
                         padding: List[int], dilation: List[int], groups: int,
                         backend: str) -> torch.Tensor:
    """Input gradient of conv2d (``padding``: the forward's (top, bottom, left, right); the sizes
    fix the trailing pads) plus ``bias`` per input channel: the transposed convolution of
    ``grad_output``."""
    cg = weight.shape[1]
    if _on_aten(backend, cg):
        gx = _aten_input_grad(grad_output, weight, input_hw, stride, padding, dilation, groups)
        gx = gx + bias.view(1, -1, 1, 1) if bias is not None else gx
        return gx.contiguous(memory_format=out_memory_format(grad_output))
    gx = empty_output((grad_output.shape[0], cg * groups, *input_hw), grad_output)
    bias = contiguous_vector(bias)  # the kernels read bias[c]
    launch(backend, "conv.input_grad", "_conv2d_dgrad", grad_output, weight, bias, stride,
           _lead(padding), dilation, gx)
    return gx


@conv2d_input_grad_op.register_fake
def _(grad_output, weight, bias, input_hw, stride, padding, dilation, groups, backend):
    return empty_output((grad_output.shape[0], weight.shape[1] * groups, *input_hw), grad_output)


@torch.library.custom_op("pydense::conv2d_weight_grad", mutates_args=())
def conv2d_weight_grad_op(grad_output: torch.Tensor, input: torch.Tensor, weight: torch.Tensor,
                          stride: List[int], padding: List[int], dilation: List[int], groups: int,
                          backend: str) -> torch.Tensor:
    """Weight gradient of conv2d (``padding``: the forward's (top, bottom, left, right)), in
    ``weight``'s shape and memory format; ``weight``'s values are not read."""
    if _on_aten(backend, weight.shape[1]):
        gw = _aten_weight_grad(grad_output, input, weight, stride, padding, dilation, groups)
        return gw.contiguous(memory_format=out_memory_format(weight))
    gw = empty_output(weight.shape, weight)  # weight has the input's dtype and device
    launch(backend, "conv.weight_grad", "_conv2d_wgrad", grad_output, input, stride, _lead(padding),
           dilation, gw)
    return gw


@conv2d_weight_grad_op.register_fake
def _(grad_output, input, weight, stride, padding, dilation, groups, backend):
    return empty_output(weight.shape, weight)


def _conv_setup(ctx, inputs, output):
    (input, weight, bias, residual, stride, padding, dilation, groups, relu, scale, backend,
     shuffle) = inputs
    ctx.save_for_backward(input, weight, bias if relu else None)
    ctx.geo = (stride, padding, dilation, groups)
    ctx.relu, ctx.scale, ctx.backend, ctx.shuffle = relu, scale, backend, shuffle
    ctx.has_bias, ctx.has_res = bias is not None, residual is not None


def _conv_backward(ctx, grad):
    input, weight, bias = ctx.saved_tensors
    stride, padding, dilation, groups = ctx.geo
    g = grad * ctx.scale if ctx.scale != 1.0 else grad
    if ctx.relu:  # recompute the pre-activation: exact, and no activation-sized tensor is saved
        z = conv2d_op(input, weight, bias, None, stride, padding, dilation, groups, False, 1.0,
                      ctx.backend, ctx.shuffle)
        g = torch.where(z > 0, g, torch.zeros_like(g))
    if ctx.shuffle > 1:  # the convolution's output gradient
        g = pixel_unshuffle_op(g, ctx.shuffle, ctx.backend)
    gx = gw = gb = None
    if ctx.needs_input_grad[0]:
        gx = conv2d_input_grad_op(g, weight, None, list(input.shape[2:]), stride, padding,
                                  dilation, groups, ctx.backend)
    if ctx.needs_input_grad[1]:
        gw = conv2d_weight_grad_op(g, input, weight, stride, padding, dilation, groups, ctx.backend)
    if ctx.has_bias and ctx.needs_input_grad[2]:
        gb = bias_grad(g)
    gr = grad if ctx.has_res else None
    return gx, gw, gb, gr, None, None, None, None, None, None, None, None


conv2d_op.register_autograd(_conv_backward, setup_context=_conv_setup)


# Double backward: the gradient ops are linear in each tensor argument, and their own gradients
# are again the convolution's three kernels (so gradient penalties and gradgradcheck work on every
# backend). With y = conv(x, w): input_grad(gy, w) = convT(gy, w) and weight_grad(gy, x) satisfy
# <a, input_grad(gy, w)> = <conv(a, w), gy> and <b, weight_grad(gy, x)> = <conv(x, b), gy>.


def _lead(pad4):
    """(top, left) of (top, bottom, left, right): all the kernels read (the sizes fix the rest)."""
    return [pad4[0], pad4[2]]


def _pad4_for(in_hw, out_hw, khw, stride, pad4, dilation):
    """``pad4`` with the trailing pads under which the forward convolution of an ``in_hw`` input
    has exactly ``out_hw`` outputs (bottom/right may be negative: a crop)."""
    pads = []
    for i, lead in enumerate(_lead(pad4)):
        pads += [lead, (out_hw[i] - 1) * stride[i] + dilation[i] * (khw[i] - 1) + 1 - in_hw[i] - lead]
    return pads


def _input_grad_setup(ctx, inputs, output):
    grad_output, weight, bias, input_hw, stride, padding, dilation, groups, backend = inputs
    ctx.save_for_backward(grad_output, weight)
    ctx.geo = (list(input_hw), stride, padding, dilation, groups)
    ctx.backend, ctx.has_bias = backend, bias is not None


def _input_grad_backward(ctx, gg):
    gy, weight = ctx.saved_tensors
    input_hw, stride, padding, dilation, groups = ctx.geo
    d_gy = d_w = d_b = None
    if ctx.needs_input_grad[0]:
        pad4 = _pad4_for(input_hw, gy.shape[2:], weight.shape[2:], stride, padding, dilation)
        d_gy = conv2d_op(gg, weight, None, None, stride, pad4, dilation, groups, False, 1.0,
                         ctx.backend)
    if ctx.needs_input_grad[1]:
        d_w = conv2d_weight_grad_op(gy, gg, weight, stride, padding, dilation, groups, ctx.backend)
    if ctx.has_bias and ctx.needs_input_grad[2]:
        d_b = bias_grad(gg)
    return d_gy, d_w, d_b, None, None, None, None, None, None


conv2d_input_grad_op.register_autograd(_input_grad_backward, setup_context=_input_grad_setup)


def _weight_grad_setup(ctx, inputs, output):
    grad_output, input, weight, stride, padding, dilation, groups, backend = inputs
    ctx.save_for_backward(grad_output, input)
    ctx.geo = (stride, padding, dilation, groups)
    ctx.backend = backend


def _weight_grad_backward(ctx, gg):
    gy, x = ctx.saved_tensors
    stride, padding, dilation, groups = ctx.geo
    d_gy = d_x = None
    if ctx.needs_input_grad[0]:
        pad4 = _pad4_for(x.shape[2:], gy.shape[2:], gg.shape[2:], stride, padding, dilation)
        d_gy = conv2d_op(x, gg, None, None, stride, pad4, dilation, groups, False, 1.0, ctx.backend)
    if ctx.needs_input_grad[1]:
        d_x = conv2d_input_grad_op(gy, gg, None, list(x.shape[2:]), stride, padding, dilation, groups,
                            ctx.backend)
    return d_gy, d_x, None, None, None, None, None, None


conv2d_weight_grad_op.register_autograd(_weight_grad_backward, setup_context=_weight_grad_setup)


def _transposed_pad4(padding, output_padding):
    """The (top, bottom, left, right) padding of the forward convolution whose input gradient is
    the transposed convolution with ``padding`` (pH, pW) and ``output_padding``."""
    return [padding[0], padding[0] - output_padding[0], padding[1], padding[1] - output_padding[1]]


def transposed_out_size(size, k, s, p, op, d):
    return (size - 1) * s - 2 * p + d * (k - 1) + op + 1


@torch.library.custom_op("pydense::conv_transpose2d", mutates_args=())
def conv_transpose2d_op(input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                        stride: List[int], padding: List[int], output_padding: List[int],
                        dilation: List[int], groups: int, backend: str) -> torch.Tensor:
    """Transposed convolution (see pydense.functional.conv_transpose2d)."""
    hw = [transposed_out_size(input.shape[2 + i], weight.shape[2 + i], stride[i], padding[i],
                              output_padding[i], dilation[i]) for i in (0, 1)]
    return conv2d_input_grad_op(input, weight, bias, hw, stride, _transposed_pad4(padding, output_padding),
                                dilation, groups, backend)


@conv_transpose2d_op.register_fake
def _(input, weight, bias, stride, padding, output_padding, dilation, groups, backend):
    hw = [transposed_out_size(input.shape[2 + i], weight.shape[2 + i], stride[i], padding[i],
                              output_padding[i], dilation[i]) for i in (0, 1)]
    return empty_output((input.shape[0], weight.shape[1] * groups, *hw), input)


def _t_setup(ctx, inputs, output):
    input, weight, bias, stride, padding, output_padding, dilation, groups, backend = inputs
    ctx.save_for_backward(input, weight)
    ctx.geo = (stride, padding, output_padding, dilation, groups)
    ctx.backend, ctx.has_bias = backend, bias is not None


def _t_backward(ctx, grad):
    input, weight = ctx.saved_tensors
    stride, padding, output_padding, dilation, groups = ctx.geo
    gx = gw = gb = None
    pad4 = _transposed_pad4(padding, output_padding)
    if ctx.needs_input_grad[0]:  # a forward convolution of grad
        gx = conv2d_op(grad, weight, None, None, stride, pad4, dilation, groups, False, 1.0,
                       ctx.backend)
    if ctx.needs_input_grad[1]:
        gw = conv2d_weight_grad_op(input, grad, weight, stride, pad4, dilation, groups, ctx.backend)
    if ctx.has_bias and ctx.needs_input_grad[2]:
        gb = bias_grad(grad)
    return gx, gw, gb, None, None, None, None, None, None


conv_transpose2d_op.register_autograd(_t_backward, setup_context=_t_setup)


# ---------------------------------------------------------------------------------------------
# Argument parsing and validation (every backend, before any kernel)


def _pair(v, name, op, minimum):
    return list(int_pair(v, name, op, minimum=minimum))


W_LAYOUT = "(out_channels, in_channels/groups, kH, kW)"
WT_LAYOUT = "(in_channels, out_channels/groups, kH, kW)"
WPS_LAYOUT = "(out_channels * upscale_factor**2, in_channels, kH, kW)"


def _check_tensors(op, input, weight, bias, layout):
    if not isinstance(input, torch.Tensor) or not isinstance(weight, torch.Tensor):
        raise TypeError(f"{op}: input and weight must be Tensors")
    if input.dim() not in (3, 4):
        raise ValueError(f"{op}: input must be 4-D (N, C, H, W) or 3-D (C, H, W), got shape "
                         f"{tuple(input.shape)}")
    if weight.dim() != 4:
        raise ValueError(f"{op}: weight must be 4-D {layout}, got shape {tuple(weight.shape)}")
    if min(weight.shape[2:]) == 0:
        raise ValueError(f"{op}: weight's kernel size (kH, kW) must be positive, got weight of shape "
                         f"{tuple(weight.shape)}")
    in_dim, out_dim = (0, 1) if layout == WT_LAYOUT else (1, 0)
    if weight.shape[in_dim] == 0:
        raise ValueError(f"{op}: weight {layout} must have at least one input channel, got shape "
                         f"{tuple(weight.shape)} (an input with zero channels has no convolution)")
    if weight.shape[out_dim] == 0:
        raise ValueError(f"{op}: weight {layout} must have at least one output channel, got shape "
                         f"{tuple(weight.shape)}")
    if input.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{op}: input dtype must be one of float16, bfloat16, float32, float64, "
                        f"got {input.dtype}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is None:
            continue
        if t.dtype != input.dtype:
            raise TypeError(f"{op}: {name} dtype must equal the input dtype {input.dtype}, got {t.dtype}")
        if t.device != input.device:
            raise ValueError(f"{op}: {name} must be on the input's device {input.device}, got {t.device}")


def _check_groups(op, groups, channels, name_c, out_channels, name_o):
    if not isinstance(groups, int) or isinstance(groups, bool) or groups <= 0:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    if channels % groups:
        raise ValueError(f"{op}: {name_c} ({channels}) must be divisible by groups ({groups})")
    if out_channels % groups:
        raise ValueError(f"{op}: {name_o} ({out_channels}) must be divisible by groups ({groups})")


def _padding4(op, padding, stride, dilation, khw):
    if isinstance(padding, str):
        if padding == "valid":
            return [0, 0, 0, 0]
        if padding == "same":
            if stride != [1, 1]:
                raise ValueError(f"{op}: padding='same' needs stride 1, got stride {tuple(stride)}")
            pads = []
            for d, k in zip(dilation, khw):
                total = d * (k - 1)
                pads += [total // 2, total - total // 2]
            return pads
        raise ValueError(f"{op}: padding must be an int, a pair of ints, 'same' or 'valid', got {padding!r}")
    p = _pair(padding, "padding", op, 0)
    return [p[0], p[0], p[1], p[1]]


def _batched(input):
    return (input, False) if input.dim() == 4 else (input.unsqueeze(0), True)


def _check_out_size(op, shape, x, padding, dilation, khw):
    if min(shape[2:]) <= 0:
        raise ValueError(f"{op}: output size {tuple(shape[2:])} is not positive: input "
                         f"{tuple(x.shape[2:])} with padding {padding!r} is smaller than the dilated "
                         f"kernel {tuple(d * (k - 1) + 1 for d, k in zip(dilation, khw))}")


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, activation=None,
           residual=None, scale=1.0, backend="auto"):
    """Validate, pick the backend and call ``pydense::conv2d`` (see pydense.functional)."""
    op = OP if activation is None and residual is None and scale == 1.0 else "conv2d_fused"
    input, weight, bias, residual = autocast_inputs(input, weight, bias, residual)
    _check_tensors(op, input, weight, bias, W_LAYOUT)
    stride = _pair(stride, "stride", op, 1)
    dilation = _pair(dilation, "dilation", op, 1)
    x, unbatched = _batched(input)
    check_nonempty_plane(x, "input", op)
    C, OC = x.shape[1], weight.shape[0]
    _check_groups(op, groups, C, "input channels", OC, "out_channels (weight.shape[0])")
    if weight.shape[1] * groups != C:
        raise ValueError(f"{op}: weight of shape {tuple(weight.shape)} and groups={groups} expect "
                         f"{weight.shape[1] * groups} input channels, got input of shape "
                         f"{tuple(input.shape)}")
    if bias is not None and tuple(bias.shape) != (OC,):
        raise ValueError(f"{op}: bias must have shape ({OC},), got {tuple(bias.shape)}")
    pad4 = _padding4(op, padding, stride, dilation, weight.shape[2:])
    shape = _out_shape(x, weight, stride, pad4, dilation)
    _check_out_size(op, shape, x, padding, dilation, weight.shape[2:])
    if activation not in (None, "relu"):
        raise ValueError(f"{op}: activation must be None or 'relu', got {activation!r}")
    if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not math.isfinite(scale):
        raise ValueError(f"{op}: scale must be a finite number, got {scale!r}")
    if residual is not None:
        r = residual if not unbatched else residual.unsqueeze(0)
        if tuple(r.shape) != shape:
            raise ValueError(f"{op}: residual must have the output's shape "
                             f"{shape[1:] if unbatched else shape}, got {tuple(residual.shape)}")
        if r.dtype != x.dtype or r.device != x.device:
            raise TypeError(f"{op}: residual must have the input's dtype {x.dtype} and device "
                            f"{x.device}, got {r.dtype} on {r.device}")
        residual = r
    backend = _backend.resolve(backend, x.device, op, shape_class=shape_class(groups, weight.shape[1]))
    conv = _conv_for(backend)
    y = conv(x, weight, bias, residual, stride, pad4, dilation, groups, activation == "relu",
             float(scale), shuffle=1)
    return y.squeeze(0) if unbatched else y


def conv2d_fused(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
                 activation=None, residual=None, scale=1.0, backend="auto"):
    """:func:`conv2d` with the epilogue (see pydense.functional.conv2d_fused)."""
    return conv2d(input, weight, bias, stride, padding, dilation, groups, activation=activation,
                  residual=residual, scale=scale, backend=backend)


def conv2d_pixel_shuffle(input, weight, bias, upscale_factor, padding=None, *, backend="auto"):
    """Validate, pick the backend and call ``pydense::conv2d`` with ``shuffle=upscale_factor``
    (see pydense.functional.conv2d_pixel_shuffle)."""
    op = OP_PS
    input, weight, bias = autocast_inputs(input, weight, bias)
    _check_tensors(op, input, weight, bias, WPS_LAYOUT)
    r = upscale_factor
    if not isinstance(r, int) or isinstance(r, bool) or r <= 0:
        raise ValueError(f"{op}: upscale_factor must be a positive int, got {r!r}")
    x, unbatched = _batched(input)
    check_nonempty_plane(x, "input", op)
    OC = weight.shape[0]
    if OC % (r * r):
        raise ValueError(f"{op}: weight.size(0) ({OC}) must be divisible by upscale_factor**2 = "
                         f"{r * r} (it is out_channels * upscale_factor**2)")
    if weight.shape[1] != x.shape[1]:
        raise ValueError(f"{op}: weight of shape {tuple(weight.shape)} expects {weight.shape[1]} "
                         f"input channels (weight.size(1)), got input of shape {tuple(input.shape)}")
    if bias is not None and tuple(bias.shape) != (OC,):
        raise ValueError(f"{op}: bias must have shape ({OC},) (weight.size(0)), got {tuple(bias.shape)}")
    khw = weight.shape[2:]
    padding = [k // 2 for k in khw] if padding is None else padding
    pad4 = _padding4(op, padding, [1, 1], [1, 1], khw)
    _check_out_size(op, _out_shape(x, weight, [1, 1], pad4, [1, 1]), x, padding, [1, 1], khw)
    backend = _backend.resolve(backend, x.device, OP_PS, shape_class="dense")
    conv = _conv_for(backend)
    y = conv(x, weight, bias, None, [1, 1], pad4, [1, 1], 1, False, 1.0, shuffle=r)
    return y.squeeze(0) if unbatched else y


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, *, backend="auto"):
    """Validate, pick the backend and call ``pydense::conv_transpose2d`` (see pydense.functional)."""
    op = OP_T
    input, weight, bias = autocast_inputs(input, weight, bias)
    _check_tensors(op, input, weight, bias, WT_LAYOUT)
    stride = _pair(stride, "stride", op, 1)
    dilation = _pair(dilation, "dilation", op, 1)
    padding = _pair(padding, "padding", op, 0)
    output_padding = _pair(output_padding, "output_padding", op, 0)
    for i in (0, 1):
        if output_padding[i] >= max(stride[i], dilation[i]):
            raise ValueError(f"{op}: output_padding {tuple(output_padding)} must be smaller than "
                             f"stride {tuple(stride)} or dilation {tuple(dilation)}")
    x, unbatched = _batched(input)
    check_nonempty_plane(x, "input", op)
    C, OCg = x.shape[1], weight.shape[1]
    _check_groups(op, groups, C, "input channels", weight.shape[0], "in_channels (weight.shape[0])")
    if weight.shape[0] != C:
        raise ValueError(f"{op}: weight of shape {tuple(weight.shape)} expects {weight.shape[0]} "
                         f"input channels, got input of shape {tuple(input.shape)}")
    if bias is not None and tuple(bias.shape) != (OCg * groups,):
        raise ValueError(f"{op}: bias must have shape ({OCg * groups},), got {tuple(bias.shape)}")
    hw = [transposed_out_size(x.shape[2 + i], weight.shape[2 + i], stride[i], padding[i],
                              output_padding[i], dilation[i]) for i in (0, 1)]
    if min(hw) <= 0:
        raise ValueError(f"{op}: output size {tuple(hw)} is not positive (padding {tuple(padding)} "
                         f"too large for input {tuple(x.shape[2:])})")
    backend = _backend.resolve(backend, x.device, OP_T, shape_class=shape_class(groups, weight.shape[1]))
    if backend == "aten":
        y = _backend.unrouted(F.conv_transpose2d, x, weight, bias, stride, padding, output_padding,
                               groups, dilation)
    else:
        y = conv_transpose2d_op(x, weight, bias, stride, padding, output_padding, dilation, groups,
                                backend)
    return y.squeeze(0) if unbatched else y
