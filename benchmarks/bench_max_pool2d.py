"""max_pool2d_with_indices: the SegNet encoder's pooling (kernel 2, stride 2, ceil_mode), stages 1
and 5, with ATen's int64 indices and with compact uint8 window offsets.

The timed callables return the pooled values (so the harness can differentiate them); every
provider computes the indices too: "aten"/"compile" run ``F.max_pool2d(..., return_indices=True)``
(int64 indices in every row), pydense runs ``max_pool2d_with_indices(..., compact=<row>)``.

Bytes model (what an ideal kernel must move, ``e`` = element size, ``b`` = index size: 8 for
int64 rows, 1 for compact rows, ``n_in`` = input elements, ``n_out`` = pooled elements):

* fwd: read the input, write values and indices: ``n_in * e + n_out * (e + b)``;
* bwd: read grad_output and the indices, write grad_input: ``n_out * (e + b) + n_in * e``
  (with kernel == stride each grad_output element is read once);
* fwd+bwd: the sum.

The aten rows of a compact case are modelled with the case's (compact) bytes, although ATen moves
int64 indices: compare times, not GB/s, across index kinds.
"""
import torch
import torch.nn.functional as F

import pydense
from pydense import reference

from .common import Problem, pooling_cases, to_layout

OP = "max_pool2d"
KERNEL = STRIDE = 2

# name: (N, C, H, W) of the pooled input (REFERENCE: SegNet 360x480 stage 1 and stage 5).
SHAPES = {"segnet1": (8, 64, 360, 480), "segnet5": (8, 512, 45, 60)}


def cases(device, quick):
    """Full shapes on GPU; batch 1 with 64 channels on CPU; batch 1 with 16 channels in quick."""
    return pooling_cases(SHAPES, STRIDE, device, quick, _case_name)


def _case_name(name, shape, pooled, compact):
    (n, c, h, w), (oh, ow) = shape, pooled
    return f"{name} {n}x{c}x{h}x{w}->{oh}x{ow} {'compact' if compact else 'int64'}"


def problem(case, device):
    n, c, h, w = case.params["shape"]
    compact = case.params["compact"]
    x = to_layout(torch.randn(n, c, h, w, dtype=case.dtype, device=device), case.layout)
    x.requires_grad_()
    ref_out, ref_flat, _ = reference.max_pool2d_with_indices(
        x.detach().cpu().double(), (KERNEL, KERNEL), (STRIDE, STRIDE), ceil_mode=True)
    grad_output = to_layout(torch.randn(ref_out.shape, dtype=case.dtype, device=device), case.layout)

    def eager(inp):
        return F.max_pool2d(inp, KERNEL, STRIDE, ceil_mode=True, return_indices=True)[0]

    def pydense_fn(backend):
        def fn(inp):
            return pydense.functional.max_pool2d_with_indices(
                inp, KERNEL, STRIDE, ceil_mode=True, compact=compact, backend=backend)[0]
        return fn

    e, b = x.element_size(), (1 if compact else 8)
    n_in, n_out = x.numel(), ref_out.numel()
    return Problem(
        inputs=(x,), grad_inputs=(x,), grad_output=grad_output, eager=eager, pydense=pydense_fn,
        ref_out=ref_out,
        ref_grads=(reference.max_pool2d_backward(grad_output.cpu().double(), ref_flat, (h, w)),),
        bytes={"fwd": n_in * e + n_out * (e + b), "bwd": n_out * (e + b) + n_in * e})
