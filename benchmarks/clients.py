"""The models people already have, stock vs pydense: ``python -m benchmarks.clients [--quick]
[--models unet,...] [--out DIR]``.

segmentation-models-pytorch's Unet and DeepLabV3Plus (resnet34 encoder, no pretrained weights)
and torchvision's deeplabv3_resnet50 (no weights), compared side by side in one run:

* "stock": the model as its library builds it;
* "patched": :func:`pydense.patch` of a copy (``backend="auto"``, the default predicate);
* "enabled": the stock model run inside ``with pydense.enabled():``;
* "compiled": ``torch.compile`` of the stock model (``--compile-backend``, default inductor,
  default mode);
* "fused": :func:`pydense.compile` of the patched model (the same compiler with pydense's fusion
  pass in front; the notes count the sites fused per pattern);

in "infer" (``torch.no_grad()``, eval mode) and "train" (forward, cross-entropy, backward;
train mode) modes, fp32, NCHW and channels_last. Reported: median time (``do_bench`` on CUDA,
interleaved rounds on CPU, after warm-up calls that include the compilation), images/s, the
speedup vs stock, how many modules :func:`pydense.patch` replaced, and "check": the inference
output against stock's (rtol = atol = 1e-4 times its magnitude; 1e-3 for the compiled ones).
``--quick`` (CI) runs 64x64 inputs, NCHW, without "compiled" and with "fused" on aot_eager (the
same graphs and fusions, no code generation). segmentation-models-pytorch is optional: its models
are reported as not run without it.
"""
import contextlib
import copy
import statistics
import sys
import time

import torch
import torch.nn.functional as F

import pydense

from . import common

COLUMNS = ("model", "case", "mode", "layout", "provider", "median_ms", "images/s", "speedup_vs_stock",
           "patched", "check", "notes")
PROVIDERS = ("stock", "patched", "enabled", "compiled", "fused")
QUICK_PROVIDERS = ("stock", "patched", "enabled", "fused")  # CI: proves the fused path, cheaply
COMPILED = {"compiled", "fused"}


def _smp(name):
    def build():
        import segmentation_models_pytorch as smp

        return getattr(smp, name)(encoder_name="resnet34", encoder_weights=None, classes=21)
    return build


def _torchvision_deeplabv3():
    from torchvision.models.segmentation import deeplabv3_resnet50

    return deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=21, aux_loss=False)


# name: (factory, input shape on CPU / in --quick, on CUDA)
MODELS = {
    "smp_unet_resnet34": (_smp("Unet"), (2, 3, 256, 256), (8, 3, 512, 512)),
    "smp_deeplabv3plus_resnet34": (_smp("DeepLabV3Plus"), (2, 3, 256, 256), (8, 3, 512, 512)),
    "tv_deeplabv3_resnet50": (_torchvision_deeplabv3, (2, 3, 256, 256), (8, 3, 512, 512)),
}
QUICK_SHAPE = (2, 3, 64, 64)  # batch 2: train-mode BatchNorm after the ASPP's global pooling
WARMUP = 3  # calls before timing (oneDNN builds its primitives for each new shape on first use)
ROUNDS = 7  # CPU: timed rounds, each calling every provider once in turn (drift hits all alike)


def interleaved_ms(steps, device, rounds):
    """{provider: median ms of one call}: on CUDA ``do_bench`` per provider; on CPU ``rounds``
    rounds that call each provider once in turn, so that machine drift and the order of the
    providers do not favour one of them (a shared 2-core machine drifts by tens of percent)."""
    if device.type == "cuda":
        return {p: common.bench_ms(step, device) for p, step in steps.items()}
    samples = {p: [] for p in steps}
    for _ in range(rounds):
        for p, step in steps.items():
            start = time.perf_counter()
            step()
            samples[p].append((time.perf_counter() - start) * 1e3)
    return {p: statistics.median(v) for p, v in samples.items()}


def _output(out):
    return out["out"] if isinstance(out, dict) else out


def _providers(stock, compile_backend):
    """{provider: (a function that builds the model it runs, the context it runs in)}; each model
    is a copy of ``stock`` (built when asked: a compiled one compiles at its first call)."""
    patched = pydense.patch(copy.deepcopy(stock))
    nothing = contextlib.nullcontext
    return {
        "stock": (lambda: stock, nothing),
        "patched": (lambda: patched, nothing),
        "enabled": (lambda: copy.deepcopy(stock), pydense.enabled),
        "compiled": (lambda: torch.compile(copy.deepcopy(stock), backend=compile_backend), nothing),
        "fused": (lambda: pydense.compile(copy.deepcopy(patched), inner=compile_backend), nothing),
    }


def run(quick, device, wanted=None, log=None, layouts=None, modes=("infer", "train"), providers=None,
        compile_backend=None, warm=False):
    """The rows: ``providers`` (default ``PROVIDERS``; ``QUICK_PROVIDERS`` with ``quick``), the
    compiled ones with ``compile_backend`` (default ``common.COMPILE_BACKEND``; "aot_eager" with
    ``quick``). ``warm``: run each provider once (compiles) without checks or timing; no rows."""
    rows = []
    layouts = layouts or (("nchw",) if quick else ("nchw", "channels_last"))
    providers = providers or (QUICK_PROVIDERS if quick else PROVIDERS)
    compile_backend = compile_backend or ("aot_eager" if quick else common.COMPILE_BACKEND)
    for name, (factory, cpu_shape, gpu_shape) in MODELS.items():
        if wanted and name not in wanted:
            continue
        shape = QUICK_SHAPE if quick else (gpu_shape if device.type == "cuda" else cpu_shape)
        base = {"model": name, "case": "x".join(map(str, shape))}
        try:
            torch.manual_seed(0)
            pristine = factory().to(device)
        except ImportError as e:
            rows.append({**base, "provider": "stock", "check": "not run", "notes": str(e)})
            continue
        replaced = len(pydense.patched_modules(pydense.patch(copy.deepcopy(pristine))))
        for layout in layouts:
            fmt = common.LAYOUTS[layout]
            x = torch.randn(shape, device=device).contiguous(memory_format=fmt)
            target = torch.zeros(shape[0], *shape[2:], dtype=torch.long, device=device)
            for mode in modes:
                # fresh copies for each case: training steps move BatchNorm's running statistics;
                # and a fresh compile cache (every case compiles the same forward again)
                torch._dynamo.reset()
                built = _providers(copy.deepcopy(pristine).to(memory_format=fmt), compile_backend)
                case_rows, steps = [], {}
                for provider in providers:
                    make, ctx = built[provider]
                    row = {**base, "mode": mode, "layout": layout, "provider": provider,
                           "patched": replaced if provider in ("patched", "fused") else None,
                           "check": "", "notes": ""}
                    if log:
                        log(f"  {name} {base['case']} {mode} {layout} {provider}")
                    try:
                        model = make()
                        if mode == "infer":
                            model.eval()

                            def step(model=model, ctx=ctx):
                                with torch.no_grad(), ctx():
                                    return _output(model(x))

                            out = step()
                            if not warm:
                                with torch.no_grad():
                                    ref = _output(pristine.eval()(x))
                                tol = (1e-3 if provider in COMPILED else 1e-4) * max(1.0, ref.abs().max().item())
                                ok = torch.allclose(out, ref, rtol=tol, atol=tol)
                                row["check"] = "ok" if ok else "FAILED"
                        else:
                            model.train()

                            def step(model=model, ctx=ctx):
                                model.zero_grad(set_to_none=True)
                                with ctx():
                                    loss = F.cross_entropy(_output(model(x)), target)
                                loss.backward()

                            step()
                            row["check"] = "ran"
                        if warm:
                            continue
                        for _ in range(0 if quick else WARMUP - 1):
                            step()
                        steps[provider] = step
                        if provider == "fused":
                            row["notes"] = "fused: " + (", ".join(
                                f"{k}={v}" for k, v in sorted(model.pydense_fusions.items())) or "none")
                    except Exception as e:  # noqa: BLE001 - reported, not fatal
                        row.update({"check": "ERROR", "notes": common._error_text(e)})
                    case_rows.append(row)
                if warm:
                    continue
                measured = interleaved_ms(steps, device, 3 if quick else ROUNDS)
                for row in case_rows:
                    ms = measured.get(row["provider"])
                    if ms:
                        row.update({"median_ms": ms, "images/s": shape[0] / (ms * 1e-3)})
                ref_ms = next((r.get("median_ms") for r in case_rows if r["provider"] == "stock"), None)
                for r in case_rows:
                    r["speedup_vs_stock"] = ref_ms / r["median_ms"] if ref_ms and r.get("median_ms") else None
                rows += case_rows
        del pristine
    torch._dynamo.reset()
    return rows


_fmt = common.cell_formatter({"median_ms": "{:.4g}", "images/s": "{:.4g}", "speedup_vs_stock": "{:.2f}x"})


def _add_args(parser):
    parser.add_argument("--providers", default="",
                        help=f"comma-separated, of {', '.join(PROVIDERS)} (default: all; --quick: "
                             f"{', '.join(QUICK_PROVIDERS)})")
    parser.add_argument("--compile-backend", default=None,
                        help="torch.compile backend of compiled and fused (default inductor; "
                             "--quick: aot_eager)")

    def extra(args):
        providers = tuple(p.strip() for p in args.providers.split(",") if p.strip())
        unknown = [p for p in providers if p not in PROVIDERS]
        if unknown:
            parser.error(f"--providers: unknown {', '.join(unknown)}; expected some of {', '.join(PROVIDERS)}")
        if providers and "stock" not in providers:
            providers = ("stock",) + providers  # the reference of the speedups
        return {"providers": providers or None, "compile_backend": args.compile_backend}
    return extra


def main(argv=None):
    return common.model_cli(argv, __doc__, "python -m benchmarks.clients",
                            "pydense on the models people already have", "clients.csv", run, COLUMNS,
                            _fmt, "64x64 inputs, NCHW (CPU / CI smoke run)",
                            f"comma-separated, of {', '.join(MODELS)} (default: all)", _add_args)


if __name__ == "__main__":
    sys.exit(main())
