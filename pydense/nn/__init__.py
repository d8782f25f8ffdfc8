"""Module twins of pydense.functional, drop-in subclasses of the torch.nn modules."""
from . import init
from .modules import (BilinearConvTranspose2d, BilinearDeconv2d, Conv2d, Conv2dPixelShuffle,
                      ConvTranspose2d, FCNSkip, MaxPool2d, MaxUnpool2d, PixelShuffle, PixelUnshuffle,
                      Upsample, UpsampleConcat, UpsamplingBilinear2d)

__all__ = ["BilinearConvTranspose2d", "BilinearDeconv2d", "Conv2d", "Conv2dPixelShuffle",
           "ConvTranspose2d", "FCNSkip", "MaxPool2d", "MaxUnpool2d", "PixelShuffle", "PixelUnshuffle",
           "Upsample", "UpsampleConcat", "UpsamplingBilinear2d", "init"]
