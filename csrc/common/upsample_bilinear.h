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

// Weight of input index i in output o's two taps (0 if neither): the backward's stencil.
template <typename acc_t>
PYDENSE_HD acc_t tap_weight(int64_t o, int64_t i, const int32_t* idx, const acc_t* lam,
                            int64_t out_size) {
  return (idx[o] == i ? lam[o] : acc_t(0)) + (idx[out_size + o] == i ? lam[out_size + o] : acc_t(0));
}

}  // namespace upsample_bilinear
}  // namespace pydense
