// Arithmetic of bilinear upsampling shared by csrc/cpu/upsample_bilinear.cpp and
// csrc/cuda/upsample_bilinear.cu; the Triton kernels (kernels/upsample_bilinear.py) mirror it.
//
// Per axis the Python layer builds tables once per call (pydense/ops/upsample_bilinear.py,
// axis_tables): idx (2, out) int32 taps i0/i1 of each output index, lam (2, out) fp32 weights,
// rng (2, in) int32 [start, end) of the output indices whose taps include each input index.
#pragma once

#include <cstdint>

#include "macros.h"

namespace pydense {
namespace upsample_bilinear {

// Forward blend of the four taps (fp32 or fp64 accumulation).
template <typename acc_t>
PYDENSE_HD acc_t blend(acc_t x00, acc_t x01, acc_t x10, acc_t x11, float lh0, float lh1, float lw0,
                       float lw1) {
  return acc_t(lh0) * (acc_t(lw0) * x00 + acc_t(lw1) * x01) +
         acc_t(lh1) * (acc_t(lw0) * x10 + acc_t(lw1) * x11);
}

// Weight of input index i in output o's two taps (0 if neither): the backward's stencil.
PYDENSE_HD float tap_weight(int64_t o, int64_t i, const int32_t* idx, const float* lam,
                            int64_t out_size) {
  return (idx[o] == i ? lam[o] : 0.f) + (idx[out_size + o] == i ? lam[out_size + o] : 0.f);
}

}  // namespace upsample_bilinear
}  // namespace pydense
