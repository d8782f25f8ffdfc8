"""panoptic_pair_counts: the (gt segment, predicted segment) intersection histogram of Panoptic
Quality (COCO-like and Cityscapes-like batches).

Segment-id maps ``gt`` and ``pred`` (N, H, W) int32 (ids below 2^24, as panopticapi's
``rgb2id`` of 8-bit RGB gives), per-image sorted id tables (N, G) and (N, P) int64 padded with
INT64_MAX; ~10% of the pixels carry ids missing from the tables (VOID). "aten" is the torch
reference (``torch.searchsorted`` of every pixel in its image's rows, then one
``torch.bincount``). Forward only: integer counts (no gradient).

Bytes model (what an ideal kernel must read; the tables and the (N, G + 1, P + 1) int64 result
are small): ``N * H * W * (4 + 4)``.
"""
import torch

import pydense
from pydense.ops.panoptic_pairs import torch_reference

from .common import Case, Problem, nhw_for_run

OP = "panoptic_pair_counts"
DIRECTIONS = ("fwd",)
PAD = torch.iinfo(torch.int64).max

# name: (N, H, W, G, P)
SHAPES = {"coco": (8, 480, 640, 40, 60), "cityscapes": (4, 1024, 2048, 100, 120)}


def cases(device, quick):
    """Full shapes on GPU; batch 1 on CPU; batch 1 at a quarter of the size in quick."""
    out = []
    for name, (n, h, w, g, p) in SHAPES.items():
        n, h, w = nhw_for_run((n, h, w), device, quick)
        out.append(Case(f"{name} {n}x{h}x{w} G={g} P={p}", torch.int32, "nchw",
                        {"shape": (n, h, w), "g": g, "p": p}))
    return out


def _segments(n, h, w, k, gen, device):
    """(ids map (N, H, W) int32, table (N, k) int64): up to k distinct ids per image."""
    ids = torch.sort(torch.randperm(1 << 20, generator=gen, device=device)[:n * k].view(n, k), 1).values
    listed = k - torch.randint(0, 3, (n,), generator=gen, device=device)  # some rows padded
    ids = torch.where(torch.arange(k, device=device) < listed[:, None], ids, PAD)
    pick = torch.randint(0, k, (n, h * w), generator=gen, device=device)
    m = torch.gather(ids, 1, pick)
    void = (m == PAD) | (torch.rand(n, h * w, generator=gen, device=device) < 0.1)
    m = torch.where(void, (1 << 20) + pick, m)  # ids in no table
    return m.view(n, h, w).to(torch.int32), ids


def problem(case, device):
    n, h, w = case.params["shape"]
    g = torch.Generator(device=device).manual_seed(0)
    gt, gt_ids = _segments(n, h, w, case.params["g"], g, device)
    pred, pred_ids = _segments(n, h, w, case.params["p"], g, device)

    def pydense_fn(backend):
        def fn(a, b, ta, tb):
            return pydense.ops.panoptic_pairs.panoptic_pair_counts(a, b, ta, tb, backend=backend)
        return fn

    inputs = (gt, pred, gt_ids, pred_ids)
    return Problem(
        inputs=inputs, grad_inputs=(), grad_output=None, eager=torch_reference, pydense=pydense_fn,
        ref_out=torch_reference(*(t.cpu() for t in inputs)).double(), ref_grads=(),
        bytes={"fwd": gt.numel() * 8, "bwd": 0})
