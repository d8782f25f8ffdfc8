"""Synthetic COCO panoptic data and a straightforward Panoptic Quality reference.

``reference_pq`` follows the rules of panopticapi's ``pq_compute`` literally, one image at a time,
with Python dicts over the distinct (gt id, pred id) pairs of ``numpy.unique`` — the way
panopticapi does it — independently of pydense's vectorised implementation. Also used by the PQ
benchmark as the "straightforward" baseline.
"""
import json
import os

import numpy as np

VOID = 0
OFFSET = 256 * 256 * 256


class ReferenceFormatError(KeyError):
    pass


def reference_image_stats(gt, pred, gt_segments, pred_segments, categories, stats, image_id=0):
    """Add one image to ``stats`` {category: [iou_sum, tp, fp, fn]}; gt/pred: (H, W) int ids."""
    gt_by_id = {}
    for s in gt_segments:
        gt_by_id[s["id"]] = s
    pred_by_id = {}
    for s in pred_segments:
        pred_by_id[s["id"]] = dict(s)
    remaining = set(pred_by_id)
    ids, counts = np.unique(pred, return_counts=True)
    for u, c in zip(ids.tolist(), counts.tolist()):
        if u not in pred_by_id:
            if u == VOID:
                continue
            raise ReferenceFormatError(f"image {image_id}: PNG id {u} not in JSON")
        pred_by_id[u]["area"] = c
        remaining.discard(u)
        if pred_by_id[u]["category_id"] not in categories:
            raise ReferenceFormatError(f"image {image_id}: id {u} unknown category")
    if remaining:
        raise ReferenceFormatError(f"image {image_id}: JSON ids {sorted(remaining)} not in PNG")

    keys = gt.astype(np.uint64) * OFFSET + pred.astype(np.uint64)
    ks, kc = np.unique(keys, return_counts=True)
    inter = {(int(k) // OFFSET, int(k) % OFFSET): int(c) for k, c in zip(ks, kc)}

    def stat(cat):
        return stats.setdefault(cat, [0.0, 0, 0, 0])

    gt_hit, pred_hit = set(), set()
    for (g, p), n in inter.items():
        if g not in gt_by_id or p not in pred_by_id:
            continue
        gs, ps = gt_by_id[g], pred_by_id[p]
        if gs["iscrowd"] == 1 or gs["category_id"] != ps["category_id"]:
            continue
        union = ps["area"] + gs["area"] - n - inter.get((VOID, p), 0)
        iou = n / union
        if iou > 0.5:
            stat(gs["category_id"])[0] += iou
            stat(gs["category_id"])[1] += 1
            gt_hit.add(g)
            pred_hit.add(p)
    crowd_of = {}
    for g, gs in gt_by_id.items():
        if g in gt_hit:
            continue
        if gs["iscrowd"] == 1:
            crowd_of[gs["category_id"]] = g
            continue
        stat(gs["category_id"])[3] += 1
    for p, ps in pred_by_id.items():
        if p in pred_hit:
            continue
        covered = inter.get((VOID, p), 0)
        if ps["category_id"] in crowd_of:
            covered += inter.get((crowd_of[ps["category_id"]], p), 0)
        if covered / ps["area"] > 0.5:
            continue
        stat(ps["category_id"])[2] += 1
    return stats


def reference_average(stats, categories):
    out = {}
    for name, isthing in (("All", None), ("Things", True), ("Stuff", False)):
        pq = sq = rq = 0.0
        n = 0
        per = {}
        for cat, info in categories.items():
            if isthing is not None and (info["isthing"] == 1) != isthing:
                continue
            iou, tp, fp, fn = stats.get(cat, [0.0, 0, 0, 0])
            if tp + fp + fn == 0:
                per[cat] = {"pq": 0.0, "sq": 0.0, "rq": 0.0}
                continue
            n += 1
            per[cat] = {"pq": iou / (tp + 0.5 * fp + 0.5 * fn), "sq": iou / tp if tp else 0.0,
                        "rq": tp / (tp + 0.5 * fp + 0.5 * fn)}
            pq, sq, rq = pq + per[cat]["pq"], sq + per[cat]["sq"], rq + per[cat]["rq"]
        out[name] = {"pq": pq / n, "sq": sq / n, "rq": rq / n, "n": n} if n else \
            {"pq": float("nan"), "sq": float("nan"), "rq": float("nan"), "n": 0}
        if name == "All":
            out["per_class"] = per
    return out


def reference_pq(images, categories):
    """images: [(gt ids, pred ids, gt segments, pred segments)]; categories: {id: info}."""
    stats = {}
    for i, (gt, pred, gs, ps) in enumerate(images):
        reference_image_stats(np.asarray(gt), np.asarray(pred), gs, ps, categories, stats, i)
    return reference_average(stats, categories), stats


def make_categories(n_things=5, n_stuff=4):
    return {c: {"id": c, "name": f"c{c}", "isthing": 1 if c <= n_things else 0}
            for c in range(1, n_things + n_stuff + 1)}


def _paint(rng, h, w, n, ids, img):
    """Paint n random rectangles with the given ids (later ones overwrite earlier ones)."""
    rects = []
    for k in range(n):
        rh, rw = rng.integers(1, max(2, h // 2) + 1), rng.integers(1, max(2, w // 2) + 1)
        y, x = rng.integers(0, h - rh + 1), rng.integers(0, w - rw + 1)
        img[y:y + rh, x:x + rw] = ids[k]
        rects.append((y, x, rh, rw))
    return rects


def random_image(rng, h, w, n_segments, categories, crowd=0.15, void=0.3):
    """A ground-truth and a predicted id map with segment lists: jittered copies of the ground
    truth's rectangles (some with the wrong category, some missed), extra predictions, VOID."""
    cats = sorted(categories)
    gt = np.zeros((h, w), dtype=np.int64)
    gt_ids = rng.choice(OFFSET - 1, size=n_segments, replace=False) + 1
    rects = _paint(rng, h, w, n_segments, gt_ids, gt)
    if rng.random() < void:  # a VOID rectangle on top
        _paint(rng, h, w, 1, [VOID], gt)
    gcat = {int(i): int(rng.choice(cats)) for i in gt_ids}
    present, counts = np.unique(gt, return_counts=True)
    gt_segments = [{"id": int(i), "category_id": gcat[int(i)], "iscrowd": int(rng.random() < crowd),
                    "area": int(c), "bbox": [0, 0, 1, 1]}
                   for i, c in zip(present, counts) if i != VOID]
    rng.shuffle(gt_segments)

    pred = np.zeros((h, w), dtype=np.int64)
    pred_ids = rng.choice(OFFSET - 1, size=2 * n_segments + 2, replace=False) + 1
    pcat, k = {}, 0
    for (y, x, rh, rw), gid in zip(rects, gt_ids):
        if rng.random() < 0.15:  # missed
            continue
        dy, dx = rng.integers(-rh // 3 - 1, rh // 3 + 2), rng.integers(-rw // 3 - 1, rw // 3 + 2)
        y0, x0 = max(0, y + dy), max(0, x + dx)
        pred[y0:y + dy + rh, x0:x + dx + rw] = pred_ids[k]
        pcat[int(pred_ids[k])] = gcat[int(gid)] if rng.random() < 0.8 else int(rng.choice(cats))
        k += 1
    extra = int(rng.integers(0, 3))
    _paint(rng, h, w, extra, pred_ids[k:k + extra], pred)
    for i in pred_ids[k:k + extra]:
        pcat[int(i)] = int(rng.choice(cats))
    present = np.unique(pred)
    pred_segments = [{"id": int(i), "category_id": pcat[int(i)]} for i in present if i != VOID]
    rng.shuffle(pred_segments)
    return gt, pred, gt_segments, pred_segments


def id2rgb(ids):
    ids = np.asarray(ids, dtype=np.int64)
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536 % 256], axis=-1).astype(np.uint8)


def write_dataset(root, images, categories):
    """COCO panoptic gt/pred JSON + PNG folders under root; returns the four paths."""
    from PIL import Image

    paths = {}
    for side in ("gt", "pred"):
        folder = os.path.join(root, side)
        os.makedirs(folder, exist_ok=True)
        anns = []
        for i, img in enumerate(images):
            ids, segs = (img[0], img[2]) if side == "gt" else (img[1], img[3])
            name = f"{i:06d}.png"
            Image.fromarray(id2rgb(ids)).save(os.path.join(folder, name))
            anns.append({"image_id": i, "file_name": name, "segments_info": segs})
        doc = {"annotations": anns}
        if side == "gt":
            doc["categories"] = list(categories.values())
            doc["images"] = [{"id": i, "file_name": f"{i:06d}.jpg", "height": int(img[0].shape[0]),
                              "width": int(img[0].shape[1])} for i, img in enumerate(images)]
        path = os.path.join(root, f"{side}.json")
        with open(path, "w") as f:
            json.dump(doc, f)
        paths[side] = (path, folder)
    return paths["gt"][0], paths["gt"][1], paths["pred"][0], paths["pred"][1]
