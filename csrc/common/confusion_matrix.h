// Per-pixel math of the segmentation confusion matrix, shared by csrc/cpu/confusion_matrix.cpp and
// csrc/cuda/confusion_matrix.cu. The Triton kernels (kernels/confusion_matrix.py) mirror it.
//
// cm[t, p] counts the pixels with target t and prediction p, where p is the pixel's label, or the
// argmax over the channels of its logits (ties: the lowest index; a NaN beats any number and the
// first NaN wins, as torch.argmax). A pixel is dropped when its target is ignore_index, or when t
// or p lies outside [0, K) (possible only with the Python label checks off): bin_of returns -1
// and the bin is never used as an address.
#pragma once

#include <cstdint>

#include "macros.h"

namespace pydense {
namespace confusion_matrix {

// Whether logit v replaces the running maximum best (scanning channels in increasing order).
template <typename T>
PYDENSE_HD bool argmax_takes(T v, T best) {
  return v > best || (v != v && best == best);
}

// Flat bin t * K + p of a pixel, or -1 when the pixel is dropped.
PYDENSE_HD int64_t bin_of(int64_t t, int64_t p, int64_t K, int64_t ignore_index) {
  if (t == ignore_index || t < 0 || t >= K || p < 0 || p >= K) return -1;
  return t * K + p;
}

}  // namespace confusion_matrix
}  // namespace pydense
