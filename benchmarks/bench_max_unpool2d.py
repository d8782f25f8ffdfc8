"""max_unpool2d: the SegNet decoder's unpooling (kernel 2, stride 2), stages 1 and 5.

Indices come from ``max_pool2d(x, 2, 2, ceil_mode=True, return_indices=True)`` of a random ``x``
on the device (int64 rows), or from ``pydense.functional.max_pool2d_with_indices(..., compact=True)``
(compact rows: uint8 window offsets that pydense decodes in the kernels; "aten"/"compile" get the
int64 indices in every row, as they cannot read compact ones); unpooling restores ``x``'s size.

Bytes model (what an ideal kernel must move, ``e`` = element size, ``n_in`` = pooled elements,
``n_out`` = output elements):

* fwd: read input and indices (``b`` = 8 bytes int64, 1 compact), write the output:
  ``n_in * (e + b) + n_out * e``;
* bwd: read the indices, gather one grad_output element per input element, write grad_input:
  ``n_in * (b + 2 * e)`` (the gathered reads are counted as grad_input bytes);
* fwd+bwd: the sum.
"""
import torch
import torch.nn.functional as F

import pydense
from pydense import reference

from .common import Problem, pooling_cases, to_layout

OP = "max_unpool2d"
KERNEL = STRIDE = 2

# name: (N, C, H, W) of the tensor that is pooled; its (H, W) is the unpooled output size.
SHAPES = {"segnet1": (8, 64, 360, 480), "segnet5": (8, 512, 23, 30)}


def cases(device, quick):
    """Full shapes on GPU; batch 1 with 64 channels on CPU; batch 1 with 16 channels in quick."""
    return pooling_cases(SHAPES, STRIDE, device, quick, _case_name)


def _case_name(name, shape, pooled, compact):
    (n, c, h, w), (ph, pw) = shape, pooled
    return f"{name} {n}x{c}x{ph}x{pw}->{h}x{w}{' compact' if compact else ''}"


def problem(case, device):
    n, c, h, w = case.params["shape"]
    out_hw = (h, w)
    x = to_layout(torch.randn(n, c, h, w, dtype=case.dtype, device=device), case.layout)
    pooled, indices = F.max_pool2d(x, KERNEL, STRIDE, ceil_mode=True, return_indices=True)
    pooled = to_layout(pooled, case.layout).detach().requires_grad_()
    indices = to_layout(indices, case.layout)
    compact = case.params.get("compact", False)
    ours = indices
    if compact:
        ours = to_layout(pydense.functional.max_pool2d_with_indices(
            x, KERNEL, STRIDE, ceil_mode=True, compact=True)[1], case.layout)
    grad_output = to_layout(torch.randn(n, c, h, w, dtype=case.dtype, device=device), case.layout)

    def eager(inp, idx):
        return F.max_unpool2d(inp, idx, KERNEL, STRIDE, output_size=out_hw)

    def pydense_fn(backend):
        def fn(inp, idx):  # idx: the int64 indices; compact rows use their uint8 twin
            return pydense.functional.max_unpool2d(inp, ours if compact else idx, KERNEL, STRIDE,
                                                   output_size=out_hw, backend=backend)
        return fn

    x64, idx_cpu = pooled.detach().cpu().double(), indices.cpu()
    e, n_in, n_out = pooled.element_size(), pooled.numel(), n * c * h * w
    b = 1 if compact else 8
    return Problem(
        inputs=(pooled, indices), grad_inputs=(pooled,), grad_output=grad_output,
        eager=eager, pydense=pydense_fn,
        ref_out=reference.max_unpool2d(x64, idx_cpu, out_hw),
        ref_grads=(reference.max_unpool2d_backward(grad_output.cpu().double(), idx_cpu),),
        bytes={"fwd": n_in * (e + b) + n_out * e, "bwd": n_in * (b + 2 * e)})
