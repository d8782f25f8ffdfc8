"""Module twins of pydense.functional, drop-in subclasses of the torch.nn modules.

Every module takes a keyword-only ``backend`` with the ops' values (``pydense._backend.BACKENDS``:
"auto", "triton", "cuda", "cpu", "torch"), checked when the module is built: any other value is a
ValueError naming the module, the argument and the valid values."""
from . import init
from .modules import (BilinearConvTranspose2d, BilinearDeconv2d, Conv2d, Conv2dPixelShuffle,
                      ConvTranspose2d, FCNSkip, MaxPool2d, MaxUnpool2d, PixelShuffle, PixelUnshuffle,
                      Upsample, UpsampleConcat, UpsamplingBilinear2d)

__all__ = ["BilinearConvTranspose2d", "BilinearDeconv2d", "Conv2d", "Conv2dPixelShuffle",
           "ConvTranspose2d", "FCNSkip", "MaxPool2d", "MaxUnpool2d", "PixelShuffle", "PixelUnshuffle",
           "Upsample", "UpsampleConcat", "UpsamplingBilinear2d", "init"]
