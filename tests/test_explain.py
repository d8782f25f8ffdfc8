"""pydense.explain: the report of which modules and calls run on pydense, on which backend, and
why the others stay on stock."""
import pytest
import torch
import torch.nn.functional as F

import pydense
from pydense import _backend


class Head(torch.nn.Module):
    """Modules of every kind explain knows, and functional calls in forward."""

    def __init__(self):
        super().__init__()
        self.dilated = torch.nn.Conv2d(3, 8, 3, padding=2, dilation=2)
        self.dense = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.nearest = torch.nn.Upsample(scale_factor=2, mode="nearest")
        self.bilinear = torch.nn.Upsample(scale_factor=2, mode="bilinear")

    def forward(self, x):
        y = self.bilinear(self.nearest(self.dense(self.dilated(x))))
        y = F.conv2d(y, self.dense.weight, padding=2, dilation=2)  # dilated: routed
        y = F.interpolate(y, scale_factor=0.5, mode="area")         # no pydense kernel
        return F.interpolate(y, size=(20, 20), mode="bilinear")     # routed


def _by(report, kind):
    return {(e.where, e.what.split(" ")[0]): e for e in report.entries if e.kind == kind}


@pytest.mark.parametrize("backend", ["auto", "cpu", "torch"])
def test_report_of_a_patched_model(backend):
    model = pydense.patch(Head())
    x = torch.randn(1, 3, 10, 10)
    want = model(x)
    report = pydense.explain(model, x, backend=backend)
    mods = _by(report, "module")
    assert mods[("dilated", "Conv2d")].pydense and mods[("bilinear", "Upsample")].pydense
    assert not mods[("dense", "Conv2d")].pydense and "dense convolution" in mods[("dense", "Conv2d")].reason
    assert not mods[("nearest", "Upsample")].pydense and "nearest" in mods[("nearest", "Upsample")].reason
    # the patched modules report what their backend resolved to (the model's own: auto)
    auto = _backend.auto_choice("conv2d", torch.device("cpu"), "dense")
    assert mods[("dilated", "Conv2d")].ops == (f"conv2d -> {auto}",)
    calls = [e for e in report.calls]
    assert [(e.where, e.what, e.pydense) for e in calls] == [
        ("dense", "F.conv2d", False), ("nearest", "F.interpolate", False),
        ("", "F.conv2d", True), ("", "F.interpolate", False), ("", "F.interpolate", True)]
    resolved = {"auto": auto, "cpu": "cpu", "torch": "torch"}[backend]
    assert calls[2].ops == (f"conv2d -> {resolved}",)
    assert "mode='area'" in calls[3].reason
    # the model is untouched: same output, no hooks left
    assert torch.equal(model(x), want)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    assert _backend.TRACE.calls is None
    text = str(report)
    assert "2 of 4 known modules on pydense, 2 of 5 functional calls routed" in text
    assert "F.interpolate" in text and "dense convolution" in text


def test_report_without_patch_or_enabled():
    model = Head()
    report = pydense.explain(model, torch.randn(1, 3, 10, 10), enabled=False)
    mods = _by(report, "module")
    assert "pydense.patch would replace it" in mods[("dilated", "Conv2d")].reason
    assert not any(e.pydense for e in report.entries)
    assert all("enabled() not in use" in e.reason for e in report.calls)
    report = pydense.explain(model, torch.randn(1, 3, 10, 10), ops=("upsample",))
    calls = {(e.where, e.what): e for e in report.calls}
    assert not calls[("dilated", "F.conv2d")].pydense and "'conv' not in ops" in calls[("dilated", "F.conv2d")].reason


def test_aten_choice_is_explained(monkeypatch):
    from pydense import _tuned

    monkeypatch.setitem(_tuned.AUTO_BACKEND, "conv2d", {"cuda": "triton", "cpu": {"dense": "aten", "*": "cpu"}})
    report = pydense.explain(pydense.patch(Head()), torch.randn(1, 3, 10, 10))
    e = _by(report, "module")[("dilated", "Conv2d")]
    assert e.ops == ("conv2d -> aten",) and "the stock op" in e.reason and "class dense" in e.reason


def test_bad_arguments():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        pydense.explain(lambda x: x, torch.randn(1))
    with pytest.raises(ValueError, match="unknown ops"):
        pydense.explain(Head(), torch.randn(1, 3, 10, 10), ops=("convolution",))
    with pytest.raises(ValueError, match="backend"):
        pydense.explain(Head(), torch.randn(1, 3, 10, 10), backend="cudnn")


def test_torchvision_deeplabv3():
    tv = pytest.importorskip("torchvision")
    model = tv.models.segmentation.deeplabv3_resnet50(weights=None, weights_backbone=None,
                                                      num_classes=5, aux_loss=False).eval()
    report = pydense.explain(pydense.patch(model), torch.randn(1, 3, 64, 64))
    patched = [e for e in report.modules if e.pydense]
    assert len(patched) == len(pydense.patched_modules(model)) > 0
    assert any(e.what == "F.interpolate" and e.pydense for e in report.calls)
