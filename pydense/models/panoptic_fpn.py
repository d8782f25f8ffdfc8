"""Panoptic FPN's semantic branch and panoptic inference (Kirillov, Girshick, He and Dollar, CVPR
2019), on pydense's upsampling and panoptic fusion.

* :class:`FPN`: a ResNet-50/101 (the backbone of :mod:`pydense.models.deeplab`, output stride 32)
  with the feature pyramid (Lin et al. 2017): lateral 1x1 convolutions, the top-down path (nearest
  2x upsampling + sum), 3x3 output convolutions; P2..P5 of 256 channels at strides 4..32.
* :class:`SemanticFPNHead`, the paper's semantic branch (detectron2's ``SemSegFPNHead``): from
  each level, upsampling stages (3x3 convolution, GroupNorm (32), ReLU, 2x bilinear upsampling)
  until 1/4 scale (P5: three stages, P4: two, P3: one, P2: a convolution only), 128 channels,
  summed, a 1x1 classifier, 4x bilinear upsampling to the image.
* :class:`PanopticFPN`: the two together, ``forward(image)`` -> semantic logits; its
  :meth:`~PanopticFPN.panoptic` combines them with any detector's instances through
  :func:`pydense.panoptic_fusion.fuse` (the paper's heuristic, detectron2's thresholds) into a COCO
  panoptic id map and its segments.

On the pydense backends the convolutions are ``pydense.nn.Conv2d`` and the bilinear upsamplings
pydense's (deterministic backward); the top-down path's nearest upsampling stays stock.

    >>> import torch, pydense
    >>> model = pydense.models.panoptic_fpn(num_classes=54).eval()
    >>> model(torch.randn(1, 3, 64, 96)).shape                              # doctest: +SKIP
    torch.Size([1, 54, 64, 96])
"""
import torch
import torch.nn.functional as F
from torch import nn

from .. import functional, panoptic_fusion
from .. import nn as pnn
from ._layers import Model
from .deeplab import ResNet

__all__ = ["FPN", "SemanticFPNHead", "PanopticFPN", "panoptic_fpn"]

LEVELS = ("p2", "p3", "p4", "p5")


class FPN(nn.Module):
    """ResNet + feature pyramid: ``forward(x)`` -> {"p2": .., "p5": ..} (256 channels)."""

    def __init__(self, depth=50, channels=256, conv=nn.Conv2d):
        super().__init__()
        self.bottom_up = ResNet(depth, output_stride=32, conv=conv)
        widths = (256, 512, 1024, 2048)
        self.lateral = nn.ModuleList(conv(w, channels, 1) for w in widths)
        self.output = nn.ModuleList(conv(channels, channels, 3, padding=1) for _ in widths)

    def forward(self, x):
        b = self.bottom_up
        c = [b.layer1(b.maxpool(b.relu(b.bn1(b.conv1(x)))))]
        for layer in (b.layer2, b.layer3, b.layer4):
            c.append(layer(c[-1]))
        top = self.lateral[3](c[3])
        feats = [self.output[3](top)]
        for i in (2, 1, 0):
            top = self.lateral[i](c[i]) + F.interpolate(top, size=c[i].shape[-2:], mode="nearest")
            feats.insert(0, self.output[i](top))
        return dict(zip(LEVELS, feats))


class SemanticFPNHead(nn.Module):
    """The semantic branch (see the module docstring): ``forward(features)`` -> logits at 1/4."""

    def __init__(self, num_classes, in_channels=256, channels=128, groups=32, conv=nn.Conv2d,
                 backend="torch"):
        super().__init__()
        self.backend = backend
        heads = {}
        for i, name in enumerate(LEVELS):
            stages = []
            for k in range(max(1, i)):
                stages.append(nn.Sequential(conv(in_channels if k == 0 else channels, channels, 3,
                                                 padding=1, bias=False),
                                            nn.GroupNorm(groups, channels), nn.ReLU(inplace=True)))
            heads[name] = nn.ModuleList(stages)
        self.scale_heads = nn.ModuleDict(heads)
        self.predictor = conv(channels, num_classes, 1)

    def _up2(self, x):
        if self.backend == "torch":
            return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False,
                                      backend=self.backend)

    def forward(self, features):
        out = None
        for i, name in enumerate(LEVELS):
            x = features[name]
            for stage in self.scale_heads[name]:
                x = stage(x)
                if i > 0:  # P2 stays at 1/4; the others double per stage
                    x = self._up2(x)
            out = x if out is None else out + x
        return self.predictor(out)


class PanopticFPN(Model):
    """ResNet-FPN + the semantic branch (see the module docstring).

    Args:
        num_classes (int): semantic classes: COCO's 53 stuff classes + 1 "things" class (54), the
            layout detectron2 trains (thing pixels all one class).
        depth (int): ResNet 50 (default) or 101.
        backend (str): "auto", "triton", "cuda", "cpu" (pydense's ops) or "torch" (stock).

    Input (N, 3, H, W), H and W multiples of 32 -> (N, num_classes, H, W) semantic logits.
    """

    def __init__(self, num_classes=54, depth=50, *, backend="auto"):
        super().__init__(backend)
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes <= 0:
            raise ValueError(f"PanopticFPN: num_classes must be a positive int, got {num_classes!r}")
        conv = (lambda *a, **k: pnn.Conv2d(*a, **k, backend=self.backend)) if self.fused else nn.Conv2d
        self.backbone = FPN(depth, conv=conv)
        self.sem_seg_head = SemanticFPNHead(num_classes, conv=conv, backend=self.backend)

    def shard_units(self):
        """The backbone's stages and the semantic head (FSDP2 units; see
        :meth:`Model.shard_units`)."""
        b = self.backbone.bottom_up
        return [b.layer1, b.layer2, b.layer3, b.layer4, self.sem_seg_head]

    def forward(self, x):
        if x.shape[-1] % 32 or x.shape[-2] % 32:
            raise ValueError(f"PanopticFPN: the image's height and width must be multiples of 32 "
                             f"(the pyramid's coarsest stride), got {tuple(x.shape[-2:])}")
        logits = self.sem_seg_head(self.backbone(x))
        if self.fused:
            return functional.interpolate(logits, scale_factor=4, mode="bilinear", align_corners=False,
                                          backend=self.backend)
        return F.interpolate(logits, scale_factor=4, mode="bilinear", align_corners=False)

    def panoptic(self, semantic_logits, instance_masks, instance_scores, instance_classes, *,
                 thing_ids, stuff_ids=None, **fuse_kwargs):
        """One image's panoptic segmentation: the semantic logits (C, H, W) and a detector's
        instances (M, H, W masks, scores, category ids) through
        :func:`pydense.panoptic_fusion.fuse` (the paper's heuristic; ``fuse_kwargs``: its
        thresholds). ``stuff_ids`` maps semantic classes to COCO category ids (default: the class
        index); the "things" class (in ``thing_ids``) never becomes stuff. Returns ``fuse``'s
        ``(panoptic id map, segments_info)`` with COCO category ids."""
        pan, segments = panoptic_fusion.fuse(semantic_logits, instance_masks, instance_scores,
                                             instance_classes, thing_ids=thing_ids, backend=self.backend
                                             if self.fused else "torch", **fuse_kwargs)
        if stuff_ids is not None:
            for s in segments:
                if not s["isthing"]:
                    s["category_id"] = int(stuff_ids[s["category_id"]])
        return pan, segments


def panoptic_fpn(num_classes=54, depth=50, **kwargs):
    return PanopticFPN(num_classes, depth, **kwargs)
