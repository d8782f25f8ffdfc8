"""max_pool2d_with_indices (int64 flat and uint8 compact indices) on every backend against the
float64 oracle (pydense.reference) and ATen; max_unpool2d consuming compact indices.

CPU rows run the C++ CPU kernels, the Triton kernels through the interpreter and stock torch;
CUDA rows run the CUDA C++ kernels, compiled Triton and stock torch (skipped without a GPU).
"""
import pytest
import torch
import torch.nn.functional as F

import pydense
from pydense import reference
from pydense.ops import max_pool as ops
from pydense.ops import max_unpool as unpool_ops

from helpers import (check_gradient_penalty, DTYPES, LAYOUTS, backend_params, check_compile_fullgraph, requires_cuda,
                      to)

BACKENDS = backend_params()

# (N, C, H, W, kernel, stride, padding, dilation, ceil_mode)
CONFIGS = {
    "segnet-ceil": (2, 3, 9, 11, 2, 2, 0, 1, True),          # SegNet: 2x2 s2, odd sizes rounded up
    "k3s2p1": (1, 2, 10, 13, 3, 2, 1, 1, False),             # overlapping windows, padding
    "k3s1d2": (1, 2, 9, 8, 3, 1, 1, 2, False),               # dilation, heavy overlap
    "rect": (2, 2, 7, 12, (2, 3), (1, 2), (1, 1), 1, True),  # non-square window, stride < kernel
    "k3s3p1-ceil": (1, 3, 8, 7, 3, 3, 1, 1, True),           # kernel == stride with padding
}


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def pool_input(cfg, seed=0, ties=True):
    """float64 input with many ties (small integers) so the tie rule matters."""
    n, c, h, w = cfg[:4]
    g = torch.Generator().manual_seed(seed)
    if ties:
        return torch.randint(-3, 4, (n, c, h, w), generator=g).double()
    return torch.randn(n, c, h, w, generator=g, dtype=torch.float64)


def window(cfg):
    return tuple(pair(v) for v in cfg[4:8])


def tolerance(dtype):
    return {torch.float16: 2e-3, torch.bfloat16: 1.6e-2}.get(dtype, 1e-6)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES + [torch.float64], ids=str)
@pytest.mark.parametrize("lay", LAYOUTS)
@pytest.mark.parametrize("compact", [False, True], ids=["int64", "compact"])
@pytest.mark.parametrize("cfg", CONFIGS.values(), ids=CONFIGS.keys())
def test_forward_backward_match_oracle(device, backend, dtype, lay, compact, cfg):
    k, s, p, d = window(cfg)
    ceil = cfg[8]
    x = pool_input(cfg, seed=1)
    xd = to(x, device, dtype, lay).requires_grad_()
    out, idx = pydense.functional.max_pool2d_with_indices(xd, k, s, p, d, ceil, compact=compact,
                                                          backend=backend)
    ref, ref_flat, ref_compact = reference.max_pool2d_with_indices(x.to(dtype).double(), k, s, p, d, ceil)
    assert out.dtype == dtype and out.shape == ref.shape
    assert idx.dtype == (torch.uint8 if compact else torch.int64)
    assert torch.equal(out.double().cpu(), ref)  # max only moves values: exact
    assert torch.equal(idx.long().cpu(), ref_compact if compact else ref_flat)
    fmt = torch.channels_last if lay == "channels_last" else torch.contiguous_format
    assert out.is_contiguous(memory_format=fmt) and idx.is_contiguous(memory_format=fmt)
    g = torch.randn(ref.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    out.backward(to(g, device, dtype, lay))
    expected = reference.max_pool2d_backward(g.to(dtype).double(), ref_flat, x.shape[-2:])
    assert xd.grad.dtype == dtype
    if lay != "strided":
        assert xd.grad.is_contiguous(memory_format=fmt)
    tol = tolerance(dtype)
    torch.testing.assert_close(xd.grad.double().cpu(), expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("lay", ["nchw", "channels_last"])
def test_matches_aten_ties_nan_and_inf(device, backend, lay):
    """Bitwise ATen's values and indices, with ties, NaN (the last NaN wins) and all -inf windows
    (index of the first in-bounds tap), padded and ceil_mode windows."""
    x = torch.randint(0, 3, (2, 3, 9, 10), generator=torch.Generator().manual_seed(3)).float()
    x[0, 0, 0:2, 0:2] = float("nan")
    x[0, 1, 2, 3] = float("nan")
    x[1, 0, :4, :4] = float("-inf")
    x[1, 2, 5, 5] = float("inf")
    for k, s, p, ceil in ((2, 2, 0, True), (3, 2, 1, True), (3, 1, 1, False)):
        ref_out, ref_idx = F.max_pool2d(x, k, s, p, ceil_mode=ceil, return_indices=True)
        for compact in (False, True):
            out, idx = pydense.functional.max_pool2d_with_indices(
                to(x, device, lay=lay), k, s, p, ceil_mode=ceil, compact=compact, backend=backend)
            assert torch.equal(out.cpu().isnan(), ref_out.isnan())
            assert torch.equal(out.cpu().nan_to_num(), ref_out.nan_to_num())
            want = ops.flat_to_compact(ref_idx, x.shape[-1], ref_out.shape[-2:], (k, k), (s, s),
                                       (p, p), (1, 1)) if compact else ref_idx
            assert torch.equal(idx.cpu(), want)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_gradcheck(device, backend):
    x = pool_input(CONFIGS["k3s2p1"], seed=4, ties=False).to(device).requires_grad_()
    for compact in (False, True):
        fn = lambda t: pydense.functional.max_pool2d_with_indices(  # noqa: E731
            t, 3, 2, 1, compact=compact, backend=backend)[0]
        assert torch.autograd.gradcheck(fn, (x,))


@pytest.mark.parametrize("device,backend", [p for p in BACKENDS if "torch" not in p.id])
def test_backward_deterministic_with_overlap(device, backend):
    """Overlapping windows and ties (every window picks the same element): 5 runs bitwise equal."""
    x = torch.zeros(1, 2, 7, 7, device=device, requires_grad=True)
    g = torch.randn(1, 2, 5, 5, generator=torch.Generator().manual_seed(5)).to(device)
    runs = []
    for _ in range(5):
        out, _ = pydense.functional.max_pool2d_with_indices(x, 3, 1, backend=backend)
        (gx,) = torch.autograd.grad(out, x, g)
        runs.append(gx)
    assert all(torch.equal(r, runs[0]) for r in runs)
    # all ties: every window takes its first tap
    expected = reference.max_pool2d_backward(g.double().cpu(), reference.max_pool2d_with_indices(
        x.detach().double().cpu(), (3, 3), (1, 1))[1], (7, 7))
    torch.testing.assert_close(runs[0].double().cpu(), expected)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_3d_input(device, backend):
    x = pool_input(CONFIGS["segnet-ceil"], seed=6)[0]
    out, idx = pydense.functional.max_pool2d_with_indices(x.to(device), 2, ceil_mode=True,
                                                          compact=True, backend=backend)
    ref, _, ref_compact = reference.max_pool2d_with_indices(x[None], (2, 2), (2, 2), ceil_mode=True)
    assert out.shape == (3, 5, 6) and torch.equal(out.cpu(), ref[0])
    assert torch.equal(idx.long().cpu(), ref_compact[0])


# ------------------------------------------------------------ max_unpool2d with compact indices

@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("lay", LAYOUTS)
@pytest.mark.parametrize("cfg", CONFIGS.values(), ids=CONFIGS.keys())
def test_unpool_compact_equals_flat(device, backend, dtype, lay, cfg):
    """Unpooling compact offsets gives the oracle's unpooling of the int64 indices, forward and
    backward (overlapping windows: duplicates resolved as for flat indices)."""
    k, s, p, d = window(cfg)
    x = pool_input(cfg, seed=7, ties=False)
    y, flat, compact = reference.max_pool2d_with_indices(x, k, s, p, d, cfg[8])
    out_hw = tuple(x.shape[-2:])
    yd = to(y, device, dtype, lay).requires_grad_()
    cd = to(compact.to(torch.uint8), device, lay=lay)
    out = pydense.functional.max_unpool2d(yd, cd, k, s, p, out_hw, dilation=d, backend=backend)
    expected = reference.max_unpool2d(y.to(dtype).double(), flat, out_hw)
    assert out.dtype == dtype and torch.equal(out.double().cpu(), expected)
    g = torch.randn(expected.shape, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    out.backward(to(g, device, dtype, lay))
    assert torch.equal(yd.grad.double().cpu(), reference.max_unpool2d_backward(g.to(dtype).double(), flat))


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("lay", ["nchw", "channels_last"])
def test_pool_unpool_compact_roundtrip_gradients(device, backend, lay):
    """pool(compact) -> unpool equals pool(int64) -> unpool in values and input gradients."""
    x = pool_input(CONFIGS["segnet-ceil"], seed=9, ties=False)
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    results = []
    for compact in (False, True):
        xd = to(x, device, lay=lay).requires_grad_()
        y, idx = pydense.functional.max_pool2d_with_indices(xd, 2, 2, ceil_mode=True, compact=compact,
                                                            backend=backend)
        up = pydense.functional.max_unpool2d(y, idx, 2, 2, output_size=x.shape[-2:], backend=backend)
        up.backward(to(g, device, lay=lay))
        results.append((up.detach().cpu(), xd.grad.cpu()))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])
    # x -> pool -> unpool keeps exactly the maxima, with gradient g at them
    keep = results[0][0] != 0
    assert torch.equal(results[0][1], torch.where(keep, g, 0))


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_unpool_compact_bad_offsets_raise(device, backend):
    y, _, compact = reference.max_pool2d_with_indices(pool_input(CONFIGS["segnet-ceil"]), (2, 2),
                                                       (2, 2), ceil_mode=True)
    idx = compact.to(torch.uint8)
    idx[0, 1, 4, 5] = 3   # last (ceil) window: its tap (9, 11) lies outside the 9x11 plane
    with pytest.raises(IndexError, match="compact indices must be window offsets"):
        pydense.functional.max_unpool2d(y.to(device), idx.to(device), 2, output_size=(9, 11),
                                        backend=backend, check_indices=True)
    idx[0, 1, 4, 5] = 0
    idx[1, 0, 0, 0] = 4   # >= KH * KW
    with pytest.raises(IndexError, match="compact indices must be window offsets"):
        pydense.functional.max_unpool2d(y.to(device), idx.to(device), 2, output_size=(9, 11),
                                        backend=backend, check_indices=True)
    with pytest.raises(IndexError, match="compact indices must be window offsets"):
        unpool_ops.max_unpool2d_backward_op(torch.ones(2, 3, 9, 11, device=device, dtype=y.dtype),
                                         idx.to(device), [2, 2], [2, 2], [0, 0], [1, 1], backend, True)


@pytest.mark.parametrize("device,backend", [p for p in BACKENDS if p.id.split("-")[1] in ("triton", "cuda")])
def test_unpool_unchecked_bad_compact_offsets_are_dropped(device, backend):
    y, flat, compact = reference.max_pool2d_with_indices(pool_input(CONFIGS["segnet-ceil"], ties=False),
                                                          (2, 2), (2, 2), ceil_mode=True)
    idx = compact.to(torch.uint8)
    idx[0, 1, 4, 5], idx[1, 0, 0, 0] = 3, 200
    keep = torch.ones_like(flat, dtype=torch.bool)
    keep[0, 1, 4, 5] = keep[1, 0, 0, 0] = False
    out = pydense.functional.max_unpool2d(y.to(device), idx.to(device), 2, output_size=(9, 11),
                                          backend=backend, check_indices=False)
    assert torch.equal(out.cpu(), reference.max_unpool2d(torch.where(keep, y, 0), flat, (9, 11)))


# ----------------------------------------------------------------------------------- bad input

BAD = {
    "int-input": (lambda x: ((x.long(), 2), {}), TypeError, "input dtype"),
    "2d-input": (lambda x: ((x[0, 0], 2), {}), ValueError, "input must be 3-D"),
    "zero-kernel": (lambda x: ((x, 0), {}), ValueError, "kernel_size must be positive"),
    "float-kernel": (lambda x: ((x, 2.0), {}), TypeError, "kernel_size must be an int"),
    "zero-stride": (lambda x: ((x, 2, 0), {}), ValueError, "stride must be positive"),
    "big-padding": (lambda x: ((x, 2, 2, 2), {}), ValueError, "padding must be non-negative and at most half"),
    "zero-dilation": (lambda x: ((x, 2, 2, 0, 0), {}), ValueError, "dilation must be positive"),
    "ceil-not-bool": (lambda x: ((x, 2), {"ceil_mode": 1}), TypeError, "ceil_mode must be a bool"),
    "compact-17x17": (lambda x: ((x, 17, 1, 8), {"compact": True}), ValueError, "kernel_size\\[0\\] \\* kernel_size\\[1\\] <= 256"),
    "too-small": (lambda x: ((x[..., :2, :2], 3), {}), ValueError, "output size must be positive"),
    "bad-backend": (lambda x: ((x, 2), {"backend": "cudnn"}), ValueError, "backend must be one of"),
}


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("case", BAD.values(), ids=BAD.keys())
def test_bad_arguments(device, backend, case):
    make, exc, message = case
    args, kwargs = make(torch.randn(1, 2, 8, 8, device=device))
    with pytest.raises(exc, match=message):
        pydense.functional.max_pool2d_with_indices(*args, **{"backend": backend, **kwargs})


def test_unpool_dilation_sets_default_size_and_rejects_big_compact_windows():
    x = torch.randn(1, 2, 9, 8, dtype=torch.float64)
    y, idx = F.max_pool2d(x, 3, 1, 1, dilation=2, return_indices=True)
    _, _, compact = reference.max_pool2d_with_indices(x, (3, 3), (1, 1), (1, 1), (2, 2))
    flat_up = pydense.functional.max_unpool2d(y, idx, 3, 1, 1, dilation=2, backend="cpu")
    compact_up = pydense.functional.max_unpool2d(y, compact.to(torch.uint8), 3, 1, 1, dilation=2,
                                                 backend="cpu")
    assert flat_up.shape == (1, 2, 9, 8)
    assert torch.equal(flat_up, reference.max_unpool2d(y, idx, (9, 8)))
    assert torch.equal(compact_up, flat_up)
    with pytest.raises(ValueError, match="<= 256"):
        pydense.functional.max_unpool2d(y, idx.to(torch.uint8), 17, 2, output_size=(20, 20))
    with pytest.raises(TypeError, match="int64 .* or uint8"):
        pydense.functional.max_unpool2d(y, idx.int(), 2)


# An empty H x W plane raises as in ATen's pooling and unpooling, also with a zero batch (3-D
# input: C, H, W); zero channels give an empty result (the documented difference).
EMPTY_PLANES = [(0, 1, 0, 1), (0, 2, 3, 0), (2, 1, 0, 4), (1, 0), (3, 0, 2)]


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("shape", EMPTY_PLANES, ids=str)
def test_empty_plane_raises_like_aten(device, backend, shape):
    shape = (shape[0], 2, 0, 5) if len(shape) == 2 else shape
    x = torch.zeros(shape, device=device)
    idx = torch.zeros(shape, dtype=torch.int64, device=device)
    with pytest.raises(RuntimeError):  # ATen raises for every one of these
        F.max_pool2d(x, 2, padding=1, return_indices=True)
    with pytest.raises(RuntimeError):
        F.max_unpool2d(x, idx, 2)
    with pytest.raises(ValueError, match="input has an empty spatial plane"):
        pydense.functional.max_pool2d_with_indices(x, 2, padding=1, backend=backend)
    with pytest.raises(ValueError, match="input has an empty spatial plane"):
        pydense.functional.max_unpool2d(x, idx, 2, output_size=(2, 2), backend=backend)


@pytest.mark.parametrize("device,backend", [p for p in BACKENDS if "torch" not in p.id])
def test_zero_channels_give_empty_result(device, backend):  # backend="torch" is ATen: it raises
    x = torch.zeros(2, 0, 0, 3, device=device)
    y, idx = pydense.functional.max_pool2d_with_indices(x, 2, padding=1, backend=backend)
    assert y.shape == idx.shape == (2, 0, 1, 2)
    up = pydense.functional.max_unpool2d(y, idx, 2, output_size=(2, 4), backend=backend)
    assert up.shape == (2, 0, 2, 4)


def test_compiled_ops_check_their_arguments():
    x = torch.randn(1, 2, 8, 8)
    out = torch.empty(1, 2, 4, 4)
    with pytest.raises(RuntimeError, match="indices must be int64 \\(flat\\) or uint8"):
        torch.ops.pydense._max_pool2d_fwd(x, [2, 2], [2, 2], [0, 0], [1, 1], out,
                                          torch.empty(1, 2, 4, 4, dtype=torch.int32))
    with pytest.raises(RuntimeError, match="<= 256"):
        torch.ops.pydense._max_pool2d_fwd(x, [17, 17], [2, 2], [0, 0], [1, 1], out,
                                          torch.empty(1, 2, 4, 4, dtype=torch.uint8))


# --------------------------------------------------------------- torch.library / compile / nn

@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("lay", ["nchw", "channels_last"])
@pytest.mark.parametrize("compact", [False, True], ids=["int64", "compact"])
def test_opcheck(device, backend, lay, compact):
    x = to(pool_input(CONFIGS["k3s2p1"], seed=11, ties=False), device, torch.float32, lay).requires_grad_()
    args = (x, [3, 3], [2, 2], [1, 1], [1, 1], True, compact, backend)
    torch.library.opcheck(ops.max_pool2d_with_indices_op, args)
    out, idx = ops.max_pool2d_with_indices_op(*args)
    g = torch.randn_like(out)
    torch.library.opcheck(ops.max_pool2d_backward_op, (g, idx, [10, 13], [3, 3], [2, 2], [1, 1], [1, 1],
                                                    lay == "channels_last", backend))


class PoolUnpool(torch.nn.Module):
    """A SegNet stage in miniature: conv, pool with compact indices, unpool, conv."""

    def __init__(self, backend):
        super().__init__()
        self.enc = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.pool = pydense.nn.MaxPool2d(2, 2, return_indices=True, ceil_mode=True, compact=True,
                                         backend=backend)
        self.unpool = pydense.nn.MaxUnpool2d(2, 2, backend=backend)
        self.dec = torch.nn.Conv2d(4, 2, 3, padding=1)

    def forward(self, x):
        y = self.enc(x)
        p, idx = self.pool(y)
        return self.dec(self.unpool(p, idx, output_size=y.shape[-2:]))


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_compile_fullgraph_no_graph_breaks(device, backend):
    torch.manual_seed(0)
    model = PoolUnpool(backend).to(device)
    x = torch.randn(2, 3, 9, 11, device=device, requires_grad=True)
    check_compile_fullgraph(model, x)


def test_nn_module_is_a_drop_in():
    m = pydense.nn.MaxPool2d(3, 2, 1, return_indices=True, ceil_mode=True, backend="cpu")
    assert isinstance(m, torch.nn.MaxPool2d) and "compact=False" in repr(m)
    x = torch.randn(2, 3, 9, 11)
    out, idx = m(x)
    ref_out, ref_idx = torch.nn.MaxPool2d(3, 2, 1, return_indices=True, ceil_mode=True)(x)
    assert torch.equal(out, ref_out) and torch.equal(idx, ref_idx)
    assert torch.equal(pydense.nn.MaxPool2d(2, backend="cpu")(x), F.max_pool2d(x, 2))


@pytest.mark.parametrize("device,backend", [p for p in BACKENDS if p.id.endswith("-triton")])
def test_triton_int64_index_path(device, backend, monkeypatch):
    """The int64 index variants (used when a tensor spans 2^30 elements) on small tensors."""
    from pydense.kernels import max_pool as kernels
    from pydense.kernels import max_unpool as unpool_kernels

    monkeypatch.setattr(kernels, "_needs_int64", lambda *tensors: True)
    monkeypatch.setattr(unpool_kernels, "_needs_int64", lambda *tensors: True)
    x = pool_input(CONFIGS["k3s2p1"], seed=12, ties=False)
    ref, flat, compact = reference.max_pool2d_with_indices(x, (3, 3), (2, 2), (1, 1))
    g = torch.randn(ref.shape, dtype=torch.float64)
    for lay in ("nchw", "channels_last"):
        for cp in (False, True):
            xd = to(x, device, lay=lay).requires_grad_()
            out, idx = pydense.functional.max_pool2d_with_indices(xd, 3, 2, 1, compact=cp, backend=backend)
            assert torch.equal(out.cpu(), ref) and torch.equal(idx.long().cpu(), compact if cp else flat)
            out.backward(to(g, device, lay=lay))
            torch.testing.assert_close(xd.grad.cpu(), reference.max_pool2d_backward(g, flat, (10, 13)))
            up = pydense.functional.max_unpool2d(out.detach(), idx, 3, 2, 1, output_size=(10, 13),
                                                 backend=backend)
            assert torch.equal(up.cpu(), reference.max_unpool2d(ref, flat, (10, 13)))


@requires_cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_cuda_segnet_shape_matches_aten(backend):
    x = torch.randn(2, 64, 45, 60, device="cuda", dtype=torch.bfloat16).contiguous(
        memory_format=torch.channels_last)
    ref_out, ref_idx = F.max_pool2d(x.float(), 2, 2, ceil_mode=True, return_indices=True)
    out, idx = pydense.functional.max_pool2d_with_indices(x, 2, 2, ceil_mode=True, backend=backend)
    assert torch.equal(out.float(), ref_out) and torch.equal(idx, ref_idx)


# --------------------------------------------------------------- double backward

# (config, compact indices, layout)
DOUBLE_CASES = {
    "segnet-ceil-int64": ((1, 2, 5, 7, 2, 2, 0, 1, True), False, "nchw"),
    "k3s2p1-compact-cl": ((1, 2, 7, 6, 3, 2, 1, 1, False), True, "channels_last"),
    "k3s1d2-int64-cl": ((1, 2, 7, 6, 3, 1, 1, 2, False), False, "channels_last"),
    "rect-compact": ((1, 2, 6, 7, (2, 3), (1, 2), (1, 1), 1, True), True, "nchw"),
}


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("case", DOUBLE_CASES.values(), ids=DOUBLE_CASES.keys())
def test_double_backward_gradgradcheck(device, backend, case):
    """Second derivatives (gradient penalties, create_graph=True): the backward op has autograd of
    its own (max_unpool2d's backward op: the adjoint gather at the indices), checked by
    gradgradcheck in fp64 and against PyTorch's double backward."""
    cfg, compact, lay = case
    k, s, p, d = window(cfg)
    ceil = cfg[8]
    x = pool_input(cfg, seed=21, ties=False)  # no ties: eps steps keep every argmax
    xd = to(x, device, lay=lay).requires_grad_()
    fn = lambda t: pydense.functional.max_pool2d_with_indices(  # noqa: E731
        t, k, s, p, d, ceil, compact=compact, backend=backend)[0]
    # fast_mode: random projections instead of full Jacobians (the interpreter runs few calls)
    assert torch.autograd.gradgradcheck(fn, (xd,), fast_mode=True)
    # a gradient penalty: d/dx |dL/dx|^2 through create_graph, against stock torch (CPU, fp64)
    out = fn(xd)
    m = torch.randn(out.shape, generator=torch.Generator().manual_seed(22), dtype=torch.float64)
    check_gradient_penalty(fn, (xd,), lambda t: F.max_pool2d(t, k, s, p, d, ceil_mode=ceil),
                           (x.clone().requires_grad_(),), m)
    # the backward op itself: schema, fake kernel and autograd registration
    _, idx = ops.max_pool2d_with_indices_op(xd, list(k), list(s), list(p), list(d), ceil, compact, backend)
    g = to(m, device, lay=lay).requires_grad_()
    torch.library.opcheck(ops.max_pool2d_backward_op, (g, idx, list(x.shape[-2:]), list(k), list(s),
                                                    list(p), list(d), lay == "channels_last", backend))
