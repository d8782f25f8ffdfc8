"""Drop-in acceleration of existing models: :func:`patch` / :func:`unpatch` and :class:`enabled`.

Two ways to run an existing model on pydense's kernels without editing its code:

* :func:`patch` replaces, in place and reversibly, the modules of a model that pydense
  accelerates by their pydense twins (``module.__class__`` becomes the ``pydense.nn`` subclass of
  the module's class, and a ``backend`` attribute is set): the same objects, so parameters,
  buffers, hooks and state_dict keys stay exactly as they were. :func:`unpatch` restores the
  original classes; :func:`patched_modules` reports what was replaced.
* :class:`enabled` is a :class:`torch.overrides.TorchFunctionMode`: inside ``with
  pydense.enabled():`` the functional calls a forward makes (``F.interpolate`` bilinear,
  ``F.conv2d``, ``F.conv_transpose2d``, ``F.max_unpool2d``, ``F.pixel_shuffle``) go to
  :mod:`pydense.functional`, which also catches code that calls ``torch.nn.functional``
  directly (torchvision's segmentation heads upsample with ``F.interpolate``).

Both route convolutions through one predicate, :func:`default_conv_predicate` unless a
``conv_predicate`` is given: cuDNN (and oneDNN on CPU) is hard to beat on plain dense
convolutions, so by default only dilated ones (dilation > 1 on an axis whose kernel is > 1),
grouped / depthwise ones (groups > 1) and every transposed convolution go to pydense.
"""
import threading
from typing import NamedTuple, Tuple, Union

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from . import _backend, functional
from . import nn as pnn
from .nn import init
from .nn._backend_arg import check_backend
from .ops._common import FLOAT_DTYPES, int_pair

__all__ = ["OPS", "ConvSpec", "PatchRecord", "default_conv_predicate", "enabled",
           "fixed_bilinear_factor", "patch", "patched_modules", "unpatch"]

OPS = ("conv", "conv_transpose", "upsample", "unpool", "pixel_shuffle")

# The marker a patched module carries in its __dict__ (no parameter, buffer or state_dict entry):
# (original class, op, {attribute: previous value or _MISSING}).
_MARK = "_pydense_patch"
_MISSING = object()


def fixed_bilinear_factor(module):
    """The factor f if ``module`` is FCN's fixed bilinear upsampling, else None.

    That is a ``ConvTranspose2d`` with kernel 2f, stride f, no padding/output padding/dilation,
    no bias, groups 1 with C -> C channels (or depthwise), a frozen weight, and the weight exactly
    equal to :func:`pydense.nn.init.bilinear_`'s kernel — then
    ``pydense.functional.bilinear_deconv2d(x, f)`` computes the same thing.

    Example::

        >>> up = torch.nn.ConvTranspose2d(21, 21, 64, stride=32, bias=False)
        >>> _ = pydense.nn.init.bilinear_(up.weight).requires_grad_(False)
        >>> pydense.fixed_bilinear_factor(up)
        32
    """
    if not isinstance(module, torch.nn.ConvTranspose2d):
        return None
    k, s = module.kernel_size, module.stride
    if k[0] != k[1] or s[0] != s[1] or k[0] != 2 * s[0]:
        return None
    if (module.padding != (0, 0) or module.output_padding != (0, 0) or module.dilation != (1, 1)
            or module.bias is not None or module.weight.requires_grad):
        return None
    c_in, c_out = module.in_channels, module.out_channels
    if c_in != c_out or module.groups not in (1, c_in):
        return None
    expected = init.bilinear_(torch.empty_like(module.weight))
    return s[0] if torch.equal(module.weight, expected) else None


class ConvSpec(NamedTuple):
    """What a convolution routing predicate sees (the same for modules and functional calls).

    Attributes:
        in_channels (int), out_channels (int): the convolution's channels.
        kernel_size ((int, int)), stride ((int, int)), dilation ((int, int)): per axis.
        padding ((int, int) or str): per axis, or "same" / "valid".
        groups (int).
        transposed (bool): a transposed convolution (``ConvTranspose2d`` / ``F.conv_transpose2d``).
    """
    in_channels: int
    out_channels: int
    kernel_size: Tuple[int, int]
    stride: Tuple[int, int]
    padding: Union[Tuple[int, int], str]
    dilation: Tuple[int, int]
    groups: int
    transposed: bool = False


def default_conv_predicate(spec):
    """Whether a convolution is worth running on pydense (the default routing rule).

    True for every transposed convolution (pydense visits only the taps that reach each output
    and has direct kernels for grouped/depthwise ones, where ATen is slowest), for grouped and
    depthwise convolutions (``groups > 1``) and for dilated ones (dilation > 1 on an axis whose
    kernel is larger than 1: ATen's dilated paths are several times slower than its dense ones,
    and PyTorch's cuDNN depthwise path excludes dilation). False for plain dense convolutions,
    where cuDNN / oneDNN are hard to beat.

    Pass your own ``conv_predicate(spec) -> bool`` (a :class:`ConvSpec`) to :func:`patch` or
    :class:`enabled` to change the rule, e.g. ``conv_predicate=lambda spec: True`` routes every
    convolution.

    Example::

        >>> spec = pydense.ConvSpec(256, 256, (3, 3), (1, 1), (2, 2), (2, 2), 1)
        >>> pydense.default_conv_predicate(spec), pydense.default_conv_predicate(spec._replace(dilation=(1, 1)))
        (True, False)
    """
    if spec.transposed or spec.groups > 1:
        return True
    return any(d > 1 and k > 1 for d, k in zip(spec.dilation, spec.kernel_size))


def _pair(v):
    """``v`` as an int pair by the ops' rule, or None where that rule refuses it (the call then
    stays with torch, which accepts or rejects it as it always does)."""
    try:
        return int_pair(v, "", "")
    except (TypeError, ValueError):
        return None


def _module_spec(m):
    return ConvSpec(m.in_channels, m.out_channels, tuple(m.kernel_size), tuple(m.stride),
                    m.padding if isinstance(m.padding, str) else tuple(m.padding),
                    tuple(m.dilation), m.groups, isinstance(m, torch.nn.ConvTranspose2d))


class PatchRecord(NamedTuple):
    """One module replaced by :func:`patch` (see :func:`patched_modules`).

    Attributes:
        name (str): the module's qualified name in the model ("" for the model itself).
        original (type): its class before patching (restored by :func:`unpatch`).
        replacement (type): the ``pydense.nn`` class it has now.
        op (str): which of :data:`OPS` it falls under.
    """
    name: str
    original: type
    replacement: type
    op: str


def _check_ops(ops, where):
    if isinstance(ops, str):
        ops = (ops,)
    ops = tuple(ops)
    bad = [o for o in ops if o not in OPS]
    if bad:
        raise ValueError(f"{where}: unknown ops {bad}; choose among {OPS}")
    return ops


def _replacement(m, ops, conv_predicate):
    """(op, pydense class, extra attributes) for a module to patch, or None. Exact classes only:
    a subclass of a torch module may override ``forward``, so it is left alone."""
    cls = type(m)
    if cls is torch.nn.Conv2d:
        if "conv" in ops and m.padding_mode == "zeros" and conv_predicate(_module_spec(m)):
            return "conv", pnn.Conv2d, {}
    elif cls is torch.nn.ConvTranspose2d:
        if m.padding_mode != "zeros":
            return None
        if "conv_transpose" in ops and fixed_bilinear_factor(m) is not None:
            return "conv_transpose", pnn.BilinearConvTranspose2d, {}
        if "conv_transpose" in ops and conv_predicate(_module_spec(m)):
            return "conv_transpose", pnn.ConvTranspose2d, {}
    elif cls is torch.nn.MaxUnpool2d:
        if "unpool" in ops:
            return "unpool", pnn.MaxUnpool2d, {"check_indices": None}
    elif cls is torch.nn.Upsample:
        if "upsample" in ops and m.mode == "bilinear":
            return "upsample", pnn.Upsample, {}
    elif cls is torch.nn.UpsamplingBilinear2d:
        if "upsample" in ops:
            return "upsample", pnn.UpsamplingBilinear2d, {}
    elif cls is torch.nn.PixelShuffle:
        if "pixel_shuffle" in ops:
            return "pixel_shuffle", pnn.PixelShuffle, {}
    elif cls is torch.nn.PixelUnshuffle:
        if "pixel_shuffle" in ops:
            return "pixel_shuffle", pnn.PixelUnshuffle, {}
    return None


def patch(model, *, ops=OPS, backend="auto", conv_predicate=None):
    """Run a model's supported layers on pydense, in place and reversibly; returns ``model``.

    Walks ``model.modules()`` (the model itself included) and turns each module that pydense
    accelerates into its ``pydense.nn`` twin by assigning ``module.__class__`` (the twin is a
    subclass of the module's class, so ``isinstance`` checks still hold) and setting its
    ``backend`` attribute. Nothing else changes: the same module objects keep their parameters,
    buffers, hooks, training mode and state_dict keys; :func:`unpatch` restores the original
    classes and attributes exactly. Replaced (exact classes only; subclasses, which may override
    ``forward``, are left alone):

    * ``nn.Conv2d`` with zero padding that passes the predicate (default: dilated or grouped)
      -> :class:`pydense.nn.Conv2d` ("conv");
    * ``nn.ConvTranspose2d`` holding FCN's frozen bilinear kernel (:func:`fixed_bilinear_factor`)
      -> :class:`pydense.nn.BilinearConvTranspose2d`, computed by
      :func:`pydense.functional.bilinear_deconv2d` ("conv_transpose");
    * any other ``nn.ConvTranspose2d`` with zero padding that passes the predicate (default: all)
      -> :class:`pydense.nn.ConvTranspose2d` ("conv_transpose");
    * ``nn.MaxUnpool2d`` -> :class:`pydense.nn.MaxUnpool2d` ("unpool");
    * ``nn.Upsample`` with ``mode="bilinear"`` and ``nn.UpsamplingBilinear2d`` ->
      :class:`pydense.nn.Upsample` / :class:`pydense.nn.UpsamplingBilinear2d` ("upsample");
    * ``nn.PixelShuffle`` / ``nn.PixelUnshuffle`` -> :class:`pydense.nn.PixelShuffle` /
      :class:`pydense.nn.PixelUnshuffle` ("pixel_shuffle").

    Calling it again on a patched model patches what is new and sets ``backend`` on every
    patched module. What was replaced: :func:`patched_modules` (a list of :class:`PatchRecord`).
    Functional calls inside ``forward`` (``F.interpolate`` ...) are not modules: wrap the call
    in :class:`enabled` for those.

    Args:
        model (torch.nn.Module): modified in place.
        ops (sequence of str): which kinds to replace, among :data:`OPS` (default: all).
        backend (str): the ``backend`` of every replaced module: "auto" (default: per device, see
            ``pydense._tuned``), "triton", "cuda", "cpu" or "torch".
        conv_predicate (callable, optional): ``conv_predicate(spec: ConvSpec) -> bool``, whether a
            (transposed) convolution goes to pydense; default :func:`default_conv_predicate`.
            FCN's frozen bilinear deconvolutions are always replaced.

    Returns:
        torch.nn.Module: ``model``.

    Example::

        >>> model = torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, padding=2, dilation=2),
        ...                             torch.nn.Upsample(scale_factor=2, mode="bilinear"))
        >>> model = pydense.patch(model, backend="cpu")
        >>> [(r.name, r.replacement.__name__) for r in pydense.patched_modules(model)]
        [('0', 'Conv2d'), ('1', 'Upsample')]
        >>> type(pydense.unpatch(model)[0]) is torch.nn.Conv2d
        True
    """
    ops = _check_ops(ops, "pydense.patch")
    check_backend(backend, "pydense.patch")
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"pydense.patch: model must be a torch.nn.Module, got {type(model).__name__}")
    conv_predicate = default_conv_predicate if conv_predicate is None else conv_predicate
    for m in model.modules():
        if _MARK in m.__dict__:  # already patched: only the backend changes
            m.backend = backend
            continue
        found = _replacement(m, ops, conv_predicate)
        if found is None:
            continue
        op, new_cls, extra = found
        attrs = dict(extra, backend=backend)
        saved = {k: m.__dict__.get(k, _MISSING) for k in attrs}
        m.__dict__[_MARK] = (type(m), op, saved)
        m.__class__ = new_cls
        for k, v in attrs.items():
            setattr(m, k, v)
    return model


def unpatch(model):
    """Undo :func:`patch` on ``model`` and its submodules, in place; returns ``model``.

    Every patched module gets its original class back and the attributes :func:`patch` set
    (``backend``, ``check_indices``) are removed (or restored, had the module its own). Modules
    built as pydense modules, never patched, are left alone.

    Example::

        >>> model = torch.nn.Sequential(torch.nn.PixelShuffle(2))
        >>> type(pydense.unpatch(pydense.patch(model))[0])
        <class 'torch.nn.modules.pixelshuffle.PixelShuffle'>
    """
    for m in model.modules():
        mark = m.__dict__.pop(_MARK, None)
        if mark is None:
            continue
        original, _, saved = mark
        m.__class__ = original
        for k, v in saved.items():
            if v is _MISSING:
                m.__dict__.pop(k, None)
            else:
                m.__dict__[k] = v
    return model


def patched_modules(model):
    """What :func:`patch` replaced in ``model``: a list of :class:`PatchRecord` (name, original
    class, pydense class, op), in ``model.named_modules()`` order; empty after :func:`unpatch`.

    Example::

        >>> model = pydense.patch(torch.nn.Sequential(torch.nn.MaxUnpool2d(2)))
        >>> pydense.patched_modules(model)[0].op
        'unpool'
    """
    return [PatchRecord(name, m.__dict__[_MARK][0], type(m), m.__dict__[_MARK][1])
            for name, m in model.named_modules() if _MARK in m.__dict__]


# ---------------------------------------------------------------------------------------------
# The TorchFunctionMode


def _bind(args, kwargs, names, defaults):
    """Positional + keyword arguments as a dict over ``names`` (missing ones from defaults)."""
    bound = dict(defaults)
    bound.update(zip(names, args))
    bound.update(kwargs)
    return bound


def _plain_float(*tensors):
    """Plain (not subclassed) floating-point CPU/CUDA tensors, which pydense's ops take."""
    for t in tensors:
        if t is None:
            continue
        if type(t) not in (torch.Tensor, torch.nn.Parameter) or t.dtype not in FLOAT_DTYPES:
            return False
        if t.device.type not in ("cpu", "cuda"):
            return False
    return True


_NOT_PLAIN = ("not plain floating-point CPU/CUDA tensors of the supported ranks (subclasses, "
              "integer or quantized tensors stay with torch)")


def _decline(reason):
    """A route's "left to torch", with the reason :func:`pydense.explain` reports."""
    _state.why = reason
    return NotImplemented


def _predicate_says(conv_predicate):
    if conv_predicate is not default_conv_predicate:
        return "the conv_predicate given returned False"
    return ("a plain dense convolution: left to cuDNN / oneDNN (default_conv_predicate routes "
            "dilated, grouped and transposed ones)")


_CONV = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_CONV_D = {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1}
_CONV_T = ("input", "weight", "bias", "stride", "padding", "output_padding", "groups", "dilation")
_CONV_T_D = {"bias": None, "stride": 1, "padding": 0, "output_padding": 0, "groups": 1, "dilation": 1}
_INTERP = ("input", "size", "scale_factor", "mode", "align_corners", "recompute_scale_factor",
           "antialias")
_INTERP_D = {"size": None, "scale_factor": None, "mode": "nearest", "align_corners": None,
             "recompute_scale_factor": None, "antialias": False}
_UNPOOL = ("input", "indices", "kernel_size", "stride", "padding", "output_size")
_UNPOOL_D = {"stride": None, "padding": 0, "output_size": None}


def _route_conv2d(mode, args, kwargs):
    a = _bind(args, kwargs, _CONV, _CONV_D)
    x, w = a["input"], a["weight"]
    if not _plain_float(x, w, a["bias"]) or x.dim() not in (3, 4) or w.dim() != 4:
        return _decline(_NOT_PLAIN)
    groups = a["groups"]
    pairs = [_pair(a["stride"]), a["padding"] if isinstance(a["padding"], str) else _pair(a["padding"]),
             _pair(a["dilation"])]
    if None in pairs:
        return _decline("an argument pydense does not take (left to torch to accept or reject)")
    spec = ConvSpec(w.shape[1] * groups, w.shape[0], tuple(w.shape[2:]), pairs[0], pairs[1], pairs[2],
                    groups, False)
    if not mode.conv_predicate(spec):
        return _decline(_predicate_says(mode.conv_predicate))
    return functional.conv2d(x, w, a["bias"], a["stride"], a["padding"], a["dilation"], groups,
                             backend=mode.backend)


def _route_conv_transpose2d(mode, args, kwargs):
    a = _bind(args, kwargs, _CONV_T, _CONV_T_D)
    x, w = a["input"], a["weight"]
    if not _plain_float(x, w, a["bias"]) or x.dim() not in (3, 4) or w.dim() != 4:
        return _decline(_NOT_PLAIN)
    groups = a["groups"]
    pairs = [_pair(a["stride"]), _pair(a["padding"]), _pair(a["dilation"])]
    if None in pairs:
        return _decline("an argument pydense does not take (left to torch to accept or reject)")
    spec = ConvSpec(w.shape[0], w.shape[1] * groups, tuple(w.shape[2:]), *pairs, groups, True)
    if not mode.conv_predicate(spec):
        return _decline(_predicate_says(mode.conv_predicate))
    return functional.conv_transpose2d(x, w, a["bias"], a["stride"], a["padding"],
                                       a["output_padding"], groups, a["dilation"],
                                       backend=mode.backend)


def _route_interpolate(mode, args, kwargs):
    a = _bind(args, kwargs, _INTERP, _INTERP_D)
    x = a["input"]
    if a["mode"] != "bilinear" or a["antialias"]:
        return _decline(f"mode={a['mode']!r}{', antialias' if a['antialias'] else ''}: pydense "
                        f"implements bilinear without antialias")
    if not _plain_float(x) or x.dim() != 4:
        return _decline(_NOT_PLAIN)
    return functional.interpolate(x, a["size"], a["scale_factor"], "bilinear", a["align_corners"],
                                  a["recompute_scale_factor"], backend=mode.backend)


def _route_max_unpool2d(mode, args, kwargs):
    a = _bind(args, kwargs, _UNPOOL, _UNPOOL_D)
    x, idx = a["input"], a["indices"]
    if not _plain_float(x) or type(idx) is not torch.Tensor or x.dim() not in (3, 4):
        return _decline(_NOT_PLAIN)
    return functional.max_unpool2d(x, idx, a["kernel_size"], a["stride"], a["padding"],
                                   a["output_size"], backend=mode.backend)


def _route_shuffle(up):
    name = "upscale_factor" if up else "downscale_factor"
    fn = functional.pixel_shuffle if up else functional.pixel_unshuffle

    def route(mode, args, kwargs):
        a = _bind(args, kwargs, ("input", name), {})
        x = a["input"]
        if not _plain_float(x) or x.dim() < 3:
            return _decline(_NOT_PLAIN)
        return fn(x, a[name], backend=mode.backend)
    return route


_ROUTES = {
    "conv": {F.conv2d: _route_conv2d},
    "conv_transpose": {F.conv_transpose2d: _route_conv_transpose2d},
    "upsample": {F.interpolate: _route_interpolate},
    "unpool": {F.max_unpool2d: _route_max_unpool2d},
    "pixel_shuffle": {F.pixel_shuffle: _route_shuffle(True), F.pixel_unshuffle: _route_shuffle(False)},
}

_state = threading.local()


class enabled(TorchFunctionMode):
    """Inside ``with pydense.enabled():`` supported functional calls run on pydense.

    A :class:`torch.overrides.TorchFunctionMode` that sends these calls (whoever makes them: a
    model's ``forward``, an ``nn`` module, a helper) to :mod:`pydense.functional`, with the
    same arguments and results, and passes every other call through untouched:

    * ``F.interpolate(..., mode="bilinear")`` on 4-D input without antialias ("upsample");
    * ``F.conv2d`` passing the convolution predicate (default :func:`default_conv_predicate`:
      dilated or grouped) ("conv");
    * ``F.conv_transpose2d`` passing the predicate (default: all) ("conv_transpose");
    * ``F.max_unpool2d`` ("unpool");
    * ``F.pixel_shuffle`` / ``F.pixel_unshuffle`` ("pixel_shuffle").

    Only plain floating-point CPU/CUDA tensors are routed (tensor subclasses, integer or
    quantized tensors pass through). The results are differentiable (pydense's ops carry their
    own backward), so training under the mode works. It never recurses: while pydense handles a
    routed call (its argument checks, its ``torch`` fallbacks, a backward run inside the block),
    and while any pydense op runs the stock function that ``auto`` chose for it (``"aten"``,
    e.g. in a patched module), the mode is inactive, so the torch functions pydense calls itself
    reach ATen.
    ``torch.compile`` traces through the mode: a model compiled and run inside the block gets
    the pydense ops in its graph (``fullgraph=True`` works).

    Args:
        backend (str): "auto" (default), "triton", "cuda", "cpu" or "torch", for every routed call.
        ops (sequence of str): which kinds to route, among :data:`OPS` (default: all).
        conv_predicate (callable, optional): ``conv_predicate(spec: ConvSpec) -> bool``, as for
            :func:`patch`.

    Example::

        >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=2, dilation=2),
        ...                             torch.nn.Upsample(scale_factor=2, mode="bilinear"))
        >>> x = torch.randn(1, 3, 32, 32)
        >>> with pydense.enabled(backend="cpu"):
        ...     y = model(x)       # the dilated conv and the bilinear upsampling run on pydense
        >>> torch.testing.assert_close(y, model(x))
    """

    def __init__(self, backend="auto", *, ops=OPS, conv_predicate=None):
        super().__init__()
        check_backend(backend, "pydense.enabled")
        self.backend = backend
        self.ops = _check_ops(ops, "pydense.enabled")
        self.conv_predicate = default_conv_predicate if conv_predicate is None else conv_predicate
        self._routes = {}
        for op in self.ops:
            self._routes.update(_ROUTES[op])

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        route = self._routes.get(func)
        # torch pops this mode while it runs __torch_function__, so the calls pydense makes here
        # reach ATen; the flag also guards against a re-entry through another mode on the stack.
        if route is not None and not _backend.routing_off():
            out = _backend.unrouted(route, self, args, kwargs)
            if out is not NotImplemented:
                return out
        return func(*args, **kwargs)
