// Index math of pixel_shuffle / pixel_unshuffle, shared by csrc/cpu/pixel_shuffle.cpp and
// csrc/cuda/pixel_shuffle.cu. The Triton kernel (kernels/pixel_shuffle.py) mirrors it.
//
// pixel_shuffle (factor r):   out[n, c, h*r + i, w*r + j] = in[n, c*r*r + i*r + j, h, w]
// pixel_unshuffle (factor r): out[n, c*r*r + i*r + j, h, w] = in[n, c, h*r + i, w*r + j]
// Both are permutations: each output element reads exactly one input element, so both kernels
// are gathers over the output, and each is the other's backward.
#pragma once

#include <cstdint>

#include "macros.h"

namespace pydense {
namespace pixel_shuffle {

// Input coordinates (c, h, w) read by output element (oc, oh, ow).
template <typename I>
PYDENSE_HD void source(I oc, I oh, I ow, I r, bool upscale, I& c, I& h, I& w) {
  if (upscale) {
    const I h0 = oh / r, w0 = ow / r;
    c = oc * r * r + (oh - h0 * r) * r + (ow - w0 * r);
    h = h0;
    w = w0;
  } else {
    const I rr = r * r;
    const I c0 = oc / rr, k = oc - c0 * rr, i = k / r;
    c = c0;
    h = oh * r + i;
    w = ow * r + (k - i * r);
  }
}

}  // namespace pixel_shuffle
}  // namespace pydense
