"""Panoptic FPN end to end, from random weights to a COCO panoptic PNG + JSON that the COCO
evaluator scores (no downloads: a synthetic scene stands in for COCO).

    python examples/panoptic_fpn.py [--out panoptic_fpn_demo] [--device cpu]

1. A few synthetic images with COCO-style ground truth: stuff (sky, grass, road) and things
   (persons, cars), written as COCO panoptic PNGs + JSON.
2. pydense.models.panoptic_fpn (random weights) gives the semantic logits (53 stuff classes + 1
   "things" class in COCO; here 3 + 1); a stand-in detector gives the instances (the ground-truth
   things, jittered, with scores, plus a false positive).
3. PanopticFPN.panoptic (pydense.panoptic_fusion.fuse, the paper's heuristic) makes each image's
   panoptic map; the predictions are written as COCO panoptic PNGs + JSON.
4. python -m pydense.metrics.pq scores them: things match (the detector is nearly right), stuff
   does not (the semantic weights are random): PQ shows both.
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
import torch

import pydense
from pydense.panoptic_fusion import id2rgb

CATEGORIES = [{"id": 1, "name": "person", "isthing": 1}, {"id": 2, "name": "car", "isthing": 1},
              {"id": 3, "name": "sky", "isthing": 0}, {"id": 4, "name": "grass", "isthing": 0},
              {"id": 5, "name": "road", "isthing": 0}]
STUFF_IDS = {1: 3, 2: 4, 3: 5}  # semantic class -> COCO category (class 0: all things)
H, W = 128, 192


def scene(rng):
    """Ground truth: an id map, its segments, and the things' masks and classes."""
    ids = np.zeros((H, W), np.int64)
    ids[: H // 3] = 1001          # sky
    ids[H // 3: 2 * H // 3] = 1002  # grass
    ids[2 * H // 3:] = 1003        # road
    segments = [{"id": 1001, "category_id": 3}, {"id": 1002, "category_id": 4},
                {"id": 1003, "category_id": 5}]
    masks, classes = [], []
    for k in range(int(rng.integers(2, 5))):
        cat = int(rng.integers(1, 3))
        h, w = int(rng.integers(20, 40)), int(rng.integers(15, 40))
        y, x = int(rng.integers(0, H - h)), int(rng.integers(0, W - w))
        sid = 1 + k
        ids[y:y + h, x:x + w] = sid
        segments.append({"id": sid, "category_id": cat})
        classes.append(cat)
    for s in segments:
        s.update({"iscrowd": 0, "area": int((ids == s["id"]).sum())})
    segments = [s for s in segments if s["area"] > 0]
    masks = [torch.from_numpy(ids == s["id"]) for s in segments if s["id"] < 1000]
    classes = [s["category_id"] for s in segments if s["id"] < 1000]
    return ids, segments, masks, classes


def write(folder, name, ids):
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    Image.fromarray(id2rgb(torch.as_tensor(ids)).numpy()).save(os.path.join(folder, name))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="panoptic_fpn_demo")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--images", type=int, default=4)
    a = p.parse_args()
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    device = torch.device(a.device)
    model = pydense.models.panoptic_fpn(num_classes=4).to(device).eval()
    gt_anns, pred_anns = [], []
    for i in range(a.images):
        ids, segments, masks, classes = scene(rng)
        name = f"{i:06d}.png"
        write(os.path.join(a.out, "gt"), name, ids)
        gt_anns.append({"image_id": i, "file_name": name, "segments_info": segments})
        # the stand-in detector: the true things shifted by a pixel or two, and a false positive
        det = [torch.roll(m, shifts=(int(rng.integers(-2, 3)), int(rng.integers(-2, 3))), dims=(0, 1))
               for m in masks]
        fp = torch.zeros(H, W, dtype=torch.bool)
        fp[5:25, 5:30] = True
        det_masks = torch.stack(det + [fp]).to(device)
        scores = torch.tensor([0.9 - 0.05 * k for k in range(len(det))] + [0.6])
        det_classes = torch.tensor(classes + [1])
        image = torch.randn(1, 3, H, W, device=device)
        with torch.no_grad():
            logits = model(image)[0]
        pan, info = model.panoptic(logits, det_masks, scores, det_classes, thing_ids={0},
                                   stuff_ids=STUFF_IDS, stuff_area_threshold=64)
        write(os.path.join(a.out, "pred"), name, pan.cpu())
        pred_anns.append({"image_id": i, "file_name": name, "segments_info": [
            {"id": s["id"], "category_id": s["category_id"]} for s in info]})
    images = [{"id": i, "file_name": f"{i:06d}.jpg", "height": H, "width": W} for i in range(a.images)]
    with open(os.path.join(a.out, "gt.json"), "w") as f:
        json.dump({"annotations": gt_anns, "categories": CATEGORIES, "images": images}, f)
    with open(os.path.join(a.out, "pred.json"), "w") as f:
        json.dump({"annotations": pred_anns}, f)
    print(f"wrote {a.images} ground-truth and predicted panoptic PNGs + JSON under {a.out}/")
    cmd = [sys.executable, "-m", "pydense.metrics.pq", "--gt-json", os.path.join(a.out, "gt.json"),
           "--pred-json", os.path.join(a.out, "pred.json"), "--workers", "0", "--device", a.device,
           "--output", os.path.join(a.out, "pq.json")]
    print("$ python -m pydense.metrics.pq --gt-json ... --pred-json ...")
    return subprocess.run(cmd).returncode


if __name__ == "__main__":
    sys.exit(main())
