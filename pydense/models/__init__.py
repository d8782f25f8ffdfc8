"""Full dense-prediction models on pydense's fused ops or on stock PyTorch, with the same
parameters: state_dicts load into either.

Every model takes ``backend`` with the ops' values (:data:`BACKENDS`, which is
``pydense._backend.BACKENDS``): "auto" (the default), "triton", "cuda" or "cpu" run pydense's ops
on that backend; "torch" builds the stock PyTorch model. Any other value is a ValueError. The
older spellings still work, with a DeprecationWarning: ``backend="pydense"`` is "auto", and
``op_backend=X`` (FCN, EDSR, the dilation models) is ``backend=X``.

    >>> import torch, pydense
    >>> model = pydense.models.edsr_baseline(scale=2).eval()
    >>> model(torch.rand(1, 3, 24, 24) * 255).shape
    torch.Size([1, 3, 48, 48])
"""
from ._layers import BACKENDS, parameter_count
from .deeplab import DeepLabV3Plus, deeplabv3plus
from .dilation import (ContextModule, Dilation8, DilationFrontend, context_module, dilation8,
                       dilation_frontend, pad_image)
from .edsr import EDSR, edsr, edsr_baseline
from .fcn import FCN, fcn8s, fcn16s, fcn32s
from .panoptic_fpn import PanopticFPN, panoptic_fpn
from .restoration import DnCNN, SeeInTheDark, dncnn, see_in_the_dark
from .segnet import SegNet, segnet
from .unet import UNet, unet

__all__ = ["BACKENDS", "parameter_count", "ContextModule", "Dilation8", "DilationFrontend",
           "context_module", "dilation8", "dilation_frontend", "pad_image", "EDSR", "edsr",
           "edsr_baseline", "FCN", "fcn8s", "fcn16s", "fcn32s", "SegNet", "segnet", "UNet", "unet", "DeepLabV3Plus", "deeplabv3plus", "DnCNN", "dncnn", "SeeInTheDark", "see_in_the_dark", "PanopticFPN", "panoptic_fpn"]
