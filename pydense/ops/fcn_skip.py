"""FCN's skip fusion as one torch.library op: ``pydense::fcn_skip``.

voc-fcn16s/8s fuse a coarse score map with a finer pool layer as
``upscore = deconv(coarse)`` (bias-free k=2f, s=f, FCN's bilinear weights),
``score_pool = conv1x1(skip_scale * pool)``, ``fuse = upscore + crop(score_pool, offset)``: in
eager PyTorch four to five kernels (scale, 1x1 conv, deconvolution, crop copy, add) with their
intermediates (the scaled pool, the full-size scored pool, the upsampled scores). Here one kernel
reads the coarse scores and only the cropped window of the pool features, does the 1x1 score
convolution as a small dot per output tile, adds the two-tap bilinear gather of the coarse
scores, and writes the fused map once (``kernels/fcn_skip.py``, ``csrc/*/fcn_skip.*``).

Backward: coarse, the deconvolution's deterministic gather backward (``bilinear_deconv2d``'s);
skip, one kernel that applies the transposed 1x1 convolution inside the crop and writes zeros
outside it; score weight, the deterministic 1x1 weight gradient of the convolution op on the
crop (a view), times the scale; bias, the per-class sum of the gradient.
"""
import math
import numbers
from typing import List, Optional

import torch
import torch.nn.functional as F

from .. import _backend
from ._common import (FLOAT_DTYPES, autocast_inputs, bias_grad, check_nonempty_plane,
                      contiguous_vector, empty_output, launch, out_memory_format)
from .bilinear_deconv import bilinear_deconv2d_backward_op, full_size
from .bilinear_deconv import tables as deconv_tables
from .bilinear_deconv import weight as deconv_weight
from .conv import conv2d_op, conv2d_weight_grad_op

OP = "fcn_skip"


def _out_hw(coarse, factor):
    return tuple(full_size(s, factor) for s in coarse.shape[-2:])


def _aten_fcn_skip(coarse, skip, weight, bias, factor, offset, skip_scale):
    """The eager chain on ATen, differentiable by ATen's autograd (the "torch" backend inside the
    op; "aten", what ``auto`` may pick, calls it directly): the fixed bilinear deconvolution, the
    scaled 1x1 score convolution of the skip, its crop, the sum."""
    oh, ow = _out_hw(coarse, factor)
    up = F.conv_transpose2d(coarse, deconv_weight(coarse.shape[1], factor, coarse.dtype,
                                                  coarse.device), stride=factor)
    s = skip * skip_scale if skip_scale != 1.0 else skip
    if weight is not None:
        s = F.conv2d(s, weight[:, :, None, None], bias)
    return up + s[..., offset[0]:offset[0] + oh, offset[1]:offset[1] + ow]


@torch.library.custom_op("pydense::fcn_skip", mutates_args=())
def fcn_skip_op(coarse: torch.Tensor, skip: torch.Tensor, weight: Optional[torch.Tensor],
                bias: Optional[torch.Tensor], factor: int, offset: List[int], skip_scale: float,
                backend: str) -> torch.Tensor:
    """deconv(coarse, factor) + crop(skip_scale * score(skip) + bias, offset); weight (K, CS)."""
    oh, ow = _out_hw(coarse, factor)
    if backend == "torch":
        out = _aten_fcn_skip(coarse, skip, weight, bias, factor, offset, skip_scale)
        return out.contiguous(memory_format=out_memory_format(coarse))
    h_tab, w_tab = deconv_tables(coarse.shape[-2:], factor, 0, (oh, ow), coarse.device, coarse.dtype)
    out = empty_output((coarse.shape[0], coarse.shape[1], oh, ow), coarse)
    bias = contiguous_vector(bias)  # the kernels read bias[k]
    launch(backend, "fcn_skip.forward", "_fcn_skip_fwd", coarse, skip, weight, bias, *h_tab[:2],
           *w_tab[:2], offset, skip_scale, out)
    return out


@fcn_skip_op.register_fake
def _(coarse, skip, weight, bias, factor, offset, skip_scale, backend):
    return empty_output((coarse.shape[0], coarse.shape[1], *_out_hw(coarse, factor)), coarse)


@torch.library.custom_op("pydense::fcn_skip_skip_grad", mutates_args=())
def fcn_skip_skip_grad_op(grad_output: torch.Tensor, weight: Optional[torch.Tensor], skip_size: List[int],
                 offset: List[int], skip_scale: float, backend: str,
                 channels_last: bool) -> torch.Tensor:
    """The skip's gradient: skip_scale * weight^T grad_output inside the crop, zero outside."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    if backend == "torch":
        g = grad_output if weight is None else torch.einsum("nkhw,kc->nchw", grad_output, weight)
        oh, ow = grad_output.shape[-2:]
        g = F.pad(g * skip_scale, (offset[1], skip_size[3] - offset[1] - ow,
                                   offset[0], skip_size[2] - offset[0] - oh))
        return g.contiguous(memory_format=fmt)
    gs = torch.empty(skip_size, dtype=grad_output.dtype, device=grad_output.device, memory_format=fmt)
    launch(backend, "fcn_skip.backward", "_fcn_skip_bwd", grad_output, weight, offset, skip_scale, gs)
    return gs


@fcn_skip_skip_grad_op.register_fake
def _(grad_output, weight, skip_size, offset, skip_scale, backend, channels_last):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return torch.empty(skip_size, dtype=grad_output.dtype, device=grad_output.device, memory_format=fmt)


# Double backward of the skip gradient, linear in grad_output and in the score weight W (K, CS):
# skip_grad = skip_scale * pad(W^T g), so <a, skip_grad> = skip_scale * <W crop(a), g> gives
# d/dg = skip_scale * conv1x1(crop(a), W) (the convolution op) and d/dW = skip_scale *
# weight_grad(g, crop(a)) (the convolution's weight gradient, as the first backward's).


def _skip_grad_setup_context(ctx, inputs, output):
    grad_output, weight, _, ctx.offset, ctx.scale, ctx.backend, _ = inputs
    ctx.save_for_backward(grad_output if weight is not None else None, weight)
    ctx.output_size = list(grad_output.shape[-2:])


def _skip_grad_backward(ctx, gg):
    grad_output, weight = ctx.saved_tensors
    (oh, ow), (r, c) = ctx.output_size, ctx.offset
    crop = gg[..., r:r + oh, c:c + ow]
    d_grad = d_weight = None
    if ctx.needs_input_grad[0]:
        if weight is None:
            d_grad = crop * ctx.scale
        else:
            d_grad = conv2d_op(crop, weight[:, :, None, None], None, None, [1, 1], [0, 0, 0, 0],
                               [1, 1], 1, False, ctx.scale, ctx.backend)
    if weight is not None and ctx.needs_input_grad[1]:
        d_weight = conv2d_weight_grad_op(grad_output, crop, weight[:, :, None, None], [1, 1], [0, 0, 0, 0],
                                  [1, 1], 1, ctx.backend).view(weight.shape) * ctx.scale
    return d_grad, d_weight, None, None, None, None, None


fcn_skip_skip_grad_op.register_autograd(_skip_grad_backward, setup_context=_skip_grad_setup_context)


def _is_cl(t):
    return out_memory_format(t) == torch.channels_last


def _setup_context(ctx, inputs, output):
    coarse, skip, weight, bias, ctx.factor, ctx.offset, ctx.scale, ctx.backend = inputs
    ctx.save_for_backward(skip if weight is not None else None, weight)
    ctx.coarse_size, ctx.coarse_cl = list(coarse.shape), _is_cl(coarse)
    ctx.skip_size, ctx.skip_cl = list(skip.shape), _is_cl(skip)
    ctx.has_bias = bias is not None


def _backward(ctx, grad):
    skip, weight = ctx.saved_tensors
    gc = gs = gw = gb = None
    if ctx.needs_input_grad[0]:
        gc = bilinear_deconv2d_backward_op(grad, ctx.coarse_size, ctx.factor, 0, ctx.backend, ctx.coarse_cl)
    if ctx.needs_input_grad[1]:
        gs = fcn_skip_skip_grad_op(grad, weight, ctx.skip_size, ctx.offset, ctx.scale, ctx.backend, ctx.skip_cl)
    if weight is not None and ctx.needs_input_grad[2]:
        (oh, ow), (r, c) = grad.shape[-2:], ctx.offset
        crop = skip[..., r:r + oh, c:c + ow]
        gw = conv2d_weight_grad_op(grad, crop, weight[:, :, None, None], [1, 1], [0, 0, 0, 0], [1, 1], 1,
                            ctx.backend).view(weight.shape) * ctx.scale
    if ctx.has_bias and ctx.needs_input_grad[3]:
        gb = bias_grad(grad)
    return gc, gs, gw, gb, None, None, None, None


fcn_skip_op.register_autograd(_backward, setup_context=_setup_context)


def _offset(offset):
    if isinstance(offset, int) and not isinstance(offset, bool):
        offset = (offset, offset)
    if not (isinstance(offset, (tuple, list)) and len(offset) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in offset)):
        raise ValueError(f"{OP}: offset must be a non-negative int or a pair of them, got {offset!r}")
    return list(offset)


def _check_tensor(name, t, ref=None):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{OP}: {name} must be a Tensor, got {type(t).__name__}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{OP}: {name} dtype must be one of float16, bfloat16, float32, float64, "
                        f"got {t.dtype}")
    if ref is not None and t.dtype != ref.dtype:
        raise TypeError(f"{OP}: {name} dtype must equal coarse's dtype {ref.dtype}, got {t.dtype}")
    if ref is not None and t.device != ref.device:
        raise ValueError(f"{OP}: {name} must be on coarse's device {ref.device}, got {t.device}")


def fcn_skip(coarse, skip_features, factor=2, offset=None, skip_scale=1.0, score_weight=None,
             score_bias=None, backend="auto"):
    """Validate, pick the backend, and call the op (see pydense.functional.fcn_skip)."""
    if offset is None:
        raise TypeError(f"{OP}: offset (the crop offset into skip_features) is required, e.g. 5 "
                        f"for FCN's score_pool4 and 9 for score_pool3")
    coarse, skip_features, score_weight, score_bias = autocast_inputs(coarse, skip_features, score_weight,
                                                                score_bias)
    _check_tensor("coarse", coarse)
    for name, t in (("skip_features", skip_features), ("score_weight", score_weight),
                    ("score_bias", score_bias)):
        if t is not None or name == "skip_features":
            _check_tensor(name, t, coarse)
    if coarse.dim() != skip_features.dim() or coarse.dim() not in (3, 4):
        raise ValueError(f"{OP}: coarse and skip_features must both be 4-D (N, C, H, W) or both 3-D, "
                         f"got shapes {tuple(coarse.shape)} and {tuple(skip_features.shape)}")
    if coarse.dim() == 3:
        return fcn_skip(coarse[None], skip_features[None], factor, offset, skip_scale, score_weight,
                        score_bias, backend)[0]
    if isinstance(factor, bool) or not isinstance(factor, int) or factor <= 0:
        raise ValueError(f"{OP}: factor must be a positive int (FCN uses 2), got {factor!r}")
    offset = _offset(offset)
    if isinstance(skip_scale, bool) or not isinstance(skip_scale, numbers.Real) \
            or not math.isfinite(skip_scale):
        raise ValueError(f"{OP}: skip_scale must be a finite number, got {skip_scale!r}")
    check_nonempty_plane(coarse, "coarse", OP)
    n, k = coarse.shape[:2]
    cs = skip_features.shape[1]
    if skip_features.shape[0] != n:
        raise ValueError(f"{OP}: skip_features' batch size must be coarse's ({n}), got "
                         f"{skip_features.shape[0]}")
    w = None
    if score_weight is not None:
        if score_weight.dim() == 4 and score_weight.shape[2:] == (1, 1):
            w = score_weight.view(score_weight.shape[:2])
        elif score_weight.dim() == 2:
            w = score_weight
        else:
            raise ValueError(f"{OP}: score_weight must be (num_classes, C_skip) or (num_classes, C_skip, "
                             f"1, 1), got shape {tuple(score_weight.shape)}")
        if w.shape[0] != k:
            raise ValueError(f"{OP}: score_weight scores {w.shape[0]} classes but coarse has {k} "
                             f"channels; they must match")
        if w.shape[1] != cs:
            raise ValueError(f"{OP}: score_weight expects {w.shape[1]} skip channels, skip_features "
                             f"has {cs}")
        if cs == 0:
            raise ValueError(f"{OP}: score_weight scores zero skip channels (skip_features of shape "
                             f"{tuple(skip_features.shape)}); a score convolution needs at least one")
    elif cs != k:
        raise ValueError(f"{OP}: without score_weight skip_features must already be scored: {k} "
                         f"channels like coarse, got {cs}")
    if score_bias is not None:
        if w is None:
            raise ValueError(f"{OP}: score_bias needs score_weight")
        if tuple(score_bias.shape) != (k,):
            raise ValueError(f"{OP}: score_bias must be ({k},), got shape {tuple(score_bias.shape)}")
    out_hw = _out_hw(coarse, factor)
    skip_hw = tuple(skip_features.shape[-2:])
    if any(offset[d] + out_hw[d] > skip_hw[d] for d in range(2)):
        raise ValueError(f"{OP}: offset {tuple(offset)} crops a {out_hw} window (the upsampled "
                         f"coarse size, (H + 1) * factor) outside skip_features' size {skip_hw}")
    backend = _backend.resolve(backend, coarse.device, OP)
    if backend == "aten":
        return _backend.unrouted(_aten_fcn_skip, coarse, skip_features, w, score_bias, factor, offset,
                                  float(skip_scale))
    return fcn_skip_op(coarse, skip_features, w, score_bias, factor, offset, float(skip_scale), backend)
