"""Deprecated alias of :mod:`pydense.metrics.panoptic_eval` (Panoptic Quality:
``panoptic_quality``, ``PanopticQuality``, ``PanopticFormatError``), kept so that old imports
work; importing it warns once (DeprecationWarning).

It is not a copy: importing it gives the :mod:`pydense.metrics.panoptic_eval` module object
itself, so every name, its module constants included, is the same object on both paths.
"""
import importlib
import sys

from .. import _warn_renamed_module

_target = importlib.import_module("pydense.metrics.panoptic_eval")

_warn_renamed_module("pydense.metrics.panoptic", "pydense.metrics.panoptic_eval",
                     " (the same module; its public names are also in pydense.metrics)")
sys.modules[__name__] = _target
