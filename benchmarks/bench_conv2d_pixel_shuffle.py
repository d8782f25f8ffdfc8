"""conv2d_pixel_shuffle: EDSR's sub-pixel upsampler (conv F -> r*r*F, PixelShuffle(r)) with the
shuffle fused into the convolution's epilogue.

Shapes (REFERENCE section 5/6): the baseline (F = 64) x2 upsampler on 48x48 training patches
(batch 16) and on a 256x256 inference input; the second x2 stage of the x4 upsampler (on the
2x-upsampled map); the x3 upsampler (conv 64 -> 576, r = 3); the paper model's (F = 256) x2
upsampler (conv 256 -> 1024).

"aten" is ``F.pixel_shuffle(F.conv2d(...), r)`` (cuDNN, then a permutation kernel); "compile" /
"compile-max-autotune" compile that. TFLOP/s counts the convolution, 2 * numel(Y) * C * kH * kW
per product (the backward does two). Bytes model (``e`` = element size): fused fwd reads x and
the weight and writes Y; the eager chain also writes the convolution's output and reads it back
(``eager_bytes``: x + w + 3 Y), hence the "bytes_vs_eager" column. The backward is the same chain
on both sides (unshuffle the gradient: read + write Y; then the input and weight gradients: as
bench_conv2d's 2 * (x + w + Y)).
"""
import torch
import torch.nn.functional as F

import pydense

from .common import Case, Problem, layouts_and_dtypes, to_layout

OP = "conv2d_pixel_shuffle"
MAX_AUTOTUNE = True

# name: ((N, C, H, W), C_out, r); kernel 3x3, padding 1 (EDSR's default_conv)
SHAPES = {
    "edsr-x2-train": ((16, 64, 48, 48), 64, 2),
    "edsr-x2-infer": ((1, 64, 256, 256), 64, 2),
    "edsr-x4-stage2-train": ((16, 64, 96, 96), 64, 2),
    "edsr-x4-stage2-infer": ((1, 64, 512, 512), 64, 2),
    "edsr-x3-train": ((16, 64, 48, 48), 64, 3),
    "edsr-paper-x2-train": ((16, 256, 48, 48), 256, 2),
}
K = 3
# CPU: batch 1 of two shapes; --quick: those with 16 channels on 24x24.
SMALL = {"edsr-x2-train", "edsr-x3-train"}


def cases(device, quick):
    out = []
    for name, (shape, co, r) in SHAPES.items():
        if quick or device.type == "cpu":
            if name not in SMALL:
                continue
            shape = (1, 16, 24, 24) if quick else (1, *shape[1:])
            co = 16 if quick else co
        for dtype, layout in layouts_and_dtypes(device, quick):
            out.append(Case(f"{name} {'x'.join(map(str, shape))}->{co * r * r} k{K} r{r}", dtype,
                            layout, {"shape": shape, "co": co, "r": r}))
    return out


def problem(case, device):
    p = case.params
    shape, co, r = p["shape"], p["co"], p["r"]
    c = shape[1]
    gen = torch.Generator(device=device).manual_seed(0)
    x = to_layout(torch.randn(shape, device=device, generator=gen).to(case.dtype), case.layout)
    w = (torch.randn(co * r * r, c, K, K, device=device, generator=gen) * (c * K * K) ** -0.5).to(case.dtype)
    b = torch.randn(co * r * r, device=device, generator=gen).to(case.dtype)
    x.requires_grad_()
    w.requires_grad_()

    def eager(x, w, b):
        return F.pixel_shuffle(F.conv2d(x, w, b, padding=K // 2), r)

    x64, w64 = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    ref = eager(x64, w64, b.double())
    grad_output = to_layout(torch.randn(ref.shape, device=device, generator=gen).to(case.dtype), case.layout)
    ref_grads = torch.autograd.grad(ref, (x64, w64), grad_output.double())
    e = x.element_size()
    flops = 2 * ref.numel() * c * K * K
    xw = (x.numel() + w.numel() + b.numel()) * e
    y = ref.numel() * e
    bwd = 2 * (xw + y) + 2 * y
    return Problem(
        inputs=(x, w, b), grad_inputs=(x, w), grad_output=grad_output, eager=eager,
        pydense=lambda backend: (lambda x, w, b: pydense.functional.conv2d_pixel_shuffle(
            x, w, b, r, backend=backend)),
        ref_out=ref.detach().cpu(), ref_grads=tuple(g.cpu() for g in ref_grads),
        bytes={"fwd": xw + y, "bwd": bwd}, eager_bytes={"fwd": xw + 3 * y, "bwd": bwd},
        flops={"fwd": flops, "bwd": 2 * flops},
        # sums of C*k*k products of unit-variance terms (fp32 may use TF32 on GPU)
        tolerance=2e-2 if case.dtype == torch.float32 else 1e-1)
