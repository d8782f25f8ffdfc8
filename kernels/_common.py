"""What the op modules share: the interpreter flag, the accumulation type and the TF32 switch
(the package's one definitions, from pydense._backend and pydense.ops._common), linear-position
decomposition, index width, the device guard of the host launchers, and the device functions more
than one op's kernels call (``k_loop``: a GEMM K loop; ``bilinear_gather``: the four-tap blend of
bilinear upsampling; ``sum_rows``: the fixed-order second pass of the histogram kernels).

A host launcher takes its compiled twin's schema arguments (``torch.ops.pydense._<op>_<role>``),
so an op runs either through ``pydense.ops._common.launch``. An op module imports from here,
never from another op module's private names; a kernel stays in its op's module
(``_<op>_<role>_kernel``), so a profile names the op that launched it."""
import functools

import torch
import triton
import triton.language as tl

from .._backend import triton_interpret  # noqa: F401  (the one reader of TRITON_INTERPRET)
from ..ops._common import acc_dtype, allow_tf32  # noqa: F401  (the one definitions)


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


@triton.jit
def k_loop(acc, a_ptr, a_row, a_ok, a_kstride, b_ptr, b_col, b_ok, b_kstride, K, kk,
           BK: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    """acc += A @ B over k in [0, K) in blocks of BK, with A[m, k] = a_ptr[a_row[m] + k*a_kstride]
    (rows masked by a_ok) and B[k, j] = b_ptr[k*b_kstride + b_col[j]] (columns masked by b_ok).
    Only the 1-D row/column offsets live across iterations (2-D pointer tensors would cost
    registers and spill at 128x128 tiles). UPCAST: bf16 tiles are converted to fp32 before the
    dot (the interpreter's bf16 arithmetic is wrong)."""
    for k0 in range(0, K, BK):
        k = k0 + kk
        k_ok = k < K
        a = tl.load(a_ptr + a_row[:, None] + (k * a_kstride)[None, :],
                    mask=a_ok[:, None] & k_ok[None, :], other=0.0)
        b = tl.load(b_ptr + (k * b_kstride)[:, None] + b_col[None, :],
                    mask=k_ok[:, None] & b_ok[None, :], other=0.0)
        if UPCAST:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, b, acc, input_precision=PRECISION, out_dtype=acc.dtype)
    return acc


@triton.jit
def bilinear_gather(base, H, W, s2, s3, h0, h1, w0, w1, lh0, lh1, lw0, lw1, live, acc: tl.constexpr):
    """The blend of the four taps (h0|h1, w0|w1) of the planes at ``base`` (H x W, strides s2,
    s3). A tap outside the plane reads 0 (the tables mark a tap that does not exist with -1:
    bilinear_deconv2d's borders), so it is never multiplied (0 * inf would give NaN)."""
    # one unsigned compare per tap: a negative index is a huge unsigned one
    h0_ok = live & (h0.to(tl.uint32, bitcast=True) < H.to(tl.uint32))
    h1_ok = live & (h1.to(tl.uint32, bitcast=True) < H.to(tl.uint32))
    w0_ok = w0.to(tl.uint32, bitcast=True) < W.to(tl.uint32)
    w1_ok = w1.to(tl.uint32, bitcast=True) < W.to(tl.uint32)
    x00 = tl.load(base + h0 * s2 + w0 * s3, mask=h0_ok & w0_ok, other=0.0).to(acc)
    x01 = tl.load(base + h0 * s2 + w1 * s3, mask=h0_ok & w1_ok, other=0.0).to(acc)
    x10 = tl.load(base + h1 * s2 + w0 * s3, mask=h1_ok & w0_ok, other=0.0).to(acc)
    x11 = tl.load(base + h1 * s2 + w1 * s3, mask=h1_ok & w1_ok, other=0.0).to(acc)
    return lh0 * (lw0 * x00 + lw1 * x01) + lh1 * (lw0 * x10 + lw1 * x11)


@triton.jit
def sum_rows(part_ptr, out_ptr, rows, cols, BLOCK: tl.constexpr):
    """out[b] = sum over r = 0, 1, ..., rows - 1 of part[r, b] (int64, (rows, cols) contiguous), in
    that fixed order, for this program's BLOCK columns b: the second pass of the histogram kernels
    (``sum_rows`` of csrc/common/cuda_launch.cuh)."""
    bins = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = bins < cols
    acc = tl.zeros([BLOCK], dtype=tl.int64)
    row = part_ptr + bins  # 64-bit pointers: no 32-bit wrap of r * cols
    for _ in range(0, rows):  # rows r = 0, 1, ..., rows - 1: a fixed order
        acc += tl.load(row, mask=m, other=0)
        row += cols
    tl.store(out_ptr + bins, acc, mask=m)
