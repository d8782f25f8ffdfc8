"""Bilinear interpolation on every backend against the float64 oracle (pydense.reference) and ATen."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import pydense
from pydense import reference
from pydense.ops import upsample_bilinear as ops

from helpers import check_gradient_penalty, check_compile_fullgraph, CPU_BACKENDS, DTYPES, LAYOUTS, backend_params, layout, to

BACKENDS = backend_params()
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float16: dict(rtol=2e-3, atol=2e-3),
       torch.bfloat16: dict(rtol=1.6e-2, atol=1.6e-2), torch.float64: dict(rtol=1e-6, atol=1e-6)}

# (N, C, H, W), interpolate kwargs
CONFIGS = {
    "size-up": ((2, 3, 5, 7), dict(size=(11, 16))),
    "size-up-ac": ((2, 3, 5, 7), dict(size=(11, 16), align_corners=True)),
    "size-down": ((1, 2, 13, 9), dict(size=(4, 5))),
    "scale-int": ((1, 3, 4, 6), dict(scale_factor=3)),
    "scale-frac": ((2, 2, 7, 5), dict(scale_factor=(1.7, 2.3))),
    "scale-frac-recompute": ((2, 2, 7, 5), dict(scale_factor=(1.7, 2.3), recompute_scale_factor=True)),
    "scale-down": ((1, 2, 9, 11), dict(scale_factor=0.45)),
    "1px-in": ((1, 2, 1, 1), dict(size=(3, 4))),
    "1px-out-ac": ((1, 2, 5, 4), dict(size=(1, 1), align_corners=True)),
    "fcn-x8": ((1, 2, 3, 4), dict(scale_factor=8)),
}


def scales_of(kw):
    """The scale factors the kernel sees (None when sizes are given or recomputed)."""
    sf = kw.get("scale_factor")
    if sf is None or kw.get("recompute_scale_factor"):
        return (None, None)
    return tuple(sf) if isinstance(sf, tuple) else (sf, sf)


def expected(x64, kw):
    out_hw = F.interpolate(x64, mode="bilinear", **kw).shape[-2:]
    return reference.upsample_bilinear2d(x64, out_hw, kw.get("align_corners") or False, scales_of(kw))


def data(shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("lay", LAYOUTS)
@pytest.mark.parametrize("name", CONFIGS)
def test_forward_backward_match_oracle(device, backend, dtype, lay, name):
    shape, kw = CONFIGS[name]
    x = data(shape).to(dtype).double()  # the oracle sees the same rounded inputs
    xd = to(x, device, dtype, lay).requires_grad_()
    out = pydense.functional.interpolate(xd, mode="bilinear", backend=backend, **kw)
    x64 = x.clone().requires_grad_()
    ref = expected(x64, kw)
    assert out.dtype == dtype and out.shape == ref.shape
    torch.testing.assert_close(out.double().cpu(), ref.detach(), **TOL[dtype])
    fmt = torch.channels_last if lay == "channels_last" and shape[1] > 1 and shape[2:] != (1, 1) \
        else torch.contiguous_format
    assert out.is_contiguous(memory_format=fmt)
    g = data(ref.shape, seed=1).to(dtype).double()
    out.backward(to(g, device, dtype, lay))
    ref.backward(g)
    assert xd.grad.dtype == dtype  # (.grad strides follow the leaf: autograd's layout contract)
    torch.testing.assert_close(xd.grad.double().cpu(), x64.grad, **TOL[dtype])


@pytest.mark.parametrize("name", CONFIGS)
def test_oracle_agrees_with_aten(name):
    """The matrix-form oracle reproduces ATen's float64 forward and backward."""
    shape, kw = CONFIGS[name]
    x = data(shape).requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    ours, aten = expected(x, kw), F.interpolate(x2, mode="bilinear", **kw)
    torch.testing.assert_close(ours, aten, rtol=1e-12, atol=1e-12)
    g = data(ours.shape, seed=3)
    ours.backward(g)
    aten.backward(g)
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-12, atol=1e-12)


@pytest.fixture
def deterministic():
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(before)


@pytest.mark.parametrize("device,backend", [p for p in BACKENDS if "torch" not in p.id])
def test_backward_deterministic_under_deterministic_mode(device, backend, deterministic):
    """10 backward runs are bitwise equal, with torch.use_deterministic_algorithms(True) on."""
    x = data((2, 4, 9, 7)).to(torch.bfloat16).to(device).requires_grad_()
    g = data((2, 4, 40, 31), seed=4).to(torch.bfloat16).to(device)
    grads = []
    for _ in range(10):
        out = pydense.functional.interpolate(x, size=(40, 31), mode="bilinear", backend=backend)
        (gx,) = torch.autograd.grad(out, x, g)
        grads.append(gx)
    assert all(torch.equal(gx, grads[0]) for gx in grads)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("align_corners", [False, True])
def test_gradcheck(device, backend, align_corners):
    x = data((1, 2, 4, 3)).to(device).requires_grad_()
    fn = lambda t: pydense.functional.interpolate(t, scale_factor=(2.5, 1.5), mode="bilinear",
                                                  align_corners=align_corners, backend=backend)
    assert torch.autograd.gradcheck(fn, (x,))


@settings(max_examples=30, deadline=None)
@given(h=st.integers(1, 9), w=st.integers(1, 9), oh=st.integers(1, 20), ow=st.integers(1, 20),
       align=st.booleans(), backend=st.sampled_from([b for b in CPU_BACKENDS if b != "torch"]),
       lay=st.sampled_from(LAYOUTS))
def test_hypothesis_sizes(h, w, oh, ow, align, backend, lay):
    x = data((1, 2, h, w), seed=h * 31 + w)
    out = pydense.functional.interpolate(layout(x, lay), size=(oh, ow), mode="bilinear",
                                         align_corners=align, backend=backend)
    torch.testing.assert_close(out, F.interpolate(x, size=(oh, ow), mode="bilinear",
                                                  align_corners=align), rtol=1e-6, atol=1e-6)


BAD = {
    "both": (dict(size=4, scale_factor=2), ValueError, "exactly one of size or scale_factor"),
    "neither": (dict(), ValueError, "exactly one of size or scale_factor"),
    "zero-size": (dict(size=(0, 4)), ValueError, "size must be positive"),
    "float-size": (dict(size=4.0), TypeError, "size must be an int"),
    "negative-scale": (dict(scale_factor=-2.0), ValueError, "scale_factor must be positive"),
    "nan-scale": (dict(scale_factor=float("nan")), ValueError, "scale_factor must be positive"),
    "3-sizes": (dict(size=(2, 3, 4)), ValueError, "size must have 2 elements"),
    "empty-output": (dict(scale_factor=0.01), ValueError, "gives an empty output"),
    "recompute-with-size": (dict(size=4, recompute_scale_factor=True), ValueError, "not meaningful"),
    "align-type": (dict(size=4, align_corners=1), TypeError, "align_corners must be a bool"),
}


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("case", BAD.values(), ids=BAD.keys())
def test_bad_arguments(device, backend, case):
    kw, exc, message = case
    with pytest.raises(exc, match=message):
        pydense.functional.interpolate(torch.randn(1, 2, 6, 6, device=device), mode="bilinear",
                                       backend=backend, **kw)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_integer_input_is_a_type_error(device, backend):
    with pytest.raises(TypeError, match="input dtype"):
        pydense.functional.interpolate(torch.ones(1, 1, 2, 2, dtype=torch.int64, device=device),
                                       size=4, mode="bilinear", backend=backend)


def test_other_modes_delegate_to_torch():
    x = data((1, 2, 5, 5))
    for kw in (dict(mode="nearest"), dict(mode="bicubic"), dict(mode="bilinear", antialias=True)):
        assert torch.equal(pydense.functional.interpolate(x, size=(3, 7), **kw),
                           F.interpolate(x, size=(3, 7), **kw))
    with pytest.raises(ValueError, match="implements mode='bilinear'"):
        pydense.functional.interpolate(x, size=3, mode="nearest", backend="cpu")


def test_compiled_ops_check_tables():
    x, out = torch.randn(1, 1, 2, 2), torch.empty(1, 1, 4, 4)
    idx, lam = torch.zeros(2, 4, dtype=torch.int32), torch.zeros(2, 4)
    with pytest.raises(RuntimeError, match="w_lam must be a contiguous"):
        torch.ops.pydense._upsample_bilinear2d_fwd(x, None, idx, lam, idx, lam[:, :3], out)


@pytest.mark.parametrize("device,backend", [p for p in BACKENDS if p.id.endswith(("-cpu", "-triton"))])
def test_tables_cannot_address_outside(device, backend):
    """The table entries are the kernels' addresses: out-of-range taps read 0 and out-of-range
    backward ranges are clipped to the output (the ops are public; garbage tables must not read
    outside the tensors). A -1 tap (bilinear_deconv2d's missing border tap) reads 0 too."""
    from pydense.ops._common import launch

    x = torch.arange(1.0, 7.0, device=device).view(1, 1, 2, 3)
    h_idx = torch.tensor([[0, -1, 5], [1, 1, -7]], dtype=torch.int32, device=device)
    w_idx = torch.tensor([[0, 2, 99], [-1, 2, 1]], dtype=torch.int32, device=device)
    lam = torch.ones(2, 3, device=device)
    out = torch.empty(1, 1, 3, 3, device=device)
    launch(backend, "upsample_bilinear.forward", "_upsample_bilinear2d_fwd", x, None, h_idx, lam,
           w_idx, lam, out)
    # out[oh, ow] = sum of the in-plane taps among (h0|h1) x (w0|w1)
    want = torch.tensor([[1 + 4, 3 + 3 + 6 + 6, 2 + 5], [4, 6 + 6, 5], [0, 0, 0]], device=device)
    torch.testing.assert_close(out[0, 0], want.float())
    g = torch.ones(1, 1, 3, 3, device=device)
    rng_h = torch.tensor([[-4, 0], [9, 3]], dtype=torch.int32, device=device)  # (2, H): clipped to [0, 3)
    rng_w = torch.tensor([[-1, 0, 2], [100, 3, 7]], dtype=torch.int32, device=device)
    gi = torch.empty(1, 1, 2, 3, device=device)
    launch(backend, "upsample_bilinear.backward", "_upsample_bilinear2d_bwd", g, h_idx, lam, rng_h,
           w_idx, lam, rng_w, gi, max_len=(20, 20))
    # grad_input[ih, iw] = sum over oh, ow in the clipped ranges of (h taps == ih) * (w taps == iw)
    def clip(rng, i, n):
        return range(max(int(rng[0, i]), 0), min(int(rng[1, i]), n))

    want = torch.zeros(2, 3)
    for ih in range(2):
        for iw in range(3):
            want[ih, iw] = sum(int((h_idx[:, oh] == ih).sum()) * int((w_idx[:, ow] == iw).sum())
                               for oh in clip(rng_h, ih, 3) for ow in clip(rng_w, iw, 3))
    torch.testing.assert_close(gi[0, 0].cpu(), want)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("lay", ["nchw", "channels_last"])
def test_opcheck(device, backend, lay):
    x = to(data((2, 3, 5, 4)), device, torch.float32, lay).requires_grad_()
    torch.library.opcheck(ops.upsample_bilinear2d_op, (x, [9, 7], False, -1.0, -1.0, backend))
    torch.library.opcheck(ops.upsample_bilinear2d_op, (x, [10, 8], True, 2.0, 2.0, backend))
    g = to(data((2, 3, 9, 7)), device, torch.float32, lay)
    torch.library.opcheck(ops.upsample_bilinear2d_backward_op,
                          (g, [2, 3, 5, 4], False, -1.0, -1.0, backend, lay == "channels_last"))


class ScoreHead(torch.nn.Module):
    """FCN/DeepLab-style head: 1x1 score conv, bilinear upsampling to the image size."""

    def __init__(self, backend):
        super().__init__()
        self.score = torch.nn.Conv2d(4, 3, 1)
        self.up = pydense.nn.Upsample(scale_factor=4, mode="bilinear", backend=backend)

    def forward(self, x):
        return self.up(self.score(x))


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_compile_fullgraph_no_graph_breaks(device, backend):
    torch.manual_seed(0)
    model = ScoreHead(backend).to(device)
    x = torch.randn(2, 4, 5, 6, device=device, requires_grad=True)
    check_compile_fullgraph(model, x)


def test_nn_upsample_is_a_drop_in():
    m = pydense.nn.Upsample(size=(7, 9), mode="bilinear", align_corners=True, backend="cpu")
    assert isinstance(m, torch.nn.Upsample) and "backend='cpu'" in repr(m)
    x = data((1, 2, 3, 4))
    torch.testing.assert_close(m(x), torch.nn.UpsamplingBilinear2d(size=(7, 9))(x), rtol=1e-6, atol=1e-6)
    assert torch.equal(pydense.nn.Upsample(scale_factor=2)(x), F.interpolate(x, scale_factor=2))


@pytest.mark.parametrize("device,backend", [p for p in BACKENDS if p.id.endswith("-triton")])
def test_triton_int64_index_path(device, backend, monkeypatch):
    from pydense.kernels import upsample_bilinear as kernels

    monkeypatch.setattr(kernels, "_needs_int64", lambda *tensors: True)
    for lay in ("nchw", "channels_last"):
        x = to(data((2, 3, 4, 5)), device, lay=lay).requires_grad_()
        out = pydense.functional.interpolate(x, size=(9, 7), mode="bilinear", backend=backend)
        x64 = x.detach().cpu().requires_grad_()
        ref = reference.upsample_bilinear2d(x64, (9, 7), False)
        torch.testing.assert_close(out.cpu(), ref.detach(), rtol=1e-6, atol=1e-6)
        g = data(ref.shape, seed=5)
        out.backward(g.to(device))
        ref.backward(g)
        torch.testing.assert_close(x.grad.cpu(), x64.grad, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("device,backend", [p for p in BACKENDS if "torch" not in p.id])
def test_layouts_give_bitwise_equal_results(device, backend):
    """NCHW and channels_last run different loop orders with the same arithmetic per element."""
    x = data((2, 5, 7, 6)).float()
    g = data((2, 5, 16, 15), seed=6).float()
    results = []
    for lay in ("nchw", "channels_last"):
        xd = to(x, device, lay=lay).requires_grad_()
        out = pydense.functional.interpolate(xd, size=(16, 15), mode="bilinear", backend=backend)
        out.backward(to(g, device, lay=lay))
        results.append((out.cpu(), xd.grad.cpu()))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("align_corners,lay", [(False, "nchw"), (True, "channels_last")],
                         ids=["half-pixel", "align-corners-cl"])
def test_double_backward_gradgradcheck(device, backend, align_corners, lay):
    """Second derivatives (gradient penalties, create_graph=True): the backward op has autograd of
    its own (the upsampling again), checked by gradgradcheck in fp64 and against PyTorch's."""
    x = data((1, 2, 4, 3))
    xd = to(x, device, lay=lay).requires_grad_()
    fn = lambda t: pydense.functional.interpolate(  # noqa: E731
        t, scale_factor=(2.5, 1.5), mode="bilinear", align_corners=align_corners, backend=backend)
    # fast_mode: random projections instead of full Jacobians (the interpreter runs few calls)
    assert torch.autograd.gradgradcheck(fn, (xd,), fast_mode=True)
    # a gradient penalty: d/dx |dL/dx|^2 through create_graph, against stock torch (CPU, fp64)
    m = data((1, 2, 10, 4), seed=7)
    check_gradient_penalty(fn, (xd,), lambda t: F.interpolate(
        t, scale_factor=(2.5, 1.5), mode="bilinear", align_corners=align_corners),
        (x.clone().requires_grad_(),), m)
    # the backward op itself: schema, fake kernel and autograd registration
    g = to(m, device, lay=lay).requires_grad_()
    torch.library.opcheck(ops.upsample_bilinear2d_backward_op, (g, [1, 2, 4, 3], align_corners, 2.5,
                                                             1.5, backend, lay == "channels_last"))
