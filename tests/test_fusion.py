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


def test_bad_backend():
    with pytest.raises(ValueError, match="backend"):
        pydense.compile(Block(), backend="cudnn")
