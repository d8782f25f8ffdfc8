"""Full dense-prediction models on pydense's fused ops (``backend="pydense"``) or on stock PyTorch
ops (``backend="torch"``), with the same parameters: state_dicts load into either.

    >>> import torch, pydense
    >>> model = pydense.models.edsr_baseline(scale=2).eval()
    >>> model(torch.rand(1, 3, 24, 24) * 255).shape
    torch.Size([1, 3, 48, 48])
"""
from ._layers import BACKENDS, parameter_count
from .dilation import (ContextModule, Dilation8, DilationFrontend, context_module, dilation8,
                       dilation_frontend, pad_image)
from .edsr import EDSR, edsr, edsr_baseline
from .fcn import FCN, fcn8s, fcn16s, fcn32s
from .segnet import SegNet, segnet

__all__ = ["BACKENDS", "parameter_count", "ContextModule", "Dilation8", "DilationFrontend",
           "context_module", "dilation8", "dilation_frontend", "pad_image", "EDSR", "edsr",
           "edsr_baseline", "FCN", "fcn8s", "fcn16s", "fcn32s", "SegNet", "segnet"]
