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
  ("conv_pixel_shuffle").

A site is fused only when the intermediate result has no other user and the shapes, dtypes and
arguments are ones the fused op takes (Dynamo's example values say); everything else is left as
it is. The fused ops run on ``backend`` (``"auto"``: per device and shape class, which on CPU may
be the stock chain itself, see ``pydense/_tuned.py``).
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
_RELU = {F.relu, torch.relu}
_CONV2D = {F.conv2d, torch.conv2d}


def _bound(node, names, defaults):
    args = dict(defaults)
    args.update(zip(names, node.args))
    args.update(node.kwargs)
    return args


def _value(node):
    """Dynamo's example value of a node (a fake tensor), or None."""
    return node.meta.get("example_value") if isinstance(node, torch.fx.Node) else None


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
    """(conv-like node, scale) for ``s * c``, ``c * s`` or ``c`` itself."""
    if node.op == "call_function" and node.target is operator.mul and len(node.args) == 2:
        x, y = node.args
        if isinstance(x, numbers.Real) and isinstance(y, torch.fx.Node):
            return y, float(x), node
        if isinstance(y, numbers.Real) and isinstance(x, torch.fx.Node):
            return x, float(y), node
        return None
    return node, 1.0, None


def _conv_residual(graph, node, backend):
    if node.op != "call_function" or node.target is not operator.add or len(node.args) != 2:
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


# In order: the relu first, so that a residual add finds the conv2d_fused node it makes.
_PATTERNS = (("conv_relu", _conv_relu), ("conv_residual", _conv_residual),
             ("conv_pixel_shuffle", _conv_pixel_shuffle), ("upsample_concat", _upsample_concat))


def fuse(gm, backend="auto"):
    """Rewrite the graph of ``gm`` (a ``torch.fx.GraphModule`` Dynamo captured) in place, fusing
    the patterns above; returns a ``collections.Counter`` of the sites fused per pattern."""
    counts = collections.Counter()
    graph = gm.graph
    for name, rewrite in _PATTERNS:
        for node in list(graph.nodes):
            if node.graph is graph and rewrite(graph, node, backend):
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
        counts.update(fuse(gm, backend))
        return inner_fn(gm, example_inputs)

    compiled = torch.compile(model, backend=fusing_backend, **kwargs)
    compiled.pydense_fusions = counts
    return compiled
