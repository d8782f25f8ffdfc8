"""Public functional API, mirroring ``torch.nn.functional`` signatures.

Every function takes a keyword-only ``backend`` ("auto", "triton", "cuda", "cpu", "torch"); see
``pydense._backend``.
"""
from .ops import bilinear_deconv as _bilinear_deconv
from .ops import conv as _conv
from .ops import fcn_skip as _fcn_skip
from .ops import max_pool as _max_pool
from .ops import max_unpool as _max_unpool
from .ops import pixel_shuffle as _pixel_shuffle
from .ops import upsample_bilinear as _upsample_bilinear
from .ops import upsample_concat as _upsample_concat

__all__ = ["bilinear_deconv2d", "conv2d", "conv2d_fused", "conv2d_pixel_shuffle", "conv_transpose2d",
           "fcn_skip", "interpolate", "max_pool2d_with_indices", "max_unpool2d", "pixel_shuffle",
           "pixel_unshuffle", "upsample_concat"]


def max_pool2d_with_indices(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                            *, compact=False, backend="auto"):
    r"""2-D max pooling that returns the values and the indices of the maxima (SegNet's encoder).

    Values equal :func:`torch.nn.functional.max_pool2d` (``return_indices=True``), with ATen's rule
    for ties and NaN: the taps of a window are scanned in row-major order and a tap becomes the
    maximum iff it is greater than the running maximum or is NaN, so the first of equal maxima
    wins and a window with NaN returns NaN (and the last NaN's index).

    Indices:

    * ``compact=False``: ATen's int64 flat indices ``ih * W + iw`` into the input plane;
    * ``compact=True``: uint8 window-local offsets ``kh * KW + kw`` of the winning tap (SegNet's
      "store only the indices": 8x less memory than int64). Needs ``KH * KW <= 256``. The tap's
      input position is ``(oh * sH - pH + kh * dH, ow * sW - pW + kw * dW)``.

    :func:`max_unpool2d` accepts either kind directly: an index tensor's dtype says which it is
    (int64 = flat, uint8 = compact).

    The backward is a deterministic gather over the input (no atomics; overlapping windows sum
    their gradients in a fixed order) on the pydense backends. Double backward (create_graph=True,
    gradient penalties) is supported: the backward's gradient is max_unpool2d's gather.

    Args:
        input (Tensor): (N, C, H, W) or (C, H, W); float16, bfloat16, float32 or float64; NCHW,
            channels_last (kept in both outputs) or any strides.
        kernel_size (int or (int, int)): the window.
        stride (int or (int, int), optional): defaults to ``kernel_size``.
        padding (int or (int, int)): implicit -inf padding, at most half the kernel. Default 0.
        dilation (int or (int, int)): spacing of the taps. Default 1.
        ceil_mode (bool): round the output size up, as Caffe (SegNet) does. Default False.
        compact (bool): return uint8 window offsets instead of int64 flat indices (keyword-only).
        backend (str): "auto" (default), "triton", "cuda", "cpu" or "torch".

    Returns:
        (Tensor, Tensor): the pooled values (input's dtype) and the indices (int64 or uint8), both
        (N, C, OH, OW) (or (C, OH, OW)).

    Example::

        >>> x = torch.randn(1, 64, 45, 60)
        >>> y, idx = pydense.functional.max_pool2d_with_indices(x, 2, 2, ceil_mode=True, compact=True)
        >>> y.shape, idx.dtype
        (torch.Size([1, 64, 23, 30]), torch.uint8)
        >>> pydense.functional.max_unpool2d(y, idx, 2, 2, output_size=x.shape[-2:]).shape
        torch.Size([1, 64, 45, 60])
    """
    return _max_pool.max_pool2d_with_indices(input, kernel_size, stride, padding, dilation, ceil_mode, compact=compact,
                          backend=backend)


def max_unpool2d(input, indices, kernel_size, stride=None, padding=0, output_size=None, *,
                 dilation=1, backend="auto", check_indices=None):
    r"""Partial inverse of ``max_pool2d``: put each value back where its index says, zeros elsewhere.

    Same arguments and result as :func:`torch.nn.functional.max_unpool2d`::

        out[n, c, indices[n, c, h, w]] = input[n, c, h, w]      (flat index into the OH x OW plane)

    When ``kernel_size == stride`` (SegNet), the output is computed as a single-pass gather that
    writes every element once, with no zero-fill pass. Indices that point outside their own pooling
    window are legal and give the same result as a plain scatter. For duplicate indices the result
    is deterministic on every backend: the later input element (row-major order of its plane) wins,
    as PyTorch's CPU kernel does for contiguous input.

    The backward is a gather: ``grad_input[n, c, i] = grad_out[n, c, indices[n, c, i]]`` (every
    duplicate receives the gradient of the output it points at, as in PyTorch). Double backward
    (create_graph=True, gradient penalties) is supported for indices inside their own pooling
    window (every index ``max_pool2d`` returns with this window, repeated ones of overlapping
    windows included): the gather's gradient is max_pool2d's backward, a sum over the windows. A
    flat index outside its window raises ``NotImplementedError`` there when indices are checked
    (see ``check_indices``; in eager mode), and adds nothing to the second derivative otherwise.

    Two kinds of indices, told apart by their dtype:

    * int64: flat indices into the OH x OW plane (``max_pool2d(..., return_indices=True)``);
    * uint8: compact window offsets ``kh * KW + kw`` from
      :func:`max_pool2d_with_indices` ``(..., compact=True)``. The kernels decode them with the
      pooling window: pooled element (h, w) goes to ``(h * sH - pH + kh * dH, w * sW - pW + kw * dW)``,
      so pass the pool's kernel_size, stride, padding (and ``dilation``). The result equals
      unpooling the pool's int64 indices.

    Args:
        input (Tensor): (N, C, H, W) or (C, H, W); float16, bfloat16, float32 or float64; NCHW,
            channels_last or any strides.
        indices (Tensor): the input's shape; int64 (flat, e.g. from ``max_pool2d(...,
            return_indices=True)``) or uint8 (compact window offsets, see above).
        kernel_size (int or (int, int)): the pooling window.
        stride (int or (int, int), optional): defaults to ``kernel_size``.
        padding (int or (int, int)): the pooling padding. Default 0.
        output_size (sequence of int, optional): (H, W) or the full shape; must lie strictly within
            one stride of the default ``(in - 1) * stride - 2 * padding + kernel``.
        dilation (int or (int, int)): the pool's dilation: decodes uint8 indices, and sets the
            default output size (the pool's input size) for both kinds. Default 1 (keyword-only).
        backend (str): "auto" (default), "triton", "cuda", "cpu" or "torch".
        check_indices (bool, optional): raise ``IndexError`` for an index outside
            ``[0, OH*OW)`` (a compact offset whose tap is outside the plane) before any kernel writes. Default: on for CPU tensors; for CUDA tensors
            only when ``PYDENSE_CHECK_INDICES=1`` (the check costs a host sync). Unchecked invalid
            indices are never used as an address: their values are dropped.

    Returns:
        Tensor: (N, C, OH, OW) (or (C, OH, OW)), channels_last when the input is.

    Example::

        >>> x = torch.randn(2, 64, 90, 120)
        >>> pooled, idx = torch.nn.functional.max_pool2d(x, 2, 2, return_indices=True)
        >>> up = pydense.functional.max_unpool2d(pooled, idx, 2, output_size=x.shape[-2:])
        >>> up.shape
        torch.Size([2, 64, 90, 120])
    """
    return _max_unpool.max_unpool2d(input, indices, kernel_size, stride, padding, output_size,
                              dilation=dilation, backend=backend, check_indices=check_indices)


def pixel_shuffle(input, upscale_factor, *, backend="auto"):
    r"""Rearrange (*, C*r*r, H, W) into (*, C, H*r, W*r) (EDSR's and ESPCN's upsampler).

    Same result as :func:`torch.nn.functional.pixel_shuffle`::

        out[..., c, h*r + i, w*r + j] = input[..., c*r*r + i*r + j, h, w]

    A pure permutation (one gather per output element, bitwise exact); its backward is
    :func:`pixel_unshuffle` of the gradient.

    Args:
        input (Tensor): (*, C*r*r, H, W), float16/bfloat16/float32/float64; NCHW, channels_last
            (kept in the output for 4-D input) or any strides.
        upscale_factor (int): r > 0.
        backend (str): "auto" (default), "triton", "cuda", "cpu" or "torch".

    Returns:
        Tensor: (*, C, H*r, W*r).

    Example::

        >>> x = torch.randn(16, 256, 48, 48)          # EDSR x2 upsampler: conv 64 -> 256 ...
        >>> pydense.functional.pixel_shuffle(x, 2).shape   # ... then PixelShuffle(2)
        torch.Size([16, 64, 96, 96])
    """
    return _pixel_shuffle.pixel_shuffle(input, upscale_factor, backend)


def pixel_unshuffle(input, downscale_factor, *, backend="auto"):
    r"""Rearrange (*, C, H*r, W*r) into (*, C*r*r, H, W): the inverse of :func:`pixel_shuffle`.

    Same result as :func:`torch.nn.functional.pixel_unshuffle`::

        out[..., c*r*r + i*r + j, h, w] = input[..., c, h*r + i, w*r + j]

    Args:
        input (Tensor): (*, C, H*r, W*r), floating point, any layout.
        downscale_factor (int): r > 0; H and W must be divisible by it.
        backend (str): "auto" (default), "triton", "cuda", "cpu" or "torch".

    Returns:
        Tensor: (*, C*r*r, H, W).

    Example::

        >>> x = torch.randn(1, 3, 8, 8)
        >>> pydense.functional.pixel_unshuffle(x, 2).shape
        torch.Size([1, 12, 4, 4])
    """
    return _pixel_shuffle.pixel_unshuffle(input, downscale_factor, backend)


def interpolate(input, size=None, scale_factor=None, mode="bilinear", align_corners=None,
                recompute_scale_factor=None, antialias=False, *, backend="auto"):
    r"""Bilinear upsampling/downsampling with PyTorch's exact semantics and a deterministic backward.

    Same arguments and result as :func:`torch.nn.functional.interpolate` for ``mode="bilinear"``
    on 4-D input: ``align_corners`` True or False, ``size`` or ``scale_factor`` (integer or
    fractional, up or down, per axis), ``recompute_scale_factor``, PyTorch's source-index
    formula and edge clamping. Other modes, ``antialias=True`` and other ranks are passed to
    :func:`torch.nn.functional.interpolate` unchanged (with ``backend="auto"`` or ``"torch"``).

    Accumulates in fp32 for half/bfloat16; the output keeps the input's memory format
    (channels_last stays channels_last); any input strides.

    The backward is a gather: each input-gradient element is computed once from the output
    gradients whose stencil touches it, separable in h and w, with no atomics and a fixed order:
    bitwise deterministic and usable under ``torch.use_deterministic_algorithms(True)`` (where
    ATen's CUDA backward raises). Double backward (create_graph=True, gradient penalties) is
    supported: the backward's gradient is the upsampling again.

    Args:
        input (Tensor): (N, C, H, W), float16/bfloat16/float32/float64.
        size (int or (int, int), optional): output size.
        scale_factor (float or (float, float), optional): output = floor(input * scale_factor).
        mode (str): "bilinear" runs pydense's kernels; anything else goes to torch.
        align_corners (bool, optional): default False.
        recompute_scale_factor (bool, optional): recompute the scale from the output size.
        antialias (bool): True goes to torch.
        backend (str): "auto" (default), "triton", "cuda", "cpu" or "torch".

    Returns:
        Tensor: (N, C, out_h, out_w).

    Example::

        >>> score = torch.randn(8, 21, 16, 16)
        >>> pydense.functional.interpolate(score, size=(512, 512), align_corners=False).shape
        torch.Size([8, 21, 512, 512])
    """
    return _upsample_bilinear.interpolate(input, size, scale_factor, mode, align_corners,
                                          recompute_scale_factor, antialias, backend=backend)


def bilinear_deconv2d(input, factor, *, crop=0, output_size=None, backend="auto"):
    r"""FCN's fixed bilinear upsampling deconvolution, with the crop fused.

    Equal (to rounding) to ``F.conv_transpose2d(input, w, stride=factor)[..., crop:crop + H,
    crop:crop + W]`` where ``w`` is FCN's bilinear kernel of size ``2 * factor`` on the channel
    diagonal (``pydense.nn.init.bilinear_``), computed as a two-tap-per-axis gather: no weight
    tensor read, no multiplications by the off-diagonal zeros, only the cropped window computed.
    The backward (input gradient; the weights are fixed) is a deterministic gather. Double
    backward (create_graph=True, gradient penalties) is supported: the backward's gradient is
    the deconvolution again.

    Args:
        input (Tensor): (N, C, H, W), float16/bfloat16/float32/float64, any layout.
        factor (int): the stride f (kernel 2f): FCN uses 2 (upscore2), 8, 16 and 32.
        crop (int): offset of the kept window in the full ((H + 1) f, (W + 1) f) output.
        output_size ((int, int) or full shape, optional): the kept window's size; default: the
            full size minus ``crop``.
        backend (str): "auto" (default), "triton", "cuda", "cpu" or "torch".

    Returns:
        Tensor: (N, C, out_h, out_w).

    Example::

        >>> fc7_score = torch.randn(1, 21, 16, 16)              # FCN-32s on a 500x500 image
        >>> pydense.functional.bilinear_deconv2d(fc7_score, 32, crop=19, output_size=(500, 500)).shape
        torch.Size([1, 21, 500, 500])
    """
    return _bilinear_deconv.bilinear_deconv2d(input, factor, crop, output_size, backend)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, backend="auto"):
    r"""2-D convolution: dense, grouped or depthwise, any stride, padding and dilation.

    Same arguments and result as :func:`torch.nn.functional.conv2d`::

        out[n, oc, oh, ow] = bias[oc] + sum_{c, kh, kw} input[n, g*Cg + c, oh*sh - ph + kh*dh, ow*sw - pw + kw*dw]
                                                        * weight[oc, c, kh, kw]     (g = oc // OCg)

    On the Triton backend dense and grouped convolutions are an implicit GEMM (tensor cores for
    fp16/bf16, TF32 for fp32 when ``torch.backends.cudnn.allow_tf32``), depthwise ones
    (``groups == in_channels``, any channel multiplier) direct kernels; dilation costs nothing
    extra in either. The backward computes the input gradient as a gather (no atomics) and the
    weight gradient by a deterministic split-K reduction: both are bitwise reproducible.
    Accumulation is fp32 (fp64 for fp64 data). Under autocast the inputs are cast to the
    autocast dtype, as for ATen's convolution.

    Args:
        input (Tensor): (N, C, H, W) or (C, H, W); float16, bfloat16, float32 or float64; NCHW,
            channels_last (kept in the output) or any strides.
        weight (Tensor): (OC, C / groups, kH, kW), the input's dtype and device.
        bias (Tensor, optional): (OC,).
        stride (int or (int, int)): positive. Default 1.
        padding (int, (int, int), "same" or "valid"): zero padding; "same" needs stride 1 and
            pads an odd total one more at the bottom/right, as PyTorch does. Default 0.
        dilation (int or (int, int)): positive. Default 1.
        groups (int): divides C and OC. Default 1.
        backend (str): "auto" (default), "triton", "cuda", "cpu" or "torch".

    Returns:
        Tensor: (N, OC, OH, OW) with ``OH = (H + 2*ph - dh*(kH - 1) - 1) // sh + 1``.

    Example::

        >>> x = torch.randn(1, 256, 80, 45)
        >>> w = torch.randn(256, 256, 3, 3)
        >>> pydense.functional.conv2d(x, w, padding=2, dilation=2).shape
        torch.Size([1, 256, 80, 45])
    """
    return _conv.conv2d(input, weight, bias, stride, padding, dilation, groups, backend=backend)


def conv2d_fused(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
                 activation=None, residual=None, scale=1.0, backend="auto"):
    r"""Convolution with a fused epilogue (EDSR ResBlocks, context-module layers)::

        out = residual + scale * act(conv2d(input, weight) + bias)

    computed in the convolution's accumulation type before the single rounding to the output
    dtype (one kernel, no intermediate tensors on the Triton, CUDA and CPU-direct backends).

    Args:
        input, weight, bias, stride, padding, dilation, groups: as in :func:`conv2d`.
        activation (str, optional): None or "relu".
        residual (Tensor, optional): the output's shape, dtype and device.
        scale (float): multiplies the activation (EDSR's ``res_scale``). Default 1.
        backend (str): as in :func:`conv2d`.

    The backward recomputes the pre-activation when ``activation="relu"`` (exact; no extra
    activation-sized tensor is kept for it); the residual's gradient is the output gradient.

    Example (an EDSR residual block with res_scale 0.1)::

        >>> x = torch.randn(1, 64, 48, 48)
        >>> w1, w2 = torch.randn(64, 64, 3, 3) * 0.05, torch.randn(64, 64, 3, 3) * 0.05
        >>> h = pydense.functional.conv2d_fused(x, w1, padding=1, activation="relu")
        >>> y = pydense.functional.conv2d_fused(h, w2, padding=1, residual=x, scale=0.1)
        >>> y.shape
        torch.Size([1, 64, 48, 48])
    """
    return _conv.conv2d_fused(input, weight, bias, stride, padding, dilation, groups,
                              activation=activation, residual=residual, scale=scale,
                              backend=backend)


def conv2d_pixel_shuffle(input, weight, bias, upscale_factor, *, padding=None, backend="auto"):
    r"""Sub-pixel convolution (EDSR's and ESPCN's upsampler): a stride-1 convolution whose output
    is pixel-shuffled, without the intermediate tensor.

    Same result as ``F.pixel_shuffle(F.conv2d(input, weight, bias, padding=padding), r)``::

        out[n, c, oh*r + i, ow*r + j] = bias[oc] + sum_{ci, kh, kw} input[n, ci, oh - ph + kh, ow - pw + kw]
                                                               * weight[oc, ci, kh, kw]     (oc = c*r*r + i*r + j)

    The convolution's epilogue (Triton implicit GEMM, CUDA tensor-core / direct kernels, CPU
    direct kernels) stores each result straight at its shuffled position: the (N, r*r*C, H, W)
    convolution output is never written nor read back. The backward unshuffles the output
    gradient (:func:`pixel_unshuffle`) and runs the convolution's input- and weight-gradient
    kernels (deterministic, as for :func:`conv2d`); the bias gradient is its per-channel sum.
    Accumulation is fp32 (fp64 for fp64 data); under autocast the inputs are cast to the autocast
    dtype, as for ATen's convolution. The cpu backend sends dense convolutions (C > 8) to ATen's
    CPU convolution, then shuffles.

    Args:
        input (Tensor): (N, C, H, W) or (C, H, W); float16, bfloat16, float32 or float64; NCHW,
            channels_last (kept in the output) or any strides.
        weight (Tensor): (C_out * r*r, C, kH, kW), the input's dtype and device (stride 1,
            dilation 1, groups 1).
        bias (Tensor or None): (C_out * r*r,).
        upscale_factor (int): r > 0; ``weight.size(0)`` must be divisible by r*r.
        padding (int or (int, int), optional): zero padding per axis; default ``kernel_size // 2``
            per axis (EDSR's ``default_conv``: output size = input size for odd kernels).
        backend (str): "auto" (default), "triton", "cuda", "cpu" or "torch" (ATen conv2d then
            pixel_shuffle).

    Returns:
        Tensor: (N, C_out, OH*r, OW*r) (or (C_out, OH*r, OW*r)), ``OH = H + 2*ph - kH + 1``.

    Example (EDSR baseline's x2 upsampler, F = 64)::

        >>> x = torch.randn(16, 64, 48, 48)
        >>> w, b = torch.randn(256, 64, 3, 3) * 0.04, torch.zeros(256)
        >>> pydense.functional.conv2d_pixel_shuffle(x, w, b, 2).shape
        torch.Size([16, 64, 96, 96])
    """
    return _conv.conv2d_pixel_shuffle(input, weight, bias, upscale_factor, padding, backend=backend)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, *, backend="auto"):
    r"""2-D transposed convolution ("deconvolution"): dense, grouped or depthwise.

    Same arguments (and argument order) and result as :func:`torch.nn.functional.conv_transpose2d`.
    It is computed as the input gradient of a convolution, a gather per output element: with
    stride s only the 1/s of the taps per axis that reach an output are visited (the Triton GEMM
    kernel runs one stride phase per program), so a k64 s32 upsampling does 4 taps per output,
    not 4096, and depthwise/grouped transposed convolutions get direct kernels. No atomics: the
    result and both gradients are bitwise reproducible.

    Args:
        input (Tensor): (N, C, H, W) or (C, H, W).
        weight (Tensor): (C, OC / groups, kH, kW).
        bias (Tensor, optional): (OC,).
        stride, padding, dilation (int or (int, int)): as in PyTorch.
        output_padding (int or (int, int)): extra rows/columns at the bottom/right; smaller than
            the stride or the dilation.
        groups (int): divides C and OC.
        backend (str): "auto" (default), "triton", "cuda", "cpu" or "torch".

    Returns:
        Tensor: (N, OC, OH, OW), ``OH = (H - 1)*sh - 2*ph + dh*(kH - 1) + output_padding + 1``.

    Example (a depthwise k4 s2 upsampling)::

        >>> x = torch.randn(8, 21, 64, 64)
        >>> w = torch.randn(21, 1, 4, 4)
        >>> pydense.functional.conv_transpose2d(x, w, stride=2, padding=1, groups=21).shape
        torch.Size([8, 21, 128, 128])
    """
    return _conv.conv_transpose2d(input, weight, bias, stride, padding, output_padding, groups,
                                  dilation, backend=backend)


def upsample_concat(x, skip, *, scale_factor=2, mode="bilinear", align_corners=None, backend="auto"):
    r"""UNet's skip connection in one pass: ``torch.cat([F.interpolate(x, ...), skip], dim=1)``.

    Equal to ``torch.cat([F.interpolate(x, scale_factor=scale_factor, mode=mode,
    align_corners=align_corners), skip], 1)`` (bitwise, for the pydense backends, up to the
    interpolation's rounding), written by one kernel that interpolates the first ``C_x`` output
    channels and copies ``skip`` into the rest: the upsampled tensor is never materialised. The
    output keeps ``x``'s memory format (NCHW or channels_last); any input strides.

    Backward: ``skip``'s gradient is a view of the output gradient's last channels; ``x``'s is
    the interpolation's deterministic gather backward (no atomics), read in place from the
    gradient's first ``C_x`` channels. Double backward (create_graph=True, gradient penalties)
    is supported: that gather's gradient is the upsampling again.

    Args:
        x (Tensor): (N, C_x, H, W) (or unbatched (C_x, H, W)), float16/bfloat16/float32/float64.
        skip (Tensor): (N, C_skip, OH, OW) on x's device; the output has its spatial size. A
            different float dtype is promoted with x's, as ``torch.cat`` does.
        scale_factor (float or (float, float) or None): default 2; ``floor(H * scale_factor)``
            must equal skip's size (else ValueError). None: upsample x to skip's size.
        mode (str): "bilinear" (default), "nearest" or "nearest-exact" (PyTorch's formulas).
        align_corners (bool, optional): bilinear only; default False.
        backend (str): "auto" (default), "triton", "cuda", "cpu" or "torch".

    Returns:
        Tensor: (N, C_x + C_skip, OH, OW).

    Example::

        >>> x = torch.randn(1, 64, 32, 32)           # decoder features
        >>> skip = torch.randn(1, 64, 64, 64)        # encoder features
        >>> pydense.functional.upsample_concat(x, skip).shape
        torch.Size([1, 128, 64, 64])
    """
    return _upsample_concat.upsample_concat(x, skip, scale_factor, mode, align_corners, backend)


def fcn_skip(coarse, skip_features, *, factor=2, offset, skip_scale=1.0, score_weight=None,
             score_bias=None, backend="auto"):
    r"""FCN's skip fusion in one kernel: upsample the coarse scores, score and crop the skip, add.

    Computes (to rounding)::

        up = F.conv_transpose2d(coarse, bilinear_weight(K, 2 * factor), stride=factor)
        s = F.conv2d(skip_scale * skip_features, score_weight, score_bias)   # or skip_scale * skip_features
        out = up + s[..., offset:offset + up.shape[-2], offset:offset + up.shape[-1]]

    as in voc-fcn16s/8s: ``upscore2 + crop(score_pool4, 5)`` and ``upscore_pool4 +
    crop(score_pool3, 9)`` (the at-once variant scales pool4 by 0.01 and pool3 by 1e-4 first).
    One kernel reads the coarse scores and only the cropped window of the skip features, does
    the 1x1 score convolution as a small dot per tile (fp32 accumulation; TF32 for fp32 when
    ``torch.backends.cudnn.allow_tf32``, as cuDNN would), adds FCN's bilinear deconvolution as a
    two-tap gather and writes the result once; no intermediate tensor.

    Backward (all deterministic, no atomics): ``coarse`` gets the deconvolution's gather
    backward; ``skip_features`` the transposed 1x1 convolution of the gradient inside the crop,
    zero outside; ``score_weight`` the 1x1 weight gradient on the crop times ``skip_scale``;
    ``score_bias`` the gradient's per-class sum. Double backward (create_graph=True, gradient
    penalties) is supported: these gradients' own are the deconvolution, the 1x1 convolution
    and its weight and input gradients.

    Args:
        coarse (Tensor): (N, K, H, W) class scores, float16/bfloat16/float32/float64; the output
            has size ((H + 1) * factor, (W + 1) * factor), FCN's uncropped upscore.
        skip_features (Tensor): (N, C_skip, HS, WS): pool features (with ``score_weight``) or
            already-scored maps (C_skip == K); same dtype and device as coarse.
        factor (int): the deconvolution's stride (kernel 2 * factor); FCN uses 2.
        offset (int or (int, int)): the crop offset into skip_features (required); the window
            must lie inside skip_features.
        skip_scale (float): multiplies skip_features before scoring (default 1).
        score_weight (Tensor, optional): (K, C_skip) or (K, C_skip, 1, 1) 1x1 score weights.
        score_bias (Tensor, optional): (K,), with score_weight.
        backend (str): "auto" (default), "triton", "cuda", "cpu" or "torch" (the eager chain).

    Returns:
        Tensor: (N, K, (H + 1) * factor, (W + 1) * factor), in coarse's memory format.

    Example (FCN-16s on a 500x500 image)::

        >>> score_fr = torch.randn(1, 21, 16, 16)
        >>> pool4 = torch.randn(1, 512, 44, 44)
        >>> w, b = torch.randn(21, 512, 1, 1) * 0.01, torch.zeros(21)
        >>> pydense.functional.fcn_skip(score_fr, pool4, offset=5, score_weight=w, score_bias=b).shape
        torch.Size([1, 21, 34, 34])
    """
    return _fcn_skip.fcn_skip(coarse, skip_features, factor, offset, skip_scale, score_weight,
                              score_bias, backend)
