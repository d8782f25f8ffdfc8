"""The headline benchmark tier: one canonical case per op and two model steps, in ~3 GPU minutes.

    python -m benchmarks.headline [--quick] [--out DIR] [--budget-s S]     the timed run
    python -m benchmarks.headline --warm --part K/N                        compile only (part K of N)

Per op (``CASES``: the REFERENCE section-5 shape where it has one), bf16 and fp32, channels_last,
directions "fwd" and "fwd+bwd" ("fwd" only for the metrics): every pydense backend vs "aten"
(eager ATen / cuDNN) vs "compile" (``torch.compile``, default mode), through the same harness as
the full suite (``benchmarks.common``: oracle check first, ``do_bench`` medians, GB/s and the
roofline fraction). Then ``MODELS``: one FCN-8s 500x500 inference (batch 1), one SegNet
360x480 training step (batch 4) and one padded U-Net 512x512 training step (batch 4), bf16
autocast, channels_last: pydense vs eager vs
``torch.compile`` (default mode). Then ``CLIENTS``: the models people already have
(``benchmarks.clients``: torchvision's deeplabv3_resnet50, and segmentation-models-pytorch's
Unet and DeepLabV3Plus where it is installed), inference, fp32, channels_last: stock vs
``pydense.patch`` vs ``pydense.enabled()`` vs ``torch.compile`` vs ``pydense.compile`` of the
patched model. max-autotune and the full suite stay for longer GPU runs.

Order and budget: bf16 ops, the models, the clients, then fp32 ops; an entry that would start after
``--budget-s`` is listed as not run (time budget) instead. ``--warm`` runs each compiled and
Triton provider once per direction (no oracle check, no timing), so that a later timed run finds
Inductor's FX-graph/autograd caches and Triton's cache warm (``TORCHINDUCTOR_CACHE_DIR``,
``TRITON_CACHE_DIR``); ``--part K/N`` takes every N-th entry, to warm in N processes at once.

Output (``OUT/<device>/``): ``headline.csv`` (the suite's CSV columns: ``python -m
benchmarks.tune`` reads it), ``headline-models.csv``, ``headline-clients.csv``, ``headline.md`` (the pivot table: one row
per case, direction and dtype, one column per provider) and ``env.txt``.
"""
import argparse
import dataclasses
import os
import sys
import time

import torch

from pydense import models as zoo

from . import clients, common, discover, models

# op: the start of the canonical case's name in its bench module (see benchmarks/README.md).
CASES = {
    "upsample_bilinear2d": "deeplab-64ch 8x64x256x256->512x512 ac=0",  # REFERENCE 5, bilinear
    "bilinear_deconv2d": "fcn8s-upscore8",          # FCN-8s' x8 upsampling to 500x500, crop 31
    "conv2d": "aspp-d12",                            # ASPP (8,2048,64,64)->256 3x3 d=12
    "conv2d_fused": "edsr-resblock-conv2",           # EDSR ResBlock conv + residual, 48x48 x16
    "conv2d_pixel_shuffle": "edsr-x2-train",         # EDSR x2 upsampler, 48x48 patches x16
    "conv_transpose2d": "depthwise-k4s2",            # depthwise k4 s2 on (8,21,64,64)
    "fcn_skip": "fcn16s-pool4",                      # FCN score_fr x2 + crop(score_pool4, 5)
    "max_pool2d": "segnet1 8x64x360x480->180x240 int64",   # SegNet stage 1
    "max_unpool2d": "segnet1 8x64x180x240->360x480",       # SegNet stage 1 (int64 indices)
    "pixel_shuffle": "edsr-train-x2",                # EDSR's PixelShuffle(2), 48x48 x16
    "upsample_concat": "unet-64ch 8x64",             # UNet (8,64,256,256) up + concat (8,64,512,512)
    "confusion_matrix": "cityscapes logits",         # (8,19,1024,2048) logits, argmax fused
    "panoptic_pair_counts": "coco",                  # 8 COCO-sized id maps, 40 x 60 segments
    "panoptic_fuse": "coco ",                        # one COCO image, 100 instances
}
# quick/CPU runs (the dry run): a lighter case where the canonical one stays large.
QUICK_CASES = {"conv2d": "context-c21-d4"}
# (name, factory, kwargs, input shape, modes, loss kind) as benchmarks.models._cases gives them;
# quick/CPU: the same models at a few pixels.
MODELS = [("fcn8s", zoo.fcn8s, {}, (1, 3, 500, 500), ("infer",), "seg"),
          ("segnet", zoo.segnet, {}, (4, 3, 360, 480), ("train",), "seg"),
          ("unet_padded", zoo.unet, {"in_channels": 3, "variant": "padded"}, (4, 3, 512, 512),
           ("train",), "seg")]
QUICK_MODELS = [("fcn8s", zoo.fcn8s, {}, (1, 3, 16, 16), ("infer",), "seg"),
                ("segnet", zoo.segnet, {}, (1, 3, 32, 32), ("train",), "seg"),
                ("unet_padded", zoo.unet, {"in_channels": 3, "variant": "padded"}, (1, 3, 32, 32),
                 ("train",), "seg")]
# benchmarks.clients' models (those it cannot import are listed as not run), inference only
CLIENTS = ("tv_deeplabv3_resnet50", "smp_unet_resnet34", "smp_deeplabv3plus_resnet34")
DIRECTIONS = ("fwd", "fwd+bwd")
PROVIDERS = common.PYDENSE_BACKENDS + ("aten", "compile")
LAYOUT = "channels_last"


@dataclasses.dataclass
class Entry:
    kind: str  # "op", "models" or "clients"
    op: str
    dtype: torch.dtype
    case: common.Case = None


def select_case(module, device, quick):
    """The op's canonical case (its name starts with ``CASES[op]``); in quick/CPU runs, where the
    module scales its shapes down, the first such case, else the module's first case."""
    cases = module.cases(device, quick)
    small = quick or device.type == "cpu"
    name = QUICK_CASES.get(module.OP, CASES[module.OP]) if small else CASES[module.OP]
    found = [c for c in cases if c.name.startswith(name)]
    if not found and device.type == "cuda" and not quick:
        raise LookupError(f"{module.OP}: no case named {CASES[module.OP]!r} in its bench module")
    return (found or cases)[0]


def entries(device, quick, ops=None):
    """The tier's entries in run order: bf16 ops, the models, the clients, fp32 ops (quick/CPU:
    fp32 only)."""
    modules = discover()
    dtypes = (torch.float32,) if quick or device.type == "cpu" else (torch.bfloat16, torch.float32)
    out = []
    for dtype in dtypes:
        for op, module in modules.items():
            if ops and op not in ops:
                continue
            if op not in CASES:
                raise LookupError(f"{op}: no headline case (add it to benchmarks.headline.CASES)")
            case = select_case(module, device, quick)
            if case.dtype.is_floating_point:
                case = dataclasses.replace(case, dtype=dtype, layout=LAYOUT)
            elif dtype != dtypes[0]:
                continue  # integer inputs (labels, id maps): one entry
            out.append(Entry("op", op, case.dtype, case))
        if dtype == dtypes[0] and (not ops or "models" in ops):
            out.append(Entry("models", "models", torch.bfloat16 if device.type == "cuda" and not quick
                             else torch.float32))
        if dtype == dtypes[0] and (not ops or "clients" in ops):
            out.append(Entry("clients", "clients", torch.float32))
    return out


def _run_models(entry, device, quick, log, warm):
    return models.run(quick, device, log=log, cases=QUICK_MODELS if quick or device.type == "cpu"
                      else MODELS, layouts=(LAYOUT,), dtypes=(entry.dtype,), compile_mode=None,
                      compile_backend=common.COMPILE_BACKEND, with_compile=True, warm=warm)


def _run_clients(device, quick, log, warm):
    small = quick or device.type == "cpu"
    return clients.run(small, device, wanted=set(CLIENTS), log=log, layouts=(LAYOUT,),
                       modes=("infer",), compile_backend=common.COMPILE_BACKEND, warm=warm)


def warm_entry(entry, device, quick, log=None):
    """Run each compiled / Triton provider of ``entry`` once per direction: no check, no timing."""
    if entry.kind == "models":
        _run_models(entry, device, quick, log, warm=True)
        return
    if entry.kind == "clients":
        _run_clients(device, quick, log, warm=True)
        return
    module = discover()[entry.op]
    problem = module.problem(entry.case, device)
    wanted = tuple(p for p in PROVIDERS if p not in ("aten", "cpu"))
    if not getattr(module, "COMPILE", True):
        wanted = tuple(p for p in wanted if p != "compile")
    found, _ = common.providers(problem, device, entry.op, wanted)
    for name, fn in found:
        for direction, (run, _ref) in common.runners(fn, problem).items():
            if direction not in DIRECTIONS or direction not in getattr(module, "DIRECTIONS",
                                                                       common.DIRECTIONS):
                continue
            if log:
                log(f"  warm {entry.op} {common.dtype_name(entry.dtype)} {direction} {name}")
            try:
                run()
            except Exception as e:  # noqa: BLE001 - the timed run reports it
                print(f"warm {entry.op} {direction} {name}: {common._error_text(e)}", file=sys.stderr)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------------
# The pivot table


def pivot(rows):
    """One row per (op, case, dtype, direction): each provider's median ms (or its check), the
    fastest pydense backend's speedup over aten and over compile, and its GB/s / TFLOP/s."""
    groups = {}
    for r in rows:
        key = (r["op"], r["case"], r["dtype"], r["direction"])
        groups.setdefault(key, {})[r["provider"]] = r
    out = []
    for (op, case, dtype, direction), by in groups.items():
        line = {"op": op, "case": case, "dtype": dtype, "dir": direction}
        for p in PROVIDERS:
            r = by.get(p)
            line[p] = ("" if r is None else f"{r['median_ms']:.4g}" if r["median_ms"]
                       else r["check"] or "-")
        timed = {p: by[p]["median_ms"] for p in common.PYDENSE_BACKENDS
                 if p in by and by[p]["median_ms"]}
        best = min(timed, key=timed.get) if timed else None
        line["best"] = best or ""
        for ref in ("aten", "compile"):
            base = by.get(ref, {}).get("median_ms")
            line[f"vs {ref}"] = f"{base / timed[best]:.2f}x" if best and base else ""
        r = by.get(best) if best else None
        rate = ""
        if r and r.get("TFLOP/s"):
            rate = f"{r['TFLOP/s']:.3g} TFLOP/s ({r['%mm_peak']:.0f}% mm)"
        elif r and r.get("GB/s"):
            rate = f"{r['GB/s']:.0f} GB/s ({r['%copy_BW']:.0f}% copy)"
        line["best rate"] = rate
        out.append(line)
    return out


PIVOT_COLUMNS = ("op", "case", "dtype", "dir") + PROVIDERS + ("best", "vs aten", "vs compile",
                                                               "best rate")


_fmt_plain = common.cell_formatter({})  # every cell as it is


def write_markdown(path, env, rows, model_rows, skipped, not_run, elapsed, client_rows=()):
    with open(path, "w") as f:
        f.write("# pydense headline benchmarks\n\n")
        f.write("\n".join(f"- {k}: {v}" for k, v in env) + "\n")
        f.write(f"- elapsed: {elapsed:.0f} s\n\n")
        f.write("Median ms per provider (FAILED/ERROR: the oracle check; details in "
                "headline.csv); best = the fastest pydense backend.\n\n")
        f.write(common.plain_table(pivot(rows), PIVOT_COLUMNS, _fmt_plain) + "\n\n")
        if model_rows:
            f.write("## Models\n\n" + common.plain_table(model_rows, models.COLUMNS, models._fmt)
                    + "\n\n")
        if client_rows:
            f.write("## Clients (the models people already have)\n\n"
                    + common.plain_table(client_rows, clients.COLUMNS, clients._fmt) + "\n\n")
        for provider, why in sorted(skipped.items()):
            f.write(f"- skipped {provider}: {why}\n")
        for e in not_run:
            f.write(f"- not run (time budget): {e}\n")
        bad = [r for r in rows + model_rows + list(client_rows) if r.get("check") in ("FAILED", "ERROR")]
        for r in bad:
            f.write(f"- {r['check']}: {r.get('op', r.get('model'))} {r['case']} {r['dtype']} "
                    f"{r.get('direction', r.get('mode'))} {r['provider']}: {r.get('notes', '')}\n")


# ---------------------------------------------------------------------------------------------


def _parse_part(text):
    k, n = (int(v) for v in text.split("/"))
    if not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"--part {text}: want K/N with 1 <= K <= N")
    return k, n


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.headline",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, fp32 (CPU dry run)")
    common.add_device_and_out(parser, "results root (OUT/<device>/)")
    parser.add_argument("--ops", default="",
                        help="comma-separated ops (and/or 'models', 'clients'); default all")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="start no entry after this many seconds (default: no limit)")
    parser.add_argument("--compile-backend", default="inductor",
                        help="torch.compile backend of the 'compile' provider (dry run: aot_eager)")
    parser.add_argument("--warm", action="store_true", help="compile only: no checks, no timing")
    parser.add_argument("--part", type=_parse_part, default=(1, 1), help="K/N: every N-th entry")
    parser.add_argument("--smoke", action="store_true",
                        help="time CPU providers with one call (the dry run: proves the path only)")
    parser.add_argument("--list", action="store_true", help="print the entries and exit")
    args, device, log = common.parse_run_args(parser, argv)
    common.COMPILE_BACKEND = args.compile_backend
    if args.smoke:
        common.CPU_BUDGET_S, common.CPU_REPEATS = 0.0, 1
    ops = {o.strip() for o in args.ops.split(",") if o.strip()}
    todo = entries(device, args.quick, ops)
    k, n = args.part
    todo = todo[k - 1::n]
    if args.list:
        for e in todo:
            label = {"models": "fcn8s infer + segnet train + unet_padded train", "clients": " + ".join(CLIENTS) + " infer"}
            print(e.op, common.dtype_name(e.dtype), e.case.name if e.case else label[e.kind])
        return 0
    start = time.perf_counter()
    if args.warm:
        for e in todo:
            t = time.perf_counter()
            warm_entry(e, device, args.quick, log)
            print(f"warm {e.op} {common.dtype_name(e.dtype)}: {time.perf_counter() - t:.1f} s", flush=True)
        print(f"warm part {k}/{n}: {len(todo)} entries, {time.perf_counter() - start:.1f} s")
        return 0

    copy_bw = common.copy_bandwidth(device)
    env = common.environment(device, copy_bw, args.quick)
    env.append(("tier", f"headline (compile backend {args.compile_backend}, default mode)"))
    if args.smoke and device.type == "cpu":
        env = [(k, "one timed call (smoke run: the times mean nothing)" if k == "timing" else v)
               for k, v in env]
    out_dir = os.path.join(args.out, common.device_name(device))
    os.makedirs(out_dir, exist_ok=True)
    common.write_env(os.path.join(out_dir, "env.txt"), env)
    rows, model_rows, client_rows, skipped, not_run = [], [], [], {}, []
    modules = discover()
    for e in todo:
        label = f"{e.op} {common.dtype_name(e.dtype)}" + (f" {e.case.name}" if e.case else "")
        if args.budget_s is not None and time.perf_counter() - start > args.budget_s:
            not_run.append(label)
            continue
        t = time.perf_counter()
        if e.kind == "models":
            model_rows += _run_models(e, device, args.quick, log, warm=False)
            common.write_csv(os.path.join(out_dir, "headline-models.csv"), model_rows, models.COLUMNS)
        elif e.kind == "clients":
            client_rows += _run_clients(device, args.quick, log, warm=False)
            common.write_csv(os.path.join(out_dir, "headline-clients.csv"), client_rows, clients.COLUMNS)
        else:
            got, why = common.run_op(modules[e.op], device, args.quick, copy_bw, PROVIDERS, log,
                                     cases=[e.case], directions=DIRECTIONS)
            rows += got
            skipped.update(why)
            common.write_csv(os.path.join(out_dir, "headline.csv"), rows)
        print(f"{label}: {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
        write_markdown(os.path.join(out_dir, "headline.md"), env, rows, model_rows, skipped,
                       not_run, time.perf_counter() - start, client_rows)
    write_markdown(os.path.join(out_dir, "headline.md"), env, rows, model_rows, skipped, not_run,
                   time.perf_counter() - start, client_rows)
    with open(os.path.join(out_dir, "headline.md")) as f:
        print(f.read())
    print(f"results: {out_dir} ({time.perf_counter() - start:.1f} s)")
    bad = [r for r in rows + model_rows + client_rows if r.get("check") in ("FAILED", "ERROR")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
