"""pydense.compile / pydense.fusion.fuse: the patterns people write are fused automatically in
models that go through torch.compile, with the same numbers as unfused, and only where the fused
op computes the same thing."""
import copy

import pytest
import torch
import torch.nn.functional as F

import pydense

TOL = dict(rtol=1e-5, atol=1e-5)


class Block(torch.nn.Module):
    """One site of every pattern: conv+relu, EDSR's x + 0.1 * conv(relu(conv(x))), a sub-pixel
    upsampler, and a UNet decoder step (interpolate + cat)."""

    def __init__(self, c=4, mode="nearest"):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(c, c, 3, padding=1)
        self.act = torch.nn.ReLU()
        self.conv2 = torch.nn.Conv2d(c, c, 3, padding=1)
        self.up = torch.nn.Conv2d(c, 4 * c, 3, padding=1)
        self.shuffle = torch.nn.PixelShuffle(2)
        self.mode = mode

    def forward(self, x, skip):
        y = x + 0.1 * self.conv2(self.act(self.conv1(x)))          # conv_relu, conv_residual
        hi = self.shuffle(self.up(y))                               # conv_pixel_shuffle
        u = F.interpolate(y, scale_factor=2, mode=self.mode,
                          **({"align_corners": False} if self.mode == "bilinear" else {}))
        return torch.cat([u, skip], dim=1) + 0, hi                  # upsample_concat


def _inputs(c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(2, c, 6, 5, generator=g).requires_grad_(),
            torch.randn(2, 3, 12, 10, generator=g).requires_grad_())


@pytest.mark.parametrize("backend", ["auto", "cpu", "torch"])
@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_every_pattern_fuses_with_the_same_numbers(backend, mode):
    torch.manual_seed(0)
    model = Block(mode=mode)
    x, skip = _inputs()
    want = model(x, skip)
    want_grads = torch.autograd.grad(sum(o.sum() for o in want), (x, skip, *model.parameters()))
    compiled = pydense.compile(copy.deepcopy(model), backend=backend, inner="aot_eager", fullgraph=True)
    got = compiled(x, skip)
    assert dict(compiled.pydense_fusions) == {"conv_relu": 1, "conv_residual": 1,
                                              "conv_pixel_shuffle": 1, "upsample_concat": 1}
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, **TOL)
    grads = torch.autograd.grad(sum(o.sum() for o in got), (x, skip, *compiled.parameters()))
    for g, w in zip(grads, want_grads):
        torch.testing.assert_close(g, w, **TOL)


class Shared(torch.nn.Module):
    """Intermediates with a second user, shapes that do not match: nothing to fuse."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x, skip):
        c = self.conv(x)
        a = F.relu(c) + c                              # the conv has two users
        u = F.interpolate(a, size=(12, 10), mode="nearest")
        v = torch.cat([u, skip, u], dim=1)             # u has two users
        w = torch.cat([F.interpolate(a, scale_factor=2, mode="area"), skip], dim=1)  # no kernel
        r = x + 0.5 * torch.nn.functional.conv2d(x, self.conv.weight, padding=2, dilation=2)
        return v, w, r


def test_nothing_fused_where_the_fused_op_would_differ():
    torch.manual_seed(0)
    model = Shared()
    x, skip = _inputs()
    compiled = pydense.compile(model, inner="aot_eager", fullgraph=True)
    got = compiled(x, skip)
    assert dict(compiled.pydense_fusions) == {"conv_residual": 1}  # only r: a dilated conv + residual
    for g, w in zip(got, model(x, skip)):
        torch.testing.assert_close(g, w, **TOL)


def test_concat_of_three_keeps_the_rest():
    def f(x, skip, extra):
        return torch.cat([F.interpolate(x, size=skip.shape[-2:], mode="nearest"), skip, extra], dim=1)

    x, skip = _inputs()
    extra = torch.randn(2, 1, 12, 10)
    compiled = pydense.compile(f, inner="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(x, skip, extra), f(x, skip, extra), rtol=0, atol=0)
    assert dict(compiled.pydense_fusions) == {"upsample_concat": 1}


def test_smp_unet_decoder_fuses():
    smp = pytest.importorskip("segmentation_models_pytorch")
    torch.manual_seed(0)
    model = smp.Unet("resnet18", encoder_weights=None, classes=3).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        want = model(x)
        compiled = pydense.compile(model, inner="aot_eager")
        got = compiled(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert compiled.pydense_fusions["upsample_concat"] == 4  # the four decoder blocks with a skip


class FCN8sHead(torch.nn.Module):
    """voc-fcn8s' skip chain as FCN ports write it (ConvTranspose2d with FCN's bilinear weights,
    1x1 score convolutions, crops by slicing, adds); the at-once variant scales pool4 first."""

    def __init__(self, k=5, scale=0.01, depthwise=False, frozen=True):
        super().__init__()
        groups = k if depthwise else 1
        self.upscore2 = torch.nn.ConvTranspose2d(k, k, 4, stride=2, bias=False, groups=groups)
        self.score_pool4 = torch.nn.Conv2d(6, k, 1)
        self.upscore_pool4 = torch.nn.ConvTranspose2d(k, k, 4, stride=2, bias=False, groups=groups)
        self.score_pool3 = torch.nn.Conv2d(3, k, 1, bias=False)
        for up in (self.upscore2, self.upscore_pool4):
            pydense.nn.init.bilinear_(up.weight).requires_grad_(not frozen)
        self.scale = scale

    def forward(self, score_fr, pool4, pool3):
        upscore2 = self.upscore2(score_fr)
        h = self.score_pool4(pool4 * self.scale)
        h = upscore2 + h[:, :, 5:5 + upscore2.size()[2], 5:5 + upscore2.size()[3]]
        up = self.upscore_pool4(h)
        s = self.score_pool3(pool3)
        return s[..., 9:9 + up.shape[2], 9:9 + up.shape[3]] + up  # the other order


def _fcn_inputs(k=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(2, k, 4, 3, generator=g).requires_grad_(),       # score_fr
            torch.randn(2, 6, 17, 15, generator=g).requires_grad_(),     # pool4: crop 5, 10x8
            torch.randn(2, 3, 42, 39, generator=g).requires_grad_())     # pool3: crop 9, 22x18


@pytest.mark.parametrize("backend", ["auto", "cpu", "torch"])
@pytest.mark.parametrize("depthwise", [False, True])
def test_fcn_skip_chain_fuses_with_the_same_numbers(backend, depthwise):
    torch.manual_seed(0)
    model = FCN8sHead(depthwise=depthwise)
    inputs = _fcn_inputs()
    params = [p for p in model.parameters() if p.requires_grad]
    want = model(*inputs)
    want_grads = torch.autograd.grad((want * want).sum(), (*inputs, *params))
    compiled = pydense.compile(model, backend=backend, inner="aot_eager", fullgraph=True)
    got = compiled(*inputs)
    assert dict(compiled.pydense_fusions) == {"fcn_skip": 2}
    torch.testing.assert_close(got, want, **TOL)
    grads = torch.autograd.grad((got * got).sum(), (*inputs, *params))
    for g, w in zip(grads, want_grads):
        torch.testing.assert_close(g, w, **TOL)


def test_fcn_skip_chain_with_a_trainable_deconvolution_fuses_only_without_gradients():
    torch.manual_seed(0)
    model = FCN8sHead(frozen=False)
    inputs = _fcn_inputs()
    compiled = pydense.compile(model, inner="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(*inputs), model(*inputs), **TOL)
    assert dict(compiled.pydense_fusions) == {}  # the deconvolution's weight gets a gradient
    torch._dynamo.reset()
    compiled = pydense.compile(model, inner="aot_eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(*inputs), model(*inputs), **TOL)
    assert dict(compiled.pydense_fusions) == {"fcn_skip": 2}


class NotFCN(torch.nn.Module):
    """Chains that look like FCN's skip but are not what fcn_skip computes."""

    def __init__(self, k=5):
        super().__init__()
        self.learned = torch.nn.ConvTranspose2d(k, k, 4, stride=2, bias=False)  # not bilinear
        self.biased = torch.nn.ConvTranspose2d(k, k, 4, stride=2)
        self.padded = torch.nn.ConvTranspose2d(k, k, 4, stride=2, padding=1, bias=False)
        for up in (self.biased, self.padded):
            pydense.nn.init.bilinear_(up.weight)
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, score_fr, pool4):
        s = pool4[:, :5]
        a = self.learned(score_fr) + s[:, :, 5:15, 5:13]
        b = self.biased(score_fr) + s[:, :, 5:15, 5:13]
        c = self.padded(score_fr) + s[:, :, 5:13, 5:11]
        u = torch.nn.functional.conv_transpose2d(score_fr, self.padded.weight, stride=2)  # bilinear
        d = u + s[:, :, 5:15:1, 6:14]                    # ... but it has a second user:
        e = u + s[:, :, :, 5:13][:, :, 5:15]            # and this crop is two slices
        f = torch.nn.functional.conv_transpose2d(score_fr, self.padded.weight, stride=2) + 1.0
        return a, b, c, d, e, f


def test_nothing_fused_where_fcn_skip_would_differ():
    model = NotFCN()
    score_fr, pool4, _ = _fcn_inputs()
    compiled = pydense.compile(model, inner="aot_eager", fullgraph=True)
    got = compiled(score_fr, pool4)
    assert dict(compiled.pydense_fusions) == {}
    for g, w in zip(got, model(score_fr, pool4)):
        torch.testing.assert_close(g, w, **TOL)


def test_fcn_skip_chain_of_pydense_bilinear_deconvolution_fuses():
    def f(score_fr, pool4):
        up = pydense.functional.bilinear_deconv2d(score_fr, 2)
        return up + pool4[:, :5, 5:15, 5:13] * 1.0

    score_fr, pool4, _ = _fcn_inputs()
    compiled = pydense.compile(f, inner="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(score_fr, pool4), f(score_fr, pool4), **TOL)
    assert dict(compiled.pydense_fusions) == {}  # the crop's source is a slice of pool4, not pool4

    def g(score_fr, scored):
        return pydense.functional.bilinear_deconv2d(score_fr, 2) + scored[..., 5:15, 5:13]

    scored = torch.randn(2, 5, 17, 15)
    compiled = pydense.compile(g, inner="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(score_fr, scored), g(score_fr, scored), **TOL)
    assert dict(compiled.pydense_fusions) == {"fcn_skip": 1}


def test_bad_backend():
    with pytest.raises(ValueError, match="backend"):
        pydense.compile(Block(), backend="cudnn")
