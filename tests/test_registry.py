"""The op registry (pydense/ops/registry.py) against the tree: every op has its entry point, its
custom ops (named ``<symbol>_op``), its compiled kernels, its Triton kernels with AOT configs, an
oracle, a benchmark and a ``_tuned`` entry; and every such piece in the tree belongs to an op."""
import glob
import importlib
import os
import re

import pytest
import torch
from torch._library.custom_ops import CustomOpDef

import pydense
from pydense import _backend, _tuned, reference
from pydense.ops import registry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPECS = list(registry.OPS.values())
IDS = [s.key for s in SPECS]


def custom_ops_of(module):
    """{symbol: python name} of the torch.library custom ops a module defines."""
    return {obj._name: name for name, obj in vars(module).items()
            if isinstance(obj, CustomOpDef) and obj._namespace == "pydense"
            and obj._init_fn.__module__ == module.__name__}


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_spec_names_exist(spec):
    module = importlib.import_module(f"pydense.ops.{spec.module}")
    for public in spec.public:
        assert callable(getattr(module, public)), f"pydense.ops.{spec.module}.{public}"
        if public in pydense.functional.__all__:
            assert callable(getattr(pydense.functional, public))
    defined = {}
    for m in {registry.OPS[k].module for k in registry.OPS}:
        defined.update(custom_ops_of(importlib.import_module(f"pydense.ops.{m}")))
    for symbol in spec.custom_ops:
        assert hasattr(torch.ops.pydense, symbol), f"pydense::{symbol} is not registered"
        assert defined.get(symbol) == f"{symbol}_op", f"pydense::{symbol}'s Python name"
    assert callable(getattr(reference, spec.oracle)), f"pydense.reference.{spec.oracle}"
    kernels = importlib.import_module(f"pydense.kernels.{spec.kernels}")
    assert kernels.CONFIGS, f"pydense.kernels.{spec.kernels}.CONFIGS is empty"
    assert set(_tuned.AUTO_BACKEND[spec.key]) == {"cuda", "cpu"}


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_spec_compiled_ops_and_bench(spec):
    schemas = open(os.path.join(ROOT, "csrc", "ops.cpp")).read()
    for name in spec.compiled:
        assert re.search(rf'"{name}\(', schemas), f"csrc/ops.cpp defines no {name}"
        if pydense.extension_available():
            assert hasattr(torch.ops.pydense, name)
    path = os.path.join(ROOT, "benchmarks", f"bench_{spec.bench}.py")
    assert os.path.isfile(path), path
    assert re.search(rf'^OP = "{spec.bench}"$', open(path).read(), re.M), f"{path}: OP"
    if spec.bench != spec.key:  # measured by another op's benchmark
        assert _tuned.MEASURED_AS[spec.key] == spec.bench


def test_every_piece_belongs_to_an_op():
    symbols = {s for spec in SPECS for s in spec.custom_ops}
    for path in glob.glob(os.path.join(ROOT, "pydense", "ops", "*.py")):
        module = importlib.import_module(f"pydense.ops.{os.path.basename(path)[:-3]}")
        assert set(custom_ops_of(module)) <= symbols, path
    compiled = set(re.findall(r'"(_\w+)\(', open(os.path.join(ROOT, "csrc", "ops.cpp")).read()))
    assert compiled == {c for spec in SPECS for c in spec.compiled}
    benches = {os.path.basename(p)[6:-3] for p in glob.glob(os.path.join(ROOT, "benchmarks", "bench_*.py"))}
    assert benches == {spec.bench for spec in SPECS}
    assert set(_tuned.AUTO_BACKEND) == set(registry.OPS)
    assert set(_tuned.MEASURED_AS) <= set(registry.OPS)
    kernel_modules = {os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "kernels", "*.py"))}
    kernel_modules |= {os.path.basename(os.path.dirname(p))
                       for p in glob.glob(os.path.join(ROOT, "kernels", "*", "__init__.py"))}
    assert kernel_modules - {"__init__", "_common"} == {spec.kernels for spec in SPECS}


def test_unknown_op_key_is_an_error():
    with pytest.raises(ValueError, match="unknown pydense op 'max_pool'"):
        _backend.resolve("auto", torch.device("cpu"), "max_pool")
    with pytest.raises(ValueError, match="backend must be one of"):
        _backend.resolve("cudnn", torch.device("cpu"), "max_pool2d")


def test_beyond_triton_rule():
    cpu = torch.device("cpu")
    limit = "num_classes <= 362, got 400"
    with pytest.raises(ValueError, match="backend='triton' supports num_classes <= 362"):
        _backend.resolve("triton", cpu, "confusion_matrix", beyond_triton=limit)
    expected = "cpu" if pydense.extension_available() else "torch"
    assert _backend.resolve("torch", cpu, "confusion_matrix", beyond_triton=limit) == "torch"
    assert _backend.resolve("cpu", cpu, "confusion_matrix", beyond_triton=limit) == expected
