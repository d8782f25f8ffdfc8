"""confusion_matrix: semantic segmentation evaluation (Cityscapes-like and VOC-like batches).

Labels ``pred`` (N, H, W) int64 (what ``logits.argmax(1)`` gives) or logits (N, K, H, W) with the
argmax fused into the kernel; int64 targets with ~10% ignore pixels (255). "aten" is
``torch.bincount`` of ``target * K + pred`` (ignored pixels sent to a spare bin), with
``argmax(1)`` first for logits. Forward only: the result is integer counts (no gradient).

Bytes model (what an ideal kernel must read; the (K, K) int64 result is negligible):

* labels: ``N * H * W * (8 + 8)`` (pred and target);
* logits: ``N * K * H * W * e + N * H * W * 8`` (``e`` = the logits' element size).
"""
import torch

import pydense
from pydense.ops.confusion_matrix import bincount_reference

from .common import Case, Problem, layouts_and_dtypes, nhw_for_run, to_layout

OP = "confusion_matrix"
DIRECTIONS = ("fwd",)
IGNORE = 255

# name: (N, H, W, K)
SHAPES = {"cityscapes": (8, 1024, 2048, 19), "voc": (10, 512, 512, 21)}


def cases(device, quick):
    """Full shapes on GPU; batch 1 on CPU; batch 1 at a quarter of the size in quick."""
    out = []
    for name, (n, h, w, k) in SHAPES.items():
        n, h, w = nhw_for_run((n, h, w), device, quick)
        out.append(Case(f"{name} labels {n}x{h}x{w} K={k}", torch.int64, "nchw",
                        {"shape": (n, h, w), "k": k, "logits": False}))
        for dtype, layout in layouts_and_dtypes(device, quick):
            out.append(Case(f"{name} logits {n}x{k}x{h}x{w}", dtype, layout,
                            {"shape": (n, h, w), "k": k, "logits": True}))
    return out


def problem(case, device):
    n, h, w = case.params["shape"]
    k = case.params["k"]
    g = torch.Generator(device=device).manual_seed(0)
    target = torch.randint(0, k, (n, h, w), device=device, generator=g)
    target[torch.rand((n, h, w), device=device, generator=g) < 0.1] = IGNORE
    if case.params["logits"]:
        pred = to_layout(torch.randn(n, k, h, w, device=device, generator=g).to(case.dtype), case.layout)
        nbytes = pred.numel() * pred.element_size() + target.numel() * 8
    else:
        pred = torch.randint(0, k, (n, h, w), device=device, generator=g)
        nbytes = pred.numel() * 8 + target.numel() * 8

    def eager(p, t):
        if p.dim() == 4:
            p = p.argmax(1)
        b = torch.where(t != IGNORE, t * k + p, k * k)
        return torch.bincount(b.reshape(-1), minlength=k * k + 1)[:k * k].view(k, k)

    def pydense_fn(backend):
        def fn(p, t):
            return pydense.metrics.confusion_matrix(p, t, k, backend=backend, check_labels=False)
        return fn

    return Problem(
        inputs=(pred, target), grad_inputs=(), grad_output=None, eager=eager, pydense=pydense_fn,
        ref_out=bincount_reference(pred.cpu(), target.cpu(), k, IGNORE).double(), ref_grads=(),
        bytes={"fwd": nbytes, "bwd": 0})
