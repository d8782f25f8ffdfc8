"""Check an installed pydense: every subpackage imports, every op of the source is registered.

    python scripts/check_install.py [--expect-in DIR]

The expected ops are read from this checkout's source: the compiled ops of csrc/ops.cpp (each
must have a CPU kernel, and a CUDA kernel when the build has CUDA kernels) and the
torch.library.custom_ops of pydense/. The ``pydense::`` ops registered after import must be
exactly these. With --expect-in, pydense (and pydense.kernels) must be imported from under DIR
(an install folder, not the checkout). Ends with one call of a compiled CPU kernel.
"""
import argparse
import glob
import importlib
import os
import pkgutil
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def expected_ops(root=ROOT):
    with open(os.path.join(root, "csrc", "ops.cpp")) as f:
        compiled = set(re.findall(r'\bm\.def\(\s*"(\w+)\(', f.read()))
    custom = set()
    for path in glob.glob(os.path.join(root, "pydense", "**", "*.py"), recursive=True):
        with open(path) as f:
            custom |= set(re.findall(r'custom_op\(\s*"pydense::(\w+)"', f.read()))
    return compiled, custom


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--expect-in", help="pydense must be imported from under this folder")
    args = parser.parse_args()

    import torch
    import pydense

    errors = []
    if args.expect_in:
        where = os.path.realpath(args.expect_in) + os.sep
        for mod in ("pydense", "pydense.kernels"):
            path = os.path.realpath(importlib.import_module(mod).__file__)
            if not path.startswith(where):
                errors.append(f"{mod} imported from {path}, not from {args.expect_in}")
    kernels = importlib.import_module("pydense.kernels")  # a checkout's kernels/, mapped at import

    modules = ["pydense", "pydense.kernels"] + [
        m.name for path, prefix in ((pydense.__path__, "pydense."),
                                    (kernels.__path__, "pydense.kernels."))
        for m in pkgutil.walk_packages(path, prefix) if m.name not in ("pydense._C", "pydense.kernels")]
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as e:  # noqa: BLE001 - report every failing module
            errors.append(f"import {name}: {type(e).__name__}: {e}")

    info = pydense.build_info()
    if not pydense.extension_available():
        errors.append("the compiled extension did not load")
    elif not info.get("torch"):
        errors.append("no build info beside the extension (pydense/_build_info.py, from setup.py)")
    compiled, custom = expected_ops()
    registered = {n.split("::", 1)[1] for n in torch._C._dispatch_get_all_op_names()
                  if n.startswith("pydense::")}
    if registered != compiled | custom:
        errors.append(f"registered pydense ops differ from the source: missing "
                      f"{sorted((compiled | custom) - registered)}, unexpected "
                      f"{sorted(registered - compiled - custom)}")
    keys = ["CPU"] + (["CUDA"] if info.get("cuda") else [])
    for name in sorted(compiled):
        for key in keys:
            if not torch._C._dispatch_has_kernel_for_dispatch_key(f"pydense::{name}", key):
                errors.append(f"pydense::{name} has no {key} kernel")

    if pydense.extension_available():
        x = torch.arange(2 * 8 * 3 * 3, dtype=torch.float32).reshape(2, 8, 3, 3)
        y = pydense.functional.pixel_shuffle(x, 2, backend="cpu")
        if not torch.equal(y, torch.nn.functional.pixel_shuffle(x, 2)):
            errors.append("pixel_shuffle(backend='cpu') differs from torch's")

    print(f"python {sys.version.split()[0]}, torch {torch.__version__}; pydense from "
          f"{os.path.dirname(pydense.__file__)}; built against torch {info.get('torch')}, "
          f"CUDA kernels: {info.get('cuda')} {info.get('cuda_archs') or ''}".rstrip())
    print(f"{len(modules)} modules imported; {len(registered)} pydense ops registered "
          f"({len(compiled)} compiled with {'+'.join(keys)} kernels, {len(custom)} custom ops)")
    for e in errors:
        print("ERROR:", e)
    print("check_install:", "FAILED" if errors else "ok")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
