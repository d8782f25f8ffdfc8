// Per-pixel math of the panoptic pair counts, shared by csrc/cpu/panoptic_pairs.cpp and
// csrc/cuda/panoptic_pairs.cu. The Triton kernels (kernels/panoptic_pairs.py) mirror it.
//
// counts[n, i, j] counts the pixels of image n whose ground-truth segment id is gt_ids[n, i] and
// whose predicted segment id is pred_ids[n, j]; an id missing from its image's table lands in the
// last index (G for ground truth, P for predictions). Each table row is sorted ascending (padded at
// the end with INT64_MAX), so the index of an id is found by a lower_bound: a fixed-step binary
// search ("binary lifting") whose steps are the powers of two from top_step(len) down to 1, the
// same sequence for every pixel.
#pragma once

#include <cstdint>

#include "macros.h"

namespace pydense {
namespace panoptic_pairs {

// The first step of the search in a row of len ids: the largest power of two <= len (0 if len = 0).
PYDENSE_HD int64_t top_step(int64_t len) {
  int64_t step = len > 0 ? 1 : 0;
  while (step > 0 && step <= len / 2) step *= 2;
  return step;
}

// Index of id x in the sorted row[0..len): the first i with row[i] == x, or len when x is absent.
// pos counts the row entries below x, settled one bit at a time from the highest.
PYDENSE_HD int64_t index_of(const int64_t* row, int64_t len, int64_t step, int64_t x) {
  int64_t pos = 0;
  for (; step > 0; step /= 2) {
    if (pos + step <= len && row[pos + step - 1] < x) pos += step;
  }
  return pos < len && row[pos] == x ? pos : len;
}

// Flat bin of the pair (gt index gi in [0, G], pred index pj in [0, P]) within one image's
// (G + 1) x (P + 1) histogram.
PYDENSE_HD int64_t bin_of(int64_t gi, int64_t pj, int64_t P) { return gi * (P + 1) + pj; }

}  // namespace panoptic_pairs
}  // namespace pydense
