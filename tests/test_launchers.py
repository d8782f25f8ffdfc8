"""The Triton host launchers run their kernels on the tensors' GPU, not the current one."""
import importlib
import inspect
import pkgutil
import re

import pytest
import torch

from pydense.kernels import _common

from helpers import requires_cuda

LAUNCH = re.compile(r"\w+\[[^\]]*\]\(")  # kernel[grid](...)
MODULE_CALL = re.compile(r"\b(\w+)\.(\w+)\(")  # module.function(...)


def launches(fn, depth=0):
    """Whether ``fn`` launches a kernel: directly, through a helper named _launch*, or through a
    function of a pydense.kernels module it calls as ``module.function(...)`` (the launchers of
    kernels/conv/__init__.py call gemm.py's and depthwise.py's)."""
    fn = inspect.unwrap(fn)
    src = inspect.getsource(fn)
    if LAUNCH.search(src) or "_launch" in src:
        return True
    for mod, name in MODULE_CALL.findall(src) if depth < 3 else ():
        mod = fn.__globals__.get(mod)
        callee = getattr(mod, name, None) if inspect.ismodule(mod) else None
        if (mod is not None and mod.__name__.startswith("pydense.kernels.")
                and inspect.isfunction(callee) and launches(callee, depth + 1)):
            return True
    return False


def launchers():
    """Every public function of pydense.kernels.* (a module, or a package's namespace) that
    launches a kernel."""
    found = []
    package = importlib.import_module("pydense.kernels")
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"pydense.kernels.{info.name}")
        for name, fn in vars(mod).items():
            if name.startswith("_") or not inspect.isfunction(fn) or fn.__module__ != mod.__name__:
                continue
            if launches(fn):
                found.append(pytest.param(fn, id=f"{info.name}.{name}"))
    return found


def test_every_launcher_is_found():
    ids = {p.id for p in launchers()}
    assert {"conv.forward", "conv.input_grad", "conv.weight_grad", "max_unpool.forward",
            "upsample_bilinear.backward", "panoptic_pairs.forward"} <= ids
    assert len(ids) >= 15


@pytest.mark.parametrize("fn", launchers())
def test_launcher_is_device_guarded(fn):
    assert getattr(fn, "device_guarded", False), f"{fn.__module__}.{fn.__name__} lacks @launcher"


class _RecordingGuard:
    entered = []

    def __init__(self, device):
        self.device = device

    def __enter__(self):
        _RecordingGuard.entered.append(self.device)

    def __exit__(self, *exc):
        return False


def test_guard_enters_the_tensors_device(monkeypatch):
    """A launch on cuda:1 tensors runs under torch.cuda.device(cuda:1) (checked with fake CUDA
    tensors and a recording guard: no GPU needed); CPU tensors run with no guard."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    monkeypatch.setattr(torch.cuda, "device", _RecordingGuard)
    _RecordingGuard.entered = []
    seen = []
    wrapped = _common.launcher(lambda *args, **kwargs: seen.append(args) or "done")
    assert wrapped(torch.zeros(2), 3) == "done" and _RecordingGuard.entered == []
    with FakeTensorMode():
        a = torch.empty(4, device="cuda:1")
        b = torch.empty(2, device="cuda:1")
    assert wrapped(7, (a, b), out=b) == "done"
    assert wrapped(1, out=b) == "done"  # found among keyword arguments too
    assert _RecordingGuard.entered == [torch.device("cuda:1")] * 2
    assert len(seen) == 3


@requires_cuda
@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_triton_op_on_second_gpu_while_first_is_current():
    import pydense

    x = torch.randn(2, 8, 16, 16, device="cuda:1")
    y, idx = torch.nn.functional.max_pool2d(x, 2, 2, return_indices=True)
    with torch.cuda.device(0):
        out = pydense.functional.max_unpool2d(y, idx, 2, backend="triton")
        up = pydense.functional.interpolate(x, scale_factor=2, mode="bilinear", backend="triton")
    torch.cuda.synchronize(1)
    assert out.device == x.device
    torch.testing.assert_close(out, torch.nn.functional.max_unpool2d(y, idx, 2))
    torch.testing.assert_close(up, torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear"))
