"""Triton helpers shared by the op modules: linear-position decomposition, index width, and the
device guard of the host launchers."""
import functools

import torch
import triton
import triton.language as tl


@triton.jit
def _decompose(l, C, H, W, CHANNELS_LAST: tl.constexpr):
    """(n, c, h, w) of linear positions ``l`` in NCHW or NHWC memory order."""
    if CHANNELS_LAST:
        c = l % C
        r = l // C
        w = r % W
        r = r // W
        h = r % H
        n = r // H
    else:
        w = l % W
        r = l // W
        h = r % H
        r = r // H
        c = r % C
        n = r // C
    return n, c, h, w


@triton.jit
def _positions(total, INDEX_64: tl.constexpr, BLOCK: tl.constexpr):
    """This program's block of linear positions, int64 only when some tensor spans 2^30 elements."""
    pid = tl.program_id(0).to(tl.int64 if INDEX_64 else tl.int32)
    return pid * BLOCK + tl.arange(0, BLOCK)


def _is_channels_last(t):
    return t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()


def _needs_int64(*tensors):
    """Whether index math must be int64: some tensor's addressed span reaches 2^30 elements.
    (2^30, not 2^31: the last block's positions run up to BLOCK past the total, and must not
    wrap a 32-bit index.)"""
    return any(1 + sum((d - 1) * st for d, st in zip(t.shape, t.stride())) >= 2**30 for t in tensors)


def _cuda_device(values):
    """The device of the first CUDA tensor among ``values`` (tuples and lists searched too)."""
    for v in values:
        if isinstance(v, torch.Tensor):
            if v.device.type == "cuda":
                return v.device
        elif isinstance(v, (tuple, list)):
            d = _cuda_device(v)
            if d is not None:
                return d
    return None


def launcher(fn):
    """Decorate a host launcher so that its kernels launch on its tensors' GPU.

    A Triton launch compiles for, and enqueues on the current stream of, the *current* CUDA
    device, not the tensors' (a tensor on cuda:1 would otherwise be read by a kernel on cuda:0).
    The wrapper makes the tensors' device current for the call, as the C++ kernels' device
    guard does; CPU tensors (the interpreter) run unchanged. The callers have checked that all
    tensors share one device.
    """
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        device = _cuda_device(args) or _cuda_device(kwargs.values())
        if device is None:
            return fn(*args, **kwargs)
        with torch.cuda.device(device):
            return fn(*args, **kwargs)

    wrapper.device_guarded = True
    return wrapper
