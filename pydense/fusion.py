"""Automatic fusion for models that go through ``torch.compile``: :func:`compile` and :func:`fuse`.

The patterns people write, found in the graph Dynamo captures (torch-level calls, before
autograd tracing) and replaced by pydense's fused ops, with the same numbers as unfused:

* ``torch.cat([F.interpolate(x, ...), skip, ...], 1)`` (UNet decoders; nearest, nearest-exact or
  bilinear) -> :func:`pydense.functional.upsample_concat` ("upsample_concat");
* ``relu(conv2d(...))`` -> :func:`pydense.functional.conv2d_fused` with ``activation="relu"``
  ("conv_relu");
* ``r + s * conv2d(...)``, ``r + conv2d(...)`` (EDSR's residual scaling; the convolution may
  carry a fused relu) -> ``conv2d_fused(residual=r, scale=s)`` ("conv_residual");
* ``pixel_shuffle(conv2d(...), r)`` (sub-pixel upsamplers) -> :func:`conv2d_pixel_shuffle`
  ("conv_pixel_shuffle");
* FCN's skip chain ``up + conv1x1(s * pool)[:, :, o:o + H, o:o + W]`` (voc-fcn16s/8s), where
  ``up`` is a bias-free ``conv_transpose2d`` (kernel 2f, stride f) whose weight is FCN's fixed
  bilinear kernel (or :func:`pydense.functional.bilinear_deconv2d` uncropped), the 1x1 score convolution
  and the scaling optional -> :func:`pydense.functional.fcn_skip` ("fcn_skip").

A site is fused only when the intermediate result has no other user and the shapes, dtypes and
arguments are ones the fused op takes (Dynamo's example values say); everything else is left as
it is. The FCN chain is fused only when the deconvolution's weight, as the compiled graph receives
it, is FCN's bilinear kernel and gets no gradient in that graph (frozen, as FCN trains it:
``requires_grad_(False)``, or under ``torch.no_grad()``); the fused graph assumes it stays so,
like any compiled graph that does not guard on parameter values. The fused ops run on
``backend`` (``"auto"``: per device and shape class, which on CPU may be the stock chain itself,
see ``pydense/_tuned.py``).
"""
import collections
import numbers
import operator

import torch
import torch.nn.functional as F

from . import functional

__all__ = ["compile", "fuse"]

_CONV_ARGS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_CONV_DEFAULTS = {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1}
_INTERP_ARGS = ("input", "size", "scale_factor", "mode", "align_corners", "recompute_scale_factor",
                "antialias")
_INTERP_DEFAULTS = {"size": None, "scale_factor": None, "mode": "nearest", "align_corners": None,
                    "recompute_scale_factor": None, "antialias": False}
_CONVT_ARGS = ("input", "weight", "bias", "stride", "padding", "output_padding", "groups", "dilation")
_CONVT_DEFAULTS = {"bias": None, "stride": 1, "padding": 0, "output_padding": 0, "groups": 1,
                   "dilation": 1}
_RELU = {F.relu, torch.relu}
_CONV2D = {F.conv2d, torch.conv2d}
_CONV_TRANSPOSE2D = {F.conv_transpose2d, torch.conv_transpose2d}
_MUL = {operator.mul, torch.mul}
_ADD = {operator.add, torch.add}


def _bound(node, names, defaults):
    args = dict(defaults)
    args.update(zip(names, node.args))
    args.update(node.kwargs)
    return args


def _value(node):
    """Dynamo's example value of a node (a fake tensor), or None."""
    return node.meta.get("example_value") if isinstance(node, torch.fx.Node) else None


def _pair(v):
    """An int or a pair of ints as a tuple of two, else None."""
    if isinstance(v, int):
        return (v, v)
    if isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(i, int) for i in v):
        return tuple(v)
    return None


def _real(gm, node, example_inputs):
    """The real tensor behind a graph input or attribute (a parameter, as the compiled graph
    receives it), or None where it is not known."""
    if not isinstance(node, torch.fx.Node):
        return None
    if node.op == "get_attr":
        value = gm
        for part in node.target.split("."):
            value = getattr(value, part, None)
    elif node.op == "placeholder" and example_inputs is not None:
        inputs = [n for n in gm.graph.nodes if n.op == "placeholder"]
        i = inputs.index(node)
        value = example_inputs[i] if i < len(example_inputs) else None
    else:
        return None
    if not isinstance(value, torch.Tensor) or isinstance(value, torch._subclasses.FakeTensor):
        return None
    return value


def _only_user(node, user):
    return len(node.users) == 1 and user in node.users


def _is_relu(node):
    if node.op == "call_function" and node.target in _RELU:
        return not node.kwargs.get("inplace", False) and len(node.args) == 1
    return node.op == "call_method" and node.target == "relu" and len(node.args) == 1


def _conv(node):
    """The bound arguments of a 2-D convolution node on a 4-D input, or None."""
    if node.op != "call_function" or node.target not in _CONV2D:
        return None
    a = _bound(node, _CONV_ARGS, _CONV_DEFAULTS)
    x = _value(a["input"])
    if x is None or x.dim() != 4:
        return None
    return a


def _fused(node):
    """The bound arguments of a conv2d_fused node this pass made, or None."""
    if node.op == "call_function" and node.target is functional.conv2d_fused:
        return dict(zip(_CONV_ARGS, node.args), **node.kwargs)
    return None


def _replace(graph, node, target, args, kwargs):
    with graph.inserting_before(node):
        new = graph.call_function(target, tuple(args), kwargs)
    new.meta.update(node.meta)
    node.replace_all_uses_with(new)
    graph.erase_node(node)
    return new


def _conv_relu(graph, node, backend):
    if not _is_relu(node) or not isinstance(node.args[0], torch.fx.Node):
        return False
    conv = node.args[0]
    a = _conv(conv)
    if a is None or not _only_user(conv, node):
        return False
    _replace(graph, node, functional.conv2d_fused, [a[k] for k in _CONV_ARGS],
             {"activation": "relu", "backend": backend})
    graph.erase_node(conv)
    return True


def _scaled(node):
    """(node, scale, the mul node or None) for ``s * c``, ``c * s`` or ``c`` itself."""
    if node.op == "call_function" and node.target in _MUL and len(node.args) == 2 and not node.kwargs:
        x, y = node.args
        if isinstance(x, numbers.Real) and isinstance(y, torch.fx.Node):
            return y, float(x), node
        if isinstance(y, numbers.Real) and isinstance(x, torch.fx.Node):
            return x, float(y), node
        return None
    return node, 1.0, None


def _is_add(node):
    return (node.op == "call_function" and node.target in _ADD and len(node.args) == 2
            and not node.kwargs)


def _conv_residual(graph, node, backend):
    if not _is_add(node):
        return False
    for r, other in (node.args, node.args[::-1]):
        if not isinstance(r, torch.fx.Node) or not isinstance(other, torch.fx.Node):
            continue
        found = _scaled(other)
        if found is None:
            continue
        conv, scale, mul = found
        if mul is not None and not _only_user(mul, node):
            continue
        if not _only_user(conv, mul if mul is not None else node):
            continue
        a, relu = _conv(conv), False
        if a is None:
            f = _fused(conv)
            if f is None or f.get("residual") is not None or f.get("scale", 1.0) != 1.0:
                continue
            a, relu = f, f.get("activation") == "relu"
        rv, cv = _value(r), _value(conv)
        if rv is None or cv is None or rv.shape != cv.shape or rv.dtype != cv.dtype:
            continue
        _replace(graph, node, functional.conv2d_fused, [a[k] for k in _CONV_ARGS],
                 {"activation": "relu" if relu else None, "residual": r, "scale": scale,
                  "backend": backend})
        if mul is not None:
            graph.erase_node(mul)
        graph.erase_node(conv)
        return True
    return False


def _conv_pixel_shuffle(graph, node, backend):
    if node.op != "call_function" or node.target not in (F.pixel_shuffle, torch.pixel_shuffle):
        return False
    conv, factor = (list(node.args) + [node.kwargs.get("upscale_factor")])[:2]
    if not isinstance(conv, torch.fx.Node) or not isinstance(factor, int):
        return False
    a = _conv(conv)
    if a is None or not _only_user(conv, node):
        return False
    if a["groups"] != 1 or a["stride"] not in (1, (1, 1), [1, 1]) or a["dilation"] not in (1, (1, 1), [1, 1]):
        return False
    if isinstance(a["padding"], str):
        return False
    _replace(graph, node, functional.conv2d_pixel_shuffle, [a["input"], a["weight"], a["bias"], factor],
             {"padding": a["padding"], "backend": backend})
    graph.erase_node(conv)
    return True


def _upsample_concat(graph, node, backend):
    if node.op != "call_function" or node.target is not torch.cat:
        return False
    tensors = node.args[0] if node.args else node.kwargs.get("tensors")
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
    if not isinstance(tensors, (list, tuple)) or len(tensors) < 2 or dim not in (1, -3):
        return False
    up, skip = tensors[0], tensors[1]
    if not isinstance(up, torch.fx.Node) or not isinstance(skip, torch.fx.Node):
        return False
    if up.op != "call_function" or up.target is not F.interpolate or not _only_user(up, node):
        return False
    if any(t is up for t in tensors[1:]):  # concatenated twice: it is materialised anyway
        return False
    a = _bound(up, _INTERP_ARGS, _INTERP_DEFAULTS)
    if a["mode"] not in ("nearest", "nearest-exact", "bilinear") or a["antialias"] or a["recompute_scale_factor"]:
        return False
    uv, sv, xv = _value(up), _value(skip), _value(a["input"])
    if uv is None or sv is None or xv is None or xv.dim() != 4 or sv.dim() != 4:
        return False
    if uv.shape[-2:] != sv.shape[-2:] or uv.dtype != sv.dtype or uv.shape[0] != sv.shape[0]:
        return False
    kwargs = {"scale_factor": a["scale_factor"], "mode": a["mode"], "backend": backend}
    if a["mode"] == "bilinear":
        kwargs["align_corners"] = a["align_corners"]
    with graph.inserting_before(node):
        fused = graph.call_function(functional.upsample_concat, (a["input"], skip), kwargs)
    rest = list(tensors[2:])
    if rest:
        with graph.inserting_before(node):
            out = graph.call_function(torch.cat, ([fused] + rest,), {"dim": 1})
    else:
        out = fused
    out.meta.update(node.meta)
    node.replace_all_uses_with(out)
    graph.erase_node(node)
    graph.erase_node(up)
    return True


def _bilinear_up(node, gm, example_inputs):
    """(coarse node, factor) where ``node`` is FCN's fixed bilinear deconvolution of ``coarse``
    (uncropped, and its weight frozen in this graph), else None."""
    if node.op != "call_function":
        return None
    if node.target is torch.ops.pydense.bilinear_deconv2d.default:  # pydense's own, uncropped
        x, factor, crop, size = node.args[:4]
        xv = _value(x)
        if xv is None or crop != 0 or list(size) != [(n + 1) * factor for n in xv.shape[-2:]]:
            return None
        return x, factor
    if node.target not in _CONV_TRANSPOSE2D:
        return None
    a = _bound(node, _CONVT_ARGS, _CONVT_DEFAULTS)
    stride, x, w = _pair(a["stride"]), _value(a["input"]), _real(gm, a["weight"], example_inputs)
    if (a["bias"] is not None or stride is None or stride[0] != stride[1] or x is None or w is None
            or x.dim() != 4 or _pair(a["padding"]) != (0, 0) or _pair(a["output_padding"]) != (0, 0)
            or _pair(a["dilation"]) != (1, 1)):
        return None
    up = _value(node)
    if up is None or (w.requires_grad and up.requires_grad):  # the weight would get a gradient
        return None
    f, c = stride[0], x.shape[1]
    if w.dim() != 4 or w.shape[2:] != (2 * f, 2 * f) or w.shape[0] != c:
        return None
    if not ((a["groups"] == 1 and w.shape[1] == c) or (a["groups"] == c and w.shape[1] == 1)):
        return None
    from .nn.init import bilinear_

    ref = bilinear_(torch.zeros(w.shape, dtype=w.dtype, device=w.device))
    if not torch.allclose(w.detach(), ref, rtol=0, atol=2 * torch.finfo(w.dtype).eps):
        return None
    return a["input"], f


def _crop(node, size):
    """(source node, (top, left)) where ``node`` is ``source[:, :, top:top + h, left:left + w]``
    (or ``source[..., ...]``) for ``size`` (h, w), else None."""
    if node.op != "call_function" or node.target is not operator.getitem:
        return None
    src, index = node.args
    if not isinstance(src, torch.fx.Node) or not isinstance(index, tuple):
        return None
    if index[:1] == (Ellipsis,):
        index = (slice(None), slice(None)) + index[1:]
    if len(index) != 4 or index[0] != slice(None) or index[1] != slice(None):
        return None
    offset = []
    for sl, n in zip(index[2:], size):
        start = 0 if isinstance(sl, slice) and sl.start is None else getattr(sl, "start", None)
        if (not isinstance(sl, slice) or sl.step not in (None, 1) or not isinstance(start, int)
                or start < 0 or sl.stop != start + n):
            return None
        offset.append(start)
    return src, tuple(offset)


def _score(node, crop):
    """(skip features node, score weight, bias, skip_scale, the nodes they replace) for the
    cropped source of FCN's skip: ``conv1x1(s * pool)``, ``conv1x1(pool)``, ``s * pool`` or
    ``pool`` itself."""
    a, used = _conv(node), []
    if a is not None and _only_user(node, crop):
        w = _value(a["weight"])
        if (w is not None and w.dim() == 4 and w.shape[2:] == (1, 1) and a["groups"] == 1
                and _pair(a["stride"]) == (1, 1) and _pair(a["padding"]) == (0, 0)
                and _pair(a["dilation"]) == (1, 1)):
            weight, bias, user, used = a["weight"], a["bias"], node, [node]
            node = a["input"]
        else:
            weight, bias, user = None, None, crop
    else:
        weight, bias, user = None, None, crop
    if isinstance(node, torch.fx.Node):
        features, scale, mul = _scaled(node)
        if mul is not None and _only_user(mul, user) and isinstance(features, torch.fx.Node):
            return features, weight, bias, scale, used + [mul]
    return node, weight, bias, 1.0, used


def _fcn_skip(graph, node, backend, gm, example_inputs):
    if not _is_add(node):
        return False
    for up, cropped in (node.args, node.args[::-1]):
        if not isinstance(up, torch.fx.Node) or not isinstance(cropped, torch.fx.Node):
            continue
        found = _bilinear_up(up, gm, example_inputs)
        uv, cv = _value(up), _value(cropped)
        if found is None or uv is None or cv is None or uv.shape != cv.shape or uv.dtype != cv.dtype:
            continue
        if not _only_user(up, node) or not _only_user(cropped, node):
            continue
        crop = _crop(cropped, tuple(uv.shape[-2:]))
        if crop is None:
            continue
        coarse, factor = found
        skip, weight, bias, scale, used = _score(crop[0], cropped)
        sv = _value(skip)
        if sv is None or sv.dim() != 4 or sv.dtype != uv.dtype or sv.shape[0] != uv.shape[0]:
            continue
        if weight is None and sv.shape[1] != uv.shape[1]:
            continue
        _replace(graph, node, functional.fcn_skip, [coarse, skip],
                 {"factor": factor, "offset": crop[1], "skip_scale": scale, "score_weight": weight,
                  "score_bias": bias, "backend": backend})
        for n in [cropped, up] + used:
            graph.erase_node(n)
        return True
    return False


# In order: the relu first, so that a residual add finds the conv2d_fused node it makes.
_PATTERNS = (("conv_relu", _conv_relu), ("conv_residual", _conv_residual),
             ("conv_pixel_shuffle", _conv_pixel_shuffle), ("upsample_concat", _upsample_concat),
             ("fcn_skip", _fcn_skip))
_NEEDS_INPUTS = {"fcn_skip"}  # patterns that read a parameter's value


def fuse(gm, backend="auto", example_inputs=None):
    """Rewrite the graph of ``gm`` (a ``torch.fx.GraphModule`` Dynamo captured) in place, fusing
    the patterns above; returns a ``collections.Counter`` of the sites fused per pattern.

    ``example_inputs``: the real tensors the graph's inputs stand for (what a ``torch.compile``
    backend receives); the FCN chain's deconvolution weight is read from them (or from ``gm``'s
    attributes); without them only :func:`pydense.functional.bilinear_deconv2d` counts as that
    chain's upsampling."""
    counts = collections.Counter()
    graph = gm.graph
    for name, rewrite in _PATTERNS:
        extra = (gm, example_inputs) if name in _NEEDS_INPUTS else ()
        for node in list(graph.nodes):
            if node.graph is graph and rewrite(graph, node, backend, *extra):
                counts[name] += 1
    if counts:
        graph.lint()
        gm.recompile()
    return counts


def compile(model, *, backend="auto", inner="inductor", **kwargs):
    """``torch.compile(model, **kwargs)`` with pydense's fusion pass in front of ``inner`` (a
    ``torch.compile`` backend: "inductor" by default, "aot_eager", or a callable).

    The fused ops run on ``backend`` (the pydense backend word). The returned module has
    ``pydense_fusions``: a ``collections.Counter`` of the sites fused per pattern, summed over
    every graph compiled so far (filled at the first call).

    Example::

        >>> model = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3, padding=1), torch.nn.ReLU())
        >>> compiled = pydense.compile(model, inner="aot_eager")
        >>> y = compiled(torch.randn(1, 4, 8, 8))
        >>> dict(compiled.pydense_fusions)
        {'conv_relu': 1}
    """
    from torch._dynamo import lookup_backend

    from .nn._backend_arg import check_backend

    check_backend(backend, "pydense.compile")
    inner_fn = lookup_backend(inner) if isinstance(inner, str) else inner
    counts = collections.Counter()

    def fusing_backend(gm, example_inputs):
        counts.update(fuse(gm, backend, example_inputs))
        return inner_fn(gm, example_inputs)

    compiled = torch.compile(model, backend=fusing_backend, **kwargs)
    compiled.pydense_fusions = counts
    return compiled
