"""max_unpool2d on every backend against the float64 oracle (pydense.reference).

CPU rows run the C++ CPU kernels, the Triton kernels through the interpreter and stock torch;
CUDA rows run the CUDA C++ kernels, compiled Triton and stock torch (skipped without a GPU).
"""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import pydense
from pydense import reference
from pydense.ops import max_unpool as ops

from helpers import check_compile_fullgraph, CPU_BACKENDS, DTYPES, LAYOUTS, backend_params, layout, requires_cuda, to

BACKENDS = backend_params()

# (N, C, H, W, kernel, stride, padding, ceil_mode): the unpooled size is (H, W).
CONFIGS = {
    "segnet-ceil": (2, 3, 9, 11, 2, 2, 0, True),      # gather path, odd sizes
    "square": (1, 2, 8, 8, 2, 2, 0, False),            # gather path, default output size
    "k3s3p1": (2, 2, 9, 7, 3, 3, 1, False),            # gather path with padding
    "rect": (1, 3, 12, 10, (2, 3), (2, 3), 0, False),  # gather path, non-square window
    "k3s2p1": (2, 3, 10, 13, 3, 2, 1, False),          # scatter path, overlapping windows
    "k2s1": (1, 2, 7, 9, 2, 1, 0, False),              # scatter path, stride < kernel
}


def pooled_case(cfg, seed=0):
    """(pooled values, indices, (H, W)) in float64 on CPU, from a real max_pool2d."""
    n, c, h, w, k, s, p, ceil = cfg
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    y, idx = F.max_pool2d(x, k, s, p, ceil_mode=ceil, return_indices=True)
    return y, idx, (h, w)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("lay", LAYOUTS)
@pytest.mark.parametrize("cfg", CONFIGS.values(), ids=CONFIGS.keys())
def test_forward_backward_match_oracle(device, backend, dtype, lay, cfg):
    y, idx, out_hw = pooled_case(cfg)
    k, s, p = cfg[4:7]
    yd = to(y, device, dtype, lay).requires_grad_()
    idxd = to(idx, device, lay=lay)
    out = pydense.functional.max_unpool2d(yd, idxd, k, s, p, out_hw, backend=backend)
    # The oracle runs on the same (rounded) values in float64: unpooling only moves values.
    expected = reference.max_unpool2d(y.to(dtype).double(), idx, out_hw)
    assert out.dtype == dtype and out.shape == expected.shape
    assert torch.equal(out.double().cpu(), expected)
    if lay == "channels_last":
        assert out.is_contiguous(memory_format=torch.channels_last)
    else:
        assert out.is_contiguous()
    g = torch.randn(expected.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out.backward(to(g, device, dtype, lay))
    expected_grad = reference.max_unpool2d_backward(g.to(dtype).double(), idx)
    assert yd.grad.dtype == dtype
    assert torch.equal(yd.grad.double().cpu(), expected_grad)


def random_indices(n, c, h, w, out_hw, seed, low=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(low, out_hw[0] * out_hw[1], (n, c, h, w), generator=g)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("lay", LAYOUTS)
@pytest.mark.parametrize("kernel", [2, 3], ids=["k2s2", "k3s2"])
def test_arbitrary_indices_scatter_semantics(device, backend, lay, kernel):
    """Indices anywhere in the plane (outside their window, duplicated): the later element wins."""
    if backend == "torch" and (device == "cuda" or lay != "nchw"):
        pytest.skip("stock torch resolves duplicates by thread/memory order there")
    n, c, h, w, out_hw = 2, 3, 5, 6, (10, 12)
    y = torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    idx = random_indices(n, c, h, w, out_hw, seed=3)
    idx[1, 2] = torch.arange(h * w).view(h, w) * 4  # one plane in its own order, others random
    out = pydense.functional.max_unpool2d(to(y, device, lay=lay), to(idx, device, lay=lay), kernel,
                                          2, 0, out_hw, backend=backend)
    expected = reference.max_unpool2d(y, idx, out_hw)
    assert torch.equal(out.cpu(), expected)
    if lay == "nchw" and device == "cpu":  # PyTorch's CPU kernel on contiguous input
        assert torch.equal(out, F.max_unpool2d(y, idx, kernel, 2, 0, out_hw))


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_one_plane_out_of_window(device, backend):
    """A single out-of-window index redoes its plane only; every other plane stays exact."""
    y, idx, out_hw = pooled_case(CONFIGS["segnet-ceil"], seed=4)
    idx[0, 1, 0, 0] = idx[0, 1, 3, 4]  # duplicate of a later element, outside its window
    idx[1, 2, 4, 5] = 0                # the last element points at the first window
    out = pydense.functional.max_unpool2d(to(y, device), to(idx, device), 2, 2, 0, out_hw,
                                          backend=backend)
    assert torch.equal(out.cpu(), reference.max_unpool2d(y, idx, out_hw))


@pytest.mark.parametrize("device,backend", [p for p in BACKENDS if "torch" not in p.id])
def test_duplicates_deterministic(device, backend):
    """All elements of a plane on one target: the last wins; 10 runs are bitwise equal."""
    y = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    idx = torch.full(y.shape, 5, dtype=torch.int64)
    runs = [pydense.functional.max_unpool2d(y.to(device), idx.to(device), 2, backend=backend)
            for _ in range(10)]
    assert all(torch.equal(r, runs[0]) for r in runs)
    out = runs[0].cpu().view(2, 3, -1)
    assert torch.equal(out[..., 5], y.view(2, 3, -1)[..., -1])
    assert out.count_nonzero() == 6


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_gradcheck(device, backend):
    y, idx, out_hw = pooled_case(CONFIGS["k3s3p1"], seed=5)
    yd = y.to(device).requires_grad_()
    idxd = idx.to(device)
    fn = lambda t: pydense.functional.max_unpool2d(t, idxd, 3, 3, 1, out_hw, backend=backend)
    assert torch.autograd.gradcheck(fn, (yd,))


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_3d_input_and_output_size_forms(device, backend):
    y, idx, (h, w) = pooled_case(CONFIGS["segnet-ceil"], seed=6)
    expected = reference.max_unpool2d(y, idx, (h, w))
    for size in [(h, w), [h, w], torch.Size([2, 3, h, w])]:
        out = pydense.functional.max_unpool2d(y.to(device), idx.to(device), 2, output_size=size,
                                              backend=backend)
        assert torch.equal(out.cpu(), expected)
    out3 = pydense.functional.max_unpool2d(y[1].to(device), idx[1].to(device), 2,
                                           output_size=(h, w), backend=backend)
    assert out3.shape == (3, h, w) and torch.equal(out3.cpu(), expected[1])


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("delta", [-1, 0, 1])
def test_output_size_range(device, backend, delta):
    """output_size may differ from the default by less than one stride (in both directions)."""
    y, idx, _ = pooled_case((1, 2, 8, 8, 2, 2, 0, False), seed=7)
    out_hw = (8 + delta, 8 + delta)
    idx = idx.clamp(max=out_hw[0] * out_hw[1] - 1)
    out = pydense.functional.max_unpool2d(y.to(device), idx.to(device), 2, output_size=out_hw,
                                          backend=backend)
    assert torch.equal(out.cpu(), reference.max_unpool2d(y, idx, out_hw))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 2), c=st.integers(1, 3), h=st.integers(2, 11), w=st.integers(2, 11),
       k=st.integers(1, 4), s=st.integers(1, 4), p=st.integers(0, 2), ceil=st.booleans(),
       backend=st.sampled_from([b for b in CPU_BACKENDS if b != "torch"]),
       lay=st.sampled_from(LAYOUTS))
def test_hypothesis_pool_unpool_roundtrip(n, c, h, w, k, s, p, ceil, backend, lay):
    """Any pool configuration: unpooling its indices matches the oracle and stock torch."""
    assume(p <= k // 2 and h + 2 * p >= k and w + 2 * p >= k)  # a valid max_pool2d configuration
    y, idx, out_hw = pooled_case((n, c, h, w, k, s, p, ceil), seed=h * w + k)
    out = pydense.functional.max_unpool2d(layout(y, lay), layout(idx, lay), k, s, p, out_hw,
                                          backend=backend)
    assert torch.equal(out, reference.max_unpool2d(y, idx, out_hw))
    assert torch.equal(out, F.max_unpool2d(y, idx, k, s, p, out_hw))


# ---------------------------------------------------------------------------------- bad input

def _case():
    y, idx, out_hw = pooled_case(CONFIGS["square"], seed=8)
    return y.float(), idx, out_hw


BAD_INPUTS = {
    "int-input": (lambda y, i: (y.long(), i, 2, {}), TypeError, "input dtype"),
    "int32-indices": (lambda y, i: (y, i.int(), 2, {}), TypeError, "indices must be int64"),
    "zero-dilation": (lambda y, i: (y, i.to(torch.uint8), 2, {"dilation": 0}), ValueError, "dilation must be positive"),
    "shape-mismatch": (lambda y, i: (y, i[..., :-1], 2, {}), ValueError, "indices must have the input's shape"),
    "2d-input": (lambda y, i: (y[0, 0], i[0, 0], 2, {}), ValueError, "input must be 3-D"),
    "zero-kernel": (lambda y, i: (y, i, 0, {}), ValueError, "kernel_size must be positive"),
    "negative-stride": (lambda y, i: (y, i, 2, {"stride": -1}), ValueError, "stride must be positive"),
    "negative-padding": (lambda y, i: (y, i, 2, {"padding": -1}), ValueError, "padding must be non-negative"),
    "float-kernel": (lambda y, i: (y, i, 2.0, {}), TypeError, "kernel_size must be an int"),
    "output-too-big": (lambda y, i: (y, i, 2, {"output_size": (10, 8)}), ValueError, "output_size must lie strictly between"),
    "output-too-small": (lambda y, i: (y, i, 2, {"output_size": (8, 6)}), ValueError, "output_size must lie strictly between"),
    "output-3-elements": (lambda y, i: (y, i, 2, {"output_size": (1, 8, 8)}), ValueError, "output_size must have 2 elements"),
    "bad-backend": (lambda y, i: (y, i, 2, {"backend": "cudnn"}), ValueError, "backend must be one of"),
}


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("case", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_arguments(device, backend, case):
    make, exc, message = case
    y, idx, _ = _case()
    args = make(y.to(device), idx.to(device))
    kwargs = {"backend": backend, **args[3]}
    with pytest.raises(exc, match=message):
        pydense.functional.max_unpool2d(*args[:3], **kwargs)


# Out-of-range indices: 2**32 + 3 is 3 after a cast to int32 (pytorch#197409 checks after one).
BAD_INDICES = [-1, 64, 2**31, 2**32, 2**32 + 3, -(2**32) + 3]


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("bad", BAD_INDICES)
def test_out_of_range_indices_raise(device, backend, bad):
    y, idx, out_hw = _case()
    idx[0, 1, 2, 3] = bad
    y, idx = y.to(device), idx.to(device)
    with pytest.raises(IndexError, match=r"indices must lie in \[0, 64\)"):
        pydense.functional.max_unpool2d(y, idx, 2, backend=backend, check_indices=True)
    grad = torch.ones(2 * 8 * 8, device=device).view(1, 2, 8, 8)
    with pytest.raises(IndexError, match=r"indices must lie in \[0, 64\)"):
        ops.max_unpool2d_backward_op(grad, idx, [2, 2], [2, 2], [0, 0], [1, 1], backend, True)


@pytest.mark.parametrize("device,backend", [p for p in BACKENDS if p.id.split("-")[1] in ("triton", "cuda")])
def test_unchecked_invalid_indices_are_dropped(device, backend):
    """With checks off (the GPU default) invalid indices never become addresses: dropped."""
    y, idx, out_hw = _case()
    bad = idx.clone()
    bad[0, 0, 0, 0], bad[0, 1, 3, 3], bad[0, 1, 1, 2] = -1, 2**32 + 3, 64
    out = pydense.functional.max_unpool2d(y.to(device), bad.to(device), 2, backend=backend,
                                          check_indices=False)
    keep = (bad >= 0) & (bad < 64)
    expected = reference.max_unpool2d(torch.where(keep, y, 0).double(), torch.where(keep, bad, idx), out_hw)
    assert torch.equal(out.double().cpu(), expected)
    grad = torch.randn(1, 2, 8, 8, dtype=torch.float32)
    gi = ops.max_unpool2d_backward_op(grad.to(device), bad.to(device), [2, 2], [2, 2], [0, 0], [1, 1],
                                   backend, False)
    expected_grad = torch.where(keep, reference.max_unpool2d_backward(grad, bad.clamp(0, 63)), 0)
    assert torch.equal(gi.cpu(), expected_grad)


def test_cpu_kernel_checks_indices_itself():
    """The compiled CPU ops raise for bad indices even when called directly, checks off."""
    y, idx, _ = _case()
    idx[0, 0, 1, 1] = 2**32 + 3
    out = torch.empty(1, 2, 8, 8)
    with pytest.raises(IndexError, match=r"indices must lie in \[0, 64\).*found 4294967299"):
        torch.ops.pydense._max_unpool2d_fwd(y, idx, [2, 2], [2, 2], [0, 0], [1, 1], True, out)
    with pytest.raises(IndexError, match=r"indices must lie in \[0, 64\)"):
        torch.ops.pydense._max_unpool2d_bwd(out, idx, [2, 2], [2, 2], [0, 0], [1, 1], torch.empty_like(y))
    with pytest.raises(RuntimeError, match="indices must be int64"):
        torch.ops.pydense._max_unpool2d_fwd(y, idx.int(), [2, 2], [2, 2], [0, 0], [1, 1], True, out)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=requires_cuda)])
def test_backend_device_mismatch(device):
    y, idx, _ = _case()
    other = {"cpu": "cuda", "cuda": "cpu"}[device]
    with pytest.raises(pydense.BackendUnavailableError, match=f"backend='{other}' needs"):
        pydense.functional.max_unpool2d(y.to(device), idx.to(device), 2, backend=other)


@requires_cuda
def test_indices_on_other_device():
    y, idx, _ = _case()
    with pytest.raises(ValueError, match="indices must be on the input's device"):
        pydense.functional.max_unpool2d(y.cuda(), idx, 2)


def test_triton_on_cpu_without_interpreter_is_a_clear_error():
    code = ("import torch, pydense, torch.nn.functional as F\n"
            "y, i = F.max_pool2d(torch.randn(1, 1, 4, 4), 2, return_indices=True)\n"
            "try:\n    pydense.functional.max_unpool2d(y, i, 2, backend='triton')\n"
            "except pydense.BackendUnavailableError as e:\n    print('ERR', e)\n")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)
    assert "ERR max_unpool2d: backend='triton' got CPU tensors" in res.stdout, res.stderr


# --------------------------------------------------------------- torch.library / compile / nn

@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("lay", ["nchw", "channels_last"])
def test_opcheck(device, backend, lay):
    y, idx, out_hw = pooled_case(CONFIGS["segnet-ceil"], seed=9)
    y, idx = to(y, device, torch.float32, lay).requires_grad_(), to(idx, device, lay=lay)
    torch.library.opcheck(ops.max_unpool2d_op, (y, idx, list(out_hw), [2, 2], [2, 2], [0, 0], [1, 1], backend,
                                          True))
    g = torch.randn(2, 3, *out_hw, device=device)
    torch.library.opcheck(ops.max_unpool2d_backward_op, (g, idx, [2, 2], [2, 2], [0, 0], [1, 1], backend, True))


class PoolUnpool(torch.nn.Module):
    """A SegNet stage in miniature: conv, pool with indices, unpool, conv."""

    def __init__(self, backend):
        super().__init__()
        self.enc = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.unpool = pydense.nn.MaxUnpool2d(2, 2, backend=backend)
        self.dec = torch.nn.Conv2d(4, 2, 3, padding=1)

    def forward(self, x):
        y = self.enc(x)
        p, idx = F.max_pool2d(y, 2, 2, ceil_mode=True, return_indices=True)
        return self.dec(self.unpool(p, idx, output_size=y.shape[-2:]))


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("compiler", ["aot_eager", "inductor"])
def test_compile_fullgraph_no_graph_breaks(device, backend, compiler):
    if compiler == "inductor" and backend != "cpu" and device == "cpu":
        pytest.skip("one inductor CPU build is enough (C++ codegen is slow on 2 cores)")
    torch.manual_seed(0)
    model = PoolUnpool(backend).to(device)
    x = torch.randn(2, 3, 9, 11, device=device, requires_grad=True)
    check_compile_fullgraph(model, x, compiler)


def test_nn_module_is_a_drop_in():
    m = pydense.nn.MaxUnpool2d(2, backend="cpu")
    assert isinstance(m, torch.nn.MaxUnpool2d)
    assert m.state_dict().keys() == torch.nn.MaxUnpool2d(2).state_dict().keys()
    assert "backend='cpu'" in repr(m)
    y, idx, out_hw = pooled_case(CONFIGS["segnet-ceil"], seed=10)
    assert torch.equal(m(y, idx, output_size=out_hw), torch.nn.MaxUnpool2d(2)(y, idx, output_size=out_hw))


def test_autocast_keeps_dtype():
    y, idx, out_hw = pooled_case(CONFIGS["square"], seed=11)
    y = y.bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = pydense.functional.max_unpool2d(y, idx, 2, backend="cpu")
    assert out.dtype == torch.bfloat16
    assert torch.equal(out.double(), reference.max_unpool2d(y.double(), idx, out_hw))


@pytest.mark.parametrize("device,backend", [p for p in BACKENDS if p.id.endswith("-triton")])
def test_triton_int64_index_path(device, backend, monkeypatch):
    """The int64 index variant (used when a tensor spans 2^31 elements) on small tensors."""
    from pydense.kernels import max_unpool as kernels

    monkeypatch.setattr(kernels, "_needs_int64", lambda *tensors: True)
    y, idx, out_hw = pooled_case(CONFIGS["segnet-ceil"], seed=12)
    idx[1, 1, 2, 2] = 0  # one out-of-window index: gather + scatter fix-up
    for lay in ("nchw", "channels_last"):
        yd = to(y, device, lay=lay).requires_grad_()
        out = pydense.functional.max_unpool2d(yd, to(idx, device, lay=lay), 2, output_size=out_hw,
                                              backend=backend)
        assert torch.equal(out.cpu(), reference.max_unpool2d(y, idx, out_hw))
        g = torch.randn(out.shape, dtype=torch.float64)
        out.backward(to(g, device, lay=lay))
        assert torch.equal(yd.grad.cpu(), reference.max_unpool2d_backward(g, idx))


# --------------------------------------------------------------- double backward

# (config, compact indices, layout): the kernel == stride gather path and the scatter path with
# overlapping windows (whose indices repeat: two windows may pick one element)
DOUBLE_CASES = {
    "gather-int64": ((1, 2, 6, 6, 2, 2, 0, False), False, "nchw"),
    "gather-compact-cl": ((1, 2, 6, 7, 2, 2, 0, True), True, "channels_last"),
    "overlap-int64-cl": ((1, 2, 7, 7, 3, 2, 1, False), False, "channels_last"),
    "overlap-compact": ((1, 2, 7, 7, 3, 2, 1, False), True, "nchw"),
}


def double_case(cfg, seed):
    """(pooled values, flat indices, compact indices, (H, W)) in float64, from the reference pool."""
    n, c, h, w, k, s, p, ceil = cfg
    x = torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    y, flat, compact = reference.max_pool2d_with_indices(x, (k, k), (s, s), (p, p), ceil_mode=ceil)
    return y, flat, compact.to(torch.uint8), (h, w)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("case", DOUBLE_CASES.values(), ids=DOUBLE_CASES.keys())
def test_double_backward_gradgradcheck(device, backend, case):
    """Second derivatives (gradient penalties, create_graph=True): the gather backward has autograd
    of its own (max_pool2d's backward op: the adjoint scatter-add, duplicates summed), checked by
    gradgradcheck in fp64 and against PyTorch's double backward."""
    cfg, compact, lay = case
    k, s, p = cfg[4:7]
    y, flat, comp, out_hw = double_case(cfg, seed=13)
    if k > s:  # the case must hold a repeated index, or a plain scatter would pass too
        assert any(f.unique().numel() < f.numel() for f in flat.view(-1, flat[0, 0].numel()))
    yd = to(y, device, lay=lay).requires_grad_()
    idxd = to(comp if compact else flat, device, lay=lay)
    fn = lambda t: pydense.functional.max_unpool2d(t, idxd, k, s, p, out_hw, backend=backend)  # noqa: E731
    # fast_mode: random projections instead of full Jacobians (the interpreter runs few calls)
    assert torch.autograd.gradgradcheck(fn, (yd,), fast_mode=True)
    # a gradient penalty: d/dy |dL/dy|^2 through create_graph, against stock torch (CPU, fp64)
    m = torch.randn(1, 2, *out_hw, generator=torch.Generator().manual_seed(14), dtype=torch.float64)
    grads = []
    for t, unpool in ((yd, fn), (y.clone().requires_grad_(),
                                 lambda t: F.max_unpool2d(t, flat, k, s, p, out_hw))):
        loss = (unpool(t).square() * m.to(t.device)).sum()
        (gy,) = torch.autograd.grad(loss, t, create_graph=True)
        (ggy,) = torch.autograd.grad(gy.square().sum(), t)
        grads.append(ggy.cpu())
    torch.testing.assert_close(grads[0], grads[1])
    # the gradient op itself: schema, fake kernel and autograd registration
    g = to(torch.randn(1, 2, *out_hw, dtype=torch.float64), device, lay=lay).requires_grad_()
    torch.library.opcheck(ops.max_unpool2d_backward_op, (g, idxd, [k, k], [s, s], [p, p], [1, 1],
                                                      backend, True))


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_double_backward_out_of_window_indices_raise(device, backend):
    """An index outside its own pooling window is legal in the forward and first backward, but the
    second derivative (a sum over the windows) cannot find it: a clear error when indices are checked."""
    y, idx, out_hw = pooled_case(CONFIGS["square"], seed=15)
    idx[0, 1, 0, 0] = idx[0, 1, 3, 3]  # duplicate of a later element, outside its window
    yd = y.to(device).requires_grad_()
    out = pydense.functional.max_unpool2d(yd, idx.to(device), 2, output_size=out_hw,
                                          backend=backend, check_indices=True)
    (gy,) = torch.autograd.grad(out.square().sum(), yd, create_graph=True)
    with pytest.raises(NotImplementedError, match=r"max_unpool2d: double backward .* own pooling window"):
        gy.square().sum().backward()
