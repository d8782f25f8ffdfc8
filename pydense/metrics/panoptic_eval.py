"""Panoptic Quality (Kirillov et al., "Panoptic Segmentation"), with the rules of panopticapi's
``pq_compute`` (the COCO panoptic evaluation code).

Per image, with segment ids in the PNGs encoded as ``R + 256 G + 256^2 B`` and ``VOID = 0``:

* every pixel is counted into ``counts[gt segment, predicted segment]`` (the pairwise
  intersections; on the GPU, one histogram kernel for a batch of images, ``pydense::
  panoptic_pair_counts``); the predicted areas are its column sums, the ground-truth areas are the
  ``area`` fields of the ground-truth JSON (as panopticapi does: they are not recounted);
* a ground-truth segment and a predicted segment *match* when they have the same category, the
  ground truth is not crowd, and ``IoU = inter / (pred_area + gt_area - inter - void_inter) > 0.5``
  where ``void_inter`` = the predicted segment's pixels on VOID ground truth;
* matches are true positives (their IoU summed per category); unmatched non-crowd ground truth
  segments are false negatives; an unmatched prediction is a false positive unless more than half
  of its area lies on VOID plus the crowd region of its category (the last crowd segment of that
  category in the ground-truth list, as panopticapi's dict does);
* per category (summed over the whole dataset) ``PQ = sum IoU / (TP + FP/2 + FN/2)``,
  ``SQ = sum IoU / TP`` (0 when TP = 0), ``RQ = TP / (TP + FP/2 + FN/2)``; categories with
  TP + FP + FN = 0 are skipped; PQ, SQ, RQ are averaged over All, Things (``isthing == 1``) and
  Stuff categories.

Inconsistent predictions raise :class:`PanopticFormatError` (a ``KeyError``, like panopticapi, and a
``ValueError``) naming the image and the segment id: a PNG id missing from the JSON, a JSON id
missing from the PNG, an unknown ``category_id``. Ground truth is taken as given, as panopticapi
does. One deliberate difference: an average over zero categories (e.g. Stuff when every category
is a thing) is ``nan`` where panopticapi divides by zero.

    >>> import torch
    >>> from pydense.metrics import panoptic_quality
    >>> gt = torch.tensor([[1, 1, 2, 2], [1, 1, 2, 2]])
    >>> pred = torch.tensor([[5, 5, 5, 7], [5, 5, 7, 7]])
    >>> gt_segments = [{"id": 1, "category_id": 1, "iscrowd": 0, "area": 4},
    ...                {"id": 2, "category_id": 2, "iscrowd": 0, "area": 4}]
    >>> pred_segments = [{"id": 5, "category_id": 1}, {"id": 7, "category_id": 2}]
    >>> categories = [{"id": 1, "isthing": 1}, {"id": 2, "isthing": 0}]
    >>> r = panoptic_quality(pred, gt, pred_segments, gt_segments, categories)
    >>> round(r["All"]["pq"], 4), r["All"]["n"], round(r["per_class"][2]["sq"], 4)
    (0.775, 2, 0.75)

Its public names are also in :mod:`pydense.metrics`.
"""
import copy
import math

import torch

from .. import distributed as _dist
from ..ops import panoptic_pairs as _pairs
from ..ops._common import INTEGER_DTYPES
from ..panoptic_fusion import rgb2id

__all__ = ["PanopticFormatError", "PanopticQuality", "panoptic_quality", "OFFSET", "VOID"]

OFFSET = 256 * 256 * 256  # panopticapi's key gt * OFFSET + pred; ids lie in [0, OFFSET)
VOID = 0
_PAD = torch.iinfo(torch.int64).max  # pads the per-image id tables (never a segment id)
_IOU_SCALE = 2 ** 53  # a float64 in [0.5, 1] is an integer number of 2^-53: IoU sums are exact
_LIMB = 26


class PanopticFormatError(KeyError, ValueError):
    """Inconsistent panoptic annotations (a ``KeyError`` as in panopticapi, and a ``ValueError``)."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


def _categories(categories):
    """{category id: info} from a COCO ``categories`` list (or such a dict), in its order."""
    if isinstance(categories, dict):
        cats = {int(k): v for k, v in categories.items()}
    else:
        try:
            cats = {int(el["id"]): el for el in categories}
        except (TypeError, KeyError) as e:
            raise ValueError("categories must be a list of dicts with 'id' and 'isthing' (COCO "
                             "'categories') or a dict {id: {'isthing': 0 or 1}}") from e
    for k, v in cats.items():
        if not isinstance(v, dict) or "isthing" not in v:
            raise ValueError(f"categories: category {k} needs an 'isthing' field (0 or 1), got {v!r}")
    return cats


def _id_maps(x, name):
    """A batch (N, H, W) of id maps from id maps (H, W)/(N, H, W) of an integer dtype other than
    uint8, or COCO colours (H, W, 3)/(N, H, W, 3) uint8."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a Tensor, got {type(x).__name__}")
    if x.dtype == torch.uint8:
        if x.dim() not in (3, 4) or x.shape[-1] != 3:
            raise ValueError(f"{name}: a uint8 tensor must hold COCO colours of shape (H, W, 3) or "
                             f"(N, H, W, 3), got {tuple(x.shape)}")
        x = rgb2id(x)
    elif x.dtype not in INTEGER_DTYPES:
        raise TypeError(f"{name} must hold integer segment ids (or uint8 COCO colours), got "
                        f"{x.dtype}")
    if x.dim() == 2:
        x = x.unsqueeze(0)
    if x.dim() != 3:
        raise ValueError(f"{name} must be (H, W) or (N, H, W) segment ids, got shape "
                         f"{tuple(x.shape)}")
    return x  # the pair-count op reads int32/int64 and converts other integer dtypes


def _segment_lists(segs, n, name):
    """N lists of segment dicts from one list (N = 1) or a list of N lists."""
    if not isinstance(segs, (list, tuple)):
        raise TypeError(f"{name} must be a list of segment dicts (or a list of such lists), got "
                        f"{type(segs).__name__}")
    if n == 1 and all(isinstance(s, dict) for s in segs):
        segs = [segs]
    if len(segs) != n or not all(isinstance(s, (list, tuple)) for s in segs):
        raise ValueError(f"{name} must hold one list of segment dicts per image: {n} image(s), got "
                         f"{len(segs)} entries")
    return segs


def _segments(segs, required, image, name):
    """{id: segment dict} with the semantics of panopticapi's ``{el['id']: el for el in ...}``."""
    out = {}
    for el in segs:
        if not isinstance(el, dict) or any(k not in el for k in required):
            raise ValueError(f"{name} of image {image}: every segment needs the fields "
                             f"{list(required)}, got {el!r}")
        out[int(el["id"])] = el
    return out


class PanopticQuality:
    """Streaming Panoptic Quality: per-category IoU sums and TP/FP/FN counts over a dataset.

    ``update`` takes one image or a batch of equal-size images (their pairwise counting runs in one
    kernel launch); ``compute`` returns panopticapi's result dict::

        {"All": {"pq", "sq", "rq", "n"}, "Things": {...}, "Stuff": {...},
         "per_class": {category_id: {"pq", "sq", "rq"}}}

    Every sum is kept in integers: TP/FP/FN counts, and each category's IoU sum in units of
    2^-53 (a matched IoU lies in (0.5, 1], where float64 has exactly that resolution, so each one
    converts exactly and the sum is exact; ``stats``/``compute`` round it to float64 once). The
    result therefore does not depend on the order or the grouping of the images. On several
    processes (``torch.distributed``, e.g. under ``torchrun``) each rank updates with its shard
    of the images and ``compute()`` sums the ranks' integers (one all-reduce): it equals one
    process's result over all the images, exactly. Every rank must then call ``compute()`` (a
    collective); ``compute(sync=False)`` reads the local shard only.

    Args:
        categories: COCO ``categories`` (list of dicts with ``id`` and ``isthing``) or a dict
            ``{id: {"isthing": 0 or 1}}``; averages run over these, in this order.
        backend: of the pair-count kernel: "auto", "triton", "cuda", "cpu" or "torch".
    """

    def __init__(self, categories, *, backend="auto"):
        self.categories = _categories(categories)
        self.backend = backend
        self._index = {c: i for i, c in enumerate(self.categories)}
        self.reset()

    def reset(self):
        k = len(self.categories)
        # the IoU sums in units of 2^-53, split in two int64 limbs (high and low 26 bits of each
        # term) so that no sum can overflow: 2^36 matches per category
        self.iou_hi = torch.zeros(k, dtype=torch.int64)
        self.iou_lo = torch.zeros(k, dtype=torch.int64)
        self.tp = torch.zeros(k, dtype=torch.int64)
        self.fp = torch.zeros(k, dtype=torch.int64)
        self.fn = torch.zeros(k, dtype=torch.int64)
        self.images = 0

    def update(self, pred_panoptic, gt_panoptic, pred_segments, gt_segments, image_ids=None):
        """Add images. ``*_panoptic``: (H, W) or (N, H, W) integer segment ids, or COCO colours
        (H, W, 3) / (N, H, W, 3) uint8, on any device (the counting runs there). ``*_segments``:
        the images' ``segments_info`` lists (one list for one image). Ground-truth segments need
        ``id``, ``category_id``, ``iscrowd``, ``area``; predicted ones ``id`` and ``category_id``.
        ``image_ids`` (optional) name the images in error messages."""
        pred = _id_maps(pred_panoptic, "pred_panoptic")
        gt = _id_maps(gt_panoptic, "gt_panoptic")
        if pred.shape != gt.shape:
            raise ValueError(f"pred_panoptic of shape {tuple(pred.shape)} and gt_panoptic of shape "
                             f"{tuple(gt.shape)} must have the same (N, H, W)")
        if pred.device != gt.device:
            raise ValueError(f"pred_panoptic is on {pred.device} but gt_panoptic is on {gt.device}")
        n = gt.shape[0]
        pred_segments = _segment_lists(pred_segments, n, "pred_segments")
        gt_segments = _segment_lists(gt_segments, n, "gt_segments")
        if image_ids is None:
            image_ids = list(range(self.images, self.images + n))
        elif not isinstance(image_ids, (list, tuple)):
            image_ids = [image_ids]
        if len(image_ids) != n:
            raise ValueError(f"image_ids must name the {n} image(s), got {len(image_ids)}")
        if n == 0:  # an empty batch adds nothing (scores stay nan until some category is seen)
            return self

        gts, preds, gt_tabs, pred_tabs = [], [], [], []
        for i in range(n):
            g = _segments(gt_segments[i], ("id", "category_id", "iscrowd", "area"), image_ids[i],
                          "gt_segments")
            p = _segments(pred_segments[i], ("id", "category_id"), image_ids[i], "pred_segments")
            gts.append(g)
            preds.append(p)
            gt_tabs.append(sorted(set(g) | {VOID}))      # VOID always has a row
            pred_tabs.append(sorted(set(p) | {VOID}))    # and a column (void is not an unknown id)
        counts = _pairs.panoptic_pair_counts(gt, pred, _table(gt_tabs, gt.device),
                                    _table(pred_tabs, gt.device), backend=self.backend).cpu()
        self._add_batch(counts, gts, preds, gt_tabs, pred_tabs, pred, image_ids)
        self.images += n
        return self

    def _add_batch(self, c, gts, preds, gt_tabs, pred_tabs, pred_maps, image_ids):
        """Match and accumulate a batch from its pair counts ``c`` (N, G + 1, P + 1) (CPU): G, P
        are the padded table widths; row G / column P count the ids in no table (unlisted gt ids;
        unlisted predicted ids, an error), the padding rows and columns count nothing."""
        N, G, P = c.shape[0], c.shape[1] - 1, c.shape[2] - 1
        # Per-segment fields as padded (N, G) / (N, P) tensors, from the JSON (Python lists).
        gseg, gcat, gcrowd, garea, vrow = [], [], [], [], []
        pseg, pcat, crow = [], [], []
        for g, p, gt_tab, pred_tab in zip(gts, preds, gt_tabs, pred_tabs):
            ginfo = [g.get(s) for s in gt_tab] + [None] * (G - len(gt_tab))
            gseg.append([x is not None for x in ginfo])
            gcat.append([x["category_id"] if x is not None else -1 for x in ginfo])
            gcrowd.append([x is not None and x["iscrowd"] == 1 for x in ginfo])
            garea.append([float(x["area"]) if x is not None else 0.0 for x in ginfo])
            row_of = {s: i for i, s in enumerate(gt_tab)}
            vrow.append(row_of[VOID])
            crowd_row = {}
            for s, x in g.items():  # in JSON order: the last crowd segment of a category wins
                if x["iscrowd"] == 1:
                    crowd_row[x["category_id"]] = row_of[s]
            pinfo = [p.get(s) for s in pred_tab] + [None] * (P - len(pred_tab))
            pseg.append([x is not None for x in pinfo])
            pcat.append([x["category_id"] if x is not None else -1 for x in pinfo])
            crow.append([crowd_row.get(x["category_id"], G) if x is not None else G for x in pinfo])
        gseg, gcrowd, pseg = (torch.tensor(x, dtype=torch.bool).view(N, -1)
                              for x in (gseg, gcrowd, pseg))
        gslot = self._category_slots(gcat).view(N, G)
        pslot = self._category_slots(pcat).view(N, P)
        gcat = torch.tensor(gcat, dtype=torch.int64).view(N, G)
        pcat = torch.tensor(pcat, dtype=torch.int64).view(N, P)
        garea = torch.tensor(garea, dtype=torch.float64).view(N, G)
        crow = torch.tensor(crow, dtype=torch.int64).view(N, 1, P)

        # --- the prediction's sanity checks, image by image in order
        colsum = c.sum(1)
        parea = colsum[:, :P]
        bad = ((colsum[:, P] > 0) | (pseg & (parea == 0)).any(1)
               | (pseg & (parea > 0) & (pslot < 0)).any(1))
        if bool(bad.any()):
            n = int(bad.nonzero()[0, 0])
            _raise_format_error(colsum[n], preds[n], pred_tabs[n], pred_maps[n], self._index,
                                image_ids[n])

        # --- matching: same category, gt not crowd, IoU > 0.5 (union without the pred's VOID part)
        inter = c[:, :G, :P]
        void = c[torch.arange(N), torch.tensor(vrow), :P]  # (N, P)
        inter_f, parea_f = inter.to(torch.float64), parea.to(torch.float64)
        iou = inter_f / (parea_f[:, None, :] + garea[:, :, None] - inter_f
                         - void.to(torch.float64)[:, None, :])
        match = ((inter > 0) & gseg[:, :, None] & pseg[:, None, :] & ~gcrowd[:, :, None]
                 & (gcat[:, :, None] == pcat[:, None, :]) & (iou > 0.5))
        known = gseg & (gslot >= 0)  # gt of a category outside `categories` is not averaged
        self.tp.index_add_(0, gslot[known], match.sum(2)[known])
        # a gt segment matches at most one prediction: the row sum is that IoU (in (0.5, 1]) or 0
        units = (torch.where(match, iou, 0.0).sum(2)[known] * _IOU_SCALE).to(torch.int64)
        self.iou_hi.index_add_(0, gslot[known], units >> _LIMB)
        self.iou_lo.index_add_(0, gslot[known], units & (2 ** _LIMB - 1))
        fn = known & ~gcrowd & ~match.any(2)
        self.fn.index_add_(0, gslot[fn], torch.ones_like(gslot[fn]))
        # --- false positives, excusing VOID + the category's crowd region over half the area
        on_crowd = torch.gather(c[:, :, :P], 1, crow).squeeze(1)  # row G (no crowd): no pixels
        on_crowd = torch.where(crow.squeeze(1) < G, on_crowd, 0)
        excused = (void + on_crowd).to(torch.float64) / parea_f > 0.5
        fp = pseg & ~match.any(1) & ~excused
        self.fp.index_add_(0, pslot[fp], torch.ones_like(pslot[fp]))

    def _category_slots(self, rows):
        """Slot of each category id of the nested lists ``rows`` (-1: not in ``categories``)."""
        return torch.tensor([self._index.get(k, -1) for row in rows for k in row],
                            dtype=torch.int64)

    @property
    def iou(self):
        """Each category's IoU sum (float64 tensor, each rounded once from the exact sum)."""
        return torch.tensor([self._iou_sum(i) for i in range(len(self.categories))],
                            dtype=torch.float64)

    def _iou_sum(self, i):
        exact = (int(self.iou_hi[i]) << _LIMB) + int(self.iou_lo[i])  # a Python int: no rounding
        return exact / _IOU_SCALE  # int / int: correctly rounded

    def _state(self):
        return [self.iou_hi, self.iou_lo, self.tp, self.fp, self.fn, torch.tensor([self.images])]

    def sync(self, group=None):
        """A new meter holding the sums over every rank in ``group`` (default: the world); this
        one is unchanged. A collective: every rank calls it. Without a process group, a copy.
        Raises ValueError on every rank if the ranks' categories differ."""
        _dist.check_same(list(self.categories), "PanopticQuality: categories", group)
        out = copy.copy(self)
        out.iou_hi, out.iou_lo, out.tp, out.fp, out.fn, images = _dist.all_reduce_sum(
            self._state(), group)
        out.images = int(images)
        return out

    def stats(self):
        """{category_id: {"iou", "tp", "fp", "fn"}}: the sums so far (Python numbers)."""
        return {c: {"iou": self._iou_sum(i), "tp": int(self.tp[i]), "fp": int(self.fp[i]),
                    "fn": int(self.fn[i])} for c, i in self._index.items()}

    def compute(self, sync=None, group=None):
        """panopticapi's result: {"All", "Things", "Stuff": {"pq", "sq", "rq", "n"},
        "per_class": {category_id: {"pq", "sq", "rq"}}} (Python floats).

        ``sync``: sum the ranks' counts first (:meth:`sync`); None (default) does when a process
        group of more than one process is initialised."""
        if sync is None:
            sync = _dist.is_distributed(group)
        if sync:
            return self.sync(group).compute(sync=False)
        stats = self.stats()
        results = {}
        for name, isthing in (("All", None), ("Things", True), ("Stuff", False)):
            pq = sq = rq = 0.0
            n = 0
            per_class = {}
            for cat, info in self.categories.items():
                if isthing is not None and (info["isthing"] == 1) != isthing:
                    continue
                s = stats[cat]
                tp, fp, fn, iou = s["tp"], s["fp"], s["fn"], s["iou"]
                if tp + fp + fn == 0:
                    per_class[cat] = {"pq": 0.0, "sq": 0.0, "rq": 0.0}
                    continue
                n += 1
                den = tp + 0.5 * fp + 0.5 * fn
                per_class[cat] = {"pq": iou / den, "sq": iou / tp if tp != 0 else 0.0,
                                  "rq": tp / den}
                pq += per_class[cat]["pq"]
                sq += per_class[cat]["sq"]
                rq += per_class[cat]["rq"]
            results[name] = ({"pq": pq / n, "sq": sq / n, "rq": rq / n, "n": n} if n else
                             {"pq": math.nan, "sq": math.nan, "rq": math.nan, "n": 0})
            if name == "All":
                results["per_class"] = per_class
        return results


def _raise_format_error(colsum, pred_segms, pred_tab, pred_map, categories, image_id):
    """The error panopticapi raises first for one image: PNG ids ascending (an id missing from the
    JSON, or an unknown category), then the JSON ids missing from the PNG."""
    P = colsum.shape[0] - 1
    bad = {}
    if int(colsum[P]) > 0:  # PNG ids that the JSON does not list (rare: find them)
        known = torch.tensor(pred_tab, dtype=torch.int64, device=pred_map.device)
        ids = torch.unique(pred_map)
        for u in ids[~torch.isin(ids.to(torch.int64), known)].tolist():
            bad[u] = (f"In the image with ID {image_id} segment with ID {u} is presented in PNG "
                      f"and not presented in JSON.")
    area = colsum.tolist()
    for j, s in enumerate(pred_tab):
        if s in pred_segms and area[j] > 0 and pred_segms[s]["category_id"] not in categories:
            bad[s] = (f"In the image with ID {image_id} segment with ID {s} has unknown "
                      f"category_id {pred_segms[s]['category_id']}.")
    if bad:
        raise PanopticFormatError(bad[min(bad)])
    missing = [s for j, s in enumerate(pred_tab) if s in pred_segms and area[j] == 0]
    raise PanopticFormatError(f"In the image with ID {image_id} the following segment IDs "
                              f"{missing} are presented in JSON and not presented in PNG.")


def _table(tabs, device):
    """(N, max len) int64 sorted id tables, padded with INT64_MAX."""
    width = max(len(t) for t in tabs)
    rows = [t + [_PAD] * (width - len(t)) for t in tabs]
    return torch.tensor(rows, dtype=torch.int64).to(device)


def panoptic_quality(pred_panoptic, gt_panoptic, pred_segments, gt_segments, categories, *,
                     backend="auto"):
    """Panoptic Quality of predictions against ground truth, exactly panopticapi's ``pq_compute``.

    Args:
        pred_panoptic, gt_panoptic: one image — (H, W) integer segment ids or (H, W, 3) uint8 COCO
            colours — a batch (N, H, W) / (N, H, W, 3) of equal-size images, or lists of images.
        pred_segments, gt_segments: the images' ``segments_info`` (a list of dicts for one image,
            a list of such lists for several). Ground truth: ``id``, ``category_id``, ``iscrowd``,
            ``area`` (used as the segment's area, as panopticapi does); predictions: ``id``,
            ``category_id``.
        categories: COCO ``categories`` (list of dicts with ``id``, ``isthing``) or a dict.
        backend: of the pairwise-intersection kernel ("auto", "triton", "cuda", "cpu", "torch").

    Returns:
        {"All", "Things", "Stuff": {"pq", "sq", "rq", "n"}, "per_class": {id: {"pq", "sq", "rq"}}}
    """
    meter = PanopticQuality(categories, backend=backend)
    if isinstance(pred_panoptic, (list, tuple)) or isinstance(gt_panoptic, (list, tuple)):
        if not (isinstance(pred_panoptic, (list, tuple)) and isinstance(gt_panoptic, (list, tuple))
                and len(pred_panoptic) == len(gt_panoptic) == len(pred_segments)
                == len(gt_segments)):
            raise ValueError("pred_panoptic, gt_panoptic, pred_segments and gt_segments must be "
                             "lists of the same length (one entry per image)")
        for i, (p, g, ps, gs) in enumerate(zip(pred_panoptic, gt_panoptic, pred_segments,
                                               gt_segments)):
            meter.update(p, g, list(ps), list(gs), image_ids=[i])
    else:
        meter.update(pred_panoptic, gt_panoptic, pred_segments, gt_segments)
    return meter.compute()
