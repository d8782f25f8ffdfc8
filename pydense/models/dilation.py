"""Yu & Koltun, "Multi-Scale Context Aggregation by Dilated Convolutions" (fyu/dilation): the
VGG16 front end, the context module, and Dilation8 (front end + context + bilinear x8).

Front end: VGG16 with unpadded 3x3 convolutions, pool1-3 (2x2 s2) only, conv5_x dilated by 2,
fc6 a 7x7 convolution dilated by 4 (4096), fc7 1x1, dropout 0.5, ``final`` 1x1 -> classes. A
900x900 input (a 500x500 image reflection-padded by the label margin 186) gives 66x66 scores.

Context module (8 layers): 3x3 convolutions dilated 1, 1, 2, 4, 8, 16, 1 with ReLU, then a 1x1
convolution (receptive field 67). "basic": C channels everywhere, identity initialisation;
"large": 2C, 2C, 4C, 8C, 16C, 32C, 32C, C channels with the paper's scaled identity plus
N(0, sigma^2) noise. Padding: "paper" zero-pads the module's input by 33 and the layers are
unpadded (the deploy network), "same" pads every layer to keep the size.

Dilation8: front end, context module, then a frozen depthwise bilinear deconvolution (k16 s8
pad 4): 66 -> 528.

``backend`` ("auto", "triton", "cuda", "cpu"; default "auto"): every conv + ReLU is one fused
pydense convolution on that backend (Triton's dilated implicit GEMM on GPU: dilation costs
nothing extra), the final upsampling the bilinear deconvolution; ``backend="torch"``: stock
modules.
"""
import torch
import torch.nn.functional as F

from ._layers import Model, bilinear_upsampler

CONTEXT_DILATIONS = (1, 1, 2, 4, 8, 16, 1)
LARGE_WIDTHS = (2, 2, 4, 8, 16, 32, 32)
CONTEXT_MARGIN = 33  # the context module's receptive-field radius
LABEL_MARGIN = 186  # the front end's: pad the image by this much (reflection) before it


class DilationFrontend(Model):
    """The VGG16 front end (see the module docstring): (N, 3, H, W) -> (N, classes, (H - 372) / 8)."""

    def __init__(self, num_classes=21, *, backend="auto", op_backend=None):
        super().__init__(backend, op_backend)
        self.layers = []
        cin = 3
        for block, (n, cout) in enumerate([(2, 64), (2, 128), (3, 256), (3, 512), (3, 512)], 1):
            for i in range(1, n + 1):
                name = f"conv{block}_{i}"
                setattr(self, name, torch.nn.Conv2d(cin, cout, 3, dilation=2 if block == 5 else 1))
                self.layers.append(name)
                cin = cout
            if block <= 3:
                self.layers.append(f"pool{block}")
        self.fc6 = torch.nn.Conv2d(512, 4096, 7, dilation=4)
        self.fc7 = torch.nn.Conv2d(4096, 4096, 1)
        self.final = torch.nn.Conv2d(4096, num_classes, 1)
        for m in self.children():
            torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            torch.nn.init.zeros_(m.bias)

    def forward(self, x):
        for name in self.layers:
            x = F.max_pool2d(x, 2, 2) if name.startswith("pool") else \
                self.conv(x, getattr(self, name), relu=True)
        x = F.dropout(self.conv(x, self.fc6, relu=True), 0.5, self.training)
        x = F.dropout(self.conv(x, self.fc7, relu=True), 0.5, self.training)
        return self.conv(x, self.final)


def _identity_init_(conv, sigma, generator=None):
    """The paper's initialisation k(t, a -> b) = (C / c_out) [floor(a C / c_in) == floor(b C / c_out)]
    at the centre tap t = 0, plus N(0, sigma^2) noise (sigma = 0: the basic module's identity);
    bias 0. C = min(c_in, c_out) (the module's C)."""
    c_out, c_in, kh, kw = conv.weight.shape
    c = min(c_in, c_out)
    a = torch.arange(c_in)
    b = torch.arange(c_out)
    match = (a[None, :] * c // c_in) == (b[:, None] * c // c_out)
    w = torch.zeros(conv.weight.shape)
    w[:, :, kh // 2, kw // 2] = match.float() * (c / c_out)
    if sigma:
        w += torch.randn(w.shape, generator=generator) * sigma
    with torch.no_grad():
        conv.weight.copy_(w)
        conv.bias.zero_()


class ContextModule(Model):
    """The context module (see the module docstring).

    Args:
        channels (int): C, the number of classes of the scores it refines.
        kind (str): "basic" or "large".
        padding (str): "paper" (input zero-padded by 33, layers unpadded) or "same".
        sigma (float): the large module's initialisation noise (default 1e-3 * C / c_out is the
            paper's "sigma << C / c_out"; pass 0 for an exact scaled identity).
        backend (str): as for the other models: "auto", "triton", "cuda", "cpu" (pydense's fused
            ops on that backend) or "torch" (stock PyTorch), same parameters.
    """

    def __init__(self, channels=21, kind="basic", padding="paper", sigma=None, *,
                 backend="auto", op_backend=None):
        super().__init__(backend, op_backend)
        if kind not in ("basic", "large"):
            raise ValueError(f"ContextModule: kind must be 'basic' or 'large', got {kind!r}")
        if padding not in ("paper", "same"):
            raise ValueError(f"ContextModule: padding must be 'paper' or 'same', got {padding!r}")
        self.kind, self.padding = kind, padding
        widths = [channels * (m if kind == "large" else 1) for m in LARGE_WIDTHS] + [channels]
        cin = channels
        for i, (d, cout) in enumerate(zip(CONTEXT_DILATIONS, widths), 1):
            conv = torch.nn.Conv2d(cin, cout, 3, dilation=d, padding=d if padding == "same" else 0)
            setattr(self, f"ctx_conv{i}", conv)
            cin = cout
        self.ctx_final = torch.nn.Conv2d(cin, channels, 1)
        for m in self.children():
            noise = 0.0 if kind == "basic" else (sigma if sigma is not None else 1e-3 * channels / m.out_channels)
            _identity_init_(m, noise)

    def forward(self, x):
        if self.padding == "paper":
            x = F.pad(x, [CONTEXT_MARGIN] * 4)
        for i in range(1, len(CONTEXT_DILATIONS) + 1):
            x = self.conv(x, getattr(self, f"ctx_conv{i}"), relu=True)
        return self.conv(x, self.ctx_final)


class Dilation8(Model):
    """Dilation8: front end + context module + frozen bilinear upsampling x8 (k16 s8 pad 4,
    depthwise). (N, 3, H, W) (the image reflection-padded by 186) -> (N, classes, H - 372, W - 372)."""

    def __init__(self, num_classes=21, context="large", padding="paper", *, backend="auto",
                 op_backend=None):
        super().__init__(backend, op_backend)
        self.frontend = DilationFrontend(num_classes, backend=self.backend)
        self.context = ContextModule(num_classes, context, padding,
                                     backend=self.backend) if context else None
        self.upsample = bilinear_upsampler(num_classes, 8, padding=4, depthwise=True)

    def shard_units(self):
        """The front end and the context module (FSDP2 units; see :meth:`Model.shard_units`)."""
        return [m for m in (self.frontend, self.context) if m is not None]

    def forward(self, x):
        x = self.frontend(x)
        if self.context is not None:
            x = self.context(x)
        return self.bilinear_up(x, self.upsample)


def dilation_frontend(num_classes=21, **kwargs):
    return DilationFrontend(num_classes, **kwargs)


def context_module(channels=21, kind="basic", padding="paper", **kwargs):
    return ContextModule(channels, kind, padding, **kwargs)


def dilation8(num_classes=21, context="large", **kwargs):
    return Dilation8(num_classes, context, **kwargs)


def pad_image(image):
    """Reflection-pad an image by the front end's label margin (186), as the deploy network's
    input is prepared (the image must be larger than 186 pixels per side, e.g. VOC's 500x500)."""
    return F.pad(image, [LABEL_MARGIN] * 4, mode="reflect")
