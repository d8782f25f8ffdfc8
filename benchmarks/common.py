"""Shared benchmark machinery: providers, oracle checks, timing, the bandwidth model and output.

An op's bench module (``benchmarks/bench_<op>.py``) describes *what* to run; this module runs it.
For every case it compares, side by side:

* each pydense backend that can run on the device ("triton", "cuda", "cpu"; Triton is skipped on
  CPU tensors, where only its interpreter could run it and timings would be meaningless),
* "aten": the stock eager PyTorch op,
* "compile": ``torch.compile`` of that eager code (default inductor backend, ``fullgraph=True``,
  ``dynamic=False``, dynamo reset per case so no recompile limit is hit),

in three directions:

* "fwd": the forward under ``torch.no_grad()`` (no autograd graph is recorded),
* "bwd": only the backward, from one saved forward graph (``torch.autograd.grad(...,
  retain_graph=True)`` on a precomputed output),
* "fwd+bwd": forward with autograd, then its backward.

A bench module whose op has no gradient (a metric) sets ``DIRECTIONS = ("fwd",)``; one whose
eager code cannot be compiled in one graph (data-dependent host syncs) sets ``COMPILE = False``.

Before a provider is timed in a direction, its result is compared with the op's float64 CPU
oracle (``pydense.reference``); one that does not match is reported as FAILED and not timed, one
that raises is reported as ERROR with the error text in the notes column.

Timing: on CUDA ``triton.testing.do_bench(fn, return_mode="median")``; on CPU the median over a few
``timeit`` repeats of a short loop. Bandwidth: GB/s = the case's modelled bytes (see the bench
module) / median time, and "% copy BW" relates it to the device's copy bandwidth measured at the
start of the run (``dst.copy_(src)``, counted as 2 * bytes moved).
"""
import argparse
import csv
import datetime
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import timeit
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch

import pydense
from pydense import _backend

PYDENSE_BACKENDS = ("triton", "cuda", "cpu")
# "compile-max-autotune" runs for bench modules with MAX_AUTOTUNE = True (convolutions), on CUDA,
# outside --quick (its autotuning takes minutes per case).
PROVIDERS = PYDENSE_BACKENDS + ("aten", "compile", "compile-max-autotune")
DIRECTIONS = ("fwd", "bwd", "fwd+bwd")
LAYOUTS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
DTYPE_NAMES = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32",
               torch.float64: "fp64"}
COLUMNS = ("case", "dtype", "layout", "direction", "provider", "median_ms", "GB/s", "%copy_BW",
           "TFLOP/s", "%mm_peak", "speedup_vs_aten", "bytes_vs_eager", "check", "notes")
# "class": the case's shape class in pydense._tuned's tables (the bench module's shape_class(case),
# "*" without one), which python -m benchmarks.tune --cpu decides per.
CSV_COLUMNS = ("op", "device", "bytes", "class") + COLUMNS
RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What the "compile" provider compiles with: inductor, the default mode. The CPU dry run of the GPU
# check sets "aot_eager" (same tracing, no code generation: a C++ compile per graph on CPU).
COMPILE_BACKEND = "inductor"


@dataclass
class Case:
    """One benchmark configuration; ``params`` is op-specific (read by the op's ``problem``)."""
    name: str
    dtype: torch.dtype
    layout: str  # a key of LAYOUTS
    params: dict = field(default_factory=dict)


@dataclass
class Problem:
    """A case materialised on the device, with its oracle results and byte counts.

    ``eager(*inputs)`` is the stock PyTorch code ("aten", and what "compile" compiles);
    ``pydense(backend)`` returns the pydense callable ``fn(*inputs)`` for that backend.
    ``grad_inputs`` are the inputs differentiated in "bwd"; ``grad_output`` the upstream gradient.
    ``ref_out``/``ref_grads`` are the float64 CPU oracle's output and input gradients.
    ``bytes`` maps "fwd" and "bwd" to modelled bytes moved ("fwd+bwd" is their sum).
    ``tolerance`` is the rtol = atol of the oracle check: 0 (exact) for ops that only move data.
    """
    inputs: Tuple[torch.Tensor, ...]
    grad_inputs: Tuple[torch.Tensor, ...]
    grad_output: torch.Tensor
    eager: Callable
    pydense: Callable[[str], Callable]
    ref_out: torch.Tensor
    ref_grads: Tuple[torch.Tensor, ...]
    bytes: Dict[str, int]
    tolerance: float = 0.0
    flops: Optional[Dict[str, int]] = None  # compute-bound ops: "fwd"/"bwd" -> flops (TFLOP/s, %mm_peak)
    # Fused ops: "fwd"/"bwd" -> modelled bytes of the eager chain the op replaces (every
    # intermediate written and read back); "bytes_vs_eager" = bytes / eager_bytes (< 1: fewer bytes).
    eager_bytes: Optional[Dict[str, int]] = None


def dtype_name(dtype):
    return DTYPE_NAMES.get(dtype, str(dtype).replace("torch.", ""))


def to_layout(t, layout):
    return t.contiguous(memory_format=LAYOUTS[layout])


def device_name(device):
    """A path-safe device name: the CUDA device name, or ``cpu-<processor>``."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = "cpu-" + (platform.processor() or platform.machine() or "cpu")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")


# ---------------------------------------------------------------------------------------------
# Timing


# CPU timing: the median of CPU_REPEATS timeit repeats of a loop lasting ~CPU_BUDGET_S in all
# (the dry run of the GPU check sets one call: it proves the code path, its CPU times mean nothing).
CPU_BUDGET_S, CPU_REPEATS = 0.15, 5


def bench_ms(fn, device, cpu_budget_s=None, cpu_repeats=None):
    """Median milliseconds of one ``fn()`` call (``fn`` is already warm)."""
    if device.type == "cuda":
        import triton.testing

        return float(triton.testing.do_bench(fn, return_mode="median"))
    cpu_budget_s = CPU_BUDGET_S if cpu_budget_s is None else cpu_budget_s
    cpu_repeats = CPU_REPEATS if cpu_repeats is None else cpu_repeats
    start = timeit.default_timer()
    fn()
    once = max(timeit.default_timer() - start, 1e-7)
    number = max(1, int(cpu_budget_s / cpu_repeats / once))
    times = timeit.repeat(fn, number=number, repeat=cpu_repeats)
    return statistics.median(times) / number * 1e3


def copy_bandwidth(device):
    """The device's copy bandwidth in GB/s: ``dst.copy_(src)`` of 1 GiB (GPU) / 256 MiB (CPU)."""
    nbytes = (1 << 30) if device.type == "cuda" else (256 << 20)
    src = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    ms = bench_ms(lambda: dst.copy_(src), device, cpu_budget_s=0.5)
    return 2 * nbytes / (ms * 1e-3) / 1e9


_MM_PEAK = {}


def matmul_peak(device, dtype):
    """The measured dense-matmul rate (TFLOP/s) of the device in ``dtype``: torch.matmul of
    8192^3 (GPU; tensor cores for fp16/bf16, TF32 as the cuBLAS flags allow for fp32) or 1024^3
    (CPU). The roofline compute-bound ops are compared with ("%mm_peak")."""
    key = (str(device), dtype)
    if key not in _MM_PEAK:
        n = 8192 if device.type == "cuda" else 1024
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        ms = bench_ms(lambda: torch.matmul(a, b), device, cpu_budget_s=0.5)
        _MM_PEAK[key] = 2 * n ** 3 / (ms * 1e-3) / 1e12
    return _MM_PEAK[key]


# ---------------------------------------------------------------------------------------------
# Providers, checks, measurements


def providers(problem, device, op, wanted=PROVIDERS):
    """([(name, fn)], {name: why skipped}) of the providers to run for ``op`` on ``device``."""
    found, skipped = [], {}
    for backend in PYDENSE_BACKENDS:
        if backend not in wanted:
            continue
        if backend == "triton" and device.type == "cpu":
            skipped[backend] = "Triton on CPU tensors only runs in its interpreter (not timed)"
            continue
        try:
            _backend.require(backend, device, op)
        except _backend.BackendUnavailableError as e:
            skipped[backend] = str(e)
            continue
        found.append((backend, problem.pydense(backend)))
    if "aten" in wanted:
        found.append(("aten", problem.eager))
    if "compile" in wanted:
        torch._dynamo.reset()  # one fresh cache per case: no recompile limit, no stale guards
        found.append(("compile", torch.compile(problem.eager, fullgraph=True, dynamic=False,
                                               backend=COMPILE_BACKEND)))
    if "compile-max-autotune" in wanted and device.type == "cuda":
        found.append(("compile-max-autotune", torch.compile(
            problem.eager, fullgraph=True, dynamic=False, mode="max-autotune-no-cudagraphs")))
    return found, skipped


def runners(fn, problem):
    """{direction: (callable, oracle result)} for provider ``fn`` on ``problem``."""
    p = problem
    saved = []

    def fwd():
        with torch.no_grad():
            return fn(*p.inputs)

    def bwd():
        if not saved:  # the forward graph, built once (on the untimed check call)
            saved.append(fn(*p.inputs))
        return torch.autograd.grad(saved[0], p.grad_inputs, p.grad_output, retain_graph=True)

    def fwd_bwd():
        out = fn(*p.inputs)
        return (out, *torch.autograd.grad(out, p.grad_inputs, p.grad_output))

    return {"fwd": (fwd, p.ref_out), "bwd": (bwd, tuple(p.ref_grads)),
            "fwd+bwd": (fwd_bwd, (p.ref_out, *p.ref_grads))}


def _as_float64(x, device="cpu"):
    if isinstance(x, torch.Tensor):
        return x.detach().to(device=device, dtype=torch.float64)
    return tuple(_as_float64(t, device) for t in x)


def _error_text(e, limit=160):
    text = " ".join(f"{type(e).__name__}: {e}".split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def measure(run, ref, device, tolerance=0.0):
    """Check ``run()`` against the oracle ``ref`` (rtol = atol = ``tolerance``; compared on the
    oracle's device), then time it: (ms, check, notes)."""
    try:
        got = run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    except Exception as e:  # noqa: BLE001 - any provider failure is reported, not fatal
        return None, "ERROR", _error_text(e)
    try:
        first = ref if isinstance(ref, torch.Tensor) else (ref[0] if len(ref) else None)
        where = first.device if first is not None else "cpu"
        torch.testing.assert_close(_as_float64(got, where), ref, atol=tolerance, rtol=tolerance)
    except AssertionError as e:
        return None, "FAILED", _error_text(e)
    del got
    try:
        return bench_ms(run, device), "ok", ""
    except Exception as e:  # noqa: BLE001
        return None, "ERROR", _error_text(e)


def _per_direction(counts, direction):
    """A per-direction count ("fwd"/"bwd"); "fwd+bwd" is their sum."""
    return counts["fwd"] + counts["bwd"] if direction == "fwd+bwd" else counts[direction]


def _oracle_on(x, device):
    if isinstance(x, torch.Tensor):
        return x.to(device)
    return tuple(_oracle_on(t, device) for t in x)


def run_op(module, device, quick, copy_bw, wanted=PROVIDERS, log=None, cases=None, directions=None):
    """Run every case of a bench module (or only ``cases``, in ``directions`` only); return
    (rows, {provider: why skipped})."""
    rows, skipped = [], {}
    # Ops without a gradient (metrics) declare DIRECTIONS = ("fwd",).
    directions = tuple(d for d in getattr(module, "DIRECTIONS", DIRECTIONS)
                       if directions is None or d in directions)
    if quick or not getattr(module, "MAX_AUTOTUNE", False):
        wanted = tuple(w for w in wanted if w != "compile-max-autotune")
    if not getattr(module, "COMPILE", True):  # eager code that cannot compile in one graph
        wanted = tuple(w for w in wanted if not w.startswith("compile"))
    for case in (module.cases(device, quick) if cases is None else cases):
        problem = module.problem(case, device)
        if device.type == "cuda":  # compare on the GPU: big outputs, one upload of the oracle
            problem.ref_out = _oracle_on(problem.ref_out, device)
            problem.ref_grads = _oracle_on(problem.ref_grads, device)
        found, why = providers(problem, device, module.OP, wanted)
        skipped.update(why)
        case_rows = []
        for name, fn in found:
            for direction, (run, ref) in runners(fn, problem).items():
                if direction not in directions:
                    continue
                if log:
                    log(f"  {case.name} {dtype_name(case.dtype)} {case.layout} {direction} {name}")
                ms, check, notes = measure(run, ref, device, problem.tolerance)
                nbytes = _per_direction(problem.bytes, direction)
                ratio = (nbytes / _per_direction(problem.eager_bytes, direction)
                         if problem.eager_bytes else None)
                gbps = nbytes / (ms * 1e-3) / 1e9 if ms else None
                tflops = peak = None
                if problem.flops and ms:
                    flops = _per_direction(problem.flops, direction)
                    tflops = flops / (ms * 1e-3) / 1e12
                    peak = 100 * tflops / matmul_peak(device, case.dtype)
                case_rows.append({
                    "op": module.OP, "device": device_name(device), "bytes": nbytes,
                    "class": getattr(module, "shape_class", lambda case: "*")(case),
                    "case": case.name, "dtype": dtype_name(case.dtype), "layout": case.layout,
                    "direction": direction, "provider": name, "median_ms": ms, "GB/s": gbps,
                    "%copy_BW": 100 * gbps / copy_bw if gbps else None, "TFLOP/s": tflops,
                    "%mm_peak": peak, "speedup_vs_aten": None, "bytes_vs_eager": ratio,
                    "check": check, "notes": notes})
        aten = {r["direction"]: r["median_ms"] for r in case_rows if r["provider"] == "aten"}
        for r in case_rows:
            if r["median_ms"] and aten.get(r["direction"]):
                r["speedup_vs_aten"] = aten[r["direction"]] / r["median_ms"]
        # Provider-major within a direction reads best: group rows by direction.
        rows += sorted(case_rows, key=lambda r: DIRECTIONS.index(r["direction"]))
        del problem, found
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows, skipped


# ---------------------------------------------------------------------------------------------
# Output


def cell_formatter(formats):
    """A table's cell formatter ``fmt(key, value)``: ``""`` for None, ``formats[key].format(value)``
    for a column with a format, ``str(value)`` otherwise."""
    def fmt(key, value):
        if value is None:
            return ""
        spec = formats.get(key)
        return str(value) if spec is None else spec.format(value)
    return fmt


_fmt = cell_formatter({"median_ms": "{:.4g}", "bytes_vs_eager": "{:.2f}", "GB/s": "{:.1f}",
                       "%copy_BW": "{:.1f}", "%mm_peak": "{:.1f}", "TFLOP/s": "{:.3g}",
                       "speedup_vs_aten": "{:.2f}x"})


def markdown_table(rows, columns=COLUMNS):
    cells = [[_fmt(c, r[c]) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    numeric = {"median_ms", "GB/s", "%copy_BW", "speedup_vs_aten", "bytes_vs_eager"}

    def line(values):
        return "| " + " | ".join(v.rjust(w) if c in numeric else v.ljust(w)
                                 for v, w, c in zip(values, widths, columns)) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if c in numeric else ("-" * (w + 2))
                          for w, c in zip(widths, columns)) + "|"
    return "\n".join([line(columns), rule] + [line(row) for row in cells])


def plain_table(rows, columns, fmt):
    """A left-aligned markdown table of ``rows`` (dicts), cells formatted by ``fmt(key, value)``."""
    cells = [[fmt(c, r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(v.ljust(w) for v, w in zip(row, widths)) + " |" for row in cells]
    return "\n".join(lines)


def write_csv(path, rows, columns=CSV_COLUMNS):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: ("" if r.get(k) is None else f"{r[k]:.6g}"
                                 if isinstance(r[k], float) else r[k]) for k in columns})


def _git_describe():
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=10).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def environment(device, copy_bw, quick):
    """The run's environment as (key, value) lines for the header and env.txt."""
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "not installed"
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        detail = f"{props.name}, {props.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}"
    else:
        detail = f"CPU ({platform.processor() or platform.machine()}), " \
                 f"{torch.get_num_threads()} torch threads"
    copy_size = "1 GiB" if device.type == "cuda" else "256 MiB"
    return [
        ("date", datetime.datetime.now().astimezone().isoformat(timespec="seconds")),
        ("device", f"{device_name(device)} ({detail})"),
        ("timing", "triton.testing.do_bench median" if device.type == "cuda"
         else "timeit, median of 5 repeats"),
        ("copy bandwidth", f"{copy_bw:.1f} GB/s (dst.copy_(src) of {copy_size}, 2*bytes/time)"),
        ("torch", torch.__version__),
        ("triton", triton_version),
        ("python", platform.python_version()),
        ("pydense", f"{pydense.__version__} (git {_git_describe()}), build {pydense.build_info()}"),
        ("mode", "quick" if quick else "full"),
        ("command", " ".join([os.path.basename(sys.executable), "-m", "benchmarks"] + sys.argv[1:])),
    ]


def write_env(path, env):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.writelines(f"{k}: {v}\n" for k, v in env)


def layouts_and_dtypes(device, quick, gpu_dtypes: Sequence[torch.dtype] = (torch.bfloat16,
                                                                             torch.float32)):
    """The (dtype, layout) grid: both layouts; fp32 only on CPU or in quick mode."""
    dtypes = gpu_dtypes if device.type == "cuda" and not quick else (torch.float32,)
    return [(d, lay) for d in dtypes for lay in LAYOUTS]


def nchw_for_run(shape, device, quick, cpu_channels=None):
    """An (N, C, H, W) case shape at the run's size: as given on GPU; batch 1 on CPU (with
    ``cpu_channels`` channels where given, else the shape's); batch 1 with 16 channels in quick."""
    n, c, h, w = shape
    if quick:
        return 1, 16, h, w
    if device.type == "cpu":
        return 1, c if cpu_channels is None else cpu_channels, h, w
    return n, c, h, w


def nhw_for_run(shape, device, quick):
    """An (N, H, W) map size at the run's size (the metrics' label and id maps): as given on GPU;
    batch 1 on CPU; batch 1 at a quarter of the height and width in quick."""
    n, h, w = shape
    if quick:
        return 1, h // 4, w // 4
    if device.type == "cpu":
        return 1, h, w
    return n, h, w


def pooling_cases(shapes, stride, device, quick, name):
    """The cases of the SegNet pooling pair (max_pool2d, max_unpool2d): every {label: (N, C, H, W)}
    of ``shapes`` at the run's size (64 channels on CPU), with int64 and with compact indices, over
    the (dtype, layout) grid. ``name(label, (n, c, h, w), (ph, pw), compact)`` names a case, where
    (ph, pw) is the ceil_mode pooled size of (H, W) at ``stride``."""
    out = []
    for label, shape in shapes.items():
        n, c, h, w = nchw_for_run(shape, device, quick, cpu_channels=64)
        pooled = -(-h // stride), -(-w // stride)  # ceil_mode
        for compact in (False, True):
            for dtype, layout in layouts_and_dtypes(device, quick):
                out.append(Case(name(label, (n, c, h, w), pooled, compact), dtype, layout,
                                {"shape": (n, c, h, w), "compact": compact}))
    return out


# ---------------------------------------------------------------------------------------------
# The command lines (python -m benchmarks, benchmarks.headline, .models, .panoptic_quality)


def add_device_and_out(parser, out_help, device_help=None):
    """A benchmark CLI's ``--device`` (cuda when available, else cpu) and ``--out`` (the results
    root, default benchmarks/results) arguments."""
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        choices=("cuda", "cpu"), help=device_help)
    parser.add_argument("--out", default=RESULTS_DIR, help=out_help)


def parse_run_args(parser, argv, verbose_help=None):
    """Add a benchmark CLI's last argument, ``-v/--verbose``, and parse ``argv``: (args, the
    ``--device`` as a torch.device, ``log(msg)``: each message on stderr with --verbose, else
    None)."""
    parser.add_argument("-v", "--verbose", action="store_true", help=verbose_help)
    args = parser.parse_args(argv)
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if args.verbose else None
    return args, torch.device(args.device), log


def model_cli(argv, module_doc, prog, title, csv_name, run, columns, fmt, quick_help, models_help,
              add_args=None):
    """The CLI of a model benchmark (``--quick``, ``--models a,b``, ``--device``, ``--out``,
    ``-v``): ``run(quick, device, wanted, log)`` gives the rows; the table is printed and written
    to ``OUT/<device>/<csv_name>``; exit status 1 if a check FAILED or ERRORed. ``add_args(parser)``
    may add options; it returns ``f(args)``, the extra keyword arguments of ``run``."""
    parser = argparse.ArgumentParser(prog=prog, description=module_doc.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--models", default="", help=models_help)
    add_device_and_out(parser, f"results root (OUT/<device>/{csv_name})")
    extra = add_args(parser) if add_args else (lambda args: {})
    args, device, log = parse_run_args(parser, argv)
    start = time.perf_counter()
    wanted = {m.strip() for m in args.models.split(",") if m.strip()}
    rows = run(args.quick, device, wanted, log, **extra(args))
    print_and_write_table(f"# {title} ({device_name(device)}, {'quick' if args.quick else 'full'})",
                          rows, columns, fmt, os.path.join(args.out, device_name(device), csv_name),
                          start)
    return 1 if any(r["check"] in ("FAILED", "ERROR") for r in rows) else 0


def print_and_write_table(title, rows, columns, fmt, path, start):
    """Print ``title`` and the table of ``rows`` (cells by ``fmt``), write the rows as CSV to
    ``path``, then print where, with the seconds since ``start`` (a time.perf_counter())."""
    print(f"{title}\n")
    print(plain_table(rows, columns, fmt))
    write_csv(path, rows, columns)
    print(f"\nresults: {path} ({time.perf_counter() - start:.1f} s)")
