"""Model benchmarks: ``python -m benchmarks.models [--quick] [--models fcn8s,...] [--out DIR]``;
``--ddp [--nproc N]``: the training steps' data-parallel scaling under torchrun (``benchmarks.ddp``).

For each model case (REFERENCE shapes: FCN-8s 500x500 batch 1 and 8, EDSR x4 on 48x48 LR patches
batch 16 (training) and a 256x256 LR image (inference), Dilation8 at VOC's deploy size, SegNet
360x480 batch 4, with int64 and with compact uint8 pooling indices: compare their peak memory,
U-Net on the paper's 572x572 tile and the padded form at 4x512x512, DeepLabv3+ (ResNet-50) at
513x513, output stride 16 batch 8 and 8 batch 1, DnCNN on the paper's 128 x 40x40 training
patches and a 481x321 BSD68 image, the See-in-the-Dark U-Net on a 512x512 packed patch and a
full 1424x2128 packed Sony frame, Panoptic FPN's semantic branch (ResNet-50-FPN) on two
800x1344 COCO-sized images) it compares, side by side, in one run:

* "pydense": the model with ``backend="auto"`` (fused pydense ops, each on its tuned backend),
* "eager": the same state_dict with ``backend="torch"`` (stock PyTorch; cuDNN on GPU),
* "compile": ``torch.compile`` of the eager model (``mode="max-autotune-no-cudagraphs"`` on CUDA,
  the default mode on CPU; ``fullgraph=True``; not in --quick runs, whose compile time on CPU
  would dominate),

in "infer" (``torch.no_grad()``, eval mode) and "train" (forward, loss, backward and an SGD
step with learning rate 0, so every provider keeps the same weights; train mode) modes, fp32 and bf16 autocast, NCHW and channels_last. Reported: median time
(``triton.testing.do_bench`` on CUDA, timeit on CPU), images/s, peak memory (CUDA: the
allocator's peak over one call, after a reset) and the speedup vs eager; "check" compares the
pydense and compiled inference outputs with eager's (rtol = atol = 1e-3 scaled by the output's
magnitude in fp32, 5e-2 in bf16).
"""
import sys

import torch
import torch.nn.functional as F

from pydense import models

from . import common

COLUMNS = ("model", "case", "mode", "dtype", "layout", "provider", "median_ms", "images/s",
           "peak_MiB", "speedup_vs_eager", "check", "notes")


def _cases(quick, device):
    """(name, factory, kwargs, input shape, modes, loss kind)."""
    gpu = device.type == "cuda" and not quick
    cases = []
    if gpu:
        for n in (1, 8):
            cases.append(("fcn8s", models.fcn8s, {}, (n, 3, 500, 500), ("infer", "train"), "seg"))
        cases.append(("edsr_baseline_x4", models.edsr_baseline, {"scale": 4}, (16, 3, 48, 48), ("train",), "sr"))
        cases.append(("edsr_baseline_x4", models.edsr_baseline, {"scale": 4}, (1, 3, 256, 256), ("infer",), "sr"))
        cases.append(("edsr_x4", models.edsr, {"scale": 4}, (1, 3, 256, 256), ("infer",), "sr"))
        cases.append(("dilation8", models.dilation8, {}, (1, 3, 900, 900), ("infer",), "seg"))
        cases.append(("segnet", models.segnet, {}, (4, 3, 360, 480), ("infer", "train"), "seg"))
        cases.append(("segnet_compact", models.segnet, {"compact_indices": True}, (4, 3, 360, 480),
                      ("infer", "train"), "seg"))
        cases.append(("unet", models.unet, {}, (1, 1, 572, 572), ("infer", "train"), "seg"))
        cases.append(("deeplabv3plus_os16", models.deeplabv3plus, {}, (8, 3, 513, 513),
                      ("infer", "train"), "seg"))
        cases.append(("deeplabv3plus_os8", models.deeplabv3plus, {"output_stride": 8}, (1, 3, 513, 513),
                      ("infer",), "seg"))
        cases.append(("dncnn", models.dncnn, {}, (128, 1, 40, 40), ("train",), "sr"))
        cases.append(("dncnn", models.dncnn, {}, (1, 1, 481, 321), ("infer",), "sr"))
        cases.append(("see_in_the_dark", models.see_in_the_dark, {}, (1, 4, 512, 512), ("train",), "sr"))
        cases.append(("see_in_the_dark", models.see_in_the_dark, {}, (1, 4, 1424, 2128), ("infer",), "sr"))
        cases.append(("panoptic_fpn", models.panoptic_fpn, {}, (2, 3, 800, 1344), ("infer", "train"), "seg"))
        cases.append(("unet_padded", models.unet, {"in_channels": 3, "variant": "padded"},
                      (4, 3, 512, 512), ("infer", "train"), "seg"))
    else:  # CPU / CI smoke: small sizes
        cases.append(("edsr_baseline_x4", models.edsr_baseline, {"scale": 4}, (1, 3, 16, 16), ("infer", "train"), "sr"))
        cases.append(("context_basic", models.context_module, {"kind": "basic"}, (1, 21, 24, 24), ("infer", "train"), "seg"))
        cases.append(("unet_padded", models.unet, {"in_channels": 3, "variant": "padded"},
                      (1, 3, 32, 32), ("infer", "train"), "seg"))
        if not quick:
            cases.append(("fcn8s", models.fcn8s, {}, (1, 3, 128, 128), ("infer",), "seg"))
    return cases


def _loss(kind, out):
    if kind == "sr":
        return F.l1_loss(out.float(), torch.zeros_like(out, dtype=torch.float32))
    target = torch.zeros(out.shape[0], *out.shape[2:], dtype=torch.long, device=out.device)
    return F.cross_entropy(out.float(), target)


def _peak_mib(fn, device):
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) / 2**20


def run(quick, device, wanted=None, log=None, *, cases=None, layouts=None, dtypes=None,
        compile_mode="auto", compile_backend="inductor", with_compile=None, warm=False):
    """Rows of the model benchmark. The keywords narrow it (the headline tier): ``cases`` as
    ``_cases`` gives them, ``layouts``/``dtypes``, ``compile_mode`` (None: the default mode),
    ``with_compile`` (default: not in quick runs), ``warm``: run each provider's step once
    (compiles, Triton kernels) without checks or timing, and return no rows."""
    rows = []
    if layouts is None:
        layouts = ("nchw",) if quick else ("nchw", "channels_last")
    if dtypes is None:
        dtypes = (torch.float32, torch.bfloat16) if device.type == "cuda" and not quick else (torch.float32,)
    if compile_mode == "auto":
        compile_mode = "max-autotune-no-cudagraphs" if device.type == "cuda" else None
    if with_compile is None:
        with_compile = not quick
    for name, factory, kwargs, shape, modes, kind in (_cases(quick, device) if cases is None else cases):
        if wanted and name not in wanted:
            continue
        torch.manual_seed(0)
        fused = factory(**kwargs, backend="auto").to(device)
        # the stock model has no compact indices: its peak memory is the int64-index baseline
        eager = factory(**{k: v for k, v in kwargs.items() if k != "compact_indices"},
                        backend="torch").to(device)
        eager.load_state_dict(fused.state_dict())
        for layout in layouts:
            fmt = common.LAYOUTS[layout]
            fused, eager = fused.to(memory_format=fmt), eager.to(memory_format=fmt)
            x = torch.randn(shape, device=device).abs().contiguous(memory_format=fmt)
            torch._dynamo.reset()
            providers = [("pydense", fused)] + ([] if warm else [("eager", eager)])
            if with_compile:
                providers.append(("compile", torch.compile(eager, fullgraph=True, mode=compile_mode,
                                                           backend=compile_backend)))
            for dtype in dtypes:
                amp = dict(device_type=device.type, dtype=dtype, enabled=dtype != torch.float32)
                for mode in modes:
                    case_rows = []
                    for provider, model in providers:
                        if log:
                            log(f"  {name} {tuple(shape)} {mode} {common.dtype_name(dtype)} {layout} {provider}")
                        row = {"model": name, "case": "x".join(map(str, shape)), "mode": mode,
                               "dtype": common.dtype_name(dtype), "layout": layout,
                               "provider": provider, "check": "", "notes": ""}
                        try:
                            if mode == "infer":
                                (fused if provider == "pydense" else eager).eval()

                                def step(model=model):
                                    with torch.no_grad(), torch.autocast(**amp):
                                        return model(x)

                                out = step()
                                if warm:
                                    continue
                                with torch.no_grad(), torch.autocast(**amp):
                                    ref = eager.eval()(x)
                                tol = (1e-3 if dtype == torch.float32 else 5e-2) * max(1.0, ref.abs().max().item())
                                ok = torch.allclose(out.float(), ref.float(), rtol=tol, atol=tol)
                                row["check"] = "ok" if ok else "FAILED"
                            else:
                                (fused if provider == "pydense" else eager).train()
                                params = [p for p in (fused if provider == "pydense" else eager).parameters()
                                          if p.requires_grad]
                                opt = torch.optim.SGD(params, lr=0.0)

                                def step(model=model, opt=opt):
                                    opt.zero_grad(set_to_none=True)
                                    with torch.autocast(**amp):
                                        loss = _loss(kind, model(x))
                                    loss.backward()
                                    opt.step()

                                step()
                                if warm:
                                    continue
                                row["check"] = "ran"
                            ms = common.bench_ms(step, device)
                            row.update({"median_ms": ms, "images/s": shape[0] / (ms * 1e-3),
                                        "peak_MiB": _peak_mib(step, device)})
                        except Exception as e:  # noqa: BLE001 - reported, not fatal
                            row.update({"check": "ERROR", "notes": common._error_text(e)})
                            if warm:
                                print(f"warm {name} {mode} {provider}: {row['notes']}", file=sys.stderr)
                                continue
                        case_rows.append(row)
                    base = next((r.get("median_ms") for r in case_rows if r["provider"] == "eager"), None)
                    for r in case_rows:
                        r["speedup_vs_eager"] = base / r["median_ms"] if base and r.get("median_ms") else None
                    rows += case_rows
        del fused, eager, providers
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


_fmt = common.cell_formatter({"median_ms": "{:.4g}", "images/s": "{:.4g}", "peak_MiB": "{:.0f}",
                              "speedup_vs_eager": "{:.2f}x"})


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--ddp" in argv:  # data-parallel scaling: benchmarks.ddp
        from . import ddp

        return ddp.main([a for a in argv if a != "--ddp"])
    return common.model_cli(argv, __doc__, "python -m benchmarks.models", "pydense model benchmarks",
                            "models.csv", run, COLUMNS, _fmt, "small sizes, fp32 (CPU / CI smoke run)",
                            "comma-separated model names (default: all)")


if __name__ == "__main__":
    sys.exit(main())
