"""Panoptic Quality benchmark: ``python -m benchmarks.panoptic_quality [--quick] [--device cuda]``.

A synthetic COCO-sized evaluation set (500 images of 640x480 with 20-60 segments each, VOID and
crowd regions, jittered and missed predictions; --quick: 8 images of 160x120), already decoded into
int32 id maps (PNG decoding is the same for everyone and left out). Side by side, in one run:

* "reference": the straightforward implementation of panopticapi's rules (numpy.unique of
  gt * 2^24 + pred keys and Python dicts, one image at a time, on the CPU — what panopticapi's
  per-process loop does);
* "pydense-<backend>": :class:`pydense.metrics.PanopticQuality` on the device, one image per
  update ("per-image") and 50 images per update ("batched", one pair-count launch);

Reported: images/s (whole-set passes; median of 3, 1 for the reference) and the speedup over the
reference. Every pydense row's PQ/SQ/RQ is checked against the reference. The pair-count kernel
alone (GB/s, fraction of the copy bandwidth) is in ``python -m benchmarks --ops
panoptic_pair_counts``.
"""
import argparse
import os
import sys
import time

import numpy as np
import torch

from pydense.metrics import PanopticQuality

from . import common

sys.path.insert(0, os.path.join(common.REPO_ROOT, "tests"))
from panoptic_data import make_categories, random_image, reference_pq  # noqa: E402

COLUMNS = ("case", "mode", "provider", "images", "images/s", "speedup_vs_reference", "check")
BATCH = 50


def dataset(quick, seed=0):
    rng = np.random.default_rng(seed)
    n, h, w = (8, 120, 160) if quick else (500, 480, 640)
    cats = make_categories(80, 53)  # COCO panoptic: 80 thing and 53 stuff categories
    imgs = []
    for _ in range(n):
        gt, pred, gs, ps = random_image(rng, h, w, int(rng.integers(20, 61)), cats)
        imgs.append((gt.astype(np.int32), pred.astype(np.int32), gs, ps))
    return imgs, cats


def _passes(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _same(got, want):
    return all(got[k]["n"] == want[k]["n"] and all(
        abs(got[k][m] - want[k][m]) <= 1e-9 for m in ("pq", "sq", "rq"))
        for k in ("All", "Things", "Stuff"))


def backends(device):
    return ["triton", "cuda", "torch"] if device.type == "cuda" else ["cpu", "torch"]


def run(quick, device, log=None):
    imgs, cats = dataset(quick)
    n = len(imgs)
    h, w = imgs[0][0].shape
    case = f"{n} x {h}x{w}"
    rows = []
    start = time.perf_counter()
    want, _ = reference_pq(imgs, cats)
    ref_s = time.perf_counter() - start
    rows.append({"case": case, "mode": "per-image", "provider": "reference", "images": n,
                 "images/s": n / ref_s, "check": "ref"})
    gts = [torch.from_numpy(i[0]).to(device) for i in imgs]
    preds = [torch.from_numpy(i[1]).to(device) for i in imgs]
    batches = [(torch.stack(preds[b:b + BATCH]), torch.stack(gts[b:b + BATCH]),
                [i[3] for i in imgs[b:b + BATCH]], [i[2] for i in imgs[b:b + BATCH]])
               for b in range(0, n, BATCH)]
    for backend in backends(device):
        for mode in ("per-image", "batched"):
            def once():
                meter = PanopticQuality(cats, backend=backend)
                if mode == "per-image":
                    for g, p, (_, _, gs, ps) in zip(gts, preds, imgs):
                        meter.update(p, g, ps, gs)
                else:
                    for b in batches:
                        meter.update(*b)
                return meter.compute()
            try:
                got = once()  # warm-up (compiles the Triton kernels)
                secs = _passes(once, 1 if quick else 3)
                check = "ok" if _same(got, want) else "FAILED"
                rows.append({"case": case, "mode": mode, "provider": f"pydense-{backend}",
                             "images": n, "images/s": n / secs, "check": check,
                             "speedup_vs_reference": ref_s / secs})
            except Exception as e:  # noqa: BLE001  (report, keep benchmarking the others)
                rows.append({"case": case, "mode": mode, "provider": f"pydense-{backend}",
                             "images": n, "check": f"ERROR {type(e).__name__}: {e}"[:160]})
            if log:
                log(f"{backend} {mode}: {rows[-1]}")

    return rows


_fmt = common.cell_formatter({"images/s": "{:.4g}", "speedup_vs_reference": "{:.2f}x"})


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.panoptic_quality",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 small images (CPU / CI smoke run)")
    common.add_device_and_out(parser, "results root (OUT/<device>/panoptic_quality.csv)")
    args, device, log = common.parse_run_args(parser, argv)
    start = time.perf_counter()
    rows = run(args.quick, device, log)
    common.print_and_write_table(
        f"# pydense Panoptic Quality ({common.device_name(device)}, {'quick' if args.quick else 'full'})",
        rows, COLUMNS, _fmt, os.path.join(args.out, common.device_name(device), "panoptic_quality.csv"),
        start)
    return 1 if any(str(r["check"]).startswith(("FAILED", "ERROR")) for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
