"""pixel_shuffle / pixel_unshuffle on every backend against the float64 oracle (pydense.reference)."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import pydense
from pydense import reference
from pydense.ops import pixel_shuffle as ops

from helpers import check_compile_fullgraph, CPU_BACKENDS, DTYPES, LAYOUTS, backend_params, layout, to

BACKENDS = backend_params()
# (N, C, H, W, factor) of the pixel_shuffle input.
SHAPES = {"r2": (2, 12, 5, 7, 2), "r3": (1, 18, 4, 3, 3), "r1": (2, 3, 4, 5, 1), "r4-1px": (1, 32, 1, 1, 4)}


def data(shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("lay", LAYOUTS)
@pytest.mark.parametrize("cfg", SHAPES.values(), ids=SHAPES.keys())
def test_shuffle_unshuffle_and_grads_match_oracle(device, backend, dtype, lay, cfg):
    *shape, r = cfg
    x = data(shape)
    xd = to(x, device, dtype, lay).requires_grad_()
    y = pydense.functional.pixel_shuffle(xd, r, backend=backend)
    expected = reference.pixel_shuffle(x.to(dtype).double(), r)
    assert y.dtype == dtype and y.shape == expected.shape
    assert torch.equal(y.double().cpu(), expected)
    # channels_last in, channels_last out (for 1x1 inputs both layouts coincide: NCHW then)
    fmt = torch.channels_last if lay == "channels_last" and shape[2:] != [1, 1] else torch.contiguous_format
    assert y.is_contiguous(memory_format=fmt)
    g = data(expected.shape, seed=1)
    y.backward(to(g, device, dtype, lay))
    assert torch.equal(xd.grad.double().cpu(), reference.pixel_unshuffle(g.to(dtype).double(), r))

    yd = to(expected, device, dtype, lay).requires_grad_()
    z = pydense.functional.pixel_unshuffle(yd, r, backend=backend)
    assert torch.equal(z.double().cpu(), reference.pixel_unshuffle(expected, r))
    gz = data(z.shape, seed=2)
    z.backward(to(gz, device, dtype, lay))
    assert torch.equal(yd.grad.double().cpu(), reference.pixel_shuffle(gz.to(dtype).double(), r))


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_batch_dims_and_gradcheck(device, backend):
    x = data((2, 3, 8, 4, 6)).to(device)
    for xs in (x[0, 0], x):  # (C, H, W) and (N, M, C, H, W)
        assert torch.equal(pydense.functional.pixel_shuffle(xs, 2, backend=backend),
                           F.pixel_shuffle(xs, 2))
        assert torch.equal(pydense.functional.pixel_unshuffle(xs, 2, backend=backend),
                           F.pixel_unshuffle(xs, 2))
    x4 = data((1, 8, 3, 2)).to(device).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: pydense.functional.pixel_shuffle(t, 2, backend=backend), (x4,))
    assert torch.autograd.gradcheck(lambda t: pydense.functional.pixel_unshuffle(t, 1, backend=backend), (x4,))


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 2), c=st.integers(1, 3), h=st.integers(1, 6), w=st.integers(1, 6),
       r=st.integers(1, 4), backend=st.sampled_from([b for b in CPU_BACKENDS if b != "torch"]),
       lay=st.sampled_from(LAYOUTS))
def test_hypothesis_roundtrip(n, c, h, w, r, backend, lay):
    x = layout(data((n, c * r * r, h, w), seed=n + c + h + w + r), lay)
    y = pydense.functional.pixel_shuffle(x, r, backend=backend)
    assert torch.equal(y, F.pixel_shuffle(x, r))
    assert torch.equal(pydense.functional.pixel_unshuffle(y, r, backend=backend), x)


BAD = {
    "2d": (lambda x: (x[0, 0], 2, True), ValueError, "at least 3 dimensions"),
    "int-dtype": (lambda x: (x.long(), 2, True), TypeError, "input dtype"),
    "zero-factor": (lambda x: (x, 0, True), ValueError, "upscale_factor must be a positive int"),
    "float-factor": (lambda x: (x, 2.0, False), ValueError, "downscale_factor must be a positive int"),
    "channels": (lambda x: (x, 3, True), ValueError, "divisible by upscale_factor"),
    "height": (lambda x: (x, 4, False), ValueError, "divisible by downscale_factor"),
}


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("case", BAD.values(), ids=BAD.keys())
def test_bad_arguments(device, backend, case):
    make, exc, message = case
    x, r, upscale = make(data((1, 8, 6, 6)).float().to(device))
    fn = pydense.functional.pixel_shuffle if upscale else pydense.functional.pixel_unshuffle
    with pytest.raises(exc, match=message):
        fn(x, r, backend=backend)


def test_compiled_op_checks_shapes_itself():
    with pytest.raises(RuntimeError, match="out shape"):
        torch.ops.pydense._pixel_shuffle(torch.randn(1, 8, 2, 2), 2, True, torch.empty(1, 2, 2, 2))


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("lay", ["nchw", "channels_last"])
def test_opcheck(device, backend, lay):
    x = to(data((2, 8, 3, 5)), device, torch.float32, lay).requires_grad_()
    torch.library.opcheck(ops.pixel_shuffle_op, (x, 2, backend))
    torch.library.opcheck(ops.pixel_unshuffle_op, (x, 1, backend))


class Upsampler(torch.nn.Module):
    """EDSR's x2 upsampler: conv F -> 4F, PixelShuffle(2)."""

    def __init__(self, backend):
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 16, 3, padding=1)
        self.shuffle = pydense.nn.PixelShuffle(2, backend=backend)

    def forward(self, x):
        return self.shuffle(self.conv(x))


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_compile_fullgraph_no_graph_breaks(device, backend):
    torch.manual_seed(0)
    model = Upsampler(backend).to(device)
    x = torch.randn(2, 4, 5, 6, device=device, requires_grad=True)
    check_compile_fullgraph(model, x)


def test_nn_modules_are_drop_ins():
    up, down = pydense.nn.PixelShuffle(2, backend="cpu"), pydense.nn.PixelUnshuffle(2, backend="cpu")
    assert isinstance(up, torch.nn.PixelShuffle) and isinstance(down, torch.nn.PixelUnshuffle)
    assert "backend='cpu'" in repr(up)
    x = data((1, 8, 3, 3))
    assert torch.equal(down(up(x)), x)


@pytest.mark.parametrize("device,backend", [p for p in BACKENDS if p.id.endswith("-triton")])
def test_triton_int64_index_path(device, backend, monkeypatch):
    """The int64 index variant (used when a tensor spans 2^31 elements) on small tensors."""
    from pydense.kernels import pixel_shuffle as kernels

    monkeypatch.setattr(kernels, "_needs_int64", lambda *tensors: True)
    for lay in ("nchw", "channels_last", "strided"):
        x = to(data((2, 18, 4, 6)), device, lay=lay)
        assert torch.equal(pydense.functional.pixel_shuffle(x, 3, backend=backend).cpu(),
                           reference.pixel_shuffle(x.cpu(), 3))
        assert torch.equal(pydense.functional.pixel_unshuffle(x, 2, backend=backend).cpu(),
                           reference.pixel_unshuffle(x.cpu(), 2))
