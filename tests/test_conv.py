"""conv2d / conv2d_fused / conv_transpose2d on every backend against the float64 oracle
(pydense.reference: F.conv2d / F.conv_transpose2d in float64), forward and both gradients."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import pydense
from pydense import reference
from pydense.ops import conv as ops

from helpers import check_compile_fullgraph, CPU_BACKENDS, backend_params, layout, requires_cuda, to

# "cpu-direct": the cpu backend with its direct C++ kernels forced for every group size (they
# share csrc/common/conv.h with the CUDA kernels); plain "cpu" uses ATen for dense convolutions.
BACKENDS = backend_params() + [pytest.param("cpu", "cpu-direct", id="cpu-direct")]
TOL = {torch.float32: 2e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2, torch.float64: 1e-10}

# (N, C, H, W, OC, KH, KW, stride, padding, dilation, groups)
CONFIGS = {
    "dense-3x3-d2": (2, 6, 9, 7, 5, 3, 3, 1, 2, 2, 1),
    "grouped-s2": (1, 8, 11, 9, 6, 3, 3, 2, 1, 1, 2),
    "depthwise-d3": (2, 6, 10, 9, 6, 3, 3, 1, 3, 3, 6),
    "depthwise-x2-s2": (1, 3, 9, 8, 6, 3, 3, 2, 1, 2, 3),
    "dilation-over-input": (1, 4, 5, 6, 3, 3, 3, 1, 8, 8, 1),
    "padding-over-kernel": (1, 3, 4, 5, 4, 2, 3, 1, (4, 5), 1, 1),
    "stride-over-kernel": (2, 5, 11, 13, 4, 2, 2, 3, 0, 1, 1),
    "same-even-kernel": (1, 4, 7, 6, 4, 4, 2, 1, "same", (2, 3), 1),
    "1x1-valid": (2, 17, 5, 4, 20, 1, 1, 1, "valid", 1, 1),
}
# (N, C, H, W, OC, KH, KW, stride, padding, output_padding, dilation, groups)
T_CONFIGS = {
    "depthwise-k4s2": (2, 6, 5, 4, 6, 4, 4, 2, 1, 0, 1, 6),
    "dense-s3-op2-d2": (1, 5, 4, 5, 4, 3, 3, 3, 1, 2, 2, 1),
    "grouped-s2-d3": (1, 4, 5, 3, 6, 3, 2, 2, (1, 0), 1, 3, 2),
    "k8s4": (1, 3, 3, 4, 3, 8, 8, 4, 2, 0, 1, 1),
    "op-over-stride": (1, 4, 4, 5, 4, 3, 3, 1, 1, 2, 3, 1),
    "depthwise-x2": (1, 3, 4, 4, 6, 3, 3, 2, 1, 1, 1, 3),
}


def data(shape, seed=0, scale=1.0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale


# The interpreter-run Triton kernels and the naive direct CPU kernels are slow: they run a subset
# of the (dtype, layout) grid that still covers every dtype and layout.
SLOW_GRID = {(torch.float32, "nchw"), (torch.float32, "strided"), (torch.float16, "channels_last"),
             (torch.bfloat16, "nchw")}


def skip_slow(device, backend, dtype, lay):
    if device == "cpu" and backend in ("triton", "cpu-direct") and (dtype, lay) not in SLOW_GRID:
        pytest.skip("interpreter / direct CPU kernels: covered by the reduced (dtype, layout) grid")


def use(backend, monkeypatch):
    if backend == "cpu-direct":
        monkeypatch.setattr(ops, "DIRECT_MAX_CG", 1 << 30)
        return "cpu"
    return backend


def close(actual, expected, dtype):
    """|actual - expected| <= tol * max|expected| elementwise (errors scale with the sums' size)."""
    tol = TOL[dtype] * max(1.0, expected.abs().max().item())
    torch.testing.assert_close(actual.double().cpu(), expected, rtol=0, atol=tol)


def conv_case(cfg, dtype, seed=0):
    N, C, H, W, OC, KH, KW, stride, padding, dilation, groups = cfg
    x = data((N, C, H, W), seed).to(dtype).double()
    w = data((OC, C // groups, KH, KW), seed + 1, scale=(C // groups * KH * KW) ** -0.5).to(dtype).double()
    b = data((OC,), seed + 2).to(dtype).double()
    return x, w, b, dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


def grads_of(fn, inputs, g):
    leaves = [t.detach().requires_grad_() for t in inputs]
    out = fn(*leaves)
    return out, torch.autograd.grad(out, leaves, g)


def check_against_oracle(oracle, ours, inputs, device, dtype, lay="nchw"):
    """``ours`` on ``inputs`` (cast to ``dtype`` on ``device``, the first input in layout ``lay``)
    against the float64 ``oracle`` on ``inputs``: output dtype, shape, memory format and values,
    and every input gradient for one random output gradient."""
    leaves = [t.detach().requires_grad_() for t in inputs]
    ref = oracle(*leaves)
    g = data(ref.shape, 3)
    ref_grads = torch.autograd.grad(ref, leaves, g)
    args = [to(t, device, dtype, lay if i == 0 else "nchw") for i, t in enumerate(inputs)]
    y, grads = grads_of(ours, args, to(g, device, dtype, lay))
    assert y.dtype == dtype and y.shape == ref.shape
    if lay == "channels_last":
        assert y.is_contiguous(memory_format=torch.channels_last)
    close(y, ref, dtype)
    for got, want in zip(grads, ref_grads):
        close(got, want, dtype)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("lay", ["nchw", "channels_last", "strided"])
@pytest.mark.parametrize("cfg", CONFIGS.values(), ids=CONFIGS.keys())
def test_conv2d_forward_and_grads_match_oracle(device, backend, dtype, lay, cfg, monkeypatch):
    if dtype != torch.float32 and lay == "strided":
        pytest.skip("strided inputs: covered in float32")
    skip_slow(device, backend, dtype, lay)
    backend = use(backend, monkeypatch)
    x, w, b, kw = conv_case(cfg, dtype)
    check_against_oracle(lambda x, w, b: reference.conv2d(x, w, b, **kw),
                         lambda x, w, b: pydense.functional.conv2d(x, w, b, **kw, backend=backend),
                         (x, w, b), device, dtype, lay)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("lay", ["nchw", "channels_last"])
@pytest.mark.parametrize("cfg", T_CONFIGS.values(), ids=T_CONFIGS.keys())
def test_conv_transpose2d_forward_and_grads_match_oracle(device, backend, dtype, lay, cfg, monkeypatch):
    if device == "cpu" and backend in ("triton", "cpu-direct") and (dtype == torch.float32) != (lay == "nchw"):
        pytest.skip("interpreter / direct CPU kernels: fp32 NCHW and bf16 channels_last")
    backend = use(backend, monkeypatch)
    N, C, H, W, OC, KH, KW, stride, padding, output_padding, dilation, groups = cfg
    x = data((N, C, H, W)).to(dtype).double()
    w = data((C, OC // groups, KH, KW), 1, scale=(C * KH * KW) ** -0.5).to(dtype).double()
    b = data((OC,), 2).to(dtype).double()
    args = (stride, padding, output_padding, groups, dilation)
    check_against_oracle(lambda x, w, b: reference.conv_transpose2d(x, w, b, *args),
                         lambda x, w, b: pydense.functional.conv_transpose2d(x, w, b, *args, backend=backend),
                         (x, w, b), device, dtype, lay)


FUSED = {"dense": CONFIGS["dense-3x3-d2"], "depthwise": CONFIGS["depthwise-d3"]}


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("cfg", FUSED.values(), ids=FUSED.keys())
def test_conv2d_fused_epilogue_matches_oracle(device, backend, dtype, cfg, monkeypatch):
    backend = use(backend, monkeypatch)
    x, w, b, kw = conv_case(cfg, dtype)
    shape = reference.conv2d(x, w, b, **kw).shape
    r = data(shape, 4).to(dtype).double()
    ep = dict(activation="relu", scale=0.25)
    check_against_oracle(
        lambda x, w, b, r: reference.conv2d(x, w, b, **kw, residual=r, **ep),
        lambda x, w, b, r: pydense.functional.conv2d_fused(x, w, b, **kw, residual=r, **ep, backend=backend),
        (x, w, b, r), device, dtype)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_gradcheck_float64(device, backend, monkeypatch):
    """gradcheck (fast mode: random projections, so the interpreter-run kernels stay quick)."""
    backend = use(backend, monkeypatch)
    F = pydense.functional
    check = lambda fn, inputs: torch.autograd.gradcheck(fn, inputs, fast_mode=True)  # noqa: E731
    for groups, oc in ((1, 3), (2, 4), (4, 4)):
        x = data((1, 4, 5, 4)).to(device).requires_grad_()
        w = data((oc, 4 // groups, 3, 2), 1).to(device).requires_grad_()
        b = data((oc,), 2).to(device).requires_grad_()
        assert check(lambda x, w, b: F.conv2d(x, w, b, 2, 1, (1, 2), groups, backend=backend), (x, w, b))
        wt = data((4, oc // groups, 3, 2), 3).to(device).requires_grad_()
        assert check(lambda x, w, b: F.conv_transpose2d(x, w, b, 2, 1, 1, groups, (2, 1), backend=backend),
                     (x, wt, b))
    r = data((1, 4, 5, 4), 4).to(device).requires_grad_()
    w = data((4, 1, 3, 3), 5).to(device).requires_grad_()
    assert check(lambda x, w, r: F.conv2d_fused(x, w, None, 1, "same", 2, 4, activation="relu",
                                                residual=r, scale=-0.5, backend=backend), (x, w, r))


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 2), cg=st.integers(1, 3), groups=st.integers(1, 3), ocg=st.integers(1, 3),
       h=st.integers(1, 8), w=st.integers(1, 8), kh=st.integers(1, 4), kw=st.integers(1, 4),
       s=st.integers(1, 3), p=st.integers(0, 4), d=st.integers(1, 4),
       backend=st.sampled_from([b for b in CPU_BACKENDS if b != "torch"] + ["cpu-direct"]),
       lay=st.sampled_from(["nchw", "channels_last"]))
def test_hypothesis_geometry(n, cg, groups, ocg, h, w, kh, kw, s, p, d, backend, lay):
    if (h + 2 * p - d * (kh - 1) - 1) < 0 or (w + 2 * p - d * (kw - 1) - 1) < 0:
        return  # no output: the bad-input tests cover the error
    with pytest.MonkeyPatch.context() as mp:
        backend = use(backend, mp)
        x = layout(data((n, cg * groups, h, w), seed=h * w), lay)
        wt = data((ocg * groups, cg, kh, kw), seed=kh * kw)
        ref = reference.conv2d(x, wt, None, s, p, d, groups)
        y = pydense.functional.conv2d(x, wt, None, s, p, d, groups, backend=backend)
        torch.testing.assert_close(y, ref, rtol=1e-10, atol=1e-10)
        # the same geometry as a transposed convolution (input gradient)
        xt = layout(data((n, ocg * groups, h, w), seed=h + w), lay)
        wtt = data((ocg * groups, cg, kh, kw), seed=kh + kw)
        op = min(s, d) - 1
        yt = pydense.functional.conv_transpose2d(xt, wtt, None, s, p, op, groups, d, backend=backend) \
            if (h - 1) * s - 2 * p + d * (kh - 1) + op + 1 > 0 and (w - 1) * s - 2 * p + d * (kw - 1) + op + 1 > 0 else None
        if yt is not None:
            torch.testing.assert_close(yt, reference.conv_transpose2d(xt, wtt, None, s, p, op, groups, d),
                                       rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("device,backend", [p for p in BACKENDS if p.id != "cpu-torch" and p.id != "cuda-torch"])
def test_weight_and_input_grads_are_deterministic(device, backend, monkeypatch):
    """Bitwise equal across runs, and across NCHW / channels_last inputs."""
    backend = use(backend, monkeypatch)
    from pydense.kernels import conv as kernels

    monkeypatch.setattr(kernels.tiles, "TARGET_PROGRAMS", 4096)  # force a split-K into several chunks
    for groups, oc in ((1, 6), (6, 6)):
        x = data((2, 6, 9, 8)).float().to(device)
        w = data((oc, 6 // groups, 3, 3), 1).float().to(device)
        g = data((2, oc, 9, 8), 2).float().to(device)
        runs = []
        for lay in ("nchw", "channels_last", "nchw"):
            wg = ops.conv2d_weight_grad_op(layout(g, lay), layout(x, lay), w, [1, 1], [2, 2, 2, 2], [2, 2], groups, backend)
            xg = ops.conv2d_input_grad_op(layout(g, lay), w, None, [9, 8], [1, 1], [2, 2, 2, 2], [2, 2], groups, backend)
            runs.append((wg, xg.contiguous()))
        for wg, xg in runs[1:]:
            assert torch.equal(wg, runs[0][0]) and torch.equal(xg, runs[0][1])


def bad_cases():
    x, w = torch.randn(1, 4, 6, 6), torch.randn(6, 2, 3, 3)
    return {
        "weight-rank": ((x, w[0]), {}, ValueError, "weight must be 4-D"),
        "input-rank": ((x[0, 0], w), {}, ValueError, "input must be 4-D"),
        "channels": ((x, torch.randn(6, 3, 3, 3)), {"groups": 2}, ValueError, "expect 6 input channels"),
        "groups-divide": ((x, w), {"groups": 3}, ValueError, r"input channels \(4\) must be divisible by groups"),
        "groups-zero": ((x, w), {"groups": 0}, ValueError, "groups must be a positive int"),
        "negative-padding": ((x, w), {"padding": -1, "groups": 2}, ValueError, "padding must be non-negative"),
        "zero-stride": ((x, w), {"stride": 0, "groups": 2}, ValueError, "stride must be positive"),
        "negative-dilation": ((x, w), {"dilation": (1, -2), "groups": 2}, ValueError, "dilation must be positive"),
        "same-strided": ((x, w), {"padding": "same", "stride": 2, "groups": 2}, ValueError, "padding='same' needs stride 1"),
        "bad-padding-string": ((x, w), {"padding": "full", "groups": 2}, ValueError, "padding must be"),
        "output-empty": ((x, w), {"dilation": 4, "groups": 2}, ValueError, "output size"),
        "dtype": ((x, w.double()), {"groups": 2}, TypeError, "weight dtype must equal"),
        "int-input": ((x.long(), w.long()), {"groups": 2}, TypeError, "input dtype"),
        "bias-shape": ((x, w, torch.randn(5)), {"groups": 2}, ValueError, r"bias must have shape \(6,\)"),
        "zero-kernel": ((x, torch.randn(6, 4, 0, 3)), {}, ValueError, "kernel size .* must be positive"),
        "zero-in-channels": ((torch.randn(1, 0, 6, 6), torch.randn(6, 0, 3, 3)), {}, ValueError,
                             "at least one input channel"),
    }


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("case", bad_cases().values(), ids=bad_cases().keys())
def test_bad_arguments(device, backend, case, monkeypatch):
    backend = use(backend, monkeypatch)
    args, kwargs, exc, message = case
    args = [a.to(device) for a in args]
    with pytest.raises(exc, match=message):
        pydense.functional.conv2d(*args, **kwargs, backend=backend)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_bad_arguments_transposed_and_fused(device, backend, monkeypatch):
    backend = use(backend, monkeypatch)
    F = pydense.functional
    x, w = torch.randn(1, 4, 5, 5, device=device), torch.randn(4, 3, 3, 3, device=device)
    with pytest.raises(ValueError, match="output_padding"):
        F.conv_transpose2d(x, w, stride=2, output_padding=2, backend=backend)
    with pytest.raises(ValueError, match="expects 4 input channels"):
        F.conv_transpose2d(x[:, :3], w, backend=backend)
    with pytest.raises(ValueError, match="output size"):
        F.conv_transpose2d(x[..., :1, :1], w, padding=2, backend=backend)
    with pytest.raises(ValueError, match="residual must have the output's shape"):
        F.conv2d_fused(x, w.transpose(0, 1), padding=1, residual=x[:, :2], backend=backend)
    with pytest.raises(ValueError, match="activation must be"):
        F.conv2d_fused(x, w.transpose(0, 1), activation="gelu", backend=backend)
    with pytest.raises(ValueError, match="weight must be on the input's device"):
        F.conv2d(x, w.transpose(0, 1).to("meta"), backend=backend)


def test_compiled_ops_check_arguments_themselves():
    x, w = torch.randn(1, 4, 5, 5), torch.randn(6, 2, 3, 3)
    with pytest.raises(RuntimeError, match="stride must be positive"):
        torch.ops.pydense._conv2d_fwd(x, w, None, None, [0, 1], [1, 1], [1, 1], False, 1.0, 1, torch.empty(1, 6, 5, 5))
    with pytest.raises(RuntimeError, match="output shape"):
        torch.ops.pydense._conv2d_fwd(x, w, None, None, [1, 1], [1, 1], [1, 1], False, 1.0, 1, torch.empty(1, 5, 5, 5))
    with pytest.raises(RuntimeError, match="residual must have the output's shape"):
        torch.ops.pydense._conv2d_fwd(x, w, None, x, [1, 1], [1, 1], [1, 1], False, 1.0, 1, torch.empty(1, 6, 5, 5))
    with pytest.raises(RuntimeError, match="grad_weight must have dtype"):
        torch.ops.pydense._conv2d_wgrad(torch.randn(1, 6, 5, 5), x, [1, 1], [1, 1], [1, 1], w.double())


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("lay", ["nchw", "channels_last"])
def test_opcheck(device, backend, lay, monkeypatch):
    backend = use(backend, monkeypatch)
    x = to(data((2, 4, 6, 5)), device, torch.float32, lay).requires_grad_()
    w = to(data((6, 2, 3, 3), 1), device, torch.float32).requires_grad_()
    b = to(data((6,), 2), device, torch.float32).requires_grad_()
    r = to(data((2, 6, 6, 5), 3), device, torch.float32, lay).requires_grad_()
    torch.library.opcheck(ops.conv2d_op, (x, w, b, r, [1, 1], [1, 1, 1, 1], [1, 1], 2, True, 0.5, backend))
    torch.library.opcheck(ops.conv2d_op, (x, w, None, None, [2, 1], [2, 1, 0, 0], [2, 1], 2, False, 1.0, backend))
    wt = to(data((4, 3, 3, 3), 4), device, torch.float32).requires_grad_()
    torch.library.opcheck(ops.conv_transpose2d_op, (x, wt, b, [2, 2], [1, 1], [1, 0], [1, 1], 2, backend))


class ContextBlock(torch.nn.Module):
    """A dilated conv + ReLU and a depthwise transposed conv (context module / FCN shapes)."""

    def __init__(self, backend):
        super().__init__()
        self.conv = pydense.nn.Conv2d(4, 4, 3, padding=2, dilation=2, backend=backend)
        self.up = pydense.nn.ConvTranspose2d(4, 4, 4, stride=2, padding=1, groups=4, bias=False,
                                             backend=backend)

    def forward(self, x):
        return self.up(torch.relu(self.conv(x)))


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_compile_fullgraph_no_graph_breaks(device, backend, monkeypatch):
    backend = use(backend, monkeypatch)
    torch.manual_seed(0)
    model = ContextBlock(backend).to(device)
    x = torch.randn(1, 4, 6, 5, device=device, requires_grad=True)
    check_compile_fullgraph(model, x)


def test_autocast_casts_to_lower_precision():
    x, w = data((1, 4, 6, 6)).float(), data((4, 4, 3, 3), 1).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = pydense.functional.conv2d(x, w, padding=1, backend="cpu")
        expected = torch.nn.functional.conv2d(x, w, padding=1)
    assert y.dtype == expected.dtype == torch.bfloat16
    close(y, reference.conv2d(x.bfloat16(), w.bfloat16(), padding=1), torch.bfloat16)


def test_unbatched_input_and_nn_modules_are_drop_ins():
    torch.manual_seed(0)
    ours, theirs = pydense.nn.Conv2d(4, 6, 3, padding="same", dilation=3, groups=2, backend="cpu"), \
        torch.nn.Conv2d(4, 6, 3, padding="same", dilation=3, groups=2)
    theirs.load_state_dict(ours.state_dict())
    assert isinstance(ours, torch.nn.Conv2d) and "backend='cpu'" in repr(ours)
    x = torch.randn(4, 7, 9)
    torch.testing.assert_close(ours(x), theirs(x))
    up, up_ref = pydense.nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, backend="cpu"), \
        torch.nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1)
    up_ref.load_state_dict(up.state_dict())
    x = torch.randn(1, 4, 5, 6)
    torch.testing.assert_close(up(x, output_size=(10, 12)), up_ref(x, output_size=(10, 12)))
    with pytest.raises(ValueError, match="padding_mode must be 'zeros'"):
        pydense.nn.Conv2d(4, 4, 3, padding_mode="reflect")


@pytest.mark.parametrize("device,backend", [p for p in BACKENDS if p.id.endswith("-triton")])
def test_triton_int64_index_path(device, backend, monkeypatch):
    """The int64 index variants (used when a tensor spans 2^30 elements) on small tensors."""
    from pydense.kernels import conv as kernels

    monkeypatch.setattr(kernels, "_needs_int64", lambda *tensors: True)
    for cfg in (CONFIGS["grouped-s2"], CONFIGS["depthwise-x2-s2"]):
        x, w, b, kw = conv_case(cfg, torch.float64)
        xd, wd = to(x, device, lay="channels_last").requires_grad_(), to(w, device).requires_grad_()
        y = pydense.functional.conv2d(xd, wd, **kw, backend=backend)
        torch.testing.assert_close(y.cpu(), reference.conv2d(x, w, **kw))
        gx, gw = torch.autograd.grad(y.sum(), (xd, wd))
        rx, rw = torch.autograd.grad(reference.conv2d(x.requires_grad_(), w.requires_grad_(), **kw).sum(), (x, w))
        torch.testing.assert_close(gx.cpu(), rx)
        torch.testing.assert_close(gw.cpu(), rw)


TRITON_BACKENDS = [p for p in BACKENDS if p.id.endswith("-triton")]


def test_fixed_tiles_are_shape_derived_and_shipped(monkeypatch):
    """gemm_tile: the tall tile for narrow GEMMs, the wide one (BK = 64 for 2-byte data) for wide
    ones, the dedicated fp64 / int64 tiles; and every tile it can return is a configuration the
    AOT test compiles (CONFIGS) for that kernel and dtype."""
    from pydense.kernels import conv as kernels

    monkeypatch.setattr(kernels.tiles, "INTERPRET", False)
    tall, wide32, wide64 = kernels.GEMM_TILES
    assert kernels.gemm_tile(64, torch.float16, False) == tall
    assert kernels.gemm_tile(65, torch.float16, False) == wide64
    assert kernels.gemm_tile(256, torch.bfloat16, False) == wide64
    assert kernels.gemm_tile(256, torch.float32, False) == wide32
    assert kernels.gemm_tile(21, torch.float32, False) == tall
    assert kernels.gemm_tile(256, torch.float64, False) == kernels.FP64_TILE
    assert kernels.gemm_tile(256, torch.float16, True) == kernels.INDEX64_TILE
    names = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32", torch.float64: "fp64"}
    for kernel in ("_conv2d_fwd_kernel", "_conv2d_dgrad_kernel"):
        for dtype, dt in names.items():
            for n in (16, 64, 65, 512):
                bm, bn, bk, nw, ns = kernels.gemm_tile(n, dtype, False)
                assert any(name == kernel and c["BM"] == bm and c["BN"] == bn and c["BK"] == bk
                           and dts == (dt,) and o == {"num_warps": nw, "num_stages": ns}
                           for name, c, dts, o in kernels.CONFIGS), (kernel, dt, n)


@pytest.mark.parametrize("device,backend", TRITON_BACKENDS)
def test_default_tiles_never_time(device, backend, monkeypatch):
    """Without PYDENSE_AUTOTUNE the forward and input gradient never go through the autotuner
    (no timing, no sync: CUDA-graph capturable); with PYDENSE_AUTOTUNE=1 both do, with the same
    results as the oracle."""
    from pydense.kernels import conv as kernels

    calls = []
    for tuned in (kernels._conv2d_fwd_kernel_tuned, kernels._conv2d_dgrad_kernel_tuned):
        real = tuned.run
        monkeypatch.setattr(tuned, "run", lambda *a, _real=real, **k: calls.append(1) or _real(*a, **k))
    x, w, b, kw = conv_case(CONFIGS["grouped-s2"], torch.float32)
    results = {}
    for mode in ("0", "1"):
        monkeypatch.setenv("PYDENSE_AUTOTUNE", mode)
        calls.clear()
        xd, wd = to(x.float(), device).requires_grad_(), to(w.float(), device)
        y = pydense.functional.conv2d(xd, wd, b.float().to(device), **kw, backend=backend)
        (gx,) = torch.autograd.grad(y, xd, torch.ones_like(y))
        assert len(calls) == (0 if mode == "0" else 2)
        close(y, reference.conv2d(x, w, b, **kw), torch.float32)
        results[mode] = (y, gx)
    close(results["1"][1], results["0"][1].double(), torch.float32)


@requires_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_conv_is_cuda_graph_capturable(dtype, monkeypatch):
    """With the default (fixed) tiles a convolution's forward and backward can be captured in a
    CUDA graph; replays equal eager calls."""
    monkeypatch.delenv("PYDENSE_AUTOTUNE", raising=False)
    x = torch.randn(2, 32, 17, 19, device="cuda", dtype=dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(96, 32, 3, 3, device="cuda", dtype=dtype, requires_grad=True)
    x.requires_grad_()

    def step():
        y = pydense.functional.conv2d(x, w, padding=2, dilation=2, backend="triton")
        gx, gw = torch.autograd.grad(y.float().square().sum(), (x, w))
        return y, gx, gw

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        eager = step()  # warm-up (compiles) outside capture
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = step()
    with torch.no_grad():
        x.copy_(torch.randn_like(x))
    graph.replay()
    torch.cuda.synchronize()
    for a, b in zip(captured, step()):
        assert torch.equal(a, b)
    assert not torch.equal(captured[0], eager[0])


def strided_biases(n):
    """A bias with stride 2, and a one-element bias expanded to n (stride 0): the kernels read
    bias[c], so both must reach them as unit-stride vectors."""
    return {"stride-2": torch.randn(2 * n, generator=torch.Generator().manual_seed(5))[::2],
            "expanded": torch.randn(1, generator=torch.Generator().manual_seed(6)).expand(n)}


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("kind", ["stride-2", "expanded"])
def test_non_contiguous_bias(device, backend, kind, monkeypatch):
    """Regression: a strided bias was read as if contiguous (wrong values, and past the end of an
    expanded one-element buffer) by conv2d, conv2d_fused, conv_transpose2d and
    conv2d_pixel_shuffle."""
    backend = use(backend, monkeypatch)
    x, w = data((1, 4, 5, 6)).float(), data((6, 4, 3, 3), 1).float()
    b = strided_biases(6)[kind]
    dev = lambda t: t.to(device)  # noqa: E731  (.to keeps the strides of the view)
    F = torch.nn.functional
    got = pydense.functional.conv2d(dev(x), dev(w), dev(b), padding=1, backend=backend)
    torch.testing.assert_close(got.cpu(), F.conv2d(x, w, b, padding=1), rtol=1e-5, atol=1e-5)
    got = pydense.functional.conv2d_fused(dev(x), dev(w), dev(b), padding=1, activation="relu",
                                          scale=0.5, backend=backend)
    torch.testing.assert_close(got.cpu(), 0.5 * F.relu(F.conv2d(x, w, b, padding=1)), rtol=1e-5, atol=1e-5)
    wt, bt = data((4, 3, 4, 4), 2).float(), strided_biases(3)[kind]
    got = pydense.functional.conv_transpose2d(dev(x), dev(wt), dev(bt), stride=2, padding=1, backend=backend)
    torch.testing.assert_close(got.cpu(), F.conv_transpose2d(x, wt, bt, stride=2, padding=1),
                               rtol=1e-5, atol=1e-5)
    wps, bps = data((8, 4, 3, 3), 3).float(), strided_biases(8)[kind]
    got = pydense.functional.conv2d_pixel_shuffle(dev(x), dev(wps), dev(bps), 2, backend=backend)
    torch.testing.assert_close(got.cpu(), F.pixel_shuffle(F.conv2d(x, wps, bps, padding=1), 2),
                               rtol=1e-5, atol=1e-5)


def test_compiled_ops_reject_a_strided_bias():
    """torch.ops.pydense._conv2d_* are public: they check the bias they read as bias[c] themselves."""
    if not pydense.extension_available():
        pytest.skip("the compiled extension is not built")
    x, w = torch.randn(1, 4, 5, 6), torch.randn(6, 4, 3, 3)
    out = torch.empty(1, 6, 5, 6)
    with pytest.raises(RuntimeError, match="bias must be contiguous"):
        torch.ops.pydense._conv2d_fwd(x, w, torch.randn(12)[::2], None, [1, 1], [1, 1], [1, 1], False,
                                      1.0, 1, out)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_relu_epilogue_keeps_nan_and_inf(device, backend, monkeypatch):
    """Regression: the fused ReLU turned NaN into 0 (max(nan, 0)); F.relu keeps NaN, +inf, and
    maps -inf to 0."""
    backend = use(backend, monkeypatch)
    x, w = data((1, 4, 5, 6)).float(), data((6, 4, 3, 3), 1).float()
    x[0, 0, 2, 2] = float("nan")
    x[0, 1, 0, 5] = float("inf")
    want = torch.nn.functional.relu(torch.nn.functional.conv2d(x, w, padding=1))
    got = pydense.functional.conv2d_fused(x.to(device), w.to(device), padding=1, activation="relu",
                                          backend=backend).cpu()
    assert want.isnan().any()
    assert torch.equal(got.isnan(), want.isnan()) and torch.equal(got.isinf(), want.isinf())
    keep = want.isfinite()
    torch.testing.assert_close(got[keep], want[keep], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_non_finite_weight_meets_zero_padding_as_in_torch(device, backend, monkeypatch):
    """Regression (cpu backend): an inf weight tap over the zero padding gives NaN (0 * inf) in
    PyTorch's convolution; the direct kernels skipped padding taps and returned finite values."""
    backend = use(backend, monkeypatch)
    x, w = data((1, 4, 5, 6)).float(), data((6, 4, 3, 3), 1).float()
    w[0, 0, 0, 0] = float("inf")
    w[3, 2, 2, 1] = float("nan")
    want = torch.nn.functional.conv2d(x, w, padding=1)
    got = pydense.functional.conv2d(x.to(device), w.to(device), padding=1, backend=backend).cpu()
    assert torch.equal(got.isnan(), want.isnan()) and torch.equal(got.isinf(), want.isinf())
    keep = want.isfinite()
    torch.testing.assert_close(got[keep], want[keep], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("kind", ["conv2d", "fused", "transposed", "pixel-shuffle"])
def test_double_backward_gradgradcheck(device, backend, kind, monkeypatch):
    """Second derivatives (gradient penalties, create_graph=True): the gradient ops have autograd
    of their own (the convolution's kernels again), checked by gradgradcheck in fp64."""
    backend = use(backend, monkeypatch)
    PF = pydense.functional
    x = to(data((1, 4, 5, 4)), device).requires_grad_()
    if kind == "transposed":
        w = to(data((4, 3, 3, 3), 1) * 0.3, device).requires_grad_()
        b = to(data((3,), 2), device).requires_grad_()
        fn = lambda x, w, b: PF.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1,  # noqa: E731
                                                 dilation=1, backend=backend)
    elif kind == "pixel-shuffle":
        w = to(data((8, 4, 3, 3), 1) * 0.3, device).requires_grad_()
        b = to(data((8,), 2), device).requires_grad_()
        fn = lambda x, w, b: PF.conv2d_pixel_shuffle(x, w, b, 2, backend=backend)  # noqa: E731
    else:
        w = to(data((6, 2, 3, 3), 1) * 0.3, device).requires_grad_()
        b = to(data((6,), 2), device).requires_grad_()
        if kind == "conv2d":
            fn = lambda x, w, b: PF.conv2d(x, w, b, stride=(2, 1), padding=2, dilation=2, groups=2,  # noqa: E731
                                           backend=backend)
        else:
            r = to(data((1, 6, 5, 4), 3), device)
            fn = lambda x, w, b: PF.conv2d_fused(x, w, b, padding=1, groups=2, residual=r,  # noqa: E731
                                                 scale=0.5, backend=backend)
    # fast_mode: random projections instead of full Jacobians (a few op calls, not hundreds;
    # the Triton kernels run in the interpreter here)
    assert torch.autograd.gradgradcheck(fn, (x, w, b), eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=True)
    # a gradient penalty: d/dw |dL/dx|^2 through create_graph, against the torch backend
    y = fn(x, w, b)
    (gx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
    (gw,) = torch.autograd.grad(gx.square().sum(), w)
    assert gw.isfinite().all() and gw.abs().sum() > 0
