"""FCN's fixed bilinear deconvolution on every backend against conv_transpose2d in float64."""
import pytest
import torch
import torch.nn.functional as F

import pydense
from pydense import reference
from pydense.ops import bilinear_deconv as ops

from helpers import check_gradient_penalty, DTYPES, LAYOUTS, backend_params, check_compile_fullgraph, to

BACKENDS = backend_params()
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float16: dict(rtol=2e-3, atol=2e-3),
       torch.bfloat16: dict(rtol=1.6e-2, atol=1.6e-2)}
# (N, C, H, W), factor, crop, output_size
CONFIGS = {
    "upscore2": ((2, 3, 5, 4), 2, 0, None),
    "k6s3-crop": ((1, 2, 4, 5), 3, 1, (10, 11)),
    "fcn16s-upscore16": ((1, 2, 3, 2), 16, 27, (20, 9)),
    "fcn8s-upscore8": ((1, 3, 4, 3), 8, 31, (2, 1)),
    "fcn32s-upscore": ((1, 2, 2, 2), 32, 19, (12, 10)),
}


def data(shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


oracle = reference.bilinear_deconv2d  # conv_transpose2d with FCN's weight (built independently), then the crop


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("lay", LAYOUTS)
@pytest.mark.parametrize("name", CONFIGS)
def test_forward_backward_match_conv_transpose(device, backend, dtype, lay, name):
    shape, factor, crop, size = CONFIGS[name]
    if backend == "torch" and dtype != torch.float32 and factor >= 16:
        pytest.skip("stock conv_transpose2d/conv2d accumulate 2f x 2f taps in reduced precision on CPU")
    x = data(shape).to(dtype).double()
    xd = to(x, device, dtype, lay).requires_grad_()
    out = pydense.functional.bilinear_deconv2d(xd, factor, crop=crop, output_size=size, backend=backend)
    x64 = x.clone().requires_grad_()
    ref = oracle(x64, factor, crop, size)
    assert out.dtype == dtype and out.shape == ref.shape
    torch.testing.assert_close(out.double().cpu(), ref.detach(), **TOL[dtype])
    g = data(ref.shape, seed=1).to(dtype).double()
    out.backward(to(g, device, dtype, lay))
    ref.backward(g)
    torch.testing.assert_close(xd.grad.double().cpu(), x64.grad, **TOL[dtype])


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_gradcheck_and_determinism(device, backend):
    x = data((1, 2, 3, 4)).to(device).requires_grad_()
    fn = lambda t: pydense.functional.bilinear_deconv2d(t, 2, crop=1, output_size=(6, 8), backend=backend)
    assert torch.autograd.gradcheck(fn, (x,))
    g = data((1, 2, 6, 8), seed=2).to(device)
    grads = [torch.autograd.grad(fn(x), x, g)[0] for _ in range(10)]
    assert all(torch.equal(gr, grads[0]) for gr in grads)


BAD = {
    "zero-factor": (dict(factor=0), ValueError, "factor must be a positive int"),
    "negative-crop": (dict(factor=2, crop=-1), ValueError, "crop must be a non-negative int"),
    "too-big": (dict(factor=2, crop=3, output_size=(8, 8)), ValueError, "must fit the full output"),
    "bad-size": (dict(factor=2, output_size=(1, 2, 3)), ValueError, "output_size must be"),
    "int-size": (dict(factor=2, output_size=4), TypeError, "output_size must be a sequence"),
}


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("case", BAD.values(), ids=BAD.keys())
def test_bad_arguments(device, backend, case):
    kw, exc, message = case
    x = torch.randn(1, 2, 4, 4, device=device)
    factor = kw.pop("factor")
    with pytest.raises(exc, match=message):
        pydense.functional.bilinear_deconv2d(x, factor, backend=backend, **kw)
    kw["factor"] = factor


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("shape", [(1, 2, 0, 4), (1, 2, 3, 0)], ids=["H=0", "W=0"])
def test_empty_plane_raises_like_conv_transpose(device, backend, shape):
    """An empty plane of a non-empty batch would give a non-empty output from no input (it read
    tap -1 and crashed); ConvTranspose2d raises, and so does every backend, naming the input."""
    with pytest.raises(RuntimeError, match="zero batch or zero channel"):
        F.conv_transpose2d(torch.zeros(shape), ops.weight(2, 2), stride=2)
    with pytest.raises(ValueError, match="input has an empty spatial plane"):
        pydense.functional.bilinear_deconv2d(torch.zeros(shape, device=device), 2, backend=backend)
    out = pydense.functional.bilinear_deconv2d(torch.zeros((0, 2, 3, 4), device=device), 2,
                                               backend=backend)
    assert out.shape == (0, 2, 8, 10)


@pytest.mark.parametrize("device,backend", [p for p in BACKENDS if "torch" not in p.id])
@pytest.mark.parametrize("pos", [(0, 0), (3, 4), (1, 2)], ids=["corner", "far-corner", "inside"])
def test_inf_spreads_like_the_diagonal_deconvolution(device, backend, pos):
    """An inf input gives inf over its taps and no NaN, as conv_transpose2d with FCN's kernel on
    the channel diagonal does (the border outputs have a single input: the missing tap is not
    read, so no inf is multiplied by a zero weight). Other channels stay finite: unlike FCN's
    dense CxC ConvTranspose2d, whose off-diagonal zeros turn an inf or NaN into NaN in every
    channel (the "torch" backend is that layer)."""
    x = data((1, 2, 4, 5))
    x[0, 0, pos[0], pos[1]] = float("inf")
    for crop, size in ((0, None), (1, (8, 9))):
        got = pydense.functional.bilinear_deconv2d(x.float().to(device), 2, crop=crop, output_size=size,
                                                   backend=backend).cpu().double()
        want = F.conv_transpose2d(x[:, :1], ops.weight(1, 2, torch.float64), stride=2)
        want = want[..., crop:crop + (size or want.shape[-2:])[0], crop:crop + (size or want.shape[-2:])[1]]
        assert not got.isnan().any()
        assert torch.equal(got[:, 0].isinf(), want[:, 0].isinf()) and want.isinf().any()
        assert got[:, 1].isfinite().all()
        finite = want[:, 0].isfinite()
        torch.testing.assert_close(got[:, 0][finite], want[:, 0][finite], rtol=1e-5, atol=1e-5)


def test_bad_input():
    with pytest.raises(ValueError, match="input must be 4-D"):
        pydense.functional.bilinear_deconv2d(torch.randn(2, 4, 4), 2)
    with pytest.raises(TypeError, match="input dtype"):
        pydense.functional.bilinear_deconv2d(torch.ones(1, 1, 2, 2, dtype=torch.int32), 2)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_opcheck(device, backend):
    x = to(data((2, 3, 4, 5)), device, torch.float32, "channels_last").requires_grad_()
    torch.library.opcheck(ops.bilinear_deconv2d_op, (x, 2, 1, [8, 10], backend))
    g = torch.randn(2, 3, 8, 10, device=device)
    torch.library.opcheck(ops.bilinear_deconv2d_backward_op, (g, [2, 3, 4, 5], 2, 1, backend, False))


class FCN32sHead(torch.nn.Module):
    def __init__(self, backend):
        super().__init__()
        self.score = torch.nn.Conv2d(4, 3, 1)
        self.upscore = pydense.nn.BilinearDeconv2d(8, crop=3, backend=backend)

    def forward(self, x):
        return self.upscore(self.score(x), output_size=(20, 22))


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_compile_fullgraph_no_graph_breaks(device, backend):
    torch.manual_seed(0)
    check_compile_fullgraph(FCN32sHead(backend).to(device),
                            torch.randn(1, 4, 3, 3, device=device, requires_grad=True))


def test_init_bilinear_matches_fcn_formula():
    w = pydense.nn.init.bilinear_(torch.empty(2, 2, 4, 4))
    k1 = torch.tensor([0.25, 0.75, 0.75, 0.25])  # k = 4: f = 2, c = 1.5
    assert torch.equal(w[0, 0], torch.outer(k1, k1)) and torch.equal(w[1, 1], w[0, 0])
    assert w[0, 1].abs().sum() == 0 and w[1, 0].abs().sum() == 0
    w3 = pydense.nn.init.bilinear_(torch.empty(3, 1, 3, 3))  # odd k = 3: f = 2, c = 1; depthwise
    k3 = torch.tensor([0.5, 1.0, 0.5])
    assert all(torch.equal(w3[i, 0], torch.outer(k3, k3)) for i in range(3))
    with pytest.raises(ValueError, match="must be square"):
        pydense.nn.init.bilinear_(torch.empty(2, 2, 4, 3))


def test_detects_fixed_bilinear_conv_transpose():
    up = torch.nn.ConvTranspose2d(5, 5, 16, stride=8, bias=False)
    pydense.nn.init.bilinear_(up.weight)
    assert pydense.fixed_bilinear_factor(up) is None  # trainable: not fixed
    up.weight.requires_grad_(False)
    assert pydense.fixed_bilinear_factor(up) == 8
    x = data((1, 5, 3, 4)).float()
    torch.testing.assert_close(pydense.functional.bilinear_deconv2d(x, 8, crop=0), up(x),
                               rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        up.weight[0, 0, 0, 0] += 1e-3
    assert pydense.fixed_bilinear_factor(up) is None  # not the bilinear kernel
    biased = torch.nn.ConvTranspose2d(5, 5, 16, stride=8)
    assert pydense.fixed_bilinear_factor(biased) is None
    assert pydense.fixed_bilinear_factor(torch.nn.Conv2d(5, 5, 3)) is None


@pytest.mark.parametrize("device,backend", [p for p in BACKENDS if p.id.endswith("-triton")])
def test_triton_int64_index_path(device, backend, monkeypatch):
    from pydense.kernels import upsample_bilinear as kernels

    monkeypatch.setattr(kernels, "_needs_int64", lambda *tensors: True)
    x = data((1, 2, 3, 4)).to(device).requires_grad_()
    out = pydense.functional.bilinear_deconv2d(x, 4, crop=2, backend=backend)
    x64 = x.detach().cpu().requires_grad_()
    ref = oracle(x64, 4, 2, None)
    torch.testing.assert_close(out.cpu(), ref.detach())
    g = data(ref.shape, seed=3)
    out.backward(g.to(device))
    ref.backward(g)
    torch.testing.assert_close(x.grad.cpu(), x64.grad)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("lay", ["nchw", "channels_last"])
def test_double_backward_gradgradcheck(device, backend, lay):
    """Second derivatives (gradient penalties, create_graph=True): the backward op has autograd of
    its own (the deconvolution again), checked by gradgradcheck in fp64 and against the oracle's."""
    x = data((1, 2, 3, 4))
    xd = to(x, device, lay=lay).requires_grad_()
    fn = lambda t: pydense.functional.bilinear_deconv2d(t, 2, crop=1, output_size=(6, 8),  # noqa: E731
                                                        backend=backend)
    # fast_mode: random projections instead of full Jacobians (the interpreter runs few calls)
    assert torch.autograd.gradgradcheck(fn, (xd,), fast_mode=True)
    # a gradient penalty: d/dx |dL/dx|^2 through create_graph, against the oracle (CPU, fp64)
    m = data((1, 2, 6, 8), seed=3)
    check_gradient_penalty(fn, (xd,), lambda t: oracle(t, 2, 1, (6, 8)), (x.clone().requires_grad_(),), m)
    # the backward op itself: schema, fake kernel and autograd registration
    g = to(m, device, lay=lay).requires_grad_()
    torch.library.opcheck(ops.bilinear_deconv2d_backward_op, (g, [1, 2, 3, 4], 2, 1, backend,
                                                           lay == "channels_last"))
