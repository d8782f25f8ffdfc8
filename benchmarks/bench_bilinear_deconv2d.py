"""bilinear_deconv2d: FCN's fixed bilinear upsampling layers with their crops (VOC 500x500, batch 8).

"aten" is what FCN runs: ``conv_transpose2d`` with the (C, C, 2f, 2f) bilinear weight (cuDNN on
GPU), then the crop. Bytes model: read the input, write the cropped output (both directions).
"""
import torch
import torch.nn.functional as F

import pydense
from pydense.ops.bilinear_deconv import weight

from .common import Case, Problem, layouts_and_dtypes, to_layout

OP = "bilinear_deconv2d"

# name: ((N, C, H, W), factor, crop, (OH, OW))
SHAPES = {
    "fcn-upscore2": ((8, 21, 16, 16), 2, 0, (34, 34)),
    "fcn8s-upscore8": ((8, 21, 70, 70), 8, 31, (500, 500)),
    "fcn32s-upscore": ((8, 21, 16, 16), 32, 19, (500, 500)),
}


def cases(device, quick):
    out = []
    for name, (shape, factor, crop, size) in SHAPES.items():
        if quick or device.type == "cpu":  # batch 1 (fp32 only: layouts_and_dtypes)
            shape = (1, *shape[1:])
        for dtype, layout in layouts_and_dtypes(device, quick):
            out.append(Case(f"{name} {'x'.join(map(str, shape))} f{factor} crop{crop}", dtype, layout,
                            {"shape": shape, "factor": factor, "crop": crop, "size": size}))
    return out


def shape_class(case):
    """The case's class in pydense._tuned: its layout (pydense.ops.bilinear_deconv.shape_class)."""
    return "channels_last" if case.layout == "channels_last" else "nchw"


def problem(case, device):
    p = case.params
    shape, f, crop, (oh, ow) = p["shape"], p["factor"], p["crop"], p["size"]
    x = to_layout(torch.randn(shape, dtype=case.dtype, device=device), case.layout).requires_grad_()
    grad_output = to_layout(torch.randn(*shape[:2], oh, ow, dtype=case.dtype, device=device), case.layout)
    w = weight(shape[1], f, case.dtype, device)

    def eager(t):
        return F.conv_transpose2d(t, w, stride=f)[..., crop:crop + oh, crop:crop + ow]

    x64 = x.detach().cpu().double().requires_grad_()
    ref = F.conv_transpose2d(x64, weight(shape[1], f, torch.float64), stride=f)[..., crop:crop + oh,
                                                                               crop:crop + ow]
    (ref_grad,) = torch.autograd.grad(ref, x64, grad_output.cpu().double())
    nbytes = (x.numel() + grad_output.numel()) * x.element_size()
    return Problem(
        inputs=(x,), grad_inputs=(x,), grad_output=grad_output, eager=eager,
        pydense=lambda backend: (lambda t: pydense.functional.bilinear_deconv2d(
            t, f, crop=crop, output_size=(oh, ow), backend=backend)),
        ref_out=ref.detach(), ref_grads=(ref_grad,), bytes={"fwd": nbytes, "bwd": nbytes},
        # fp32: sums of up to (2f)^2 products; reduced precision: one output rounding (~0.4%)
        tolerance=1e-4 if case.dtype == torch.float32 else 2e-2)
