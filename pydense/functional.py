"""Public functional API, mirroring ``torch.nn.functional`` signatures.

Every function takes a keyword-only ``backend`` ("auto", "triton", "cuda", "cpu", "torch"); see
``pydense._backend``.
"""
from .ops import max_unpool as _max_unpool

__all__ = ["max_unpool2d"]


def max_unpool2d(input, indices, kernel_size, stride=None, padding=0, output_size=None, *,
                 backend="auto", check_indices=None):
    r"""Partial inverse of ``max_pool2d``: put each value back where its index says, zeros elsewhere.

    Same arguments and result as :func:`torch.nn.functional.max_unpool2d`::

        out[n, c, indices[n, c, h, w]] = input[n, c, h, w]      (flat index into the OH x OW plane)

    When ``kernel_size == stride`` (SegNet), the output is computed as a single-pass gather that
    writes every element once, with no zero-fill pass. Indices that point outside their own pooling
    window are legal and give the same result as a plain scatter. For duplicate indices the result
    is deterministic on every backend: the later input element (row-major order of its plane) wins,
    as PyTorch's CPU kernel does for contiguous input.

    The backward is a gather: ``grad_input[n, c, i] = grad_out[n, c, indices[n, c, i]]`` (every
    duplicate receives the gradient of the output it points at, as in PyTorch).

    Args:
        input (Tensor): (N, C, H, W) or (C, H, W); float16, bfloat16, float32 or float64; NCHW,
            channels_last or any strides.
        indices (Tensor): int64, the input's shape, e.g. from ``max_pool2d(..., return_indices=True)``.
        kernel_size (int or (int, int)): the pooling window.
        stride (int or (int, int), optional): defaults to ``kernel_size``.
        padding (int or (int, int)): the pooling padding. Default 0.
        output_size (sequence of int, optional): (H, W) or the full shape; must lie strictly within
            one stride of the default ``(in - 1) * stride - 2 * padding + kernel``.
        backend (str): "auto" (default), "triton", "cuda", "cpu" or "torch".
        check_indices (bool, optional): raise ``IndexError`` for an index outside
            ``[0, OH*OW)`` before any kernel writes. Default: on for CPU tensors; for CUDA tensors
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
    return _max_unpool.unpool(input, indices, kernel_size, stride, padding, output_size,
                              backend=backend, check_indices=check_indices)
