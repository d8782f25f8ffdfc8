"""EDSR (Lim et al., "Enhanced Deep Residual Networks for Single Image Super-Resolution"),
layer for layer as the authors' PyTorch code (sanghyun-son/EDSR-PyTorch), with its parameter
names, so its checkpoints load:

``sub_mean`` (a frozen 1x1 convolution: x - 255 * mean), ``head`` (conv 3 -> F), ``body`` (B
ResBlocks ``x + res_scale * conv(relu(conv(x)))``, then conv F -> F), the global skip, ``tail``
(the upsampler: log2(s) x [conv F -> 4F, PixelShuffle(2)] for s = 2, 4, [conv F -> 9F,
PixelShuffle(3)] for s = 3; then conv F -> 3), ``add_mean``. 3x3 convolutions padded by 1, with
bias, no batch norm.

``edsr_baseline``: B = 16, F = 64, res_scale 1 (1,369,859 trainable parameters at x2);
``edsr``: B = 32, F = 256, res_scale 0.1 (40,729,603 at x2). The frozen mean shifts add 24.

``backend`` "auto" (the default), "triton", "cuda" or "cpu": pydense's fused ops on that backend;
each ResBlock is two fused convolutions (conv + ReLU, then conv +
res_scale + residual in its epilogue: no extra pass), the global skip is the body's last
convolution's epilogue, each upsampler stage one ``conv2d_pixel_shuffle`` (no r²F intermediate);
``backend="torch"``: the stock modules.
"""
import math

import torch

from ._layers import Model

RGB_MEAN = (0.4488, 0.4371, 0.4040)


class MeanShift(torch.nn.Conv2d):
    """EDSR's frozen 1x1 convolution adding ``sign * rgb_range * mean`` (unit std)."""

    def __init__(self, rgb_range=255, sign=-1, mean=RGB_MEAN):
        super().__init__(3, 3, 1)
        with torch.no_grad():
            self.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.bias.copy_(sign * rgb_range * torch.tensor(mean))
        for p in self.parameters():
            p.requires_grad_(False)


def _conv(cin, cout, k=3):
    return torch.nn.Conv2d(cin, cout, k, padding=k // 2)


class ResBlock(torch.nn.Module):
    """``body = [conv, ReLU, conv]`` (the reference's layout: ``body.0`` and ``body.2``);
    ``forward(x, conv)`` is ``x + res_scale * conv2(relu(conv1(x)))`` with the model's ``conv``
    (fused or stock), so that a block is a whole FSDP unit."""

    def __init__(self, feats, res_scale):
        super().__init__()
        self.body = torch.nn.Sequential(_conv(feats, feats), torch.nn.ReLU(True), _conv(feats, feats))
        self.res_scale = res_scale

    def forward(self, x, conv):
        h = conv(x, self.body[0], relu=True)
        return conv(h, self.body[2], residual=x, scale=self.res_scale)


class EDSR(Model):
    """EDSR (see the module docstring).

    Args:
        scale (int): 2, 3 or 4.
        n_resblocks (int), n_feats (int), res_scale (float): 16 / 64 / 1 (baseline) or 32 / 256 /
            0.1 (paper).
        rgb_range (int): the pixel range (default 255).
        backend (str): "auto", "triton", "cuda", "cpu" (pydense's fused ops on that backend) or
            "torch" (stock PyTorch), same parameters. Deprecated: "pydense" (= "auto") and
            ``op_backend=X`` (= ``backend=X``).

    Input (N, 3, H, W) in [0, rgb_range] -> (N, 3, scale * H, scale * W).
    """

    def __init__(self, scale=2, n_resblocks=16, n_feats=64, res_scale=1.0, rgb_range=255, *,
                 backend="auto", op_backend=None):
        super().__init__(backend, op_backend)
        if scale not in (2, 3, 4):
            raise ValueError(f"EDSR: scale must be 2, 3 or 4, got {scale!r}")
        self.scale = scale
        self.sub_mean = MeanShift(rgb_range, -1)
        self.add_mean = MeanShift(rgb_range, 1)
        self.head = torch.nn.Sequential(_conv(3, n_feats))
        self.body = torch.nn.Sequential(*[ResBlock(n_feats, res_scale) for _ in range(n_resblocks)],
                                        _conv(n_feats, n_feats))
        stages = [(3, 9)] if scale == 3 else [(2, 4)] * int(math.log2(scale))
        up = []
        for r, mult in stages:
            up += [_conv(n_feats, mult * n_feats), torch.nn.PixelShuffle(r)]
        self.tail = torch.nn.Sequential(torch.nn.Sequential(*up), _conv(n_feats, 3))

    def shard_units(self):
        """The residual blocks (FSDP2 units; see :meth:`Model.shard_units`)."""
        return list(self.body[:-1])

    def forward(self, x):
        x = self.conv(x, self.sub_mean)
        x = self.conv(x, self.head[0])
        res = x
        for block in self.body[:-1]:
            res = block(res, self.conv)
        res = self.conv(res, self.body[-1], residual=x)  # the global skip
        up = self.tail[0]
        for i in range(0, len(up), 2):
            res = self.conv_pixel_shuffle(res, up[i], up[i + 1].upscale_factor)
        return self.conv(self.conv(res, self.tail[1]), self.add_mean)


def edsr_baseline(scale=2, **kwargs):
    """EDSR baseline: 16 ResBlocks, 64 features, res_scale 1 (1,369,859 trainable parameters at x2)."""
    return EDSR(scale, 16, 64, 1.0, **kwargs)


def edsr(scale=2, **kwargs):
    """EDSR (paper): 32 ResBlocks, 256 features, res_scale 0.1 (40,729,603 trainable parameters at x2)."""
    return EDSR(scale, 32, 256, 0.1, **kwargs)
