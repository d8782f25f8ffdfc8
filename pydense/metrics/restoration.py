"""Image restoration scores: PSNR and SSIM (super-resolution, denoising), as the SR literature
computes them (EDSR's evaluation: an optional border shave of ``scale`` pixels, optionally on the
luma channel).

    >>> import torch
    >>> from pydense.metrics import psnr, ssim
    >>> x = torch.full((1, 3, 16, 16), 100.0)
    >>> round(float(psnr(x + 1, x)), 4)               # MSE 1 on a 0..255 range
    48.1308
    >>> float(ssim(x, x))
    1.0
"""
import torch
import torch.nn.functional as F

__all__ = ["psnr", "ssim", "rgb_to_y"]

# ITU-R BT.601 luma as MATLAB's rgb2ycbcr computes it (what SR papers report): on [0, 1] RGB,
# Y = 16/255 + (65.481 R + 128.553 G + 24.966 B) / 255
_Y_WEIGHTS = (65.481, 128.553, 24.966)


def rgb_to_y(image, data_range=255.0):
    """(N, 3, H, W) RGB in [0, data_range] -> (N, 1, H, W) BT.601 luma in the same range."""
    w = torch.tensor(_Y_WEIGHTS, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    return (16.0 + (image / data_range * w).sum(1, keepdim=True)) * (data_range / 255.0)


def _prepare(pred, target, name, data_range, crop_border, y_channel):
    for t, arg in ((pred, "pred"), (target, "target")):
        if not isinstance(t, torch.Tensor) or t.dim() != 4 or not t.is_floating_point():
            raise ValueError(f"{name}: {arg} must be a floating (N, C, H, W) tensor, got "
                             f"{tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}"
                             + (f" {t.dtype}" if isinstance(t, torch.Tensor) else ""))
    if pred.shape != target.shape:
        raise ValueError(f"{name}: pred {tuple(pred.shape)} and target {tuple(target.shape)} must "
                         f"have the same shape")
    if not (isinstance(data_range, (int, float)) and data_range > 0):
        raise ValueError(f"{name}: data_range must be a positive number, got {data_range!r}")
    if not isinstance(crop_border, int) or crop_border < 0 or 2 * crop_border >= min(pred.shape[-2:]):
        raise ValueError(f"{name}: crop_border must be an int in [0, {min(pred.shape[-2:]) // 2}) for "
                         f"images of {tuple(pred.shape[-2:])}, got {crop_border!r}")
    if y_channel and pred.shape[1] != 3:
        raise ValueError(f"{name}: y_channel=True needs RGB images (C = 3), got C = {pred.shape[1]}")
    pred, target = pred.detach().to(torch.float64), target.detach().to(torch.float64)
    if crop_border:
        b = crop_border
        pred, target = pred[..., b:-b, b:-b], target[..., b:-b, b:-b]
    if y_channel:
        pred, target = rgb_to_y(pred, data_range), rgb_to_y(target, data_range)
    return pred, target


def _reduce(values, reduction, name):
    if reduction == "mean":
        return values.mean()
    if reduction == "none":
        return values
    raise ValueError(f"{name}: reduction must be 'mean' or 'none', got {reduction!r}")


def psnr(pred, target, *, data_range=255.0, crop_border=0, y_channel=False, reduction="mean"):
    r"""Peak signal-to-noise ratio, per image: :math:`10 \log_{10}(R^2 / \mathrm{MSE})`.

    Args:
        pred, target (Tensor): (N, C, H, W) floating images in [0, data_range] (not clamped or
            rounded here: quantise first if the protocol asks for it).
        data_range (float): R, 255 (default) or 1.
        crop_border (int): pixels shaved from each side first (SR: the scale).
        y_channel (bool): score the BT.601 luma of RGB images.
        reduction (str): "mean" over images (default) or "none" ((N,) values).

    Returns:
        Tensor: float64, in dB (inf for identical images).
    """
    p, t = _prepare(pred, target, "psnr", data_range, crop_border, y_channel)
    mse = (p - t).pow(2).flatten(1).mean(1)
    return _reduce(10.0 * torch.log10(data_range ** 2 / mse), reduction, "psnr")


def _gaussian(window, sigma, dtype, device):
    x = torch.arange(window, dtype=dtype, device=device) - (window - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def ssim(pred, target, *, data_range=255.0, crop_border=0, y_channel=False, window=11,
         sigma=1.5, k1=0.01, k2=0.03, padding="valid", reduction="mean"):
    r"""Structural similarity (Wang et al. 2004), per image: the mean over channels and window
    positions of :math:`\frac{(2\mu_x\mu_y + C_1)(2\sigma_{xy} + C_2)}{(\mu_x^2 + \mu_y^2
    + C_1)(\sigma_x^2 + \sigma_y^2 + C_2)}`, with a ``window`` x ``window`` Gaussian of standard
    deviation ``sigma``, :math:`C_i = (k_i R)^2`, population (co)variances, in float64.

    ``padding="valid"`` (default) averages the windows that lie inside the image, as the paper's
    code (MATLAB ``filter2(..., 'valid')``), scikit-image (``gaussian_weights=True``) and the SR
    papers' evaluation scripts do; ``"reflect"`` pads the images by ``window // 2`` (reflection)
    and averages every position, as torchmetrics does (its Gaussian has ``2 int(3.5 sigma + 0.5)
    + 1`` taps: 11 for sigma 1.5).

    Args: as :func:`psnr`, and ``window`` (odd int, at most the image size after the shave),
    ``sigma``, ``k1``, ``k2``, ``padding``.

    Returns:
        Tensor: float64 (1 for identical images).
    """
    p, t = _prepare(pred, target, "ssim", data_range, crop_border, y_channel)
    if not isinstance(window, int) or window < 1 or window % 2 == 0 or window > min(p.shape[-2:]):
        raise ValueError(f"ssim: window must be an odd int at most {min(p.shape[-2:])} (the image "
                         f"size after the shave), got {window!r}")
    if padding == "reflect":
        r = window // 2
        p, t = F.pad(p, (r, r, r, r), mode="reflect"), F.pad(t, (r, r, r, r), mode="reflect")
    elif padding != "valid":
        raise ValueError(f"ssim: padding must be 'valid' or 'reflect', got {padding!r}")
    c = p.shape[1]
    g = _gaussian(window, sigma, p.dtype, p.device)
    kernel = torch.outer(g, g).expand(c, 1, window, window)

    def blur(x):
        return F.conv2d(x, kernel, groups=c)

    mu_p, mu_t = blur(p), blur(t)
    var_p = blur(p * p) - mu_p ** 2
    var_t = blur(t * t) - mu_t ** 2
    cov = blur(p * t) - mu_p * mu_t
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / ((mu_p ** 2 + mu_t ** 2 + c1) * (var_p + var_t + c2))
    return _reduce(s.flatten(1).mean(1), reduction, "ssim")
