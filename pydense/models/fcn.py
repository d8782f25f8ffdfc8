"""FCN-32s, FCN-16s, FCN-8s (Long, Shelhamer & Darrell, voc-fcn*s), layer for layer.

VGG16 (3x3 convolutions + ReLU, conv1_1 padded by 100, 2x2 max-pools with ceil_mode), fc6 (7x7,
512 -> 4096, no padding) and fc7 (1x1) as convolutions with dropout 0.5, score_fr (1x1 -> classes);
the upsampling layers are bias-free deconvolutions with fixed (frozen) bilinear weights:

* FCN-32s: upscore (k64 s32), crop 19;
* FCN-16s: upscore2 (k4 s2) + crop(score_pool4, 5), then upscore16 (k32 s16), crop 27;
* FCN-8s: upscore2 + crop(score_pool4, 5) -> upscore_pool4 (k4 s2) + crop(score_pool3, 9) ->
  upscore8 (k16 s8), crop 31; the at-once variant scales pool4 by 0.01 and pool3 by 1e-4 before
  scoring them.

A 500x500 image gives pool3 88, pool4 44, fc7 16, upscore2 34, upscore_pool4 70, upscore8 568 ->
500. Parameter names follow the reference PyTorch port (``conv1_1``, ``fc6``, ``score_pool4``,
``upscore2``, ...), so its checkpoints load. FCN-8s has 134,489,759 parameters for 21 classes
(the frozen upscore weights included, as the reference counts them).

``backend`` "auto" (the default), "triton", "cuda" or "cpu": pydense's ops on that backend, conv +
ReLU as one fused convolution, each skip ``upscore + crop(score(
scale * pool))`` as one ``fcn_skip`` kernel (the score convolution inside it), the final
upsampling as the cropped bilinear deconvolution; ``backend="torch"``: the stock modules.
Max-pooling and dropout are PyTorch's in both.
"""
import torch
import torch.nn.functional as F

from .. import functional
from ._layers import Model, bilinear_upsampler

VGG16 = [(3, 64), (64, 64), "pool", (64, 128), (128, 128), "pool", (128, 256), (256, 256),
         (256, 256), "pool", (256, 512), (512, 512), (512, 512), "pool", (512, 512), (512, 512),
         (512, 512), "pool"]
VARIANTS = {"32s": (), "16s": ("pool4",), "8s": ("pool4", "pool3")}
AT_ONCE_SCALE = {"pool4": 0.01, "pool3": 1e-4}
SKIP_CROP = {"pool4": 5, "pool3": 9}


class FCN(Model):
    """FCN-32s / 16s / 8s (see the module docstring).

    Args:
        variant (str): "32s", "16s" or "8s".
        num_classes (int): default 21 (PASCAL VOC).
        at_once (bool): FCN-8s at-once: pool4 scaled by 0.01 and pool3 by 1e-4 before scoring.
        backend (str): "auto", "triton", "cuda", "cpu" (pydense's fused ops on that backend) or
            "torch" (stock PyTorch), same parameters. Deprecated: "pydense" (= "auto") and
            ``op_backend=X`` (= ``backend=X``).

    Input (N, 3, H, W) -> scores (N, num_classes, H, W).
    """

    def __init__(self, variant="8s", num_classes=21, at_once=False, *, backend="auto",
                 op_backend=None):
        super().__init__(backend, op_backend)
        if variant not in VARIANTS:
            raise ValueError(f"FCN: variant must be one of {tuple(VARIANTS)}, got {variant!r}")
        if at_once and variant != "8s":
            raise ValueError("FCN: at_once is the FCN-8s at-once variant; use variant='8s'")
        self.variant, self.skips = variant, VARIANTS[variant]
        self.skip_scale = {k: (AT_ONCE_SCALE[k] if at_once else 1.0) for k in self.skips}
        block, idx = 1, 1
        self.features = []  # (name or "pool")
        for layer in VGG16:
            if layer == "pool":
                self.features.append(f"pool{block}")
                block, idx = block + 1, 1
                continue
            name = f"conv{block}_{idx}"
            setattr(self, name, torch.nn.Conv2d(*layer, 3, padding=100 if name == "conv1_1" else 1))
            self.features.append(name)
            idx += 1
        self.fc6 = torch.nn.Conv2d(512, 4096, 7)
        self.fc7 = torch.nn.Conv2d(4096, 4096, 1)
        self.score_fr = torch.nn.Conv2d(4096, num_classes, 1)
        for skip in self.skips:
            setattr(self, f"score_{skip}", torch.nn.Conv2d(512 if skip == "pool4" else 256,
                                                           num_classes, 1))
        if variant == "32s":
            self.upscore = bilinear_upsampler(num_classes, 32)
        else:
            self.upscore2 = bilinear_upsampler(num_classes, 2)
        if variant == "16s":
            self.upscore16 = bilinear_upsampler(num_classes, 16)
        if variant == "8s":
            self.upscore_pool4 = bilinear_upsampler(num_classes, 2)
            self.upscore8 = bilinear_upsampler(num_classes, 8)
        self._init_weights()

    def _init_weights(self):
        """He initialisation for the VGG and fc layers (no ImageNet weights can be fetched here);
        the score layers start at zero, as FCN's do."""
        for name, m in self.named_children():
            if isinstance(m, torch.nn.Conv2d):
                if name.startswith("score"):
                    torch.nn.init.zeros_(m.weight)
                else:
                    torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                torch.nn.init.zeros_(m.bias)

    def _skip(self, coarse, up, pool, name):
        """upscore(coarse) + crop(score_<name>(scale * pool), offset)."""
        score, off, scale = getattr(self, f"score_{name}"), SKIP_CROP[name], self.skip_scale[name]
        if self.fused and not up.weight.requires_grad:
            score = self._weights_of(score)
            return functional.fcn_skip(coarse, pool, factor=up.stride[0], offset=off,
                                       skip_scale=scale, score_weight=score.weight,
                                       score_bias=score.bias, backend=self.backend)
        u = up(coarse)
        s = score(pool * scale if scale != 1.0 else pool)
        return u + s[..., off:off + u.shape[-2], off:off + u.shape[-1]]

    def forward(self, x):
        h, pools = x, {}
        for name in self.features:
            if name.startswith("pool"):
                h = F.max_pool2d(h, 2, 2, ceil_mode=True)
                pools[name] = h
            else:
                h = self.conv(h, getattr(self, name), relu=True)
        h = F.dropout(self.conv(h, self.fc6, relu=True), 0.5, self.training)
        h = F.dropout(self.conv(h, self.fc7, relu=True), 0.5, self.training)
        h = self.conv(h, self.score_fr)
        size = x.shape[-2:]
        if self.variant == "32s":
            return self.bilinear_up(h, self.upscore, crop=19, size=size)
        h = self._skip(h, self.upscore2, pools["pool4"], "pool4")
        if self.variant == "16s":
            return self.bilinear_up(h, self.upscore16, crop=27, size=size)
        h = self._skip(h, self.upscore_pool4, pools["pool3"], "pool3")
        return self.bilinear_up(h, self.upscore8, crop=31, size=size)


def fcn32s(num_classes=21, **kwargs):
    """FCN-32s (136,152,917 parameters for 21 classes). kwargs: backend."""
    return FCN("32s", num_classes, **kwargs)


def fcn16s(num_classes=21, **kwargs):
    """FCN-16s (134,815,994 parameters for 21 classes). kwargs: backend."""
    return FCN("16s", num_classes, **kwargs)


def fcn8s(num_classes=21, at_once=False, **kwargs):
    """FCN-8s (134,489,759 parameters for 21 classes); ``at_once=True``: FCN-8s at-once."""
    return FCN("8s", num_classes, at_once, **kwargs)
