"""Triton kernel of pixel_shuffle / pixel_unshuffle.

Math (factor r)::

    pixel_shuffle:   out[n, c, h*r + i, w*r + j] = in[n, c*r*r + i*r + j, h, w]
    pixel_unshuffle: out[n, c*r*r + i*r + j, h, w] = in[n, c, h*r + i, w*r + j]

Both are permutations, so one gather over the output in its memory order (NCHW or NHWC; any
input strides) does either; each is the other's backward. The index math mirrors
``csrc/common/pixel_shuffle.h`` (source). Values are moved, never computed on.
"""
import triton
import triton.language as tl

from ._common import _decompose, _is_channels_last, _needs_int64, _positions, launcher

BLOCK = 1024
NUM_WARPS = 8

CONFIGS = [("_pixel_shuffle_kernel",
            {"UPSCALE": up, "CHANNELS_LAST": cl, "INDEX_64": i64, "BLOCK": BLOCK})
           for up in (True, False) for cl in (False, True) for i64 in (False, True)]


@triton.jit
def _pixel_shuffle_kernel(x_ptr, out_ptr, xs0, xs1, xs2, xs3, os0, os1, os2, os3, OC, OH, OW, r,
                          total,
                          UPSCALE: tl.constexpr, CHANNELS_LAST: tl.constexpr,
                          INDEX_64: tl.constexpr, BLOCK: tl.constexpr):
    l = _positions(total, INDEX_64, BLOCK)
    live = l < total
    n, oc, oh, ow = _decompose(l, OC, OH, OW, CHANNELS_LAST)
    if UPSCALE:
        h = oh // r
        w = ow // r
        c = oc * r * r + (oh - h * r) * r + (ow - w * r)
    else:
        c = oc // (r * r)
        k = oc - c * r * r
        i = k // r
        h = oh * r + i
        w = ow * r + (k - i * r)
    v = tl.load(x_ptr + n * xs0 + c * xs1 + h * xs2 + w * xs3, mask=live)
    tl.store(out_ptr + n * os0 + oc * os1 + oh * os2 + ow * os3, v, mask=live)


@launcher
def forward(input, factor, upscale, out):
    """Write pixel_(un)shuffle(input, factor) into ``out``; both 4-D, checked by the caller."""
    total = out.numel()
    if total == 0:
        return out
    _pixel_shuffle_kernel[(triton.cdiv(total, BLOCK),)](
        input, out, *input.stride(), *out.stride(), out.shape[1], out.shape[2], out.shape[3],
        factor, total, UPSCALE=upscale, CHANNELS_LAST=_is_channels_last(out),
        INDEX_64=_needs_int64(input, out), BLOCK=BLOCK, num_warps=NUM_WARPS)
    return out
