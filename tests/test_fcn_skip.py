"""FCN's fused skip (deconvolution + 1x1 score + scale + crop + add) on every backend against the
float64 oracle (pydense.reference.fcn_skip), forward and every gradient."""
import pytest
import torch

import pydense
from pydense import reference

from helpers import check_gradient_penalty, DTYPES, LAYOUTS, backend_params, check_compile_fullgraph, to

BACKENDS = backend_params()
TOL = {torch.float32: 2e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2, torch.float64: 1e-10}

# name: (coarse shape, skip shape, factor, offset, skip_scale, score weight, bias)
CONFIGS = {
    "scored": ((2, 3, 3, 4), (2, 3, 11, 12), 2, (1, 2), 1.0, False, False),
    "score-conv": ((2, 5, 3, 3), (2, 37, 10, 11), 2, 1, 0.5, True, True),  # 2 channel blocks
    "many-classes": ((1, 35, 2, 2), (1, 6, 7, 8), 2, (0, 1), 1.0, True, False),  # 2 class blocks
    "factor-3": ((1, 2, 3, 2), (1, 4, 13, 11), 3, (1, 0), 0.01, True, True),
}


def data(shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def inputs(name, dtype=torch.float64):
    cshape, sshape, factor, offset, scale, score, bias = CONFIGS[name]
    k, cs = cshape[1], sshape[1]
    t = [data(cshape), data(sshape, 1), data((k, cs), 2) * cs ** -0.5 if score else None,
         data((k,), 3) if bias else None]
    return [None if v is None else v.to(dtype).double() for v in t], factor, offset, scale


def check(got, want, dtype):
    tol = TOL[dtype] * max(1.0, want.abs().max().item())
    torch.testing.assert_close(got.cpu().double(), want, rtol=tol, atol=tol)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("lay", LAYOUTS)
@pytest.mark.parametrize("name", CONFIGS)
def test_forward_backward_match_oracle(device, backend, dtype, lay, name):
    (c, s, w, b), factor, offset, scale = inputs(name, dtype)
    cd, sd = to(c, device, dtype, lay).requires_grad_(), to(s, device, dtype, lay).requires_grad_()
    wd = None if w is None else to(w, device, dtype).requires_grad_()
    bd = None if b is None else to(b, device, dtype).requires_grad_()
    out = pydense.functional.fcn_skip(cd, sd, factor=factor, offset=offset, skip_scale=scale,
                                      score_weight=wd, score_bias=bd, backend=backend)
    leaves = [t.clone().requires_grad_() if t is not None else None for t in (c, s, w, b)]
    ref = reference.fcn_skip(leaves[0], leaves[1], factor, offset, scale, leaves[2], leaves[3])
    assert out.shape == ref.shape and out.dtype == dtype
    if lay == "channels_last":
        assert out.is_contiguous(memory_format=torch.channels_last)
    check(out, ref.detach(), dtype)
    g = data(ref.shape, 4).to(dtype).double()
    out.backward(to(g, device, dtype, lay))
    ref.backward(g)
    for got, want in zip((cd, sd, wd, bd), leaves):
        if want is not None:
            check(got.grad, want.grad, dtype)
    # Outside the crop the skip's gradient is exactly zero.
    oh, ow = out.shape[-2:]
    off = (offset, offset) if isinstance(offset, int) else offset
    mask = torch.ones(s.shape, dtype=torch.bool)
    mask[..., off[0]:off[0] + oh, off[1]:off[1] + ow] = False
    assert (sd.grad.cpu()[mask] == 0).all()


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_float64_gradcheck(device, backend):
    c = data((1, 2, 2, 2)).to(device).requires_grad_()
    s = data((1, 3, 7, 7), 1).to(device).requires_grad_()
    w = data((2, 3), 2).to(device).requires_grad_()
    b = data((2,), 3).to(device).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda *t: pydense.functional.fcn_skip(t[0], t[1], offset=(1, 0), skip_scale=0.5,
                                               score_weight=t[2], score_bias=t[3], backend=backend),
        (c, s, w, b), fast_mode=True)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_fcn8s_shapes_4d_weight_and_unbatched(device, backend):
    """voc-fcn8s' second skip: upscore_pool4 (34 -> 70) + crop(score_pool3 of the 88x88 pool3, 9),
    at 8 channels here; a (K, C, 1, 1) weight as nn.Conv2d holds it; 3-D input."""
    c, s = data((3, 17, 17)).float().to(device), data((8, 44, 44), 1).float().to(device)
    w, b = (data((3, 8, 1, 1), 2) * 0.3).float().to(device), data((3,), 3).float().to(device)
    out = pydense.functional.fcn_skip(c, s, offset=5, skip_scale=1e-2, score_weight=w, score_bias=b,
                                      backend=backend)
    ref = reference.fcn_skip(c.double()[None].cpu(), s.double()[None].cpu(), 2, 5, 1e-2,
                             w.double().cpu(), b.double().cpu())[0]
    assert out.shape == (3, 36, 36)
    check(out, ref, torch.float32)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_module_matches_eager_chain(device, backend):
    torch.manual_seed(0)
    m = pydense.nn.FCNSkip(6, 4, offset=2, backend=backend).to(device)
    c, s = torch.randn(2, 4, 3, 3, device=device), torch.randn(2, 6, 12, 12, device=device)
    up = torch.nn.ConvTranspose2d(4, 4, 4, stride=2, bias=False).to(device)
    pydense.nn.init.bilinear_(up.weight)
    want = up(c) + m.score(s)[..., 2:10, 2:10]
    torch.testing.assert_close(m(c, s), want, rtol=1e-5, atol=1e-5)
    assert "offset=2" in repr(m)


def test_errors():
    f = pydense.functional.fcn_skip
    c, s, w = torch.randn(1, 3, 4, 4), torch.randn(1, 8, 12, 12), torch.randn(3, 8)
    with pytest.raises(ValueError, match=r"offset \(3, 3\) crops a \(10, 10\) window .* outside skip_features' size \(12, 12\)"):
        f(c, s, offset=3, score_weight=w)
    with pytest.raises(ValueError, match="score_weight scores 4 classes but coarse has 3"):
        f(c, s, offset=1, score_weight=torch.randn(4, 8))
    with pytest.raises(ValueError, match="score_weight expects 7 skip channels, skip_features has 8"):
        f(c, s, offset=1, score_weight=torch.randn(3, 7))
    with pytest.raises(ValueError, match="without score_weight skip_features must already be scored"):
        f(c, s, offset=1)
    with pytest.raises(ValueError, match="factor must be a positive int"):
        f(c, s, factor=0, offset=1, score_weight=w)
    with pytest.raises(ValueError, match="offset must be a non-negative int"):
        f(c, s, offset=-1, score_weight=w)
    with pytest.raises(TypeError, match="offset"):
        f(c, s, score_weight=w)
    with pytest.raises(ValueError, match="score_bias needs score_weight"):
        f(c, s[:, :3], offset=1, score_bias=torch.randn(3))
    with pytest.raises(ValueError, match=r"score_bias must be \(3,\)"):
        f(c, s, offset=1, score_weight=w, score_bias=torch.randn(4))
    with pytest.raises(TypeError, match="skip_features dtype must equal coarse's dtype"):
        f(c, s.double(), offset=1, score_weight=w)
    with pytest.raises(ValueError, match="batch size must be coarse's"):
        f(c, torch.cat([s, s]), offset=1, score_weight=w)
    with pytest.raises(ValueError, match="skip_scale must be a finite number"):
        f(c, s, offset=1, score_weight=w, skip_scale=float("nan"))
    with pytest.raises(ValueError, match="score_weight must be"):
        f(c, s, offset=1, score_weight=torch.randn(3, 8, 3, 3))
    with pytest.raises(RuntimeError, match="must lie inside skip"):  # the compiled op checks too
        torch.ops.pydense._fcn_skip_fwd(c, s, w, None, *[torch.zeros(2, 10, dtype=t) for t in (torch.int32, torch.float32)] * 2,
                                        [3, 3], 1.0, torch.empty(1, 3, 10, 10))


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("coarse_shape", [(1, 3, 0, 3), (1, 3, 3, 0)], ids=["H=0", "W=0"])
def test_empty_coarse_plane_raises(device, backend, coarse_shape):
    """An empty coarse plane read tap -1 and crashed; now a ValueError naming coarse, as the
    eager chain's ConvTranspose2d raises."""
    with pytest.raises(ValueError, match="coarse has an empty spatial plane"):
        pydense.functional.fcn_skip(torch.zeros(coarse_shape, device=device),
                                    torch.zeros(1, 3, 8, 11, device=device), offset=1, backend=backend)


@pytest.mark.parametrize("device,backend", [p for p in BACKENDS if "torch" not in p.id])
def test_inf_coarse_score_spreads_without_nan(device, backend):
    """An inf coarse score on the border gives inf over the outputs it reaches and no NaN (the
    missing border tap is not multiplied by its zero weight), as the diagonal deconvolution does."""
    (coarse, skip, w, b), factor, offset, scale = inputs("score-conv")
    coarse[0, 1, 0, 2] = float("inf")
    got = pydense.functional.fcn_skip(coarse.float().to(device), skip.float().to(device), factor=factor,
                                      offset=offset, skip_scale=scale, score_weight=w.float().to(device),
                                      score_bias=b.float().to(device), backend=backend).cpu().double()
    assert not got.isnan().any()
    assert got[0, 1].isinf().sum() == 16 and got.isinf().sum() == 16
    fin = coarse.clone()
    fin[0, 1, 0, 2] = 0
    want = reference.fcn_skip(fin, skip, factor, offset, scale, w, b)
    keep = got.isfinite()
    check(got[keep], want[keep], torch.float32)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_opcheck(device, backend):
    c = data((1, 2, 2, 3)).float().to(device).requires_grad_()
    s = data((1, 3, 8, 9), 1).float().to(device).requires_grad_()
    w = data((2, 3), 2).float().to(device).requires_grad_()
    b = data((2,), 3).float().to(device).requires_grad_()
    torch.library.opcheck(torch.ops.pydense.fcn_skip.default, (c, s, w, b, 2, [1, 0], 0.5, backend))
    torch.library.opcheck(torch.ops.pydense.fcn_skip_skip_grad.default,
                          (data((1, 2, 6, 8), 4).float().to(device), w.detach(), [1, 3, 8, 9], [1, 0],
                           0.5, backend, False))


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_compile_fullgraph(device, backend):
    s = data((1, 5, 9, 9), 1).float().to(device)
    w, b = data((2, 5), 2).float().to(device), data((2,), 3).float().to(device)
    model = lambda t: pydense.functional.fcn_skip(  # noqa: E731
        t * 2, s, offset=1, score_weight=w, score_bias=b, backend=backend).sin()
    check_compile_fullgraph(model, data((1, 2, 3, 3)).float().to(device).requires_grad_())


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_autocast_runs_in_lower_precision(device, backend):
    c, s = data((1, 3, 3, 3)).float().to(device), data((1, 4, 10, 10), 1).float().to(device)
    w = data((3, 4), 2).float().to(device)
    dt = torch.bfloat16
    with torch.autocast(device_type=device, dtype=dt):
        out = pydense.functional.fcn_skip(c, s, offset=1, score_weight=w, backend=backend)
    assert out.dtype == dt
    ref = reference.fcn_skip(*(t.to(dt).double().cpu() for t in (c, s)), 2, 1, 1.0, w.to(dt).double().cpu())
    check(out, ref, dt)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_deterministic_backward(device, backend):
    c = data((2, 4, 4, 5)).float().to(device).requires_grad_()
    s = data((2, 40, 13, 15), 1).float().to(device).requires_grad_()
    w = data((4, 40), 2).float().to(device).requires_grad_()
    g = data((2, 4, 10, 12), 3).float().to(device)
    runs = [torch.autograd.grad(pydense.functional.fcn_skip(c, s, offset=(2, 3), score_weight=w,
                                                           backend=backend), (c, s, w), g)
            for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(*runs))


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("score", [True, False], ids=["score-conv", "scored"])
def test_double_backward_gradgradcheck(device, backend, score):
    """Second derivatives (gradient penalties, create_graph=True): the gradient ops have autograd of
    their own (the skip gradient's: a 1x1 convolution and its weight gradient; the coarse
    gradient's: the deconvolution), checked by gradgradcheck in fp64 and against the eager chain."""
    c, s = data((1, 2, 2, 3)), data((1, 3 if score else 2, 8, 11), 1)
    w, b = (data((2, 3), 2), data((2,), 3)) if score else (None, None)
    args = [t for t in (c, s, w, b) if t is not None]
    dev = [to(t, device).requires_grad_() for t in args]
    fn = lambda *t: pydense.functional.fcn_skip(  # noqa: E731
        t[0], t[1], offset=(1, 2), skip_scale=0.5, score_weight=t[2] if score else None,
        score_bias=t[3] if score else None, backend=backend)
    # fast_mode: random projections instead of full Jacobians (the interpreter runs few calls)
    assert torch.autograd.gradgradcheck(fn, tuple(dev), fast_mode=True)
    # a gradient penalty: d/d(every input) |dL/d(every input)|^2 through create_graph, against the
    # eager chain (stock torch, CPU, fp64)
    m = data((1, 2, 6, 8), seed=4)
    eager = lambda *t: pydense.functional.fcn_skip(  # noqa: E731
        t[0], t[1], offset=(1, 2), skip_scale=0.5, score_weight=t[2] if score else None,
        score_bias=t[3] if score else None, backend="torch")
    check_gradient_penalty(fn, dev, eager, [t.clone().requires_grad_() for t in args], m)
    # the skip gradient op itself: schema, fake kernel and autograd registration
    g = to(m, device).requires_grad_()
    wd = dev[2] if score else None
    torch.library.opcheck(torch.ops.pydense.fcn_skip_skip_grad.default,
                          (g, wd, list(s.shape), [1, 2], 0.5, backend, False))
