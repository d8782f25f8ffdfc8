"""conv2d_pixel_shuffle (EDSR's sub-pixel upsampler: the convolution's epilogue stores into the
pixel-shuffled layout) on every backend against the float64 oracle
(pydense.reference.conv2d_pixel_shuffle: F.conv2d then pixel-shuffle loops, in float64): forward
and gradients in every dtype and layout, gradcheck, errors, opcheck, torch.compile, autocast and
the nn module."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import pydense
from pydense import reference
from pydense.ops import conv as ops

from helpers import CPU_BACKENDS, backend_params, check_compile_fullgraph, layout, requires_cuda, to
from test_conv import check_against_oracle, close, data

# "cpu-aten": the cpu backend with ATen's convolution (then the shuffle) for every group size, as
# it runs dense convolutions with C > DIRECT_MAX_CG; plain "cpu" runs these small-C cases on the
# direct C++ kernels (csrc/common/conv.h, shared with the CUDA kernels).
BACKENDS = backend_params() + [pytest.param("cpu", "cpu-aten", id="cpu-aten")]
F = pydense.functional

# (N, C, H, W, C_out, kernel, r, padding)
CONFIGS = {
    "c3-k3-r2": (2, 3, 5, 7, 2, 3, 2, None),
    "c5-k1-r3": (2, 5, 6, 5, 1, 1, 3, None),
    "c1-k3-r2": (2, 1, 7, 6, 3, 3, 2, None),  # Cg == 1: the GEMM kernel, not the depthwise one
    "c4-k2x3-r2-pad": (1, 4, 5, 6, 2, (2, 3), 2, (1, 0)),
}
# The interpreter-run Triton kernels: a subset of the (dtype, layout) grid covering each of them.
SLOW_GRID = {(torch.float32, "nchw"), (torch.float32, "strided"), (torch.float16, "channels_last"),
             (torch.bfloat16, "nchw")}


def use(backend, monkeypatch):
    if backend == "cpu-aten":
        monkeypatch.setattr(ops, "DIRECT_MAX_CG", 0)
        return "cpu"
    return backend


def case(cfg, dtype=torch.float64, seed=0):
    N, C, H, W, Co, k, r, padding = cfg
    kh, kw = (k, k) if isinstance(k, int) else k
    x = data((N, C, H, W), seed).to(dtype).double()
    w = data((Co * r * r, C, kh, kw), seed + 1, scale=(C * kh * kw) ** -0.5).to(dtype).double()
    b = data((Co * r * r,), seed + 2).to(dtype).double()
    return x, w, b, r, padding


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("lay", ["nchw", "channels_last", "strided"])
@pytest.mark.parametrize("cfg", CONFIGS.values(), ids=CONFIGS.keys())
def test_forward_and_grads_match_oracle(device, backend, dtype, lay, cfg, monkeypatch):
    if dtype != torch.float32 and lay == "strided":
        pytest.skip("strided inputs: covered in float32")
    if device == "cpu" and backend == "triton" and (dtype, lay) not in SLOW_GRID:
        pytest.skip("interpreter: covered by the reduced (dtype, layout) grid")
    if cfg[1] == 1 and lay == "channels_last":
        pytest.skip("C = 1: channels_last input is NCHW-contiguous (same memory order)")
    backend = use(backend, monkeypatch)
    x, w, b, r, padding = case(cfg, dtype)
    check_against_oracle(
        lambda x, w, b: reference.conv2d_pixel_shuffle(x, w, b, r, padding),
        lambda x, w, b: F.conv2d_pixel_shuffle(x, w, b, r, padding=padding, backend=backend),
        (x, w, b), device, dtype, lay)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_general_epilogue_into_shuffled_layout(device, backend, monkeypatch):
    """pydense::conv2d with shuffle and the full epilogue (residual read in the shuffled layout,
    ReLU recomputed for the backward, scale), no bias."""
    backend = use(backend, monkeypatch)
    x, w, _, r, _ = case(CONFIGS["c3-k3-r2"])
    res = data((2, 2, 10, 14), 5)

    def oracle(x, w, res):
        return reference.pixel_shuffle(reference.conv2d(x, w, padding=1, activation="relu") * -0.5, r) + res

    def ours(x, w, res):
        return ops.conv2d_op(x, w, None, res, [1, 1], [1, 1, 1, 1], [1, 1], 1, True, -0.5, backend, r)

    check_against_oracle(oracle, ours, (x, w, res), device, torch.float32, "channels_last")


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_gradcheck_float64(device, backend, monkeypatch):
    """gradcheck (fast mode: random projections, so the interpreter-run kernels stay quick)."""
    backend = use(backend, monkeypatch)
    for cfg in (CONFIGS["c3-k3-r2"], CONFIGS["c1-k3-r2"]):
        x, w, b, r, padding = case(cfg)
        x, w, b = (to(t[:1, ..., :4, :5] if t.dim() == 4 and t is x else t, device).requires_grad_()
                   for t in (x, w, b))
        assert torch.autograd.gradcheck(
            lambda x, w, b: F.conv2d_pixel_shuffle(x, w, b, r, padding=padding, backend=backend),
            (x, w, b), fast_mode=True)
    x, w, _, r, _ = case(CONFIGS["c5-k1-r3"])
    x, w = to(x[:1, :, :3, :4], device).requires_grad_(), to(w, device).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, w: F.conv2d_pixel_shuffle(x, w, None, r, backend=backend),
                                    (x, w), fast_mode=True)


@settings(max_examples=12, deadline=None)
@given(n=st.integers(1, 2), c=st.integers(1, 4), co=st.integers(1, 3), h=st.integers(1, 6),
       w=st.integers(1, 6), kh=st.integers(1, 3), kw=st.integers(1, 3), r=st.integers(1, 3),
       p=st.integers(0, 2), backend=st.sampled_from([b for b in CPU_BACKENDS if b != "torch"] + ["cpu-aten"]),
       lay=st.sampled_from(["nchw", "channels_last"]))
def test_hypothesis_geometry(n, c, co, h, w, kh, kw, r, p, backend, lay):
    if h + 2 * p < kh or w + 2 * p < kw:
        return  # no output: the bad-argument tests cover the error
    with pytest.MonkeyPatch.context() as mp:
        backend = use(backend, mp)
        x = layout(data((n, c, h, w), seed=h * w), lay)
        wt = data((co * r * r, c, kh, kw), seed=kh * kw)
        y = F.conv2d_pixel_shuffle(x, wt, None, r, padding=p, backend=backend)
        torch.testing.assert_close(y, reference.conv2d_pixel_shuffle(x, wt, None, r, p), rtol=1e-10, atol=1e-10)


def bad_cases():
    x, w, b = torch.randn(1, 3, 5, 5), torch.randn(8, 3, 3, 3), torch.randn(8)
    return {
        "factor-zero": ((x, w, b, 0), {}, ValueError, "upscale_factor must be a positive int"),
        "factor-float": ((x, w, b, 2.0), {}, ValueError, "upscale_factor must be a positive int"),
        "factor-bool": ((x, w, b, True), {}, ValueError, "upscale_factor must be a positive int"),
        "channels-not-r2": ((x, w[:6], b[:6], 2), {}, ValueError,
                            r"weight.size\(0\) \(6\) must be divisible by upscale_factor\*\*2 = 4"),
        "weight-rank": ((x, w[0], b, 2), {}, ValueError, r"weight must be 4-D \(out_channels \* upscale_factor"),
        "weight-in-channels": ((x, torch.randn(8, 2, 3, 3), b, 2), {}, ValueError,
                               r"expects 2 input channels \(weight.size\(1\)\)"),
        "bias-shape": ((x, w, b[:4], 2), {}, ValueError, r"bias must have shape \(8,\)"),
        "input-rank": ((x[0, 0], w, b, 2), {}, ValueError, "input must be 4-D"),
        "weight-dtype": ((x, w.double(), b, 2), {}, TypeError, "weight dtype must equal"),
        "bias-dtype": ((x, w, b.half(), 2), {}, TypeError, "bias dtype must equal"),
        "int-input": ((x.long(), w.long(), b.long(), 2), {}, TypeError, "input dtype"),
        "weight-device": ((x, w.to("meta"), b, 2), {}, ValueError, "weight must be on the input's device"),
        "negative-padding": ((x, w, b, 2), {"padding": -1}, ValueError, "padding must be non-negative"),
        "padding-triple": ((x, w, b, 2), {"padding": (1, 1, 1)}, ValueError, "padding must be an int or a pair"),
        "output-empty": ((x, torch.randn(8, 3, 7, 7), b, 2), {"padding": 0}, ValueError, "output size"),
        "backend": ((x, w, b, 2), {"backend": "cudnn"}, ValueError, "backend must be one of"),
    }


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("bad", bad_cases().values(), ids=bad_cases().keys())
def test_bad_arguments(device, backend, bad, monkeypatch):
    backend = use(backend, monkeypatch)
    args, kwargs, exc, message = bad
    args = [a.to(device) if isinstance(a, torch.Tensor) and a.device.type != "meta" else a for a in args]
    kwargs = {"backend": backend, **kwargs}
    with pytest.raises(exc, match=message):
        F.conv2d_pixel_shuffle(*args, **kwargs)


def test_compiled_op_checks_the_shuffled_output_itself():
    x, w = torch.randn(1, 3, 5, 5), torch.randn(8, 3, 3, 3)
    args = (x, w, None, None, [1, 1], [1, 1], [1, 1], False, 1.0)
    with pytest.raises(RuntimeError, match="is not a pixel shuffle by 2"):
        torch.ops.pydense._conv2d_fwd(*args, 2, torch.empty(1, 2, 10, 9))
    with pytest.raises(RuntimeError, match="not divisible by shuffle"):
        torch.ops.pydense._conv2d_fwd(*args, 3, torch.empty(1, 1, 15, 15))
    with pytest.raises(RuntimeError, match="shuffle must be positive"):
        torch.ops.pydense._conv2d_fwd(*args, 0, torch.empty(1, 8, 5, 5))
    out = torch.empty(1, 2, 10, 10)
    torch.ops.pydense._conv2d_fwd(*args, 2, out)
    close(out, reference.conv2d_pixel_shuffle(x.double(), w.double(), None, 2), torch.float32)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("lay", ["nchw", "channels_last"])
def test_opcheck(device, backend, lay, monkeypatch):
    backend = use(backend, monkeypatch)
    x = to(data((2, 3, 5, 4)), device, torch.float32, lay).requires_grad_()
    w = to(data((8, 3, 3, 3), 1), device, torch.float32).requires_grad_()
    b = to(data((8,), 2), device, torch.float32).requires_grad_()
    r = to(data((2, 2, 10, 8), 3), device, torch.float32, lay).requires_grad_()
    torch.library.opcheck(ops.conv2d_op, (x, w, b, None, [1, 1], [1, 1, 1, 1], [1, 1], 1, False, 1.0, backend, 2))
    torch.library.opcheck(ops.conv2d_op, (x, w, None, r, [1, 1], [1, 1, 1, 1], [1, 1], 1, True, 0.5, backend, 2))


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_compile_fullgraph_no_graph_breaks(device, backend, monkeypatch):
    backend = use(backend, monkeypatch)
    torch.manual_seed(0)
    model = pydense.nn.Conv2dPixelShuffle(3, 2, 3, 2, backend=backend).to(device)
    x = torch.randn(1, 3, 5, 4, device=device, requires_grad=True)
    check_compile_fullgraph(model, x)


def test_autocast_casts_to_lower_precision():
    x, w, b, r, _ = case(CONFIGS["c3-k3-r2"], torch.float32)
    x, w, b = x.float(), w.float(), b.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = F.conv2d_pixel_shuffle(x, w, b, r, backend="cpu")
        expected = torch.nn.functional.pixel_shuffle(torch.nn.functional.conv2d(x, w, b, padding=1), r)
    assert y.dtype == expected.dtype == torch.bfloat16
    close(y, reference.conv2d_pixel_shuffle(x.bfloat16(), w.bfloat16(), b.bfloat16(), r), torch.bfloat16)


def test_unbatched_input_and_module_is_a_drop_in_for_conv_then_pixel_shuffle():
    torch.manual_seed(0)
    seq = torch.nn.Sequential(torch.nn.Conv2d(4, 3 * 9, 3, padding=1), torch.nn.PixelShuffle(3))
    ours = pydense.nn.Conv2dPixelShuffle.from_sequential(seq, backend="cpu")
    assert ours.weight.shape == (27, 4, 3, 3) and "backend='cpu'" in repr(ours)
    x = torch.randn(2, 4, 5, 6)
    torch.testing.assert_close(ours(x), seq(x))
    torch.testing.assert_close(ours(x[0]), seq(x[0]))  # (C, H, W)
    y = ours(x.contiguous(memory_format=torch.channels_last))
    assert y.is_contiguous(memory_format=torch.channels_last)
    plain = pydense.nn.Conv2dPixelShuffle(4, 2, 3, 2, bias=False)
    assert plain.weight.shape == (8, 4, 3, 3) and plain.bias is None and plain.padding == (1, 1)
    assert plain(x).shape == (2, 2, 10, 12)
    with pytest.raises(ValueError, match="stride 1"):
        pydense.nn.Conv2dPixelShuffle.from_sequential(
            torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, stride=2), torch.nn.PixelShuffle(2)))
    with pytest.raises(ValueError, match="expected nn.Sequential"):
        pydense.nn.Conv2dPixelShuffle.from_sequential(torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3)))


@pytest.mark.parametrize("device,backend", [p for p in BACKENDS if p.id.endswith("-triton")])
def test_triton_int64_index_path(device, backend, monkeypatch):
    """The int64 index variant (used when a tensor spans 2^30 elements) on a small tensor."""
    from pydense.kernels import conv as kernels

    monkeypatch.setattr(kernels, "_needs_int64", lambda *tensors: True)
    x, w, b, r, padding = case(CONFIGS["c3-k3-r2"])
    y = F.conv2d_pixel_shuffle(to(x, device, lay="channels_last"), to(w, device), to(b, device), r,
                               backend=backend)
    torch.testing.assert_close(y.cpu(), reference.conv2d_pixel_shuffle(x, w, b, r))


@requires_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("lay", ["nchw", "channels_last"])
@pytest.mark.parametrize("r", [2, 3])
def test_gpu_edsr_like_shapes(backend, dtype, lay, r):
    """Channel counts that reach the tensor-core paths (WMMA on the cuda backend, tl.dot tiles
    on Triton) and the tile edges: C = 32, C_out = 16, odd spatial sizes."""
    x = data((2, 32, 9, 11)).to(dtype).double()
    w = data((16 * r * r, 32, 3, 3), 1, scale=(32 * 9) ** -0.5).to(dtype).double()
    b = data((16 * r * r,), 2).to(dtype).double()
    check_against_oracle(
        lambda x, w, b: reference.conv2d_pixel_shuffle(x, w, b, r),
        lambda x, w, b: F.conv2d_pixel_shuffle(x, w, b, r, backend=backend),
        (x, w, b), "cuda", dtype, lay)
