"""upsample_concat: UNet's decoder skip, ``torch.cat([F.interpolate(x, scale_factor=2), skip], 1)``.

Bytes model (element counts n_x, n_skip, n_up = the upsampled x; ``e`` = element size):

* fused fwd: read x and skip, write the output once: ``(n_x + 2 n_skip + n_up) * e``;
* eager fwd: interpolate reads x and writes the upsampled tensor, cat reads it and skip back and
  writes the output: ``(n_x + 3 n_up + 2 n_skip) * e``;
* bwd (both): the skip's gradient is a view of the output gradient; x's reads the first C_x
  channels of the output gradient and writes its gradient: ``(n_up + n_x) * e``.

``bytes_vs_eager`` is the fused bytes over the eager chain's.
"""
import torch
import torch.nn.functional as F

import pydense
from pydense import reference

from .common import Case, Problem, layouts_and_dtypes, to_layout

OP = "upsample_concat"

# name: ((N, C_x, H, W), C_skip, mode)
SHAPES = {
    "unet-64ch": ((8, 64, 256, 256), 64, "bilinear"),
    "unet-512ch": ((8, 512, 32, 32), 512, "bilinear"),
    "unet-64ch-nearest": ((8, 64, 256, 256), 64, "nearest"),
}
QUICK = {"unet-64ch": (1, 8, 32, 32), "unet-512ch": (1, 32, 8, 8), "unet-64ch-nearest": (1, 8, 32, 32)}


def cases(device, quick):
    out = []
    for name, (shape, cs, mode) in SHAPES.items():
        if quick or device.type == "cpu":
            shape = QUICK[name] if quick else (1, *shape[1:])
            cs = shape[1]
        for dtype, layout in layouts_and_dtypes(device, quick):
            out.append(Case(f"{name} {'x'.join(map(str, shape))} + {cs}ch {mode}", dtype, layout,
                            {"shape": shape, "skip_channels": cs, "mode": mode}))
    return out


def problem(case, device):
    shape, cs, mode = case.params["shape"], case.params["skip_channels"], case.params["mode"]
    n, c, h, w = shape
    size = (2 * h, 2 * w)
    ac = False if mode == "bilinear" else None
    x = to_layout(torch.randn(shape, dtype=case.dtype, device=device), case.layout).requires_grad_()
    skip = to_layout(torch.randn(n, cs, *size, dtype=case.dtype, device=device),
                     case.layout).requires_grad_()
    grad_output = to_layout(torch.randn(n, c + cs, *size, dtype=case.dtype, device=device), case.layout)

    def eager(a, b):
        return torch.cat([F.interpolate(a, scale_factor=2, mode=mode, align_corners=ac), b], 1)

    x64 = x.detach().cpu().double().requires_grad_()
    s64 = skip.detach().cpu().double().requires_grad_()
    ref = reference.upsample_concat(x64, s64, mode, False, (2.0, 2.0))
    ref_grads = torch.autograd.grad(ref, (x64, s64), grad_output.cpu().double())
    e = x.element_size()
    n_x, n_s, n_up = x.numel(), skip.numel(), n * c * size[0] * size[1]
    bwd = (n_up + n_x) * e
    return Problem(
        inputs=(x, skip), grad_inputs=(x, skip), grad_output=grad_output, eager=eager,
        pydense=lambda backend: (lambda a, b: pydense.functional.upsample_concat(
            a, b, mode=mode, backend=backend)),
        ref_out=ref.detach(), ref_grads=ref_grads,
        bytes={"fwd": (n_x + 2 * n_s + n_up) * e, "bwd": bwd},
        eager_bytes={"fwd": (n_x + 3 * n_up + 2 * n_s) * e, "bwd": bwd},
        tolerance=1e-5 if case.dtype == torch.float32 else 2e-2)
