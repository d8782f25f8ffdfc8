"""Deprecated alias of :mod:`pydense.panoptic_fusion` (panoptic fusion: ``fuse``, ``id2rgb``,
``rgb2id``), kept so that old imports work; importing it warns once (DeprecationWarning).

It is not a copy: importing it gives the :mod:`pydense.panoptic_fusion` module object itself
(``pydense.panoptic is pydense.panoptic_fusion``), so every name, its module constants included,
is the same object on both paths.
"""
import sys

from . import _warn_renamed_module
from . import panoptic_fusion as _target

_warn_renamed_module("pydense.panoptic", "pydense.panoptic_fusion",
                     " (the same module: fuse, id2rgb, rgb2id)")
sys.modules[__name__] = _target
