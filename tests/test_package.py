"""The package itself: imports without a compiled extension, reports its build, maps kernels/."""
import os
import shutil
import subprocess
import sys

import pytest
import torch

import pydense

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_import_without_extension_keeps_triton_and_torch_paths(tmp_path):
    """A checkout with no pydense/_C*.so: import works, 'cpu'/'cuda' say what is missing."""
    shutil.copytree(os.path.join(ROOT, "pydense"), tmp_path / "pydense",
                    ignore=shutil.ignore_patterns("_C*.so", "_build_info.py", "__pycache__"))
    shutil.copytree(os.path.join(ROOT, "kernels"), tmp_path / "kernels",
                    ignore=shutil.ignore_patterns("__pycache__"))
    code = """
import torch, torch.nn.functional as F, pydense
assert not pydense.extension_available() and pydense.build_info() == {}
y, i = F.max_pool2d(torch.randn(1, 2, 6, 6), 2, return_indices=True)
ref = F.max_unpool2d(y, i, 2)
assert torch.equal(pydense.functional.max_unpool2d(y, i, 2, backend='torch'), ref)
assert torch.equal(pydense.functional.max_unpool2d(y, i, 2, backend='auto'), ref)
assert torch.equal(pydense.functional.max_unpool2d(y, i, 2, backend='triton'), ref)
try:
    pydense.functional.max_unpool2d(y, i, 2, backend='cpu')
except pydense.BackendUnavailableError as e:
    print('ERR', e)
"""
    env = dict(os.environ, PYTHONPATH=str(tmp_path), TRITON_INTERPRET="1")
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "ERR pydense's compiled extension is not built" in res.stdout


def test_torch_version_mismatch_names_both_versions():
    from pydense._backend import TorchVersionMismatchError, torch_version_mismatch

    err = torch_version_mismatch("2.15.0+cu132", "2.14.1+cu130", "pydense/_C.so")
    assert isinstance(err, TorchVersionMismatchError) and isinstance(err, ImportError)
    msg = str(err)
    assert "built against torch 2.15.0+cu132" in msg and "torch 2.14.1+cu130 is running" in msg
    assert "pip install --no-build-isolation" in msg and "PYDENSE_SKIP_TORCH_VERSION_CHECK=1" in msg
    assert torch_version_mismatch("2.11.0", "3.11.0") is not None
    for built in ("2.14.0", "2.14.1+cu130", "2.14.2.dev20270101+cpu", None, ""):
        assert torch_version_mismatch(built, "2.14.1+cu130") is None, built


def test_import_refuses_extension_built_against_other_torch(tmp_path):
    """A build info naming another torch major.minor: `import pydense` raises, naming both
    versions; PYDENSE_SKIP_TORCH_VERSION_CHECK=1 loads the extension anyway."""
    if not pydense.extension_available():
        pytest.skip("needs the compiled extension")
    shutil.copytree(os.path.join(ROOT, "pydense"), tmp_path / "pydense",
                    ignore=shutil.ignore_patterns("_C*.so", "_build_info.py", "__pycache__"))
    shutil.copytree(os.path.join(ROOT, "kernels"), tmp_path / "kernels",
                    ignore=shutil.ignore_patterns("__pycache__"))
    lib = pydense._backend._EXTENSION_PATH
    os.symlink(lib, tmp_path / "pydense" / os.path.basename(lib))
    info = dict(pydense.build_info(), torch="1.13.1+cu117")
    (tmp_path / "pydense" / "_build_info.py").write_text(f"BUILD_INFO = {info!r}\n")
    code = "import pydense; print('loaded', pydense.extension_available())"
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    env.pop("PYDENSE_SKIP_TORCH_VERSION_CHECK", None)
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode != 0 and "loaded" not in res.stdout
    assert "TorchVersionMismatchError" in res.stderr, res.stderr[-3000:]
    assert f"built against torch 1.13.1+cu117, but torch {torch.__version__} is running" in res.stderr
    env["PYDENSE_SKIP_TORCH_VERSION_CHECK"] = "1"
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "loaded True" in res.stdout


def test_build_info_and_registered_ops():
    info = pydense.build_info()
    assert pydense.extension_available()
    assert info["torch"].split("+")[0] == torch.__version__.split("+")[0]
    if info["cuda"]:
        assert "csrc/cuda/max_unpool.cu" in info["sources"] and info["cuda_archs"]
    for name in ("_max_unpool2d_fwd", "_max_unpool2d_bwd", "max_unpool2d", "max_unpool2d_backward"):
        assert hasattr(torch.ops.pydense, name)


def test_kernels_live_in_pydense_namespace():
    from pydense.kernels import max_unpool

    assert os.path.realpath(max_unpool.__file__) == os.path.join(ROOT, "kernels", "max_unpool.py")
    assert max_unpool.CONFIGS


def test_triton_index_width_threshold():
    """32-bit index math only while every tensor spans < 2^30 elements (headroom for the last block)."""
    from pydense.kernels._common import _needs_int64

    small = torch.empty((2**15, 2**15 - 1), device="meta")
    big = torch.empty((2**15, 2**15), device="meta")
    strided = torch.empty((2, 2), device="meta").as_strided((2, 2), (2**30, 1))
    assert not _needs_int64(small)
    assert _needs_int64(big) and _needs_int64(small, big) and _needs_int64(strided)


def test_setup_lists_every_subpackage():
    """Every folder of pydense/ with an __init__.py is a package setup.py installs (a wheel without
    pydense.models or pydense.metrics would import-fail)."""
    import ast

    with open(os.path.join(ROOT, "setup.py")) as f:
        tree = ast.parse(f.read())
    listed = next(kw.value for node in ast.walk(tree) if isinstance(node, ast.Call)
                  for kw in node.keywords if kw.arg == "packages")
    listed = set(ast.literal_eval(listed))
    found = {"pydense"} | {
        "pydense." + d for d in os.listdir(os.path.join(ROOT, "pydense"))
        if os.path.isfile(os.path.join(ROOT, "pydense", d, "__init__.py"))}
    assert found <= listed, f"setup.py packages misses {sorted(found - listed)}"
    assert "pydense.kernels" in listed


def _module_level_imports(path):
    """Top-level names of the absolute imports a module runs when it is imported (statements
    outside function bodies: module level, class bodies, if/try blocks)."""
    import ast

    with open(path) as f:
        tree = ast.parse(f.read(), path)
    names, todo = set(), list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Import):
            names |= {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.partition(".")[0])
        todo.extend(ast.iter_child_nodes(node))
    return names


def test_core_dependencies_cover_package_imports():
    """What `import pydense` imports is the standard library, pydense and the core dependencies
    of pyproject.toml (setup.py declares none of its own, so there is one list): every module
    the import loads is scanned for the imports it runs at import. numpy is one (three op
    modules build index tables with it; torch does not require it), so it is a core dependency,
    not an extra. The import loads none of the deprecated module aliases."""
    import ast
    import json
    import re

    tomllib = pytest.importorskip("tomllib")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    core = {re.match(r"[A-Za-z0-9_.-]+", r).group().lower().replace("-", "_")
            for r in project["dependencies"]}
    assert {"torch", "numpy", "triton"} <= core
    extras = {re.match(r"[A-Za-z0-9_.-]+", r).group().lower()
              for reqs in project.get("optional-dependencies", {}).values() for r in reqs}
    assert not core & extras, f"declared both as core and as extra: {sorted(core & extras)}"
    with open(os.path.join(ROOT, "setup.py")) as f:
        setup_kwargs = {kw.arg for node in ast.walk(ast.parse(f.read()))
                        if isinstance(node, ast.Call) for kw in node.keywords}
    assert not {"install_requires", "extras_require"} & setup_kwargs

    code = ("import json, sys, pydense; print(json.dumps({n: getattr(m, '__file__', None) "
            "for n, m in list(sys.modules.items()) if n.split('.')[0] == 'pydense'}))")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env=dict(os.environ, PYTHONPATH=ROOT))
    assert res.returncode == 0, res.stderr[-3000:]
    loaded = json.loads(res.stdout.strip().splitlines()[-1])
    assert "pydense.ops" in loaded and "pydense.models" in loaded
    assert "pydense.panoptic" not in loaded and "pydense.metrics.panoptic" not in loaded
    needed = {}
    for name, path in loaded.items():
        if path and path.endswith(".py"):
            for top in _module_level_imports(path):
                needed.setdefault(top, set()).add(name)
    third_party = {top: mods for top, mods in needed.items()
                   if top not in sys.stdlib_module_names and top not in ("pydense", "__future__")}
    missing = {top: sorted(mods) for top, mods in third_party.items() if top not in core}
    assert not missing, f"imported at `import pydense` but not a core dependency: {missing}"


# One of each pydense.nn module, built with the given keywords.
NN_MODULES = {
    "BilinearConvTranspose2d": lambda **kw: pydense.nn.BilinearConvTranspose2d(4, 4, 4, stride=2,
                                                                             bias=False, **kw),
    "BilinearDeconv2d": lambda **kw: pydense.nn.BilinearDeconv2d(2, **kw),
    "Conv2d": lambda **kw: pydense.nn.Conv2d(2, 2, 3, **kw),
    "Conv2dPixelShuffle": lambda **kw: pydense.nn.Conv2dPixelShuffle(2, 2, 3, 2, **kw),
    "ConvTranspose2d": lambda **kw: pydense.nn.ConvTranspose2d(2, 2, 2, **kw),
    "FCNSkip": lambda **kw: pydense.nn.FCNSkip(4, 3, 5, **kw),
    "MaxPool2d": lambda **kw: pydense.nn.MaxPool2d(2, **kw),
    "MaxUnpool2d": lambda **kw: pydense.nn.MaxUnpool2d(2, **kw),
    "PixelShuffle": lambda **kw: pydense.nn.PixelShuffle(2, **kw),
    "PixelUnshuffle": lambda **kw: pydense.nn.PixelUnshuffle(2, **kw),
    "Upsample": lambda **kw: pydense.nn.Upsample(scale_factor=2, mode="bilinear", **kw),
    "UpsampleConcat": lambda **kw: pydense.nn.UpsampleConcat(**kw),
    "UpsamplingBilinear2d": lambda **kw: pydense.nn.UpsamplingBilinear2d(scale_factor=2, **kw),
}


@pytest.mark.parametrize("name", sorted(NN_MODULES))
def test_nn_modules_take_one_backend_word(name):
    """Every pydense.nn module takes ``backend`` keyword-only with the ops' values
    (pydense._backend.BACKENDS), default "auto"; any other value is a ValueError naming the
    module, the argument and the valid values, when the module is built."""
    import inspect

    from pydense._backend import BACKENDS

    assert set(NN_MODULES) == set(pydense.nn.__all__) - {"init"}
    cls = getattr(pydense.nn, name)
    param = inspect.signature(cls.__init__).parameters["backend"]
    assert param.kind is inspect.Parameter.KEYWORD_ONLY and param.default == "auto"
    assert NN_MODULES[name]().backend == "auto"
    for backend in BACKENDS:
        assert NN_MODULES[name](backend=backend).backend == backend
    for bad in ("pydense", "cudnn", None):
        with pytest.raises(ValueError) as err:
            NN_MODULES[name](backend=bad)
        assert str(err.value) == (f"pydense.nn.{name}: backend must be one of {BACKENDS}, "
                                  f"got {bad!r}")


def test_conv2d_pixel_shuffle_backend_is_keyword_only():
    with pytest.raises(TypeError):
        pydense.nn.Conv2dPixelShuffle(2, 2, 3, 2, True, "cpu")
    seq = torch.nn.Sequential(torch.nn.Conv2d(2, 8, 3, padding=1), torch.nn.PixelShuffle(2))
    assert pydense.nn.Conv2dPixelShuffle.from_sequential(seq, backend="cpu").backend == "cpu"
