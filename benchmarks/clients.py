"""The models people already have, stock vs pydense: ``python -m benchmarks.clients [--quick]
[--models unet,...] [--out DIR]``.

segmentation-models-pytorch's Unet and DeepLabV3Plus (resnet34 encoder, no pretrained weights)
and torchvision's deeplabv3_resnet50 (no weights), compared side by side in one run:

* "stock": the model as its library builds it;
* "patched": :func:`pydense.patch` of a copy (``backend="auto"``, the default predicate);
* "enabled": the stock model run inside ``with pydense.enabled():``;

in "infer" (``torch.no_grad()``, eval mode) and "train" (forward, cross-entropy, backward;
train mode) modes, fp32, NCHW and channels_last. Reported: median time (``do_bench`` on CUDA,
timeit on CPU), images/s, the speedup vs stock, how many modules :func:`pydense.patch` replaced,
and "check": the inference output against stock's (rtol = atol = 1e-4 times its magnitude).
segmentation-models-pytorch is optional: its models are reported as not run without it.
"""
import contextlib
import copy
import sys

import torch
import torch.nn.functional as F

import pydense

from . import common

COLUMNS = ("model", "case", "mode", "layout", "provider", "median_ms", "images/s", "speedup_vs_stock",
           "patched", "check", "notes")
PROVIDERS = ("stock", "patched", "enabled")


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
    "smp_unet_resnet34": (_smp("Unet"), (1, 3, 256, 256), (8, 3, 512, 512)),
    "smp_deeplabv3plus_resnet34": (_smp("DeepLabV3Plus"), (1, 3, 256, 256), (8, 3, 512, 512)),
    "tv_deeplabv3_resnet50": (_torchvision_deeplabv3, (1, 3, 256, 256), (8, 3, 512, 512)),
}
QUICK_SHAPE = (1, 3, 64, 64)


def _output(out):
    return out["out"] if isinstance(out, dict) else out


def run(quick, device, wanted=None, log=None, layouts=None, modes=("infer", "train")):
    rows = []
    layouts = layouts or (("nchw",) if quick else ("nchw", "channels_last"))
    for name, (factory, cpu_shape, gpu_shape) in MODELS.items():
        if wanted and name not in wanted:
            continue
        shape = QUICK_SHAPE if quick else (gpu_shape if device.type == "cuda" else cpu_shape)
        base = {"model": name, "case": "x".join(map(str, shape))}
        try:
            torch.manual_seed(0)
            stock = factory().to(device)
        except ImportError as e:
            rows.append({**base, "provider": "stock", "check": "not run", "notes": str(e)})
            continue
        patched = copy.deepcopy(stock)
        pydense.patch(patched)
        replaced = len(pydense.patched_modules(patched))
        for layout in layouts:
            fmt = common.LAYOUTS[layout]
            stock, patched = stock.to(memory_format=fmt), patched.to(memory_format=fmt)
            x = torch.randn(shape, device=device).contiguous(memory_format=fmt)
            target = torch.zeros(shape[0], *shape[2:], dtype=torch.long, device=device)
            models = {"stock": stock, "patched": patched, "enabled": stock}
            for mode in modes:
                case_rows = []
                for provider in PROVIDERS:
                    model = models[provider]
                    ctx = pydense.enabled if provider == "enabled" else contextlib.nullcontext
                    row = {**base, "mode": mode, "layout": layout, "provider": provider,
                           "patched": replaced if provider == "patched" else None, "check": "", "notes": ""}
                    if log:
                        log(f"  {name} {base['case']} {mode} {layout} {provider}")
                    try:
                        if mode == "infer":
                            model.eval()

                            def step(model=model, ctx=ctx):
                                with torch.no_grad(), ctx():
                                    return _output(model(x))

                            out = step()
                            with torch.no_grad():
                                ref = _output(stock.eval()(x))
                            tol = 1e-4 * max(1.0, ref.abs().max().item())
                            row["check"] = "ok" if torch.allclose(out, ref, rtol=tol, atol=tol) else "FAILED"
                        else:
                            model.train()

                            def step(model=model, ctx=ctx):
                                model.zero_grad(set_to_none=True)
                                with ctx():
                                    loss = F.cross_entropy(_output(model(x)), target)
                                loss.backward()

                            step()
                            row["check"] = "ran"
                        ms = common.bench_ms(step, device)
                        row.update({"median_ms": ms, "images/s": shape[0] / (ms * 1e-3)})
                    except Exception as e:  # noqa: BLE001 - reported, not fatal
                        row.update({"check": "ERROR", "notes": common._error_text(e)})
                    case_rows.append(row)
                ref_ms = next((r.get("median_ms") for r in case_rows if r["provider"] == "stock"), None)
                for r in case_rows:
                    r["speedup_vs_stock"] = ref_ms / r["median_ms"] if ref_ms and r.get("median_ms") else None
                rows += case_rows
        del stock, patched
    return rows


_fmt = common.cell_formatter({"median_ms": "{:.4g}", "images/s": "{:.4g}", "speedup_vs_stock": "{:.2f}x"})


def main(argv=None):
    return common.model_cli(argv, __doc__, "python -m benchmarks.clients",
                            "pydense on the models people already have", "clients.csv", run, COLUMNS,
                            _fmt, "64x64 inputs, NCHW (CPU / CI smoke run)",
                            f"comma-separated, of {', '.join(MODELS)} (default: all)")


if __name__ == "__main__":
    sys.exit(main())
