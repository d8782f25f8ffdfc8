"""Tile and configuration choice of the convolution kernels, from the shapes only (see the package
docstring): the constants, the GEMM tiles (``gemm_tile``, ``wgrad_tile``) and their autotuned
alternative (``autotune``, pruned to the tiles that fit in shared memory), the weight gradient's
split-K (``split_k``), the precision flags, and ``CONFIGS``, the AOT table: every configuration
the launchers can use, which tests/test_aot.py compiles for sm_80 and sm_90.

No kernels live here: the table names them (kernels/conv/gemm.py, depthwise.py, shared.py)."""
import os

import torch
import triton

from .._common import triton_interpret

INTERPRET = triton_interpret()

# GEMM kernels unroll the taps (tl.static_range) for 2-byte data and kernels of at most this
# many taps; otherwise a runtime loop runs over them. Unrolled 3x3 taps compile in ~7-13 s per
# config for fp16/bf16 but ~35 s for fp32/fp64 (measured with triton.compile for sm_80/sm_90),
# and every autotune config is compiled on first use; a runtime tap loop compiles in ~6 s.
STATIC_TAPS_MAX = 9
DW_STATIC_TAPS_MAX = 49  # the depthwise kernels are small: unroll up to 7x7
BLOCK = 256  # depthwise forward/dgrad and the reduction: elements per program
NUM_WARPS = 4
DW_BP, DW_BC = 64, 32  # depthwise wgrad tile: positions x channels
TARGET_PROGRAMS = 264  # wgrad split-K aims at this many programs (2 waves of 132 SMs); fixed, so
# the split (and the result's bits) depends on the shapes only, never on the device

# GEMM tiles (BM, BN, BK, num_warps, num_stages) for fp16/bf16/fp32 (BK=64: 2-byte data only):
# gemm_tile picks one from the shapes, or PYDENSE_AUTOTUNE=1 times them all. Chosen from the AOT
# resource table (tests/test_aot.py): these compile without register spills for sm_80 and sm_90;
# 128x128 tiles spilled (1.5-12 KB) at 4 and 8 warps.
GEMM_TILES = [(128, 64, 32, 8, 3), (64, 128, 32, 8, 3), (64, 128, 64, 8, 3)]
FP64_TILE = (32, 32, 32, 4, 2)  # fp64 data
INDEX64_TILE = (32, 64, 32, 4, 2)  # 64-bit index math (tensors of 2^30+ elements)
INTERPRET_TILE = (32, 32, 16, 4, 1)
WGRAD_TILES = [(128, 128, 32, 8, 3), (64, 64, 32, 4, 3)]

SMEM_BUDGET = 160 * 1024  # fits sm_80 (163 KiB per block) and sm_90 (227 KiB)


def pipeline_smem(bm, bn, bk, stages, element_size):
    """Shared memory of a pipelined GEMM tile: ``stages`` buffers of the A and B tiles."""
    return stages * (bm * bk + bk * bn) * element_size


# ---------------------------------------------------------------------------------------------
# GEMM tiles: fixed from the shapes, or autotuned (PYDENSE_AUTOTUNE=1)


def autotune_enabled():
    """Whether the forward / input-gradient GEMM tiles are timed (``PYDENSE_AUTOTUNE=1``) instead
    of chosen from the shapes (the default; see the package docstring)."""
    return os.environ.get("PYDENSE_AUTOTUNE", "0") not in ("", "0")


def _dedicated_tile(dtype, index_64):
    """The tile every GEMM uses under the interpreter, for 64-bit indices or for fp64 data; None
    otherwise (the shapes decide)."""
    if INTERPRET:
        return INTERPRET_TILE
    if index_64:
        return INDEX64_TILE
    if dtype == torch.float64:
        return FP64_TILE
    return None


def gemm_tile(N, dtype, index_64):
    """The forward / input-gradient GEMM tile (BM, BN, BK, num_warps, num_stages) for a GEMM
    whose N dimension (output channels of the forward, input channels of the input gradient,
    per group) is ``N``, chosen from the shapes only: the dedicated tiles for fp64 data and
    64-bit indices; else the wide tile (BN = 128) when N > 64 and the tall one (BM = 128)
    otherwise, with BK = 64 for 2-byte data (GEMM_TILES)."""
    special = _dedicated_tile(dtype, index_64)
    if special:
        return special
    if N <= 64:
        return GEMM_TILES[0]
    return GEMM_TILES[2] if dtype in (torch.float16, torch.bfloat16) else GEMM_TILES[1]


def wgrad_tile(OCg, Cg, dtype, index_64):
    """The weight-gradient GEMM tile, chosen from the shapes only (no timing-based autotuning:
    the tile fixes the summation order, and the result must be bitwise reproducible)."""
    return _dedicated_tile(dtype, index_64) or (WGRAD_TILES[0] if min(OCg, Cg) >= 128
                                                else WGRAD_TILES[1])


def _config(tile):
    bm, bn, bk, nw, ns = tile
    return triton.Config({"BM": bm, "BN": bn, "BK": bk}, num_warps=nw, num_stages=ns)


def _tile_of(config):
    return (config.kwargs["BM"], config.kwargs["BN"], config.kwargs["BK"], config.num_warps,
            config.num_stages)


def _tile_configs():
    tiles = [INTERPRET_TILE] if INTERPRET else GEMM_TILES + [FP64_TILE, INDEX64_TILE]
    return [_config(t) for t in tiles]


def _prune(configs, named_args, **kwargs):
    """The tiles for this call: the dedicated tile for fp64 data or 64-bit indices, else the
    GEMM tiles whose pipeline fits in shared memory (BK=64 for 2-byte data only)."""
    if INTERPRET:
        return configs
    size = next(a for a in named_args.values() if isinstance(a, torch.Tensor)).element_size()
    if {**named_args, **kwargs}.get("INDEX_64"):
        return [c for c in configs if _tile_of(c) == INDEX64_TILE]
    if size == 8:
        return [c for c in configs if _tile_of(c) == FP64_TILE]
    return [c for c in configs if _tile_of(c) in GEMM_TILES and (size == 2 or c.kwargs["BK"] <= 32)
            and pipeline_smem(c.kwargs["BM"], c.kwargs["BN"], c.kwargs["BK"], c.num_stages, size)
            <= SMEM_BUDGET]


def autotune(key):
    """``triton.autotune`` over the GEMM tiles, pruned per call (``_prune``), keyed on ``key``."""
    return triton.autotune(configs=_tile_configs(), key=key,
                           prune_configs_by={"early_config_prune": _prune})


# ---------------------------------------------------------------------------------------------
# Weight-gradient split-K and the precision flags


def split_k(tiles, P, BK):
    """Split-K count: enough programs to fill the GPU, chunks of at least 4 K blocks."""
    want = triton.cdiv(TARGET_PROGRAMS, max(tiles, 1))
    return max(1, min(want, triton.cdiv(P, 4 * BK)))


def precision(dtype, allow_tf32):
    """The ``tl.dot`` input precision: TF32 for fp32 data when allowed (not in the interpreter)."""
    return "tf32" if dtype == torch.float32 and allow_tf32 and not INTERPRET else "ieee"


def upcast(dtype):
    """Whether bf16 tiles go to fp32 before the dot (the interpreter's bf16 arithmetic is wrong)."""
    return INTERPRET and dtype == torch.bfloat16


# ---------------------------------------------------------------------------------------------
# The AOT table


def _aot_configs():
    """(kernel, constexprs, dtypes, options) of every configuration shipped, for the AOT test
    (tests/triton_aot.py): every tile in fp16, the first tile in the other dtypes, the variants."""
    sizes = {"fp16": 2, "bf16": 2, "fp32": 4, "fp64": 8}
    rows = []

    def gemm(name, base, tiles, dtypes):
        for bm, bn, bk, nw, ns in tiles:
            for dt in dtypes:
                if pipeline_smem(bm, bn, bk, ns, sizes[dt]) > SMEM_BUDGET:
                    continue  # pruned at run time
                prec = "tf32" if dt == "fp32" else "ieee"
                rows.append((name, {**base, "PRECISION": prec, "ACC_FP64": dt == "fp64",
                                    "BM": bm, "BN": bn, "BK": bk}, (dt,),
                             {"num_warps": nw, "num_stages": ns}))

    fwd = dict(KH=3, KW=3, HAS_BIAS=True, HAS_RES=True, RELU=True, UPCAST=False, INDEX_64=False,
               SHUFFLE=1)
    # 2-byte data may run every GEMM tile (gemm_tile's tall BK=32 tile too), 4-byte BK=32 only
    two_byte = GEMM_TILES
    four_byte = [t for t in GEMM_TILES if t[2] <= 32]
    gemm("_conv2d_fwd_kernel", {**fwd, "STATIC_TAPS": True}, GEMM_TILES, ("fp16",))
    gemm("_conv2d_fwd_kernel", {**fwd, "STATIC_TAPS": True}, two_byte, ("bf16",))
    gemm("_conv2d_fwd_kernel", {**fwd, "STATIC_TAPS": False}, four_byte, ("fp32",))
    gemm("_conv2d_fwd_kernel", {**fwd, "STATIC_TAPS": False}, two_byte, ("fp16",))
    gemm("_conv2d_fwd_kernel", {**fwd, "STATIC_TAPS": False}, [FP64_TILE], ("fp64",))
    gemm("_conv2d_fwd_kernel", {**fwd, "STATIC_TAPS": True, "INDEX_64": True}, [INDEX64_TILE],
         ("fp16",))
    # conv2d_pixel_shuffle (EDSR's x2 upsampler: bias, no residual or ReLU)
    shuffled = {**fwd, "SHUFFLE": 2, "HAS_RES": False, "RELU": False}
    gemm("_conv2d_fwd_kernel", {**shuffled, "STATIC_TAPS": True}, GEMM_TILES, ("fp16",))
    gemm("_conv2d_fwd_kernel", {**shuffled, "STATIC_TAPS": True}, two_byte, ("bf16",))
    gemm("_conv2d_fwd_kernel", {**shuffled, "STATIC_TAPS": False}, four_byte, ("fp32",))
    dgrad = dict(HAS_BIAS=True, UPCAST=False, INDEX_64=False)
    gemm("_conv2d_dgrad_kernel", dgrad, GEMM_TILES, ("fp16",))
    gemm("_conv2d_dgrad_kernel", dgrad, two_byte, ("bf16",))
    gemm("_conv2d_dgrad_kernel", dgrad, four_byte, ("fp32",))
    gemm("_conv2d_dgrad_kernel", dgrad, [FP64_TILE], ("fp64",))
    gemm("_conv2d_dgrad_kernel", {**dgrad, "INDEX_64": True}, [INDEX64_TILE], ("fp16",))
    wgrad = dict(UPCAST=False, INDEX_64=False)
    gemm("_conv2d_wgrad_kernel", wgrad, WGRAD_TILES, ("fp16", "bf16", "fp32"))
    gemm("_conv2d_wgrad_kernel", wgrad, [FP64_TILE], ("fp64",))
    gemm("_conv2d_wgrad_kernel", {**wgrad, "INDEX_64": True}, [INDEX64_TILE], ("fp16",))
    opts = {"num_warps": NUM_WARPS}
    for fp64 in (False, True):
        dts = ("fp64",) if fp64 else ("fp32", "fp16", "bf16")
        for cl in (False, True):
            for static in (True, False):
                rows.append(("_conv2d_dw_fwd_kernel",
                             dict(KH=3, KW=3, STATIC_TAPS=static, HAS_BIAS=True, HAS_RES=True,
                                  RELU=True, CHANNELS_LAST=cl, ACC_FP64=fp64, INDEX_64=False,
                                  BLOCK=BLOCK), dts, opts))
            rows.append(("_conv2d_dw_dgrad_kernel",
                         dict(HAS_BIAS=True, CHANNELS_LAST=cl, ACC_FP64=fp64, INDEX_64=False,
                              BLOCK=BLOCK), dts, opts))
        rows.append(("_conv2d_dw_wgrad_kernel",
                     dict(ACC_FP64=fp64, INDEX_64=False, BP=DW_BP, BC=DW_BC), dts, opts))
        rows.append(("_conv2d_wgrad_reduce_kernel", dict(INDEX_64=False, BLOCK=BLOCK), dts, opts))
    rows.append(("_conv2d_dw_fwd_kernel",
                 dict(KH=3, KW=3, STATIC_TAPS=True, HAS_BIAS=True, HAS_RES=True, RELU=True,
                      CHANNELS_LAST=True, ACC_FP64=False, INDEX_64=True, BLOCK=BLOCK),
                 ("fp16",), opts))
    rows.append(("_conv2d_wgrad_reduce_kernel", dict(INDEX_64=True, BLOCK=BLOCK), ("fp32",), opts))
    return rows


CONFIGS = _aot_configs()
