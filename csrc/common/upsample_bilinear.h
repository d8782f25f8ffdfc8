// Arithmetic of bilinear upsampling shared by csrc/cpu/upsample_bilinear.cpp and
// csrc/cuda/upsample_bilinear.cu; the Triton kernels (kernels/upsample_bilinear.py) mirror it.
//
// Per axis the Python layer builds tables once per call (pydense/ops/upsample_bilinear.py,
// axis_tables): idx (2, out) int32 taps i0/i1 of each output index, lam (2, out) weights,
// rng (2, in) int32 [start, end) of the output indices whose taps include each input index.
#pragma once

#include <cstdint>

#include "macros.h"

namespace pydense {
namespace upsample_bilinear {

// The weights (lam tables) are in the accumulation type acc_t: fp32, or fp64 for fp64 data.

// Forward blend of the four taps.
template <typename acc_t>
PYDENSE_HD acc_t blend(acc_t x00, acc_t x01, acc_t x10, acc_t x11, acc_t lh0, acc_t lh1, acc_t lw0,
                       acc_t lw1) {
  return lh0 * (lw0 * x00 + lw1 * x01) + lh1 * (lw0 * x10 + lw1 * x11);
}

// Tap (h, w) of the plane p (H x W, strides s2 and s3) in acc_t, or 0 when (h, w) lies outside
// the plane. The tables mark a tap that does not exist with -1 (bilinear_deconv2d's borders, where
// FCN's deconvolution has a single input): it is never read and never multiplied (0 * inf would
// give NaN where the deconvolution gives inf), and no table entry can address outside the plane.
template <typename acc_t, typename scalar_t, typename I>
PYDENSE_HD acc_t tap(const scalar_t* p, int32_t h, int32_t w, I H, I W, I s2, I s3) {
  return (h >= 0 && I(h) < H && w >= 0 && I(w) < W) ? acc_t(p[I(h) * s2 + I(w) * s3]) : acc_t(0);
}

// Forward value of output (oh, ow) from the plane p: the blend of its four taps.
template <typename acc_t, typename scalar_t, typename I>
PYDENSE_HD acc_t gather(const scalar_t* p, I H, I W, I s2, I s3, const int32_t* hi, const acc_t* hl,
                        const int32_t* wi, const acc_t* wl, I OH, I OW, I oh, I ow) {
  const int32_t h0 = hi[oh], h1 = hi[OH + oh], w0 = wi[ow], w1 = wi[OW + ow];
  return blend<acc_t>(tap<acc_t>(p, h0, w0, H, W, s2, s3), tap<acc_t>(p, h0, w1, H, W, s2, s3),
                      tap<acc_t>(p, h1, w0, H, W, s2, s3), tap<acc_t>(p, h1, w1, H, W, s2, s3),
                      hl[oh], hl[OH + oh], wl[ow], wl[OW + ow]);
}

// The backward's range [lo, hi) of the output indices whose taps may include input index i (row i
// of an rng table for in_size inputs), clipped to [0, out_size): no table entry can address outside
// the output or the idx/lam tables.
template <typename I>
PYDENSE_HD void out_range(const int32_t* rng, I i, I in_size, I out_size, I& lo, I& hi) {
  lo = rng[i] < 0 ? I(0) : I(rng[i]);
  hi = I(rng[in_size + i]) > out_size ? out_size : I(rng[in_size + i]);
}

// Weight of input index i in output o's two taps (0 if neither): the backward's stencil.
template <typename acc_t>
PYDENSE_HD acc_t tap_weight(int64_t o, int64_t i, const int32_t* idx, const acc_t* lam,
                            int64_t out_size) {
  return (idx[o] == i ? lam[o] : acc_t(0)) + (idx[out_size + o] == i ? lam[out_size + o] : acc_t(0));
}

}  // namespace upsample_bilinear
}  // namespace pydense
