"""pixel_shuffle / pixel_unshuffle as torch.library ops: ``pydense::pixel_shuffle`` and
``pydense::pixel_unshuffle``.

Both are permutations; each op's backward is the other op on the gradient (same backend). The
implementations allocate the output in the input's memory format and hand it to the backend:
Triton (``pydense.kernels.pixel_shuffle``), the compiled C++ kernels
(``torch.ops.pydense._pixel_shuffle``, csrc/cpu and csrc/cuda) or stock PyTorch.
"""
import torch
import torch.nn.functional as F

from .. import _backend
from ._common import check_float_input, empty_output, launch, out_memory_format


def out_shape(shape, factor, upscale):
    n, c, h, w = shape
    if upscale:
        return (n, c // (factor * factor), h * factor, w * factor)
    return (n, c * factor * factor, h // factor, w // factor)


def _run(input, factor, backend, upscale):
    if backend == "torch":
        fn = F.pixel_shuffle if upscale else F.pixel_unshuffle
        return fn(input, factor).contiguous(memory_format=out_memory_format(input))
    out = empty_output(out_shape(input.shape, factor, upscale), input)
    launch(backend, "pixel_shuffle.forward", "_pixel_shuffle", input, factor, upscale, out)
    return out


def _fake(input, factor, upscale):
    return empty_output(out_shape(input.shape, factor, upscale), input)


@torch.library.custom_op("pydense::pixel_shuffle", mutates_args=())
def pixel_shuffle_op(input: torch.Tensor, upscale_factor: int, backend: str) -> torch.Tensor:
    """4-D pixel_shuffle with a concrete backend (see pydense.functional.pixel_shuffle)."""
    return _run(input, upscale_factor, backend, True)


@torch.library.custom_op("pydense::pixel_unshuffle", mutates_args=())
def pixel_unshuffle_op(input: torch.Tensor, downscale_factor: int, backend: str) -> torch.Tensor:
    """4-D pixel_unshuffle with a concrete backend (see pydense.functional.pixel_unshuffle)."""
    return _run(input, downscale_factor, backend, False)


pixel_shuffle_op.register_fake(lambda input, upscale_factor, backend: _fake(input, upscale_factor, True))
pixel_unshuffle_op.register_fake(lambda input, downscale_factor, backend: _fake(input, downscale_factor, False))


def _setup_context(ctx, inputs, output):
    ctx.factor, ctx.backend = inputs[1], inputs[2]


pixel_shuffle_op.register_autograd(
    lambda ctx, grad: (pixel_unshuffle_op(grad, ctx.factor, ctx.backend), None, None),
    setup_context=_setup_context)
pixel_unshuffle_op.register_autograd(
    lambda ctx, grad: (pixel_shuffle_op(grad, ctx.factor, ctx.backend), None, None),
    setup_context=_setup_context)


def pixel_shuffle(input, upscale_factor, backend="auto"):
    """Validate, pick the backend, and call ``pydense::pixel_shuffle`` (see functional)."""
    return _shuffle(input, upscale_factor, True, backend)


def pixel_unshuffle(input, downscale_factor, backend="auto"):
    """Validate, pick the backend, and call ``pydense::pixel_unshuffle`` (see functional)."""
    return _shuffle(input, downscale_factor, False, backend)


def _shuffle(input, factor, upscale, backend):
    """Either op; ``input`` is (*, C, H, W) with * of any rank."""
    op = "pixel_shuffle" if upscale else "pixel_unshuffle"
    name = "upscale_factor" if upscale else "downscale_factor"
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"{op}: input must be a Tensor, got {type(input).__name__}")
    if input.dim() < 3:
        raise ValueError(f"{op}: input must have at least 3 dimensions (*, C, H, W), got shape "
                         f"{tuple(input.shape)}")
    check_float_input(input, op)
    if not isinstance(factor, int) or isinstance(factor, bool) or factor <= 0:
        raise ValueError(f"{op}: {name} must be a positive int, got {factor!r}")
    c, h, w = input.shape[-3:]
    if upscale and c % (factor * factor):
        raise ValueError(f"{op}: the channel count {c} must be divisible by upscale_factor**2 = "
                         f"{factor * factor}")
    if not upscale and (h % factor or w % factor):
        raise ValueError(f"{op}: height {h} and width {w} must be divisible by downscale_factor "
                         f"{factor}")
    # an empty input: F.pixel_unshuffle returns it unchanged (a torch bug); pydense's kernels give
    # the documented shape
    backend = _backend.resolve(backend, input.device, op, shape_class="*" if input.numel() else None)
    if backend == "aten":
        return _backend.unrouted(F.pixel_shuffle if upscale else F.pixel_unshuffle, input, factor)
    batch = input.shape[:-3]
    n = 1
    for b in batch:
        n *= b
    x = input if input.dim() == 4 else input.reshape(n, c, h, w)  # explicit: -1 fails on 0 elements
    out = (pixel_shuffle_op if upscale else pixel_unshuffle_op)(x, factor, backend)
    return out if input.dim() == 4 else out.reshape(*batch, *out.shape[1:])
