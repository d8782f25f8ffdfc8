"""SegNet (pydense.models.segnet): the real model (all 26 convolutions, full channel counts) on
tiny spatial sizes. CPU rows use the C++ CPU kernels (backend="cpu"); the Triton kernels are
tested op by op in tests/test_max_pool.py (the interpreter is too slow for a whole model)."""
import importlib

import pytest
import torch
import torch.nn.functional as F

import pydense
import pydense.models

segnet_module = importlib.import_module("pydense.models.segnet")  # the module (the package's segnet is the function)

from helpers import check_compile_fullgraph, requires_cuda


def spec_parameter_count(num_classes):
    """From the specification: every 3x3 conv has cin*cout*9 weights + cout biases; every conv
    but the classifier has a BatchNorm with cout weights + cout biases (running stats are buffers)."""
    convs = [c for stage in segnet_module.ENCODER + segnet_module.DECODER for c in stage]
    total = 0
    for cin, cout in convs:
        last = cout is None
        cout = num_classes if last else cout
        total += cin * cout * 9 + cout + (0 if last else 2 * cout)
    return total


def models(**kwargs):
    """A pydense (C++ CPU kernels) and a stock torch SegNet with the same weights."""
    torch.manual_seed(0)
    ours = pydense.models.segnet(11, backend="cpu", **kwargs)
    ref = pydense.models.segnet(11, backend="torch")
    ref.load_state_dict(ours.state_dict())
    return ours, ref


def test_parameter_count():
    assert len(segnet_module.ENCODER) == len(segnet_module.DECODER) == 5
    assert sum(map(len, segnet_module.ENCODER)) == 13 and sum(map(len, segnet_module.DECODER)) == 13
    assert spec_parameter_count(11) == 29_449_355  # REFERENCE: ~29.45M for CamVid's 11 classes
    for backend in ("auto", "torch"):
        model = pydense.models.segnet(11, backend=backend)
        assert sum(p.numel() for p in model.parameters()) == 29_449_355
    assert sum(p.numel() for p in pydense.models.segnet(21).parameters()) == spec_parameter_count(21)


def test_structure_and_init():
    model = pydense.models.segnet(11, backend="auto", compact_indices=True)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(convs) == 26 and len(bns) == 25
    assert all(isinstance(c, pydense.nn.Conv2d) for c in convs)
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    last = model.decoder[4][1]
    assert list(last._modules) == ["conv"] and last.conv.out_channels == 11
    assert isinstance(model.pool, pydense.nn.MaxPool2d) and model.pool.compact and model.pool.ceil_mode
    # He init: std sqrt(2 / fan_in), zero biases
    w = model.encoder[3][1].conv.weight
    assert abs(w.std().item() - (2 / (512 * 9)) ** 0.5) < 0.02 * (2 / (512 * 9)) ** 0.5
    assert all(c.bias.abs().max() == 0 for c in convs)


def test_state_dicts_interchangeable():
    ours, ref = models()
    assert list(ours.state_dict()) == list(ref.state_dict())
    fresh = pydense.models.segnet(11, backend="cpu", compact_indices=True)
    fresh.load_state_dict(ref.state_dict())
    for (name, a), b in zip(fresh.state_dict().items(), ours.state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_pydense_matches_torch_fp32(train):
    """Odd CamVid-like size (45x60: pools 23x30, 12x15, 6x8, 3x4, 2x2 rounded up as Caffe)."""
    ours, ref = models()
    ours.train(train), ref.train(train)
    x = torch.randn(1, 3, 45, 60, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ya, yb = ours(x), ref(x)
    assert ya.shape == yb.shape == (1, 11, 45, 60)
    torch.testing.assert_close(ya, yb, rtol=1e-4, atol=1e-4 * yb.abs().max().item())


def test_pydense_matches_torch_fp64_gradients():
    """Gradients in float64: in fp32 the two models' last-bit differences flip near-ties of the
    max-pools (after ReLU many windows tie at 0), which reroutes gradients legitimately; in
    float64 both compute the same argmaxes and the gradients agree to ~1e-13 relative."""
    ours, ref = models()
    ours.double(), ref.double()
    x = torch.randn(1, 3, 45, 60, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = ours(xa), ref(xb)
    torch.testing.assert_close(ya, yb, rtol=1e-10, atol=1e-10)
    g = torch.randn(ya.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ya.backward(g), yb.backward(g)
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-9, atol=1e-9 * xb.grad.abs().max().item())
    # (the biases of convolutions followed by train-mode BatchNorm have zero gradient up to
    # rounding: the tolerance is relative to the largest parameter gradient)
    scale = max(p.grad.abs().max().item() for p in ref.parameters())
    for (name, pa), pb in zip(ours.named_parameters(), ref.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-8, atol=1e-10 * scale, msg=name)


def test_compact_and_int64_indices_identical():
    torch.manual_seed(0)
    a = pydense.models.segnet(11, backend="cpu", compact_indices=False)
    b = pydense.models.segnet(11, backend="cpu", compact_indices=True)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 24, 32, generator=torch.Generator().manual_seed(3))
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = a(xa), b(xb)
    assert torch.equal(ya, yb)
    ya.square().mean().backward(), yb.square().mean().backward()
    assert torch.equal(xa.grad, xb.grad)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(pa.grad, pb.grad), name


def test_pool_indices_are_uint8_with_compact():
    model = pydense.models.segnet(11, backend="cpu", compact_indices=True).eval()
    seen = []
    model.pool.register_forward_hook(lambda m, i, o: seen.append(o[1].dtype))
    model(torch.randn(1, 3, 16, 16))
    assert seen == [torch.uint8] * 5


def test_training_steps_lower_the_loss():
    torch.manual_seed(0)
    model = pydense.models.segnet(11, backend="auto", compact_indices=True)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 24, 32, generator=g)
    target = torch.randint(0, 11, (2, 24, 32), generator=g)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(4):
        loss = F.cross_entropy(model(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(b < a for a, b in zip(losses, losses[1:])) and losses[-1] < 0.9 * losses[0], losses


def test_compile_fullgraph_no_graph_breaks():
    torch.manual_seed(0)
    model = pydense.models.segnet(11, backend="cpu", compact_indices=True).eval()
    x = torch.randn(1, 3, 16, 24, requires_grad=True)
    check_compile_fullgraph(model, x)


def test_bad_arguments():
    with pytest.raises(ValueError, match="backend must be one of"):
        pydense.models.segnet(11, backend="cudnn")
    with pytest.raises(ValueError, match="compact_indices=True needs a pydense backend"):
        pydense.models.segnet(11, backend="torch", compact_indices=True)
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        pydense.models.segnet(0)


@requires_cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("compact", [False, True], ids=["int64", "compact"])
def test_cuda_matches_torch(backend, compact):
    torch.manual_seed(0)
    ours = pydense.models.segnet(11, backend=backend, compact_indices=compact).cuda()
    ref = pydense.models.segnet(11, backend="torch").cuda()
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, 3, 90, 120, device="cuda")
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = ours(xa), ref(xb)
    torch.testing.assert_close(ya, yb, rtol=1e-3, atol=1e-3 * yb.abs().max().item())
    ya.sum().backward(), yb.sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-2, atol=1e-2 * xb.grad.abs().max().item())


@requires_cuda
def test_cuda_bf16_channels_last_compact_matches_int64():
    torch.manual_seed(0)
    a = pydense.models.segnet(11, compact_indices=False).cuda().to(memory_format=torch.channels_last)
    b = pydense.models.segnet(11, compact_indices=True).cuda().to(memory_format=torch.channels_last)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 90, 120, device="cuda").contiguous(memory_format=torch.channels_last)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        ya, yb = a(x), b(x)
    assert torch.equal(ya, yb)
