"""Module twins of pydense.functional, drop-in subclasses of the torch.nn modules."""
from .modules import MaxUnpool2d, PixelShuffle, PixelUnshuffle, Upsample

__all__ = ["MaxUnpool2d", "PixelShuffle", "PixelUnshuffle", "Upsample"]
