"""Recognising torch modules that pydense computes faster (for patching existing models)."""
import torch

from .nn import init


def fixed_bilinear_factor(module):
    """The factor f if ``module`` is FCN's fixed bilinear upsampling, else None.

    That is a ``ConvTranspose2d`` with kernel 2f, stride f, no padding/output padding/dilation,
    no bias, groups 1 with C -> C channels (or depthwise), a frozen weight, and the weight exactly
    equal to :func:`pydense.nn.init.bilinear_`'s kernel — then
    ``pydense.functional.bilinear_deconv2d(x, f)`` computes the same thing.
    """
    if not isinstance(module, torch.nn.ConvTranspose2d):
        return None
    k, s = module.kernel_size, module.stride
    if k[0] != k[1] or s[0] != s[1] or k[0] != 2 * s[0]:
        return None
    if (module.padding != (0, 0) or module.output_padding != (0, 0) or module.dilation != (1, 1)
            or module.bias is not None or module.weight.requires_grad):
        return None
    c_in, c_out = module.in_channels, module.out_channels
    if c_in != c_out or module.groups not in (1, c_in):
        return None
    expected = init.bilinear_(torch.empty_like(module.weight))
    return s[0] if torch.equal(module.weight, expected) else None
