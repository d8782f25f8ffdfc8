"""U-Net (Ronneberger, Fischer and Brox, MICCAI 2015), in two forms:

* ``variant="original"``, the paper's network (Fig. 1): 3x3 valid convolutions + ReLU (no
  normalisation), 2x2 max-pooling, 64..1024 channels, dropout (0.5) at the end of the contracting
  path, 2x2 up-convolutions halving the channels, crop-and-concat of the contracting path's
  features, a 1x1 classifier: a 572x572 tile gives a 388x388 map.
* ``variant="padded"``, the common padded form as segmentation code writes it (the layout and
  parameter names of milesial/Pytorch-UNet, whose state_dicts load here): padded convolutions with
  BatchNorm, bilinear upsampling (``align_corners=True``; with it the deepest block has 512
  channels) or, with ``bilinear=False``, 2x2 up-convolutions; same-size output.

Each decoder step concatenates the skip and the upsampled map. On the pydense backends the padded
model's bilinear steps run ``upsample_concat`` (the upsampled map is never written: the kernel
interpolates into the concatenation), which writes ``[upsampled, skip]``; those steps' first
convolutions keep their input channels in that order (in both backends), and ``state_dict()`` /
``load_state_dict()`` swap them to and from the references' ``[skip, upsampled]`` layout, so
checkpoints are the references'. The original's convolutions carry their ReLU (``conv2d_fused``)
and its up-convolutions run pydense's transposed convolution.

    >>> import torch, pydense
    >>> pydense.models.unet().eval()(torch.randn(1, 1, 572, 572)).shape     # doctest: +SKIP
    torch.Size([1, 2, 388, 388])
"""
import torch
import torch.nn.functional as F
from torch import nn

from .. import functional
from .. import nn as pnn
from ._layers import Model

__all__ = ["UNet", "unet"]

VARIANTS = ("original", "padded")


class DoubleConv(nn.Module):
    """``double_conv``: (3x3 conv [-> BN] -> ReLU) x 2 (the references' names). ``fused``: the
    backend whose ``conv2d_fused`` runs each unnormalised convolution with its ReLU."""

    def __init__(self, cin, cout, mid=None, *, padded, conv, fused=None):
        super().__init__()
        mid = mid or cout
        self.fused = fused if not padded else None
        if padded:
            layers = [conv(cin, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(True),
                      conv(mid, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]
        else:
            layers = [conv(cin, mid, 3), nn.ReLU(True), conv(mid, cout, 3), nn.ReLU(True)]
        self.double_conv = nn.Sequential(*layers)

    def forward(self, x):
        if self.fused is None:
            return self.double_conv(x)
        c = self.double_conv
        for m in (c[0], c[2]):
            x = functional.conv2d_fused(x, m.weight, m.bias, activation="relu", backend=self.fused)
        return x


class Down(nn.Module):
    """``maxpool_conv``: 2x2 max-pooling, then a DoubleConv."""

    def __init__(self, cin, cout, **kwargs):
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), DoubleConv(cin, cout, **kwargs))

    def forward(self, x):
        return self.maxpool_conv(x)


class UNet(Model):
    """U-Net (see the module docstring).

    Args:
        in_channels (int): input channels (1 in the paper; 3 for RGB).
        num_classes (int): output channels (2 in the paper).
        variant (str): "original" (the paper's valid-convolution network) or "padded".
        bilinear (bool): "padded" only: bilinear upsampling (default True) or 2x2 up-convolutions.
        backend (str): "auto", "triton", "cuda", "cpu" (pydense's ops) or "torch" (stock), same
            parameters.

    Input (N, in_channels, H, W) -> (N, num_classes, H', W'): "original" H' = H - 184 for
    H = 16 k + 188 (572 -> 388), "padded" H' = H (any size; sizes divisible by 16 fuse every step).
    """

    def __init__(self, in_channels=1, num_classes=2, variant="original", *, bilinear=None,
                 backend="auto"):
        super().__init__(backend)
        if variant not in VARIANTS:
            raise ValueError(f"UNet: variant must be one of {VARIANTS}, got {variant!r}")
        for name, v in (("in_channels", in_channels), ("num_classes", num_classes)):
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"UNet: {name} must be a positive int, got {v!r}")
        padded = variant == "padded"
        if bilinear is None:
            bilinear = padded
        if bilinear and not padded:
            raise ValueError("UNet: bilinear=True is the padded variant's; the original uses 2x2 "
                             "up-convolutions (variant='padded' for bilinear upsampling)")
        self.variant, self.bilinear = variant, bilinear
        if self.fused:
            def conv(*args, **kwargs):
                return pnn.Conv2d(*args, **kwargs, backend=self.backend)
        else:
            conv = nn.Conv2d
        factor = 2 if bilinear else 1
        kw = dict(padded=padded, conv=conv, fused=self.backend if self.fused else None)
        self.inc = DoubleConv(in_channels, 64, **kw)
        self.down1 = Down(64, 128, **kw)
        self.down2 = Down(128, 256, **kw)
        self.down3 = Down(256, 512, **kw)
        self.down4 = Down(512, 1024 // factor, **kw)
        self.up1 = Up(1024, 512 // factor, bilinear, self.backend, **kw)
        self.up2 = Up(512, 256 // factor, bilinear, self.backend, **kw)
        self.up3 = Up(256, 128 // factor, bilinear, self.backend, **kw)
        self.up4 = Up(128, 64, bilinear, self.backend, **kw)
        self.outc = OutConv(64, num_classes)
        self.dropout = nn.Identity() if padded else nn.Dropout(0.5)
        if not padded:
            self.reset_parameters()

    def reset_parameters(self):
        """The paper's initialisation: Gaussian with standard deviation sqrt(2 / N), N the
        incoming nodes of a neuron (3x3 x input channels); zero biases."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                fan_in = m.weight[0].numel() if isinstance(m, nn.Conv2d) else (
                    m.weight.shape[0] * m.weight[0, 0].numel())
                nn.init.normal_(m.weight, std=(2.0 / fan_in) ** 0.5)
                nn.init.zeros_(m.bias)

    def shard_units(self):
        """The encoder and decoder blocks (FSDP2 units; see :meth:`Model.shard_units`)."""
        return [self.inc, self.down1, self.down2, self.down3, self.down4, self.up1, self.up2,
                self.up3, self.up4]

    def forward(self, x):
        skips = [self.inc(x)]
        for down in (self.down1, self.down2, self.down3, self.down4):
            skips.append(down(skips[-1]))
        x = self.dropout(skips.pop())  # the end of the contracting path
        for up in (self.up1, self.up2, self.up3, self.up4):
            x = up(x, skips.pop())
        return self.outc(x)

    def extra_repr(self):
        return f"variant={self.variant!r}, bilinear={self.bilinear}, backend={self.backend!r}"


class Up(nn.Module):
    """A decoder step: upsample ``x`` (bilinear, or a 2x2 up-convolution ``up``), match the skip
    (the original crops the skip to the centre, the padded form pads the upsampled map), concat
    ``[skip, up]``, DoubleConv (``conv``)."""

    def __init__(self, cin, cout, bilinear, backend, *, padded, **kw):
        super().__init__()
        self.backend, self.bilinear, self.padded = backend, bilinear, padded
        if bilinear:
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
            self.conv = DoubleConv(cin, cout, cin // 2, padded=padded, **kw)
            # the first convolution's input channels: [upsampled, skip] here, [skip, upsampled]
            # (halves of cin each) in state_dicts
            self.register_state_dict_post_hook(_swap_saved)
            self.register_load_state_dict_pre_hook(_swap_loaded)
        else:
            self.up = nn.ConvTranspose2d(cin, cin // 2, 2, stride=2)
            self.conv = DoubleConv(cin, cout, padded=padded, **kw)

    @property
    def fused(self):
        return self.backend != "torch"

    def forward(self, x, skip):
        if self.bilinear:
            if self.fused and skip.shape[-2:] == tuple(2 * n for n in x.shape[-2:]):
                h = functional.upsample_concat(x, skip, scale_factor=2, mode="bilinear",
                                               align_corners=True, backend=self.backend)
                return self.conv(h)
            u = self.up(x)
        elif self.fused:
            u = functional.conv_transpose2d(x, self.up.weight, self.up.bias, stride=2,
                                            backend=self.backend)
        else:
            u = self.up(x)
        if self.padded:  # milesial's: pad the upsampled map to the skip's size
            dy, dx = skip.shape[-2] - u.shape[-2], skip.shape[-1] - u.shape[-1]
            u = F.pad(u, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        else:  # the paper's crop of the contracting path's features (the centre)
            dy, dx = (skip.shape[-2] - u.shape[-2]) // 2, (skip.shape[-1] - u.shape[-1]) // 2
            skip = skip[..., dy:dy + u.shape[-2], dx:dx + u.shape[-1]]
        return self.conv(torch.cat([u, skip] if self.bilinear else [skip, u], dim=1))


_FIRST = "conv.double_conv.0.weight"


def _swap_halves(w):
    c = w.shape[1] // 2
    return torch.cat([w[:, c:], w[:, :c]], dim=1)


def _swap_saved(module, state_dict, prefix, local_metadata):
    key = prefix + _FIRST
    if key in state_dict:
        state_dict[key] = _swap_halves(state_dict[key])


def _swap_loaded(module, state_dict, prefix, local_metadata, strict, missing_keys,
                 unexpected_keys, error_msgs):
    key = prefix + _FIRST
    if key in state_dict and getattr(state_dict[key], "dim", lambda: 0)() == 4:
        state_dict[key] = _swap_halves(state_dict[key])


class OutConv(nn.Module):
    """``conv``: the 1x1 classifier."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        return self.conv(x)


def unet(in_channels=1, num_classes=2, variant="original", **kwargs):
    return UNet(in_channels, num_classes, variant, **kwargs)
