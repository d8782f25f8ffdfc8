"""UNet's fused upsample + concat on every backend against the float64 oracle (pydense.reference)
and against the eager chain ``torch.cat([F.interpolate(x), skip], 1)``."""
import pytest
import torch
import torch.nn.functional as F

import pydense
from pydense import reference

from helpers import check_gradient_penalty, DTYPES, LAYOUTS, backend_params, check_compile_fullgraph, to

BACKENDS = backend_params()
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float16: dict(rtol=2e-3, atol=2e-3),
       torch.bfloat16: dict(rtol=1.6e-2, atol=1.6e-2), torch.float64: dict(rtol=1e-7, atol=1e-7)}

# x shape, skip channels, kwargs of upsample_concat (the skip's size follows from them)
CONFIGS = {
    "x2": ((2, 3, 5, 4), 2, dict()),
    "x2-ac": ((2, 3, 5, 4), 3, dict(align_corners=True)),
    "to-skip-size": ((1, 2, 4, 5), 3, dict(scale_factor=None, size=(9, 11))),
    "frac": ((2, 2, 3, 5), 1, dict(scale_factor=(2.5, 1.5))),
    "nearest-x2": ((2, 3, 5, 4), 2, dict(mode="nearest")),
    "nearest-frac": ((1, 2, 3, 5), 2, dict(mode="nearest", scale_factor=(2.5, 1.7))),
    "nearest-exact-to-size": ((1, 2, 3, 4), 2, dict(mode="nearest-exact", scale_factor=None,
                                                     size=(7, 9))),
}


def data(shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def setup(name):
    shape, cs, kw = CONFIGS[name]
    kw = dict(kw)
    size = kw.pop("size", None)
    sf = kw.get("scale_factor", 2)
    if size is None:
        f = sf if isinstance(sf, tuple) else (sf, sf)
        size = tuple(int(shape[2 + d] * f[d]) for d in range(2))
    return shape, (shape[0], cs, *size), kw


def oracle(x, skip, kw):
    sf = kw.get("scale_factor", 2)
    scales = (None, None) if sf is None else (sf if isinstance(sf, tuple) else (sf, sf))
    return reference.upsample_concat(x, skip, kw.get("mode", "bilinear"),
                                     bool(kw.get("align_corners")), scales)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("lay", LAYOUTS)
@pytest.mark.parametrize("name", CONFIGS)
def test_forward_backward_match_oracle(device, backend, dtype, lay, name):
    xshape, sshape, kw = setup(name)
    x = data(xshape).to(dtype).double()  # the oracle sees the same rounded inputs
    skip = data(sshape, seed=1).to(dtype).double()
    xd, sd = to(x, device, dtype, lay).requires_grad_(), to(skip, device, dtype, lay).requires_grad_()
    out = pydense.functional.upsample_concat(xd, sd, backend=backend, **kw)
    x64, s64 = x.clone().requires_grad_(), skip.clone().requires_grad_()
    ref = oracle(x64, s64, kw)
    assert out.shape == ref.shape and out.dtype == dtype
    if lay == "channels_last":
        assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out.cpu().double(), ref.detach(), **TOL[dtype])
    # The skip half is a copy: exact.
    assert torch.equal(out[:, xshape[1]:].cpu(), sd.detach().cpu())
    g = data(ref.shape, seed=2).to(dtype).double()
    out.backward(to(g, device, dtype, lay))
    ref.backward(g)
    torch.testing.assert_close(xd.grad.cpu().double(), x64.grad, **TOL[dtype])
    assert torch.equal(sd.grad.cpu().double(), s64.grad)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("name", ["x2", "frac", "nearest-frac", "nearest-exact-to-size"])
def test_matches_eager_chain(device, backend, name):
    """Same result as the chain it replaces, for fp32 (the exact taps of ATen's formulas)."""
    xshape, sshape, kw = setup(name)
    x, skip = data(xshape).float().to(device), data(sshape, seed=1).float().to(device)
    out = pydense.functional.upsample_concat(x, skip, backend=backend, **kw)
    mode, sf = kw.get("mode", "bilinear"), kw.get("scale_factor", 2)
    up = F.interpolate(x, size=None if sf is not None else sshape[-2:], scale_factor=sf, mode=mode,
                       align_corners=kw.get("align_corners") if mode == "bilinear" else None)
    torch.testing.assert_close(out, torch.cat([up, skip], 1), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_float64_gradcheck(device, backend):
    x = data((1, 2, 3, 3)).to(device).requires_grad_()
    skip = data((1, 1, 6, 6), seed=1).to(device).requires_grad_()
    for mode in ("bilinear", "nearest"):
        assert torch.autograd.gradcheck(
            lambda a, b: pydense.functional.upsample_concat(a, b, mode=mode, backend=backend),
            (x, skip), fast_mode=True)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_unbatched_and_dtype_promotion(device, backend):
    x, skip = data((2, 3, 4)).float().to(device), data((1, 6, 8), seed=1).to(device)  # fp32, fp64
    out = pydense.functional.upsample_concat(x, skip, backend=backend)
    ref = oracle(x.double()[None], skip[None], {})[0]
    assert out.shape == (3, 6, 8) and out.dtype == torch.float64
    torch.testing.assert_close(out.cpu(), ref, rtol=1e-6, atol=1e-6)


def test_module_and_errors():
    x, skip = data((1, 4, 3, 3)).float(), data((1, 2, 6, 6), seed=1).float()
    m = pydense.nn.UpsampleConcat(scale_factor=2, mode="nearest")
    torch.testing.assert_close(m(x, skip), torch.cat([F.interpolate(x, scale_factor=2), skip], 1))
    assert "nearest" in repr(m)
    f = pydense.functional.upsample_concat
    with pytest.raises(ValueError, match=r"scale_factor=3 upsamples x's \(3, 3\) to \(9, 9\), but skip's size is \(6, 6\)"):
        f(x, skip, scale_factor=3)
    with pytest.raises(ValueError, match="skip's batch size must be x's"):
        f(x, torch.cat([skip, skip]))
    with pytest.raises(ValueError, match="mode must be one of"):
        f(x, skip, mode="bicubic")
    with pytest.raises(ValueError, match="align_corners=True needs mode='bilinear'"):
        f(x, skip, mode="nearest", align_corners=True)
    with pytest.raises(ValueError, match="must both be 4-D"):
        f(x, skip[0])
    with pytest.raises(TypeError, match="skip dtype must be one of"):
        f(x, skip.long())
    with pytest.raises(ValueError, match="scale_factor must be a positive"):
        f(x, skip, scale_factor=-2)
    with pytest.raises(TypeError, match="x must be a Tensor"):
        f(x.numpy(), skip)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_opcheck(device, backend):
    x = data((1, 2, 3, 4)).float().to(device).requires_grad_()
    skip = data((1, 3, 6, 8), seed=1).float().to(device).requires_grad_()
    torch.library.opcheck(torch.ops.pydense.upsample_concat.default,
                          (x, skip, "bilinear", False, 2.0, 2.0, backend))
    g = data((1, 2, 6, 8), seed=2).float().to(device)
    torch.library.opcheck(torch.ops.pydense.upsample_concat_backward.default,
                          (g, [1, 2, 3, 4], "nearest", False, 2.0, 2.0, backend, False))


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_compile_fullgraph(device, backend):
    skip = data((1, 2, 8, 10), seed=1).float().to(device)
    model = lambda t: pydense.functional.upsample_concat(t * 2, skip, backend=backend).sin()  # noqa: E731
    check_compile_fullgraph(model, data((1, 3, 4, 5)).float().to(device).requires_grad_())


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_deterministic_backward(device, backend):
    x = data((2, 4, 5, 6)).float().to(device).requires_grad_()
    skip = data((2, 3, 10, 12), seed=1).float().to(device)
    g = data((2, 7, 10, 12), seed=2).float().to(device)
    grads = [torch.autograd.grad(pydense.functional.upsample_concat(x, skip, backend=backend), x, g)[0]
             for _ in range(2)]
    assert torch.equal(grads[0], grads[1])


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("mode,lay", [("bilinear", "nchw"), ("nearest", "channels_last"),
                                      ("nearest-exact", "nchw")])
def test_double_backward_gradgradcheck(device, backend, mode, lay):
    """Second derivatives (gradient penalties, create_graph=True): x's gradient op has autograd of
    its own (the upsampling again: the op with an empty skip), checked by gradgradcheck in fp64
    and against the eager chain's."""
    x, skip = data((1, 2, 3, 3)), data((1, 2, 6, 6), seed=1)
    xd, sd = to(x, device, lay=lay).requires_grad_(), to(skip, device, lay=lay).requires_grad_()
    fn = lambda a, b: pydense.functional.upsample_concat(a, b, mode=mode, backend=backend)  # noqa: E731
    # fast_mode: random projections instead of full Jacobians (the interpreter runs few calls)
    assert torch.autograd.gradgradcheck(fn, (xd, sd), fast_mode=True)
    # a gradient penalty: d/d(x, skip) |dL/dx|^2 + |dL/dskip|^2 through create_graph, against the
    # eager chain (CPU, fp64)
    m = data((1, 4, 6, 6), seed=2)
    eager = lambda a, b: torch.cat([F.interpolate(a, scale_factor=2, mode=mode), b], 1)  # noqa: E731
    check_gradient_penalty(fn, (xd, sd), eager, (x.clone().requires_grad_(), skip.clone().requires_grad_()), m)
    # the gradient op itself: schema, fake kernel and autograd registration
    g = to(data((1, 2, 6, 6), seed=3), device, lay=lay).requires_grad_()
    torch.library.opcheck(torch.ops.pydense.upsample_concat_backward.default,
                          (g, [1, 2, 3, 3], mode, False, 2.0, 2.0, backend, lay == "channels_last"))
