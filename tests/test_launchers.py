"""The Triton host launchers run their kernels on the tensors' GPU, not the current one; every
Triton and CUDA kernel is named after its op."""
import ast
import glob
import importlib
import inspect
import os
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


# ---------------------------------------------------------------------------------------------
# Kernel names: a profile (torch.profiler, nsys, compute-sanitizer) names the op of every kernel.

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The op (its key in pydense/ops/registry.py) whose name every kernel of a Triton module
# (kernels/<module>.py or the package kernels/<module>/) and of a CUDA source (csrc/cuda/<file>.cu)
# starts with: _<op>_<role>_kernel (Triton), <op>_<role>_kernel (CUDA), the role optional.
KERNEL_OPS = {"confusion_matrix": "confusion_matrix", "conv": "conv2d", "fcn_skip": "fcn_skip",
              "instance_coverage": "instance_coverage", "max_pool": "max_pool2d",
              "max_unpool": "max_unpool2d", "panoptic_pairs": "panoptic_pair_counts",
              "pixel_shuffle": "pixel_shuffle", "upsample_bilinear": "upsample_bilinear2d"}
CUDA_OPS = {**KERNEL_OPS, "conv_tensorcore": "conv2d"}
ROLE = r"(_[a-z0-9]+)*_kernel"  # e.g. _fwd, _dgrad, _wgrad_reduce, _scatter_init, or none


def _is_triton_jit(decorator):
    d = decorator.func if isinstance(decorator, ast.Call) else decorator  # @triton.jit(...) too
    return (isinstance(d, ast.Attribute) and d.attr == "jit" and isinstance(d.value, ast.Name)
            and d.value.id == "triton")


def triton_jit_functions():
    """{module: [(file, name), ...]} of every @triton.jit function under kernels/, read from the
    source (module: the top-level module or package of kernels/ the file belongs to)."""
    found = {}
    base = os.path.join(ROOT, "kernels")
    for path in sorted(glob.glob(os.path.join(base, "**", "*.py"), recursive=True)):
        rel = os.path.relpath(path, base)
        module = rel.split(os.sep)[0].removesuffix(".py")
        with open(path) as f:
            tree = ast.parse(f.read())
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and any(map(_is_triton_jit, node.decorator_list)):
                found.setdefault(module, []).append((rel, node.name))
    return found


def triton_kernels(module):
    """The kernels of a kernels/ module: the names its CONFIGS (the AOT table) compiles."""
    return {row[0] for row in importlib.import_module(f"pydense.kernels.{module}").CONFIGS}


def test_triton_kernels_are_named_after_their_op():
    """Every Triton kernel is ``_<op>_<role>_kernel`` for its module's op, the names are unique
    across kernels/, every kernel is in its module's AOT table (CONFIGS) and every @triton.jit
    function of the table is one (device helpers never end in _kernel), and an autotuned
    kernel's wrapper is ``<kernel>_tuned``."""
    from triton.runtime.autotuner import Autotuner

    jit = triton_jit_functions()
    assert set(jit) - {"_common"} == set(KERNEL_OPS)
    seen, count = {}, 0
    for module, functions in sorted(jit.items()):
        kernels = triton_kernels(module) if module in KERNEL_OPS else set()
        names = {name for _, name in functions}
        assert kernels <= names, f"kernels/{module}: CONFIGS names {kernels - names}"
        for path, name in functions:
            assert name not in seen, f"{name} in kernels/{path} and kernels/{seen[name]}"
            seen[name] = path
            if name in kernels:
                op = KERNEL_OPS[module]
                assert re.fullmatch(rf"_{op}{ROLE}", name), f"kernels/{path}: {name} is not _{op}_..."
                count += 1
            else:
                assert not name.endswith("_kernel"), f"kernels/{path}: {name} is not in CONFIGS"
        if module in KERNEL_OPS:
            package = importlib.import_module(f"pydense.kernels.{module}")
            for attr, obj in vars(package).items():
                if isinstance(obj, Autotuner):
                    assert attr == obj.fn.__name__ + "_tuned" and obj.fn.__name__ in kernels, attr
    assert count >= 20


def cuda_global_functions(path):
    """The names of the __global__ functions defined in a C++/CUDA file (comments stripped)."""
    with open(path) as f:
        text = re.sub(r"//[^\n]*|/\*.*?\*/", "", f.read(), flags=re.S)
    return re.findall(r"__global__\s+void\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?(\w+)\s*\(", text)


def test_cuda_kernels_are_named_after_their_op():
    """Every __global__ function of csrc/cuda/<file>.cu is ``<op>_<role>_kernel`` for the file's
    op, the names are unique across the files, and no header defines a kernel (a kernel shared by
    several ops would show up under one name for all of them)."""
    seen = {}
    for path in sorted(glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cu"))):
        stem = os.path.basename(path)[:-3]
        op = CUDA_OPS[stem]
        names = cuda_global_functions(path)
        assert names, path
        for name in names:
            assert re.fullmatch(rf"{op}{ROLE}", name), f"csrc/cuda/{stem}.cu: {name} is not {op}_..."
            assert name not in seen, f"{name} in csrc/cuda/{stem}.cu and {seen[name]}"
            seen[name] = path
    for ext in ("h", "cuh", "cpp"):
        for path in glob.glob(os.path.join(ROOT, "csrc", "**", f"*.{ext}"), recursive=True):
            assert not cuda_global_functions(path), f"{path} defines a kernel"
    assert len(seen) >= 20


def test_kernel_ops_are_registered():
    """The op of each kernel module is a registered op key whose Triton module it is."""
    from pydense.ops import registry

    for module, op in KERNEL_OPS.items():
        assert registry.OPS[op].kernels == module, (module, op)
    assert set(KERNEL_OPS) == {spec.kernels for spec in registry.OPS.values()}


def launch_calls():
    """(op module, Triton launcher id, compiled op, keyword names) of every
    ``launch(backend, "<kernels module>.<function>", "<compiled op>", ...)`` in pydense/ops."""
    calls = []
    for path in sorted(glob.glob(os.path.join(ROOT, "pydense", "ops", "*.py"))):
        for node in ast.walk(ast.parse(open(path).read())):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "launch"
                    and len(node.args) >= 3):
                triton_id, compiled = (ast.literal_eval(a) for a in node.args[1:3])
                calls.append((os.path.basename(path), triton_id, compiled,
                              {k.arg for k in node.keywords}))
    return calls


def test_ops_run_through_launch():
    """Every op module runs its kernels through ``_common.launch``: each Triton launcher and each
    compiled op is called there, in pairs whose arguments agree (the launcher's positional
    parameters are the compiled schema's, its keyword-only ones are passed by name), and no op
    module calls a launcher or a compiled op itself."""
    from pydense.ops import registry

    calls = launch_calls()
    assert {t for _, t, _, _ in calls} == {p.id for p in launchers()}
    assert {c for _, _, c, _ in calls} == {c for s in registry.OPS.values() for c in s.compiled}
    for module, triton_id, compiled, keywords in calls:
        mod, name = triton_id.rsplit(".", 1)
        params = inspect.signature(inspect.unwrap(
            getattr(importlib.import_module(f"pydense.kernels.{mod}"), name))).parameters.values()
        positional = [p.name for p in params if p.kind == p.POSITIONAL_OR_KEYWORD]
        keyword_only = {p.name for p in params if p.kind == p.KEYWORD_ONLY}
        schema = getattr(torch.ops.pydense, compiled).default._schema
        assert len(positional) == len(schema.arguments), (module, triton_id, positional, str(schema))
        assert keywords == keyword_only, (module, triton_id)
    for path in glob.glob(os.path.join(ROOT, "pydense", "ops", "*.py")):
        src = open(path).read()
        assert not re.search(r"torch\.ops\.pydense\._\w+(\.default)?\(", src), path
        assert "from ..kernels" not in src and "pydense.kernels import" not in src, path
