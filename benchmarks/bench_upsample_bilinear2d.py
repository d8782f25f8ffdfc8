"""upsample_bilinear2d: the canonical bilinear shapes (segmentation heads, FCN score upsampling).

Bytes model (``e`` = element size): fwd reads the input once and writes the output:
``(n_in + n_out) * e``; bwd reads grad_output once and writes grad_input: the same. fwd+bwd: the
sum. (Re-reads of neighbouring input pixels hit the cache and are not counted.)
"""
import torch
import torch.nn.functional as F

import pydense
from pydense import reference

from .common import Case, Problem, to_layout

OP = "upsample_bilinear2d"

# name: ((N, C, H, W), (OH, OW), dtypes on GPU, layouts)
SHAPES = {
    "deeplab-64ch": ((8, 64, 256, 256), (512, 512), (torch.bfloat16,), ("channels_last",)),
    "fcn-score": ((8, 21, 16, 16), (512, 512), (torch.bfloat16, torch.float32), ("nchw", "channels_last")),
    "odd": ((4, 3, 1234, 1345), (2345, 2456), (torch.float32,), ("nchw",)),
    "cityscapes": ((8, 19, 128, 256), (512, 1024), (torch.bfloat16, torch.float32), ("nchw", "channels_last")),
}
QUICK = {"deeplab-64ch": (1, 8, 32, 32), "fcn-score": (1, 21, 8, 8), "odd": (1, 3, 31, 37),
         "cityscapes": (1, 19, 16, 32)}


def cases(device, quick):
    out = []
    for name, (shape, out_hw, dtypes, layouts) in SHAPES.items():
        if quick or device.type == "cpu":
            n, c, h, w = QUICK[name] if quick else (1, *shape[1:])
            out_hw = (out_hw[0] * h // shape[2], out_hw[1] * w // shape[3])
            shape, dtypes = (n, c, h, w), (torch.float32,)
        for dtype in dtypes:
            for layout in layouts:
                for align in (False, True):
                    out.append(Case(f"{name} {'x'.join(map(str, shape))}->{out_hw[0]}x{out_hw[1]}"
                                    f" ac={int(align)}", dtype, layout,
                                    {"shape": shape, "size": out_hw, "align_corners": align}))
    return out


def problem(case, device):
    shape, size, align = case.params["shape"], case.params["size"], case.params["align_corners"]
    x = to_layout(torch.randn(shape, dtype=case.dtype, device=device), case.layout).requires_grad_()
    grad_output = to_layout(torch.randn(*shape[:2], *size, dtype=case.dtype, device=device), case.layout)
    x64 = x.detach().cpu().double().requires_grad_()
    ref = reference.upsample_bilinear2d(x64, size, align)
    (ref_grad,) = torch.autograd.grad(ref, x64, grad_output.cpu().double())
    nbytes = (x.numel() + grad_output.numel()) * x.element_size()
    return Problem(
        inputs=(x,), grad_inputs=(x,), grad_output=grad_output,
        eager=lambda t: F.interpolate(t, size=size, mode="bilinear", align_corners=align),
        pydense=lambda backend: (lambda t: pydense.functional.interpolate(
            t, size=size, mode="bilinear", align_corners=align, backend=backend)),
        ref_out=ref.detach(), ref_grads=(ref_grad,), bytes={"fwd": nbytes, "bwd": nbytes},
        # fp32 source indices (ATen's too) round at ~1e-4 on 1000-pixel axes: the exact float64
        # oracle then differs by up to ~1e-3 for every provider, ATen included.
        tolerance=2e-3 if case.dtype == torch.float32 else 2e-2)
