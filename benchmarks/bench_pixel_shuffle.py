"""pixel_shuffle: EDSR's upsampler (conv F -> 4F, PixelShuffle(2)), baseline F = 64.

Its backward is pixel_unshuffle, so "bwd" measures the pixel_unshuffle kernels.

Bytes model (a permutation: every element read once and written once, ``e`` = element size):
fwd = bwd = ``2 * numel * e``; fwd+bwd is their sum.
"""
import torch
import torch.nn.functional as F

import pydense
from pydense import reference

from .common import Case, Problem, layouts_and_dtypes, nchw_for_run, to_layout

OP = "pixel_shuffle"
FACTOR = 2

# name: (N, C*r*r, H, W) input of PixelShuffle(2).
SHAPES = {
    "edsr-train-x2": (16, 256, 48, 48),      # 48x48 LR patches, batch 16
    "edsr-train-x4b": (16, 256, 96, 96),     # x4: the second x2 stage
    "edsr-infer-x2": (1, 256, 256, 256),     # 256x256 LR inference
}


def cases(device, quick):
    """Full shapes on GPU; batch 1 on CPU; batch 1 with 16 channels in quick."""
    out = []
    for name, shape in SHAPES.items():
        n, c, h, w = nchw_for_run(shape, device, quick)
        for dtype, layout in layouts_and_dtypes(device, quick):
            out.append(Case(f"{name} {n}x{c}x{h}x{w}", dtype, layout, {"shape": (n, c, h, w)}))
    return out


def problem(case, device):
    shape = case.params["shape"]
    x = to_layout(torch.randn(shape, dtype=case.dtype, device=device), case.layout).requires_grad_()
    n, c, h, w = shape
    out_shape = (n, c // FACTOR**2, h * FACTOR, w * FACTOR)
    grad_output = to_layout(torch.randn(out_shape, dtype=case.dtype, device=device), case.layout)
    x64 = x.detach().cpu().double()
    nbytes = 2 * x.numel() * x.element_size()
    return Problem(
        inputs=(x,), grad_inputs=(x,), grad_output=grad_output,
        eager=lambda t: F.pixel_shuffle(t, FACTOR),
        pydense=lambda backend: (lambda t: pydense.functional.pixel_shuffle(t, FACTOR, backend=backend)),
        ref_out=reference.pixel_shuffle(x64, FACTOR),
        ref_grads=(reference.pixel_unshuffle(grad_output.cpu().double(), FACTOR),),
        bytes={"fwd": nbytes, "bwd": nbytes})
