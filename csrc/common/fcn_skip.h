// Arithmetic of the fused FCN skip (pydense/ops/fcn_skip.py), shared by csrc/cpu/fcn_skip.cpp and
// csrc/cuda/fcn_skip.cu; the Triton kernels (kernels/fcn_skip.py) compute the same sums.
//
// coarse (N, K, H, W) class scores, skip (N, CS, HS, WS) features, optional 1x1 score weight
// w (K, CS) and bias b (K,), crop offset (off_h, off_w), scale s; out (N, K, OH, OW) with
// OH = (H + 1) f (FCN's bias-free k=2f, s=f bilinear deconvolution, uncropped):
//
//   out[n, k, oh, ow] = deconv(coarse)[n, k, oh, ow] + score[n, k, oh + off_h, ow + off_w]
//   score = s * sum_c w[k, c] * skip[n, c, ., .] + b[k]       (with a score weight)
//   score = s * skip[n, k, ., .]                              (without: skip is already scored)
//
// The deconvolution is the two-tap-per-axis gather of csrc/common/upsample_bilinear.h with FCN's
// tables (pydense/ops/bilinear_deconv.py). Backward of skip (zero outside the crop):
//
//   grad_skip[n, c, h, w] = s * sum_k w[k, c] * g[n, k, h - off_h, w - off_w]   (or s * g[n, c, ...])
#pragma once

#include <cstdint>

#include "macros.h"
#include "strides.h"
#include "upsample_bilinear.h"

namespace pydense {
namespace fcn_skip {

// sum_i a[i * as] * b[i * bs] in acc_t, in index order.
template <typename acc_t, typename scalar_t, typename I>
PYDENSE_HD acc_t dot(const scalar_t* a, I as, const scalar_t* b, I bs, I len) {
  acc_t acc = 0;
  for (I i = 0; i < len; ++i) acc += acc_t(a[i * as]) * acc_t(b[i * bs]);
  return acc;
}

// Output element (n, k, oh, ow). coarse_nk: the coarse plane (n, k), CH x CW; px: the skip pixel
// (n, oh + off_h, ow + off_w) at channel 0; w: the score weight (nullptr: none), b: its bias
// (nullptr: none; contiguous).
template <typename acc_t, typename scalar_t, typename I>
PYDENSE_HD acc_t forward_value(const scalar_t* coarse_nk, I CH, I CW, I cs2, I cs3, const scalar_t* px, I ss1,
                               const scalar_t* w, I ws0, I ws1, const scalar_t* b, I CS, I k, I oh,
                               I ow, const int32_t* hi, const acc_t* hl, const int32_t* wi,
                               const acc_t* wl, I OH, I OW, acc_t scale) {
  const acc_t score = w ? scale * dot<acc_t>(w + k * ws0, ws1, px, ss1, CS) + (b ? acc_t(b[k]) : acc_t(0))
                        : scale * acc_t(px[k * ss1]);
  return upsample_bilinear::gather<acc_t>(coarse_nk, CH, CW, cs2, cs3, hi, hl, wi, wl, OH, OW, oh, ow) +
         score;
}

// Skip gradient of element (n, c, h, w). g_n: grad_output at batch n; K classes.
template <typename acc_t, typename scalar_t, typename I>
PYDENSE_HD acc_t skip_grad_value(const scalar_t* g_n, Strides4<I> gs, const scalar_t* w, I ws0,
                                 I ws1, I K, I c, I h, I wpos, I off_h, I off_w, I OH, I OW,
                                 acc_t scale) {
  const I oh = h - off_h, ow = wpos - off_w;
  if (oh < 0 || oh >= OH || ow < 0 || ow >= OW) return acc_t(0);
  const scalar_t* px = g_n + oh * gs.v[2] + ow * gs.v[3];
  return scale * (w ? dot<acc_t>(w + c * ws1, ws0, px, gs.v[1], K) : acc_t(px[c * gs.v[1]]));
}

}  // namespace fcn_skip
}  // namespace pydense
