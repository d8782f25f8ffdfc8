"""SegNet (Badrinarayanan, Kendall, Cipolla), as the original Caffe prototxt defines it.

Encoder: the 13 convolutions of VGG16 (3x3, padding 1), each followed by BatchNorm and ReLU, in
five stages; each stage ends with a 2x2 stride-2 max-pool that returns the indices of its maxima
(sizes rounded up as Caffe does: ``ceil_mode=True``). Decoder: the mirror image; each stage starts
with a max-unpool of the matching pooling indices (to the encoder stage's exact size, via
``output_size``) followed by conv-BN-ReLU blocks with channels [512, 512, 512], [512, 512, 256],
[256, 256, 128], [128, 64] and [64, num_classes]; the last convolution has no BatchNorm and no
ReLU (it gives the class scores). He (MSRA) initialisation: normal with std sqrt(2 / fan_in),
zero biases; BatchNorm weight 1 and bias 0.

``backend="torch"`` builds it from stock torch modules; any other backend ("auto", the default,
"triton", "cuda", "cpu") from pydense's (``pydense.nn.Conv2d``, ``pydense.nn.MaxPool2d``,
``pydense.nn.MaxUnpool2d``) on that backend, with identical parameter and buffer names, so
state_dicts load into either. With ``compact_indices=True`` the pools keep uint8 window offsets
instead of int64 flat indices (8x less index memory between the encoder and the decoder); the
outputs and gradients are the same.

CamVid: 360x480 input, 11 classes: 29,449,355 parameters.
"""
from collections import OrderedDict

from torch import nn

from .. import nn as pnn
from ._layers import Model

# (in, out) channels of each convolution, stage by stage.
ENCODER = [
    [(3, 64), (64, 64)],
    [(64, 128), (128, 128)],
    [(128, 256), (256, 256), (256, 256)],
    [(256, 512), (512, 512), (512, 512)],
    [(512, 512), (512, 512), (512, 512)],
]
DECODER = [  # from the deepest stage (5) to the first; the class count replaces None
    [(512, 512), (512, 512), (512, 512)],
    [(512, 512), (512, 512), (512, 256)],
    [(256, 256), (256, 256), (256, 128)],
    [(128, 128), (128, 64)],
    [(64, 64), (64, None)],
]


def _block(conv, cin, cout, last=False):
    parts = [("conv", conv(cin, cout))]
    if not last:
        parts += [("bn", nn.BatchNorm2d(cout)), ("relu", nn.ReLU(inplace=True))]
    return nn.Sequential(OrderedDict(parts))


class SegNet(Model):
    """SegNet; ``forward(x)`` returns (N, num_classes, H, W) class scores for (N, 3, H, W) input.

    Args:
        num_classes (int): output channels (11 for CamVid).
        backend (str): "auto", "triton", "cuda", "cpu" (pydense modules, every op on that
            backend) or "torch" (stock torch modules). Deprecated: "pydense" (= "auto").
        compact_indices (bool): pools return uint8 window offsets (pydense backends only).

    Modules: ``encoder[s][b]`` / ``decoder[s][b]`` are ``Sequential(conv, bn, relu)`` blocks
    (``decoder[4][1]``, the classifier, is ``Sequential(conv)``); ``pool`` / ``unpool`` hold no
    parameters.
    """

    def __init__(self, num_classes=11, *, backend="auto", compact_indices=False):
        super().__init__(backend)
        backend = self.backend
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes <= 0:
            raise ValueError(f"SegNet: num_classes must be a positive int, got {num_classes!r}")
        if compact_indices and backend == "torch":
            raise ValueError("SegNet: compact_indices=True needs a pydense backend (stock torch "
                             "pools return int64 indices only), got backend='torch'")
        self.num_classes, self.compact_indices = num_classes, compact_indices
        if backend == "torch":
            def conv(cin, cout):
                return nn.Conv2d(cin, cout, 3, padding=1)
            self.pool = nn.MaxPool2d(2, 2, return_indices=True, ceil_mode=True)
            self.unpool = nn.MaxUnpool2d(2, 2)
        else:
            def conv(cin, cout):
                return pnn.Conv2d(cin, cout, 3, padding=1, backend=backend)
            self.pool = pnn.MaxPool2d(2, 2, return_indices=True, ceil_mode=True,
                                      compact=compact_indices, backend=backend)
            self.unpool = pnn.MaxUnpool2d(2, 2, backend=backend)
        self.encoder = nn.ModuleList(
            nn.Sequential(*[_block(conv, cin, cout) for cin, cout in stage]) for stage in ENCODER)
        decoder = []
        for s, stage in enumerate(DECODER):
            blocks = []
            for b, (cin, cout) in enumerate(stage):
                last = s == len(DECODER) - 1 and b == len(stage) - 1
                blocks.append(_block(conv, cin, num_classes if cout is None else cout, last))
            decoder.append(nn.Sequential(*blocks))
        self.decoder = nn.ModuleList(decoder)
        self.reset_parameters()

    def reset_parameters(self):
        """He (MSRA) initialisation of the convolutions; BatchNorm to the identity."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def shard_units(self):
        """The encoder and decoder stages (FSDP2 units; see :meth:`Model.shard_units`)."""
        return list(self.encoder) + list(self.decoder)

    def forward(self, x):
        sizes, indices = [], []
        for stage in self.encoder:
            x = stage(x)
            sizes.append(x.shape[-2:])
            x, idx = self.pool(x)
            indices.append(idx)
        for stage in self.decoder:
            x = self.unpool(x, indices.pop(), output_size=sizes.pop())
            x = stage(x)
        return x

    def extra_repr(self):
        return (f"num_classes={self.num_classes}, backend={self.backend!r}, "
                f"compact_indices={self.compact_indices}")


def segnet(num_classes=11, *, backend="auto", compact_indices=False):
    """SegNet with He-initialised weights (see :class:`SegNet`; no pretrained weights).

    Example::

        >>> model = pydense.models.segnet(11, compact_indices=True).eval()
        >>> model(torch.randn(1, 3, 45, 60)).shape
        torch.Size([1, 11, 45, 60])
    """
    return SegNet(num_classes, backend=backend, compact_indices=compact_indices)
