"""pydense.patch / unpatch / enabled: drop-in acceleration of existing models.

Patched and routed models are compared with the unpatched ones in fp32 (TF32 off, see conftest):
outputs and gradients within rtol = atol = 1e-5 on the CPU backend (the dense convolutions stay
on ATen, pydense's kernels accumulate in fp32 in another order), 1e-4 on CUDA.
"""
import collections

import pytest
import torch
import torch.nn.functional as F

import pydense
from helpers import PydenseOpCounter, requires_cuda

TOL = dict(rtol=1e-5, atol=1e-5)
CUDA_TOL = dict(rtol=1e-4, atol=1e-4)


class AllKinds(torch.nn.Module):
    """Every module kind pydense.patch replaces, and a dense conv that it keeps."""

    def __init__(self, c=8):
        super().__init__()
        self.dense = torch.nn.Conv2d(3, c, 3, padding=1)                    # kept (dense)
        self.dilated = torch.nn.Conv2d(c, c, 3, padding=2, dilation=2)
        self.grouped = torch.nn.Conv2d(c, 2 * c, 3, padding=1, groups=4)
        self.pool = torch.nn.MaxPool2d(2, 2, return_indices=True)
        self.unpool = torch.nn.MaxUnpool2d(2, 2)
        self.bilinear = torch.nn.ConvTranspose2d(2 * c, 2 * c, 4, stride=2, bias=False)
        pydense.nn.init.bilinear_(self.bilinear.weight).requires_grad_(False)
        self.deconv = torch.nn.ConvTranspose2d(2 * c, c, 3, stride=2, padding=1, output_padding=1)
        self.up = torch.nn.Upsample(scale_factor=0.5, mode="bilinear", align_corners=False)
        self.up_ac = torch.nn.UpsamplingBilinear2d(scale_factor=2)
        self.head = torch.nn.Conv2d(c, 4 * c, 1)                             # kept (1x1 dense)
        self.shuffle = torch.nn.PixelShuffle(2)
        self.nearest = torch.nn.Upsample(scale_factor=2, mode="nearest")    # kept (not bilinear)

    def forward(self, x):
        x = torch.relu(self.dense(x))
        x = torch.relu(self.dilated(x))
        x = self.grouped(x)
        y, idx = self.pool(x)
        x = self.unpool(y, idx, output_size=x.shape[-2:])
        x = self.bilinear(x)[..., 1:-1, 1:-1]                 # (H + 1) * 2 - 2 = 2H
        x = self.deconv(x)                                    # 4H
        x = self.up(x)                                        # 2H
        x = self.up_ac(x)                                     # 4H
        x = self.shuffle(self.head(x))                        # 8H
        return self.nearest(x)[..., ::4, ::4]


EXPECTED = {  # name -> (pydense class, op)
    "dilated": (pydense.nn.Conv2d, "conv"),
    "grouped": (pydense.nn.Conv2d, "conv"),
    "unpool": (pydense.nn.MaxUnpool2d, "unpool"),
    "bilinear": (pydense.nn.BilinearConvTranspose2d, "conv_transpose"),
    "deconv": (pydense.nn.ConvTranspose2d, "conv_transpose"),
    "up": (pydense.nn.Upsample, "upsample"),
    "up_ac": (pydense.nn.UpsamplingBilinear2d, "upsample"),
    "shuffle": (pydense.nn.PixelShuffle, "pixel_shuffle"),
}


def _snapshot(model):
    return ([(n, type(m)) for n, m in model.named_modules()], list(model.state_dict()),
            {n: id(p) for n, p in model.named_parameters()},
            {n: id(b) for n, b in model.named_buffers()})


def _forward_backward(model, x):
    x = x.detach().clone().requires_grad_(True)
    model.zero_grad(set_to_none=True)
    out = model(x)
    (out * torch.linspace(-1, 1, out.numel(), device=out.device).view_as(out)).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.detach(), x.grad.clone(), grads


def _assert_same(a, b, tol):
    torch.testing.assert_close(a[0], b[0], **tol)
    torch.testing.assert_close(a[1], b[1], **tol)
    assert a[2].keys() == b[2].keys()
    for k in a[2]:
        torch.testing.assert_close(a[2][k], b[2][k], **tol, msg=k)


def test_patch_all_kinds_forward_backward_and_unpatch():
    torch.manual_seed(0)
    model = AllKinds()
    x = torch.randn(2, 3, 8, 8)
    before = _snapshot(model)
    ref = _forward_backward(model, x)
    calls = []
    model.dilated.register_forward_hook(lambda m, i, o: calls.append(type(m)))

    assert pydense.patch(model, backend="cpu") is model
    records = pydense.patched_modules(model)
    assert {r.name: (r.replacement, r.op) for r in records} == EXPECTED
    assert all(issubclass(r.replacement, r.original) for r in records)
    assert type(model.dense) is torch.nn.Conv2d and type(model.head) is torch.nn.Conv2d
    assert type(model.nearest) is torch.nn.Upsample and type(model.pool) is torch.nn.MaxPool2d
    assert model.dilated.backend == "cpu" and model.unpool.check_indices is None
    snap = _snapshot(model)
    assert snap[1:] == before[1:]  # same state_dict keys, the same parameter and buffer objects

    with PydenseOpCounter() as counter:
        got = _forward_backward(model, x)
    _assert_same(got, ref, TOL)
    assert calls == [pydense.nn.Conv2d]  # the hook registered before patching still fires
    ops = counter.pydense()
    for op in ("pydense::conv2d", "pydense::conv_transpose2d", "pydense::max_unpool2d",
               "pydense::bilinear_deconv2d", "pydense::upsample_bilinear2d",
               "pydense::pixel_shuffle"):
        assert ops.get(op, 0) > 0, (op, ops)

    assert pydense.unpatch(model) is model
    assert _snapshot(model) == before and pydense.patched_modules(model) == []
    assert not hasattr(model.dilated, "backend") and not hasattr(model.unpool, "check_indices")
    counter = PydenseOpCounter()
    with counter:
        _assert_same(_forward_backward(model, x), ref, dict(rtol=0, atol=0))
    assert counter.pydense() == {}


def test_patch_all_kinds_compiles_without_graph_breaks():
    torch.manual_seed(0)
    model = pydense.patch(AllKinds(), backend="cpu")
    x = torch.randn(1, 3, 8, 8)
    eager = model(x)
    torch._dynamo.reset()
    explain = torch._dynamo.explain(model)(x)
    assert explain.graph_break_count == 0 and explain.graph_count == 1
    xc = x.clone().requires_grad_(True)
    out = torch.compile(model, fullgraph=True, backend="aot_eager")(xc)
    torch.testing.assert_close(out, eager, **TOL)
    out.sum().backward()
    assert xc.grad is not None and model.dilated.weight.grad is not None


def test_patch_options():
    torch.manual_seed(0)
    model = AllKinds()
    pydense.patch(model, ops=("upsample", "pixel_shuffle"))
    assert {r.name for r in pydense.patched_modules(model)} == {"up", "up_ac", "shuffle"}
    assert model.up.backend == "auto"
    pydense.patch(model, ops="conv", backend="torch")  # adds the convs, updates every backend
    assert {r.name for r in pydense.patched_modules(model)} == {"up", "up_ac", "shuffle", "dilated",
                                                                 "grouped"}
    assert model.up.backend == "torch" and model.dilated.backend == "torch"
    pydense.unpatch(model)

    everything = pydense.patch(AllKinds(), conv_predicate=lambda spec: True)
    names = {r.name for r in pydense.patched_modules(everything)}
    assert {"dense", "head"} <= names
    seen = []
    pydense.patch(AllKinds(), ops=("conv", "conv_transpose"),
                  conv_predicate=lambda spec: seen.append(spec) or False)
    # FCN's frozen bilinear deconvolution is recognised before the predicate is asked
    assert {(s.in_channels, s.out_channels, s.kernel_size, s.dilation, s.groups, s.transposed)
            for s in seen} == {(3, 8, (3, 3), (1, 1), 1, False), (8, 8, (3, 3), (2, 2), 1, False),
                               (8, 16, (3, 3), (1, 1), 4, False), (8, 32, (1, 1), (1, 1), 1, False),
                               (16, 8, (3, 3), (1, 1), 1, True)}

    class MyConv(torch.nn.Conv2d):  # a subclass may override forward: left alone
        pass

    odd = torch.nn.Sequential(MyConv(4, 4, 3, dilation=2),
                              torch.nn.Conv2d(4, 4, 3, dilation=2, padding_mode="reflect", padding=2),
                              pydense.nn.Conv2d(4, 4, 3, dilation=2))
    assert pydense.patched_modules(pydense.patch(odd)) == []
    assert type(pydense.unpatch(odd)[2]) is pydense.nn.Conv2d  # built as pydense: kept
    with pytest.raises(ValueError, match="unknown ops"):
        pydense.patch(odd, ops=("conv", "softmax"))
    with pytest.raises(ValueError, match="backend must be one of"):
        pydense.patch(odd, backend="cudnn")
    with pytest.raises(TypeError, match="torch.nn.Module"):
        pydense.patch(lambda x: x)


def test_default_conv_predicate():
    spec = pydense.ConvSpec(64, 64, (3, 3), (1, 1), (1, 1), (1, 1), 1)
    assert not pydense.default_conv_predicate(spec)
    assert pydense.default_conv_predicate(spec._replace(dilation=(2, 1)))
    assert not pydense.default_conv_predicate(spec._replace(kernel_size=(1, 1), dilation=(2, 2)))
    assert pydense.default_conv_predicate(spec._replace(groups=64))
    assert pydense.default_conv_predicate(spec._replace(transposed=True))


def test_bilinear_conv_transpose_module():
    """The frozen-bilinear twin: bilinear_deconv2d when it can, the general transposed conv when
    the weight is trainable or output_size asks for more."""
    up = torch.nn.ConvTranspose2d(3, 3, 8, stride=4, bias=False)
    pydense.nn.init.bilinear_(up.weight).requires_grad_(False)
    x = torch.randn(1, 3, 5, 6)
    ref, ref_big = up(x), up(x, output_size=(25, 30))
    pydense.patch(up, backend="cpu")
    assert type(up) is pydense.nn.BilinearConvTranspose2d
    with PydenseOpCounter() as counter:
        torch.testing.assert_close(up(x), ref, **TOL)
    assert set(counter.pydense()) == {"pydense::bilinear_deconv2d"}
    with PydenseOpCounter() as counter:
        torch.testing.assert_close(up(x, output_size=(25, 30)), ref_big, **TOL)
    assert set(counter.pydense()) == {"pydense::conv_transpose2d"}
    up.weight.requires_grad_(True)
    with PydenseOpCounter() as counter:
        up(x).sum().backward()
    assert "pydense::bilinear_deconv2d" not in counter.pydense() and up.weight.grad is not None
    assert type(pydense.unpatch(up)) is torch.nn.ConvTranspose2d


# ---------------------------------------------------------------------------------------------
# enabled()


def test_enabled_routes_supported_calls_only(monkeypatch):
    torch.manual_seed(0)
    x = torch.randn(1, 8, 6, 6, requires_grad=True)
    w_dense, w_dw = torch.randn(8, 8, 3, 3), torch.randn(8, 1, 3, 3, requires_grad=True)
    w_t = torch.randn(8, 4, 4, 4)
    y, idx = F.max_pool2d(x.detach(), 2, 2, return_indices=True)

    def calls():
        return {
            "dense": F.conv2d(x, w_dense, padding=1),
            "dilated": F.conv2d(x, w_dense, None, 1, 2, 2),
            "depthwise": F.conv2d(x, w_dw, padding=1, groups=8),
            "transposed": F.conv_transpose2d(x, w_t, stride=2, padding=1),
            "bilinear": F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True),
            "nearest": F.interpolate(x, scale_factor=2, mode="nearest"),
            "unpool": F.max_unpool2d(y, idx, 2, output_size=(6, 6)),
            "shuffle": F.pixel_shuffle(x, 2),
            "unshuffle": F.pixel_unshuffle(x, 2),
            "int_shuffle": F.pixel_shuffle(torch.arange(32).view(1, 8, 2, 2), 2),
        }

    ref = calls()
    with PydenseOpCounter() as counter, pydense.enabled(backend="cpu"):
        got = calls()
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], **TOL, msg=k)
    assert counter.pydense() == {"pydense::conv2d": 2, "pydense::conv_transpose2d": 1,
                                 "pydense::upsample_bilinear2d": 1, "pydense::max_unpool2d": 1,
                                 "pydense::pixel_shuffle": 1, "pydense::pixel_unshuffle": 1}
    assert counter.counts["aten::convolution"] == 1  # the dense conv: untouched
    assert counter.counts["aten::upsample_nearest2d"] == 1

    # ops= restricts the routing; a predicate can route dense convolutions too
    with PydenseOpCounter() as counter, pydense.enabled(backend="cpu", ops=["upsample"]):
        calls()
    assert counter.pydense() == {"pydense::upsample_bilinear2d": 1}
    with PydenseOpCounter() as counter, pydense.enabled(backend="cpu", ops="conv",
                                                        conv_predicate=lambda spec: True):
        calls()
    assert counter.pydense() == {"pydense::conv2d": 3}

    # backend="torch": pydense's fallbacks call F.conv2d / F.interpolate themselves, which must
    # reach ATen (no recursion into the mode): one pydense call per routed call
    seen = collections.Counter()
    for name in ("conv2d", "interpolate"):
        real = getattr(pydense.functional, name)
        monkeypatch.setattr(pydense.functional, name,
                            lambda *a, _real=real, _name=name, **k: seen.update([_name]) or _real(*a, **k))
    with pydense.enabled(backend="torch"):
        got = calls()
    assert seen == {"conv2d": 2, "interpolate": 1}
    torch.testing.assert_close(got["dilated"], ref["dilated"], **TOL)


def test_enabled_autograd():
    torch.manual_seed(0)
    model = AllKinds()
    x = torch.randn(2, 3, 8, 8)
    ref = _forward_backward(model, x)
    with PydenseOpCounter() as counter, pydense.enabled(backend="cpu"):
        got = _forward_backward(model, x)  # backward inside the block too
    _assert_same(got, ref, TOL)
    ops = counter.pydense()
    assert ops["pydense::conv2d"] >= 2 and ops["pydense::conv2d_weight_grad"] >= 2
    assert "pydense::max_unpool2d_backward" in ops and "pydense::pixel_unshuffle" in ops
    with pydense.enabled(backend="cpu"):
        out = model(x.requires_grad_(True))
    out.sum().backward()  # backward outside the block
    assert x.grad is not None


def test_enabled_under_compile():
    """torch.compile traces through the mode: one graph, with the pydense ops in it."""
    torch.manual_seed(0)
    model = AllKinds()
    x = torch.randn(1, 3, 8, 8)
    ref = model(x)
    targets = collections.Counter()

    def backend(gm, inputs):
        targets.update(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
        return gm

    torch._dynamo.reset()
    with pydense.enabled(backend="cpu"):
        assert torch._dynamo.explain(model)(x).graph_break_count == 0
        out = torch.compile(model, fullgraph=True, backend=backend)(x)
    torch.testing.assert_close(out, ref, **TOL)
    for op in ("conv2d", "conv_transpose2d", "upsample_bilinear2d", "max_unpool2d", "pixel_shuffle"):
        assert targets[f"pydense.{op}.default"] > 0, (op, targets)


# ---------------------------------------------------------------------------------------------
# torchvision's segmentation models (random init: nothing is downloaded)

try:
    from torchvision.models import segmentation
except ImportError:  # the tests below skip visibly; the rest of the module still runs
    segmentation = None
requires_torchvision = pytest.mark.skipif(segmentation is None, reason="needs torchvision")
TV_MODELS = {  # name -> (constructor, ops patch must have replaced)
    "fcn_resnet50": (lambda: segmentation.fcn_resnet50(weights=None, weights_backbone=None), {"conv"}),
    "deeplabv3_resnet50": (lambda: segmentation.deeplabv3_resnet50(weights=None, weights_backbone=None),
                           {"conv"}),
    "lraspp_mobilenet_v3_large": (
        lambda: segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None), {"conv"}),
}


@pytest.fixture(scope="module", params=[pytest.param(n, marks=requires_torchvision) for n in TV_MODELS])
def tv_model(request):
    torch.manual_seed(0)
    model = TV_MODELS[request.param][0]().eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)["out"]
    return request.param, model, x, ref


def test_patch_torchvision_model(tv_model):
    name, model, x, ref = tv_model
    before = _snapshot(model)
    pydense.patch(model, backend="cpu")
    try:
        records = pydense.patched_modules(model)
        assert {r.op for r in records} == TV_MODELS[name][1]
        dilated = [r for r in records if getattr(model.get_submodule(r.name), "dilation", (1, 1)) != (1, 1)]
        grouped = [r for r in records if getattr(model.get_submodule(r.name), "groups", 1) > 1]
        assert dilated and (grouped or name != "lraspp_mobilenet_v3_large")
        assert all(getattr(model.get_submodule(r.name), "groups", 1) > 1
                   or model.get_submodule(r.name).dilation != (1, 1) for r in records)
        with torch.no_grad(), PydenseOpCounter() as counter:
            out = model(x)["out"]
        assert counter.pydense().get("pydense::conv2d", 0) == len(records)
        torch.testing.assert_close(out, ref, **TOL)
    finally:
        pydense.unpatch(model)
    assert _snapshot(model) == before


def test_enabled_torchvision_model(tv_model):
    name, model, x, ref = tv_model
    with torch.no_grad(), PydenseOpCounter() as counter, pydense.enabled(backend="cpu"):
        out = model(x)["out"]
    torch.testing.assert_close(out, ref, **TOL)
    ops = counter.pydense()
    assert ops.get("pydense::conv2d", 0) > 0 and ops.get("pydense::upsample_bilinear2d", 0) > 0


@requires_cuda
@requires_torchvision
@pytest.mark.cuda
@pytest.mark.parametrize("name", list(TV_MODELS))
def test_torchvision_model_cuda(name):
    torch.manual_seed(0)
    model = TV_MODELS[name][0]().eval().cuda()
    x = torch.randn(2, 3, 96, 96, device="cuda")
    with torch.no_grad():
        ref = model(x)["out"]
        pydense.patch(model)
        try:
            assert pydense.patched_modules(model)
            torch.testing.assert_close(model(x)["out"], ref, **CUDA_TOL)
        finally:
            pydense.unpatch(model)
        with pydense.enabled():
            torch.testing.assert_close(model(x)["out"], ref, **CUDA_TOL)


@requires_cuda
@pytest.mark.cuda
def test_patch_all_kinds_cuda():
    torch.manual_seed(0)
    model = AllKinds().cuda()
    x = torch.randn(2, 3, 8, 8, device="cuda")
    ref = _forward_backward(model, x)
    pydense.patch(model)
    _assert_same(_forward_backward(model, x), ref, CUDA_TOL)
    pydense.unpatch(model)
    with pydense.enabled():
        _assert_same(_forward_backward(model, x), ref, CUDA_TOL)
