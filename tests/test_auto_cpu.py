"""``backend="auto"`` on CPU: the committed table (pydense/_tuned.py, written by
``python -m benchmarks.tune --cpu`` from benchmarks/results/cpu-x86_64) keeps pydense's CPU kernel
only where it is never more than 10% slower than ATen; elsewhere the public function calls the
stock PyTorch op itself ("aten"), so the result, its autograd graph and its speed are stock's."""
import pytest
import torch
import torch.nn.functional as F

import pydense
import pydense.functional as PF
from pydense import _backend, _tuned
from pydense.ops import registry
from pydense.ops.bilinear_deconv import weight as deconv_weight

from helpers import check_compile_fullgraph

CPU = torch.device("cpu")


def choices(entry):
    return set(entry.values()) if isinstance(entry, dict) else {entry}


@pytest.mark.parametrize("op", sorted(registry.OPS))
def test_table_entries_are_valid(op):
    """Every CPU entry is a backend or a {class: backend} table with a "*" default; "aten" only
    for ops whose public function has the stock path; a measured choice has its evidence."""
    entry = _tuned.AUTO_BACKEND[op]["cpu"]
    if isinstance(entry, dict):
        assert "*" in entry
    assert choices(entry) <= {"cpu", "aten", "torch"}
    if "aten" in choices(entry):
        assert registry.OPS[op].aten, f"{op}: 'aten' without a stock path in its public function"
        assert op in _tuned.EVIDENCE["cpu"], f"{op}: a CPU choice without its measurement"


@pytest.mark.parametrize("op", sorted(registry.OPS))
def test_auto_follows_the_table(op):
    """auto resolves to the table's choice; where the stock op cannot run the arguments
    (shape_class=None: compact indices) never to "aten"."""
    entry = _tuned.AUTO_BACKEND[op]["cpu"]
    want = entry["*"] if isinstance(entry, dict) else entry
    if want == "cpu" and not pydense.extension_available():
        want = "torch"
    assert _backend.resolve("auto", CPU, op) == want
    assert _backend.resolve("auto", CPU, op, shape_class=None) != "aten"


def test_auto_choice_reads_classes():
    table = {"cuda": "triton", "cpu": {"depthwise": "aten", "*": "cpu"}}
    saved = _tuned.AUTO_BACKEND["conv2d"]
    try:
        _tuned.AUTO_BACKEND["conv2d"] = table
        assert _backend.resolve("auto", CPU, "conv2d", shape_class="depthwise") == "aten"
        assert _backend.resolve("auto", CPU, "conv2d", shape_class="dense") == "cpu"
        # the stock function cannot run these arguments: the compiled kernels instead
        _tuned.AUTO_BACKEND["conv2d"] = {"cuda": "triton", "cpu": "aten"}
        assert _backend.resolve("auto", CPU, "conv2d", shape_class=None) == "cpu"
        # an explicit backend is never replaced
        assert _backend.resolve("cpu", CPU, "conv2d", shape_class="depthwise") == "cpu"
        assert _backend.resolve("torch", CPU, "conv2d") == "torch"
    finally:
        _tuned.AUTO_BACKEND["conv2d"] = saved


def _x(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64)


# (op key, pydense call, the stock call): the same arguments
CASES = {
    "conv2d-dense": ("conv2d", lambda x, w: PF.conv2d(x, w, padding=2, dilation=2),
                     lambda x, w: F.conv2d(x, w, padding=2, dilation=2), ((1, 4, 9, 8), (6, 4, 3, 3))),
    "conv2d-depthwise": ("conv2d", lambda x, w: PF.conv2d(x, w, padding=1, groups=4),
                         lambda x, w: F.conv2d(x, w, padding=1, groups=4), ((2, 4, 7, 6), (4, 1, 3, 3))),
    "conv2d_fused": ("conv2d_fused",
                     lambda x, w: PF.conv2d_fused(x, w, padding=1, activation="relu", scale=0.5,
                                                  residual=x[:, :4]),
                     lambda x, w: F.conv2d(x, w, padding=1).relu() * 0.5 + x[:, :4],
                     ((1, 4, 6, 5), (4, 4, 3, 3))),
    "conv2d_pixel_shuffle": ("conv2d_pixel_shuffle", lambda x, w: PF.conv2d_pixel_shuffle(x, w, None, 2),
                             lambda x, w: F.pixel_shuffle(F.conv2d(x, w, padding=1), 2),
                             ((1, 3, 5, 6), (8, 3, 3, 3))),
    "conv_transpose2d": ("conv_transpose2d", lambda x, w: PF.conv_transpose2d(x, w, stride=2, padding=1),
                         lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1),
                         ((1, 3, 5, 4), (3, 2, 4, 4))),
    "interpolate": ("upsample_bilinear2d",
                    lambda x: PF.interpolate(x, scale_factor=2.5, mode="bilinear", align_corners=True),
                    lambda x: F.interpolate(x, scale_factor=2.5, mode="bilinear", align_corners=True),
                    ((2, 3, 5, 7),)),
    "pixel_shuffle": ("pixel_shuffle", lambda x: PF.pixel_shuffle(x, 2), lambda x: F.pixel_shuffle(x, 2),
                      ((1, 8, 3, 5),)),
    "pixel_unshuffle": ("pixel_unshuffle", lambda x: PF.pixel_unshuffle(x, 2),
                        lambda x: F.pixel_unshuffle(x, 2), ((1, 2, 4, 6),)),
    "max_pool2d": ("max_pool2d", lambda x: PF.max_pool2d_with_indices(x, 3, 2, 1)[0],
                   lambda x: F.max_pool2d(x, 3, 2, 1), ((1, 3, 9, 8),)),
    "upsample_concat": ("upsample_concat", lambda x, s: PF.upsample_concat(x, s),
                        lambda x, s: torch.cat([F.interpolate(x, size=s.shape[-2:], mode="bilinear"), s], 1),
                        ((1, 3, 4, 5), (1, 2, 8, 10))),
    "bilinear_deconv2d": ("bilinear_deconv2d", lambda x: PF.bilinear_deconv2d(x, 4, crop=3),
                          lambda x: F.conv_transpose2d(x, deconv_weight(2, 4, x.dtype, x.device),
                                                       stride=4)[..., 3:, 3:],
                          ((1, 2, 4, 5),)),
    "fcn_skip": ("fcn_skip", lambda c, s: PF.fcn_skip(c, s, offset=(1, 2)),
                 lambda c, s: F.conv_transpose2d(c, deconv_weight(3, 2, c.dtype, c.device), stride=2)
                 + s[..., 1:1 + 10, 2:2 + 12],
                 ((1, 3, 4, 5), (1, 3, 12, 15))),
}


def pydense_nodes(t):
    """The names of the pydense custom ops' nodes in ``t``'s autograd graph."""
    seen, todo, found = set(), [t.grad_fn], set()
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if "pydense" in node.name():
            found.add(node.name())
        todo += [n for n, _ in node.next_functions]
    return found


def _force(monkeypatch, op, choice):
    monkeypatch.setitem(_tuned.AUTO_BACKEND, op, {"cuda": "triton", "cpu": choice})


@pytest.mark.parametrize("name", sorted(CASES))
def test_aten_choice_is_the_stock_op(name, monkeypatch):
    """With "aten" in the table, auto runs the stock op: bit-identical output and gradients, and
    no pydense custom op in the autograd graph; with "cpu" it runs pydense's kernel, within
    the oracle's tolerance of the same numbers."""
    op, ours, stock, shapes = CASES[name]
    inputs = [_x(*s, seed=i).requires_grad_() for i, s in enumerate(shapes)]
    want = stock(*inputs)
    want_grads = torch.autograd.grad(want.sum(), inputs)
    _force(monkeypatch, op, "aten")
    got = ours(*inputs)
    assert torch.equal(got, want) and not pydense_nodes(got)
    for g, w in zip(torch.autograd.grad(got.sum(), inputs), want_grads):
        assert torch.equal(g, w)
    _force(monkeypatch, op, "cpu")
    got = ours(*inputs)
    torch.testing.assert_close(got, want)
    assert pydense_nodes(got)


def test_compact_and_other_indices_stay_on_pydense(monkeypatch):
    """Arguments the stock op cannot take (uint8 compact indices) run on pydense's kernel even
    where the table says "aten"."""
    _force(monkeypatch, "max_pool2d", "aten")
    _force(monkeypatch, "max_unpool2d", "aten")
    x = _x(1, 2, 8, 8)
    out, idx = PF.max_pool2d_with_indices(x, 2, compact=True)
    assert idx.dtype == torch.uint8
    up = PF.max_unpool2d(out, idx, 2, output_size=(8, 8))
    ref_out, ref_idx = F.max_pool2d(x, 2, return_indices=True)
    assert torch.equal(out, ref_out)
    assert torch.equal(up, F.max_unpool2d(ref_out, ref_idx, 2, output_size=(8, 8)))
    flat = PF.max_unpool2d(ref_out, ref_idx, 2, output_size=(8, 8))  # int64: the stock op
    assert torch.equal(flat, F.max_unpool2d(ref_out, ref_idx, 2, output_size=(8, 8)))


def test_aten_choice_under_enabled_and_compile(monkeypatch):
    """A model under pydense.enabled() whose routed calls resolve to "aten" runs the stock ops (no
    recursion into the mode) and compiles with fullgraph=True."""
    _force(monkeypatch, "conv2d", "aten")
    _force(monkeypatch, "upsample_bilinear2d", "aten")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=2, dilation=2),
                                torch.nn.Upsample(scale_factor=2, mode="bilinear")).double()
    x = _x(1, 3, 6, 7)
    with pydense.enabled():
        y = model(x)
    assert torch.equal(y, model(x))
    patched = pydense.patch(torch.nn.Sequential(*model))
    check_compile_fullgraph(patched, x.requires_grad_())


def test_stock_path_keeps_the_documented_behaviour(monkeypatch):
    """Where auto calls the stock op, pydense's documented contract still holds: out-of-range
    indices raise IndexError naming ``indices``; overlapping unpool windows (repeated indices:
    the later input element wins) and empty pixel_unshuffle inputs (a torch bug) stay on
    pydense's kernels."""
    _force(monkeypatch, "max_unpool2d", "aten")
    _force(monkeypatch, "pixel_unshuffle", "aten")
    y = _x(1, 1, 2, 2)
    with pytest.raises(IndexError, match="indices"):
        PF.max_unpool2d(y, torch.tensor([[[[0, 1], [2, 99]]]]), 2)
    idx = torch.tensor([[[[5, 5], [5, 5]]]])  # k=3, s=1: windows overlap, one target
    out = PF.max_unpool2d(y, idx, 3, stride=1)
    assert out.flatten()[5] == y.flatten()[-1] and pydense_nodes(
        PF.max_unpool2d(y.requires_grad_(), idx, 3, stride=1))
    empty = PF.pixel_unshuffle(torch.empty(0, 1, 2, 2), 2)
    assert empty.shape == (0, 4, 1, 1)
