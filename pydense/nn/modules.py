import math

import torch

from .. import functional
from ._backend_arg import check_backend


def _check_backend(module, backend):
    return check_backend(backend, f"pydense.nn.{type(module).__name__}")


class MaxPool2d(torch.nn.MaxPool2d):
    """Drop-in :class:`torch.nn.MaxPool2d` computed by
    :func:`pydense.functional.max_pool2d_with_indices`.

    Args:
        kernel_size, stride, padding, dilation, return_indices, ceil_mode: as in
            :class:`torch.nn.MaxPool2d`.
        compact (bool): return uint8 window offsets instead of int64 flat indices (keyword-only).
        backend (str): "auto", "triton", "cuda", "cpu" or "torch" (keyword-only).

    Example::

        >>> pool = pydense.nn.MaxPool2d(2, 2, return_indices=True, ceil_mode=True, compact=True)
        >>> y, idx = pool(torch.randn(1, 64, 45, 60))
        >>> idx.dtype, idx.shape
        (torch.uint8, torch.Size([1, 64, 23, 30]))
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
                 ceil_mode=False, *, compact=False, backend="auto"):
        super().__init__(kernel_size, stride, padding, dilation, return_indices, ceil_mode)
        self.compact = compact
        self.backend = _check_backend(self, backend)

    def forward(self, input):
        out, idx = functional.max_pool2d_with_indices(
            input, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode,
            compact=self.compact, backend=self.backend)
        return (out, idx) if self.return_indices else out

    def extra_repr(self):
        return f"{super().extra_repr()}, compact={self.compact}, backend={self.backend!r}"


class MaxUnpool2d(torch.nn.MaxUnpool2d):
    """Drop-in :class:`torch.nn.MaxUnpool2d` computed by :func:`pydense.functional.max_unpool2d`.

    Accepts int64 flat indices and uint8 compact window offsets (from ``MaxPool2d(...,
    compact=True)``); the indices' dtype says which.

    Args:
        kernel_size, stride, padding: as in :class:`torch.nn.MaxUnpool2d` (the pool's).
        dilation (int or (int, int)): the pool's dilation (decodes compact indices; default size).
        backend (str): "auto", "triton", "cuda", "cpu" or "torch" (keyword-only).
        check_indices (bool, optional): see :func:`pydense.functional.max_unpool2d`.

    Example::

        >>> pool = torch.nn.MaxPool2d(2, 2, return_indices=True)
        >>> unpool = pydense.nn.MaxUnpool2d(2, 2)
        >>> x = torch.randn(1, 16, 8, 8)
        >>> y, idx = pool(x)
        >>> unpool(y, idx, output_size=x.shape).shape
        torch.Size([1, 16, 8, 8])
    """

    # Class-level defaults: pydense.patch turns torch.nn.MaxUnpool2d instances into this class
    # without running __init__.
    dilation, check_indices = 1, None

    def __init__(self, kernel_size, stride=None, padding=0, *, dilation=1, backend="auto",
                 check_indices=None):
        super().__init__(kernel_size, stride, padding)
        self.dilation = dilation
        self.backend = _check_backend(self, backend)
        self.check_indices = check_indices

    def forward(self, input, indices, output_size=None):
        return functional.max_unpool2d(input, indices, self.kernel_size, self.stride, self.padding,
                                       output_size, dilation=self.dilation, backend=self.backend,
                                       check_indices=self.check_indices)

    def extra_repr(self):
        return f"{super().extra_repr()}, backend={self.backend!r}"


class PixelShuffle(torch.nn.PixelShuffle):
    """Drop-in :class:`torch.nn.PixelShuffle` computed by :func:`pydense.functional.pixel_shuffle`.

    Example::

        >>> up = pydense.nn.PixelShuffle(2)
        >>> up(torch.randn(1, 256, 48, 48)).shape
        torch.Size([1, 64, 96, 96])
    """

    def __init__(self, upscale_factor, *, backend="auto"):
        super().__init__(upscale_factor)
        self.backend = _check_backend(self, backend)

    def forward(self, input):
        return functional.pixel_shuffle(input, self.upscale_factor, backend=self.backend)

    def extra_repr(self):
        return f"{super().extra_repr()}, backend={self.backend!r}"


class PixelUnshuffle(torch.nn.PixelUnshuffle):
    """Drop-in :class:`torch.nn.PixelUnshuffle` computed by :func:`pydense.functional.pixel_unshuffle`."""

    def __init__(self, downscale_factor, *, backend="auto"):
        super().__init__(downscale_factor)
        self.backend = _check_backend(self, backend)

    def forward(self, input):
        return functional.pixel_unshuffle(input, self.downscale_factor, backend=self.backend)

    def extra_repr(self):
        return f"{super().extra_repr()}, backend={self.backend!r}"


class _Interpolate:
    """forward and repr of the torch.nn.Upsample family on :func:`pydense.functional.interpolate`."""

    def forward(self, input):
        return functional.interpolate(input, self.size, self.scale_factor, self.mode,
                                      self.align_corners, self.recompute_scale_factor,
                                      backend=self.backend)

    def extra_repr(self):
        return f"{super().extra_repr()}, backend={self.backend!r}"


class Upsample(_Interpolate, torch.nn.Upsample):
    """Drop-in :class:`torch.nn.Upsample` computed by :func:`pydense.functional.interpolate`.

    Bilinear 4-D input runs pydense's kernels; other modes go to torch, as the function does.
    ``UpsamplingBilinear2d`` is ``Upsample(mode="bilinear", align_corners=True)``.

    Example::

        >>> up = pydense.nn.Upsample(scale_factor=2, mode="bilinear")
        >>> up(torch.randn(1, 64, 32, 32)).shape
        torch.Size([1, 64, 64, 64])
    """

    def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None,
                 recompute_scale_factor=None, *, backend="auto"):
        super().__init__(size, scale_factor, mode, align_corners, recompute_scale_factor)
        self.backend = _check_backend(self, backend)



class UpsamplingBilinear2d(_Interpolate, torch.nn.UpsamplingBilinear2d):
    """Drop-in :class:`torch.nn.UpsamplingBilinear2d` (bilinear, ``align_corners=True``) computed by
    :func:`pydense.functional.interpolate`.

    Example::

        >>> up = pydense.nn.UpsamplingBilinear2d(scale_factor=2)
        >>> up(torch.randn(1, 21, 16, 16)).shape
        torch.Size([1, 21, 32, 32])
    """

    def __init__(self, size=None, scale_factor=None, *, backend="auto"):
        super().__init__(size, scale_factor)
        self.backend = _check_backend(self, backend)



class BilinearDeconv2d(torch.nn.Module):
    """FCN's fixed bilinear upsampling layer (``ConvTranspose2d(C, C, 2f, stride=f)`` with
    bilinear weights, no bias) plus its crop, computed by
    :func:`pydense.functional.bilinear_deconv2d`. No parameters.

    Example::

        >>> upscore = pydense.nn.BilinearDeconv2d(32, crop=19)
        >>> upscore(torch.randn(1, 21, 16, 16), output_size=(500, 500)).shape
        torch.Size([1, 21, 500, 500])
    """

    def __init__(self, factor, crop=0, *, backend="auto"):
        super().__init__()
        self.factor, self.crop = factor, crop
        self.backend = _check_backend(self, backend)

    def forward(self, input, output_size=None):
        return functional.bilinear_deconv2d(input, self.factor, crop=self.crop,
                                            output_size=output_size, backend=self.backend)

    def extra_repr(self):
        return f"factor={self.factor}, crop={self.crop}, backend={self.backend!r}"


class _ZeroPaddedConv:
    """What the convolution modules share: the ``backend`` keyword and the padding_mode check."""

    def __init__(self, *args, backend="auto", **kwargs):
        super().__init__(*args, **kwargs)
        if self.padding_mode != "zeros":
            raise ValueError(f"pydense.nn.{type(self).__name__}: padding_mode must be 'zeros', got "
                             f"{self.padding_mode!r}")
        self.backend = _check_backend(self, backend)

    def extra_repr(self):
        return f"{super().extra_repr()}, backend={self.backend!r}"


class Conv2d(_ZeroPaddedConv, torch.nn.Conv2d):
    """Drop-in :class:`torch.nn.Conv2d` computed by :func:`pydense.functional.conv2d`
    (``padding_mode="zeros"`` only).

    Args:
        as :class:`torch.nn.Conv2d`; backend (str): "auto", "triton", "cuda", "cpu" or "torch"
        (keyword-only).

    Example (a context-module layer)::

        >>> conv = pydense.nn.Conv2d(21, 21, 3, padding=4, dilation=4)
        >>> conv(torch.randn(1, 21, 66, 66)).shape
        torch.Size([1, 21, 66, 66])
    """

    def forward(self, input):
        return functional.conv2d(input, self.weight, self.bias, self.stride, self.padding,
                                 self.dilation, self.groups, backend=self.backend)


class ConvTranspose2d(_ZeroPaddedConv, torch.nn.ConvTranspose2d):
    """Drop-in :class:`torch.nn.ConvTranspose2d` computed by
    :func:`pydense.functional.conv_transpose2d` (``output_size`` in ``forward`` as in PyTorch).

    Example (a depthwise k2 s2 upsampling, groups=512)::

        >>> up = pydense.nn.ConvTranspose2d(512, 512, 2, stride=2, groups=512)
        >>> up(torch.randn(1, 512, 10, 10)).shape
        torch.Size([1, 512, 20, 20])
    """

    def forward(self, input, output_size=None):
        output_padding = self._output_padding(input, output_size, self.stride, self.padding,
                                              self.kernel_size, 2, self.dilation)
        return functional.conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding,
                                           tuple(output_padding), self.groups, self.dilation,
                                           backend=self.backend)


class BilinearConvTranspose2d(_ZeroPaddedConv, torch.nn.ConvTranspose2d):
    """A :class:`torch.nn.ConvTranspose2d` holding FCN's frozen bilinear upsampling kernel,
    computed by :func:`pydense.functional.bilinear_deconv2d` (a two-tap gather per axis that
    reads no weight), with the module's parameters and state_dict unchanged.

    It is what :func:`pydense.patch` turns a ``ConvTranspose2d`` into when
    :func:`pydense.fixed_bilinear_factor` recognises it (kernel 2f, stride f, no padding, no bias,
    C -> C or depthwise, the weight equal to :func:`pydense.nn.init.bilinear_`'s kernel and
    frozen). The weight's *values* are not read in that path: a weight changed afterwards (say by
    ``load_state_dict`` of something that is not the bilinear kernel) is not seen, so unpatch
    before loading such weights. The general :func:`pydense.functional.conv_transpose2d` (which
    reads the weight) runs instead when the weight requires grad (it is being trained), for
    unbatched input, and when ``output_size`` asks for extra output rows/columns.

    Args:
        as :class:`torch.nn.ConvTranspose2d` (``kernel_size == 2 * stride``, square); backend (str):
        "auto", "triton", "cuda", "cpu" or "torch" (keyword-only).

    Example (FCN-32s's upscore layer)::

        >>> up = pydense.nn.BilinearConvTranspose2d(21, 21, 64, stride=32, bias=False)
        >>> _ = pydense.nn.init.bilinear_(up.weight).requires_grad_(False)
        >>> up(torch.randn(1, 21, 16, 16)).shape
        torch.Size([1, 21, 544, 544])
    """

    def forward(self, input, output_size=None):
        output_padding = self._output_padding(input, output_size, self.stride, self.padding,
                                              self.kernel_size, 2, self.dilation)
        if input.dim() == 4 and not any(output_padding) and not self.weight.requires_grad:
            return functional.bilinear_deconv2d(input, self.stride[0], backend=self.backend)
        return functional.conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding,
                                           tuple(output_padding), self.groups, self.dilation,
                                           backend=self.backend)


class UpsampleConcat(torch.nn.Module):
    """UNet's decoder skip: ``forward(x, skip)`` = :func:`pydense.functional.upsample_concat`,
    i.e. ``torch.cat([Upsample(x), skip], 1)`` in one pass.

    Args:
        scale_factor, mode, align_corners, backend: see :func:`pydense.functional.upsample_concat`.

    Example::

        >>> up = pydense.nn.UpsampleConcat(scale_factor=2)
        >>> up(torch.randn(1, 128, 32, 32), torch.randn(1, 64, 64, 64)).shape
        torch.Size([1, 192, 64, 64])
    """

    def __init__(self, scale_factor=2, mode="bilinear", align_corners=None, *, backend="auto"):
        super().__init__()
        self.scale_factor, self.mode, self.align_corners = scale_factor, mode, align_corners
        self.backend = _check_backend(self, backend)

    def forward(self, x, skip):
        return functional.upsample_concat(x, skip, scale_factor=self.scale_factor, mode=self.mode,
                                          align_corners=self.align_corners, backend=self.backend)

    def extra_repr(self):
        return (f"scale_factor={self.scale_factor!r}, mode={self.mode!r}, "
                f"align_corners={self.align_corners!r}, backend={self.backend!r}")


class FCNSkip(torch.nn.Module):
    """FCN's skip layer: ``forward(coarse, skip)`` = :func:`pydense.functional.fcn_skip` with the
    module's 1x1 score convolution ``self.score`` (a :class:`torch.nn.Conv2d`, so a trained
    ``score_pool4`` / ``score_pool3`` layer loads into it), or none for already-scored skips.

    Args:
        skip_channels (int): channels of the skip features (512 for pool4, 256 for pool3).
        num_classes (int): K, the coarse scores' channels.
        offset (int or (int, int)): the crop offset (5 for pool4, 9 for pool3 in voc-fcn8s).
        factor (int): the deconvolution's stride (default 2).
        skip_scale (float): multiplies the skip before scoring (0.01 / 1e-4 in FCN-8s at-once).
        score (bool): with a 1x1 score convolution (default True); False: skip_channels must
            equal num_classes.
        backend (str): "auto", "triton", "cuda", "cpu" or "torch" (keyword-only).

    Example::

        >>> skip4 = pydense.nn.FCNSkip(512, 21, offset=5)
        >>> skip4(torch.randn(1, 21, 16, 16), torch.randn(1, 512, 44, 44)).shape
        torch.Size([1, 21, 34, 34])
    """

    def __init__(self, skip_channels, num_classes, offset, factor=2, skip_scale=1.0, score=True, *,
                 backend="auto"):
        super().__init__()
        if not score and skip_channels != num_classes:
            raise ValueError(f"FCNSkip: score=False needs skip_channels == num_classes, got "
                             f"{skip_channels} and {num_classes}")
        self.score = torch.nn.Conv2d(skip_channels, num_classes, 1) if score else None
        self.offset, self.factor, self.skip_scale = offset, factor, skip_scale
        self.backend = _check_backend(self, backend)

    def forward(self, coarse, skip):
        return functional.fcn_skip(
            coarse, skip, factor=self.factor, offset=self.offset, skip_scale=self.skip_scale,
            score_weight=None if self.score is None else self.score.weight,
            score_bias=None if self.score is None else self.score.bias, backend=self.backend)

    def extra_repr(self):
        return (f"offset={self.offset!r}, factor={self.factor}, skip_scale={self.skip_scale}, "
                f"backend={self.backend!r}")


class Conv2dPixelShuffle(torch.nn.Module):
    """EDSR's sub-pixel upsampling step, ``nn.Sequential(nn.Conv2d(in_channels, out_channels*r*r,
    k, padding=k//2), nn.PixelShuffle(r))``, computed by
    :func:`pydense.functional.conv2d_pixel_shuffle` (no intermediate tensor).

    ``weight`` is the convolution's, (out_channels * r*r, in_channels, k, k), initialised as
    :class:`torch.nn.Conv2d` initialises it; :meth:`from_sequential` copies such a Sequential.

    Args:
        in_channels (int), out_channels (int): channels before and after the shuffle.
        kernel_size (int or (int, int)): the convolution's kernel; padding ``kernel_size // 2``.
        upscale_factor (int): r.
        bias (bool): add a learnable bias (out_channels * r*r,). Default True.
        backend (str): "auto", "triton", "cuda", "cpu" or "torch" (keyword-only, as ``device``
            and ``dtype``).

    Example (EDSR's x3 upsampler, F = 64)::

        >>> up = pydense.nn.Conv2dPixelShuffle(64, 64, 3, 3)
        >>> up(torch.randn(1, 64, 32, 32)).shape
        torch.Size([1, 64, 96, 96])
    """

    def __init__(self, in_channels, out_channels, kernel_size, upscale_factor, bias=True, *,
                 backend="auto", device=None, dtype=None):
        super().__init__()
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.upscale_factor = (kh, kw), upscale_factor
        self.padding = (kh // 2, kw // 2)
        self.backend = _check_backend(self, backend)
        factory = {"device": device, "dtype": dtype}
        r2 = upscale_factor * upscale_factor
        self.weight = torch.nn.Parameter(torch.empty(out_channels * r2, in_channels, kh, kw, **factory))
        if bias:
            self.bias = torch.nn.Parameter(torch.empty(out_channels * r2, **factory))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        """As :meth:`torch.nn.Conv2d.reset_parameters`."""
        torch.nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight[0].numel()
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            torch.nn.init.uniform_(self.bias, -bound, bound)

    @classmethod
    def from_sequential(cls, seq, *, backend="auto"):
        """A module computing ``seq`` = ``nn.Sequential(nn.Conv2d(...), nn.PixelShuffle(r))``
        (stride 1, dilation 1, groups 1, zero padding), with copies of its conv's parameters."""
        parts = list(seq) if isinstance(seq, torch.nn.Sequential) else []
        if (len(parts) != 2 or not isinstance(parts[0], torch.nn.Conv2d)
                or not isinstance(parts[1], torch.nn.PixelShuffle)):
            raise ValueError("Conv2dPixelShuffle.from_sequential: expected nn.Sequential(nn.Conv2d, "
                             f"nn.PixelShuffle), got {seq!r}")
        conv, shuffle = parts
        if (conv.stride != (1, 1) or conv.dilation != (1, 1) or conv.groups != 1
                or conv.padding_mode != "zeros" or isinstance(conv.padding, str)):
            raise ValueError("Conv2dPixelShuffle.from_sequential: the convolution must have stride 1, "
                             "dilation 1, groups 1 and integer zero padding, got " + repr(conv))
        r = shuffle.upscale_factor
        if conv.out_channels % (r * r):
            raise ValueError(f"Conv2dPixelShuffle.from_sequential: out_channels {conv.out_channels} "
                             f"not divisible by upscale_factor**2 = {r * r}")
        module = cls(conv.in_channels, conv.out_channels // (r * r), conv.kernel_size, r,
                     bias=conv.bias is not None, backend=backend, device=conv.weight.device,
                     dtype=conv.weight.dtype)
        module.padding = tuple(conv.padding)
        with torch.no_grad():
            module.weight.copy_(conv.weight)
            if conv.bias is not None:
                module.bias.copy_(conv.bias)
        return module

    def forward(self, input):
        return functional.conv2d_pixel_shuffle(input, self.weight, self.bias, self.upscale_factor,
                                               padding=self.padding, backend=self.backend)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"upscale_factor={self.upscale_factor}, padding={self.padding}, "
                f"bias={self.bias is not None}, backend={self.backend!r}")
