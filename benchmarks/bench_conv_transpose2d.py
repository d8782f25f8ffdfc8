"""conv_transpose2d: the transposed convolutions where cuDNN is slowest (pytorch#95604, #47341):
depthwise k4 s2 (FCN-style 2x upsampling of 21 class maps), FCN-32s's dense k64 s32 and a
depthwise k2 s2 with groups=512 (channels_last in the GPU grid).

"aten" is ``F.conv_transpose2d`` (cuDNN on GPU). pydense computes it as a convolution's input
gradient visiting only the taps that reach each output (one stride phase per GEMM program, a
per-element tap sequence in the depthwise kernels). TFLOP/s counts the useful products
2 * N * C * H * W * OCg * KH * KW per direction.
"""
import torch
import torch.nn.functional as F

import pydense
from pydense.ops.conv import shape_class as conv_shape_class

from .common import Case, Problem, layouts_and_dtypes, to_layout

OP = "conv_transpose2d"
MAX_AUTOTUNE = True

# name: ((N, C, H, W), OC, k, stride, padding, groups)
SHAPES = {
    "depthwise-k4s2": ((8, 21, 64, 64), 21, 4, 2, 1, 21),
    "fcn32s-k64s32": ((8, 21, 16, 16), 21, 64, 32, 0, 1),
    "depthwise-k2s2-g512": ((16, 512, 80, 80), 512, 2, 2, 0, 512),
}


def cases(device, quick):
    out = []
    for name, (shape, oc, k, s, pad, groups) in SHAPES.items():
        if quick or device.type == "cpu":  # batch 1, at most 32x32 (16x16 in --quick)
            side = 16 if quick else 32
            shape = (1, shape[1], min(shape[2], side), min(shape[3], side))
        for dtype, layout in layouts_and_dtypes(device, quick):
            out.append(Case(f"{name} {'x'.join(map(str, shape))}->{oc} k{k} s{s} g{groups}", dtype,
                            layout, {"shape": shape, "oc": oc, "k": k, "s": s, "pad": pad,
                                     "groups": groups}))
    return out


def shape_class(case):
    """The case's class in pydense._tuned (dense / grouped / depthwise)."""
    p = case.params
    return conv_shape_class(p["groups"], p["oc"] // p["groups"])


def problem(case, device):
    p = case.params
    shape, oc, k, s, pad, groups = p["shape"], p["oc"], p["k"], p["s"], p["pad"], p["groups"]
    gen = torch.Generator(device=device).manual_seed(0)
    ocg = oc // groups
    x = to_layout(torch.randn(shape, device=device, generator=gen).to(case.dtype), case.layout)
    w = (torch.randn(shape[1], ocg, k, k, device=device, generator=gen) * (k / s) ** -1).to(case.dtype)
    x.requires_grad_()
    w.requires_grad_()
    kw = dict(stride=s, padding=pad, groups=groups)

    def eager(x, w):
        return F.conv_transpose2d(x, w, **kw)

    x64, w64 = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    ref = F.conv_transpose2d(x64, w64, **kw)
    grad_output = to_layout(torch.randn(ref.shape, device=device, generator=gen).to(case.dtype), case.layout)
    ref_grads = torch.autograd.grad(ref, (x64, w64), grad_output.double())
    flops = 2 * x.numel() * ocg * k * k
    nbytes = (x.numel() + w.numel() + ref.numel()) * x.element_size()
    return Problem(
        inputs=(x, w), grad_inputs=(x, w), grad_output=grad_output, eager=eager,
        pydense=lambda backend: (lambda x, w: pydense.functional.conv_transpose2d(x, w, **kw, backend=backend)),
        ref_out=ref.detach().cpu(), ref_grads=tuple(g.cpu() for g in ref_grads),
        bytes={"fwd": nbytes, "bwd": 2 * nbytes}, flops={"fwd": flops, "bwd": 2 * flops},
        tolerance=2e-2 if case.dtype == torch.float32 else 1e-1)
