"""DeepLabv3+ (Chen, Zhu, Papandreou, Schroff and Adam, ECCV 2018: "Encoder-Decoder with Atrous
Separable Convolution for Semantic Image Segmentation"), on a ResNet backbone built here.

* Backbone: ResNet-50 / 101 with torchvision's layout and parameter names (its state_dicts load,
  and its ``replace_stride_with_dilation`` semantics; output stride 32 is the plain ResNet, as
  Panoptic FPN uses it): at output stride 16 the last stage's stride
  becomes dilation 2, at 8 the last two stages' strides become dilations 2 and 4. Optional
  multi-grid (DeepLabv3: (1, 2, 4) in the last stage).
* ASPP, as the paper's reference code (TensorFlow ``deeplab/model.py``) builds it: a 1x1 branch,
  three atrous branches at rates 6 / 12 / 18 (output stride 16; 12 / 24 / 36 at 8) as depthwise-
  separable convolutions (depthwise 3x3 dilated -> BN -> ReLU -> pointwise 1x1 -> BN -> ReLU), the
  image-pooling branch (global average, 1x1, BN, ReLU, broadcast back), 256 channels each,
  concatenated ``[pooling, 1x1, rates...]`` and projected by a 1x1 (BN, ReLU, dropout 0.1).
* Decoder: the low-level features (the first stage's, output stride 4) projected to 48 channels
  (1x1, BN, ReLU); the ASPP output upsampled bilinearly to their size (``align_corners=True``, as
  the reference resizes) and concatenated ``[upsampled, low-level]``; two separable 3x3
  convolutions of 256; a 1x1 classifier; bilinear upsampling to the input size.

On the pydense backends the convolutions are ``pydense.nn.Conv2d`` (the dilated, depthwise and
pointwise ones among them), the decoder's upsample + concat is one ``upsample_concat`` (the
upsampled map is never written) and the final upsampling is pydense's bilinear interpolation.

    >>> import torch, pydense
    >>> model = pydense.models.deeplabv3plus(num_classes=21).eval()
    >>> model(torch.randn(1, 3, 129, 129)).shape                            # doctest: +SKIP
    torch.Size([1, 21, 129, 129])
"""
import torch
import torch.nn.functional as F
from torch import nn

from .. import functional
from .. import nn as pnn
from ._layers import Model

__all__ = ["DeepLabV3Plus", "deeplabv3plus", "ResNet"]

DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
RATES = {16: (6, 12, 18), 8: (12, 24, 36)}


class Bottleneck(nn.Module):
    """torchvision's ResNet bottleneck (stride and dilation on the 3x3)."""

    expansion = 4

    def __init__(self, cin, width, stride, dilation, downsample, conv):
        super().__init__()
        self.conv1 = conv(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv(width, width, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv(width, width * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = self.downsample(x) if self.downsample is not None else x
        return self.relu(out + identity)


class ResNet(nn.Module):
    """The backbone: torchvision's ResNet-50/101 without its classifier (``conv1``, ``bn1``,
    ``layer1`` .. ``layer4``); ``forward`` returns (low-level features of layer1, layer4's)."""

    def __init__(self, depth=50, output_stride=16, multi_grid=None, conv=nn.Conv2d):
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"ResNet: depth must be one of {tuple(DEPTHS)}, got {depth!r}")
        dilations = {32: (False, False, False), 16: (False, False, True), 8: (False, True, True)}
        if output_stride not in dilations:
            raise ValueError(f"ResNet: output_stride must be 32, 16 or 8, got {output_stride!r}")
        dilate = dilations[output_stride]
        self.conv1 = conv(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self._cin, self._dilation, self._conv = 64, 1, conv
        blocks = DEPTHS[depth]
        self.layer1 = self._layer(64, blocks[0], 1, False)
        self.layer2 = self._layer(128, blocks[1], 2, dilate[0])
        self.layer3 = self._layer(256, blocks[2], 2, dilate[1])
        self.layer4 = self._layer(512, blocks[3], 2, dilate[2], multi_grid)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _layer(self, width, blocks, stride, dilate, multi_grid=None):
        """torchvision's _make_layer: with ``dilate`` the stride becomes dilation (the first block
        keeps the previous dilation); ``multi_grid`` multiplies each block's dilation."""
        previous = self._dilation
        if dilate:
            self._dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self._cin != width * 4:
            downsample = nn.Sequential(self._conv(self._cin, width * 4, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(width * 4))
        grid = multi_grid or (1,) * blocks
        if len(grid) != blocks:
            raise ValueError(f"ResNet: multi_grid needs {blocks} values (one per block of the last "
                             f"stage), got {tuple(grid)}")
        layers = []
        for i in range(blocks):
            d = (previous if i == 0 and not multi_grid else self._dilation) * grid[i]
            layers.append(Bottleneck(self._cin, width, stride if i == 0 else 1, d,
                                     downsample if i == 0 else None, self._conv))
            self._cin = width * 4
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        low = self.layer1(x)
        return low, self.layer4(self.layer3(self.layer2(low)))


def _cbr(conv, cin, cout, k=1, **kwargs):
    """conv (no bias) -> BN -> ReLU."""
    return nn.Sequential(conv(cin, cout, k, bias=False, **kwargs), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SeparableConv(nn.Sequential):
    """Depthwise 3x3 (dilated) -> BN -> ReLU -> pointwise 1x1 -> BN -> ReLU (the reference's
    ``split_separable_conv2d``)."""

    def __init__(self, conv, cin, cout, dilation=1):
        super().__init__(conv(cin, cin, 3, padding=dilation, dilation=dilation, groups=cin, bias=False),
                         nn.BatchNorm2d(cin), nn.ReLU(inplace=True), *_cbr(conv, cin, cout))


class ASPP(nn.Module):
    def __init__(self, conv, cin, rates, channels=256):
        super().__init__()
        self.pooling = _cbr(conv, cin, channels)
        self.conv1x1 = _cbr(conv, cin, channels)
        self.atrous = nn.ModuleList(SeparableConv(conv, cin, channels, r) for r in rates)
        self.project = _cbr(conv, channels * (2 + len(rates)), channels)
        self.dropout = nn.Dropout(0.1)

    def forward(self, x):
        pooled = self.pooling(x.mean((-2, -1), keepdim=True)).expand(-1, -1, *x.shape[-2:])
        branches = [pooled, self.conv1x1(x)] + [b(x) for b in self.atrous]
        return self.dropout(self.project(torch.cat(branches, 1)))


class Decoder(nn.Module):
    def __init__(self, conv, low_channels, num_classes, backend, channels=256, low_proj=48):
        super().__init__()
        self.backend = backend
        self.low_level = _cbr(conv, low_channels, low_proj)
        self.refine = nn.Sequential(SeparableConv(conv, channels + low_proj, channels),
                                    SeparableConv(conv, channels, channels))
        self.classifier = conv(channels, num_classes, 1)

    def forward(self, x, low):
        low = self.low_level(low)
        if self.backend != "torch":
            h = functional.upsample_concat(x, low, scale_factor=None, mode="bilinear",
                                           align_corners=True, backend=self.backend)
        else:
            up = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=True)
            h = torch.cat([up, low], 1)
        return self.classifier(self.refine(h))


class DeepLabV3Plus(Model):
    """DeepLabv3+ (see the module docstring).

    Args:
        num_classes (int): default 21 (PASCAL VOC).
        depth (int): the ResNet backbone, 50 (default) or 101.
        output_stride (int): 16 (default; ASPP rates 6/12/18) or 8 (12/24/36).
        multi_grid (tuple, optional): the last stage's unit rates, e.g. (1, 2, 4).
        backend (str): "auto", "triton", "cuda", "cpu" (pydense's ops) or "torch" (stock), same
            parameters.

    Input (N, 3, H, W) -> (N, num_classes, H, W).
    """

    def __init__(self, num_classes=21, depth=50, output_stride=16, multi_grid=None, *,
                 backend="auto"):
        super().__init__(backend)
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes <= 0:
            raise ValueError(f"DeepLabV3Plus: num_classes must be a positive int, got {num_classes!r}")
        if output_stride not in RATES:
            raise ValueError(f"DeepLabV3Plus: output_stride must be 16 or 8, got {output_stride!r}")
        if self.fused:
            def conv(*args, **kwargs):
                return pnn.Conv2d(*args, **kwargs, backend=self.backend)
        else:
            conv = nn.Conv2d
        self.output_stride = output_stride
        self.backbone = ResNet(depth, output_stride, multi_grid, conv)
        self.aspp = ASPP(conv, 2048, RATES[output_stride])
        self.decoder = Decoder(conv, 256, num_classes, self.backend)

    def shard_units(self):
        """The backbone's stages, the ASPP and the decoder (FSDP2 units; see
        :meth:`Model.shard_units`)."""
        b = self.backbone
        return [b.layer1, b.layer2, b.layer3, b.layer4, self.aspp, self.decoder]

    def forward(self, x):
        low, high = self.backbone(x)
        out = self.decoder(self.aspp(high), low)
        if self.fused:
            return functional.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=True,
                                          backend=self.backend)
        return F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=True)

    def extra_repr(self):
        return f"output_stride={self.output_stride}, backend={self.backend!r}"


def deeplabv3plus(num_classes=21, depth=50, output_stride=16, **kwargs):
    return DeepLabV3Plus(num_classes, depth, output_stride, **kwargs)
