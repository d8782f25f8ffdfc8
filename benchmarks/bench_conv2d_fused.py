"""conv2d_fused: EDSR's residual scale-add and conv-ReLU as conv epilogues (no extra pass).

EDSR's ResBlock is ``x + res_scale * conv2(relu(conv1(x)))``: "aten" runs the eager chain
(cuDNN convolution, then ReLU / ``res_scale *`` / ``+ x`` as separate kernels), pydense one
convolution whose epilogue applies them (``conv2d_fused(h, w, b, activation=..., residual=x,
scale=res_scale)``). Shapes: baseline F=64 (res_scale 1) on 48x48 train patches (batch 16) and a
256x256 inference image, the paper's F=256 (res_scale 0.1).

Bytes model (element counts n_in input, n_w weight, n_o output; e = element size):

* fused fwd: read input, weight (and the residual), write the output: ``n_in + n_w (+ n_o) + n_o``;
* eager fwd: the convolution ``n_in + n_w + n_o``, then ReLU ``2 n_o`` or ``res_scale *`` ``2 n_o``
  (when != 1) and ``+ x`` ``3 n_o``;
* bwd (both): input and weight gradients ``2 (n_in + n_w + n_o)``, plus ``2 n_o`` for the scale
  (when != 1); the ReLU mask: eager reads the saved output (``3 n_o``), pydense recomputes the
  pre-activation (``n_in + n_w + n_o``, then ``3 n_o``) instead of saving it.
"""
import torch
import torch.nn.functional as F

import pydense

from .common import Case, Problem, layouts_and_dtypes, to_layout

OP = "conv2d_fused"

# name: ((N, F, H, W), epilogue, res_scale)
SHAPES = {
    "edsr-resblock-conv2": ((16, 64, 48, 48), "residual", 1.0),
    "edsr-resblock-conv1": ((16, 64, 48, 48), "relu", 1.0),
    "edsr-infer-conv2": ((1, 64, 256, 256), "residual", 1.0),
    "edsr-paper-conv2": ((16, 256, 48, 48), "residual", 0.1),
}
QUICK = {"edsr-resblock-conv2": (1, 16, 24, 24), "edsr-resblock-conv1": (1, 16, 24, 24),
         "edsr-infer-conv2": (1, 16, 32, 32), "edsr-paper-conv2": (1, 32, 16, 16)}


def cases(device, quick):
    out = []
    for name, (shape, epilogue, scale) in SHAPES.items():
        if quick:
            shape = QUICK[name]
        elif device.type == "cpu":
            shape = (1, *shape[1:])
        for dtype, layout in layouts_and_dtypes(device, quick):
            out.append(Case(f"{name} {'x'.join(map(str, shape))} 3x3 {epilogue} s={scale}", dtype,
                            layout, {"shape": shape, "epilogue": epilogue, "scale": scale}))
    return out


def problem(case, device):
    shape, epilogue, scale = case.params["shape"], case.params["epilogue"], case.params["scale"]
    c = shape[1]
    gen = torch.Generator(device=device).manual_seed(0)
    x = to_layout(torch.randn(shape, device=device, generator=gen).to(case.dtype), case.layout)
    w = (torch.randn(c, c, 3, 3, device=device, generator=gen) * (9 * c) ** -0.5).to(case.dtype)
    b = torch.randn(c, device=device, generator=gen).to(case.dtype)
    res = epilogue == "residual"
    for t in (x, w):
        t.requires_grad_()

    def eager(x, w, b):
        y = F.conv2d(x, w, b, padding=1)
        return x + scale * y if res else F.relu(y)

    def fused(backend):
        return lambda x, w, b: pydense.functional.conv2d_fused(
            x, w, b, padding=1, activation=None if res else "relu", residual=x if res else None,
            scale=scale, backend=backend)

    x64, w64 = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    ref = eager(x64, w64, b.double())
    grad_output = to_layout(torch.randn(ref.shape, device=device, generator=gen).to(case.dtype), case.layout)
    ref_grads = torch.autograd.grad(ref, (x64, w64), grad_output.double())
    e = x.element_size()
    n_in, n_w, n_o = x.numel(), w.numel(), ref.numel()
    conv = n_in + n_w + n_o
    scale_io = 2 * n_o if scale != 1.0 else 0
    flops = 2 * n_o * c * 9
    return Problem(
        inputs=(x, w, b), grad_inputs=(x, w), grad_output=grad_output, eager=eager, pydense=fused,
        ref_out=ref.detach().cpu(), ref_grads=tuple(g.cpu() for g in ref_grads),
        bytes={"fwd": (conv + (n_o if res else 0)) * e,
               "bwd": (2 * conv + scale_io + (0 if res else conv + 3 * n_o)) * e},
        eager_bytes={"fwd": (conv + (scale_io + 3 * n_o if res else 2 * n_o)) * e,
                     "bwd": (2 * conv + scale_io + (0 if res else 3 * n_o)) * e},
        flops={"fwd": flops, "bwd": 2 * flops},
        # sums of 9*F products of unit-variance terms (fp32 may use TF32 on GPU)
        tolerance=2e-2 if case.dtype == torch.float32 else 1e-1)
