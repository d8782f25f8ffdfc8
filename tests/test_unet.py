"""U-Net (pydense.models.unet): the paper's network and the common padded form, parameter counts,
sizes, pydense ops vs stock PyTorch on one state_dict (forward and gradients), the decoder steps on
upsample_concat, torch.compile without graph breaks."""
import pytest
import torch

from pydense import models

from helpers import PydenseOpCounter, check_compile_fullgraph, check_model_gradients

TOL = 1e-4


def close(a, b, tol=TOL):
    scale = max(1.0, b.abs().max().item())
    torch.testing.assert_close(a, b, rtol=tol, atol=tol * scale)


def pair(*args, backend="cpu", **kwargs):
    torch.manual_seed(0)
    m = models.unet(*args, backend=backend, **kwargs)
    t = models.unet(*args, backend="torch", **kwargs)
    t.load_state_dict(m.state_dict())
    return m, t


@pytest.mark.parametrize("args,kwargs,count", [
    # the paper's Fig. 1 (1 input channel, 2 classes): 23 convolutions, biases included
    ((1, 2, "original"), {}, 31_030_658),
    # milesial/Pytorch-UNet's UNet(3, 2, bilinear=True / False), counted on its code
    ((3, 2, "padded"), {}, 17_263_042),
    ((3, 2, "padded"), {"bilinear": False}, 31_037_698),
])
def test_parameter_counts(args, kwargs, count):
    assert models.parameter_count(models.unet(*args, **kwargs)) == count


def test_sizes():
    with torch.device("meta"):  # the paper's tile: 572 -> 388 (stock model on meta: no compute)
        assert models.unet(backend="torch")(torch.empty(1, 1, 572, 572)).shape == (1, 2, 388, 388)
        assert models.unet(3, 5, "padded", backend="torch")(torch.empty(2, 3, 100, 75)).shape == (2, 5, 100, 75)


@pytest.mark.parametrize("backend", ["cpu", "auto"])
def test_original_matches_torch_forward_and_backward(backend):
    m, t = pair(1, 2, "original", backend=backend)
    m.eval(), t.eval()  # no dropout: the same function
    x = torch.randn(2, 1, 188, 204, requires_grad=True)  # 188 = the smallest valid tile -> 4
    out, ref = m(x), t(x)
    assert out.shape == (2, 2, 4, 20)
    close(out, ref)
    g = torch.autograd.grad(out.square().sum(), [x, *m.parameters()])
    g_ref = torch.autograd.grad(ref.square().sum(), [x, *t.parameters()])
    for a, b in zip(g, g_ref):
        close(a, b, 1e-3)


@pytest.mark.parametrize("backend", ["cpu", "auto"])
@pytest.mark.parametrize("bilinear", [True, False])
@pytest.mark.parametrize("size", [(64, 48), (37, 45)])  # every step fused / odd sizes (padded)
def test_padded_matches_torch_forward_and_backward(backend, bilinear, size):
    m, t = pair(3, 4, "padded", backend=backend, bilinear=bilinear)
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        close(m.eval()(x), t.eval()(x))
    check_model_gradients(m, t, x)  # BatchNorm over the 4x3 bottleneck: float64


def test_state_dict_speaks_the_reference_layout():
    """The bilinear steps keep their first convolution's input channels as [upsampled, skip]
    (upsample_concat's order); state_dict() and load_state_dict() use the references' [skip,
    upsampled]: a step computed by hand from the state_dict equals the block, and a round trip
    is the identity."""
    m = models.unet(3, 2, "padded", backend="torch").eval()
    sd = m.state_dict()
    x, skip = torch.randn(1, 512, 4, 3), torch.randn(1, 512, 8, 6)
    up = torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
    w = sd["up1.conv.double_conv.0.weight"]
    h = torch.nn.functional.conv2d(torch.cat([skip, up], 1), w, padding=1)
    block = m.up1.conv.double_conv
    with torch.no_grad():
        want = block[2](block[1](h))
        close(m.up1.conv.double_conv[:3](torch.cat([up, skip], 1)), want)
    m2 = models.unet(3, 2, "padded", backend="cpu")
    m2.load_state_dict(sd)
    assert all(torch.equal(v, m2.state_dict()[k]) for k, v in sd.items())
    assert torch.equal(m2.up1.conv.double_conv[0].weight, m.up1.conv.double_conv[0].weight)


def test_decoder_steps_run_upsample_concat():
    m, _ = pair(3, 2, "padded", backend="cpu")
    with torch.no_grad(), PydenseOpCounter() as counter:
        m.eval()(torch.randn(1, 3, 64, 48))
    assert counter.pydense().get("pydense::upsample_concat", 0) == 4
    with torch.no_grad(), PydenseOpCounter() as counter:  # 37 -> 18 -> 9 -> 4 -> 2: pads instead
        m(torch.randn(1, 3, 37, 45))
    assert counter.pydense().get("pydense::upsample_concat", 0) < 4


@pytest.mark.parametrize("variant", ["original", "padded"])
def test_compile_fullgraph_without_graph_breaks(variant):
    torch.manual_seed(0)
    model = (models.unet(1, 2, "original") if variant == "original" else models.unet(3, 2, "padded")).eval()
    x = torch.randn(1, model.inc.double_conv[0].in_channels, 188 if variant == "original" else 32, 188 if variant == "original" else 48)
    check_compile_fullgraph(model, x.requires_grad_())


def test_bad_arguments():
    with pytest.raises(ValueError, match="UNet: variant must be one of"):
        models.unet(variant="valid")
    with pytest.raises(ValueError, match="bilinear=True is the padded variant's"):
        models.unet(variant="original", bilinear=True)
    with pytest.raises(ValueError, match="UNet: num_classes must be a positive int"):
        models.unet(1, 0)
    with pytest.raises(ValueError, match="backend"):
        models.unet(backend="cudnn")


def test_shard_units():
    m = models.unet(3, 2, "padded")
    assert m.shard_units() == [m.inc, m.down1, m.down2, m.down3, m.down4, m.up1, m.up2, m.up3, m.up4]
