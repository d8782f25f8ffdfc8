"""Triton kernels of the fused FCN skip (``pydense.functional.fcn_skip``): forward and the skip's
gradient.

Notation: coarse scores (N, K, H, W), skip features (N, CS, HS, WS), optional 1x1 score weight
w (K, CS) and bias b (K,), crop offset (off_h, off_w), scale s, output (N, K, OH, OW) with
OH = (H + 1) f (FCN's bias-free k=2f, s=f bilinear deconvolution, uncropped)::

    out[n, k, oh, ow] = deconv(coarse)[n, k, oh, ow] + score[n, k, oh + off_h, ow + off_w]
    score = s * sum_c skip[n, c, ., .] * w[k, c] + b[k]     (SCORE)
    score = s * skip[n, k, ., .]                            (the skip is already scored)

A program computes a tile of BP output positions p = (n, oh, ow) x BK classes. With SCORE the
1x1 convolution is a ``tl.dot`` over channel blocks of the cropped skip pixels (BP x BC) and the
weight (BC x BK, ``k_loop``), accumulated in fp32 (fp64 for fp64 data); the deconvolution is
then added as the two-tap-per-axis gather of bilinear upsampling (``bilinear_gather``, FCN's
tables from ``pydense.ops.bilinear_deconv.axis_tables``), and the tile is stored once. Neither
the scored skip, nor its crop, nor the upsampled scores are ever written.

Skip gradient (zero outside the crop; the gather is the transpose of the crop)::

    grad_skip[n, c, h, w] = s * sum_k g[n, k, h - off_h, w - off_w] * w[k, c]    (SCORE: a tl.dot)

The coarse gradient is the deconvolution's gather backward (``bilinear_deconv2d_backward``), the
weight gradient the deterministic 1x1 weight gradient of ``kernels/conv/`` on the crop.
Under the Triton interpreter bf16 tiles are converted to fp32 before the dot (``UPCAST``).
"""
import torch
import triton
import triton.language as tl

from ._common import _needs_int64, allow_tf32, bilinear_gather, k_loop, launcher, triton_interpret

INTERPRET = triton_interpret()
BP, BK, BC, NUM_WARPS = 64, 32, 32, 8  # dot dims >= 16; K (21 VOC classes) fits one BK block.
# 8 warps: the four 2-D gather tiles of the deconvolution spilled (up to 1.2 KB) at 4 warps.


def _aot_configs():
    rows = []
    for score in (True, False):
        for dt, fp64 in (("fp16", False), ("bf16", False), ("fp32", False), ("fp64", True)):
            prec = "tf32" if dt == "fp32" else "ieee"
            for i64 in (False, True) if dt == "fp16" else (False,):
                common = {"SCORE": score, "PRECISION": prec, "UPCAST": False, "ACC_FP64": fp64,
                          "INDEX_64": i64}
                rows.append(("_fcn_skip_fwd_kernel",
                             {**common, "HAS_BIAS": score, "BP": BP, "BK": BK, "BC": BC},
                             (dt,), {"num_warps": NUM_WARPS}))
                rows.append(("_fcn_skip_bwd_kernel", {**common, "BP": BP, "BC": BC, "BK": BK},
                             (dt,), {"num_warps": NUM_WARPS}))
    return rows


@triton.jit
def _fcn_skip_fwd_kernel(c_ptr, s_ptr, w_ptr, b_ptr, out_ptr, hidx_ptr, hlam_ptr, widx_ptr,
                         wlam_ptr, cs0, cs1, cs2, cs3, ss0, ss1, ss2, ss3, ws0, ws1, os0, os1, os2,
                         os3, K, CS, CH, CW, OH, OW, P, off_h, off_w, scale,
                         SCORE: tl.constexpr, HAS_BIAS: tl.constexpr, PRECISION: tl.constexpr,
                         UPCAST: tl.constexpr, ACC_FP64: tl.constexpr, INDEX_64: tl.constexpr,
                         BP: tl.constexpr, BK: tl.constexpr, BC: tl.constexpr):
    acc_t: tl.constexpr = tl.float64 if ACC_FP64 else tl.float32
    idx_t: tl.constexpr = tl.int64 if INDEX_64 else tl.int32
    p = tl.program_id(0).to(idx_t) * BP + tl.arange(0, BP)
    k = (tl.program_id(1) * BK + tl.arange(0, BK)).to(idx_t)
    p_ok = p < P
    k_ok = k < K
    mask = p_ok[:, None] & k_ok[None, :]
    ow = p % OW
    t = p // OW
    oh = t % OH
    n = t // OH
    s_row = n * ss0 + (oh + off_h) * ss2 + (ow + off_w) * ss3  # the cropped skip pixel
    if SCORE:  # skip pixels (BP x CS) @ w^T (CS x BK)
        acc = k_loop(tl.zeros([BP, BK], dtype=acc_t), s_ptr, s_row, p_ok, ss1, w_ptr, k * ws0,
                      k_ok, ws1, CS, tl.arange(0, BC).to(idx_t), BC, PRECISION, UPCAST)
        acc = acc * scale
        if HAS_BIAS:
            acc += tl.load(b_ptr + k, mask=k_ok, other=0.0).to(acc_t)[None, :]
    else:
        acc = tl.load(s_ptr + s_row[:, None] + (k * ss1)[None, :], mask=mask, other=0.0).to(acc_t) * scale
    # FCN's bilinear deconvolution of the coarse scores: two taps per axis from the tables.
    h0 = tl.load(hidx_ptr + oh, mask=p_ok, other=0)
    h1 = tl.load(hidx_ptr + OH + oh, mask=p_ok, other=0)
    lh0 = tl.load(hlam_ptr + oh, mask=p_ok, other=0.0).to(acc_t)[:, None]
    lh1 = tl.load(hlam_ptr + OH + oh, mask=p_ok, other=0.0).to(acc_t)[:, None]
    w0 = tl.load(widx_ptr + ow, mask=p_ok, other=0)
    w1 = tl.load(widx_ptr + OW + ow, mask=p_ok, other=0)
    lw0 = tl.load(wlam_ptr + ow, mask=p_ok, other=0.0).to(acc_t)[:, None]
    lw1 = tl.load(wlam_ptr + OW + ow, mask=p_ok, other=0.0).to(acc_t)[:, None]
    acc += bilinear_gather(c_ptr + (n * cs0)[:, None] + (k * cs1)[None, :], CH, CW, cs2, cs3,
                   h0[:, None], h1[:, None], w0[:, None], w1[:, None], lh0, lh1, lw0, lw1, mask, acc_t)
    o_off = (n * os0 + oh * os2 + ow * os3)[:, None] + (k * os1)[None, :]
    tl.store(out_ptr + o_off, acc.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _fcn_skip_bwd_kernel(g_ptr, w_ptr, gx_ptr, gs0, gs1, gs2, gs3, ws0, ws1, xs0, xs1, xs2, xs3,
                         K, CS, HS, WS, OH, OW, P, off_h, off_w, scale,
                         SCORE: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr,
                         ACC_FP64: tl.constexpr, INDEX_64: tl.constexpr,
                         BP: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr):
    acc_t: tl.constexpr = tl.float64 if ACC_FP64 else tl.float32
    idx_t: tl.constexpr = tl.int64 if INDEX_64 else tl.int32
    p = tl.program_id(0).to(idx_t) * BP + tl.arange(0, BP)  # skip positions (n, h, w)
    c = (tl.program_id(1) * BC + tl.arange(0, BC)).to(idx_t)
    p_ok = p < P
    c_ok = c < CS
    w = p % WS
    t = p // WS
    h = t % HS
    n = t // HS
    oh = h - off_h
    ow = w - off_w
    inside = p_ok & (oh >= 0) & (oh < OH) & (ow >= 0) & (ow < OW)
    g_row = n * gs0 + oh * gs2 + ow * gs3
    if SCORE:  # gradient pixels (BP x K) @ w (K x BC)
        acc = k_loop(tl.zeros([BP, BC], dtype=acc_t), g_ptr, g_row, inside, gs1, w_ptr, c * ws1,
                      c_ok, ws0, K, tl.arange(0, BK).to(idx_t), BK, PRECISION, UPCAST)
    else:
        acc = tl.load(g_ptr + g_row[:, None] + (c * gs1)[None, :],
                      mask=inside[:, None] & c_ok[None, :], other=0.0).to(acc_t)
    acc = acc * scale
    x_off = (n * xs0 + h * xs2 + w * xs3)[:, None] + (c * xs1)[None, :]
    tl.store(gx_ptr + x_off, acc.to(gx_ptr.dtype.element_ty), mask=p_ok[:, None] & c_ok[None, :])


CONFIGS = _aot_configs()


def _flags(dtype):
    tf32 = dtype == torch.float32 and allow_tf32() and not INTERPRET
    return dict(PRECISION="tf32" if tf32 else "ieee",
                UPCAST=INTERPRET and dtype == torch.bfloat16, ACC_FP64=dtype == torch.float64)


@launcher
def forward(coarse, skip, weight, bias, h_idx, h_lam, w_idx, w_lam, offset, scale, out):
    """Write the fused FCN skip into ``out`` (N, K, OH, OW); ``weight`` (K, CS) or None."""
    N, K, OH, OW = out.shape
    P = N * OH * OW
    if out.numel() == 0:
        return out
    w = weight if weight is not None else out
    b = bias if bias is not None else out
    ws = weight.stride() if weight is not None else (0, 0)
    grid = (triton.cdiv(P, BP), triton.cdiv(K, BK))
    _fcn_skip_fwd_kernel[grid](
        coarse, skip, w, b, out, h_idx, h_lam, w_idx, w_lam,
        *coarse.stride(), *skip.stride(), *ws, *out.stride(), K, skip.shape[1],
        coarse.shape[2], coarse.shape[3], OH, OW,
        P, offset[0], offset[1], float(scale), SCORE=weight is not None,
        HAS_BIAS=bias is not None, INDEX_64=_needs_int64(coarse, skip, out, w),
        BP=BP, BK=BK, BC=BC, num_warps=NUM_WARPS, **_flags(coarse.dtype))
    return out


@launcher
def backward(grad_output, weight, offset, scale, grad_skip):
    """Write the skip's gradient (zero outside the crop) into ``grad_skip`` (N, CS, HS, WS)."""
    N, CS, HS, WS = grad_skip.shape
    if grad_skip.numel() == 0:
        return grad_skip
    P = N * HS * WS
    w = weight if weight is not None else grad_skip
    ws = weight.stride() if weight is not None else (0, 0)
    grid = (triton.cdiv(P, BP), triton.cdiv(CS, BC))
    _fcn_skip_bwd_kernel[grid](
        grad_output, w, grad_skip, *grad_output.stride(), *ws, *grad_skip.stride(),
        grad_output.shape[1], CS, HS, WS, grad_output.shape[2], grad_output.shape[3],
        P, offset[0], offset[1], float(scale), SCORE=weight is not None,
        INDEX_64=_needs_int64(grad_output, grad_skip, w), BP=BP, BC=BC, BK=BK,
        num_warps=NUM_WARPS, **_flags(grad_output.dtype))
    return grad_skip
