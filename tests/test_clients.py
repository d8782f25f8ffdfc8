"""pydense in the models people already run: segmentation-models-pytorch (random init, nothing is
downloaded). Patched and under ``enabled``, with the C++ CPU kernels forced (``backend="cpu"``)
and with ``auto`` (which on CPU calls the stock ops where they are faster), outputs and
gradients equal the stock model's, and the routing does what the README says (counted)."""
import copy

import pytest
import torch
import torch.nn.functional as F

import pydense

from helpers import PydenseOpCounter

smp = pytest.importorskip("segmentation_models_pytorch")

TOL = dict(rtol=1e-4, atol=1e-4)

# name -> (constructor, does patch replace modules? (dilated / grouped / depthwise convs, bilinear
# upsampling modules))
MODELS = {
    "Unet-resnet18": (lambda: smp.Unet("resnet18", encoder_weights=None, classes=3), False),
    "DeepLabV3Plus-resnet18": (lambda: smp.DeepLabV3Plus("resnet18", encoder_weights=None, classes=3), True),
    "FPN-mobilenet_v2": (lambda: smp.FPN("mobilenet_v2", encoder_weights=None, classes=3), True),
    "PSPNet-resnet18": (lambda: smp.PSPNet("resnet18", encoder_weights=None, classes=3), True),
}


@pytest.fixture(scope="module", params=list(MODELS))
def model_case(request):
    torch.manual_seed(0)
    model = MODELS[request.param][0]().eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
    return request.param, model, x, ref


@pytest.mark.parametrize("backend", ["cpu", "auto"])
def test_patched_smp_model_equals_stock(model_case, backend):
    name, model, x, ref = model_case
    patched = pydense.patch(copy.deepcopy(model), backend=backend)
    records = pydense.patched_modules(patched)
    assert bool(records) == MODELS[name][1]
    with torch.no_grad(), PydenseOpCounter() as counter:
        out = patched(x)
    torch.testing.assert_close(out, ref, **TOL)
    convs = counter.pydense().get("pydense::conv2d", 0)
    if backend == "cpu":  # every patched conv runs pydense's kernel
        assert convs == sum(r.op == "conv" for r in records)


@pytest.mark.parametrize("backend", ["cpu", "auto"])
def test_enabled_smp_model_equals_stock_with_gradients(model_case, backend):
    name, model, x, ref = model_case
    model = copy.deepcopy(model).train()
    stock = copy.deepcopy(model)
    target = torch.randint(0, 3, (2, 64, 64))
    torch.manual_seed(1)  # the same dropout masks (DeepLabV3Plus' ASPP, PSPNet's head)
    with pydense.enabled(backend=backend), PydenseOpCounter() as counter:
        loss = F.cross_entropy(model(x), target)
    loss.backward()
    torch.manual_seed(1)
    ref_loss = F.cross_entropy(stock(x), target)
    ref_loss.backward()
    torch.testing.assert_close(loss, ref_loss, **TOL)
    # fp32 in another summation order, through ~50 train-mode BatchNorms: 1e-3 of each gradient's
    # largest entry, plus 1e-5 of the model's (gradients that are zero in exact arithmetic, such
    # as a bias before a BatchNorm, are pure round-off); a wrong gradient is off by its own size
    overall = max(q.grad.abs().max().item() for q in stock.parameters() if q.grad is not None)
    for (n, p), q in zip(model.named_parameters(), stock.parameters()):
        if q.grad is None:  # unused by the forward (PSPNet's encoder stops at depth 3)
            assert p.grad is None, n
            continue
        scale = q.grad.abs().max().item()
        assert (p.grad - q.grad).abs().max().item() <= 1e-3 * scale + 1e-5 * overall, n
    ops = counter.pydense()
    if backend == "cpu":  # smp decoders upsample bilinearly (DeepLabV3Plus, FPN, PSPNet) or nearest (Unet)
        assert (ops.get("pydense::upsample_bilinear2d", 0) > 0) == (not name.startswith("Unet"))


def test_explain_smp_deeplabv3plus():
    torch.manual_seed(0)
    model = pydense.patch(smp.DeepLabV3Plus("resnet18", encoder_weights=None, classes=3).eval())
    report = pydense.explain(model, torch.randn(1, 3, 64, 64))
    assert sum(e.pydense for e in report.modules) == len(pydense.patched_modules(model)) > 0
    assert any(not e.pydense and "dense convolution" in e.reason for e in report.modules)
