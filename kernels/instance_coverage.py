"""Triton kernel of the instance coverage patterns (the parallel half of panoptic fusion).

Math::

    cov[h, w, j] = sum over ranks r in [64 j, min(64 j + 64, K)) of
                   (masks[order[r], h, w] != 0) << (r - 64 j)        (as a two's complement int64)

i.e. bit r % 64 of word r // 64 is set iff instance ``order[r]`` covers the pixel. Program
(``pid``, ``j``) owns the BLOCK consecutive pixels [pid * BLOCK, (pid + 1) * BLOCK) and word ``j``:
it ORs its 64 ranks' bits in registers and stores each word once (no atomics: deterministic).
Masks are read through their strides as uint8 (bool masks are viewed as uint8). The word/bit
math mirrors ``csrc/common/instance_coverage.h``.
"""
import triton
import triton.language as tl

from ._common import _needs_int64, launcher

BLOCK = 512
NUM_WARPS = 4
BITS = 64

# Every compile-time configuration the launcher uses: (kernel name, constexprs, dtypes of masks).
CONFIGS = [("_instance_coverage_kernel", {"INDEX_64": i64, "BLOCK": BLOCK}, ["u8"])
           for i64 in (False, True)]


@triton.jit
def _instance_coverage_kernel(masks_ptr, order_ptr, cov_ptr, HW, W, NW, K, s0, s1, s2,
                              INDEX_64: tl.constexpr, BLOCK: tl.constexpr):
    idx_t: tl.constexpr = tl.int64 if INDEX_64 else tl.int32
    p = tl.program_id(0).to(idx_t) * BLOCK + tl.arange(0, BLOCK).to(idx_t)
    j = tl.program_id(1)
    live = p < HW
    h = p // W
    w = p - h * W
    px = masks_ptr + (h * s1 + w * s2)
    r0 = j * 64
    r1 = tl.minimum(r0 + 64, K)
    word = tl.zeros([BLOCK], dtype=tl.int64)
    one = tl.full([BLOCK], 1, tl.int64)
    for r in range(r0, r1):
        m = tl.load(order_ptr + r).to(idx_t)
        v = tl.load(px + m * s0, mask=live, other=0)
        word |= tl.where(v != 0, one << (r - r0).to(tl.int64), 0)
    tl.store(cov_ptr + p.to(tl.int64) * NW + j, word, mask=live)


@launcher
def forward(masks, order, out):
    """Write the coverage patterns of ``masks`` (M, H, W) bool/uint8 for the instances ``order``
    (K,) contiguous int64 into ``out`` (H, W, ceil(K / 64)) int64 contiguous; arguments checked by
    the caller."""
    import torch

    _, H, W = masks.shape
    K = order.numel()
    NW = out.shape[2]
    if H * W == 0 or NW == 0:
        return out
    if masks.dtype == torch.bool:
        masks = masks.view(torch.uint8)
    index_64 = _needs_int64(masks) or H * W * NW + BLOCK >= 2**30
    grid = (triton.cdiv(H * W, BLOCK), NW)
    _instance_coverage_kernel[grid](masks, order, out, H * W, W, NW, K, *masks.stride(),
                                    INDEX_64=index_64, BLOCK=BLOCK, num_warps=NUM_WARPS)
    return out
