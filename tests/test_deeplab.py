"""DeepLabv3+ (pydense.models.deeplabv3plus): the ResNet backbone against torchvision's, the
parameter count, pydense ops vs stock PyTorch on one state_dict (forward and gradients), the
decoder on upsample_concat, torch.compile without graph breaks."""
import pytest
import torch

from pydense import models
from pydense.models.deeplab import ResNet

from helpers import PydenseOpCounter, check_compile_fullgraph, check_model_gradients


def close(a, b, tol=1e-4):
    scale = max(1.0, b.abs().max().item())
    torch.testing.assert_close(a, b, rtol=tol, atol=tol * scale)


def pair(backend="cpu", **kwargs):
    torch.manual_seed(0)
    m = models.deeplabv3plus(5, backend=backend, **kwargs)
    t = models.deeplabv3plus(5, backend="torch", **kwargs)
    t.load_state_dict(m.state_dict())
    return m, t


@pytest.mark.parametrize("depth", [50, 101])
@pytest.mark.parametrize("output_stride", [16, 8])
def test_backbone_is_torchvisions(depth, output_stride):
    """torchvision's ResNet (random weights, replace_stride_with_dilation for the output stride)
    loads into the backbone, strictly, and gives the same features."""
    torchvision = pytest.importorskip("torchvision")
    dilate = [False, False, True] if output_stride == 16 else [False, True, True]
    tv = getattr(torchvision.models, f"resnet{depth}")(weights=None, replace_stride_with_dilation=dilate).eval()
    ours = ResNet(depth, output_stride).eval()
    ours.load_state_dict({k: v for k, v in tv.state_dict().items() if not k.startswith("fc.")})
    x = torch.randn(1, 3, 65, 49)
    with torch.no_grad():
        low, high = ours(x)
        t = tv.layer1(tv.maxpool(tv.relu(tv.bn1(tv.conv1(x)))))
        assert torch.equal(low, t) and torch.equal(high, tv.layer4(tv.layer3(tv.layer2(t))))
    assert high.shape[-2:] == ((5, 4) if output_stride == 16 else (9, 7))


def test_parameter_counts():
    # backbone: torchvision's ResNet-50 without fc (23,508,032); ASPP: pooling and 1x1 branches
    # 2 x (2048 x 256 + BN), three separable branches 3 x (2048 x 9 + BN + 2048 x 256 + BN),
    # projection 1280 x 256 + BN; decoder: 256 x 48 + BN, separable 304 -> 256 and 256 -> 256,
    # the 1x1 classifier with bias
    aspp = 2 * (2048 * 256 + 512) + 3 * (2048 * 9 + 4096 + 2048 * 256 + 512) + 1280 * 256 + 512
    decoder = (256 * 48 + 96) + (304 * 9 + 608 + 304 * 256 + 512) + (256 * 9 + 512 + 256 * 256 + 512)
    want = 23_508_032 + aspp + decoder + 256 * 21 + 21
    assert want == 26_696_133
    assert models.parameter_count(models.deeplabv3plus(21)) == want
    assert models.parameter_count(models.deeplabv3plus(21, depth=101)) == want - 23_508_032 + 42_500_160


def test_sizes_at_513():
    with torch.device("meta"):  # the paper's crop; stock model on meta: no compute
        for os_ in (16, 8):
            m = models.deeplabv3plus(21, output_stride=os_, backend="torch")
            assert m(torch.empty(2, 3, 513, 513)).shape == (2, 21, 513, 513)


@pytest.mark.parametrize("backend", ["cpu", "auto"])
@pytest.mark.parametrize("output_stride", [16, 8])
def test_matches_torch_forward_and_backward(backend, output_stride):
    m, t = pair(backend, output_stride=output_stride)
    x = torch.randn(2, 3, 65, 49)
    with torch.no_grad():
        close(m.eval()(x), t.eval()(x))
    check_model_gradients(m, t, x, seed=1)  # the ASPP's dropout: the same mask


def test_decoder_runs_upsample_concat():
    m, _ = pair("cpu")
    with torch.no_grad(), PydenseOpCounter() as counter:
        m.eval()(torch.randn(1, 3, 65, 65))
    ops = counter.pydense()
    assert ops.get("pydense::upsample_concat", 0) == 1 and ops.get("pydense::upsample_bilinear2d", 0) >= 1
    assert ops.get("pydense::conv2d", 0) >= 60  # backbone, ASPP, decoder


def test_compile_fullgraph_without_graph_breaks():
    torch.manual_seed(0)
    model = models.deeplabv3plus(3).eval()
    x = torch.randn(1, 3, 33, 33)
    check_compile_fullgraph(model, x.requires_grad_())


def test_bad_arguments():
    with pytest.raises(ValueError, match="DeepLabV3Plus: output_stride must be 16 or 8"):
        models.deeplabv3plus(output_stride=32)
    with pytest.raises(ValueError, match="ResNet: depth must be one of"):
        models.deeplabv3plus(depth=34)
    with pytest.raises(ValueError, match="multi_grid needs 3 values"):
        models.deeplabv3plus(multi_grid=(1, 2))
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        models.deeplabv3plus(0)


def test_multi_grid_dilations():
    m = models.deeplabv3plus(3, multi_grid=(1, 2, 4), backend="torch")
    assert [b.conv2.dilation for b in m.backbone.layer4] == [(2, 2), (4, 4), (8, 8)]
    m = models.deeplabv3plus(3, backend="torch")  # torchvision's: the first block keeps 1
    assert [b.conv2.dilation for b in m.backbone.layer4] == [(1, 1), (2, 2), (2, 2)]
