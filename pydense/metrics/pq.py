"""COCO panoptic evaluation from the command line (the inputs and output of panopticapi's
``pq_compute``)::

    python -m pydense.metrics.pq --gt-json panoptic_val2017.json --gt-folder panoptic_val2017 \\
        --pred-json predictions.json --pred-folder predictions [--device cuda] [--workers 8]

Ground truth and predictions are COCO panoptic annotations: a JSON file with ``annotations`` (one
per image: ``image_id``, ``file_name`` of a PNG, ``segments_info``) and, for the ground truth,
``categories``; the PNGs encode segment ids as ``R + 256 G + 256^2 B``. Every ground-truth image
needs a prediction (predictions of other images are ignored). PNGs are decoded in ``--workers``
processes; the pairwise counting runs on ``--device``. Prints panopticapi's table and, with
``--output``, writes the result dict as JSON. Needs Pillow and numpy.

On several processes, launched by ``torchrun`` (one node or many)::

    torchrun --nproc-per-node 8 -m pydense.metrics.pq --gt-json ... --pred-json ...

each rank reads and counts every N-th image (its shard; on GPUs, on ``cuda:LOCAL_RANK``, NCCL),
the integer counts are summed across ranks (the result equals one process's exactly), and rank 0
prints the table and writes ``--output``. An error in any rank's shard (a malformed prediction)
is raised on every rank: the one of the first bad image in the annotations' order, as one
process would report it.
"""
import argparse
import json
import os
import sys
import time

import torch

from .. import distributed as _dist
from .panoptic_eval import PanopticFormatError, PanopticQuality

__all__ = ["evaluate", "format_results", "main"]


class _Pairs(torch.utils.data.Dataset):
    """(gt colours, pred colours) uint8 (H, W, 3) tensors of the matched annotations."""

    def __init__(self, pairs, gt_folder, pred_folder):
        self.pairs, self.gt_folder, self.pred_folder = pairs, gt_folder, pred_folder

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, i):
        gt_ann, pred_ann = self.pairs[i]
        return (_read_png(os.path.join(self.gt_folder, gt_ann["file_name"])),
                _read_png(os.path.join(self.pred_folder, pred_ann["file_name"])))


def _read_png(path):
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        a = np.array(im)
    if a.ndim != 3 or a.shape[2] < 3 or a.dtype != np.uint8:
        raise ValueError(f"{path}: a COCO panoptic PNG must be 8-bit RGB, got an array of shape "
                         f"{a.shape} and dtype {a.dtype}")
    return torch.from_numpy(np.ascontiguousarray(a[:, :, :3]))


def _load(path):
    with open(path) as f:
        return json.load(f)


def evaluate(gt_json, pred_json, gt_folder=None, pred_folder=None, *, device=None,
             backend="auto", workers=None, group=None):
    """panopticapi's ``pq_compute(gt_json, pred_json, gt_folder, pred_folder)`` on ``device``
    ("cuda" when available, else "cpu"). Folders default to the JSON path without ``.json``.
    Returns its result dict (see :class:`pydense.metrics.PanopticQuality`).

    With an initialised process group (``group``, default the world), a collective: each rank
    evaluates every N-th image and every rank returns the result over all of them."""
    gt = _load(gt_json)
    pred = _load(pred_json)
    gt_folder = gt_folder or gt_json.replace(".json", "")
    pred_folder = pred_folder or pred_json.replace(".json", "")
    for folder, name in ((gt_folder, "gt_folder"), (pred_folder, "pred_folder")):
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"{name} {folder!r} is not a folder")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    pred_by_image = {a["image_id"]: a for a in pred["annotations"]}
    pairs = []
    for a in gt["annotations"]:
        if a["image_id"] not in pred_by_image:
            raise PanopticFormatError(f"no prediction for the image with id: {a['image_id']}")
        pairs.append((a, pred_by_image[a["image_id"]]))
    meter = PanopticQuality(gt["categories"], backend=backend)
    rank, world = _dist.rank(group), _dist.world_size(group)
    shard = list(range(rank, len(pairs), world))  # positions in the annotations' order
    workers = min(8, os.cpu_count() or 1) if workers is None else workers
    loader = torch.utils.data.DataLoader(_Pairs([pairs[i] for i in shard], gt_folder, pred_folder),
                                         batch_size=None, num_workers=workers,
                                         pin_memory=device.type == "cuda")
    error, done = None, 0
    try:
        for gt_rgb, pred_rgb in loader:
            gt_ann, pred_ann = pairs[shard[done]]
            if gt_rgb.shape != pred_rgb.shape:
                raise ValueError(f"image {gt_ann['image_id']}: ground truth {gt_ann['file_name']} "
                                 f"is {tuple(gt_rgb.shape[:2])} but the prediction "
                                 f"{pred_ann['file_name']} is {tuple(pred_rgb.shape[:2])}")
            meter.update(pred_rgb.to(device, non_blocking=True),
                         gt_rgb.to(device, non_blocking=True), pred_ann["segments_info"],
                         gt_ann["segments_info"], image_ids=[gt_ann["image_id"]])
            done += 1
    except (PanopticFormatError, FileNotFoundError, ValueError) as e:
        if not _dist.is_distributed(group):
            raise
        error = (shard[done], e)  # the image being read or counted
    if _dist.is_distributed(group):
        _raise_first_error(error, group)
    return meter.compute(group=group)


def _raise_first_error(error, group):
    """Every rank raises the error of the first bad image over all ranks' shards, if any."""
    import torch.distributed as dist

    found = [None] * _dist.world_size(group)
    mine = None if error is None else (error[0], type(error[1]).__name__, str(error[1]))
    dist.all_gather_object(found, mine, group=group)
    found = sorted(f for f in found if f is not None)
    if not found:
        return
    _, kind, message = found[0]
    if error is not None and error[0] == found[0][0]:
        raise error[1]
    kinds = {"PanopticFormatError": PanopticFormatError, "FileNotFoundError": FileNotFoundError}
    raise kinds.get(kind, ValueError)(message)


def format_results(results):
    """panopticapi's printed table."""
    lines = ["{:10s}| {:>5s}  {:>5s}  {:>5s} {:>5s}".format("", "PQ", "SQ", "RQ", "N"),
             "-" * (10 + 7 * 4)]
    for name in ("All", "Things", "Stuff"):
        r = results[name]
        lines.append("{:10s}| {:5.1f}  {:5.1f}  {:5.1f} {:5d}".format(
            name, 100 * r["pq"], 100 * r["sq"], 100 * r["rq"], r["n"]))
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m pydense.metrics.pq", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gt-json", required=True, help="ground-truth COCO panoptic JSON")
    p.add_argument("--gt-folder", help="ground-truth PNG folder (default: the JSON path without "
                   ".json)")
    p.add_argument("--pred-json", required=True, help="prediction COCO panoptic JSON")
    p.add_argument("--pred-folder", help="prediction PNG folder (default: the JSON path without "
                   ".json)")
    p.add_argument("--device", help="where the counting runs (default: cuda if available)")
    p.add_argument("--backend", default="auto", choices=["auto", "triton", "cuda", "cpu", "torch"])
    p.add_argument("--workers", type=int, help="PNG decoding processes (default: min(8, CPUs))")
    p.add_argument("--output", help="also write the results as JSON here")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    started = not _dist.is_distributed()
    device = _dist.init_from_env(device)  # under torchrun: this rank's device, the process group
    try:
        return _main(a, device, t0)
    finally:
        if started and _dist.is_distributed():
            import torch.distributed as dist

            dist.destroy_process_group()


def _main(a, device, t0):
    try:
        results = evaluate(a.gt_json, a.pred_json, a.gt_folder, a.pred_folder, device=device,
                           backend=a.backend, workers=a.workers)
    except (PanopticFormatError, FileNotFoundError, ValueError) as e:
        if _dist.is_main():
            print(f"error: {e}", file=sys.stderr)
        return 2
    if not _dist.is_main():
        return 0
    if _dist.is_distributed():
        print(f"{_dist.world_size()} processes")
    print(format_results(results))
    print(f"Time elapsed: {time.perf_counter() - t0:0.2f} seconds")
    if a.output:
        with open(a.output, "w") as f:
            json.dump({k: ({str(c): v for c, v in r.items()} if k == "per_class" else r)
                       for k, r in results.items()}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
