"""Image restoration networks on pydense's ops.

* DnCNN (Zhang, Zuo, Chen, Meng and Zhang, IEEE TIP 2017): ``depth`` 3x3 convolutions of 64
  channels, conv + ReLU, then (conv + BN + ReLU) x (depth - 2), then conv, with residual learning:
  the network predicts the noise and returns ``y - noise``. Layers as SaoYan/DnCNN-PyTorch names
  them (``dncnn.<i>``, every convolution without bias: 556,032 parameters for grey DnCNN-S), so its
  state_dicts load. On pydense the first convolution carries its ReLU and the last one the
  residual subtraction (``conv2d_fused(residual=y, scale=-1)``).
* The "Learning to See in the Dark" U-Net (Chen, Chen, Xu and Koltun, CVPR 2018): packed raw Bayer
  input (4 channels at half resolution), a U-Net of 32..512 channels with LeakyReLU (0.2), 2x2
  max-pooling, 2x2 transposed convolutions and concatenation, a 1x1 convolution to 12 channels and
  depth-to-space (x2) to a full-resolution RGB image (the reference's TensorFlow layout, in its
  layer names ``conv1_1`` .. ``conv10``, ``up6`` .. ``up9``; the up-convolutions without bias, as
  its ``conv2d_transpose`` has none; 7,760,268 parameters). The depth-to-space is PyTorch's
  ``pixel_shuffle`` (channel-major; TensorFlow's ``depth_to_space`` groups the 12 channels the other
  way, so a converted checkpoint permutes ``conv10``'s outputs). On pydense the last 1x1
  convolution and the depth-to-space are one ``conv2d_pixel_shuffle`` and the up-convolutions
  pydense's transposed convolution.

    >>> import torch, pydense
    >>> pydense.models.dncnn()(torch.rand(1, 1, 40, 40)).shape
    torch.Size([1, 1, 40, 40])
    >>> pydense.models.see_in_the_dark()(torch.rand(1, 4, 32, 32)).shape
    torch.Size([1, 3, 64, 64])
"""
import torch
import torch.nn.functional as F
from torch import nn

from .. import functional
from .. import nn as pnn
from ._layers import Model

__all__ = ["DnCNN", "dncnn", "SeeInTheDark", "see_in_the_dark"]


class DnCNN(Model):
    """DnCNN (see the module docstring).

    Args:
        channels (int): image channels (1: grey, 3: colour).
        depth (int): convolution layers (17: DnCNN-S / -B, 20: CDnCNN-B, DnCNN-3).
        features (int): 64.
        backend (str): "auto", "triton", "cuda", "cpu" (pydense's ops) or "torch" (stock).

    Input (N, channels, H, W) noisy image -> (N, channels, H, W) denoised.
    """

    def __init__(self, channels=1, depth=17, features=64, *, backend="auto"):
        super().__init__(backend)
        for name, v, low in (("channels", channels, 1), ("depth", depth, 3), ("features", features, 1)):
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ValueError(f"DnCNN: {name} must be an int >= {low}, got {v!r}")
        layers = [nn.Conv2d(channels, features, 3, padding=1, bias=False), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(features, features, 3, padding=1, bias=False),
                       nn.BatchNorm2d(features), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(features, channels, 3, padding=1, bias=False))
        self.dncnn = nn.Sequential(*layers)
        for m in self.modules():  # the paper's: He init; BN weights from N(0, 2/9/64) clipped
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, y):
        """``y - noise(y)``."""
        layers = self.dncnn
        if not self.fused:
            return y - layers(y)
        h = self.conv(y, layers[0], relu=True)
        for i in range(2, len(layers) - 1, 3):  # (conv, BN, ReLU): BN stays between
            conv = layers[i]
            h = layers[i + 2](layers[i + 1](functional.conv2d(h, conv.weight, None, 1, 1,
                                                              backend=self.backend)))
        return self.conv(h, layers[-1], residual=y, scale=-1.0)


def dncnn(channels=1, depth=17, **kwargs):
    return DnCNN(channels, depth, **kwargs)


class SeeInTheDark(Model):
    """The "Learning to See in the Dark" U-Net (see the module docstring).

    Args:
        in_channels (int): 4 (packed Bayer RGGB).
        out_channels (int): 3 (RGB).
        backend (str): "auto", "triton", "cuda", "cpu" (pydense's ops) or "torch" (stock).

    Input (N, 4, H, W) packed raw (H, W multiples of 16) -> (N, 3, 2H, 2W) RGB.
    """

    WIDTHS = (32, 64, 128, 256, 512)

    def __init__(self, in_channels=4, out_channels=3, *, backend="auto"):
        super().__init__(backend)
        conv = (lambda *a, **k: pnn.Conv2d(*a, **k, backend=self.backend)) if self.fused else nn.Conv2d
        w, cin = self.WIDTHS, in_channels
        for i, c in enumerate(w, 1):
            setattr(self, f"conv{i}_1", conv(cin, c, 3, padding=1))
            setattr(self, f"conv{i}_2", conv(c, c, 3, padding=1))
            cin = c
        for i, c in zip(range(6, 10), reversed(w[:-1])):
            setattr(self, f"up{i}", nn.ConvTranspose2d(2 * c, c, 2, stride=2, bias=False))
            setattr(self, f"conv{i}_1", conv(2 * c, c, 3, padding=1))
            setattr(self, f"conv{i}_2", conv(c, c, 3, padding=1))
        self.conv10 = nn.Conv2d(w[0], 4 * out_channels, 1)

    def _pair(self, x, i):
        x = F.leaky_relu(getattr(self, f"conv{i}_1")(x), 0.2)
        return F.leaky_relu(getattr(self, f"conv{i}_2")(x), 0.2)

    def forward(self, x):
        skips = []
        for i in range(1, 5):
            x = self._pair(x, i)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self._pair(x, 5)
        for i in range(6, 10):
            up = getattr(self, f"up{i}")
            if self.fused:
                x = functional.conv_transpose2d(x, up.weight, up.bias, stride=2, backend=self.backend)
            else:
                x = up(x)
            x = self._pair(torch.cat([x, skips.pop()], 1), i)
        if self.fused:
            return functional.conv2d_pixel_shuffle(x, self.conv10.weight, self.conv10.bias, 2,
                                                   backend=self.backend)
        return F.pixel_shuffle(self.conv10(x), 2)


def see_in_the_dark(in_channels=4, out_channels=3, **kwargs):
    return SeeInTheDark(in_channels, out_channels, **kwargs)
