"""fcn_skip: FCN-16s/8s skip fusion at VOC 500x500 (pool4 44x44, pool3 88x88, fc7 16x16).

"aten" is the eager chain FCN runs: ``[skip * scale] -> conv2d 1x1 (score) -> conv_transpose2d
(bilinear, k4 s2) -> crop -> add`` (cuDNN on GPU).

Bytes model (element counts: n_c coarse, n_s skip, n_o output, n_w = N*CS*OH*OW the cropped
skip window, n_sc = N*K*HS*WS the full-size scored skip, w = K*CS; e = element size), scored
variant:

* fused fwd: read coarse, the skip window and the weight, write the output: ``n_c + n_w + w + n_o``;
* eager fwd: scale ``2 n_s`` (when != 1), score ``n_s + w + n_sc``, deconvolution ``n_c + n_o``,
  crop + add ``3 n_o``;
* fused bwd: coarse ``n_o + n_c``, skip ``n_o + w + n_s``, weight ``n_o + n_w + w``, bias ``n_o``;
* eager bwd: crop backward ``n_sc + n_o`` (zeros + window), score dgrad ``n_sc + w + n_s``, wgrad
  ``n_sc + n_s + w``, bias ``n_sc``, scale ``2 n_s`` (when != 1), deconvolution ``n_o + n_c``.

Without a score weight (an already-scored skip) the score terms drop out and n_sc = n_s.
"""
import torch
import torch.nn.functional as F

import pydense
from pydense import reference
from pydense.ops.bilinear_deconv import weight as bilinear_weight

from .common import Case, Problem, layouts_and_dtypes, to_layout

OP = "fcn_skip"

# name: ((N, K, H, W) coarse, (N, CS, HS, WS) skip, offset, skip_scale, scored by a 1x1 conv)
SHAPES = {
    "fcn16s-pool4": ((8, 21, 16, 16), (8, 512, 44, 44), 5, 1.0, True),
    "fcn8s-pool3-atonce": ((8, 21, 34, 34), (8, 256, 88, 88), 9, 1e-4, True),
    "fcn16s-prescored": ((8, 21, 16, 16), (8, 21, 44, 44), 5, 1.0, False),
}


def cases(device, quick):
    out = []
    for name, (cshape, sshape, offset, scale, scored) in SHAPES.items():
        if quick or device.type == "cpu":
            cshape, sshape = (1, *cshape[1:]), (1, *sshape[1:])
        for dtype, layout in layouts_and_dtypes(device, quick):
            out.append(Case(f"{name} {'x'.join(map(str, cshape))} + {'x'.join(map(str, sshape))}",
                            dtype, layout, {"coarse": cshape, "skip": sshape, "offset": offset,
                                            "scale": scale, "scored": scored}))
    return out


def problem(case, device):
    p = case.params
    (n, k, h, w), (_, cs, hs, ws), off, scale = p["coarse"], p["skip"], p["offset"], p["scale"]
    oh, ow = 2 * (h + 1), 2 * (w + 1)
    dt = case.dtype
    c = to_layout(torch.randn(p["coarse"], dtype=dt, device=device), case.layout).requires_grad_()
    s = to_layout(torch.randn(p["skip"], dtype=dt, device=device), case.layout).requires_grad_()
    params = ((torch.randn(k, cs, 1, 1, dtype=dt, device=device) * cs ** -0.5).requires_grad_(),
              torch.randn(k, dtype=dt, device=device).requires_grad_()) if p["scored"] else ()
    grad_output = to_layout(torch.randn(n, k, oh, ow, dtype=dt, device=device), case.layout)
    up_w = bilinear_weight(k, 2, dt, device)

    def eager(c, s, *wb):
        sc = s * scale if scale != 1.0 else s
        sc = F.conv2d(sc, *wb) if wb else sc
        return F.conv_transpose2d(c, up_w, stride=2) + sc[..., off:off + oh, off:off + ow]

    def fused(backend):
        return lambda c, s, *wb: pydense.functional.fcn_skip(
            c, s, offset=off, skip_scale=scale, score_weight=wb[0] if wb else None,
            score_bias=wb[1] if wb else None, backend=backend)

    leaves = [t.detach().cpu().double().requires_grad_() for t in (c, s, *params)]
    ref = reference.fcn_skip(leaves[0], leaves[1], 2, off, scale, *leaves[2:])
    ref_grads = torch.autograd.grad(ref, leaves, grad_output.cpu().double())
    e = c.element_size()
    n_c, n_s, n_o, n_w = c.numel(), s.numel(), n * k * oh * ow, n * cs * oh * ow
    wn = k * cs if p["scored"] else 0
    n_sc = n * k * hs * ws if p["scored"] else n_s
    scale_io = 2 * n_s if scale != 1.0 else 0
    score_fwd = n_s + wn + n_sc if p["scored"] else 0
    score_bwd = (n_sc + wn + n_s) + (n_sc + n_s + wn) + n_sc if p["scored"] else 0
    fused_fwd = n_c + (n_w if p["scored"] else n_o) + wn + n_o
    fused_bwd = (n_o + n_c) + (n_o + wn + n_s) + ((n_o + n_w + wn) + n_o if p["scored"] else 0)
    return Problem(
        inputs=(c, s, *params), grad_inputs=(c, s, *params), grad_output=grad_output, eager=eager,
        pydense=fused, ref_out=ref.detach(), ref_grads=ref_grads,
        bytes={"fwd": fused_fwd * e, "bwd": fused_bwd * e},
        eager_bytes={"fwd": (scale_io + score_fwd + n_c + n_o + 3 * n_o) * e,
                     "bwd": ((n_sc + n_o) + score_bwd + scale_io + (n_o + n_c)) * e},
        # sums over 256-512 channels: fp32 (TF32 on GPU as cuDNN's) / half-precision rounding
        tolerance=5e-3 if dt == torch.float32 else 5e-2,
        flops={"fwd": 2 * n_o * cs, "bwd": 4 * n_o * cs} if p["scored"] else None)
