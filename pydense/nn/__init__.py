"""Module twins of pydense.functional, drop-in subclasses of the torch.nn modules."""
from . import init
from .modules import (BilinearDeconv2d, Conv2d, Conv2dPixelShuffle, ConvTranspose2d, FCNSkip,
                      MaxPool2d, MaxUnpool2d, PixelShuffle, PixelUnshuffle, Upsample, UpsampleConcat)

__all__ = ["BilinearDeconv2d", "Conv2d", "Conv2dPixelShuffle", "ConvTranspose2d", "FCNSkip",
           "MaxPool2d", "MaxUnpool2d", "PixelShuffle", "PixelUnshuffle", "Upsample", "UpsampleConcat", "init"]
