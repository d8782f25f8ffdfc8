"""panoptic_fuse: Panoptic FPN post-processing of one COCO-sized image
(pydense.panoptic_fusion.fuse).

Inputs: (H, W) int64 semantic labels over 133 classes (80 things, 53 stuff; blocky regions of
~10k pixels, so stuff areas straddle the 4096-pixel threshold), M bool box masks (half of the
instances score above the 0.5 threshold; boxes overlap, so some are dropped by the 0.5 overlap
rule), scores and classes. "aten" is detectron2's ``combine_semantic_and_instance_outputs`` loop
(one mask at a time with host syncs, a stable sort for identical results), on the same device;
the pydense providers are ``fuse`` with that coverage backend. The timed output is the panoptic
map (compared exactly with the loop's, run on CPU). Forward only; no torch.compile rows (the loop
has data-dependent host syncs).

Bytes model: masks M * H * W (bool, read once) + labels H * W * 8 + the int32 map H * W * 4.
"""
import torch

import pydense

from .common import Case, Problem

OP = "panoptic_fuse"
DIRECTIONS = ("fwd",)
COMPILE = False  # the eager loop cannot be compiled in one graph
NUM_CLASSES = 133
THING_IDS = frozenset(range(80))
STUFF_AREA = 4096

# name: (H, W, M instances, K above the score threshold)
SHAPES = {"coco": (800, 1216, 100, 50), "coco-crowded": (800, 1216, 200, 130)}


def cases(device, quick):
    """Full size on GPU; half size on CPU; a quarter in quick (one case)."""
    out = []
    for name, (h, w, m, k) in SHAPES.items():
        if quick:
            if name != "coco":
                continue
            h, w = h // 4, w // 4
        elif device.type == "cpu":
            h, w = h // 2, w // 2
        out.append(Case(f"{name} {h}x{w} M={m} K={k} C={NUM_CLASSES}", torch.int64, "nchw",
                        {"hw": (h, w), "m": m, "k": k}))
    return out


def detectron2_loop(semantic, masks, scores, classes, overlap_threshold=0.5, score_threshold=0.5,
                    stuff_area_threshold=STUFF_AREA):
    """detectron2's combine_semantic_and_instance_outputs (thing_ids instead of label 0)."""
    panoptic_seg = torch.zeros_like(semantic, dtype=torch.int32)
    current_segment_id = 0
    segments_info = []
    sorted_inds = torch.sort(scores, descending=True, stable=True).indices
    for inst_id in sorted_inds:
        score = scores[inst_id].item()
        if score < score_threshold:
            break
        mask = masks[inst_id]
        mask_area = mask.sum().item()
        if mask_area == 0:
            continue
        intersect = (mask > 0) & (panoptic_seg > 0)
        intersect_area = intersect.sum().item()
        if intersect_area * 1.0 / mask_area > overlap_threshold:
            continue
        if intersect_area > 0:
            mask = mask & (panoptic_seg == 0)
        current_segment_id += 1
        panoptic_seg[mask] = current_segment_id
        segments_info.append({"id": current_segment_id, "isthing": True, "score": score,
                              "category_id": classes[inst_id].item(), "instance_id": inst_id.item()})
    for semantic_label in torch.unique(semantic).cpu().tolist():
        if semantic_label in THING_IDS:
            continue
        mask = (semantic == semantic_label) & (panoptic_seg == 0)
        mask_area = mask.sum().item()
        if mask_area < stuff_area_threshold:
            continue
        current_segment_id += 1
        panoptic_seg[mask] = current_segment_id
        segments_info.append({"id": current_segment_id, "isthing": False,
                              "category_id": semantic_label, "area": mask_area})
    return panoptic_seg


def make_inputs(h, w, m, k, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, NUM_CLASSES, (1, 1, 8, 12), generator=g).float()
    semantic = torch.nn.functional.interpolate(coarse, size=(h, w), mode="nearest")[0, 0].long()
    bh = (torch.rand(m, generator=g) * 0.4 + 0.05) * h
    bw = (torch.rand(m, generator=g) * 0.4 + 0.05) * w
    y0 = torch.rand(m, generator=g) * (h - bh)
    x0 = torch.rand(m, generator=g) * (w - bw)
    ys = torch.arange(h).view(1, h, 1)
    xs = torch.arange(w).view(1, 1, w)
    masks = ((ys >= y0.view(m, 1, 1)) & (ys < (y0 + bh).view(m, 1, 1)) &
             (xs >= x0.view(m, 1, 1)) & (xs < (x0 + bw).view(m, 1, 1)))
    above = torch.randperm(m, generator=g)[:k]
    scores = torch.rand(m, generator=g) * 0.45
    scores[above] = 0.5 + torch.rand(k, generator=g) * 0.5
    classes = torch.randint(0, 80, (m,), generator=g)
    return tuple(t.to(device) for t in (semantic, masks, scores, classes))


def problem(case, device):
    h, w = case.params["hw"]
    m, k = case.params["m"], case.params["k"]
    inputs = make_inputs(h, w, m, k, device)

    def pydense_fn(backend):
        def fn(semantic, masks, scores, classes):
            return pydense.panoptic_fusion.fuse(semantic, masks, scores, classes,
                                                thing_ids=THING_IDS, stuff_area_threshold=STUFF_AREA,
                                                backend=backend)[0]
        return fn

    ref = detectron2_loop(*(t.cpu() for t in inputs)).double()
    return Problem(
        inputs=inputs, grad_inputs=(), grad_output=None, eager=detectron2_loop, pydense=pydense_fn,
        ref_out=ref, ref_grads=(), bytes={"fwd": m * h * w + h * w * 12, "bwd": 0})
