"""Data-parallel scaling of the models' training step: ``python -m benchmarks.models --ddp
[--nproc N] [--quick] [--models ...]`` (or ``python -m benchmarks.ddp``), and the expected scaling
from a model of compute vs gradient all-reduce (``python -m benchmarks.ddp --expected``).

Measured: each training case of ``benchmarks.models`` (pydense, ``backend="auto"``; bf16 autocast
and channels_last on CUDA, fp32 on CPU) runs under ``torchrun`` with ``DistributedDataParallel``
on 1 process and on N (default: every visible GPU; on CPU 2 gloo processes, whose numbers show
that the path works and nothing about GPUs), each rank with the case's batch. Reported: images/s
in total and per process, and with N > 1 the scaling efficiency (per-process images/s on N over
that on 1), plus the gradient bytes each step all-reduces.

Expected (no GPU needed): per step, compute = the step's FLOPs (counted by
``torch.utils.flop_counter`` on the meta device, the stock model) over a sustained rate, and the
ring all-reduce of the fp32 gradients, ``2 (N - 1) / N * bytes`` over a bus bandwidth; efficiency
without overlap ``t_c / (t_c + t_ar)``, and with DDP's overlap of the all-reduce with the
backward (at most the backward's two thirds of the step) ``t_c / (t_c + max(0, t_ar - 2 t_c / 3))``.
The rates are assumptions, printed with the table.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch

from . import common
from . import models as model_bench

COLUMNS = ("model", "case", "dtype", "layout", "processes", "median_ms", "images/s",
           "images/s/process", "scaling_efficiency", "allreduce_MiB", "check", "notes")
WARMUP, STEPS = 3, 10
# the expected-scaling model's assumptions (H200 SXM nodes: 8 GPUs on NVLink/NVSwitch, 400 Gb/s
# InfiniBand per GPU between nodes)
SUSTAINED_TFLOPS = 300.0     # bf16 convolution throughput a training step sustains (of ~790 peak)
NVLINK_BUS_GBS = 350.0       # NCCL all-reduce bus bandwidth inside a node
IB_BUS_GBS = 45.0            # ... between nodes


def _train_cases(quick, device, wanted):
    return [c for c in model_bench._cases(quick, device) if "train" in c[4]
            and (not wanted or c[0] in wanted)]


def _grad_bytes(model):
    return sum(p.numel() * 4 for p in model.parameters() if p.requires_grad)


def worker(args):
    """One rank (under torchrun): time the case's DDP training step; rank 0 writes the result."""
    import pydense.distributed as pdist

    device = pdist.init_from_env("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // pdist.world_size()))
    quick = args.quick
    (name, factory, kwargs, shape, _modes, kind), = [
        c for c in _train_cases(quick, device, None) if c[0] == args.case and "x".join(map(str, c[3])) == args.shape]
    torch.manual_seed(0)
    model = factory(**kwargs, backend="auto").to(device)
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    model = model.to(memory_format=fmt).train()
    grad_bytes = _grad_bytes(model)
    if pdist.is_distributed():
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0)
    x = torch.randn(shape, device=device).abs().contiguous(memory_format=fmt)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = model_bench._loss(kind, model(x))
        loss.backward()
        opt.step()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if pdist.is_distributed():
            torch.distributed.barrier()

    for _ in range(WARMUP):
        step()
    times = []
    for _ in range(STEPS):
        sync()
        t = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t)
    times.sort()
    ms = times[len(times) // 2] * 1e3
    if pdist.is_main():
        with open(args.result, "w") as f:
            json.dump({"median_ms": ms, "grad_bytes": grad_bytes, "dtype": common.dtype_name(dtype),
                       "layout": "channels_last" if fmt == torch.channels_last else "nchw",
                       "device": str(device)}, f)
    if pdist.is_distributed():
        torch.distributed.destroy_process_group()
    return 0


def _launch(case, shape, nproc, quick, cpu, log):
    with tempfile.TemporaryDirectory() as tmp:
        result = os.path.join(tmp, "result.json")
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={nproc}", "-m", "benchmarks.ddp", "--worker", "--case", case,
               "--shape", shape, "--result", result] + (["--quick"] if quick else []) + (
                   ["--cpu"] if cpu else [])
        if log:
            log("  " + " ".join(cmd[2:]))
        res = subprocess.run(cmd, cwd=common.REPO_ROOT, capture_output=True, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"} if cpu else None)
        if res.returncode != 0:
            raise RuntimeError(f"torchrun exited {res.returncode}: " + res.stderr.strip()[-500:])
        with open(result) as f:
            return json.load(f)


def run(quick, device, wanted=None, log=None, nproc=None):
    """The rows: every training case on 1 process and on ``nproc`` (default: every visible GPU;
    2 on CPU)."""
    cpu = device.type != "cuda"
    nproc = nproc or (2 if cpu else torch.cuda.device_count())
    rows = []
    for name, _factory, _kwargs, shape, _modes, _kind in _train_cases(quick, device, wanted):
        case = "x".join(map(str, shape))
        single = None
        for n in sorted({1, nproc}):
            row = {"model": name, "case": case, "processes": n, "check": "", "notes": ""}
            try:
                got = _launch(name, case, n, quick, cpu, log)
                per = shape[0] / (got["median_ms"] * 1e-3)
                row.update({"dtype": got["dtype"], "layout": got["layout"], "median_ms": got["median_ms"],
                            "images/s": per * n, "images/s/process": per,
                            "allreduce_MiB": got["grad_bytes"] / 2**20 if n > 1 else 0.0, "check": "ran"})
                if n == 1:
                    single = per
                elif single:
                    row["scaling_efficiency"] = per / single
                if cpu:
                    row["notes"] = "gloo on CPU: the path works; says nothing of GPU scaling"
            except Exception as e:  # noqa: BLE001 - reported, not fatal
                row.update({"check": "ERROR", "notes": common._error_text(e)})
            rows.append(row)
    if nproc == 1 and not cpu:
        for r in rows:
            r["notes"] = "one GPU visible: no scaling measured"
    return rows


# --- the expected scaling ---------------------------------------------------------------------

EXPECTED_COLUMNS = ("model", "case", "step_TFLOP", "compute_ms", "grad_MiB", "gpus",
                    "allreduce_ms", "efficiency_no_overlap", "efficiency_overlap")


def step_flops(factory, kwargs, shape, kind):
    """FLOPs of one training step (forward + backward) of the stock model, counted on meta."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = factory(**{k: v for k, v in kwargs.items() if k != "compact_indices"}, backend="torch")
        x = torch.randn(shape)
    with FlopCounterMode(display=False) as counter:
        model_bench._loss(kind, model(x)).backward()
    return counter.get_total_flops(), _grad_bytes(model)


def expected(wanted=None):
    rows = []
    for name, factory, kwargs, shape, _modes, kind in _train_cases(False, torch.device("cuda"), wanted):
        flops, grad = step_flops(factory, kwargs, shape, kind)
        t_c = flops / (SUSTAINED_TFLOPS * 1e12) * 1e3
        for gpus, bus in ((8, NVLINK_BUS_GBS), (16, IB_BUS_GBS), (64, IB_BUS_GBS)):
            t_ar = 2 * (gpus - 1) / gpus * grad / (bus * 1e9) * 1e3
            rows.append({"model": name, "case": "x".join(map(str, shape)), "step_TFLOP": flops / 1e12,
                         "compute_ms": t_c, "grad_MiB": grad / 2**20, "gpus": gpus,
                         "allreduce_ms": t_ar, "efficiency_no_overlap": t_c / (t_c + t_ar),
                         "efficiency_overlap": t_c / (t_c + max(0.0, t_ar - 2 * t_c / 3))})
    return rows


_fmt = common.cell_formatter({"median_ms": "{:.4g}", "images/s": "{:.4g}", "images/s/process": "{:.4g}",
                              "scaling_efficiency": "{:.2f}", "allreduce_MiB": "{:.1f}"})
_fmt_expected = common.cell_formatter({"step_TFLOP": "{:.3g}", "compute_ms": "{:.3g}", "grad_MiB": "{:.1f}",
                                       "allreduce_ms": "{:.3g}", "efficiency_no_overlap": "{:.2f}",
                                       "efficiency_overlap": "{:.2f}"})


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ddp", description=__doc__.split("\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--shape", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--cpu", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--expected", action="store_true",
                        help="print the expected scaling (compute vs all-reduce model) and exit")
    parser.add_argument("--quick", action="store_true", help="small sizes (CPU / CI smoke run)")
    parser.add_argument("--models", default="", help="comma-separated model names (default: all)")
    parser.add_argument("--nproc", type=int, help="processes (default: every GPU; CPU: 2)")
    common.add_device_and_out(parser, "results root (OUT/<device>/ddp.csv)")
    args, device, log = common.parse_run_args(parser, argv)
    if args.worker:
        return worker(args)
    wanted = {m.strip() for m in args.models.split(",") if m.strip()}
    if args.expected:
        print(f"# expected data-parallel scaling (assumed: {SUSTAINED_TFLOPS:g} TFLOP/s sustained, "
              f"all-reduce bus bandwidth {NVLINK_BUS_GBS:g} GB/s in a node of 8, {IB_BUS_GBS:g} GB/s "
              f"across nodes)\n")
        print(common.plain_table(expected(wanted), EXPECTED_COLUMNS, _fmt_expected))
        return 0
    start = time.perf_counter()
    rows = run(args.quick, device, wanted, log, args.nproc)
    common.print_and_write_table(f"# DDP scaling ({common.device_name(device)})", rows, COLUMNS, _fmt,
                                 os.path.join(args.out, common.device_name(device), "ddp.csv"), start)
    return 1 if any(r["check"] == "ERROR" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
