"""pydense benchmarks: ``python -m benchmarks [--quick] [--ops OP[,OP...]] [--out DIR]``.

Every ``benchmarks/bench_<op>.py`` module is one op's benchmark; it exposes ``OP`` (the op's name),
``cases(device, quick) -> [common.Case]`` and ``problem(case, device) -> common.Problem``.
:func:`discover` finds them; ``benchmarks.common`` runs them (see README.md).
"""
import importlib
import pkgutil


def discover():
    """{op name: bench module} of every ``benchmarks/bench_*.py``, in file-name order."""
    modules = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("bench_"):
            module = importlib.import_module(f"{__name__}.{info.name}")
            modules[module.OP] = module
    return modules
