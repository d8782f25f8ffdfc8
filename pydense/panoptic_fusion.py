"""Panoptic fusion: combine one image's semantic and instance predictions into a panoptic map.

The Panoptic FPN post-processing (detectron2's ``combine_semantic_and_instance_outputs``, the
panopticapi combination rule), computed exactly, with the per-instance paste loop replaced by a
parallel pass (see :func:`fuse`), plus the COCO panoptic PNG colour encoding.

    >>> import torch, pydense
    >>> semantic = torch.zeros(4, 6, dtype=torch.int64)
    >>> semantic[:, 3:] = 2                       # stuff classes 0 (left) and 2 (right)
    >>> masks = torch.zeros(2, 4, 6, dtype=torch.bool)
    >>> masks[0, :2, :2] = True                   # a person (class 1) at the top left
    >>> masks[1, 1:3, 1:3] = True                 # a weaker one, overlapping it by 1 pixel of 4
    >>> pan, segments = pydense.panoptic_fusion.fuse(
    ...     semantic, masks, torch.tensor([0.9, 0.8]), torch.tensor([1, 1]),
    ...     thing_ids={1}, stuff_area_threshold=4)
    >>> pan
    tensor([[1, 1, 3, 4, 4, 4],
            [1, 1, 2, 4, 4, 4],
            [3, 2, 2, 4, 4, 4],
            [3, 3, 3, 4, 4, 4]], dtype=torch.int32)
    >>> [(s["id"], s["category_id"], s["isthing"], s["area"]) for s in segments]
    [(1, 1, True, 4), (2, 1, True, 3), (3, 0, False, 5), (4, 2, False, 12)]
    >>> pydense.panoptic_fusion.rgb2id(pydense.panoptic_fusion.id2rgb(pan)).equal(pan)
    True
"""
import math
import numbers

import torch

from . import _backend
from .ops import instance_coverage as coverage
from .ops._common import INTEGER_DTYPES

OP = "panoptic_fusion.fuse"
_BITS = coverage.BITS
MAX_ID = 256 ** 3  # ids the COCO RGB encoding can hold: [0, 2^24)

__all__ = ["fuse", "id2rgb", "rgb2id"]


def _real(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
        raise TypeError(f"{OP}: {name} must be a real number, got {value!r}")
    return float(value)


def _thing_ids(thing_ids):
    if isinstance(thing_ids, torch.Tensor):
        if thing_ids.dtype not in INTEGER_DTYPES:
            raise TypeError(f"{OP}: thing_ids must hold integer class ids, got {thing_ids.dtype}")
        return frozenset(int(t) for t in thing_ids.reshape(-1).tolist())
    try:
        ids = list(thing_ids)
    except TypeError:
        raise TypeError(f"{OP}: thing_ids must be an iterable of integer class ids, got "
                        f"{type(thing_ids).__name__}") from None
    for t in ids:
        if isinstance(t, bool) or not isinstance(t, numbers.Integral):
            raise TypeError(f"{OP}: thing_ids must hold integer class ids, got {t!r}")
    return frozenset(int(t) for t in ids)


def normalize_args(semantic, instance_masks, instance_scores, instance_classes, thing_ids,
                   overlap_threshold, score_threshold, stuff_area_threshold):
    """Check every argument before any kernel runs; return (labels (H, W), masks (M, H, W) bool or
    uint8, scores (M,), classes (M,), thing ids (frozenset), overlap, score, stuff thresholds).

    Raises TypeError/ValueError naming the argument and the expected value.
    """
    for name, t in (("semantic", semantic), ("instance_masks", instance_masks),
                    ("instance_scores", instance_scores), ("instance_classes", instance_classes)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{OP}: {name} must be a Tensor, got {type(t).__name__}")
    if semantic.dim() == 2:
        if semantic.dtype not in INTEGER_DTYPES:
            raise TypeError(f"{OP}: semantic of shape (H, W) must hold integer class labels, got "
                            f"{semantic.dtype} (pass logits as (C, H, W))")
    elif semantic.dim() == 3:
        if not semantic.dtype.is_floating_point:
            raise TypeError(f"{OP}: semantic of shape (C, H, W) must hold float logits, got "
                            f"{semantic.dtype} (pass labels as (H, W))")
        if semantic.shape[0] == 0:
            raise ValueError(f"{OP}: semantic logits must have at least one class channel, got "
                             f"shape {tuple(semantic.shape)}")
    else:
        raise ValueError(f"{OP}: semantic must be (H, W) integer labels or (C, H, W) float logits, "
                         f"got shape {tuple(semantic.shape)}")
    hw = tuple(semantic.shape[-2:])
    if instance_masks.dim() != 3:
        raise ValueError(f"{OP}: instance_masks must be 3-D (M, H, W), got shape "
                         f"{tuple(instance_masks.shape)}")
    if tuple(instance_masks.shape[1:]) != hw:
        raise ValueError(f"{OP}: instance_masks of shape {tuple(instance_masks.shape)} (M, H, W) and "
                         f"semantic of shape {tuple(semantic.shape)} must agree in H, W = {hw}")
    if instance_masks.dtype.is_complex:
        raise TypeError(f"{OP}: instance_masks must be bool, integer (nonzero = inside) or floating "
                        f"(>= 0.5 = inside), got {instance_masks.dtype}")
    M = instance_masks.shape[0]
    if instance_scores.dim() != 1 or instance_scores.shape[0] != M:
        raise ValueError(f"{OP}: instance_scores must be 1-D with one score per mask (M={M}), got "
                         f"shape {tuple(instance_scores.shape)}")
    if not instance_scores.dtype.is_floating_point:
        raise TypeError(f"{OP}: instance_scores must be floating point, got {instance_scores.dtype}")
    if instance_classes.dim() != 1 or instance_classes.shape[0] != M:
        raise ValueError(f"{OP}: instance_classes must be 1-D with one class per mask (M={M}), got "
                         f"shape {tuple(instance_classes.shape)}")
    if instance_classes.dtype not in INTEGER_DTYPES:
        raise TypeError(f"{OP}: instance_classes must hold integer class ids, got "
                        f"{instance_classes.dtype}")
    if semantic.device != instance_masks.device:
        raise ValueError(f"{OP}: semantic is on {semantic.device} but instance_masks is on "
                         f"{instance_masks.device}")
    things = _thing_ids(thing_ids)
    overlap = _real(overlap_threshold, "overlap_threshold")
    if not 0.0 <= overlap <= 1.0:
        raise ValueError(f"{OP}: overlap_threshold must be in [0, 1], got {overlap_threshold!r}")
    score = _real(score_threshold, "score_threshold")
    if isinstance(stuff_area_threshold, bool) or not isinstance(stuff_area_threshold, numbers.Integral):
        raise TypeError(f"{OP}: stuff_area_threshold must be an int, got {stuff_area_threshold!r}")
    if stuff_area_threshold < 0:
        raise ValueError(f"{OP}: stuff_area_threshold must be >= 0, got {stuff_area_threshold}")
    if instance_masks.dtype.is_floating_point:
        masks = instance_masks >= 0.5
    elif instance_masks.dtype in (torch.bool, torch.uint8):
        masks = instance_masks
    else:
        masks = instance_masks != 0
    labels = semantic.argmax(0) if semantic.dim() == 3 else semantic
    return (labels, masks, instance_scores, instance_classes, things, overlap, score,
            int(stuff_area_threshold))


def _unique_patterns(patterns):
    """(distinct patterns (U, NW), inverse (H*W,), counts (U,)) of the per-pixel patterns.

    One word: a 1-D ``torch.unique``. Several words: 1-D uniques only (much faster than
    ``torch.unique(dim=0)``), combining the words one at a time: with ``ids`` the index of the
    pixel's pattern over words 0..j-1 (n distinct) and ``w`` that of word j (n_j distinct),
    ``unique(ids * n_j + w)`` indexes the patterns over words 0..j (keys < (H*W)^2: no overflow).
    The distinct patterns are then read back from their pixels (equal values per index).
    """
    H, W, NW = patterns.shape
    flat = patterns.reshape(H * W, NW)
    ids, counts = None, None
    for j in range(NW):
        word = flat[:, j]
        if ids is not None:
            w_uniq, w_ids = torch.unique(word, sorted=True, return_inverse=True)
            word = ids * w_uniq.numel() + w_ids
        uniq, ids, counts = torch.unique(word, sorted=True, return_inverse=True, return_counts=True)
    if NW == 1:
        return uniq.reshape(-1, 1), ids, counts
    table = flat.new_zeros((counts.numel(), NW))
    table[ids] = flat  # every pixel of a pattern writes the same words
    return table, ids, counts


# Up to this many (pattern, rank) incidences the decisions run on Python lists (microseconds per
# rank); beyond it, on CPU tensors (a few vectorised ops per rank). Both give the same result.
PYTHON_DECISIONS_MAX = 1 << 15


def _paste_decisions(uniq, counts, order, overlap):
    """The sequential paste rule, decided exactly on the table of distinct patterns (CPU).

    For rank r (instance ``order[r]``): area = pixels whose pattern holds bit r; intersect = those
    whose pattern also holds a bit of an already kept rank. Skipped if area == 0, dropped if
    intersect / area > overlap, else kept: it gets the next segment id on the patterns it is the
    first kept rank of. Returns (segment id per pattern (U,) int32, [(rank, remaining area)]).
    """
    U = uniq.shape[0]
    K = order.numel()
    ranks = torch.arange(K)
    holds = ((uniq[:, ranks // _BITS] >> (ranks % _BITS)) & 1).bool()  # (U, K)
    rank_of, pattern_of = holds.t().nonzero(as_tuple=True)  # sorted by rank
    sizes = torch.bincount(rank_of, minlength=K).tolist()
    kept = []
    if pattern_of.numel() <= PYTHON_DECISIONS_MAX:
        members = pattern_of.tolist()
        count = counts.tolist()
        taken = [False] * U
        seg = [0] * U
        begin = 0
        for r, size in enumerate(sizes):
            mine = members[begin:begin + size]
            begin += size
            area = sum(count[u] for u in mine)
            if area == 0:
                continue
            intersect = sum(count[u] for u in mine if taken[u])
            if intersect / area > overlap:
                continue
            kept.append((r, area - intersect))
            for u in mine:
                if not taken[u]:
                    taken[u] = True
                    seg[u] = len(kept)
        return torch.tensor(seg, dtype=torch.int32), kept
    members = torch.split(pattern_of, sizes)
    member_counts = torch.split(counts[pattern_of], sizes)
    taken = torch.zeros(U, dtype=torch.bool)
    seg_of_pattern = torch.zeros(U, dtype=torch.int32)
    for r in range(K):
        area = int(member_counts[r].sum())
        if area == 0:
            continue
        was_taken = taken[members[r]]
        intersect = int(member_counts[r][was_taken].sum())
        if intersect / area > overlap:
            continue
        new = members[r][~was_taken]
        kept.append((r, area - intersect))
        seg_of_pattern[new] = len(kept)
        taken[new] = True
    return seg_of_pattern, kept


def fuse(semantic, instance_masks, instance_scores, instance_classes, *, thing_ids,
         overlap_threshold=0.5, score_threshold=0.5, stuff_area_threshold=4096, backend="auto"):
    """Combine one image's semantic and instance predictions into a panoptic id map.

    The rule of detectron2's ``combine_semantic_and_instance_outputs`` (Panoptic FPN):

    1. Instances with ``score >= score_threshold``, by score descending (ties: the lower instance
       index first).
    2. Each in turn: ``area`` = its mask's pixels; skipped if ``area == 0``; ``intersect`` = its
       pixels already taken by a kept instance; dropped if ``intersect / area > overlap_threshold``;
       otherwise it takes the next segment id (1, 2, ...) on its remaining (untaken) pixels.
    3. Stuff: for each label of the semantic map not in ``thing_ids``, in increasing order, the
       pixels with that label not taken by any instance; dropped if fewer than
       ``stuff_area_threshold``, otherwise the next segment id.

    Exact and deterministic on every backend. Step 2 runs in parallel: the instance coverage op
    (:mod:`pydense.ops.instance_coverage`) writes each pixel's set of covering instances as bits,
    ``torch.unique`` groups the pixels by set, the keep/drop decisions are made on that (small)
    table of distinct sets on the CPU, and the segment ids are gathered back to the pixels.

    Args:
        semantic: (H, W) integer labels or (C, H, W) float logits (argmax over C; ties: the lowest
            index, as ``torch.argmax``).
        instance_masks: (M, H, W) bool or integer (nonzero = inside) or floating (>= 0.5 = inside)
            masks, on the semantic map's device.
        instance_scores: (M,) float scores (any device).
        instance_classes: (M,) integer category ids (any device).
        thing_ids: the category ids of thing classes (an iterable of ints or an integer tensor);
            semantic labels in it never become stuff segments.
        overlap_threshold: in [0, 1].
        score_threshold: a real number.
        stuff_area_threshold: an int >= 0 (pixels).
        backend: the coverage op's backend: "auto", "triton", "cuda", "cpu" or "torch".

    Returns:
        ``(panoptic, segments_info)``: ``panoptic`` (H, W) int32 on the input's device, 0 =
        void, else a segment id; ``segments_info`` a list of dicts in COCO panoptic format, in id
        order (ids 1, 2, ...): ``{"id", "category_id", "isthing", "area"}``, plus ``"score"``
        (float) and ``"instance_id"`` (the index into the inputs) for things. ``area`` is the
        segment's pixel count in ``panoptic``.
    """
    labels, masks, scores, classes, things, overlap, score_thr, stuff_thr = normalize_args(
        semantic, instance_masks, instance_scores, instance_classes, thing_ids, overlap_threshold,
        score_threshold, stuff_area_threshold)
    device = masks.device
    backend = _backend.resolve(backend, device, coverage.OP)  # before any kernel, even with K = 0
    H, W = labels.shape
    scores_c = scores.detach().to("cpu", torch.float64)
    classes_c = classes.to("cpu").tolist()
    sorted_scores, sorted_idx = torch.sort(scores_c, descending=True, stable=True)
    order = sorted_idx[sorted_scores >= score_thr]
    segments = []
    if order.numel() > 0 and H * W > 0:
        patterns = coverage.instance_coverage(masks, order.to(device), backend=backend,
                                              check_order=False)
        uniq, inverse, counts = _unique_patterns(patterns)
        seg_of_pattern, kept = _paste_decisions(uniq.cpu(), counts.cpu(), order, overlap)
        thing_map = seg_of_pattern.to(device)[inverse]
        order_l, scores_l = order.tolist(), scores_c.tolist()
        for r, area in kept:
            i = order_l[r]
            segments.append({"id": len(segments) + 1, "category_id": int(classes_c[i]),
                             "isthing": True, "area": area, "score": scores_l[i],
                             "instance_id": i})
    else:
        thing_map = torch.zeros(H * W, dtype=torch.int32, device=device)
    if H * W == 0:
        return thing_map.reshape(H, W), segments
    # Stuff: the unassigned pixels of each label; counts by one bincount over (label, free) bins.
    uniq_labels, label_idx = torch.unique(labels.reshape(-1), sorted=True, return_inverse=True)
    free = (thing_map == 0).to(torch.int64)
    L = uniq_labels.numel()
    free_area = torch.bincount(label_idx * 2 + free, minlength=2 * L)[1::2]
    stuff_seg = torch.zeros(L, dtype=torch.int32)
    for li, (label, area) in enumerate(zip(uniq_labels.tolist(), free_area.tolist())):
        if label in things or area < stuff_thr:
            continue
        segments.append({"id": len(segments) + 1, "category_id": int(label), "isthing": False,
                         "area": int(area)})
        stuff_seg[li] = len(segments)
    panoptic = torch.where(thing_map > 0, thing_map, stuff_seg.to(device)[label_idx])
    return panoptic.reshape(H, W), segments


def _as_tensor(x, name):
    if isinstance(x, torch.Tensor):
        return x, False
    if type(x).__module__ == "numpy":
        return torch.as_tensor(x), True
    raise TypeError(f"pydense.panoptic_fusion.{name}: expected a Tensor or a numpy array, got "
                    f"{type(x).__name__}")


def id2rgb(ids):
    """COCO panoptic colour encoding: (..., ) integer ids in [0, 2^24) -> (..., 3) uint8 RGB with
    ``id = R + 256 G + 256^2 B`` (panopticapi ``id2rgb``). A numpy array in gives a numpy array out.
    """
    t, was_numpy = _as_tensor(ids, "id2rgb")
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise TypeError(f"pydense.panoptic_fusion.id2rgb: ids must be an integer tensor, got "
                        f"{t.dtype}")
    t = t.to(torch.int64)
    if t.numel() > 0:
        lo, hi = torch.stack([*torch.aminmax(t)]).tolist()
        if lo < 0 or hi >= MAX_ID:
            raise ValueError(f"pydense.panoptic_fusion.id2rgb: ids must lie in [0, {MAX_ID}), got "
                             f"{lo if lo < 0 else hi}")
    rgb = torch.stack([t % 256, t // 256 % 256, t // 65536], dim=-1).to(torch.uint8)
    return rgb.numpy() if was_numpy else rgb


def rgb2id(rgb):
    """COCO panoptic colour decoding: (..., 3) uint8 RGB -> (...) int32 ids
    ``R + 256 G + 256^2 B`` (panopticapi ``rgb2id``). A numpy array in gives a numpy array out.
    """
    t, was_numpy = _as_tensor(rgb, "rgb2id")
    if t.dim() == 0 or t.shape[-1] != 3:
        raise ValueError(f"pydense.panoptic_fusion.rgb2id: rgb must have shape (..., 3), got "
                         f"{tuple(t.shape)}")
    if t.dtype != torch.uint8:
        raise TypeError(f"pydense.panoptic_fusion.rgb2id: rgb must be uint8, got {t.dtype}")
    t = t.to(torch.int32)
    ids = t[..., 0] + 256 * t[..., 1] + 65536 * t[..., 2]
    return ids.numpy() if was_numpy else ids
