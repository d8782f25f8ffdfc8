"""conv2d: dilated convolutions of DeepLab's ASPP, the dilated-ResNet shape of pytorch#15054 at
d = 1, 2, 3 (our dilation penalty vs cuDNN's), depthwise dilated convolutions, and the context
module's layers (Yu & Koltun, 66x66).

"aten" is ``F.conv2d`` (cuDNN on GPU); "compile" / "compile-max-autotune" compile it (Inductor
has no Triton template for dilated convolutions: it calls cuDNN). TFLOP/s counts 2 * N * OC * OH
* OW * Cg * KH * KW per direction (the backward does two such products: input and weight
gradients); "%mm_peak" relates it to the device's measured matmul rate in the same dtype. The
oracle is the float64 convolution computed on the benchmark's device.
"""
import torch
import torch.nn.functional as F

import pydense
from pydense.ops.conv import shape_class as conv_shape_class

from .common import Case, Problem, layouts_and_dtypes, to_layout

OP = "conv2d"
MAX_AUTOTUNE = True

# name: ((N, C, H, W), OC, k, dilation, groups), from REFERENCE shapes: the dilated-ResNet layer
# at d = 1, 2, 3, the three ASPP branches, depthwise at the ASPP rates, context-module layers.
SHAPES = {f"resnet-d{d}": ((1, 256, 80, 45), 256, 3, d, 1) for d in (1, 2, 3)}
SHAPES.update({f"aspp-d{d}": ((8, 2048, 64, 64), 256, 3, d, 1) for d in (6, 12, 18)})
SHAPES.update({f"depthwise-d{d}": ((8, 256, 64, 64), 256, 3, d, 256) for d in (6, 12, 18)})
SHAPES.update({"context-c21-d4": ((1, 21, 66, 66), 21, 3, 4, 1),
               "context-c64-d8": ((1, 64, 66, 66), 64, 3, 8, 1),
               "context-c64-d16": ((1, 64, 66, 66), 64, 3, 16, 1)})
SHAPES["resnext-g32"] = ((8, 256, 56, 56), 256, 3, 1, 32)  # a grouped conv (ResNeXt-50 stage 1)
# CPU: the same geometry with batch 1 and at most 256 channels; --quick: three of those.
SMALL = {"resnet-d1", "resnet-d2", "aspp-d12", "depthwise-d12", "context-c21-d4", "context-c64-d16",
         "resnext-g32"}
QUICK = {"resnet-d2", "depthwise-d12", "context-c21-d4"}


def cases(device, quick):
    out = []
    for name, (shape, oc, k, d, groups) in SHAPES.items():
        if quick or device.type == "cpu":
            if name not in (QUICK if quick else SMALL):
                continue
            c = min(shape[1], 256)
            shape, groups = (1, c, *shape[2:]), min(groups, c)
            oc = min(oc, 256)
        for dtype, layout in layouts_and_dtypes(device, quick):
            out.append(Case(f"{name} {'x'.join(map(str, shape))}->{oc} k{k} d{d} g{groups}", dtype,
                            layout, {"shape": shape, "oc": oc, "k": k, "d": d, "groups": groups}))
    return out


def shape_class(case):
    """The case's class in pydense._tuned (dense / grouped / depthwise)."""
    p = case.params
    return conv_shape_class(p["groups"], p["shape"][1] // p["groups"])


def problem(case, device):
    p = case.params
    shape, oc, k, d, groups = p["shape"], p["oc"], p["k"], p["d"], p["groups"]
    gen = torch.Generator(device=device).manual_seed(0)
    cg = shape[1] // groups
    x = to_layout(torch.randn(shape, device=device, generator=gen).to(case.dtype), case.layout)
    w = (torch.randn(oc, cg, k, k, device=device, generator=gen) * (cg * k * k) ** -0.5).to(case.dtype)
    b = torch.randn(oc, device=device, generator=gen).to(case.dtype)
    x.requires_grad_()
    w.requires_grad_()
    kw = dict(padding=d, dilation=d, groups=groups)

    def eager(x, w, b):
        return F.conv2d(x, w, b, **kw)

    x64, w64 = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    ref = F.conv2d(x64, w64, b.double(), **kw)
    grad_output = to_layout(torch.randn(ref.shape, device=device, generator=gen).to(case.dtype), case.layout)
    ref_grads = torch.autograd.grad(ref, (x64, w64), grad_output.double())
    flops = 2 * ref.numel() * cg * k * k
    nbytes = (x.numel() + w.numel() + ref.numel()) * x.element_size()
    return Problem(
        inputs=(x, w, b), grad_inputs=(x, w), grad_output=grad_output, eager=eager,
        pydense=lambda backend: (lambda x, w, b: pydense.functional.conv2d(x, w, b, **kw, backend=backend)),
        ref_out=ref.detach().cpu(), ref_grads=tuple(g.cpu() for g in ref_grads),
        bytes={"fwd": nbytes, "bwd": 2 * nbytes}, flops={"fwd": flops, "bwd": 2 * flops},
        # sums of Cg*k*k products of unit-variance terms (fp32 may use TF32 on GPU)
        tolerance=2e-2 if case.dtype == torch.float32 else 1e-1)
