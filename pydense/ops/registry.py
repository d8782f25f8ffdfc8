"""The op registry: one :class:`OpSpec` per op, the single table that names every piece of an op.

An op is one vertical slice, found by its ``key`` everywhere::

    pydense.functional.<public>        the public function (docstring, examples)
    pydense.ops.<module>.<public>      validates the arguments, resolves the backend, calls the op
    pydense.ops.<module>.<symbol>_op   the torch.library custom op pydense::<symbol>, with its fake
                                       kernel and autograd (backward ops too: <symbol>_backward_op)
    pydense.kernels.<kernels>          the Triton kernels (_<key>_<role>_kernel) and their CONFIGS
    torch.ops.pydense._<...>           the compiled C++ kernels (csrc/cpu, csrc/cuda, csrc/common)
    pydense.reference.<oracle>         the float64 oracle the tests and benchmarks compare with
    benchmarks/bench_<bench>.py        the benchmark (its OP is the key, or another op's: MEASURED_AS)
    pydense._tuned.AUTO_BACKEND[key]   what backend="auto" picks per device type

:func:`pydense._backend.resolve` reads this table: an op key that is not here is an error.
CONTRIBUTING.md ("Adding an op") walks through it; tests/test_registry.py checks every entry
against the tree (each name exists, the custom ops are registered, the bench module's OP, the
AOT configs, the ``_tuned`` entry).

This module imports nothing from pydense, so any module may read it.
"""
from dataclasses import dataclass
from typing import Tuple

@dataclass(frozen=True)
class OpSpec:
    key: str                    # _tuned key, benchmark OP, results CSV name
    public: Tuple[str, ...]     # pydense.functional names it backs (error messages name these)
    module: str                 # pydense.ops.<module>
    custom_ops: Tuple[str, ...]  # pydense::<symbol> torch.library ops (forward first)
    compiled: Tuple[str, ...]   # torch.ops.pydense.<name> of the extension (CPU and CUDA kernels)
    kernels: str                # pydense.kernels.<kernels>: Triton kernels, launchers, CONFIGS
    oracle: str                 # pydense.reference.<oracle>
    bench: str                  # benchmarks/bench_<bench>.py
    torch: str                  # what backend="torch" runs (documentation)
    aten: bool                  # the public function calls the stock function itself when "auto"
                                # resolves to "aten" (pydense._tuned may pick "aten" only then)


def _spec(key, public, module, custom_ops, compiled, kernels, oracle=None, bench=None, torch="",
          aten=False):
    return OpSpec(key, tuple(public), module, tuple(custom_ops), tuple(compiled), kernels,
                  oracle or key, bench or key, torch, aten)


_CONV = ("_conv2d_fwd", "_conv2d_dgrad", "_conv2d_wgrad")
_CONV_OPS = ("conv2d", "conv2d_input_grad", "conv2d_weight_grad")
_TWO_TAP = ("_upsample_bilinear2d_fwd", "_upsample_bilinear2d_bwd")

OPS = {s.key: s for s in (
    _spec("conv2d", ["conv2d"], "conv", _CONV_OPS, _CONV, "conv",
          torch="torch.nn.functional.conv2d (cuDNN / oneDNN)", aten=True),
    _spec("conv2d_fused", ["conv2d_fused"], "conv", _CONV_OPS, _CONV, "conv", oracle="conv2d",
          torch="conv2d, then relu / scale / add in eager", aten=True),
    _spec("conv_transpose2d", ["conv_transpose2d"], "conv", ("conv_transpose2d",) + _CONV_OPS,
          _CONV, "conv", torch="torch.nn.functional.conv_transpose2d", aten=True),
    _spec("conv2d_pixel_shuffle", ["conv2d_pixel_shuffle"], "conv", _CONV_OPS + ("pixel_unshuffle",),
          _CONV + ("_pixel_shuffle",), "conv", torch="conv2d, then pixel_shuffle", aten=True),
    _spec("max_pool2d", ["max_pool2d_with_indices"], "max_pool",
          ("max_pool2d_with_indices", "max_pool2d_backward"), ("_max_pool2d_fwd", "_max_pool2d_bwd"),
          "max_pool", oracle="max_pool2d_with_indices",
          torch="torch.nn.functional.max_pool2d(return_indices=True)", aten=True),
    _spec("max_unpool2d", ["max_unpool2d"], "max_unpool", ("max_unpool2d", "max_unpool2d_backward"),
          ("_max_unpool2d_fwd", "_max_unpool2d_bwd"), "max_unpool",
          torch="torch.nn.functional.max_unpool2d", aten=True),
    _spec("pixel_shuffle", ["pixel_shuffle"], "pixel_shuffle", ("pixel_shuffle", "pixel_unshuffle"),
          ("_pixel_shuffle",), "pixel_shuffle", torch="torch.nn.functional.pixel_shuffle", aten=True),
    _spec("pixel_unshuffle", ["pixel_unshuffle"], "pixel_shuffle", ("pixel_unshuffle", "pixel_shuffle"),
          ("_pixel_shuffle",), "pixel_shuffle", bench="pixel_shuffle",
          torch="torch.nn.functional.pixel_unshuffle", aten=True),
    _spec("upsample_bilinear2d", ["interpolate"], "upsample_bilinear",
          ("upsample_bilinear2d", "upsample_bilinear2d_backward"), _TWO_TAP, "upsample_bilinear",
          torch="torch.nn.functional.interpolate(mode='bilinear')", aten=True),
    _spec("bilinear_deconv2d", ["bilinear_deconv2d"], "bilinear_deconv",
          ("bilinear_deconv2d", "bilinear_deconv2d_backward"), _TWO_TAP, "upsample_bilinear",
          torch="torch.nn.functional.conv_transpose2d with the bilinear weight, then a crop",
          aten=True),
    _spec("upsample_concat", ["upsample_concat"], "upsample_concat",
          ("upsample_concat", "upsample_concat_backward"), _TWO_TAP, "upsample_bilinear",
          torch="interpolate, then torch.cat", aten=True),
    _spec("fcn_skip", ["fcn_skip"], "fcn_skip", ("fcn_skip", "fcn_skip_skip_grad"),
          ("_fcn_skip_fwd", "_fcn_skip_bwd"), "fcn_skip",
          torch="bilinear conv_transpose2d, crop, 1x1 conv2d, add", aten=True),
    _spec("confusion_matrix", ["confusion_matrix"], "confusion_matrix", ("confusion_matrix",),
          ("_confusion_matrix",), "confusion_matrix", torch="torch.bincount"),
    _spec("panoptic_pair_counts", ["panoptic_pair_counts"], "panoptic_pairs",
          ("panoptic_pair_counts",), ("_panoptic_pair_counts",), "panoptic_pairs",
          torch="torch.unique / torch.bincount"),
    _spec("instance_coverage", ["instance_coverage"], "instance_coverage", ("instance_coverage",),
          ("_instance_coverage",), "instance_coverage", bench="panoptic_fuse",
          torch="boolean mask arithmetic"),
)}


def spec(key):
    """The :class:`OpSpec` of ``key``; ValueError for an op that is not registered."""
    try:
        return OPS[key]
    except (KeyError, TypeError):
        raise ValueError(f"unknown pydense op {key!r}: registered ops are {sorted(OPS)} "
                         f"(pydense/ops/registry.py)") from None
