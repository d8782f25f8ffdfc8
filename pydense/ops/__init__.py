"""torch.library registrations of pydense's ops, one module per op.

The naming scheme of an op (key ``foo2d``): ``pydense.functional.foo2d`` (public),
``pydense.ops.<module>.foo2d`` (validate, resolve the backend, call), ``<symbol>_op`` (the
``pydense::<symbol>`` custom ops), ``pydense.kernels.<module>`` (``_foo2d_<role>_kernel``,
``CONFIGS``), ``torch.ops.pydense._foo2d_<role>`` (compiled), ``pydense.reference.foo2d``
(oracle), ``benchmarks/bench_foo2d.py``. ``registry.OPS`` lists every op's names; CONTRIBUTING.md
("Adding an op") walks through them.
"""
from . import (bilinear_deconv, confusion_matrix, fcn_skip, instance_coverage, max_pool,  # noqa: F401
               max_unpool, panoptic_pairs, pixel_shuffle, upsample_bilinear, upsample_concat)
