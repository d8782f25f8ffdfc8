"""Weight initialisers for torch modules (in the style of ``torch.nn.init``)."""
import torch


def bilinear_(weight):
    r"""Fill a ``ConvTranspose2d`` weight with FCN's bilinear upsampling kernel, in place.

    ``f = (k + 1) // 2``, ``c = f - 1`` (odd k) or ``f - 0.5`` (even k),
    ``w[i, j] = (1 - |i - c| / f) (1 - |j - c| / f)``, on the channel diagonal of a
    (C, C, k, k) weight (other entries zero), or on every channel of a depthwise (C, 1, k, k) one.

    Example::

        >>> up = torch.nn.ConvTranspose2d(21, 21, 64, stride=32, bias=False)
        >>> pydense.nn.init.bilinear_(up.weight).requires_grad_(False)
    """
    c_in, c_out, kh, kw = weight.shape
    if kh != kw:
        raise ValueError(f"bilinear_: the kernel must be square, got {kh}x{kw}")
    if c_out != 1 and c_in != c_out:
        raise ValueError(f"bilinear_: weight must be (C, C, k, k) or depthwise (C, 1, k, k), got "
                         f"{tuple(weight.shape)}")
    f = (kh + 1) // 2
    center = f - 1 if kh % 2 == 1 else f - 0.5
    k1 = 1 - (torch.arange(kh, dtype=torch.float64) - center).abs() / f
    k2 = torch.outer(k1, k1).to(weight.dtype)
    with torch.no_grad():
        weight.zero_()
        weight[range(c_in), [0] * c_in if c_out == 1 else range(c_in)] = k2.to(weight.device)
    return weight
