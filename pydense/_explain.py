""":func:`explain`: what pydense does with a model, module by module and call by call.

Like ``torch._dynamo.explain`` for graph breaks: one forward on an example input, and a report of
which modules :func:`pydense.patch` replaced (or would replace) and which it leaves alone and why,
and of every functional call the forward makes that pydense can take (``F.conv2d``,
``F.conv_transpose2d``, ``F.interpolate``, ``F.max_unpool2d``, ``F.pixel_shuffle`` /
``F.pixel_unshuffle``): whether :class:`pydense.enabled` routes it, to which op and backend
(``auto`` resolved per device and shape class, ``"aten"`` meaning the stock op itself), or why it
stays on stock.
"""
from typing import List, NamedTuple

import torch

from . import _backend
from . import patching
from .patching import OPS, _MARK, _replacement, default_conv_predicate, enabled

__all__ = ["Explanation", "ExplainEntry", "explain"]

# Module classes patch() knows, per kind (a module of another class is not listed).
_KNOWN = {torch.nn.Conv2d: "conv", torch.nn.ConvTranspose2d: "conv_transpose",
          torch.nn.MaxUnpool2d: "unpool", torch.nn.Upsample: "upsample",
          torch.nn.UpsamplingBilinear2d: "upsample", torch.nn.UpsamplingNearest2d: "upsample",
          torch.nn.PixelShuffle: "pixel_shuffle", torch.nn.PixelUnshuffle: "pixel_shuffle"}


class ExplainEntry(NamedTuple):
    """One line of :class:`Explanation`.

    Attributes:
        kind (str): "module" (a module patch() knows) or "call" (a functional call of the forward).
        where (str): the module's qualified name ("" for the model itself).
        what (str): the module's class, or the functional call (``F.conv2d``).
        pydense (bool): whether pydense runs it (a patched module, a routed call).
        ops (tuple): the pydense ops it resolved to, as "op -> backend" (``auto`` resolved).
        reason (str): why it stays on stock, or how it is run.
    """
    kind: str
    where: str
    what: str
    pydense: bool
    ops: tuple
    reason: str


class Explanation(NamedTuple):
    """The report of :func:`explain`; ``str()`` prints it as a table.

    Attributes:
        entries (list of ExplainEntry): modules first (in ``named_modules`` order), then calls.
        backend (str): the backend it was asked about.
    """
    entries: List[ExplainEntry]
    backend: str

    @property
    def modules(self):
        return [e for e in self.entries if e.kind == "module"]

    @property
    def calls(self):
        return [e for e in self.entries if e.kind == "call"]

    def __str__(self):
        mods, calls = self.modules, self.calls
        lines = [f"pydense.explain (backend={self.backend!r}): {sum(e.pydense for e in mods)} of "
                 f"{len(mods)} known modules on pydense, {sum(e.pydense for e in calls)} of "
                 f"{len(calls)} functional calls routed"]
        rows = [("", "where", "what", "pydense", "ops")]
        for e in self.entries:
            rows.append((e.kind, e.where or "<model>", e.what, "yes" if e.pydense else "no",
                         ", ".join(e.ops) or "-"))
        width = [max(len(r[i]) for r in rows) for i in range(5)]
        for row, e in zip(rows, [None] + self.entries):
            line = "  ".join(c.ljust(w) for c, w in zip(row, width)).rstrip()
            lines.append(line + (f"  | {e.reason}" if e is not None and e.reason else ""))
        return "\n".join(lines)


def _module_reason(m, kind, ops, conv_predicate):
    """(pydense, reason) for a module patch() knows and has not replaced."""
    if kind not in ops:
        return False, f"'{kind}' not in ops"
    if _replacement(m, ops, conv_predicate) is not None:
        return False, "pydense.patch would replace it (not patched)"
    if type(m) not in _KNOWN:
        return False, "a subclass (may override forward): left alone"
    if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
        if m.padding_mode != "zeros":
            return False, f"padding_mode={m.padding_mode!r}: pydense pads with zeros"
        return False, patching._predicate_says(conv_predicate)
    if isinstance(m, torch.nn.Upsample):
        return False, f"mode={m.mode!r}: pydense implements bilinear"
    return False, "not replaced"


class _Recorder(enabled):
    """:class:`pydense.enabled` that also records each call it sees, where it was made and what
    became of it."""

    def __init__(self, backend, ops, conv_predicate, where, entries, route):
        super().__init__(backend, ops=ops, conv_predicate=conv_predicate)
        self._where, self._entries, self._route = where, entries, route

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = _CALLS.get(func)
        if name is None or _backend.routing_off() or self._where[-1][1]:
            # not a kind pydense takes, a call pydense makes, or one inside a patched module
            # (reported with the module)
            return super().__torch_function__(func, types, args, kwargs)
        calls = _backend.TRACE.calls
        start = len(calls)
        patching._state.why = None
        if self._route:
            out = super().__torch_function__(func, types, args, kwargs)
        else:
            out = func(*args, **(kwargs or {}))
        resolved = calls[start:]
        routed = bool(resolved)
        why = patching._state.why
        if not self._route:
            why = "pydense.enabled() not in use (explain(..., enabled=False))"
        elif not routed and why is None:
            why = f"'{_KIND[func]}' not in ops"
        ops = tuple(f"{op} -> {b}" for op, _, b, _, _ in resolved)
        reason = why or _how(resolved)
        self._entries.append(ExplainEntry("call", self._where[-1][0], name, routed, ops, reason))
        del calls[start:]  # the calls pydense made for this one are reported with it
        return out


def _how(resolved):
    notes = []
    for op, requested, backend, device, cls in resolved:
        text = f"{requested} on {device}"
        if cls not in ("*", None):
            text += f", class {cls}"
        if backend == "aten":
            text += ": the stock op (pydense/_tuned.py measured ATen faster here)"
        notes.append(text)
    return "; ".join(dict.fromkeys(notes))


F = torch.nn.functional
_CALLS = {F.conv2d: "F.conv2d", F.conv_transpose2d: "F.conv_transpose2d",
          F.interpolate: "F.interpolate", F.max_unpool2d: "F.max_unpool2d",
          F.pixel_shuffle: "F.pixel_shuffle", F.pixel_unshuffle: "F.pixel_unshuffle"}
_KIND = {F.conv2d: "conv", F.conv_transpose2d: "conv_transpose", F.interpolate: "upsample",
         F.max_unpool2d: "unpool", F.pixel_shuffle: "pixel_shuffle", F.pixel_unshuffle: "pixel_shuffle"}


def explain(model, *inputs, backend="auto", ops=OPS, conv_predicate=None, enabled=True,
            **kwargs) -> Explanation:
    """Run ``model(*inputs, **kwargs)`` once (``torch.no_grad()``) and report what pydense does.

    Modules: every module of a class :func:`pydense.patch` knows (convolutions, transposed
    convolutions, upsampling, max-unpooling, pixel (un)shuffle): patched (and the ops and
    backends its forward resolved to), or why not (the predicate, the mode, not patched yet).
    Calls: every functional call of those kinds the forward makes outside patched modules, under
    ``pydense.enabled(backend, ops=ops, conv_predicate=conv_predicate)`` (``enabled=False``: as
    the model runs without it): routed to which pydense op and backend, or why it stays on stock.
    The model is not changed.

    Args:
        model (torch.nn.Module): patched or not.
        *inputs, **kwargs: an example input for ``model``.
        backend (str): the backend to explain ("auto": resolved per device and shape class).
        ops, conv_predicate: as for :func:`pydense.patch` and :class:`pydense.enabled`.
        enabled (bool): explain the calls as routed by ``pydense.enabled`` (default) or as left
            on stock.

    Returns:
        Explanation: ``print()`` it for a table; ``.modules`` / ``.calls`` for the entries.

    Example::

        >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=2, dilation=2),
        ...                             torch.nn.Conv2d(8, 8, 3, padding=1),
        ...                             torch.nn.Upsample(scale_factor=2, mode="nearest"))
        >>> report = pydense.explain(pydense.patch(model), torch.randn(1, 3, 16, 16))
        >>> [(e.where, e.pydense) for e in report.modules]
        [('0', True), ('1', False), ('2', False)]
    """
    ops = patching._check_ops(ops, "pydense.explain")
    predicate = default_conv_predicate if conv_predicate is None else conv_predicate
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"pydense.explain: model must be a torch.nn.Module, got {type(model).__name__}")
    names = {m: n for n, m in model.named_modules()}
    where = [("", False)]  # (qualified name, inside a patched module) of the running module
    module_ops = {}
    entries = []

    def pre(m, args):
        patched = _MARK in m.__dict__
        where.append((names.get(m, where[-1][0]), where[-1][1] or patched))
        module_ops.setdefault(m, [])
        if patched:
            m.__dict__["_pydense_explain_start"] = len(_backend.TRACE.calls)

    def post(m, args, out):
        where.pop()
        start = m.__dict__.pop("_pydense_explain_start", None)
        if start is not None:
            module_ops[m] += _backend.TRACE.calls[start:]
            del _backend.TRACE.calls[start:]

    handles = []
    for m in names:
        handles.append(m.register_forward_pre_hook(pre))
        handles.append(m.register_forward_hook(post))
    _backend.TRACE.calls = []
    try:
        with torch.no_grad(), _Recorder(backend, ops, predicate, where, entries, enabled):
            model(*inputs, **kwargs)
    finally:
        _backend.TRACE.calls = None
        for h in handles:
            h.remove()
    module_entries = []
    for m, name in names.items():
        kind = _KNOWN.get(type(m)) or next((k for c, k in _KNOWN.items() if isinstance(m, c)), None)
        if kind is None:
            continue
        if _MARK in m.__dict__:
            resolved = module_ops.get(m, [])
            module_entries.append(ExplainEntry(
                "module", name, f"{m.__dict__[_MARK][0].__name__} -> pydense.nn.{type(m).__name__}",
                True, tuple(dict.fromkeys(f"{op} -> {b}" for op, _, b, _, _ in resolved)),
                _how(resolved) if resolved else "patched (not run by this input)"))
            continue
        pd, reason = _module_reason(m, kind, ops, predicate)
        module_entries.append(ExplainEntry("module", name, type(m).__name__, pd, (), reason))
    return Explanation(module_entries + entries, backend)
